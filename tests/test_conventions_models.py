"""Conventions travel with models: `lsd train` records its data's in grid.json and every bundle;
`lsd predict` and `lsd evaluate` refuse a stack or event of other conventions (one line naming
the layer, both conventions and how to fetch a match) unless told to go on; a stack without
metadata or a model from before conventions were recorded is said once, and mapped.

The models are real (a one-member grid trained by `lsd train` for two iterations) on synthetic
radar events made under the Vollrath sign with 1 = distorted flags, as lsd fetch makes them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lsd import conventions as cv
from tests.cli import invoke
from tests.conventions_fixtures import S1_STACK_LAYERS, radar_stack, write_radar_event

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SETTING = ",".join(S1_STACK_LAYERS)
TRAIN = [
    "--archs", "FPN", "--losses", "BCE", "--lrs", "0.01", "--encoder", "resnet18",
    "--crop", "64", "--batch-size", "2", "--iters-per-epoch", "2", "--epochs", "1",
    "--seed", "1", "--quiet", "--val", "ev-2", "--test", "ev-3",
]  # fmt: skip


def fetched_like(**over: str) -> cv.Conventions:
    """The record lsd fetch writes with its defaults (gee.config.fetch_conventions)."""
    from lsd.gee.config import FetchConfig, fetch_conventions

    rec = fetch_conventions(FetchConfig())
    rec[cv.DEM] = cv.recorded("USGS/SRTMGL1_003", "test")
    rec[cv.LAND_COVER] = cv.recorded("cart:ESA/WorldCover/v200", "test")
    for name, value in over.items():
        rec[name] = cv.recorded(value, "test")
    return rec


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("conv-models")
    data = root / "data"
    for i in range(4):
        write_radar_event(data / f"ev-{i}", radar_stack(size=96, seed=i),
                          conventions=fetched_like())  # fmt: skip
    runs = root / "RUNS"
    result = invoke("train", "--setting", SETTING, "--data", data, "--out", runs, *TRAIN)
    assert result.exit_code == 0, result.output
    bundle = runs / "runs" / "FPN-BCE-lr0.01" / "bundle"
    return {"root": root, "data": data, "runs": runs, "bundle": bundle}


def test_train_records_its_data_conventions(trained: dict[str, Path]) -> None:
    grid = json.loads((trained["runs"] / "grid.json").read_text())
    meta = json.loads((trained["bundle"] / "bundle.json").read_text())
    for rec in (grid["conventions"], meta["extra"]["conventions"]):
        assert rec["flattening"]["value"] == "vollrath" and rec["flattening"]["how"] == "recorded"
        assert rec["distortion_flags"]["value"] == "1=distorted"
        assert rec["flattening"]["evidence"].startswith("3 of 3 stack(s)")  # train + val


def test_train_refuses_data_of_two_conventions(trained: dict[str, Path], tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(trained["data"], data)
    meta_path = data / "ev-1" / "event.json"
    meta = json.loads(meta_path.read_text())
    meta["conventions"]["flattening"] = cv.recorded("gee_s1_ard", "test")
    meta_path.write_text(json.dumps(meta))
    result = invoke("train", "--setting", SETTING, "--data", data, "--out", tmp_path / "R", *TRAIN)
    assert result.exit_code == 1
    assert result.output.startswith("Error: flattening differs within one dataset: event ev-0 "
                                    "has vollrath")  # fmt: skip
    assert "event ev-1 has gee_s1_ard" in result.output and not (tmp_path / "R").exists()


def predict(stack: Path, model: Path, out: Path, *extra: str):
    return invoke("predict", "--stack", stack, "--model", model, "--out", out, "--tile", "64",
               "--overlap", "0", "--device", "cpu", *extra)  # fmt: skip


def test_predict_refuses_a_stack_of_other_conventions(trained: dict[str, Path], tmp_path: Path):
    ev = write_radar_event(
        tmp_path / "new",
        radar_stack("gee_s1_ard", size=96, seed=9),
        conventions=fetched_like(flattening="gee_s1_ard"),
        label=False,
    )
    result = predict(ev / "stack.tif", trained["bundle"], tmp_path / "map")
    assert result.exit_code == 1 and not (tmp_path / "map").exists()
    line = result.output.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith(
        f"Error: {ev / 'stack.tif'}: layer(s) preVV, postVV, dVV, preVH ...: flattening is "
        f"gee_s1_ard (recorded) but the training data of the model {trained['bundle']} had "
        "vollrath (recorded); a stack fetched with the fetch setting look_convention = "
        f'"vollrath" matches (lsd fetch --conventions-from {trained["bundle"]} fetches one;'
    )
    # told to go on: mapped, and said once
    result = predict(ev / "stack.tif", trained["bundle"], tmp_path / "map", "--ignore-conventions")
    assert result.exit_code == 0, result.output
    assert result.output.count("flattening is gee_s1_ard") == 1
    run = json.loads((tmp_path / "map" / "run.json").read_text())
    checks = run["input_checks"]["conventions"]
    assert [d["convention"] for d in checks["differences"]] == ["flattening"]


def test_predict_refuses_flags_of_the_other_polarity_seen_in_the_pixels(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    """A stack with no metadata: its flags are read from where VV is no data."""
    ev = write_radar_event(tmp_path / "bare", radar_stack(polarity="1=valid", size=96, seed=5),
                           label=False)  # fmt: skip
    result = predict(ev / "stack.tif", trained["bundle"], tmp_path / "map")
    assert result.exit_code == 1
    assert ("layer(s) layover, shadow: distortion_flags is 1=valid (detected) but the training "
            "data of the model") in result.output  # fmt: skip
    assert 'fetch setting distortion_flags = "1=distorted" matches' in result.output


def test_predict_on_a_stack_without_metadata_warns_once(trained: dict[str, Path], tmp_path):
    """Flat ground (nothing to read the flattening sign from), no VV no data: what cannot be
    told is said once, and the map is made."""
    layers = radar_stack(size=96, seed=6)
    layers["elevation"] = np.full_like(layers["elevation"], 250.0)
    ev = write_radar_event(tmp_path / "flat", layers, label=False)
    result = predict(ev / "stack.tif", trained["bundle"], tmp_path / "map")
    assert result.exit_code == 0, result.output
    warned = [ln for ln in result.output.splitlines() if "unknown" in ln]
    assert len(warned) == 1
    assert warned[0].startswith(
        f"Warning: {ev / 'stack.tif'}: conventions flattening unknown: nothing recorded with the "
        "stack (no event.json beside it, no LSD_CONVENTIONS tag) and the pixels do not show them"
    )
    assert "too flat" not in warned[0] and "cannot check them against the model" in warned[0]
    record = json.loads((tmp_path / "map" / "run.json").read_text())["input_checks"]
    assert record["conventions"]["detected_from_pixels"] is True
    assert "too flat to tell" in record["conventions"]["stack"]["flattening"]["evidence"]


def test_predict_with_a_model_from_before_conventions(trained: dict[str, Path], tmp_path: Path):
    old = tmp_path / "old-bundle"
    shutil.copytree(trained["bundle"], old)
    meta = json.loads((old / "bundle.json").read_text())
    del meta["extra"]["conventions"]
    (old / "bundle.json").write_text(json.dumps(meta))
    ev = write_radar_event(
        tmp_path / "new",
        radar_stack("gee_s1_ard", size=96, seed=9),
        conventions=fetched_like(flattening="gee_s1_ard"),
        label=False,
    )
    result = predict(ev / "stack.tif", old, tmp_path / "map")
    assert result.exit_code == 0, result.output
    said = [ln for ln in result.output.splitlines() if "before lsd recorded conventions" in ln]
    assert len(said) == 1 and said[0].startswith(f"Warning: the model {old} was trained before")


def test_predict_maps_a_matching_stack_silently(trained: dict[str, Path], tmp_path: Path):
    ev = write_radar_event(
        tmp_path / "same",
        radar_stack(size=96, seed=8),
        conventions=fetched_like(dem="COPERNICUS/DEM/GLO30"),
        label=False,
    )
    result = predict(ev / "stack.tif", trained["bundle"], tmp_path / "map")
    assert result.exit_code == 0, result.output
    assert "convention" not in result.output
    checks = json.loads((tmp_path / "map" / "run.json").read_text())["input_checks"]
    assert [d["convention"] for d in checks["conventions"]["differences"]] == ["dem"]


def test_evaluate_refuses_test_events_of_other_conventions(trained: dict[str, Path], tmp_path):
    data = tmp_path / "data"
    shutil.copytree(trained["data"], data)
    meta_path = data / "ev-3" / "event.json"
    meta = json.loads(meta_path.read_text())
    meta["conventions"]["distortion_flags"] = cv.recorded("1=valid", "test")
    meta_path.write_text(json.dumps(meta))
    out = tmp_path / "eval"
    result = invoke("evaluate", trained["runs"], "--data", data, "--out", out, "--device", "cpu")
    assert result.exit_code == 1 and not out.exists()
    line = result.output.strip()
    assert "\n" not in line
    assert line.startswith(
        "Error: the 1 test event(s): layer(s) layover, shadow: "
        "distortion_flags is 1=valid (recorded) but the training data of "
        f"the models of {trained['runs']} had 1=distorted (recorded)"
    )
    assert f"lsd fetch --conventions-from {trained['runs']} fetches matching events" in line
    result = invoke("evaluate", trained["runs"], "--data", data, "--out", out, "--device", "cpu",
                 "--ignore-conventions")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "mapped anyway as asked" in result.output or "distortion_flags is 1=valid" in (
        result.output
    )
    # the events it was trained with pass
    result = invoke("evaluate", trained["runs"], "--data", trained["data"],
                    "--out", tmp_path / "e2", "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "convention" not in result.output


def test_fetch_settings_from_a_model(trained: dict[str, Path], tmp_path: Path) -> None:
    """--conventions-from reads a RUNS folder, a bundle, an ensemble or a data folder."""
    from lsd.gee.config import FetchConfig
    from lsd.pipeline.conventions import matching_fetch_config

    ens = tmp_path / "ens"
    result = invoke("ensemble", trained["runs"], "--k", "1", "--out", ens)
    assert result.exit_code == 0, result.output
    for path, what in ((trained["runs"], "RUNS folder"), (trained["bundle"], "model"),
                       (ens, "model"), (trained["data"], "data folder")):  # fmt: skip
        rec, found = cv.of_source(path)
        assert found == what and cv.known(rec, "flattening") == "vollrath"
        cfg, lines = matching_fetch_config(FetchConfig(look_convention="gee_s1_ard"), path)
        assert (cfg.look_convention, cfg.distortion_flags, cfg.snow_mode) == (
            "vollrath", "1=distorted", "grow")  # fmt: skip
        assert lines[0].startswith(f"conventions of {path} ({what}): look_convention = 'vollrath'")
