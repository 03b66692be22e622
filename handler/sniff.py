"""Content sniffing: which container the bytes are, and whether it is whole, judged from headers alone.

Pure bytes in, labels out: nothing here decodes pixels. The pipeline uses it to
(a) load the HEIF plugin only for HEIF containers, (b) tell a damaged upload of
an accepted format (`corrupt`) from a real image in a format we refuse
(`unsupported_format`) and from data that is no image at all (`not_an_image`),
(c) read the frame size of containers whose decoders would fail or allocate
on a huge one before Pillow could report it (`declared_size`), (d) find
uploads cut short after the frame we render (`truncation`): decoders read only
the first frame and are content when it is intact, (e) refuse more parts, or
larger tiles, than any encoder writes (`excess_structure`): their cost no pixel
limit bounds,
(f) read colour a container describes by H.273 code points (`colour_code_points`),
(g) read what browsers read otherwise than Pillow: a JPEG's ICC profile, assembled from its chunks
(`jpeg_icc_profile`), and where a GIF's first image lies on its screen, which is transparent around it
(`gif_first_image_box`), (h) hide from Pillow the parts its parsers fail on and browsers skip
(`readable_by_pillow`), and (i) read the fields libpng and Chromium decode by that Pillow reads otherwise or
not at all: a PNG's bit depth, interlacing and tRNS as libpng applies it (`png_pixels`) and its image data
(`png_image_data`), a BMP's headers (`bmp_info`) and bitfield masks (`bmp_bitfields`), and the walk over its
RLE codes (`bmp_rle_walk`), which `handler.bmp` draws from and which `excess_structure` counts.
"""

from __future__ import annotations

import array
import itertools
import logging
import operator
import re
import struct
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from PIL import PngImagePlugin

LOG = logging.getLogger(__name__)

# Pillow plugin names we let decode uploads. JPEG covers MPO (Pillow's JPEG factory
# returns MPO images), PNG covers APNG; HEIF is provided by pi-heif.
ALLOWED_PILLOW_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "AVIF", "HEIF")

_HEVC_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"})
_GENERIC_HEIF_BRANDS = frozenset({b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})

# Signatures of image formats that exist but that we do not accept. Checked only
# after the allowed decoders declined, to name the rejection precisely.
_OTHER_IMAGE_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"8BPS", "PSD"),
    (0, b"\x00\x00\x01\x00", "ICO"),
    (0, b"\x00\x00\x02\x00", "CUR"),
    (0, b"icns", "ICNS"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (0, b"\xff\x4f\xff\x51", "JPEG 2000 codestream"),
    (0, b"\xff\x0a", "JPEG XL"),
    (0, b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (0, b"qoif", "QOI"),
    (0, b"DDS ", "DDS"),
    (0, b"gimp xcf", "XCF"),
    (0, b"%!PS-Adobe", "EPS"),
    (0, b"\xc5\xd0\xd3\xc6", "EPS"),
    (0, b"SIMPLE  =", "FITS"),
    (0, b"#?RADIANCE", "Radiance HDR"),
    (0, b"\x76\x2f\x31\x01", "OpenEXR"),
    (0, b"FLIF", "FLIF"),
    (0, b"II\xbc", "JPEG XR"),
    (0, b"\x8aMNG\r\n\x1a\n", "MNG"),
    (0, b"\x8bJNG\r\n\x1a\n", "JNG"),
    (0, b"BPG\xfb", "BPG"),
    (0, b"farbfeld", "farbfeld"),
    (0, b"\x08\xf2\xa6\xb6", "VIPS"),
    (0, b"\xb6\xa6\xf2\x08", "VIPS"),
    (0, b"SDPX", "DPX"),
    (0, b"XPDS", "DPX"),
    (0, b"\xabKTX 11\xbb", "KTX"),
    (0, b"\xabKTX 20\xbb", "KTX2"),
    (4, b"ftypcrx ", "Canon CR3 raw"),
    (0, b"IIRO", "Olympus ORF raw"),
    (0, b"IIRS", "Olympus ORF raw"),
    (0, b"MMOR", "Olympus ORF raw"),
    (0, b"IIU\x00", "Panasonic RW2 raw"),
    (0, b"FUJIFILMCCD-RAW", "Fujifilm RAF raw"),
    # Vector and page formats image tools rasterise (libvips, ImageMagick): images in a format we refuse, as SVG.
    (0, b"%PDF-", "PDF"),
)


@dataclass(frozen=True)
class CodePoints:
    """A colour description by H.273 code points, as it applies to the decoded RGB pixels.

    `matrix` 0 and `full_range` say the pixels are RGB over the full 0..255; AVIF and HEIF decoders
    convert YUV with the file's matrix and range, so theirs always are.
    """

    primaries: int
    transfer: int
    matrix: int
    full_range: bool


def _iso_bmff_brands(data: bytes) -> frozenset[bytes]:
    """Major and compatible brands of an ISO-BMFF `ftyp` box at offset 0, or empty."""
    if len(data) < 16 or data[4:8] != b"ftyp":
        return frozenset()
    box_size = int.from_bytes(data[0:4], "big")
    end = min(max(box_size, 16), len(data), 256)
    brands = {data[8:12]}
    brands.update(data[offset : offset + 4] for offset in range(16, end - 3, 4))
    return frozenset(brands)


def is_heif_container(data: bytes) -> bool:
    """True when the bytes are a HEIF (not AVIF-only) file, so the HEIF plugin is needed."""
    brands = _iso_bmff_brands(data)
    return bool(brands & _HEVC_BRANDS) or bool(brands & _GENERIC_HEIF_BRANDS and not brands & _AVIF_BRANDS)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_LINE_END = re.compile(rb"\r*\n")


def _png_signature_damaged(head: bytes) -> bool:
    """A PNG signature damaged in transfer, recognised by the IHDR chunk behind it: line endings translated (CR LF
    to LF or LF to CR LF, what the signature is built to reveal), or up to two bytes changed (upper to lower case,
    a byte replaced). PngSuite's xs*n0g01, xcrn0g04 and xlfn0g04; the IHDR type where the signature ends keeps text
    from matching. (A lost high bit of the first byte alone needs no IHDR: the other seven bytes say PNG.)"""
    ihdr = head.find(b"IHDR", 8, 20)
    if ihdr < 0:
        return False
    signature = head[: ihdr - 4]
    if _LINE_END.sub(b"\n", signature) == _LINE_END.sub(b"\n", _PNG_SIGNATURE):
        return True
    return (
        len(signature) == 8 and sum(a != b for a, b in zip(signature.lower(), _PNG_SIGNATURE.lower(), strict=True)) <= 2
    )


def _signature(data: bytes) -> str | None:
    """Name of the accepted format whose signature the bytes carry, even if the rest is damaged.

    The allowed decoders open any file with it, so the structure checks walk these. A PNG whose signature was
    damaged in transfer (`_png_signature_damaged`) still counts as PNG: it is a damaged PNG, not some other file.
    """
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(_PNG_SIGNATURE) or head[1:8] == _PNG_SIGNATURE[1:] or _png_signature_damaged(head):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:2] == b"BM" and len(data) >= 18:
        return "BMP"
    brands = _iso_bmff_brands(data)
    if brands & _AVIF_BRANDS:
        return "AVIF"
    if brands & (_HEVC_BRANDS | _GENERIC_HEIF_BRANDS):
        return "HEIF"
    return None


_BMP_OS2_V2_HEADER_SIZES = frozenset({*range(16, 65, 4), 42, 46} - {40, 52, 56})
"""OS/2 2.x info headers (BITMAPCOREHEADER2): any multiple of 4 from 16 to 64 bytes, or 42 or 46, as Chromium reads
them; a header of 40, 52 or 56 bytes is the Windows one of that size."""
# DIB header sizes: OS/2 1.x core, BITMAPINFOHEADER, V2, V3, V4, V5, and the OS/2 2.x ones.
_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 108, 124}) | _BMP_OS2_V2_HEADER_SIZES
# Extensions a GIF89a defines: plain text, graphic control, comment, application.
_GIF_EXTENSION_LABELS = frozenset({0x01, 0xF9, 0xFE, 0xFF})


def _bmp_header_plausible(data: bytes) -> bool:
    """A defined DIB header size (its three high bytes are zero), or the file header's reserved fields zero.

    "BM" also starts text ("BMI,height_cm"), which has no zero bytes; a BMP damaged in one of the two still
    counts, so its decoder names the damage.
    """
    return int.from_bytes(data[14:18], "little") in _BMP_HEADER_SIZES or data[6:10] == bytes(4)


def _gif_screen_plausible(data: bytes) -> bool:
    """Where the logical screen descriptor and its colour table end, a known extension or an image must start.

    "GIF89a" also starts text ("GIF89a is the 1989 revision"): an ASCII flags byte never declares a colour
    table, and text rarely has an extension label or an LZW code size (at most 12 bits) where the screen
    descriptor puts them. A file cut before they can be read counts as a GIF.
    """
    end = len(data)
    block = 13 + _gif_colour_table(data[10]) if end > 10 else end
    if block + 1 >= end:
        return True
    if data[block] == 0x21:
        return data[block + 1] in _GIF_EXTENSION_LABELS
    if data[block] != 0x2C:
        return False
    code_size = block + 10 + (_gif_colour_table(data[block + 9]) if block + 9 < end else 0)
    return code_size >= end or data[code_size] <= 12


def accepted_container(data: bytes) -> str | None:
    """Name of the accepted format the bytes are, even if damaged; None for text that starts like a BMP or GIF.

    Their signatures are two and six printable bytes, so the header behind them must be plausible too.
    The structure checks walk every file with the signature (`_signature`): the decoders open those.
    """
    container = _signature(data)
    if container == "BMP" and not _bmp_header_plausible(data):
        return None
    if container == "GIF" and not _gif_screen_plausible(data):
        return None
    return container


def other_image_format(data: bytes) -> str | None:
    """Name of a recognised but not accepted image format, or None."""
    for offset, signature, name in _OTHER_IMAGE_SIGNATURES:
        if data[offset : offset + len(signature)] == signature:
            return name
    text_head = data[:512].lstrip().lower()
    if text_head.startswith(b"<svg") or (text_head.startswith(b"<?xml") and b"<svg" in text_head):
        return "SVG"
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    """Canvas (VP8X) or frame (VP8, VP8L) size from the first chunk of a WebP."""
    kind, payload = data[12:16], data[20:30]
    if kind == b"VP8X" and len(payload) >= 10:
        return int.from_bytes(payload[4:7], "little") + 1, int.from_bytes(payload[7:10], "little") + 1
    if kind == b"VP8 " and len(payload) >= 10 and payload[3:6] == b"\x9d\x01\x2a":
        return int.from_bytes(payload[6:8], "little") & 0x3FFF, int.from_bytes(payload[8:10], "little") & 0x3FFF
    if kind == b"VP8L" and len(payload) >= 5 and payload[0] == 0x2F:
        bits = int.from_bytes(payload[1:5], "little")
        return (bits & 0x3FFF) + 1, (bits >> 14 & 0x3FFF) + 1
    return None


_WEBP_ANIMATION_FLAG = 0x02


