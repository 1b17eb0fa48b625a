"""The training loop on the generated events: best weights, early stopping, seeding."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from lsd.events import list_events
from lsd.runs import run_id
from lsd.training.bundle import load_bundle
from lsd.training.data import compute_norm, load_events
from lsd.training.loop import (
    BestTracker,
    Precision,
    RunConfig,
    RunData,
    evaluate,
    is_finished,
    train_run,
)

LAYERS = ["B2", "B3", "B4", "B8", "slope", "elevation"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run_data(gen_events: Path) -> RunData:
    """Five generated training events (one without landslides) and two validation events."""
    events = list_events(gen_events)
    train, val = events[:5], events[5:7]
    mean, std = compute_norm(train, LAYERS)
    split = {"train": [e.event_id for e in train], "val": [e.event_id for e in val], "test": []}
    return RunData(
        train=load_events(train, LAYERS, mean, std),
        val=load_events(val, LAYERS, mean, std),
        layers=LAYERS,
        mean=mean,
        std=std,
        setting="test",
        split=split,
    )


def small(**kw) -> RunConfig:
    base = dict(arch="Unet", loss="BCE", lr=0.001, encoder="resnet18", crop=64, batch_size=2,
                iters_per_epoch=2, epochs=2, patience=5, seed=7)  # fmt: skip
    base.update(kw)
    return RunConfig(**base)


def rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_run_ids_keep_learning_rates_readable():
    assert run_id("UnetPlusPlus", "Dice", 0.001) == "UnetPlusPlus-Dice-lr0.001"
    assert run_id("Unet", "BCE", 0.01) == "Unet-BCE-lr0.01"
    assert run_id("FPN", "Lovasz", 3e-4) == "FPN-Lovasz-lr0.0003"


def test_best_tracker_keeps_earlier_ties_and_stops_after_patience():
    t = BestTracker(patience=2)
    assert t.update(1, 0.0)  # the first epoch is always the best so far, even at F1 0
    assert t.update(2, 0.4)
    assert not t.update(3, 0.4)  # a tie is not an improvement: keep epoch 2
    assert (t.best_epoch, t.bad_epochs, t.exhausted) == (2, 1, False)
    assert t.update(4, 0.5) and t.bad_epochs == 0
    assert not t.update(5, 0.1) and not t.update(6, 0.49)
    assert t.exhausted and t.best_epoch == 4 and t.best_f1 == 0.5
    one = BestTracker(patience=1)
    one.update(1, 0.3)
    assert not one.exhausted
    one.update(2, 0.2)
    assert one.exhausted


def test_early_stopping_keeps_the_best_epochs_weights(run_data: RunData, tmp_path: Path):
    """patience=1 with a high learning rate: the run stops on the first epoch that does not
    improve, and the bundle holds the weights of the best epoch, not of the last one."""
    cfg = small(lr=0.01, patience=1, epochs=6)
    done = train_run(cfg, run_data, tmp_path, progress=False)
    metrics = rows(tmp_path)
    f1 = [float(r["val_f1"]) for r in metrics]
    best_epoch = f1.index(max(f1)) + 1  # the first of equal maxima
    assert done["best_epoch"] == best_epoch
    assert done["epochs_run"] == len(metrics) <= 6
    if done["stop_reason"] == "patience":
        assert len(metrics) == best_epoch + 1
        assert f1[-1] <= f1[best_epoch - 1]
    else:
        assert done["stop_reason"] == "epochs" and len(metrics) == 6
    assert [int(r["epoch"]) for r in metrics] == list(range(1, len(metrics) + 1))
    assert all(float(r["lr"]) == 0.01 for r in metrics)
    assert all(math.isfinite(float(r["train_loss"])) for r in metrics)

    model, meta = load_bundle(tmp_path / "bundle")
    assert meta.scores["best_epoch"] == best_epoch
    assert meta.extra["optimiser"] == "Adam" and meta.extra["patience"] == 1
    # the saved weights reproduce the best epoch's validation score on the whole events
    counts = evaluate(model, run_data.val_on(torch.device("cpu")), Precision.for_device(
        torch.device("cpu")))  # fmt: skip
    assert counts.f1 == pytest.approx(max(f1), abs=1e-9)
    assert counts.precision == pytest.approx(meta.scores["val_precision"], nan_ok=True)
    done_json = json.loads((tmp_path / "done.json").read_text())
    assert done_json["val_f1"] == pytest.approx(max(f1))
    assert is_finished(tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_same_seed_same_run(run_data: RunData, tmp_path: Path):
    cfg = small(epochs=1, loss="Dice")
    a = train_run(cfg, run_data, tmp_path / "a", progress=False)
    b = train_run(cfg, run_data, tmp_path / "b", progress=False)
    ra, rb = rows(tmp_path / "a"), rows(tmp_path / "b")
    for x, y in zip(ra, rb, strict=True):
        x.pop("seconds"), y.pop("seconds")
    assert ra == rb and a["val_f1"] == b["val_f1"]
    ma, _ = load_bundle(tmp_path / "a" / "bundle")
    mb, _ = load_bundle(tmp_path / "b" / "bundle")
    for (name, p), q in zip(ma.state_dict().items(), mb.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    other = train_run(small(epochs=1, loss="Dice", seed=8), run_data, tmp_path / "c",
                      progress=False)  # fmt: skip
    mc, _ = load_bundle(tmp_path / "c" / "bundle")
    assert other["run_id"] == a["run_id"]
    assert any(
        not torch.equal(p, q)
        for p, q in zip(ma.state_dict().values(), mc.state_dict().values(), strict=True)
    )


def test_unfinished_or_damaged_runs_are_not_finished(run_data: RunData, tmp_path: Path):
    assert not is_finished(tmp_path)
    train_run(small(epochs=1), run_data, tmp_path, progress=False)
    assert is_finished(tmp_path)
    (tmp_path / "bundle" / "bundle.json").write_text("{")
    assert not is_finished(tmp_path)
    assert not (tmp_path / "done.json").exists()
