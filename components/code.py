"""The function's code archive: the `handler/` package at the zip root, its sources and, if compiled, bytecode."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pulumi

HANDLER_PACKAGE = "handler"


def handler_sources(handler_dir: Path) -> dict[str, Path]:
    """Archive path -> file for every `.py` under `handler_dir`, sorted.

    Only sources ship: `__pycache__` and editor or test leftovers would change the archive's
    hash between machines and trigger needless function updates.
    """
    if not (handler_dir / "__init__.py").is_file():
        raise FileNotFoundError(f"{handler_dir} is not the handler package (no __init__.py)")
    return {
        f"{HANDLER_PACKAGE}/{path.relative_to(handler_dir).as_posix()}": path
        for path in sorted(handler_dir.rglob("*.py"))
        if "__pycache__" not in path.relative_to(handler_dir).parts
    }


def handler_archive(
    handler_dir: Path, entry_point: str, bytecode: Mapping[str, Path] | None = None
) -> pulumi.AssetArchive:
    """A Pulumi archive of `handler_sources`, plus `bytecode` (archive path -> `.pyc`) when given, that contains the
    module of `entry_point` (`pkg.module.function`).

    Checked here because Lambda would only notice at the first upload (Runtime.ImportModuleError).
    """
    sources = handler_sources(handler_dir)
    module_file = entry_point.rpartition(".")[0].replace(".", "/") + ".py"
    if module_file not in sources:
        raise FileNotFoundError(f"function entry point {entry_point!r} needs {module_file}, not found in {handler_dir}")
    files = {**sources, **(bytecode or {})}
    return pulumi.AssetArchive({name: pulumi.FileAsset(str(path)) for name, path in files.items()})