def webp_first_frame_box(data: bytes) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of an animated WebP's first frame on its canvas; None for a still WebP, or an
    animation whose first ANMF chunk is cut.

    libwebp composites it onto a transparent canvas, which Pillow reads without alpha when the VP8X header says
    none; browsers show the rest of the canvas transparent. `_webp_excess` has bounded the chunk walk.
    """
    if data[12:16] != b"VP8X" or len(data) < 21 or not data[20] & _WEBP_ANIMATION_FLAG:
        return None
    anmf = next((pos for kind, pos, _ in _webp_chunks(data) if kind == b"ANMF"), None)
    if anmf is None or anmf + 8 + 12 > len(data):
        return None
    x, y, width, height = (int.from_bytes(data[at : at + 3], "little") for at in range(anmf + 8, anmf + 20, 3))
    return 2 * x, 2 * y, 2 * x + width + 1, 2 * y + height + 1


_BMFF_BOX = struct.Struct(">I4s")
_MAX_ITEM_ENTRIES = 100_000
"""Boxes, `ipma` entries or references read at most in one ISO-BMFF list: files refused as `too_complex` stop
at `ISO_BMFF_PART_LIMIT`, and this bounds the walks that run before that check or outside `meta`."""


def _box_at(data: bytes, pos: int, end: int) -> tuple[bytes, int, int] | None:
    """(type, header length, size) of the ISO-BMFF box at `pos` (size 0: up to `end`); None if its header is cut."""
    if pos + 8 > end:
        return None
    size, kind = _BMFF_BOX.unpack_from(data, pos)
    header = 8
    if size == 1:  # a 64-bit size follows the type
        if pos + 16 > end:
            return None
        size, header = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
    elif size == 0:
        size = end - pos
    return kind, header, size


def bmff_boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the ISO-BMFF boxes in data[start:end]; stops at the first bad size."""
    while (box := _box_at(data, start, end)) is not None:
        kind, header, size = box
        if size < header or start + size > end:
            return
        yield kind, start + header, start + size
        start += size


