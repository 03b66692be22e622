"""The Lambda handler against moto S3, with real-shaped events from tests/events/."""

from __future__ import annotations

import copy
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws
from PIL import Image

from handler import app
from handler.settings import SettingsError, load_settings
from handler.storage import S3Storage, SourceObject, StorageAccessError, TransientStorageError
from handler.variants import PRESETS

EVENTS_DIR = Path(__file__).parent / "events"
UPLOADS, PROCESSED, QUARANTINE = "uploads", "processed", "quarantine"
UNICODE_KEY = "incoming/name with spaces+plus & ünïcødé 日本.jpg"
RESPONSIVE = {
    "thumb/{stem}.jpg": ("image/jpeg", (150, 150)),
    "medium/{stem}.jpg": ("image/jpeg", (600, 450)),
    "large/{stem}.jpg": ("image/jpeg", (600, 450)),
    "webp-1200/{stem}.webp": ("image/webp", (600, 450)),
}


@dataclass
class FakeLambdaContext:
    """The attributes of Lambda's context object the handler may read."""

    function_name: str = "image-pipeline-test"
    memory_limit_in_mb: int = 1769
    aws_request_id: str = "6f0c1d8e-0000-4000-8000-000000000001"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:image-pipeline-test"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))


def event_for(key_encoded: str, version_id: str | None = None, bucket: str = UPLOADS) -> dict[str, Any]:
    event = load_event("put_unicode_key.json")
    obj = event["Records"][0]["s3"]["object"]
    event["Records"][0]["s3"]["bucket"]["name"] = bucket
    obj["key"] = key_encoded
    if version_id:
        obj["versionId"] = version_id
    return event


def keys(s3: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PROCESSED_BUCKET": PROCESSED,
        "QUARANTINE_BUCKET": QUARANTINE,
        "VARIANTS": "responsive",
        "LOG_LEVEL": "INFO",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "PIXEL_LIMIT", "MAX_UPLOAD_BYTES"):
        monkeypatch.delenv(name, raising=False)
    app.runtime.cache_clear()
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        for bucket in (UPLOADS, PROCESSED, QUARANTINE):
            client.create_bucket(Bucket=bucket)
        client.put_bucket_versioning(Bucket=UPLOADS, VersioningConfiguration={"Status": "Enabled"})
        yield client
    app.runtime.cache_clear()


def test_unicode_key_is_decoded_and_every_variant_written_with_headers(s3: Any, hostile_dir: Path) -> None:
    body = (hostile_dir / "sharp_Landscape_6.jpg").read_bytes()
    put = s3.put_object(Bucket=UPLOADS, Key=UNICODE_KEY, Body=body)

    summary = app.handler(load_event("put_unicode_key.json"), FakeLambdaContext())

    assert summary["processed"] == 1 and summary["records"] == 1
    stem = UNICODE_KEY.removesuffix(".jpg")
    expected = {pattern.format(stem=stem): spec for pattern, spec in RESPONSIVE.items()}
    assert keys(s3, PROCESSED) == sorted(expected)
    for key, (content_type, size) in expected.items():
        got = s3.get_object(Bucket=PROCESSED, Key=key)
        assert got["ContentType"] == content_type
        assert got["CacheControl"] == "public, max-age=31536000"
        metadata = got["Metadata"]
        assert metadata["source-key"].isascii()
        assert unquote(metadata["source-key"]) == UNICODE_KEY
        assert metadata["source-version-id"] == put["VersionId"]
        assert metadata["source-etag"] == put["ETag"].strip('"')
        assert Image.open(io.BytesIO(got["Body"].read())).size == size
    assert keys(s3, QUARANTINE) == []


