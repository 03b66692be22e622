"""Pixels Pillow decodes otherwise than libpng, libtiff or Chromium, built in memory: each upload must render as
those show it, or be refused with its classified reason, never crash the handler or come out silently wrong.

PNG tRNS chunks (libpng's rules, low-bit and 16-bit colour keys), ICC tags that are not bytes, BMP alpha (unused
all-zero alpha, A1R5G5B5, bitfields layouts Pillow has no decoder for), TIFFs in separate planes, the first frame
of an APNG whose IDAT image is not part of its animation, and pixel data shorter than the frame.
"""

from __future__ import annotations

import functools
import io
import logging
import random
import struct
import zlib
from collections.abc import Callable, Sequence

import pytest
from PIL import Image

from handler import pipeline, sniff
from handler.colour import to_working_mode
from handler.pipeline import Rejected, render
from handler.variants import VariantSpec
from tests.test_pipeline_decode import damaged_copy
from tests.test_pipeline_generated import bmp_file, png_chunk, png_file, tiff_file

PNG_FULL = VariantSpec("full", "png")
JPEG_ON_BLUE = VariantSpec("jpeg", "jpeg", quality=95, background="#0000ff")


def rendered(data: bytes, spec: VariantSpec = PNG_FULL) -> Image.Image:
    (variant,) = render(data, [spec])
    image = Image.open(io.BytesIO(variant.data))
    image.load()
    return image


def row_of(image: Image.Image, mode: str = "RGBA", y: int = 0) -> list[tuple[int, ...]]:
    converted = image.convert(mode)
    return [converted.getpixel((x, y)) for x in range(image.width)]  # type: ignore[misc]


def alphas(data: bytes, y: int = 0) -> list[int]:
    return [pixel[3] for pixel in row_of(rendered(data), y=y)]


# --- PNG tRNS as libpng applies it ---------------------------------------------------------------------------

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def palette_png(
    palette: Sequence[tuple[int, int, int]], indices: Sequence[int], *chunks: bytes, depth: int = 8
) -> bytes:
    """One row of `indices` (as many as fit a byte at `depth` bits each: 8 // depth), `chunks` after the PLTE."""
    per_byte = 8 // depth
    padded = [*indices, *[0] * (-len(indices) % per_byte)]
    row = bytes(
        functools.reduce(lambda byte, index: byte << depth | index, padded[at : at + per_byte], 0)
        for at in range(0, len(padded), per_byte)
    )
    plte = png_chunk(b"PLTE", bytes(c for rgb in palette for c in rgb))
    return png_file((len(indices), 1), depth, 3, [row], before=plte + b"".join(chunks))


def trns(body: bytes) -> bytes:
    return png_chunk(b"tRNS", body)


PALETTE_TRNS_IGNORED = {
    # Pillow raised "palette index out of range" converting these (a crash, retried and dead-lettered).
    "257-alphas": lambda: palette_png((RED, GREEN), (0, 1), trns(b"\x80" * 257)),
    "300-alphas-one-zero": lambda: palette_png((RED, GREEN), (0, 1), trns(b"\xff" * 299 + b"\0")),
    # Pillow applied these; libpng ignores a tRNS longer than the palette.
    "longer-than-palette": lambda: palette_png((RED, GREEN), (0, 1), trns(b"\0\0\0")),
    # libpng keeps 2**depth palette entries: a 1-bit image's 4-entry PLTE has 2, so 3 alphas are too many.
    "longer-than-1-bit-palette": lambda: palette_png((RED, GREEN, BLUE, BLUE), (0, 1), trns(b"\0\0\0"), depth=1),
    "before-plte": lambda: png_file(
        (2, 1), 8, 3, [b"\0\1"], before=trns(b"\0") + png_chunk(b"PLTE", bytes(RED + GREEN))
    ),
}


@pytest.mark.parametrize("build", PALETTE_TRNS_IGNORED.values(), ids=PALETTE_TRNS_IGNORED.keys())
def test_palette_trns_libpng_ignores_is_ignored(build: Callable[[], bytes]) -> None:
    assert row_of(rendered(build())) == [(*RED, 255), (*GREEN, 255)]


def test_palette_trns_applies_to_the_entries_it_has() -> None:
    data = palette_png((RED, GREEN, BLUE), (0, 1, 2), trns(b"\0\x80"))
    assert alphas(data) == [0, 128, 255]