def _child(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    """Payload span of the first `kind` box among the first `_MAX_ITEM_ENTRIES` in data[start:end]."""
    boxes = itertools.islice(bmff_boxes(data, start, end), _MAX_ITEM_ENTRIES)
    return next(((s, e) for k, s, e in boxes if k == kind), None)


def bmff_full_box(data: bytes, box: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """(version, flags, payload start, payload end) of a FullBox; None when too short for its version and flags."""
    start, end = box
    if end - start < 4:
        return None
    return data[start], int.from_bytes(data[start + 1 : start + 4], "big"), start + 4, end


def _full_box_payload(
    data: bytes, box: tuple[int, int] | None, skip: Callable[[int], int] = lambda _: 0
) -> tuple[int, int] | None:
    """What follows a FullBox's version and flags and `skip(version)` more bytes; None if the box is shorter."""
    head = box and bmff_full_box(data, box)
    if not head or head[3] - head[2] < skip(head[0]):
        return None
    return head[2] + skip(head[0]), head[3]


def _meta(data: bytes) -> tuple[int, int] | None:
    """Payload span of the top-level `meta` box (a FullBox) of a HEIF or AVIF, after its version and flags."""
    return _full_box_payload(data, _child(data, 0, len(data), b"meta"))


def _ispe_sizes(data: bytes, ipco: tuple[int, int]) -> list[tuple[int, int] | None]:
    """The (width, height) of each `ipco` property that is an image spatial extent (`ispe`), None for the others."""
    return [
        (int.from_bytes(data[s + 4 : s + 8], "big"), int.from_bytes(data[s + 8 : s + 12], "big"))
        if kind == b"ispe" and e - s >= 12
        else None
        for kind, s, e in itertools.islice(bmff_boxes(data, *ipco), _MAX_ITEM_ENTRIES)
    ]


def _iso_bmff_size(data: bytes) -> tuple[int, int] | None:
    """The largest image spatial extent (`meta/iprp/ipco/ispe`) a HEIF or AVIF declares: the primary image or grid."""
    meta = _meta(data)
    iprp = meta and _child(data, *meta, b"iprp")
    ipco = iprp and _child(data, *iprp, b"ipco")
    if not ipco:
        return None
    sizes = [size for size in _ispe_sizes(data, ipco) if size is not None]
    return max(sizes, key=lambda size: size[0] * size[1], default=None)


def declared_size(data: bytes) -> tuple[int, int] | None:
    """Frame size a WebP, AVIF or HEIF header declares, read without a decoder; None for other containers.

    These decoders parse the whole structure when the file is opened, and refuse
    (or allocate for) a frame beyond their own limits before Pillow could report
    its size: the pixel limit must be applied to the header first.
    """
    container = _signature(data)
    if container == "WEBP":
        return _webp_size(data)
    if container in ("AVIF", "HEIF"):
        return _iso_bmff_size(data)
    return None


# --- colour described by code points ---------------------------------------------------------------------------


def _item_box(data: bytes, meta: tuple[int, int], kind: bytes) -> tuple[int, int, int] | None:
    """(item ID width, payload start, payload end) of `meta`'s `kind` FullBox: version 0 has 16-bit item IDs."""
    box = _child(data, *meta, kind)
    head = box and bmff_full_box(data, box)
    return (2 if head[0] == 0 else 4, head[2], head[3]) if head else None


def _primary_item(data: bytes, meta: tuple[int, int]) -> int | None:
    pitm = _item_box(data, meta, b"pitm")
    if pitm is None or pitm[2] - pitm[1] < pitm[0]:
        return None
    size, start, _ = pitm
    return int.from_bytes(data[start : start + size], "big")


def _item_references(data: bytes, meta: tuple[int, int], kind: bytes) -> Iterator[tuple[int, list[int]]]:
    """(from item, to items) of each `kind` reference box in `meta`'s `iref` (`dimg`: a derived image's inputs)."""
    iref = _item_box(data, meta, b"iref")
    if iref is None:
        return
    size, start, end = iref
    for box_kind, s, e in itertools.islice(bmff_boxes(data, start, end), _MAX_ITEM_ENTRIES):
        if box_kind != kind or e - s < size + 2:
            continue
        first = s + size + 2
        count = min(int.from_bytes(data[s + size : first], "big"), (e - first) // size)
        targets = [int.from_bytes(data[p : p + size], "big") for p in range(first, first + count * size, size)]
        yield int.from_bytes(data[s : s + size], "big"), targets


def _first_source(data: bytes, meta: tuple[int, int], item: int) -> int | None:
    """The first item `item` is derived from (`iref` `dimg`: a grid's first tile), or None."""
    sources = (targets for source, targets in _item_references(data, meta, b"dimg") if source == item)
    return next((targets[0] for targets in sources if targets), None)


def _associations(data: bytes, iprp: tuple[int, int]) -> Iterator[tuple[int, list[int]]]:
    """(item, 1-based `ipco` indices of its properties) of each `ipma` entry, up to the first that is cut."""
    ipma = _child(data, *iprp, b"ipma")
    head = ipma and bmff_full_box(data, ipma)
    if not head or head[3] - head[2] < 4:
        return
    version, flags, pos, end = head
    id_size, index_size = (2 if version == 0 else 4), (2 if flags & 1 else 1)
    mask = 0x7FFF if index_size == 2 else 0x7F  # the top bit flags the property as essential
    entries = int.from_bytes(data[pos : pos + 4], "big")
    pos += 4
    for _ in range(min(entries, _MAX_ITEM_ENTRIES)):
        if pos + id_size + 1 > end:
            return
        item, count = int.from_bytes(data[pos : pos + id_size], "big"), data[pos + id_size]
        pos += id_size + 1
        if pos + count * index_size > end:
            return
        starts = range(pos, pos + count * index_size, index_size)
        yield item, [int.from_bytes(data[p : p + index_size], "big") & mask for p in starts]
        pos += count * index_size


def _item_properties(data: bytes, iprp: tuple[int, int], item: int) -> list[int] | None:
    """1-based `ipco` indices of the properties `ipma` associates with `item`; None if it names no such item."""
    return next((indices for entry, indices in _associations(data, iprp) if entry == item), None)


def _iso_bmff_colour(data: bytes) -> CodePoints | None:
    """The primary image's `nclx` colour property, unless it has an ICC one (`prof`, `rICC`): that wins.

    A grid without colour properties of its own takes its first tile's, as libheif does. When `ipma` does
    not name the primary item, every colour property in the file counts.
    """
    meta = _meta(data)
    iprp = meta and _child(data, *meta, b"iprp")
    ipco = iprp and _child(data, *iprp, b"ipco")
    if not meta or not iprp or not ipco:
        return None
    properties = [
        (data[s : s + 4], s, e) if kind == b"colr" and e - s >= 4 else None
        for kind, s, e in itertools.islice(bmff_boxes(data, *ipco), _MAX_ITEM_ENTRIES)
    ]
    colours = [colour for colour in properties if colour is not None]
    item = _primary_item(data, meta)
    for _ in range(2):  # the primary item, then the first item it is derived from
        indices = None if item is None else _item_properties(data, iprp, item)
        if indices is None:
            break
        colours = [properties[i - 1] for i in indices if 0 < i <= len(properties) and properties[i - 1] is not None]
        if colours:
            break
        item = _first_source(data, meta, item)
    if any(colour_type in (b"prof", b"rICC") for colour_type, _, _ in colours):
        return None
    for colour_type, s, e in colours:
        if colour_type == b"nclx" and e - s >= 11:
            primaries, transfer = struct.unpack_from(">HH", data, s + 4)
            return CodePoints(primaries, transfer, matrix=0, full_range=True)  # the decoder converts YUV to RGB
    return None


def _png_colour(data: bytes) -> CodePoints | None:
    """A `cICP` chunk before the image data (PNG 3rd edition: RGB only, so matrix 0; full or narrow range)."""
    for kind, at, length in _png_header_chunks(data):
        if kind == b"cICP" and length == 4 and at + 4 <= len(data):
            primaries, transfer, matrix, full_range = data[at : at + 4]
            if matrix != 0 or full_range > 1:
                LOG.warning("ignoring PNG cICP with matrix %d, range flag %d: PNG allows 0 and 0/1", matrix, full_range)
                return None
            return CodePoints(primaries, transfer, matrix, full_range == 1)
    return None


def colour_code_points(data: bytes) -> CodePoints | None:
    """The colour the upload describes by H.273 code points instead of (AVIF, HEIF) or over (PNG) an ICC profile.

    AVIF and HEIF decoders apply the `nclx` matrix (YUV -> RGB) but hand back RGB in the described
    primaries and transfer, with no ICC profile to say so; PNG's `cICP` overrides its `iCCP`.
    """
    container = _signature(data)
    if container in ("AVIF", "HEIF"):
        return _iso_bmff_colour(data)
    if container == "PNG":
        return _png_colour(data)
    return None


# --- structural completeness -------------------------------------------------------------------------------

_MAX_WALK_STEPS = 1_000_000
"""Chunks, blocks, boxes or IFD entries walked per upload at most: about half a second of Python. Real encoders
stay far below it at the 50 MiB upload limit (libpng writes 8 KiB IDAT chunks, GIF encoders 255-byte sub-blocks:
some 200,000); a file beyond it is pathological rather than cut, and is left unchecked instead of walked for seconds."""

_MAX_TIFF_PAGES = 10_000
"""IFDs walked at most (they are remembered, to stop at a loop): fax and scan documents have hundreds of pages."""

_PNG_CHUNK = struct.Struct(">I4s")
_TIFF_PIXEL_TAGS = {273: "StripOffsets", 279: "StripByteCounts", 324: "TileOffsets", 325: "TileByteCounts"}
_TIFF_ARRAY_TYPES = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8 (BigTIFF)
# Bytes per value, indexed by TIFF 6.0 / BigTIFF field type (1 BYTE .. 13 IFD, 16 LONG8 .. 18 IFD8); 0: a type
# readers skip.
_TIFF_TYPE_SIZES = (0, 1, 1, 2, 4, 8, 1, 1, 2, 4, 8, 4, 8, 4, 0, 0, 8, 8, 8)
# Struct codes of the integer field types libtiff reads a size from: BYTE, SHORT, LONG, SBYTE, SSHORT, SLONG, IFD,
# LONG8, SLONG8, IFD8.
_TIFF_INTEGER_TYPES = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 13: "I", 16: "Q", 17: "q", 18: "Q"}


@dataclass(frozen=True)
class _TiffLayout:
    """Field widths of a classic TIFF or a BigTIFF, in its byte order. The header is two offsets wide, and its
    second half is the first IFD's offset."""

    order: str
    offset: struct.Struct
    counter: struct.Struct
    """An IFD's entry count."""
    entry: struct.Struct
    """Tag, type, count, then the value if it fits in an offset's width, else its offset."""


def _tiff_layout(data: bytes) -> _TiffLayout:
    """The layout the header's byte order ("II", "MM") and version (42 classic, 43 BigTIFF) declare."""
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\0", b"\0+")
    return _TiffLayout(
        order,
        offset=struct.Struct(order + ("Q" if big else "I")),
        counter=struct.Struct(order + ("Q" if big else "H")),
        entry=struct.Struct(order + ("HHQ8s" if big else "HHI4s")),
    )


class _WalkTooLongError(Exception):
    """The structure has more parts than we walk; says how many and where the walk stopped."""

    def __init__(self, offset: int, limit: str | None = None) -> None:
        super().__init__(f"more than {limit or f'{_MAX_WALK_STEPS} parts'}, stopped at offset {offset}")


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(type, offset, declared length) of each chunk whose 12-byte frame fits, from the signature to IEND."""
    end, pos = len(data), 8
    while pos + 12 <= end:
        length, kind = _PNG_CHUNK.unpack_from(data, pos)
        yield kind, pos, length
        if kind == b"IEND":
            return
        pos += 12 + length


def _png_missing(data: bytes) -> str | None:
    """Chunk headers from the signature to IEND; CRCs are left to the decoder, which checks the chunks it reads."""
    end, pos = len(data), 8
    for step, (kind, at, length) in enumerate(_png_chunks(data)):
        if step == _MAX_WALK_STEPS:
            raise _WalkTooLongError(at)
        pos = at + 12 + length
        if pos > end:
            name = kind.decode("latin-1")
            return f"{name!r} chunk at offset {at} needs {12 + length} bytes, the file ends {end - at} bytes into it"
        if kind == b"IEND":
            return None
    if pos == end:
        return f"no IEND chunk: the file ends at offset {end} with a whole chunk"
    return f"no IEND chunk: the file ends {end - pos} bytes into the chunk header at offset {pos}"


_PNG_CRITICAL = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND"})


def png_damage(data: bytes) -> str | None:
    """What is wrong with a whole PNG's critical chunks, named: an IHDR field the PNG spec does not allow
    (`png_header_problem`), a chunk whose CRC does not match, or no IDAT before IEND; None when nothing is (or the
    file is no PNG).

    libpng, so every browser, refuses all of these. Pillow ignores IHDR's compression method, checks IHDR's and
    PLTE's CRC but streams IDAT without reading its CRC and never reads IEND, so such a PNG rendered as whatever
    its data inflated to; and it reports a missing IDAT as "list index out of range". One `zlib.crc32` in C per
    chunk: a few ms for a 20 MB PNG. A cut chunk is left to `truncation`.
    """
    if not data.startswith(_PNG_SIGNATURE):
        return None
    header = png_header_problem(data)
    if header is not None:
        return f"PNG header: {header}"
    view, pixels = memoryview(data), False
    for step, (kind, at, length) in enumerate(_png_chunks(data)):
        if step == _MAX_WALK_STEPS:
            return None  # `truncation` logs the same walk as too long
        payload_end = at + 8 + length
        if kind == b"IEND" and not pixels:
            return f"PNG has no IDAT chunk before IEND (offset {at}): no image data"
        pixels = pixels or kind == b"IDAT"
        if kind not in _PNG_CRITICAL or payload_end + 4 > len(data):
            continue
        if zlib.crc32(view[at + 8 : payload_end], zlib.crc32(kind)) != int.from_bytes(
            view[payload_end : payload_end + 4]
        ):
            name = kind.decode("latin-1")
            return f"PNG's {name} chunk at offset {at} fails its CRC: damaged after it was written"
    return None


_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
"""The bit depths the PNG spec allows for each colour type."""


def png_header_problem(data: bytes) -> str | None:
    """The IHDR field of a PNG that the PNG spec does not allow, named with its value; None when all are allowed.

    Pillow refuses such a header in words that name nothing ("not identified by this driver").
    """
    if not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR" or len(data) < 29:
        return None
    width, height, depth, colour, compression, filtering, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    if not width or not height:
        return f"IHDR declares an empty frame {width}x{height}"
    if colour not in _PNG_DEPTHS:
        return f"IHDR declares colour type {colour}; PNG defines 0, 2, 3, 4 and 6"
    if depth not in _PNG_DEPTHS[colour]:
        allowed = ", ".join(map(str, _PNG_DEPTHS[colour]))
        return f"IHDR declares bit depth {depth} for colour type {colour}, which takes {allowed}"
    for field, value, defined in (("compression", compression, "0"), ("filter", filtering, "0")):
        if value:
            return f"IHDR declares {field} method {value}; PNG defines {defined}"
    if interlace > 1:
        return f"IHDR declares interlace method {interlace}; PNG defines 0 and 1"
    return None


def _gif_colour_table(flags: int) -> int:
    return 3 << ((flags & 7) + 1) if flags & 0x80 else 0


def _gif_missing(data: bytes) -> str | None:
    """Blocks from the logical screen descriptor to the trailer (0x3B); a cut inside any block is truncation.

    Tolerated, as browsers do: a file that ends right after a whole image without the trailer (common in the
    wild, and nothing of the image is missing), and junk after the last block (the walk stops at a byte that
    starts no block, as at a trailer).
    """
    end = len(data)
    if end < 13:
        return f"the logical screen descriptor needs 13 bytes, the file has {end}"
    pos, last, steps = 13 + _gif_colour_table(data[10]), "header", 0
    while pos < end:
        start = pos
        if data[pos] == 0x21:
            what, pos = "extension", pos + 2
        elif data[pos] == 0x2C:
            what = "image"
            pos += 11 + (_gif_colour_table(data[pos + 9]) if pos + 10 <= end else 0)
        else:
            return None
        while pos < end and data[pos]:  # data sub-blocks, each led by its length; a zero length ends the block
            pos += data[pos] + 1
            steps += 1
            if steps > _MAX_WALK_STEPS:
                raise _WalkTooLongError(pos)
        if pos >= end:
            return f"{what} block at offset {start} needs at least {pos + 1 - start} bytes, {end - start} are left"
        pos += 1
        last = what
    if last == "image":
        return None
    return f"the file ends at offset {end} after the {last}, without an image or the trailer (0x3B)"


# A marker that starts a segment or ends the image: 0xFF, then neither a stuffed zero, a fill byte, nor a marker that
# stands alone (TEM, RST0-7). Searched for in C over what lies between segments and over entropy-coded data.
_SEGMENT_MARKER = re.compile(rb"\xff[^\x00\x01\xd0-\xd7\xff]")
_FILL_PAIR = re.compile(rb"\xff\xff")


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, start of payload, end) of each segment of a JPEG's first image, in order, then of its EOI (empty).

    Fill bytes, markers without a length and junk between segments are passed over, as Pillow does, and so is a
    scan's entropy-coded data: each stretch in one search in C (a 12 MP photo's walk takes 2 ms, 49 MiB of fill
    bytes 0.6 s; a Python step a byte took 5 s for 10 MiB). `_jpeg_excess` bounds what Pillow and libjpeg step
    through after it. A cut or damaged file ends the walk: the decoder reports it.
    """
    end, pos = len(data), 2
    while (found := _SEGMENT_MARKER.search(data, pos)) is not None:
        pos = found.start()
        marker = data[pos + 1]
        if marker == 0xD9:  # end of the first image
            yield marker, pos + 2, pos + 2
            return
        if pos + 4 > end:
            return
        segment_end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        yield marker, pos + 4, segment_end
        pos = segment_end


# Start-of-frame markers of lossless JPEG (SOF3, 7, 11, 15): no DCT, so libjpeg cannot decode them scaled.
_LOSSLESS_FRAMES = frozenset({0xC3, 0xC7, 0xCB, 0xCF})


# Start-of-frame markers of hierarchical JPEG (SOF5-7, 13-15), which libjpeg does not decode, and of JPEG-LS (SOF55).
_HIERARCHICAL_FRAMES = frozenset({0xC5, 0xC6, 0xC7, 0xCD, 0xCE, 0xCF})
_JPEG_LS_FRAME = 0xF7


def _jpeg_frame(data: bytes) -> tuple[int, int] | None:
    """(start-of-frame marker, sample precision in bits) of a JPEG's first frame; None when no frame comes before
    its first scan."""
    for marker, payload, segment_end in _jpeg_segments(data):
        if (0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)) or marker == _JPEG_LS_FRAME:
            # a frame, not DHT, JPG or DAC
            return marker, data[payload] if payload < min(segment_end, len(data)) else 0
        if marker == 0xDA:
            return None
    return None


def jpeg_is_lossless(data: bytes) -> bool:
    """Whether a JPEG's first frame is lossless (SOF3...): shrink-on-load (`draft`) breaks its decode."""
    frame = _jpeg_frame(data)
    return frame is not None and frame[0] in _LOSSLESS_FRAMES


def unsupported_coding(data: bytes) -> str | None:
    """The coding, named, of a valid JPEG or TIFF that no decoder here reads; else None.

    Its decoder's refusal would read as damage (`corrupt`, "cannot handle 12-bit layers", "unknown code 34712"),
    but these are files their writers meant, in a coding we (and browsers) lack.
    """
    container = _signature(data)
    if container == "JPEG":
        return _jpeg_unsupported(data)
    if container == "TIFF" and data[2:4] in (b"*\0", b"\0*"):  # classic TIFF; BigTIFF's codings are the same
        return _tiff_unsupported(data)
    return None


def _jpeg_unsupported(data: bytes) -> str | None:
    """Pillow reads 8-bit samples only (libjpeg-turbo also decodes 12- and 16-bit ones, through other calls), and
    libjpeg implements neither the hierarchical process nor JPEG-LS."""
    frame = _jpeg_frame(data)
    if frame is None:
        return None
    marker, precision = frame
    if marker == _JPEG_LS_FRAME:
        return "JPEG-LS (SOF55): not a process libjpeg decodes"
    if marker in _HIERARCHICAL_FRAMES:
        return f"hierarchical JPEG (SOF{marker - 0xC0}): not a process libjpeg decodes"
    if precision == 12 or (marker in _LOSSLESS_FRAMES and 2 <= precision <= 16 and precision != 8):
        return f"{precision}-bit JPEG (SOF{marker - 0xC0}): samples of 8 bits are decoded here, as in browsers"
    return None


# TIFF compressions (libtiff's tiff.h) that the decoders here do not read: Pillow has no entry for most, and the
# libtiff in its wheels is built without WebP and JPEG XL. Those it reads are tested in test_pipeline_decode.py.
_TIFF_CODINGS_REFUSED = {
    32766: "NeXT 2-bit RLE",
    32895: "IT8 CT padded",
    32896: "IT8 line work",
    32897: "IT8 monochrome picture",
    32898: "IT8 binary line art",
    32908: "Pixar film",
    32909: "PixarLog",
    32947: "Kodak DCS",
    33003: "Aperio JPEG 2000",
    33005: "Aperio JPEG 2000",
    34661: "JBIG",
    34676: "SGI LogLuv",
    34677: "SGI LogLuv 24-bit",
    34712: "JPEG 2000",
    34715: "JBIG2",
    34887: "LERC",
    50001: "WebP",
    50002: "JPEG XL",
    52546: "JPEG XL",
}
_TIFF_COMPRESSION = 259


def _tiff_unsupported(data: bytes) -> str | None:
    """A first page compressed in a coding `_TIFF_CODINGS_REFUSED` names."""
    layout = _tiff_layout(data)
    for tag, kind, count, value in _tiff_first_page(data, layout) or ():
        if tag == _TIFF_COMPRESSION and kind in (3, 4) and count == 1:  # SHORT (or LONG), in the entry itself
            code = struct.unpack_from(layout.order + _TIFF_INTEGER_TYPES[kind], value)[0]
            name = _TIFF_CODINGS_REFUSED.get(code)
            return None if name is None else f"TIFF with {name} compression ({code}): no decoder here reads it"
    return None


def _mp_index(data: bytes) -> tuple[int, bytes] | None:
    """(offset of its endianness marker, content) of the last APP2 'MPF' segment before the scan, as Pillow reads it."""
    found = None
    for step, (marker, payload, segment_end) in enumerate(_jpeg_segments(data)):
        if marker == 0xDA:  # start of scan: no more header segments
            return found
        if step >= _MAX_WALK_STEPS:
            raise _WalkTooLongError(payload)
        if marker == 0xE2 and data[payload : payload + 4] == b"MPF\0":
            found = (payload + 4, data[payload + 4 : segment_end])
    return found


_ICC_SIGNATURE = b"ICC_PROFILE\0"
_ICC_CHUNK_HEADER = len(_ICC_SIGNATURE) + 2
"""An APP2 ICC chunk starts with the signature, its sequence number (1..count) and the count of chunks."""


def _jpeg_icc_chunks(data: bytes) -> list[tuple[int, int]]:
    """Payload spans of the APP2 segments with the ICC signature before the first scan: those libjpeg reads."""
    chunks = []
    for marker, start, end in _jpeg_segments(data):
        if marker == 0xDA:
            break
        if marker == 0xE2 and data.startswith(_ICC_SIGNATURE, start, end):
            chunks.append((start, min(end, len(data))))
    return chunks


def jpeg_icc_profile(data: bytes) -> bytes | None:
    """The ICC profile a JPEG's APP2 chunks carry, assembled as libjpeg-turbo's `jpeg_read_icc_profile` (and so
    Chromium and Firefox) does; None when there is none or the chunks disagree (logged).

    A chunk too short for its sequence number and count is no ICC chunk. A count that differs from the first
    chunk's, a sequence number outside 1..count or seen twice, a missing chunk, or no profile bytes at all make
    the whole profile unusable, and browsers show the pixels as sRGB. Pillow joins whatever chunks come before
    the frame header instead, in byte order, and applies the result if LittleCMS can parse it.
    """
    chunks: dict[int, tuple[int, int]] = {}
    count = None
    for start, end in _jpeg_icc_chunks(data):
        if end - start < _ICC_CHUNK_HEADER:
            continue
        number, declared = data[start + len(_ICC_SIGNATURE)], data[start + len(_ICC_SIGNATURE) + 1]
        count = declared if count is None else count
        if declared != count:
            problem = f"one chunk is one of {count}, another one of {declared}"
        elif not 1 <= number <= count:
            problem = f"a chunk is numbered {number} of {count}"
        elif number in chunks:
            problem = f"chunk {number} of {count} appears twice"
        else:
            chunks[number] = (start + _ICC_CHUNK_HEADER, end)
            continue
        LOG.warning("ignoring the JPEG's ICC profile: %s", problem)
        return None
    if count is None:
        return None
    if len(chunks) < count:
        LOG.warning("ignoring the JPEG's ICC profile: it has chunks %s of %d", sorted(chunks), count)
        return None
    profile = b"".join(data[start:end] for start, end in (chunks[number] for number in range(1, count + 1)))
    if not profile:
        LOG.warning("ignoring the JPEG's ICC profile: its %d chunks are empty", count)
        return None
    return profile


# --- parts Pillow's parsers fail on and browsers' decoders skip ------------------------------------------------

_Skip = tuple[str, list[tuple[int, bytes]]]
"""A part to hide from Pillow: what it is, and the same-length writes that rename it (offset, new bytes)."""

_PILLOW_APP_SIGNATURES = {0xE0: b"JFIF", 0xE2: _ICC_SIGNATURE, 0xED: b"Photoshop 3.0\0", 0xEE: b"Adobe"}
"""APP segments Pillow's JPEG header parser reads, by marker, and their signature."""
_LIBJPEG_APP_SIZES = {0xE0: 14, 0xE2: _ICC_CHUNK_HEADER, 0xEE: 12}
"""Bytes libjpeg needs in an APP0 JFIF, APP2 ICC or APP14 Adobe segment to read it (`examine_app0`, `examine_app14`,
`jpeg_read_icc_profile`): it skips shorter ones. Pillow reads 7 of JFIF and Adobe, and 14 of an ICC chunk."""
_PNG_FIXED_SIZES = {b"gAMA": 4, b"cHRM": 32, b"sRGB": 1, b"pHYs": 9}
"""Bytes the PNG spec gives these chunks: libpng ignores one of another size."""
_PNG_TRNS_SIZES = {0: 2, 2: 6}
"""tRNS bytes by IHDR colour type: a 16-bit grey sample, an RGB triple. Palette entries vary; alpha types have none."""
_PNG_APNG_CHUNKS = frozenset({b"acTL", b"fcTL", b"fdAT"})
_PNG_COLOUR_CHUNKS = frozenset({b"gAMA", b"cHRM", b"sRGB", b"iCCP"})
"""Chunks that say how to show the pixels: the PNG spec puts each once before PLTE and IDAT, and libpng ignores
one out of place or repeated."""


def readable_by_pillow(data: bytes) -> bytes:
    """The upload with each part that Pillow's parser fails on, and browsers' decoders skip, renamed so that Pillow
    skips it too; the same object when there is none.

    JPEG: APP segments too short for what libjpeg reads of them (`_jpeg_unreadable`). PNG: ancillary chunks that
    libpng ignores as benign errors (`_png_unreadable`). Renaming keeps every length, so no offset into the file
    (EXIF, the MP index) moves; a renamed PNG chunk gets its CRC anew. The colour a skipped part describes is
    read elsewhere from the upload itself, as browsers read it (`jpeg_icc_profile`), or is lost with the part
    (a PNG's iCCP: sRGB, as in browsers).
    """
    container = _signature(data)
    skips = _jpeg_unreadable(data) if container == "JPEG" else _png_unreadable(data) if container == "PNG" else []
    if not skips:
        return data
    names = "; ".join(what for what, _ in skips[:5]) + ("; ..." if len(skips) > 5 else "")
    LOG.warning("skipping %d part(s) of the %s that browsers skip: %s", len(skips), container, names)
    view, parts, pos = memoryview(data), [], 0
    for at, replacement in sorted(write for _, writes in skips for write in writes):
        parts += [view[pos:at], replacement]
        pos = at + len(replacement)
    return b"".join([*parts, view[pos:]])


def _jpeg_unreadable(data: bytes) -> list[_Skip]:
    """APP segments before the first scan that Pillow's header parser fails on, their signature to be lowercased.

    JFIF, Adobe and ICC segments shorter than libjpeg reads (Pillow unpacks a JFIF's or Adobe's version past the end
    of one of fewer than 7 bytes, and an ICC chunk's count past the end of one of fewer than 14), and Photoshop
    segments whose resource blocks Pillow walks past the end (`_photoshop_unreadable`). libjpeg skips all of these
    (Adobe's transform, which CMYK and YCCK need, is in its 12th byte: a segment carrying it is never renamed).
    """
    skips: list[_Skip] = []
    for marker, start, segment_end in _jpeg_segments(data):
        if marker == 0xDA:
            break
        signature, end = _PILLOW_APP_SIGNATURES.get(marker), min(segment_end, len(data))
        if signature is None or not data.startswith(signature, start, end):
            continue
        short = end - start < _LIBJPEG_APP_SIZES.get(marker, 0)
        if short or (marker == 0xED and _photoshop_unreadable(data[start:end])):
            what = f"{signature.rstrip(bytes(1)).decode()} segment of {end - start} bytes at offset {start - 4}"
            skips.append((what, [(start, signature.lower())]))
    return skips


def _photoshop_unreadable(payload: bytes) -> bool:
    """Whether Pillow's walk of the image resource blocks in an APP13 Photoshop segment fails: a block cut right after
    its resource ID is an IndexError it does not catch. Other cuts end its walk with a struct.error it catches."""
    offset, end = len(b"Photoshop 3.0\0"), len(payload)
    while payload[offset : offset + 4] == b"8BIM":
        resource, offset = payload[offset + 4 : offset + 6], offset + 6
        if offset >= end:
            return offset == end  # the name's length byte is missing: Pillow indexes past the end
        offset += 1 + payload[offset]
        offset += offset & 1
        if offset + 4 > end:
            return False
        size, offset = int.from_bytes(payload[offset : offset + 4], "big"), offset + 4
        if resource == b"\x03\xed" and min(size, end - offset) < 14:  # ResolutionInfo too short: caught
            return False
        offset += size + (size & 1)
    return False


def _png_unreadable(data: bytes) -> list[_Skip]:
    """Ancillary chunks libpng ignores (a benign error) and Pillow refuses or reads, to be renamed private and so
    unknown.

    A CRC that does not match (Pillow checks those before the image data); a gAMA, cHRM, sRGB, pHYs or (grey and
    RGB) tRNS chunk of another size than the PNG spec's (Pillow refuses shorter ones and reads longer ones); the
    text and profile chunks `_png_text_problem` names; and a gAMA, cHRM, sRGB or iCCP chunk after PLTE or IDAT, or
    after a usable one of its kind (Pillow reads those after the image data too, the last one winning, and the
    colour came out as no browser shows it). APNG's chunks are left to the APNG reader.
    """
    skips: list[_Skip] = []
    colour_type = data[25] if len(data) > 25 and data[12:16] == b"IHDR" else None
    text_budget = PngImagePlugin.MAX_TEXT_MEMORY
    palette_or_pixels, colour_chunks = None, set()
    for kind, at, length in _png_chunks(data):
        payload_end = at + 8 + length
        if kind in (b"PLTE", b"IDAT"):
            palette_or_pixels = palette_or_pixels or kind.decode()
        if not kind[0] & 0x20 or kind in _PNG_APNG_CHUNKS or payload_end + 4 > len(data):
            continue  # critical, APNG or cut: the decoder or the truncation check names it
        payload = memoryview(data)[at + 8 : payload_end]
        problem = None
        if zlib.crc32(payload, zlib.crc32(kind)) != int.from_bytes(data[payload_end : payload_end + 4], "big"):
            problem = "its CRC does not match"
        elif kind in _PNG_COLOUR_CHUNKS and palette_or_pixels:
            problem = f"it comes after {palette_or_pixels}, where the PNG spec does not allow it"
        elif kind in colour_chunks:
            problem = "an earlier one applies"
        elif kind in _PNG_FIXED_SIZES and length != _PNG_FIXED_SIZES[kind]:
            problem = f"the PNG spec's size is {_PNG_FIXED_SIZES[kind]}"
        elif kind == b"tRNS" and colour_type in _PNG_TRNS_SIZES and length != _PNG_TRNS_SIZES[colour_type]:
            problem = f"the size for colour type {colour_type} is {_PNG_TRNS_SIZES[colour_type]}"
        elif kind in (b"iCCP", b"tEXt", b"zTXt", b"iTXt"):
            problem, spent = _png_text_problem(kind, bytes(payload), text_budget)
            text_budget -= spent
        if problem is None and kind in _PNG_COLOUR_CHUNKS:
            colour_chunks.add(kind)
        if problem is not None:
            renamed = kind[:1] + bytes([kind[1] | 0x20]) + kind[2:]
            crc = zlib.crc32(payload, zlib.crc32(renamed)).to_bytes(4, "big")
            what = f"{kind.decode('latin-1')} chunk of {length} bytes at offset {at}: {problem}"
            skips.append((what, [(at + 4, renamed), (payload_end, crc)]))
    return skips


def _png_text_problem(kind: bytes, payload: bytes, budget: int) -> tuple[str | None, int]:
    """Why Pillow would refuse an iCCP, tEXt, zTXt or iTXt chunk (None: it reads it, or drops it itself), and the
    bytes of text it keeps of it or that were inflated here to tell, out of `budget` left.

    Refused: an iCCP without a name of 1-79 bytes and compression method 0 (libpng's rule; Pillow fails on some),
    a zTXt with another method, a zTXt, compressed iTXt or iCCP that inflates past Pillow's `MAX_TEXT_CHUNK`, and
    text that would take Pillow past `MAX_TEXT_MEMORY` in all. Once that much was inflated here, every further
    compressed chunk is refused uninflated: the work stays bounded as Pillow's own.
    """
    too_much = f"the PNG's text inflates past Pillow's {PngImagePlugin.MAX_TEXT_MEMORY} bytes in all"
    name, separator, rest = payload.partition(b"\0")
    if kind == b"tEXt" or (kind == b"iTXt" and rest[:1] == b"\0"):
        size = len(rest) if name else 0  # an iTXt's value follows its flags, language and keyword: near enough
        return (too_much if size > budget else None), size
    if kind == b"iCCP" and not (separator and 1 <= len(name) <= 79 and rest[:1] == b"\0"):
        return "it has no name of 1-79 bytes and compression method 0", 0
    if kind == b"zTXt" and rest[:1] not in (b"", b"\0"):
        return f"its compression method is {rest[0]}, not 0", 0
    if kind == b"iTXt":
        fields = rest[2:].split(b"\0", 2)
        if not separator or len(rest) < 2 or rest[1] != 0 or len(fields) < 3:
            return None, 0  # Pillow skips what it cannot parse, and text compressed otherwise than by zlib
        compressed = fields[2]
    else:
        compressed = rest[1:]
    if budget <= 0:
        return too_much, 0
    inflater = zlib.decompressobj()
    try:
        size = len(inflater.decompress(compressed, PngImagePlugin.MAX_TEXT_CHUNK))
    except zlib.error:
        return None, 0
    if inflater.unconsumed_tail:
        return f"it inflates past Pillow's {PngImagePlugin.MAX_TEXT_CHUNK} bytes", size
    return (too_much if size > budget else None), size


JPEG_SCAN_LIMIT = 100
"""Scans accepted in a JPEG. Encoders write about 10; libjpeg decodes each over the whole frame."""
HEADER_PART_LIMIT = 1000
"""JPEG segments, or PNG chunks and GIF extensions before the first frame's data, accepted; files have tens."""
JPEG_PADDING_LIMIT = 65_536
"""Bytes of padding accepted in a JPEG's first image: fill bytes (0xFF), markers without a length (RST0-7, TEM)
and junk between the segments before its first scan, and fill bytes (counted in pairs) after it. Encoders write
none, or a few fill bytes. Pillow's header parser steps through padding one byte at a time in Python (about 0.4 s
a megabyte), and libjpeg, fed in 64 KiB blocks, reads a run of fill bytes again from its start with each block:
50 MiB of fill bytes before a 64x48 frame took 75 s, 49 MiB before its EOI 22 s."""
GIF_SUB_BLOCK_LIMIT = 1_000_000
"""GIF data sub-blocks accepted before the first image (a 1 MB ICC profile takes about 4000)."""
PNG_CHUNK_LIMIT = 100_000
"""Chunks accepted in a PNG, image data included. Encoders split the image data into IDAT chunks of 8 KiB (libpng)
to 64 KiB, so a 50 MiB upload has at most about 6400: this leaves room for odd writers (an IDAT per row of a
tall image). Pillow reads a hundred thousand in about 0.2 s; a million empty IDATs (19 MB) took it 2.8 s."""
TIFF_TILE_PIXELS = 4096 * 4096
"""Pixels a TIFF tile may have when its frame has fewer. Writers use 256x256 or 512x512 tiles, also on smaller
frames; libtiff allocates and fills a whole tile however little of it the frame covers: one LZW tile of 25984x25984
pixels in a 331-byte file of 64x48 took 1.9 GB, a tile of this size about 50 MB."""
TIFF_PART_LIMIT = 100_000
"""Strips or tiles accepted on a TIFF's first page. One row a strip at the 65,535 rows most writers allow stays
under it; Pillow spends about 8 us and 350 bytes on each in Python."""
_TIFF_OFFSET_TAGS = (273, 324)
"""StripOffsets and TileOffsets: their count is the number of strips or tiles."""
WEBP_CHUNK_LIMIT = 100_000
"""Chunks accepted in a WebP: a still image has up to six, an animation one more a frame (a 50 MiB one of tiny
frames might have tens of thousands)."""
ISO_BMFF_PART_LIMIT = 10_000
"""Items, properties, property associations or item references accepted in a HEIF or AVIF `meta` box."""
DERIVED_INPUT_RATIO = 4
"""Times its own pixels the inputs of a HEIF or AVIF derived image (a grid, an overlay) may have in all. A grid's
tiles may overhang its output by less than one tile (MIAF 7.3.11.4.2), so tiles no larger than the output cover
less than 4 times it. libheif decodes every input whole, whatever of it the output shows (about 0.05 s a
megapixel): 900 tiles of 1440x960 sharing one 290 KB bitstream, for a 64x64 grid, took 44 s."""
DERIVED_INPUT_PIXELS = 4096 * 4096
"""Pixels the inputs of a small derived image may have in all, whatever its size: one 512x512 tile covers a 100x100
grid 26 times over. libheif decodes this many in about a second."""

BMP_RLE_CODE_LIMIT = 2_000_000
"""Codes `handler.bmp` may decode from a BMP's RLE8 or RLE4 pixel data. They are decoded one at a time in Python
(about 0.4 us each), however few pixels a code makes: runs past a row's end make none, so 50 MiB of them took
Pillow 15-35 s. Encoders write a code a run of up to 255 pixels or a literal stretch of up to 255, plus one a row: a
12 MP image needs fewer unless its runs average under 6 pixels, where RLE stops paying."""


def _jpeg_excess(data: bytes) -> str | None:
    """More segments or scans in the first image than `HEADER_PART_LIMIT` or `JPEG_SCAN_LIMIT`, or more padding
    than `JPEG_PADDING_LIMIT`: bytes between the segments before the first scan, which Pillow's header parser steps
    through, and fill bytes after it, which libjpeg reads again from the start of their run whenever it waits
    for more input.

    Segments are walked by their length, so thumbnails inside APP segments do not count, and the walk
    ends at the first image's EOI, so an MPO's later images do not count either.
    """
    segments = scans = padding = 0
    end, first_scan, eoi = 2, None, None  # after the SOI marker
    for marker, start, segment_end in _jpeg_segments(data):
        at = start - (2 if marker == 0xD9 else 4)  # the marker, before its length if it has one
        if first_scan is None:
            padding += at - end
        end = segment_end
        if marker == 0xD9:
            eoi = at
        elif marker == 0xDA:
            first_scan = end if first_scan is None else first_scan
            scans += 1
            if scans > JPEG_SCAN_LIMIT:
                return (
                    f"JPEG has more than {JPEG_SCAN_LIMIT} scans (encoders write about 10), each decoded over the frame"
                )
        else:
            segments += 1
            if segments > HEADER_PART_LIMIT:
                return f"JPEG has more than {HEADER_PART_LIMIT} marker segments"
    if first_scan is None:  # Pillow's header parser reads on, past an EOI too, to the end of the file
        padding += max(0, len(data) - end)
    elif _FILL_PAIR.search(data, first_scan, eoi or len(data)):  # none in a photo: a 12 MP one is searched in 2 ms
        padding += 2 * data.count(b"\xff\xff", first_scan, eoi or len(data))
    if padding > JPEG_PADDING_LIMIT:
        return (
            f"JPEG has more than {JPEG_PADDING_LIMIT} bytes of fill bytes, markers without a length or junk "
            "between its segments (encoders write none or a few)"
        )
    return None


def _png_header_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload offset, declared length) of the chunks before the image data, `HEADER_PART_LIMIT` + 1 at most."""
    header = itertools.takewhile(lambda chunk: chunk[0] not in (b"IDAT", b"IEND"), _png_chunks(data))
    for kind, at, length in itertools.islice(header, HEADER_PART_LIMIT + 1):
        yield kind, at + 8, length


def _png_excess(data: bytes) -> str | None:
    """More chunks than `HEADER_PART_LIMIT` before the first IDAT, or than `PNG_CHUNK_LIMIT` in all.

    Pillow parses each chunk in Python, also the IDATs and those after them: a million tEXt chunks after the
    image data (21 MB) took it 3 s and 221 MB.
    """
    if sum(1 for _ in _png_header_chunks(data)) > HEADER_PART_LIMIT:
        return f"PNG has more than {HEADER_PART_LIMIT} chunks before its image data"
    if sum(1 for _ in itertools.islice(_png_chunks(data), PNG_CHUNK_LIMIT + 1)) > PNG_CHUNK_LIMIT:
        return f"PNG has more than {PNG_CHUNK_LIMIT} chunks (encoders split 50 MiB of image data into about 6400)"
    return None


def _webp_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(type, offset, payload size) of each top-level chunk of a WebP whose 8-byte header fits in the RIFF size."""
    end, pos = min(len(data), 8 + int.from_bytes(data[4:8], "little")), 12
    while pos + 8 <= end:
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        yield data[pos : pos + 4], pos, size
        pos += 8 + size + (size & 1)


