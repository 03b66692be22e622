"""Magic-number sniffing: which plugin a container needs, how a refusal is named, and whether a container is whole."""

from __future__ import annotations

import csv
import functools
import io
import logging
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from PIL import Image

from handler import sniff
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


def gif_with_extensions(count: int, sub_blocks: int = 1) -> bytes:
    """A GIF with `count` comment extensions of `sub_blocks` one-byte sub-blocks each before its image."""
    data = saved("GIF")
    image = data.index(b"\x2c", 13)  # the image descriptor, after header, screen descriptor and palette
    return data[:image] + (b"\x21\xfe" + b"\x01x" * sub_blocks + b"\x00") * count + data[image:]


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
