"""The baseline: a tutorial-style Pillow renderer, the code the pipeline must beat.

It does what the common blog-post handlers do, on purpose: every variant opens and decodes
the upload again, applies the EXIF orientation, converts, shrinks with `thumbnail` or
`ImageOps.fit`, and saves with Pillow's default encoder settings (PNG level 6, WebP method 4,
baseline JPEG), one variant after the other on one thread. It produces the same variants with
the same dimensions as the pipeline, so the time and byte ratios compare equal work.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageOps

from handler.variants import VariantSpec

PILLOW_FORMATS: dict[str, str] = {"jpeg": "JPEG", "webp": "WEBP", "png": "PNG", "avif": "AVIF"}
ALPHA_FORMATS = frozenset({"webp", "png", "avif"})


@dataclass(frozen=True)
class NaiveVariant:
    """One encoded output of the baseline, shaped like the pipeline's `RenderedVariant`."""

    name: str
    format: str
    data: bytes
    width: int
    height: int


def _tutorial_mode(image: Image.Image, spec: VariantSpec) -> Image.Image:
    """Convert as tutorials do: RGB for JPEG, RGBA kept where the format has alpha."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if spec.format in ALPHA_FORMATS and has_alpha:
        return image if image.mode == "RGBA" else image.convert("RGBA")
    return image if image.mode == "RGB" else image.convert("RGB")


def render_variant_naively(data: bytes, spec: VariantSpec) -> NaiveVariant:
    """Decode the upload from scratch and produce one variant, tutorial style."""
    image = Image.open(io.BytesIO(data))
    image = ImageOps.exif_transpose(image)
    image = _tutorial_mode(image, spec)
    if spec.box is not None:
        if spec.fit == "cover":
            image = ImageOps.fit(image, spec.box, Image.Resampling.LANCZOS)
        else:
            image.thumbnail(spec.box, Image.Resampling.LANCZOS)
    options = {"quality": spec.quality} if spec.quality is not None else {}
    buffer = io.BytesIO()
    image.save(buffer, PILLOW_FORMATS[spec.format], **options)
    return NaiveVariant(spec.name, spec.format, buffer.getvalue(), image.width, image.height)


def render_naively(data: bytes, specs: Sequence[VariantSpec]) -> list[NaiveVariant]:
    """Render every variant independently, one after the other."""
    return [render_variant_naively(data, spec) for spec in specs]