def _webp_excess(data: bytes) -> str | None:
    """More chunks in the RIFF container than `WEBP_CHUNK_LIMIT`.

    libwebp's demuxer keeps a record of every chunk of an extended (VP8X) WebP, unknown ones too: 6 million empty
    chunks (46 MiB) took 342 MB. Only top-level chunks count: an unknown chunk inside a frame ends the frame.
    """
    if next(itertools.islice(_webp_chunks(data), WEBP_CHUNK_LIMIT, None), None) is None:
        return None
    return f"WebP has more than {WEBP_CHUNK_LIMIT} chunks (an animation has one a frame, a still image a few)"


# The bytes that start a GIF block (extension, image, trailer): Pillow skips any other between blocks.
_GIF_BLOCK = re.compile(rb"[!,;]")


def _gif_excess(data: bytes) -> str | None:
    """More extension blocks than `HEADER_PART_LIMIT`, or sub-blocks than `GIF_SUB_BLOCK_LIMIT`, before the first image.

    Pillow keeps what it reads of every extension: 10 million one-byte comments (50 MB) took it 1.7 GB. It
    passes over bytes that start no block, so the walk does too, or one such byte would hide the extensions.
    """
    end = len(data)
    if end < 13:
        return None
    pos, extensions, sub_blocks = 13 + _gif_colour_table(data[10]), 0, 0
    while (block := _GIF_BLOCK.search(data, pos)) is not None and data[block.start()] == 0x21:
        pos = block.start()
        extensions += 1
        if extensions > HEADER_PART_LIMIT:
            return f"GIF has more than {HEADER_PART_LIMIT} extension blocks before its first image"
        pos += 2
        while pos < end and data[pos]:
            pos += data[pos] + 1
            sub_blocks += 1
            if sub_blocks > GIF_SUB_BLOCK_LIMIT:
                return f"GIF has more than {GIF_SUB_BLOCK_LIMIT} data sub-blocks before its first image"
        pos += 1
    return None


