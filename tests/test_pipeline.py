"""The pure pipeline on in-memory images: geometry, colour, alpha, metadata, rejections, threading."""

from __future__ import annotations

import dataclasses
import gc
import io
import logging
import math
import random
import threading
from concurrent.futures import Executor

import pytest
from PIL import ExifTags, Image, ImageChops, ImageCms, ImageFile, ImageOps, ImageStat, PngImagePlugin

from handler import pipeline
from handler.geometry import plan_variant
from handler.pipeline import (
    DEFAULT_PIXEL_LIMIT,
    Rejected,
    RenderedVariant,
    default_workers,
    encode_variant,
    render,
    render_memory_mb,
)
from handler.sniff import HEADER_PART_LIMIT, ISO_BMFF_PART_LIMIT, JPEG_SCAN_LIMIT
from handler.variants import PRESETS, VariantSpec
from tests.test_pipeline_sniff import (
    avif_with_meta_parts,
    gif_with_extensions,
    jpeg_with_segments,
    png_with_chunks,
    scan_bomb,
)


def encoded(image: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def decoded(variant: RenderedVariant) -> Image.Image:
    image = Image.open(io.BytesIO(variant.data))
    image.load()
    return image


def only(data: bytes, spec: VariantSpec, **kwargs: object) -> RenderedVariant:
    (variant,) = render(data, [spec], **kwargs)  # type: ignore[arg-type]
    return variant


JPEG_BOX = VariantSpec("box", "jpeg", quality=90, width=200, height=200, fit="inside")
PNG_FULL = VariantSpec("full", "png")


# --- geometry ---------------------------------------------------------------------------------


def test_inside_scales_down_to_fit_the_box_keeping_aspect() -> None:
    variant = only(encoded(Image.new("RGB", (4000, 3000), "red")), JPEG_BOX)
    assert (variant.width, variant.height) == (200, 150)
    assert decoded(variant).size == (200, 150)


def test_inside_never_upscales() -> None:
    variant = only(encoded(Image.new("RGB", (100, 80), "red")), JPEG_BOX)
    assert decoded(variant).size == (100, 80)


@pytest.mark.parametrize("size", [(300, 100), (100, 300), (40, 30)])
def test_cover_fills_the_box_exactly_and_crops_the_centre(size: tuple[int, int]) -> None:
    image = Image.new("RGB", size, "blue")
    # Mark the centre red: a centred crop keeps it in the middle of the output.
    w, h = size
    image.paste((255, 0, 0), (w // 2 - 5, h // 2 - 5, w // 2 + 5, h // 2 + 5))
    spec = VariantSpec("sq", "png", width=150, height=150, fit="cover")
    out = decoded(only(encoded(image), spec))
    assert out.size == (150, 150)
    red, _green, blue = out.convert("RGB").getpixel((75, 75))
    assert red > 200 and blue < 60


def test_cover_crop_never_leaves_the_frame_whatever_the_size() -> None:
    """Float rounding put ~4% of crops a hair outside the frame (4624x3468 to 150x150: top -2e-13),
    which Pillow refuses with ValueError: a retry and the dead-letter queue for a normal photo."""
    rng = random.Random(7)
    sizes = [(4624, 3468), (247, 254), (4032, 3024)] + [
        (rng.randint(1, 9000), rng.randint(1, 9000)) for _ in range(3000)
    ]
    boxes = [(150, 150), (200, 200), (640, 360), (1, 1000)]
    for width, height in sizes:
        for box in boxes:
            for orientation in (1, 6):
                spec = VariantSpec("c", "jpeg", quality=80, width=box[0], height=box[1], fit="cover")
                crop = plan_variant((width, height), spec, orientation).crop
                assert crop is not None
                left, top, right, bottom = crop
                assert 0 <= left < right <= width and 0 <= top < bottom <= height, ((width, height), box, crop)


@pytest.mark.parametrize("size", [(4624, 3468), (247, 254)])
def test_cover_renders_frame_sizes_whose_crop_rounded_outside(size: tuple[int, int]) -> None:
    """Both reported sizes raised ValueError from `render` before the crop was clamped."""
    variants = render(encoded(Image.new("RGB", size, (120, 140, 160)), "JPEG"), PRESETS["responsive"])
    assert (variants[0].name, variants[0].width, variants[0].height) == ("thumb", 150, 150)
    assert decoded(variants[0]).size == (150, 150)


def test_exif_orientation_is_applied_after_shrinking_and_not_carried() -> None:
    image = Image.new("RGB", (400, 200), "white")
    image.paste((255, 0, 0), (0, 0, 40, 40))  # red mark at stored top-left
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # stored pixels must be turned 90 degrees clockwise
    data = encoded(image, "JPEG", exif=exif.tobytes(), quality=95)
    big, small = render(data, [PNG_FULL, VariantSpec("t", "jpeg", quality=80, width=50, height=50)])
    assert (big.width, big.height) == (200, 400) == decoded(big).size
    assert (small.width, small.height) == (25, 50) == decoded(small).size
    # Rotating 90 degrees clockwise moves the stored top-left corner to the top-right.
    assert decoded(big).convert("RGB").getpixel((190, 10))[0] > 200
    assert decoded(big).convert("RGB").getpixel((10, 10)) == (255, 255, 255)
    for variant in (big, small):
        assert decoded(variant).getexif().get(ExifTags.Base.Orientation) is None


def test_cover_crops_the_upright_picture_when_the_stored_one_is_rotated() -> None:
    upright = Image.new("RGB", (200, 400), "white")
    upright.paste((255, 0, 0), (0, 180, 40, 220))  # left edge, middle height: inside the centred crop
    upright.paste((0, 0, 255), (0, 0, 200, 100))  # top quarter: cropped away
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # viewers turn the stored pixels 90 degrees clockwise
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    data = encoded(stored, "JPEG", quality=95, exif=exif.tobytes())
    out = decoded(only(data, VariantSpec("banner", "png", width=100, height=50, fit="cover"))).convert("RGB")
    assert out.size == (100, 50)
    assert out.getpixel((4, 25))[0] > 200 and out.getpixel((4, 25))[1] < 80
    assert min(out.getpixel((90, 25))) > 200
    assert all(out.getpixel((x, 1))[0] > 200 for x in range(50, 100, 10))  # no blue: the top was cropped away


XMP_ORIENTATION_8 = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="8"/></rdf:RDF></x:xmpmeta>'
)


@pytest.mark.parametrize(
    ("fmt", "carrier"),
    [(fmt, "exif") for fmt in ("JPEG", "PNG", "WEBP", "TIFF")] + [(fmt, "xmp") for fmt in ("JPEG", "PNG", "WEBP")],
)
def test_orientation_is_read_from_exif_or_xmp_in_every_container(fmt: str, carrier: str) -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    params: dict[str, object] = {"exif": exif.tobytes()} if carrier == "exif" else {"xmp": XMP_ORIENTATION_8}
    if carrier == "xmp" and fmt == "PNG":  # Pillow's PNG writer takes XMP only as an iTXt chunk
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", XMP_ORIENTATION_8.decode())
        params = {"pnginfo": info}
    variant = only(encoded(Image.new("RGB", (40, 20), "white"), fmt, **params), PNG_FULL)
    assert (variant.width, variant.height) == (20, 40) == decoded(variant).size


@pytest.mark.parametrize(
    "packet_orientation",
    [
        b"tiff:Orientation='6'/>",  # single quotes
        b">\n <tiff:Orientation>\n  6\n </tiff:Orientation>\n</rdf:Description>",  # pretty-printed element
        b'tiff:Orientation="6"/>',  # the form Pillow strips itself
    ],
    ids=["single-quoted", "pretty-element", "double-quoted"],
)
def test_tiff_orientation_is_applied_once_whatever_the_xmp_form_beside_the_tag(packet_orientation: bytes) -> None:
    """Pillow turns a TIFF upright on load and strips only the XMP forms it reads; any other form left in the
    packet used to be applied a second time."""
    packet = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description rdf:about="" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
        + packet_orientation
        + b"</rdf:RDF></x:xmpmeta>"
    )
    upright = Image.new("RGB", (40, 20), "white")
    upright.paste((255, 0, 0), (0, 0, 10, 10))  # red mark top-left of the upright picture
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera stores for orientation 6
    data = encoded(stored, "TIFF", tiffinfo={ExifTags.Base.Orientation: 6, 700: packet})
    out = decoded(only(data, PNG_FULL)).convert("RGB")
    assert out.size == (40, 20)
    assert out.getpixel((2, 2)) == (255, 0, 0) and out.getpixel((37, 17)) == (255, 255, 255)


def lossless_jpeg(image: Image.Image) -> bytes:
    """A lossless (SOF3) JPEG of an RGB image, predictor 1, as medical and scanning tools write; Pillow can't."""
    width, height = image.size
    pixels = image.tobytes()
    bits: list[str] = []
    for y in range(height):
        for x in range(width):
            for c in range(3):
                at = (y * width + x) * 3 + c
                predicted = 128 if x == y == 0 else pixels[at - 3] if x else pixels[at - width * 3]
                diff = pixels[at] - predicted
                size = abs(diff).bit_length()
                bits.append(f"{size:05b}")  # 17 categories, every Huffman code 5 bits long
                if size:
                    bits.append(f"{diff if diff > 0 else diff + (1 << size) - 1:0{size}b}")
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)
    scan = int(stream, 2).to_bytes(len(stream) // 8, "big").replace(b"\xff", b"\xff\x00")

    def segment(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload

    frame = (
        bytes([8]) + height.to_bytes(2, "big") + width.to_bytes(2, "big") + b"\x03\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    )
    table = b"\x00" + bytes([0, 0, 0, 0, 17] + [0] * 11) + bytes(range(17))
    start_of_scan = b"\x03\x01\x00\x02\x00\x03\x00\x01\x00\x00"
    return b"\xff\xd8" + segment(0xC3, frame) + segment(0xC4, table) + segment(0xDA, start_of_scan) + scan + b"\xff\xd9"


def test_lossless_jpeg_is_decoded_at_full_size_when_every_variant_is_small() -> None:
    """libjpeg cannot decode a lossless JPEG scaled: shrink-on-load made it `corrupt` for small variants only."""
    picture = Image.new("RGB", (240, 160), (220, 40, 40))
    picture.paste((40, 60, 220), (120, 0, 240, 160))
    data = lossless_jpeg(picture)
    assert decoded_pixels_equal(Image.open(io.BytesIO(data)), picture)
    thumb = decoded(only(data, VariantSpec("t", "png", width=40, height=40)))
    assert thumb.size == (40, 27)
    assert thumb.convert("RGB").getpixel((5, 13)) == (220, 40, 40)
    assert thumb.convert("RGB").getpixel((35, 13)) == (40, 60, 220)


def decoded_pixels_equal(image: Image.Image, expected: Image.Image) -> bool:
    return ImageChops.difference(image.convert("RGB"), expected).getbbox() is None


def test_first_frame_of_an_animation() -> None:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "blue", "green")]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    out = decoded(only(data, PNG_FULL)).convert("RGB")
    assert out.getpixel((16, 16)) == (255, 0, 0)


# --- modes and alpha --------------------------------------------------------------------------


def test_alpha_is_flattened_onto_the_background_for_jpeg_and_kept_for_png_webp_avif() -> None:
    image = Image.new("RGBA", (64, 64), (255, 0, 0, 0))  # fully transparent red
    image.paste((0, 0, 255, 255), (0, 0, 32, 64))  # opaque blue left half
    data = encoded(image)
    jpeg, png, webp, avif = render(
        data,
        [
            VariantSpec("j", "jpeg", quality=95, background="#00ff00"),
            VariantSpec("p", "png"),
            VariantSpec("w", "webp", quality=90),
            VariantSpec("a", "avif", quality=90),
        ],
    )
    flat = decoded(jpeg)
    assert flat.mode == "RGB"
    r, g, b = flat.getpixel((48, 32))
    assert g > 230 and r < 30 and b < 30  # the background, not black, not the hidden red
    assert flat.getpixel((10, 32))[2] > 220
    for variant in (png, webp, avif):
        kept = decoded(variant)
        assert kept.mode == "RGBA"
        assert kept.getpixel((48, 32))[3] == 0 and kept.getpixel((10, 32))[3] == 255


def test_palette_with_transparency_is_not_black_in_jpeg() -> None:
    image = Image.new("P", (16, 16), 0)
    image.putpalette([0, 0, 0] + [255, 0, 0] * 255)
    image.paste(1, (0, 0, 8, 16))
    data = encoded(image, transparency=0)
    out = decoded(only(data, VariantSpec("j", "jpeg", quality=95)))
    assert min(out.getpixel((12, 8))) > 240  # transparent index -> white background
    assert out.getpixel((3, 8))[0] > 240


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    image = Image.new("I;16", (8, 8), 32768)  # mid grey in 16 bits
    out = decoded(only(encoded(image), PNG_FULL))
    assert out.mode == "L"
    assert 126 <= out.getpixel((4, 4)) <= 129


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "CMYK", "I", "RGBA"])
def test_every_input_mode_yields_storable_outputs(mode: str) -> None:
    image = Image.new(mode, (20, 10))
    fmt = "TIFF" if mode in ("CMYK", "I") else "PNG"
    specs = [VariantSpec(f, f, quality=None if f == "png" else 80) for f in ("jpeg", "png", "webp", "avif")]
    for variant in render(encoded(image, fmt), specs):
        out = decoded(variant)
        assert out.size == (20, 10)
        assert out.format == variant.format.upper()


