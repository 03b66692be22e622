"""Magic-number sniffing: which plugin a container needs, how a refusal is named, and whether a container is whole."""

from __future__ import annotations

import csv
import functools
import io
import itertools
import logging
import random
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
from PIL import Image, ImageFile

from handler import sniff
from handler.pipeline import Rejected, render
from handler.variants import PRESETS
from tests.conftest import HOSTILE_DIR, PHOTOS_DIR
from tests.test_pipeline_generated import bmp_file, tiff_file


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\0\0\0\0" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + b"\0" * 16


@pytest.mark.parametrize(
    ("data", "heif"),
    [
        (ftyp(b"heic", b"mif1", b"heic"), True),
        (ftyp(b"mif1", b"heic"), True),
        (ftyp(b"mif1", b"miaf"), True),  # generic HEIF still image
        (ftyp(b"avif", b"mif1", b"miaf"), False),
        (ftyp(b"mif1", b"avif"), False),
        (b"\xff\xd8\xff\xe0" + b"\0" * 30, False),
    ],
)
def test_heif_plugin_is_needed_only_for_heif_containers(data: bytes, heif: bool) -> None:
    assert sniff.is_heif_container(data) is heif


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"\xff\xd8\xff\xdb", "JPEG"),
        (b"\x89PNG\r\n\x1a\n", "PNG"),
        (b"\x09PNG\r\n\x1a\n", "PNG"),  # high bit of the first byte lost in transit
        # PngSuite's damaged signatures, told by the IHDR chunk behind them: a byte replaced, lower case, a space
        # for the EOF byte, LF translated to CR LF, CR LF translated to LF.
        (b"\x89PQG\r\n\x1a\n\0\0\0\x0dIHDR", "PNG"),
        (b"\x89png\r\n\x1a\n\0\0\0\x0dIHDR", "PNG"),
        (b"\x89PNG\r\n\x1a \0\0\0\x0dIHDR", "PNG"),
        (b"\x89PNG\r\r\n\x1a\r\n\0\0\0\x0dIHDR", "PNG"),
        (b"\x89PNG\n\x1a\n\0\0\0\x0dIHDR", "PNG"),
        (b"\x89XYZ\r\n\x1a\n\0\0\0\x0dIHDR", None),  # three bytes off: not a damaged PNG signature
        (b"notes on IHDR chunks", None),
        (b"GIF89a", "GIF"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "WEBP"),
        (b"II*\0", "TIFF"),
        (b"BM" + b"\0" * 30, "BMP"),
        (ftyp(b"avif"), "AVIF"),
        (ftyp(b"heic"), "HEIF"),
        (b"8BPS\0\1", None),
        (b"plain text", None),
    ],
)
def test_accepted_container_signatures(data: bytes, name: str | None) -> None:
    assert sniff.accepted_container(data) == name


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"8BPS\0\1", "PSD"),
        (b"\0\0\1\0\1\0", "ICO"),
        (b"  <?xml version='1.0'?><svg xmlns='http://www.w3.org/2000/svg'/>", "SVG"),
        (b"\xff\x0a\xfa", "JPEG XL"),
        (b"just some words", None),
    ],
)
def test_other_image_formats_are_named(data: bytes, name: str | None) -> None:
    assert sniff.other_image_format(data) == name


# --- structural completeness: uploads cut after the frame we render -------------------------------------------

MOTION_PHOTO_VIDEO = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom" + b"\0\0\0\x10mdat" + b"\0" * 8
"""The start of what a Google Motion Photo appends after its JPEG's EOI: an MP4 (an ISO-BMFF file of its own)."""
COLOURS = ("red", "black", "yellow", "purple")


def saved(fmt: str, frames: int = 1, **params: object) -> bytes:
    images = [Image.new("RGB", (8, 8), colour) for colour in COLOURS[:frames]]
    buffer = io.BytesIO()
    images[0].save(buffer, fmt, save_all=frames > 1, append_images=images[1:], **params)
    return buffer.getvalue()


def rle8_bmp() -> bytes:
    rows = b"".join(bytes((8, y % 2, 0, 0)) for y in range(8))  # a run of 8 pixels, then end of line
    return bmp_file((8, 8), 8, rows + b"\0\1", compression=1, palette=((255, 0, 0), (0, 0, 255)))