def gif_first_image_box(data: bytes) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of a GIF's first image on its logical screen; None if no image descriptor is whole.

    Found as Pillow finds it: past the extensions and any byte that starts no block (`_gif_excess` has bounded
    the walk).
    """
    end = len(data)
    if end < 13:
        return None
    pos = 13 + _gif_colour_table(data[10])
    while (block := _GIF_BLOCK.search(data, pos)) is not None and data[block.start()] == 0x21:
        pos = block.start() + 2
        while pos < end and data[pos]:
            pos += data[pos] + 1
        pos += 1
    if block is None or data[block.start()] != 0x2C or block.start() + 9 > end:
        return None
    left, top, width, height = struct.unpack_from("<4H", data, block.start() + 1)
    return left, top, left + width, top + height


def _tiff_first_page(data: bytes, layout: _TiffLayout) -> list[tuple[int, int, int, bytes]] | None:
    """The entries (tag, type, count, value or its offset) of a TIFF's first IFD, the page decoded; None when the
    header or the IFD is cut (Pillow refuses that itself)."""
    end = len(data)
    if end < 2 * layout.offset.size:
        return None
    ifd = layout.offset.unpack_from(data, layout.offset.size)[0]
    if ifd + layout.counter.size > end:
        return None
    table = ifd + layout.counter.size
    entries = layout.counter.unpack_from(data, ifd)[0]
    if table + entries * layout.entry.size > end:
        return None
    return list(layout.entry.iter_unpack(data[table : table + entries * layout.entry.size]))


def _tiff_excess(data: bytes) -> str | None:
    """A tile of the first page (the frame decoded) with more pixels than `TIFF_TILE_PIXELS` and than one tile
    covering the whole frame.

    Sizes count in any integer type, also stored out of line, and from every entry of their tag: libtiff takes
    the first, Pillow the last, so the largest tile and the smallest frame are compared. A cut IFD is left to
    Pillow, which refuses it.
    """
    end, layout = len(data), _tiff_layout(data)
    fields = _tiff_first_page(data, layout)
    if fields is None:
        return None
    sizes: dict[int, list[int]] = {256: [], 257: [], 322: [], 323: []}
    # Only arrays the file can hold: a larger count is damage, which Pillow refuses itself (`corrupt`).
    parts = max(
        (
            count
            for tag, kind, count, _ in fields
            if tag in _TIFF_OFFSET_TAGS
            and kind in _TIFF_INTEGER_TYPES
            and count * struct.calcsize(_TIFF_INTEGER_TYPES[kind]) <= end
        ),
        default=0,
    )
    if parts > TIFF_PART_LIMIT:
        return (
            f"TIFF's first page has {parts} strips or tiles, more than {TIFF_PART_LIMIT} (writers make strips of "
            "about 8 KB or one row; Pillow builds and decodes each in Python: 3 million took 24 s and 1 GB)"
        )
    for tag, kind, count, value in [field for field in fields if field[0] in sizes]:
        code = _TIFF_INTEGER_TYPES.get(kind)
        if code is None or count != 1:
            continue
        width, at = struct.calcsize(code), layout.offset.unpack(value)[0]
        raw = value if width <= len(value) else data[at : at + width]
        if len(raw) >= width:
            sizes[tag].append(max(0, struct.unpack_from(layout.order + code, raw)[0]))
    tile = max(sizes[322], default=0), max(sizes[323], default=0)
    frame = min(sizes[256], default=0), min(sizes[257], default=0)
    covering = [-(-side // 16) * 16 for side in frame]  # tile sides are multiples of 16
    if tile[0] * tile[1] <= max(covering[0] * covering[1], TIFF_TILE_PIXELS):
        return None
    return (
        f"TIFF has tiles of {tile[0]}x{tile[1]} pixels, more than its {frame[0]}x{frame[1]} frame and "
        f"{TIFF_TILE_PIXELS} (writers use 256x256 or 512x512; libtiff allocates whole tiles)"
    )


def _iso_bmff_excess(data: bytes) -> str | None:
    """More items, properties, associations or references in `meta` than `ISO_BMFF_PART_LIMIT`, or a derived image
    whose inputs cost more to decode than `_derived_excess` allows.

    libavif keeps a record of each part: 6 million empty properties (48 MB) took 0.8 s and 780 MB to open.
    """
    meta = _meta(data)
    if meta is None:
        return None
    limit = ISO_BMFF_PART_LIMIT
    iprp = _child(data, *meta, b"iprp")
    iloc = _child(data, *meta, b"iloc")
    iloc_version = data[iloc[0]] if iloc and iloc[1] > iloc[0] else 0
    lists = {  # boxes, counted
        "properties": iprp and _child(data, *iprp, b"ipco"),
        "item infos": _full_box_payload(data, _child(data, *meta, b"iinf"), lambda v: 2 if v == 0 else 4),
    }
    tables = {  # entries, as declared: (span starting at the count, count width)
        "property associations": (iprp and _full_box_payload(data, _child(data, *iprp, b"ipma")), 4),
        "item locations": (_full_box_payload(data, iloc, lambda _: 2), 4 if iloc_version >= 2 else 2),
    }
    for what, span in lists.items():
        if span and sum(1 for _ in itertools.islice(bmff_boxes(data, *span), limit + 1)) > limit:
            return _too_many_parts(data, what)
    for what, (span, width) in tables.items():
        if span and span[1] - span[0] >= width and int.from_bytes(data[span[0] : span[0] + width], "big") > limit:
            return _too_many_parts(data, what)
    if _reference_count(data, meta) > limit:
        return _too_many_parts(data, "item references")
    return _derived_excess(data, meta, iprp) if iprp else None


def _too_many_parts(data: bytes, what: str) -> str:
    return f"{_signature(data)} has more than {ISO_BMFF_PART_LIMIT} {what} (phone photos have about 100 items)"


def _reference_count(data: bytes, meta: tuple[int, int]) -> int:
    """Items `iref` references, one at least per reference box, counted up to `ISO_BMFF_PART_LIMIT` + 1 boxes."""
    iref = _item_box(data, meta, b"iref")
    if iref is None:
        return 0
    size, start, end = iref
    count = 0
    for _, s, e in itertools.islice(bmff_boxes(data, start, end), ISO_BMFF_PART_LIMIT + 1):
        declared = int.from_bytes(data[s + size : s + size + 2], "big") if e - s >= size + 2 else 0
        count += max(1, min(declared, (e - s - size - 2) // size))
    return count


def _derived_excess(data: bytes, meta: tuple[int, int], iprp: tuple[int, int]) -> str | None:
    """A derived image (a grid, an overlay) of several inputs that together have more pixels than
    `DERIVED_INPUT_RATIO` times its own and than `DERIVED_INPUT_PIXELS`.

    Each input counts as its `ispe` grown by 64 pixels a side, the coded frame libheif accepts for it (an input
    without `ispe`: as 64x64); a derived image without `ispe` counts as empty.
    """
    ipco = _child(data, *iprp, b"ipco")
    if ipco is None:
        return None
    extents = _ispe_sizes(data, ipco)
    sizes: dict[int, tuple[int, int]] = {}
    for item, indices in _associations(data, iprp):
        found = [extents[i - 1] for i in indices if 0 < i <= len(extents) and extents[i - 1] is not None]
        sizes[item] = max(found, key=lambda size: size[0] * size[1], default=(0, 0))
    for item, inputs in _item_references(data, meta, b"dimg"):
        width, height = sizes.get(item, (0, 0))
        decoded = sum((w + 64) * (h + 64) for w, h in (sizes.get(source, (0, 0)) for source in inputs))
        if len(inputs) > 1 and decoded > max(DERIVED_INPUT_RATIO * width * height, DERIVED_INPUT_PIXELS):
            return (
                f"{_signature(data)} has a grid or overlay of {width}x{height} pixels whose {len(inputs)} input "
                f"images have {decoded} pixels, more than {DERIVED_INPUT_RATIO} times its own and "
                f"{DERIVED_INPUT_PIXELS} (each input is decoded whole)"
            )
    return None


@dataclass(frozen=True)
class BmpInfo:
    """A BMP's file and info header fields, as far as its header goes: those a short one lacks are 0, as OS/2 2.x
    defines them (and the OS/2 1.x core header has no compression)."""

    header_size: int
    offset: int
    """Where the pixel data starts, from the file header (0: right after the palette)."""
    width: int
    height: int
    """Negative for rows stored top-down (most BMPs store them bottom-up)."""
    bits: int
    compression: int
    data_size: int
    colours: int
    """Palette entries the header declares; 0 for all that the bit depth can index."""

    @property
    def os2_v2(self) -> bool:
        """An OS/2 2.x header (Pillow reads only the 64-byte one): no bitfields, no 2-bit pixels, and compression 3
        and 4 mean Huffman 1D and RLE24 there."""
        return self.header_size in _BMP_OS2_V2_HEADER_SIZES

    @property
    def stride(self) -> int:
        """Bytes a row of uncompressed pixels takes, padded to 4."""
        return (max(self.width, 0) * self.bits + 31) // 32 * 4

    @property
    def palette_size(self) -> int:
        """Palette entries a 1- to 8-bit BMP's indexes read: the declared count, or all the depth has when that is 0
        or more (Chromium reads the entries the indexes reach); 0 for deeper pixels."""
        full = 1 << self.bits if 0 < self.bits <= 8 else 0
        return self.colours if 0 < self.colours <= full else full

    @property
    def pixels_at(self) -> int:
        """Where the pixel data starts: the file header's offset, or right after the palette when that is 0, as
        Pillow reads it."""
        return self.offset or 14 + self.header_size + (3 if self.header_size == 12 else 4) * self.palette_size


def bmp_info(data: bytes) -> BmpInfo | None:
    """The headers of a BMP, fields cut off at the file's end read as 0; None for other containers and an info
    header size that is none."""
    if _signature(data) != "BMP":
        return None
    offset, header = struct.unpack_from("<II", data, 10)  # the signature needs 18 bytes
    if header == 12:
        width, height, _, bits = struct.unpack_from("<HHHH", data[18:26].ljust(8, b"\0"))
        return BmpInfo(header, offset, width, height, bits, 0, 0, 0)
    if header < 16:
        return None
    fields = data[18 : 14 + min(header, 40)].ljust(36, b"\0")
    width, height, _, bits, compression, size, _, _, colours = struct.unpack_from("<iiHHIIiiI", fields)
    return BmpInfo(header, offset, width, height, bits, compression, size, colours)


def bmp_rle(data: bytes) -> BmpInfo | None:
    """The headers of a BMP whose pixels are RLE8 (compression 1) or RLE4 (2) coded, whatever its bit depth."""
    info = bmp_info(data)
    return info if info is not None and info.compression in (1, 2) else None


class BmpRleCanvas(Protocol):
    """What `bmp_rle_walk` draws on. `at` counts pixels from the frame's top left, row after row, whichever order
    the file stores its rows in; a span never crosses a row's end."""

    def run(self, at: int, count: int, value: int) -> None:
        """An encoded run: `count` pixels of index `value` (RLE8), or of its high and low nibbles in turn (RLE4)."""

    def literal(self, at: int, count: int, start: int) -> None:
        """An absolute run: `count` indexes as stored from offset `start` of the file, a byte (RLE8) or a nibble
        (RLE4, high first) each."""

    def skip(self, at: int, count: int) -> None:
        """`count` pixels no code draws: passed by an end of line, a delta or an end-of-bitmap code."""


