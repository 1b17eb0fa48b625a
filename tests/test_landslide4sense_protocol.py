"""`lsd train --preset landslide4sense` and `lsd evaluate --protocol landslide4sense` on generated
patches in the benchmark's form: the preset's options are the baseline's (iarai/Landslide4Sense-
2022), its normalisation is the loader's to the bit, its batches are whole patches in shuffled
passes without augmentation, and the protocol's numbers are recomputed here by hand."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lsd import landslide4sense as l4s
from lsd.layers import PAPER_LAYERS, resolve_setting
from lsd.pipeline.cli import main
from lsd.pipeline.landslide4sense_protocol import CURVES_CSV, read_table1
from lsd.rasters import read_label, read_stack
from lsd.runs import read_leaderboard
from lsd.training.bundle import load_bundle
from lsd.training.crops import CropSampler
from lsd.training.data import EventArrays
from lsd.training.loop import RunConfig, RunData, _Run
from lsd.training.normalise import normalise_array_
from lsd.training.presets import PRESETS
from tests.conftest import REPO
from tests.l4s_fixtures import write_benchmark

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ANCHORS = REPO.parent / "shared" / "anchors" / "landslide4sense_table1.csv"


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("l4s_train")
    src = write_benchmark(root / "src", {"train": 5, "val": 2, "test": 3})
    dest = root / "events"
    result = CliRunner().invoke(main, ["import", "landslide4sense", str(src), str(dest),
                                       "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    return dest


@pytest.fixture(scope="module")
def runs(events: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two architectures with the preset, shortened (the preset's 5000 steps at batch 32 take
    hours on a CPU); every other option is the preset's."""
    out = tmp_path_factory.mktemp("l4s_runs") / "RUNS"
    result = CliRunner().invoke(main, [
        "train", "--preset", "landslide4sense", "--setting", "all", "--data", str(events),
        "--out", str(out), "--archs", "Unet,Linknet", "--encoder", "resnet18", "--epochs", "2",
        "--iters-per-epoch", "2", "--batch-size", "4", "--device", "cpu", "--quiet",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "preset landslide4sense: losses BCE, lrs 0.001, weight_decay 0.0005" in result.output
    return out


def test_the_preset_is_the_baselines_train_script() -> None:
    assert PRESETS["landslide4sense"] == {
        "losses": ("BCE",), "lrs": (0.001,), "weight_decay": 5e-4, "batch_size": 32,
        "iters_per_epoch": 500, "epochs": 10, "patience": 10, "crop": 128, "augment": False,
        "event_order": "shuffled", "normalisation": "landslide4sense", "precision": "fp32",
    }  # fmt: skip
    p = PRESETS["landslide4sense"]
    assert p["iters_per_epoch"] * p["epochs"] == 5000 and p["patience"] >= p["epochs"]


def test_setting_all_is_the_benchmarks_14_bands_on_its_patches() -> None:
    assert resolve_setting("all", available=set(l4s.LAYERS)) == l4s.LAYERS
    assert resolve_setting("all", available=set(PAPER_LAYERS) | {"B2"}) == PAPER_LAYERS
    assert resolve_setting("all") == PAPER_LAYERS


def test_grid_records_the_preset_roles_and_fixed_statistics(runs: Path) -> None:
    grid = json.loads((runs / "grid.json").read_text())
    assert grid["layers"] == list(l4s.LAYERS)
    assert grid["mean"] == list(l4s.MEAN) and grid["std"] == list(l4s.STD)
    opts = grid["options"]
    assert (opts["preset"], opts["normalisation"], opts["event_order"], opts["augment"]) == (
        "landslide4sense", "landslide4sense", "shuffled", False)  # fmt: skip
    assert (opts["weight_decay"], opts["losses"], opts["lrs"], opts["crop"]) == (
        5e-4, ["BCE"], [0.001], 128)  # fmt: skip
    assert opts["encoder_weights"] is None  # from scratch
    split = json.loads((runs / "split.json").read_text())
    assert [len(split[r]) for r in ("train", "val", "test")] == [5, 2, 3]
    assert all(i.startswith("l4s_test_") for i in split["test"])
    extra = json.loads((runs / "runs" / "Unet-BCE-lr0.001" / "bundle" / "bundle.json")
                       .read_text())["extra"]  # fmt: skip
    assert (extra["weight_decay"], extra["augment"], extra["event_order"]) == (
        5e-4, False, "shuffled")  # fmt: skip


def test_normalisation_is_the_baseline_loaders_to_the_bit(events: Path) -> None:
    """landslide_dataset.py: np.asarray(image, np.float32), transpose, then per band
    image[i] -= mean[i]; image[i] /= std[i]."""
    import h5py

    meta = json.loads((events / "l4s_val_image_1" / "event.json").read_text())
    with h5py.File(meta["source"]["image"]) as f:
        image = np.asarray(f["img"][:], np.float32).transpose((-1, 0, 1))
    for i in range(len(l4s.MEAN)):
        image[i, :, :] -= l4s.MEAN[i]
        image[i, :, :] /= l4s.STD[i]
    ours = normalise_array_(read_stack(events / "l4s_val_image_1" / "stack.tif")[0],
                            l4s.MEAN, l4s.STD)  # fmt: skip
    assert ours.dtype == np.float32 and np.array_equal(ours, image)


def _patch_events(n: int) -> list[EventArrays]:
    rng = np.random.default_rng(3)
    return [
        EventArrays(f"e{i}", rng.normal(size=(2, 128, 128)).astype(np.float32),
                    (rng.random((128, 128)) > 0.95).astype(np.uint8))
        for i in range(n)
    ]  # fmt: skip


def test_batches_are_whole_patches_in_shuffled_passes_without_augmentation() -> None:
    events = _patch_events(5)
    sampler = CropSampler(events, crop=128, batch_size=2, seed=7, augment=False,
                          order="shuffled")  # fmt: skip
    seen = []
    for _ in range(5):  # 10 draws = two passes over the 5 events
        x, y = sampler.batch()
        for i in range(2):
            match = [k for k, e in enumerate(events) if np.array_equal(x[i].numpy(), e.image)]
            assert len(match) == 1 and np.array_equal(y[i].numpy(), events[match[0]].label)
            seen.append(match[0])
    assert sorted(seen[:5]) == sorted(seen[5:]) == [0, 1, 2, 3, 4]
    assert seen[:5] != seen[5:]  # each pass its own order
    state = sampler.state_dict()
    resumed = CropSampler(events, crop=128, batch_size=2, seed=99, augment=False,
                          order="shuffled")  # fmt: skip
    resumed.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(sampler.batch(), resumed.batch(), strict=True))
    rotated = CropSampler(events, crop=128, batch_size=8, seed=7)  # lsd's default augments
    x, _ = rotated.batch()
    assert not all(any(np.array_equal(x[i].numpy(), e.image) for e in events) for i in range(8))


def test_weight_decay_reaches_adam(tmp_path: Path) -> None:
    events = _patch_events(2)
    data = RunData(train=events[:1], val=events[1:], layers=["a", "b"], mean=[0, 0], std=[1, 1])
    cfg = RunConfig(arch="Linknet", loss="BCE", lr=0.001, encoder="resnet18", crop=128,
                    batch_size=2, weight_decay=5e-4)  # fmt: skip
    run = _Run(cfg, data, tmp_path, torch.device("cpu"))
    assert type(run.optimiser) is torch.optim.Adam
    assert run.optimiser.param_groups[0]["weight_decay"] == 5e-4


def _by_hand(runs: Path, events: Path) -> list[tuple[np.ndarray, ...]]:
    """Each ranked model's probabilities on each test patch: normalised by hand with the
    loader's constants, one forward pass of the whole patch, sigmoid. Channels-last as lsd runs
    convolutions on a CPU: the sums' order decides the last bit, and an untrained model puts
    pixels that close to 0.5."""
    split = json.loads((runs / "split.json").read_text())
    out = []
    for entry in read_leaderboard(runs):
        model, _ = load_bundle(entry.bundle)
        model = model.eval().to(memory_format=torch.channels_last)
        probs = []
        for event_id in split["test"]:
            raw = read_stack(events / event_id / "stack.tif")[0]
            x = (raw - np.float32(l4s.MEAN)[:, None, None]) / np.float32(l4s.STD)[:, None, None]
            x = torch.from_numpy(x[None].astype(np.float32))
            with torch.no_grad():
                logit = model(x.contiguous(memory_format=torch.channels_last))
            probs.append(torch.sigmoid(logit)[0, 0].numpy())
        out.append(tuple(probs))
    return out


def _pct(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    eps = 1e-14
    p, r = tp / (tp + fp + eps), tp / (tp + fn + eps)
    return 100 * p, 100 * r, 100 * 2 * p * r / (p + r + eps)


def test_protocol_numbers_recomputed_by_hand(runs: Path, events: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["evaluate", str(runs), "--data", str(events), "--protocol",
                                       "landslide4sense", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    with (runs / "evaluation-landslide4sense" / CURVES_CSV).open() as f:
        rows = list(csv.DictReader(f))
    split = json.loads((runs / "split.json").read_text())
    labels = [read_label(events / i / "label.tif")[0] for i in split["test"]]
    probs = _by_hand(runs, events)
    entries = read_leaderboard(runs)
    for kind, k in (("model", 1), ("model", 2), ("ensemble", 2)):
        row = next(r for r in rows if r["kind"] == kind and r["rank_or_k"] == str(k))
        maps = probs[k - 1] if kind == "model" else [sum(p) / 2 for p in zip(*probs, strict=True)]
        tp = sum(int(((m > 0.5) & (y == 1)).sum()) for m, y in zip(maps, labels, strict=True))
        fp = sum(int(((m > 0.5) & (y == 0)).sum()) for m, y in zip(maps, labels, strict=True))
        fn = sum(int(((m <= 0.5) & (y == 1)).sum()) for m, y in zip(maps, labels, strict=True))
        assert (int(row["tp"]), int(row["fp"]), int(row["fn"])) == (tp, fp, fn), (kind, k)
        got = [float(row[c]) for c in ("precision_pct", "recall_pct", "f1_pct")]
        assert got == pytest.approx(_pct(tp, fp, fn), abs=1e-4)
        if kind == "model":
            assert row["name"] == entries[k - 1].run_id
    unet = next(r for r in rows if r["kind"] == "model" and r["arch"] == "Unet")
    assert (unet["table1_model"], unet["table1_f1_pct"]) == ("ResU-Net", "71.65")
    assert float(unet["f1_difference"]) == pytest.approx(float(unet["f1_pct"]) - 71.65, abs=1e-3)
    out = result.output
    assert "3 test patches, 2 models" in out and "| ResU-Net P 76.08 R 67.71 F1 71.65 | F1 " in out
    assert "| LinkNet P 66.76 R 67.02 F1 66.89" in out and "top-2 ensemble:" in out
    assert "without an lsd counterpart: PSPNet, ContextNet" in out
    report = (runs / "evaluation-landslide4sense" / "report.md").read_text()
    assert "| ResU-Net | 76.08 | 67.71 | 71.65 |" in report
    again = CliRunner().invoke(main, ["evaluate", str(runs), "--data", str(events),
                                      "--protocol", "landslide4sense"])  # fmt: skip
    assert again.exit_code != 0 and "already exists" in again.output
    other = CliRunner().invoke(main, ["evaluate", str(runs), "--data", str(events), "--protocol",
                                      "landslide4sense", "--threshold", "0.3"])  # fmt: skip
    assert other.exit_code != 0 and "--threshold goes with --protocol lsd" in other.output


def test_table1_anchors_csv_is_the_built_in_table(tmp_path: Path) -> None:
    built_in = read_table1(None)
    if ANCHORS.is_file():
        assert read_table1(ANCHORS) == built_in
    bad = tmp_path / "t.csv"
    bad.write_text("model,recall_pct,precision_pct,f1_pct\nU-Net,62.17,x,69.94\n")
    with pytest.raises(ValueError, match="row 2 lacks a number"):
        read_table1(bad)