def with_tiles(tiff: bytes) -> bytes:
    """The strip tags of a one-page little-endian TIFF renamed to tile tags: only the walker reads this file."""
    ifd = struct.unpack_from("<I", tiff, 4)[0]
    data = bytearray(tiff)
    for i in range(struct.unpack_from("<H", tiff, ifd)[0]):
        at = ifd + 2 + 12 * i
        tag = struct.unpack_from("<H", tiff, at)[0]
        data[at : at + 2] = struct.pack("<H", {273: 324, 279: 325}.get(tag, tag))
    return bytes(data)


def mpo_second_image(data: bytes) -> int:
    """Where an MPO's second image starts: cuts before it are the primary JPEG's own (its decoder refuses them)."""
    return len(data) - Image.open(io.BytesIO(data)).mpinfo[0xB002][1]["Size"]


def last_pixel_byte(data: bytes) -> int:
    """End of the furthest strip of any page, as Pillow reads the tags: a TIFF may end in padding after it."""
    image = Image.open(io.BytesIO(data))
    ends = []
    for frame in range(getattr(image, "n_frames", 1)):
        image.seek(frame)
        ends.extend(o + n for o, n in zip(image.tag_v2[273], image.tag_v2[279], strict=True))
    return max(ends)


def box_ends(data: bytes) -> frozenset[int]:
    """Where the top-level ISO-BMFF boxes end: a cut there leaves whole boxes, and the decoder misses its items."""
    ends, pos = set(), 0
    while pos < len(data):
        pos += int.from_bytes(data[pos : pos + 4], "big")
        ends.add(pos)
    return frozenset(ends)


@dataclass(frozen=True)
class Whole:
    """A complete file of a container the walk checks, and the range in which every cut must be named."""

    build: Callable[[], bytes]
    container: str
    first_cut: Callable[[bytes], int] = lambda data: 16
    last_cut: Callable[[bytes], int] = len
    whole_prefixes: Callable[[bytes], frozenset[int]] = lambda data: frozenset()
    """Cuts that leave only whole parts, which the walk cannot tell from a whole file."""
    trailing_bytes_allowed: bool = True


WHOLE = {
    "png": Whole(lambda: saved("PNG"), "PNG"),
    "apng": Whole(lambda: saved("PNG", 3), "PNG"),
    "mpo": Whole(lambda: saved("MPO", 2), "MPO", first_cut=lambda data: mpo_second_image(data) + 2),
    "tiff-3-pages": Whole(lambda: saved("TIFF", 3), "TIFF", last_cut=last_pixel_byte),
    "tiff-lzw-3-pages": Whole(lambda: saved("TIFF", 3, compression="tiff_lzw"), "TIFF", last_cut=last_pixel_byte),
    "tiff-lzw-short-strip-counts": Whole(  # libtiff: IFD after the strips, counts as SHORT, then 4 bytes of padding
        lambda: saved("TIFF", 2, compression="tiff_lzw", strip_size=48), "TIFF", last_cut=lambda data: len(data) - 4
    ),
    "bigtiff-3-pages": Whole(lambda: saved("TIFF", 3, big_tiff=True), "TIFF", last_cut=last_pixel_byte),
    "tiff-big-endian": Whole(
        lambda: tiff_file((8, 8), (8,), bytes(64), photometric=1, big_endian=True), "TIFF", last_cut=last_pixel_byte
    ),
    "bmp-rle8": Whole(rle8_bmp, "BMP", first_cut=lambda data: int.from_bytes(data[10:14], "little")),
    "avif": Whole(lambda: saved("AVIF"), "AVIF", whole_prefixes=box_ends, trailing_bytes_allowed=False),
    "heic": Whole(
        (HOSTILE_DIR / "govips_heic-24bit.heic").read_bytes,
        "HEIF",
        whole_prefixes=box_ends,
        trailing_bytes_allowed=False,
    ),
}


@functools.cache
def whole(name: str) -> bytes:
    data = WHOLE[name].build()
    if name != "heic":  # the fixture must be a file Pillow reads whole (the HEIF sample is known good)
        Image.open(io.BytesIO(data)).load()
    return data


