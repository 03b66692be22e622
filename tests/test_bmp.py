"""BMP layouts Pillow has no decoder for (`handler.bmp`), built in memory: each must render as Chromium shows it, or be
refused with its classified reason.

Bitfields of 16- and 32-bit pixels with any masks that are runs of bits (BI_BITFIELDS and BI_ALPHABITFIELDS),
2-bit palettes, OS/2 2.x headers of other sizes than 64 bytes, palettes declared longer than their indexes reach,
RLE8 and RLE4 codes as Chromium draws them; a JPEG or PNG inside a BMP is refused by name.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence

import pytest
from PIL import Image

from handler import bmp, sniff
from handler.pipeline import Rejected, render
from handler.variants import VariantSpec
from tests.test_pipeline_containers import END_OF_ROW, delta, literal, literal4, run
from tests.test_pipeline_generated import bmp_file

PNG_FULL = VariantSpec("full", "png")

# Layout -> (bits, masks R G B A, three (stored pixel value, RGBA Chromium shows)). Channels under 8 bits are spread
# over 0..255 rounded (Chromium's nBitTo8BitlookupTable), wider ones keep their top 8 bits.
LAYOUTS: dict[str, tuple[int, tuple[int, int, int, int], list[tuple[int, tuple[int, int, int, int]]]]] = {
    "A4R4G4B4": (
        16,
        (0x0F00, 0x00F0, 0x000F, 0xF000),
        [(0xF812, (136, 17, 34, 255)), (0x5FA0, (255, 170, 0, 85)), (0x0123, (17, 34, 51, 0))],
    ),
    "X4R4G4B4": (
        16,
        (0x0F00, 0x00F0, 0x000F, 0),
        [(0xA5C3, (85, 204, 51, 255)), (0x0FFF, (255, 255, 255, 255)), (0xF000, (0, 0, 0, 255))],
    ),
    "X10R2G3B1": (  # bmpsuite's rgb16-231
        16,
        (0x30, 0x0E, 0x01, 0),
        [(0b10_101_1, (170, 182, 255, 255)), (0b01_011_0, (85, 109, 0, 255)), (0xFFC0, (0, 0, 0, 255))],
    ),
    "R5G6B5 rounded": (  # a layout Pillow knows, here as BI_ALPHABITFIELDS, which it does not
        16,
        (0xF800, 0x07E0, 0x001F, 0),
        [(3 << 11 | 11 << 5 | 1, (25, 45, 8, 255)), (0xFFFF, (255, 255, 255, 255)), (30 << 11, (247, 0, 0, 255))],
    ),
    "A2R10G10B10": (
        32,
        (0x3FF00000, 0x000FFC00, 0x000003FF, 0xC0000000),
        [
            (2 << 30 | 0x3FF << 20 | 0x200 << 10 | 0x003, (255, 128, 0, 170)),
            (1 << 30 | 0x0FF << 20 | 0x1FF << 10 | 0x3FC, (63, 127, 255, 85)),
            (3 << 30, (0, 0, 0, 255)),
        ],
    ),
    "X2R10G10B10": (
        32,
        (0x3FF00000, 0x000FFC00, 0x000003FF, 0),
        [(3 << 30 | 0x104 << 20 | 7 << 10 | 0x3FF, (65, 1, 255, 255)), (0, (0, 0, 0, 255)), (0xFFFFFFFF, (255,) * 4)],
    ),
    "R11G11B10": (  # bmpsuite's rgb32-111110
        32,
        (0xFFE00000, 0x001FFC00, 0x000003FF, 0),
        [
            (0x7FF << 21 | 0x008 << 10 | 0x3FF, (255, 1, 255, 255)),
            (0x123 << 21 | 0x7F0 << 10 | 0x004, (36, 254, 1, 255)),
            (1 << 31, (128, 0, 0, 255)),
        ],
    ),
    "R8B8X4G8X4": (  # bmpsuite's rgb32bf
        32,
        (0xFF000000, 0x00000FF0, 0x00FF0000, 0),
        [
            (0x12_34_5_67_8, (0x12, 0x67, 0x34, 255)),
            (0xFF_00_F_00_F, (255, 0, 0, 255)),
            (0x00_FF_0_FF_0, (0, 255, 255, 255)),
        ],
    ),
    "B8G8R8A8": (
        32,
        (0x0000FF00, 0x00FF0000, 0xFF000000, 0x000000FF),
        [(0x11_22_33_44, (0x33, 0x22, 0x11, 0x44)), (0xFF_00_00_FF, (0, 0, 255, 255)), (0x00_00_FF_00, (255, 0, 0, 0))],
    ),
    "X8R8X8B8 (no green)": (
        32,
        (0x00FF0000, 0, 0x000000FF, 0),
        [(0xFF_12_FF_34, (0x12, 0, 0x34, 255)), (0x00_FF_00_00, (255, 0, 0, 255)), (0x0000FF00, (0, 0, 0, 255))],
    ),
}


def with_masks_after_header(data: bytes, masks: Sequence[int]) -> bytes:
    """A BITMAPINFOHEADER BMP from `bmp_file` with `masks` after its 40-byte header, as BI_BITFIELDS (3 masks) and
    BI_ALPHABITFIELDS (4) store them there."""
    extra = struct.pack(f"<{len(masks)}I", *masks)
    size, offset = struct.unpack_from("<I", data, 2)[0], struct.unpack_from("<I", data, 10)[0]
    head = b"BM" + struct.pack("<IHHI", size + len(extra), 0, 0, offset + len(extra)) + data[14:54]
    return head + extra + data[54:]


def bitfields_bmp(
    bits: int, masks: Sequence[int], rows: Sequence[Sequence[int]], *, top_down: bool = False, header: int = 108
) -> bytes:
    """A bitfields BMP of `rows` (top first) of pixel values: masks in a V4 header (BI_BITFIELDS), or after a 40-byte
    one (BI_ALPHABITFIELDS with `header=40`)."""
    code = "H" if bits == 16 else "I"
    stored = [struct.pack(f"<{len(row)}{code}", *row) for row in rows]
    pixels = b"".join(row + b"\0" * (-len(row) % 4) for row in (stored if top_down else reversed(stored)))
    size = (len(rows[0]), len(rows))
    if header == 40:
        return with_masks_after_header(bmp_file(size, bits, pixels, compression=6, top_down=top_down), masks)
    return bmp_file(size, bits, pixels, compression=3, masks=masks, top_down=top_down)


def rendered(data: bytes) -> Image.Image:
    (variant,) = render(data, [PNG_FULL], workers=1)
    image = Image.open(io.BytesIO(variant.data))
    image.load()
    return image


def rows_of(image: Image.Image, mode: str = "RGBA") -> list[list[tuple[int, ...]]]:
    converted = image.convert(mode)
    return [[converted.getpixel((x, y)) for x in range(image.width)] for y in range(image.height)]  # type: ignore[misc]


def refused(data: bytes, **limits: int) -> Rejected:
    with pytest.raises(Rejected) as excinfo:
        render(data, [PNG_FULL], workers=1, **limits)
    return excinfo.value


@pytest.mark.parametrize("top_down", [False, True], ids=["bottom-up", "top-down"])
@pytest.mark.parametrize("name", LAYOUTS)
def test_bitfields_render_as_chromium_shows_them(name: str, top_down: bool) -> None:
    """Three pixels a row (16-bit rows are padded to 4 bytes), the second row the first reversed."""
    bits, masks, cases = LAYOUTS[name]
    values, colours = [v for v, _ in cases], [c for _, c in cases]
    # Only BI_ALPHABITFIELDS (after a 40-byte header) reaches `handler.bmp` for a layout Pillow knows.
    header = 40 if name.endswith("rounded") else 108
    data = bitfields_bmp(bits, masks, [values, values[::-1]], top_down=top_down, header=header)
    image = rendered(data)
    assert image.size == (3, 2)
    assert rows_of(image) == [colours, colours[::-1]]


def test_alpha_bitfields_after_a_40_byte_header() -> None:
    """bmpsuite's rgba32abf: BI_ALPHABITFIELDS, with the alpha mask as a fourth after the header (Pillow refuses 6)."""
    masks = (0xFF000000, 0x0000FF00, 0x000000FF, 0x00FF0000)
    data = bitfields_bmp(32, masks, [[0x10_80_20_30, 0xFF_00_00_00]], header=40)
    assert rows_of(rendered(data)) == [[(0x10, 0x20, 0x30, 0x80), (255, 0, 0, 0)]]


