"""Colour described by H.273 code points (AVIF/HEIF `nclx`, PNG `cICP`): found, turned into ICC, applied."""

from __future__ import annotations

import io
import logging
import random
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageCms

from handler import cicp, sniff
from handler.pipeline import render
from handler.sniff import CodePoints
from handler.variants import VariantSpec

PNG_ONLY = [VariantSpec("png", "png")]


def display_p3_icc(hostile_dir: Path) -> bytes:
    return Image.open(hostile_dir / "sharp_p3.png").info["icc_profile"]


def transformed(profile: bytes, image: Image.Image) -> list[tuple[int, ...]]:
    source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    transform = ImageCms.buildTransform(source, ImageCms.createProfile("sRGB"), "RGB", "RGB")
    return list(transform.apply(image).get_flattened_data())


def colour_noise() -> Image.Image:
    return Image.frombytes("RGB", (64, 64), random.Random(7).randbytes(64 * 64 * 3))


def greys() -> Image.Image:
    image = Image.new("RGB", (256, 1))
    image.putdata([(v, v, v) for v in range(256)])
    return image


def srgb_level(linear: float) -> int:
    encoded = linear * 12.92 if linear <= 0.0031308 else 1.055 * linear ** (1 / 2.4) - 0.055
    return round(encoded * 255)


# --- profiles ------------------------------------------------------------------------------------------------


def test_colorant_matrix_matches_littlecms_srgb_and_a_real_display_p3_profile(hostile_dir: Path) -> None:
    srgb = ImageCms.createProfile("sRGB")
    p3 = ImageCms.ImageCmsProfile(io.BytesIO(display_p3_icc(hostile_dir))).profile
    for primaries, reference in ((1, srgb), (12, p3)):
        matrix = cicp.rgb_to_xyz_d50(cicp.PRIMARIES[primaries])
        for column, colorant in enumerate((reference.red_colorant, reference.green_colorant, reference.blue_colorant)):
            expected = colorant[0]
            got = [row[column] for row in matrix]
            # Apple's profile clamps red's tiny negative Z (-0.001) to 0.
            assert got == pytest.approx(expected, abs=2e-3), (primaries, column)


def test_display_p3_code_points_convert_like_the_display_p3_icc_profile(hostile_dir: Path) -> None:
    image = colour_noise()
    from_points = transformed(cicp.profile_for(CodePoints(12, 13, 0, True)), image)
    from_icc = transformed(display_p3_icc(hostile_dir), image)
    differences = [
        max(abs(a - b) for a, b in zip(p, q, strict=True)) for p, q in zip(from_points, from_icc, strict=True)
    ]
    assert sum(differences) / len(differences) < 0.5
    assert sum(d <= 2 for d in differences) / len(differences) > 0.99  # the rest: clipped oranges, 3-5 levels
    assert from_points != list(image.get_flattened_data()), "P3 pixels must change on the way to sRGB"


@pytest.mark.parametrize(
    "points",
    [CodePoints(1, 13, 0, True), CodePoints(2, 2, 0, True), CodePoints(1, 2, 0, True), CodePoints(2, 13, 0, True)],
)
def test_srgb_or_unspecified_needs_no_profile(points: CodePoints) -> None:
    assert cicp.profile_for(points) is None


@pytest.mark.parametrize(
    ("transfer", "to_linear"),
    [(1, lambda v: v**2.4), (14, lambda v: v**2.4), (4, lambda v: v**2.2), (8, lambda v: v)],
    ids=["bt709-as-bt1886", "bt2020-10bit", "gamma-2.2", "linear"],
)
def test_sdr_transfers_are_their_display_curves(transfer: int, to_linear) -> None:
    out = transformed(cicp.profile_for(CodePoints(1, transfer, 6, True)), greys())
    for level in (32, 64, 128, 192, 255):
        assert out[level][0] == pytest.approx(srgb_level(to_linear(level / 255)), abs=1), level


def test_pq_and_hlg_map_hdr_reference_white_near_sdr_white_and_keep_shadows() -> None:
    pq = [p[0] for p in transformed(cicp.profile_for(CodePoints(9, 16, 9, True)), greys())]
    hlg = [p[0] for p in transformed(cicp.profile_for(CodePoints(9, 18, 9, True)), greys())]
    for curve in (pq, hlg):
        assert curve[0] == 0
        assert curve[255] == 255
        assert curve == sorted(curve), "tone curve must never invert"
    # 203 cd/m² (PQ 0.58, HLG 0.75) is HDR reference white: just under SDR white after the highlight shoulder.
    assert 240 <= pq[148] <= 250
    assert abs(hlg[191] - pq[148]) <= 2
    # PQ 0.508 is 100 cd/m² (ST 2084): below the shoulder, shown as 100/203 of SDR white.
    assert srgb_level(100 / 203) <= pq[130] <= srgb_level(103 / 203) + 1


