"""End to end on the emulator: upload -> S3 event -> real handler under its role -> variants or quarantine.

One emulator and one deployment of the real dev stack for the module; small inputs keep it quick.
Lambda's retry delays (about 1 and 2 minutes on AWS) are shortened to a fraction of a second.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote_plus

import pytest
from boto3.s3.transfer import TransferConfig
from PIL import Image

from handler.variants import VariantSpec, variants_from_json
from local.cli import Session, UploadResult, is_output_of
from local.deployer import deploy, stack_region
from local.emulator import Emulator
from local.lambda_service import LambdaService
from tests.test_pipeline_sniff import scan_bomb

pytestmark = pytest.mark.e2e

WAIT_S = 90.0
SPACES_PLUS_UNICODE = "name with spaces+plus & ünïcødé 日本.jpg"


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    with (
        Emulator(stack_region("dev")) as emulator,
        LambdaService(emulator, retry_delays_s=(0.2, 0.4)) as lambda_service,
    ):
        run = deploy("dev", emulator, lambda_service)
        yield Session(emulator, lambda_service, run, tmp_path_factory.mktemp("out"))


@pytest.fixture(scope="module")
def variants(session: Session) -> tuple[VariantSpec, ...]:
    """The variants the deployed function was configured with (its VARIANTS variable)."""
    name = session.run.outputs["function_name"]
    configuration = session.emulator.client("lambda").get_function_configuration(FunctionName=name)
    return variants_from_json(configuration["Environment"]["Variables"]["VARIANTS"])


def _process(session: Session, source: Path, key: str) -> UploadResult:
    result = session.upload(source, key)
    session.wait([result], WAIT_S, on_done=lambda _: None)
    assert result.invocation is not None, f"no invocation for {key}"
    return result


def _processed_keys(session: Session) -> list[str]:
    listing = session.s3.list_object_versions(Bucket=session.processed_bucket)
    return sorted(version["Key"] for version in listing.get("Versions", []))


def _outputs_of(session: Session, source_key: str) -> list[str]:
    """Every stored version's key among the source's variants (repeats mean several versions)."""
    return [k for k in _processed_keys(session) if is_output_of(k, source_key)]


def test_upload_produces_every_variant_with_content_type_and_metadata(
    session: Session, variants: tuple[VariantSpec, ...], hostile_dir: Path
) -> None:
    result = _process(session, hostile_dir / "sharp_Landscape_6.jpg", "uploads/landscape.jpg")
    assert result.invocation is not None and result.invocation.status == "succeeded", result.summary()
    assert len(result.invocation.attempts) == 1
    assert [o.key for o in result.outputs] == sorted(f"{v.name}/uploads/landscape.{v.extension}" for v in variants)
    for spec in variants:
        key = f"{spec.name}/uploads/landscape.{spec.extension}"
        head = session.s3.head_object(Bucket=session.processed_bucket, Key=key)
        assert head["ContentType"] == spec.content_type, key
        assert head["Metadata"]["source-key"] == "uploads/landscape.jpg", key
        data = session.s3.get_object(Bucket=session.processed_bucket, Key=key)["Body"].read()
        with Image.open(io.BytesIO(data)) as image:
            assert Image.MIME[image.format] == spec.content_type, key
            assert image.width > image.height, f"{key}: EXIF orientation 6 must come out upright landscape"
            if spec.box is not None:
                assert image.width <= spec.box[0] and image.height <= spec.box[1], key
    with pytest.raises(session.s3.exceptions.ClientError):
        session.s3.head_object(Bucket=session.quarantine_bucket, Key="uploads/landscape.jpg")


@pytest.mark.parametrize("name", ["gen_text_renamed.jpg", "sharp_truncated.jpg", "pillow_hopper.psd"])
def test_hostile_upload_is_quarantined_with_its_reason_and_no_variants(
    session: Session, hostile_dir: Path, name: str
) -> None:
    key = f"hostile/{name}"
    result = _process(session, hostile_dir / name, key)
    assert result.invocation is not None and result.invocation.status == "succeeded", result.summary()
    assert len(result.invocation.attempts) == 1, "a rejected upload is permanent: no retry"
    head = session.s3.head_object(Bucket=session.quarantine_bucket, Key=key)
    assert head["Metadata"]["reason"], f"{key}: quarantined without a reason"
    assert result.quarantine_reason == head["Metadata"]["reason"]
    assert not _outputs_of(session, key), f"{key} produced variants"


def test_a_scan_bomb_is_quarantined_as_too_complex_not_timed_out(session: Session, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(scan_bomb(5000, size=(4000, 3000)))  # ~2 s to decode here; 50 MB of it, ~20 min
    result = _process(session, bomb, "hostile/bomb.jpg")
    assert result.invocation is not None and result.invocation.status == "succeeded", result.summary()
    assert len(result.invocation.attempts) == 1
    head = session.s3.head_object(Bucket=session.quarantine_bucket, Key="hostile/bomb.jpg")
    assert head["Metadata"]["reason"] == "too_complex"
    assert "more than 100 scans" in unquote_plus(head["Metadata"]["detail"])
    assert not _outputs_of(session, "hostile/bomb.jpg")


def test_same_event_delivered_twice_writes_the_same_keys(session: Session, hostile_dir: Path) -> None:
    first = _process(session, hostile_dir / "pillow_hopper.bmp", "twice/hopper.bmp")
    assert first.invocation is not None and first.invocation.status == "succeeded", first.summary()
    versions_after_first = _outputs_of(session, "twice/hopper.bmp")
    keys_after_first = sorted(set(versions_after_first))
    assert keys_after_first

    again = session.lambda_service.invoke_async(session.run.outputs["function_arn"], first.invocation.event)
    assert session.lambda_service.wait_idle(WAIT_S)
    assert again.status == "succeeded"

    versions_after_second = _outputs_of(session, "twice/hopper.bmp")
    assert sorted(set(versions_after_second)) == keys_after_first, "a redelivered event must rewrite the same keys"
    listing = session.s3.list_objects_v2(Bucket=session.processed_bucket)
    current = sorted(item["Key"] for item in listing["Contents"] if is_output_of(item["Key"], "twice/hopper.bmp"))
    assert current == keys_after_first, "no extra objects"
    # The versioned bucket keeps the first rendition as a noncurrent version of each key.
    assert len(versions_after_second) == 2 * len(versions_after_first)


def _source_versions(session: Session, source_key: str) -> set[str]:
    """The source version each current variant of `source_key` was rendered from."""
    listing = session.s3.list_objects_v2(Bucket=session.processed_bucket)
    current = [item["Key"] for item in listing["Contents"] if is_output_of(item["Key"], source_key)]
    return {
        session.s3.head_object(Bucket=session.processed_bucket, Key=key)["Metadata"]["source-version-id"]
        for key in current
    }


def test_late_event_for_a_replaced_version_leaves_the_newer_variants(session: Session, hostile_dir: Path) -> None:
    key = "replaced/photo.jpg"
    first = _process(session, hostile_dir / "sharp_Landscape_1.jpg", key)
    second = _process(session, hostile_dir / "pillow_hopper.bmp", key)
    assert first.invocation is not None and second.invocation is not None
    newer = session.s3.head_object(Bucket=session.upload_bucket, Key=key)["VersionId"]
    assert _source_versions(session, key) == {newer}
    versions_before = _outputs_of(session, key)

    # S3 does not order events and Lambda retries late: the first version's event arrives again now.
    late = session.lambda_service.invoke_async(session.run.outputs["function_arn"], first.invocation.event)
    assert session.lambda_service.wait_idle(WAIT_S)

    assert late.status == "succeeded" and late.result["skipped"] == 1, late.result
    assert _source_versions(session, key) == {newer}, "the older version must not overwrite the newer variants"
    assert _outputs_of(session, key) == versions_before, "nothing written at all"


def test_event_for_a_deleted_upload_publishes_nothing(session: Session, hostile_dir: Path) -> None:
    key = "deleted/photo.jpg"
    uploaded = _process(session, hostile_dir / "sharp_Landscape_1.jpg", key)
    assert uploaded.invocation is not None
    versions_before = _outputs_of(session, key)
    session.s3.delete_object(Bucket=session.upload_bucket, Key=key)  # a delete marker; the version stays

    late = session.lambda_service.invoke_async(session.run.outputs["function_arn"], uploaded.invocation.event)
    assert session.lambda_service.wait_idle(WAIT_S)

    assert late.status == "succeeded" and late.result["skipped"] == 1, late.result
    assert _outputs_of(session, key) == versions_before


def test_key_with_spaces_plus_ampersand_and_non_ascii(
    session: Session, variants: tuple[VariantSpec, ...], hostile_dir: Path
) -> None:
    key = f"odd names/{SPACES_PLUS_UNICODE}"
    result = _process(session, hostile_dir / SPACES_PLUS_UNICODE, key)
    assert result.invocation is not None and result.invocation.status == "succeeded", result.summary()
    [record] = result.invocation.event["Records"]
    assert record["eventSource"] == "aws:s3" and record["eventName"] == "ObjectCreated:Put"
    assert record["awsRegion"] == session.emulator.region
    assert record["s3"]["bucket"]["arn"] == f"arn:aws:s3:::{session.upload_bucket}"
    head = session.s3.head_object(Bucket=session.upload_bucket, Key=key)
    assert record["s3"]["object"]["versionId"] == head["VersionId"], "versioned bucket: the event names the version"
    assert record["s3"]["object"]["eTag"] == head["ETag"].strip('"')
    assert record["s3"]["object"]["size"] == head["ContentLength"]
    encoded = record["s3"]["object"]["key"]
    assert encoded.startswith("odd+names/name+with+spaces%2Bplus+%26+"), "S3 URL-encodes keys, '+' for spaces"
    assert unquote_plus(encoded) == key
    stem = "odd names/" + SPACES_PLUS_UNICODE.rsplit(".", 1)[0]
    assert [o.key for o in result.outputs] == sorted(f"{v.name}/{stem}.{v.extension}" for v in variants)


def test_transient_failures_retry_twice_then_the_event_goes_to_the_dead_letter_queue(
    session: Session, hostile_dir: Path
) -> None:
    key = "flaky/never-rendered.jpg"
    assert session.emulator.faults is not None
    fault = session.emulator.faults.fail("GET", session.upload_bucket, key)  # every GET: 503 SlowDown
    try:
        result = _process(session, hostile_dir / "sharp_Landscape_1.jpg", key)
    finally:
        session.emulator.faults.clear()
    invocation = result.invocation
    assert invocation is not None and invocation.status == "failed", result.summary()
    assert len(invocation.attempts) == 3, "one attempt and two retries"
    assert fault.hits >= 3, "every attempt must have reached S3 and met the fault"
    assert invocation.destination_error is None
    assert invocation.delivered_to == [session.run.one("aws:sqs/queue:Queue").state["arn"]]

    sqs = session.emulator.client("sqs")
    queue_url = session.run.outputs["dead_letter_queue_url"]
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    records = [json.loads(m["Body"]) for m in messages]
    [record] = [r for r in records if r["requestContext"]["requestId"] == invocation.request_id]
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestContext"]["functionArn"].startswith(session.run.outputs["function_arn"])
    assert record["requestPayload"] == invocation.event
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert not _outputs_of(session, key)


def test_a_multipart_upload_is_one_complete_multipart_upload_event(session: Session, photos_dir: Path) -> None:
    key = "multipart/evening.jpg"
    single_part = TransferConfig(multipart_threshold=64 * 1024, multipart_chunksize=8 * 1024 * 1024)
    session.s3.upload_file(
        str(photos_dir / "eveningglow_4mp_2560x1600.jpg"), session.upload_bucket, key, Config=single_part
    )
    assert session.lambda_service.wait_idle(WAIT_S)
    invocations = [i for i in session.lambda_service.invocations() if (session.upload_bucket, key) in i.objects]
    assert [i.event["Records"][0]["eventName"] for i in invocations] == ["ObjectCreated:CompleteMultipartUpload"]
    assert invocations[0].status == "succeeded"
    assert _outputs_of(session, key)


def test_function_log_lands_in_its_log_group(session: Session, hostile_dir: Path) -> None:
    result = _process(session, hostile_dir / "pngsuite_xs1n0g01.png", "logs/broken.png")
    assert result.invocation is not None
    logs = session.emulator.client("logs")
    group = session.run.outputs["log_group_name"]
    events = logs.filter_log_events(logGroupName=group)["events"]
    request_id = result.invocation.request_id
    messages = [e["message"] for e in events if request_id in e["message"] or "logs/broken" in e["message"]]
    assert any(m.startswith(f"START RequestId: {request_id}") for m in messages)
    assert any(m.startswith(f"REPORT RequestId: {request_id}") for m in messages)
    assert any('"key": "logs/broken.png"' in m for m in messages), "the handler's own JSON log line"