def test_only_the_first_valid_trns_counts() -> None:
    """A repeated tRNS is ignored (Pillow took the last); an invalid one does not count as the first."""
    repeated = palette_png((RED, GREEN), (0, 1), trns(b"\0"), trns(b"\xff\0"))
    assert alphas(repeated) == [0, 255]
    after_invalid = palette_png((RED, GREEN), (0, 1), trns(b"\0\0\0"), trns(b"\xff\0"))
    assert alphas(after_invalid) == [255, 0]


def test_rgb_trns_before_a_plte_is_cancelled() -> None:
    """libpng cancels a tRNS a (suggested) PLTE follows in an RGB PNG; Pillow applied it."""
    before = trns(struct.pack(">3H", *RED)) + png_chunk(b"PLTE", bytes(RED))
    data = png_file((2, 1), 8, 2, [bytes(RED + GREEN)], before=before)
    assert alphas(data) == [255, 255]


def low_bit_grey(depth: int, samples: Sequence[int], key: int) -> bytes:
    row = 0
    for sample in samples:
        row = (row << depth) | sample
    length = (len(samples) * depth + 7) // 8
    row <<= length * 8 - len(samples) * depth
    return png_file((len(samples), 1), depth, 0, [row.to_bytes(length, "big")], before=trns(struct.pack(">H", key)))


COLOUR_KEYS = {
    # Pillow spread the samples over 0..255 but compared them with the key as stored: nothing matched.
    "4-bit-grey": (lambda: low_bit_grey(4, (0, 5, 10, 15), 5), [255, 0, 255, 255]),
    "2-bit-grey": (lambda: low_bit_grey(2, (0, 1, 2, 3), 3), [255, 255, 255, 0]),
    # libpng compares only the sample's bits of the key: 0x0105 at 8 bits is 5, 2 at 1 bit is 0.
    "8-bit-grey-high-bits": (lambda: png_file((2, 1), 8, 0, [b"\x05\x06"], before=trns(b"\x01\x05")), [0, 255]),
    "1-bit-grey-high-bits": (lambda: low_bit_grey(1, (0, 1), 2), [0, 255]),
    "8-bit-rgb-high-bits": (
        lambda: png_file((2, 1), 8, 2, [bytes(RED + GREEN)], before=trns(struct.pack(">3H", 0x1FF, 0x100, 0x100))),
        [0, 255],
    ),
    # Pillow kept only each sample's high byte, and compared the 16-bit key with it.
    "16-bit-rgb": (
        lambda: png_file((2, 1), 16, 2, [b"\x12\x34" * 3 + b"\x12\x35" * 3], before=trns(b"\x12\x34" * 3)),
        [0, 255],
    ),
    "16-bit-rgb-low-byte-differs-in-blue": (
        lambda: png_file(
            (2, 1),
            16,
            2,
            [b"\x12\x34\x56\x78\x9a\xbc" + b"\x12\x34\x56\x78\x9a\xbd"],
            before=trns(b"\x12\x34\x56\x78\x9a\xbd"),
        ),
        [255, 0],
    ),
}


@pytest.mark.parametrize(("build", "expected"), COLOUR_KEYS.values(), ids=COLOUR_KEYS.keys())
def test_colour_key_is_matched_at_the_files_bit_depth(build: Callable[[], bytes], expected: list[int]) -> None:
    assert alphas(build()) == expected


def adam7(size: tuple[int, int], pixel: Callable[[int, int], bytes]) -> bytes:
    """The filtered scanlines of an interlaced PNG (filter 0), pass by pass."""
    width, height = size
    out = b""
    for x0, y0, dx, dy in (
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ):
        columns = range(x0, width, dx)
        for y in range(y0, height, dy):
            if columns:
                out += b"\0" + b"".join(pixel(x, y) for x in columns)
    return out


