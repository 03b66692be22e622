"""S3 adapter: the only module that talks to S3.

Works within exactly the function role's permissions: s3:GetObject and
s3:GetObjectVersion on the upload bucket, s3:PutObject on the processed and
quarantine buckets. No ListBucket, so S3 answers a missing object with 403
AccessDenied rather than 404. Uploads are read by the version the event names,
which a plain delete only hides behind a delete marker, so a 403 on that read
means a misconfiguration or a version deleted permanently: it raises
`StorageAccessError` (Lambda retries, then the failure destination keeps the
event) instead of being mistaken for a deletion. A 404 (NoSuchKey/NoSuchVersion,
seen when the caller may list) is a deletion and is skipped. Whether the key
was deleted or replaced since is asked separately, before writing (`why_stale`).
"""

from __future__ import annotations

import logging
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from handler.pipeline import RenderedVariant

LOG = logging.getLogger(__name__)

CACHE_CONTROL = "public, max-age=31536000"
"""One year: outputs change only when their source is re-uploaded under the same key."""
QUARANTINE_CONTENT_TYPE = "application/octet-stream"
MAX_DETAIL_CHARS = 512  # S3 caps user metadata at 2 KB per object
_MAX_CONCURRENT_PUTS = 8  # below botocore's default pool of 10 connections
COPY_OBJECT_MAX_BYTES = 5 * 1024**3
"""S3's CopyObject copies at most 5 GiB; larger objects are copied in parts (UploadPartCopy)."""
# One CopyObject up to its limit; above it, 512 MiB parts (10,000 parts reach S3's 5 TiB object limit).
# Both need only GetObject(Version) on the source and PutObject here; a failed multipart copy is left
# for the buckets' lifecycle rule to abort (the role has no s3:AbortMultipartUpload).
_LARGE_COPY = TransferConfig(multipart_threshold=COPY_OBJECT_MAX_BYTES, multipart_chunksize=512 * 1024**2)
_GONE_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound"})
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "503",
        "500",
    }
)
_ACCESS_CODES = frozenset({"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"})
# Printable ASCII stays readable in metadata; '%', controls and non-ASCII are percent-encoded.
_METADATA_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


class StorageError(RuntimeError):
    """S3 refused a request for a reason retrying will not fix by itself."""


class TransientStorageError(StorageError):
    """Throttling, 5xx or a network failure: raise so Lambda retries the event."""


class StorageAccessError(StorageError):
    """403 AccessDenied: a role/bucket misconfiguration, or a version deleted permanently before we read it."""


@dataclass(frozen=True)
class SourceObject:
    """An upload as read from S3; `data` is None when it was too large to download."""

    bucket: str
    key: str
    version_id: str | None
    etag: str
    size: int
    content_type: str
    data: bytes | None


def output_key(source_key: str, variant: RenderedVariant) -> str:
    """Deterministic output key `<variant>/<source key without extension>.<ext>`: retries rewrite it."""
    stem, _ = posixpath.splitext(source_key)
    return f"{variant.name}/{stem}.{variant.extension}"


def metadata_value(value: str) -> str:
    """S3 user metadata travels in HTTP headers, so it must be ASCII: percent-encode the rest (RFC 3986)."""
    return quote(value, safe=_METADATA_SAFE)


def classify_error(exc: Exception, action: str) -> StorageError:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = f"{action}: {code or status} {error.get('Message', '')}".strip()
        if code in _TRANSIENT_CODES or status >= 500 or status == 429:
            return TransientStorageError(message)
        if code in _ACCESS_CODES or status == 403:
            return StorageAccessError(f"{message} (check the function role's S3 permissions and the bucket names)")
        return StorageError(message)
    return TransientStorageError(f"{action}: {type(exc).__name__}: {exc}")


