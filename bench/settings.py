"""`python -m bench.settings`: the measurements behind the pipeline's encoder and resize choices.

Sweeps, on one photo (default the 12 MP elephants), each knob that decides the pipeline's speed:
PNG deflate level and strategy, WebP method, JPEG optimize/progressive/subsampling, JPEG
shrink-on-load and `reducing_gap`, and encoder threads. Every row shows the median time and the
bytes next to Pillow's default, so a setting's size cost is visible beside its speed gain.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, ImageOps

from handler.pipeline import encode_variant, render
from handler.variants import PRESETS

from .measure import median_ms
from .report import format_table
from .suite import DEFAULT_PHOTOS, TARGET_PHOTO

log = logging.getLogger("bench.settings")
# zlib strategies Pillow passes through as `compress_type`.
ZLIB_STRATEGIES = {"filtered": 1, "huffman-only": 2, "rle": 3}


def _timed(action: Callable[[], object], runs: int) -> tuple[float, object]:
    samples, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = action()
        samples.append((time.perf_counter() - started) * 1000)
    return median_ms(samples), result


def _encoded_size(image: Image.Image, format_name: str, **options: object) -> Callable[[], int]:
    def encode() -> int:
        buffer = io.BytesIO()
        image.save(buffer, format_name, **options)
        return buffer.tell()

    return encode


def sweep(title: str, contenders: dict[str, Callable[[], object]], runs: int) -> str:
    """Time each contender; the first is the reference the ratios divide by."""
    log.info("sweeping %s", title)
    rows: list[tuple[str, float, object]] = []
    for label, action in contenders.items():
        ms, result = _timed(action, runs)
        rows.append((label, ms, result))
    reference_ms, reference_bytes = rows[0][1], rows[0][2]
    table_rows = []
    for label, ms, result in rows:
        sized = isinstance(result, int) and isinstance(reference_bytes, int)
        table_rows.append(
            [
                label,
                f"{ms:.0f}",
                f"{ms / reference_ms:.2f}",
                str(result) if sized else "-",
                f"{result / reference_bytes:.3f}" if sized else "-",
            ]
        )
    headers = ["setting", "ms", "time/ref", "bytes", "bytes/ref"]
    return f"{title}\n" + format_table(headers, table_rows, text_columns=1)


def codec_sweeps(image: Image.Image, runs: int) -> list[str]:
    png: dict[str, Callable[[], object]] = {"level 6 (Pillow default)": _encoded_size(image, "PNG")}
    for level in (0, 1, 2, 3, 4, 9):
        png[f"level {level}"] = _encoded_size(image, "PNG", compress_level=level)
    for strategy, code in ZLIB_STRATEGIES.items():
        png[f"level 1, {strategy}"] = _encoded_size(image, "PNG", compress_level=1, compress_type=code)
    webp: dict[str, Callable[[], object]] = {"q85 method 4 (Pillow default)": _encoded_size(image, "WEBP", quality=85)}
    for method in (0, 1, 2, 3, 5, 6):
        webp[f"q85 method {method}"] = _encoded_size(image, "WEBP", quality=85, method=method)
    jpeg: dict[str, Callable[[], object]] = {}
    for quality in (85, 60):
        jpeg[f"q{quality} baseline 4:2:0 (Pillow default)"] = _encoded_size(image, "JPEG", quality=quality)
        jpeg[f"q{quality} optimize"] = _encoded_size(image, "JPEG", quality=quality, optimize=True)
        jpeg[f"q{quality} progressive"] = _encoded_size(image, "JPEG", quality=quality, progressive=True)
        jpeg[f"q{quality} 4:4:4"] = _encoded_size(image, "JPEG", quality=quality, subsampling="4:4:4")
    return [
        sweep(f"PNG, {image.width}x{image.height}", png, runs),
        sweep(f"WebP, {image.width}x{image.height}", webp, runs),
        sweep(f"JPEG, {image.width}x{image.height} (ratios vs the first row)", jpeg, runs),
    ]


def _inside(size: tuple[int, int], box: int) -> tuple[int, int]:
    scale = min(box / size[0], box / size[1])
    return (round(size[0] * scale), round(size[1] * scale))


def shrink_sweep(data: bytes, runs: int) -> str:
    """Decode, then resize into the responsive preset's 1200 px box, the ways a pipeline can."""

    def decode(scale: int | None) -> Image.Image:
        image = Image.open(io.BytesIO(data))
        if scale is not None:
            image.draft(image.mode, (image.width // scale, image.height // scale))
        image.load()
        return image

    def to_1200(scale: int | None, reducing_gap: float | None) -> Callable[[], object]:
        def action() -> object:
            image = decode(scale)
            return image.resize(_inside(image.size, 1200), Image.Resampling.LANCZOS, reducing_gap=reducing_gap)

        return action

    contenders: dict[str, Callable[[], object]] = {
        "full decode": lambda: decode(None),
        "draft 1/2 decode": lambda: decode(2),
        "draft 1/4 decode": lambda: decode(4),
        "full decode + LANCZOS": to_1200(None, None),
        "full decode + LANCZOS reducing_gap 2": to_1200(None, 2.0),
        "full decode + LANCZOS reducing_gap 3": to_1200(None, 3.0),
        "draft 1/2 + LANCZOS": to_1200(2, None),
        "draft 1/2 + LANCZOS reducing_gap 3": to_1200(2, 3.0),
    }
    return sweep("JPEG decode, shrink-on-load and resampling into a 1200 px box", contenders, runs)


def thread_sweep(data: bytes, image: Image.Image, runs: int) -> str:
    """Encoder threads: the default preset's full-size encodes, and whole renders, by pool size."""
    specs = [spec for spec in PRESETS["default"] if spec.box is None]

    def encode_all(workers: int) -> Callable[[], object]:
        def action() -> object:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                return sum(len(blob) for blob in pool.map(lambda spec: encode_variant(image, spec), specs))

        return action

    contenders: dict[str, Callable[[], object]] = {}
    for workers in (1, 2, 3, 4):
        contenders[f"{len(specs)} full-size encodes, {workers} thread(s)"] = encode_all(workers)
    for preset in PRESETS:
        for workers in (1, 2, 4):
            contenders[f"render {preset}, workers={workers}"] = lambda preset=preset, workers=workers: render(
                data, PRESETS[preset], workers=workers
            )
    return sweep("Threads (ratios vs the first row)", contenders, runs)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    parser = argparse.ArgumentParser(prog="python -m bench.settings", description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTOS / TARGET_PHOTO, help="default: %(default)s")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per setting (median; default 3)")
    args = parser.parse_args(argv)
    data = args.photo.read_bytes()
    with Image.open(io.BytesIO(data)) as source:
        image = ImageOps.exif_transpose(source).convert("RGB")
    sections = [
        f"{args.photo.name}: median of {args.runs} runs; time/ref and bytes/ref divide by each table's first row",
        *codec_sweeps(image, args.runs),
        shrink_sweep(data, args.runs),
        thread_sweep(data, image, args.runs),
    ]
    sys.stdout.write("\n\n".join(sections) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
