"""Colour: bring any decoded frame to 8-bit L, LA, RGB or RGBA in sRGB.

Outputs are untagged sRGB (no ICC attached): browsers treat untagged images as
sRGB, so the embedded profile is converted away with LittleCMS rather than
carried along, and a 3 KB profile is not repeated in every thumbnail.
ImageCms is imported lazily: most uploads carry no profile, and the import
costs cold-start time.
"""

from __future__ import annotations

import functools
import io
import logging
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    from PIL import ImageCms

LOG = logging.getLogger(__name__)

WORKING_MODES = frozenset({"L", "LA", "RGB", "RGBA"})
_DEEP_GREY_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
# Pillow pixel mode that each ICC profile colour space describes.
_MODE_FOR_PROFILE_SPACE = {"RGB": "RGB", "GRAY": "L", "CMYK": "CMYK"}


def _to_eight_bit(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit grey and float frames to 8-bit L (Pillow's own convert clips at 255)."""
    if image.mode in _DEEP_GREY_MODES:
        # 16-bit samples: 65535 -> 255, proportionally.
        return image.convert("I").point(lambda value: value * (1 / 257)).convert("L")
    # "F": float samples, by TIFF convention 0.0..1.0.
    return image.point(lambda value: value * 255).convert("L")


def _has_transparency(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def to_working_mode(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> L, LA, RGB, RGBA, CMYK (CMYK is left for the ICC step)."""
    mode = image.mode
    if mode in WORKING_MODES and "transparency" not in image.info:
        return image
    if mode in _DEEP_GREY_MODES or mode == "F":
        return _to_eight_bit(image)
    if mode == "1":
        return image.convert("L")
    if mode == "CMYK":
        return image
    if mode in ("L", "La", "LA"):
        return image.convert("LA") if _has_transparency(image) else image.convert("L")
    return image.convert("RGBA") if _has_transparency(image) else image.convert("RGB")


@functools.lru_cache(maxsize=16)
def _transform_to_srgb(icc: bytes) -> tuple[ImageCms.ImageCmsTransform | None, str]:
    """LittleCMS transform from `icc` to sRGB RGB (None if it is sRGB already), and the pixel mode it takes."""
    from PIL import ImageCms  # noqa: PLC0415 - lazy: see module docstring

    profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    space = profile.profile.xcolor_space.strip()
    if space not in _MODE_FOR_PROFILE_SPACE:
        raise ValueError(f"ICC profile colour space {space!r} is not one of {', '.join(_MODE_FOR_PROFILE_SPACE)}")
    mode = _MODE_FOR_PROFILE_SPACE[space]
    description = (profile.profile.profile_description or "").strip()
    if mode == "RGB" and description.startswith("sRGB"):
        return None, mode
    srgb = ImageCms.createProfile("sRGB")
    return ImageCms.buildTransform(profile, srgb, mode, "RGB", renderingIntent=ImageCms.Intent.PERCEPTUAL), mode


def _without_profile(image: Image.Image) -> Image.Image:
    """Untagged pixels are taken as sRGB; CMYK without a profile gets Pillow's naive formula."""
    return image.convert("RGB") if image.mode == "CMYK" else image


def to_srgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    """Convert a decoded frame with optional embedded ICC profile to 8-bit sRGB (L, LA, RGB, RGBA).

    A profile LittleCMS cannot use (damaged, or for another colour space than
    the pixels) is logged and ignored: the pixels are then taken as sRGB, as a
    browser would. A grey profile on RGB pixels (Pillow widens 16-bit grey+alpha
    PNGs to RGBA) is applied to their grey values.
    """
    image = to_working_mode(image)
    if not icc:
        return _without_profile(image)
    has_alpha = image.mode in ("LA", "RGBA")
    colour_mode = image.mode[:-1] if has_alpha else image.mode
    try:
        transform, profile_mode = _transform_to_srgb(icc)
    except (OSError, ValueError, TypeError) as exc:
        # ImageCms.PyCMSError subclasses OSError.
        LOG.warning("ignoring unusable ICC profile (%d bytes): %s", len(icc), exc)
        return _without_profile(image)
    if profile_mode != colour_mode and (profile_mode, colour_mode) != ("L", "RGB"):
        LOG.warning("ignoring ICC profile for %s pixels on a %s image", profile_mode, image.mode)
        return _without_profile(image)
    if transform is None:
        return image
    colour = image if image.mode == profile_mode else image.convert(profile_mode)
    converted = transform.apply(colour)
    if not has_alpha:
        return converted
    return Image.merge("RGBA", (*converted.split(), image.getchannel("A")))