# --- colour -----------------------------------------------------------------------------------


def test_embedded_profile_is_converted_to_srgb_and_not_attached(hostile_dir) -> None:
    p3 = Image.open(hostile_dir / "sharp_p3.png").info["icc_profile"]
    image = Image.new("RGB", (8, 8), (40, 180, 90))
    data = encoded(image, icc_profile=p3)
    out = decoded(only(data, PNG_FULL))
    expected = ImageCms.profileToProfile(
        image, ImageCms.ImageCmsProfile(io.BytesIO(p3)), ImageCms.createProfile("sRGB"), outputMode="RGB"
    )
    assert out.getpixel((4, 4)) == expected.getpixel((4, 4)) != (40, 180, 90)
    assert "icc_profile" not in out.info


def test_broken_profile_falls_back_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    data = encoded(Image.new("RGB", (8, 8), (10, 20, 30)), icc_profile=b"not an icc profile at all" * 8)
    with caplog.at_level(logging.WARNING, logger="handler"):
        out = decoded(only(data, PNG_FULL))
    assert out.getpixel((0, 0)) == (10, 20, 30)
    assert "ignoring unusable ICC profile" in caplog.text


def test_cmyk_jpeg_is_converted_through_its_profile(hostile_dir) -> None:
    source = Image.open(hostile_dir / "sharp_CMYK_ycck_with_profile.jpg")
    source.load()
    icc = ImageCms.ImageCmsProfile(io.BytesIO(source.info["icc_profile"]))
    expected = ImageCms.profileToProfile(
        source, icc, ImageCms.createProfile("sRGB"), outputMode="RGB", renderingIntent=ImageCms.Intent.PERCEPTUAL
    )
    naive = source.convert("RGB")
    out = decoded(only((hostile_dir / "sharp_CMYK_ycck_with_profile.jpg").read_bytes(), PNG_FULL))
    assert out.mode == "RGB"
    assert out.tobytes() == expected.tobytes()
    assert out.tobytes() != naive.tobytes()


