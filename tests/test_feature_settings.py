"""The study's feature-group settings: one name, the same bands on fetched and imported stacks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lsd.errors import LayerMissing
from lsd.layergroups import group_layers
from lsd.layers import BUILTIN_SETTINGS, S1_LAYERS, resolve_setting
from lsd.pipeline.sources.landslide4sense import L4S_LAYERS
from lsd.rasters import require_layers

FETCHED = set(group_layers(["paper", "s2bands"]))


def test_feature_groups_on_single_date_patches() -> None:
    single = set(L4S_LAYERS)
    assert resolve_setting("rgbn", available=single) == ("B2", "B3", "B4", "B8")
    assert resolve_setting("rgbn_re", available=single) == (
        "B2",
        "B3",
        "B4",
        "B8",
        "B5",
        "B6",
        "B7",
    )
    assert resolve_setting("rgbn_swir", available=single)[-2:] == ("B11", "B12")
    assert len(resolve_setting("rgbn_re_swir", available=single)) == 9


def test_feature_groups_on_fetched_stacks_take_both_dates() -> None:
    assert resolve_setting("rgbn", available=FETCHED) == (
        "preB2", "postB2", "preB3", "postB3", "preB4", "postB4", "preB8", "postB8",
    )  # fmt: skip
    swir = resolve_setting("rgbn_re_swir", available=FETCHED)
    assert len(swir) == 18 and swir[-2:] == ("preB12", "postB12") and "preB8A" not in swir
    # all SAR layers of the paper's stack: exactly the s1 setting
    assert resolve_setting("sar_all", available=FETCHED) == S1_LAYERS
    with_ndvi = FETCHED | {"preNDVI", "postNDVI"}
    assert resolve_setting("fusion", available=with_ndvi) == (
        "preVV", "postVV", "dVV", "preVH", "postVH", "dVH", "preNDVI", "postNDVI",
    )  # fmt: skip


def test_settings_combine_with_user_layers() -> None:
    layers = FETCHED | {"coh", "H", "A", "alpha"}
    got = resolve_setting("sar_all,coh,H,A,alpha", available=layers)
    assert got == (*S1_LAYERS, "coh", "H", "A", "alpha")
    # a layer the stacks hold under the bare name is used as it is
    assert resolve_setting("B2,slope", available={"B2", "preB2", "postB2", "slope"}) == (
        "B2", "slope",
    )  # fmt: skip
    # without stacks to look at, names stay as written (families unexpanded)
    assert resolve_setting("rgbn") == BUILTIN_SETTINGS["rgbn"] == ("B2", "B3", "B4", "B8")


@pytest.mark.parametrize(
    ("setting", "available", "needle"),
    [
        ("rgbn", set(S1_LAYERS), "lacks layer(s) B2, B3, B4, B8 that setting 'rgbn' needs; B2 is "
                                 "a single-date layer B2 or preB2, postB2 (layer group s2bands)"),
        ("fusion", FETCHED, "lacks layer(s) NDVI that setting 'fusion' needs; NDVI is a "
                            "single-date layer NDVI or preNDVI, postNDVI (layer group ndvi)"),
        ("rgbn", {"preB2", "B3", "B4", "B8"}, "lacks layer(s) B2 that"),
    ],
)  # fmt: skip
def test_missing_family_names_the_layers_and_group(setting, available, needle) -> None:
    layers = resolve_setting(setting, available=available)
    with pytest.raises(LayerMissing, match=re.escape(needle)):
        require_layers("stack.tif", sorted(available), layers, f"setting '{setting}'")


def test_grid_on_landslide4sense_resolves_the_study_groups(
    l4s_events: Path, tmp_path: Path
) -> None:
    from lsd.training.grid import GridOptions, prepare_grid

    opts = GridOptions(
        setting="rgbn_swir", archs=("Unet",), losses=("Dice",), lrs=(0.001,), epochs=1,
        iters_per_epoch=1, crop=64, device="cpu",
    )  # fmt: skip
    plan = prepare_grid(l4s_events, tmp_path / "runs", opts)
    assert plan.layers == ["B2", "B3", "B4", "B8", "B11", "B12"]
    grid = json.loads((tmp_path / "runs" / "grid.json").read_text())
    assert grid["setting"] == "rgbn_swir" and grid["layers"] == plan.layers
    assert len(grid["mean"]) == 6