class S3Storage:
    """Reads uploads and writes variants and quarantined copies with one boto3 S3 client."""

    def __init__(self, client: Any, *, processed_bucket: str, quarantine_bucket: str) -> None:
        self._s3 = client
        self.processed_bucket = processed_bucket
        self.quarantine_bucket = quarantine_bucket

    def fetch(self, bucket: str, key: str, version_id: str | None, *, max_bytes: int) -> SourceObject | None:
        """Get the upload (that exact version when known); None if it no longer exists.

        Bodies larger than `max_bytes` are not read: the stream is closed after the headers.
        """
        request = {"Bucket": bucket, "Key": key}
        if version_id:
            request["VersionId"] = version_id
        action = f"GetObject s3://{bucket}/{key}" + (f"?versionId={version_id}" if version_id else "")
        try:
            response = self._s3.get_object(**request)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in _GONE_CODES:
                return None
            raise classify_error(exc, action) from exc
        except BotoCoreError as exc:  # connection errors, timeouts: botocore gave up retrying
            raise classify_error(exc, action) from exc
        size = int(response["ContentLength"])
        body = response["Body"]
        data: bytes | None = None
        try:
            if size <= max_bytes:
                data = body.read()
        except (BotoCoreError, OSError) as exc:  # the body streams after the headers: it can still fail
            raise classify_error(exc, f"{action} (reading body)") from exc
        finally:
            body.close()
        return SourceObject(
            bucket=bucket,
            key=key,
            version_id=response.get("VersionId") or version_id,
            etag=str(response.get("ETag", "")).strip('"'),
            size=size,
            content_type=response.get("ContentType") or QUARANTINE_CONTENT_TYPE,
            data=data,
        )

    def why_stale(self, source: SourceObject) -> tuple[str, str] | None:
        """(`superseded` or `deleted`, detail) if `source` is no longer what its key holds; None if it still is.

        S3 does not order notifications, and Lambda retries a failed event minutes
        later: without this check an older upload's variants could overwrite a
        newer one's, and an upload deleted before we got to it would still be
        published. HeadObject needs only s3:GetObject. Without s3:ListBucket, S3
        answers 403 rather than 404 for a key with no current version; we have
        just read a version of it, so either answer means the key was deleted.
        """
        action = f"HeadObject s3://{source.bucket}/{source.key}"
        try:
            response = self._s3.head_object(Bucket=source.bucket, Key=source.key)
        except ClientError as exc:
            error = classify_error(exc, action)
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _GONE_CODES or isinstance(error, StorageAccessError):
                return "deleted", f"the key has no current version ({action}: {code})"
            raise error from exc
        except BotoCoreError as exc:
            raise classify_error(exc, action) from exc
        current_version = response.get("VersionId")
        if source.version_id and current_version:
            if current_version == source.version_id:
                return None
            return "superseded", f"the key now holds version {current_version}"
        current_etag = str(response.get("ETag", "")).strip('"')
        return None if current_etag == source.etag else ("superseded", f"the key now holds ETag {current_etag}")

    def _source_metadata(self, source: SourceObject) -> dict[str, str]:
        metadata = {"source-key": metadata_value(source.key), "source-etag": metadata_value(source.etag)}
        if source.version_id:
            metadata["source-version-id"] = metadata_value(source.version_id)
        return metadata

    def _call(self, action: str, method: str, **request: Any) -> None:
        try:
            getattr(self._s3, method)(**request)
        except (ClientError, BotoCoreError) as exc:
            raise classify_error(exc, action) from exc

    def put_variants(self, source: SourceObject, variants: list[RenderedVariant]) -> list[str]:
        """Write every variant at its deterministic key, concurrently; returns the keys in order.

        boto3 clients are thread-safe; overlapping the PUTs hides their latency
        (the default preset writes ~30 MB for a 12 MP photo).
        """
        metadata = self._source_metadata(source)
        keys = [output_key(source.key, variant) for variant in variants]

        def put(key: str, variant: RenderedVariant) -> None:
            self._call(
                f"PutObject s3://{self.processed_bucket}/{key}",
                "put_object",
                Bucket=self.processed_bucket,
                Key=key,
                Body=variant.data,
                ContentType=variant.content_type,
                CacheControl=CACHE_CONTROL,
                Metadata=metadata,
            )

        with ThreadPoolExecutor(
            max_workers=max(1, min(len(variants), _MAX_CONCURRENT_PUTS)), thread_name_prefix="put"
        ) as pool:
            for future in [pool.submit(put, key, variant) for key, variant in zip(keys, variants, strict=True)]:
                future.result()  # re-raises the first failure, already classified
        return keys

    def quarantine(self, source: SourceObject, reason: str, detail: str) -> str:
        """Keep a rejected upload, under its own key, with the reason in its metadata.

        Uses the bytes already downloaded, or a server-side copy when they were not
        downloaded (too large), in parts beyond CopyObject's 5 GiB: both need only
        GetObject on the source and PutObject here.
        """
        metadata = {
            **self._source_metadata(source),
            "reason": reason,
            "detail": metadata_value(detail[:MAX_DETAIL_CHARS]),
        }
        action = f"quarantine s3://{self.quarantine_bucket}/{source.key}"
        if source.data is not None:
            self._call(
                action,
                "put_object",
                Bucket=self.quarantine_bucket,
                Key=source.key,
                Body=source.data,
                ContentType=source.content_type,
                Metadata=metadata,
            )
        else:
            copy_source = {"Bucket": source.bucket, "Key": source.key}
            if source.version_id:
                copy_source["VersionId"] = source.version_id
            extra = {
                "MetadataDirective": "REPLACE",
                # COPY (the default) would copy the upload's tags, which needs s3:GetObjectTagging and
                # s3:PutObjectTagging: a tagged oversized upload would then fail to be quarantined.
                "TaggingDirective": "REPLACE",
                "ContentType": source.content_type,
                "Metadata": metadata,
            }
            try:
                self._s3.copy(copy_source, self.quarantine_bucket, source.key, ExtraArgs=extra, Config=_LARGE_COPY)
            except (ClientError, BotoCoreError) as exc:
                raise classify_error(exc, action) from exc
        return source.key