def interlaced_png(size: tuple[int, int], depth: int, colour_type: int, scanlines: bytes, before: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", *size, depth, colour_type, 0, 0, 1)
    idat = png_chunk(b"IDAT", zlib.compress(scanlines))
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + before + idat + png_chunk(b"IEND", b"")


def test_interlaced_16_bit_rgb_colour_key() -> None:
    """The low bytes are decoded again from the same (Adam7) stream."""
    key = b"\x12\x34\x56\x78\x9a\xbc"
    data = interlaced_png(
        (9, 9), 16, 2, adam7((9, 9), lambda x, y: key if (x + y) % 2 else key[:5] + b"\xbd"), trns(key)
    )
    image = rendered(data)
    assert [pixel[3] for y in range(9) for pixel in row_of(image, y=y)] == [
        0 if (x + y) % 2 else 255 for y in range(9) for x in range(9)
    ]


HOSTILE_TRANSPARENCY = {
    "P-257-alphas": ("P", b"\x80" * 257),
    "P-index-300": ("P", 300),
    "P-text": ("P", "0"),
    "L-bytes": ("L", b"\0\0"),
    "L-negative": ("L", -1),
    "L-huge": ("L", 1 << 40),
    "1-tuple": ("1", (1, 2, 3)),
    "I;16-float": ("I;16", 0.5),
    "RGB-int": ("RGB", 5),
    "RGB-pair": ("RGB", (1, 2)),
    "RGB-huge": ("RGB", (1 << 40, 0, 0)),
}


@pytest.mark.parametrize(("mode", "value"), HOSTILE_TRANSPARENCY.values(), ids=HOSTILE_TRANSPARENCY.keys())
def test_transparency_pillow_cannot_apply_is_logged_and_ignored(
    mode: str, value: object, caplog: pytest.LogCaptureFixture
) -> None:
    image = Image.new(mode, (2, 1))
    image.info["transparency"] = value
    with caplog.at_level(logging.WARNING, logger="handler.colour"):
        working = to_working_mode(image)
    assert working.mode in ("L", "RGB") and "transparency" not in working.info
    assert image.info["transparency"] == value, "the caller's image is left as it was"
    assert "ignoring transparency" in caplog.text


def test_bilevel_transparency_is_kept() -> None:
    image = Image.new("1", (2, 1))
    image.putpixel((1, 0), 255)
    image.info["transparency"] = 255
    assert list(to_working_mode(image).getchannel("A").tobytes()) == [255, 0]


# --- ICC: only bytes are a profile -------------------------------------------------------------------------------

ICC_PROFILE_TAG = 34675
ICC_TAGS = {"SHORT": (3, [5]), "LONG": (4, [5]), "RATIONAL": (5, [5]), "SHORTs": (3, [1, 2, 3]), "ASCII": (2, b"icc\0")}


@pytest.mark.parametrize(("kind", "value"), ICC_TAGS.values(), ids=ICC_TAGS.keys())
def test_tiff_icc_tag_that_is_not_bytes_is_logged_and_ignored(
    kind: int, value: Sequence[int], caplog: pytest.LogCaptureFixture
) -> None:
    pixels = bytes((200, 30, 30)) * 8
    data = tiff_file((4, 2), (8, 8, 8), pixels, photometric=2, extra_tags=[(ICC_PROFILE_TAG, kind, value)])
    with caplog.at_level(logging.WARNING):
        image = rendered(data)
    assert row_of(image, "RGB")[0] == (200, 30, 30)
    assert "ICC profile" in caplog.text


# --- BMP alpha as Chromium reads it --------------------------------------------------------------------------------

BGRA_MASKS = (0x00FF0000, 0x0000FF00, 0x000000FF, 0xFF000000)


def test_bmp_whose_alpha_is_zero_everywhere_is_opaque() -> None:
    """Clipboard dumps and old tools write 32-bit BMPs with an alpha mask they never fill: Chromium and Windows show
    them opaque."""
    data = bmp_file((4, 2), 32, bytes((0, 0, 255, 0)) * 8, compression=3, masks=BGRA_MASKS)
    assert row_of(rendered(data)) == [(255, 0, 0, 255)] * 4
    assert row_of(rendered(data, JPEG_ON_BLUE), "RGB")[0][0] > 240  # red, not the blue background


def test_bmp_alpha_is_kept_when_some_is_not_zero() -> None:
    pixels = (bytes((0, 0, 255, 0)) + bytes((0, 0, 255, 200))) * 4
    data = bmp_file((4, 2), 32, pixels, compression=3, masks=BGRA_MASKS)
    assert alphas(data) == [0, 200, 0, 200]


def a1r5g5b5(alpha_bits: Sequence[int], *, top_down: bool = False) -> bytes:
    """Red pixels, one per alpha bit, in 2 identical rows (4 bytes each: no padding)."""
    row = b"".join(struct.pack("<H", bit << 15 | 0x7C00) for bit in alpha_bits)
    return bmp_file(
        (len(alpha_bits), 2), 16, row * 2, compression=3, masks=(0x7C00, 0x3E0, 0x1F, 0x8000), top_down=top_down
    )


@pytest.mark.parametrize("top_down", [False, True], ids=["bottom-up", "top-down"])
def test_a1r5g5b5_bmp_keeps_its_alpha_bit(top_down: bool) -> None:
    assert row_of(rendered(a1r5g5b5((1, 0), top_down=top_down))) == [(255, 0, 0, 255), (255, 0, 0, 0)]


def test_a1r5g5b5_bmp_with_no_alpha_bit_set_is_opaque() -> None:
    assert row_of(rendered(a1r5g5b5((0, 0)))) == [(255, 0, 0, 255)] * 2


BMP_LAYOUTS = {
    "A4R4G4B4": (16, (0x0F00, 0x00F0, 0x000F, 0xF000)),
    "X4R4G4B4": (16, (0x0F00, 0x00F0, 0x000F, 0)),
    "A2R10G10B10": (32, (0x3FF00000, 0x000FFC00, 0x000003FF, 0xC0000000)),
    "R8G8B8A8": (32, (0xFF000000, 0x00FF0000, 0x0000FF00, 0x000000FF)),
}
BMP_GARBAGE_MASKS = {
    "split": (16, (0xF0F, 0xF0, 0, 0)),
    "overlapping": (16, (0xFF00, 0xFF0, 0xF, 0)),
    "beyond-the-pixel": (16, (0xF0000, 0xF0, 0xF, 0)),
    "none": (32, (0, 0, 0, 0)),
}


@pytest.mark.parametrize(
    ("layout", "bits_masks"),
    [*BMP_LAYOUTS.items(), *((None, garbage) for garbage in BMP_GARBAGE_MASKS.values())],
    ids=[*BMP_LAYOUTS, *BMP_GARBAGE_MASKS],
)
def test_bmp_bitfields_layout_is_named(layout: str | None, bits_masks: tuple[int, tuple[int, ...]]) -> None:
    bits, masks = bits_masks
    data = bmp_file((4, 2), bits, bytes(bits), compression=3, masks=masks)
    described = sniff.bmp_bitfields(data)
    assert described is not None and described.layout == layout


@pytest.mark.parametrize("layout", ["A4R4G4B4", "X4R4G4B4", "A2R10G10B10"])
def test_bmp_bitfields_pillow_cannot_decode_are_decoded(layout: str) -> None:
    """By `handler.bmp`, as Chromium shows them (tests/test_bmp.py checks their pixels)."""
    bits, masks = BMP_LAYOUTS[layout]
    data = bmp_file((4, 2), bits, bytes(bits), compression=3, masks=masks)
    assert row_of(rendered(data)) == [(0, 0, 0, 255)] * 4  # alpha 0 everywhere: opaque


def test_bmp_bitfields_at_24_bits_are_unsupported_not_corrupt() -> None:
    """A valid layout, at a depth browsers decode no bitfields at."""
    data = bmp_file((4, 2), 24, bytes(24), compression=3, masks=(0xFF, 0xFF00, 0xFF0000, 0))
    with pytest.raises(Rejected) as refused:
        render(data, [PNG_FULL])
    assert refused.value.reason == "unsupported_format"
    assert "24-bit B8G8R8 bitfields" in refused.value.detail


@pytest.mark.parametrize("masks", [(0x7C00, 0x3E0, 0x1F, 0), BMP_GARBAGE_MASKS["overlapping"][1]])
def test_damaged_bmp_header_stays_corrupt(masks: tuple[int, ...]) -> None:
    """13 bits per pixel, or masks that overlap: damage, in Pillow's words."""
    data = bytearray(bmp_file((4, 2), 16, bytes(16), compression=3, masks=masks))
    if masks[0] == 0x7C00:
        data[28:30] = struct.pack("<H", 13)
    with pytest.raises(Rejected) as refused:
        render(bytes(data), [PNG_FULL])
    assert refused.value.reason == "corrupt"


# --- TIFF in separate planes (PlanarConfiguration 2) ---------------------------------------------------------------


def strip_tiff(
    size: tuple[int, int],
    bits: Sequence[int],
    strips: Sequence[bytes],
    *,
    photometric: int,
    planar: int = 1,
    rows_per_strip: int | None = None,
    extra_samples: Sequence[int] = (),
    sample_format: int = 1,
    compression: int = 1,
    big_endian: bool = False,
) -> bytes:
    """A TIFF of the given strips (compressed with Deflate when `compression` is 8), in either planar layout."""
    order = ">" if big_endian else "<"
    stored = [zlib.compress(strip) for strip in strips] if compression == 8 else list(strips)
    fields: dict[int, tuple[int, Sequence[int]]] = {
        256: (4, [size[0]]),
        257: (4, [size[1]]),
        258: (3, list(bits)),
        259: (3, [compression]),
        262: (3, [photometric]),
        273: (4, [0] * len(stored)),
        277: (3, [len(bits)]),
        278: (4, [rows_per_strip or size[1]]),
        279: (4, [len(strip) for strip in stored]),
        284: (3, [planar]),
        339: (3, [sample_format] * len(bits)),
    }
    if extra_samples:
        fields[338] = (3, list(extra_samples))
    data_at = 8 + 2 + 12 * len(fields) + 4
    offsets, at = [], data_at
    for strip in stored:
        offsets.append(at)
        at += len(strip)
    fields[273] = (4, offsets)
    ifd, tail = struct.pack(order + "H", len(fields)), b""
    for tag, (kind, values) in sorted(fields.items()):
        raw = struct.pack(order + ("H" if kind == 3 else "I") * len(values), *values)
        if len(raw) <= 4:
            ifd += struct.pack(order + "HHI", tag, kind, len(values)) + raw.ljust(4, b"\0")
        else:
            ifd += struct.pack(order + "HHII", tag, kind, len(values), at + len(tail))
            tail += raw
    header = (b"MM\0*" if big_endian else b"II*\0") + struct.pack(order + "I", 8)
    return header + ifd + b"\0\0\0\0" + b"".join(stored) + tail


W, H = 6, 4


def samples(count: int, width: int, seed: int) -> list[bytes]:
    """`count` planes of W x H samples, `width` bytes each, pseudo-random."""
    rng = random.Random(seed)
    return [bytes(rng.randrange(256) for _ in range(W * H * width)) for _ in range(count)]


def interleaved(planes: Sequence[bytes], width: int) -> bytes:
    return b"".join(plane[i : i + width] for i in range(0, len(planes[0]), width) for plane in planes)


PLANAR_LAYOUTS = {
    # name: bits, photometric, extra samples, sample format, big-endian
    "rgb-16": ((16,) * 3, 2, (), 1, False),
    "rgb-16-big-endian": ((16,) * 3, 2, (), 1, True),
    "rgba-16": ((16,) * 4, 2, (2,), 1, False),
    "rgb-16-associated-alpha": ((16,) * 4, 2, (1,), 1, False),
    "rgb-8-associated-alpha": ((8,) * 4, 2, (1,), 1, False),
    "cmyk-16": ((16,) * 4, 5, (), 1, False),
    "rgb-8": ((8,) * 3, 2, (), 1, False),
    "rgba-8": ((8,) * 4, 2, (2,), 1, False),
    "grey-16": ((16,), 1, (), 1, False),
    "grey-16-signed-big-endian": ((16,), 1, (), 2, True),
    "grey-8-min-is-white": ((8,), 0, (), 1, False),
    "float-big-endian": ((32,), 1, (), 3, True),
}


@pytest.mark.parametrize(("layout", "seed"), [(name, seed) for name in PLANAR_LAYOUTS for seed in range(2)])
def test_uncompressed_planar_tiff_renders_as_the_contiguous_one(layout: str, seed: int) -> None:
    """Pillow's raw decoder unpacks each plane with one letter of the raw mode: 16-bit planes were read as 8-bit
    ones, a single MinIsWhite or big-endian plane lost its inversion or byte order."""
    bits, photometric, extra, sample_format, big_endian = PLANAR_LAYOUTS[layout]
    width = bits[0] // 8
    planes = samples(len(bits), width, seed)
    if sample_format == 3:  # floats in 0..1, as TIFF means them
        planes = [b"".join(struct.pack(">f", random.Random(seed + i).random()) for i in range(W * H))]
    common = {"photometric": photometric, "extra_samples": extra, "sample_format": sample_format}
    contiguous = strip_tiff((W, H), bits, [interleaved(planes, width)], **common, big_endian=big_endian)
    separate = strip_tiff((W, H), bits, planes, planar=2, **common, big_endian=big_endian)
    expected = rendered(contiguous)
    assert rendered(separate).tobytes() == expected.tobytes()


@pytest.mark.parametrize("compression", [1, 8], ids=["uncompressed", "deflate"])
@pytest.mark.parametrize(
    ("bits", "photometric", "extra"),
    [((8, 8), 1, (2,)), ((8, 8), 1, (1,)), ((8, 8, 8), 8, ())],
    ids=["LA", "La", "LAB"],
)
def test_planar_tiff_no_decoder_reads_right_is_unsupported(
    bits: tuple[int, ...], photometric: int, extra: tuple[int, ...], compression: int
) -> None:
    """libtiff's planar path (through Pillow) zeroes grey's alpha and garbles LAB; Pillow's raw decoder too."""
    data = strip_tiff(
        (W, H),
        bits,
        samples(len(bits), 1, 0),
        photometric=photometric,
        planar=2,
        extra_samples=extra,
        compression=compression,
    )
    with pytest.raises(Rejected) as refused:
        render(data, [PNG_FULL])
    assert refused.value.reason == "unsupported_format"
    assert "PlanarConfiguration 2" in refused.value.detail


# --- APNG: browsers show the animation, not the IDAT image -------------------------------------------------------

APNG_SIZE = (4, 2)


def frame_data(colour: Sequence[int], size: tuple[int, int] = APNG_SIZE) -> bytes:
    return zlib.compress((b"\0" + bytes(colour) * size[0]) * size[1])


def fctl(sequence: int, size: tuple[int, int] = APNG_SIZE, at: tuple[int, int] = (0, 0), blend: int = 0) -> bytes:
    return png_chunk(b"fcTL", struct.pack(">IIIIIHHBB", sequence, *size, *at, 1, 10, 0, blend))


def apng(colour_type: int, idat: bytes, *after: bytes, frames: int = 1, idat_in_animation: bool = False) -> bytes:
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", *APNG_SIZE, 8, colour_type, 0, 0, 0))
    actl = png_chunk(b"acTL", struct.pack(">II", frames, 0))
    first = fctl(0) if idat_in_animation else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + ihdr
        + actl
        + first
        + png_chunk(b"IDAT", idat)
        + b"".join(after)
        + png_chunk(b"IEND", b"")
    )


