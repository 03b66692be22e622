"""CLI: ``python -m layer_build --runtime python3.12 --arch arm64 [--bytecode] [--out DIR]``.

Builds (or reuses) ``layer-<runtime>-<arch>.zip`` and writes one result line to stdout:
path, sha256, zipped and unzipped size. Progress goes to logging on stderr.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from layer_build import ARCHITECTURES, RUNTIMES, LayerBuildError, artifact_for, ensure_layer
from layer_build.build import DEFAULT_CACHE_DIR, FUNCTION_CODE_DIR, function_code_bytes

logger = logging.getLogger("layer_build")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m layer_build",
        description="Build the Pillow Lambda layer from manylinux wheels (no Docker), reproducibly.",
    )
    parser.add_argument("--runtime", required=True, choices=list(RUNTIMES), help="Lambda runtime")
    parser.add_argument("--arch", required=True, choices=list(ARCHITECTURES), help="Lambda architecture")
    parser.add_argument(
        "--bytecode",
        action="store_true",
        help="ship .pyc files compiled by the runtime's Python version (needs e.g. python3.12 on PATH); "
        "saves compiling Pillow on every cold start",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="copy the zip into this directory (default: leave it in the build cache and print its path)",
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help=f"build cache (default: {DEFAULT_CACHE_DIR})"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log pip's command line too")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        artifact = ensure_layer(args.runtime, args.arch, cache_dir=args.cache_dir, bytecode=args.bytecode)
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            copied = shutil.copyfile(artifact.path, args.out / artifact.path.name)
            artifact = artifact_for(Path(copied), args.runtime, args.arch)
        total_bytes = artifact.unzipped_bytes + function_code_bytes(FUNCTION_CODE_DIR)
    except LayerBuildError as error:
        logger.error("%s", error)
        return 1
    sys.stdout.write(
        f"{artifact.path} sha256={artifact.sha256} zipped_bytes={artifact.zipped_bytes} "
        f"unzipped_bytes={artifact.unzipped_bytes} with_function_code_bytes={total_bytes}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
