"""Stack config validation: raw `pulumi config` text in, one typed `PipelineSettings` out.

Pure Python (no Pulumi), so every rule is unit-tested directly. A bad value raises
`ConfigError` naming the fully qualified key, the value and what is allowed, before any
resource is declared: `pulumi preview` fails fast instead of AWS failing halfway through `up`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TypeVar

from handler.pipeline import MAX_PIXEL_LIMIT, RENDER_BYTES_PER_PIXEL, render_memory_mb
from handler.variants import VariantError, VariantSpec, parse_variants, variants_to_json

NAMESPACE = "image-pipeline"

MEMORY_RANGE_MB = (128, 10240)
TIMEOUT_RANGE_SECONDS = (1, 900)
# FunctionEventInvokeConfig accepts 60 s .. 6 h for the maximum event age.
EVENT_AGE_RANGE_SECONDS = (60, 21600)
# SQS keeps messages 60 s .. 14 days; whole days are what an operator reasons in.
DEAD_LETTER_RETENTION_RANGE_DAYS = (1, 14)
# The values CloudWatch Logs' PutRetentionPolicy accepts. "Never expire" is deliberately
# not offered: function logs can hold object keys, so they must age out.
LOG_RETENTION_DAYS: tuple[int, ...] = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR")
# -1 is Lambda's "no reservation"; 0 would throttle every invocation, a silent outage.
UNRESERVED_CONCURRENCY = -1
# S3 caps an object key (and so a notification filter) at 1024 bytes.
MAX_FILTER_BYTES = 1024
# Lambda caps all environment variables of a function at 4 KB together; the other five (two
# bucket names of at most 63 characters, level, limits and the keys) take well under 512 bytes.
VARIANTS_JSON_MAX_BYTES = 4096 - 512
# Matches key ARNs, including multi-region keys (mrk-...); aliases cannot be granted in IAM.
_KMS_KEY_ARN_RE = re.compile(r"^arn:(aws[a-z-]*):kms:([a-z0-9-]+):(\d{12}):key/(mrk-)?[0-9a-f-]{32,36}$")
# SNS topic names are 1-256 letters, digits, '-' and '_'; a FIFO topic's name ends in `.fifo`.
_SNS_TOPIC_ARN_RE = re.compile(r"^arn:(aws[a-z-]*):sns:([a-z0-9-]+):(\d{12}):([A-Za-z0-9_-]{1,256})(\.fifo)?$")

_T = TypeVar("_T")


class ConfigError(ValueError):
    """A stack config value is invalid; the message names the key, the value and what is allowed."""


ConfigReader = Callable[[str], str | None]
"""Returns a project config value by its bare key, or None when unset (`pulumi.Config(NAMESPACE).get`)."""


@dataclass(frozen=True)
class PipelineSettings:
    """Every stack setting the component needs, validated.

    Pulumi.yaml documents them for users and is the one place defaults live, so none are set here.
    """

    variants: tuple[VariantSpec, ...]
    """Renditions produced per upload; shipped to the function as `VARIANTS` JSON."""
    runtime: str
    """Lambda runtime of the function, and the layer's only compatible runtime."""
    architecture: str
    """Lambda architecture (`x86_64` or `arm64`) of the function and the layer."""
    memory_mb: int
    """Function memory; Lambda scales CPU with it, and decoding large photos needs both."""
    timeout_seconds: int
    """Function timeout for one S3 event."""
    reserved_concurrency: int
    """Reserved concurrent executions; -1 leaves the function unreserved."""
    log_level: str
    """`LOG_LEVEL` of the function."""
    log_retention_days: int
    """Retention of the function's log group, a value CloudWatch accepts."""
    noncurrent_version_days: int
    """Days after which noncurrent object versions are expired in every bucket."""
    quarantine_expiration_days: int
    """Days after which quarantined uploads themselves expire."""
    dead_letter_retention_days: int
    """How long failed events stay in the dead-letter queue."""
    max_event_age_seconds: int
    """Events older than this are not retried but sent to the dead-letter queue."""
    pixel_limit: int
    """`PIXEL_LIMIT`: larger images are quarantined instead of decoded (decompression bombs)."""
    max_upload_bytes: int
    """`MAX_UPLOAD_BYTES`: larger uploads are quarantined without being downloaded."""
    kms_key_arn: str | None
    """Customer KMS key for SSE-KMS with a bucket key; None means SSE-S3 (AES256)."""
    alarm_topic_arn: str | None
    """SNS topic the alarms notify on ALARM and OK; None leaves them visible in CloudWatch only."""
    upload_prefix: str
    """Only keys starting with this trigger the function ("" = all)."""
    upload_suffix: str
    """Only keys ending with this trigger the function ("" = all)."""
    protect_data: bool
    """True (prod): buckets are protected and retained on delete, never force-destroyed."""


def qualified(key: str) -> str:
    return f"{NAMESPACE}:{key}"


def _required(raw: ConfigReader, key: str) -> str:
    value = raw(key)
    if value is None:
        raise ConfigError(f"{qualified(key)}: missing; it has a default in Pulumi.yaml, so the project file is damaged")
    return value.strip()


