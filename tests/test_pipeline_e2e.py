"""The three halves meet: imported real events -> lsd train -> lsd ensemble -> evaluate -> predict.

Each piece has its own tests; this one checks the files one command writes are exactly what the
next one reads, through the CLI a user types.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from lsd.pipeline.cli import main
from lsd.rasters import read_grid


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _ok(result):
    assert result.exit_code == 0, result.output
    return result


def test_train_ensemble_evaluate_predict(gen_events, tmp_path):
    runner = CliRunner()
    runs, ens, ev, maps = (tmp_path / n for n in ("runs", "ens", "eval", "maps"))
    layers = "B2,B3,B4,B8,B11,B12,slope,elevation"
    _ok(runner.invoke(main, [
        "train", "--setting", layers, "--data", str(gen_events), "--out", str(runs),
        "--archs", "Unet,Linknet", "--losses", "Dice", "--lrs", "0.001",
        "--encoder", "resnet18", "--epochs", "2", "--iters-per-epoch", "2", "--batch-size", "2",
        "--crop", "64", "--val", "3", "--test", "3", "--quiet",
    ]))  # fmt: skip
    # no --data: the grid recorded where its events live
    _ok(runner.invoke(main, ["ensemble", str(runs), "--k", "auto", "--out", str(ens)]))
    manifest = json.loads((ens / "manifest.json").read_text())
    assert manifest["layers"] == layers.split(",")
    assert 1 <= manifest["k"] <= 2 and len(manifest["members"]) == manifest["k"]

    _ok(runner.invoke(main, ["evaluate", str(runs), "--data", str(gen_events), "--out", str(ev)]))
    test_ids = json.loads((runs / "split.json").read_text())["test"]
    per_event = (ev / "per_event.csv").read_text()
    assert all(i in per_event for i in test_ids)

    event = gen_events / test_ids[0]
    _ok(runner.invoke(main, [
        "predict", "--stack", str(event / "stack.tif"), "--model", str(ens), "--out", str(maps),
    ]))  # fmt: skip
    grid = read_grid(event / "stack.tif")
    with rasterio.open(maps / "probability.tif") as src:
        prob = src.read(1)
        assert (src.width, src.height, src.transform) == (grid.width, grid.height, grid.transform)
    assert np.isfinite(prob).all() and ((prob >= 0) & (prob <= 1)).all()
    run = json.loads((maps / "run.json").read_text())
    assert json.dumps(run).count(manifest["members"][0]["name"]) >= 1