def fdat(sequence: int, stream: bytes) -> bytes:
    return png_chunk(b"fdAT", struct.pack(">I", sequence) + stream)


def test_apng_shows_its_first_animation_frame_not_the_idat_image() -> None:
    data = apng(2, frame_data(RED), fctl(0), fdat(1, frame_data(GREEN)))
    assert row_of(rendered(data), "RGB") == [GREEN] * 4


def test_apng_first_frame_blended_over_is_not_blended_over_the_idat_image() -> None:
    """Over the transparent black canvas browsers start from, OVER is SOURCE; Pillow blended over the IDAT image."""
    data = apng(6, frame_data((*RED, 255)), fctl(0, blend=1), fdat(1, frame_data((*GREEN, 128))))
    assert row_of(rendered(data)) == [(*GREEN, 128)] * 4


def test_apng_first_frame_smaller_than_the_canvas_is_transparent_around() -> None:
    data = apng(2, frame_data(RED), fctl(0, (2, 1), (1, 1)), fdat(1, frame_data(GREEN, (2, 1))))
    image = rendered(data)
    assert alphas(data, y=0) == [0] * 4
    assert alphas(data, y=1) == [0, 255, 255, 0]
    assert row_of(image, y=1)[1:3] == [(*GREEN, 255)] * 2


