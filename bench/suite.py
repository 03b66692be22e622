"""What the benchmark measures: per photo and preset the pipeline, the naive baseline and the
codec floor, in one process; then memory and import cost in fresh ones; then the issue's targets.

Results are plain dicts so the table and `--json` show exactly the same numbers.
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import PIL
from PIL import Image

from handler.pipeline import encode_variant, render
from handler.variants import PRESETS

from .floor import prepare_floor, run_floor
from .measure import PROJECT_DIR, import_time, median_ms, peak_rss_mb, run_interleaved, time_inside
from .naive import render_naively
from .quality import psnr_db, reference_frame, reference_variant

log = logging.getLogger(__name__)

DEFAULT_PHOTOS = PROJECT_DIR.parent / "shared" / "testdata" / "photos"
TARGET_PHOTO = "elephants_12mp_4032x3024.jpg"
HANDLER_MODULE = "handler.app"


@dataclass(frozen=True)
class Target:
    """One acceptance target of issue 7: a measured value that must stay at or under a limit."""

    label: str
    limit: float
    unit: str
    path: tuple[str, ...]
    """Where the value sits in a case (`preset`, keys...) or, for `("import",)`, the import probe."""


TARGETS: tuple[Target, ...] = (
    Target("default: pipeline vs naive time", 0.30, "x", ("default", "ratios", "pipeline_vs_naive")),
    Target("default: pipeline vs naive bytes", 1.03, "x", ("default", "ratios", "bytes_vs_naive")),
    Target("responsive: pipeline vs naive time", 0.25, "x", ("responsive", "ratios", "pipeline_vs_naive")),
    Target("default: one thread vs codec floor", 1.10, "x", ("default", "ratios", "one_thread_vs_floor")),
    Target("responsive: one thread vs codec floor", 1.10, "x", ("responsive", "ratios", "one_thread_vs_floor")),
    Target("default: peak RSS", 300.0, "MB", ("default", "peak_rss_mb", "pipeline")),
    Target(f"cold import of {HANDLER_MODULE}", 250.0, "ms", ("import",)),
)


def photos_in(directory: Path) -> list[Path]:
    return sorted(path for path in directory.iterdir() if path.is_file() and not path.name.startswith("."))


def measure_case(photo: Path, preset: str, *, runs: int, warmups: int) -> dict[str, Any]:
    """Time the contenders on one photo and preset, interleaved, and compare their outputs."""
    data = photo.read_bytes()
    specs = PRESETS[preset]
    naive_outputs = render_naively(data, specs)
    pipeline_outputs = {variant.name: variant for variant in render(data, specs)}
    sizes = [(pipeline_outputs[spec.name].width, pipeline_outputs[spec.name].height) for spec in specs]
    floor_case = prepare_floor(data, specs, sizes)
    contenders = {
        "naive": lambda: render_naively(data, specs),
        "pipeline": lambda: render(data, specs),
        "one_thread": lambda: render(data, specs, workers=1),
        "floor": lambda: run_floor(floor_case, encode_variant),
    }
    log.info("timing %s / %s: %d warm-up + %d runs of %s", photo.name, preset, warmups, runs, ", ".join(contenders))
    samples = run_interleaved(contenders, runs=runs, warmups=warmups)
    ms = {name: round(median_ms(times.wall), 1) for name, times in samples.items()}
    cpu_ms = {name: round(median_ms(times.cpu), 1) for name, times in samples.items()}
    # The floor encodes pre-sized frames, so resampling is the one cost the pipeline has and the
    # floor has not: measured on its own, it shows what the rest of the one-thread time is.
    resize_ms = round(median_ms(time_inside(Image.Image, "resize", contenders["one_thread"], runs=runs)), 1)

    frame = reference_frame(data)
    variants = []
    for spec, naive in zip(specs, naive_outputs, strict=True):
        rendered = pipeline_outputs[spec.name]
        reference = reference_variant(frame, spec, (rendered.width, rendered.height))
        variants.append(
            {
                "name": spec.name,
                "format": spec.format,
                "naive": {"width": naive.width, "height": naive.height, "bytes": len(naive.data)},
                "pipeline": {"width": rendered.width, "height": rendered.height, "bytes": len(rendered.data)},
                "psnr_db": {
                    "pipeline": psnr_db(rendered.data, reference, spec),
                    "naive": psnr_db(naive.data, reference, spec),
                },
            }
        )
    naive_bytes = sum(variant["naive"]["bytes"] for variant in variants)
    pipeline_bytes = sum(variant["pipeline"]["bytes"] for variant in variants)
    return {
        "photo": photo.name,
        "preset": preset,
        "source_bytes": len(data),
        "ms": ms,
        "cpu_ms": cpu_ms,
        "one_thread_resize_ms": resize_ms,
        "samples_ms": {name: [round(value, 1) for value in times.wall] for name, times in samples.items()},
        "bytes": {"naive": naive_bytes, "pipeline": pipeline_bytes},
        "ratios": {
            "pipeline_vs_naive": ms["pipeline"] / ms["naive"],
            "one_thread_vs_naive": ms["one_thread"] / ms["naive"],
            "floor_vs_naive": ms["floor"] / ms["naive"],
            "one_thread_vs_floor": ms["one_thread"] / ms["floor"],
            "one_thread_vs_floor_cpu": cpu_ms["one_thread"] / cpu_ms["floor"],
            "one_thread_less_resize_vs_floor": (ms["one_thread"] - resize_ms) / ms["floor"],
            "bytes_vs_naive": pipeline_bytes / naive_bytes,
        },
        "variants": variants,
    }


def measure_memory(case: dict[str, Any], photo: Path) -> None:
    """Add each implementation's peak RSS for this case, each measured in a fresh interpreter."""
    case["peak_rss_mb"], case["idle_rss_mb"] = {}, {}
    for implementation in ("pipeline", "naive"):
        probe = peak_rss_mb(photo, case["preset"], implementation)
        case["peak_rss_mb"][implementation] = probe["peak_mb"]
        case["idle_rss_mb"][implementation] = probe["idle_mb"]


def measure_import(repeats: int) -> dict[str, Any]:
    probe = import_time(HANDLER_MODULE, repeats=repeats)
    return {
        "module": probe.module,
        "net_min_ms": None if probe.net_min_ms is None else round(probe.net_min_ms, 1),
        "net_median_ms": None if probe.net_median_ms is None else round(probe.net_median_ms, 1),
        "bare_interpreter_min_ms": round(probe.bare_min_ms, 1),
        "heaviest_imports_ms": [[name, round(ms, 1)] for name, ms in probe.heaviest],
        "error": probe.error,
    }


def evaluate_targets(cases: Sequence[dict[str, Any]], import_probe: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its measured value and PASS, FAIL or MISSING (not measured in this run)."""
    by_preset = {case["preset"]: case for case in cases if case["photo"] == TARGET_PHOTO}
    results = []
    for target in TARGETS:
        if target.path == ("import",):
            value = import_probe["net_min_ms"]
        else:
            value = by_preset.get(target.path[0])
            for key in target.path[1:]:
                value = None if value is None else value[key]
        status = "MISSING" if value is None else ("PASS" if value <= target.limit else "FAIL")
        results.append(
            {
                "target": target.label,
                "photo": None if target.path == ("import",) else TARGET_PHOTO,
                "limit": target.limit,
                "unit": target.unit,
                "value": value,
                "status": status,
            }
        )
    return results


def environment() -> dict[str, Any]:
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "pillow": PIL.__version__,
        "machine": platform.machine(),
    }
