"""Build the Python Lambda layer from manylinux wheels with pip, reproducibly, and cache it.

pip can install wheels for another platform (``--platform``/``--python-version``), so the layer
is built on any machine for either Lambda architecture without Docker. The zip is normalised
(sorted entries, fixed timestamps and permissions, no install-time noise) so the same inputs
always give the same bytes: the program hands that hash to ``LayerVersion`` and an
unchanged layer is not republished.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from layer_build.bytecode import LAYER_SITE_ON_LAMBDA, BytecodeCompiler, compile_tree, find_compiler
from layer_build.runtimes import LayerBuildError, manylinux_machine, runtime_info

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
REQUIREMENTS_FILE = PACKAGE_DIR / "requirements.txt"
DEFAULT_CACHE_DIR = PROJECT_DIR / ".build" / "layers"
FUNCTION_CODE_DIR = PROJECT_DIR / "handler"
# Lambda's quota for function code plus all its layers, unzipped (250 MB).
LAMBDA_UNZIPPED_LIMIT_BYTES = 262_144_000
# PublishLayerVersion takes at most 50 MB of zip in the request, which is how the program uploads it.
LAMBDA_DIRECT_UPLOAD_LIMIT_BYTES = 52_428_800

# The earliest timestamp a zip entry can carry; any fixed value makes the bytes reproducible.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_ZIP_CREATED_ON_UNIX = 3
# zlib's default: level 9 takes four times as long for a zip 0.3% smaller.
_COMPRESS_LEVEL = 6
# Written by pip at install time, not shipped in the wheel: they vary with the installer, the
# install path or the request, and nothing at runtime reads them.
_INSTALL_NOISE = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"})
# Requirement-file options that pull in another file's content.
_NESTED_REQUIREMENT_OPTIONS = ("-r", "-c", "--requirement", "--constraint")
# The files whose content decides the zip's bytes; a change to any of them invalidates the cache.
_BUILDER_SOURCES = (PACKAGE_DIR / "build.py", PACKAGE_DIR / "runtimes.py", PACKAGE_DIR / "bytecode.py")
# `name.cpython-312-aarch64-linux-gnu.so`: the Python an extension module was built for. (Bytecode for
# another Python is only ignored, not an import failure, so it is not checked.)
_CPYTHON_TAG = re.compile(r"\.cpython-(\d)(\d+)-")
# Extension modules and the libraries wheels vendor (`libjpeg-80045241.so.62.4.0`).
_SHARED_OBJECT = re.compile(r"\.so(\.[0-9.]+)?$")
# ELF e_machine values of Lambda's two architectures, as manylinux names them.
_ELF_MACHINES = {62: "x86_64", 183: "aarch64"}
# A cache entry is `<stem>-<first 16 hex digits of the cache key>`.
_KEY_DIGITS = 16


@dataclass(frozen=True)
class LayerArtifact:
    """A layer zip on disk and what Lambda needs to know about it."""

    path: Path
    """The zip file."""
    sha256: str
    """Hex SHA-256 of the zip's bytes."""
    source_code_hash: str
    """Base64 of the raw SHA-256 digest: the form ``LayerVersion.source_code_hash`` expects."""
    runtime: str
    """Lambda runtime the layer was built for, e.g. ``python3.12``."""
    arch: str
    """Lambda architecture the layer was built for: ``x86_64`` or ``arm64``."""
    unzipped_bytes: int
    """Sum of the entries' uncompressed sizes: what counts against Lambda's 250 MB limit."""

    @property
    def zipped_bytes(self) -> int:
        return self.path.stat().st_size


