"""Echo mocks for running the real `__main__.py` without AWS, shared by the program and policy tests.

`EchoMocks` answers every resource with its inputs plus the attributes AWS would compute
(ARNs, names, URLs), so references between resources resolve to realistic values and the
tests can assert exact policy documents. `run_stack` runs the program for a stack offline:
unless told otherwise it points `layerZip` at a tiny fake layer, so no layer build happens.
"""

from __future__ import annotations

import functools
import hashlib
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pulumi

from local.program import ProgramRun, run_program

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"

# Fixed date so the fake layer zip, and so its hash, is the same on every run.
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def _arn(service: str, resource: str, *, region: str = REGION, account: str = ACCOUNT_ID) -> str:
    return f"arn:{PARTITION}:{service}:{region}:{account}:{resource}"


def _random_hex(name: str, byte_length: int) -> str:
    """Deterministic per resource name, so repeated runs declare identical bucket names."""
    return hashlib.sha256(name.encode()).hexdigest()[: 2 * byte_length]


class EchoMocks(pulumi.runtime.Mocks):
    """Return each resource's inputs plus the computed attributes the program reads."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        name = args.name
        resource_id = f"{name}_id"
        computed: dict[str, Any] = {}
        token = args.typ
        if token == "aws:s3/bucket:Bucket":
            bucket = inputs.get("bucket") or name
            resource_id = bucket  # S3's id for a bucket is its name
            computed = {
                "bucket": bucket,
                "arn": f"arn:{PARTITION}:s3:::{bucket}",
                "bucketDomainName": f"{bucket}.s3.amazonaws.com",
                "bucketRegionalDomainName": f"{bucket}.s3.{REGION}.amazonaws.com",
                "region": REGION,
            }
        elif token == "aws:iam/role:Role":
            role_name = inputs.get("name") or f"{name}-role"
            computed = {"name": role_name, "arn": f"arn:{PARTITION}:iam::{ACCOUNT_ID}:role/{role_name}"}
        elif token == "aws:lambda/function:Function":
            function_name = inputs.get("name") or name
            arn = _arn("lambda", f"function:{function_name}")
            computed = {
                "name": function_name,
                "arn": arn,
                "qualifiedArn": f"{arn}:$LATEST",
                "invokeArn": f"arn:{PARTITION}:apigateway:{REGION}:lambda:path/2015-03-31/functions/{arn}/invocations",
                "version": "$LATEST",
            }
        elif token == "aws:lambda/layerVersion:LayerVersion":
            layer_arn = _arn("lambda", f"layer:{inputs.get('layerName') or name}")
            computed = {"layerArn": layer_arn, "arn": f"{layer_arn}:1", "version": "1"}
        elif token == "aws:sqs/queue:Queue":
            queue_name = inputs.get("name") or name
            computed = {
                "name": queue_name,
                "arn": _arn("sqs", queue_name),
                "url": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/{queue_name}",
            }
        elif token == "aws:cloudwatch/logGroup:LogGroup":
            group_name = inputs.get("name") or name
            computed = {"name": group_name, "arn": _arn("logs", f"log-group:{group_name}")}
        elif token == "aws:cloudwatch/metricAlarm:MetricAlarm":
            alarm_name = inputs.get("name") or name
            computed = {"name": alarm_name, "arn": _arn("cloudwatch", f"alarm:{alarm_name}")}
        elif token == "random:index/randomId:RandomId":
            hex_value = _random_hex(name, int(inputs.get("byteLength", 4)))
            computed = {"hex": hex_value, "dec": str(int(hex_value, 16)), "b64Url": hex_value, "b64Std": hex_value}
        return resource_id, {**inputs, **computed}

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        # A bare dict: the SDK's MockMonitor cannot iterate a `(result, None)` tuple's failures.
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT_ID,
                "arn": f"arn:{PARTITION}:iam::{ACCOUNT_ID}:user/tester",
                "id": ACCOUNT_ID,
                "userId": "AIDATESTER",
            }
        if args.token == "aws:index/getRegion:getRegion":
            return {
                "id": REGION,
                "name": REGION,
                "region": REGION,
                "description": "US East (N. Virginia)",
                "endpoint": f"ec2.{REGION}.amazonaws.com",
            }
        if args.token == "aws:index/getPartition:getPartition":
            return {
                "id": PARTITION,
                "partition": PARTITION,
                "dnsSuffix": "amazonaws.com",
                "reverseDnsPrefix": "com.amazonaws",
            }
        raise NotImplementedError(f"EchoMocks has no answer for invoke {args.token!r}; add it in tests/pulumi_mocks.py")


@functools.cache
def fake_layer_zip() -> Path:
    """A tiny, byte-identical layer zip for offline runs (the program only hashes and ships it)."""
    directory = Path(tempfile.gettempdir()) / "image-pipeline-tests"
    directory.mkdir(exist_ok=True)
    path = directory / "fake-pillow-layer.zip"
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("python/PIL/__init__.py", date_time=_ZIP_DATE)
        archive.writestr(info, "# stand-in for Pillow in offline tests\n")
    return path


def run_stack(stack: str, **config_overrides: Any) -> ProgramRun:
    """Run the real program for `stack` under `EchoMocks`.

    Keyword arguments override config keys (bare keys get the project namespace; pass
    `**{"aws:region": "eu-west-1"}` for other namespaces; None removes a key). `layerZip`
    defaults to `fake_layer_zip()`; pass `layerZip=None` to exercise the real layer build.
    """
    config_overrides.setdefault("layerZip", str(fake_layer_zip()))
    return run_program(stack, EchoMocks(), config_overrides=config_overrides)


@functools.cache
def stack_run(stack: str) -> ProgramRun:
    """`run_stack(stack)` with the stack file's own config, run once per test session and shared.

    Callers must treat the result as read-only.
    """
    return run_stack(stack)