def test_multi_record_event_processes_rejects_and_skips_our_own_output(
    s3: Any, hostile_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s3.put_object(
        Bucket=UPLOADS, Key="photos/sharp Landscape 6.jpg", Body=(hostile_dir / "sharp_Landscape_6.jpg").read_bytes()
    )
    text = (hostile_dir / "gen_text_renamed.jpg").read_bytes()
    s3.put_object(Bucket=UPLOADS, Key="photos/notes (draft).jpg", Body=text, ContentType="image/jpeg")

    with caplog.at_level(logging.INFO, logger="handler"):
        summary = app.handler(load_event("multi_record.json"), FakeLambdaContext())

    assert summary == {
        "records": 3,
        "processed": 1,
        "rejected": 1,
        "skipped": 1,
        "errors": 0,
        "request_id": FakeLambdaContext.aws_request_id,
    }
    assert len(keys(s3, PROCESSED)) == len(PRESETS["responsive"])
    assert keys(s3, QUARANTINE) == ["photos/notes (draft).jpg"]
    kept = s3.get_object(Bucket=QUARANTINE, Key="photos/notes (draft).jpg")
    assert kept["Body"].read() == text
    assert kept["ContentType"] == "image/jpeg"
    assert kept["Metadata"]["reason"] == "not_an_image"
    assert "not a recognised image" in unquote(kept["Metadata"]["detail"])
    assert unquote(kept["Metadata"]["source-key"]) == "photos/notes (draft).jpg"

    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "handler"]
    assert [line["outcome"] for line in lines] == ["processed", "rejected", "skipped"]
    processed, rejected, skipped = lines
    assert processed["key"] == "photos/sharp Landscape 6.jpg"
    assert processed["bytes_in"] == 137628 and processed["bytes_out"] > 0 and processed["ms"] >= 0
    assert [v["name"] for v in processed["variants"]] == [s.name for s in PRESETS["responsive"]]
    assert (rejected["reason"], rejected["bytes_in"]) == ("not_an_image", len(text))
    assert skipped["reason"] == "own_output"


def test_folder_marker_from_the_console_is_skipped_not_quarantined(s3: Any, caplog: pytest.LogCaptureFixture) -> None:
    s3.put_object(Bucket=UPLOADS, Key="holiday photos/", Body=b"")  # what "Create folder" writes
    with caplog.at_level(logging.INFO, logger="handler"):
        summary = app.handler(event_for("holiday+photos/"), FakeLambdaContext())
    assert summary["skipped"] == 1
    assert json.loads(caplog.records[-1].getMessage())["reason"] == "folder_marker"
    assert keys(s3, PROCESSED) == keys(s3, QUARANTINE) == []


def test_s3_test_event_is_acknowledged_and_ignored(s3: Any) -> None:
    assert app.handler(load_event("s3_test_event.json"), FakeLambdaContext()) == {"records": 0, "test_event": True}
    assert keys(s3, PROCESSED) == keys(s3, QUARANTINE) == []


def test_unknown_event_shape_raises_naming_it(s3: Any) -> None:
    with pytest.raises(ValueError, match="not an S3 notification"):
        app.handler({"hello": "world"}, FakeLambdaContext())


def test_duplicate_event_rewrites_the_same_keys(s3: Any, hostile_dir: Path) -> None:
    s3.put_object(Bucket=UPLOADS, Key=UNICODE_KEY, Body=(hostile_dir / "sharp_Landscape_1.jpg").read_bytes())
    event = load_event("put_unicode_key.json")
    app.handler(event, FakeLambdaContext())
    first = {k: s3.get_object(Bucket=PROCESSED, Key=k)["Body"].read() for k in keys(s3, PROCESSED)}
    app.handler(copy.deepcopy(event), FakeLambdaContext())
    second = {k: s3.get_object(Bucket=PROCESSED, Key=k)["Body"].read() for k in keys(s3, PROCESSED)}
    assert first == second and len(first) == len(PRESETS["responsive"])


def test_version_in_the_event_is_the_one_fetched(s3: Any, hostile_dir: Path) -> None:
    body = (hostile_dir / "sharp_Landscape_1.jpg").read_bytes()
    v1 = s3.put_object(Bucket=UPLOADS, Key="photo.jpg", Body=body)
    s3.put_object(Bucket=UPLOADS, Key="photo.jpg", Body=(hostile_dir / "pillow_hopper.bmp").read_bytes())

    source = app.runtime().storage.fetch(UPLOADS, "photo.jpg", v1["VersionId"], max_bytes=10**7)

    assert source is not None and source.data == body and source.version_id == v1["VersionId"]