@dataclass(frozen=True)
class BmpRleWalk:
    """Where a walk over a BMP's RLE codes stopped."""

    codes: int
    """Codes read, counting the one past `limit` where the walk stopped for it."""
    complete: bool
    """The codes reached the end of the frame: an end-of-bitmap code, or the last row filled or moved past. Else
    the data (or the limit) ran out first."""
    end: int
    """The offset of the first code not read whole: the data's end when it ran out between codes."""


def bmp_rle_walk(
    data: bytes, info: BmpInfo, canvas: BmpRleCanvas | None = None, *, limit: int = sys.maxsize
) -> BmpRleWalk:
    """Read the RLE8 or RLE4 codes of a BMP as Chromium does, drawing each on `canvas`; stop after `limit` codes.

    Checked against Chromium 156's decodes of crafted files: a run, encoded or absolute, is cut at the row's end;
    an end of line always moves down a row, even after a full one; a delta moves right and down, and where it
    goes past the row's end nothing is drawn until the next end of line; an absolute run's bytes are padded to an
    even count (Pillow pads to an even file offset instead, so a file whose pixels start at an odd offset came out
    shifted). The walk stops at an end-of-bitmap code or once the last row is filled or passed (what follows
    draws nothing), else where the data ends. One Python step a code, which is what `limit` bounds; the drawing,
    a slice a span, is the canvas's.
    """
    width, height, rle4 = max(info.width, 0), abs(info.height), info.compression == 2
    step = -width if info.height > 0 else width  # rows are stored bottom-up unless the height is negative
    top = (height - 1) * width if step < 0 else 0  # where the first row stored starts
    run, literal, skip = (None, None, None) if canvas is None else (canvas.run, canvas.literal, canvas.skip)
    pos, end, last = info.pixels_at, len(data), height - 1
    stop = end - 2 if height else -1  # where the last whole code may start
    x = y = codes = 0
    row = top
    while pos <= stop:
        count, value = data[pos], data[pos + 1]
        pos += 2
        codes += 1
        if codes > limit:
            return BmpRleWalk(codes, False, pos - 2)
        if count:  # an encoded run
            drawn = width - x if count > width - x else count  # not min(): a call a code costs
            if drawn and run is not None:
                run(row + x, drawn, value)
            x += drawn
        elif value > 2:  # an absolute run, its bytes padded to an even count
            size = (value + 1) >> 1 if rle4 else value
            if pos + size > end:
                return BmpRleWalk(codes, False, pos - 2)
            drawn = width - x if value > width - x else value
            if literal is not None and drawn:
                literal(row + x, drawn, pos)
            x += drawn
            pos += size + (size & 1)
        else:  # a jump: a delta (right, then down), an end of line, or an end of bitmap (to the frame's end)
            if value == 2:
                if pos + 2 > end:
                    return BmpRleWalk(codes, False, pos - 2)
                to_x, to_y = x + data[pos], y + data[pos + 1]
                to_x, pos = width if to_x > width else to_x, pos + 2
            else:
                to_x, to_y = 0, y + 1 if value == 0 else height
            if to_y != y:
                if skip is not None:
                    _bmp_rle_skip(skip, (x, y), (to_x, to_y), width=width, height=height, top=top, step=step)
                y, row = to_y, top + step * to_y
                if y > last:
                    return BmpRleWalk(codes, True, pos)
            elif skip is not None and to_x > x:
                skip(row + x, to_x - x)
            x = to_x
        if x == width and y == last:
            return BmpRleWalk(codes, True, pos)
    return BmpRleWalk(codes, False, pos)


