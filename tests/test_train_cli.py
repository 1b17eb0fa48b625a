"""`lsd train` end to end on the generated events (tests/data/events): grid, leaderboard,
bundles, resume after an interruption, damaged checkpoints and bundles, and every user mistake as
one line (the option checks called directly, one CLI case against a finished grid)."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from lsd.errors import UserError
from lsd.events import list_events
from lsd.pipeline.cmd_train import train as train_command
from lsd.pipeline.options import error_line
from lsd.rasters import read_stack, write_label, write_stack
from lsd.runs import CHECKPOINT_FILE
from lsd.training.bundle import load_bundle
from lsd.training.grid import GridOptions, check_options, prepare_grid
from lsd.training.schedule import run_grid
from tests.cli import invoke

LAYERS = "B2,B3,B4,B8,slope,elevation"
SMALL = [
    "--archs", "Unet,FPN", "--losses", "Dice,BCE", "--lrs", "0.001", "--encoder", "resnet18",
    "--crop", "64", "--batch-size", "2", "--iters-per-epoch", "2", "--epochs", "2",
    "--seed", "3", "--quiet",
]  # fmt: skip
RUN_IDS = ["Unet-Dice-lr0.001", "Unet-BCE-lr0.001", "FPN-Dice-lr0.001", "FPN-BCE-lr0.001"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def train_args(data: Path, out: Path, *extra: str) -> list[str | Path]:
    return ["train", "--setting", LAYERS, "--data", data, "--out", out, *SMALL, *extra]


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file below `folder` with its mtime and content hash."""
    return {
        str(p.relative_to(folder)): (
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(gen_events: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small grid, trained once through the CLI; tests that change it work on a copy."""
    out = tmp_path_factory.mktemp("train_cli") / "RUNS"
    result = invoke(*train_args(gen_events, out))
    assert result.exit_code == 0, result.output
    return out


def copy_runs(trained: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "RUNS"
    shutil.copytree(trained, dest)
    return dest


def test_grid_writes_ranked_leaderboard_and_loadable_bundles(trained: Path, gen_events: Path):
    board = read_csv(trained / "leaderboard.csv")
    assert [r["rank"] for r in board] == ["1", "2", "3", "4"]
    assert sorted(r["run_id"] for r in board) == sorted(RUN_IDS)
    f1 = [float(r["val_f1"]) for r in board]
    assert f1 == sorted(f1, reverse=True)
    assert list(board[0]) == [
        "rank", "run_id", "arch", "encoder", "loss", "lr", "val_f1", "val_precision",
        "val_recall", "val_iou", "best_epoch", "epochs_run", "seconds", "bundle",
    ]  # fmt: skip

    split = json.loads((trained / "split.json").read_text())
    grid = json.loads((trained / "grid.json").read_text())
    assert grid["layers"] == LAYERS.split(",")
    assert split["seed"] == 3 and split["train"] and split["val"]
    assert not set(split["train"]) & set(split["val"])
    # normalisation comes from the training events only: recompute it from their pixels
    events = {e.event_id: e for e in list_events(gen_events)}
    pixels = np.concatenate(
        [read_stack(events[i].stack, grid["layers"])[0].reshape(6, -1) for i in split["train"]],
        axis=1,
    )
    np.testing.assert_allclose(grid["mean"], np.nanmean(pixels, axis=1), rtol=1e-4)
    np.testing.assert_allclose(grid["std"], np.nanstd(pixels, axis=1), rtol=1e-4)

    for row in board:
        model, meta = load_bundle(trained / row["bundle"])
        assert meta.arch == row["arch"] and meta.loss == row["loss"] and meta.lr == 0.001
        assert meta.layers == grid["layers"]
        assert meta.mean == grid["mean"] and meta.std == grid["std"]
        assert meta.scores["val_f1"] == pytest.approx(float(row["val_f1"]))
        assert meta.extra["split"]["val"] == split["val"]
        assert meta.extra["crop"] == 64 and meta.extra["seed"] == 3
        metrics = read_csv(trained / "runs" / row["run_id"] / "metrics.csv")
        assert [m["epoch"] for m in metrics] == ["1", "2"]
        best = max(float(m["val_f1"]) for m in metrics)
        assert float(row["val_f1"]) == pytest.approx(best)
        assert not (trained / "runs" / row["run_id"] / CHECKPOINT_FILE).exists()
        assert (trained / "runs" / row["run_id"] / "done.json").exists()
        assert isinstance(model, torch.nn.Module)


def test_rerun_of_finished_grid_changes_nothing(trained: Path, tmp_path: Path, gen_events: Path):
    runs = copy_runs(trained, tmp_path)
    before = snapshot(runs / "runs")
    result = invoke(*train_args(gen_events, runs))
    assert result.exit_code == 0, result.output
    assert snapshot(runs / "runs") == before


def test_interrupted_run_resumes_from_its_checkpoint(
    trained: Path, tmp_path: Path, gen_events: Path
):
    runs = copy_runs(trained, tmp_path)
    victim = "FPN-Dice-lr0.001"
    shutil.rmtree(runs / "runs" / victim)

    def interrupt(run: str, epoch: int, row: dict) -> None:
        if run == victim and epoch == 1:
            raise KeyboardInterrupt

    opts = GridOptions(
        setting=LAYERS, archs=("Unet", "FPN"), losses=("Dice", "BCE"), lrs=(0.001,),
        encoder="resnet18", crop=64, batch_size=2, iters_per_epoch=2, epochs=2, seed=3,
        device="cpu",
    )  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        run_grid(prepare_grid(gen_events, runs, opts), progress=False, on_epoch=interrupt)
    run_dir = runs / "runs" / victim
    assert (run_dir / CHECKPOINT_FILE).exists()
    assert not (run_dir / "done.json").exists() and not (run_dir / "bundle").exists()
    epoch1 = read_csv(run_dir / "metrics.csv")
    assert [r["epoch"] for r in epoch1] == ["1"]

    others = {k: v for k, v in snapshot(runs / "runs").items() if not k.startswith(victim)}
    result = invoke(*train_args(gen_events, runs))
    assert result.exit_code == 0, result.output
    after = snapshot(runs / "runs")
    assert {k: v for k, v in after.items() if not k.startswith(victim)} == others

    rows = read_csv(run_dir / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert rows[0] == epoch1[0]  # epoch 1 was not trained again (its timing is kept)
    assert not (run_dir / CHECKPOINT_FILE).exists()
    # resuming lands exactly where an uninterrupted run lands (seeded sampler + RNG + Adam state)
    resumed, _ = load_bundle(run_dir / "bundle")
    straight, _ = load_bundle(trained / "runs" / victim / "bundle")
    for (name, a), b in zip(
        resumed.state_dict().items(), straight.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)
    uninterrupted = read_csv(trained / "runs" / victim / "metrics.csv")
    assert [r["val_f1"] for r in rows] == [r["val_f1"] for r in uninterrupted]
    assert len(read_csv(runs / "leaderboard.csv")) == 4


def test_corrupt_checkpoint_restarts_and_corrupt_bundle_is_redone(
    trained: Path, tmp_path: Path, gen_events: Path
):
    runs = copy_runs(trained, tmp_path)
    bad_ckpt = runs / "runs" / "Unet-BCE-lr0.001"
    (bad_ckpt / "done.json").unlink()
    shutil.rmtree(bad_ckpt / "bundle")
    (bad_ckpt / CHECKPOINT_FILE).write_bytes(b"this is not a torch checkpoint")
    bad_bundle = runs / "runs" / "FPN-BCE-lr0.001"
    (bad_bundle / "bundle" / "model.pt").write_bytes(b"garbage")
    untouched = runs / "runs" / "Unet-Dice-lr0.001"
    before = snapshot(untouched)

    result = invoke(*train_args(gen_events, runs))
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 2, result.stderr
    assert any("checkpoint" in w and str(bad_ckpt / CHECKPOINT_FILE) in w for w in warnings)
    assert any("FPN-BCE-lr0.001" in w and "damaged" in w for w in warnings)
    for run in (bad_ckpt, bad_bundle):
        load_bundle(run / "bundle")
        assert [r["epoch"] for r in read_csv(run / "metrics.csv")] == ["1", "2"]
        assert not (run / CHECKPOINT_FILE).exists()
    assert snapshot(untouched) == before
    assert len(read_csv(runs / "leaderboard.csv")) == 4


# --------------------------------------------------------------------------- user mistakes


@pytest.fixture(scope="module")
def small_data(gen_events: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four real events (enough for a 2/1/1 split) that the bad-input tests copy and damage."""
    dest = tmp_path_factory.mktemp("small_data") / "data"
    for ev in sorted(p for p in gen_events.iterdir() if p.is_dir())[:4]:
        shutil.copytree(ev, dest / ev.name)
    return dest


@pytest.fixture
def data(small_data: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "data"
    shutil.copytree(small_data, dest)
    return dest


def first_event(data: Path) -> Path:
    return sorted(p for p in data.iterdir() if p.is_dir())[0]


def assert_one_line_error(result, *names: str) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


# The checks that run before any file is read, called directly: each case costs microseconds.
# The CLI turns the `field` of the error into the flag the user typed (options.error_line).
BASE = GridOptions(
    setting=LAYERS, archs=("Unet", "FPN"), losses=("Dice", "BCE"), lrs=(0.001,),
    encoder="resnet18", crop=64, batch_size=2, iters_per_epoch=2, epochs=2, seed=3, device="cpu",
)  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field", "names"),
    [
        ({"archs": ("Unet", "Unetz")}, "archs", ["Unetz", "UnetPlusPlus"]),
        ({"losses": ("Dice", "Tversky")}, "losses", ["Tversky", "Lovasz"]),
        ({"encoder": "resnet999"}, "encoder", ["--encoder", "resnet999"]),
        ({"lrs": (0.01, -0.001)}, "lrs", ["--lrs", "-0.001"]),
        ({"lrs": (0.0,)}, "lrs", ["--lrs", "'0.0'"]),
        ({"lrs": ()}, "lrs", ["--lrs", "no learning rate"]),
        ({"epochs": 0}, "epochs", ["--epochs", "0"]),
        ({"batch_size": -2}, "batch_size", ["--batch-size", "-2"]),
        ({"iters_per_epoch": 0}, "iters_per_epoch", ["--iters-per-epoch"]),
        ({"patience": 0}, "patience", ["--patience"]),
        ({"crop": 0}, "crop", ["--crop"]),
        ({"crop": 100}, "crop", ["--crop 100", "32"]),
        ({"archs": ("PAN",), "crop": 64}, "crop", ["--crop 64", "PAN", "128"]),
        ({"seed": -1}, "seed", ["-1"]),
    ],
)
def test_option_checks_name_the_value_and_the_flag(
    change: dict[str, object], field: str, names: list[str]
):
    with pytest.raises(UserError) as caught:
        check_options(replace(BASE, **change))
    assert caught.value.field == field
    line = error_line(caught.value, train_command)
    for name in names:
        assert name in line, line


def test_an_unknown_validation_event_is_refused_before_anything_is_written(
    small_data: Path, tmp_path: Path
):
    out = tmp_path / "RUNS"
    with pytest.raises(UserError, match="no_such_event") as caught:
        prepare_grid(small_data, out, replace(BASE, val=["no_such_event"]))
    assert caught.value.field == "val"
    assert not out.exists()


@pytest.mark.parametrize(("lrs", "name"), [("0.01,fast", "'fast'"), ("-0.001", "'-0.001'"),
                                           ("0", "'0'")])  # fmt: skip
def test_learning_rates_are_parsed_into_one_line(tmp_path: Path, lrs: str, name: str):
    """--lrs is read by the CLI itself, before any option check: nothing is read or made."""
    out = tmp_path / "RUNS"
    result = invoke(*train_args(tmp_path / "no-data", out), "--lrs", lrs)
    assert name in assert_one_line_error(result, "--lrs")
    assert not out.exists()


def test_a_bad_option_leaves_a_trained_runs_folder_untouched(trained: Path, gen_events: Path):
    """One CLI case against a finished grid: the refusal comes before any file is touched."""
    before = snapshot(trained)
    result = invoke(*train_args(gen_events, trained), "--crop", "100")
    assert_one_line_error(result, "--crop 100", "32")
    assert snapshot(trained) == before


def test_bad_data_folders(tmp_path: Path, data: Path):
    out = tmp_path / "RUNS"
    assert_one_line_error(invoke(*train_args(tmp_path / "nowhere", out)), "nowhere", "not found")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(invoke(*train_args(tmp_path / "empty", out)), "empty", "no event")
    (tmp_path / "afile").write_text("x")
    assert_one_line_error(invoke(*train_args(tmp_path / "afile", out)), "afile", "not a folder")

    ev = first_event(data)
    (ev / "label.tif").rename(tmp_path / "label.tif")
    assert_one_line_error(invoke(*train_args(data, out)), ev.name, "label.tif")
    (tmp_path / "label.tif").rename(ev / "label.tif")

    with rasterio.open(ev / "label.tif") as src:
        grid_label = src.read(1)
    from lsd.rasters import Grid

    small = Grid(64, 64, None, rasterio.Affine(10, 0, 0, 0, -10, 0))
    write_label(ev / "label.tif", grid_label[:64, :64], small)
    assert_one_line_error(invoke(*train_args(data, out)), f"{ev.name}/label.tif", "differs")


def test_stack_problems(tmp_path: Path, data: Path):
    out = tmp_path / "RUNS"
    ev = first_event(data)
    stack, names, grid = read_stack(ev / "stack.tif")

    result = invoke(*train_args(data, out)[:2], "B2,B3,NDVI", *train_args(data, out)[3:])
    assert_one_line_error(result, "NDVI", ev.name)

    nan_stack = stack.copy()
    nan_stack[names.index("B8")] = np.nan
    write_stack(ev / "stack.tif", nan_stack, names, grid)
    assert_one_line_error(invoke(*train_args(data, out)), "B8", ev.name, "NaN")

    profile = {"driver": "GTiff", "width": grid.width, "height": grid.height,
               "count": len(names), "dtype": "float32", "transform": grid.transform}  # fmt: skip
    if grid.crs is not None:
        profile["crs"] = grid.crs
    with rasterio.open(ev / "stack.tif", "w", **profile) as dst:
        dst.write(stack)  # no band descriptions: layer names unknown
    assert_one_line_error(invoke(*train_args(data, out)), "stack.tif", "layer name")


def test_unwritable_output_and_mismatched_resume(trained: Path, tmp_path: Path, gen_events: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(invoke(*train_args(gen_events, blocker / "RUNS")), "RUNS", "written")

    runs = copy_runs(trained, tmp_path)
    before = snapshot(runs)
    args = train_args(gen_events, runs)
    other_layers = [*args[:2], "B2,B3,B4", *args[3:]]
    assert_one_line_error(invoke(*other_layers), "--setting", "layers", "new RUNS folder")
    split = json.loads((runs / "split.json").read_text())
    other_val = split["train"][0]
    assert_one_line_error(invoke(*args, "--val", other_val), "validation", other_val, "RUNS folder")
    assert_one_line_error(invoke(*args, "--encoder", "mobilenet_v2"), "--encoder", "RUNS folder")
    assert snapshot(runs) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on CPU-only machines")
def test_cuda_requested_without_gpu(tmp_path: Path, data: Path):
    assert_one_line_error(invoke(*train_args(data, tmp_path / "RUNS"), "--device", "cuda"), "CUDA")


def test_changed_epoch_limits_continue_or_are_refused(
    trained: Path, tmp_path: Path, gen_events: Path
):
    # finished runs that stopped at the old epoch limit cannot go on: refused, nothing changes
    runs = copy_runs(trained, tmp_path)
    before = snapshot(runs)
    line = assert_one_line_error(invoke(*train_args(gen_events, runs), "--epochs", "3"), "--epochs")
    assert "finished after 2 epoch(s)" in line and "new RUNS folder" in line
    assert snapshot(runs) == before

    # an unfinished run goes on to the new limit, and the records say so
    out = tmp_path / "one"
    opts = GridOptions(
        setting=LAYERS, archs=("FPN",), losses=("Dice",), lrs=(0.001,), encoder="resnet18",
        crop=64, batch_size=2, iters_per_epoch=2, epochs=2, seed=3, device="cpu",
    )  # fmt: skip

    def interrupt(run: str, epoch: int, row: dict) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_grid(prepare_grid(gen_events, out, opts), progress=False, on_epoch=interrupt)
    args = [a for a in train_args(gen_events, out, "--archs", "FPN", "--losses", "Dice")
            if a != "--quiet"]  # fmt: skip
    args[args.index("--epochs") + 1] = "3"
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    resumed = "0 finished run(s) skipped, 1 continued from their last epoch, 0 started"
    assert resumed in result.stderr
    # stderr is not a terminal here: one plain line per finished epoch and run, no bar codes
    assert "\r" not in result.stderr and "\x1b" not in result.stderr
    epochs = [ln for ln in result.stderr.splitlines() if ln.startswith("FPN-Dice-lr0.001: epoch")]
    assert [ln.split()[2] for ln in epochs] == ["2/3:", "3/3:"]
    assert "grid: 1/1 runs (FPN-Dice-lr0.001: val F1" in result.stderr
    run = out / "runs" / "FPN-Dice-lr0.001"
    assert json.loads((run / "done.json").read_text())["epochs_run"] == 3
    assert json.loads((out / "grid.json").read_text())["options"]["epochs"] == 3
    assert json.loads((run / "bundle" / "bundle.json").read_text())["extra"]["epochs"] == 3
    # going back to 2 epochs would leave a run that trained past the limit
    args[args.index("--epochs") + 1] = "2"
    assert_one_line_error(invoke(*args), "--epochs", "cannot be undone")


def test_a_folder_that_is_not_a_runs_folder_is_refused(tmp_path: Path, data: Path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    assert_one_line_error(invoke(*train_args(data, out)), "--out", "not a RUNS folder")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    # a failing call leaves no empty output folder behind
    assert_one_line_error(invoke(*train_args(data, tmp_path / "new"), "--setting", "nope"), "nope")
    assert not (tmp_path / "new").exists()