def test_metadata_is_stripped_from_every_output() -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Camera"
    exif.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 24.0)
    data = encoded(Image.new("RGB", (64, 48), "teal"), "JPEG", exif=exif.tobytes())
    specs = [VariantSpec(f, f, quality=None if f == "png" else 80) for f in ("jpeg", "png", "webp", "avif")]
    for variant in render(data, specs):
        out = decoded(variant)
        assert not out.getexif(), variant.name
        assert not {"exif", "xmp", "icc_profile"} & set(out.info), variant.name


# --- rejections -------------------------------------------------------------------------------


def test_too_large_is_decided_from_the_size_alone() -> None:
    with pytest.raises(Rejected) as excinfo:
        render(b"\xff\xd8\xff" + b"\0" * 2000, [PNG_FULL], max_bytes=1000)
    assert excinfo.value.reason == "too_large"
    assert "2003 bytes exceeds the limit 1000" in excinfo.value.detail


def test_too_many_pixels_is_rejected_from_the_header_without_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encoded(Image.new("1", (3000, 3000)))  # tiny file, 9 Mpx
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded pixels of a bomb"))
    with pytest.raises(Rejected) as excinfo:
        render(data, [PNG_FULL], pixel_limit=1_000_000)
    assert excinfo.value.reason == "too_many_pixels"
    assert "3000x3000" in excinfo.value.detail
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_PIXEL_LIMIT  # the process-wide guard is left alone


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (scan_bomb(20 * JPEG_SCAN_LIMIT), f"JPEG has more than {JPEG_SCAN_LIMIT} scans"),
        (jpeg_with_segments(20 * HEADER_PART_LIMIT), f"JPEG has more than {HEADER_PART_LIMIT} marker segments"),
        (png_with_chunks(20 * HEADER_PART_LIMIT), f"PNG has more than {HEADER_PART_LIMIT} chunks"),
        (gif_with_extensions(20 * HEADER_PART_LIMIT), f"GIF has more than {HEADER_PART_LIMIT} extension blocks"),
        (
            avif_with_meta_parts("ipco", 20 * ISO_BMFF_PART_LIMIT),
            f"AVIF has more than {ISO_BMFF_PART_LIMIT} properties",
        ),
    ],
    ids=["jpeg-scans", "jpeg-segments", "png-chunks", "gif-extensions", "avif-properties"],
)
def test_more_parts_than_any_encoder_writes_are_rejected_before_any_decoder_runs(
    data: bytes, detail: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "open", lambda *args, **kwargs: pytest.fail("a decoder parsed a flood of parts"))
    with pytest.raises(Rejected) as excinfo:
        render(data, [PNG_FULL])
    assert excinfo.value.reason == "too_complex"
    assert excinfo.value.detail.startswith(detail)


