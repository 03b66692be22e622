"""Output geometry: orientation and the size/crop each variant needs, as plain numbers.

Everything is computed in the *stored* pixel grid (before orientation), so the
pipeline can shrink first and rotate the small result last: rotating a 200 px
thumbnail is cheap, rotating a 12 MP frame is not.

No variant is planned larger than its codec can store (`CODEC_MAX_SIDE`): a
full-size WebP of a 20000x1 panorama is scaled down to 16383 px wide, keeping
its aspect, and logged; the alternative is an encoder error for an upload that
is perfectly valid.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from PIL import ExifTags, Image

from handler.variants import CODEC_MAX_SIDE, VariantSpec

LOG = logging.getLogger(__name__)

# EXIF orientation -> the transpose that makes the stored pixels upright.
TRANSPOSE_FOR_ORIENTATION: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = frozenset({5, 6, 7, 8})
# What Pillow's EXIF reader raises on damaged EXIF: such a photo is still good, taken as upright.
EXIF_ERRORS = (SyntaxError, ValueError, OSError, TypeError, KeyError, IndexError)
_XMP_ORIENTATION = re.compile(rb"tiff:Orientation(?:=[\"']|>)\s*(\d+)")
_OUT_OF_RANGE = 10**9
"""Stands for an XMP orientation of more than nine digits: logged and ignored like any other out of 1..8."""


def _xmp_orientation(image: Image.Image) -> int | None:
    """`tiff:Orientation` from the XMP packet (attribute or element form), or None."""
    for key in ("xmp", "XML:com.adobe.xmp"):
        packet = image.info.get(key)
        if isinstance(packet, str):
            packet = packet.encode()
        if isinstance(packet, bytes) and (match := _XMP_ORIENTATION.search(packet)):
            # int() refuses over 4300 digits (ValueError, a crash here); past nine, any value is out of range.
            digits = match[1].lstrip(b"0") or b"0"
            return int(digits) if len(digits) <= 9 else _OUT_OF_RANGE
    return None


def read_orientation(image: Image.Image) -> int:
    """EXIF orientation 1..8, else XMP's `tiff:Orientation`; 1 when absent.

    Pillow's getexif also falls back to XMP, but not once a TIFF is decoded (it
    reloads the tags then), so the XMP packet is read here too. Damaged EXIF must
    not sink an otherwise good photo: it is logged and treated as absent.
    """
    try:
        value = image.getexif().get(ExifTags.Base.Orientation)
    except EXIF_ERRORS as exc:
        LOG.warning("unreadable EXIF, ignoring it: %s", exc)
        value = None
    if value is None:
        value = _xmp_orientation(image)
    if value is None:
        return 1
    if value not in range(1, 9):
        LOG.warning("orientation %r is not 1..8, treating image as upright", value)
        return 1
    return int(value)


@dataclass(frozen=True)
class Plan:
    """How to make one variant from the stored frame (sizes in the stored grid)."""

    stored_size: tuple[int, int]
    """Size to resample to, before the orientation transpose."""
    crop: tuple[float, float, float, float] | None
    """Region of the full stored frame to use (for `cover`), or None for all of it."""

    @property
    def pixels(self) -> int:
        return self.stored_size[0] * self.stored_size[1]


def _box_and_fit(spec: VariantSpec, source_size: tuple[int, int]) -> tuple[tuple[int, int] | None, str]:
    """The box (None: keep the source size) and fit to plan with: the spec's, shrunk to what its codec stores."""
    limit = CODEC_MAX_SIDE[spec.format]
    box, fit = spec.box, spec.fit
    if box is None:
        if max(source_size) <= limit:
            return None, fit
        box, fit = (limit, limit), "inside"
    elif max(box) > limit:
        scale = limit / max(box)
        box = (max(1, min(limit, round(box[0] * scale))), max(1, min(limit, round(box[1] * scale))))
    else:
        return box, fit
    LOG.warning("variant %r: %s stores at most %d px a side; planned within %dx%d", spec.name, spec.format, limit, *box)
    return box, fit


def plan_variant(source_size: tuple[int, int], spec: VariantSpec, orientation: int) -> Plan:
    """Size (and crop) of `spec` for a stored frame of `source_size` shown with `orientation`."""
    width, height = source_size
    box, fit = _box_and_fit(spec, source_size)
    if box is None:
        return Plan((width, height), None)
    box_w, box_h = (box[1], box[0]) if orientation in _SWAPS_AXES else box
    if fit == "inside":
        scale = min(box_w / width, box_h / height)
        if scale >= 1:
            return Plan((width, height), None)
        return Plan((max(1, round(width * scale)), max(1, round(height * scale))), None)
    # cover: scale so the box is filled, then keep its centred window (may upscale tiny inputs).
    # box / scale does not round-trip in floating point (4624x3468 to 150x150 gives top = -2e-13),
    # and Pillow refuses a window even a hair outside the frame, so it is clamped to the frame.
    scale = max(box_w / width, box_h / height)
    crop_w, crop_h = min(width, box_w / scale), min(height, box_h / scale)
    left, top = max(0.0, (width - crop_w) / 2), max(0.0, (height - crop_h) / 2)
    return Plan((box_w, box_h), (left, top, min(width, left + crop_w), min(height, top + crop_h)))


def output_size(plan: Plan, orientation: int) -> tuple[int, int]:
    """Size of the variant as the user sees it, after the orientation transpose."""
    width, height = plan.stored_size
    return (height, width) if orientation in _SWAPS_AXES else (width, height)