def _integer(raw: ConfigReader, key: str, low: int, high: int | None, unit: str) -> int:
    text = _required(raw, key)
    allowed = f"an integer {low}..{high} {unit}" if high is not None else f"an integer >= {low} {unit}"
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{qualified(key)}: must be {allowed}, got {text!r}") from None
    if value < low or (high is not None and value > high):
        raise ConfigError(f"{qualified(key)}: must be {allowed}, got {value}")
    return value


def _choice(raw: ConfigReader, key: str, allowed: Collection[_T], convert: Callable[[str], _T]) -> _T:
    text = _required(raw, key)
    listed = ", ".join(str(option) for option in allowed)
    try:
        value = convert(text)
    except ValueError:
        raise ConfigError(f"{qualified(key)}: must be one of {listed}; got {text!r}") from None
    if value not in allowed:
        raise ConfigError(f"{qualified(key)}: must be one of {listed}; got {text!r}")
    return value


def _boolean(raw: ConfigReader, key: str) -> bool:
    text = _required(raw, key).lower()
    if text not in ("true", "false"):
        raise ConfigError(f"{qualified(key)}: must be true or false, got {raw(key)!r}")
    return text == "true"


def _optional_text(raw: ConfigReader, key: str) -> str | None:
    value = (raw(key) or "").strip()
    return value or None


def parse_variants_config(text: str) -> tuple[VariantSpec, ...]:
    """A preset name, or a JSON list of variant objects (what `pulumi config set --path` or YAML gives)."""
    key = qualified("variants")
    stripped = text.strip()
    value: object = stripped
    if stripped.startswith(("[", "{")):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as error:
            shown = stripped if len(stripped) <= 80 else stripped[:77] + "..."
            raise ConfigError(
                f"{key}: {shown!r} is not valid JSON ({error}); give a preset name or a JSON list"
            ) from None
    try:
        specs = parse_variants(value, where=key)  # type: ignore[arg-type]
    except VariantError as error:
        raise ConfigError(str(error)) from None
    size = len(variants_to_json(specs).encode())
    if size > VARIANTS_JSON_MAX_BYTES:
        raise ConfigError(
            f"{key}: {len(specs)} variants serialise to {size} bytes, over the {VARIANTS_JSON_MAX_BYTES} bytes "
            "Lambda's 4 KB environment limit leaves for VARIANTS; define fewer variants"
        )
    return specs


def parse_kms_key_arn(text: str | None, region: str) -> str | None:
    """A KMS key ARN in the stack's region, or None for SSE-S3 (AES256)."""
    if not text:
        return None
    key = qualified("kmsKeyArn")
    match = _KMS_KEY_ARN_RE.match(text)
    if match is None:
        raise ConfigError(
            f"{key}: must be a KMS key ARN like arn:aws:kms:{region}:123456789012:key/<key-id> "
            f"(not an alias), or empty for SSE-S3; got {text!r}"
        )
    if match.group(2) != region:
        raise ConfigError(
            f"{key}: the key is in {match.group(2)} but the stack deploys to aws:region {region}; "
            "S3 default encryption needs a key in the bucket's region"
        )
    return text


def parse_alarm_topic_arn(text: str | None, region: str) -> str | None:
    """A standard SNS topic in the stack's region, or None for alarms that notify nobody.

    Refused here rather than by AWS: CloudWatch rejects an alarm action in another region only
    during `up`, and it publishes without the message group ID a FIFO topic requires, so a FIFO
    topic would never deliver a notification.
    """
    if not text:
        return None
    key = qualified("alarmTopicArn")
    match = _SNS_TOPIC_ARN_RE.match(text)
    if match is None:
        raise ConfigError(
            f"{key}: must be an SNS topic ARN like arn:aws:sns:{region}:123456789012:<topic-name>, "
            f"or empty for alarms without notifications; got {text!r}"
        )
    if match.group(5):
        raise ConfigError(
            f"{key}: {text!r} is a FIFO topic, which CloudWatch alarms cannot publish to; use a standard topic"
        )
    if match.group(2) != region:
        raise ConfigError(
            f"{key}: the topic {text!r} is in {match.group(2)} but the stack deploys to aws:region {region}; "
            "CloudWatch alarms notify topics in their own region only"
        )
    return text


def parse_filter(raw: ConfigReader, key: str) -> str:
    value = raw(key) or ""
    size = len(value.encode())
    if size > MAX_FILTER_BYTES:
        raise ConfigError(
            f"{qualified(key)}: at most {MAX_FILTER_BYTES} bytes (an S3 key's limit), got {size} bytes "
            f"starting {value[:40]!r}"
        )
    if key == "uploadPrefix" and value.startswith("/"):
        raise ConfigError(f"{qualified(key)}: S3 keys do not start with '/', got {value!r}; use e.g. 'incoming/'")
    return value