@pytest.mark.parametrize(
    ("points", "named"),
    [(CodePoints(10, 13, 0, True), "primaries 10"), (CodePoints(1, 17, 6, True), "characteristics 17")],
)
def test_unsupported_codes_are_named(points: CodePoints, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        cicp.profile_for(points)


def test_narrow_range_is_expanded_in_the_curve() -> None:
    srgb_narrow = transformed(cicp.profile_for(CodePoints(1, 13, 0, False)), greys())
    assert [srgb_narrow[v][0] for v in (0, 16, 235, 255)] == [0, 0, 255, 255]
    assert srgb_narrow[126][0] == pytest.approx((126 - 16) * 255 / 219, abs=1)
    pq_full = [p[0] for p in transformed(cicp.profile_for(CodePoints(9, 16, 0, True)), greys())]
    pq_narrow = [p[0] for p in transformed(cicp.profile_for(CodePoints(9, 16, 0, False)), greys())]
    assert pq_narrow[round(16 + 148 / 255 * 219)] == pytest.approx(pq_full[148], abs=2)


def test_icc_header_fields_sit_where_icc_1_puts_them() -> None:
    profile = cicp.profile_for(CodePoints(12, 13, 0, True))
    assert struct.unpack_from(">I", profile)[0] == len(profile)
    assert profile[12:24] == b"mntrRGB XYZ " and profile[36:40] == b"acsp"
    assert struct.unpack_from(">I", profile, 64)[0] == 0  # rendering intent
    assert [v / 65536 for v in struct.unpack_from(">3i", profile, 68)] == pytest.approx([0.9642, 1.0, 0.8249], abs=1e-4)
    assert profile[80:128] == bytes(48)  # creator, profile ID, reserved
    tags = struct.unpack_from(">I", profile, 128)[0]
    for n in range(tags):
        _, offset, size = struct.unpack_from(">4sII", profile, 132 + 12 * n)
        assert offset % 4 == 0 and offset + size <= len(profile)


def test_profiles_are_deterministic_and_not_mistaken_for_srgb() -> None:
    points = CodePoints(9, 16, 9, True)
    profile = cicp.profile_for(points)
    assert profile == cicp.profile_for.__wrapped__(points)  # built again, uncached
    description = ImageCms.ImageCmsProfile(io.BytesIO(profile)).profile.profile_description
    assert description == "H.273 primaries 9, transfer 16"


# --- finding the code points ---------------------------------------------------------------------------------


def box(kind: bytes, payload: bytes, full: bool = False, version: int = 0, flags: int = 0) -> bytes:
    head = bytes([version]) + flags.to_bytes(3, "big") if full else b""
    return struct.pack(">I4s", 8 + len(head) + len(payload), kind) + head + payload


def nclx(primaries: int, transfer: int, matrix: int = 6, full_range: bool = True) -> bytes:
    return box(b"colr", b"nclx" + struct.pack(">HHHB", primaries, transfer, matrix, 0x80 if full_range else 0))


def heif_meta(
    primary: int,
    properties: list[bytes],
    associations: dict[int, list[int]],
    ipma_version: int = 0,
    ipma_flags: int = 0,
    *,
    derived: dict[int, list[int]] | None = None,
) -> bytes:
    """ftyp + meta: primary item, property container, item -> 1-based property associations, `dimg` references."""
    id_format = ">H" if ipma_version == 0 else ">I"
    index_format = ">H" if ipma_flags & 1 else ">B"
    entries = b"".join(
        struct.pack(id_format, item) + bytes([len(indices)]) + b"".join(struct.pack(index_format, i) for i in indices)
        for item, indices in associations.items()
    )
    ipma = box(b"ipma", struct.pack(">I", len(associations)) + entries, True, ipma_version, ipma_flags)
    references = b"".join(
        box(b"dimg", struct.pack(">HH", item, len(sources)) + b"".join(struct.pack(">H", s) for s in sources))
        for item, sources in (derived or {}).items()
    )
    meta = box(
        b"meta",
        box(b"pitm", struct.pack(">H", primary), True)
        + (box(b"iref", references, True) if derived else b"")
        + box(b"iprp", box(b"ipco", b"".join(properties)) + ipma),
        True,
    )
    return box(b"ftyp", b"avif" + bytes(4) + b"mif1avif") + meta


@pytest.mark.parametrize(("ipma_version", "ipma_flags"), [(0, 0), (1, 1)], ids=["short", "wide"])
def test_the_primary_items_nclx_is_the_one_read(ipma_version: int, ipma_flags: int) -> None:
    properties = [nclx(1, 13), nclx(12, 16, 9)]
    essential = 0x8000 if ipma_flags & 1 else 0x80
    associations = {1: [1 | essential], 2: [2]}  # item 1: sRGB (e.g. a thumbnail); item 2: P3 PQ
    data = heif_meta(2, properties, associations, ipma_version, ipma_flags)
    assert sniff.colour_code_points(data) == CodePoints(12, 16, 0, True)
    assert sniff.colour_code_points(heif_meta(1, properties, associations, ipma_version, ipma_flags)) == CodePoints(
        1, 13, 0, True
    )


def test_an_icc_colour_property_on_the_primary_item_wins_over_nclx() -> None:
    properties = [nclx(9, 16), box(b"colr", b"prof" + b"\0" * 32)]
    assert sniff.colour_code_points(heif_meta(1, properties, {1: [1, 2]})) is None
    assert sniff.colour_code_points(heif_meta(1, properties, {1: [1], 2: [2]})) == CodePoints(9, 16, 0, True)


def test_a_grid_without_colour_takes_its_first_tiles() -> None:
    properties = [nclx(12, 13), nclx(9, 16), box(b"ispe", bytes(12))]
    # Item 1 is a grid of tiles 2 and 3; only the tiles carry colour.
    grid = heif_meta(1, properties, {1: [3], 2: [1], 3: [2]}, derived={1: [2, 3]})
    assert sniff.colour_code_points(grid) == CodePoints(12, 13, 0, True)
    own = heif_meta(1, properties, {1: [2, 3], 2: [1], 3: [1]}, derived={1: [2, 3]})
    assert sniff.colour_code_points(own) == CodePoints(9, 16, 0, True)
    # A primary with no colour and nothing it is derived from is sRGB by default (MIAF), whatever else the file has.
    assert sniff.colour_code_points(heif_meta(1, properties, {1: [3], 2: [1]})) is None


def test_cut_or_shrunken_boxes_never_raise() -> None:
    data = heif_meta(2, [nclx(1, 13), nclx(12, 16, 9)], {1: [1], 2: [2]}, 1, 1, derived={2: [1]})
    assert sniff.colour_code_points(data) == CodePoints(12, 16, 0, True)
    for end in range(len(data)):
        sniff.colour_code_points(data[:end])
    for kind in (b"meta", b"pitm", b"iref", b"dimg", b"iprp", b"ipco", b"colr", b"ipma"):
        at = data.index(kind) - 4
        for size in range(16):  # too short for the box's own fields, or for its header
            sniff.colour_code_points(data[:at] + struct.pack(">I", size) + data[at + 4 :])
    # Boxes with no payload at all, the last bytes of the file.
    for empty in (b"pitm", b"ipma"):
        others = box(b"pitm", struct.pack(">H", 1), True) if empty == b"ipma" else b""
        ipco = box(b"ipco", nclx(12, 13))
        tail = box(empty, b"")
        meta = box(b"meta", others + box(b"iprp", ipco + tail) if empty == b"ipma" else box(b"iprp", ipco) + tail, True)
        assert sniff.colour_code_points(box(b"ftyp", b"avif" + bytes(4) + b"mif1avif") + meta) == CodePoints(
            12, 13, 0, True
        )


def test_without_associations_the_containers_nclx_is_read() -> None:
    data = heif_meta(1, [nclx(12, 13)], {})  # an ipma naming no items: the primary's properties are unknown
    assert sniff.colour_code_points(data) == CodePoints(12, 13, 0, True)


def saved_avif(primaries: int | None = None, transfer: int | None = None, **params: object) -> bytes:
    """A real AVIF (Pillow, libavif) whose `nclx` box is patched to these codes; decoding is unaffected."""
    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), (200, 60, 40)).save(buffer, "AVIF", quality=90, **params)
    data = bytearray(buffer.getvalue())
    at = data.index(b"colrnclx") + 8
    if primaries is not None:
        data[at : at + 2] = primaries.to_bytes(2, "big")
    if transfer is not None:
        data[at + 2 : at + 4] = transfer.to_bytes(2, "big")
    return bytes(data)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_with_cicp(cicp_payload: bytes | None, image: Image.Image | None = None, **params: object) -> bytes:
    """A PNG (greys unless `image` is given) with a `cICP` chunk of these four bytes after IHDR, or none."""
    buffer = io.BytesIO()
    (image or greys().resize((256, 4))).save(buffer, "PNG", **params)
    data = buffer.getvalue()
    if cicp_payload is None:
        return data
    return data[:33] + png_chunk(b"cICP", cicp_payload) + data[33:]  # after the signature and IHDR


