"""image-pipeline: S3 upload -> Lambda (Pillow layer) -> S3 variants, for one stack.

Reads and validates the stack's config once, resolves the layer zip, declares the tagged AWS
provider and the ImagePipeline component, and exports what a user needs to use the stack.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pulumi
import pulumi_aws as aws

from components import ImagePipeline, ImagePipelineArgs
from components.config import NAMESPACE, PipelineConfig, parse_config
from components.naming import name_prefix
from layer_build import ARCHITECTURES, RUNTIMES, LayerArtifact, artifact_for, check_size, ensure_layer

PROJECT_DIR = Path(__file__).resolve().parent
HANDLER_DIR = PROJECT_DIR / "handler"
CONFIG_KEYS = (
    "variants",
    "runtime",
    "architecture",
    "memorySize",
    "timeout",
    "reservedConcurrency",
    "logLevel",
    "logRetentionDays",
    "noncurrentVersionDays",
    "quarantineExpirationDays",
    "deadLetterRetentionDays",
    "maxEventAgeSeconds",
    "pixelLimit",
    "maxUploadBytes",
    "kmsKeyArn",
    "uploadPrefix",
    "uploadSuffix",
    "protectData",
    "layerZip",
)

logger = logging.getLogger("image-pipeline")


def read_config() -> tuple[str, PipelineConfig]:
    """(aws region, validated project config); raises ConfigError naming the bad key."""
    region = pulumi.Config("aws").require("region")
    project_config = pulumi.Config(NAMESPACE)
    raw = {key: project_config.get(key) for key in CONFIG_KEYS}
    return region, parse_config(raw, region=region, runtimes=RUNTIMES, architectures=ARCHITECTURES)


def resolve_layer(config: PipelineConfig) -> LayerArtifact:
    """The prebuilt zip named by `layerZip` (relative to the project), else build or reuse the cached one."""
    if config.layer_zip is None:
        return ensure_layer(config.runtime, config.architecture, function_code_dir=HANDLER_DIR)
    zip_path = Path(config.layer_zip).expanduser()
    if not zip_path.is_absolute():
        zip_path = PROJECT_DIR / zip_path
    artifact = artifact_for(zip_path, config.runtime, config.architecture)
    check_size(artifact, function_code_dir=HANDLER_DIR)
    return artifact


def main() -> None:
    project, stack = pulumi.get_project(), pulumi.get_stack()
    prefix = name_prefix(project, stack)
    region, config = read_config()
    layer = resolve_layer(config)
    logger.info("stack %s: layer %s (sha256 %s)", stack, layer.path, layer.sha256)

    # Every taggable resource gets these through the provider, so none can be forgotten.
    provider = aws.Provider(
        "aws",
        region=region,
        default_tags={"tags": {"project": project, "stack": stack, "managed-by": "pulumi"}},
    )
    pipeline = ImagePipeline(
        "pipeline",
        ImagePipelineArgs(
            name_prefix=prefix,
            variants=config.variants,
            layer_zip=layer.path,
            layer_source_code_hash=layer.source_code_hash,
            handler_dir=HANDLER_DIR,
            runtime=config.runtime,
            architecture=config.architecture,
            memory_mb=config.memory_mb,
            timeout_seconds=config.timeout_seconds,
            reserved_concurrency=config.reserved_concurrency,
            log_level=config.log_level,
            log_retention_days=config.log_retention_days,
            noncurrent_version_days=config.noncurrent_version_days,
            quarantine_expiration_days=config.quarantine_expiration_days,
            dead_letter_retention_days=config.dead_letter_retention_days,
            max_event_age_seconds=config.max_event_age_seconds,
            pixel_limit=config.pixel_limit,
            max_upload_bytes=config.max_upload_bytes,
            kms_key_arn=config.kms_key_arn,
            upload_prefix=config.upload_prefix,
            upload_suffix=config.upload_suffix,
            protect_data=config.protect_data,
        ),
        opts=pulumi.ResourceOptions(providers=[provider]),
    )

    example_file = "photo" + (config.upload_suffix or ".jpg")
    pulumi.export("upload_bucket", pipeline.upload_bucket)
    pulumi.export("processed_bucket", pipeline.processed_bucket)
    pulumi.export("quarantine_location", pulumi.Output.format("s3://{0}/", pipeline.quarantine_bucket))
    pulumi.export("function_name", pipeline.function_name)
    pulumi.export("function_arn", pipeline.function_arn)
    pulumi.export("layer_arn", pipeline.layer_arn)
    pulumi.export("dead_letter_queue_url", pipeline.dead_letter_queue_url)
    pulumi.export("log_group_name", pipeline.log_group_name)
    pulumi.export(
        "upload_command",
        pulumi.Output.format(
            "aws s3 cp {0} s3://{1}/{2}{0}", example_file, pipeline.upload_bucket, config.upload_prefix
        ),
    )


if __name__ == "__main__":
    main()