@pytest.mark.parametrize("name", ["A4R4G4B4", "A2R10G10B10", "B8G8R8A8"])
def test_bitfields_alpha_zero_everywhere_is_opaque(name: str) -> None:
    """An alpha mask over bits left 0 in every pixel is unused, as in Chromium: the frame is opaque, not invisible."""
    bits, masks, _ = LAYOUTS[name]
    colour = masks[0] | masks[2]  # red and blue full, green and alpha 0
    image = rendered(bitfields_bmp(bits, masks, [[colour] * 3]))
    assert image.mode == "RGB"
    assert rows_of(image) == [[(255, 0, 255, 255)] * 3]


def test_a_bitfields_bmp_without_an_alpha_mask_is_opaque() -> None:
    """A BI_BITFIELDS BMP with a 40-byte header has three masks: the other bits are no alpha, however set."""
    image = rendered(
        with_masks_after_header(bmp_file((1, 1), 16, struct.pack("<HH", 0xF00F, 0), compression=3), (0xF00, 0xF0, 0xF))
    )
    assert rows_of(image) == [[(0, 0, 255, 255)]]


def test_decode_names_the_layout_and_returns_a_bmp() -> None:
    bits, masks, cases = LAYOUTS["A4R4G4B4"]
    data = bitfields_bmp(bits, masks, [[v for v, _ in cases]])
    assert bmp.layout(data) == "16-bit A4R4G4B4 bitfields"
    image = bmp.decode(data)
    assert (image.format, image.mode, image.size) == ("BMP", "RGBA", (3, 1))
    assert [image.getpixel((x, 0)) for x in range(3)] == [c for _, c in cases]


