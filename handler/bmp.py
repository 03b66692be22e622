"""The valid BMP layouts Pillow has no decoder for, or decodes other than Chromium shows them, decoded as Chromium
does. Pure: bytes in, `PIL.Image` out; no AWS.

Pillow 13 refuses these, which Chromium and Firefox display:

- bitfields (BI_BITFIELDS, BI_ALPHABITFIELDS) of 16- and 32-bit pixels in a Windows header, whose masks are runs
  of bits apart but not one of the few layouts Pillow knows (A4R4G4B4, X2R10G10B10, 2-3-1 bits, R8B8X4G8X4, ...);
- 2 bits a pixel through a palette (Windows CE), in a Windows header;
- OS/2 2.x info headers of other sizes than the 64 bytes Pillow reads (16 to 60 bytes);
- a palette declared longer than its 1-, 4- or 8-bit indexes reach (300 entries, or a damaged count): Chromium reads
  the entries the indexes reach.

And Pillow decodes RLE8 and RLE4 otherwise than Chromium (`_rle`): it fills the pixels the codes skip with palette
entry 0 (Chromium: black) and refuses an end-of-bitmap code before the frame is full; it carries an absolute run
past a row's end, and a delta past it, into the next row (Chromium: cut); and it pads an absolute run to an even
file offset (Chromium: an even size). The codes are read a Python step each (`sniff.bmp_rle_walk`, which
`sniff.BMP_RLE_CODE_LIMIT` bounds), each span drawn with one slice: no slower a code than Pillow's decoder.

`unsupported` names the valid layouts refused instead: a JPEG or PNG inside a BMP (compression 4 or 5; not all
browsers show one), OS/2's Huffman 1D and RLE24 compressions, bitfields at other depths. Pixels are unpacked in
Pillow's C code: a pixel's bytes become "L" bands, and each channel comes from the one or two bytes its bits lie in
through lookup tables (`Image.point`), about 0.1 s for 12 megapixels, at most ~10 bytes a pixel besides the upload.
"""

from __future__ import annotations

import io
import logging
import struct

from PIL import Image, ImageChops

from handler import sniff
from handler.sniff import BmpBitfields, BmpInfo

__all__ = ["decode", "decoded_here", "layout", "unsupported"]

LOG = logging.getLogger(__name__)

_WINDOWS_HEADERS = frozenset({40, 52, 56, 108, 124})
"""Info header sizes Chromium reads as Windows ones (V3, V2, V3 with alpha, V4, V5): only these have bitfields and
2-bit pixels."""
_PILLOW_HEADERS = frozenset({12, 40, 52, 56, 64, 108, 124})
"""Info header sizes Pillow's BMP plugin reads."""
_BITFIELD_DEPTHS = (16, 32)
"""The only depths Chromium decodes bitfields at."""
_OS2_DEPTHS = frozenset({1, 4, 8, 24})
"""The depths Chromium decodes in an OS/2 header."""
_PALETTE_DEPTHS = frozenset({1, 4, 8})
"""The depths whose pixels index a palette that Pillow reads."""
_EMBEDDED = {4: (b"\xff\xd8\xff", "JPEG"), 5: (b"\x89PNG\r\n\x1a\n", "PNG")}
"""Compression -> (signature of the image the pixel data is, its format), for a BMP of bit count 0."""
_RLE_DEPTHS = {1: 8, 2: 4}
"""RLE compression -> the only bit depth it codes (Chromium refuses the other: RLE8 codes 4-bit indexes no way)."""
_SKIPPED = (0, 0, 0)
"""What Chromium (156, checked in headless decodes, also on a page's background) shows where RLE codes skip
pixels: opaque black, not palette entry 0 as Pillow, nor transparent as bmpsuite's pal8rletrns expects of some
viewers."""
_INDEX = [bytes((value,)) for value in range(256)]
"""Each RLE8 index as a byte, which a run repeats (`bytes * n`, the cheapest run in Python)."""
_NIBBLES = [bytes((value >> 4, value & 15)) for value in range(256)]
"""Each RLE4 code's two indexes, which a run alternates."""
_HEX_DIGITS = bytes.maketrans(b"0123456789abcdef", bytes(range(16)))
"""A hex digit -> its value: `bytes.hex` writes a nibble a digit, high first, so an RLE4 absolute run unpacks in
three C calls (a third of the cost of interleaving two `translate`d halves)."""


