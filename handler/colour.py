"""Colour: bring any decoded frame to 8-bit L, LA, RGB or RGBA in sRGB.

Outputs are untagged sRGB (no ICC attached): browsers treat untagged images as
sRGB, so the embedded profile is converted away with LittleCMS rather than
carried along, and a 3 KB profile is not repeated in every thumbnail.
ImageCms is imported lazily: most uploads carry no profile, and the import
costs cold-start time.

Deep samples are scaled to 8 bits, never clipped. 16-bit containers (PNG, TIFF
`I;16`) say their range; 32-bit integer and float samples (Pillow's `I` and `F`)
do not in practice: TIFF's float convention is 0.0..1.0, but Pillow itself
writes 8- and 16-bit data into 32-bit TIFFs (`convert("I")`, `convert("F")`).
For those the range is the smallest of 1.0 (float only), 8, 16 and 32 bits that
holds the brightest sample; signed 16-bit TIFF samples span 0..32767. A TIFF whose
PhotometricInterpretation is MinIsWhite counts its samples down from white: Pillow
inverts 1- to 8-bit ones as it unpacks them, the deep ones are inverted here.

An RGB profile is taken as sRGB, and its transform skipped, only when that transform would move no
probe colour by more than one level: a name says nothing (Krita's linear "sRGB-elle-V2-g10.icc" is
not sRGB). The probe costs ~0.6 ms the first time a container sees a profile, then a cache lookup.
"""

from __future__ import annotations

import functools
import io
import logging
import sys
from typing import TYPE_CHECKING

from PIL import Image, ImageChops, ImageMath

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from PIL import ImageCms

LOG = logging.getLogger(__name__)

