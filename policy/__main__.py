"""Entry point the Pulumi CLI runs for `--policy-pack policy`: serve the rules as a policy pack.

The rules live in `rules.py` so tests can import and run them (`policy.harness`) without the CLI;
this file only hands them to `PolicyPack`, which starts the gRPC analyzer and never returns.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The CLI runs this file with `policy/` as the working directory; put it on the path explicitly so
# `import rules` works however the analyzer names the program (directory or file).
POLICY_DIR = str(Path(__file__).resolve().parent)
if POLICY_DIR not in sys.path:
    sys.path.insert(0, POLICY_DIR)

from pulumi_policy import PolicyPack  # noqa: E402
from rules import DEFAULT_ENFORCEMENT, PACK_NAME, POLICIES  # noqa: E402

PolicyPack(
    name=PACK_NAME,
    policies=POLICIES,
    enforcement_level=DEFAULT_ENFORCEMENT,
    description="Guardrails for the S3 -> Lambda -> S3 image pipeline.",
    provider="aws",
)
