"""The codec floor: the least work any renderer of these variants must do, on one thread.

Decode the upload once, shrunk on load exactly as the pipeline decides (`shrink_on_load_size`), then
encode each variant from an image that is already oriented, converted and sized, with the
pipeline's own `encode_variant`. Orientation, colour management and resizing are left out, so
the pipeline's one-thread time over this floor is its overhead.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image, ImageOps

from handler.pipeline import shrink_on_load_size
from handler.variants import VariantSpec

from .naive import ALPHA_FORMATS

Encoder = Callable[[Image.Image, VariantSpec], bytes]


@dataclass(frozen=True)
class FloorCase:
    """One photo and preset, prepared outside the timed region."""

    data: bytes
    draft_size: tuple[int, int] | None
    """Size to ask the decoder for (source orientation), None when a full decode is needed."""
    sized: tuple[tuple[VariantSpec, Image.Image], ...]
    """Each variant's spec with its final pixels, ready to encode."""


def _final_pixels(image: Image.Image, spec: VariantSpec, size: tuple[int, int]) -> Image.Image:
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    mode = "RGBA" if spec.format in ALPHA_FORMATS and has_alpha else "RGB"
    converted = image.convert(mode)
    if spec.fit == "cover" and spec.box is not None:
        return ImageOps.fit(converted, size, Image.Resampling.LANCZOS)
    if converted.size == size:
        return converted
    return converted.resize(size, Image.Resampling.LANCZOS)


def prepare_floor(data: bytes, specs: Sequence[VariantSpec], sizes: Sequence[tuple[int, int]]) -> FloorCase:
    """Pre-size every variant to `sizes` (the pipeline's output dimensions), untimed."""
    with Image.open(io.BytesIO(data)) as source:
        draft_size = shrink_on_load_size(data, source, specs)
        oriented = ImageOps.exif_transpose(source)
    sized = tuple((spec, _final_pixels(oriented, spec, size)) for spec, size in zip(specs, sizes, strict=True))
    return FloorCase(data, draft_size, sized)


def run_floor(case: FloorCase, encode: Encoder) -> list[bytes]:
    """The timed part: one decode, then every encode, on this thread."""
    with Image.open(io.BytesIO(case.data)) as source:
        if case.draft_size is not None:
            source.draft(source.mode, case.draft_size)
        source.load()
    return [encode(image, spec) for spec, image in case.sized]
