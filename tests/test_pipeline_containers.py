"""Container structure whose cost no pixel limit bounds, and parts Pillow's parsers fail on that browsers skip.

Every input is built in memory: HEIF files from the parts of the shared HEIC sample (its HEVC bitstream, shared by
every tile), JPEG, PNG and WebP files from Pillow's own output with bytes spliced in.
"""

from __future__ import annotations

import functools
import io
import re
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
from PIL import Image, ImageChops, ImageCms, PngImagePlugin

from handler import pipeline, sniff
from handler.pipeline import Rejected, render
from handler.variants import PRESETS, VariantSpec
from tests.conftest import HOSTILE_DIR
from tests.test_colour_profiles import SRGB_D50
from tests.test_pipeline_generated import bmp_file, icc_profile

PNG_FULL = [VariantSpec("png", "png")]


def rendered(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(render(data, PNG_FULL, workers=1)[0].data)).convert("RGB")


def refused(data: bytes, monkeypatch: pytest.MonkeyPatch) -> Rejected:
    """The rejection of `data`, which must come before any decoder opens it."""
    monkeypatch.setattr(pipeline.Image, "open", lambda *_, **__: pytest.fail("a decoder opened the upload"))
    with pytest.raises(Rejected) as excinfo:
        render(data, PRESETS["default"], workers=1)
    return excinfo.value


# --- HEIF: derived images (grids, overlays) whose inputs cost more than their output --------------------------------


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def full_box(kind: bytes, version: int, flags: int, payload: bytes) -> bytes:
    return box(kind, bytes([version]) + flags.to_bytes(3, "big") + payload)


def ispe(width: int, height: int) -> bytes:
    return full_box(b"ispe", 0, 0, struct.pack(">II", width, height))


def child(data: bytes, kind: bytes, start: int, end: int) -> tuple[int, int]:
    """(start, end) of the first `kind` box in data[start:end]."""
    while start < end:
        size, found = struct.unpack_from(">I4s", data, start)
        if found == kind:
            return start, start + size
        start += size
    raise AssertionError(f"no {kind!r} box")


@dataclass(frozen=True)
class HeicParts:
    """What a new HEIF is built from: the sample's ftyp, hdlr, its primary image's hvcC and ispe, and its bitstream."""

    ftyp: bytes
    hdlr: bytes
    hvcc: bytes
    ispe: bytes
    bitstream: bytes


@functools.cache
def heic_parts() -> HeicParts:
    data = (HOSTILE_DIR / "govips_heic-24bit.heic").read_bytes()
    meta = child(data, b"meta", 0, len(data))
    iprp = child(data, b"iprp", meta[0] + 12, meta[1])
    ipco = child(data, b"ipco", iprp[0] + 8, iprp[1])
    hvcc, extent = child(data, b"hvcC", ipco[0] + 8, ipco[1]), child(data, b"ispe", ipco[0] + 8, ipco[1])
    iloc = child(data, b"iloc", meta[0] + 12, meta[1])[0]
    assert data[iloc + 8] == 0 and data[iloc + 12 : iloc + 14] == b"\x44\x40", "iloc v0, 4-byte offsets and lengths"
    base, extents, offset, length = struct.unpack_from(">IHII", data, iloc + 20)  # the first item's, the primary's
    assert extents == 1
    return HeicParts(
        data[: child(data, b"ftyp", 0, len(data))[1]],
        data[slice(*child(data, b"hdlr", meta[0] + 12, meta[1]))],
        data[slice(*hvcc)],
        data[slice(*extent)],
        data[base + offset : base + offset + length],
    )


SAMPLE_SIZE = (1440, 960)
"""The size of the sample's primary image, which every decodable tile here is."""


@dataclass(frozen=True)
class Item:
    kind: bytes
    properties: tuple[bytes, ...]
    data: bytes


