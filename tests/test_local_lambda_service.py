"""The emulator's Lambda semantics with tiny stand-in functions: credentials, reuse, timeouts, crashes, destinations."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.emulator import Emulator
from local.lambda_service import AsyncConfig, FunctionSpec, LambdaService

pytestmark = pytest.mark.e2e

REGION = "eu-west-1"
CODE = textwrap.dedent(
    """
    import os, sys, time
    import boto3

    invocations = 0

    def whoami(event, context):
        identity = boto3.client("sts").get_caller_identity()
        return {
            "arn": identity["Arn"],
            "function": os.environ["AWS_LAMBDA_FUNCTION_NAME"],
            "colour": os.environ.get("COLOUR"),
            "profile": os.environ.get("AWS_PROFILE"),
            "request_id": context.aws_request_id,
        }

    def count(event, context):
        global invocations
        invocations += 1
        return invocations

    def nap(event, context):
        started = time.time()
        time.sleep(0.5)
        return [started, time.time()]

    def sleepy(event, context):
        time.sleep(30)

    def crash(event, context):
        sys.stderr.write("about to crash\\n")
        os._exit(3)

    def fail(event, context):
        raise ValueError("always fails: " + event["why"])
    """
)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(REGION) as running:
        yield running


@pytest.fixture(scope="module")
def role_arn(emulator: Emulator) -> str:
    """A Lambda role allowed to send to the queue `allowed-destination` only."""
    iam = emulator.client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    role = iam.create_role(RoleName="stand-in", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sqs:SendMessage",
                "Resource": f"arn:aws:sqs:{REGION}:123456789012:allowed-destination",
            }
        ],
    }
    iam.put_role_policy(RoleName="stand-in", PolicyName="destination", PolicyDocument=json.dumps(policy))
    sqs = emulator.client("sqs")
    for name in ("allowed-destination", "forbidden-destination"):
        sqs.create_queue(QueueName=name)
    return role["Arn"]


@pytest.fixture
def service(emulator: Emulator) -> Iterator[LambdaService]:
    with LambdaService(emulator, concurrency=1, retry_delays_s=(0.05, 0.1)) as running:
        yield running


def _function(tmp_path: Path, role_arn: str, handler: str, *, timeout_s: int = 10, module: str = CODE) -> FunctionSpec:
    code_dir = tmp_path / "code"
    code_dir.mkdir(exist_ok=True)
    (code_dir / "app.py").write_text(module)
    name = handler.replace(".", "-")
    return FunctionSpec(
        name=name,
        arn=f"arn:aws:lambda:{REGION}:123456789012:function:{name}",
        role_arn=role_arn,
        handler=handler,
        runtime="python3.12",
        timeout_s=timeout_s,
        memory_mb=128,
        environment={"COLOUR": "teal"},
        code_dir=code_dir,
        log_group=f"/aws/lambda/{name}",
    )


def _run(service: LambdaService, function: FunctionSpec, event: dict[str, Any] | None = None) -> Any:
    service.add_function(function)
    invocation = service.invoke_async(function.arn, event or {})
    assert service.wait_idle(60)
    return invocation


def _messages(emulator: Emulator, queue: str) -> list[dict[str, Any]]:
    """Receive and delete what the queue holds, so each test sees only its own messages."""
    sqs = emulator.client("sqs")
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    for message in messages:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return messages


def test_handler_runs_with_the_role_assumed_through_sts_and_the_function_environment(
    service: LambdaService, role_arn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "a-developers-real-profile")
    invocation = _run(service, _function(tmp_path, role_arn, "app.whoami"))
    assert invocation.status == "succeeded", invocation.attempts
    result = invocation.result
    assert result["arn"] == "arn:aws:sts::123456789012:assumed-role/stand-in/app-whoami"
    assert result["function"] == "app-whoami" and result["colour"] == "teal"
    assert result["profile"] is None, "the developer's environment must not leak into the function"
    assert result["request_id"] == invocation.request_id


def test_a_warm_container_is_reused(service: LambdaService, role_arn: str, tmp_path: Path) -> None:
    function = _function(tmp_path, role_arn, "app.count")
    first, second = _run(service, function), _run(service, function)
    assert (first.result, second.result) == (1, 2)
    assert first.attempts[0].init_ms is not None, "a cold start reports its init phase"
    assert second.attempts[0].init_ms is None, "a warm container has no init phase"


def test_a_timeout_kills_the_container_and_is_retried(service: LambdaService, role_arn: str, tmp_path: Path) -> None:
    invocation = _run(service, _function(tmp_path, role_arn, "app.sleepy", timeout_s=1))
    assert invocation.status == "failed"
    assert [a.error["errorType"] for a in invocation.attempts] == ["Sandbox.Timedout"] * 3
    assert all(a.duration_ms < 5000 for a in invocation.attempts)


def test_a_crash_and_an_import_error_fail_the_attempt(service: LambdaService, role_arn: str, tmp_path: Path) -> None:
    crashed = _run(service, _function(tmp_path, role_arn, "app.crash"))
    assert [a.error["errorType"] for a in crashed.attempts] == ["Runtime.ExitError"] * 3
    (tmp_path / "broken").mkdir()
    broken = _function(tmp_path / "broken", role_arn, "app.handler", module="raise ImportError('no Pillow here')\n")
    not_importable = _run(service, broken)
    assert [a.error["errorType"] for a in not_importable.attempts] == ["Runtime.ImportModuleError"] * 3
    assert "no Pillow here" in not_importable.attempts[0].error["errorMessage"]


def test_retries_follow_the_invoke_config_then_the_record_goes_to_the_destination(
    service: LambdaService, emulator: Emulator, role_arn: str, tmp_path: Path
) -> None:
    function = _function(tmp_path, role_arn, "app.fail")
    service.add_function(function)
    destination = f"arn:aws:sqs:{REGION}:123456789012:allowed-destination"
    service.set_async_config(function.arn, AsyncConfig(maximum_retry_attempts=1, on_failure=destination))
    invocation = _run(service, function, {"why": "testing"})
    assert len(invocation.attempts) == 2
    [message] = _messages(emulator, "allowed-destination")
    record = json.loads(message["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["requestPayload"] == {"why": "testing"}
    assert record["responsePayload"]["errorType"] == "ValueError"


def test_an_event_older_than_the_maximum_age_is_not_retried(
    service: LambdaService, emulator: Emulator, role_arn: str, tmp_path: Path
) -> None:
    function = _function(tmp_path, role_arn, "app.fail")
    service.add_function(function)
    destination = f"arn:aws:sqs:{REGION}:123456789012:allowed-destination"
    service.set_async_config(function.arn, AsyncConfig(maximum_event_age_s=0, on_failure=destination))
    invocation = _run(service, function, {"why": "too old"})
    assert len(invocation.attempts) == 1
    [message] = _messages(emulator, "allowed-destination")
    assert json.loads(message["Body"])["requestContext"]["condition"] == "EventAgeExceeded"


def test_a_destination_the_role_may_not_send_to_loses_the_record(
    service: LambdaService, emulator: Emulator, role_arn: str, tmp_path: Path
) -> None:
    function = _function(tmp_path, role_arn, "app.fail")
    service.add_function(function)
    forbidden = f"arn:aws:sqs:{REGION}:123456789012:forbidden-destination"
    service.set_async_config(function.arn, AsyncConfig(maximum_retry_attempts=0, on_failure=forbidden))
    invocation = _run(service, function, {"why": "denied"})
    assert invocation.destination_error is not None and "403" in invocation.destination_error
    assert _messages(emulator, "forbidden-destination") == []


def test_reserved_concurrency_caps_the_functions_parallel_invocations(
    emulator: Emulator, role_arn: str, tmp_path: Path
) -> None:
    function = _function(tmp_path, role_arn, "app.nap")
    capped = FunctionSpec(**{**function.__dict__, "reserved_concurrency": 1})
    with LambdaService(emulator, concurrency=2) as service:
        service.add_function(capped)
        invocations = [service.invoke_async(capped.arn, {}) for _ in range(2)]
        assert service.wait_idle(60)
    first, second = sorted(tuple(i.result) for i in invocations)
    assert second[0] >= first[1], "with reserved concurrency 1 the second event waits for the first"


def test_stopping_the_service_cuts_a_running_invocation_short(
    emulator: Emulator, role_arn: str, tmp_path: Path
) -> None:
    function = _function(tmp_path, role_arn, "app.sleepy", timeout_s=60)
    service = LambdaService(emulator, concurrency=1)
    service.start()
    service.add_function(function)
    invocation = service.invoke_async(function.arn, {})
    deadline = time.monotonic() + 30
    while invocation.status != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # let the handler start its 30 s sleep
    service.stop()
    # Had stop waited for the handler, its 30 s sleep would have ended and the invocation succeeded.
    assert invocation.status != "succeeded", invocation
    assert invocation.attempts and invocation.attempts[-1].error is not None, invocation.attempts


def test_reserved_environment_variables_are_refused(service: LambdaService, role_arn: str, tmp_path: Path) -> None:
    function = _function(tmp_path, role_arn, "app.count")
    bad = FunctionSpec(**{**function.__dict__, "environment": {"AWS_REGION": "us-west-2"}})
    with pytest.raises(ValueError, match="AWS_REGION"):
        service.add_function(bad)
