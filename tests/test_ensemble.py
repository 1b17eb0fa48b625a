"""`lsd ensemble` and training/ensemble.py on a real tiny grid trained on the generated events."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lsd.bundles import ModelFiles, open_models
from lsd.errors import UserError
from lsd.events import read_event
from lsd.rasters import read_label, read_stack
from lsd.training.bundle import load_bundle, load_members
from lsd.training.inference import predict_array
from lsd.training.metrics import Counts, confusion
from lsd.training.models import forward_whole
from tests.cli import lsd


def ensemble_probability(files: ModelFiles, image: np.ndarray) -> np.ndarray:
    """The ensemble's landslide probability: the mean of its members' sigmoid outputs."""
    members = load_members(files, range(len(files.folders)))
    return predict_array(members, image).mean(axis=0)


def leaderboard_order(runs: Path) -> list[str]:
    with (runs / "leaderboard.csv").open() as f:
        rows = list(csv.DictReader(f))
    return [r["run_id"] for r in sorted(rows, key=lambda r: -float(r["val_f1"]))]


def hand_probability(bundle: Path, image: np.ndarray) -> np.ndarray:
    """One member's probability computed without training.inference (an independent path)."""
    model, meta = load_bundle(bundle)
    mean = torch.tensor(meta.mean).view(-1, 1, 1)
    std = torch.tensor(meta.std).view(-1, 1, 1)
    x = torch.nan_to_num((torch.from_numpy(image) - mean) / std, nan=0.0)[None]
    with torch.inference_mode():
        return torch.sigmoid(forward_whole(model, x))[0, 0].numpy()


@pytest.fixture(scope="module")
def auto_ensemble(tiny_runs, tmp_path_factory) -> tuple[Path, str]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ens") / "auto"
    code, text = lsd("ensemble", tiny_runs.runs, "--out", out, "--device", "cpu")
    assert code == 0, text
    return out, text


def test_auto_manifest_and_members(tiny_runs, auto_ensemble):
    out, text = auto_ensemble
    manifest = json.loads((out / "manifest.json").read_text())
    order = leaderboard_order(tiny_runs.runs)
    k = manifest["k"]
    assert manifest["format"] == "lsd-ensemble/1"
    assert manifest["threshold"] == 0.5
    assert manifest["layers"] == list(tiny_runs.layers)
    assert [m["name"] for m in manifest["members"]] == order[:k]
    for m in manifest["members"]:
        assert m["path"] == f"members/{m['name']}"
        assert (out / m["path"] / "model.pt").stat().st_size > 100_000
        assert (out / m["path"] / "bundle.json").exists()
    assert sorted(p.name for p in (out / "members").iterdir()) == sorted(order[:k])
    sel = manifest["k_selection"]
    assert sel["mode"] == "auto" and sel["k"] == k
    assert sel["val_events"] == tiny_runs.split["val"]
    assert [p["k"] for p in sel["curve"]] == [1, 2, 3, 4]
    assert f"K={k} members" in text and "<- chosen" in text
    # no temporary folders left beside the output
    assert [p.name for p in out.parent.iterdir()] == ["auto"]


def test_auto_k_is_argmax_of_independent_val_curve(tiny_runs, auto_ensemble):
    out, _ = auto_ensemble
    manifest = json.loads((out / "manifest.json").read_text())
    order = leaderboard_order(tiny_runs.runs)
    val = [read_event(tiny_runs.data / e) for e in tiny_runs.split["val"]]
    images = [read_stack(e.stack, tiny_runs.layers)[0] for e in val]
    labels = [read_label(e.label)[0] for e in val]
    probs = [
        [hand_probability(tiny_runs.runs / "runs" / r / "bundle", img) for img in images]
        for r in order
    ]
    curve = []
    for k in range(1, len(order) + 1):
        total = Counts()
        for j, lab in enumerate(labels):
            mean = np.mean([probs[m][j] for m in range(k)], axis=0)
            total = total + confusion(mean >= 0.5, lab)
        curve.append(total.f1)
    got = [p["val_f1"] for p in manifest["k_selection"]["curve"]]
    np.testing.assert_allclose(got, curve, atol=1e-3)
    best = max(curve)
    assert manifest["k"] == next(i + 1 for i, f in enumerate(curve) if f == best)
    # K=1 on the validation events is exactly the leaderboard's best val F1
    with (tiny_runs.runs / "leaderboard.csv").open() as f:
        top = max(float(r["val_f1"]) for r in csv.DictReader(f))
    assert got[0] == pytest.approx(top, abs=1e-3)


def test_copy_elsewhere_loads_and_predicts_the_same(tiny_runs, auto_ensemble, tmp_path):
    out, _ = auto_ensemble
    image = read_stack(tiny_runs.data / tiny_runs.split["test"][0] / "stack.tif")[0]
    before = ensemble_probability(open_models(out), image)
    moved = tmp_path / "elsewhere" / "my-ensemble"
    shutil.copytree(out, moved)
    hidden = out.with_name("hidden")
    out.rename(hidden)  # the original is gone while the copy is used
    try:
        ens = open_models(moved)
        after = ensemble_probability(ens, image)
    finally:
        hidden.rename(out)
    assert len(ens.folders) == ens.manifest["k"] and ens.threshold == 0.5
    assert ens.layers == tiny_runs.layers
    np.testing.assert_array_equal(before, after)


