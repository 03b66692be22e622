"""`python -m handler render FILE... --out DIR`: see `handler.cli`."""

from __future__ import annotations

import sys

from handler.cli import main

sys.exit(main())