def test_png_cicp_is_read_and_invalid_png_codes_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    assert sniff.colour_code_points(png_with_cicp(bytes([9, 16, 0, 1]))) == CodePoints(9, 16, 0, True)
    assert sniff.colour_code_points(png_with_cicp(bytes([9, 16, 0, 0]))) == CodePoints(9, 16, 0, False)
    with caplog.at_level(logging.WARNING, logger="handler.sniff"):
        assert sniff.colour_code_points(png_with_cicp(bytes([9, 16, 9, 1]))) is None
        assert sniff.colour_code_points(png_with_cicp(bytes([1, 13, 0, 2]))) is None
    assert "matrix 9" in caplog.text
    assert "range flag 2" in caplog.text


def test_containers_without_code_points_have_none(hostile_dir: Path) -> None:
    assert sniff.colour_code_points((hostile_dir / "sharp_p3.png").read_bytes()) is None
    assert sniff.colour_code_points((hostile_dir / "govips_heic-24bit.heic").read_bytes()) is None
    assert sniff.colour_code_points((hostile_dir / "sharp_Landscape_1.jpg").read_bytes()) is None


# --- rendering -----------------------------------------------------------------------------------------------


def rendered_pixel(data: bytes) -> tuple[int, ...]:
    return Image.open(io.BytesIO(render(data, PNG_ONLY, workers=1)[0].data)).getpixel((10, 10))