def heif(items: Sequence[Item], inputs: Sequence[int] = ()) -> bytes:
    """A HEIF of `items` (IDs from 1; item 1 is primary, derived from the items `inputs` names), data in `mdat`.

    Properties and item data are stored once however many items share them; hvcC is associated as essential.
    """
    parts = heic_parts()
    properties = list(dict.fromkeys(p for item in items for p in item.properties))
    blobs = list(dict.fromkeys(item.data for item in items))
    entries = b"".join(
        struct.pack(">HB", number, len(item.properties))
        + bytes((0x80 if p.startswith(b"hvcC", 4) else 0) | properties.index(p) + 1 for p in item.properties)
        for number, item in enumerate(items, 1)
    )
    ipma = full_box(b"ipma", 0, 0, struct.pack(">I", len(items)) + entries)
    iprp = box(b"iprp", box(b"ipco", b"".join(properties)) + ipma)
    infes = b"".join(
        full_box(b"infe", 2, 0, struct.pack(">HH", number, 0) + item.kind + b"\0")
        for number, item in enumerate(items, 1)
    )
    iinf = full_box(b"iinf", 0, 0, struct.pack(">H", len(items)) + infes)
    dimg = box(b"dimg", struct.pack(">HH", 1, len(inputs)) + b"".join(struct.pack(">H", i) for i in inputs))
    iref = full_box(b"iref", 0, 0, dimg) if inputs else b""
    pitm = full_box(b"pitm", 0, 0, struct.pack(">H", 1))

    def meta(mdat_at: int) -> bytes:
        starts = [mdat_at + 8 + sum(map(len, blobs[:i])) for i in range(len(blobs))]
        locations = b"".join(
            struct.pack(">HHHII", number, 0, 1, starts[blobs.index(item.data)], len(item.data))
            for number, item in enumerate(items, 1)
        )
        iloc = full_box(b"iloc", 0, 0, b"\x44\x00" + struct.pack(">H", len(items)) + locations)
        return full_box(b"meta", 0, 0, parts.hdlr + pitm + iloc + iinf + iref + iprp)

    mdat_at = len(parts.ftyp) + len(meta(0))
    return parts.ftyp + meta(mdat_at) + box(b"mdat", b"".join(blobs))


def derived(
    kind: bytes, descriptor: bytes, count: int, output: tuple[int, int], tile: tuple[int, int] | None = None
) -> bytes:
    """Item 1 a `kind` derived image of `output` size from `count` HEVC items of the sample's bitstream (decodable
    when `tile` is None, declaring `tile` otherwise)."""
    parts = heic_parts()
    tile_properties = (parts.hvcc, parts.ispe if tile is None else ispe(*tile))
    tiles = [Item(b"hvc1", tile_properties, parts.bitstream)] * count
    return heif([Item(kind, (ispe(*output),), descriptor), *tiles], inputs=range(2, 2 + count))


def grid(rows: int, columns: int, output: tuple[int, int], tile: tuple[int, int] | None = None) -> bytes:
    descriptor = bytes([0, 0, rows - 1, columns - 1]) + struct.pack(">HH", *output)
    return derived(b"grid", descriptor, rows * columns, output, tile)


def overlay(count: int, output: tuple[int, int]) -> bytes:
    """An `iovl` of `count` inputs, all at the canvas's origin."""
    descriptor = bytes(2) + bytes(8) + struct.pack(">HH", *output) + struct.pack(">hh", 0, 0) * count
    return derived(b"iovl", descriptor, count, output)


def test_a_grid_whose_tiles_overhang_by_less_than_a_tile_renders() -> None:
    """MIAF: tiles may reach past the output on the right and at the bottom, by less than one tile."""
    image = rendered(grid(2, 2, (2800, 1900)))
    assert image.size == (2800, 1900)


WITHIN_DERIVED: dict[str, bytes] = {
    "iphone-12mp-512-tiles": grid(6, 8, (4032, 3024), tile=(512, 512)),
    "200mp-512-tiles": grid(24, 32, (16320, 12240), tile=(512, 512)),
    "strip-narrower-than-two-tiles": grid(1, 2, (1000, 100), tile=(512, 512)),
    "one-input-larger-than-its-output": grid(1, 1, (64, 64), tile=(16384, 16384)),
    "inputs-at-the-floor": grid(1, 2, (64, 64), tile=(2048 - 64, 4096 - 64)),
    "inputs-at-the-ratio": grid(2, 2, (4000, 4000), tile=(4000 - 64, 4000 - 64)),
}


@pytest.mark.parametrize("data", WITHIN_DERIVED.values(), ids=WITHIN_DERIVED.keys())
def test_derived_images_encoders_write_are_accepted(data: bytes) -> None:
    assert sniff.excess_structure(data) is None


PAST_DERIVED: dict[str, Callable[[], bytes]] = {
    "12x12-tiles-for-64x64": lambda: grid(12, 12, (64, 64)),  # 0.08 s a tile: 144 tiles took 12.6 s, 900 44 s
    "overlay-of-36-frames": lambda: overlay(36, (64, 64)),
    "inputs-past-the-floor": lambda: grid(1, 2, (64, 64), tile=(2048 - 64, 4096 - 63)),
    "inputs-past-the-ratio": lambda: grid(2, 2, (4000, 4000), tile=(4000 - 64, 4000 - 63)),
}