def artifact_for(zip_path: Path, runtime: str, arch: str) -> LayerArtifact:
    """Describe an existing layer zip (e.g. one given in stack config) for ``runtime`` and ``arch``."""
    runtime_info(runtime)
    manylinux_machine(arch)
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise LayerBuildError(f"layer zip {zip_path} does not exist or is not a file")
    try:
        with zipfile.ZipFile(zip_path) as archive:
            unzipped_bytes = sum(entry.file_size for entry in archive.infolist())
            _check_contents(zip_path, archive, runtime, arch)
    except zipfile.BadZipFile as error:
        raise LayerBuildError(f"layer zip {zip_path} is not a readable zip file: {error}") from error
    digest = hashlib.sha256(zip_path.read_bytes()).digest()
    return LayerArtifact(
        path=zip_path,
        sha256=digest.hex(),
        source_code_hash=base64.b64encode(digest).decode("ascii"),
        runtime=runtime,
        arch=arch,
        unzipped_bytes=unzipped_bytes,
    )


def _check_contents(zip_path: Path, archive: zipfile.ZipFile, runtime: str, arch: str) -> None:
    """Refuse a zip Lambda would load but the function could not import: no Pillow, or binaries for
    another Python or machine. The program labels the layer from config, so a mismatch would
    otherwise deploy cleanly and fail every upload with `Runtime.ImportModuleError`."""
    version = runtime_info(runtime).python_version
    machine = manylinux_machine(arch)
    names = archive.namelist()
    site_dirs = {
        f"python/{package}" for package in ("PIL/__init__.py", f"lib/python{version}/site-packages/PIL/__init__.py")
    }
    if not site_dirs.intersection(names):
        raise LayerBuildError(
            f"layer zip {zip_path} has no PIL package at python/PIL/ or python/lib/python{version}/site-packages/PIL/, "
            "where Lambda puts layers on the path; build it with `python -m layer_build`"
        )
    for name in names:
        if not _SHARED_OBJECT.search(name):
            continue
        tag = _CPYTHON_TAG.search(name)
        if tag is not None and f"{tag[1]}.{tag[2]}" != version:
            raise LayerBuildError(
                f"layer zip {zip_path} holds {name}, built for Python {tag[1]}.{tag[2]}, not {runtime}; "
                f"build it with `python -m layer_build --runtime {runtime} --arch {arch}`"
            )
        with archive.open(name) as entry:
            header = entry.read(20)
        found = _ELF_MACHINES.get(int.from_bytes(header[18:20], "little")) if header[:4] == b"\x7fELF" else None
        if found != machine:
            raise LayerBuildError(
                f"layer zip {zip_path} holds {name}, a binary for {found or 'no known Linux machine'}, "
                f"not {machine} ({arch}); build it with `python -m layer_build --runtime {runtime} --arch {arch}`"
            )


def cache_key(
    runtime: str,
    arch: str,
    requirements_file: Path = REQUIREMENTS_FILE,
    compiler: BytecodeCompiler | None = None,
) -> str:
    """Hex digest of everything that decides the layer's bytes: requirements, target, builder, bytecode compiler."""
    requirements = requirements_file.read_bytes()
    for line in requirements.decode().splitlines():
        if line.strip().startswith(_NESTED_REQUIREMENT_OPTIONS):
            raise LayerBuildError(
                f"{requirements_file}: {line.strip()!r} includes another file, which the layer cache cannot "
                "see change; list the pins in this file itself"
            )
    hasher = hashlib.sha256()
    bytecode = compiler.full_version.encode() if compiler is not None else b""
    for part in (runtime.encode(), arch.encode(), requirements, bytecode):
        hasher.update(len(part).to_bytes(8, "big"))
        hasher.update(part)
    for source in _BUILDER_SOURCES:
        hasher.update(source.read_bytes())
    return hasher.hexdigest()


