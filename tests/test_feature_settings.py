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
    gen_events: Path, tmp_path: Path
) -> None:
    from lsd.training.grid import GridOptions, prepare_grid

    opts = GridOptions(
        setting="rgbn_swir", archs=("Unet",), losses=("Dice",), lrs=(0.001,), epochs=1,
        iters_per_epoch=1, crop=64, device="cpu",
    )  # fmt: skip
    plan = prepare_grid(gen_events, tmp_path / "runs", opts)
    assert plan.layers == ["B2", "B3", "B4", "B8", "B11", "B12"]
    grid = json.loads((tmp_path / "runs" / "grid.json").read_text())
    assert grid["setting"] == "rgbn_swir" and grid["layers"] == plan.layers
    assert len(grid["mean"]) == 6


@pytest.fixture(scope="module")
def generated_events(tmp_path_factory) -> Path:
    from lsd.pipeline.sources.synthetic import write_synthetic_events

    dest = tmp_path_factory.mktemp("settings") / "events"
    write_synthetic_events(dest, 3, size=64)
    return dest


def _train_line(data: Path, out: Path, *args: str) -> tuple[int, str]:
    from click.testing import CliRunner

    from lsd.pipeline.cli import main

    argv = ["train", "--data", str(data), "--out", str(out), "--device", "cpu", *args]
    result = CliRunner().invoke(main, argv)
    return result.exit_code, result.output.strip()


def test_a_setting_of_a_file_that_was_not_given_says_so(generated_events, tmp_path) -> None:
    code, text = _train_line(generated_events, tmp_path / "RUNS", "--setting", "l4s_rgbn")
    assert code == 1 and len(text.splitlines()) == 1
    assert text.startswith("Error: --settings-file not given: 'l4s_rgbn' is neither a built-in")
    assert "lacks layer" not in text and not (tmp_path / "RUNS").exists()
    toml = tmp_path / "settings.toml"
    toml.write_text('[settings]\nmine = ["dNDVI", "slope"]\n')
    code, text = _train_line(generated_events, tmp_path / "RUNS", "--setting", "l4s_rgbn",
                             "--settings-file", str(toml))  # fmt: skip
    assert code == 1 and text == (
        f"Error: --setting: 'l4s_rgbn' is not a setting of {toml} (mine), not built in, and not "
        "a layer of the stacks"
    )
    # a layer some stacks lack, and a family, keep the layer check's own message
    code, text = _train_line(generated_events, tmp_path / "RUNS", "--setting", "B2")
    assert code == 1 and "lacks layer(s) B2" in text and "layer group s2bands" in text