def test_event_for_a_replaced_version_does_not_overwrite_the_newer_variants(
    s3: Any, hostile_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    v1 = s3.put_object(Bucket=UPLOADS, Key="photo.jpg", Body=(hostile_dir / "sharp_Landscape_1.jpg").read_bytes())
    v2 = s3.put_object(Bucket=UPLOADS, Key="photo.jpg", Body=(hostile_dir / "pillow_hopper.bmp").read_bytes())

    # S3 does not order notifications: v2's event is handled first, then v1's arrives (or is retried).
    app.handler(event_for("photo.jpg", v2["VersionId"]), FakeLambdaContext())
    with caplog.at_level(logging.INFO, logger="handler"):
        summary = app.handler(event_for("photo.jpg", v1["VersionId"]), FakeLambdaContext())

    assert summary["skipped"] == 1 and summary["processed"] == 0
    logged = json.loads(caplog.records[-1].getMessage())
    assert logged["reason"] == "superseded" and v2["VersionId"] in logged["detail"]
    large = s3.get_object(Bucket=PROCESSED, Key="large/photo.jpg")
    assert large["Metadata"]["source-version-id"] == v2["VersionId"]
    assert Image.open(io.BytesIO(large["Body"].read())).size == (128, 128)  # v2's pixels, not v1's 600x450
    assert keys(s3, QUARANTINE) == []


def test_replaced_object_in_an_unversioned_bucket_is_detected_by_etag(s3: Any, hostile_dir: Path) -> None:
    s3.create_bucket(Bucket="plain")
    s3.put_object(Bucket="plain", Key="photo.jpg", Body=(hostile_dir / "sharp_Landscape_1.jpg").read_bytes())
    storage = app.runtime().storage
    source = storage.fetch("plain", "photo.jpg", None, max_bytes=10**7)
    assert source is not None and storage.why_stale(source) is None

    s3.put_object(Bucket="plain", Key="photo.jpg", Body=(hostile_dir / "pillow_hopper.bmp").read_bytes())

    current_etag = s3.head_object(Bucket="plain", Key="photo.jpg")["ETag"].strip('"')
    assert storage.why_stale(source) == ("superseded", f"the key now holds ETag {current_etag}")


def test_upload_deleted_before_its_variants_are_written_is_skipped(
    s3: Any, hostile_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    put = s3.put_object(Bucket=UPLOADS, Key="photo.jpg", Body=(hostile_dir / "sharp_Landscape_1.jpg").read_bytes())
    s3.delete_object(Bucket=UPLOADS, Key="photo.jpg")  # a delete marker hides the version; it stays readable

    with caplog.at_level(logging.INFO, logger="handler"):
        summary = app.handler(event_for("photo.jpg", put["VersionId"]), FakeLambdaContext())

    assert summary["skipped"] == 1
    logged = json.loads(caplog.records[-1].getMessage())
    assert logged["reason"] == "deleted" and "no current version" in logged["detail"]
    assert keys(s3, PROCESSED) == keys(s3, QUARANTINE) == []  # a deleted photo is not published


def _fetched_with_own_client(s3: Any, hostile_dir: Path) -> tuple[Any, S3Storage, SourceObject]:
    """An upload read through a client of its own, so a Stubber can then answer that client's next call."""
    put = s3.put_object(Bucket=UPLOADS, Key="photo.jpg", Body=(hostile_dir / "sharp_Landscape_1.jpg").read_bytes())
    client = boto3.client("s3", region_name="us-east-1")
    storage = S3Storage(client, processed_bucket=PROCESSED, quarantine_bucket=QUARANTINE)
    source = storage.fetch(UPLOADS, "photo.jpg", put["VersionId"], max_bytes=10**7)
    assert source is not None
    return client, storage, source


@pytest.mark.parametrize(("code", "status"), [("404", 404), ("403", 403)])
def test_head_without_list_permission_reads_a_deleted_key_as_deleted(
    s3: Any, hostile_dir: Path, code: str, status: int
) -> None:
    """Without s3:ListBucket S3 answers 403 for a key with no current version, as the real role gets."""
    client, storage, source = _fetched_with_own_client(s3, hostile_dir)
    with Stubber(client) as stubber:
        stubber.add_client_error("head_object", service_error_code=code, http_status_code=status)
        assert storage.why_stale(source) == (
            "deleted",
            f"the key has no current version (HeadObject s3://uploads/photo.jpg: {code})",
        )


def test_throttled_version_check_raises_so_lambda_retries(s3: Any, hostile_dir: Path) -> None:
    client, storage, source = _fetched_with_own_client(s3, hostile_dir)
    with Stubber(client) as stubber:
        stubber.add_client_error("head_object", service_error_code="SlowDown", http_status_code=503)
        with pytest.raises(TransientStorageError, match=r"HeadObject s3://uploads/photo\.jpg: SlowDown"):
            storage.why_stale(source)


def test_object_deleted_before_processing_is_skipped(s3: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="handler"):
        summary = app.handler(event_for("gone.jpg"), FakeLambdaContext())
    assert summary["skipped"] == 1
    logged = json.loads(caplog.records[-1].getMessage())
    assert (logged["reason"], logged["detail"]) == ("deleted", "the upload (or this version) is gone")
    assert keys(s3, PROCESSED) == keys(s3, QUARANTINE) == []


def test_too_large_upload_is_quarantined_by_server_side_copy(s3: Any, hostile_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "1000")
    body = (hostile_dir / "sharp_Landscape_1.jpg").read_bytes()
    put = s3.put_object(Bucket=UPLOADS, Key="big.jpg", Body=body, ContentType="image/jpeg", Tagging="team=photos")

    summary = app.handler(event_for("big.jpg", put["VersionId"]), FakeLambdaContext())

    assert summary["rejected"] == 1
    kept = s3.get_object(Bucket=QUARANTINE, Key="big.jpg")
    assert kept["Body"].read() == body
    assert kept["Metadata"]["reason"] == "too_large"
    assert kept["Metadata"]["source-version-id"] == put["VersionId"]
    # Tags are not copied: that would need tagging permissions the role does not have.
    assert s3.get_object_tagging(Bucket=QUARANTINE, Key="big.jpg")["TagSet"] == []
    assert keys(s3, PROCESSED) == []


def test_upload_beyond_copy_object_limit_is_quarantined_in_parts(s3: Any, monkeypatch) -> None:
    """CopyObject stops at 5 GiB; the copy then goes part by part (shown here with the limit at 5 MiB)."""
    from boto3.s3.transfer import TransferConfig

    from handler import storage

    part = 5 * 1024 * 1024  # S3's smallest part
    monkeypatch.setattr(storage, "_LARGE_COPY", TransferConfig(multipart_threshold=part, multipart_chunksize=part))
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "1000")
    body = bytes(range(256)) * (3 * part // 256 + 7)  # three parts and a bit
    put = s3.put_object(Bucket=UPLOADS, Key="huge.bin", Body=body, ContentType="image/tiff", Tagging="a=b")
    part_copies: list[str] = []
    app.runtime().storage._s3.meta.events.register(
        "before-call.s3.UploadPartCopy", lambda **kwargs: part_copies.append(kwargs["params"]["url_path"])
    )

    summary = app.handler(event_for("huge.bin", put["VersionId"]), FakeLambdaContext())

    assert summary["rejected"] == 1
    assert len(part_copies) == 4, "CopyObject would refuse an object this far over its limit"
    kept = s3.get_object(Bucket=QUARANTINE, Key="huge.bin")
    assert kept["Body"].read() == body
    assert kept["ContentType"] == "image/tiff"
    assert kept["Metadata"]["reason"] == "too_large"
    assert kept["Metadata"]["source-version-id"] == put["VersionId"]
    assert s3.get_object_tagging(Bucket=QUARANTINE, Key="huge.bin")["TagSet"] == []


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("SlowDown", 503, TransientStorageError),
        ("InternalError", 500, TransientStorageError),
        ("AccessDenied", 403, StorageAccessError),
    ],
)
def test_s3_errors_raise_so_lambda_retries(s3: Any, code: str, status: int, error: type[Exception]) -> None:
    client = boto3.client("s3", region_name="us-east-1")
    storage = S3Storage(client, processed_bucket=PROCESSED, quarantine_bucket=QUARANTINE)
    rt = app.Runtime(load_settings(), storage)
    with Stubber(client) as stubber:
        stubber.add_client_error("get_object", service_error_code=code, http_status_code=status)
        with pytest.raises(error, match=code):
            app.process_record(event_for("photo.jpg")["Records"][0], rt)


