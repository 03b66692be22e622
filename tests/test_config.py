"""Bad stack config stops the real program before any resource exists, naming the key and what is allowed."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pulumi
import pytest

import layer_build
from components.config import ConfigError, minimum_memory_mb
from components.naming import NamingError, name_prefix
from handler.pipeline import RENDER_BYTES_PER_PIXEL
from handler.variants import PRESETS, variants_from_json
from layer_build import LayerArtifact, LayerBuildError, artifact_for, bytecode
from tests.pulumi_mocks import ACCOUNT_ID, fake_layer_zip, run_stack

ALL_RETENTIONS = (
    "1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653"
)


def variant(**fields: Any) -> str:
    """One explicit variant as the JSON text Pulumi hands the program for a structured value."""
    return json.dumps([{"name": "custom", "format": "jpeg", "quality": 80, **fields}])


# (config key, bad value, fragments the message must contain: the key, the value, the allowed values)
INVALID = [
    ("variants", variant(quality=0), ["image-pipeline:variants[0] 'custom'.quality", "1..100", "got 0"]),
    ("variants", variant(quality=101), ["image-pipeline:variants[0] 'custom'.quality", "1..100", "got 101"]),
    (
        "variants",
        variant(format="gif"),
        ["image-pipeline:variants[0] 'custom'.format", "jpeg, webp, png, avif", "'gif'"],
    ),
    ("variants", "fancy", ["image-pipeline:variants", "unknown preset 'fancy'", "default, responsive"]),
    ("variants", variant(width=0, height=100), ["image-pipeline:variants[0] 'custom'.width", "1..16384", "got 0"]),
    ("variants", variant(width=100, height=-5), ["image-pipeline:variants[0] 'custom'.height", "1..16384", "got -5"]),
    ("variants", "[not json", ["image-pipeline:variants", "'[not json' is not valid JSON", "preset name"]),
    (
        "variants",
        json.dumps([{"name": f"v{i}", "format": "png", "width": 10, "height": 10} for i in range(40)]),
        ["image-pipeline:variants", "40 variants", "4 KB environment limit"],
    ),
    ("memorySize", 127, ["image-pipeline:memorySize", "128..10240", "got 127"]),
    ("memorySize", 10241, ["image-pipeline:memorySize", "128..10240", "got 10241"]),
    ("memorySize", "lots", ["image-pipeline:memorySize", "128..10240", "'lots'"]),
    ("timeout", 0, ["image-pipeline:timeout", "1..900", "got 0"]),
    ("timeout", 901, ["image-pipeline:timeout", "1..900", "got 901"]),
    ("logRetentionDays", 2, ["image-pipeline:logRetentionDays", ALL_RETENTIONS, "'2'"]),
    ("logRetentionDays", 0, ["image-pipeline:logRetentionDays", ALL_RETENTIONS, "'0'"]),
    ("architecture", "x86", ["image-pipeline:architecture", "x86_64, arm64", "'x86'"]),
    ("runtime", "python3.9", ["image-pipeline:runtime", "python3.12, python3.13", "'python3.9'"]),
    ("runtime", "nodejs20.x", ["image-pipeline:runtime", "python3.12, python3.13", "'nodejs20.x'"]),
    (
        "reservedConcurrency",
        0,
        ["image-pipeline:reservedConcurrency", "-1 (no reservation) or an integer >= 1", "0 would throttle"],
    ),
    ("reservedConcurrency", -2, ["image-pipeline:reservedConcurrency", "-1 (no reservation)", "got -2"]),
    ("noncurrentVersionDays", -1, ["image-pipeline:noncurrentVersionDays", ">= 1 days", "got -1"]),
    ("quarantineExpirationDays", 0, ["image-pipeline:quarantineExpirationDays", ">= 1 days", "got 0"]),
    ("deadLetterRetentionDays", 15, ["image-pipeline:deadLetterRetentionDays", "1..14", "got 15"]),
    ("maxEventAgeSeconds", 59, ["image-pipeline:maxEventAgeSeconds", "60..21600", "got 59"]),
    ("pixelLimit", 0, ["image-pipeline:pixelLimit", "1..178956970", "got 0"]),
    ("pixelLimit", 178956971, ["image-pipeline:pixelLimit", "1..178956970", "got 178956971"]),
    ("maxUploadBytes", -1, ["image-pipeline:maxUploadBytes", ">= 1", "got -1"]),
    ("logLevel", "LOUD", ["image-pipeline:logLevel", "DEBUG, INFO, WARNING, ERROR", "'LOUD'"]),
    ("protectData", "yes", ["image-pipeline:protectData", "true or false", "'yes'"]),
    ("layerBytecode", "1", ["image-pipeline:layerBytecode", "true or false", "'1'"]),
    ("uploadPrefix", "/incoming/", ["image-pipeline:uploadPrefix", "do not start with '/'", "'/incoming/'"]),
    ("uploadSuffix", "x" * 1025, ["image-pipeline:uploadSuffix", "at most 1024 bytes"]),
    # 600 two-byte characters: the message must count bytes, as S3 does, not characters.
    ("uploadPrefix", "é" * 600, ["image-pipeline:uploadPrefix", "at most 1024 bytes", "got 1200 bytes"]),
    # An RGBA frame at the default pixel limit peaks at ~2 GB on one thread (libwebp encoding its alpha), plus the
    # 50 MiB upload held twice and Lambda's runtime.
    (
        "memorySize",
        1024,
        ["image-pipeline:memorySize", "1024 MB", "image-pipeline:pixelLimit 89478485", ">= 2276", "<= 34777770"],
    ),
    ("memorySize", 2275, ["image-pipeline:memorySize", "2275 MB", ">= 2276", "<= 89434794"]),
    # The upload is held in memory too: a 4 GiB limit cannot fit in the default 2304 MB.
    # ...nor in Lambda's largest, 10240 MB: only a smaller upload limit helps.
    (
        "maxUploadBytes",
        4 * 2**30,
        ["image-pipeline:maxUploadBytes 4294967296", "about 10368 MB", "set a smaller maxUploadBytes"],
    ),
    ("kmsKeyArn", f"arn:aws:kms:us-east-1:{ACCOUNT_ID}:alias/images", ["image-pipeline:kmsKeyArn", "not an alias"]),
    (
        "kmsKeyArn",
        f"arn:aws:kms:eu-west-1:{ACCOUNT_ID}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        ["image-pipeline:kmsKeyArn", "eu-west-1", "aws:region us-east-1"],
    ),
    ("alarmTopicArn", "ops-alerts", ["image-pipeline:alarmTopicArn", "SNS topic ARN", "got 'ops-alerts'"]),
    (
        "alarmTopicArn",
        f"arn:aws:sqs:us-east-1:{ACCOUNT_ID}:ops-alerts",
        ["image-pipeline:alarmTopicArn", "SNS topic ARN", f"'arn:aws:sqs:us-east-1:{ACCOUNT_ID}:ops-alerts'"],
    ),
    (
        # A subscription's ARN, copied from the console by mistake: the topic's ARN plus an id.
        "alarmTopicArn",
        f"arn:aws:sns:us-east-1:{ACCOUNT_ID}:ops-alerts:0b5c3f5e-7d2a-4c1e-9f4b-2a6d8e1c3b7a",
        ["image-pipeline:alarmTopicArn", "SNS topic ARN", "ops-alerts:0b5c3f5e"],
    ),
    (
        "alarmTopicArn",
        f"arn:aws:sns:eu-west-1:{ACCOUNT_ID}:ops-alerts",
        ["image-pipeline:alarmTopicArn", "eu-west-1", "aws:region us-east-1"],
    ),
    (
        "alarmTopicArn",
        f"arn:aws:sns:us-east-1:{ACCOUNT_ID}:ops-alerts.fifo",
        ["image-pipeline:alarmTopicArn", "'arn:aws:sns:us-east-1:123456789012:ops-alerts.fifo'", "FIFO"],
    ),
]


@pytest.mark.parametrize(
    ("key", "value", "fragments"),
    INVALID,
    ids=[f"{key}={str(value)[:40]}" for key, value, _ in INVALID],
)
def test_invalid_value_stops_the_program_naming_key_and_allowed_values(
    key: str, value: Any, fragments: list[str]
) -> None:
    with pytest.raises(ConfigError) as raised:
        run_stack("dev", **{key: value})
    message = str(raised.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from {message!r}"


def test_an_alarm_topic_of_another_account_is_accepted() -> None:
    """A central operations account often owns the topic; its policy, not this stack, decides."""
    topic = "arn:aws:sns:us-east-1:210987654321:ops-alerts"
    run = run_stack("dev", alarmTopicArn=f"  {topic} ")
    for alarm in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm"):
        assert alarm.inputs["alarmActions"] == [topic]


def test_missing_region_is_named() -> None:
    with pytest.raises(pulumi.ConfigMissingError, match="aws:region"):
        run_stack("dev", **{"aws:region": None})


def test_prebuilt_layer_zip_for_another_machine_fails_preview(tmp_path: Any) -> None:
    """The stack's architecture (arm64 in dev) labels the layer, so an x86_64 zip must not deploy."""
    wrong = tmp_path / "layer-x86.zip"
    with zipfile.ZipFile(wrong, "w") as archive:
        archive.writestr("python/PIL/__init__.py", "")
        x86_64_elf = b"\x7fELF\x02\x01\x01" + bytes(9) + (3).to_bytes(2, "little") + (62).to_bytes(2, "little")
        archive.writestr("python/PIL/_imaging.cpython-312-x86_64-linux-gnu.so", x86_64_elf)
    with pytest.raises(LayerBuildError, match=r"_imaging\.cpython-312-x86_64-linux-gnu\.so, a binary for x86_64"):
        run_stack("dev", layerZip=str(wrong))


