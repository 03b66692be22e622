"""`python -m bench.settings`: the measurements behind the pipeline's encoder and resize choices.

Sweeps each knob that decides the pipeline's speed, on every photo (a setting tuned on one photo
can cost 30% bytes on another): PNG deflate level and strategy, WebP method, JPEG
optimize/progressive/subsampling; then JPEG shrink-on-load and resampling, and encoder threads on
the 12 MP photo. Codec rows give CPU time and bytes relative to Pillow's default on the same photo,
so a setting's size cost sits beside its speed gain. CPU time, not wall time, so that other
processes on the machine do not skew single-threaded numbers; thread rows are wall time.
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
from typing import Any

from PIL import Image, ImageOps

from handler.pipeline import encode_variant, render
from handler.variants import PRESETS

from .measure import median_ms
from .report import format_table
from .suite import DEFAULT_PHOTOS, TARGET_PHOTO, photos_in

log = logging.getLogger("bench.settings")

Options = dict[str, Any]
# Each codec's settings as (label, save options); the first is Pillow's default, the reference.
PNG_SETTINGS: tuple[tuple[str, Options], ...] = (
    ("level 6 (Pillow default)", {}),
    ("level 0 (stored)", {"compress_level": 0}),
    ("level 1", {"compress_level": 1}),
    ("level 2", {"compress_level": 2}),
    ("level 3", {"compress_level": 3}),
    ("level 1, Z_RLE", {"compress_level": 1, "compress_type": 3}),
    ("level 1, Z_HUFFMAN_ONLY", {"compress_level": 1, "compress_type": 2}),
)
WEBP_SETTINGS: tuple[tuple[str, Options], ...] = (
    ("q85 method 4 (Pillow default)", {"quality": 85}),
    ("q85 method 0", {"quality": 85, "method": 0}),
    ("q85 method 1", {"quality": 85, "method": 1}),
    ("q85 method 2", {"quality": 85, "method": 2}),
    ("q85 method 3", {"quality": 85, "method": 3}),
)
JPEG_SETTINGS: tuple[tuple[str, Options], ...] = (
    ("q85 baseline 4:2:0 (Pillow default)", {"quality": 85}),
    ("q85 optimize", {"quality": 85, "optimize": True}),
    ("q85 progressive", {"quality": 85, "progressive": True}),
    ("q85 4:4:4", {"quality": 85, "subsampling": "4:4:4"}),
)


def _cpu_ms(action: Callable[[], object], runs: int) -> tuple[float, object]:
    samples, result = [], None
    for _ in range(runs):
        started = time.process_time()
        result = action()
        samples.append((time.process_time() - started) * 1000)
    return median_ms(samples), result


def _wall_ms(action: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return median_ms(samples)


def _encoded_size(image: Image.Image, format_name: str, options: Options) -> int:
    buffer = io.BytesIO()
    image.save(buffer, format_name, **options)
    return buffer.tell()


def _load_oriented(photo: Path) -> Image.Image:
    """The photo upright, in the mode a pipeline encodes (RGBA kept where there is alpha)."""
    with Image.open(photo) as source:
        image = ImageOps.exif_transpose(source)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


def codec_table(
    title: str, format_name: str, settings: Sequence[tuple[str, Options]], images: dict[str, Image.Image], runs: int
) -> str:
    """Rows: settings; columns: photos; cells: `CPU x / bytes x` against the first setting."""
    log.info("sweeping %s", title)
    columns: list[list[str]] = []
    for name, image in images.items():
        encodable = image.convert("RGB") if format_name == "JPEG" else image
        results = [
            _cpu_ms(lambda i=encodable, o=options: _encoded_size(i, format_name, o), runs) for _, options in settings
        ]
        reference_ms, reference_bytes = results[0]
        column = [f"{reference_ms:.0f} ms, {reference_bytes / 1e6:.2f} MB"]
        column += [f"{ms / reference_ms:.2f} / {size / reference_bytes:.3f}" for ms, size in results[1:]]
        columns.append(column)
        log.info("  %s done", name)
    rows = [[label, *(column[index] for column in columns)] for index, (label, _) in enumerate(settings)]
    return f"{title}: first row absolute, then CPU time x / bytes x against it\n" + format_table(
        ["setting", *images], rows, text_columns=1
    )


def _inside(size: tuple[int, int], box: int) -> tuple[int, int]:
    scale = min(box / size[0], box / size[1])
    return (round(size[0] * scale), round(size[1] * scale))


def shrink_table(data: bytes, runs: int) -> str:
    """Decode, then resample into the responsive preset's 1200 px box, the ways a pipeline can."""

    def decode(scale: int | None) -> Image.Image:
        image = Image.open(io.BytesIO(data))
        if scale is not None:
            image.draft(image.mode, (image.width // scale, image.height // scale))
        image.load()
        return image

    def to_1200(scale: int | None, resample: Image.Resampling, gap: float | None = None) -> Callable[[], object]:
        def action() -> object:
            image = decode(scale)
            return image.resize(_inside(image.size, 1200), resample, reducing_gap=gap)

        return action

    lanczos, bicubic = Image.Resampling.LANCZOS, Image.Resampling.BICUBIC
    contenders: dict[str, Callable[[], object]] = {
        "full decode": lambda: decode(None),
        "draft 1/2 decode": lambda: decode(2),
        "draft 1/4 decode": lambda: decode(4),
        "full decode + LANCZOS": to_1200(None, lanczos),
        "full decode + LANCZOS reducing_gap 3": to_1200(None, lanczos, 3.0),
        "draft 1/2 + LANCZOS": to_1200(2, lanczos),
        "draft 1/2 + BICUBIC": to_1200(2, bicubic),
    }
    log.info("sweeping decode and resampling")
    rows = [[label, f"{_cpu_ms(action, runs)[0]:.0f}"] for label, action in contenders.items()]
    return "JPEG decode, shrink-on-load and resampling into a 1200 px box (CPU ms)\n" + format_table(
        ["step", "CPU ms"], rows, text_columns=1
    )


def thread_table(data: bytes, image: Image.Image, runs: int) -> str:
    """Encoder threads: the default preset's full-size encodes, and whole renders, by pool size (wall)."""
    specs = [spec for spec in PRESETS["default"] if spec.box is None]

    def encode_all(workers: int) -> Callable[[], object]:
        def action() -> object:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                return list(pool.map(lambda spec: encode_variant(image, spec), specs))

        return action

    contenders: dict[str, Callable[[], object]] = {}
    for workers in (1, 2, 3):
        contenders[f"{len(specs)} full-size encodes (pipeline settings), {workers} thread(s)"] = encode_all(workers)
    for preset in PRESETS:
        for workers in (1, 2, 3):
            contenders[f"render {preset}, workers={workers}"] = lambda p=preset, w=workers: render(
                data, PRESETS[p], workers=w
            )
    log.info("sweeping threads")
    rows = [[label, f"{_wall_ms(action, runs):.0f}"] for label, action in contenders.items()]
    return "Threads (wall ms; needs a quiet machine)\n" + format_table(["work", "wall ms"], rows, text_columns=1)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    parser = argparse.ArgumentParser(prog="python -m bench.settings", description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="folder of photos (default: %(default)s)")
    parser.add_argument("--photo", action="append", metavar="NAME", help="only this photo (repeatable)")
    parser.add_argument("--runs", type=int, default=3, help="runs per setting, median (default 3)")
    args = parser.parse_args(argv)
    photos = [path for path in photos_in(args.photos) if not args.photo or path.name in args.photo]
    images = {path.name.split(".")[0]: _load_oriented(path) for path in photos}
    target = args.photos / TARGET_PHOTO
    sections = [
        codec_table("PNG", "PNG", PNG_SETTINGS, images, args.runs),
        codec_table("WebP", "WEBP", WEBP_SETTINGS, images, args.runs),
        codec_table("JPEG", "JPEG", JPEG_SETTINGS, images, args.runs),
    ]
    if target.is_file():
        data = target.read_bytes()
        sections += [shrink_table(data, args.runs), thread_table(data, _load_oriented(target), args.runs)]
    sys.stdout.write("\n\n".join(sections) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