def test_chromium_scale_tables() -> None:
    """Spot values of Chromium's nBitTo8BitlookupTable, where rounding and truncating differ."""
    assert bmp._scale(5)[3] == 25 and bmp._scale(5)[12] == 99
    assert bmp._scale(6)[11] == 45 and bmp._scale(6)[52] == 210
    assert bmp._scale(7)[63:65] == [126, 129]
    assert bmp._scale(3) == [0, 36, 73, 109, 146, 182, 219, 255]
    assert bmp._scale(1) == [0, 255]


# --- 2 bits a pixel ------------------------------------------------------------------------------------------------

PALETTE2 = [(255, 0, 0), (0, 128, 0), (10, 20, 250)]  # three entries: index 3 is beyond the palette


def pal2_bmp(rows: Sequence[Sequence[int]], *, top_down: bool = False) -> bytes:
    stored = []
    for row in rows:
        packed = bytes(
            sum(index << (6 - 2 * i) for i, index in enumerate(row[at : at + 4])) for at in range(0, len(row), 4)
        )
        stored.append(packed + b"\0" * (-len(packed) % 4))
    pixels = b"".join(stored if top_down else reversed(stored))
    return bmp_file((len(rows[0]), len(rows)), 2, pixels, palette=PALETTE2, top_down=top_down)


@pytest.mark.parametrize("top_down", [False, True], ids=["bottom-up", "top-down"])
def test_two_bit_palette(top_down: bool) -> None:
    """Five pixels a row (two bytes, padded to four); an index beyond the palette is black, as in Chromium."""
    rows = [[0, 1, 2, 3, 1], [2, 2, 0, 1, 3]]
    colour = {i: (*rgb, 255) for i, rgb in enumerate(PALETTE2)} | {3: (0, 0, 0, 255)}
    image = rendered(pal2_bmp(rows, top_down=top_down))
    assert image.size == (5, 2)
    assert rows_of(image) == [[colour[i] for i in row] for row in rows]