def test_missing_layer_zip_names_the_path(tmp_path: Any) -> None:
    missing = tmp_path / "nope.zip"
    with pytest.raises(LayerBuildError, match=r"nope\.zip"):
        run_stack("dev", layerZip=str(missing))


def test_layer_bytecode_reaches_the_layer_build_and_prod_turns_it_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    builds: list[tuple[str, str, bool]] = []
    compilers: list[str] = []

    def fake_ensure_layer(runtime: str, arch: str, **options: Any) -> LayerArtifact:
        builds.append((runtime, arch, options["bytecode"]))
        return artifact_for(fake_layer_zip(), runtime, arch)

    def fake_find_compiler(runtime: str) -> bytecode.BytecodeCompiler:
        compilers.append(runtime)
        return bytecode.BytecodeCompiler("python", "3.x", "cpython-3x", "3.x")

    def fake_compile(compiler: bytecode.BytecodeCompiler, sources: dict[str, Path], cache: Path) -> dict[str, Path]:
        (tmp_path / "app.pyc").write_bytes(b"")
        assert "handler/app.py" in sources
        return {bytecode.bytecode_name("handler/app.py", compiler): tmp_path / "app.pyc"}

    monkeypatch.setattr(layer_build, "ensure_layer", fake_ensure_layer)
    monkeypatch.setattr(bytecode, "find_compiler", fake_find_compiler)
    monkeypatch.setattr(bytecode, "compile_function_code", fake_compile)
    runs = [
        run_stack("prod", layerZip=None),
        run_stack("dev", layerZip=None),
        run_stack("dev", layerZip=None, layerBytecode="true", runtime="python3.13"),
    ]
    assert builds == [("python3.12", "arm64", True), ("python3.12", "arm64", False), ("python3.13", "arm64", True)]
    assert compilers == ["python3.12", "python3.13"], "the handler is compiled by the runtime's Python with the layer"
    shipped = [run.one("aws:lambda/function:Function").inputs["code"].assets for run in runs]
    pyc = "handler/__pycache__/app.cpython-3x.pyc"
    assert [pyc in assets for assets in shipped] == [True, False, True]
    assert all("handler/app.py" in assets for assets in shipped), "the sources ship too"


