"""ICC profiles for colour described by numbers: H.273 code points (AVIF/HEIF `nclx`, PNG `cICP`), PNG `gAMA`/`cHRM`.

LittleCMS converts from ICC profiles only, so code points become a small matrix/TRC display
profile: the primaries' RGB -> XYZ matrix adapted to D50 (Bradford), and one tone curve. The SDR
curves are the displays' (EOTFs): BT.709-family transfers as BT.1886's gamma 2.4, as Chromium shows
them. HDR (PQ, HLG) is rendered for SDR outputs: HDR reference white (203 cd/m², ITU-R BT.2408)
becomes just under SDR white (0.93), with highlights rolled off smoothly below white instead of
clipped. A matrix/TRC profile applies its curve to each channel, so HLG's system gamma is too:
exact for greys, an approximation for saturated colours. Narrow-range signals (16..235) are
expanded in the same curve. Pure Python: one profile per distinct description (cached).

A PNG's `gAMA` (with `cHRM`, if any) is read as Chromium reads it when the PNG has no `cICP`, `sRGB`
or `iCCP` chunk: a pure power curve, on the `cHRM` primaries or else sRGB's. A file gamma within 5 %
of 1/2.2 without `cHRM` means sRGB (libpng's PNG_GAMMA_THRESHOLD, as in Chromium), and so does one
with `cHRM` naming sRGB's primaries (Chromium applies gamma 2.2 there, up to 9 levels darker in deep
shadows): ordinary PNGs from tools that write gAMA 45455 keep their bytes.
"""

from __future__ import annotations

import functools
import logging
import math
import struct
from collections.abc import Callable

from handler.sniff import CodePoints

LOG = logging.getLogger(__name__)

SRGB_PRIMARIES = 1
SRGB_TRANSFER = 13
UNSPECIFIED = 2

# H.273 table 2: x, y of red, green, blue and white.
_D65 = (0.3127, 0.3290)
_ILLUMINANT_C = (0.310, 0.316)
PRIMARIES: dict[int, tuple[tuple[float, float], ...]] = {
    1: ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060), _D65),  # BT.709, sRGB
    4: ((0.67, 0.33), (0.21, 0.71), (0.14, 0.08), _ILLUMINANT_C),  # BT.470 System M
    5: ((0.64, 0.33), (0.29, 0.60), (0.15, 0.06), _D65),  # BT.601 625 lines
    6: ((0.630, 0.340), (0.310, 0.595), (0.155, 0.070), _D65),  # BT.601 525 lines
    7: ((0.630, 0.340), (0.310, 0.595), (0.155, 0.070), _D65),  # SMPTE 240M
    8: ((0.681, 0.319), (0.243, 0.692), (0.145, 0.049), _ILLUMINANT_C),  # generic film
    9: ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046), _D65),  # BT.2020, BT.2100
    11: ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060), (0.314, 0.351)),  # DCI-P3 (SMPTE RP 431-2)
    12: ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060), _D65),  # Display P3 (SMPTE EG 432-1)
    22: ((0.630, 0.340), (0.295, 0.605), (0.155, 0.077), _D65),  # EBU Tech. 3213-E
}

_REFERENCE_WHITE_NITS = 203.0
_KNEE = 0.8
"""HDR light up to this fraction of SDR white is kept as it is; brighter light is compressed below white."""
_CURVE_POINTS = 4096


def _srgb(value: float) -> float:
    return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4


def _roll_off(relative: float) -> float:
    """Light relative to SDR white -> 0..1: identity up to the knee, then an exponential shoulder (same slope)."""
    if relative <= _KNEE:
        return relative
    return _KNEE + (1 - _KNEE) * (1 - math.exp(-(relative - _KNEE) / (1 - _KNEE)))


def _pq(value: float) -> float:
    """SMPTE ST 2084 EOTF: signal -> cd/m², rendered for SDR."""
    m1, m2 = 2610 / 16384, 2523 / 4096 * 128
    c1, c2, c3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    power = value ** (1 / m2)
    nits = 10000 * (max(power - c1, 0.0) / (c2 - c3 * power)) ** (1 / m1)
    return _roll_off(nits / _REFERENCE_WHITE_NITS)


def _hlg(value: float) -> float:
    """ARIB STD-B67 inverse OETF, then the system gamma of a 1000 cd/m² display (1.2) per channel, rendered for SDR."""
    a = 0.17883277
    b, c = 1 - 4 * a, 0.5 - a * math.log(4 * a)
    scene = value * value / 3 if value <= 0.5 else (math.exp((value - c) / a) + b) / 12
    return _roll_off(1000 * scene**1.2 / _REFERENCE_WHITE_NITS)


def _gamma(exponent: float) -> Callable[[float], float]:
    return lambda value: value**exponent