def test_an_avif_just_under_the_part_limit_still_renders() -> None:
    # libavif opens the same construction past the limit too: only the limit refuses it.
    [variant] = render(avif_with_meta_parts("ipco", ISO_BMFF_PART_LIMIT - 10), [PNG_FULL])
    with Image.open(io.BytesIO(variant.data)) as reopened:
        assert reopened.size == (8, 8)
        assert reopened.getpixel((4, 4))[0] > 200  # the red it was saved with


def test_a_jpeg_at_the_scan_limit_still_renders() -> None:
    [variant] = render(scan_bomb(JPEG_SCAN_LIMIT, size=(320, 240)), [PNG_FULL])
    with Image.open(io.BytesIO(variant.data)) as reopened:
        assert reopened.size == (320, 240)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not_an_image"),
        (b"hello, this is a text file\n" * 4, "not_an_image"),
        (encoded(Image.new("RGB", (16, 16)), "ICO"), "unsupported_format"),
        (encoded(Image.new("RGB", (64, 64), "red"), "JPEG")[:300], "corrupt"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "corrupt"),
    ],
    ids=["empty", "text", "ico", "truncated-jpeg", "broken-png"],
)
def test_rejections_are_classified(data: bytes, reason: str) -> None:
    with pytest.raises(Rejected) as excinfo:
        render(data, [PNG_FULL])
    assert excinfo.value.reason == reason


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pixel_limit": 0}, "pixel_limit must be an integer 1..178956970, got 0"),
        ({"max_bytes": -1}, "max_bytes must be a positive integer, got -1"),
        ({"workers": 0}, "workers must be None (one per CPU) or an integer >= 1, got 0"),
    ],
)
def test_bad_arguments_name_the_value(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        render(encoded(Image.new("RGB", (4, 4))), [PNG_FULL], **kwargs)  # type: ignore[arg-type]
    assert message in str(excinfo.value)


# --- speed machinery must not change results ----------------------------------------------------


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_thread_pool_and_inline_produce_identical_bytes(preset: str, photos_dir) -> None:
    data = (photos_dir / "eveningglow_4mp_2560x1600.jpg").read_bytes()
    if preset == "default":  # full-size PNG of 4 MP is slow; a 640 px copy exercises the same code
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", (640, 400))
        data = encoded(image.convert("RGB"), "JPEG", quality=90)
    threaded = render(data, PRESETS[preset], workers=2)
    inline = render(data, PRESETS[preset], workers=1)
    assert [v.data for v in threaded] == [v.data for v in inline]


def _large_p3_upload(hostile_dir) -> bytes:
    """A 0.8 MP PNG tagged Display P3: large enough for the colour step to be banded on the pool."""
    p3 = Image.open(hostile_dir / "sharp_p3.png").info["icc_profile"]
    image = Image.frombytes("RGB", (1000, 800), random.Random(0).randbytes(1000 * 800 * 3))
    return encoded(image, icc_profile=p3, compress_level=1)


# On the decode when a variant is full size; on the 900x720 resized frame when none is.
COLOUR_STEP_SPECS = {
    "on-decode": [PNG_FULL, JPEG_BOX],
    "deferred": [VariantSpec("large", "png", width=900, height=900)],
}


@pytest.mark.parametrize("where", sorted(COLOUR_STEP_SPECS))
def test_one_worker_starts_no_thread_and_matches_the_pool(where: str, hostile_dir, monkeypatch) -> None:
    data = _large_p3_upload(hostile_dir)
    specs = COLOUR_STEP_SPECS[where]
    threaded = render(data, specs, workers=2)
    monkeypatch.setattr(threading.Thread, "start", lambda thread: pytest.fail(f"workers=1 started {thread.name}"))

    inline = render(data, specs, workers=1)

    assert [v.data for v in inline] == [v.data for v in threaded]


@pytest.mark.parametrize("where", sorted(COLOUR_STEP_SPECS))
@pytest.mark.parametrize("workers", [1, 2])
def test_colour_step_is_given_the_pool_only_with_threads(where: str, workers: int, hostile_dir, monkeypatch) -> None:
    from handler import pipeline

    pools: list[Executor | None] = []
    real_to_srgb = pipeline.to_srgb

    def spy(image: Image.Image, icc: bytes | None, *, pool: Executor | None = None) -> Image.Image:
        pools.append(pool)
        return real_to_srgb(image, icc, pool=pool)

    monkeypatch.setattr(pipeline, "to_srgb", spy)
    render(_large_p3_upload(hostile_dir), COLOUR_STEP_SPECS[where], workers=workers)

    assert len(pools) == 1
    assert (pools[0] is not None) == (workers > 1)


def test_responsive_sizes_from_shrink_on_load_and_reused_intermediates(photos_dir) -> None:
    data = (photos_dir / "elephants_12mp_p3_orient6.jpg").read_bytes()  # 4032x3024 stored, orientation 6
    variants = {v.name: v for v in render(data, PRESETS["responsive"])}
    expected = {"thumb": (150, 150), "medium": (450, 600), "large": (900, 1200), "webp-1200": (900, 1200)}
    assert {name: decoded(v).size for name, v in variants.items()} == expected
    assert {name: (v.width, v.height) for name, v in variants.items()} == expected


def _psnr(image: Image.Image, reference: Image.Image) -> float:
    squares = ImageStat.Stat(ImageChops.difference(image.convert("RGB"), reference.convert("RGB"))).sum2
    mse = sum(squares) / (3 * image.width * image.height)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def _lanczos_from_full_size(full: Image.Image, spec: VariantSpec) -> Image.Image:
    """The careful rendering of a boxed variant: one Lanczos resize of the full-size upright frame."""
    assert spec.box is not None
    if spec.fit == "cover":
        return ImageOps.fit(full, spec.box, Image.Resampling.LANCZOS)
    return ImageOps.contain(full, spec.box, Image.Resampling.LANCZOS)


@pytest.mark.parametrize(
    "photo", ["elephants_12mp_4032x3024.jpg", "saw_6mp_2725x2225.jpg", "eveningglow_4mp_2560x1600.jpg"]
)
def test_shrink_on_load_and_reuse_never_soften_resized_variants(photo: str, photos_dir) -> None:
    """Speed must not cost quality: each resized variant matches a full-decode Lanczos resize.

    Lossless PNG isolates resampling from the codec. A DCT-scaled decode with too little margin
    (e.g. 1363 px for a 1200 px variant) or a box-filter 2x step scores 36-37 dB here.
    """
    data = (photos_dir / photo).read_bytes()
    full = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    specs = [dataclasses.replace(spec, format="png", quality=None) for spec in PRESETS["responsive"]]
    for variant, spec in zip(render(data, specs), specs, strict=True):
        reference = _lanczos_from_full_size(full, spec)
        assert _psnr(decoded(variant), reference) >= 44.0, f"{photo} {variant.name} is softer than a Lanczos resize"


def test_profile_is_applied_to_the_resized_frames_not_the_decode(photos_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    """A phone's Display P3 photo: the costly ICC transform runs on the 1200 px frame, at no visible cost."""
    from handler import pipeline

    data = (photos_dir / "elephants_12mp_p3_orient6.jpg").read_bytes()
    source = Image.open(io.BytesIO(data))
    profile = ImageCms.ImageCmsProfile(io.BytesIO(source.info["icc_profile"]))
    full = ImageCms.profileToProfile(ImageOps.exif_transpose(source), profile, ImageCms.createProfile("sRGB"))
    transformed: list[tuple[int, int]] = []
    real_to_srgb = pipeline.to_srgb

    def spy(image: Image.Image, icc: bytes | None, *, pool: Executor | None = None) -> Image.Image:
        transformed.append(image.size)
        return real_to_srgb(image, icc, pool=pool)

    monkeypatch.setattr(pipeline, "to_srgb", spy)
    specs = [dataclasses.replace(spec, format="png", quality=None) for spec in PRESETS["responsive"]]

    variants = render(data, specs)

    assert transformed == [(1200, 900)], "stored (sideways) size of the largest variant; smaller ones reuse it"
    for variant, spec in zip(variants, specs, strict=True):
        reference = _lanczos_from_full_size(full, spec)
        assert _psnr(decoded(variant), reference) >= 44.0, f"{variant.name} differs from transform-then-resize"


def test_hand_built_lossy_spec_without_quality_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"variant 'x': webp needs a quality 1\.\.100, got None"):
        render(encoded(Image.new("RGB", (4, 4))), [VariantSpec("x", "webp")])


@pytest.mark.parametrize(("memory", "expected"), [("128", 1), ("1769", 1), ("1770", 2), ("3008", 2), ("10240", 6)])
def test_default_workers_follow_lambdas_memory_based_cpu_share(
    monkeypatch: pytest.MonkeyPatch, memory: str, expected: int
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory)
    assert default_workers() == expected


def test_default_workers_outside_lambda_are_the_usable_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2})
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", raising=False)
    assert default_workers() == 3
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "lots")
    with pytest.raises(ValueError, match="AWS_LAMBDA_FUNCTION_MEMORY_SIZE must be a positive integer"):
        default_workers()


