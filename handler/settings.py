"""The function's settings: environment variables set by the Pulumi program, validated once.

Environment variables
---------------------
PROCESSED_BUCKET
    Required. Bucket the variants are written to (`<variant>/<source stem>.<ext>`).
QUARANTINE_BUCKET
    Required. Private bucket rejected uploads are copied to, under their own key.
VARIANTS
    JSON list from `handler.variants.variants_to_json`, or a preset name. Default `default`.
LOG_LEVEL
    DEBUG, INFO, WARNING or ERROR. Default INFO.
PIXEL_LIMIT
    Largest width x height decoded, 1..178956970. Default 89478485.
MAX_UPLOAD_BYTES
    Larger uploads are quarantined (`too_large`) without being downloaded. Default 52428800 (50 MiB).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from handler.pipeline import DEFAULT_MAX_BYTES, DEFAULT_PIXEL_LIMIT, MAX_PIXEL_LIMIT
from handler.variants import VariantError, VariantSpec, variants_from_json

LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_VARIANTS = "default"
# S3 bucket naming rules (3-63 chars, lowercase letters, digits, dots, hyphens).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class SettingsError(ValueError):
    """An environment variable is missing or invalid; the message names it and the allowed values."""


@dataclass(frozen=True)
class Settings:
    """Validated configuration of one function container."""

    processed_bucket: str
    quarantine_bucket: str
    variants: tuple[VariantSpec, ...]
    log_level: str = "INFO"
    pixel_limit: int = DEFAULT_PIXEL_LIMIT
    max_upload_bytes: int = DEFAULT_MAX_BYTES


def _bucket(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise SettingsError(f"{name} is required: the name of an S3 bucket")
    if not _BUCKET_RE.match(value):
        raise SettingsError(f"{name}: {value!r} is not a valid S3 bucket name (3-63 of a-z, 0-9, '.', '-')")
    return value


def _integer(environ: Mapping[str, str], name: str, default: int, low: int, high: int | None) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    allowed = f"an integer {low}..{high}" if high is not None else f"an integer >= {low}"
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be {allowed}, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        raise SettingsError(f"{name} must be {allowed}, got {value}")
    return value


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings from `environ` (default: the process environment)."""
    environ = os.environ if environ is None else environ
    processed = _bucket(environ, "PROCESSED_BUCKET")
    quarantine = _bucket(environ, "QUARANTINE_BUCKET")
    if processed == quarantine:
        raise SettingsError(f"PROCESSED_BUCKET and QUARANTINE_BUCKET must differ, both are {processed!r}")
    try:
        variants = variants_from_json(environ.get("VARIANTS", "").strip() or DEFAULT_VARIANTS, "VARIANTS")
    except VariantError as exc:
        raise SettingsError(str(exc)) from None
    log_level = environ.get("LOG_LEVEL", "").strip().upper() or "INFO"
    if log_level not in LOG_LEVELS:
        raise SettingsError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {environ.get('LOG_LEVEL')!r}")
    return Settings(
        processed_bucket=processed,
        quarantine_bucket=quarantine,
        variants=variants,
        log_level=log_level,
        pixel_limit=_integer(environ, "PIXEL_LIMIT", DEFAULT_PIXEL_LIMIT, 1, MAX_PIXEL_LIMIT),
        max_upload_bytes=_integer(environ, "MAX_UPLOAD_BYTES", DEFAULT_MAX_BYTES, 1, None),
    )
