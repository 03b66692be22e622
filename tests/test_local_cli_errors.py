"""`python -m local run` with a bad argument or config value: one line naming it, exit status 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from local.cli import USAGE_ERROR, main
from local.deployer import stack_region
from local.program import PROJECT_DIR, UnknownConfigKeyError, check_config_key, load_stack_config


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI in-process on arguments argparse must refuse; return its stderr.

    The missing photos folder stops a regression before it deploys anything in the test's process.
    """
    with pytest.raises(SystemExit) as raised:
        main([*argv, "--photos", "no-such-folder", "--out", "no-such-out"])
    assert raised.value.code == USAGE_ERROR
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("memorysize=4096", ["'memorysize'", "did you mean 'memorySize'?"]),
        ("image-pipeline:memroySize=4096", ["'image-pipeline:memroySize'", "did you mean 'memorySize'?"]),
        ("aws:profile=dev", ["'aws:profile'", "allowed keys: variants, ", ", aws:region"]),
    ],
)
def test_config_key_the_program_never_reads_is_refused(
    override: str, fragments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    err = _refused(["run", "-c", override], capsys)
    assert "argument -c/--config: unknown config key" in err
    for fragment in fragments:
        assert fragment in err


def test_stack_without_a_stack_file_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    err = _refused(["run", "--stack", "bogus"], capsys)
    assert "argument --stack: invalid choice: 'bogus' (choose from 'dev', 'prod')" in err


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_concurrency_must_be_a_positive_integer(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    err = _refused(["run", "--concurrency", value], capsys)
    assert f"argument --concurrency: must be an integer >= 1, got {value!r}" in err


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        # Refused by the program itself (components.config), after the emulator started.
        (["-c", "memorySize=1"], "image-pipeline:memorySize: must be an integer 128..10240 MB, got 1"),
        (["-c", "aws:region=mars"], "stack dev: aws:region is 'mars', not an AWS region like us-east-1"),
        (["--photos", "no-such-folder"], "photos folder no-such-folder does not exist"),
    ],
    ids=["config-value", "region", "photos"],
)
def test_bad_value_is_one_line_naming_it_with_exit_status_2(extra: list[str], message: str, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "photo.jpg").write_bytes(b"never uploaded")
    done = subprocess.run(
        [sys.executable, "-m", "local", "run", "--photos", str(photos), "--out", str(tmp_path / "out"), *extra],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == USAGE_ERROR, done.stdout + done.stderr
    assert done.stderr == f"python -m local run: error: {message}\n"


def test_config_keys_are_checked_against_pulumi_yaml_and_applied_where_the_stack_config_is_loaded() -> None:
    """stack_region and deploy (through run_program) share load_stack_config, so both see `-c aws:region`."""
    assert check_config_key("timeout") == check_config_key("image-pipeline:timeout") == "image-pipeline:timeout"
    assert check_config_key("aws:region", also=["aws:region"]) == "aws:region"
    with pytest.raises(UnknownConfigKeyError, match=r"'timeOut'; did you mean 'timeout'\?"):
        check_config_key("timeOut")
    with pytest.raises(UnknownConfigKeyError, match="'aws:region'; allowed keys: variants, "):
        check_config_key("aws:region")
    _, config = load_stack_config("dev", overrides={"image-pipeline:timeout": 30, "kmsKeyArn": None})
    assert config["image-pipeline:timeout"] == "30"
    assert "image-pipeline:kmsKeyArn" not in config
    assert stack_region("dev", config_overrides={"aws:region": "eu-west-1"}) == "eu-west-1"