# --- OS/2 2.x headers ----------------------------------------------------------------------------------------------


def os2_v2(data: bytes, header: int) -> bytes:
    """A `bmp_file` BITMAPINFOHEADER BMP with an OS/2 2.x header of `header` bytes instead: its first 40 bytes are the
    same fields, a shorter one stops early (the rest read as 0), a longer one adds OS/2's own (here 0)."""
    info = struct.pack("<I", header) + data[18 : 14 + min(header, 40)] + b"\0" * max(0, header - 40)
    size, offset = struct.unpack_from("<I", data, 2)[0], struct.unpack_from("<I", data, 10)[0]
    delta = header - 40
    return b"BM" + struct.pack("<IHHI", size + delta, 0, 0, offset + delta) + info + data[54:]


@pytest.mark.parametrize("header", [16, 20, 36, 46, 60])
def test_os2_v2_header_sizes_pillow_does_not_read(header: int) -> None:
    """24-bit, three pixels a row (9 bytes, padded to 12), bottom-up."""
    top, bottom = [(255, 0, 0), (0, 255, 0), (1, 2, 3)], [(9, 8, 7), (0, 0, 255), (255, 255, 255)]
    pixels = b"".join(b"".join(bytes((b, g, r)) for r, g, b in row) + b"\0\0\0" for row in (bottom, top))
    data = os2_v2(bmp_file((3, 2), 24, pixels), header)
    assert bmp.layout(data) == f"OS/2 2.x header of {header} bytes"
    assert rows_of(rendered(data), "RGB") == [top, bottom]


def test_os2_v2_16_byte_header_with_a_palette() -> None:
    """bmpsuite's pal8os2v2-16: no palette size in so short a header, so the bit depth's (16 entries of 4 bytes)."""
    palette = [(i * 17, 255 - i * 17, 7) for i in range(16)]
    pixels = bytes((0x01, 0x2F, 0, 0)) + bytes((0xE3, 0x40, 0, 0))  # 3 pixels a row, bottom row first
    data = os2_v2(bmp_file((3, 2), 4, pixels, palette=palette), 16)
    expected = [[palette[0xE], palette[3], palette[4]], [palette[0], palette[1], palette[2]]]
    assert rows_of(rendered(data), "RGB") == expected


# --- palettes declared longer than their indexes reach --------------------------------------------------------------


def _indexed(bits: int, colours: int, indexes: Sequence[int]) -> tuple[bytes, list[tuple[int, int, int]]]:
    """A one-row `bits`-bit BMP of `indexes` whose header declares (and whose file holds) `colours` entries."""
    palette = [(i % 256, (i * 7) % 256, 255 - i % 256) for i in range(colours)]
    per_byte = 8 // bits
    packed = bytearray()
    for start in range(0, len(indexes), per_byte):
        value = 0
        for i, index in enumerate(indexes[start : start + per_byte]):
            value |= index << (8 - bits * (i + 1))
        packed.append(value)
    return bmp_file((len(indexes), 1), bits, bytes(packed).ljust(4, b"\0"), palette=palette), palette


@pytest.mark.parametrize(("bits", "colours"), [(8, 300), (4, 20), (1, 3)])
def test_palette_longer_than_its_indexes_reach_renders_the_entries_they_reach(bits: int, colours: int) -> None:
    """bmpsuite's pal8oversizepal: Pillow refuses it ("invalid palette size"); Chromium shows it."""
    indexes = [0, (1 << bits) - 1, 1, (1 << bits) - 2]
    data, palette = _indexed(bits, colours, indexes)
    assert bmp.decoded_here(data)
    assert rows_of(rendered(data), "RGB") == [[palette[i] for i in indexes]]


def test_damaged_palette_count_reads_the_full_palette_of_the_depth() -> None:
    """bmpsuite's badpalettesize: a count of 305,402,420 entries in front of 256 of them."""
    indexes = [255, 0, 17]
    data, palette = _indexed(8, 256, indexes)
    damaged = data[:46] + struct.pack("<I", 305_402_420) + data[50:]
    assert rows_of(rendered(damaged), "RGB") == [[palette[i] for i in indexes]]


