"""The Lambda runtime inside one emulated container (a child process of the Lambda service).

Started with the function's environment (its variables, the role's credentials, the emulator's
endpoint) and its code directory as the working directory and first entry of sys.path, like
LAMBDA_TASK_ROOT. It imports the handler once (the init phase), then serves invocations: one JSON
line in on stdin, one JSON line out on the protocol pipe. The handler's own stdout and stderr go
to stderr, which the service forwards to its log, as Lambda forwards them to CloudWatch Logs.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import time
import traceback
from typing import Any, TextIO

# Written to stderr after each invocation, so the service knows that invocation's log is complete.
LOG_SENTINEL = "\x1eemulator-invocation-end"


class LambdaContext:
    """The subset of Lambda's context object handlers use."""

    def __init__(self, request_id: str, deadline_ms: int, invoked_function_arn: str) -> None:
        self.aws_request_id = request_id
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ["AWS_LAMBDA_FUNCTION_VERSION"]
        self.invoked_function_arn = invoked_function_arn
        self.memory_limit_in_mb = os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]
        self.log_group_name = os.environ["AWS_LAMBDA_LOG_GROUP_NAME"]
        self.log_stream_name = os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _error(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


def _load_handler(spec: str) -> Any:
    module_name, _, function_name = spec.rpartition(".")
    module = importlib.import_module(module_name)
    return getattr(module, function_name)


def _end_log() -> None:
    sys.stdout.flush()
    sys.stderr.write(LOG_SENTINEL + "\n")
    sys.stderr.flush()


def serve(protocol: TextIO) -> None:
    handler: Any = None
    init_error: dict[str, Any] | None = None
    try:
        handler = _load_handler(os.environ["_HANDLER"])
    except Exception as exc:  # reported per invocation, as Lambda reports Runtime.ImportModuleError
        init_error = _error(exc, "Runtime.ImportModuleError")
        traceback.print_exc()
    # The init phase is over: the service times it separately, as Lambda reports Init Duration.
    protocol.write(json.dumps({"ready": True}) + "\n")
    protocol.flush()
    for line in sys.stdin:
        invocation = json.loads(line)
        if init_error is not None:
            # Lambda discards an environment whose init failed; the next attempt starts afresh.
            _end_log()
            protocol.write(json.dumps({"ok": False, "error": init_error, "fatal": True}) + "\n")
            protocol.flush()
            return
        context = LambdaContext(invocation["requestId"], invocation["deadlineMs"], invocation["functionArn"])
        try:
            reply: dict[str, Any] = {"ok": True, "result": handler(invocation["event"], context)}
        except Exception as exc:  # the handler's failure is the invocation's result
            traceback.print_exc()
            reply = {"ok": False, "error": _error(exc)}
        _end_log()
        protocol.write(json.dumps(reply, default=str) + "\n")
        protocol.flush()


def main() -> None:
    # Keep the real stdout for the protocol; everything the handler prints goes to the log.
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # Like Lambda's Python runtime: a root handler exists, the handler picks its own level.
    logging.basicConfig(stream=sys.stderr, format="[%(levelname)s]\t%(asctime)s\t%(name)s\t%(message)s")
    serve(protocol)


if __name__ == "__main__":
    main()
