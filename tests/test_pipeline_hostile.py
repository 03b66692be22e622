"""Every file of the shared hostile corpus, with the outcome its MANIFEST expects.

Expected rejection reasons are kept per *category* (the class of problem), never per file.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from PIL import ExifTags, Image, ImageChops, ImageStat

from handler.pipeline import Rejected, RenderedVariant, render
from handler.variants import VariantSpec
from tests.conftest import HOSTILE_DIR

REASON_BY_CATEGORY = {
    "truncated": "corrupt",
    "corrupt-header": "corrupt",
    "pngsuite-broken": "corrupt",
    "decompression-bomb": "too_many_pixels",
    "other-format": "unsupported_format",
    "non-image": "not_an_image",
}
# One variant per codec and per geometry: full size, inside box, cover box.
SPECS = (
    VariantSpec("full", "png"),
    VariantSpec("inside", "jpeg", quality=85, width=200, height=200, fit="inside"),
    VariantSpec("cover", "webp", quality=80, width=64, height=48, fit="cover"),
    VariantSpec("small", "avif", quality=60, width=96, height=96, fit="inside"),
)


def _manifest() -> list[dict[str, str]]:
    if not (HOSTILE_DIR / "MANIFEST.tsv").is_file():
        return []
    with (HOSTILE_DIR / "MANIFEST.tsv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


MANIFEST = _manifest()
PROCESS = [row for row in MANIFEST if row["expected"] == "process"]
REJECT = [row for row in MANIFEST if row["expected"] == "reject"]


def _decoded(variant: RenderedVariant) -> Image.Image:
    image = Image.open(io.BytesIO(variant.data))
    image.load()
    return image


def test_manifest_is_present_and_every_category_has_a_policy(hostile_dir: Path) -> None:
    assert PROCESS and REJECT, f"no MANIFEST rows read from {hostile_dir}"
    assert {row["category"] for row in REJECT} <= set(REASON_BY_CATEGORY)


@pytest.mark.parametrize("row", PROCESS, ids=[row["file"] for row in PROCESS])
def test_processable_upload_yields_every_variant_correctly(row: dict[str, str], hostile_dir: Path) -> None:
    variants = render((hostile_dir / row["file"]).read_bytes(), SPECS)
    assert [v.name for v in variants] == [s.name for s in SPECS]
    full, inside, cover, small = (_decoded(v) for v in variants)
    for variant, image in zip(variants, (full, inside, cover, small), strict=True):
        assert image.format == variant.format.upper()
        assert image.size == (variant.width, variant.height)
        assert image.mode in ("L", "LA", "RGB", "RGBA"), (variant.name, image.mode)
        assert not image.getexif(), f"{variant.name} carries EXIF"
        assert not {"exif", "icc_profile", "xmp"} & set(image.info), variant.name
    assert inside.mode in ("L", "RGB")  # JPEG: alpha flattened
    assert cover.size == (64, 48)
    assert max(inside.size) <= 200 and max(small.size) <= 96
    # inside keeps the aspect ratio of the full-size, upright output
    ratio = full.size[0] / full.size[1]
    assert abs(inside.size[0] / inside.size[1] - ratio) < 0.02 * ratio + 2 / min(inside.size)


def _upright_full(name: str, hostile_dir: Path) -> Image.Image:
    (variant,) = render((hostile_dir / name).read_bytes(), [VariantSpec("full", "png")])
    return _decoded(variant).convert("RGB")


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_landscape_fixtures_come_out_alike(orientation: int, hostile_dir: Path) -> None:
    reference = _upright_full("sharp_Landscape_1.jpg", hostile_dir)
    turned = _upright_full(f"sharp_Landscape_{orientation}.jpg", hostile_dir)
    assert reference.size == turned.size == (600, 450)
    # Same picture (only the overlaid digit and the colour profile differ), and not a rotated one.
    assert max(ImageStat.Stat(ImageChops.difference(reference, turned)).mean) < 12
    upside_down = turned.transpose(Image.Transpose.ROTATE_180)
    assert min(ImageStat.Stat(ImageChops.difference(reference, upside_down)).mean) > 40


def test_orientation_tag_is_gone_from_outputs(hostile_dir: Path) -> None:
    specs = [VariantSpec("j", "jpeg", quality=80), VariantSpec("w", "webp", quality=80)]
    for variant in render((hostile_dir / "sharp_Landscape_6.jpg").read_bytes(), specs):
        assert _decoded(variant).getexif().get(ExifTags.Base.Orientation) is None


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # we refuse it ourselves, below
@pytest.mark.parametrize("row", REJECT, ids=[row["file"] for row in REJECT])
def test_hostile_upload_is_rejected_with_its_classified_reason(row: dict[str, str], hostile_dir: Path) -> None:
    with pytest.raises(Rejected) as excinfo:
        render((hostile_dir / row["file"]).read_bytes(), SPECS)
    assert excinfo.value.reason == REASON_BY_CATEGORY[row["category"]], excinfo.value.detail
    assert excinfo.value.detail
