"""Fault injection in front of moto: answer chosen S3 requests with 503 SlowDown.

Tests force transient failures here, inside the emulator, so the handler runs unmodified and
meets the same throttling response S3 sends under load (no backdoor in the handler).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_SLOW_DOWN = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
    "<RequestId>{request_id}</RequestId></Error>"
)


@dataclass
class FaultRule:
    """Requests with this method on exactly `/<bucket>/<key>` (path-style) get a 503."""

    method: str
    bucket: str
    key: str
    remaining: int | None
    """How many more requests to fail; None fails every match until the rule is removed."""
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and path == f"/{self.bucket}/{self.key}"


class FaultInjector:
    """WSGI middleware holding the active fault rules; thread-safe, rules are added by tests."""

    def __init__(self, app: WSGIApp) -> None:
        self._app = app
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def fail(self, method: str, bucket: str, key: str, *, times: int | None = None) -> FaultRule:
        """Answer `method /bucket/key` with 503 SlowDown, `times` times (None: until `clear`)."""
        if times is not None and times < 1:
            raise ValueError(f"times must be >= 1 or None, got {times}")
        rule = FaultRule(method.upper(), bucket, key, times)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def _take(self, method: str, path: str) -> FaultRule | None:
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path) and (rule.remaining is None or rule.remaining > 0):
                    rule.hits += 1
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    return rule
        return None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        # WSGI hands PATH_INFO over as latin-1 text of the percent-decoded UTF-8 bytes.
        path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", errors="replace")
        if self._take(environ.get("REQUEST_METHOD", ""), path) is None:
            return self._app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length:
            environ["wsgi.input"].read(length)  # drain, so the connection stays in sync
        body = _SLOW_DOWN.format(request_id=uuid.uuid4().hex.upper()).encode()
        start_response(
            "503 Slow Down",
            [("Content-Type", "application/xml"), ("Content-Length", str(len(body))), ("Connection", "close")],
        )
        return [body]
