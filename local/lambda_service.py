"""The emulator's Lambda service: asynchronous invocation with Lambda's retries and destinations.

S3 hands each notification to `invoke_async`, which only queues it (S3 invokes Lambda
asynchronously). Worker threads, one per unit of concurrency, run queued events on warm
"containers": child processes running `local/runtime.py` with the function's environment
variables and credentials of the function's role assumed through the emulator's STS, so every
AWS call the handler makes is checked against the role's policy.

A failed attempt (handler exception, crash or timeout) is retried `MaximumRetryAttempts` times
(default 2) after delays that stand in for AWS's ~1 and ~2 minutes; when retries are exhausted
the invocation record goes to the on-failure destination (and the event to the function's
dead-letter queue, if it has one), sent with the role's credentials as Lambda does.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import math
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote_plus

from botocore.exceptions import BotoCoreError, ClientError
from moto.core.utils import iso_8601_datetime_with_milliseconds

from local.emulator import Credentials, Emulator

log = logging.getLogger(__name__)

RUNTIME_SCRIPT = Path(__file__).resolve().parent / "runtime.py"
# `-c` keeps sys.path[0] as the working directory (the task root), as Lambda does.
_BOOTSTRAP = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"
LOG_SENTINEL = "\x1eemulator-invocation-end"  # same as local/runtime.py (imported there by file path)
LOG_SETTLE_S = 2.0
# Containers are replaced before their role credentials (1 h) expire.
CONTAINER_MAX_AGE_S = 45 * 60
# Variables Lambda sets itself; a function may not define them.
RESERVED_VARIABLES = frozenset(
    {
        "_HANDLER",
        "AWS_ACCESS_KEY_ID",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_REGION",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "LAMBDA_RUNTIME_DIR",
        "LAMBDA_TASK_ROOT",
    }
)

Status = Literal["queued", "running", "succeeded", "failed"]


@dataclass(frozen=True)
class FunctionSpec:
    """What the service needs to run one deployed function."""

    name: str
    arn: str
    role_arn: str
    handler: str
    runtime: str
    timeout_s: int
    memory_mb: int
    environment: dict[str, str]
    code_dir: Path
    log_group: str
    reserved_concurrency: int | None = None
    """At most this many of the function's invocations run at once (None: the service's limit)."""


@dataclass(frozen=True)
class AsyncConfig:
    """A function's event-invoke config; defaults are Lambda's."""

    maximum_retry_attempts: int = 2
    maximum_event_age_s: int = 6 * 60 * 60
    on_failure: str | None = None
    on_success: str | None = None


@dataclass
class Attempt:
    """One run of the handler: how long it took (init excluded) and its error, if it failed."""

    duration_ms: float
    error: dict[str, Any] | None
    init_ms: float | None = None
    """Cold start: how long the runtime took to import the handler before this attempt."""
    result: Any = None


@dataclass
class Invocation:
    """One asynchronous event and everything that happened to it."""

    request_id: str
    function: FunctionSpec
    event: dict[str, Any]
    received_at: float
    status: Status = "queued"
    attempts: list[Attempt] = field(default_factory=list)
    result: Any = None
    delivered_to: list[str] = field(default_factory=list)
    """ARNs of the destinations / dead-letter queue that received this invocation's record."""
    destination_error: str | None = None

    @property
    def objects(self) -> list[tuple[str, str]]:
        """(bucket, decoded key) of each S3 record in the event."""
        return [
            (record["s3"]["bucket"]["name"], unquote_plus(record["s3"]["object"]["key"]))
            for record in self.event.get("Records", [])
            if "s3" in record
        ]