@pytest.mark.parametrize(
    ("memory", "megapixels", "threads"),
    [("2304", 89.4, 1), ("2304", 50, 2), ("10240", 89.4, 6), ("4000", 100, 2), ("1769", 1, 1)],
)
def test_a_frame_too_large_for_every_thread_is_rendered_on_fewer(
    monkeypatch: pytest.MonkeyPatch, memory: str, megapixels: float, threads: int
) -> None:
    """The config only guarantees one thread fits at the pixel limit: each more holds another frame."""
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory)
    pixels, upload = int(megapixels * 1e6), 50 * 2**20
    assert pipeline._threads_that_fit(default_workers(), pixels, upload) == threads
    assert render_memory_mb(pixels, threads, upload) <= int(memory) or threads == 1
    assert threads == default_workers() or render_memory_mb(pixels, threads + 1, upload) > int(memory)


def test_render_drops_threads_only_when_it_picks_them(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "2048")
    # As if every extra thread needed far more: a small frame must then be rendered on one.
    monkeypatch.setattr(pipeline, "RENDER_BYTES_PER_PIXEL_PER_EXTRA_THREAD", 10**9)
    data = encoded(Image.new("RGB", (300, 200), "red"), "JPEG")
    with caplog.at_level(logging.INFO, logger="handler.pipeline"):
        automatic = render(data, PRESETS["default"])
    assert "60000 pixels: rendering on 1 of 2 threads to stay within 2048 MB" in caplog.text
    assert [v.data for v in automatic] == [v.data for v in render(data, PRESETS["default"], workers=1)]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="handler.pipeline"):
        render(data, PRESETS["default"], workers=2)
    assert "rendering on" not in caplog.text, "an explicit thread count is the caller's to keep"


