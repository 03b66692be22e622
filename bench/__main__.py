"""`python -m bench`: time the pipeline against the naive baseline and the codec floor.

Prints per photo and preset the median ms, bytes per variant, peak RSS and the ratios, the cold
import time of the handler, and each target of issue 7 with PASS/FAIL. Exit status is 0 when the
benchmark ran; with `--check` it is 1 when any target failed or was not measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from handler.variants import PRESETS

from .measure import cpu_snapshot, other_processes_cores
from .report import render_report
from .suite import (
    DEFAULT_PHOTOS,
    TARGET_PHOTO,
    environment,
    evaluate_targets,
    measure_case,
    measure_import,
    measure_memory,
    photos_in,
)

log = logging.getLogger("bench")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="folder of photos (default: %(default)s)")
    parser.add_argument(
        "--preset", action="append", choices=sorted(PRESETS), help="preset to run (repeatable; default all)"
    )
    parser.add_argument("--photo", action="append", metavar="NAME", help="only this photo of --photos (repeatable)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per contender after one warm-up (default 5)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run for CI: the smallest photo, 1 run, 3 import probes; ratios are not meaningful",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target fails or is not measured")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, got {args.runs}")
    if not args.photos.is_dir():
        parser.error(f"--photos: {args.photos} is not a directory")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    photos = [path for path in photos_in(args.photos) if not args.photo or path.name in args.photo]
    if not photos:
        log.error("no photos in %s%s", args.photos, f" named {', '.join(args.photo)}" if args.photo else "")
        return 2
    runs, warmups, import_repeats = args.runs, 1, 7
    if args.quick:
        photos = [min(photos, key=lambda path: path.stat().st_size)]
        runs, import_repeats = 1, 3
    presets = args.preset or list(PRESETS)
    cpu_before = cpu_snapshot()

    cases = []
    for photo in photos:
        for preset in presets:
            case_before = cpu_snapshot()
            case = measure_case(photo, preset, runs=runs, warmups=warmups)
            case["other_processes_cores"] = round(other_processes_cores(case_before, cpu_snapshot()), 2)
            log.info("measuring peak RSS of %s / %s in fresh interpreters", photo.name, preset)
            measure_memory(case, photo)
            cases.append(case)
    log.info("measuring the cold import of the handler")
    import_before = cpu_snapshot()
    import_probe = measure_import(import_repeats)
    import_probe["other_processes_cores"] = round(other_processes_cores(import_before, cpu_snapshot()), 2)
    contention = other_processes_cores(cpu_before, cpu_snapshot())
    result = {
        "environment": {**environment(), "other_processes_cores": round(contention, 2)},
        "settings": {"runs": runs, "warmups": warmups, "quick": args.quick, "photos": str(args.photos)},
        "target_photo": TARGET_PHOTO,
        "cases": cases,
        "import": import_probe,
        "targets": evaluate_targets(cases, import_probe),
    }
    sys.stdout.write(render_report(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.check and any(target["status"] != "PASS" for target in result["targets"]):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
