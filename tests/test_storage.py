"""The S3 adapter's pure parts: output keys, ASCII metadata, error classification."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from handler.pipeline import RenderedVariant
from handler.storage import (
    StorageAccessError,
    StorageError,
    TransientStorageError,
    classify_error,
    metadata_value,
    output_key,
)


def variant(name: str, extension: str) -> RenderedVariant:
    return RenderedVariant(name, "jpeg", b"", 1, 1, "image/jpeg", extension)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("photo.JPG", "thumb/photo.jpg"),
        ("a/b.c/photo.tar.png", "thumb/a/b.c/photo.tar.jpg"),
        ("dir.v2/noext", "thumb/dir.v2/noext.jpg"),
        ("name with spaces+plus & ünïcødé 日本.jpg", "thumb/name with spaces+plus & ünïcødé 日本.jpg"),
    ],
)
def test_output_key_is_deterministic(source: str, expected: str) -> None:
    assert output_key(source, variant("thumb", "jpg")) == expected


@pytest.mark.parametrize(
    "value", ["name with spaces+plus & ünïcødé 日本.jpg", "100% done", "tab\there", "plain-key.jpg"]
)
def test_metadata_values_are_ascii_and_reversible(value: str) -> None:
    encoded = metadata_value(value)
    assert encoded.isascii() and encoded.isprintable()
    assert unquote(encoded) == value


def test_readable_ascii_stays_readable() -> None:
    assert metadata_value("photos/a b (1).jpg") == "photos/a b (1).jpg"


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (client_error("SlowDown", 503), TransientStorageError),
        (client_error("RequestTimeout", 400), TransientStorageError),
        (client_error("Whatever", 502), TransientStorageError),
        (client_error("AccessDenied", 403), StorageAccessError),
        (client_error("InvalidRequest", 400), StorageError),
        (ReadTimeoutError(endpoint_url="https://s3"), TransientStorageError),
    ],
)
def test_errors_are_classified(exc: Exception, kind: type[StorageError]) -> None:
    assert type(classify_error(exc, "GetObject s3://b/k")) is kind