def _scale(bits: int) -> list[int]:
    """Each value of an n-bit channel spread over 0..255, rounded half up: Chromium's `nBitTo8BitlookupTable`.

    A channel of 8 bits or more is not scaled: Chromium keeps its top 8 bits (`_field`).
    """
    top = (1 << bits) - 1
    return [(value * 510 + top) // (2 * top) for value in range(top + 1)]


def _field(mask: int) -> tuple[int, int]:
    """(lowest bit, width) of what Chromium reads of a channel's mask: all of it up to 8 bits, else its top 8."""
    low = (mask & -mask).bit_length() - 1
    bits = mask.bit_length() - low
    return (low + bits - 8, 8) if bits > 8 else (low, bits)


def layout(data: bytes) -> str | None:
    """The layout of a BMP that `decode` reads, named for logs; None for any other file (a layout Pillow has no
    decoder for that Chromium does not show either, damage, or one `unsupported` names).

    Bitfields layouts Pillow knows are named too: `decode` reads them the same way, but the pipeline leaves them
    to Pillow.
    """
    info = sniff.bmp_info(data)
    if info is None:
        return None
    if info.compression in _RLE_DEPTHS and info.header_size >= 16:
        return f"RLE{_RLE_DEPTHS[info.compression]} compression"
    if info.header_size in _WINDOWS_HEADERS:
        if info.compression == 0 and info.bits == 2:
            return "2-bit palette"
        if _palette_oversized(info):
            return f"palette of {info.colours} entries for {info.bits}-bit indexes"
        fields = _decodable_bitfields(data)
        return None if fields is None else f"{fields.bits}-bit {fields.layout} bitfields"
    if (
        info.os2_v2
        and info.header_size not in _PILLOW_HEADERS
        and info.bits in _OS2_DEPTHS
        and info.compression in (0, 1, 2)
    ):
        return f"OS/2 2.x header of {info.header_size} bytes"
    return None


def decoded_here(data: bytes) -> bool:
    """Whether `decode` must read this BMP in Pillow's stead: Pillow opens it, but then fails on its pixels (a
    palette longer than its indexes reach) or decodes them otherwise than Chromium (RLE)."""
    info = sniff.bmp_info(data)
    if info is None:
        return False
    return sniff.bmp_rle(data) is not None or (info.header_size in _WINDOWS_HEADERS and _palette_oversized(info))


def _palette_oversized(info: BmpInfo) -> bool:
    """A palette declared longer than its indexes reach (Pillow refuses it; Chromium reads the entries they reach)."""
    return info.bits in _PALETTE_DEPTHS and info.compression in (0, 1, 2) and info.colours > 1 << info.bits


def _decodable_bitfields(data: bytes) -> BmpBitfields | None:
    """The bitfields of a 16- or 32-bit BMP whose masks are runs of bits apart, in a Windows header."""
    fields = sniff.bmp_bitfields(data)
    if fields is None or fields.bits not in _BITFIELD_DEPTHS or fields.layout is None:
        return None
    return fields


def unsupported(data: bytes) -> str | None:
    """Why a valid BMP is refused, naming its layout; None for damage (or a layout Pillow or `decode` reads).

    A JPEG or PNG inside a BMP counts only with bit count 0 and the image's signature at the pixel offset, as
    Chromium requires; other such fields read like damage.
    """
    info = sniff.bmp_info(data)
    if info is None:
        return None
    embedded = _EMBEDDED.get(info.compression)
    if embedded and info.header_size in _WINDOWS_HEADERS and info.bits == 0 and info.offset:
        signature, name = embedded
        if data.startswith(signature, info.offset):
            return f"BMP with an embedded {name} (compression {info.compression}): not all browsers show one"
    if info.os2_v2 and (info.compression, info.bits) in ((3, 1), (4, 24)):
        name = "Huffman 1D" if info.compression == 3 else "RLE24"
        return f"OS/2 BMP with {name} compression: no browser shows one"
    fields = sniff.bmp_bitfields(data)
    if fields is not None and fields.layout is not None and fields.bits not in _BITFIELD_DEPTHS:
        return (
            f"BMP with {fields.bits}-bit {fields.layout} bitfields: bitfields are decoded at 16 and 32 bits a pixel, "
            "as browsers decode them"
        )
    return None


def decode(data: bytes) -> Image.Image:
    """The frame of a BMP whose layout `layout` names, as Chromium shows it, with `format` "BMP".

    Raises ValueError for another file, pixel data shorter than its rows (which `sniff.truncation` names first),
    or RLE codes that end before the frame does.
    """
    info, name = sniff.bmp_info(data), layout(data)
    if info is None or name is None:
        raise ValueError("not a BMP layout handler.bmp decodes")
    LOG.info("decoding a BMP with %s, which Pillow decodes otherwise than Chromium or not at all", name)
    if info.compression in _RLE_DEPTHS:
        image = _rle(data, info)
    elif info.header_size not in _WINDOWS_HEADERS:  # a rewritten file, which Pillow decodes: its image has the format
        return _os2_v2(data, info)
    else:  # a 2-bit palette, a palette longer than its indexes reach, or bitfields
        fields = _decodable_bitfields(data)
        image = _indexed(data, info) if fields is None else _bitfields(data, fields)
    image.format = "BMP"
    return image


def _rows(data: bytes, offset: int, height: int) -> tuple[memoryview, int]:
    """The pixel data, without a copy, and the raw decoder's row step: -1 for rows stored bottom-up."""
    return memoryview(data)[offset:], 1 if height < 0 else -1


def _bitfields(data: bytes, fields: BmpBitfields) -> Image.Image:
    """16- or 32-bit pixels whose channels lie where the masks say; a mask of 0 leaves its colour 0 (alpha opaque).

    Alpha that is 0 everywhere is unused, and the frame opaque, as Chromium and Windows show it.
    """
    size = (fields.width, abs(fields.height))
    stride = (fields.width * fields.bits + 31) // 32 * 4
    rows, step = _rows(data, fields.offset, fields.height)
    if fields.bits == 32:  # each byte of a pixel becomes a band, the buffer shared
        pixels = Image.frombuffer("RGBA", size, rows, "raw", "RGBA", stride, step)
    else:
        pixels = Image.frombuffer("LA", size, rows, "raw", "LA", stride, step)
    red, green, blue, alpha = (_channel(pixels, mask) if mask else None for mask in fields.masks)
    if alpha is not None and alpha.getextrema() == (0, 0):
        alpha = None
    black = Image.new("L", size) if None in (red, green, blue) else None
    bands = [band or black for band in (red, green, blue)]
    return Image.merge("RGB", bands) if alpha is None else Image.merge("RGBA", [*bands, alpha])


def _channel(pixels: Image.Image, mask: int) -> Image.Image:
    """The 8-bit channel under `mask` from the bands of a pixel's bytes: the one or two bytes its bits lie in,
    through lookup tables."""
    low, bits = _field(mask)
    byte, shift = divmod(low, 8)
    scale = _scale(bits)
    first = pixels.getchannel(byte)
    if shift + bits <= 8:
        if (shift, bits) == (0, 8):
            return first
        return first.point([scale[(value >> shift) & ((1 << bits) - 1)] for value in range(256)])
    # The field continues in the next byte: its low part from this byte, its high part from that one.
    high_bits = shift + bits - 8
    low_part = first.point([value >> shift for value in range(256)])
    high_part = pixels.getchannel(byte + 1).point(
        [(value & ((1 << high_bits) - 1)) << (8 - shift) for value in range(256)]
    )
    joined = ImageChops.add(low_part, high_part)  # the parts' bits are apart, so their sum is the field
    return joined if bits == 8 else joined.point(scale + [0] * (256 - len(scale)))


def _palette(data: bytes, info: BmpInfo) -> bytes:
    """The BGRX palette entries after the header, all the bit depth indexes, those beyond the palette black.

    As in Chromium: a palette that declares 0 entries or more than the indexes reach has all they reach; one that
    runs into the pixel data is cut there (Chromium refuses that in an RLE BMP; cut here as in a 2-bit one).
    """
    table, colours = 14 + info.header_size, info.palette_size
    if info.offset:
        colours = min(colours, max(0, (info.offset - table) // 4))
    return data[table : table + 4 * colours].ljust(4 << info.bits, b"\0")


def _indexed(data: bytes, info: BmpInfo) -> Image.Image:
    """1, 2, 4 or 8 bits a pixel, packed from the high bits, through the palette of BGRX entries after the header
    (`_palette`: as many as the indexes reach, however many the header declares)."""
    rows, step = _rows(data, info.pixels_at, info.height)
    rawmode = "P" if info.bits == 8 else f"P;{info.bits}"
    image = Image.frombuffer("P", (info.width, abs(info.height)), rows, "raw", rawmode, info.stride, step)
    image.putpalette(_palette(data, info), "BGRX")
    return image


class _Rle8Canvas:
    """The frame `sniff.bmp_rle_walk` draws RLE8 codes on: an index a byte, rows top-down, and once a code skips
    pixels, a mask of them (255) beside it. A span is one slice assignment, through a memoryview (half the cost
    of a bytearray's): no Python step a pixel."""

    def __init__(self, data: bytes, pixels: int) -> None:
        self.data = data
        self.indexes = bytearray(pixels)
        self.skipped: bytearray | None = None
        self._view = memoryview(self.indexes)
        self._skipped_view: memoryview | None = None

    def run(self, at: int, count: int, value: int) -> None:
        self._view[at : at + count] = _INDEX[value] * count

    def literal(self, at: int, count: int, start: int) -> None:
        self._view[at : at + count] = self.data[start : start + count]

    def skip(self, at: int, count: int) -> None:
        if self._skipped_view is None:
            self.skipped = bytearray(len(self.indexes))
            self._skipped_view = memoryview(self.skipped)
        self._skipped_view[at : at + count] = b"\xff" * count


class _Rle4Canvas(_Rle8Canvas):
    """The frame of RLE4 codes: a run alternates its code's two nibbles, an absolute run holds two a byte (high
    first)."""

    def run(self, at: int, count: int, value: int) -> None:
        self._view[at : at + count] = (_NIBBLES[value] * ((count + 1) >> 1))[:count]

    def literal(self, at: int, count: int, start: int) -> None:
        packed = self.data[start : start + (count + 1) // 2]
        self._view[at : at + count] = packed.hex().encode().translate(_HEX_DIGITS)[:count]


def _rle(data: bytes, info: BmpInfo) -> Image.Image:
    """RLE8 or RLE4 codes as Chromium draws them (`sniff.bmp_rle_walk`), through the palette, skipped pixels black.

    Where Chromium stops early, the project's policy decides: codes that end, without an end-of-bitmap code, before
    the frame does are a truncated file, refused (Chromium shows the rows it finished, the rest transparent); the
    last row filled but its end-of-line and end-of-bitmap codes missing renders whole (Chromium leaves that row
    transparent). Top-down RLE, which the BMP spec does not allow, renders top-down, as in Chromium. A pixel offset
    of 0 reads the codes after the palette, as Pillow does (Chromium reads the file's header as codes: black).

    A byte a pixel of indexes, shared with the image made from them; only when a code skips pixels, one of mask
    and 3 of the RGB frame painted through it: less than the 4 of any RGBA BMP.
    """
    bits, width, height = _RLE_DEPTHS[info.compression], info.width, abs(info.height)
    if info.bits != bits:
        raise ValueError(f"RLE{bits} pixel data at {info.bits} bits a pixel")
    canvas = (_Rle4Canvas if bits == 4 else _Rle8Canvas)(data, width * height)
    walk = sniff.bmp_rle_walk(data, info, canvas)
    if not walk.complete:
        raise ValueError(
            f"RLE{bits} pixel data ends at offset {walk.end}, after {walk.codes} codes, before the frame does "
            "and without an end-of-bitmap code"
        )
    frame = Image.frombuffer("P", (width, height), canvas.indexes, "raw", "P", 0, 1)
    frame.putpalette(_palette(data, info), "BGRX")
    if canvas.skipped is None:
        return frame
    frame = frame.convert("RGB")
    frame.paste(_SKIPPED, mask=Image.frombuffer("L", (width, height), canvas.skipped, "raw", "L", 0, 1))
    return frame


def _os2_v2(data: bytes, info: BmpInfo) -> Image.Image:
    """An OS/2 2.x header of other than 64 bytes, given to Pillow as the BITMAPINFOHEADER its first 40 bytes are
    (fields a shorter header lacks are 0, as there), with the rest of the file unchanged behind it.

    Costs a copy of the upload; such files are rare and small (palettes from OS/2 tools).
    """
    header = struct.pack("<I", 40) + data[18 : 14 + min(info.header_size, 40)].ljust(36, b"\0")
    offset = info.offset + 40 - info.header_size if info.offset else 0
    rewritten = b"".join((data[:10], struct.pack("<I", offset), header, memoryview(data)[14 + info.header_size :]))
    image = Image.open(io.BytesIO(rewritten), formats=["BMP"])
    image.load()
    return image
