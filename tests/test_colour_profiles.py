"""Which profile describes the pixels: grey profiles on colour, profiles merely named sRGB, PNG gAMA/cHRM."""

from __future__ import annotations

import io
import logging
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageCms

from handler import cicp
from handler.colour import to_srgb
from handler.pipeline import render
from handler.variants import VariantSpec
from tests.test_pipeline_generated import icc_profile

PNG_ONLY = [VariantSpec("png", "png")]
QUADRANTS = ((220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 230, 230))
GREY_GAMMA_22 = icc_profile(b"GRAY", "Gray Gamma 2.2", 2.2)
GREY_LINEAR = icc_profile(b"GRAY", "Linear grey", 1.0)
# sRGB's colorants adapted to D50, as Elle Stone's profiles (shipped with Krita) carry them.
SRGB_D50 = ((0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141))
SRGB_PRIMARIES = cicp.PRIMARIES[cicp.SRGB_PRIMARIES]


def picture(mode: str = "RGB") -> Image.Image:
    """Four flat quadrants: red, green, blue, light grey (RGBA: alpha 200)."""
    image = Image.new("RGB", (64, 48))
    for index, colour in enumerate(QUADRANTS):
        left, top = 32 * (index % 2), 24 * (index // 2)
        image.paste(colour, (left, top, left + 32, top + 24))
    if mode == "RGBA":
        image.putalpha(200)
    return image


def grey_ramp(mode: str) -> Image.Image:
    """Every grey level as L, or as LA / widened to RGB(A) (what Pillow makes of a 16-bit grey+alpha PNG)."""
    grey = Image.new("L", (256, 1))
    grey.putdata(list(range(256)))
    if "A" in mode:
        grey = Image.merge("LA", (grey, Image.new("L", grey.size, 200)))
    return grey if mode in ("L", "LA") else grey.convert(mode)


def littlecms(image: Image.Image, icc: bytes, mode: str) -> bytes:
    """What LittleCMS makes of `image` (in `mode`) through `icc`, perceptual, to sRGB RGB."""
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    transform = ImageCms.buildTransform(
        source, ImageCms.createProfile("sRGB"), mode, "RGB", renderingIntent=ImageCms.Intent.PERCEPTUAL
    )
    return transform.apply(image.convert(mode)).tobytes()


def srgb_level(light: float) -> int:
    encoded = light * 12.92 if light <= 0.0031308 else 1.055 * light ** (1 / 2.4) - 0.055
    return round(encoded * 255)


def encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def decoded_quadrants(data: bytes) -> list[tuple[int, ...]]:
    """Centre colour of each quadrant of the first rendered variant (RGB)."""
    variant = Image.open(io.BytesIO(data)).convert("RGB")
    width, height = variant.size
    return [variant.getpixel((width * x // 4, height * y // 4)) for y in (1, 3) for x in (1, 3)]


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_with_chunks(image: Image.Image, *chunks: bytes) -> bytes:
    """A PNG of `image` with these chunks right after IHDR (Pillow writes no gAMA or cHRM of its own)."""
    data = encoded(image, "PNG")
    after_ihdr = 8 + 25
    return data[:after_ihdr] + b"".join(chunks) + data[after_ihdr:]


def gama(file_gamma: int) -> bytes:
    return png_chunk(b"gAMA", struct.pack(">I", file_gamma))


def chrm(white: tuple[float, float], *primaries: tuple[float, float]) -> bytes:
    return png_chunk(b"cHRM", struct.pack(">8I", *(round(v * 100_000) for point in (white, *primaries) for v in point)))


# --- a grey profile on colour pixels ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_grey_profile_on_colour_pixels_is_ignored_with_a_warning(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    image = picture(mode)

    with caplog.at_level(logging.WARNING, logger="handler.colour"):
        out = to_srgb(image, GREY_GAMMA_22)

    assert out.mode == mode
    assert out.tobytes() == image.tobytes(), "the colours are kept, not turned grey"
    assert f"ignoring ICC profile for L pixels on a {mode} image" in caplog.text


@pytest.mark.parametrize(
    ("fmt", "params"), [("PNG", {}), ("JPEG", {"quality": 95}), ("WEBP", {"lossless": True}), ("TIFF", {})]
)
def test_upload_in_colour_with_a_grey_profile_keeps_its_colours(fmt: str, params: dict[str, object]) -> None:
    data = encoded(picture(), fmt, icc_profile=GREY_GAMMA_22, **params)

    quadrants = decoded_quadrants(render(data, PNG_ONLY)[0].data)

    for got, expected in zip(quadrants, QUADRANTS, strict=True):
        assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) <= 3, (got, expected)


@pytest.mark.parametrize(("mode", "decoded"), [("L", "L"), ("LA", "LA"), ("RGB", "L"), ("RGBA", "LA")])
def test_grey_profile_on_grey_pixels_is_applied(mode: str, decoded: str) -> None:
    """Grey pixels, or grey a decoder widened to RGB(A), go through the grey profile."""
    image = grey_ramp(mode)

    out = to_srgb(image, GREY_LINEAR)

    assert out.mode == ("RGBA" if "A" in mode else "RGB")
    assert out.convert("RGB").tobytes() == littlecms(grey_ramp(decoded), GREY_LINEAR, "L")
    assert out.convert("RGB").tobytes() != image.convert("RGB").tobytes()


def test_sixteen_bit_grey_alpha_png_gets_its_grey_profile(hostile_dir: Path) -> None:
    """Pillow decodes a 16-bit grey+alpha PNG to RGBA; its grey iCCP still applies, as to the same pixels in LA."""
    image = Image.open(hostile_dir / "sharp_16-bit-grey-alpha.png")
    image.load()
    icc = image.info["icc_profile"]
    assert image.mode == "RGBA"

    out = to_srgb(image, icc)

    as_grey = Image.merge("LA", (image.getchannel("R"), image.getchannel("A")))
    assert out.tobytes() == to_srgb(as_grey, icc).tobytes()


# --- profiles named sRGB, and profiles that are sRGB ------------------------------------------------------------


@pytest.mark.parametrize(
    ("description", "gamma"),
    [("sRGB-elle-V2-g10.icc", 1.0), ("sRGB-elle-V4-g18.icc", 1.8), ("sRGB IEC61966-2.1", 2.2)],
    ids=["krita-linear", "krita-g18", "gamma-2.2-named-like-srgb"],
)
def test_profile_named_srgb_that_is_not_srgb_is_applied(description: str, gamma: float) -> None:
    icc = icc_profile(b"RGB", description, gamma, SRGB_D50)
    image = picture()

    out = to_srgb(image, icc)

    assert out.tobytes() == littlecms(image, icc, "RGB") != image.tobytes()


def test_krita_linear_srgb_red_comes_out_as_littlecms_gives_it() -> None:
    out = to_srgb(picture(), icc_profile(b"RGB", "sRGB-elle-V2-g10.icc", 1.0, SRGB_D50))

    assert out.getpixel((8, 8)) == (239, 110, 110)


def _hp_srgb(hostile_dir: Path) -> bytes:
    """The IEC61966-2.1 profile cameras and Photoshop embed (HP/Microsoft, 3144 bytes, 1024-point curves)."""
    return Image.open(hostile_dir / "pillow_hopper.psd").info["icc_profile"]


def _littlecms_srgb(_: Path) -> bytes:
    """LittleCMS's own sRGB: a compact v4 profile with parametric curves."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _srgb_named_otherwise(_: Path) -> bytes:
    """sRGB's primaries and curve under another name: the name is not what counts."""
    return cicp.matrix_profile("Camera RGB", SRGB_PRIMARIES, cicp.TRANSFERS[cicp.SRGB_TRANSFER])


@pytest.mark.parametrize("make", [_hp_srgb, _littlecms_srgb, _srgb_named_otherwise], ids=["iec61966", "v4", "unnamed"])
def test_real_srgb_profiles_skip_the_transform(make: Callable[[Path], bytes], hostile_dir: Path) -> None:
    icc = make(hostile_dir)
    image = picture()

    assert to_srgb(image, icc) is image, "no transform, not even a copy"
    assert max(abs(a - b) for a, b in zip(littlecms(image, icc, "RGB"), image.tobytes(), strict=True)) <= 1


# --- PNG gAMA and cHRM ---------------------------------------------------------------------------------------------


def test_pillow_reports_png_gama_and_chrm() -> None:
    data = png_with_chunks(picture(), gama(100_000), chrm((0.3127, 0.329), (0.64, 0.33), (0.3, 0.6), (0.15, 0.06)))

    info = Image.open(io.BytesIO(data)).info

    assert info["gamma"] == 1.0
    assert info["chromaticity"] == (0.3127, 0.329, 0.64, 0.33, 0.3, 0.6, 0.15, 0.06)
    assert "icc_profile" not in info
    assert "srgb" not in info


@pytest.mark.parametrize("file_gamma", [0.45455, 0.4545, 0.4319, 0.4772])
def test_png_gamma_near_one_over_2_2_is_srgb(file_gamma: float) -> None:
    assert cicp.png_gamma_profile(file_gamma) is None
    assert cicp.png_gamma_profile(file_gamma, (0.3127, 0.329, 0.64, 0.33, 0.3, 0.6, 0.15, 0.06)) is None


@pytest.mark.parametrize("file_gamma", [1.0, 0.55556, 0.4317, 0.4774])
def test_png_gamma_away_from_one_over_2_2_is_a_pure_power_curve_on_srgb_primaries(file_gamma: float) -> None:
    profile = cicp.png_gamma_profile(file_gamma)
    assert profile is not None
    image = Image.new("RGB", (256, 1))
    image.putdata([(v, v, v) for v in range(256)])

    out = to_srgb(image, profile)

    expected = [srgb_level((v / 255) ** (1 / file_gamma)) for v in range(256)]
    assert max(abs(p[0] - e) for p, e in zip(out.get_flattened_data(), expected, strict=True)) <= 1
    colorants = ImageCms.ImageCmsProfile(io.BytesIO(profile)).profile.red_colorant[0]
    assert colorants == pytest.approx(SRGB_D50[0], abs=2e-3)


def test_linear_png_gama_brightens_as_in_a_browser() -> None:
    data = png_with_chunks(picture(), gama(100_000))
    image = Image.open(io.BytesIO(data))

    out = to_srgb(image, cicp.png_gamma_profile(image.info["gamma"], image.info.get("chromaticity")))

    assert out.getpixel((8, 8)) == pytest.approx((239, 110, 110), abs=1)


def test_png_chrm_gives_the_primaries() -> None:
    bt2020 = cicp.PRIMARIES[9]
    red, green, blue, white = bt2020
    chromaticity = (*white, *red, *green, *blue)

    profile = cicp.png_gamma_profile(0.45455, chromaticity)

    assert profile is not None
    colorants = ImageCms.ImageCmsProfile(io.BytesIO(profile)).profile
    matrix = cicp.rgb_to_xyz_d50(bt2020)
    assert colorants.green_colorant[0] == pytest.approx([row[1] for row in matrix], abs=1e-4)
    assert to_srgb(picture(), profile).tobytes() != picture().tobytes()


@pytest.mark.parametrize(
    ("file_gamma", "chromaticity", "message"),
    [
        (0.0, None, "ignoring PNG gAMA 0.0"),
        (7000.0, None, "ignoring PNG gAMA 7000.0"),
        (0.45455, (0.0,) * 8, "ignoring PNG cHRM"),
        (0.45455, (0.3127, 0.329, 0.5, 0.3, 0.5, 0.3, 0.5, 0.3), "ignoring PNG cHRM"),  # all three primaries alike
    ],
    ids=["gamma-zero", "gamma-huge", "chrm-zero", "chrm-collinear"],
)
def test_png_values_libpng_rejects_are_ignored_with_a_warning(
    file_gamma: float, chromaticity: tuple[float, ...] | None, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="handler.cicp"):
        assert cicp.png_gamma_profile(file_gamma, chromaticity) is None
        assert cicp.png_gamma_profile(file_gamma, chromaticity) is None
    assert caplog.text.count(message) == 2, "logged for every upload, not once per container"


def test_ordinary_png_with_gama_45455_renders_to_the_same_bytes() -> None:
    plain = encoded(picture(), "PNG")
    with_gama = png_with_chunks(picture(), gama(45455))
    with_gama_and_srgb_chrm = png_with_chunks(
        picture(), gama(45455), chrm((0.3127, 0.329), (0.64, 0.33), (0.3, 0.6), (0.15, 0.06))
    )

    expected = render(plain, PNG_ONLY)[0].data
    assert render(with_gama, PNG_ONLY)[0].data == expected
    assert render(with_gama_and_srgb_chrm, PNG_ONLY)[0].data == expected


# --- PNG gAMA through the pipeline ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_gamma", "red"),
    [(100_000, (239, 110, 110)), (55_556, (227, 53, 53))],
    ids=["linear", "gamma-1.8"],
)
def test_png_gama_alone_is_applied_on_srgb_primaries(file_gamma: int, red: tuple[int, int, int]) -> None:
    data = png_with_chunks(picture(), gama(file_gamma))

    quadrants = decoded_quadrants(render(data, PNG_ONLY)[0].data)

    assert quadrants[0] == pytest.approx(red, abs=1)


def test_png_gama_is_ignored_beside_an_srgb_or_iccp_chunk() -> None:
    plain = render(png_with_chunks(picture()), PNG_ONLY)[0].data
    with_srgb = png_with_chunks(picture(), gama(100_000), png_chunk(b"sRGB", b"\0"))
    assert render(with_srgb, PNG_ONLY)[0].data == plain


def test_grey_png_with_linear_gama_is_brightened() -> None:
    grey = Image.new("L", (64, 48), 40)
    data = png_with_chunks(grey, gama(100_000))

    quadrants = decoded_quadrants(render(data, PNG_ONLY)[0].data)

    assert quadrants[0] == pytest.approx((110, 110, 110), abs=1)


def test_png_chrm_with_gama_uses_its_primaries() -> None:
    bt2020 = chrm((0.3127, 0.329), (0.708, 0.292), (0.17, 0.797), (0.131, 0.046))
    data = png_with_chunks(picture(), gama(45455), bt2020)

    quadrants = decoded_quadrants(render(data, PNG_ONLY)[0].data)

    assert quadrants[0][0] == 255 and quadrants[0][1] < 40  # BT.2020 red is beyond sRGB's: clipped, more saturated
