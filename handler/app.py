"""Lambda entry point: S3 notification event -> pipeline -> storage, one JSON log line per record.

Settings (see `handler.settings` for the environment variables) and the S3 client
are made once per container, on the first invocation, so importing this module
stays cheap and cannot fail on configuration.

Outcomes per record: `processed` (variants written), `rejected` (quarantined
with its reason; not retried), `skipped` (written by us, not a create event, a
folder marker (`photos/`), deleted before its variants were written, or
superseded by a newer upload of the same key, whose own event renders it), or
`error`. Any error (throttling, 5xx, 403 AccessDenied, a malformed record)
raises after every record was tried, so Lambda retries the event; retries
rewrite the same keys.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

import boto3
from botocore.config import Config

from handler.pipeline import Rejected, render
from handler.settings import Settings, load_settings
from handler.storage import S3Storage, SourceObject

LOG = logging.getLogger("handler")

# Standard retry mode backs off on throttling inside the invocation before Lambda's own retries.
_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30)


class RecordsFailedError(RuntimeError):
    """Some records hit transient or configuration errors; raised so Lambda retries the event."""


@dataclass(frozen=True)
class Runtime:
    """What one container builds once: validated settings and the storage adapter."""

    settings: Settings
    storage: S3Storage


@functools.cache
def runtime() -> Runtime:
    """Validate the environment and create the S3 client, once per container."""
    settings = load_settings()
    LOG.setLevel(settings.log_level)
    if not logging.getLogger().handlers:  # outside Lambda (CLI, emulator): still emit the JSON lines
        logging.basicConfig(format="%(message)s")
    logging.captureWarnings(True)  # e.g. Pillow's DecompressionBombWarning: a log line, not raw stderr
    client = boto3.client("s3", config=_CLIENT_CONFIG)
    storage = S3Storage(
        client, processed_bucket=settings.processed_bucket, quarantine_bucket=settings.quarantine_bucket
    )
    return Runtime(settings, storage)


def _log_record(fields: dict[str, Any]) -> None:
    level = logging.ERROR if fields["outcome"] == "error" else logging.INFO
    LOG.log(level, json.dumps(fields, ensure_ascii=False, sort_keys=True))


def _render_and_store(source: SourceObject, rt: Runtime, fields: dict[str, Any]) -> None:
    settings = rt.settings
    if source.data is None:
        reason, detail = "too_large", f"{source.size} bytes exceeds MAX_UPLOAD_BYTES {settings.max_upload_bytes}"
    else:
        try:
            variants = render(
                source.data,
                settings.variants,
                pixel_limit=settings.pixel_limit,
                max_bytes=settings.max_upload_bytes,
            )
        except Rejected as exc:
            reason, detail = exc.reason, exc.detail
        else:
            stale = rt.storage.why_stale(source)
            if stale is not None:
                fields.update(outcome="skipped", reason=stale[0], detail=stale[1])
                return
            keys = rt.storage.put_variants(source, variants)
            fields.update(
                outcome="processed",
                variants=[
                    {"name": v.name, "key": k, "width": v.width, "height": v.height, "bytes": len(v.data)}
                    for v, k in zip(variants, keys, strict=True)
                ],
                bytes_out=sum(len(v.data) for v in variants),
            )
            return
    rt.storage.quarantine(source, reason, detail)
    fields.update(outcome="rejected", reason=reason, detail=detail, quarantine_bucket=rt.settings.quarantine_bucket)


def process_record(record: dict[str, Any], rt: Runtime) -> str:
    """Handle one S3 event record; returns its outcome. Raises on transient/config errors."""
    started = time.perf_counter()
    s3 = record.get("s3") or {}
    bucket = (s3.get("bucket") or {}).get("name", "")
    obj = s3.get("object") or {}
    key = unquote_plus(obj.get("key", ""))
    version_id = obj.get("versionId") or None
    fields: dict[str, Any] = {"bucket": bucket, "key": key, "version_id": version_id, "event": record.get("eventName")}
    try:
        if not bucket or not key:
            raise ValueError(f"record has no s3.bucket.name or s3.object.key: {json.dumps(record)[:300]}")
        if bucket in (rt.settings.processed_bucket, rt.settings.quarantine_bucket):
            fields.update(outcome="skipped", reason="own_output")  # would recurse
        elif not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            fields.update(outcome="skipped", reason="not_a_create_event")
        elif key.endswith("/"):
            fields.update(outcome="skipped", reason="folder_marker")  # the S3 console's "Create folder"
        else:
            source = rt.storage.fetch(bucket, key, version_id, max_bytes=rt.settings.max_upload_bytes)
            if source is None:
                fields.update(outcome="skipped", reason="deleted", detail="the upload (or this version) is gone")
            else:
                fields.update(bytes_in=source.size, version_id=source.version_id)
                _render_and_store(source, rt, fields)
    except Exception as exc:
        fields.update(outcome="error", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        fields["ms"] = round((time.perf_counter() - started) * 1000, 1)
        _log_record(fields)
    return str(fields["outcome"])


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda handler for S3 ObjectCreated notifications (several records per event)."""
    rt = runtime()
    records = event.get("Records")
    if records is None:
        if event.get("Event") == "s3:TestEvent":
            LOG.info(json.dumps({"outcome": "test_event", "bucket": event.get("Bucket")}))
            return {"records": 0, "test_event": True}
        raise ValueError(f"not an S3 notification: no Records and not an s3:TestEvent: {json.dumps(event)[:300]}")
    summary: dict[str, Any] = {"records": len(records), "processed": 0, "rejected": 0, "skipped": 0, "errors": 0}
    failures = []
    for record in records:
        try:
            outcome = process_record(record, rt)
        except Exception as exc:
            failures.append(exc)
            summary["errors"] += 1
        else:
            summary[outcome] += 1
    if failures:
        raise RecordsFailedError(
            f"{len(failures)} of {len(records)} record(s) failed, retrying the event: {failures[0]}"
        ) from failures[0]
    request_id = getattr(context, "aws_request_id", None)
    if request_id:
        summary["request_id"] = request_id
    return summary