# H.273 table 3 transfer -> signal (0..1) to display light (0..1 of SDR white).
TRANSFERS: dict[int, Callable[[float], float]] = {
    1: _gamma(2.4),  # BT.709
    4: _gamma(2.2),  # BT.470 System M
    5: _gamma(2.8),  # BT.470 System BG
    6: _gamma(2.4),  # BT.601
    8: _gamma(1.0),  # linear
    13: _srgb,  # sRGB (IEC 61966-2-1)
    14: _gamma(2.4),  # BT.2020 10-bit
    15: _gamma(2.4),  # BT.2020 12-bit
    16: _pq,  # BT.2100 PQ
    18: _hlg,  # BT.2100 HLG
}


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float]:
    """x with matrix . x = vector (3x3, Cramer's rule)."""

    def det(m: list[list[float]]) -> float:
        return (
            m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
        )

    whole = det(matrix)
    replaced = ([[vector[r] if c == k else matrix[r][c] for c in range(3)] for r in range(3)] for k in range(3))
    return [det(m) / whole for m in replaced]


def _product(a: list[list[float]], b: list[list[float]]) -> list[list[float]]:
    return [[sum(a[r][k] * b[k][c] for k in range(3)) for c in range(3)] for r in range(3)]


def _xyz(x: float, y: float) -> list[float]:
    return [x / y, 1.0, (1 - x - y) / y]


_D50_XYZ = [0.9642, 1.0, 0.8249]
_BRADFORD = [[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]]


def rgb_to_xyz_d50(primaries: tuple[tuple[float, float], ...]) -> list[list[float]]:
    """RGB -> XYZ (D50-adapted, Bradford) for primaries and white given as x, y: the ICC colorant matrix."""
    red, green, blue, white = (_xyz(*point) for point in primaries)
    columns = [[red[r], green[r], blue[r]] for r in range(3)]
    scale = _solve(columns, white)
    to_xyz = [[columns[r][c] * scale[c] for c in range(3)] for r in range(3)]
    source_cone = [sum(_BRADFORD[r][k] * white[k] for k in range(3)) for r in range(3)]
    target_cone = [sum(_BRADFORD[r][k] * _D50_XYZ[k] for k in range(3)) for r in range(3)]
    inverse = [_solve(_BRADFORD, [1.0 if r == c else 0.0 for r in range(3)]) for c in range(3)]
    bradford_inverse = [[inverse[c][r] for c in range(3)] for r in range(3)]
    gain = [[target_cone[r] / source_cone[r] if r == c else 0.0 for c in range(3)] for r in range(3)]
    adapt = _product(bradford_inverse, _product(gain, _BRADFORD))
    return _product(adapt, to_xyz)


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz_tag(xyz: list[float]) -> bytes:
    return b"XYZ " + bytes(4) + b"".join(_s15(v) for v in xyz)


def _narrow_to_full(value: float) -> float:
    """8-bit narrow range (16..235, H.273's video range) -> 0..1."""
    return min(max((value * 255 - 16) / 219, 0.0), 1.0)


def _curve_tag(curve: Callable[[float], float]) -> bytes:
    points = [round(min(max(curve(i / (_CURVE_POINTS - 1)), 0.0), 1.0) * 65535) for i in range(_CURVE_POINTS)]
    return b"curv" + bytes(4) + struct.pack(f">I{_CURVE_POINTS}H", _CURVE_POINTS, *points)


def _description_tag(text: str) -> bytes:
    """ICC v2 textDescriptionType: ASCII only, empty Unicode and ScriptCode parts."""
    ascii_text = text.encode("ascii") + b"\0"
    return b"desc" + bytes(4) + struct.pack(">I", len(ascii_text)) + ascii_text + bytes(4 + 4 + 2 + 1 + 67)


def _profile(tags: list[tuple[bytes, bytes]]) -> bytes:
    """An ICC v2.1 RGB display profile with these tags; tags with equal data share it."""
    table_end = 128 + 4 + 12 * len(tags)
    table, blobs, offsets = [], b"", {}
    for signature, data in tags:
        if data not in offsets:
            offsets[data] = table_end + len(blobs)
            blobs += data + bytes(-len(data) % 4)
        table.append(struct.pack(">4sII", signature, offsets[data], len(data)))
    size = table_end + len(blobs)
    header = (
        struct.pack(">II", size, 0)
        + bytes([2, 0x10, 0, 0])
        + b"mntrRGB XYZ "
        + bytes(12)  # date: none, so equal descriptions give equal bytes
        + b"acsp"
        + bytes(4 * 6)  # platform, flags, manufacturer, model, attributes (8 bytes)
        + struct.pack(">I", 0)  # rendering intent: perceptual
        + b"".join(_s15(v) for v in _D50_XYZ)
    )
    header += bytes(128 - len(header))
    return header + struct.pack(">I", len(tags)) + b"".join(table) + blobs


def describe(points: CodePoints) -> str:
    narrow = "" if points.full_range else ", narrow range"
    return f"H.273 primaries {points.primaries}, transfer {points.transfer}{narrow}"


