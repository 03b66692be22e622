"""Variant specs and presets: the one definition used by config, handler, CLI and bench.

Pure Python, no Pillow import, so the Pulumi program can validate stack config
with it and ship the same JSON to the function's environment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

Format = Literal["jpeg", "webp", "png", "avif"]
Fit = Literal["inside", "cover"]

FORMATS: tuple[str, ...] = ("jpeg", "webp", "png", "avif")
FITS: tuple[str, ...] = ("inside", "cover")
EXTENSIONS: dict[str, str] = {"jpeg": "jpg", "webp": "webp", "png": "png", "avif": "avif"}
CONTENT_TYPES: dict[str, str] = {
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "png": "image/png",
    "avif": "image/avif",
}
LOSSY_FORMATS = frozenset({"jpeg", "webp", "avif"})
MAX_DIMENSION = 16384
CODEC_MAX_SIDE: dict[str, int] = {
    "jpeg": 65500,  # libjpeg's JPEG_MAX_DIMENSION
    "webp": 16383,  # the 14-bit size fields of VP8/VP8L
    "avif": 32768,  # libavif encodes more, but its decoder (ours, browsers') refuses larger by default
    "png": 2**31 - 1,  # the PNG specification
}
"""Largest side each codec stores: a box above it is refused here, a larger full-size output is scaled into it."""
# Names become the first segment of output keys; reserved names would collide with
# the quarantine location or read as path tricks.
RESERVED_NAMES = frozenset({"quarantine"})
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_COLOUR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
_FIELDS = ("name", "format", "quality", "width", "height", "fit", "background")


class VariantError(ValueError):
    """A variant definition is invalid; the message names the offending field and value."""


@dataclass(frozen=True)
class VariantSpec:
    """One output rendition of an upload."""

    name: str
    """Key prefix of the output (`<name>/<source stem>.<ext>`): lowercase, digits, `-`, `_`."""
    format: Format
    """Output codec: jpeg, webp, png or avif."""
    quality: int | None = None
    """Encoder quality 1..100 for lossy formats; must be None for png (lossless)."""
    width: int | None = None
    """Bounding-box width in px; None with height None keeps the source size."""
    height: int | None = None
    """Bounding-box height in px; set together with width."""
    fit: Fit = "inside"
    """`inside` scales down to fit the box (never upscales); `cover` fills it and crops."""
    background: str = "#ffffff"
    """`#rrggbb` colour that alpha is flattened onto for formats without alpha (jpeg)."""

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    @property
    def box(self) -> tuple[int, int] | None:
        if self.width is None or self.height is None:
            return None
        return (self.width, self.height)


# Codec settings are not per variant: every variant is encoded with handler/encode.py's measured
# choices (PNG compress_level 1, WebP method 2, optimized baseline JPEG, AVIF speed 8). Size cost against
# Pillow's defaults across the shared photos: PNG -3% to +21%, WebP +1% to +4%, JPEG -1% to -15%.
PRESETS: dict[str, tuple[VariantSpec, ...]] = {
    # The original tutorial set: full-size renditions in each codec plus a small thumbnail.
    "default": (
        VariantSpec("jpeg-q85", "jpeg", quality=85),
        VariantSpec("jpeg-q60", "jpeg", quality=60),
        VariantSpec("webp", "webp", quality=85),
        VariantSpec("png", "png"),
        VariantSpec("thumbnail", "jpeg", quality=80, width=200, height=200, fit="inside"),
    ),
    # Web-delivery set: square thumbnail, two responsive widths and a WebP for modern browsers.
    "responsive": (
        VariantSpec("thumb", "jpeg", quality=80, width=150, height=150, fit="cover"),
        VariantSpec("medium", "jpeg", quality=85, width=600, height=600, fit="inside"),
        VariantSpec("large", "jpeg", quality=85, width=1200, height=1200, fit="inside"),
        VariantSpec("webp-1200", "webp", quality=80, width=1200, height=1200, fit="inside"),
    ),
}


def _positive_int(where: str, field: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise VariantError(f"{where}.{field}: must be an integer, got {value!r}")
    if not 1 <= value <= MAX_DIMENSION:
        raise VariantError(f"{where}.{field}: must be 1..{MAX_DIMENSION}, got {value}")
    return value


def spec_from_mapping(raw: Mapping[str, Any], where: str = "variant") -> VariantSpec:
    """Validate one variant mapping (from YAML or JSON) into a spec."""
    if not isinstance(raw, Mapping):
        raise VariantError(f"{where}: must be a mapping with keys {', '.join(_FIELDS)}, got {raw!r}")
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise VariantError(f"{where}: unknown field(s) {unknown}; allowed: {', '.join(_FIELDS)}")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise VariantError(f"{where}.name: must match {_NAME_RE.pattern} (lowercase, digits, '-', '_'), got {name!r}")
    where = f"{where} {name!r}"
    if name in RESERVED_NAMES:
        raise VariantError(f"{where}.name: {name!r} is reserved")
    fmt = raw.get("format")
    if fmt not in FORMATS:
        raise VariantError(f"{where}.format: must be one of {', '.join(FORMATS)}, got {fmt!r}")
    quality = raw.get("quality")
    if fmt in LOSSY_FORMATS:
        if quality is None:
            quality = 85
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
            raise VariantError(f"{where}.quality: must be an integer 1..100, got {quality!r}")
    elif quality is not None:
        raise VariantError(f"{where}.quality: {fmt} is lossless and takes no quality, got {quality!r}")
    width = _positive_int(where, "width", raw.get("width"))
    height = _positive_int(where, "height", raw.get("height"))
    for field, value in (("width", width), ("height", height)):
        if value is not None and value > CODEC_MAX_SIDE[fmt]:
            raise VariantError(f"{where}.{field}: {fmt} stores at most {CODEC_MAX_SIDE[fmt]} px a side, got {value}")
    if (width is None) != (height is None):
        raise VariantError(f"{where}: width and height must be set together, got {width}x{height}")
    fit = raw.get("fit", "inside")
    if fit not in FITS:
        raise VariantError(f"{where}.fit: must be one of {', '.join(FITS)}, got {fit!r}")
    if fit == "cover" and width is None:
        raise VariantError(f"{where}.fit: 'cover' needs width and height")
    background = raw.get("background", "#ffffff")
    if not isinstance(background, str) or not _COLOUR_RE.match(background):
        raise VariantError(f"{where}.background: must be a #rrggbb colour, got {background!r}")
    return VariantSpec(name, fmt, quality, width, height, fit, background.lower())


def parse_variants(value: str | Sequence[Mapping[str, Any]], where: str = "variants") -> tuple[VariantSpec, ...]:
    """Resolve a preset name or an explicit list of variant mappings into validated specs."""
    if isinstance(value, str):
        if value not in PRESETS:
            raise VariantError(f"{where}: unknown preset {value!r}; allowed: {', '.join(PRESETS)}")
        return PRESETS[value]
    if not isinstance(value, Sequence) or not value:
        raise VariantError(f"{where}: must be a preset name ({', '.join(PRESETS)}) or a non-empty list, got {value!r}")
    specs = tuple(spec_from_mapping(item, f"{where}[{i}]") for i, item in enumerate(value))
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise VariantError(f"{where}: duplicate variant name(s) {duplicates}")
    return specs


def variants_to_json(specs: Sequence[VariantSpec]) -> str:
    """Serialise specs for the function's VARIANTS environment variable (stable, compact)."""
    return json.dumps([asdict(s) for s in specs], separators=(",", ":"), sort_keys=True)


def variants_from_json(text: str, where: str = "VARIANTS") -> tuple[VariantSpec, ...]:
    """Inverse of `variants_to_json`; also accepts a bare preset name."""
    text = text.strip()
    if text in PRESETS:
        return PRESETS[text]
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise VariantError(
            f"{where}: {shown!r} is not a preset name ({', '.join(PRESETS)}) nor valid JSON: {exc}"
        ) from None
    return parse_variants(value, where)
