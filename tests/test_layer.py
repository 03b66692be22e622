"""The Lambda layer: Docker-free build for each runtime/arch, reproducible bytes, cache, size limit.

Tests marked ``network`` install wheels from PyPI (CI runs them; offline, skip them with
``-m "not network"``). Each (runtime, arch) layer is built once per session into a temporary
cache, so these tests prove a real build rather than reuse a developer's ``.build``.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import layer_build
from components.code import handler_sources
from layer_build import (
    ARCHITECTURES,
    RUNTIMES,
    LayerArtifact,
    LayerBuildError,
    UnsupportedTargetError,
    artifact_for,
    check_size,
    ensure_layer,
)
from layer_build import build as layer_build_module
from layer_build import bytecode as bytecode_module
from tests.conftest import PROJECT_DIR

# ELF e_machine values from the System V ABI; parsed here independently of the builder.
ELF_MACHINES = {"x86_64": 62, "arm64": 183}
# Local interpreters standing in for each Lambda runtime: (pyenv version, executable).
LOCAL_INTERPRETERS = {"python3.12": ("3.12.1", "python3.12"), "python3.13": ("3.13.0", "python3.13")}
HEIC_SAMPLE = "govips_heic-24bit.heic"
PHOTO_SAMPLE = "eveningglow_4mp_2560x1600.jpg"


def _elf_header(machine: int) -> bytes:
    """The first 20 bytes of a 64-bit little-endian ELF shared object for `machine` (e_machine)."""
    return b"\x7fELF\x02\x01\x01" + b"\0" * 9 + (3).to_bytes(2, "little") + machine.to_bytes(2, "little")


def runtime_interpreter(runtime: str) -> str:
    """Absolute path of the local interpreter standing in for ``runtime``; skips the test if there is none."""
    pyenv_version, executable = LOCAL_INTERPRETERS[runtime]
    if shutil.which(executable) is None:
        pytest.skip(f"{executable} (pyenv {pyenv_version}) is not installed")
    result = subprocess.run(
        [executable, "-c", "import sys; print(sys.executable)"],
        env={**os.environ, "PYENV_VERSION": pyenv_version},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"{executable} (pyenv {pyenv_version}) does not run: {result.stderr.strip()}")
    return result.stdout.strip()


class LayerCache:
    """Builds each (runtime, arch, bytecode) layer at most once per test session.

    A bytecode build finds its compiler as a user's would, as ``pythonX.Y`` on PATH: a directory
    holding only that name, linked to the local interpreter, is put first on PATH for the build.
    """

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self._built: dict[tuple[str, str, bool], LayerArtifact] = {}

    def get(self, runtime: str, arch: str, *, bytecode: bool = False) -> LayerArtifact:
        if (runtime, arch, bytecode) not in self._built:
            self._built[runtime, arch, bytecode] = self.build(runtime, arch, self.cache_dir, bytecode=bytecode)
        return self._built[runtime, arch, bytecode]

    @staticmethod
    def build(runtime: str, arch: str, cache_dir: Path, *, bytecode: bool) -> LayerArtifact:
        if not bytecode:
            return ensure_layer(runtime, arch, cache_dir=cache_dir)
        with runtime_python_on_path(runtime, cache_dir):
            return ensure_layer(runtime, arch, cache_dir=cache_dir, bytecode=True)

    def function_bytecode(self, runtime: str) -> dict[str, Path]:
        """The handler's bytecode as the program ships it with `layerBytecode`."""
        with runtime_python_on_path(runtime, self.cache_dir):
            compiler = bytecode_module.find_compiler(runtime)
        return bytecode_module.compile_function_code(compiler, handler_sources(PROJECT_DIR / "handler"), self.cache_dir)


@contextlib.contextmanager
def runtime_python_on_path(runtime: str, cache_dir: Path) -> Iterator[None]:
    """`pythonX.Y` first on PATH, linked to the local interpreter of the runtime's version, as a user would have it."""
    interpreter = runtime_interpreter(runtime)
    with pytest.MonkeyPatch.context() as patch:
        on_path = cache_dir / f"path-{runtime}"
        on_path.mkdir(parents=True, exist_ok=True)
        link = on_path / LOCAL_INTERPRETERS[runtime][1]
        if not link.exists():
            link.symlink_to(interpreter)
        patch.setenv("PATH", f"{on_path}{os.pathsep}{os.environ['PATH']}")
        yield


@pytest.fixture(scope="session")
def layers(tmp_path_factory: pytest.TempPathFactory) -> LayerCache:
    return LayerCache(tmp_path_factory.mktemp("layer-cache"))


