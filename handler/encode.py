"""Encoders: the codec settings every variant is written with, chosen by measurement.

Measured with `python -m bench` and per-encoder CPU time on every photo of
../shared/testdata/photos (2 cores, Pillow 13 with zlib-ng and libjpeg-turbo), not
on one photo only: a setting's size cost differs a lot between photos. "naive" is
Pillow's defaults as a tutorial uses them:

* PNG `compress_level=1`: 0.8 s instead of 2.8 s at level 6 on the 12 MP photo,
  3% *smaller* there (zlib-ng's level 1) but +1% to +21% on the other photos
  (the RGBA one most). Level 3 saves a few % more bytes for 1.4x the time.
* WebP `method=2`: 0.59 s instead of 1.18 s at method 4 on the 12 MP photo, for
  +1% to +4% bytes across the photos (full size and 1200 px). Method 0 is faster
  still (0.39 s) but costs +5% on one photo and +30% to +54% on the others.
* JPEG baseline with `optimize` (Huffman tables fitted to the image): identical
  pixels, 1% to 15% fewer bytes across the photos (only 1% on the 12 MP one), for
  ~70 ms more CPU on 12 MP, which runs beside the PNG encode that sets the wall
  time. Progressive saves ~8% more but costs 4x the encode time.
* AVIF `speed=8`: libavif's fast presets; AVIF is opt-in, not in any preset.

With these, the `default` preset's total output is ~0.98x the naive bytes on the
12 MP photo and up to ~1.14x on the others (PNG and WebP account for all of it).
Every output is stripped of metadata: no EXIF (so no GPS position and no
orientation tag), no XMP, no ICC profile (pixels are already sRGB).
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from handler.variants import VariantSpec

PNG_COMPRESS_LEVEL = 1
WEBP_METHOD = 2
JPEG_OPTIMIZE = True
AVIF_SPEED = 8


def _rgb(colour: str) -> tuple[int, int, int]:
    return (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16))


def flatten(image: Image.Image, background: str) -> Image.Image:
    """Composite an LA/RGBA frame onto an opaque `#rrggbb` background (RGB result)."""
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    flat = Image.new("RGB", rgba.size, _rgb(background))
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat


def prepare_for_format(image: Image.Image, spec: VariantSpec) -> Image.Image:
    """Bring a working-mode frame (L, LA, RGB, RGBA) to a mode the variant's codec stores."""
    if spec.format == "jpeg":
        return flatten(image, spec.background) if image.mode in ("LA", "RGBA") else image
    if spec.format in ("webp", "avif") and image.mode in ("L", "LA"):
        return image.convert("RGBA" if image.mode == "LA" else "RGB")
    return image


def _save_options(spec: VariantSpec) -> dict[str, Any]:
    if spec.format != "png" and spec.quality is None:
        # Specs built by parse_variants always have one; a hand-built VariantSpec may not.
        raise ValueError(f"variant {spec.name!r}: {spec.format} needs a quality 1..100, got None")
    if spec.format == "jpeg":
        return {"quality": spec.quality, "optimize": JPEG_OPTIMIZE}
    if spec.format == "webp":
        return {"quality": spec.quality, "method": WEBP_METHOD}
    if spec.format == "avif":
        return {"quality": spec.quality, "speed": AVIF_SPEED}
    return {"compress_level": PNG_COMPRESS_LEVEL}


def _bare_view(image: Image.Image) -> Image.Image:
    """A new Image object over the same pixels (no copy), without info/metadata.

    Pillow keeps per-call encoder state on the Image object while saving, so
    concurrent saves of one frame need one object each; and PNG/AVIF would copy
    an ICC profile (and more) from `info` into the output.
    """
    image.load()
    view = image._new(image.im)
    view.info = {}
    return view


def save_prepared(image: Image.Image, spec: VariantSpec) -> bytes:
    """Encode a frame already in a storable mode; carries no metadata into the output."""
    buffer = io.BytesIO()
    _bare_view(image).save(buffer, format=spec.format.upper(), **_save_options(spec))
    return buffer.getvalue()


def encode_variant(image: Image.Image, spec: VariantSpec) -> bytes:
    """Encode an already sized, upright, sRGB frame as `spec` describes (the codec floor's unit)."""
    return save_prepared(prepare_for_format(image, spec), spec)