def parse_reserved_concurrency(raw: ConfigReader) -> int:
    key = "reservedConcurrency"
    text = _required(raw, key)
    allowed = f"{UNRESERVED_CONCURRENCY} (no reservation) or an integer >= 1"
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{qualified(key)}: must be {allowed}, got {text!r}") from None
    if value != UNRESERVED_CONCURRENCY and value < 1:
        why = " (0 would throttle every upload)" if value == 0 else ""
        raise ConfigError(f"{qualified(key)}: must be {allowed}, got {value}{why}")
    return value


def minimum_memory_mb(pixel_limit: int, max_upload_bytes: int) -> int:
    """The least function memory that renders an upload at both limits without running out.

    One thread is counted: the handler runs fewer threads on a frame too large for all of them.
    """
    return render_memory_mb(pixel_limit, 1, max_upload_bytes)


def check_memory_for_limits(memory_mb: int, pixel_limit: int, max_upload_bytes: int) -> None:
    """An upload the limits admit must not run the function out of memory.

    Lambda kills an out-of-memory invocation, so the upload is retried and dead-lettered
    instead of being processed or quarantined.
    """
    need = minimum_memory_mb(pixel_limit, max_upload_bytes)
    if memory_mb >= need:
        return
    fitting_pixels = pixel_limit - math.ceil((need - memory_mb) * 2**20 / RENDER_BYTES_PER_PIXEL)
    # Only remedies that exist: Lambda's memory stops at MEMORY_RANGE_MB[1], and a pixel limit must stay positive.
    remedies = [f"memorySize >= {need}"] if need <= MEMORY_RANGE_MB[1] else []
    remedies += [f"pixelLimit <= {fitting_pixels}"] if fitting_pixels >= 1 else ["a smaller maxUploadBytes"]
    raise ConfigError(
        f"{qualified('memorySize')}: {memory_mb} MB is too little to render an image at "
        f"{qualified('pixelLimit')} {pixel_limit} uploaded in {qualified('maxUploadBytes')} {max_upload_bytes} bytes "
        f"(about {need} MB), and Lambda would kill the function on such an upload instead of quarantining it; "
        f"set {', or '.join(remedies)}"
    )


def parse_config(
    raw: ConfigReader,
    *,
    region: str,
    runtimes: Collection[str],
    architectures: Collection[str],
) -> PipelineSettings:
    """Validate the project's config, read key by key through `raw` (e.g. `pulumi.Config(NAMESPACE).get`).

    `runtimes`/`architectures` come from layer_build, the one definition of what a layer can be
    built for; `region` is `aws:region`, which a KMS key and an alarm topic must match.
    """
    settings = PipelineSettings(
        variants=parse_variants_config(_required(raw, "variants")),
        runtime=_choice(raw, "runtime", tuple(runtimes), str),
        architecture=_choice(raw, "architecture", tuple(architectures), str),
        memory_mb=_integer(raw, "memorySize", *MEMORY_RANGE_MB, "MB"),
        timeout_seconds=_integer(raw, "timeout", *TIMEOUT_RANGE_SECONDS, "seconds"),
        reserved_concurrency=parse_reserved_concurrency(raw),
        log_level=_choice(raw, "logLevel", LOG_LEVELS, str.upper),
        log_retention_days=_choice(raw, "logRetentionDays", LOG_RETENTION_DAYS, int),
        noncurrent_version_days=_integer(raw, "noncurrentVersionDays", 1, None, "days"),
        quarantine_expiration_days=_integer(raw, "quarantineExpirationDays", 1, None, "days"),
        dead_letter_retention_days=_integer(raw, "deadLetterRetentionDays", *DEAD_LETTER_RETENTION_RANGE_DAYS, "days"),
        max_event_age_seconds=_integer(raw, "maxEventAgeSeconds", *EVENT_AGE_RANGE_SECONDS, "seconds"),
        # The handler refuses a larger limit at cold start: Pillow will not open such frames at all.
        pixel_limit=_integer(raw, "pixelLimit", 1, MAX_PIXEL_LIMIT, "pixels"),
        max_upload_bytes=_integer(raw, "maxUploadBytes", 1, None, "bytes"),
        kms_key_arn=parse_kms_key_arn(_optional_text(raw, "kmsKeyArn"), region),
        alarm_topic_arn=parse_alarm_topic_arn(_optional_text(raw, "alarmTopicArn"), region),
        upload_prefix=parse_filter(raw, "uploadPrefix"),
        upload_suffix=parse_filter(raw, "uploadSuffix"),
        protect_data=_boolean(raw, "protectData"),
    )
    check_memory_for_limits(settings.memory_mb, settings.pixel_limit, settings.max_upload_bytes)
    return settings


@dataclass(frozen=True)
class LayerSource:
    """Where the Pillow layer comes from: a prebuilt zip, or the program's own (cached) build."""

    zip_path: str | None
    """`layerZip`: a prebuilt layer zip's path, used as built; None builds or reuses the cached layer."""
    bytecode: bool
    """`layerBytecode`: the program's build ships `.pyc` compiled by the runtime's Python version."""


def parse_layer_source(raw: ConfigReader) -> LayerSource:
    """`layerZip` and `layerBytecode`; the second only shapes a layer the program builds itself."""
    return LayerSource(zip_path=_optional_text(raw, "layerZip"), bytecode=_boolean(raw, "layerBytecode"))