def cuts(first: int, last: int) -> range:
    """Every offset of a small file; a sample of a large one (slicing copies the bytes)."""
    return range(first, last, max(1, (last - first) // 2000))


@pytest.mark.parametrize("name", WHOLE)
def test_whole_files_are_complete(name: str) -> None:
    assert sniff.truncation(whole(name)) is None


@pytest.mark.parametrize("name", [n for n, w in WHOLE.items() if w.trailing_bytes_allowed])
def test_bytes_after_the_end_are_allowed(name: str) -> None:
    assert sniff.truncation(whole(name) + MOTION_PHOTO_VIDEO) is None


def test_a_stale_mp_index_is_not_a_cut() -> None:
    """Tools that re-save a phone's primary image keep its MP index: the file is a whole JPEG, and renders."""
    mpo = saved("MPO", 2)
    primary_only = mpo[: mpo_second_image(mpo)]  # the index still declares image 2, past the end
    assert sniff.truncation(primary_only) is None
    rewritten = primary_only + b"\0" * (len(mpo) - len(primary_only) + 10)  # no JPEG where image 2 should be
    assert sniff.truncation(rewritten) is None
    assert Image.open(io.BytesIO(primary_only)).convert("RGB").getpixel((4, 4)) == Image.open(io.BytesIO(mpo)).convert(
        "RGB"
    ).getpixel((4, 4))


@pytest.mark.parametrize("name", WHOLE)
def test_every_cut_is_named(name: str) -> None:
    data, case = whole(name), WHOLE[name]
    for cut in cuts(case.first_cut(data), case.last_cut(data)):
        if cut in case.whole_prefixes(data):
            continue
        missing = sniff.truncation(data[:cut])
        assert missing is not None, f"{name} cut at {cut} of {len(data)} bytes passed"
        assert missing.startswith(f"{case.container} is truncated: "), missing


@pytest.mark.parametrize("frames", [1, 3])
def test_gif_cut_is_named_unless_it_ends_with_a_whole_image(frames: int) -> None:
    """A GIF without its trailer is common and shows in browsers; one cut inside a block is not whole."""
    data = saved("GIF", frames)
    assert sniff.truncation(data) is None
    assert sniff.truncation(data + MOTION_PHOTO_VIDEO) is None
    passed = [cut for cut in range(13, len(data)) if sniff.truncation(data[:cut]) is None]
    assert len(passed) == frames, f"only the {frames} image ends may pass, passed: {passed}"
    assert passed[-1] == len(data) - 1 and data[-1:] == b";", "the last one lacks just the trailer"
    assert all(data[cut - 1] == 0 and data[cut] in b"!;" for cut in passed), "each passing cut ends a block"
    assert sniff.truncation(data[: passed[0] - 1]).startswith("GIF is truncated: image block at offset ")


def test_gif_junk_after_the_last_block_ends_the_walk() -> None:
    data = saved("GIF", 2)
    assert sniff.truncation(data[:-1] + b"\x00garbage") is None


def test_messages_name_the_missing_part_with_offsets() -> None:
    png = saved("PNG")
    assert (
        sniff.truncation(png[:-12])
        == f"PNG is truncated: no IEND chunk: the file ends at offset {len(png) - 12} with a whole chunk"
    )
    idat = png.find(b"IDAT") - 4
    length = int.from_bytes(png[idat : idat + 4], "big")
    assert sniff.truncation(png[: idat + 20]) == (
        f"PNG is truncated: 'IDAT' chunk at offset {idat} needs {12 + length} bytes, the file ends 20 bytes into it"
    )
    mpo = saved("MPO", 2)
    second = Image.open(io.BytesIO(mpo)).mpinfo[0xB002][1]["Size"]
    assert sniff.truncation(mpo[:-100]) == (
        f"MPO is truncated: the MP index declares image 2 of 2 at offset {len(mpo) - second} with {second} bytes, "
        f"ending at {len(mpo)}, but the file ends at {len(mpo) - 100}"
    )
    tiff = saved("TIFF", 2)
    first_ifd = struct.unpack_from("<I", tiff, 4)[0]
    entries = struct.unpack_from("<H", tiff, first_ifd)[0]
    second_ifd = struct.unpack_from("<I", tiff, first_ifd + 2 + 12 * entries)[0]
    assert sniff.truncation(tiff[: second_ifd - 4]) == (
        f"TIFF is truncated: page 2's IFD is declared at offset {second_ifd}, the file ends at {second_ifd - 4}"
    )
    strip = last_pixel_byte(tiff) - 192
    assert sniff.truncation(tiff[: strip + 10]) == (
        f"TIFF is truncated: page 2's strip 1 of 1 at offset {strip} with 192 bytes ends at {strip + 192}, "
        f"the file ends at {strip + 10}"
    )
    bmp = rle8_bmp()
    assert (
        sniff.truncation(bmp[:-2])
        == "BMP is truncated: RLE8 pixel data at offset 62 declares 34 bytes, the file ends 32 bytes into it"
    )


def test_tile_offsets_are_checked_like_strips() -> None:
    tiled = with_tiles(tiff_file((8, 8), (8,), bytes(64), photometric=1))
    assert sniff.truncation(tiled) is None
    assert sniff.truncation(tiled[:-1]).startswith("TIFF is truncated: page 1's tile 1 of 1 at offset ")


def test_tiff_ifd_loop_ends_the_walk() -> None:
    data = bytearray(saved("TIFF", 2))
    first_ifd = struct.unpack_from("<I", data, 4)[0]
    entries = struct.unpack_from("<H", data, first_ifd)[0]
    data[first_ifd + 2 + 12 * entries :][:4] = struct.pack("<I", first_ifd)
    assert sniff.truncation(bytes(data)) is None


def test_containers_left_to_their_decoders_are_not_walked() -> None:
    """libjpeg refuses a cut scan, libwebp a cut RIFF; after a JPEG's EOI may come a motion photo's video."""
    jpeg, webp = saved("JPEG"), saved("WEBP", 3)
    for data in (jpeg, jpeg[: len(jpeg) // 2], jpeg + MOTION_PHOTO_VIDEO, webp[:-10]):
        assert sniff.truncation(data) is None


def test_unreadable_mp_index_is_left_to_pillow() -> None:
    jpeg = saved("JPEG")
    segment = b"MPF\0II*\0\xff\xff\0\0"  # its IFD offset points outside the segment
    damaged = jpeg[:2] + b"\xff\xe2" + (len(segment) + 2).to_bytes(2, "big") + segment + jpeg[2:]
    assert sniff.truncation(damaged) is None


def test_walks_beyond_the_budget_are_logged_and_left_unchecked(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sniff, "_MAX_WALK_STEPS", 2)
    with caplog.at_level(logging.WARNING, logger="handler.sniff"):
        assert sniff.truncation(whole("apng")[:-1]) is None
    assert "PNG not checked for truncation: more than 2 parts, stopped at offset 53" in caplog.text  # after IHDR, acTL


def accepted_samples() -> list[str]:
    with (HOSTILE_DIR / "MANIFEST.tsv").open(newline="") as manifest:
        rows = [row for row in csv.reader(manifest, delimiter="\t") if len(row) > 2 and row[2] == "process"]
    return [f"photos/{p.name}" for p in sorted(PHOTOS_DIR.iterdir())] + [f"hostile/{row[0]}" for row in rows]


@pytest.mark.parametrize("sample", accepted_samples())
def test_shared_samples_are_whole(sample: str) -> None:
    assert sniff.truncation((HOSTILE_DIR.parent / sample).read_bytes()) is None


def test_tiff_pages_beyond_the_cap_are_left_unchecked(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sniff, "_MAX_TIFF_PAGES", 2)
    data = whole("tiff-3-pages")
    assert sniff.truncation(data[: last_pixel_byte(data) - 1]) is None
    assert "TIFF not checked for truncation: more than 2 pages" in caplog.text


def scan_bomb(scans: int, size: tuple[int, int] = (256, 192)) -> bytes:
    """A progressive JPEG whose last scan is repeated until the file holds `scans` of them.

    libjpeg only warns about such a progression and decodes every scan over the whole frame.
    """
    image = Image.new("RGB", size, (120, 130, 140))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85, progressive=True)
    data = buffer.getvalue()
    last_scan = data[data.rindex(b"\xff\xda") : -2]  # SOS marker (never stuffed in data) up to the EOI
    written = data.count(b"\xff\xda")
    return data[:-2] + last_scan * (scans - written) + b"\xff\xd9"


def app_segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + (len(payload) + 2).to_bytes(2, "big") + payload


def png_with_chunks(count: int) -> bytes:
    """A PNG with `count` private ancillary chunks (no payload, valid CRC) before its image data."""
    data = saved("PNG")
    chunk = struct.pack(">I", 0) + b"prVt" + struct.pack(">I", zlib.crc32(b"prVt"))
    return data[:33] + chunk * count + data[33:]  # after the 8-byte signature and the 25-byte IHDR


def gif_with_extensions(count: int, sub_blocks: int = 1, before: bytes = b"") -> bytes:
    """A GIF with `before`, then `count` comment extensions of `sub_blocks` one-byte sub-blocks each, before its
    image."""
    data = saved("GIF")
    image = data.index(b"\x2c", 13)  # the image descriptor, after header, screen descriptor and palette
    return data[:image] + before + (b"\x21\xfe" + b"\x01x" * sub_blocks + b"\x00") * count + data[image:]


def jpeg_with_segments(count: int) -> bytes:
    return saved("JPEG")[:2] + app_segment(0xE5, b"") * count + saved("JPEG")[2:]


def avif_with_meta_parts(part: str, count: int) -> bytes:
    """A real AVIF whose `meta` (moved to the end, so `iloc` offsets stay valid) holds `count` extra parts.

    Lists of boxes get empty `free` boxes (`ipco`: properties, `iinf`: item infos, `iref`: references);
    tables get their declared count set (`ipma`: associations, `iloc`: items).
    """
    data = saved("AVIF")
    at = data.index(b"meta") - 4
    meta = bytearray(data[at : at + struct.unpack_from(">I", data, at)[0]])
    moved = data[:at] + struct.pack(">I", len(meta)) + b"free" + bytes(len(meta) - 8) + data[at + len(meta) :]
    if part in ("ipma", "iloc"):
        body = meta.index(part.encode()) + 4 + 4  # past the type, version and flags
        width = 4 if part == "ipma" or meta[body - 4] >= 2 else 2
        body += 2 if part == "iloc" else 0  # iloc: after the offset and length field sizes
        meta[body : body + width] = count.to_bytes(width, "big")
        return moved + bytes(meta)
    if part == "iref" and b"iref" not in meta:
        meta[12:12] = b"\0\0\0\x0ciref\0\0\0\0"  # an empty one, first in meta (after its version and flags)
        meta[0:4] = struct.pack(">I", len(meta))
    grown = [b"meta", part.encode()] + ([b"iprp"] if part == "ipco" else [])
    end = meta.index(part.encode()) - 4 + struct.unpack_from(">I", meta, meta.index(part.encode()) - 4)[0]
    meta[end:end] = b"\0\0\0\x08free" * count
    for kind in grown:
        size_at = meta.index(kind) - 4
        struct.pack_into(">I", meta, size_at, struct.unpack_from(">I", meta, size_at)[0] + 8 * count)
    return moved + bytes(meta)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_with_chunks_after_image_data(count: int, kind: bytes) -> bytes:
    """A PNG with `count` more chunks before IEND: empty IDATs (legal), or tEXt chunks after the image data."""
    data = saved("PNG")
    chunk = png_chunk(kind, b"" if kind == b"IDAT" else b"key\0value")
    return data[:-12] + chunk * count + data[-12:]


TIFF_CODES = {3: "H", 4: "I", 8: "h", 16: "Q"}  # SHORT, LONG, SSHORT, LONG8


def tiled_tiff(
    frame: tuple[int, int],
    tile: tuple[int, int],
    *,
    big: bool = False,
    size_type: int = 4,
    tiles: list[bytes] | None = None,
    later_fields: Sequence[tuple[int, int, list[int]]] = (),
) -> bytes:
    """A one-page RGB TIFF (or BigTIFF) of Deflate tiles, which Pillow does not write; the tiles come first.

    Without `tiles`, every tile is filled with one colour; `later_fields` are appended after the sorted ones.
    """
    across, down = -(-frame[0] // tile[0]), -(-frame[1] // tile[1])
    if tiles is None:
        tiles = [zlib.compress(bytes((200, 60, 40)) * (tile[0] * tile[1]))] * (across * down)
    head, inline, offset, counter = (16, 8, "Q", "Q") if big else (8, 4, "I", "H")
    starts = list(itertools.accumulate((len(t) for t in tiles[:-1]), initial=head))
    fields = [
        (256, size_type, [frame[0]]),
        (257, size_type, [frame[1]]),
        (258, 3, [8, 8, 8]),
        (259, 3, [8]),  # Adobe Deflate
        (262, 3, [2]),
        (277, 3, [3]),
        (284, 3, [1]),
        (322, size_type, [tile[0]]),
        (323, size_type, [tile[1]]),
        (324, 16 if big else 4, starts),
        (325, 4, [len(t) for t in tiles]),
        *later_fields,
    ]
    ifd = head + sum(map(len, tiles))
    out_of_line = ifd + struct.calcsize(counter) + len(fields) * (4 + 2 * inline) + inline
    entries, values = b"", b""
    for tag, kind, numbers in fields:
        raw = struct.pack(f"<{len(numbers)}{TIFF_CODES[kind]}", *numbers)
        if len(raw) > inline:
            raw, values = struct.pack("<" + offset, out_of_line + len(values)), values + raw
        entries += struct.pack("<HH" + offset, tag, kind, len(numbers)) + raw.ljust(inline, b"\0")
    header = b"II+\0" + struct.pack("<HHQ", 8, 0, ifd) if big else b"II*\0" + struct.pack("<I", ifd)
    return header + b"".join(tiles) + struct.pack("<" + counter, len(fields)) + entries + bytes(inline) + values


STUB_TILE = [zlib.compress(b"")]
"""Tile data for tiles too large to build: only the walk reads these files."""


WITHIN_LIMITS: dict[str, bytes] = {
    "baseline": saved("JPEG"),
    "progressive": saved("JPEG", progressive=True),
    "restarts": saved("JPEG", progressive=True, restart_marker_blocks=1),
    "scans": scan_bomb(sniff.JPEG_SCAN_LIMIT),
    "segments": jpeg_with_segments(sniff.HEADER_PART_LIMIT - 20),  # room for the file's own APP0, DQT, SOF, DHT
    "chunks": png_with_chunks(sniff.HEADER_PART_LIMIT - 1),  # IHDR is the first
    "extensions": gif_with_extensions(sniff.HEADER_PART_LIMIT),
    "sub-blocks": gif_with_extensions(1, sub_blocks=sniff.GIF_SUB_BLOCK_LIMIT),
    **{f"avif-{part}": avif_with_meta_parts(part, sniff.ISO_BMFF_PART_LIMIT - 10) for part in ("ipco", "iinf", "iref")},
    "png-idat-chunks": png_with_chunks_after_image_data(sniff.PNG_CHUNK_LIMIT - 3, b"IDAT"),  # and IHDR, IDAT, IEND
    "png-chunks-after-image-data": png_with_chunks_after_image_data(sniff.PNG_CHUNK_LIMIT - 3, b"tEXt"),
    "tiff-tile-at-the-floor": tiled_tiff((64, 48), (4096, 4096), tiles=STUB_TILE),
    "tiff-one-tile-over-a-large-frame": tiled_tiff((5000, 4000), (5008, 4000), tiles=STUB_TILE),
}


@pytest.mark.parametrize("data", WITHIN_LIMITS.values(), ids=WITHIN_LIMITS.keys())
def test_structure_up_to_the_limits_is_accepted(data: bytes) -> None:
    assert sniff.excess_structure(data) is None


PAST_LIMITS: dict[str, tuple[bytes, str]] = {
    "scans-over": (scan_bomb(sniff.JPEG_SCAN_LIMIT + 1), f"JPEG has more than {sniff.JPEG_SCAN_LIMIT} scans"),
    "scans-far-over": (scan_bomb(5000), f"JPEG has more than {sniff.JPEG_SCAN_LIMIT} scans"),
    "segments": (
        jpeg_with_segments(sniff.HEADER_PART_LIMIT),
        f"JPEG has more than {sniff.HEADER_PART_LIMIT} marker segments",
    ),
    "chunks": (png_with_chunks(sniff.HEADER_PART_LIMIT), f"PNG has more than {sniff.HEADER_PART_LIMIT} chunks"),
    "extensions": (
        gif_with_extensions(sniff.HEADER_PART_LIMIT + 1),
        f"GIF has more than {sniff.HEADER_PART_LIMIT} extension",
    ),
    "extensions-after-a-byte-pillow-skips": (
        gif_with_extensions(sniff.HEADER_PART_LIMIT + 1, before=b"\x00"),
        f"GIF has more than {sniff.HEADER_PART_LIMIT} extension",
    ),
    "sub-blocks": (
        gif_with_extensions(1, sub_blocks=sniff.GIF_SUB_BLOCK_LIMIT + 1),
        f"GIF has more than {sniff.GIF_SUB_BLOCK_LIMIT} data sub-blocks",
    ),
    **{
        f"avif-{part}": (
            avif_with_meta_parts(part, sniff.ISO_BMFF_PART_LIMIT + 1),
            f"AVIF has more than {sniff.ISO_BMFF_PART_LIMIT} {what}",
        )
        for part, what in (
            ("ipco", "properties"),
            ("iinf", "item infos"),
            ("iref", "item references"),
            ("ipma", "property associations"),
            ("iloc", "item locations"),
        )
    },
    "png-idat-chunks": (
        png_with_chunks_after_image_data(sniff.PNG_CHUNK_LIMIT - 2, b"IDAT"),
        f"PNG has more than {sniff.PNG_CHUNK_LIMIT} chunks",
    ),
    "png-chunks-after-image-data": (
        png_with_chunks_after_image_data(sniff.PNG_CHUNK_LIMIT - 2, b"tEXt"),
        f"PNG has more than {sniff.PNG_CHUNK_LIMIT} chunks",
    ),
    "tiff-tile": (
        tiled_tiff((64, 48), (25984, 25984), tiles=STUB_TILE),
        "TIFF has tiles of 25984x25984 pixels, more than its 64x48 frame",
    ),
    "tiff-tile-past-the-floor": (
        tiled_tiff((64, 48), (4096, 4112), tiles=STUB_TILE),
        f"TIFF has tiles of 4096x4112 pixels, more than its 64x48 frame and {sniff.TIFF_TILE_PIXELS}",
    ),
    "tiff-tile-past-a-large-frame": (
        tiled_tiff((5000, 4000), (5008, 4016), tiles=STUB_TILE),
        "TIFF has tiles of 5008x4016 pixels, more than its 5000x4000 frame",
    ),
    "bigtiff-tile": (
        tiled_tiff((64, 48), (16384, 16384), big=True, tiles=STUB_TILE),
        "TIFF has tiles of 16384x16384 pixels",
    ),
    "tiff-tile-signed-short": (
        tiled_tiff((64, 48), (16384, 16384), size_type=8, tiles=STUB_TILE),
        "TIFF has tiles of 16384x16384 pixels",
    ),
    "tiff-tile-long8-out-of-line": (
        tiled_tiff((64, 48), (16384, 16384), size_type=16, tiles=STUB_TILE),
        "TIFF has tiles of 16384x16384 pixels",
    ),
    "tiff-tile-libtiff-reads-the-first-entry": (  # Pillow reads the last one
        tiled_tiff((64, 48), (16384, 16384), tiles=STUB_TILE, later_fields=[(322, 4, [256]), (323, 4, [256])]),
        "TIFF has tiles of 16384x16384 pixels",
    ),
}


@pytest.mark.parametrize(("data", "message"), PAST_LIMITS.values(), ids=PAST_LIMITS.keys())
def test_structure_past_a_limit_is_named(data: bytes, message: str) -> None:
    excess = sniff.excess_structure(data)
    assert excess is not None and excess.startswith(message), excess


def test_jpeg_parts_in_thumbnails_and_later_images_do_not_count() -> None:
    bomb = scan_bomb(sniff.JPEG_SCAN_LIMIT + 1)
    progressive = saved("JPEG", progressive=True)
    with_thumbnail = progressive[:2] + app_segment(0xE1, b"Exif\0\0" + bomb[:60_000]) + progressive[2:]
    assert sniff.excess_structure(with_thumbnail) is None
    assert sniff.excess_structure(progressive + bomb) is None, "an MPO's later images are not decoded"
    with_fill = bomb.replace(b"\xff\xda", b"\xff\xff\xff\xda")
    assert sniff.excess_structure(with_fill) is not None, "fill bytes before markers are skipped, not miscounted"


@pytest.mark.parametrize("cut", [3, 10, 200, -40])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF"])
def test_damaged_structure_is_left_to_the_decoder(fmt: str, cut: int) -> None:
    data = saved(fmt, progressive=True) if fmt == "JPEG" else saved(fmt)
    assert sniff.excess_structure(data[:cut]) is None
    assert sniff.excess_structure(data[:12] + b"\x00" * 50) is None


def test_image_data_split_finer_than_any_encoder_is_accepted() -> None:
    """16-byte IDATs: 12,300 chunks, twice what a 50 MiB upload has in libpng's 8 KiB ones."""
    image = Image.frombytes("RGB", (256, 256), random.Random(7).randbytes(256 * 256 * 3))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    data = buffer.getvalue()
    chunks, pos = [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    stream = b"".join(payload for kind, payload in chunks if kind == b"IDAT")
    idats = b"".join(png_chunk(b"IDAT", stream[i : i + 16]) for i in range(0, len(stream), 16))
    split = data[:33] + idats + png_chunk(b"IEND", b"")  # IHDR, then only the image data
    assert split.count(b"IDAT") > 12_000
    assert sniff.excess_structure(split) is None
    assert sniff.truncation(split) is None
    assert Image.open(io.BytesIO(split)).tobytes() == image.tobytes()


TILED: dict[str, Callable[[], bytes]] = {
    "256-tile-on-64x48": lambda: tiled_tiff((64, 48), (256, 256)),
    "512-tile-on-64x48": lambda: tiled_tiff((64, 48), (512, 512)),
    "256-tiles-on-600x400": lambda: tiled_tiff((600, 400), (256, 256)),
    "bigtiff-256-tile": lambda: tiled_tiff((64, 48), (256, 256), big=True),
    "short-sizes": lambda: tiled_tiff((64, 48), (256, 256), size_type=3),
}


@pytest.mark.parametrize("make", TILED.values(), ids=TILED.keys())
def test_tiles_writers_use_are_accepted_and_decode(make: Callable[[], bytes]) -> None:
    data = make()
    assert sniff.excess_structure(data) is None
    assert sniff.truncation(data) is None
    image = Image.open(io.BytesIO(data))
    assert image.tile[0].codec_name == "libtiff", "the decoder that allocates whole tiles"
    assert image.convert("RGB").getpixel((image.width - 1, image.height - 1)) == (200, 60, 40)


def test_tile_bomb_is_refused_before_a_decoder_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A few hundred bytes declaring one tile of 25984x25984 pixels: libtiff allocates and fills it (1.9 GB)."""
    data = tiled_tiff((64, 48), (25984, 25984), tiles=STUB_TILE)
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("a decoder ran"))
    with pytest.raises(Rejected) as excinfo:
        render(data, PRESETS["default"], workers=1)
    assert excinfo.value.reason == "too_complex", excinfo.value.detail


# --- text that starts like a BMP or GIF -----------------------------------------------------------------------

TEXT_WITH_A_SIGNATURE: dict[str, bytes] = {
    "csv-bmi": b"BMI,height_cm,weight_kg\n22.1,180,72\n" * 3,
    "invoice-bmw": b"BMW service invoice 2024-03-01\nTotal: 420 EUR\n",
    "markdown-gif89a": b"GIF89a is the 1989 revision of the GIF format.\n" * 2,
    "comma-where-an-image-starts": b"GIF89a images, of all kinds, are welcome here.\n",
    "bang-where-an-extension-starts": b"GIF89a rocks!! Animated, even.\n",
}


@pytest.mark.parametrize("data", TEXT_WITH_A_SIGNATURE.values(), ids=TEXT_WITH_A_SIGNATURE.keys())
def test_text_that_starts_like_a_bmp_or_gif_is_no_container(data: bytes) -> None:
    assert sniff.accepted_container(data) is None


def gif_without_colour_table(first_block: bytes) -> bytes:
    """A GIF89a screen descriptor without a global colour table, then `first_block`."""
    return b"GIF89a" + struct.pack("<HHBBB", 8, 8, 0, 0, 0) + first_block


def bmp_with_header_size(size: int) -> bytes:
    bmp = saved("BMP")
    return bmp[:14] + struct.pack("<I", size) + bmp[18:]


STILL_NAMED: dict[str, tuple[Callable[[], bytes], str]] = {
    "bmp": (lambda: saved("BMP"), "BMP"),
    "bmp-rle8": (rle8_bmp, "BMP"),
    "bmp-7-bit": (lambda: bmp_file((8, 8), 7, bytes(64)), "BMP"),  # a layout Pillow refuses: named in its words
    "bmp-os2-core-header": (lambda: bmp_with_header_size(12), "BMP"),
    "bmp-damaged-header-size": (lambda: bmp_with_header_size(0x41414141), "BMP"),  # the reserved fields still zero
    "bmp-cut-in-its-header": (lambda: saved("BMP")[:20], "BMP"),
    "gif": (lambda: saved("GIF"), "GIF"),
    "gif-animated": (lambda: saved("GIF", 3), "GIF"),  # an application extension first
    "gif-comment-first": (lambda: saved("GIF", comment=b"hello"), "GIF"),
    "gif-without-colour-table": (
        lambda: gif_without_colour_table(b",\0\0\0\0\x08\0\x08\0\0\x02\x02\x44\x01\0;"),
        "GIF",
    ),
    "gif-cut-in-its-colour-table": (lambda: saved("GIF")[:20], "GIF"),
    "gif-signature-only": (lambda: b"GIF87a", "GIF"),
}


@pytest.mark.parametrize(("make", "name"), STILL_NAMED.values(), ids=STILL_NAMED.keys())
def test_real_and_damaged_bmp_and_gif_are_still_named(make: Callable[[], bytes], name: str) -> None:
    assert sniff.accepted_container(make()) == name


def test_structure_checks_walk_every_file_the_decoder_opens() -> None:
    """Pillow opens a GIF whose first extension is of no known kind: its later ones must still be counted."""
    unknown_first = gif_with_extensions(sniff.HEADER_PART_LIMIT, before=b"\x21\x42\x01x\x00")
    assert sniff.accepted_container(unknown_first) is None
    Image.open(io.BytesIO(unknown_first)).load()
    assert sniff.excess_structure(unknown_first) == (
        f"GIF has more than {sniff.HEADER_PART_LIMIT} extension blocks before its first image"
    )
