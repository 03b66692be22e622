"""image-pipeline: S3 upload -> Lambda (Pillow layer) -> S3 variants, for one stack.

Reads and validates the stack's config once, resolves the layer zip, declares the tagged AWS
provider and the ImagePipeline component, and exports what a user needs to use the stack.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from components import ImagePipeline, ImagePipelineArgs
from components.code import handler_sources
from components.config import NAMESPACE, LayerSource, PipelineSettings, parse_config, parse_layer_source
from components.naming import name_prefix
from components.provider import provider_keys
from layer_build import ARCHITECTURES, RUNTIMES, LayerArtifact, artifact_for, bytecode, check_size, ensure_layer
from layer_build.build import DEFAULT_CACHE_DIR

PROJECT_DIR = Path(__file__).resolve().parent
HANDLER_DIR = PROJECT_DIR / "handler"
logger = logging.getLogger("image-pipeline")


def read_config() -> tuple[str, PipelineSettings, LayerSource]:
    """(aws region, validated settings, where the layer comes from); raises ConfigError naming the bad key."""
    region = pulumi.Config("aws").require("region")
    project_config = pulumi.Config(NAMESPACE)
    settings = parse_config(project_config.get, region=region, runtimes=RUNTIMES, architectures=ARCHITECTURES)
    return region, settings, parse_layer_source(project_config.get)


def read_provider_config() -> dict[str, Any]:
    """Every `aws:*` key the stack sets, as `aws.Provider` arguments (see `components.provider`)."""
    config = pulumi.Config("aws")
    readers = {
        "bool": (config.get_bool, config.get_secret_bool),
        "int": (config.get_int, config.get_secret_int),
        "str": (config.get, config.get_secret),
        "object": (config.get_object, config.get_secret_object),
    }
    found: dict[str, Any] = {}
    for setting in provider_keys():
        plain, secret = readers[setting.kind]
        value = (secret if pulumi.runtime.is_config_secret(f"aws:{setting.key}") else plain)(setting.key)
        if value is not None:
            found[setting.argument] = value
    return found


def resolve_layer(settings: PipelineSettings, source: LayerSource) -> LayerArtifact:
    """The prebuilt zip named by `layerZip` (relative to the project), else build or reuse the cached one."""
    if source.zip_path is None:
        return ensure_layer(
            settings.runtime, settings.architecture, function_code_dir=HANDLER_DIR, bytecode=source.bytecode
        )
    if source.bytecode:
        pulumi.log.warn(f"layerZip is set: {source.zip_path} is deployed as built, so layerBytecode does not apply")
    zip_path = Path(source.zip_path).expanduser()
    if not zip_path.is_absolute():
        zip_path = PROJECT_DIR / zip_path
    artifact = artifact_for(zip_path, settings.runtime, settings.architecture)
    check_size(artifact, function_code_dir=HANDLER_DIR)
    return artifact


def compile_handler(settings: PipelineSettings, source: LayerSource) -> dict[str, Path]:
    """With `layerBytecode`, the handler's bytecode too, by the same runtime's Python as the layer's."""
    if not source.bytecode or source.zip_path is not None:
        return {}
    compiler = bytecode.find_compiler(settings.runtime)
    return bytecode.compile_function_code(compiler, handler_sources(HANDLER_DIR), DEFAULT_CACHE_DIR)


def main() -> None:
    project, stack = pulumi.get_project(), pulumi.get_stack()
    prefix = name_prefix(project, stack)
    region, settings, layer_source = read_config()
    provider_config = read_provider_config()
    layer = resolve_layer(settings, layer_source)
    handler_bytecode = compile_handler(settings, layer_source)
    logger.info("stack %s: layer %s (sha256 %s)", stack, layer.path, layer.sha256)

    # Every taggable resource gets these through the provider, so none can be forgotten. The stack's
    # own aws:defaultTags are kept; project, stack and managed-by always describe this stack.
    tags = (provider_config.pop("default_tags", None) or {}).get("tags") or {}
    tags.update({"project": project, "stack": stack, "managed-by": "pulumi"})
    provider_config.update(region=region, default_tags={"tags": tags})
    provider = aws.Provider("aws", **provider_config)
    pipeline = ImagePipeline(
        "pipeline",
        ImagePipelineArgs(
            name_prefix=prefix,
            region=region,
            settings=settings,
            layer_zip=layer.path,
            layer_source_code_hash=layer.source_code_hash,
            handler_dir=HANDLER_DIR,
            handler_bytecode=handler_bytecode,
        ),
        opts=pulumi.ResourceOptions(providers=[provider]),
    )

    example_file = "photo" + (settings.upload_suffix or ".jpg")
    pulumi.export("upload_bucket", pipeline.upload_bucket)
    pulumi.export("processed_bucket", pipeline.processed_bucket)
    pulumi.export("quarantine_location", pulumi.Output.format("s3://{0}/", pipeline.quarantine_bucket))
    pulumi.export("function_name", pipeline.function_name)
    pulumi.export("function_arn", pipeline.function_arn)
    pulumi.export("layer_arn", pipeline.layer_arn)
    pulumi.export("dead_letter_queue_url", pipeline.dead_letter_queue_url)
    pulumi.export("log_group_name", pipeline.log_group_name)
    pulumi.export("dead_letter_alarm_name", pipeline.dead_letter_alarm_name)
    pulumi.export("function_errors_alarm_name", pipeline.function_errors_alarm_name)
    pulumi.export(
        "upload_command",
        pulumi.Output.format(
            "aws s3 cp {0} s3://{1}/{2}{0}", example_file, pipeline.upload_bucket, settings.upload_prefix
        ),
    )


if __name__ == "__main__":
    main()
