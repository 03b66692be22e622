"""Content sniffing: which container the bytes are, judged from magic numbers alone.

Pure bytes in, labels out: nothing here decodes pixels. The pipeline uses it to
(a) load the HEIF plugin only for HEIF containers, (b) tell a damaged upload of
an accepted format (`corrupt`) from a real image in a format we refuse
(`unsupported_format`) and from data that is no image at all (`not_an_image`),
and (c) read the frame size of containers whose decoders would fail or allocate
on a huge one before Pillow could report it (`declared_size`).
"""

from __future__ import annotations

from collections.abc import Iterator

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
)


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


def accepted_container(data: bytes) -> str | None:
    """Name of the accepted format whose signature the bytes carry, even if the rest is damaged.

    A PNG whose first signature byte lost its high bit (a classic 7-bit transfer
    corruption) still counts as PNG: it is a damaged PNG, not some other file.
    """
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n") or head[1:8] == b"PNG\r\n\x1a\n":
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:2] == b"BM" and len(data) >= 26:
        return "BMP"
    brands = _iso_bmff_brands(data)
    if brands & _AVIF_BRANDS:
        return "AVIF"
    if brands & (_HEVC_BRANDS | _GENERIC_HEIF_BRANDS):
        return "HEIF"
    return None


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


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the ISO-BMFF boxes in data[start:end]; stops at the first bad size."""
    while start + 8 <= end:
        size, kind = int.from_bytes(data[start : start + 4], "big"), data[start + 4 : start + 8]
        header = 8
        if size == 1 and start + 16 <= end:
            size, header = int.from_bytes(data[start + 8 : start + 16], "big"), 16
        elif size == 0:
            size = end - start
        if size < header or start + size > end:
            return
        yield kind, start + header, start + size
        start += size


def _child(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    return next(((s, e) for k, s, e in _boxes(data, start, end) if k == kind), None)


def _iso_bmff_size(data: bytes) -> tuple[int, int] | None:
    """The largest image spatial extent (`meta/iprp/ipco/ispe`) a HEIF or AVIF declares: the primary image or grid."""
    meta = _child(data, 0, len(data), b"meta")
    iprp = meta and _child(data, meta[0] + 4, meta[1], b"iprp")  # meta is a full box: skip version and flags
    ipco = iprp and _child(data, iprp[0], iprp[1], b"ipco")
    if not ipco:
        return None
    sizes = [
        (int.from_bytes(data[s + 4 : s + 8], "big"), int.from_bytes(data[s + 8 : s + 12], "big"))
        for kind, s, e in _boxes(data, *ipco)
        if kind == b"ispe" and e - s >= 12
    ]
    return max(sizes, key=lambda size: size[0] * size[1], default=None)


def declared_size(data: bytes) -> tuple[int, int] | None:
    """Frame size a WebP, AVIF or HEIF header declares, read without a decoder; None for other containers.

    These decoders parse the whole structure when the file is opened, and refuse
    (or allocate for) a frame beyond their own limits before Pillow could report
    its size: the pixel limit must be applied to the header first.
    """
    container = accepted_container(data)
    if container == "WEBP":
        return _webp_size(data)
    if container in ("AVIF", "HEIF"):
        return _iso_bmff_size(data)
    return None
