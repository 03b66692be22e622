"""Child probe: render one photo with one preset once, then report this interpreter's memory peak.

Run as `python -m bench.rss --implementation pipeline --preset default PHOTO`; prints one JSON
object. The peak comes from `VmHWM` (high-water mark of this process's own address space), not
`ru_maxrss`: Linux carries `ru_maxrss` across `exec`, so a child of a big benchmark process would
report its parent's peak.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from handler.pipeline import render
from handler.variants import PRESETS

from .naive import render_naively


def high_water_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux `/proc/self/status`)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM missing from /proc/self/status: peak RSS needs Linux")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rss", description=__doc__)
    parser.add_argument("--implementation", choices=("pipeline", "naive"), required=True)
    parser.add_argument("--preset", choices=sorted(PRESETS), required=True)
    parser.add_argument("photo", type=Path)
    args = parser.parse_args(argv)

    specs = PRESETS[args.preset]
    renderer = render if args.implementation == "pipeline" else render_naively
    data = args.photo.read_bytes()
    idle_mb = high_water_mb()
    renderer(data, specs)
    sys.stdout.write(json.dumps({"idle_mb": round(idle_mb, 1), "peak_mb": round(high_water_mb(), 1)}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