def test_a_palette_within_its_indexes_is_left_to_pillow() -> None:
    data, _ = _indexed(8, 256, [1, 2])
    assert not bmp.decoded_here(data)


# --- refused -------------------------------------------------------------------------------------------------------


def test_truncated_bitfields_bmp_is_corrupt() -> None:
    bits, masks, cases = LAYOUTS["A2R10G10B10"]
    data = bitfields_bmp(bits, masks, [[v for v, _ in cases]] * 2)
    rejection = refused(data[:-1])
    assert rejection.reason == "corrupt"
    offset = struct.unpack_from("<I", data, 10)[0]
    assert rejection.detail == (
        f"BMP is truncated: pixel data at offset {offset} needs 24 bytes (2 rows of 12), the file ends 23 bytes into it"
    )


def test_truncated_two_bit_bmp_is_corrupt() -> None:
    data = pal2_bmp([[0, 1, 2, 3, 1]] * 3)
    assert refused(data[:-4]).reason == "corrupt"


def test_pixel_limit_is_applied_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bmp, "decode", lambda data: pytest.fail("decoded"))
    bits, masks, _ = LAYOUTS["A4R4G4B4"]
    rejection = refused(bitfields_bmp(bits, masks, [[0] * 3] * 2), pixel_limit=5)
    assert rejection.reason == "too_many_pixels"
    assert rejection.detail == "header declares 3x2 = 6 pixels, exceeds the limit 5"


def _encoded(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (3, 2), (200, 10, 10)).save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize(("compression", "fmt"), [(4, "JPEG"), (5, "PNG")])
def test_embedded_jpeg_or_png_is_unsupported_by_name(compression: int, fmt: str) -> None:
    """Not all browsers show a JPEG or PNG inside a BMP (bit count 0): refused as another format, not as damage."""
    rejection = refused(bmp_file((3, 2), 0, _encoded(fmt), compression=compression))
    assert rejection.reason == "unsupported_format"
    assert f"BMP with an embedded {fmt} (compression {compression})" in rejection.detail


def test_embedded_image_without_its_signature_is_corrupt() -> None:
    assert refused(bmp_file((3, 2), 0, b"\0" * 64, compression=5)).reason == "corrupt"


def test_os2_huffman_compression_is_unsupported_by_name() -> None:
    data = os2_v2(bmp_file((8, 1), 1, bytes(4), compression=3, palette=[(0, 0, 0), (255, 255, 255)]), 64)
    rejection = refused(data)
    assert rejection.reason == "unsupported_format"
    assert "OS/2 BMP with Huffman 1D compression" in rejection.detail


@pytest.mark.parametrize("masks", [(0xF0F, 0xF0, 0xF, 0), (0xFF00, 0xFF0, 0xF, 0), (0xF0000, 0xF0, 0xF, 0)])
def test_bitfields_that_are_no_layout_stay_corrupt(masks: tuple[int, ...]) -> None:
    """Masks split, overlapping or beyond the pixel's 16 bits: damage, which Chromium refuses too."""
    data = bitfields_bmp(16, masks, [[0] * 3])
    assert bmp.layout(data) is None
    assert refused(data).reason == "corrupt"


# --- RLE8 and RLE4 ------------------------------------------------------------------------------------------------
# Each expectation is the frame Chromium 156 showed for the same file, top row first: a hex digit is that palette
# entry, K opaque black. Entry 0 is no black, so a skipped pixel Pillow fills with it shows.

RLE_PALETTE = [(128, 0, 255)] + [(16 * i, 255 - 8 * i, 40 + i) for i in range(1, 16)]
END = b"\0\1"
RLE_SIZE = (8, 4)


def full(index: int) -> bytes:
    """A stored row of one RLE8 index, ended."""
    return run(8, index) + END_OF_ROW


