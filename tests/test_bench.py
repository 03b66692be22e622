"""The benchmark runs and reports sane, complete, comparable results (never timing thresholds)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bench import measure
from bench.floor import prepare_floor, run_floor
from bench.measure import CpuSnapshot, _heaviest_imports, other_processes_cores
from bench.naive import render_naively
from bench.quality import IDENTICAL_DB, psnr_db, reference_frame, reference_variant
from bench.suite import TARGET_PHOTO, TARGETS, evaluate_targets
from handler.pipeline import shrink_on_load_size
from handler.variants import PRESETS, VariantSpec
from tests.conftest import PROJECT_DIR
from tests.test_pipeline import lossless_jpeg


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    json_path = tmp_path_factory.mktemp("bench") / "bench.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(json_path)],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "targets (photo" in completed.stdout
    return json.loads(json_path.read_text())


def _encoded(image: Image.Image, format_name: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format_name, **options)
    return buffer.getvalue()


def test_quick_run_covers_every_preset_on_the_smallest_photo(quick_result: dict[str, Any], photos_dir: Path) -> None:
    smallest = min((path for path in photos_dir.iterdir() if path.is_file()), key=lambda path: path.stat().st_size)
    assert [(case["photo"], case["preset"]) for case in quick_result["cases"]] == [
        (smallest.name, preset) for preset in PRESETS
    ]
    for case in quick_result["cases"]:
        assert [variant["name"] for variant in case["variants"]] == [spec.name for spec in PRESETS[case["preset"]]]


def test_quick_run_measures_positive_times_bytes_and_memory(quick_result: dict[str, Any]) -> None:
    for case in quick_result["cases"]:
        assert set(case["ms"]) == {"naive", "pipeline", "one_thread", "floor"}
        assert all(ms > 0 for ms in case["ms"].values()), case["ms"]
        assert case["bytes"]["naive"] == sum(variant["naive"]["bytes"] for variant in case["variants"]) > 0
        assert all(ratio > 0 for ratio in case["ratios"].values()), case["ratios"]
        # Every preset resizes at least its thumbnail, and resizing is part of the one-thread run.
        assert 0 < case["one_thread_resize_ms"] < case["ms"]["one_thread"]
        for implementation in ("pipeline", "naive"):
            assert case["peak_rss_mb"][implementation] >= case["idle_rss_mb"][implementation] > 0
        assert case["other_processes_cores"] >= 0


def test_quick_run_reports_every_target(quick_result: dict[str, Any]) -> None:
    assert [target["target"] for target in quick_result["targets"]] == [target.label for target in TARGETS]
    # --quick renders one small photo only, so the 12 MP targets must say they were not measured.
    assert {target["status"] for target in quick_result["targets"] if target["photo"] is not None} == {"MISSING"}


def test_naive_and_pipeline_render_the_same_variants(quick_result: dict[str, Any]) -> None:
    for case in quick_result["cases"]:
        for variant in case["variants"]:
            naive, rendered = variant["naive"], variant["pipeline"]
            assert (rendered["width"], rendered["height"]) == (naive["width"], naive["height"]), variant
            assert rendered["bytes"] > 0
            # Same picture as the careful reference rendering: wrong orientation or colours fall far below.
            assert variant["psnr_db"]["pipeline"] >= 25.0, variant
        assert case["bytes"]["pipeline"] == sum(variant["pipeline"]["bytes"] for variant in case["variants"])


def test_naive_baseline_orients_flattens_and_fits() -> None:
    image = Image.new("RGBA", (400, 200), (255, 0, 0, 128))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display: the output is portrait
    data = _encoded(image, "WEBP", exif=exif.tobytes(), lossless=True)
    specs = (
        VariantSpec("full", "png"),
        VariantSpec("flat", "jpeg", quality=80),
        VariantSpec("box", "webp", quality=80, width=50, height=50),
        VariantSpec("square", "jpeg", quality=80, width=30, height=30, fit="cover"),
    )
    outputs = {variant.name: variant for variant in render_naively(data, specs)}
    assert {name: (variant.width, variant.height) for name, variant in outputs.items()} == {
        "full": (200, 400),
        "flat": (200, 400),
        "box": (25, 50),
        "square": (30, 30),
    }
    assert Image.open(io.BytesIO(outputs["full"].data)).mode == "RGBA"
    assert Image.open(io.BytesIO(outputs["flat"].data)).format == "JPEG"


def test_floor_decodes_a_lossless_jpeg_at_full_size_as_the_pipeline_does() -> None:
    """libjpeg cannot scale a lossless JPEG: a floor that asked for it would time a failed decode."""
    data = lossless_jpeg(Image.new("RGB", (240, 160), (220, 40, 40)))
    small = (VariantSpec("a", "jpeg", quality=80, width=40, height=40),)
    assert shrink_on_load_size(data, Image.open(io.BytesIO(data)), small) is None
    case = prepare_floor(data, small, [(40, 27)])
    assert case.draft_size is None
    [blob] = run_floor(case, lambda image, spec: _encoded(image, "JPEG", quality=spec.quality))
    assert Image.open(io.BytesIO(blob)).convert("RGB").getpixel((20, 13))[0] > 200


def test_floor_decodes_exactly_as_much_as_the_pipeline() -> None:
    """The floor shrinks on load as the pipeline does (with its headroom), and not when any output is full size."""
    data = _encoded(Image.new("RGB", (800, 600), "green"), "JPEG")
    small = (VariantSpec("a", "jpeg", quality=80, width=100, height=100),)
    both = (*small, VariantSpec("b", "jpeg", quality=80))
    draft_size = prepare_floor(data, small, [(100, 75)]).draft_size
    assert draft_size == shrink_on_load_size(data, Image.open(io.BytesIO(data)), small)
    assert draft_size is not None and (100, 75) < draft_size < (800, 600)
    assert prepare_floor(data, both, [(100, 75), (800, 600)]).draft_size is None
    case = prepare_floor(data, both, [(100, 75), (800, 600)])
    encoded = run_floor(case, lambda image, spec: _encoded(image, "JPEG", quality=spec.quality))
    assert [Image.open(io.BytesIO(blob)).size for blob in encoded] == [(100, 75), (800, 600)]


def test_import_profile_keeps_the_costliest_direct_imports() -> None:
    log = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       100 |        100 |     PIL._util",
            "import time:      5000 |      90000 |   boto3",
            "import time:       300 |      20000 |   PIL",
            "import time:       700 |     111000 | handler.app",
        ]
    )
    assert _heaviest_imports(log, 2) == [("boto3", 90.0), ("PIL", 20.0)]


def test_contention_counts_only_other_processes_cpu() -> None:
    before = CpuSnapshot(busy_s=10.0, own_s=2.0, wall_s=100.0)
    after = CpuSnapshot(busy_s=14.0, own_s=4.0, wall_s=102.0)
    assert other_processes_cores(before, after) == 1.0
    assert other_processes_cores(after, after) == 0.0


def test_targets_pass_fail_or_missing_by_their_limits() -> None:
    default = {
        "photo": TARGET_PHOTO,
        "preset": "default",
        "ratios": {"pipeline_vs_naive": 0.25, "bytes_vs_naive": 1.05, "one_thread_vs_floor": 1.10},
        "peak_rss_mb": {"pipeline": 180.0},
    }
    other_photo = {**default, "photo": "other.jpg", "preset": "responsive"}
    statuses = {
        target["target"]: target["status"] for target in evaluate_targets([default, other_photo], {"net_min_ms": 251.0})
    }
    assert statuses == {
        "default: pipeline vs naive time": "PASS",
        "default: pipeline vs naive bytes": "FAIL",
        "responsive: pipeline vs naive time": "MISSING",
        "default: one thread vs codec floor": "PASS",
        "responsive: one thread vs codec floor": "MISSING",
        "default: peak RSS": "PASS",
        "cold import of handler.app": "FAIL",
    }


def test_psnr_against_the_reference_tells_identical_close_and_wrong_apart() -> None:
    gradient = Image.linear_gradient("L").resize((128, 96)).convert("RGB")
    spec = VariantSpec("box", "png", width=64, height=64)
    reference = reference_variant(reference_frame(_encoded(gradient, "PNG")), spec, (64, 48))
    same = _encoded(reference, "PNG")
    lossy = _encoded(reference, "JPEG", quality=90)
    upside_down = _encoded(reference.rotate(180), "PNG")
    assert psnr_db(same, reference, spec) == IDENTICAL_DB
    assert 35.0 < psnr_db(lossy, reference, spec) < IDENTICAL_DB
    assert psnr_db(upside_down, reference, spec) < 15.0
    assert psnr_db(_encoded(gradient, "PNG"), reference, spec) is None


def test_time_inside_counts_only_outermost_calls_and_restores_the_method(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(measure.time, "perf_counter", lambda: clock[0])

    class Napper:
        def nap(self, depth: int) -> int:
            clock[0] += 0.010  # each level takes 10 ms of the fake clock
            return self.nap(depth - 1) if depth else 0

    original = Napper.nap
    per_run = measure.time_inside(Napper, "nap", lambda: Napper().nap(2), runs=2)

    assert per_run == pytest.approx([30.0, 30.0])  # three levels once, not 30 + 20 + 10
    assert Napper.nap is original