WORKING_MODES = frozenset({"L", "LA", "RGB", "RGBA"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
# Pillow pixel mode that each ICC profile colour space describes.
_MODE_FOR_PROFILE_SPACE = {"RGB": "RGB", "GRAY": "L", "CMYK": "CMYK"}
# TIFF tags that say how wide and how signed the samples are.
_BITS_PER_SAMPLE = 258
_SAMPLE_FORMAT = 339
_SIGNED = 2
_PHOTOMETRIC_INTERPRETATION = 262
_MIN_IS_WHITE = 0
_INT32_MAX = 2**31 - 1
# With a pool, frames of at least this many pixels are transformed in horizontal bands of about
# _BAND_PIXELS each (at least two). Measured on 2 vCPUs, Display P3 -> sRGB, medians: 12 MP one call
# 184 ms, 2, 4 or 12 bands 108 ms; 1 MP 13.4 -> 10.2 ms; 0.25 MP 3.4 -> 1.7-3.3 ms (noisy); smaller
# frames have under a millisecond to win. Band sizes follow the frame, not the thread count, so a
# 6-vCPU function gets more bands to share out.
_MIN_BANDED_PIXELS = 250_000
_BAND_PIXELS = 1_000_000
# A transform that moves no probe colour further than this (in 8-bit levels) is skipped as sRGB to sRGB.
_SRGB_TOLERANCE = 1


def _first(value: object) -> object:
    return value[0] if isinstance(value, tuple) else value


def _tiff_sample_layout(image: Image.Image) -> tuple[int, bool] | None:
    """(bits, signed) of a TIFF's first sample, or None for other containers."""
    tags = getattr(image, "tag_v2", None)
    if tags is None or _BITS_PER_SAMPLE not in tags:
        return None
    return int(_first(tags[_BITS_PER_SAMPLE])), _first(tags.get(_SAMPLE_FORMAT, 1)) == _SIGNED  # type: ignore[call-overload]


def _min_is_white(image: Image.Image) -> bool:
    """Whether a TIFF's PhotometricInterpretation says sample 0 is white (a scanner's or a fax's grey).

    Only a tag that is present counts: without one, Pillow reads deep grey as MinIsBlack, as libtiff's RGBA
    reader reads any grey.
    """
    tags = getattr(image, "tag_v2", None)
    return tags is not None and tags.get(_PHOTOMETRIC_INTERPRETATION) == _MIN_IS_WHITE


def _int32_to_eight_bit(image: Image.Image) -> Image.Image:
    """Mode `I` (32-bit signed in Pillow) -> L, scaled from the range its samples use (see the module docstring)."""
    layout = _tiff_sample_layout(image)
    if layout == (16, True):
        return image.point(lambda value: value * (255 / 32767)).convert("L")
    low, high = image.getextrema()
    if layout == (32, False) and (low < 0 or high > 65535):
        # Unsigned 32-bit samples use their full range; those above 2**31 wrapped to negative in Pillow's
        # signed `I`. Either way the top byte of each sample is the 8-bit value.
        top = 3 if sys.byteorder == "little" else 0
        return Image.frombytes("L", image.size, image.tobytes()[top::4])
    maximum = next((m for m in (255, 65535) if high <= m), _INT32_MAX)
    return image.point(lambda value: value * (255 / maximum)).convert("L")


def _float_to_eight_bit(image: Image.Image) -> Image.Image:
    """Mode `F` -> L, scaled from 1.0, 255 or 65535 (the smallest that holds the brightest sample), or its maximum."""
    _, high = image.getextrema()
    maximum = next((m for m in (1.0, 255.0, 65535.0) if high <= m), high)
    return image.point(lambda value: value * (255 / maximum)).convert("L")


def _to_eight_bit(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit grey and float frames to 8-bit L, or LA when a tRNS value marks transparency.

    Pillow's own convert clips at 255 instead of scaling.
    """
    if image.mode in _SIXTEEN_BIT_MODES:
        # 16-bit samples: 65535 -> 255, proportionally.
        wide = image.convert("I")
        grey = wide.point(lambda value: value * (1 / 257)).convert("L")
        transparent = image.info.get("transparency")
        if not isinstance(transparent, int):
            return grey
        # PNG tRNS on 16-bit grey names one exact 16-bit value; compare before scaling, or neighbours vanish too.
        alpha = ImageMath.lambda_eval(lambda args: (args["a"] != transparent) * 255, a=wide).convert("L")
        return Image.merge("LA", (grey, alpha))
    if image.mode == "I":
        return _int32_to_eight_bit(image)
    return _float_to_eight_bit(image)


def _has_transparency(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _applicable_transparency(mode: str, value: object) -> bool:
    """Whether Pillow's conversions can apply `value` as the `transparency` of a `mode` frame: a palette's alphas
    (256 at most) or index, a grey sample, an RGB triple. Other modes ignore it."""
    if mode == "P":
        return (isinstance(value, bytes) and len(value) <= 256) or (isinstance(value, int) and 0 <= value <= 255)
    if mode == "RGB":
        return isinstance(value, tuple) and len(value) == 3 and all(_is_sample(sample) for sample in value)
    return mode not in ("1", "L", "I", *_SIXTEEN_BIT_MODES) or _is_sample(value)


def _is_sample(value: object) -> bool:
    return isinstance(value, int) and 0 <= value <= 0xFFFF


def to_working_mode(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> L, LA, RGB, RGBA, CMYK (CMYK is left for the ICC step).

    A `transparency` the container gave that Pillow cannot apply (a palette's longer than 256 entries raises) is
    logged and ignored, as libpng ignores a tRNS that does not fit the image.
    """
    mode = image.mode
    if "transparency" in image.info and not _applicable_transparency(mode, image.info["transparency"]):
        LOG.warning("ignoring transparency %.60r: it does not fit a %s frame", image.info["transparency"], mode)
        image = image.copy()
        del image.info["transparency"]
    if mode in WORKING_MODES and "transparency" not in image.info:
        return image
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        grey = _to_eight_bit(image)
        # Pillow unpacks 1- to 8-bit MinIsWhite samples inverted, deeper ones as stored: their negative.
        return ImageChops.invert(grey) if _min_is_white(image) else grey
    if mode == "CMYK":
        return image
    if mode in ("1", "L", "La", "LA"):
        return image.convert("LA") if _has_transparency(image) else image.convert("L")
    return image.convert("RGBA") if _has_transparency(image) else image.convert("RGB")


@functools.cache
def _probe() -> Image.Image:
    """Every grey level, each primary's ramp and a 6x6x6 cube of colours: one row of 1240 pixels."""
    ramps = [colour for v in range(256) for colour in ((v, v, v), (v, 0, 0), (0, v, 0), (0, 0, v))]
    levels = range(0, 256, 51)
    colours = ramps + [(r, g, b) for r in levels for g in levels for b in levels]
    return Image.frombytes("RGB", (len(colours), 1), bytes(value for colour in colours for value in colour))


def _is_srgb(profile: ImageCms.ImageCmsProfile, srgb: ImageCms.core.CmsProfile) -> bool:
    """Whether converting from the RGB `profile` to sRGB leaves every probe colour within `_SRGB_TOLERANCE`.

    Unoptimised, the probe transform builds in ~0.35 ms instead of ~1.8 ms; it only decides.
    """
    from PIL import ImageCms  # noqa: PLC0415 - lazy: see module docstring

    probe = _probe()
    transform = ImageCms.buildTransform(
        profile,
        srgb,
        "RGB",
        "RGB",
        renderingIntent=ImageCms.Intent.PERCEPTUAL,
        flags=ImageCms.Flags.NOCACHE | ImageCms.Flags.NOOPTIMIZE,
    )
    return max(ImageChops.difference(transform.apply(probe), probe).tobytes()) <= _SRGB_TOLERANCE


@functools.lru_cache(maxsize=16)
def _transform_to_srgb(icc: bytes) -> tuple[ImageCms.ImageCmsTransform | None, str]:
    """LittleCMS transform from `icc` to sRGB RGB (None if it is sRGB already), and the pixel mode it takes."""
    from PIL import ImageCms  # noqa: PLC0415 - lazy: see module docstring

    profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    space = profile.profile.xcolor_space.strip()
    if space not in _MODE_FOR_PROFILE_SPACE:
        raise ValueError(f"ICC profile colour space {space!r} is not one of {', '.join(_MODE_FOR_PROFILE_SPACE)}")
    mode = _MODE_FOR_PROFILE_SPACE[space]
    srgb = ImageCms.createProfile("sRGB")
    if mode == "RGB" and _is_srgb(profile, srgb):
        return None, mode
    # NOCACHE: LittleCMS's one-pixel cache is what makes a shared transform unsafe across threads; without
    # it cmsDoTransform is thread-safe, same pixels, and no slower in one call (12 MP, medians: 182-183 vs 184-187 ms).
    transform = ImageCms.buildTransform(
        profile, srgb, mode, "RGB", renderingIntent=ImageCms.Intent.PERCEPTUAL, flags=ImageCms.Flags.NOCACHE
    )
    return transform, mode


def _apply(transform: ImageCms.ImageCmsTransform, image: Image.Image, pool: Executor | None) -> Image.Image:
    """Run `transform` on `image`, large frames in bands on `pool` (Pillow releases the GIL while LittleCMS runs).

    Each pixel is transformed on its own, so the bands give the same bytes as one call.
    """
    width, height = image.size
    bands = min(height, max(2, width * height // _BAND_PIXELS))
    if pool is None or width * height < _MIN_BANDED_PIXELS or bands < 2:
        return transform.apply(image)
    rows = [(height * i // bands, height * (i + 1) // bands) for i in range(bands)]
    parts = pool.map(lambda r: transform.apply(image.crop((0, r[0], width, r[1]))), rows)
    result = Image.new(transform.output_mode, image.size)
    for (top, _), part in zip(rows, parts, strict=True):
        result.paste(part, (0, top))
    return result


def _is_grey(image: Image.Image) -> bool:
    """Whether an RGB or RGBA frame holds only greys (R = G = B), as when a decoder widened grey pixels.

    ~30 ms at 12 MP, paid only for a grey profile on RGB pixels.
    """
    red, green, blue = image.split()[:3]
    return ImageChops.difference(red, green).getbbox() is None and ImageChops.difference(green, blue).getbbox() is None


def _without_profile(image: Image.Image) -> Image.Image:
    """Untagged pixels are taken as sRGB; CMYK without a profile gets Pillow's naive formula."""
    return image.convert("RGB") if image.mode == "CMYK" else image


def to_srgb(image: Image.Image, icc: bytes | None, *, pool: Executor | None = None) -> Image.Image:
    """Convert a decoded frame with optional embedded ICC profile to 8-bit sRGB (L, LA, RGB, RGBA).

    With a `pool`, a large frame's profile transform (~15 ms per megapixel) is
    split across it; without one, no other thread is used. A profile LittleCMS
    cannot use (damaged, or for another colour space than the pixels) is logged
    and ignored: the pixels are then taken as sRGB, as a browser would. A grey
    profile on RGB pixels is such a mismatch, unless the pixels are all grey:
    Pillow widens 16-bit grey+alpha PNGs to RGBA, and the profile is then
    applied to their grey values.
    """
    image = to_working_mode(image)
    if not icc:
        return _without_profile(image)
    has_alpha = image.mode in ("LA", "RGBA")
    colour_mode = image.mode[:-1] if has_alpha else image.mode
    from PIL import ImageCms  # noqa: PLC0415 - lazy: see module docstring

    try:
        transform, profile_mode = _transform_to_srgb(icc)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
        # PyCMSError (not an OSError) when LittleCMS parses the header but cannot build a transform from the tags.
        LOG.warning("ignoring unusable ICC profile (%d bytes): %s", len(icc), exc)
        return _without_profile(image)
    widened_grey = (profile_mode, colour_mode) == ("L", "RGB") and _is_grey(image)
    if profile_mode != colour_mode and not widened_grey:
        LOG.warning("ignoring ICC profile for %s pixels on a %s image", profile_mode, image.mode)
        return _without_profile(image)
    if transform is None:
        return image
    colour = image if image.mode == profile_mode else image.convert(profile_mode)
    converted = _apply(transform, colour, pool)
    if not has_alpha:
        return converted
    return Image.merge("RGBA", (*converted.split(), image.getchannel("A")))