def rle_bmp(bits: int, codes: bytes, *, colours: int = 16, top_down: bool = False, gap: int = 0) -> bytes:
    """An 8x4 RLE BMP of `codes` through `colours` entries of `RLE_PALETTE`; `gap` bytes between palette and codes."""
    data = bmp_file(
        RLE_SIZE, bits, codes, compression=1 if bits == 8 else 2, palette=RLE_PALETTE[:colours], top_down=top_down
    )
    if not gap:
        return data
    offset = struct.unpack_from("<I", data, 10)[0]
    head = b"BM" + struct.pack("<IHHI", len(data) + gap, 0, 0, offset + gap)
    return head + data[14:offset] + bytes(gap) + data[offset:]


def colours_of(rows: Sequence[str], palette: Sequence[tuple[int, int, int]] = RLE_PALETTE) -> list[list[tuple]]:
    return [[(0, 0, 0, 255) if c == "K" else (*palette[int(c, 16)], 255) for c in row] for row in rows]


RLE_CASES: dict[str, tuple[int, bytes, list[str]]] = {
    "runs and absolute runs": (
        8,
        literal(b"\1\2\3")
        + literal(b"\4\5\6\7\10")
        + END_OF_ROW
        + literal(b"\11\12\13")
        + run(5, 12)
        + END_OF_ROW
        + full(3)
        + full(4)
        + END,
        ["44444444", "33333333", "9ABCCCCC", "12345678"],
    ),
    "delta within a row": (
        8,
        run(2, 1) + delta(3, 0) + run(3, 2) + END_OF_ROW + full(3) + full(4) + full(5) + END,
        ["55555555", "44444444", "33333333", "11KKK222"],
    ),
    "delta across rows keeps the column": (
        8,
        run(2, 1) + delta(3, 1) + run(3, 2) + END_OF_ROW + full(4) + full(5) + END,
        ["55555555", "44444444", "KKKKK222", "11KKKKKK"],
    ),
    "delta to the row's end": (
        8,
        run(5, 1) + delta(3, 0) + END_OF_ROW + full(3) + full(4) + full(5) + END,
        ["55555555", "44444444", "33333333", "11111KKK"],
    ),
    "delta past the last column draws nothing until the end of line": (
        8,
        run(6, 1) + delta(3, 0) + run(1, 2) + END_OF_ROW + full(3) + full(4) + full(5) + END,
        ["55555555", "44444444", "33333333", "111111KK"],
    ),
    "delta past the last column and down": (
        8,
        run(6, 1) + delta(3, 1) + run(2, 2) + END_OF_ROW + full(3) + full(4) + END,
        ["44444444", "33333333", "KKKKKKKK", "111111KK"],
    ),
    "delta past the last row ends the frame": (
        8,
        full(1) + full(2) + full(3) + run(2, 4) + delta(0, 1) + run(3, 5) + END,
        ["44KKKKKK", "33333333", "22222222", "11111111"],
    ),
    "delta far past the last row": (
        8,
        full(1) + delta(0, 10) + full(2) + END,
        ["KKKKKKKK", "KKKKKKKK", "KKKKKKKK", "11111111"],
    ),
    "end of line before the row is full": (
        8,
        run(3, 1) + END_OF_ROW + full(2) + run(5, 3) + END_OF_ROW + full(4) + END,
        ["44444444", "33333KKK", "22222222", "111KKKKK"],
    ),
    "end of line after a full row's end of line skips a row": (
        8,
        full(1) + END_OF_ROW + full(3) + END,
        ["KKKKKKKK", "33333333", "KKKKKKKK", "11111111"],
    ),
    "end of bitmap before the frame is full": (
        8,
        full(1) + run(3, 2) + END,
        ["KKKKKKKK", "KKKKKKKK", "222KKKKK", "11111111"],
    ),
    "end of bitmap first": (8, END, ["KKKKKKKK"] * 4),
    "a run past the row's end is cut": (
        8,
        run(6, 1) + run(5, 2) + run(3, 3) + END_OF_ROW + full(4) + full(5) + full(6) + END,
        ["66666666", "55555555", "44444444", "11111122"],
    ),
    "an absolute run past the row's end is cut, and so is what follows": (
        8,
        literal(bytes(range(1, 11))) + run(2, 7) + END_OF_ROW + full(2) + full(3) + full(4) + END,
        ["44444444", "33333333", "22222222", "12345678"],
    ),
    "runs past the last row are not read": (
        8,
        full(1) + full(2) + full(3) + full(4) + run(3, 5) + literal(b"\6\6\6") + END,
        ["44444444", "33333333", "22222222", "11111111"],
    ),
    "no end of bitmap once the last row is full": (
        8,
        full(1) + full(2) + full(3) + run(8, 4),
        ["44444444", "33333333", "22222222", "11111111"],
    ),
    "RLE4 runs alternate two indexes": (
        4,
        run(5, 0x12)
        + run(3, 0x34)
        + END_OF_ROW
        + run(7, 0x56)
        + END_OF_ROW
        + run(8, 0x78)
        + END_OF_ROW
        + run(1, 0x9A)
        + END_OF_ROW
        + END,
        ["9KKKKKKK", "78787878", "5656565K", "12121343"],
    ),
    "RLE4 absolute runs of odd length": (
        4,
        literal4([1, 2, 3])
        + literal4([4, 5, 6, 7, 8])
        + END_OF_ROW
        + literal4([9, 10, 11, 12, 13, 14, 15])
        + END_OF_ROW
        + run(8, 0x11)
        + END_OF_ROW
        + run(8, 0x22)
        + END_OF_ROW
        + END,
        ["22222222", "11111111", "9ABCDEFK", "12345678"],
    ),
    "RLE4 delta and a run past the row's end": (
        4,
        run(2, 0x11) + delta(3, 1) + run(3, 0x23) + END_OF_ROW + run(11, 0x44) + END_OF_ROW + END,
        ["KKKKKKKK", "44444444", "KKKKK232", "11KKKKKK"],
    ),
    "RLE4 absolute run past the row's end is cut": (
        4,
        run(4, 0x11)
        + literal4([2, 3, 4, 5, 6])
        + END_OF_ROW
        + run(8, 0x22)
        + END_OF_ROW
        + run(8, 0x33)
        + END_OF_ROW
        + run(8, 0x44)
        + END_OF_ROW
        + END,
        ["44444444", "33333333", "22222222", "11112345"],
    ),
}


