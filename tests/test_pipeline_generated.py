"""A generated adversarial corpus for the pure pipeline: every mode, container, orientation, profile, geometry,
bomb and kind of damage we could think of, built in memory (Pillow plus byte surgery), so no binary fixture is
committed and the sample in ../shared/testdata/hostile is not the only thing the policy is tested on.

Each processed upload is rendered with the `default` and `responsive` presets, inline and on a thread pool, and
checked for what users rely on: every variant present and decodable in its declared format, dimensions as the
spec demands, upright, sRGB colours of the four quadrants of a known picture, alpha kept or flattened as the
codec needs, and no metadata (EXIF, GPS, XMP, comments, ICC) carried over. Refused uploads must be refused
with their classified reason, quickly, and damaged ones never escape as anything but `Rejected` or a valid render.
"""

from __future__ import annotations

import functools
import io
import logging
import random
import struct
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
from PIL import ExifTags, Image, ImageCms, ImageFile, ImageStat, PngImagePlugin

from handler import sniff
from handler.pipeline import DEFAULT_PIXEL_LIMIT, Rejected, RenderedVariant, render
from handler.variants import CONTENT_TYPES, EXTENSIONS, PRESETS, VariantSpec
from tests.conftest import HOSTILE_DIR

W, H = 64, 48
"""Stored size of the generated pictures: small, so the corpus stays fast; not square, so a turn shows."""
TIMEOUT_S = 20.0
"""A hang guard, not a speed check (speed is bench/'s job): a decoder stuck in C fails its case, not the run."""
CANARY = b"CANARY-7f3a"
"""Planted in every metadata field of the inputs; must never appear in an output's bytes."""

Colour = tuple[int, int, int, int]
# The picture: four flat quadrants (upright top-left, top-right, bottom-left, bottom-right), distinct in every
# channel so that any turn, flip, channel swap, clip or missing colour conversion shows in the quadrant means.
RGB_QUADS = ((220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 230, 230))
GREY_QUADS = (30, 100, 170, 240)
BILEVEL_QUADS = (0, 255, 255, 255)
ALPHA_QUADS = (255, 0, 255, 128)  # top-right transparent, bottom-right half

# EXIF orientation -> the transpose that turns the *upright* picture into the stored one (the inverse of what a
# viewer applies). Written from the EXIF definition, independent of handler.geometry.
STORE_FOR_ORIENTATION = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # viewer turns 90 degrees clockwise, so the stored picture is turned anticlockwise
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


# --- building blocks --------------------------------------------------------------------------