def _bmp_rle_skip(
    skip: Callable[[int, int], None],
    start: tuple[int, int],
    to: tuple[int, int],
    *,
    width: int,
    height: int,
    top: int,
    step: int,
) -> None:
    """Pass `skip` the pixels a jump down from `start` to `to` (x, y: rows in file order) passes over, row by row:
    at most one call a row, and each row is passed once, so the calls are bounded by codes plus rows."""
    (x, y), (to_x, to_y) = start, to
    if x < width:
        skip(top + step * y + x, width - x)
    for passed in range(y + 1, min(to_y, height)):
        skip(top + step * passed, width)
    if to_y < height and to_x:
        skip(top + step * to_y, to_x)


def _bmp_rle_excess(data: bytes) -> str | None:
    """More codes than `BMP_RLE_CODE_LIMIT` in the RLE pixel data `handler.bmp` reads.

    Walks the codes as it does, so what follows the point where it stops (the frame's end, an end-of-bitmap code,
    the data's end) does not count; paid only when the data after the offset could hold more codes than the limit.
    """
    info = bmp_rle(data)
    if info is None or len(data) - info.pixels_at <= 2 * BMP_RLE_CODE_LIMIT:
        return None
    walk = bmp_rle_walk(data, info, limit=BMP_RLE_CODE_LIMIT)
    if walk.codes > BMP_RLE_CODE_LIMIT:
        return f"BMP RLE{4 if info.compression == 2 else 8} pixel data has more than {BMP_RLE_CODE_LIMIT} codes"
    return None


_EXCESS_WALKS = {
    "JPEG": _jpeg_excess,
    "PNG": _png_excess,
    "GIF": _gif_excess,
    "WEBP": _webp_excess,
    "TIFF": _tiff_excess,
    "AVIF": _iso_bmff_excess,
    "HEIF": _iso_bmff_excess,
    "BMP": _bmp_rle_excess,
}


def excess_structure(data: bytes) -> str | None:
    """Why the upload holds more parts, or larger tiles, than any encoder writes, or None.

    Decoding cost is bounded by the pixel limit, except where it grows with the count of parts or a tile's size:
    every scan of a progressive JPEG is decoded over the whole frame, and EOB runs let a scan cover it in
    a few bytes (libjpeg-turbo's LJT-01-003: 1000 scans of a 12 MP frame in 86 KB took 0.4 s to decode),
    header parts (JPEG segments, PNG chunks, GIF extensions) are parsed and kept one by one in Python,
    as BMP RLE codes are decoded, whether or not they draw anything,
    and libtiff allocates a TIFF's tiles whole, however little of them the frame covers.
    Checked on the bytes before any decoder runs; a 12 MP photo takes about 1.5 ms.
    """
    walk = _EXCESS_WALKS.get(_signature(data) or "")
    return None if walk is None else walk(data)


def _mpo_missing(data: bytes) -> str | None:
    """Every further image the MP index (CIPA DC-007) declares, and that is present, must lie within the file.

    Entry offsets count from the index's endianness marker. The first image is the JPEG being decoded,
    and its decoder notices a cut. A declared image that starts at or past the end of the file, or
    with no JPEG marker where it should start, is a stale index (tools that re-save the primary image
    copy its metadata), not a cut: the file renders as the plain JPEG it is. Bytes after the last image
    are allowed; an index that cannot be read is left alone, as Pillow then reads the file as a plain JPEG.
    """
    index = _mp_index(data)
    if index is None or index[1][:4] not in (b"II*\0", b"MM\0*"):
        return None
    base, mp = index
    order = "<" if mp[:2] == b"II" else ">"
    try:
        ifd = struct.unpack_from(order + "I", mp, 4)[0]
        count = struct.unpack_from(order + "H", mp, ifd)[0]
        raw_fields = struct.iter_unpack(order + "HHI4s", mp[ifd + 2 :][: 12 * count])
        fields = {tag: (kind, value) for tag, kind, _, value in raw_fields}
        kind, value = fields[0xB001]
        images = struct.unpack_from(order + ("H" if kind == 3 else "I"), value)[0]
        at = struct.unpack(order + "I", fields[0xB002][1])[0]
        entries = list(struct.iter_unpack(order + "IIIHH", mp[at : at + 16 * images]))
    except (struct.error, KeyError):
        return None
    for number, (_, size, offset, _, _) in enumerate(entries[1:], 2):
        start = base + offset
        if data[start : start + 2] != b"\xff\xd8":
            LOG.debug("MP index: image %d of %d is not at offset %d; a stale index, ignored", number, images, start)
            continue
        if start + size > len(data):
            return (
                f"the MP index declares image {number} of {images} at offset {start} with {size} bytes, "
                f"ending at {start + size}, but the file ends at {len(data)}"
            )
    return None


def _tiff_missing(data: bytes) -> str | None:
    """Every page's IFD, every value it stores out of line, and every strip or tile it points to lie within the file.

    The IFD chain is walked to its end, to a loop or to `_MAX_TIFF_PAGES`, one step per IFD entry; strip and
    tile offsets and byte counts are read into arrays and added in C, one step per strip or tile. Sub-IFDs
    (EXIF, GPS) are not walked.
    """
    end, layout = len(data), _tiff_layout(data)
    order, offset, counter, entry = layout.order, layout.offset, layout.counter, layout.entry
    if end < 2 * offset.size:
        return f"the header needs {2 * offset.size} bytes, the file has {end}"
    ifd, seen, steps = offset.unpack_from(data, offset.size)[0], set(), 0
    while ifd and ifd not in seen:
        seen.add(ifd)
        page = len(seen)
        if page > _MAX_TIFF_PAGES:
            raise _WalkTooLongError(ifd, f"{_MAX_TIFF_PAGES} pages")
        if ifd + counter.size > end:
            return f"page {page}'s IFD is declared at offset {ifd}, the file ends at {end}"
        entries = counter.unpack_from(data, ifd)[0]
        steps += entries + 1
        if steps > _MAX_WALK_STEPS:
            raise _WalkTooLongError(ifd)
        ifd_end = ifd + counter.size + entries * entry.size + offset.size
        if ifd_end > end:
            needed, left = ifd_end - ifd, end - ifd
            return f"page {page}'s IFD at offset {ifd} has {entries} entries in {needed} bytes, {left} are left"
        arrays: dict[int, array.array[int]] = {}
        for tag, kind, count, value in entry.iter_unpack(data[ifd + counter.size : ifd_end - offset.size]):
            size = count * _TIFF_TYPE_SIZES[kind] if kind < len(_TIFF_TYPE_SIZES) else 0
            at = offset.unpack(value)[0] if size > offset.size else None
            if at is not None and at + size > end:
                name = _TIFF_PIXEL_TAGS.get(tag, f"tag {tag}")
                return f"page {page}'s {name} ({count} values, {size} bytes) at offset {at} runs past the end at {end}"
            if tag in _TIFF_PIXEL_TAGS and kind in _TIFF_ARRAY_TYPES:
                steps += count
                if steps > _MAX_WALK_STEPS:
                    raise _WalkTooLongError(ifd)
                raw = value[:size] if at is None else data[at : at + size]
                arrays[tag] = _tiff_array(_TIFF_ARRAY_TYPES[kind], order, raw)
        for offsets_tag, counts_tag, part in ((273, 279, "strip"), (324, 325, "tile")):
            starts, sizes = arrays.get(offsets_tag, ()), arrays.get(counts_tag, ())
            if max(map(operator.add, starts, sizes), default=0) > end:
                i = next(i for i, (o, n) in enumerate(zip(starts, sizes, strict=False)) if o + n > end)
                return (
                    f"page {page}'s {part} {i + 1} of {len(starts)} at offset {starts[i]} with {sizes[i]} bytes "
                    f"ends at {starts[i] + sizes[i]}, the file ends at {end}"
                )
        ifd = offset.unpack_from(data, ifd_end - offset.size)[0]
    return None


