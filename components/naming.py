"""Physical names: `<project>-<stack>-<role>-<hex>`, checked before any resource is declared.

S3 bucket names are global and immutable, so a stack name that would make an invalid one must
fail at preview with a clear message, not at `up` with an S3 error after half the stack exists.
"""

from __future__ import annotations

import re

SUFFIX_BYTES = 4
"""Bytes of the RandomId suffix: 8 hex characters keep names short and collisions unlikely."""
SUFFIX_HEX_CHARS = 2 * SUFFIX_BYTES
BUCKET_ROLES: tuple[str, ...] = ("upload", "processed", "quarantine")
FUNCTION_ROLE = "resize"

_BUCKET_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_FUNCTION_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")


class NamingError(ValueError):
    """The project or stack name cannot form valid AWS names; the message says which rule broke."""


def name_prefix(project: str, stack: str) -> str:
    """The prefix every physical name shares, validated for the longest name built from it."""
    prefix = f"{project}-{stack}"
    for role in BUCKET_ROLES:
        bucket_name_prefix(prefix, role)
    function_name_prefix(prefix)
    return prefix


def bucket_name_prefix(prefix: str, role: str) -> str:
    """`<prefix>-<role>-`, to which the hex suffix is appended; raises NamingError if the result is invalid."""
    head = f"{prefix}-{role}-"
    example = head + "0" * SUFFIX_HEX_CHARS
    if not _BUCKET_NAME_RE.match(example) or example.startswith(_RESERVED_BUCKET_PREFIXES):
        raise NamingError(
            f"bucket name {example!r} (project-stack-{role}-<hex>) is invalid: S3 needs 3-63 characters of "
            "lowercase letters, digits and hyphens; rename the stack (lowercase, shorter)"
        )
    return head


def function_name_prefix(prefix: str) -> str:
    head = f"{prefix}-{FUNCTION_ROLE}-"
    example = head + "0" * SUFFIX_HEX_CHARS
    if not _FUNCTION_NAME_RE.match(example):
        raise NamingError(
            f"function name {example!r} is invalid: Lambda needs 1-64 letters, digits, '-' or '_'; "
            "rename the stack (shorter)"
        )
    return head