class Container:
    """One warm execution environment: a child process serving invocations line by line."""

    def __init__(self, function: FunctionSpec, environment: dict[str, str], python: str) -> None:
        self.function = function
        self.started_at = time.monotonic()
        self._replies: queue.Queue[str | None] = queue.Queue()
        self._process = subprocess.Popen(
            [python, "-c", _BOOTSTRAP, str(RUNTIME_SCRIPT)],
            cwd=function.code_dir,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.init_ms: float | None = None
        self.log_stream = environment["AWS_LAMBDA_LOG_STREAM_NAME"]
        self.log_stream_created = False
        self._logger = logging.getLogger(f"{__name__}.{function.name}")
        self._log_lines: list[tuple[int, str]] = []
        self._log_lock = threading.Lock()
        self._log_complete = threading.Event()
        threading.Thread(target=self._pump_replies, daemon=True).start()
        threading.Thread(target=self._pump_log, daemon=True).start()

    def _pump_replies(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._replies.put(line)
        self._replies.put(None)

    def _pump_log(self) -> None:
        assert self._process.stderr is not None
        for raw in self._process.stderr:
            line = raw.rstrip("\n")
            if line == LOG_SENTINEL:
                self._log_complete.set()
                continue
            self._logger.info("%s", line)
            with self._log_lock:
                self._log_lines.append((int(time.time() * 1000), line))
        self._log_complete.set()

    def drain_log(self) -> list[tuple[int, str]]:
        """(epoch ms, line) the function wrote since the last drain."""
        with self._log_lock:
            lines, self._log_lines = self._log_lines, []
        return lines

    @property
    def usable(self) -> bool:
        return self._process.poll() is None and time.monotonic() - self.started_at < CONTAINER_MAX_AGE_S

    def _await_init(self, timeout_s: int) -> dict[str, Any] | None:
        """Wait for the runtime's init phase; returns an error payload if it never finished."""
        try:
            line = self._replies.get(timeout=timeout_s)
        except queue.Empty:
            self.kill()
            return {"errorType": "Sandbox.Timedout", "errorMessage": f"init timed out after {timeout_s:.2f} seconds"}
        if line is None:
            code = self._process.wait(timeout=5)
            return {"errorType": "Runtime.ExitError", "errorMessage": f"Runtime exited with exit status {code}"}
        self.init_ms = (time.monotonic() - self.started_at) * 1000
        return None

    def invoke(self, request_id: str, event: dict[str, Any]) -> Attempt:
        """Run one event, after the init phase if this is the container's first. Kills itself on timeout."""
        timeout_s = self.function.timeout_s
        init_ms = None
        if self.init_ms is None:
            init_error = self._await_init(timeout_s)
            if init_error is not None:
                return Attempt((time.monotonic() - self.started_at) * 1000, init_error)
            init_ms = self.init_ms
        started = time.perf_counter()
        ok, payload = self._run(request_id, event, timeout_s)
        duration_ms = (time.perf_counter() - started) * 1000
        if ok:
            return Attempt(duration_ms, None, init_ms=init_ms, result=payload)
        return Attempt(duration_ms, payload, init_ms=init_ms)

    def _run(self, request_id: str, event: dict[str, Any], timeout_s: int) -> tuple[bool, Any]:
        message = {
            "requestId": request_id,
            "event": event,
            "functionArn": self.function.arn,
            "deadlineMs": int(time.time() * 1000) + timeout_s * 1000,
        }
        assert self._process.stdin is not None
        self._log_complete.clear()
        try:
            self._process.stdin.write(json.dumps(message) + "\n")
            self._process.stdin.flush()
        except BrokenPipeError:
            return False, {"errorType": "Runtime.ExitError", "errorMessage": "runtime exited before the invocation"}
        try:
            line = self._replies.get(timeout=timeout_s)
        except queue.Empty:
            self.kill()
            return False, {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"{request_id} Task timed out after {timeout_s:.2f} seconds",
            }
        if line is None:
            code = self._process.wait(timeout=5)
            return False, {"errorType": "Runtime.ExitError", "errorMessage": f"Runtime exited with exit status {code}"}
        self._log_complete.wait(timeout=LOG_SETTLE_S)
        reply = json.loads(line)
        if reply.get("fatal"):  # init failed: this environment is discarded
            self.close()
        return (True, reply.get("result")) if reply["ok"] else (False, reply["error"])

    def kill(self) -> None:
        """A timed-out environment is frozen mid-work: stop it at once."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=5)

    def close(self) -> None:
        if self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)


class LambdaService:
    """Asynchronous invocations for the functions the deployer registered."""

    def __init__(
        self,
        emulator: Emulator,
        *,
        concurrency: int = 2,
        retry_delays_s: Sequence[float] = (1.0, 2.0),
        python: str = sys.executable,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self._emulator = emulator
        self._concurrency = concurrency
        self._retry_delays_s = tuple(retry_delays_s)
        self._python = python
        self._functions: dict[str, FunctionSpec] = {}
        self._async_configs: dict[str, AsyncConfig] = {}
        self._dead_letter_targets: dict[str, str] = {}
        self._schedule: list[tuple[float, int, Invocation]] = []
        self._sequence = itertools.count()
        self._invocations: list[Invocation] = []
        self._idle: dict[str, list[Container]] = {}
        self._running: set[Container] = set()
        self._condition = threading.Condition()
        self._stopping = False
        self._workers: list[threading.Thread] = []
        self._home = emulator.state_dir / "lambda-home"
        self._logs: Any = None

    # configuration (called by the deployer) ------------------------------------------------
    def add_function(self, function: FunctionSpec) -> None:
        reserved = sorted(RESERVED_VARIABLES & set(function.environment))
        if reserved:
            raise ValueError(f"function {function.name}: environment variables {reserved} are reserved by Lambda")
        with self._condition:
            self._functions[function.arn] = function

    def function(self, function_arn: str) -> FunctionSpec:
        with self._condition:
            try:
                return self._functions[function_arn.removesuffix(":$LATEST")]
            except KeyError:
                raise KeyError(f"no function {function_arn} in the emulator") from None

    def set_async_config(self, function_arn: str, config: AsyncConfig) -> None:
        with self._condition:
            self._async_configs[function_arn] = config

    def set_dead_letter_target(self, function_arn: str, target_arn: str) -> None:
        with self._condition:
            self._dead_letter_targets[function_arn] = target_arn

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._emulator.lambda_sink = self.invoke_async
        for index in range(self._concurrency):
            worker = threading.Thread(target=self._work, name=f"lambda-worker-{index}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def stop(self) -> None:
        """Stop at once: running invocations are cut short (their containers killed), as on shutdown."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
            running = list(self._running)
        for container in running:
            container.kill()
        for worker in self._workers:
            worker.join(timeout=30)
        self._workers.clear()
        for containers in self._idle.values():
            for container in containers:
                container.close()
        self._idle.clear()
        self._emulator.lambda_sink = None

    def __enter__(self) -> LambdaService:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # invocation ------------------------------------------------------------------------------
    def invoke_async(self, function_arn: str, event: dict[str, Any]) -> Invocation:
        """Queue an event (InvocationType=Event); returns at once, like Lambda's 202."""
        arn = function_arn.removesuffix(":$LATEST")
        with self._condition:
            function = self._functions.get(arn)
            if function is None:
                raise KeyError(f"no function {function_arn} in the emulator")
            invocation = Invocation(str(uuid.uuid4()), function, event, time.time())
            self._invocations.append(invocation)
            heapq.heappush(self._schedule, (time.monotonic(), next(self._sequence), invocation))
            self._condition.notify()
        return invocation

    def invocations(self) -> list[Invocation]:
        with self._condition:
            return list(self._invocations)

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until no invocation is queued, waiting to retry or running; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._condition:
            while any(i.status in ("queued", "running") for i in self._invocations):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(timeout=min(remaining, 0.5))
        return True

    def _next_due(self) -> Invocation | None:
        with self._condition:
            while not self._stopping:
                now = time.monotonic()
                invocation = self._pop_runnable(now)
                if invocation is not None:
                    invocation.status = "running"
                    return invocation
                wait_s = self._schedule[0][0] - now if self._schedule else 0.5
                self._condition.wait(timeout=min(max(wait_s, 0.05), 0.5))
        return None

    def _pop_runnable(self, now: float) -> Invocation | None:
        """The earliest due invocation whose function is below its reserved concurrency."""
        running: dict[str, int] = {}
        for invocation in self._invocations:
            if invocation.status == "running":
                running[invocation.function.arn] = running.get(invocation.function.arn, 0) + 1
        for entry in sorted(self._schedule, key=lambda item: item[:2]):
            due, _, invocation = entry
            if due > now:
                return None
            limit = invocation.function.reserved_concurrency
            if limit is None or running.get(invocation.function.arn, 0) < limit:
                self._schedule.remove(entry)
                heapq.heapify(self._schedule)
                return invocation
        return None

    def _work(self) -> None:
        while (invocation := self._next_due()) is not None:
            try:
                self._attempt(invocation)
            except Exception:  # a worker must survive anything one invocation does
                log.exception("emulator error while running invocation %s", invocation.request_id)
                self._finish(invocation, "failed")

    def _attempt(self, invocation: Invocation) -> None:
        function = invocation.function
        config = self._async_configs.get(function.arn, AsyncConfig())
        container = self._container(function)
        log.info("START RequestId: %s Function: %s", invocation.request_id, function.name)
        started_ms = int(time.time() * 1000)
        try:
            attempt = container.invoke(invocation.request_id, invocation.event)
            invocation.attempts.append(attempt)
            log.info("REPORT RequestId: %s Duration: %.2f ms", invocation.request_id, attempt.duration_ms)
            self._write_log(container, invocation.request_id, started_ms=started_ms, attempt=attempt)
        finally:
            self._release(container)
        if attempt.error is None:
            invocation.result = attempt.result
            if config.on_success:
                self._send_record(invocation, config.on_success, "Success", attempt.result)
            self._finish(invocation, "succeeded")
            return
        payload = attempt.error
        log.warning(
            "RequestId %s failed: %s: %s", invocation.request_id, payload.get("errorType"), payload.get("errorMessage")
        )
        retries_done = len(invocation.attempts) - 1
        age_s = time.time() - invocation.received_at
        if retries_done < config.maximum_retry_attempts and age_s < config.maximum_event_age_s:
            delays = self._retry_delays_s or (0.0,)
            delay = delays[min(retries_done, len(delays) - 1)]
            with self._condition:
                invocation.status = "queued"
                heapq.heappush(self._schedule, (time.monotonic() + delay, next(self._sequence), invocation))
                self._condition.notify()
            return
        condition = "RetriesExhausted" if retries_done >= config.maximum_retry_attempts else "EventAgeExceeded"
        if config.on_failure:
            self._send_record(invocation, config.on_failure, condition, payload)
        dead_letter = self._dead_letter_targets.get(function.arn)
        if dead_letter:
            self._send_dead_letter(invocation, dead_letter, payload)
        if not config.on_failure and not dead_letter:
            log.error(
                "RequestId %s discarded after %d attempts: no failure destination",
                invocation.request_id,
                len(invocation.attempts),
            )
        self._finish(invocation, "failed")

    def _finish(self, invocation: Invocation, status: Status) -> None:
        with self._condition:
            invocation.status = status
            self._condition.notify_all()

    # containers ------------------------------------------------------------------------------
    def _container(self, function: FunctionSpec) -> Container:
        with self._condition:
            idle = self._idle.setdefault(function.arn, [])
            while idle:
                container = idle.pop()
                if container.usable:
                    self._running.add(container)
                    return container
                container.close()
        container = Container(function, self._environment(function), self._python)
        with self._condition:
            self._running.add(container)
        return container

    def _release(self, container: Container) -> None:
        with self._condition:
            self._running.discard(container)
            if container.usable and not self._stopping:
                self._idle.setdefault(container.function.arn, []).append(container)
                return
        container.close()

    def role_credentials(self, function: FunctionSpec) -> Credentials:
        return self._emulator.assume_role_as_service(function.role_arn, session_name=function.name)

    def _environment(self, function: FunctionSpec) -> dict[str, str]:
        home = self._home / function.name
        home.mkdir(parents=True, exist_ok=True)
        return {
            **function.environment,
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            "HOME": str(home),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            # Only the emulator's credentials: never a developer's ~/.aws profile or IMDS.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "_HANDLER": function.handler,
            "LAMBDA_TASK_ROOT": str(function.code_dir),
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.runtime}",
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": function.log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}",
            **self._emulator.client_environment(self.role_credentials(function)),
        }

    # logs ------------------------------------------------------------------------------------
    def _write_log(self, container: Container, request_id: str, *, started_ms: int, attempt: Attempt) -> None:
        """Put the invocation's log into the function's log group, framed as Lambda frames it.

        Written as the administrator: moto checks CloudWatch Logs permissions against "*", so
        the role's statement scoped to its own log group could never match.
        """
        function = container.function
        lines = [(ts, line) for ts, line in container.drain_log() if line.strip()]
        if attempt.error is not None:
            lines.append((int(time.time() * 1000), json.dumps(attempt.error)))
        ended_ms = max([started_ms, *(ts for ts, _ in lines)])
        init = f"\tInit Duration: {attempt.init_ms:.2f} ms" if attempt.init_ms is not None else ""
        events = [
            (started_ms, f"START RequestId: {request_id} Version: $LATEST"),
            *lines,
            (ended_ms, f"END RequestId: {request_id}"),
            (
                ended_ms,
                f"REPORT RequestId: {request_id}\tDuration: {attempt.duration_ms:.2f} ms\t"
                f"Billed Duration: {math.ceil(attempt.duration_ms)} ms\tMemory Size: {function.memory_mb} MB{init}",
            ),
        ]
        logs = self._logs_client()
        try:
            if not container.log_stream_created:
                logs.create_log_stream(logGroupName=function.log_group, logStreamName=container.log_stream)
                container.log_stream_created = True
            logs.put_log_events(
                logGroupName=function.log_group,
                logStreamName=container.log_stream,
                logEvents=[{"timestamp": ts, "message": message} for ts, message in events],
            )
        except logs.exceptions.ResourceNotFoundException:
            log.warning("log group %s does not exist: the function's logs are not kept", function.log_group)
        except (BotoCoreError, ClientError) as exc:  # losing a log must not fail the invocation
            log.warning("could not write %s's log to %s: %s", request_id, function.log_group, exc)

    def _logs_client(self) -> Any:
        with self._condition:
            if self._logs is None:
                self._logs = self._emulator.client("logs")
            return self._logs

    # destinations ----------------------------------------------------------------------------
    def _sqs_url(self, queue_arn: str) -> str:
        parts = queue_arn.split(":")
        if len(parts) != 6 or parts[2] != "sqs":
            raise ValueError(f"the emulator delivers only to SQS destinations, got {queue_arn}")
        return f"{self._emulator.endpoint}/{parts[4]}/{parts[5]}"

    def _send(self, invocation: Invocation, queue_arn: str, body: str, **attributes: Any) -> None:
        """Send as Lambda does: with the function's execution role, so its policy must allow it."""
        sqs = self._emulator.client("sqs", self.role_credentials(invocation.function))
        try:
            sqs.send_message(QueueUrl=self._sqs_url(queue_arn), MessageBody=body, **attributes)
            invocation.delivered_to.append(queue_arn)
        except Exception as exc:  # AWS drops the record and logs; so do we, loudly
            invocation.destination_error = f"{type(exc).__name__}: {exc}"
            log.error("RequestId %s: could not send to %s: %s", invocation.request_id, queue_arn, exc)

    def _send_record(self, invocation: Invocation, destination: str, condition: str, payload: Any) -> None:
        function = invocation.function
        record: dict[str, Any] = {
            "version": "1.0",
            "timestamp": iso_8601_datetime_with_milliseconds(),
            "requestContext": {
                "requestId": invocation.request_id,
                "functionArn": f"{function.arn}:$LATEST",
                "condition": condition,
                "approximateInvokeCount": len(invocation.attempts),
            },
            "requestPayload": invocation.event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
            "responsePayload": payload,
        }
        if condition != "Success":
            record["responseContext"]["functionError"] = "Unhandled"
        self._send(invocation, destination, json.dumps(record))

    def _send_dead_letter(self, invocation: Invocation, queue_arn: str, error: dict[str, Any]) -> None:
        attributes = {
            "RequestID": {"DataType": "String", "StringValue": invocation.request_id},
            "ErrorCode": {"DataType": "Number", "StringValue": "200"},
            "ErrorMessage": {"DataType": "String", "StringValue": str(error.get("errorMessage", ""))[:1000]},
        }
        self._send(invocation, queue_arn, json.dumps(invocation.event), MessageAttributes=attributes)