def test_apng_whose_idat_image_is_its_first_frame_shows_it() -> None:
    data = apng(2, frame_data(RED), fctl(1), fdat(2, frame_data(GREEN)), frames=2, idat_in_animation=True)
    assert row_of(rendered(data), "RGB") == [RED] * 4


@pytest.mark.parametrize("frames", [0, 1])
def test_apng_animation_without_frames_shows_the_idat_image(frames: int) -> None:
    """An acTL counting no frames is ignored (by Pillow and browsers); one counting frames that are not there
    leaves the IDAT image to show (Pillow's seek to them failed)."""
    assert row_of(rendered(apng(2, frame_data(RED), frames=frames)), "RGB") == [RED] * 4


def test_apng_first_frame_with_16_bit_colour_key() -> None:
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 1, 16, 2, 0, 0, 0))
    key = b"\x12\x34" * 3
    frame = zlib.compress(b"\0" + key + b"\x12\x35" * 3)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + ihdr
        + png_chunk(b"acTL", struct.pack(">II", 1, 0))
        + trns(key)
        + png_chunk(b"IDAT", zlib.compress(b"\0" + bytes(12)))
        + fctl(0, (2, 1))
        + fdat(1, frame)
        + png_chunk(b"IEND", b"")
    )
    assert alphas(data) == [0, 255]