def local_arch() -> str:
    machine = os.uname().machine
    by_machine = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
    if machine not in by_machine:
        pytest.skip(f"no Lambda architecture runs this machine's binaries ({machine!r}); allowed: x86_64, aarch64")
    return by_machine[machine]


def elf_machine(data: bytes) -> int | None:
    """e_machine of a 64-bit ELF image (offset 18, in the byte order EI_DATA names); None if not ELF."""
    if data[:4] != b"\x7fELF":
        return None
    assert data[4] == 2, "Lambda runs 64-bit code only (EI_CLASS must be ELFCLASS64)"
    byte_order = {1: "little", 2: "big"}[data[5]]
    return int.from_bytes(data[18:20], byte_order)


def extract(artifact: LayerArtifact, destination: Path) -> Path:
    with zipfile.ZipFile(artifact.path) as archive:
        archive.extractall(destination)
    return destination


# --- Offline: targets, hashes, zip normalisation, size check -------------------------------------


def test_runtimes_are_lambda_runtimes_on_amazon_linux_2023() -> None:
    assert set(RUNTIMES) == {"python3.12", "python3.13"}
    for name, info in RUNTIMES.items():
        assert info.name == name
        assert name == f"python{info.python_version}"
        assert info.glibc == (2, 34), f"{name} runs on Amazon Linux 2023 (glibc 2.34)"
    assert ARCHITECTURES == ("x86_64", "arm64")


def test_platform_tags_stop_at_the_runtime_glibc_and_match_the_arch() -> None:
    tags = RUNTIMES["python3.12"].platform_tags("arm64")
    assert tags[0] == "manylinux_2_34_aarch64"
    assert "manylinux_2_28_aarch64" in tags
    assert "manylinux2014_aarch64" in tags
    assert "manylinux_2_35_aarch64" not in tags
    assert all(tag.endswith("_aarch64") for tag in tags)
    x86_tags = RUNTIMES["python3.13"].platform_tags("x86_64")
    assert {"manylinux_2_34_x86_64", "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"} <= set(
        x86_tags
    )
    assert all(tag.endswith("_x86_64") for tag in x86_tags)


@pytest.mark.parametrize(
    ("runtime", "arch", "named", "allowed"),
    [
        ("python3.9", "arm64", "'python3.9'", "python3.12, python3.13"),
        ("python3.12", "aarch64", "'aarch64'", "x86_64, arm64"),
    ],
)
def test_unsupported_target_names_the_value_and_the_allowed_ones(
    runtime: str, arch: str, named: str, allowed: str, tmp_path: Path
) -> None:
    with pytest.raises(UnsupportedTargetError) as raised:
        ensure_layer(runtime, arch, cache_dir=tmp_path)
    assert named in str(raised.value)
    assert allowed in str(raised.value)
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, LayerBuildError)
    assert not any(tmp_path.iterdir()), "nothing is built for an unsupported target"


def test_artifact_for_hashes_the_zip_as_lambda_expects(tmp_path: Path) -> None:
    zip_path = tmp_path / "layer.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("python/PIL/__init__.py", "")
        archive.writestr("python/a.py", "x = 1\n")
        archive.writestr("python/b.bin", b"\0" * 1000)
    artifact = artifact_for(zip_path, "python3.12", "arm64")
    digest = hashlib.sha256(zip_path.read_bytes()).digest()
    assert artifact.sha256 == digest.hex()
    assert base64.b64decode(artifact.source_code_hash) == digest
    assert artifact.unzipped_bytes == 6 + 1000
    assert (artifact.runtime, artifact.arch, artifact.path) == ("python3.12", "arm64", zip_path)


def test_artifact_for_rejects_a_missing_or_corrupt_zip(tmp_path: Path) -> None:
    with pytest.raises(LayerBuildError, match="does not exist"):
        artifact_for(tmp_path / "missing.zip", "python3.12", "arm64")
    not_a_zip = tmp_path / "layer.zip"
    not_a_zip.write_bytes(b"not a zip")
    with pytest.raises(LayerBuildError, match="not a readable zip"):
        artifact_for(not_a_zip, "python3.12", "arm64")


def _layer_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("entries", "runtime", "arch"),
    [
        (
            {
                "python/PIL/__init__.py": b"",
                "python/PIL/_imaging.cpython-312-aarch64-linux-gnu.so": _elf_header(ELF_MACHINES["arm64"]),
            },
            "python3.12",
            "arm64",
        ),
        (
            {
                "python/lib/python3.13/site-packages/PIL/__init__.py": b"",
                "python/lib/python3.13/site-packages/PIL/__pycache__/Image.cpython-313.pyc": b"",
                "python/pillow.libs/libjpeg-80045241.so.62.4.0": _elf_header(ELF_MACHINES["x86_64"]),
            },
            "python3.13",
            "x86_64",
        ),
    ],
    ids=["flat-arm64", "site-packages-x86_64"],
)
def test_artifact_for_accepts_a_layer_built_for_the_runtime_and_arch(
    tmp_path: Path, entries: dict[str, bytes], runtime: str, arch: str
) -> None:
    artifact = artifact_for(_layer_zip(tmp_path / "layer.zip", entries), runtime, arch)
    assert (artifact.runtime, artifact.arch) == (runtime, arch)