def quadrants(mode: str, values: Sequence[object], size: tuple[int, int] = (W, H)) -> Image.Image:
    image = Image.new(mode, size)
    w, h = size
    for box, value in zip(
        ((0, 0, w // 2, h // 2), (w // 2, 0, w, h // 2), (0, h // 2, w // 2, h), (w // 2, h // 2, w, h)),
        values,
        strict=True,
    ):
        image.paste(value, box)  # type: ignore[arg-type]
    return image


def rgb_picture() -> Image.Image:
    return quadrants("RGB", RGB_QUADS)


def rgba_picture() -> Image.Image:
    return Image.merge("RGBA", (*rgb_picture().split(), quadrants("L", ALPHA_QUADS)))


def grey_picture() -> Image.Image:
    return quadrants("L", GREY_QUADS)


def palette_picture() -> Image.Image:
    image = quadrants("P", range(4))
    image.putpalette([c for rgb in RGB_QUADS for c in rgb])
    return image


def quads_of(values: Sequence[object], alpha: Sequence[int] | None = None) -> tuple[Colour, ...]:
    """Expected upright quadrant colours as RGBA."""
    alpha = alpha or (255,) * 4
    out = []
    for value, a in zip(values, alpha, strict=True):
        rgb = (value,) * 3 if isinstance(value, int) else tuple(value)  # type: ignore[arg-type]
        out.append((*rgb, a))
    return tuple(out)  # type: ignore[return-value]


RGB_EXPECT = quads_of(RGB_QUADS)
RGBA_EXPECT = quads_of(RGB_QUADS, ALPHA_QUADS)
GREY_EXPECT = quads_of(GREY_QUADS)


def encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def exif_bytes(orientation: object = None, *, gps: bool = False, **tags: object) -> bytes:
    exif = Image.Exif()
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    for name, value in tags.items():
        exif[ExifTags.Base[name]] = value
    if gps:
        gps_ifd = exif.get_ifd(ExifTags.IFD.GPSInfo)
        gps_ifd[ExifTags.GPS.GPSLatitudeRef] = "N"
        gps_ifd[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 24.0)
        gps_ifd[ExifTags.GPS.GPSAreaInformation] = CANARY.decode()
    return exif.tobytes()


def xmp_packet(orientation: int | None = None) -> bytes:
    attribute = f' tiff:Orientation="{orientation}"' if orientation is not None else ""
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/"'
        f'{attribute} dc:source="{CANARY.decode()}"/></rdf:RDF></x:xmpmeta>'
    ).encode()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_file(
    size: tuple[int, int], depth: int, colour_type: int, rows: Sequence[bytes], *, before: bytes = b""
) -> bytes:
    """A PNG from raw rows (filter type 0): for bit depths and chunks Pillow's writer does not produce."""
    ihdr = struct.pack(">IIBBBBB", *size, depth, colour_type, 0, 0, 0)
    idat = zlib.compress(b"".join(b"\0" + row for row in rows))
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + before + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def rows_of(image: Image.Image, pack: Callable[[object], bytes]) -> list[bytes]:
    return [b"".join(pack(image.getpixel((x, y))) for x in range(image.width)) for y in range(image.height)]


def tiff_file(
    size: tuple[int, int],
    bits: Sequence[int],
    pixels: bytes,
    *,
    photometric: int,
    sample_format: int = 1,
    extra_samples: Sequence[int] = (),
    big_endian: bool = False,
    compression: int = 1,
    extra_tags: Sequence[tuple[int, int, Sequence[int]]] = (),
) -> bytes:
    """A one-strip TIFF (uncompressed unless told), for sample layouts Pillow's writer does not produce.

    `extra_tags` adds (tag, type, values) fields, such as YCbCrSubSampling: SHORT 3, LONG 4 or whole-number RATIONAL 5.
    """
    order = ">" if big_endian else "<"
    entries: list[tuple[int, int, Sequence[int] | bytes]] = [
        (256, 4, [size[0]]),
        (257, 4, [size[1]]),
        (258, 3, list(bits)),
        (259, 3, [compression]),
        (262, 3, [photometric]),
        (273, 4, [0]),  # patched below
        (277, 3, [len(bits)]),
        (278, 4, [size[1]]),
        (279, 4, [len(pixels)]),
        (284, 3, [1]),
        (339, 3, [sample_format] * len(bits)),
        *[(338, 3, list(extra_samples))] * bool(extra_samples),
        *extra_tags,
    ]
    entries.sort(key=lambda e: e[0])
    width = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1}
    integers = {3: "H", 4: "I", 5: "II"}  # a RATIONAL (5) here is a whole number: n/1
    ifd_size = 2 + 12 * len(entries) + 4
    data_at = 8 + ifd_size
    blobs = b""
    packed = []
    for tag, kind, values in entries:
        raw = (
            bytes(values)
            if kind in (1, 2, 7)
            else b"".join(struct.pack(order + integers[kind], v, *[1] * (kind == 5)) for v in values)
        )
        if len(raw) <= 4:
            packed.append((tag, kind, len(raw) // width[kind], raw.ljust(4, b"\0")))
        else:
            packed.append((tag, kind, len(raw) // width[kind], struct.pack(order + "I", data_at + len(blobs))))
            blobs += raw + b"\0" * (len(raw) % 2)
    pixels_at = data_at + len(blobs)
    ifd = struct.pack(order + "H", len(packed))
    for tag, kind, count, value in packed:
        field = struct.pack(order + "I", pixels_at) if tag == 273 else value
        ifd += struct.pack(order + "HHI", tag, kind, count) + field
    ifd += b"\0\0\0\0"
    header = (b"MM\0*" if big_endian else b"II*\0") + struct.pack(order + "I", 8)
    return header + ifd + blobs + pixels


def bmp_file(
    size: tuple[int, int],
    bpp: int,
    pixels: bytes,
    *,
    compression: int = 0,
    palette: Sequence[tuple[int, int, int]] = (),
    masks: Sequence[int] = (),
    top_down: bool = False,
) -> bytes:
    """A BITMAPINFOHEADER (or V4 with masks) BMP, for RLE, 4/16-bit and alpha-mask files Pillow does not write."""
    header_size = 108 if masks else 40
    info = struct.pack(
        "<IiiHHIIiiII",
        header_size,
        size[0],
        -size[1] if top_down else size[1],
        1,
        bpp,
        compression,
        len(pixels),
        2835,
        2835,
        len(palette),
        0,
    )
    if masks:
        info += struct.pack("<4I", *masks) + b"sRGB" + b"\0" * 48
    table = b"".join(bytes((b, g, r, 0)) for r, g, b in palette)
    offset = 14 + len(info) + len(table)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + table + pixels


def bmp_rows(image: Image.Image, pack: Callable[[list[object]], bytes]) -> bytes:
    """Bottom-up rows, each padded to 4 bytes."""
    out = b""
    for y in reversed(range(image.height)):
        row = pack([image.getpixel((x, y)) for x in range(image.width)])
        out += row + b"\0" * (-len(row) % 4)
    return out


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def icc_profile(space: bytes, description: str, gamma: float, colorants: Sequence[Sequence[float]] = ()) -> bytes:
    """A v2 matrix/TRC display profile (RGB) or gamma profile (GRAY), for Adobe RGB, ProPhoto or P3-like tests."""
    text = description.encode() + b"\0"
    xyz = b"XYZ \0\0\0\0"
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    tags: list[tuple[bytes, bytes]] = [
        (b"desc", b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + b"\0" * 78),
        (b"cprt", b"text\0\0\0\0no copyright\0"),
        (b"wtpt", xyz + _s15(0.9642) + _s15(1.0) + _s15(0.8249)),
    ]
    if space == b"GRAY":
        tags.append((b"kTRC", curve))
    else:
        for name, column in zip((b"rXYZ", b"gXYZ", b"bXYZ"), colorants, strict=True):
            tags.append((name, xyz + b"".join(_s15(v) for v in column)))
        tags += [(b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    table, blob = b"", b""
    start = 128 + 4 + 12 * len(tags)
    for name, data in tags:
        table += name + struct.pack(">II", start + len(blob), len(data))
        blob += data + b"\0" * (-len(data) % 4)
    body = struct.pack(">I", len(tags)) + table + blob
    header = (
        struct.pack(">I", 128 + len(body))
        + b"lcms"
        + struct.pack(">I", 0x02100000)
        + b"mntr"
        + space.ljust(4)
        + b"XYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 24
        + struct.pack(">I", 0)
        + _s15(0.9642)
        + _s15(1.0)
        + _s15(0.8249)
        + b"\0" * 48
    )
    return header + body


ADOBE_RGB = icc_profile(
    b"RGB",
    "Adobe RGB (1998) lookalike",
    563 / 256,
    ((0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446)),
)
PROPHOTO = icc_profile(
    b"RGB", "ProPhoto lookalike", 1.8, ((0.7977, 0.2880, 0.0), (0.1352, 0.7119, 0.0), (0.0313, 0.0001, 0.8249))
)
DISPLAY_P3 = icc_profile(
    b"RGB", "Display P3 lookalike", 2.2, ((0.5151, 0.2412, -0.0011), (0.2920, 0.6922, 0.0419), (0.1571, 0.0666, 0.7841))
)
GREY_GAMMA_1 = icc_profile(b"GRAY", "Linear grey", 1.0)


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def lab_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()


def hostile(name: str) -> bytes:
    return (HOSTILE_DIR / name).read_bytes()


def cmyk_profile() -> bytes:
    return Image.open(HOSTILE_DIR / "sharp_CMYK_ycck_with_profile.jpg").info["icc_profile"]


def through_profile(expect: Sequence[Colour], icc: bytes, mode: str = "RGB") -> tuple[Colour, ...]:
    """What LittleCMS makes of the quadrant colours in `icc`, perceptual intent (as a browser would show them)."""
    if mode == "L":
        swatch = Image.new("L", (4, 1))
        swatch.putdata([c[0] for c in expect])
    else:
        swatch = Image.new("RGB", (4, 1))
        swatch.putdata([c[:3] for c in expect])
    converted = ImageCms.profileToProfile(
        swatch,
        ImageCms.ImageCmsProfile(io.BytesIO(icc)),
        ImageCms.createProfile("sRGB"),
        outputMode="RGB",
        renderingIntent=ImageCms.Intent.PERCEPTUAL,
    )
    return tuple((*converted.getpixel((i, 0)), c[3]) for i, c in enumerate(expect))  # type: ignore[misc]


def stored(image: Image.Image, orientation: int) -> Image.Image:
    transpose = STORE_FOR_ORIENTATION.get(orientation)
    return image.transpose(transpose) if transpose is not None else image


# --- the corpus of uploads that must be processed ---------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    """A generated upload that must be rendered, and what its variants must show."""

    id: str
    build: Callable[[], bytes]
    size: tuple[int, int] | None = (W, H)
    """Upright size; None when only the decoder knows it (the HEIF sample)."""
    quads: tuple[Colour, ...] | None = RGB_EXPECT
    """Expected upright sRGB quadrant colours (RGBA), or None for pictures that are not the four quadrants."""
    tolerance: int = 14
    icc_warning: bool = False
    """The upload carries a profile that must be ignored with a logged warning."""

    @property
    def alpha(self) -> bool:
        return self.quads is not None and any(c[3] < 255 for c in self.quads)


PROCESS: list[Upload] = []


def process(id: str, build: Callable[[], bytes], **kwargs: object) -> None:
    PROCESS.append(Upload(id, build, **kwargs))  # type: ignore[arg-type]


def p(fn: Callable[..., bytes], *args: object, **kwargs: object) -> Callable[[], bytes]:
    return functools.partial(fn, *args, **kwargs)


def _save(make: Callable[[], Image.Image], fmt: str, **params: object) -> bytes:
    return encoded(make(), fmt, **params)


def _mode(make: Callable[[], Image.Image], mode: str) -> Callable[[], Image.Image]:
    return lambda: make().convert(mode)


def _deep_grey(mode: str) -> Image.Image:
    """The grey quadrants as 16-bit samples (v * 257), in `mode`."""
    return grey_picture().convert("I").point(lambda v: v * 257).convert(mode)


def _float_grey() -> Image.Image:
    return grey_picture().convert("F").point(lambda v: v / 255)


def _palette_trns() -> Image.Image:
    image = palette_picture()
    image.info["transparency"] = 1
    return image


def _palette_alpha() -> Image.Image:
    image = palette_picture().convert("PA")
    image.putalpha(quadrants("L", ALPHA_QUADS))
    return image


def _grey_alpha(mode: str = "LA") -> Image.Image:
    return Image.merge("LA", (grey_picture(), quadrants("L", ALPHA_QUADS))).convert(mode)


PA_EXPECT = RGBA_EXPECT
PT_EXPECT = quads_of(RGB_QUADS, (255, 0, 255, 255))
LA_EXPECT = quads_of(GREY_QUADS, ALPHA_QUADS)
BILEVEL_EXPECT = quads_of(BILEVEL_QUADS)

# Pillow modes in every container whose writer takes them.
for fmt, params in (
    ("PNG", {}),
    ("TIFF", {}),
    ("TIFF", {"compression": "tiff_lzw"}),
    ("TIFF", {"compression": "packbits"}),
    ("TIFF", {"compression": "tiff_adobe_deflate"}),
    ("BMP", {}),
    ("GIF", {}),
    ("WEBP", {"lossless": True}),
    ("WEBP", {"quality": 95}),
    ("AVIF", {"quality": 95}),
    ("JPEG", {"quality": 95}),
):
    tag = f"{fmt.lower()}-{'-'.join(str(v) for v in params.values())}".rstrip("-")
    writable = {
        "PNG": "1 L LA P Pt RGB RGBA I;16 I;16B",
        "TIFF": "1 L LA P PA RGB RGBA RGBX CMYK YCbCr LAB I I;16 I;16B F I-8bit-values F-8bit-values F-16bit-values",
        "BMP": "1 L P RGB",
        "GIF": "1 L P Pt RGB",
        "WEBP": "L LA RGB RGBA RGBa",
        "AVIF": "L RGB RGBA",
        "JPEG": "1 L RGB CMYK YCbCr",
    }[fmt].split()
    lossy = fmt in ("AVIF", "JPEG") or params.get("quality") is not None
    if params.get("compression") and fmt == "TIFF":
        writable = [m for m in writable if m in ("1", "L", "RGB", "RGBA", "CMYK", "I;16")]
    makers: dict[str, tuple[Callable[[], Image.Image], tuple[Colour, ...]]] = {
        "1": (lambda: quadrants("1", BILEVEL_QUADS), BILEVEL_EXPECT),
        "L": (grey_picture, GREY_EXPECT),
        "LA": (_grey_alpha, LA_EXPECT),
        "P": (palette_picture, RGB_EXPECT),
        "Pt": (_palette_trns, PT_EXPECT),
        "PA": (_palette_alpha, PA_EXPECT),
        "RGB": (rgb_picture, RGB_EXPECT),
        "RGBA": (rgba_picture, RGBA_EXPECT),
        "RGBa": (_mode(rgba_picture, "RGBa"), RGBA_EXPECT),
        "RGBX": (_mode(rgb_picture, "RGBX"), RGB_EXPECT),
        "CMYK": (_mode(rgb_picture, "CMYK"), RGB_EXPECT),
        "YCbCr": (_mode(rgb_picture, "YCbCr"), RGB_EXPECT),
        "LAB": (_mode(rgb_picture, "LAB"), RGB_EXPECT),
        "I": (p(_deep_grey, "I"), GREY_EXPECT),
        "I;16": (p(_deep_grey, "I;16"), GREY_EXPECT),
        "I;16B": (p(_deep_grey, "I;16B"), GREY_EXPECT),
        "F": (_float_grey, GREY_EXPECT),
        # Pillow's own conventions: convert("I") and convert("F") keep 0..255; 16-bit data widened keeps 0..65535.
        "I-8bit-values": (_mode(grey_picture, "I"), GREY_EXPECT),
        "F-8bit-values": (_mode(grey_picture, "F"), GREY_EXPECT),
        "F-16bit-values": (lambda: _deep_grey("I").convert("F"), GREY_EXPECT),
    }
    for mode in writable:
        make, expect = makers[mode]
        if fmt == "GIF" and mode == "RGB":
            expect = RGB_EXPECT  # four colours quantise exactly
        process(
            f"mode-{mode}-{tag}",
            p(_save, make, fmt, **params),
            quads=expect,
            tolerance=24 if lossy else 14,
        )


# PNG layouts Pillow's writer does not produce: 16-bit colour, 16-bit grey+alpha, low-bit palettes and greys, tRNS.
def _png16(colour_type: int, with_trns: bool = False) -> bytes:
    image = rgba_picture()
    if colour_type == 0:
        rows = rows_of(grey_picture(), lambda v: struct.pack(">H", v * 257))
        trns = png_chunk(b"tRNS", struct.pack(">H", GREY_QUADS[1] * 257))
        return png_file((W, H), 16, 0, rows, before=trns if with_trns else b"")
    if colour_type == 4:
        la = _grey_alpha()
        return png_file((W, H), 16, 4, rows_of(la, lambda v: struct.pack(">HH", v[0] * 257, v[1] * 257)))
    if colour_type == 2:
        rows = rows_of(image, lambda v: struct.pack(">HHH", *(c * 257 for c in v[:3])))
        trns = png_chunk(b"tRNS", struct.pack(">HHH", *(c * 257 for c in RGB_QUADS[1])))
        return png_file((W, H), 16, 2, rows, before=trns if with_trns else b"")
    return png_file((W, H), 16, 6, rows_of(image, lambda v: struct.pack(">HHHH", *(c * 257 for c in v))))


def _png_low_bits(depth: int, colour_type: int) -> bytes:
    """Palette (3) or grey (0) PNG at 1, 2 or 4 bits per pixel."""
    per_byte = 8 // depth
    if colour_type == 3:
        values = palette_picture() if depth > 1 else quadrants("P", (0, 1, 1, 1))
        colours = RGB_QUADS if depth > 1 else ((0, 0, 0), (255, 255, 255))
        palette = png_chunk(b"PLTE", bytes(c for rgb in colours for c in rgb))
    else:
        levels = (1 << depth) - 1
        values = quadrants("L", [round(v * levels / 255) for v in (GREY_QUADS if depth > 1 else BILEVEL_QUADS)])
        palette = b""
    rows = []
    for y in range(H):
        row = bytearray()
        for x0 in range(0, W, per_byte):
            byte = 0
            for i in range(per_byte):
                byte = (byte << depth) | values.getpixel((x0 + i, y))  # type: ignore[operator]
            row.append(byte)
        rows.append(bytes(row))
    return png_file((W, H), depth, colour_type, rows, before=palette)


def _grey_at_depth(depth: int) -> tuple[Colour, ...]:
    levels = (1 << depth) - 1
    return quads_of([round(round(v * levels / 255) * 255 / levels) for v in GREY_QUADS])


process("png16-grey", p(_png16, 0), quads=GREY_EXPECT)
process("png16-grey-trns", p(_png16, 0, True), quads=quads_of(GREY_QUADS, (255, 0, 255, 255)))
process("png16-grey-alpha", p(_png16, 4), quads=LA_EXPECT)
process("png16-rgb", p(_png16, 2))
process("png16-rgb-trns", p(_png16, 2, True), quads=PT_EXPECT)
process("png16-rgba", p(_png16, 6), quads=RGBA_EXPECT)
for depth in (1, 2, 4):
    process(f"png-palette-{depth}bit", p(_png_low_bits, depth, 3), quads=RGB_EXPECT if depth > 1 else BILEVEL_EXPECT)
    process(
        f"png-grey-{depth}bit", p(_png_low_bits, depth, 0), quads=_grey_at_depth(depth) if depth > 1 else BILEVEL_EXPECT
    )
process(
    "png-rgb-trns",
    lambda: encoded(rgb_picture(), "PNG", transparency=RGB_QUADS[1]),
    quads=PT_EXPECT,
)
process(
    "png-grey-trns",
    lambda: encoded(grey_picture(), "PNG", transparency=GREY_QUADS[1]),
    quads=quads_of(GREY_QUADS, (255, 0, 255, 255)),
)


def _palette_multi_trns() -> bytes:
    image = palette_picture()
    return encoded(image, "PNG", transparency=bytes(ALPHA_QUADS))


process("png-palette-alpha-table", _palette_multi_trns, quads=RGBA_EXPECT)


# TIFF sample layouts: deep, signed, float, premultiplied, CMYK with alpha, big-endian.
def _tiff_grey16(signed: bool = False, big_endian: bool = False) -> bytes:
    order = ">" if big_endian else "<"
    fmt = "h" if signed else "H"
    scale = 32767 / 255 if signed else 257
    pixels = b"".join(struct.pack(order + fmt, round(v * scale)) for v in grey_picture().get_flattened_data())
    return tiff_file((W, H), [16], pixels, photometric=1, sample_format=2 if signed else 1, big_endian=big_endian)


def _tiff_grey32(kind: str) -> bytes:
    if kind == "float":
        pixels = b"".join(struct.pack("<f", v / 255) for v in grey_picture().get_flattened_data())
        return tiff_file((W, H), [32], pixels, photometric=1, sample_format=3)
    pixels = b"".join(struct.pack("<I", v * 0x01010101) for v in grey_picture().get_flattened_data())
    return tiff_file((W, H), [32], pixels, photometric=1, sample_format=1)


def _tiff_rgb16(alpha: bool, big_endian: bool = False) -> bytes:
    order = ">" if big_endian else "<"
    image = rgba_picture()
    bands = 4 if alpha else 3
    pixels = b"".join(
        struct.pack(order + "H" * bands, *(c * 257 for c in px[:bands])) for px in image.get_flattened_data()
    )
    return tiff_file(
        (W, H), [16] * bands, pixels, photometric=2, extra_samples=[2] if alpha else [], big_endian=big_endian
    )


def _tiff_premultiplied(mode: str) -> bytes:
    image = rgba_picture() if mode == "RGBa" else _grey_alpha()
    pre = image.convert(mode)
    bands = len(mode)
    return tiff_file((W, H), [8] * bands, pre.tobytes(), photometric=2 if bands == 4 else 1, extra_samples=[1])


def _tiff_cmyk_alpha() -> bytes:
    cmyk = rgb_picture().convert("CMYK")
    alpha = quadrants("L", ALPHA_QUADS)
    pixels = b"".join(
        bytes((*c, a)) for c, a in zip(cmyk.get_flattened_data(), alpha.get_flattened_data(), strict=True)
    )
    return tiff_file((W, H), [8] * 5, pixels, photometric=5, extra_samples=[2])


process("tiff-I16-raw", _tiff_grey16, quads=GREY_EXPECT)
process("tiff-I16-bigendian-raw", p(_tiff_grey16, big_endian=True), quads=GREY_EXPECT)
process("tiff-I16-signed", p(_tiff_grey16, signed=True), quads=GREY_EXPECT)
process("tiff-I32-unsigned", p(_tiff_grey32, "uint"), quads=GREY_EXPECT)
process("tiff-F32-float", p(_tiff_grey32, "float"), quads=GREY_EXPECT)
process("tiff-rgb16", p(_tiff_rgb16, False))
process("tiff-rgb16-bigendian", p(_tiff_rgb16, False, True))
process("tiff-rgba16", p(_tiff_rgb16, True), quads=RGBA_EXPECT)
process("tiff-RGBa-premultiplied", p(_tiff_premultiplied, "RGBa"), quads=RGBA_EXPECT)
process("tiff-La-premultiplied", p(_tiff_premultiplied, "La"), quads=LA_EXPECT)
process(
    "tiff-bilevel-group4",
    lambda: encoded(quadrants("1", BILEVEL_QUADS), "TIFF", compression="group4"),
    quads=BILEVEL_EXPECT,
)
process("tiff-rgb-jpeg", lambda: encoded(rgb_picture(), "TIFF", compression="jpeg"), tolerance=24)
process("tiff-grey-jpeg", lambda: encoded(grey_picture(), "TIFF", compression="jpeg"), quads=GREY_EXPECT, tolerance=24)


def _tiff_pages() -> bytes:
    """First page grey, then pages in other modes and sizes: only the first is rendered."""
    rest = [rgba_picture().resize((32, 32)), Image.new("CMYK", (80, 10)), Image.new("I;16", (5, 5))]
    return encoded(grey_picture(), "TIFF", save_all=True, append_images=rest)


process("tiff-multipage-mixed-modes", _tiff_pages, quads=GREY_EXPECT)


# BMP layouts: RLE8, RLE4, 4-bit, 16-bit 565, 32-bit with an alpha mask, top-down, OS/2 core header.
def _bmp_rle(bits: int) -> bytes:
    index = quadrants("L", (0, 1, 2, 3))
    body = b""
    for y in reversed(range(H)):
        left, right = index.getpixel((0, y)), index.getpixel((W - 1, y))
        if bits == 8:
            body += bytes((W // 2, left, W // 2, right, 0, 0))
        else:
            body += bytes((W // 2, left * 17, W // 2, right * 17, 0, 0))
    body += b"\0\1"
    return bmp_file((W, H), bits, body, compression=1 if bits == 8 else 2, palette=RGB_QUADS)


def _bmp_4bit() -> bytes:
    index = quadrants("L", (0, 1, 2, 3))
    pixels = bmp_rows(index, lambda px: bytes((a << 4) | b for a, b in zip(px[::2], px[1::2], strict=True)))  # type: ignore[operator]
    return bmp_file((W, H), 4, pixels, palette=RGB_QUADS)


def _bmp_565() -> bytes:
    def pack(px: list[object]) -> bytes:
        return b"".join(struct.pack("<H", (r >> 3) << 11 | (g >> 2) << 5 | b >> 3) for r, g, b in px)  # type: ignore[misc]

    return bmp_file((W, H), 16, bmp_rows(rgb_picture(), pack), compression=3, masks=(0xF800, 0x07E0, 0x001F, 0))


def _bmp_argb(top_down: bool = False) -> bytes:
    def pack(px: list[object]) -> bytes:
        return b"".join(bytes((b, g, r, a)) for r, g, b, a in px)  # type: ignore[misc]

    image = rgba_picture()
    pixels = bmp_rows(image.transpose(Image.Transpose.FLIP_TOP_BOTTOM) if top_down else image, pack)
    return bmp_file((W, H), 32, pixels, compression=3, masks=(0xFF0000, 0xFF00, 0xFF, 0xFF000000), top_down=top_down)


def _bmp_os2() -> bytes:
    pixels = bmp_rows(rgb_picture(), lambda px: b"".join(bytes((b, g, r)) for r, g, b in px))  # type: ignore[misc]
    info = struct.pack("<IHHHH", 12, W, H, 1, 24)
    return b"BM" + struct.pack("<IHHI", 26 + len(pixels), 0, 0, 26) + info + pixels


process("bmp-rle8", p(_bmp_rle, 8))
process("bmp-rle4", p(_bmp_rle, 4))
process("bmp-4bit", _bmp_4bit)
process("bmp-16bit-565", _bmp_565)
process("bmp-32bit-alpha-mask", _bmp_argb, quads=RGBA_EXPECT)
process("bmp-32bit-alpha-top-down", p(_bmp_argb, True), quads=RGBA_EXPECT)
process("bmp-os2-core-header", _bmp_os2)


# Animations and multi-frame files: the first frame, whatever follows.
def _frames(fmt: str, count: int = 3, **params: object) -> bytes:
    first = rgba_picture() if params.pop("alpha", False) else rgb_picture()
    others = [Image.new(first.mode, (W, H), colour) for colour in ("black", "yellow", "purple")] * (count // 3 + 1)
    return encoded(first, fmt, save_all=True, append_images=others[: count - 1], duration=40, **params)


process("gif-animated", p(_frames, "GIF"))
process("gif-animated-400-frames", p(_frames, "GIF", 400))
process(
    "gif-interlaced-transparent",
    lambda: encoded(_palette_trns(), "GIF", interlace=True, transparency=1),
    quads=PT_EXPECT,
)
process("apng-animated", p(_frames, "PNG"))
process("apng-animated-alpha", p(_frames, "PNG", alpha=True), quads=RGBA_EXPECT)
process("apng-300-frames", p(_frames, "PNG", 300))
process("webp-animated-lossless", p(_frames, "WEBP", lossless=True))
process("webp-animated-alpha", p(_frames, "WEBP", lossless=True, alpha=True), quads=RGBA_EXPECT)
process("avif-animated", p(_frames, "AVIF", quality=95), tolerance=24)
process("tiff-multipage-300", p(_frames, "TIFF", 300))
process("mpo-two-frames", p(_frames, "MPO", 2, quality=95), tolerance=24)

# Bytes after a container's end are not a truncation: a Motion Photo's MP4 after the EOI, junk after IEND or the
# trailer, and a GIF that ends after its last image without the trailer (common; browsers show it).
MP4_TAIL = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom\0\0\0\x10mdat" + CANARY
process("jpeg-motion-photo-mp4-after-eoi", lambda: encoded(rgb_picture(), "JPEG", quality=95) + MP4_TAIL, tolerance=24)
process("mpo-bytes-after-last-image", lambda: _frames("MPO", 2, quality=95) + MP4_TAIL, tolerance=24)
process("png-bytes-after-iend", lambda: encoded(rgb_picture(), "PNG") + MP4_TAIL)
process("apng-bytes-after-iend", lambda: _frames("PNG") + MP4_TAIL)
process("gif-animated-bytes-after-trailer", lambda: _frames("GIF") + MP4_TAIL)
process("gif-animated-without-trailer", lambda: _frames("GIF")[:-1])
process("tiff-multipage-bytes-after-last-page", lambda: _frames("TIFF") + MP4_TAIL)
process("bmp-rle8-bytes-after-pixels", lambda: _bmp_rle(8) + MP4_TAIL)

# JPEG encodings.
for name, params in {
    "444": {"subsampling": 0},
    "422": {"subsampling": 1},
    "420": {"subsampling": 2},
    "progressive": {"progressive": True},
    "restart-markers": {"restart_marker_blocks": 1},
    "restart-rows": {"restart_marker_rows": 1},
    "optimized": {"optimize": True},
    "q1": {"quality": 1},
}.items():
    process(
        f"jpeg-{name}", p(_save, rgb_picture, "JPEG", **{"quality": 95, **params}), tolerance=60 if name == "q1" else 24
    )
process(
    "jpeg-grey-progressive",
    p(_save, grey_picture, "JPEG", progressive=True, quality=95),
    quads=GREY_EXPECT,
    tolerance=24,
)


def _without_segment(data: bytes, marker: bytes) -> bytes:
    """Drop the first JPEG segment with this marker (e.g. Adobe APP14, so CMYK reads as not inverted)."""
    at = data.index(marker)
    length = struct.unpack(">H", data[at + 2 : at + 4])[0]
    return data[:at] + data[at + 2 + length :]


def _with_segments(data: bytes, segments: Sequence[bytes]) -> bytes:
    """Insert APPn segments (marker + payload) right after SOI."""
    return data[:2] + b"".join(s[:2] + struct.pack(">H", len(s) - 2 + 2) + s[2:] for s in segments) + data[2:]


def _jpeg_cmyk_not_inverted() -> bytes:
    # Pillow writes Adobe-inverted CMYK; invert the samples first so that, read without APP14, the colours are right.
    cmyk = rgb_picture().convert("CMYK")
    inverted = Image.eval(cmyk, lambda v: 255 - v)
    return _without_segment(encoded(inverted, "JPEG", quality=95), b"\xff\xee")


def _jpeg_huge_app_segments() -> bytes:
    filler = [b"\xff\xe4" + bytes([i % 251]) * 65000 for i in range(40)]  # 2.6 MB of APP4
    bogus_exif = [b"\xff\xe1Exif\0\0" + b"\xff" * 200]  # an unparsable EXIF before the real one
    return _with_segments(encoded(rgb_picture(), "JPEG", quality=95, exif=exif_bytes(gps=True)), bogus_exif + filler)


process("jpeg-cmyk-adobe-inverted", p(_save, _mode(rgb_picture, "CMYK"), "JPEG", quality=95), tolerance=24)
# Pillow, like browsers, reads every CMYK JPEG as Adobe-inverted, marker or not: rendered, colours not checked.
process("jpeg-cmyk-not-inverted", _jpeg_cmyk_not_inverted, quads=None)
process("jpeg-huge-app-segments", _jpeg_huge_app_segments, tolerance=24)
process("jpeg-comment-polyglot", p(_save, rgb_picture, "JPEG", quality=95, comment=b"<script>" + CANARY), tolerance=24)
process("gif-zip-polyglot", lambda: encoded(rgb_picture(), "GIF") + b"PK\3\4" + CANARY + b"\0" * 40)
process("heic-sample", p(hostile, "govips_heic-24bit.heic"), size=None, quads=None)


# --- orientation: every value and carrier -----------------------------------------------------------------
def _oriented(fmt: str, orientation: object, carrier: str = "exif", **params: object) -> bytes:
    real = orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1
    image = stored(rgb_picture(), real)
    if carrier == "exif":
        return encoded(image, fmt, exif=exif_bytes(orientation), **params)
    if carrier == "xmp" and fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp_packet(real).decode())
        return encoded(image, fmt, pnginfo=info)
    if carrier == "xmp" and fmt == "TIFF":
        return encoded(image, fmt, tiffinfo={700: xmp_packet(real)})
    if carrier == "xmp":
        return encoded(image, fmt, xmp=xmp_packet(real), **params)
    # Both: EXIF wins over XMP, as every viewer does.
    return encoded(image, fmt, exif=exif_bytes(orientation), xmp=xmp_packet(3 if real != 3 else 1), **params)


def _png_exif_after_idat(orientation: int) -> bytes:
    image = stored(rgb_picture(), orientation)
    data = encoded(image, "PNG")
    end = data.rindex(b"IEND") - 4
    exif = exif_bytes(orientation)
    return data[:end] + png_chunk(b"eXIf", exif) + data[end:]


def _tiff_orientation_tag(orientation: int) -> bytes:
    return encoded(stored(rgb_picture(), orientation), "TIFF", tiffinfo={274: orientation})


LOSSY_PARAMS = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}, "AVIF": {"quality": 95}, "MPO": {"quality": 95}}
for fmt in ("JPEG", "PNG", "WEBP", "TIFF", "AVIF", "MPO"):
    extra = LOSSY_PARAMS.get(fmt, {})
    for orientation in range(1, 9):
        process(
            f"orientation-{orientation}-exif-{fmt.lower()}",
            p(_oriented, fmt, orientation, **extra),
            tolerance=24,
        )
    for bad in (0, 9, 65535):
        process(f"orientation-invalid-{bad}-{fmt.lower()}", p(_oriented, fmt, bad, **extra), tolerance=24)
for fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
    extra = LOSSY_PARAMS.get(fmt, {})
    for orientation in (3, 6, 8):
        process(
            f"orientation-{orientation}-xmp-only-{fmt.lower()}",
            p(_oriented, fmt, orientation, "xmp", **extra),
            tolerance=24,
        )
for fmt in ("JPEG", "WEBP"):
    process(f"orientation-6-exif-beats-xmp-{fmt.lower()}", p(_oriented, fmt, 6, "both", quality=95), tolerance=24)
for orientation in (5, 6):
    process(f"orientation-{orientation}-png-exif-after-idat", p(_png_exif_after_idat, orientation))
    process(f"orientation-{orientation}-tiff-tag", p(_tiff_orientation_tag, orientation))


def _exif_orientation_raw(value: bytes, kind: int, count: int = 1) -> bytes:
    """A JPEG whose EXIF orientation entry has the given TIFF type and raw value field (garbage-typed values)."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHI", 0x0112, kind, count) + value.ljust(4, b"\0")[:4] + b"\0\0\0\0"
    exif = b"Exif\0\0II*\0" + struct.pack("<I", 8) + ifd
    return _with_segments(encoded(rgb_picture(), "JPEG", quality=95), [b"\xff\xe1" + exif])


for name, (raw, kind, count) in {
    "ascii": (b"6\0", 2, 2),
    "sshort-negative": (struct.pack("<h", -2), 8, 1),
    "long-huge": (struct.pack("<I", 0xFFFFFFF6), 4, 1),
    "short-count-3-out-of-bounds": (struct.pack("<I", 0xFFFF), 3, 3),
    "rational-offset-out-of-bounds": (struct.pack("<I", 0x7FFFFFF0), 5, 1),
    "undefined-type-99": (b"\6\0\0\0", 99, 1),
}.items():
    process(f"orientation-garbage-{name}-jpeg", p(_exif_orientation_raw, raw, kind, count), tolerance=24)

for fmt in ("JPEG", "PNG", "WEBP"):
    process(
        f"exif-garbage-bytes-{fmt.lower()}",
        p(_save, rgb_picture, fmt, exif=b"Exif\0\0MM\0*\0\0\xff\xff" + CANARY, **LOSSY_PARAMS.get(fmt, {})),
        tolerance=24,
    )


# --- metadata that must not reach the outputs -----------------------------------------------------------------
def _png_all_text() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", CANARY.decode())
    info.add_text("Author", CANARY.decode(), zip=True)
    info.add_itxt("XML:com.adobe.xmp", xmp_packet().decode(), zip=True)
    return encoded(rgb_picture(), "PNG", pnginfo=info, exif=exif_bytes(gps=True, Make=CANARY.decode()))


def _tiff_gps() -> bytes:
    exif = Image.Exif()
    exif.load(exif_bytes(gps=True))
    tiffinfo = {270: CANARY.decode(), 700: xmp_packet(), 34853: exif.get_ifd(ExifTags.IFD.GPSInfo)}
    return encoded(rgb_picture(), "TIFF", tiffinfo=tiffinfo)


META = {"exif": exif_bytes(gps=True, Make=CANARY.decode(), ImageDescription=CANARY.decode()), "xmp": xmp_packet()}
process("metadata-jpeg", p(_save, rgb_picture, "JPEG", quality=95, comment=CANARY, **META), tolerance=24)
process("metadata-webp", p(_save, rgb_picture, "WEBP", lossless=True, **META))
process("metadata-avif", p(_save, rgb_picture, "AVIF", quality=95, **META), tolerance=24)
process("metadata-png", _png_all_text)
process("metadata-tiff", _tiff_gps)
process("metadata-gif-comment", p(_save, rgb_picture, "GIF", comment=CANARY))


# --- colour profiles ----------------------------------------------------------------------------------------
def _with_icc(make: Callable[[], Image.Image], fmt: str, icc: Callable[[], bytes] | bytes, **params: object) -> bytes:
    return encoded(make(), fmt, icc_profile=icc() if callable(icc) else icc, **params)


def _p3_sample() -> bytes:
    return Image.open(HOSTILE_DIR / "sharp_p3.png").info["icc_profile"]


for fmt in ("JPEG", "PNG", "WEBP", "TIFF", "AVIF"):
    extra = LOSSY_PARAMS.get(fmt, {})
    tolerance = 24 if extra else 14
    for name, icc in (("adobe-rgb", ADOBE_RGB), ("prophoto", PROPHOTO), ("p3", DISPLAY_P3)):
        process(
            f"icc-{name}-{fmt.lower()}",
            p(_with_icc, rgb_picture, fmt, icc, **extra),
            quads=through_profile(RGB_EXPECT, icc),
            tolerance=tolerance,
        )
    process(f"icc-srgb-{fmt.lower()}", p(_with_icc, rgb_picture, fmt, srgb_profile, **extra), tolerance=tolerance)
    process(
        f"icc-truncated-{fmt.lower()}",
        p(_with_icc, rgb_picture, fmt, ADOBE_RGB[: len(ADOBE_RGB) // 2], **extra),
        tolerance=tolerance,
        icc_warning=True,
    )
    process(
        f"icc-garbage-{fmt.lower()}",
        p(_with_icc, rgb_picture, fmt, b"\0\0\0\x20garbage" + CANARY * 3, **extra),
        tolerance=tolerance,
        icc_warning=True,
    )
process("icc-p3-sample-png", p(_with_icc, rgb_picture, "PNG", _p3_sample), quads=None)
process(
    "icc-adobe-rgb-alpha-png",
    p(_with_icc, rgba_picture, "PNG", ADOBE_RGB),
    quads=through_profile(RGBA_EXPECT, ADOBE_RGB),
)
process(
    "icc-adobe-rgb-palette-png",
    p(_with_icc, palette_picture, "PNG", ADOBE_RGB),
    quads=through_profile(RGB_EXPECT, ADOBE_RGB),
)
process(
    "icc-adobe-rgb-png16",
    lambda: _png16(2)[:33] + png_chunk(b"iCCP", b"a\0\0" + zlib.compress(ADOBE_RGB)) + _png16(2)[33:],
    quads=through_profile(RGB_EXPECT, ADOBE_RGB),
)
for fmt in ("JPEG", "PNG", "TIFF"):
    process(
        f"icc-grey-on-grey-{fmt.lower()}",
        p(_with_icc, grey_picture, fmt, GREY_GAMMA_1, **LOSSY_PARAMS.get(fmt, {})),
        quads=through_profile(GREY_EXPECT, GREY_GAMMA_1, "L"),
        tolerance=24,
    )
process(
    "icc-grey-on-grey-alpha-png",
    p(_with_icc, _grey_alpha, "PNG", GREY_GAMMA_1),
    quads=through_profile(LA_EXPECT, GREY_GAMMA_1, "L"),
)
process(
    "icc-grey-on-png16-grey",
    lambda: _png16(0)[:33] + png_chunk(b"iCCP", b"g\0\0" + zlib.compress(GREY_GAMMA_1)) + _png16(0)[33:],
    quads=through_profile(GREY_EXPECT, GREY_GAMMA_1, "L"),
)
process("icc-cmyk-tiff", p(_with_icc, _mode(rgb_picture, "CMYK"), "TIFF", cmyk_profile), quads=None)
process("icc-cmyk-jpeg", p(_with_icc, _mode(rgb_picture, "CMYK"), "JPEG", cmyk_profile, quality=95), quads=None)
# Profiles for other colour spaces than the pixels: ignored with a warning, the pixels taken as they are.
process("icc-rgb-on-cmyk-tiff", p(_with_icc, _mode(rgb_picture, "CMYK"), "TIFF", ADOBE_RGB), icc_warning=True)
process(
    "icc-rgb-on-cmyk-jpeg",
    p(_with_icc, _mode(rgb_picture, "CMYK"), "JPEG", ADOBE_RGB, quality=95),
    tolerance=24,
    icc_warning=True,
)
process(
    "icc-cmyk-on-rgb-jpeg", p(_with_icc, rgb_picture, "JPEG", cmyk_profile, quality=95), tolerance=24, icc_warning=True
)
process("icc-rgb-on-grey-png", p(_with_icc, grey_picture, "PNG", ADOBE_RGB), quads=GREY_EXPECT, icc_warning=True)
process("icc-lab-on-rgb-png", p(_with_icc, rgb_picture, "PNG", lab_profile), icc_warning=True)
process(
    "icc-corrupt-tag-table-png",
    p(_with_icc, rgb_picture, "PNG", ADOBE_RGB[:128] + b"\0\0\0\x09" + b"\xff" * 200),
    icc_warning=True,
)


# --- geometry extremes ----------------------------------------------------------------------------------------
def _flat(size: tuple[int, int], fmt: str, mode: str = "RGB", **params: object) -> bytes:
    return encoded(Image.new(mode, size, (200, 30, 30) if mode == "RGB" else 120), fmt, **params)


for size in ((1, 1), (1, 20000), (20000, 1), (3, 20000), (20000, 2), (2, 3)):
    for fmt in ("PNG", "JPEG", "GIF", "WEBP"):
        if fmt == "WEBP" and max(size) > 16383:
            continue
        process(f"geometry-{size[0]}x{size[1]}-{fmt.lower()}", p(_flat, size, fmt), size=size, quads=None)
process("geometry-1x1-grey-png", p(_flat, (1, 1), "PNG", "L"), size=(1, 1), quads=None)
process(
    "geometry-1x3-orientation-6",
    lambda: encoded(Image.new("RGB", (3, 1)), "JPEG", exif=exif_bytes(6)),
    size=(1, 3),
    quads=None,
)
process(
    "geometry-20000x1-orientation-8",
    lambda: encoded(Image.new("L", (20000, 1)), "PNG", exif=exif_bytes(8)),
    size=(1, 20000),
    quads=None,
)

PROCESS_IDS = [u.id for u in PROCESS]
assert len(set(PROCESS_IDS)) == len(PROCESS_IDS), "duplicate case ids"


# --- checking a render ----------------------------------------------------------------------------------------


def guarded(call: Callable[[], object], timeout: float = TIMEOUT_S) -> object:
    """Run `call` in a daemon thread: a decoder stuck in C code fails the case instead of hanging the suite."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"no answer within {timeout} s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]


def decode(variant: RenderedVariant) -> Image.Image:
    image = Image.open(io.BytesIO(variant.data), formats=[variant.format.upper()])
    image.load()
    return image


def _quadrant_means(image: Image.Image) -> list[tuple[float, ...]]:
    """Mean RGBA of the central half of each quadrant (edges are blurred by resampling and chroma subsampling)."""
    rgba = image.convert("RGBA")
    w, h = rgba.size
    means = []
    for qx, qy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        box = (qx * w // 2 + w // 8, qy * h // 2 + h // 8, qx * w // 2 + 3 * w // 8, qy * h // 2 + 3 * h // 8)
        means.append(tuple(ImageStat.Stat(rgba.crop(box)).mean))
    return means


def _flattened(colour: Colour, background: str) -> Colour:
    bg = (int(background[1:3], 16), int(background[3:5], 16), int(background[5:7], 16))
    a = colour[3] / 255
    return (*(round(c * a + b * (1 - a)) for c, b in zip(colour[:3], bg, strict=True)), 255)  # type: ignore[return-value]


# The largest side each codec stores (and libavif reads back): larger full-size variants are scaled down to fit.
CODEC_LIMITS = {"jpeg": 65500, "webp": 16383, "avif": 32768, "png": 2**31 - 1}


def bounding_box(spec: VariantSpec, source: tuple[int, int]) -> tuple[int, int] | None:
    """The box an inside fit must respect: the spec's, or the codec's limit for a full-size variant too big for it."""
    if spec.box is not None:
        return spec.box
    limit = CODEC_LIMITS[spec.format]
    return (limit, limit) if max(source) > limit else None


def check_variant(
    spec: VariantSpec, variant: RenderedVariant, source: tuple[int, int] | None, upload: Upload | None
) -> None:
    where = f"variant {spec.name!r}"
    assert (variant.name, variant.format) == (spec.name, spec.format), where
    assert variant.content_type == CONTENT_TYPES[spec.format] and variant.extension == EXTENSIONS[spec.format], where
    image = decode(variant)
    assert image.format == spec.format.upper(), where
    assert image.size == (variant.width, variant.height), f"{where}: declared {variant.width}x{variant.height}"
    width, height = image.size
    assert width >= 1 and height >= 1, where
    if spec.box is not None:
        assert width <= spec.box[0] and height <= spec.box[1], f"{where}: {image.size} outside the box {spec.box}"
    assert max(width, height) <= CODEC_LIMITS[spec.format], f"{where}: {image.size} beyond what {spec.format} stores"
    if source is not None:
        box = bounding_box(spec, source)
        if box is None:
            assert image.size == source, f"{where}: {image.size}, not the upright source size {source}"
        elif spec.fit == "cover":
            assert image.size == box, f"{where}: {image.size}, cover must fill the box {box} exactly"
        else:
            scale = min(box[0] / source[0], box[1] / source[1], 1.0)
            assert abs(width - source[0] * scale) <= 1 and abs(height - source[1] * scale) <= 1, (
                f"{where}: {image.size} is not {source} scaled by {scale:.4f} (inside never upscales, keeps aspect)"
            )
    if spec.format == "jpeg":
        assert image.mode in ("L", "RGB"), f"{where}: JPEG in mode {image.mode}"
    else:
        assert image.mode in ("L", "LA", "RGB", "RGBA"), f"{where}: {image.mode}"
    # No metadata: not parsed by Pillow, and not hiding in the bytes either.
    assert not image.getexif(), f"{where} carries EXIF"
    assert not {"exif", "xmp", "icc_profile", "comment", "XML:com.adobe.xmp"} & set(image.info), (
        f"{where}: {image.info}"
    )
    assert not isinstance(getattr(image, "text", None), dict) or not image.text, f"{where}: text chunks {image.text}"  # type: ignore[attr-defined]
    for needle in (CANARY, b"Exif\0\0", b"<x:xmpmeta"):
        assert needle not in variant.data, f"{where} contains {needle!r}"
    if upload is None or upload.quads is None:
        return
    if upload.alpha and spec.format != "jpeg":
        assert image.mode in ("LA", "RGBA"), f"{where}: the upload's alpha was dropped ({image.mode})"
    if min(width, height) < 8:
        return
    for quadrant, (mean, colour) in enumerate(zip(_quadrant_means(image), upload.quads, strict=True)):
        got, want = mean, colour
        if spec.format == "jpeg":
            got, want = (*mean[:3], 255), _flattened(colour, spec.background)
        elif image.mode in ("L", "RGB"):
            got, want = (*mean[:3], 255), colour
        if want[3] == 0:
            assert got[3] < 8, f"{where}: quadrant {quadrant} should be transparent, alpha {got[3]:.0f}"
            continue
        difference = max(abs(g - e) for g, e in zip(got, want, strict=True))
        assert difference <= upload.tolerance, (
            f"{where}: quadrant {quadrant} is {tuple(round(v) for v in got)}, expected {want} "
            f"(wrong colour conversion, orientation or scaling)"
        )


def check_render(
    specs: Sequence[VariantSpec],
    variants: Sequence[RenderedVariant],
    source: tuple[int, int] | None,
    upload: Upload | None = None,
) -> None:
    assert [v.name for v in variants] == [s.name for s in specs], "every variant, in the order of the specs"
    for spec, variant in zip(specs, variants, strict=True):
        check_variant(spec, variant, source, upload)


def _reference_size(data: bytes) -> tuple[int, int]:
    """Upright size as a viewer would show it, from Pillow directly (for samples we did not draw ourselves)."""
    import pi_heif

    pi_heif.register_heif_opener()
    image = Image.open(io.BytesIO(data))
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    return (image.height, image.width) if orientation in (5, 6, 7, 8) else image.size


# --- the tests ------------------------------------------------------------------------------------------------


@functools.cache
def built(upload_id: str) -> bytes:
    return next(u for u in PROCESS if u.id == upload_id).build()


@pytest.mark.parametrize("preset", ["default", "responsive"])
@pytest.mark.parametrize("upload", PROCESS, ids=PROCESS_IDS)
def test_generated_upload_renders_every_variant_correctly(
    upload: Upload, preset: str, caplog: pytest.LogCaptureFixture
) -> None:
    data = built(upload.id)
    specs = PRESETS[preset]
    with caplog.at_level(logging.WARNING, logger="handler"):
        inline = guarded(lambda: render(data, specs, workers=1))
        threaded = guarded(lambda: render(data, specs, workers=2))
    assert [v.data for v in threaded] == [v.data for v in inline], "thread pool and inline renders differ"
    source = upload.size or _reference_size(data)
    check_render(specs, inline, source, upload)  # type: ignore[arg-type]
    if upload.icc_warning:
        assert "ICC profile" in caplog.text, "an unusable profile must be logged"


def test_corpus_covers_the_policy() -> None:
    """The generator itself: every accepted container and every mode class is in the corpus."""
    containers = {"png", "apng", "jpeg", "mpo", "gif", "webp", "tiff", "bmp", "avif", "heic"}
    assert all(any(f"-{c}" in u.id or u.id.startswith(c) for u in PROCESS) for c in containers)
    assert sum(u.alpha for u in PROCESS) >= 20
    assert len(PROCESS) >= 200


# --- exact pixel limit ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "TIFF", "BMP", "AVIF"])
def test_pixel_limit_is_inclusive(fmt: str) -> None:
    data = encoded(rgb_picture(), fmt)
    check_render(PRESETS["responsive"], render(data, PRESETS["responsive"], pixel_limit=W * H, workers=1), (W, H))
    with pytest.raises(Rejected) as excinfo:
        render(data, PRESETS["responsive"], pixel_limit=W * H - 1)
    assert excinfo.value.reason == "too_many_pixels"
    assert f"{W}x{H}" in excinfo.value.detail and str(W * H - 1) in excinfo.value.detail


@pytest.mark.parametrize(
    ("size", "spec", "expected"),
    [
        ((1, 20000), VariantSpec("w", "webp", quality=80, width=16384, height=16384), (1, 16383)),
        ((20000, 1), VariantSpec("w", "webp", quality=80, width=16384, height=1, fit="cover"), (16383, 1)),
        ((20000, 3), VariantSpec("w", "webp", quality=80), (16383, 2)),
    ],
    ids=["inside-box-beyond-webp", "cover-box-beyond-webp", "full-size-beyond-webp"],
)
def test_variant_beyond_its_codec_limit_is_scaled_to_fit_and_logged(
    size: tuple[int, int], spec: VariantSpec, expected: tuple[int, int], caplog: pytest.LogCaptureFixture
) -> None:
    """Config allows 16384 px boxes and full-size variants of any upload; WebP stores 16383 px a side at most."""
    with caplog.at_level(logging.WARNING, logger="handler"):
        (variant,) = render(encoded(Image.new("RGB", size, "red"), "PNG"), [spec])
    assert decode(variant).size == (variant.width, variant.height) == expected
    assert "webp stores at most 16383 px a side" in caplog.text


# --- headers that declare huge frames: refused from the header, never decoded ---------------------------------


def _patched(data: bytes, at: int, value: bytes) -> bytes:
    return data[:at] + value + data[at + len(value) :]


def _jpeg_sof_dims(width: int, height: int) -> bytes:
    data = encoded(rgb_picture(), "JPEG")
    at = data.index(b"\xff\xc0")
    return _patched(data, at + 5, struct.pack(">HH", height, width))


def _webp_vp8x(width: int, height: int) -> bytes:
    data = encoded(rgb_picture(), "WEBP", lossless=True, exif=exif_bytes(1))  # with EXIF Pillow writes VP8X
    at = data.index(b"VP8X") + 8 + 4
    return _patched(data, at, (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little"))


def _webp_vp8(width: int, height: int) -> bytes:
    data = encoded(rgb_picture(), "WEBP", quality=80)
    at = data.index(b"\x9d\x01\x2a") + 3
    return _patched(data, at, struct.pack("<HH", width, height))


def _webp_vp8l(width: int, height: int) -> bytes:
    data = encoded(rgb_picture(), "WEBP", lossless=True)
    at = data.index(b"VP8L") + 8 + 1
    bits = struct.unpack("<I", data[at : at + 4])[0]
    bits = (bits & ~0x0FFFFFFF) | (width - 1) | (height - 1) << 14
    return _patched(data, at, struct.pack("<I", bits))


def _gif_dims(screen: tuple[int, int], frame: tuple[int, int]) -> bytes:
    descriptor = b"," + struct.pack("<HHHHB", 0, 0, *frame, 0)
    return b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\0" * 6 + descriptor + b"\x02\x02\x44\x01\x00;"


def _ispe(data: bytes, width: int, height: int) -> bytes:
    at = data.index(b"ispe") + 8
    return _patched(data, at, struct.pack(">II", width, height))


HUGE: dict[str, Callable[[], bytes]] = {
    "png-100000x100000": lambda: png_file((100000, 100000), 8, 2, [b"\0" * 3] * 2),
    "png-10000x10000": lambda: png_file((10000, 10000), 1, 0, [b"\0"] * 2),
    "png-2147483647x1": lambda: png_file((2**31 - 1, 2), 8, 0, [b"\0"]),
    "gif-screen-65535x65535": lambda: _gif_dims((65535, 65535), (1, 1)),
    "gif-frame-30000x30000-on-small-screen": lambda: _gif_dims((8, 8), (30000, 30000)),
    "bmp-50000x50000": lambda: bmp_file((50000, 50000), 24, b"\0" * 64),
    "bmp-top-down-50000x50000": lambda: bmp_file((50000, 50000), 24, b"\0" * 64, top_down=True),
    "tiff-100000x100000": lambda: tiff_file((100000, 100000), [8], b"\0" * 64, photometric=1),
    "tiff-rgb16-40000x40000": lambda: tiff_file((40000, 40000), [16] * 3, b"\0" * 64, photometric=2),
    "webp-vp8x-16777216x16777216": lambda: _webp_vp8x(2**24, 2**24),
    "webp-vp8x-12000x12000": lambda: _webp_vp8x(12000, 12000),
    "webp-vp8-16383x16383": lambda: _webp_vp8(16383, 16383),
    "webp-vp8l-16384x16384": lambda: _webp_vp8l(16384, 16384),
    "jpeg-sof-65535x65535": lambda: _jpeg_sof_dims(65535, 65535),
    "jpeg-sof-12000x12000": lambda: _jpeg_sof_dims(12000, 12000),
    "avif-ispe-60000x60000": lambda: _ispe(encoded(rgb_picture(), "AVIF"), 60000, 60000),
    "avif-ispe-12000x12000": lambda: _ispe(encoded(rgb_picture(), "AVIF"), 12000, 12000),
    "heic-ispe-60000x60000": lambda: _ispe(hostile("govips_heic-24bit.heic"), 60000, 60000),
}


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # we refuse it ourselves
@pytest.mark.parametrize("make", HUGE.values(), ids=HUGE.keys())
def test_huge_declared_frame_is_refused_from_the_header(
    make: Callable[[], bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make()
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded pixels of a bomb"))
    with pytest.raises(Rejected) as excinfo:
        guarded(lambda: render(data, PRESETS["default"], workers=1))
    assert excinfo.value.reason == "too_many_pixels", excinfo.value.detail
    # Named against the limit in force, not Pillow's own (twice its MAX_IMAGE_PIXELS), which its words give.
    assert f"pixels, exceeds the limit {DEFAULT_PIXEL_LIMIT}" in excinfo.value.detail


def _png_chunk_crc_zeroed(kind: bytes) -> bytes:
    data = bytearray(png_file((W, H), 8, 2, rows_of(rgb_picture(), bytes)))
    at = data.index(kind) - 4
    crc_at = at + 8 + int.from_bytes(data[at : at + 4], "big")
    data[crc_at : crc_at + 4] = bytes(4)
    return bytes(data)


def _png_ihdr_as(depth: int = 8, colour_type: int = 2, *, byte: int | None = None, value: int = 0) -> bytes:
    """An RGB PNG whose IHDR says `depth` and `colour_type`, or has byte `byte` of its payload set to `value`."""
    data = bytearray(png_file((W, H), 8, 2, rows_of(rgb_picture(), bytes)))
    data[24], data[25] = depth, colour_type
    if byte is not None:
        data[16 + byte] = value
    data[29:33] = zlib.crc32(data[12:29]).to_bytes(4, "big")
    return bytes(data)


def _png_without_idat() -> bytes:
    data = png_file((W, H), 8, 2, rows_of(rgb_picture(), bytes))
    at = data.index(b"IDAT") - 4
    return data[:at] + data[at + 12 + int.from_bytes(data[at : at + 4], "big") :]


def _png_signature_as(signature: bytes) -> bytes:
    return signature + png_file((W, H), 8, 2, rows_of(rgb_picture(), bytes))[8:]


DAMAGED_PNGS: dict[str, tuple[Callable[[], bytes], str]] = {
    # libpng refuses a critical chunk whose CRC fails; Pillow never reads IDAT's or IEND's (PngSuite's xcsn0g01).
    "idat-crc": (lambda: _png_chunk_crc_zeroed(b"IDAT"), "PNG's IDAT chunk at offset 33 fails its CRC"),
    "iend-crc": (lambda: _png_chunk_crc_zeroed(b"IEND"), "PNG's IEND chunk at offset"),
    # IHDR fields the PNG spec does not allow (PngSuite's xc1n0g08, xc9n2c08, xd0n2c08, xd3n2c08, xd9n2c08), and
    # no image data (xdtn0g01): libpng refuses each; Pillow ignores a compression method and words the rest vaguely.
    "colour-type-1": (lambda: _png_ihdr_as(colour_type=1), "IHDR declares colour type 1; PNG defines 0, 2, 3, 4 and 6"),
    "colour-type-9": (lambda: _png_ihdr_as(colour_type=9), "IHDR declares colour type 9"),
    "bit-depth-0": (lambda: _png_ihdr_as(depth=0), "IHDR declares bit depth 0 for colour type 2, which takes 8, 16"),
    "bit-depth-3": (lambda: _png_ihdr_as(depth=3), "IHDR declares bit depth 3 for colour type 2"),
    "bit-depth-99": (lambda: _png_ihdr_as(depth=99), "IHDR declares bit depth 99 for colour type 2"),
    "compression-method-1": (lambda: _png_ihdr_as(byte=10, value=1), "IHDR declares compression method 1"),
    "filter-method-1": (lambda: _png_ihdr_as(byte=11, value=1), "IHDR declares filter method 1"),
    "interlace-method-2": (lambda: _png_ihdr_as(byte=12, value=2), "IHDR declares interlace method 2"),
    "no-idat": (_png_without_idat, "PNG has no IDAT chunk before IEND"),
    # Signatures damaged in transfer (PngSuite's xs2n0g01, xs4n0g01, xs7n0g01, xcrn0g04, xlfn0g04): a PNG, damaged.
    "signature-byte-replaced": (lambda: _png_signature_as(b"\x89PQG\r\n\x1a\n"), "PNG header cannot be parsed"),
    "signature-lower-case": (lambda: _png_signature_as(b"\x89png\r\n\x1a\n"), "PNG header cannot be parsed"),
    "signature-eof-byte-a-space": (lambda: _png_signature_as(b"\x89PNG\r\n\x1a "), "PNG header cannot be parsed"),
    "signature-lf-to-crlf": (lambda: _png_signature_as(b"\x89PNG\r\r\n\x1a\r\n"), "PNG header cannot be parsed"),
    "signature-crlf-to-lf": (lambda: _png_signature_as(b"\x89PNG\n\x1a\n"), "PNG header cannot be parsed"),
}


@pytest.mark.parametrize(("make", "words"), DAMAGED_PNGS.values(), ids=DAMAGED_PNGS.keys())
def test_damaged_png_is_corrupt(make: Callable[[], bytes], words: str) -> None:
    with pytest.raises(Rejected) as excinfo:
        guarded(lambda: render(make(), PRESETS["default"], workers=1))
    assert excinfo.value.reason == "corrupt", excinfo.value.detail
    assert words in excinfo.value.detail


def test_png_with_every_crc_right_renders() -> None:
    data = png_file((W, H), 8, 2, rows_of(rgb_picture(), bytes))
    assert sniff.png_damage(data) is None
    assert len(guarded(lambda: render(data, PRESETS["default"], workers=1))) == len(PRESETS["default"])


# --- not images, other formats, polyglots: refused before any decoder runs -------------------------------------


def _zip_with_png() -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.png", encoded(rgb_picture(), "PNG"))
    return buffer.getvalue()


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\0\0\0\0" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + b"\0\0\0\x08free" + b"\0" * 64


def _grey_tiff(extra_tags: Sequence[tuple[int, int, Sequence[int]]] = ()) -> bytes:
    return tiff_file((W, H), [8], rgb_picture().convert("L").tobytes(), photometric=1, extra_tags=extra_tags)


def _rgb_tiff(*, compression: int, big_endian: bool = False) -> bytes:
    return tiff_file(
        (W, H), [8, 8, 8], rgb_picture().tobytes(), photometric=2, compression=compression, big_endian=big_endian
    )


def _cr2_like() -> bytes:
    """A grey TIFF laid out as a Canon CR2 starts: "CR", version 2 and the raw IFD's offset between header and IFD0."""
    pixels = bytes(range(64))
    entries = [(256, 8), (257, 8), (258, 8), (259, 1), (262, 1), (273, 16 + 2 + 9 * 12 + 4), (277, 1), (278, 8)]
    entries.append((279, len(pixels)))
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", tag, 4, 1, value) for tag, value in entries)
    return b"II*\0" + struct.pack("<I", 16) + b"CR\x02\0" + struct.pack("<I", 0) + ifd + bytes(4) + pixels


def _jpeg_frame_as(marker: int, precision: int = 8) -> bytes:
    """A baseline JPEG whose start-of-frame says another process (and sample precision): refused from the header."""
    data = bytearray(encoded(rgb_picture(), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 1], data[sof + 4] = marker, precision
    return bytes(data)


NOT_ACCEPTED: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty": (lambda: b"", "not_an_image"),
    "one-byte": (lambda: b"\xff", "not_an_image"),
    "whitespace": (lambda: b" \n\t " * 20, "not_an_image"),
    "text": (lambda: b"hello, I am a text file renamed to .jpg\n" * 5, "not_an_image"),
    "utf16-text": (lambda: "\ufeffhello".encode("utf-16"), "not_an_image"),
    "html": (lambda: b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>", "not_an_image"),
    "html-then-png": (lambda: b"<html><body>" + encoded(rgb_picture(), "PNG"), "not_an_image"),
    "json": (lambda: b'{"image": "not really"}', "not_an_image"),
    # Text that happens to start with a two- or six-byte image signature.
    "csv-starting-bm": (lambda: b"BMI,height,weight\n22.1,180,72\n" * 4, "not_an_image"),
    "note-starting-bm": (lambda: b"BMW service due in March, call the garage first.\n" * 3, "not_an_image"),
    "note-starting-gif89a": (lambda: b"GIF89a images, a history: from 1989 to today.\n" * 3, "not_an_image"),
    # Text that starts like a header of a format without a real signature, which only its parser can tell.
    "note-starting-p1": (lambda: b"P1 meeting at noon, P2 after lunch\n" * 3, "not_an_image"),
    "c-header": (lambda: b"#define MAX_WIDTH 10\n#define MAX_HEIGHT 20\n", "not_an_image"),
    "svg": (lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "unsupported_format"),
    "svg-xml-declaration": (
        lambda: b"<?xml version='1.0'?>\n<svg xmlns='http://www.w3.org/2000/svg'/>",
        "unsupported_format",
    ),
    "pdf": (
        lambda: b"%PDF-1.7\n1 0 obj<<>>endobj\n" + encoded(rgb_picture(), "JPEG") + b"\n%%EOF",
        "unsupported_format",
    ),
    "zip-holding-a-png": (_zip_with_png, "not_an_image"),
    "gzip": (lambda: b"\x1f\x8b\x08\x00" + zlib.compress(b"x" * 100), "not_an_image"),
    "elf": (lambda: b"\x7fELF\x02\x01\x01" + b"\0" * 100, "not_an_image"),
    "windows-exe": (lambda: b"MZ\x90\0" + b"\0" * 100, "not_an_image"),
    "mp4-video": (lambda: _ftyp(b"isom", b"iso2", b"mp41"), "not_an_image"),
    "canon-cr3-raw": (lambda: _ftyp(b"crx ", b"isom"), "unsupported_format"),
    # Camera raws in a TIFF container: Pillow would decode the preview in the first directory as if it were the photo.
    "dng-raw": (lambda: _grey_tiff([(254, 4, [1]), (50706, 1, [1, 4, 0, 0])]), "unsupported_format"),
    "canon-cr2-raw": (_cr2_like, "unsupported_format"),
    "raw-preview-of-a-subifd": (lambda: _grey_tiff([(254, 4, [1]), (330, 4, [8])]), "unsupported_format"),
    "olympus-orf-raw": (lambda: b"IIRO\x08\0\0\0" + b"\0" * 64, "unsupported_format"),
    # JPEG processes no decoder here (nor a browser's libjpeg-turbo) reads: valid files, not damage.
    "jpeg-12-bit": (lambda: _jpeg_frame_as(0xC1, 12), "unsupported_format"),
    "jpeg-lossless-16-bit": (lambda: _jpeg_frame_as(0xC3, 16), "unsupported_format"),
    "jpeg-hierarchical": (lambda: _jpeg_frame_as(0xC5), "unsupported_format"),
    "jpeg-ls": (lambda: _jpeg_frame_as(0xF7), "unsupported_format"),
    "tiff-jpeg2000-compression": (lambda: _rgb_tiff(compression=34712), "unsupported_format"),
    "tiff-webp-compression": (lambda: _rgb_tiff(compression=50001), "unsupported_format"),
    "tiff-webp-compression-big-endian": (lambda: _rgb_tiff(compression=50001, big_endian=True), "unsupported_format"),
    "mng": (lambda: b"\x8aMNG\r\n\x1a\n\x00\x00\x00\x1cMHDR" + b"\0" * 32, "unsupported_format"),
    "vips": (lambda: b"\x08\xf2\xa6\xb6" + b"\0" * 60, "unsupported_format"),
    "psd": (lambda: hostile("pillow_hopper.psd"), "unsupported_format"),
    "ico": (lambda: encoded(rgb_picture(), "ICO"), "unsupported_format"),
    "jpeg2000": (lambda: encoded(rgb_picture(), "JPEG2000"), "unsupported_format"),
    "jpeg2000-codestream": (lambda: encoded(rgb_picture(), "JPEG2000", no_jp2=True), "unsupported_format"),
    "jpeg-xl-codestream": (lambda: b"\xff\x0a\xfa\x7f" + b"\0" * 64, "unsupported_format"),
    "jpeg-xl-container": (lambda: b"\x00\x00\x00\x0cJXL \r\n\x87\n" + b"\0" * 64, "unsupported_format"),
    "qoi": (lambda: encoded(rgb_picture(), "QOI"), "unsupported_format"),
    "dds": (lambda: encoded(rgb_picture(), "DDS"), "unsupported_format"),
    "eps": (lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "unsupported_format"),
    "icns": (lambda: encoded(Image.new("RGB", (16, 16)), "ICNS"), "unsupported_format"),
    "ppm": (lambda: encoded(rgb_picture(), "PPM"), "unsupported_format"),
    "tga": (lambda: encoded(rgb_picture(), "TGA"), "unsupported_format"),
    "pcx": (lambda: encoded(rgb_picture(), "PCX"), "unsupported_format"),
    "sgi": (lambda: encoded(rgb_picture(), "SGI"), "unsupported_format"),
    "xbm": (lambda: encoded(quadrants("1", BILEVEL_QUADS), "XBM"), "unsupported_format"),
    "im": (lambda: encoded(rgb_picture(), "IM"), "unsupported_format"),
    "dib": (lambda: encoded(rgb_picture(), "DIB"), "unsupported_format"),
    "msp": (lambda: encoded(rgb_picture().convert("1"), "MSP"), "unsupported_format"),
    "spider": (lambda: encoded(rgb_picture().convert("F"), "SPIDER"), "unsupported_format"),
}


@pytest.mark.parametrize(("make", "reason"), NOT_ACCEPTED.values(), ids=NOT_ACCEPTED.keys())
def test_not_accepted_content_is_refused_before_a_decoder_runs(
    make: Callable[[], bytes], reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make()
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("a decoder ran"))
    with pytest.raises(Rejected) as excinfo:
        guarded(lambda: render(data, PRESETS["default"], workers=1))
    # An image in a format we refuse is named as one, signature or not (TGA has none): Pillow's own parsers tell.
    assert excinfo.value.reason == reason, excinfo.value.detail
    assert excinfo.value.detail


@pytest.mark.parametrize(
    "make",
    [lambda: _grey_tiff([(254, 4, [1])]), lambda: _cr2_like().replace(b"CR\x02", b"XY\x02", 1)],
    ids=["reduced-resolution-without-subifds", "cr2-layout-without-its-marker"],
)
def test_a_tiff_like_a_raw_in_one_respect_only_renders(make: Callable[[], bytes]) -> None:
    variants = guarded(lambda: render(make(), PRESETS["default"], workers=1))
    assert [v.name for v in variants] == [spec.name for spec in PRESETS["default"]]


# --- valid layouts of accepted containers that Pillow cannot decode --------------------------------------------

UNDECODABLE: dict[str, tuple[Callable[[], bytes], str]] = {
    "tiff-cmyk-with-alpha": (_tiff_cmyk_alpha, "TIFF header cannot be parsed: unknown pixel mode"),
    "tiff-unknown-compression": (
        lambda: tiff_file((W, H), [8, 8, 8], rgb_picture().tobytes(), photometric=2, compression=12345),
        "TIFF header cannot be parsed: unknown code 12345",
    ),
    "jpeg-9-bit-samples": (lambda: _jpeg_frame_as(0xC0, 9), "JPEG header cannot be parsed: cannot handle 9-bit layers"),
    "bmp-7-bit": (
        lambda: bmp_file((W, H), 7, b"\0" * W * H),
        "BMP header cannot be parsed: Unsupported BMP pixel depth (7)",
    ),
}


@pytest.mark.parametrize(("make", "words"), UNDECODABLE.values(), ids=UNDECODABLE.keys())
def test_layout_pillow_cannot_decode_is_refused_in_the_decoders_words(make: Callable[[], bytes], words: str) -> None:
    # Such a layout reads exactly like damage to the same fields, so the reason is `corrupt` and the words tell which.
    with pytest.raises(Rejected) as excinfo:
        guarded(lambda: render(make(), PRESETS["default"], workers=1))
    assert excinfo.value.reason == "corrupt"
    assert excinfo.value.detail == words


# --- bombs in metadata and frame counts -------------------------------------------------------------------------


def _png_text_bomb(kind: bytes, size: int, count: int = 1) -> bytes:
    payload = zlib.compress(b"\0" * size, 9)
    body = {
        b"zTXt": b"Comment\0\0" + payload,
        b"iTXt": b"Comment\0\1\0\0\0" + payload,
        b"iCCP": b"icc\0\0" + payload,
    }[kind]
    return png_file((W, H), 8, 2, rows_of(rgb_picture(), bytes), before=png_chunk(kind, body) * count)


BOMBS: dict[str, Callable[[], bytes]] = {
    "png-ztxt-64mb": lambda: _png_text_bomb(b"zTXt", 64 << 20),
    "png-itxt-64mb": lambda: _png_text_bomb(b"iTXt", 64 << 20),
    "png-iccp-64mb": lambda: _png_text_bomb(b"iCCP", 64 << 20),
    "png-ztxt-100-chunks-of-900kb": lambda: _png_text_bomb(b"zTXt", 900_000, 100),
    "png-idat-decompresses-to-200mb": lambda: png_file((W, H), 8, 2, [b"\0" * (200 << 20)]),
}


@pytest.mark.parametrize("make", BOMBS.values(), ids=BOMBS.keys())
def test_metadata_and_stream_bombs_are_bounded(make: Callable[[], bytes]) -> None:
    """A decompression bomb in a side channel: refused as corrupt, or rendered without it (Pillow caps text chunks)."""
    data = make()
    try:
        variants = guarded(lambda: render(data, PRESETS["responsive"], workers=2))
    except Rejected as exc:
        assert exc.reason == "corrupt", exc.detail
    else:
        check_render(PRESETS["responsive"], variants, (W, H))  # type: ignore[arg-type]


# --- damage: truncation and bit flips ------------------------------------------------------------------------------

DAMAGE_BASES: dict[str, Callable[[], bytes]] = {
    "jpeg": lambda: encoded(rgb_picture(), "JPEG", quality=90),
    "jpeg-progressive": lambda: encoded(rgb_picture(), "JPEG", quality=90, progressive=True),
    "jpeg-cmyk": lambda: encoded(rgb_picture().convert("CMYK"), "JPEG", quality=90),
    "mpo": p(_frames, "MPO", 2, quality=90),
    "png": lambda: encoded(rgba_picture(), "PNG"),
    "png16": p(_png16, 6),
    "apng": p(_frames, "PNG"),
    "gif": lambda: encoded(rgb_picture(), "GIF"),
    "gif-animated": p(_frames, "GIF"),
    "webp-lossy": lambda: encoded(rgb_picture(), "WEBP", quality=90),
    "webp-lossless-alpha": lambda: encoded(rgba_picture(), "WEBP", lossless=True),
    "webp-animated": p(_frames, "WEBP"),
    "tiff": lambda: encoded(rgb_picture(), "TIFF"),
    "tiff-lzw": lambda: encoded(rgb_picture(), "TIFF", compression="tiff_lzw"),
    "tiff-jpeg": lambda: encoded(rgb_picture(), "TIFF", compression="jpeg"),
    "tiff-group4": lambda: encoded(quadrants("1", BILEVEL_QUADS), "TIFF", compression="group4"),
    "tiff-multipage": p(_frames, "TIFF"),
    "tiff-multipage-lzw": p(_frames, "TIFF", compression="tiff_lzw"),
    "bmp": lambda: encoded(rgb_picture(), "BMP"),
    "bmp-rle8": p(_bmp_rle, 8),
    "avif": lambda: encoded(rgba_picture(), "AVIF"),
    "heic": p(hostile, "govips_heic-24bit.heic"),
}
# The later cuts land after the first frame of the multi-frame bases: in an MPO's second image, an animation's
# later frames, a TIFF's later pages.
CUTS = {
    "header": lambda n: 20,
    "third": lambda n: n // 3,
    "two-thirds": lambda n: 2 * n // 3,
    "nine-tenths": lambda n: 9 * n // 10,
}
TAIL_CUTS = {"last-byte": lambda n: n - 1, "last-16": lambda n: n - 16}


@functools.cache
def damage_base(name: str) -> bytes:
    return DAMAGE_BASES[name]()


def render_or_reject(data: bytes, preset: str, workers: int) -> list[RenderedVariant] | Rejected:
    try:
        return guarded(lambda: render(data, PRESETS[preset], workers=workers))  # type: ignore[return-value]
    except Rejected as exc:
        return exc


# Bases whose first frame is whole at nine tenths: only the container walk can tell they are cut (libwebp refuses a
# cut animated WebP itself). Value: the container the walk names.
CUT_AFTER_FIRST_FRAME = {
    "mpo": "MPO",
    "apng": "PNG",
    "gif-animated": "GIF",
    "tiff-multipage": "TIFF",
    "tiff-multipage-lzw": "TIFF",
    "heic": "HEIF",
}


@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize("base", DAMAGE_BASES)
def test_truncated_upload_is_rejected_as_corrupt(base: str, cut: str) -> None:
    """Also when the cut is after the first frame, which the decoder reads whole: the container says more follows."""
    data = damage_base(base)
    outcome = render_or_reject(data[: CUTS[cut](len(data))], "default", 1)
    assert isinstance(outcome, Rejected), f"a {base} cut at its {cut} was rendered"
    assert outcome.reason == "corrupt", outcome.detail
    if cut == "nine-tenths" and base in CUT_AFTER_FIRST_FRAME:
        assert outcome.detail.startswith(f"{CUT_AFTER_FIRST_FRAME[base]} is truncated: "), outcome.detail


# Cuts that leave every part the container declares, so they may render: a JPEG missing only its EOI marker
# (libjpeg supplies it once the scan is complete), a multi-page TIFF missing only the padding Pillow writes after
# its last page. A GIF missing only its trailer (common in the wild) must render.
NOTHING_DECLARED_MISSING = frozenset(
    {("jpeg", "last-byte"), ("jpeg-progressive", "last-byte"), ("jpeg-cmyk", "last-byte")}
    | {("tiff-multipage", "last-byte"), ("tiff-multipage-lzw", "last-byte")}
)


@pytest.mark.parametrize("cut", TAIL_CUTS)
@pytest.mark.parametrize("base", DAMAGE_BASES)
def test_upload_missing_its_end_is_rejected(base: str, cut: str) -> None:
    """A PNG without IEND, a TIFF without its last IFD, a HEIF short of its `mdat`: refused, though no pixel of the
    first frame is missing. Only a cut that removes nothing the container declares (an end marker, padding) may
    pass, with a full valid render."""
    data = damage_base(base)
    outcome = render_or_reject(data[: TAIL_CUTS[cut](len(data))], "responsive", 2)
    if base in ("gif", "gif-animated") and cut == "last-byte":
        check_render(PRESETS["responsive"], outcome, (W, H))  # type: ignore[arg-type]
    elif (base, cut) in NOTHING_DECLARED_MISSING and not isinstance(outcome, Rejected):
        check_render(PRESETS["responsive"], outcome, (W, H))
    else:
        assert isinstance(outcome, Rejected), f"a {base} cut by its {cut} was rendered"
        assert outcome.reason == "corrupt", outcome.detail


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("base", DAMAGE_BASES)
def test_bit_flips_are_rejected_or_rendered_never_escape(base: str, seed: int) -> None:
    """Flipped bits in the second half (pixel data, trailing chunks): `Rejected` or a valid render, nothing else."""
    data = bytearray(damage_base(base))
    rng = random.Random(f"{base}-{seed}")
    for _ in range(1 + seed * 3):
        at = rng.randrange(len(data) // 2, len(data))
        data[at] ^= 1 << rng.randrange(8)
    preset = ("default", "responsive")[seed % 2]
    outcome = render_or_reject(bytes(data), preset, 1 + seed % 2)
    if isinstance(outcome, Rejected):
        assert outcome.reason in ("corrupt", "too_many_pixels"), outcome.detail
    else:
        check_render(PRESETS[preset], outcome, None)