# --- pixel data shorter than the frame ------------------------------------------------------------------------------


def test_png_whose_image_data_ends_early_is_corrupt() -> None:
    """A whole zlib stream that inflates to 5 of 10 rows: Pillow rendered the rest black, libpng refuses it."""
    data = png_file((4, 10), 8, 0, [b"\xc8" * 4] * 5)
    with pytest.raises(Rejected) as refused:
        render(data, [PNG_FULL])
    assert refused.value.reason == "corrupt"
    assert "ends early" in refused.value.detail


@pytest.mark.parametrize(("height", "last_row"), [(7, 6), (8, 6), (1, 3)])
def test_interlaced_png_whose_image_data_ends_early_is_corrupt(height: int, last_row: int) -> None:
    """The last odd row is written only by Adam7's last pass (1 + 5 bytes); a single row is written over several
    (the last: 1 + 2 bytes), and its stream is counted."""
    full = adam7((5, height), lambda x, y: bytes((x * 40 + y,)))
    with pytest.raises(Rejected) as refused:
        render(interlaced_png((5, height), 8, 0, full[:-last_row]), [PNG_FULL])
    assert refused.value.reason == "corrupt"
    assert "ends early" in refused.value.detail
    assert rendered(interlaced_png((5, height), 8, 0, full)).size == (5, height)