@pytest.mark.parametrize(
    ("entries", "named"),
    [
        ({"python/a.py": b""}, "no PIL package"),
        ({"python/lib/python3.13/site-packages/PIL/__init__.py": b""}, "no PIL package"),
        (
            {
                "python/PIL/__init__.py": b"",
                "python/PIL/_imaging.cpython-313-aarch64-linux-gnu.so": _elf_header(ELF_MACHINES["arm64"]),
            },
            "built for Python 3.13, not python3.12",
        ),
        (
            {
                "python/PIL/__init__.py": b"",
                "python/PIL/_imaging.cpython-312-x86_64-linux-gnu.so": _elf_header(ELF_MACHINES["x86_64"]),
            },
            "a binary for x86_64, not aarch64 (arm64)",
        ),
        (
            {"python/PIL/__init__.py": b"", "python/pillow.libs/libz.so.1.3": b"MZ not an ELF file"},
            "libz.so.1.3, a binary for no known Linux machine",
        ),
    ],
    ids=["no-pil", "pil-for-other-python", "extension-for-3.13", "x86-binary", "not-elf"],
)
def test_artifact_for_refuses_a_layer_the_function_could_not_import(
    tmp_path: Path, entries: dict[str, bytes], named: str
) -> None:
    """The program labels the layer from config, so a zip for another runtime or machine must fail at preview."""
    with pytest.raises(LayerBuildError, match=re.escape(named)) as raised:
        artifact_for(_layer_zip(tmp_path / "layer.zip", entries), "python3.12", "arm64")
    assert "layer.zip" in str(raised.value)