def test_a_prebuilt_layer_zip_is_deployed_as_built_whatever_layer_bytecode_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def must_not_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("layerZip is set: the program must not build a layer")

    monkeypatch.setattr(layer_build, "ensure_layer", must_not_build)
    run = run_stack("prod")
    layer = run.one("aws:lambda/layerVersion:LayerVersion").inputs
    assert layer["code"].path == str(fake_layer_zip())


def test_a_preset_name_selects_that_preset() -> None:
    run = run_stack("dev", variants="responsive")
    variables = run.one("aws:lambda/function:Function").inputs["environment"]["variables"]
    assert variants_from_json(variables["VARIANTS"]) == PRESETS["responsive"]


def test_an_explicit_variant_list_reaches_the_function() -> None:
    run = run_stack("prod", variants=[{"name": "small", "format": "webp", "quality": 70, "width": 320, "height": 320}])
    [spec] = variants_from_json(run.one("aws:lambda/function:Function").inputs["environment"]["variables"]["VARIANTS"])
    assert (spec.name, spec.format, spec.quality, spec.box) == ("small", "webp", 70, (320, 320))


def test_runtime_and_architecture_choices_reach_function_and_layer() -> None:
    run = run_stack("dev", runtime="python3.13", architecture="x86_64")
    function = run.one("aws:lambda/function:Function").inputs
    layer = run.one("aws:lambda/layerVersion:LayerVersion").inputs
    assert (function["runtime"], function["architectures"]) == ("python3.13", ["x86_64"])
    assert (layer["compatibleRuntimes"], layer["compatibleArchitectures"]) == (["python3.13"], ["x86_64"])


