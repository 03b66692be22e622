"""Image quality guard: speed must not change what users get beyond the documented size cost.

Each variant, from the pipeline and from the baseline, is compared with a reference rendering
of the same size made the slow, careful way: full decode, EXIF orientation, ICC profile
converted to sRGB, alpha flattened onto the variant's background, one Lanczos resize from full
resolution, no lossy encode. PSNR against that reference shows whether the pipeline's shortcuts
(shrink-on-load, resizing from an intermediate, fast encoder settings) cost visible quality.
"""

from __future__ import annotations

import io
import math

from PIL import Image, ImageChops, ImageCms, ImageOps, ImageStat

from handler.variants import VariantSpec

IDENTICAL_DB = 99.0
"""Reported for pixel-identical images (PSNR is infinite)."""


def reference_frame(data: bytes) -> Image.Image:
    """The upload fully decoded, upright and in sRGB (RGB or RGBA)."""
    with Image.open(io.BytesIO(data)) as source:
        icc = source.info.get("icc_profile")
        image = ImageOps.exif_transpose(source)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    image = image.convert("RGBA" if has_alpha else "RGB")
    if icc:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        image = ImageCms.profileToProfile(image, profile, ImageCms.createProfile("sRGB"), outputMode=image.mode)
    return image


def _flattened(image: Image.Image, background: str) -> Image.Image:
    """RGB as a viewer shows it: alpha composited onto the variant's background colour."""
    if image.mode not in ("RGBA", "LA", "PA"):
        return image.convert("RGB")
    canvas = Image.new("RGB", image.size, background)
    canvas.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
    return canvas


def reference_variant(frame: Image.Image, spec: VariantSpec, size: tuple[int, int]) -> Image.Image:
    """The reference for one variant at the size the pipeline produced."""
    if spec.fit == "cover" and spec.box is not None:
        sized = ImageOps.fit(frame, size, Image.Resampling.LANCZOS)
    elif frame.size == size:
        sized = frame
    else:
        sized = frame.resize(size, Image.Resampling.LANCZOS)
    return _flattened(sized, spec.background)


def psnr_db(encoded: bytes, reference: Image.Image, spec: VariantSpec) -> float | None:
    """PSNR of an encoded variant against its reference; None when their sizes differ."""
    with Image.open(io.BytesIO(encoded)) as decoded:
        if decoded.size != reference.size:
            return None
        difference = ImageChops.difference(_flattened(decoded, spec.background), reference)
    mean_square = sum(rms**2 for rms in ImageStat.Stat(difference).rms) / 3
    if mean_square == 0:
        return IDENTICAL_DB
    return round(min(IDENTICAL_DB, 10 * math.log10(255**2 / mean_square)), 1)