def test_encode_variant_is_the_codec_step_alone() -> None:
    image = Image.new("RGBA", (30, 20), (0, 0, 0, 0))
    image.info["icc_profile"] = b"kept by the caller"
    out = Image.open(io.BytesIO(encode_variant(image, VariantSpec("j", "jpeg", quality=80, background="#ff0000"))))
    assert (out.format, out.size, out.mode) == ("JPEG", (30, 20), "RGB")
    assert out.getpixel((5, 5))[0] > 240
    assert image.info["icc_profile"] == b"kept by the caller"  # the caller's image is not modified


def _live_frames_of_size(size: tuple[int, int]) -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, Image.Image) and o.size == size and o.im is not None)


def _live_decoders() -> int:
    """Image files still open: each holds its decoded frame, and Pillow's WebP reader libwebp's canvas too."""
    return sum(1 for o in gc.get_objects() if isinstance(o, ImageFile.ImageFile))


@pytest.mark.parametrize("orientation", [1, 6])
@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_encoding_holds_one_full_size_frame_not_the_decoders_or_the_unrotated_one(
    monkeypatch: pytest.MonkeyPatch, fmt: str, orientation: int
) -> None:
    """At the pixel limit each full-size RGBA frame is 358 MB. While the variants encode, neither the decoder's
    frame (nor libwebp's canvas behind a WebP reader) nor, for EXIF orientation 6, the frame as stored may be
    alive beside the upright one."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    options = {"exif": exif.tobytes(), **({"lossless": True} if fmt == "WEBP" else {})}
    data = encoded(Image.new("RGBA", (300, 200), (200, 30, 30, 128)), fmt, **options)
    upright_size = (200, 300) if orientation == 6 else (300, 200)
    seen: list[tuple[int, int, int]] = []
    save = pipeline.save_prepared

    def counting(image: Image.Image, spec: VariantSpec) -> bytes:
        gc.collect()
        seen.append((_live_decoders(), _live_frames_of_size((300, 200)), _live_frames_of_size((200, 300))))
        return save(image, spec)

    monkeypatch.setattr(pipeline, "save_prepared", counting)
    variants = render(data, PRESETS["default"], workers=1)
    assert {(v.width, v.height) for v in variants if v.name != "thumbnail"} == {upright_size}
    assert seen
    if fmt == "WEBP" or orientation == 6:  # a PNG reader left open holds only the frame being encoded
        assert all(decoders == 0 for decoders, _, _ in seen), seen
    if orientation == 6:
        assert all(as_stored == 0 for _, as_stored, _ in seen), seen
    assert max(max(frames) for _, *frames in seen) <= 2, "the upright frame and at most one prepared copy (JPEG's RGB)"


@pytest.mark.parametrize(("digits", "upright_size"), [(b"1" * 5000, (60, 40)), (b"0" * 5000 + b"6", (40, 60))])
def test_an_xmp_orientation_of_thousands_of_digits_is_read_not_a_crash(
    digits: bytes, upright_size: tuple[int, int]
) -> None:
    """int() refuses over 4300 digits: a long one is out of range (upright), leading zeros are still a number."""
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation> ' + digits + b"</rdf:Description>"
    data = encoded(Image.new("RGB", (60, 40), (200, 100, 50)), "JPEG", xmp=xmp)
    [variant] = render(data, [PNG_FULL])
    assert (variant.width, variant.height) == upright_size
