"""The embedded AWS emulator: moto's server in this process, HTTPS on loopback, IAM enforced.

moto keeps its state in process-global backends, so one `Emulator` runs at a time. While it runs:

* every request must be signed by a known identity and is checked against that identity's IAM
  policies (moto's access control, normally off in server mode). The deployer signs as an
  administrator user created before enforcement starts; the handler signs with its role's
  assumed-role credentials, so anything the role's policy does not allow fails as on AWS;
* bucket policies are evaluated with `aws:SecureTransport` resolved to true (the server only
  speaks TLS). moto ignores conditions it cannot evaluate, which would turn a TLS-only deny into
  a deny-everything; any other condition key in a bucket policy is refused at deploy time;
* S3 notifications to Lambda are handed to `lambda_sink` (the emulator's Lambda service) with
  the same event JSON as AWS, instead of moto's own Docker-based invoke;
* a `FaultInjector` in front of moto can answer chosen S3 requests with 503 SlowDown.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
import botocore.session
import moto
from botocore.config import Config
from moto import settings as moto_settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.utils import iso_8601_datetime_with_milliseconds
from moto.iam.access_control import IAMPolicy, IAMPolicyStatement, IAMRequestBase, PermissionResult
from moto.moto_api._internal.models import moto_api_backend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.s3 import notifications as s3_notifications
from moto.s3.models import FakeBucket
from moto.sts.models import sts_backends
from moto.utilities.utils import get_partition
from werkzeug.serving import BaseWSGIServer, make_server

from local.faults import FaultInjector
from local.tls import LOOPBACK, write_loopback_certificate

log = logging.getLogger(__name__)

ACCOUNT_ID = "123456789012"  # moto's default account
# The patches below replace moto internals read from this release; another one needs a fresh look.
MOTO_VERSION = "5.2.5"
ADMIN_USER = "emulator-admin"
LambdaSink = Callable[[str, dict[str, Any]], None]
"""Receives (function ARN, S3 event) for each S3 -> Lambda notification."""


class UnsupportedPolicyConditionError(ValueError):
    """A bucket policy uses a condition the emulator cannot evaluate faithfully."""


@dataclass(frozen=True)
class Credentials:
    """An access key as boto3 and the AWS_* environment variables take it."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def boto_kwargs(self) -> dict[str, str]:
        kwargs = {"aws_access_key_id": self.access_key_id, "aws_secret_access_key": self.secret_access_key}
        if self.session_token:
            kwargs["aws_session_token"] = self.session_token
        return kwargs

    def environment(self) -> dict[str, str]:
        env = {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}
        if self.session_token:
            env["AWS_SESSION_TOKEN"] = self.session_token
        return env


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def applicable_statements(policy: dict[str, Any], *, secure_transport: bool) -> list[dict[str, Any]]:
    """The policy's statements that apply to a request, with their conditions resolved.

    Only `Bool`/`BoolIfExists` on `aws:SecureTransport` is understood; a statement whose
    condition is false is dropped, one whose condition is true keeps no condition.
    """
    applicable = []
    for statement in _as_list(policy.get("Statement", [])):
        applies = True
        for operator, entries in (statement.get("Condition") or {}).items():
            for condition_key, expected in entries.items():
                if operator not in ("Bool", "BoolIfExists") or condition_key.lower() != "aws:securetransport":
                    raise UnsupportedPolicyConditionError(
                        f"statement {statement.get('Sid', '?')!r}: the emulator evaluates only "
                        f"Bool aws:SecureTransport in bucket policies, not {operator} {condition_key}"
                    )
                wanted = {str(value).lower() for value in _as_list(expected)}
                applies = applies and str(secure_transport).lower() in wanted
        if applies:
            applicable.append({key: value for key, value in statement.items() if key != "Condition"})
    return applicable


def _bucket_permission_over_tls(bucket: FakeBucket, action: str, resource: str) -> PermissionResult:
    """Replacement for `FakeBucket.get_permission` that knows every request arrived over TLS."""
    if bucket.policy is None:
        return PermissionResult.NEUTRAL
    policy = json.loads(bucket.policy.decode() if isinstance(bucket.policy, bytes) else bucket.policy)
    statements = applicable_statements(policy, secure_transport=True)
    if not statements:
        return PermissionResult.NEUTRAL
    return IAMPolicy(json.dumps({**policy, "Statement": statements})).is_action_permitted(action, resource)