@pytest.mark.parametrize("name", RLE_CASES)
def test_rle_renders_as_chromium_shows_it(name: str) -> None:
    bits, codes, rows = RLE_CASES[name]
    image = rendered(rle_bmp(bits, codes))
    assert image.mode == "RGB"  # skipped pixels are black, not transparent: no alpha band
    assert rows_of(image) == colours_of(rows)


@pytest.mark.parametrize("name", ["delta across rows keeps the column", "end of line before the row is full"])
def test_top_down_rle_renders_top_down(name: str) -> None:
    """The BMP spec allows no top-down RLE; Chromium shows it anyway, its first row stored at the top."""
    bits, codes, rows = RLE_CASES[name]
    assert rows_of(rendered(rle_bmp(bits, codes, top_down=True))) == colours_of(rows[::-1])


@pytest.mark.parametrize("bits", [8, 4])
def test_rle_index_beyond_the_palette_is_black(bits: int) -> None:
    """13 entries: indexes 13 to 255 are black, as in Chromium."""
    if bits == 8:
        codes = run(3, 9) + literal(bytes((1, 12, 200))) + run(2, 255) + END_OF_ROW
        first = "9991CKKK"
    else:
        codes = run(4, 0x9F) + literal4([1, 12, 14, 15]) + END_OF_ROW
        first = "9K9K1CKK"
    codes += b"".join(run(8, index * (17 if bits == 4 else 1)) + END_OF_ROW for index in (2, 3, 4)) + END
    assert rows_of(rendered(rle_bmp(bits, codes, colours=13))) == colours_of(
        ["44444444", "33333333", "22222222", first]
    )


