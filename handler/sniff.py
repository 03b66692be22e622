"""Content sniffing: which container the bytes are, judged from magic numbers alone.

Pure bytes in, labels out: nothing here parses an image. The pipeline uses it to
(a) load the HEIF plugin only for HEIF containers and (b) tell a damaged upload of
an accepted format (`corrupt`) from a real image in a format we refuse
(`unsupported_format`) and from data that is no image at all (`not_an_image`).
"""

from __future__ import annotations

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
