"""The ICC step on the render's thread pool: large frames in bands, same bytes as one transform."""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest
from PIL import Image, ImageCms

from handler.colour import _MIN_BANDED_PIXELS, to_srgb

_T = TypeVar("_T")


class CountingPool(ThreadPoolExecutor):
    """A real two-thread pool that counts the tasks it is given, to see whether a frame was banded."""

    def __init__(self) -> None:
        super().__init__(max_workers=2, thread_name_prefix="test-colour")
        self.tasks = 0

    def submit(self, fn: Callable[..., _T], /, *args: object, **kwargs: object) -> Future[_T]:
        self.tasks += 1
        return super().submit(fn, *args, **kwargs)


@pytest.fixture
def pool() -> Iterator[CountingPool]:
    with CountingPool() as counting:
        yield counting


def _profile(hostile_dir: Path, name: str) -> bytes:
    """A non-sRGB profile from the shared corpus: Display P3, a CMYK press profile, or a grey one."""
    return Image.open(hostile_dir / name).info["icc_profile"]


def _noise(mode: str, size: tuple[int, int]) -> Image.Image:
    """Every pixel different from its neighbours, so a band pasted a row off cannot go unnoticed.

    Mode "LA>RGBA": grey+alpha noise widened to RGBA, as Pillow decodes a 16-bit grey+alpha PNG.
    """
    decoded, _, widened = mode.partition(">")
    channels = len(decoded)
    image = Image.frombytes(decoded, size, random.Random(0).randbytes(size[0] * size[1] * channels))
    return image.convert(widened) if widened else image


@pytest.mark.parametrize(
    ("profile", "mode", "size"),
    [
        ("sharp_p3.png", "RGB", (1500, 2002)),  # 3 MP: three bands of uneven height
        ("sharp_p3.png", "RGBA", (1000, 701)),
        ("sharp_CMYK_ycck_with_profile.jpg", "CMYK", (900, 600)),
        ("sharp_16-bit-grey-alpha.png", "LA>RGBA", (800, 500)),  # grey profile on widened grey+alpha
    ],
    ids=["p3-rgb", "p3-rgba", "cmyk", "grey-on-rgba"],
)
def test_banded_transform_gives_the_bytes_of_one_transform(
    profile: str, mode: str, size: tuple[int, int], hostile_dir: Path, pool: CountingPool
) -> None:
    icc = _profile(hostile_dir, profile)
    image = _noise(mode, size)

    banded = to_srgb(image, icc, pool=pool)

    assert pool.tasks >= 2, "a frame this large is split across the pool"
    single = to_srgb(image, icc)
    assert banded.mode == single.mode == ("RGBA" if "A" in mode else "RGB")
    assert banded.tobytes() == single.tobytes()


def test_banded_transform_matches_littlecms_directly(hostile_dir: Path, pool: CountingPool) -> None:
    icc = _profile(hostile_dir, "sharp_p3.png")
    image = _noise("RGB", (1200, 900))
    reference = ImageCms.profileToProfile(
        image,
        ImageCms.ImageCmsProfile(io.BytesIO(icc)),
        ImageCms.createProfile("sRGB"),
        renderingIntent=ImageCms.Intent.PERCEPTUAL,
        outputMode="RGB",
    )
    assert reference is not None
    assert to_srgb(image, icc, pool=pool).tobytes() == reference.tobytes() != image.tobytes()


def test_banded_rgba_keeps_its_alpha(hostile_dir: Path, pool: CountingPool) -> None:
    image = _noise("RGBA", (1000, 600))

    out = to_srgb(image, _profile(hostile_dir, "sharp_p3.png"), pool=pool)

    assert pool.tasks >= 2
    assert out.mode == "RGBA"
    assert out.getchannel("A").tobytes() == image.getchannel("A").tobytes()


@pytest.mark.parametrize(
    "size", [(200, 150), (_MIN_BANDED_PIXELS // 500 - 1, 500)], ids=["thumbnail", "just-below-threshold"]
)
def test_small_frames_are_transformed_in_one_call(size: tuple[int, int], hostile_dir: Path, pool: CountingPool) -> None:
    icc = _profile(hostile_dir, "sharp_p3.png")
    image = _noise("RGB", size)

    out = to_srgb(image, icc, pool=pool)

    assert pool.tasks == 0
    assert out.tobytes() == to_srgb(image, icc).tobytes()


def test_one_row_frame_is_not_split_into_empty_bands(hostile_dir: Path, pool: CountingPool) -> None:
    icc = _profile(hostile_dir, "sharp_p3.png")
    image = _noise("RGB", (_MIN_BANDED_PIXELS * 2, 1))

    assert to_srgb(image, icc, pool=pool).tobytes() == to_srgb(image, icc).tobytes()
    assert pool.tasks == 0