def test_ensemble_probability_is_mean_of_members(tiny_runs, auto_ensemble):
    out, _ = auto_ensemble
    ens = open_models(out)
    image = read_stack(tiny_runs.data / tiny_runs.split["test"][1] / "stack.tif")[0]
    got = ensemble_probability(ens, image)
    folders = [out / m["path"] for m in ens.manifest["members"]]
    want = np.mean([hand_probability(f, image) for f in folders], axis=0)
    assert got.shape == image.shape[1:]
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert 0.0 < got.min() < got.max() < 1.0


def test_fixed_k_and_k_too_large(tiny_runs, tmp_path):
    code, text = lsd("ensemble", tiny_runs.runs, "--k", "3", "--out", tmp_path / "e3")
    assert code == 0, text
    manifest = json.loads((tmp_path / "e3" / "manifest.json").read_text())
    assert manifest["k"] == 3 and manifest["k_selection"]["mode"] == "fixed"
    assert [m["name"] for m in manifest["members"]] == leaderboard_order(tiny_runs.runs)[:3]

    code, text = lsd("ensemble", tiny_runs.runs, "--k", "9", "--out", tmp_path / "e9")
    assert code == 1
    assert text.strip().count("\n") == 0 and text.startswith("Error: --k 9 is more than the 4")
    assert "leaderboard.csv" in text
    assert not (tmp_path / "e9").exists()


def test_existing_out_refused_unless_overwrite(tiny_runs, tmp_path):
    out = tmp_path / "e1"
    assert lsd("ensemble", tiny_runs.runs, "--k", "1", "--out", out)[0] == 0
    (out / "keep.txt").write_text("mine")
    code, text = lsd("ensemble", tiny_runs.runs, "--k", "2", "--out", out)
    assert code == 1 and "already exists" in text and str(out) in text
    assert (out / "keep.txt").read_text() == "mine"  # untouched
    code, text = lsd("ensemble", tiny_runs.runs, "--k", "2", "--out", out, "--overwrite")
    assert code == 1 and "holds keep.txt (not written by lsd)" in text  # the user's file
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    code, text = lsd("ensemble", tiny_runs.runs, "--k", "2", "--out", out, "--overwrite")
    assert code == 0, text
    assert json.loads((out / "manifest.json").read_text())["k"] == 2


def _copy_runs(tiny_runs, tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    shutil.copytree(tiny_runs.runs, runs)
    return runs


def test_damaged_run_bundle_named(tiny_runs, tmp_path):
    runs = _copy_runs(tiny_runs, tmp_path)
    victim = runs / "runs" / leaderboard_order(runs)[1] / "bundle" / "model.pt"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    code, text = lsd("ensemble", runs, "--out", tmp_path / "ens", "--data", tiny_runs.data)
    errors = [line for line in text.splitlines() if line.startswith("Error")]
    assert code == 1 and len(errors) == 1 and "Traceback" not in text
    assert str(victim.resolve()) in errors[0] and "checksum" in errors[0]
    assert not (tmp_path / "ens").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ens")]


def test_bad_leaderboards(tiny_runs, tmp_path):
    runs = _copy_runs(tiny_runs, tmp_path)
    board = runs / "leaderboard.csv"
    text = board.read_text()
    board.unlink()
    code, out = lsd("ensemble", runs, "--k", "1", "--out", tmp_path / "e")
    assert code == 1 and str(board) in out and "no leaderboard" in out
    header = text.splitlines()[0]
    unfinished = [
        ",".join(r.split(",")[:6] + [""] + r.split(",")[7:]) for r in text.splitlines()[1:]
    ]
    board.write_text("\n".join([header, *unfinished]) + "\n")
    code, out = lsd("ensemble", runs, "--k", "1", "--out", tmp_path / "e")
    assert code == 1 and str(board) in out and "no finished run" in out
    assert not (tmp_path / "e").exists()


def test_damaged_ensemble_folder_named(auto_ensemble, tmp_path):
    out, _ = auto_ensemble
    copy = tmp_path / "ens"
    shutil.copytree(out, copy)
    member = copy / json.loads((copy / "manifest.json").read_text())["members"][0]["path"]

    weights = member / "model.pt"
    weights.write_bytes(weights.read_bytes()[:1000])  # a partial copy
    with pytest.raises(UserError, match=re.escape(str(weights))):
        open_models(copy)
    weights.unlink()
    with pytest.raises(UserError, match=re.escape(f"{weights}: model weights missing")):
        open_models(copy)

    meta = member / "bundle.json"
    meta.write_text(meta.read_text().replace('"lr"', '"lr" ', 1))
    with pytest.raises(UserError, match=re.escape(f"{meta}: does not match the manifest")):
        open_models(copy)

    (copy / "manifest.json").unlink()
    with pytest.raises(UserError, match=re.escape(f"{copy / 'manifest.json'}: missing")):
        open_models(copy)
