"""What issue 10 found, checked on the real tiny grid: outputs that must not be replaced, test
events scored as test events only, +/-inf as no data, member checksums, suspect stacks, PAN on
thin stacks, one scoring pass and one threshold everywhere, and maps a GIS user can open."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from lsd.bundles import META_FILE, BundleMeta, is_landslide
from lsd.events import list_events
from lsd.rasters import Grid, read_label, read_stack, write_label, write_stack
from lsd.runs import BUNDLE_DIR, run_folder, write_done, write_leaderboard, write_split
from lsd.training.bundle import load_bundle, save_bundle
from lsd.training.ensemble import EvalEvent, score_members
from lsd.training.grid import GridOptions, prepare_grid
from lsd.training.inference import predict_array
from lsd.training.loop import evaluate
from lsd.training.metrics import confusion
from lsd.training.models import build_model
from lsd.training.normalise import normalise_array_
from lsd.training.precision import Precision
from lsd.training.scoring import member_probability, no_data
from tests.cli import lsd

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def error_line(text: str) -> str:
    errors = [line for line in text.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "Traceback" not in text, text
    return errors[0]


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def grid(tiny_runs, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checks")
    runs, data = root / "runs", root / "data"
    shutil.copytree(tiny_runs.runs, runs)
    shutil.copytree(tiny_runs.data, data)
    record = json.loads((runs / "grid.json").read_text())
    record["options"]["data"] = str(data)
    (runs / "grid.json").write_text(json.dumps(record))
    assert lsd("ensemble", runs, "--k", "2", "--out", root / "ens")[0] == 0
    split = json.loads((runs / "split.json").read_text())
    return {"root": root, "runs": runs, "data": data, "ens": root / "ens", "split": split,
            "layers": tiny_runs.layers}  # fmt: skip


# --------------------------------------------------------------------------- 1: --overwrite


def test_overwrite_never_harms_inputs_or_other_folders(grid, tmp_path: Path) -> None:
    runs, data, ens = grid["runs"], grid["data"], grid["ens"]
    event = data / grid["split"]["test"][0]
    before = {"runs": files(runs), "event": files(event)}
    code, text = lsd("ensemble", runs, "--k", "1", "--out", runs, "--overwrite")
    assert code == 1 and "an input of this command" in error_line(text)
    code, text = lsd("predict", "--stack", event / "stack.tif", "--model", ens, "--out", event,
                     "--overwrite")  # fmt: skip
    assert code == 1 and "an input of this command" in error_line(text)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.docx").write_text("years of work")
    for args in (["predict", "--stack", event / "stack.tif", "--model", ens, "--out", mine],
                 ["evaluate", runs, "--data", data, "--out", mine],
                 ["ensemble", runs, "--k", "1", "--out", mine]):  # fmt: skip
        code, text = lsd(*args, "--overwrite")
        assert code == 1 and "no lsd marker" in error_line(text) and "--out" in text
    code, text = lsd("evaluate", runs, "--data", data, "--out", ".", "--overwrite", cwd=mine)
    assert code == 1 and "working folder" in error_line(text)
    assert [p.name for p in mine.iterdir()] == ["thesis.docx"]
    assert files(runs) == before["runs"] and files(event) == before["event"]


# --------------------------------------------------------------------------- 2: test events


def test_evaluate_refuses_events_the_grid_trained_or_chose_on(grid) -> None:
    train, val = grid["split"]["train"][0], grid["split"]["val"][0]
    for event, word in ((train, "training"), (val, "validation")):
        code, text = lsd("evaluate", grid["runs"], "--data", grid["data"], "--events", event,
                         "--out", grid["root"] / "ev")  # fmt: skip
        line = error_line(text)
        assert code == 1 and event in line and f"{word} list" in line and "--events" in line
    assert not (grid["root"] / "ev").exists()


# --------------------------------------------------------------------------- 3: +/-inf


def test_infinite_values_are_no_data_in_statistics_and_maps(grid, tmp_path: Path,
                                                            capsys) -> None:  # fmt: skip
    data = tmp_path / "data"
    shutil.copytree(grid["data"], data)
    events = sorted(p.name for p in data.iterdir() if p.is_dir())
    victim = data / events[0]
    stack, layers, g = read_stack(victim / "stack.tif")
    nan_version = stack.copy()
    stack[1, :3, :3], nan_version[1, :3, :3] = np.inf, np.nan
    stack[1, 5, 5], nan_version[1, 5, 5] = -np.inf, np.nan
    write_stack(victim / "stack.tif", stack, layers, g)
    opts = GridOptions(setting="B2,B3,B4,B8", archs=("FPN",), losses=("BCE",), lrs=(0.001,),
                       encoder="resnet18", crop=64, val=[events[1]], test=[events[2]],
                       device="cpu")  # fmt: skip
    plan = prepare_grid(data, tmp_path / "R", opts)
    record = json.loads((tmp_path / "R" / "grid.json").read_text())
    assert all(np.isfinite(record["mean"])) and all(np.isfinite(record["std"]))
    assert record["infinite_values"] == {events[0]: {layers[1]: 10}} and plan.mean == record["mean"]
    assert f"event '{events[0]}': +/-inf values in {layers[1]} (10)" in capsys.readouterr().err
    # inference: the same map as with NaN in their place, and the count in run.json
    write_stack(tmp_path / "nan" / "stack.tif", nan_version, layers, g)
    maps = {}
    for name, path in (("inf", victim / "stack.tif"), ("nan", tmp_path / "nan" / "stack.tif")):
        code, text = lsd("predict", "--stack", path, "--model", grid["ens"], "--out",
                         tmp_path / f"map_{name}")  # fmt: skip
        assert code == 0, text
        with rasterio.open(tmp_path / f"map_{name}" / "probability.tif") as src:
            maps[name] = src.read(1)
    np.testing.assert_array_equal(maps["inf"], maps["nan"])
    run = json.loads((tmp_path / "map_inf" / "run.json").read_text())
    assert run["input_checks"]["inf_values"] == {layers[1]: 10}


# --------------------------------------------------------------------------- 4: checksums


def test_ensemble_checks_member_checksums_before_copying(grid, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(grid["runs"], runs)
    victim = next((runs / "runs").iterdir()) / BUNDLE_DIR / "model.pt"
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))
    code, text = lsd("ensemble", runs, "--k", "4", "--out", tmp_path / "e")
    assert code == 1 and "checksum" in error_line(text) and str(victim.resolve()) in text
    assert not (tmp_path / "e").exists()


# --------------------------------------------------------------------------- 6: suspect stacks


def test_predict_warns_about_pixel_size_and_values_far_from_training(grid, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(next((grid["runs"] / "runs").iterdir()) / BUNDLE_DIR, bundle)
    meta = json.loads((bundle / META_FILE).read_text())
    meta["extra"]["pixel_m"] = 10.0  # as lsd train now records it
    (bundle / META_FILE).write_text(json.dumps(meta))
    event = grid["data"] / grid["split"]["test"][0]
    stack, layers, _ = read_stack(event / "stack.tif")
    wrong = tmp_path / "wrong" / "stack.tif"
    side = stack.shape[-1]
    write_stack(wrong, stack * 1000, layers, Grid(side, side, rasterio.crs.CRS.from_epsg(32645),
                rasterio.Affine(20, 0, 300000, 0, -20, 3000000)))  # fmt: skip
    code, text = lsd("predict", "--stack", wrong, "--model", bundle, "--out", tmp_path / "m")
    assert code == 0, text
    warnings = [line for line in text.splitlines() if line.startswith("Warning: ")]
    assert any("pixels are 20 m but the models were trained on 10 m" in w for w in warnings)
    assert any("training standard deviations from the training mean" in w for w in warnings)
    run = json.loads((tmp_path / "m" / "run.json").read_text())
    assert run["input_checks"]["pixel_m"] == 20 and run["input_checks"]["training_pixel_m"] == 10
    assert len(run["input_checks"]["warnings"]) == len(warnings)
    assert "Warnings about the input" in (tmp_path / "m" / "README.txt").read_text()
    # a needed layer with no data is refused unless asked for
    stack[2] = np.nan
    write_stack(wrong, stack, layers, Grid(side, side, rasterio.crs.CRS.from_epsg(32645),
                rasterio.Affine(10, 0, 300000, 0, -10, 3000000)))  # fmt: skip
    code, text = lsd("predict", "--stack", wrong, "--model", bundle, "--out", tmp_path / "m2")
    line = error_line(text)
    assert code == 1 and f"layer(s) {layers[2]}" in line and "--allow-empty-layers" in line


# --------------------------------------------------------------------------- 15: maps for GIS


def test_maps_carry_a_colour_table_a_qgis_style_and_say_when_not_georeferenced(
    grid, tmp_path: Path
) -> None:
    event = grid["data"] / grid["split"]["test"][0]
    stack, layers, g = read_stack(event / "stack.tif")
    bare = tmp_path / "bare.tif"  # as Landslide4Sense patches are: pixels, no CRS
    write_stack(bare, stack, layers, Grid(g.width, g.height, None, g.transform))
    code, text = lsd("predict", "--stack", bare, "--model", grid["ens"], "--out", tmp_path / "m")
    assert code == 0 and "has no CRS" in text
    out = tmp_path / "m"
    run = json.loads((out / "run.json").read_text())
    assert run["georeferenced"] is False and run["grid"]["crs"] is None
    assert (out / "README.txt").read_text().startswith("Landslide map made by lsd")
    assert "NOT GEOREFERENCED" in (out / "README.txt").read_text()
    with rasterio.open(out / "mask.tif") as src:
        assert src.colormap(1)[1] == (227, 26, 28, 255) and src.colormap(1)[0][:3] == (255,) * 3
    entries = ET.parse(out / "mask.qml").getroot().iter("paletteEntry")
    assert {e.get("value"): e.get("label") for e in entries} == {
        "0": "not landslide", "1": "landslide", "255": "no data"}  # fmt: skip


# --------------------------------------------------------------------------- 10: PAN, thin stacks


def test_pan_members_on_stacks_thinner_than_their_minimum(grid, tmp_path: Path) -> None:
    """PAN needs 128 px sides: 48 px events and stacks are padded, in every command."""
    data, runs = tmp_path / "data", tmp_path / "runs"
    split = {role: grid["split"][role][:2] for role in ("train", "val", "test")}
    for ev in list_events(grid["data"]):
        if any(ev.event_id in ids for ids in split.values()):
            stack, layers, g = read_stack(ev.stack)
            small = Grid(48, 48, g.crs, g.transform)
            write_stack(data / ev.event_id / "stack.tif", stack[:, :48, :48], layers, small)
            write_label(data / ev.event_id / "label.tif", read_label(ev.label)[0][:48, :48],
                        small)  # fmt: skip
    torch.manual_seed(0)
    for i, lr in enumerate((0.01, 0.001)):
        rid = f"PAN-BCE-lr{lr:g}"
        meta = BundleMeta("PAN", "mobilenet_v2", "BCE", lr, list(layers), [0.0] * len(layers),
                          [1.0] * len(layers), {"val_f1": 0.5 - i / 10})  # fmt: skip
        save_bundle(run_folder(runs, rid) / BUNDLE_DIR,
                    build_model("PAN", len(layers), "mobilenet_v2"), meta)  # fmt: skip
        write_done(run_folder(runs, rid), {"run_id": rid, "val_f1": 0.5 - i / 10,
                                           "bundle": BUNDLE_DIR})  # fmt: skip
    write_leaderboard(runs)
    write_split(runs, split, seed=0)
    code, text = lsd("ensemble", runs, "--k", "auto", "--data", data, "--out", tmp_path / "e")
    assert code == 0 and "K=" in text, text
    stack = data / split["test"][0] / "stack.tif"
    code, text = lsd(
        "predict", "--stack", stack, "--model", tmp_path / "e", "--out", tmp_path / "m"
    )
    assert code == 0, text
    with rasterio.open(tmp_path / "m" / "probability.tif") as src:
        assert src.shape == (48, 48) and np.isfinite(src.read(1)).all()
    code, text = lsd("evaluate", runs, "--data", data, "--out", tmp_path / "ev", "--ks", "2")
    assert code == 0 and "ensemble K=2" in text, text


# --------------------------------------------------------------------------- 11, 12: one pass


def test_one_scoring_pass_and_one_threshold_everywhere(grid) -> None:
    """A 640 x 768 event (four tiles): training validation, ensemble scoring and the map see the
    same probabilities; and a probability of exactly 0.5 is not a landslide anywhere."""
    events = list_events(grid["data"])
    layers = list(grid["layers"])
    patches = [read_stack(e.stack, layers)[0] for e in events]
    labels = [read_label(e.label)[0] for e in events]
    side = patches[0].shape[-1]  # 640 x 768 pixels from patches of this side
    order = [[(r * 7 + c) % len(events) for c in range(768 // side)] for r in range(640 // side)]
    image = np.block([[[patches[k][ch] for k in row] for row in order]
                      for ch in range(len(layers))]).astype(np.float32)  # fmt: skip
    image[:, :40, :40] = np.nan  # a corner without data
    label = np.block([[labels[k] for k in row] for row in order])
    model, meta = load_bundle(next((grid["runs"] / "runs").iterdir()) / BUNDLE_DIR)
    flat, _ = load_bundle(next((grid["runs"] / "runs").iterdir()) / BUNDLE_DIR)
    head = flat.segmentation_head[0]
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)  # logits exactly 0: probability exactly 0.5
    normalised = torch.from_numpy(normalise_array_(image.copy(), meta.mean, meta.std))
    val_event = (normalised, torch.from_numpy(label), torch.from_numpy(no_data(image)))
    cpu = Precision.for_device(torch.device("cpu"))

    maps = predict_array([(model, meta)], image)[0]
    val = evaluate(model, [val_event], cpu)  # validation during training
    big = EvalEvent("big", Path("-"), label, tuple(layers), image)
    scored = score_members([("m", lambda: (model, meta))], [big])  # ensembles and evaluate
    assert val == scored.single[0] == scored.ensemble[0] == confusion(is_landslide(maps), label)
    np.testing.assert_array_equal(member_probability(model, meta, image), maps)  # NaN alike
    assert np.isnan(maps[:40, :40]).all() and np.nanstd(maps) > 0

    flat_map = predict_array([(flat, meta)], image)[0]
    assert np.all(flat_map[np.isfinite(flat_map)] == 0.5)
    flat_val = evaluate(flat, [val_event], cpu)
    assert flat_val.tp + flat_val.fp == 0  # 0.5 is not above the threshold: never a landslide
    assert not is_landslide(flat_map).any()
