"""Bytecode for a Lambda runtime, compiled by a local interpreter of the runtime's Python version.

Lambda mounts layers read-only at ``/opt``, so Python cannot cache the bytecode it compiles:
without shipped ``.pyc`` files every cold start compiles Pillow's modules again. Measured for
``python3.12`` on this project's 2-core machine (median of 12 fresh processes, ``-B``, only the
layer and ``handler/`` on the path): importing the pipeline took ~145 ms from sources and ~100 ms
with the layer's bytecode. Bytecode is specific to a ``major.minor`` version, which is why the
compiling interpreter must match the runtime; a mismatch would be ignored by Python at import,
so it is refused here instead.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from layer_build.runtimes import LayerBuildError, runtime_info

# Where Lambda extracts a layer's `python/` directory, and the function's own code.
LAYER_SITE_ON_LAMBDA = "/opt/python"
FUNCTION_CODE_ON_LAMBDA = "/var/task"
_VERSION_PROBE = (
    "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.implementation.cache_tag); "
    "print(sys.version.replace(chr(10), ' '))"
)


@dataclass(frozen=True)
class BytecodeCompiler:
    """A local interpreter whose bytecode a runtime can load."""

    executable: str
    """Path of the interpreter."""
    python_version: str
    """Its ``major.minor``, equal to the runtime's."""
    cache_tag: str
    """What its bytecode files are named by, e.g. ``cpython-312`` in ``__pycache__/Image.cpython-312.pyc``."""
    full_version: str
    """Its ``sys.version``: part of the layer cache key, since another patch release may compile differently."""


def find_compiler(runtime: str) -> BytecodeCompiler:
    """The ``pythonX.Y`` on PATH matching ``runtime``, or an error saying what to install."""
    wanted = runtime_info(runtime).python_version
    name = f"python{wanted}"
    executable = shutil.which(name)
    if executable is None:
        raise LayerBuildError(
            f"layer bytecode for {runtime} must be compiled by Python {wanted}, and no {name} is on PATH: "
            f"install Python {wanted} (e.g. `pyenv install {wanted}` and add it to `pyenv global`), "
            "or build the layer without bytecode"
        )
    probe = subprocess.run([executable, "-I", "-c", _VERSION_PROBE], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        raise LayerBuildError(
            f"{executable} (for {runtime} layer bytecode) does not run, exit code {probe.returncode}:\n"
            f"{probe.stderr.strip()}"
        )
    found, cache_tag, full_version = probe.stdout.splitlines()[:3]
    if found != wanted:
        raise LayerBuildError(f"{executable} is Python {found}, not {wanted}: its bytecode is useless to {runtime}")
    return BytecodeCompiler(executable=executable, python_version=found, cache_tag=cache_tag, full_version=full_version)


def compile_tree(compiler: BytecodeCompiler, tree: Path, path_on_lambda: str) -> None:
    """(Re)write ``__pycache__`` bytecode next to every ``.py`` under ``tree``; fail if any file does not compile.

    ``unchecked-hash`` bytecode carries no timestamps (so the zip stays reproducible) and is
    loaded without reading the source again; a layer never changes after it is published.
    Source paths recorded in the bytecode are rewritten to ``path_on_lambda``; the build's scratch
    directory has a random name, which would otherwise make every build's bytes differ.
    """
    command = [
        compiler.executable,
        "-I",
        "-m",
        "compileall",
        "-q",
        "-f",
        "-j0",
        "--invalidation-mode",
        "unchecked-hash",
        "-s",
        str(tree),
        "-p",
        path_on_lambda,
        str(tree),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LayerBuildError(
            f"{compiler.executable} could not compile every module under {tree}, exit code {result.returncode}:\n"
            f"{(result.stdout + result.stderr).strip()}"
        )


def bytecode_name(source: str, compiler: BytecodeCompiler) -> str:
    """Where Python looks for the bytecode of archive path ``source`` (``handler/app.py``)."""
    path = PurePosixPath(source)
    return str(path.parent / "__pycache__" / f"{path.stem}.{compiler.cache_tag}.pyc")


def compile_function_code(compiler: BytecodeCompiler, sources: Mapping[str, Path], cache_dir: Path) -> dict[str, Path]:
    """Bytecode for the function's own modules: archive path of each ``.pyc`` -> its file.

    Lambda extracts function code to a read-only ``/var/task`` too, so without it every cold start
    compiles ``handler/`` again (about 20 ms). Compiled once per set of sources and compiler, into
    ``cache_dir``, where the files stay for the deployment to read.
    """
    hasher = hashlib.sha256(compiler.full_version.encode())
    for name, path in sorted(sources.items()):
        for part in (name.encode(), path.read_bytes()):
            hasher.update(len(part).to_bytes(8, "big"))
            hasher.update(part)
    entry = cache_dir / f"function-{compiler.cache_tag}-{hasher.hexdigest()[:16]}"
    compiled = {bytecode_name(name, compiler): entry / bytecode_name(name, compiler) for name in sources}
    if all(path.is_file() for path in compiled.values()):
        return compiled
    cache_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".function-", dir=cache_dir))
    try:
        for name, path in sources.items():
            (scratch / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, scratch / name)
        compile_tree(compiler, scratch, FUNCTION_CODE_ON_LAMBDA)
        shutil.rmtree(entry, ignore_errors=True)
        scratch.rename(entry)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return compiled