@pytest.mark.parametrize(
    ("stack", "fragment"),
    [
        ("Dev", "lowercase"),
        ("dev_1", "lowercase"),
        ("a-very-long-stack-name-for-testing-limits", "3-63 characters"),
    ],
)
def test_a_stack_name_that_cannot_form_a_bucket_name_is_refused(stack: str, fragment: str) -> None:
    with pytest.raises(NamingError, match=fragment):
        name_prefix("image-pipeline", stack)


def test_the_longest_valid_names_fit() -> None:
    prefix = name_prefix("image-pipeline", "s" * 28)
    assert len(f"{prefix}-quarantine-{'0' * 8}") == 63


def test_memory_floor_counts_one_thread_and_the_upload() -> None:
    """The handler drops threads for frames too large for all of them, so one thread sets the floor."""
    assert minimum_memory_mb(89_478_485, 52_428_800) == 2276
    assert minimum_memory_mb(40_000_000, 52_428_800) == 1144
    assert minimum_memory_mb(40_000_000, 1) == 1044
    # Every size the error message offers as the pixel limit fits the memory it was offered for.
    for memory in (1024, 1536, 2275):
        need = minimum_memory_mb(89_478_485, 52_428_800)
        fitting = 89_478_485 - -(-(need - memory) * 2**20 // RENDER_BYTES_PER_PIXEL)
        assert minimum_memory_mb(fitting, 52_428_800) <= memory < minimum_memory_mb(fitting + 60_000, 52_428_800)


def test_a_lower_pixel_limit_makes_less_memory_acceptable() -> None:
    run = run_stack("dev", memorySize=1152, pixelLimit=40_000_000)
    function = run.one("aws:lambda/function:Function").inputs
    assert (function["memorySize"], function["environment"]["variables"]["PIXEL_LIMIT"]) == (1152, "40000000")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_stack_files_give_the_function_enough_memory_for_their_pixel_limit(stack: str) -> None:
    run = run_stack(stack)
    function = run.one("aws:lambda/function:Function").inputs
    variables = function["environment"]["variables"]
    assert function["memorySize"] >= minimum_memory_mb(
        int(variables["PIXEL_LIMIT"]), int(variables["MAX_UPLOAD_BYTES"])
    )
