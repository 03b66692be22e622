"""Turn the Pulumi assets and archives a program declares into zip bytes, as the provider would upload.

Under mocks the engine does not package code; the emulator deployer needs the same bytes the AWS
provider would send to CreateFunction / PublishLayerVersion. Relative paths are resolved against
the project directory, which is the working directory `pulumi up` runs the program in.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pulumi

# Fixed timestamp: identical inputs give identical zips.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class UnsupportedArchiveError(TypeError):
    """An asset or archive kind the emulator cannot package (e.g. a remote one)."""


def _resolve(path: str, project_dir: Path) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else project_dir / candidate


def _write(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def _add(archive: zipfile.ZipFile, prefix: str, item: object, project_dir: Path) -> None:
    """Add an asset (as the file `prefix`) or an archive (under the folder `prefix`)."""
    if isinstance(item, pulumi.StringAsset):
        _write(archive, prefix, item.text.encode())
    elif isinstance(item, pulumi.FileAsset):
        _write(archive, prefix, _resolve(item.path, project_dir).read_bytes())
    elif isinstance(item, pulumi.AssetArchive):
        for name, member in sorted(item.assets.items()):
            _add(archive, f"{prefix}/{name}" if prefix else name, member, project_dir)
    elif isinstance(item, pulumi.FileArchive):
        source = _resolve(item.path, project_dir)
        folder = f"{prefix}/" if prefix else ""
        if source.is_dir():
            for path in sorted(p for p in source.rglob("*") if p.is_file()):
                _write(archive, folder + path.relative_to(source).as_posix(), path.read_bytes())
        elif zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as inner:
                for entry in inner.infolist():
                    if not entry.is_dir():
                        _write(archive, folder + entry.filename, inner.read(entry))
        else:
            raise UnsupportedArchiveError(f"FileArchive {source}: only directories and .zip files are supported")
    else:
        raise UnsupportedArchiveError(f"cannot package {type(item).__name__} ({item!r}) into a Lambda zip")


def zip_bytes(item: object, project_dir: Path) -> bytes:
    """The zip a Pulumi archive (AssetArchive or FileArchive) stands for."""
    if not isinstance(item, pulumi.Archive):
        raise UnsupportedArchiveError(f"expected a Pulumi archive for Lambda code, got {type(item).__name__}")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        _add(archive, "", item, project_dir)
    return buffer.getvalue()


def extract(data: bytes, directory: Path) -> Path:
    """Unpack zip bytes into `directory` (created empty), refusing entries that escape it."""
    directory.mkdir(parents=True, exist_ok=False)
    root = directory.resolve()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for entry in archive.infolist():
            target = (root / entry.filename).resolve()
            if not target.is_relative_to(root):
                raise UnsupportedArchiveError(f"zip entry {entry.filename!r} would land outside {root}")
        archive.extractall(root)
    return root
