"""`python -m handler render`: the Lambda's pipeline on local files, for trying presets and uploads.

Same code path as the function (`pipeline.render`); variants are written to
`DIR/<variant>/<file stem>.<ext>`, mirroring the processed bucket's keys, and one
JSON line per input goes to stdout. Exit status: 0 all processed, 1 any
rejected, 2 usage errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from handler.pipeline import DEFAULT_MAX_BYTES, DEFAULT_PIXEL_LIMIT, MAX_PIXEL_LIMIT, Rejected, render
from handler.variants import PRESETS, VariantError, VariantSpec, variants_from_json

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2


def _bounded_int(low: int, high: int | None) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            allowed = f"{low}..{high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {value}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m handler", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    render_cmd = commands.add_parser("render", help="render the variants of local image files")
    render_cmd.add_argument("files", nargs="+", type=Path, metavar="FILE", help="images to render")
    render_cmd.add_argument("--out", required=True, type=Path, metavar="DIR", help="directory for the variants")
    chosen = render_cmd.add_mutually_exclusive_group()
    chosen.add_argument("--preset", choices=sorted(PRESETS), help="variant preset (default: default)")
    chosen.add_argument("--variants", metavar="JSON", help="variant list as JSON (the VARIANTS env format)")
    render_cmd.add_argument(
        "--pixel-limit", type=_bounded_int(1, MAX_PIXEL_LIMIT), default=DEFAULT_PIXEL_LIMIT, metavar="N"
    )
    render_cmd.add_argument("--max-bytes", type=_bounded_int(1, None), default=DEFAULT_MAX_BYTES, metavar="N")
    render_cmd.add_argument(
        "--workers", type=_bounded_int(1, 256), default=None, metavar="N", help="encoder threads (default: CPUs)"
    )
    return parser


def _render_file(path: Path, specs: Sequence[VariantSpec], args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    line: dict[str, Any] = {"source": str(path)}
    try:
        variants = render(
            path.read_bytes(), specs, pixel_limit=args.pixel_limit, max_bytes=args.max_bytes, workers=args.workers
        )
    except Rejected as exc:
        line.update(status="rejected", reason=exc.reason, detail=exc.detail, variants=[])
    else:
        written = []
        for variant in variants:
            target = args.out / variant.name / f"{path.stem}.{variant.extension}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(variant.data)
            written.append(
                {
                    "name": variant.name,
                    "path": str(target),
                    "width": variant.width,
                    "height": variant.height,
                    "bytes": len(variant.data),
                    "content_type": variant.content_type,
                }
            )
        line.update(status="processed", reason=None, variants=written)
    line["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return line


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.captureWarnings(True)
    try:
        specs = variants_from_json(args.variants, "--variants") if args.variants else PRESETS[args.preset or "default"]
    except VariantError as exc:
        parser.error(str(exc))
    missing = [str(path) for path in args.files if not path.is_file()]
    if missing:
        parser.error(f"not a readable file: {', '.join(missing)}")
    status = EXIT_OK
    for path in args.files:
        line = _render_file(path, specs, args)
        sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
        sys.stdout.flush()
        if line["status"] == "rejected":
            status = EXIT_REJECTED
    return status