@pytest.mark.parametrize("bits", [8, 4])
def test_rle_absolute_runs_are_padded_from_their_start_not_the_file_offset(bits: int) -> None:
    """Pixels at an odd offset: Pillow padded each odd absolute run to an even file offset and read garbage."""
    name = "runs and absolute runs" if bits == 8 else "RLE4 absolute runs of odd length"
    _, codes, rows = RLE_CASES[name]
    data = rle_bmp(bits, codes, gap=1)
    info = sniff.bmp_info(data)
    assert info is not None and info.offset % 2 == 1
    assert rows_of(rendered(data)) == colours_of(rows)


def test_rle_without_skipped_pixels_keeps_its_palette() -> None:
    data = rle_bmp(8, full(1) + full(2) + full(3) + full(4) + END)
    assert bmp.decoded_here(data)
    assert bmp.layout(data) == "RLE8 compression"
    image = bmp.decode(data)
    assert (image.format, image.mode, image.size) == ("BMP", "P", RLE_SIZE)


@pytest.mark.parametrize(
    ("codes", "end"),
    [
        (full(1) + full(2) + run(3, 3), 10),
        (full(1) + full(2) + bytes((0, 6, 1, 2, 3)), 8),
        (full(1) + full(2) + bytes((0, 2, 1)), 8),
    ],
    ids=["run", "cut in an absolute run", "cut in a delta"],
)
def test_rle_ending_before_the_frame_without_end_of_bitmap_is_corrupt(codes: bytes, end: int) -> None:
    """Chromium shows the rows it finished, the rest transparent; the project refuses a truncated file."""
    data = rle_bmp(8, codes)
    offset = struct.unpack_from("<I", data, 10)[0]
    rejection = refused(data)
    assert rejection.reason == "corrupt"
    assert rejection.detail.startswith(f"pixel data cannot be decoded: RLE8 pixel data ends at offset {offset + end},")
    assert rejection.detail.endswith("before the frame does and without an end-of-bitmap code")


def test_rle_cut_within_its_declared_size_is_truncated() -> None:
    data = rle_bmp(8, full(1) + full(2) + full(3) + full(4) + END)
    rejection = refused(data[:-3])
    assert rejection.reason == "corrupt"
    assert rejection.detail.startswith("BMP is truncated: RLE8 pixel data at offset")


@pytest.mark.parametrize(("bits", "compression"), [(4, 1), (8, 2)])
def test_rle_at_the_other_depth_is_corrupt(bits: int, compression: int) -> None:
    """Chromium refuses RLE8 codes for 4-bit indexes, and RLE4 for 8-bit ones."""
    data = bmp_file(RLE_SIZE, bits, full(1) * 4 + END, compression=compression, palette=RLE_PALETTE)
    rejection = refused(data)
    assert rejection.reason == "corrupt"
    assert rejection.detail == f"pixel data cannot be decoded: RLE{12 - bits} pixel data at {bits} bits a pixel"


def test_rle_pixel_limit_is_applied_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bmp, "decode", lambda data: pytest.fail("decoded"))
    rejection = refused(rle_bmp(8, full(1) * 4 + END), pixel_limit=31)
    assert rejection.reason == "too_many_pixels"


def test_rle_code_limit_counts_the_codes_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Up to the frame's end, whatever follows: runs past the row's end count, though they draw nothing."""
    codes = run(8, 1) + run(1, 2) * 100 + END_OF_ROW + full(2) + full(3) + run(8, 4)
    data = rle_bmp(8, codes + run(1, 5) * 1000)
    info = sniff.bmp_info(data)
    assert info is not None
    walk = sniff.bmp_rle_walk(data, info)
    assert (walk.codes, walk.complete) == (107, True)
    assert sniff.bmp_rle_walk(data, info, limit=106) == sniff.BmpRleWalk(107, False, info.offset + 2 * 106)
    monkeypatch.setattr(sniff, "BMP_RLE_CODE_LIMIT", 107)
    assert rows_of(rendered(data))[0] == colours_of(["44444444"])[0]
    monkeypatch.setattr(sniff, "BMP_RLE_CODE_LIMIT", 106)
    rejection = refused(data)
    assert (rejection.reason, rejection.detail) == ("too_complex", "BMP RLE8 pixel data has more than 106 codes")