def _tiff_array(code: str, order: str, raw: bytes) -> array.array[int]:
    """A field's values, 2-8 bytes each instead of a Python int each: a page may have a million strips."""
    values = array.array(code, raw)
    if (order == "<") != (sys.byteorder == "little"):
        values.byteswap()
    return values


_BMP_DEPTHS = frozenset({1, 2, 4, 8, 16, 24, 32})
"""Bits per pixel of uncompressed BMPs that Pillow or `handler.bmp` decode."""


def _bmp_missing(data: bytes) -> str | None:
    """The pixel array must be as long as the header declares it: an RLE one its size field, an uncompressed one
    (also bitfields) its rows, each padded to 4 bytes.

    RLE codes that end before the frame does, within the declared size, `handler.bmp` refuses itself; it stops
    once the last row is filled, so a file cut in its last end-of-line and end-of-bitmap codes renders. An
    uncompressed array Pillow refuses itself when short, `handler.bmp` by this.
    """
    info = bmp_info(data)
    if info is None:
        return None
    offset, left = info.offset, max(0, len(data) - info.offset)
    if info.compression in (1, 2):
        if offset + info.data_size <= len(data):
            return None
        rle, size = 8 if info.compression == 1 else 4, info.data_size
        return f"RLE{rle} pixel data at offset {offset} declares {size} bytes, the file ends {left} bytes into it"
    if not offset or info.compression not in (0, *_BMP_BITFIELDS) or info.bits not in _BMP_DEPTHS:
        return None  # without an offset, the pixels follow the palette: Pillow's decoder tells
    rows = abs(info.height)
    if info.stride * rows <= left:
        return None
    return (
        f"pixel data at offset {offset} needs {info.stride * rows} bytes ({rows} rows of {info.stride}), "
        f"the file ends {left} bytes into it"
    )


def _iso_bmff_missing(data: bytes) -> str | None:
    """Every top-level box must fit in the file (size 0 runs to its end).

    libheif reads only the items the primary image needs, so a file cut in a later part of `mdat`
    (a thumbnail, Exif, another image) would render.
    """
    end, pos = len(data), 0
    for _ in range(_MAX_WALK_STEPS):
        if pos == end:
            return None
        box = _box_at(data, pos, end)
        if box is None:
            return f"the box header at offset {pos} is cut after {end - pos} bytes"
        kind, header, size = box
        if pos + max(size, header) > end:
            name = kind.decode("latin-1")
            return f"{name!r} box at offset {pos} declares {size} bytes, the file ends {end - pos} bytes into it"
        if size < header:
            return None  # not a box at all: damage for the decoder to name
        pos += size
    raise _WalkTooLongError(pos)


# Container -> (name in messages, walk). Plain JPEG and WebP need none: libjpeg refuses a cut scan (what
# follows the EOI is not the JPEG's: motion-photo video, camera trailers), libwebp checks the RIFF sizes.
_WALKS = {
    "PNG": ("PNG", _png_missing),
    "GIF": ("GIF", _gif_missing),
    "JPEG": ("MPO", _mpo_missing),
    "TIFF": ("TIFF", _tiff_missing),
    "BMP": ("BMP", _bmp_missing),
    "AVIF": ("AVIF", _iso_bmff_missing),
    "HEIF": ("HEIF", _iso_bmff_missing),
}


def truncation(data: bytes) -> str | None:
    """Why the upload is cut short, as `"<container> is truncated: <what is missing>"`; None when it is whole.

    Decoders read the first frame only: a file cut after it (an MPO's second image, an animation's later
    frames, a TIFF's later pages, a PNG's IEND) renders unless its structure is checked against its length.
    Headers only, one step per chunk, block, box or IFD entry, never per pixel; a file with more parts than
    `_MAX_WALK_STEPS` is logged and left unchecked.
    """
    container = _signature(data)
    if container not in _WALKS:
        return None
    name, walk = _WALKS[container]
    try:
        missing = walk(data)
    except _WalkTooLongError as exc:
        LOG.warning("%s not checked for truncation: %s", name, exc)
        return None
    return None if missing is None else f"{name} is truncated: {missing}"


# --- pixels as browsers decode them: what the decode helpers in pipeline.py read from the container -------

_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
"""Samples per pixel of each PNG colour type: grey, RGB, palette, grey and alpha, RGBA."""
_ADAM7_PASSES = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
"""First column, first row, column step and row step of each Adam7 pass."""


@dataclass(frozen=True)
class PngPixels:
    """How a PNG stores its pixels (IHDR), and the transparency libpng (so every browser) gives them (tRNS)."""

    bit_depth: int
    colour_type: int
    interlaced: bool
    transparency: bytes | tuple[int, ...] | None
    """A palette's alpha for each entry from the first (entries after them are opaque), or the grey (one sample)
    or RGB (three) that is transparent, at the file's bit depth; None when libpng applies no tRNS."""

    def scanline_bytes(self, size: tuple[int, int]) -> int:
        """What the zlib stream of a frame of `size` inflates to: a filter byte and the samples of each row
        (of each Adam7 pass that has pixels)."""
        width, height = size
        bits = self.bit_depth * _PNG_CHANNELS[self.colour_type]
        total = 0
        for column, row, column_step, row_step in _ADAM7_PASSES if self.interlaced else ((0, 0, 1, 1),):
            columns, rows = -(-(width - column) // column_step), -(-(height - row) // row_step)
            if columns > 0 and rows > 0:
                total += rows * (1 + (columns * bits + 7) // 8)
        return total


def png_pixels(data: bytes) -> PngPixels | None:
    """The IHDR of a PNG (None for other containers) and its tRNS as libpng applies it.

    libpng ignores a tRNS (a benign error) that is repeated, comes before a palette image's PLTE or is followed
    by a PLTE, is on a colour type with alpha, or has the wrong length: a palette's may not be longer than the
    palette, which keeps at most 2**bit depth entries. It compares a colour key in the sample's bits only.
    Pillow applies any tRNS it finds, the last one, and fails on a palette's longer than 256 entries.
    """
    if _signature(data) != "PNG" or data[12:16] != b"IHDR" or len(data) < 29:
        return None
    depth, colour, interlace = data[24], data[25], data[28]
    if colour not in _PNG_CHANNELS:
        return None
    mask, entries, accepted = (1 << depth) - 1, 0, False
    transparency: bytes | tuple[int, ...] | None = None
    for kind, at, length in _png_header_chunks(data):
        payload = data[at : at + length]
        if kind == b"PLTE" and colour in (2, 3, 6) and length <= 3 * 256 and length % 3 == 0:
            entries = entries or min(length // 3, 1 << depth if colour == 3 else 256)
            transparency = None  # "tRNS must be after" PLTE: libpng cancels it, and counts it as seen
        elif kind == b"tRNS" and not accepted:
            if colour == 3 and 0 < length <= entries:
                transparency = payload
            elif colour in (0, 2) and length == 2 * _PNG_CHANNELS[colour]:
                transparency = tuple(value & mask for value in struct.unpack(f">{length // 2}H", payload))
            else:
                continue  # ignored, so a later tRNS is no duplicate
            accepted = True
    return PngPixels(depth, colour, interlace == 1, transparency)


def png_image_data(data: bytes, *, animation_frame: bool = False) -> list[memoryview]:
    """The zlib stream of a PNG's image, in pieces: the IDAT chunks' payloads, or with `animation_frame` those of
    the fdAT chunks of the first frame that has an fcTL (less their sequence numbers): an APNG's first frame when
    its IDAT image is not part of the animation."""
    view, pieces, in_frame = memoryview(data), [], False
    for kind, at, length in _png_chunks(data):
        payload = view[at + 8 : at + 8 + length]
        if not animation_frame:
            if kind == b"IDAT":
                pieces.append(payload)
            elif pieces:
                break
        elif kind == b"fcTL":
            if in_frame:
                break
            in_frame = True
        elif kind == b"fdAT" and in_frame:
            pieces.append(payload[4:])
    return pieces


_BMP_BITFIELDS = (3, 6)
"""BI_BITFIELDS and BI_ALPHABITFIELDS: the pixels' channels are where the header's masks say."""
_BMP_CHANNELS = "RGBA"


@dataclass(frozen=True)
class BmpBitfields:
    """Where a BMP's bitfields pixels are, and the masks that say which bits are red, green, blue and alpha."""

    bits: int
    masks: tuple[int, int, int, int]
    offset: int
    width: int
    height: int
    """Negative for rows stored top-down (most BMPs store them bottom-up)."""

    @property
    def layout(self) -> str | None:
        """The masks as Direct3D names them, from the most significant bit (`A4R4G4B4`, `X1R5G5B5`); None when a
        mask is not one run of bits, masks overlap or one lies beyond the pixel's bits, or all are 0."""
        parts, top = [], self.bits
        for mask, name in sorted(zip(self.masks, _BMP_CHANNELS, strict=True), reverse=True):
            low, high = (mask & -mask).bit_length() - 1, mask.bit_length()
            if not mask:
                break
            if mask >> low != (1 << (high - low)) - 1 or high > top:
                return None
            parts += [f"X{top - high}", f"{name}{high - low}"] if high < top else [f"{name}{high - low}"]
            top = low
        return "".join(parts + ([f"X{top}"] if top else [])) if parts else None


def bmp_bitfields(data: bytes) -> BmpBitfields | None:
    """The bitfields of a BMP stored with BI_BITFIELDS or BI_ALPHABITFIELDS; None for other BMPs and containers.

    The masks follow a 40-byte header (three, four for BI_ALPHABITFIELDS) or are in a longer one (the alpha mask
    from 56 bytes on), as Pillow and Chromium read them.
    """
    info = bmp_info(data)
    if info is None or info.header_size < 40 or info.compression not in _BMP_BITFIELDS:
        return None
    count = 4 if info.header_size >= 56 or info.compression == 6 else 3
    if len(data) < 54 + 4 * count:
        return None
    red, green, blue, *alpha = struct.unpack_from(f"<{count}I", data, 54)
    return BmpBitfields(info.bits, (red, green, blue, alpha[0] if alpha else 0), info.offset, info.width, info.height)