_original_send_event = s3_notifications.send_event


def _send_event_as_s3_does(account_id: str, event_name: str, bucket: FakeBucket, key: Any) -> None:
    """moto announces a completed multipart upload twice (as a Put, then as CompleteMultipartUpload);
    S3 sends only the latter, so the Put of a multipart object is dropped."""
    is_put = event_name == s3_notifications.S3NotificationEvent.OBJECT_CREATED_PUT_EVENT
    if is_put and getattr(key, "multipart", None) is not None:
        return
    _original_send_event(account_id, event_name, bucket, key)


_original_check_principal = IAMPolicyStatement._check_principal


def _check_principal_of_any_kind(self: IAMPolicyStatement, principal: str) -> bool:
    """moto compares a caller only with `Principal.AWS` and crashes (HTTP 500) on a trust policy that
    names just a service; a user or role is never a service principal, so that is a plain mismatch."""
    expected = self._statement.get("Principal")
    if isinstance(expected, dict) and "AWS" not in expected:
        return False
    return _original_check_principal(self, principal)


_original_create_aws_request = IAMRequestBase._create_aws_request


def _create_aws_request_without_phantom_body(self: IAMRequestBase) -> Any:
    """moto signs a bodiless REST request (Lambda GETs) over its parsed headers, as if they were a
    form body, so every signed GET fails with SignatureDoesNotMatch; such a request has no body."""
    request = _original_create_aws_request(self)
    if not self._body and self._method in ("GET", "HEAD", "DELETE"):
        request.data = b""
    return request


_sequencer = itertools.count(1)


def s3_event(event_name: str, bucket: Any, key: Any, notification_id: str) -> dict[str, Any]:
    """The notification JSON S3 sends, for one object (keys URL-encoded with `+` for spaces)."""
    record_object: dict[str, Any] = {
        "key": quote_plus(key.name, safe="/"),
        "size": key.size,
        "eTag": key.etag.replace('"', ""),
        "sequencer": f"{next(_sequencer):018X}",
    }
    if key.version_id and key.version_id != "null":
        record_object["versionId"] = str(key.version_id)
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": bucket.region_name,
                "eventTime": iso_8601_datetime_with_milliseconds(),
                "eventName": event_name.removeprefix("s3:"),
                "userIdentity": {"principalId": f"AWS:{ACCOUNT_ID}"},
                "requestParameters": {"sourceIPAddress": LOOPBACK},
                "responseElements": {"x-amz-request-id": f"{next(_sequencer):016X}", "x-amz-id-2": "emulator"},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": notification_id,
                    "bucket": {
                        "name": bucket.name,
                        "ownerIdentity": {"principalId": ACCOUNT_ID},
                        "arn": bucket.arn,
                    },
                    "object": record_object,
                },
            }
        ]
    }


