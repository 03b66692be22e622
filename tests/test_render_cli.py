"""`python -m handler render`: same pipeline as the Lambda, JSON lines out, documented exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.conftest import PROJECT_DIR


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "handler", "render", *args],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_processed_files_are_written_and_described(tmp_path: Path, hostile_dir: Path) -> None:
    source = hostile_dir / "sharp_Landscape_8.jpg"
    result = run_cli(str(source), "--out", str(tmp_path), "--preset", "responsive")
    assert result.returncode == 0, result.stderr
    (line,) = [json.loads(text) for text in result.stdout.splitlines()]
    assert (line["source"], line["status"], line["reason"]) == (str(source), "processed", None)
    assert line["ms"] >= 0
    assert [v["name"] for v in line["variants"]] == ["thumb", "medium", "large", "webp-1200"]
    for variant in line["variants"]:
        path = Path(variant["path"])
        assert path.parent == tmp_path / variant["name"] and path.stem == "sharp_Landscape_8"
        with Image.open(path) as image:
            assert image.size == (variant["width"], variant["height"])
            assert Image.MIME[image.format] == variant["content_type"]
        assert path.stat().st_size == variant["bytes"]


def test_any_rejection_exits_1_and_still_reports_every_file(tmp_path: Path, hostile_dir: Path) -> None:
    files = [hostile_dir / "pillow_hopper.psd", hostile_dir / "pillow_hopper.bmp"]
    variants = '[{"name": "small", "format": "png", "width": 32, "height": 32}]'
    result = run_cli(*map(str, files), "--out", str(tmp_path), "--variants", variants)
    assert result.returncode == 1, result.stderr
    psd, bmp = (json.loads(text) for text in result.stdout.splitlines())
    assert (psd["status"], psd["reason"], psd["variants"]) == ("rejected", "unsupported_format", [])
    assert bmp["status"] == "processed"
    assert [(v["width"], v["height"]) for v in bmp["variants"]] == [(32, 32)]


def test_usage_errors_exit_2_naming_the_problem(tmp_path: Path, hostile_dir: Path) -> None:
    bad_variants = run_cli(str(hostile_dir / "pillow_hopper.bmp"), "--out", str(tmp_path), "--variants", "[]")
    assert bad_variants.returncode == 2 and "--variants: must be a preset name" in bad_variants.stderr
    missing = run_cli(str(tmp_path / "nope.jpg"), "--out", str(tmp_path))
    assert missing.returncode == 2 and "nope.jpg" in missing.stderr
    both = run_cli("x.jpg", "--out", str(tmp_path), "--preset", "default", "--variants", "[]")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    assert list(tmp_path.iterdir()) == []