def ensure_layer(
    runtime: str,
    arch: str,
    *,
    cache_dir: Path | None = None,
    function_code_dir: Path = FUNCTION_CODE_DIR,
    size_limit_bytes: int = LAMBDA_UNZIPPED_LIMIT_BYTES,
    requirements_file: Path = REQUIREMENTS_FILE,
    bytecode: bool = False,
) -> LayerArtifact:
    """Build the layer for ``runtime``/``arch``, or reuse the cached zip if its inputs are unchanged.

    ``bytecode`` ships ``.pyc`` files compiled by a local Python of the runtime's version
    (see ``layer_build.bytecode``); it is an error, not a silent downgrade, when there is none.
    Raises ``LayerBuildError`` when pip fails or when the layer plus the function code in
    ``function_code_dir`` would unzip to more than ``size_limit_bytes``. ``requirements_file``
    is for tests; the layer's pins live in ``layer_build/requirements.txt``.
    """
    runtime_info(runtime)
    manylinux_machine(arch)
    compiler = find_compiler(runtime) if bytecode else None
    cache_dir = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    key = cache_key(runtime, arch, requirements_file, compiler)
    stem = f"{runtime}-{arch}-bytecode" if bytecode else f"{runtime}-{arch}"
    entry_dir = cache_dir / f"{stem}-{key[:_KEY_DIGITS]}"
    zip_path = entry_dir / f"layer-{runtime}-{arch}.zip"
    if zip_path.is_file():
        logger.info("reusing cached layer %s", zip_path)
    else:
        _build_into_cache(runtime, arch, requirements_file, entry_dir, zip_path, compiler=compiler)
        _prune_stale_entries(cache_dir, stem, keep=entry_dir)
    artifact = artifact_for(zip_path, runtime, arch)
    check_size(artifact, function_code_dir=function_code_dir, size_limit_bytes=size_limit_bytes)
    return artifact


def function_code_bytes(function_code_dir: Path) -> int:
    """Unzipped size of the function's code: every file under the directory except bytecode caches."""
    if not function_code_dir.is_dir():
        raise LayerBuildError(f"function code directory {function_code_dir} does not exist")
    return sum(
        path.stat().st_size
        for path in function_code_dir.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def check_size(
    artifact: LayerArtifact,
    *,
    function_code_dir: Path = FUNCTION_CODE_DIR,
    size_limit_bytes: int = LAMBDA_UNZIPPED_LIMIT_BYTES,
    upload_limit_bytes: int = LAMBDA_DIRECT_UPLOAD_LIMIT_BYTES,
) -> int:
    """Return layer + function code unzipped bytes; raise if that or the zip itself exceeds Lambda's limits."""
    if artifact.zipped_bytes > upload_limit_bytes:
        raise LayerBuildError(
            f"layer {artifact.path} is {artifact.zipped_bytes} bytes zipped, over the {upload_limit_bytes} bytes "
            "Lambda accepts in a direct upload; trim layer_build/requirements.txt"
        )
    code_bytes = function_code_bytes(function_code_dir)
    total = artifact.unzipped_bytes + code_bytes
    logger.info(
        "layer %s unzips to %d bytes; with function code %s (%d bytes) the total is %d of %d bytes allowed",
        artifact.path.name,
        artifact.unzipped_bytes,
        function_code_dir,
        code_bytes,
        total,
        size_limit_bytes,
    )
    if total > size_limit_bytes:
        raise LayerBuildError(
            f"layer {artifact.path} unzips to {artifact.unzipped_bytes} bytes and the function code in "
            f"{function_code_dir} to {code_bytes} bytes: {total} bytes in total exceeds Lambda's unzipped "
            f"limit of {size_limit_bytes} bytes; trim layer_build/requirements.txt or the function code"
        )
    return total


def _build_into_cache(
    runtime: str,
    arch: str,
    requirements_file: Path,
    entry_dir: Path,
    zip_path: Path,
    *,
    compiler: BytecodeCompiler | None,
) -> None:
    """Install into a scratch dir, compile it if asked, zip it, then move the zip into place atomically."""
    logger.info("building layer for %s on %s", runtime, arch)
    cache_root = entry_dir.parent
    cache_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="layer-build-", dir=cache_root) as scratch:
        scratch_dir = Path(scratch)
        site_dir = scratch_dir / "python"
        _pip_install(runtime, arch, requirements_file, site_dir)
        if compiler is not None:
            logger.info("compiling bytecode with %s (Python %s)", compiler.executable, compiler.full_version)
            compile_tree(compiler, site_dir, LAYER_SITE_ON_LAMBDA)
        staged_zip = scratch_dir / zip_path.name
        _write_reproducible_zip(site_dir, staged_zip, bytecode_tag=compiler.cache_tag if compiler else None)
        entry_dir.mkdir(exist_ok=True)
        os.replace(staged_zip, zip_path)
    logger.info("built %s", zip_path)