class Emulator:
    """moto server on https://127.0.0.1:<free port> with IAM enforcement; use as a context manager."""

    _active: Emulator | None = None
    _active_lock = threading.Lock()

    def __init__(self, region: str, *, state_dir: Path | None = None) -> None:
        self.region = region
        self.partition = get_partition(region)
        self._own_state_dir = state_dir is None
        self.state_dir = Path(tempfile.mkdtemp(prefix="image-pipeline-emulator-")) if state_dir is None else state_dir
        self.lambda_sink: LambdaSink | None = None
        self.faults: FaultInjector | None = None
        self.admin: Credentials | None = None
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._restore: list[Callable[[], None]] = []
        self.ca_bundle: Path | None = None

    # lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        with Emulator._active_lock:
            if Emulator._active is not None:
                raise RuntimeError("an Emulator is already running in this process (moto's state is global)")
            Emulator._active = self
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        if moto.__version__ != MOTO_VERSION:
            raise RuntimeError(
                f"the emulator patches moto {MOTO_VERSION} internals but moto {moto.__version__} is installed; "
                "re-check the patches in local/emulator.py, then update MOTO_VERSION"
            )
        moto_api_backend.reset()
        self._patch(s3_notifications, "send_event", _send_event_as_s3_does)
        self._patch(s3_notifications, "_get_s3_event", s3_event)
        self._patch(s3_notifications, "_invoke_awslambda", self._deliver_to_lambda)
        self._patch(FakeBucket, "get_permission", _bucket_permission_over_tls)
        self._patch(IAMRequestBase, "_create_aws_request", _create_aws_request_without_phantom_body)
        self._patch(IAMPolicyStatement, "_check_principal", _check_principal_of_any_kind)
        werkzeug_log = logging.getLogger("werkzeug")  # one INFO line per request otherwise
        previous_level = werkzeug_log.level
        werkzeug_log.setLevel(max(previous_level, logging.WARNING))
        self._restore.append(lambda: werkzeug_log.setLevel(previous_level))

        pair = write_loopback_certificate(self.state_dir / "tls")
        self.ca_bundle = pair.certificate
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pair.certificate, pair.private_key)
        self.faults = FaultInjector(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            LOOPBACK, 0, self.faults, threaded=True, request_handler=MotoRequestHandler, ssl_context=context
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="emulator-server", daemon=True)
        self._thread.start()
        self.admin = self._create_admin()
        self._enforce_iam()
        log.info("emulator listening on %s (IAM enforced, TLS only)", self.endpoint)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        while self._restore:
            self._restore.pop()()
        moto_api_backend.reset()
        if self._own_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        with Emulator._active_lock:
            if Emulator._active is self:
                Emulator._active = None

    def _patch(self, owner: Any, attribute: str, value: Any) -> None:
        original = getattr(owner, attribute)
        setattr(owner, attribute, value)
        self._restore.append(lambda: setattr(owner, attribute, original))

    def _create_admin(self) -> Credentials:
        """An administrator user for the deployer, created while moto still accepts any caller."""
        bootstrap = Credentials("bootstrap", "bootstrap")
        iam = self.client("iam", bootstrap)
        iam.create_user(UserName=ADMIN_USER)
        iam.put_user_policy(
            UserName=ADMIN_USER,
            PolicyName="administrator",
            PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
            ),
        )
        key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]
        return Credentials(key["AccessKeyId"], key["SecretAccessKey"])

    def _enforce_iam(self) -> None:
        self._patch(moto_settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
        self._patch(ActionAuthenticatorMixin, "request_count", 0)

    # access ----------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return f"https://{LOOPBACK}:{self._server.server_address[1]}"

    def client(self, service: str, credentials: Credentials | None = None) -> Any:
        """A boto3 client for the emulator, signed as `credentials` (default: the administrator)."""
        signer = credentials or self.admin
        if signer is None:
            raise RuntimeError("emulator not started")
        # Ignore AWS_PROFILE: the emulator's identities are explicit, a developer's profile is irrelevant.
        isolated = botocore.session.Session(session_vars={"profile": (None, None, None, None)})
        return boto3.session.Session(botocore_session=isolated).client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.region,
            verify=str(self.ca_bundle),
            config=Config(retries={"mode": "standard", "max_attempts": 3}, s3={"addressing_style": "path"}),
            **signer.boto_kwargs(),
        )

    def client_environment(self, credentials: Credentials) -> dict[str, str]:
        """Environment variables that point boto3's default chain at the emulator as `credentials`."""
        return {
            **credentials.environment(),
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_CA_BUNDLE": str(self.ca_bundle),
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    def assume_role_as_service(self, role_arn: str, session_name: str, duration_s: int = 3600) -> Credentials:
        """Credentials for `role_arn` as a service principal (Lambda) gets them: via STS, not a user.

        The caller checks the role's trust policy; STS itself is reached in-process because the
        service principal has no access key to sign a request with.
        """
        assumed = sts_backends[ACCOUNT_ID][self.partition].assume_role(
            region_name=self.region,
            role_session_name=session_name,
            role_arn=role_arn,
            policy=None,
            duration=duration_s,
            external_id=None,
        )
        return Credentials(assumed.access_key_id, assumed.secret_access_key, assumed.session_token)

    def _deliver_to_lambda(self, account_id: str, event_body: Any, function_arn: str, region_name: str) -> None:
        """Called by moto inside the PutObject request; must not block it (delivery is async)."""
        if self.lambda_sink is None:
            log.error("S3 notification for %s dropped: no Lambda service attached to the emulator", function_arn)
            return
        self.lambda_sink(function_arn, event_body)
