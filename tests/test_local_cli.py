"""`python -m local run` as a newcomer runs it: a real process, the real program, the real handler."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from local.program import PROJECT_DIR

pytestmark = pytest.mark.e2e

SMALL_INPUTS = ("pillow_hopper.bmp", "sharp_Landscape_1.jpg", "gen_text_renamed.jpg")


@pytest.fixture
def photos(tmp_path: Path, hostile_dir: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in SMALL_INPUTS:
        shutil.copy(hostile_dir / name, folder / name)
    return folder


def _command(photos: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "local", "run", "--photos", str(photos), "--out", str(out), *extra]


def _run(command: list[str], timeout: int = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=timeout, check=False)


def test_run_prints_progress_and_a_table_and_downloads_the_variants(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = _run(_command(photos, out))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for name in SMALL_INPUTS:
        assert any(line.startswith("[") and f"] {name} (" in line for line in lines), f"no progress line for {name}"
    assert sum(line.startswith("[") and "/3] " in line for line in lines) == 3
    assert "quarantined: " in done.stdout, "the text file renamed .jpg must be reported as quarantined"
    header = next(line for line in lines if line.startswith("source"))
    assert header.split() == ["source", "variant", "dimensions", "bytes", "ms"]
    assert "-> thumbnail/pillow_hopper.jpg (image/jpeg)" in done.stdout
    assert (out / "thumbnail" / "pillow_hopper.jpg").is_file()
    assert (out / "webp" / "sharp_Landscape_1.webp").is_file()
    assert not list(out.glob("*/gen_text_renamed.*")), "a quarantined upload has no variants"
    assert "3 of 3 uploads handled (1 quarantined), 0 failed" in done.stdout


def test_config_overrides_reach_the_program_and_uploads_follow_the_trigger_filter(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    overrides = ("-c", "uploadPrefix=incoming/", "-c", "uploadSuffix=.jpg", "-c", "variants=responsive")
    done = _run(_command(photos, out, *overrides))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pillow_hopper.bmp (49,290 bytes): not uploaded: the function only runs for keys ending in '.jpg'" in (
        done.stdout
    )
    assert "incoming/sharp_Landscape_1.jpg" in done.stdout
    assert (out / "thumb" / "incoming" / "sharp_Landscape_1.jpg").is_file(), "responsive preset, under the prefix"
    assert not (out / "thumbnail").exists(), "the default preset must not have been deployed"


def test_region_override_moves_the_emulator_with_the_program(photos: Path, tmp_path: Path) -> None:
    """The program's provider gets `-c aws:region`, so the emulator must serve that region too."""
    done = _run(_command(photos, tmp_path / "out", "-c", "aws:region=eu-west-1"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 of 3 uploads handled (1 quarantined), 0 failed" in done.stdout


def test_too_large_upload_is_quarantined_by_a_copy_under_the_function_role(photos: Path, tmp_path: Path) -> None:
    """The server-side copy (HeadObject by version, then CopyObject) must pass the role's exact policy."""
    out = tmp_path / "out"
    done = _run(_command(photos, out, "-c", "maxUploadBytes=60000"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sharp_Landscape_1.jpg  -> quarantined: too_large (139435 bytes exceeds MAX_UPLOAD_BYTES 60000)" in (
        done.stdout
    )
    assert (out / "thumbnail" / "pillow_hopper.jpg").is_file(), "49,290 bytes: under the limit"
    assert "3 of 3 uploads handled (2 quarantined), 0 failed" in done.stdout


def test_run_refuses_to_empty_a_folder_it_did_not_make(photos: Path, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    done = _run(_command(photos, precious), timeout=60)
    assert done.returncode != 0
    assert "was not made by this command" in done.stderr
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_exit_status_is_non_zero_when_an_upload_is_not_processed(photos: Path, tmp_path: Path) -> None:
    done = _run(_command(photos, tmp_path / "out", "--timeout", "0"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "not processed in time" in done.stdout


def _upload_as_instructed(instructions: str, photo: Path) -> None:
    """Do what the printed `aws s3 cp` command does, with the printed credentials, endpoint and CA bundle."""
    exports = dict(re.findall(r"export (AWS_[A-Z_]+)=(\S+)", instructions))
    command = re.search(
        r"aws --endpoint-url (\S+) --ca-bundle (\S+) s3 cp photo\.jpg s3://([^/\s]+)/photo\.jpg", instructions
    )
    assert command is not None and set(exports) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
    endpoint, ca_bundle, bucket = command.groups()
    s3 = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        verify=ca_bundle,
        region_name=exports["AWS_DEFAULT_REGION"],
        aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"],
    )
    s3.upload_file(str(photo), bucket, "photo.jpg")


def test_serve_prints_the_upload_command_reports_uploads_and_stops_on_ctrl_c(
    photos: Path, tmp_path: Path, hostile_dir: Path
) -> None:
    for name in SMALL_INPUTS[1:]:
        (photos / name).unlink()
    process = subprocess.Popen(
        _command(photos, tmp_path / "out", "--serve"),
        cwd=PROJECT_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            seen.append(line)
            if "Ctrl-C stops the emulator" in line:
                break
        text = "".join(seen)
        assert "Ctrl-C stops the emulator" in text, text
        assert "Emulator running at https://127.0.0.1:" in text
        _upload_as_instructed(text, hostile_dir / "pillow_hopper.bmp")
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line or line.startswith("photo.jpg: "):
                break
        assert line.startswith("photo.jpg: 5 variants"), line
        process.send_signal(signal.SIGINT)
        remaining, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == 0, remaining
    assert "Stopping the emulator." in remaining