@functools.lru_cache(maxsize=16)
def profile_for(points: CodePoints) -> bytes | None:
    """ICC profile for the colour `points` describe; None when that is sRGB already (nothing to convert).

    Raises ValueError naming a primaries or transfer code this does not support.
    """
    primaries = SRGB_PRIMARIES if points.primaries == UNSPECIFIED else points.primaries
    transfer = SRGB_TRANSFER if points.transfer == UNSPECIFIED else points.transfer
    if (primaries, transfer, points.full_range) == (SRGB_PRIMARIES, SRGB_TRANSFER, True):
        return None
    if primaries not in PRIMARIES:
        raise ValueError(f"colour primaries {points.primaries} not supported; supported: {sorted(PRIMARIES)}")
    if transfer not in TRANSFERS:
        raise ValueError(f"transfer characteristics {points.transfer} not supported; supported: {sorted(TRANSFERS)}")
    to_light = TRANSFERS[transfer]
    curve = to_light if points.full_range else lambda value: to_light(_narrow_to_full(value))
    return matrix_profile(describe(points), PRIMARIES[primaries], curve)


def matrix_profile(
    description: str, primaries: tuple[tuple[float, float], ...], curve: Callable[[float], float]
) -> bytes:
    """ICC RGB display profile: `primaries` (x, y of red, green, blue, white) and one curve, signal -> light (0..1)."""
    matrix = rgb_to_xyz_d50(primaries)
    trc = _curve_tag(curve)
    return _profile(
        [
            (b"desc", _description_tag(description)),
            (b"wtpt", _xyz_tag(_D50_XYZ)),
            (b"rXYZ", _xyz_tag([row[0] for row in matrix])),
            (b"gXYZ", _xyz_tag([row[1] for row in matrix])),
            (b"bXYZ", _xyz_tag([row[2] for row in matrix])),
            (b"rTRC", trc),
            (b"gTRC", trc),
            (b"bTRC", trc),
            (b"cprt", b"text" + bytes(4) + b"No copyright, use freely\0"),
        ]
    )


# libpng's accepted gAMA range (png_colorspace_set_gamma), as file gamma: outside it the chunk is ignored.
_PNG_GAMMA_RANGE = (16 / 100_000, 625_000_000 / 100_000)
_PNG_NEUTRAL_GAMMA = 0.05
"""A file gamma whose product with 2.2 is within this of 1 is sRGB's (libpng's PNG_GAMMA_THRESHOLD, Chromium)."""
_PNG_SRGB_CHROMATICITY = 0.001
"""cHRM values within this of sRGB's name sRGB (libpng's tolerance when it checks cHRM against an sRGB chunk)."""


def _png_primaries(chromaticity: tuple[float, ...]) -> tuple[tuple[float, float], ...] | None:
    """cHRM (white x, y, then red, green, blue) as PRIMARIES orders them; None when libpng would reject it."""
    white, red, green, blue = ((chromaticity[i], chromaticity[i + 1]) for i in range(0, 8, 2))
    primaries = (red, green, blue, white)
    if any(not (0 <= x <= 1 and 0 < y <= 1 and x + y <= 1) for x, y in primaries):
        return None
    try:
        rgb_to_xyz_d50(primaries)
    except ZeroDivisionError:  # collinear primaries: no RGB -> XYZ matrix
        return None
    return primaries


@functools.lru_cache(maxsize=16)
def _power_profile(gamma: float, primaries: tuple[tuple[float, float], ...]) -> bytes:
    """Cached apart from `png_gamma_profile`, so rejected values are logged on every upload that has them."""
    return matrix_profile(f"PNG gAMA {gamma:g}", primaries, _gamma(1 / gamma))


def png_gamma_profile(gamma: float, chromaticity: tuple[float, ...] | None = None) -> bytes | None:
    """ICC profile for a PNG's file gamma (`gAMA` / 100000) and `cHRM` (Pillow's `chromaticity`); None: sRGB.

    Values libpng rejects are logged and ignored, as a browser ignores them.
    """
    if not _PNG_GAMMA_RANGE[0] <= gamma <= _PNG_GAMMA_RANGE[1]:
        LOG.warning("ignoring PNG gAMA %s: out of range; taking the pixels as sRGB", gamma)
        return None
    primaries = PRIMARIES[SRGB_PRIMARIES]
    if chromaticity is not None:
        named = _png_primaries(chromaticity)
        if named is None:
            LOG.warning("ignoring PNG cHRM %s: not a colour space; taking sRGB primaries", chromaticity)
        else:
            primaries = named
    srgb_primaries = all(
        abs(a - b) <= _PNG_SRGB_CHROMATICITY
        for point, srgb in zip(primaries, PRIMARIES[SRGB_PRIMARIES], strict=True)
        for a, b in zip(point, srgb, strict=True)
    )
    if srgb_primaries and abs(gamma * 2.2 - 1) < _PNG_NEUTRAL_GAMMA:
        return None
    return _power_profile(gamma, primaries)