def _pip_install(runtime: str, arch: str, requirements_file: Path, site_dir: Path) -> None:
    """Install the pinned requirements as the Lambda runtime would see them, binary wheels only."""
    info = runtime_info(runtime)
    platform_args = [arg for tag in info.platform_tags(arch) for arg in ("--platform", tag)]
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--no-compile",
        "--only-binary=:all:",
        *platform_args,
        "--python-version",
        info.python_version,
        "--implementation",
        "cp",
        "--target",
        str(site_dir),
        "-r",
        str(requirements_file),
    ]
    logger.debug("running %s", " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LayerBuildError(
            f"pip could not install {requirements_file} for {runtime} on {arch} "
            f"(manylinux tags up to glibc {info.glibc[0]}.{info.glibc[1]}), exit code {result.returncode}:\n"
            f"{result.stderr.strip()}"
        )


def _layer_files(site_dir: Path, *, bytecode_tag: str | None) -> list[tuple[str, Path]]:
    """(archive name, path) of every file that belongs in the layer, sorted by archive name.

    Left out: bytecode, except ``__pycache__/*.<bytecode_tag>.pyc`` when a tag is given (what
    ``compile_tree`` wrote for the runtime), pip's install-time records, and ``bin/`` (console
    scripts whose shebang names the build machine's Python; nothing on Lambda can run them).
    """
    files: list[tuple[str, Path]] = []
    for path in site_dir.rglob("*"):
        relative = path.relative_to(site_dir)
        if path.is_dir() or relative.parts[0] == "bin":
            continue
        is_bytecode = path.suffix == ".pyc" or "__pycache__" in relative.parts
        is_runtime_bytecode = (
            bytecode_tag is not None
            and relative.parent.name == "__pycache__"
            and path.name.endswith(f".{bytecode_tag}.pyc")
        )
        if is_bytecode and not is_runtime_bytecode:
            continue
        if relative.parent.name.endswith(".dist-info") and relative.name in _INSTALL_NOISE:
            continue
        files.append((f"python/{relative.as_posix()}", path))
    return sorted(files)


def _write_reproducible_zip(site_dir: Path, zip_path: Path, *, bytecode_tag: str | None = None) -> None:
    """Zip the layer with fixed order, timestamps and permissions, so equal input gives equal bytes."""
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=_COMPRESS_LEVEL) as archive:
        for archive_name, path in _layer_files(site_dir, bytecode_tag=bytecode_tag):
            executable = path.stat().st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            entry = zipfile.ZipInfo(archive_name, date_time=_ZIP_EPOCH)
            entry.create_system = _ZIP_CREATED_ON_UNIX
            entry.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, path.read_bytes(), compresslevel=_COMPRESS_LEVEL)


def _prune_stale_entries(cache_root: Path, stem: str, *, keep: Path) -> None:
    """Drop older builds of the same kind, so the cache holds one zip per runtime, architecture and bytecode choice."""
    for stale in cache_root.glob(f"{stem}-*"):
        if stale != keep and stale.is_dir() and len(stale.name) == len(stem) + 1 + _KEY_DIGITS:
            logger.info("removing stale cached layer %s", stale)
            shutil.rmtree(stale)
