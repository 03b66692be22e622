"""Plain-text tables of a benchmark result (the same dict `--json` writes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

BUSY_CORES = 0.25
"""Average cores used by other processes above which the numbers are not clean."""


def _cell(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, text_columns: int = 2) -> str:
    """Left-align the leading text columns, right-align the numbers after them."""
    widths = [max(len(str(item)) for item in column) for column in zip(headers, *rows, strict=True)]

    def line(items: Sequence[str]) -> str:
        cells = []
        for index, (item, width) in enumerate(zip(items, widths, strict=True)):
            cells.append(item.ljust(width) if index < text_columns else item.rjust(width))
        return "  ".join(cells).rstrip()

    return "\n".join([line(headers), line(["-" * width for width in widths]), *(line(row) for row in rows)])


def timing_table(cases: Sequence[dict[str, Any]]) -> str:
    headers = [
        "photo",
        "preset",
        "naive ms",
        "pipeline ms",
        "1-thread ms",
        "floor ms",
        "pipe/naive",
        "1-thread/floor",
        "resize ms",
        "(1-thread - resize)/floor",
        "bytes/naive",
        "peak RSS MB",
        "naive RSS MB",
        "others' cores",
    ]
    rows = [
        [
            case["photo"],
            case["preset"],
            _cell(case["ms"]["naive"]),
            _cell(case["ms"]["pipeline"]),
            _cell(case["ms"]["one_thread"]),
            _cell(case["ms"]["floor"]),
            _cell(case["ratios"]["pipeline_vs_naive"], 3),
            _cell(case["ratios"]["one_thread_vs_floor"], 3),
            _cell(case["one_thread_resize_ms"]),
            _cell(case["ratios"]["one_thread_less_resize_vs_floor"], 3),
            _cell(case["ratios"]["bytes_vs_naive"], 3),
            _cell(case["peak_rss_mb"]["pipeline"], 0),
            _cell(case["peak_rss_mb"]["naive"], 0),
            _cell(case["other_processes_cores"], 2),
        ]
        for case in cases
    ]
    return format_table(headers, rows)


def bytes_table(cases: Sequence[dict[str, Any]]) -> str:
    headers = [
        "photo",
        "preset",
        "variant",
        "WxH",
        "pipeline bytes",
        "naive bytes",
        "bytes/naive",
        "PSNR dB",
        "naive PSNR dB",
    ]
    rows = []
    for case in cases:
        for variant in case["variants"]:
            naive, rendered = variant["naive"], variant["pipeline"]
            size = f"{rendered['width']}x{rendered['height']}"
            if (naive["width"], naive["height"]) != (rendered["width"], rendered["height"]):
                size += f" (naive {naive['width']}x{naive['height']})"
            rows.append(
                [
                    case["photo"],
                    case["preset"],
                    variant["name"],
                    size,
                    str(rendered["bytes"]),
                    str(naive["bytes"]),
                    f"{rendered['bytes'] / naive['bytes']:.3f}",
                    _cell(variant["psnr_db"]["pipeline"]),
                    _cell(variant["psnr_db"]["naive"]),
                ]
            )
        rows.append(
            [
                case["photo"],
                case["preset"],
                "(total)",
                "",
                str(case["bytes"]["pipeline"]),
                str(case["bytes"]["naive"]),
                f"{case['ratios']['bytes_vs_naive']:.3f}",
                "",
                "",
            ]
        )
    return format_table(headers, rows, text_columns=3)


def import_summary(probe: dict[str, Any]) -> str:
    if probe["error"] is not None:
        return f"cold import of {probe['module']}: not measured ({probe['error']})"
    heaviest = ", ".join(f"{name} {ms:.0f}" for name, ms in probe["heaviest_imports_ms"])
    return (
        f"cold import of {probe['module']} in a fresh interpreter, net of a bare one "
        f"({probe['bare_interpreter_min_ms']:.0f} ms): fastest {probe['net_min_ms']:.0f} ms, "
        f"median {probe['net_median_ms']:.0f} ms, while other processes kept {probe['other_processes_cores']:.2f} "
        f"cores busy; heaviest imports (cumulative ms): {heaviest}"
    )


def targets_table(targets: Sequence[dict[str, Any]]) -> str:
    headers = ["target", "limit", "measured", "status"]
    rows = [
        [
            target["target"],
            f"<= {target['limit']:g} {target['unit']}",
            "-" if target["value"] is None else f"{target['value']:.3g} {target['unit']}",
            target["status"],
        ]
        for target in targets
    ]
    return format_table(headers, rows, text_columns=1)


def render_report(result: dict[str, Any]) -> str:
    env = result["environment"]
    settings = result["settings"]
    header = (
        f"image-pipeline bench: {env['cpus']} CPUs, Python {env['python']}, Pillow {env['pillow']}; "
        f"median of {settings['runs']} runs after {settings['warmups']} warm-up, contenders interleaved; "
        f"other processes kept {env['other_processes_cores']:.2f} cores busy meanwhile"
    )
    if env["other_processes_cores"] > BUSY_CORES:
        header += (
            "\nWARNING: the machine was not quiet (see the others' cores column): thread speed-ups, and so "
            "pipeline ratios, are understated, and single-threaded times (the import) inflated"
        )
    sections = [
        header,
        timing_table(result["cases"]),
        bytes_table(result["cases"]),
        import_summary(result["import"]),
        f"targets (photo {result['target_photo']}):\n" + targets_table(result["targets"]),
    ]
    return "\n\n".join(sections) + "\n"