def test_cache_key_follows_requirements_runtime_and_arch(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("Pillow==13.0.0\n")
    key = layer_build_module.cache_key("python3.12", "arm64", requirements)
    assert key == layer_build_module.cache_key("python3.12", "arm64", requirements)
    assert key != layer_build_module.cache_key("python3.13", "arm64", requirements)
    assert key != layer_build_module.cache_key("python3.12", "x86_64", requirements)
    requirements.write_text("Pillow==13.0.1\n")
    assert key != layer_build_module.cache_key("python3.12", "arm64", requirements)


def test_cache_key_refuses_requirements_that_include_other_files(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("Pillow==13.0.0\n-c constraints.txt\n")
    with pytest.raises(LayerBuildError, match=r"'-c constraints.txt' includes another file"):
        layer_build_module.cache_key("python3.12", "arm64", requirements)


def _fake_site(site_dir: Path, *, mode: int, content: bytes = b"x = 1\n", arch: str = "arm64") -> None:
    """A pip --target tree with the noise pip leaves behind, files written in unsorted order."""
    files = {
        "PIL/__init__.py": b"",
        "pkg/zeta.py": content,
        "pkg/__init__.py": b"",
        "pkg/__pycache__/zeta.cpython-312.pyc": os.urandom(16),
        "pkg/native.so": _elf_header(ELF_MACHINES[arch]),
        "pkg-1.0.dist-info/METADATA": b"Name: pkg\n",
        "pkg-1.0.dist-info/RECORD": os.urandom(16),
        "pkg-1.0.dist-info/INSTALLER": b"pip\n",
        "pkg-1.0.dist-info/REQUESTED": b"",
        "pkg-1.0.dist-info/direct_url.json": b'{"url": "file:///home/someone/pkg.whl"}',
        "bin/pkg-cli": b"#!/home/someone/.venv/bin/python\n",
    }
    for name, data in files.items():
        path = site_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
    (site_dir / "pkg" / "native.so").chmod(mode | 0o111)


def test_zip_is_byte_identical_whatever_the_file_times_modes_and_noise(tmp_path: Path) -> None:
    first_site, second_site = tmp_path / "one" / "python", tmp_path / "two" / "python"
    _fake_site(first_site, mode=0o600)
    _fake_site(second_site, mode=0o664)
    os.utime(second_site / "pkg" / "zeta.py", (1_900_000_000, 1_900_000_000))
    first_zip, second_zip = tmp_path / "one.zip", tmp_path / "two.zip"
    layer_build_module._write_reproducible_zip(first_site, first_zip)
    layer_build_module._write_reproducible_zip(second_site, second_zip)
    assert first_zip.read_bytes() == second_zip.read_bytes()

    with zipfile.ZipFile(first_zip) as archive:
        entries = archive.infolist()
    assert [entry.filename for entry in entries] == [
        "python/PIL/__init__.py",
        "python/pkg-1.0.dist-info/METADATA",
        "python/pkg/__init__.py",
        "python/pkg/native.so",
        "python/pkg/zeta.py",
    ]
    assert {entry.date_time for entry in entries} == {(1980, 1, 1, 0, 0, 0)}
    modes = {entry.filename: (entry.external_attr >> 16) & 0o777 for entry in entries}
    assert modes["python/pkg/native.so"] == 0o755
    assert modes["python/pkg/zeta.py"] == 0o644


@pytest.mark.parametrize("runtime", sorted(LOCAL_INTERPRETERS))
def test_zip_bytes_do_not_depend_on_the_python_running_the_builder(runtime: str, tmp_path: Path) -> None:
    pyenv_version, executable = LOCAL_INTERPRETERS[runtime]
    if shutil.which(executable) is None:
        pytest.skip(f"{executable} (pyenv {pyenv_version}) is not installed: cannot compare its zip output")
    site_dir = tmp_path / "python"
    _fake_site(site_dir, mode=0o644)
    here, there = tmp_path / "here.zip", tmp_path / "there.zip"
    layer_build_module._write_reproducible_zip(site_dir, here)
    script = "import sys; from pathlib import Path; from layer_build.build import _write_reproducible_zip as w; "
    script += "w(Path(sys.argv[1]), Path(sys.argv[2]))"
    subprocess.run(
        [executable, "-S", "-c", script, str(site_dir), str(there)],
        env={**os.environ, "PYENV_VERSION": pyenv_version, "PYTHONPATH": str(PROJECT_DIR)},
        check=True,
    )
    assert there.read_bytes() == here.read_bytes()


def test_zip_bytes_change_when_content_changes(tmp_path: Path) -> None:
    _fake_site(tmp_path / "one" / "python", mode=0o644)
    _fake_site(tmp_path / "two" / "python", mode=0o644, content=b"x = 2\n")
    layer_build_module._write_reproducible_zip(tmp_path / "one" / "python", tmp_path / "one.zip")
    layer_build_module._write_reproducible_zip(tmp_path / "two" / "python", tmp_path / "two.zip")
    assert (tmp_path / "one.zip").read_bytes() != (tmp_path / "two.zip").read_bytes()


def test_cache_rebuilds_only_when_requirements_runtime_or_arch_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pip_runs: list[tuple[str, str, str]] = []

    def fake_pip(runtime: str, arch: str, requirements_file: Path, site_dir: Path) -> None:
        pip_runs.append((runtime, arch, requirements_file.read_text()))
        _fake_site(site_dir, mode=0o644, content=requirements_file.read_bytes(), arch=arch)

    monkeypatch.setattr(layer_build_module, "_pip_install", fake_pip)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pkg==1\n")
    cache_dir = tmp_path / "cache"

    first = ensure_layer("python3.12", "arm64", cache_dir=cache_dir, requirements_file=requirements)
    again = ensure_layer("python3.12", "arm64", cache_dir=cache_dir, requirements_file=requirements)
    assert again == first
    assert pip_runs == [("python3.12", "arm64", "pkg==1\n")]

    other_arch = ensure_layer("python3.12", "x86_64", cache_dir=cache_dir, requirements_file=requirements)
    other_runtime = ensure_layer("python3.13", "arm64", cache_dir=cache_dir, requirements_file=requirements)
    assert len(pip_runs) == 3
    assert first.path not in (other_arch.path, other_runtime.path)

    requirements.write_text("pkg==2\n")
    changed = ensure_layer("python3.12", "arm64", cache_dir=cache_dir, requirements_file=requirements)
    assert pip_runs[-1] == ("python3.12", "arm64", "pkg==2\n")
    assert changed.sha256 != first.sha256
    assert not first.path.exists(), "the superseded build for the same target is pruned"
    assert other_arch.path.exists() and other_runtime.path.exists()


def test_size_check_refuses_a_zip_too_large_to_upload_directly(tmp_path: Path) -> None:
    zip_path = _layer_zip(tmp_path / "layer.zip", {"python/PIL/__init__.py": b"", "python/big.bin": os.urandom(4000)})
    artifact = artifact_for(zip_path, "python3.12", "arm64")
    size = artifact.zipped_bytes
    assert check_size(artifact, upload_limit_bytes=size) > 4000
    with pytest.raises(LayerBuildError, match=f"{size} bytes zipped, over the {size - 1} bytes"):
        check_size(artifact, upload_limit_bytes=size - 1)


def test_size_check_fails_naming_both_sizes_and_the_limit(tmp_path: Path) -> None:
    zip_path = tmp_path / "layer.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("python/PIL/__init__.py", "")
        archive.writestr("python/big.bin", b"\0" * 5000)
    function_dir = tmp_path / "handler"
    function_dir.mkdir()
    (function_dir / "app.py").write_bytes(b"#" * 300)
    (function_dir / "__pycache__").mkdir()
    (function_dir / "__pycache__" / "app.cpython-312.pyc").write_bytes(b"\0" * 10_000)
    artifact = artifact_for(zip_path, "python3.12", "arm64")

    assert check_size(artifact, function_code_dir=function_dir, size_limit_bytes=5300) == 5300
    with pytest.raises(LayerBuildError) as raised:
        check_size(artifact, function_code_dir=function_dir, size_limit_bytes=5299)
    message = str(raised.value)
    assert "5000 bytes" in message
    assert "300 bytes" in message
    assert "5300 bytes in total exceeds" in message
    assert "limit of 5299 bytes" in message


def test_default_size_limit_is_lambdas_250_mb() -> None:
    assert layer_build.LAMBDA_UNZIPPED_LIMIT_BYTES == 250 * 1024 * 1024


def _fake_interpreter(directory: Path, name: str, script: str) -> None:
    """A ``name`` on PATH that runs ``script`` (sh) instead of Python."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


@pytest.mark.parametrize(
    ("script", "fragments"),
    [
        (None, ["Python 3.12", "no python3.12 is on PATH", "pyenv install 3.12", "without bytecode"]),
        ("echo 'pyenv: python3.12: command not found' >&2; exit 127", ["does not run", "exit code 127", "pyenv:"]),
        ("echo 3.11; echo cpython-311; echo '3.11.7 (main)'", ["is Python 3.11, not 3.12", "useless to python3.12"]),
    ],
    ids=["missing", "broken", "wrong-version"],
)
def test_bytecode_build_refuses_without_an_interpreter_of_the_runtimes_version(
    script: str | None, fragments: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_path = tmp_path / "bin"
    on_path.mkdir()
    if script is not None:
        _fake_interpreter(on_path, "python3.12", script)
    monkeypatch.setenv("PATH", str(on_path))
    monkeypatch.setattr(layer_build_module, "_pip_install", _pip_must_not_run)
    with pytest.raises(LayerBuildError) as raised:
        ensure_layer("python3.12", "arm64", cache_dir=tmp_path / "cache", bytecode=True)
    for fragment in fragments:
        assert fragment in str(raised.value)
    assert not (tmp_path / "cache").exists(), "nothing is built or cached before the compiler is found"


def _pip_must_not_run(*args: object, **kwargs: object) -> None:
    raise AssertionError("pip ran although the build cannot succeed")


def test_bytecode_and_plain_builds_are_cached_side_by_side_and_keyed_by_the_compiler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pip_runs: list[str] = []

    def fake_pip(runtime: str, arch: str, requirements_file: Path, site_dir: Path) -> None:
        pip_runs.append(runtime)
        _fake_site(site_dir, mode=0o644)

    # This interpreter stands in for the runtime's: the cache logic does not care which version it is.
    here = bytecode_module.BytecodeCompiler(
        executable=sys.executable,
        python_version="3.12",
        cache_tag=sys.implementation.cache_tag,
        full_version=sys.version,
    )
    compilers = iter([here, here, dataclasses.replace(here, full_version=here.full_version + " patched")])
    monkeypatch.setattr(layer_build_module, "_pip_install", fake_pip)
    monkeypatch.setattr(layer_build_module, "find_compiler", lambda runtime: next(compilers))
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pkg==1\n")
    build = functools.partial(
        ensure_layer, "python3.12", "arm64", cache_dir=tmp_path / "cache", requirements_file=requirements
    )

    plain = build()
    compiled = build(bytecode=True)
    assert build(bytecode=True) == compiled
    assert pip_runs == ["python3.12", "python3.12"]
    assert plain.path.exists() and compiled.path != plain.path

    with zipfile.ZipFile(plain.path) as archive:
        assert not [name for name in archive.namelist() if name.endswith(".pyc")]
    with zipfile.ZipFile(compiled.path) as archive:
        pycs = sorted(name for name in archive.namelist() if name.endswith(".pyc"))
    tag = sys.implementation.cache_tag
    # Exactly one file per module, for the compiler's tag: the stale pyc pip's tree held is not shipped.
    assert pycs == [
        f"python/PIL/__pycache__/__init__.{tag}.pyc",
        f"python/pkg/__pycache__/__init__.{tag}.pyc",
        f"python/pkg/__pycache__/zeta.{tag}.pyc",
    ]

    recompiled = build(bytecode=True)
    assert len(pip_runs) == 3, "another patch release of the compiler may compile differently: rebuild"
    assert not compiled.path.exists() and recompiled.path.exists()
    assert plain.path.exists(), "a bytecode rebuild does not prune the plain layer"


# --- Network: real builds from PyPI ----------------------------------------------------------------


@pytest.mark.network
@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_shared_object_is_built_for_the_target_machine(layers: LayerCache, runtime: str, arch: str) -> None:
    artifact = layers.get(runtime, arch)
    with zipfile.ZipFile(artifact.path) as archive:
        names = archive.namelist()
        shared_objects = [name for name in names if name.endswith(".so") or ".so." in Path(name).name]
        machines = {name: elf_machine(archive.read(name)) for name in shared_objects}
    assert any(name.startswith("python/pillow.libs/") for name in shared_objects), "Pillow's vendored libs"
    assert any(name.startswith("python/pi_heif.libs/libheif") for name in shared_objects), "libheif"
    assert any(f"cpython-{RUNTIMES[runtime].python_version.replace('.', '')}" in name for name in shared_objects)
    wrong = {name: machine for name, machine in machines.items() if machine != ELF_MACHINES[arch]}
    assert not wrong, f"{arch} layer has shared objects for other machines (e_machine): {wrong}"


@pytest.mark.network
def test_layer_holds_no_bytecode_or_install_noise(layers: LayerCache) -> None:
    artifact = layers.get("python3.12", "arm64")
    with zipfile.ZipFile(artifact.path) as archive:
        entries = archive.infolist()
    names = [entry.filename for entry in entries]
    assert names == sorted(names)
    assert all(name.startswith("python/") for name in names)
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    noise = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    assert not [name for name in names if ".dist-info/" in name and Path(name).name in noise]
    assert {entry.date_time for entry in entries} == {(1980, 1, 1, 0, 0, 0)}
    assert artifact.unzipped_bytes == sum(entry.file_size for entry in entries)


@pytest.mark.network
def test_two_builds_of_the_same_inputs_are_byte_identical(layers: LayerCache, tmp_path: Path) -> None:
    first = layers.get("python3.12", "x86_64")
    second = ensure_layer("python3.12", "x86_64", cache_dir=tmp_path)
    assert second.path != first.path, "the second build must not reuse the first one's cache"
    assert second.sha256 == first.sha256
    assert second.source_code_hash == first.source_code_hash
    assert second.path.read_bytes() == first.path.read_bytes()


@pytest.mark.network
def test_bytecode_layer_has_bytecode_for_every_module_and_builds_byte_identically(
    layers: LayerCache, tmp_path: Path
) -> None:
    runtime, arch = "python3.12", local_arch()
    first = layers.get(runtime, arch, bytecode=True)
    second = LayerCache.build(runtime, arch, tmp_path, bytecode=True)
    assert second.path != first.path
    assert second.path.read_bytes() == first.path.read_bytes()
    with zipfile.ZipFile(first.path) as archive:
        names = set(archive.namelist())
    sources = {name for name in names if name.endswith(".py")}
    expected = {f"{Path(name).parent}/__pycache__/{Path(name).stem}.cpython-312.pyc" for name in sources}
    assert {name for name in names if name.endswith(".pyc")} == expected
    with zipfile.ZipFile(layers.get(runtime, arch).path) as plain:
        assert names - expected == set(plain.namelist()), "bytecode is the only difference from the plain layer"


@pytest.mark.network
def test_cached_layer_is_reused_without_running_pip(layers: LayerCache, monkeypatch: pytest.MonkeyPatch) -> None:
    built = layers.get("python3.12", "arm64")
    stat_before = built.path.stat()

    def pip_must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("ensure_layer ran pip although the cached layer's inputs are unchanged")

    monkeypatch.setattr(layer_build_module, "_pip_install", pip_must_not_run)
    reused = ensure_layer("python3.12", "arm64", cache_dir=layers.cache_dir)
    assert reused == built
    stat_after = reused.path.stat()
    assert (stat_after.st_ino, stat_after.st_mtime_ns) == (stat_before.st_ino, stat_before.st_mtime_ns)


@pytest.mark.network
def test_ensure_layer_refuses_a_layer_over_the_size_limit(layers: LayerCache) -> None:
    built = layers.get("python3.12", "arm64")
    with pytest.raises(LayerBuildError, match=rf"limit of {built.unzipped_bytes} bytes") as raised:
        ensure_layer("python3.12", "arm64", cache_dir=layers.cache_dir, size_limit_bytes=built.unzipped_bytes)
    assert f"unzips to {built.unzipped_bytes} bytes" in str(raised.value)


@pytest.mark.network
def test_unsatisfiable_requirements_fail_naming_the_target_and_pips_reason(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("Pillow==0.0.1\n")
    with pytest.raises(LayerBuildError) as raised:
        ensure_layer("python3.12", "arm64", cache_dir=tmp_path / "cache", requirements_file=requirements)
    message = str(raised.value)
    assert "for python3.12 on arm64 (manylinux tags up to glibc 2.34)" in message
    assert "No matching distribution found for Pillow==0.0.1" in message
    assert not list((tmp_path / "cache").glob("python3.12-arm64-*")), "a failed build leaves no cache entry"


@pytest.mark.network
def test_cli_writes_the_zip_and_one_result_line(layers: LayerCache, tmp_path: Path) -> None:
    built = layers.get("python3.12", "arm64")
    out_dir = tmp_path / "out"
    command = [sys.executable, "-m", "layer_build", "--runtime", "python3.12", "--arch", "arm64"]
    result = subprocess.run(
        [*command, "--out", str(out_dir), "--cache-dir", str(layers.cache_dir)],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    written = out_dir / "layer-python3.12-arm64.zip"
    assert written.read_bytes() == built.path.read_bytes()
    assert result.stdout == (
        f"{written} sha256={built.sha256} zipped_bytes={written.stat().st_size} "
        f"unzipped_bytes={built.unzipped_bytes} with_function_code_bytes="
        f"{built.unzipped_bytes + layer_build_module.function_code_bytes(PROJECT_DIR / 'handler')}\n"
    )


# Both scripts run under the runtime's Python with only the function code and the layer on
# sys.path (-S: no site-packages), as Lambda lays them out in /var/task and /opt/python.
LAYER_SCRIPT = """
import io, json, sys
import PIL, pi_heif
from PIL import Image, features

pi_heif.register_heif_opener()
with Image.open(sys.argv[1]) as heic:
    heic.load()
    heic_size = heic.size
with Image.open(sys.argv[2]) as photo:
    photo.thumbnail((320, 320))
    encoded = {}
    for codec in ("JPEG", "WEBP", "AVIF", "PNG"):
        buffer = io.BytesIO()
        photo.save(buffer, codec)
        encoded[codec] = Image.open(io.BytesIO(buffer.getvalue())).size
json.dump({
    "python": list(sys.version_info[:2]),
    "modules": {"PIL": PIL.__file__, "pi_heif": pi_heif.__file__},
    "heic_size": list(heic_size),
    "encoded": {codec: list(size) for codec, size in encoded.items()},
}, sys.stdout)
"""


def run_like_lambda(
    layers: LayerCache,
    runtime: str,
    script: str,
    arguments: list[Path],
    tmp_path: Path,
    *,
    bytecode: bool = False,
) -> tuple[dict[str, object], Path]:
    """Run ``script`` under the runtime's local Python on the extracted layer; its JSON report and layer dir.

    With ``bytecode``, every source in the layer and in ``handler/`` is replaced by one that raises, and the
    handler's bytecode is shipped as the program ships it: the script can only succeed on bytecode, as a cold
    start that compiles nothing would.
    """
    pyenv_version, executable = LOCAL_INTERPRETERS[runtime]
    if shutil.which(executable) is None:
        pytest.skip(f"{executable} (pyenv {pyenv_version}) is not installed: cannot import the {runtime} layer")
    artifact = layers.get(runtime, local_arch(), bytecode=bytecode)
    layer_dir = extract(artifact, tmp_path / "opt") / "python"
    if bytecode:
        for source in layer_dir.rglob("*.py"):
            source.write_text(f"raise ImportError('{source.name} was compiled from source, not loaded as bytecode')\n")
    task_dir = tmp_path / "task"
    shutil.copytree(PROJECT_DIR / "handler", task_dir / "handler", ignore=shutil.ignore_patterns("__pycache__"))
    if bytecode:
        for name, compiled in layers.function_bytecode(runtime).items():
            (task_dir / name).parent.mkdir(exist_ok=True)
            shutil.copyfile(compiled, task_dir / name)
        for source in (task_dir / "handler").rglob("*.py"):
            source.write_text(f"raise ImportError('{source.name} was compiled from source, not loaded as bytecode')\n")
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "PYENV_VERSION": pyenv_version,
        "PYTHONPATH": os.pathsep.join([str(task_dir), str(layer_dir)]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if "PYENV_ROOT" in os.environ:
        environment["PYENV_ROOT"] = os.environ["PYENV_ROOT"]
    result = subprocess.run(
        [executable, "-S", "-c", script, *map(str, arguments)],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"{runtime} layer failed under {executable} {pyenv_version}:\n{result.stderr}"
    return json.loads(result.stdout), layer_dir


@pytest.mark.network
@pytest.mark.parametrize("runtime", sorted(LOCAL_INTERPRETERS))
def test_layer_alone_imports_pillow_decodes_heic_and_encodes(
    layers: LayerCache, runtime: str, tmp_path: Path, photos_dir: Path, hostile_dir: Path
) -> None:
    report, layer_dir = run_like_lambda(
        layers, runtime, LAYER_SCRIPT, [hostile_dir / HEIC_SAMPLE, photos_dir / PHOTO_SAMPLE], tmp_path
    )
    assert report["python"] == [int(part) for part in RUNTIMES[runtime].python_version.split(".")]
    for module, path in report["modules"].items():
        assert Path(path).is_relative_to(layer_dir), f"{module} imported from {path}, not from the layer"
    width, height = report["heic_size"]
    assert width > 0 and height > 0
    # 2560x1600 shrunk into 320x320 keeps the 1.6 aspect ratio.
    assert report["encoded"] == {codec: [320, 200] for codec in ("JPEG", "WEBP", "AVIF", "PNG")}


PIPELINE_SCRIPT = """
import io, json, sys
from PIL import Image
from handler.pipeline import render
from handler.variants import PRESETS, VariantSpec

def describe(variants):
    described = []
    for variant in variants:
        with Image.open(io.BytesIO(variant.data)) as reopened:
            described.append([variant.name, reopened.format, list(reopened.size)])
    return described

with open(sys.argv[1], "rb") as heic, open(sys.argv[2], "rb") as photo:
    heic_bytes, photo_bytes = heic.read(), photo.read()
json.dump({
    "photo": describe(render(photo_bytes, PRESETS["responsive"])),
    "heic": describe(render(heic_bytes, (VariantSpec("avif-200", "avif", quality=60, width=200, height=200),))),
}, sys.stdout)
"""


@pytest.fixture
def heic_and_photo(photos_dir: Path, hostile_dir: Path) -> list[Path]:
    return [hostile_dir / HEIC_SAMPLE, photos_dir / PHOTO_SAMPLE]


@pytest.mark.network
@pytest.mark.parametrize("bytecode", [False, True], ids=["sources", "bytecode"])
@pytest.mark.parametrize("runtime", sorted(LOCAL_INTERPRETERS))
def test_handler_pipeline_renders_with_only_the_layer(
    layers: LayerCache, runtime: str, bytecode: bool, tmp_path: Path, heic_and_photo: list[Path]
) -> None:
    report, _ = run_like_lambda(layers, runtime, PIPELINE_SCRIPT, heic_and_photo, tmp_path, bytecode=bytecode)
    # responsive preset on a 2560x1600 photo: 150 cover, then 600/1200/1200 inside at aspect 1.6.
    assert report["photo"] == [
        ["thumb", "JPEG", [150, 150]],
        ["medium", "JPEG", [600, 375]],
        ["large", "JPEG", [1200, 750]],
        ["webp-1200", "WEBP", [1200, 750]],
    ]
    # The 1440x960 HEIC decodes through pi-heif (loaded lazily by the pipeline) and encodes to AVIF.
    assert report["heic"] == [["avif-200", "AVIF", [200, 133]]]


def test_function_bytecode_covers_every_handler_module_and_is_compiled_once(
    layers: LayerCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = handler_sources(PROJECT_DIR / "handler")
    compiled = layers.function_bytecode("python3.12")
    assert set(compiled) == {f"handler/__pycache__/{Path(name).stem}.cpython-312.pyc" for name in sources}
    for path in compiled.values():
        flags = int.from_bytes(path.read_bytes()[4:8], "little")
        assert flags == 0b01, f"{path.name}: unchecked-hash bytecode (PEP 552), loaded without reading the source"
    monkeypatch.setattr(bytecode_module, "compile_tree", lambda *_: pytest.fail("compiled again, sources unchanged"))
    assert layers.function_bytecode("python3.12") == compiled
    monkeypatch.undo()
    changed = dict(sources)
    changed["handler/app.py"] = tmp_path / "app.py"
    changed["handler/app.py"].write_text(sources["handler/app.py"].read_text() + "\n# changed\n")
    with runtime_python_on_path("python3.12", layers.cache_dir):
        compiler = bytecode_module.find_compiler("python3.12")
    recompiled = bytecode_module.compile_function_code(compiler, changed, layers.cache_dir)
    assert recompiled.keys() == compiled.keys()
    assert {path.parent.parent.parent for path in recompiled.values()}.isdisjoint(
        {path.parent.parent.parent for path in compiled.values()}
    ), "changed sources get their own cache entry"