def test_transient_error_fails_the_invocation_after_trying_every_record(
    s3: Any, hostile_dir: Path, monkeypatch
) -> None:
    s3.put_object(Bucket=UPLOADS, Key="ok.jpg", Body=(hostile_dir / "sharp_Landscape_1.jpg").read_bytes())
    storage = app.runtime().storage
    real_fetch = storage.fetch

    def flaky_fetch(bucket: str, key: str, version_id: str | None, *, max_bytes: int) -> Any:
        if key == "flaky.jpg":
            raise TransientStorageError("GetObject s3://uploads/flaky.jpg: SlowDown")
        return real_fetch(bucket, key, version_id, max_bytes=max_bytes)

    monkeypatch.setattr(storage, "fetch", flaky_fetch)
    event = event_for("flaky.jpg")
    event["Records"].append(event_for("ok.jpg")["Records"][0])
    with pytest.raises(app.RecordsFailedError, match="1 of 2 record"):
        app.handler(event, FakeLambdaContext())
    assert len(keys(s3, PROCESSED)) == len(PRESETS["responsive"])  # the healthy record was still done


def test_network_failure_is_transient(s3: Any) -> None:
    from botocore.config import Config

    client = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",  # discard port: connection refused
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    storage = S3Storage(client, processed_bucket=PROCESSED, quarantine_bucket=QUARANTINE)
    with pytest.raises(TransientStorageError, match="EndpointConnectionError"):
        storage.fetch(UPLOADS, "photo.jpg", None, max_bytes=1000)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PROCESSED_BUCKET": ""}, "PROCESSED_BUCKET is required"),
        ({"QUARANTINE_BUCKET": "Not_A_Bucket"}, "QUARANTINE_BUCKET: 'Not_A_Bucket' is not a valid S3 bucket name"),
        ({"QUARANTINE_BUCKET": PROCESSED}, "PROCESSED_BUCKET and QUARANTINE_BUCKET must differ"),
        ({"VARIANTS": "huge"}, "VARIANTS: 'huge' is not a preset name (default, responsive) nor valid JSON"),
        ({"VARIANTS": '[{"name": "a", "format": "gif"}]'}, "VARIANTS[0] 'a'.format: must be one of jpeg, webp"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, got 'LOUD'"),
        ({"PIXEL_LIMIT": "lots"}, "PIXEL_LIMIT must be an integer 1..178956970, got 'lots'"),
        ({"PIXEL_LIMIT": "999999999"}, "PIXEL_LIMIT must be an integer 1..178956970, got 999999999"),
        ({"MAX_UPLOAD_BYTES": "0"}, "MAX_UPLOAD_BYTES must be an integer >= 1, got 0"),
    ],
)
def test_bad_environment_fails_naming_the_variable(s3: Any, monkeypatch, env: dict[str, str], message: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as excinfo:
        app.handler(load_event("s3_test_event.json"), FakeLambdaContext())
    assert message in str(excinfo.value)


def test_settings_defaults() -> None:
    settings = load_settings({"PROCESSED_BUCKET": PROCESSED, "QUARANTINE_BUCKET": QUARANTINE})
    assert (settings.variants, settings.log_level, settings.pixel_limit, settings.max_upload_bytes) == (
        PRESETS["default"],
        "INFO",
        89_478_485,
        50 * 1024 * 1024,
    )


def test_throttled_put_of_a_variant_raises_so_lambda_retries(s3: Any, hostile_dir: Path, monkeypatch) -> None:
    s3.put_object(Bucket=UPLOADS, Key="photo.jpg", Body=(hostile_dir / "sharp_Landscape_1.jpg").read_bytes())
    client = boto3.client("s3", region_name="us-east-1")
    rt = app.Runtime(load_settings(), S3Storage(client, processed_bucket=PROCESSED, quarantine_bucket=QUARANTINE))

    def throttled(**request: Any) -> None:
        raise ClientError(
            {
                "Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
                "ResponseMetadata": {"HTTPStatusCode": 503},
            },
            "PutObject",
        )

    monkeypatch.setattr(client, "put_object", throttled)
    with pytest.raises(TransientStorageError, match=r"PutObject s3://processed/.*SlowDown"):
        app.process_record(event_for("photo.jpg")["Records"][0], rt)
    assert keys(s3, QUARANTINE) == []  # a transient failure is not the upload's fault
