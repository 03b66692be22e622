"""Output geometry: orientation and the size/crop each variant needs, as plain numbers.

Everything is computed in the *stored* pixel grid (before orientation), so the
pipeline can shrink first and rotate the small result last: rotating a 200 px
thumbnail is cheap, rotating a 12 MP frame is not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from PIL import ExifTags, Image

from handler.variants import VariantSpec

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


def read_orientation(image: Image.Image) -> int:
    """EXIF orientation 1..8 (Pillow's getexif also reads XMP's `tiff:Orientation`); 1 when absent.

    Damaged EXIF must not sink an otherwise good photo: it is logged and treated as upright.
    """
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except (SyntaxError, ValueError, OSError, TypeError, KeyError, IndexError) as exc:
        LOG.warning("unreadable EXIF, treating image as upright: %s", exc)
        return 1
    if value not in range(1, 9):
        LOG.warning("EXIF orientation %r is not 1..8, treating image as upright", value)
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


def plan_variant(source_size: tuple[int, int], spec: VariantSpec, orientation: int) -> Plan:
    """Size (and crop) of `spec` for a stored frame of `source_size` shown with `orientation`."""
    width, height = source_size
    box = spec.box
    if box is None:
        return Plan((width, height), None)
    box_w, box_h = (box[1], box[0]) if orientation in _SWAPS_AXES else box
    if spec.fit == "inside":
        scale = min(box_w / width, box_h / height)
        if scale >= 1:
            return Plan((width, height), None)
        return Plan((max(1, round(width * scale)), max(1, round(height * scale))), None)
    # cover: scale so the box is filled, then keep its centred window (may upscale tiny inputs).
    scale = max(box_w / width, box_h / height)
    crop_w, crop_h = box_w / scale, box_h / scale
    left, top = (width - crop_w) / 2, (height - crop_h) / 2
    return Plan((box_w, box_h), (left, top, left + crop_w, top + crop_h))


def output_size(plan: Plan, orientation: int) -> tuple[int, int]:
    """Size of the variant as the user sees it, after the orientation transpose."""
    width, height = plan.stored_size
    return (height, width) if orientation in _SWAPS_AXES else (width, height)