def test_avif_in_display_p3_by_code_points_renders_as_with_the_p3_icc_profile(hostile_dir: Path) -> None:
    srgb = rendered_pixel(saved_avif())
    by_points = rendered_pixel(saved_avif(primaries=12))
    by_icc = rendered_pixel(saved_avif(icc_profile=display_p3_icc(hostile_dir)))
    assert max(abs(a - b) for a, b in zip(by_points, by_icc, strict=True)) <= 1
    assert by_points[0] > srgb[0] + 10, "P3 red is more saturated than the same code values in sRGB"


def test_hdr_png_renders_tone_mapped_not_as_raw_signal() -> None:
    out = Image.open(io.BytesIO(render(png_with_cicp(bytes([9, 16, 0, 1])), PNG_ONLY, workers=1)[0].data))
    row = [out.getpixel((x, 0))[0] for x in range(256)]
    assert row[148] >= 240, "HDR reference white shows near white"
    assert row[64] < 64 - 10, "PQ shadows are darker than the same signal read as sRGB"


def test_unsupported_code_points_warn_and_fall_back(caplog: pytest.LogCaptureFixture, hostile_dir: Path) -> None:
    with caplog.at_level(logging.WARNING, logger="handler.pipeline"):
        assert rendered_pixel(saved_avif(transfer=17)) == rendered_pixel(saved_avif())
    assert "transfer characteristics 17 not supported" in caplog.text
    assert "taking the pixels as sRGB" in caplog.text
    # A PNG's own ICC profile is the fallback when its cICP cannot be used.
    icc, noise = display_p3_icc(hostile_dir), colour_noise()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="handler.pipeline"):
        fallback = render(png_with_cicp(bytes([1, 17, 0, 1]), noise, icc_profile=icc), PNG_ONLY, workers=1)
    assert "the embedded ICC profile" in caplog.text
    icc_only = render(png_with_cicp(None, noise, icc_profile=icc), PNG_ONLY, workers=1)
    untagged = render(png_with_cicp(None, noise), PNG_ONLY, workers=1)
    assert fallback[0].data == icc_only[0].data != untagged[0].data


@pytest.mark.parametrize("mode", ["L", "LA"])
def test_grey_png_with_cicp_is_converted_like_the_same_greys_in_rgb(mode: str) -> None:
    grey = greys().resize((256, 4)).convert("L")
    image = grey if mode == "L" else Image.merge("LA", (grey, Image.new("L", grey.size, 200)))
    as_rgb = image.convert("RGBA" if mode == "LA" else "RGB")
    got = render(png_with_cicp(bytes([9, 16, 0, 1]), image), PNG_ONLY, workers=1)[0]
    expected = render(png_with_cicp(bytes([9, 16, 0, 1]), as_rgb), PNG_ONLY, workers=1)[0]
    assert got.data == expected.data
    assert Image.open(io.BytesIO(got.data)).getpixel((148, 0))[0] >= 240  # tone-mapped, not taken as sRGB


def test_alpha_survives_the_code_point_conversion() -> None:
    buffer = io.BytesIO()
    Image.new("RGBA", (16, 16), (200, 60, 40, 128)).save(buffer, "AVIF", quality=95)
    data = bytearray(buffer.getvalue())
    at = data.index(b"colrnclx") + 8
    plain = Image.open(io.BytesIO(render(bytes(data), PNG_ONLY, workers=1)[0].data)).getpixel((8, 8))
    data[at : at + 2] = (12).to_bytes(2, "big")
    p3 = Image.open(io.BytesIO(render(bytes(data), PNG_ONLY, workers=1)[0].data)).getpixel((8, 8))
    assert p3[3] == plain[3] == 128
    assert p3[0] > plain[0] + 10
