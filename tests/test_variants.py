"""The variant presets and their validation: one definition shared by config, handler, CLI, bench."""

from __future__ import annotations

import pytest

from handler.variants import PRESETS, VariantError, parse_variants, variants_from_json, variants_to_json


def test_default_preset_matches_the_documented_set() -> None:
    got = {(s.name, s.format, s.quality, s.box) for s in PRESETS["default"]}
    assert got == {
        ("jpeg-q85", "jpeg", 85, None),
        ("jpeg-q60", "jpeg", 60, None),
        ("webp", "webp", 85, None),
        ("png", "png", None, None),
        ("thumbnail", "jpeg", 80, (200, 200)),
    }


def test_responsive_preset_matches_the_documented_set() -> None:
    got = {(s.name, s.format, s.box, s.fit) for s in PRESETS["responsive"]}
    assert got == {
        ("thumb", "jpeg", (150, 150), "cover"),
        ("medium", "jpeg", (600, 600), "inside"),
        ("large", "jpeg", (1200, 1200), "inside"),
        ("webp-1200", "webp", (1200, 1200), "inside"),
    }


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_json_round_trip_is_lossless(preset: str) -> None:
    assert variants_from_json(variants_to_json(PRESETS[preset])) == PRESETS[preset]


def test_explicit_list_gets_defaults() -> None:
    (spec,) = parse_variants([{"name": "hero", "format": "webp", "width": 800, "height": 400}])
    assert (spec.quality, spec.fit, spec.background, spec.extension, spec.content_type) == (
        85,
        "inside",
        "#ffffff",
        "webp",
        "image/webp",
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("huge", "unknown preset 'huge'; allowed: default, responsive"),
        ([], "non-empty list"),
        ([{"name": "a", "format": "jpeg", "quality": 0}], "quality: must be an integer 1..100, got 0"),
        ([{"name": "a", "format": "jpeg", "quality": 101}], "got 101"),
        ([{"name": "a", "format": "gif"}], "format: must be one of jpeg, webp, png, avif, got 'gif'"),
        ([{"name": "a", "format": "png", "quality": 50}], "png is lossless"),
        ([{"name": "a", "format": "png", "width": 0, "height": 10}], "width: must be 1..16384, got 0"),
        ([{"name": "a", "format": "png", "width": -5, "height": 10}], "got -5"),
        ([{"name": "a", "format": "png", "width": 10}], "width and height must be set together"),
        (
            [{"name": "w", "format": "webp", "width": 100, "height": 16384}],
            "'w'.height: webp stores at most 16383 px a side, got 16384",
        ),
        ([{"name": "a", "format": "png", "fit": "cover"}], "'cover' needs width and height"),
        ([{"name": "a", "format": "png", "fit": "stretch", "width": 1, "height": 1}], "fit: must be one of"),
        ([{"name": "A B", "format": "png"}], "name: must match"),
        ([{"name": "quarantine", "format": "png"}], "reserved"),
        ([{"name": "a", "format": "png", "background": "white"}], "background: must be a #rrggbb"),
        ([{"name": "a", "format": "png", "colour": "#000000"}], "unknown field(s) ['colour']"),
        ([{"name": "a", "format": "png"}, {"name": "a", "format": "webp"}], "duplicate variant name(s) ['a']"),
    ],
)
def test_invalid_variants_name_the_field_and_value(value: object, message: str) -> None:
    with pytest.raises(VariantError) as excinfo:
        parse_variants(value)  # type: ignore[arg-type]
    assert message in str(excinfo.value)


def test_environment_value_that_is_neither_preset_nor_json_is_rejected() -> None:
    with pytest.raises(VariantError, match=r"VARIANTS: '\{not json' is not a preset name"):
        variants_from_json("{not json")