@pytest.mark.parametrize("make", PAST_DERIVED.values(), ids=PAST_DERIVED.keys())
def test_derived_images_decoding_more_than_they_show_are_refused_before_decoding(
    make: Callable[[], bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    rejection = refused(make(), monkeypatch)
    assert rejection.reason == "too_complex"
    assert re.match(r"HEIF has a grid or overlay of \d+x\d+ pixels whose \d+ input images have", rejection.detail)


def test_references_count_by_the_items_they_name() -> None:
    """One `dimg` box naming 10,001 items is as many references as 10,001 boxes."""
    tile = Item(b"hvc1", (heic_parts().hvcc, ispe(1, 1)), heic_parts().bitstream)
    at_limit = heif([Item(b"grid", (ispe(16384, 16384),), b""), tile], inputs=[2] * sniff.ISO_BMFF_PART_LIMIT)
    past = heif([Item(b"grid", (ispe(16384, 16384),), b""), tile], inputs=[2] * (sniff.ISO_BMFF_PART_LIMIT + 1))
    assert sniff.excess_structure(at_limit) is None
    assert sniff.excess_structure(past) == (
        f"HEIF has more than {sniff.ISO_BMFF_PART_LIMIT} item references (phone photos have about 100 items)"
    )


def heic_with_clean_aperture(width: int, height: int) -> bytes:
    """The sample's primary image (1440x960) cropped by a centred `clap` to `width` x `height`."""
    clap = box(b"clap", struct.pack(">8i", width, 1, height, 1, 0, 1, 0, 1))
    parts = heic_parts()
    return heif([Item(b"hvc1", (parts.hvcc, parts.ispe, clap), parts.bitstream)])


def test_a_clean_aperture_crop_within_libheifs_margin_renders() -> None:
    assert rendered(heic_with_clean_aperture(1400, 900)).size == (1400, 900)


@pytest.mark.xfail(
    strict=True,
    raises=Rejected,
    reason="libheif 1.23 (pi-heif 1.4.0) bounds the coded frame by the cropped size plus 64 pixels a side "
    "(strukturag/libheif#1856, fixed by #1895); pi-heif can only disable every security limit at once",
)
def test_a_clean_aperture_crop_past_libheifs_margin_renders() -> None:
    assert rendered(heic_with_clean_aperture(720, 480)).size == (720, 480)


# --- JPEG: padding between segments ---------------------------------------------------------------------------------


def saved(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


PICTURE = Image.new("RGB", (64, 48), (200, 120, 40))
JPEG = saved(PICTURE, "JPEG")
PROGRESSIVE = saved(PICTURE, "JPEG", progressive=True)
AFTER_APP0 = 4 + int.from_bytes(JPEG[4:6], "big")
LIMIT = sniff.JPEG_PADDING_LIMIT


def before_second_scan(jpeg: bytes, padding: bytes) -> bytes:
    """`padding` before the DHT (or SOS) that follows a progressive JPEG's first scan."""
    after = jpeg.index(b"\xff\xda") + 2
    at = min(jpeg.find(marker, after) % len(jpeg) for marker in (b"\xff\xc4", b"\xff\xda"))  # -1: not found
    return jpeg[:at] + padding + jpeg[at:]


def padded(padding: Callable[[int], bytes]) -> Callable[[int], list[bytes]]:
    """JPEGs with `padding(n)` after the SOI, after the APP0, between the first two scans and before the EOI."""
    return lambda n: [
        JPEG[:2] + padding(n) + JPEG[2:],
        JPEG[:AFTER_APP0] + padding(n) + JPEG[AFTER_APP0:],
        before_second_scan(PROGRESSIVE, padding(n)),
        JPEG[:-2] + padding(n) + JPEG[-2:],
    ]


PADDINGS: dict[str, tuple[Callable[[int], list[bytes]], int, int]] = {  # JPEGs(n), accepted n, refused n
    "fill-bytes": (padded(lambda n: b"\xff" * n), LIMIT, LIMIT + 2),  # after the first scan, counted in pairs
    "restart-markers": (lambda n: padded(lambda n: b"\xff\xd0" * (n // 2))(n)[:2], LIMIT, LIMIT + 2),
    "stuffed-zeros": (lambda n: padded(lambda n: b"\xff\x00" * (n // 2))(n)[:2], LIMIT, LIMIT + 2),
    "junk": (lambda n: padded(bytes)(n)[1:2], LIMIT, LIMIT + 1),
    "after-an-early-eoi": (lambda n: [JPEG[:AFTER_APP0] + b"\xff\xd9" + bytes(n)], LIMIT, LIMIT + 1),
}


@pytest.mark.parametrize(("make", "accepted", "past"), PADDINGS.values(), ids=PADDINGS.keys())
def test_jpeg_padding_is_bounded(make: Callable[[int], list[bytes]], accepted: int, past: int) -> None:
    """Pillow's header parser steps through padding in Python (0.4 s a megabyte) and libjpeg reads a run of fill
    bytes again from its start with each 64 KiB it is fed: 50 MiB of fill bytes took 75 s, 49 MiB before the EOI 22 s.
    """
    for data in make(accepted):
        assert sniff.excess_structure(data) is None
    for data in make(past):
        assert sniff.excess_structure(data) == (
            f"JPEG has more than {LIMIT} bytes of fill bytes, markers without a length or junk between its segments "
            "(encoders write none or a few)"
        )


@pytest.mark.parametrize("data", padded(lambda n: b"\xff" * n)(LIMIT), ids=["soi", "app0", "scans", "eoi"])
def test_jpeg_padding_up_to_the_limit_renders(data: bytes) -> None:
    assert rendered(data).size == PICTURE.size


def test_jpeg_padding_past_the_limit_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    assert refused(JPEG[:2] + b"\xff" * 10 * 2**20 + JPEG[2:], monkeypatch).reason == "too_complex"


class CountingPattern:
    """A compiled pattern that counts its searches."""

    def __init__(self, pattern: re.Pattern[bytes]) -> None:
        self.pattern, self.searches = pattern, 0

    def search(self, data: bytes, pos: int = 0, end: int = 2**63 - 1) -> re.Match[bytes] | None:
        self.searches += 1
        return self.pattern.search(data, pos, end)


@pytest.mark.parametrize("padding", [b"\xff", b"\xff\xd0", b"\xff\x00", b"\x00"], ids=["fill", "rst", "ff00", "junk"])
def test_the_segment_walk_passes_over_padding_in_one_step(padding: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """One search in C, not a Python step a byte: 10 MiB of fill bytes took the walks 4-5 s, now 0.3 s."""
    counting = CountingPattern(sniff._SEGMENT_MARKER)
    monkeypatch.setattr(sniff, "_SEGMENT_MARKER", counting)
    data = JPEG[:AFTER_APP0] + padding * (2**20 // len(padding)) + JPEG[AFTER_APP0:]
    segments = len(list(sniff._jpeg_segments(JPEG)))
    counting.searches = 0
    assert len(list(sniff._jpeg_segments(data))) == segments
    assert counting.searches == segments


# --- WebP: chunks ---------------------------------------------------------------------------------------------------

EXIF = b"Exif\0\0MM\0*\0\0\0\x08\0\0\0\0\0\0"


def webp_with_chunks(extra: int) -> bytes:
    """An extended (VP8X) WebP, whose VP8X, VP8 and EXIF chunks are followed by `extra` empty unknown ones."""
    body = saved(PICTURE, "WEBP", exif=EXIF)[12:] + b"ABCD\0\0\0\0" * extra
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def test_webp_chunks_are_bounded() -> None:
    """libwebp's demuxer keeps a record of each: 6 million empty chunks (46 MiB) took 342 MB."""
    assert sniff.excess_structure(webp_with_chunks(sniff.WEBP_CHUNK_LIMIT - 3)) is None
    assert sniff.excess_structure(webp_with_chunks(sniff.WEBP_CHUNK_LIMIT - 2)) == (
        f"WebP has more than {sniff.WEBP_CHUNK_LIMIT} chunks (an animation has one a frame, a still image a few)"
    )


def test_webp_with_unknown_chunks_and_animations_render() -> None:
    assert rendered(webp_with_chunks(1000)).size == PICTURE.size
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("red", "green", "blue")]
    animation = saved(frames[0], "WEBP", save_all=True, append_images=frames[1:])
    assert sniff.excess_structure(animation) is None


# --- JPEG: APP segments Pillow cannot parse and libjpeg skips -------------------------------------------------------


def app_segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + (len(payload) + 2).to_bytes(2, "big") + payload


def with_segment(segment: bytes, jpeg: bytes = JPEG) -> bytes:
    """`jpeg` with `segment` in place of its APP0 (Pillow writes a JFIF one)."""
    assert jpeg[2:4] == b"\xff\xe0"
    return jpeg[:2] + segment + jpeg[4 + int.from_bytes(jpeg[4:6], "big") :]


JFIF = b"JFIF\0\1\2\0\0\1\0\1\0\0"
ADOBE = b"Adobe\0\x64\0\0\0\0\1"
PHOTOSHOP = b"Photoshop 3.0\0"
RESOLUTION = b"8BIM\x03\xed\0\0" + struct.pack(">I", 16) + bytes(16)
UNREADABLE_SEGMENTS: dict[str, bytes] = {
    **{f"jfif-{n}-bytes": app_segment(0xE0, JFIF[:n]) for n in (4, 5, 6, 7, 13)},
    **{f"adobe-{n}-bytes": app_segment(0xEE, ADOBE[:n]) for n in (5, 6, 7, 11)},
    "photoshop-cut-after-a-resource-id": app_segment(0xED, PHOTOSHOP + b"8BIM\x04\x04"),
    "photoshop-cut-after-a-later-resource-id": app_segment(0xED, PHOTOSHOP + RESOLUTION + b"8BIM\x04\x04"),
}


@pytest.fixture(scope="module")
def plain_jpeg() -> Image.Image:
    return rendered(JPEG)


@pytest.mark.parametrize("segment", UNREADABLE_SEGMENTS.values(), ids=UNREADABLE_SEGMENTS.keys())
def test_app_segments_libjpeg_skips_are_skipped(segment: bytes, plain_jpeg: Image.Image) -> None:
    data = with_segment(segment)
    readable = sniff.readable_by_pillow(data)
    assert len(readable) == len(data) and readable != data
    assert ImageChops.difference(rendered(data), plain_jpeg).getbbox() is None


READABLE_SEGMENTS: dict[str, bytes] = {
    "jfif": app_segment(0xE0, JFIF),
    "adobe-with-its-transform": app_segment(0xEE, ADOBE),
    "photoshop": app_segment(0xED, PHOTOSHOP + RESOLUTION + b"8BIM\x04\x04\0\0" + struct.pack(">I", 2) + b"ab"),
    "photoshop-cut-in-a-resource-id": app_segment(0xED, PHOTOSHOP + b"8BIM\x04"),  # a struct.error Pillow catches
    "photoshop-short-resolution": app_segment(0xED, PHOTOSHOP + b"8BIM\x03\xed\0\0\0\0\0\x02ab8BIM\x04\x04"),
}


@pytest.mark.parametrize("segment", READABLE_SEGMENTS.values(), ids=READABLE_SEGMENTS.keys())
def test_app_segments_pillow_reads_are_left_alone(segment: bytes) -> None:
    data = with_segment(segment)
    assert sniff.readable_by_pillow(data) is data
    assert rendered(data).size == PICTURE.size


def test_a_cmyk_jpeg_keeps_its_adobe_transform() -> None:
    cmyk = saved(Image.new("CMYK", (8, 8), (0, 200, 200, 0)), "JPEG")
    assert b"Adobe" in cmyk
    assert sniff.readable_by_pillow(cmyk) is cmyk


def test_an_mpo_with_a_short_jfif_segment_is_still_an_mpo() -> None:
    second = PICTURE.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    mpo = saved(PICTURE, "MPO", save_all=True, append_images=[second])
    data = mpo[:2] + app_segment(0xE0, b"JFIF") + mpo[2:]  # the MP index counts from its own segment: still right
    assert Image.open(io.BytesIO(sniff.readable_by_pillow(data))).format == "MPO"
    assert rendered(data).size == PICTURE.size


# --- PNG: ancillary chunks Pillow refuses and libpng ignores --------------------------------------------------------


def png_chunk(kind: bytes, payload: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + payload) if crc is None else crc
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png(before: Sequence[bytes] = (), after: Sequence[bytes] = (), colour_type: int = 2) -> bytes:
    """A 2x2 PNG of `PICTURE`'s colour, RGB or grey, with chunks `before` and `after` its image data."""
    samples = bytes(PICTURE.getpixel((0, 0))) if colour_type == 2 else bytes([120])  # type: ignore[arg-type]
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, colour_type, 0, 0, 0))
    idat = png_chunk(b"IDAT", zlib.compress((b"\0" + samples * 2) * 2))
    return b"\x89PNG\r\n\x1a\n" + ihdr + b"".join(before) + idat + b"".join(after) + png_chunk(b"IEND", b"")


def deflated_text(size: int) -> bytes:
    return zlib.compress(b"3c3f78706163" * (size // 12))


SRGB_PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
BIG = deflated_text(1_200_000)  # ImageMagick's hex "Raw profile type xmp" of a photo with large metadata
GAMMA_SRGB = png_chunk(b"gAMA", struct.pack(">I", 45455))  # what sRGB is close to: the picture does not change
GAMMA_1 = png_chunk(b"gAMA", struct.pack(">I", 100_000))
P3_CHRM = png_chunk(b"cHRM", struct.pack(">8I", 31270, 32900, 68000, 32000, 26500, 69000, 15000, 6000))
LINEAR_ICCP = png_chunk(b"iCCP", b"linear\0\0" + zlib.compress(icc_profile(b"RGB ", "linear sRGB", 1.0, SRGB_D50)))
IGNORED_CHUNKS: dict[str, tuple[Sequence[bytes], Sequence[bytes]]] = {
    "ztxt-inflating-past-1-mb": ([png_chunk(b"zTXt", b"Raw profile type xmp\0\0" + BIG)], []),
    "ztxt-inflating-past-1-mb-after-the-image-data": ([], [png_chunk(b"zTXt", b"Raw profile type xmp\0\0" + BIG)]),
    "ztxt-compression-method-1": ([png_chunk(b"zTXt", b"Comment\0\1" + deflated_text(12))], []),
    "itxt-inflating-past-1-mb": ([png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\1\0\0\0" + BIG)], []),
    "iccp-inflating-past-1-mb": ([png_chunk(b"iCCP", b"icc\0\0" + zlib.compress(bytes(1_100_000)))], []),
    "iccp-compression-method-1": ([png_chunk(b"iCCP", b"icc\0\1" + zlib.compress(SRGB_PROFILE))], []),
    "iccp-without-a-name": ([png_chunk(b"iCCP", b"\0\0" + zlib.compress(SRGB_PROFILE))], []),
    "iccp-empty": ([png_chunk(b"iCCP", b"")], []),
    "trns-of-2-bytes-on-rgb": ([png_chunk(b"tRNS", b"\0\0")], []),
    "gama-of-2-bytes": ([png_chunk(b"gAMA", b"\0\0")], []),
    "gama-of-2-bytes-after-the-image-data": ([], [png_chunk(b"gAMA", b"\0\0")]),
    "gama-of-5-bytes": ([png_chunk(b"gAMA", struct.pack(">I", 100_000) + b"\0")], []),  # Pillow would apply it
    "chrm-of-10-bytes": ([png_chunk(b"cHRM", bytes(10))], []),
    "srgb-empty": ([png_chunk(b"sRGB", b"")], []),
    "phys-of-1-byte": ([png_chunk(b"pHYs", b"\0")], []),
    "text-with-a-bad-crc": ([png_chunk(b"tEXt", b"Comment\0hello", crc=0)], []),
    # Colour chunks out of place or repeated: Pillow read them after the image data too, the last one winning.
    "gama-after-the-image-data": ([], [GAMMA_1]),
    "gama-after-plte": ([png_chunk(b"PLTE", bytes(6)), GAMMA_1], []),
    "iccp-after-the-image-data": ([], [LINEAR_ICCP]),
    "chrm-after-the-image-data": ([GAMMA_SRGB], [P3_CHRM]),
    "a-second-gama": ([GAMMA_SRGB, GAMMA_1], []),
    "a-second-iccp": ([png_chunk(b"iCCP", b"sRGB\0\0" + zlib.compress(SRGB_PROFILE)), LINEAR_ICCP], []),
}


@pytest.fixture(scope="module")
def plain_png() -> Image.Image:
    return rendered(png())


@pytest.mark.parametrize(("before", "after"), IGNORED_CHUNKS.values(), ids=IGNORED_CHUNKS.keys())
def test_ancillary_chunks_libpng_ignores_are_ignored(
    before: Sequence[bytes], after: Sequence[bytes], plain_png: Image.Image
) -> None:
    """libpng calls these benign errors and drops the chunk: browsers show the image as if it were not there.
    Each would change the picture, or make Pillow refuse it, if read."""
    data = png(before, after)
    readable = sniff.readable_by_pillow(data)
    assert len(readable) == len(data) and readable != data
    assert sniff.readable_by_pillow(readable) is readable, "renamed chunks carry a good CRC"
    assert ImageChops.difference(rendered(data), plain_png).getbbox() is None


def test_a_short_trns_on_grey_is_ignored() -> None:
    data = png([png_chunk(b"tRNS", b"\0")], colour_type=0)
    assert rendered(data).getpixel((0, 0)) == (120, 120, 120)


KEPT_CHUNKS: dict[str, bytes] = {
    "gama": png([png_chunk(b"gAMA", struct.pack(">I", 100_000))]),
    "iccp": png([png_chunk(b"iCCP", b"sRGB\0\0" + zlib.compress(SRGB_PROFILE))]),
    "ztxt": png([png_chunk(b"zTXt", b"Comment\0\0" + deflated_text(1000))]),
    "itxt": png([png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0<x/>")]),
    "palette-trns": saved(Image.new("P", (2, 2), 1), "PNG", transparency=1),
}


@pytest.mark.parametrize("data", KEPT_CHUNKS.values(), ids=KEPT_CHUNKS.keys())
def test_ancillary_chunks_pillow_reads_are_left_alone(data: bytes) -> None:
    assert sniff.readable_by_pillow(data) is data


def test_a_gamma_chunk_of_the_right_size_still_applies(plain_png: Image.Image) -> None:
    assert ImageChops.difference(rendered(KEPT_CHUNKS["gama"]), plain_png).getbbox() is not None


@pytest.mark.parametrize(
    "data",
    [
        png()[:8] + png_chunk(b"IHDR", bytes(12)) + png()[33:],
        png()[:29] + b"\0\0\0\0" + png()[33:],  # IHDR's CRC
    ],
    ids=["short-ihdr", "ihdr-crc"],
)
def test_critical_chunk_damage_is_still_corrupt(data: bytes) -> None:
    with pytest.raises(Rejected) as excinfo:
        render(data, PNG_FULL, workers=1)
    assert excinfo.value.reason == "corrupt"


def test_text_past_pillows_memory_limit_is_skipped_with_bounded_work(
    plain_png: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pillow refuses a PNG whose text inflates past `MAX_TEXT_MEMORY` (64 MiB) in all; the chunks past it are skipped
    instead, and once that much was inflated here the rest are skipped uninflated."""
    monkeypatch.setattr(PngImagePlugin, "MAX_TEXT_MEMORY", 3 * 2**20)
    data = png([png_chunk(b"zTXt", b"Comment\0\0" + deflated_text(1_000_000))] * 20)
    inflations = []
    decompressobj = zlib.decompressobj
    monkeypatch.setattr(sniff.zlib, "decompressobj", lambda: inflations.append(1) or decompressobj())
    readable = sniff.readable_by_pillow(data)
    monkeypatch.setattr(sniff.zlib, "decompressobj", decompressobj)
    assert len(inflations) == 4, "three fit in 3 MiB, the fourth does not, the rest are not inflated"
    assert readable.count(b"ztXt") == 17
    assert ImageChops.difference(rendered(data), plain_png).getbbox() is None


def one_row_strips_tiff(height: int) -> bytes:
    """A 1-pixel-wide grey TIFF of `height` rows, one row a strip, every strip's offset and count stored as SHORT."""

    def entry(tag: int, kind: int, count: int, value: bytes) -> bytes:
        return struct.pack("<HHI", tag, kind, count) + value

    pixels_at = 8 + 2 + 10 * 12 + 4
    arrays_at = pixels_at + 2
    entries = [
        entry(256, 3, 1, struct.pack("<HH", 1, 0)),
        entry(257, 4, 1, struct.pack("<I", height)),
        entry(258, 3, 1, struct.pack("<HH", 8, 0)),
        entry(259, 3, 1, struct.pack("<HH", 1, 0)),
        entry(262, 3, 1, struct.pack("<HH", 1, 0)),
        entry(273, 3, height, struct.pack("<I", arrays_at)),
        entry(277, 3, 1, struct.pack("<HH", 1, 0)),
        entry(278, 4, 1, struct.pack("<I", 1)),
        entry(279, 3, height, struct.pack("<I", arrays_at + 2 * height)),
        entry(284, 3, 1, struct.pack("<HH", 1, 0)),
    ]
    header = b"II*\0" + struct.pack("<IH", 8, len(entries)) + b"".join(entries) + b"\0" * 4
    return header + b"\x80\0" + struct.pack("<H", pixels_at) * height + struct.pack("<H", 1) * height


def test_a_tiff_of_more_strips_than_the_limit_is_too_complex() -> None:
    """Pillow builds and decodes a Python tile per strip: 3 million one-row strips (12 MB) took 24 s and 1 GB."""
    with pytest.raises(Rejected) as refused:
        render(one_row_strips_tiff(sniff.TIFF_PART_LIMIT + 1), [VariantSpec("t", "png", width=8, height=8)])
    assert refused.value.reason == "too_complex"
    assert f"{sniff.TIFF_PART_LIMIT + 1} strips or tiles" in refused.value.detail


def test_a_tall_tiff_of_one_row_a_strip_under_the_limit_renders() -> None:
    [variant] = render(one_row_strips_tiff(60_000), [VariantSpec("t", "png", width=8, height=8)])
    assert (variant.width, variant.height) == (1, 8)


# --- BMP: RLE codes -------------------------------------------------------------------------------------------------

RLE_PALETTE = [(i, i, 255 - i) for i in range(16)]


def rle_bmp(codes: bytes, bits: int = 8, size: tuple[int, int] = (16, 2)) -> bytes:
    return bmp_file(size, bits, codes, compression=1 if bits == 8 else 2, palette=RLE_PALETTE)


def run(count: int, index: int) -> bytes:
    return bytes((count, index))


END_OF_ROW = b"\0\0"


def delta(right: int, up: int) -> bytes:
    return bytes((0, 2, right, up))


def literal(pixels: bytes) -> bytes:
    """Absolute mode: the pixels as they are, padded to a 16-bit word."""
    return bytes((0, len(pixels))) + pixels + b"\0" * (len(pixels) % 2)


def literal4(indices: Sequence[int]) -> bytes:
    nibbles = [*indices, 0] if len(indices) % 2 else list(indices)
    packed = bytes((a << 4) | b for a, b in zip(nibbles[::2], nibbles[1::2], strict=True))
    return bytes((0, len(indices))) + packed + b"\0" * (len(packed) % 2)


# Each drawing ends as the frame fills: its bottom row, stored first, in colour 5 at its left, its top row in 7.
# Between them, codes that draw nothing: runs and absolute runs past the row's end, deltas of nothing. (An end of
# line always moves down a row, as in Chromium, so a flood of them ends the frame.)
FLOOD = 300
RLE_DRAWINGS = {
    "runs past the row's end": (8, run(16, 5) + run(1, 5) * FLOOD + END_OF_ROW + run(16, 7), FLOOD + 3),
    "absolute runs past the row's end": (
        8,
        run(16, 5) + literal(b"\5\5\5") * FLOOD + END_OF_ROW + run(16, 7),
        FLOOD + 3,
    ),
    "empty deltas": (8, literal(b"\5\5\5") + delta(0, 0) * FLOOD + run(13, 5) + END_OF_ROW + run(16, 7), FLOOD + 4),
    "RLE4": (4, literal4([5, 5, 5]) + run(13, 0x55) + run(2, 0x55) * FLOOD + END_OF_ROW + run(16, 0x77), FLOOD + 4),
}


@pytest.mark.parametrize(("bits", "codes", "count"), RLE_DRAWINGS.values(), ids=RLE_DRAWINGS.keys())
def test_bmp_rle_codes_are_counted_up_to_where_the_frame_fills(
    bits: int, codes: bytes, count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BMP RLE is decoded in Python, a code at a time, whether or not it draws: 50 MiB of runs past a row's end
    took Pillow 15-35 s. The limit counts every code `handler.bmp` reads, and none after the frame is full."""
    data = rle_bmp(codes + run(1, 5) * 3 * FLOOD, bits)  # what follows the filled frame is never read
    monkeypatch.setattr(sniff, "BMP_RLE_CODE_LIMIT", count)
    image = rendered(data)
    assert (image.getpixel((0, 0)), image.getpixel((0, 1))) == ((7, 7, 248), (5, 5, 250))
    monkeypatch.setattr(sniff, "BMP_RLE_CODE_LIMIT", count - 1)
    rejection = refused(data, monkeypatch)
    assert rejection.reason == "too_complex"
    assert rejection.detail == f"BMP RLE{bits} pixel data has more than {count - 1} codes"


def test_bmp_rle_past_the_default_code_limit_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    flood = run(1, 5) * (sniff.BMP_RLE_CODE_LIMIT + 1)
    assert refused(rle_bmp(run(16, 5) + flood + END_OF_ROW + run(16, 7)), monkeypatch).reason == "too_complex"
