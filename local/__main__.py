"""`python -m local run [--stack dev] [--photos DIR] [--out ./out] [--serve]` (see local/cli.py)."""

from __future__ import annotations

import sys

from local.cli import main

sys.exit(main())
