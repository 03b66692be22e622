"""Uploads Pillow decodes otherwise than a browser shows them, built in memory: each must render as the browser
shows it (or be refused with its classified reason), never come out silently wrong.

MinIsWhite deep-grey TIFFs, uncompressed YCbCr TIFFs (subsampled chroma, studio range), JPEG ICC chunks that
are stubs or disagree, and GIFs whose first image leaves part of the screen uncovered.
"""

from __future__ import annotations

import io
import logging
import random
import struct
import zlib
from collections.abc import Callable, Sequence

import pytest
from PIL import Image, ImageChops

from handler import sniff
from handler.pipeline import Rejected, RenderedVariant, render
from handler.variants import VariantSpec
from tests.test_pipeline_generated import (
    DISPLAY_P3,
    GREY_QUADS,
    RGB_QUADS,
    H,
    W,
    encoded,
    grey_picture,
    quadrants,
    rgb_picture,
    tiff_file,
)

PNG_FULL = VariantSpec("full", "png")
CENTRES = ((W // 4, H // 4), (3 * W // 4, H // 4), (W // 4, 3 * H // 4), (3 * W // 4, 3 * H // 4))
"""The middle of each quadrant of the generated pictures, away from resampling and chroma subsampling at edges."""


def rendered(data: bytes, spec: VariantSpec = PNG_FULL) -> Image.Image:
    (variant,) = render(data, [spec])
    return decoded(variant)


def decoded(variant: RenderedVariant) -> Image.Image:
    image = Image.open(io.BytesIO(variant.data))
    image.load()
    return image


def centres(image: Image.Image, mode: str) -> list[tuple[int, ...]]:
    """The pixel at each quadrant's centre in `mode`, as a tuple of its bands."""
    bands = image.convert(mode).split()
    return [tuple(band.getpixel(xy) for band in bands) for xy in CENTRES]  # type: ignore[misc]


def assert_close(got: Sequence[Sequence[int]], want: Sequence[Sequence[int]], tolerance: int, what: str) -> None:
    worst = max(abs(g - w) for gs, ws in zip(got, want, strict=True) for g, w in zip(gs, ws, strict=True))
    assert worst <= tolerance, f"{what}: quadrant centres {got}, expected {want}"


# --- TIFF PhotometricInterpretation MinIsWhite: sample 0 is white, at every depth -------------------------------

MIN_IS_WHITE = 0


def with_photometric(data: bytes, value: int) -> bytes:
    """A Pillow-written TIFF with its PhotometricInterpretation (a SHORT in the first IFD) set to `value`.

    The samples stay as they are, so they now count from white: compressed files reach libtiff's decoder."""
    order = "<" if data[:2] == b"II" else ">"
    ifd = struct.unpack_from(order + "I", data, 4)[0]
    for at in range(ifd + 2, ifd + 2 + 12 * struct.unpack_from(order + "H", data, ifd)[0], 12):
        if struct.unpack_from(order + "H", data, at)[0] == 262:
            return data[: at + 8] + struct.pack(order + "H", value) + data[at + 10 :]
    raise AssertionError("no PhotometricInterpretation tag")


def _darkness() -> list[int]:
    """What a MinIsWhite file stores for the grey quadrants: how far each pixel is from white, 0..255."""
    return [255 - v for v in grey_picture().get_flattened_data()]  # type: ignore[operator]


def _min_is_white_raw(bits: int, code: str, scale: float, *, big_endian: bool = False, floating: bool = False) -> bytes:
    order = ">" if big_endian else "<"
    samples = b"".join(struct.pack(order + code, v * scale if floating else round(v * scale)) for v in _darkness())
    return tiff_file(
        (W, H), [bits], samples, photometric=MIN_IS_WHITE, sample_format=3 if floating else 1, big_endian=big_endian
    )


def _min_is_white_lzw(mode: str) -> bytes:
    """The darkness in `mode` (I;16, F or L), LZW-compressed by Pillow and marked MinIsWhite: libtiff decodes it."""
    scale = {"I;16": 257, "F": 1 / 255, "L": 1}[mode]
    darkness = Image.new("F", (W, H))
    darkness.putdata([v * scale for v in _darkness()])
    stored = darkness if mode == "F" else darkness.convert("I").convert(mode)
    return with_photometric(encoded(stored, "TIFF", compression="tiff_lzw"), MIN_IS_WHITE)


MIN_IS_WHITE_TIFFS: dict[str, Callable[[], bytes]] = {
    "16-bit": lambda: _min_is_white_raw(16, "H", 257),
    "16-bit-lzw": lambda: _min_is_white_lzw("I;16"),
    "float": lambda: _min_is_white_raw(32, "f", 1 / 255, floating=True),
    "float-bigendian": lambda: _min_is_white_raw(32, "f", 1 / 255, big_endian=True, floating=True),
    "float-lzw": lambda: _min_is_white_lzw("F"),
    # Pillow inverts these itself, as it unpacks them: they must not be inverted twice.
    "8-bit": lambda: _min_is_white_raw(8, "B", 1),
    "8-bit-lzw": lambda: _min_is_white_lzw("L"),
}


@pytest.mark.parametrize("build", MIN_IS_WHITE_TIFFS.values(), ids=MIN_IS_WHITE_TIFFS.keys())
def test_min_is_white_tiff_shows_white_where_the_file_means_white(build: Callable[[], bytes]) -> None:
    image = rendered(build())
    assert_close(centres(image, "L"), [(v,) for v in GREY_QUADS], 2, "MinIsWhite grey")


def test_min_is_white_bilevel_tiff_shows_white_where_the_file_means_white() -> None:
    # Bits 1, 0, 0, 1: MinIsWhite makes the first and last quadrants black.
    bits = quadrants("1", (255, 0, 0, 255)).tobytes()
    image = rendered(tiff_file((W, H), [1], bits, photometric=MIN_IS_WHITE))
    assert centres(image, "L") == [(0,), (255,), (255,), (0,)]


def test_grey_tiff_without_a_photometric_tag_is_not_inverted() -> None:
    """Without the tag nothing says the samples count from white: deep grey stays as Pillow and libtiff read it."""
    stored = tiff_file((W, H), [16], struct.pack("<H", GREY_QUADS[0] * 257) * (W * H), photometric=1)
    without = stored.replace(struct.pack("<HHI", 262, 3, 1), struct.pack("<HHI", 0x7FFF, 3, 1))  # an unknown tag
    assert centres(rendered(without), "L")[0] == (GREY_QUADS[0],)


# --- uncompressed YCbCr TIFF: subsampled chroma and reference black and white -----------------------------------

YCBCR = 6
YCBCR_SUBSAMPLING = 530
REFERENCE_BLACK_WHITE = 532


def ycbcr_units(image: Image.Image, horizontal: int, vertical: int) -> bytes:
    """The picture as TIFF stores subsampled YCbCr: per block of h x v pixels their Ys, then one Cb and one Cr."""
    y, cb, cr = image.convert("YCbCr").split()
    out = bytearray()
    for top in range(0, image.height, vertical):
        for left in range(0, image.width, horizontal):
            box = (left, top, left + horizontal, top + vertical)
            out += y.crop(box).tobytes()
            for plane in (cb, cr):
                values = plane.crop(box).get_flattened_data()
                out.append(round(sum(values) / len(values)))  # type: ignore[arg-type]
    return bytes(out)


def ycbcr_tiff(horizontal: int, vertical: int, *, tagged: bool = True) -> bytes:
    tags = [(YCBCR_SUBSAMPLING, 3, [horizontal, vertical])] if tagged else []
    units = ycbcr_units(rgb_picture(), horizontal, vertical)
    return tiff_file((W, H), [8, 8, 8], units, photometric=YCBCR, extra_tags=tags)


def studio_range_ycbcr_tiff() -> bytes:
    """Y in 16..235, Cb and Cr in 16..240, as ReferenceBlackWhite declares (video's ranges)."""
    y, cb, cr = rgb_picture().convert("YCbCr").split()
    y = y.point(lambda v: round(16 + v * 219 / 255))
    cb, cr = (c.point(lambda v: round(128 + (v - 128) * 224 / 255)) for c in (cb, cr))
    tags = [(YCBCR_SUBSAMPLING, 3, [1, 1]), (REFERENCE_BLACK_WHITE, 5, [16, 235, 128, 240, 128, 240])]
    return tiff_file((W, H), [8, 8, 8], Image.merge("YCbCr", (y, cb, cr)).tobytes(), photometric=YCBCR, extra_tags=tags)


YCBCR_TIFFS: dict[str, Callable[[], bytes]] = {
    "2x2": lambda: ycbcr_tiff(2, 2),
    "2x1": lambda: ycbcr_tiff(2, 1),
    "4x2": lambda: ycbcr_tiff(4, 2),
    "4x4": lambda: ycbcr_tiff(4, 4),
    "untagged-2x2": lambda: ycbcr_tiff(2, 2, tagged=False),  # the TIFF default
    "studio-range": studio_range_ycbcr_tiff,
    # Pillow's own decoder read these right before; they must stay right.
    "1x1": lambda: ycbcr_tiff(1, 1),
    "pillow-8.3-untagged-1x1": lambda: ycbcr_tiff(1, 1, tagged=False),  # Pillow wrote no tag, and no subsampling
    "pillow-1x1": lambda: encoded(rgb_picture().convert("YCbCr"), "TIFF"),
    "jpeg-compressed": lambda: encoded(rgb_picture(), "TIFF", compression="jpeg", quality=95),
}


@pytest.mark.parametrize("build", YCBCR_TIFFS.values(), ids=YCBCR_TIFFS.keys())
def test_uncompressed_ycbcr_tiff_shows_its_colours(build: Callable[[], bytes]) -> None:
    assert_close(centres(rendered(build()), "RGB"), RGB_QUADS, 4, "YCbCr TIFF")


def test_ycbcr_tiff_with_a_strip_too_short_for_its_subsampling_is_corrupt() -> None:
    units = ycbcr_units(rgb_picture(), 2, 2)
    short = tiff_file(
        (W, H), [8, 8, 8], units[: len(units) // 2], photometric=YCBCR, extra_tags=[(YCBCR_SUBSAMPLING, 3, [2, 2])]
    )
    with pytest.raises(Rejected) as excinfo:
        render(short, [PNG_FULL])
    assert excinfo.value.reason == "corrupt"


# --- JPEG ICC chunks: assembled as libjpeg-turbo (Chromium, Firefox) does -----------------------------------------

ICC = b"ICC_PROFILE\0"


def segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def icc_chunk(number: int, count: int, body: bytes) -> bytes:
    return segment(0xE2, ICC + bytes((number, count)) + body)


def jpeg_with(*before_frame: bytes, after_frame: Sequence[bytes] = (), base: bytes | None = None) -> bytes:
    """The quadrant JPEG with segments inserted after SOI, and after the frame header (before the scan)."""
    data = base if base is not None else encoded(rgb_picture(), "JPEG", quality=95)
    frame = data.index(b"\xff\xc0")
    frame_end = frame + 2 + struct.unpack_from(">H", data, frame + 2)[0]
    return data[:2] + b"".join(before_frame) + data[2:frame_end] + b"".join(after_frame) + data[frame_end:]


HALF = len(DISPLAY_P3) // 2
FIRST, SECOND = DISPLAY_P3[:HALF], DISPLAY_P3[HALF:]
# name -> (segments before the frame header, after it, whether browsers apply the Display P3 profile)
ICC_CHUNKS: dict[str, tuple[Sequence[bytes], Sequence[bytes], bool]] = {
    "signature-only": ([segment(0xE2, ICC)], [], False),
    "signature-and-number": ([segment(0xE2, ICC + b"\1")], [], False),
    "stub-then-profile": ([segment(0xE2, ICC + b"\1"), icc_chunk(1, 1, DISPLAY_P3)], [], True),
    "profile-then-stub": ([icc_chunk(1, 1, DISPLAY_P3), segment(0xE2, ICC + b"\5")], [], True),
    "stub-after-the-frame": ([], [segment(0xE2, ICC)], False),
    "empty-chunk": ([icc_chunk(1, 1, b"")], [], False),
    "number-0": ([icc_chunk(0, 1, DISPLAY_P3)], [], False),
    "number-beyond-count": ([icc_chunk(2, 1, DISPLAY_P3)], [], False),
    "count-0": ([icc_chunk(1, 0, DISPLAY_P3)], [], False),
    "counts-differ": ([icc_chunk(1, 2, FIRST), icc_chunk(2, 3, SECOND)], [], False),
    "number-twice": ([icc_chunk(1, 3, FIRST), icc_chunk(2, 3, SECOND), icc_chunk(2, 3, SECOND)], [], False),
    "chunk-missing": ([icc_chunk(1, 2, DISPLAY_P3)], [], False),
    "two-chunks": ([icc_chunk(1, 2, FIRST), icc_chunk(2, 2, SECOND)], [], True),
    "two-chunks-in-reverse": ([icc_chunk(2, 2, SECOND), icc_chunk(1, 2, FIRST)], [], True),
    "profile-after-the-frame": ([], [icc_chunk(1, 1, DISPLAY_P3)], True),
}


@pytest.fixture(scope="module")
def as_srgb() -> Image.Image:
    return rendered(jpeg_with())


@pytest.fixture(scope="module")
def through_p3() -> Image.Image:
    return rendered(jpeg_with(icc_chunk(1, 1, DISPLAY_P3)))


def test_the_profile_changes_the_picture(as_srgb: Image.Image, through_p3: Image.Image) -> None:
    assert ImageChops.difference(as_srgb, through_p3).getbbox() is not None


@pytest.mark.parametrize(("before", "after", "applied"), ICC_CHUNKS.values(), ids=ICC_CHUNKS.keys())
def test_jpeg_icc_chunks_are_read_as_browsers_read_them(
    before: Sequence[bytes], after: Sequence[bytes], applied: bool, as_srgb: Image.Image, through_p3: Image.Image
) -> None:
    image = rendered(jpeg_with(*before, after_frame=after))
    expected = through_p3 if applied else as_srgb
    assert ImageChops.difference(image, expected).getbbox() is None, (
        f"the profile was {'ignored' if applied else 'applied'}"
    )


def test_mpo_with_an_icc_stub_renders(as_srgb: Image.Image) -> None:
    second = rgb_picture().transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    mpo = encoded(rgb_picture(), "MPO", save_all=True, append_images=[second], quality=95)
    data = jpeg_with(segment(0xE2, ICC), base=mpo)  # the MP index counts from its own segment: still right
    assert Image.open(io.BytesIO(sniff.readable_by_pillow(data))).format == "MPO"
    assert_close(centres(rendered(data), "RGB"), centres(as_srgb, "RGB"), 2, "MPO")


def test_disagreeing_icc_chunks_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="handler.sniff"):
        rendered(jpeg_with(icc_chunk(1, 2, FIRST), icc_chunk(2, 3, SECOND)))
    assert "ignoring the JPEG's ICC profile: one chunk is one of 2, another one of 3" in caplog.text


def test_icc_stubs_are_hidden_in_place() -> None:
    plain = jpeg_with(icc_chunk(1, 1, DISPLAY_P3))
    assert sniff.readable_by_pillow(plain) is plain
    stubbed = jpeg_with(segment(0xE2, ICC + b"\1"), icc_chunk(1, 1, DISPLAY_P3))
    hidden = sniff.readable_by_pillow(stubbed)
    assert len(hidden) == len(stubbed) and hidden.count(ICC) == 1
    assert sniff.jpeg_icc_profile(hidden) == sniff.jpeg_icc_profile(stubbed) == DISPLAY_P3


# --- GIF: what the first image leaves of the logical screen is transparent ---------------------------------------

GIF_SPECS = (
    VariantSpec("png", "png"),
    VariantSpec("webp", "webp", quality=90),
    VariantSpec("avif", "avif", quality=90),
    VariantSpec("jpeg", "jpeg", quality=90, background="#00ff00"),
    VariantSpec("small", "png", width=W // 2, height=H // 2),
)


def gif_on_screen(frame: Image.Image, screen: tuple[int, int], at: tuple[int, int], **params: object) -> bytes:
    """A GIF of `frame`, with its logical screen enlarged to `screen` and its image moved to `at`."""
    data = bytearray(encoded(frame, "GIF", **params))
    data[6:10] = struct.pack("<HH", *screen)
    pos = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    while data[pos] == 0x21:  # extensions: introducer, label, sub-blocks up to an empty one
        pos += 2
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
    assert data[pos] == 0x2C, "no image descriptor"
    data[pos + 1 : pos + 5] = struct.pack("<HH", *at)
    return bytes(data)


def left_half(image: Image.Image) -> Image.Image:
    return image.crop((0, 0, W // 2, H))


GREY = [(v, v, v) for v in GREY_QUADS]
# name -> (the GIF, its quadrants' colours): its first image is the left half of the screen.
GIFS: dict[str, tuple[Callable[[], bytes], Sequence[tuple[int, int, int]]]] = {
    "palette": (lambda: gif_on_screen(left_half(rgb_picture()).quantize(4), (W, H), (0, 0)), RGB_QUADS),
    "palette-with-transparent-index": (
        lambda: gif_on_screen(left_half(rgb_picture()).quantize(4), (W, H), (0, 0), transparency=3),
        RGB_QUADS,
    ),
    "grey": (lambda: gif_on_screen(left_half(grey_picture()), (W, H), (0, 0)), GREY),
}


@pytest.mark.parametrize(("build", "colours"), GIFS.values(), ids=GIFS.keys())
def test_gif_screen_left_uncovered_by_its_first_image_is_transparent(
    build: Callable[[], bytes], colours: Sequence[tuple[int, int, int]]
) -> None:
    variants = {v.name: decoded(v) for v in render(build(), GIF_SPECS)}
    for name in ("png", "webp", "avif"):
        got = centres(variants[name], "RGBA")
        assert [c[3] for c in got] == [255, 0, 255, 0], f"{name}: alpha of the quadrant centres {got}"
        assert_close([got[0][:3], got[2][:3]], [colours[0], colours[2]], 6, name)
    jpeg = centres(variants["jpeg"], "RGB")
    assert_close([jpeg[1], jpeg[3]], [(0, 255, 0)] * 2, 4, "jpeg on its background")
    assert_close([jpeg[0], jpeg[2]], [colours[0], colours[2]], 6, "jpeg")
    small = variants["small"].convert("RGBA")
    assert small.getchannel("A").getextrema() == (0, 255)
    assert small.getpixel((3 * W // 8, H // 8))[3] == 0 and small.getpixel((W // 8, H // 8))[3] == 255  # type: ignore[index]


def test_gif_image_in_the_middle_of_its_screen() -> None:
    image = rendered(gif_on_screen(Image.new("P", (W // 2, H // 2)), (W, H), (W // 4, H // 4)))
    alpha = image.getchannel("A")
    assert alpha.getbbox() == (W // 4, H // 4, 3 * W // 4, 3 * H // 4)
    assert alpha.crop(alpha.getbbox()).getextrema() == (255, 255)  # type: ignore[arg-type]


def test_gif_covering_its_screen_stays_opaque() -> None:
    assert rendered(encoded(rgb_picture().quantize(4), "GIF")).mode == "RGB"


def animated_webp(frame: Image.Image, canvas: tuple[int, int], at: tuple[int, int], *, alpha_flag: bool) -> bytes:
    """An animated WebP of one frame (`frame`, encoded by Pillow) placed `at` (even offsets) on a larger `canvas`.

    Pillow writes animations whose first frame covers the canvas; libwebp's animation encoder may not.
    """
    still = encoded(frame, "WEBP", lossless=True)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return kind + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) & 1)

    def u24(value: int) -> bytes:
        return value.to_bytes(3, "little")

    flags = 0x02 | (0x10 if alpha_flag else 0)  # animation, alpha
    vp8x = bytes((flags, 0, 0, 0)) + u24(canvas[0] - 1) + u24(canvas[1] - 1)
    anmf = u24(at[0] // 2) + u24(at[1] // 2) + u24(frame.width - 1) + u24(frame.height - 1) + u24(100) + b"\2"
    body = b"WEBP" + chunk(b"VP8X", vp8x) + chunk(b"ANIM", bytes(6)) + chunk(b"ANMF", anmf + still[12:])
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("alpha_flag", [False, True], ids=["no-alpha-flag", "alpha-flag"])
def test_animated_webp_canvas_left_uncovered_by_its_first_frame_is_transparent(alpha_flag: bool) -> None:
    """libwebp composites onto a transparent canvas; Pillow reads it as RGB without the alpha flag (opaque black
    around the frame), where Chromium shows it transparent."""
    frame = Image.new("RGB", (W // 2, H // 2), (200, 50, 40))
    data = animated_webp(frame, (W, H), (W // 4, H // 4), alpha_flag=alpha_flag)
    assert sniff.webp_first_frame_box(data) == (W // 4, H // 4, 3 * W // 4, 3 * H // 4)
    image = rendered(data)
    alpha = image.getchannel("A")
    assert alpha.getbbox() == (W // 4, H // 4, 3 * W // 4, 3 * H // 4)
    assert alpha.crop(alpha.getbbox()).getextrema() == (255, 255)  # type: ignore[arg-type]
    assert image.getpixel((W // 2, H // 2)) == (200, 50, 40, 255)


def test_animated_webp_frame_covering_its_canvas_stays_opaque() -> None:
    frame = Image.new("RGB", (W, H), (10, 120, 230))
    assert rendered(animated_webp(frame, (W, H), (0, 0), alpha_flag=False)).mode == "RGB"
    assert sniff.webp_first_frame_box(encoded(frame, "WEBP", lossless=True)) is None


# --- damage: the headers these fixes read are the attacker's too -------------------------------------------------

DAMAGED: dict[str, Callable[[], bytes]] = {
    "ycbcr-tiff": YCBCR_TIFFS["2x2"],
    "untagged-ycbcr-tiff": YCBCR_TIFFS["untagged-2x2"],
    "min-is-white-tiff": MIN_IS_WHITE_TIFFS["16-bit"],
    "jpeg-icc-chunks": lambda: jpeg_with(segment(0xE2, ICC + b"\1"), icc_chunk(1, 2, FIRST), icc_chunk(2, 2, SECOND)),
    "gif-on-a-larger-screen": GIFS["palette"][0],
    "webp-on-a-larger-canvas": lambda: animated_webp(
        Image.new("RGB", (W // 2, H // 2), (1, 2, 3)), (W, H), (W // 4, H // 4), alpha_flag=False
    ),
}


def damaged_copy(original: bytes, seed: int, *, header: int, header_every: int, most_flips: int) -> bytes:
    """`original` with 1..`most_flips` bits flipped, in the first `header` bytes for every `header_every`-th seed
    and anywhere for the others, and every fourth copy cut short too."""
    data = bytearray(original)
    rng = random.Random(seed)
    reach = min(len(data), header) if seed % header_every == 0 else len(data)
    for _ in range(1 + seed % most_flips):
        data[rng.randrange(reach)] ^= 1 << rng.randrange(8)
    if seed % 4 == 3:
        del data[rng.randrange(len(data) // 2, len(data)) :]
    return bytes(data)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("build", DAMAGED.values(), ids=DAMAGED.keys())
def test_damaged_upload_is_rejected_or_rendered(build: Callable[[], bytes], seed: int) -> None:
    """Bits flipped in the header (every third seed) or anywhere, every fourth file cut too: `Rejected` or a valid
    render, never another error."""
    data = damaged_copy(build(), seed, header=300, header_every=3, most_flips=4)
    try:
        variants = render(data, GIF_SPECS)
    except Rejected as exc:
        assert exc.reason in ("corrupt", "not_an_image", "too_many_pixels"), exc.detail
        return
    for variant in variants:
        decoded(variant)


# --- TIFF colormaps: 16-bit values, or 8-bit ones from writers that got it wrong -----------------------------------

COLORMAP = 320
QUADRANT_COLOURS = [(200, 30, 40), (20, 180, 60), (30, 60, 220), (240, 230, 20)]


def palette_tiff(scale: int, colours: Sequence[tuple[int, int, int]] = QUADRANT_COLOURS) -> bytes:
    """An 8-bit palette TIFF of the four quadrants, its colormap values multiplied by `scale` (257 is right)."""
    entries = [*colours, *[(0, 0, 0)] * (256 - len(colours))]
    colormap = [colour[band] * scale for band in range(3) for colour in entries]  # all reds, greens, then blues
    index = quadrants("L", (0, 1, 2, 3))
    return tiff_file((W, H), [8], index.tobytes(), photometric=3, extra_tags=[(COLORMAP, 3, colormap)])


@pytest.mark.parametrize("scale", [257, 256, 1], ids=["16-bit", "16-bit-high-byte", "8-bit-values"])
def test_tiff_colormap_shows_its_colours(scale: int) -> None:
    """libtiff and ImageMagick read a colormap with no value above 255 as 8-bit; Pillow alone showed it black."""
    assert_close(centres(rendered(palette_tiff(scale)), "RGB"), QUADRANT_COLOURS, 0, f"colormap x{scale}")


def test_a_dark_16_bit_colormap_with_one_value_past_255_stays_16_bit() -> None:
    colours = [(0, 0, 1), (0, 0, 0), (0, 0, 0), (0, 0, 0)]  # 257: one value past 255, so read as 16-bit
    assert centres(rendered(palette_tiff(257, colours)), "RGB") == [(0, 0, 1), (0, 0, 0), (0, 0, 0), (0, 0, 0)]


# --- TIFF FillOrder 2: the bits of each byte stored in reverse order -----------------------------------------------

FILL_ORDER = 266
REVERSED_BITS = bytes(int(f"{byte:08b}"[::-1], 2) for byte in range(256))


def packed_rows(values: Sequence[int], bits: int) -> bytes:
    """Rows of W samples of `bits` each, most significant first, each row padded to a byte."""
    out = bytearray()
    for top in range(0, len(values), W):
        row = "".join(f"{value:0{bits}b}" for value in values[top : top + W])
        row += "0" * (-len(row) % 8)
        out += int(row, 2).to_bytes(len(row) // 8, "big")
    return bytes(out)


def bit_order_tiffs(bits: int, photometric: int, samples: int = 1) -> tuple[bytes, bytes]:
    """The quadrants as a TIFF in FillOrder 1, and the same in FillOrder 2."""
    index = [min(int(v), (1 << bits) - 1) for v in quadrants("L", (0, 1, 2, 3)).get_flattened_data()]  # type: ignore[arg-type]
    pixels = packed_rows(index, bits) if samples == 1 else bytes(60 * v + 10 * s for v in index for s in range(samples))
    tags = [(COLORMAP, 3, [(i * step % 256) * 257 for step in (60, 90, 30) for i in range(1 << bits)])]
    tags = tags if photometric == 3 else []
    normal = tiff_file((W, H), [bits] * samples, pixels, photometric=photometric, extra_tags=tags)
    reverse = [*tags, (FILL_ORDER, 3, [2])]
    return normal, tiff_file(
        (W, H), [bits] * samples, pixels.translate(REVERSED_BITS), photometric=photometric, extra_tags=reverse
    )


BIT_ORDER_LAYOUTS = {
    **{f"palette-{bits}": (bits, 3) for bits in (1, 2, 4, 8)},
    **{f"min-is-white-{bits}": (bits, 0) for bits in (1, 2, 4, 8)},
    **{f"min-is-black-{bits}": (bits, 1) for bits in (1, 2, 4, 8)},
}


@pytest.mark.parametrize(("bits", "photometric"), BIT_ORDER_LAYOUTS.values(), ids=BIT_ORDER_LAYOUTS.keys())
def test_tiff_bits_in_reverse_order_show_the_same_picture(bits: int, photometric: int) -> None:
    """libtiff reverses each byte's bits for FillOrder 2, whatever the layout; Pillow had no raw mode for palette
    files under 8 bits or 8-bit MinIsWhite, and refused them as corrupt."""
    normal, reversed_bits = bit_order_tiffs(bits, photometric)
    want = rendered(normal)
    assert len(set(want.convert("RGB").get_flattened_data())) > 1, "the picture has its quadrants"
    assert ImageChops.difference(rendered(reversed_bits).convert("RGB"), want.convert("RGB")).getbbox() is None


def test_rgb_tiff_bits_in_reverse_order_show_the_same_picture() -> None:
    normal, reversed_bits = bit_order_tiffs(8, 2, samples=3)
    assert ImageChops.difference(rendered(reversed_bits), rendered(normal)).getbbox() is None


# --- TIFF byte order: libtiff hands samples over in the machine's order --------------------------------------------

DEFLATE = 8
SAMPLE_FORMATS = {  # struct code, SampleFormat, bits, what the grey picture's 0-255 is multiplied by
    "unsigned-16": ("H", 1, 16, 257),
    "signed-16": ("h", 2, 16, 128),
    "signed-32": ("i", 2, 32, 0x00808080),
    "float-32": ("f", 3, 32, 1 / 255),
}


def grey_tiff(sample: str, *, big_endian: bool, compression: int) -> bytes:
    code, sample_format, bits, scale = SAMPLE_FORMATS[sample]
    order = ">" if big_endian else "<"
    values = [v * scale for v in grey_picture().get_flattened_data()]  # type: ignore[operator]
    pixels = b"".join(struct.pack(order + code, v if code == "f" else int(v)) for v in values)
    pixels = zlib.compress(pixels) if compression == DEFLATE else pixels
    return tiff_file(
        (W, H),
        [bits],
        pixels,
        photometric=1,
        sample_format=sample_format,
        big_endian=big_endian,
        compression=compression,
    )


@pytest.mark.parametrize("sample", SAMPLE_FORMATS)
@pytest.mark.parametrize("big_endian", [False, True], ids=["little-endian", "big-endian"])
def test_compressed_tiff_shows_its_samples_in_either_byte_order(sample: str, big_endian: bool) -> None:
    """Pillow unpacked what libtiff decoded from big-endian signed and float samples as big-endian, though libtiff
    hands them over in the machine's byte order: the picture came out as noise."""
    want = rendered(grey_tiff(sample, big_endian=False, compression=1))
    assert_close(centres(want, "L"), [(v,) for v in GREY_QUADS], 1, "uncompressed little-endian")
    got = rendered(grey_tiff(sample, big_endian=big_endian, compression=DEFLATE))
    assert ImageChops.difference(got, want).getbbox() is None


def bigtiff(*, big_endian: bool) -> bytes:
    """The grey picture as a one-strip BigTIFF (8-byte offsets and counts, 20-byte directory entries)."""
    order = ">" if big_endian else "<"
    pixels = grey_picture().tobytes()
    fields = [(256, W), (257, H), (258, 8), (259, 1), (262, 1), (273, None), (277, 1), (278, H), (279, len(pixels))]
    directory_at = 16
    pixels_at = directory_at + 8 + 20 * len(fields) + 8
    directory = struct.pack(order + "Q", len(fields))
    for tag, value in fields:
        kind, packed = (
            (16, struct.pack(order + "Q", pixels_at)) if value is None else (3, struct.pack(order + "H", value))
        )
        directory += struct.pack(order + "HHQ", tag, kind, 1) + packed.ljust(8, b"\0")
    directory += struct.pack(order + "Q", 0)
    header = (b"MM\0+" if big_endian else b"II+\0") + struct.pack(order + "HHQ", 8, 0, directory_at)
    return header + directory + pixels


def test_little_endian_bigtiff_renders() -> None:
    assert_close(centres(rendered(bigtiff(big_endian=False)), "L"), [(v,) for v in GREY_QUADS], 0, "BigTIFF")


def test_big_endian_bigtiff_is_refused_as_unsupported() -> None:
    """Pillow takes a big-endian BigTIFF's header for a classic TIFF's and reads a directory from wherever that
    points, not the one the tile and strip limits checked: it was `corrupt`, or a crafted file's other picture."""
    with pytest.raises(Rejected) as excinfo:
        render(bigtiff(big_endian=True), [PNG_FULL])
    assert excinfo.value.reason == "unsupported_format"
    assert excinfo.value.detail.startswith("big-endian BigTIFF")