def png_of(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


MARK_COLOURED = {
    "L": lambda: Image.new("L", (5, 3), 90),
    "LA": lambda: Image.new("LA", (5, 3), (90, 90)),
    "RGB": lambda: Image.new("RGB", (5, 3), (90, 90, 90)),
    "RGBA": lambda: Image.new("RGBA", (5, 3), (90, 90, 90, 90)),
    "1-white": lambda: Image.new("1", (5, 3), 1),  # packed to bits, the mark reads as white
    "I;16": lambda: Image.new("I;16", (5, 3), 90),
}


@pytest.mark.parametrize("make", MARK_COLOURED.values(), ids=MARK_COLOURED.keys())
def test_png_whose_last_row_has_the_marks_colour_is_counted_and_renders(
    make: Callable[[], Image.Image], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last row is marked with 90 in every sample before decoding: a picture ending in that colour has its
    stream counted, and renders."""
    counted = []
    count = pipeline._inflated_size
    monkeypatch.setattr(pipeline, "_inflated_size", lambda *args: counted.append(1) or count(*args))
    assert rendered(png_of(make())).size == (5, 3)
    assert counted == [1]
    assert rendered(png_of(Image.new("L", (5, 3), 91))).size == (5, 3)
    assert counted == [1], "a row the decoder overwrote is not counted"


def test_palette_png_whose_last_row_has_the_marks_index_renders() -> None:
    plte = png_chunk(b"PLTE", bytes(level for level in range(256) for _ in "RGB"))
    assert row_of(rendered(png_file((5, 3), 8, 3, [bytes([90] * 5)] * 3, before=plte)), "RGB") == [(90, 90, 90)] * 5


def test_apng_first_frame_whose_data_ends_early_is_corrupt() -> None:
    data = apng(2, frame_data(RED), fctl(0), fdat(1, frame_data(GREEN, (4, 1))))
    with pytest.raises(Rejected) as refused:
        render(data, [PNG_FULL])
    assert refused.value.reason == "corrupt"
    assert "ends early" in refused.value.detail


TIFF_ROW = b"\xc8" * W


@pytest.mark.parametrize(("strips", "rows_per_strip"), [(2, 1), (1, 2)], ids=["2-of-4-strips", "short-strip-grid"])
def test_tiff_whose_strips_do_not_cover_the_frame_is_corrupt(strips: int, rows_per_strip: int) -> None:
    """Pillow left the rows no strip covers black; libtiff refuses the same file compressed."""
    data = strip_tiff((W, H), (8,), [TIFF_ROW * rows_per_strip] * strips, photometric=1, rows_per_strip=rows_per_strip)
    with pytest.raises(Rejected) as refused:
        render(data, [PNG_FULL])
    assert refused.value.reason == "corrupt"


def test_tiff_whose_strips_cover_the_frame_renders() -> None:
    data = strip_tiff((W, H), (8,), [TIFF_ROW * 3, TIFF_ROW], photometric=1, rows_per_strip=3)
    assert row_of(rendered(data), "L", y=H - 1) == [200] * W


def test_tiff_strips_beyond_the_frame_are_ignored() -> None:
    """libtiff reads the strips the frame needs; Pillow decoded the others over its top rows again."""
    data = strip_tiff((W, H), (8,), [TIFF_ROW] * H + [b"\xf0" * W], photometric=1, rows_per_strip=1)
    assert [row_of(rendered(data), "L", y=y)[0] for y in range(H)] == [200] * H


def test_planar_tiff_missing_a_plane_is_corrupt() -> None:
    strips = [plane[at : at + W * 2] for plane in samples(3, 1, 0) for at in (0, W * 2)]
    data = strip_tiff((W, H), (8, 8, 8), strips[:-1], photometric=2, planar=2, rows_per_strip=2)
    with pytest.raises(Rejected) as refused:
        render(data, [PNG_FULL])
    assert refused.value.reason == "corrupt"


# --- damage: the chunks, tags and masks these fixes read are the attacker's too ------------------------------------

DAMAGED: dict[str, Callable[[], bytes]] = {
    "palette-trns": PALETTE_TRNS_IGNORED["257-alphas"],
    "16-bit-rgb-key": COLOUR_KEYS["16-bit-rgb"][0],
    "interlaced-16-bit-rgb-key": lambda: interlaced_png(
        (9, 9), 16, 2, adam7((9, 9), lambda x, y: bytes((x, y)) * 3), trns(bytes((1, 1)) * 3)
    ),
    "apng": lambda: apng(
        6, frame_data((*RED, 255)), fctl(0, (2, 1), (1, 1), blend=1), fdat(1, frame_data((*GREEN, 9), (2, 1)))
    ),
    "planar-rgb-16": lambda: strip_tiff((W, H), (16,) * 3, samples(3, 2, 0), photometric=2, planar=2),
    "planar-grey-16": lambda: strip_tiff((W, H), (16,), samples(1, 2, 0), photometric=1, planar=2, rows_per_strip=1),
    "a1r5g5b5-bmp": lambda: a1r5g5b5((1, 0)),
    "zero-alpha-bmp": lambda: bmp_file((4, 2), 32, bytes(32), compression=3, masks=BGRA_MASKS),
}


@pytest.mark.parametrize("seed", range(16))
@pytest.mark.parametrize("build", DAMAGED.values(), ids=DAMAGED.keys())
def test_damaged_upload_is_rejected_or_rendered(build: Callable[[], bytes], seed: int) -> None:
    """Bits flipped in the first 120 bytes (every other seed) or anywhere, every fourth file cut too: `Rejected`
    or a valid render, never another error."""
    data = damaged_copy(build(), seed, header=120, header_every=2, most_flips=3)
    try:
        variants = render(data, [PNG_FULL, JPEG_ON_BLUE])
    except Rejected as exc:
        assert exc.reason in ("corrupt", "unsupported_format", "not_an_image", "too_many_pixels"), exc.detail
        return
    for variant in variants:
        Image.open(io.BytesIO(variant.data)).load()
