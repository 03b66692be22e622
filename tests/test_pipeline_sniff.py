"""Magic-number sniffing: which plugin a container needs and how a refusal is named."""

from __future__ import annotations

import pytest

from handler import sniff


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
