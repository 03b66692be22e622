"""Shared fixtures: where the read-only test data lives."""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
SHARED_TESTDATA = PROJECT_DIR.parent / "shared" / "testdata"
PHOTOS_DIR = SHARED_TESTDATA / "photos"
HOSTILE_DIR = SHARED_TESTDATA / "hostile"


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    if not PHOTOS_DIR.is_dir():
        pytest.fail(f"shared test photos not found at {PHOTOS_DIR}: clone with ../shared beside the project")
    return PHOTOS_DIR


@pytest.fixture(scope="session")
def hostile_dir() -> Path:
    if not HOSTILE_DIR.is_dir():
        pytest.fail(f"shared hostile uploads not found at {HOSTILE_DIR}: clone with ../shared beside the project")
    return HOSTILE_DIR
