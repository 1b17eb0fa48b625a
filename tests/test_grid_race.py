"""Two `lsd train` started together on one new RUNS folder with different options: grid.json (and
split.json) are created atomically and exclusively, so exactly one call records the folder and
the other is refused in one line naming the difference (or, with the same options, shares it).

The race is forced, not hoped for: the two calls are real processes (from a fork server that has
the training modules loaded, so they start in milliseconds and no thread of the test process is
forked) that both pass the folder check and then wait for each other at a barrier before
writing, every round. A second
test starts two real `lsd train` processes at once, as a user or a scheduler would.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from lsd.events import event_record, write_event
from lsd.rasters import Grid

LAYERS = ("a", "b", "c")
SMALL = ["--archs", "FPN", "--losses", "BCE", "--lrs", "0.001", "--encoder", "resnet18",
         "--crop", "32", "--batch-size", "2", "--iters-per-epoch", "1", "--epochs", "1",
         "--seed", "1", "--val", "1", "--test", "1", "--device", "cpu", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five 32 px events with a blob of landslide in each, made here."""
    root = tmp_path_factory.mktemp("race") / "data"
    rng = np.random.default_rng(0)
    grid = Grid(32, 32, rasterio.crs.CRS.from_epsg(32633), from_origin(500000, 7000000, 10, 10))
    for i in range(5):
        label = np.zeros((32, 32), np.uint8)
        label[8 + i : 16 + i, 10:20] = 1
        stack = rng.normal(0, 1, (3, 32, 32)).astype(np.float32) + label
        record = event_record(f"e{i}", layers=LAYERS, grid=grid, source={"kind": "test"})
        write_event(root / f"e{i}", record, grid=grid, stack=stack, label=label)
    return root


WARM = ["torch", "segmentation_models_pytorch", "rasterio", "lsd.training.grid",
        "lsd.training.data", "lsd.training.device", "lsd.training.losses",
        "lsd.training.models", "lsd.training.precision"]  # fmt: skip


def _prepare_now(data: Path, out: Path, setting: str):
    from lsd.training.grid import GridOptions, prepare_grid

    opts = GridOptions(setting=setting, archs=("FPN",), losses=("BCE",), lrs=(0.001,),
                       encoder="resnet18", crop=32, val=1, test=1, device="cpu")  # fmt: skip
    return prepare_grid(data, out, opts)


def _prepare(data: Path, out: Path, setting: str, barrier, results) -> None:
    """One grid call in a forked process; both wait at `barrier` after their checks."""
    import lsd.training.grid as grid_module
    from lsd.errors import UserError

    real = grid_module.compute_norm

    def after_the_checks(*args, **kwargs):  # runs once the folder was found new
        barrier.wait(timeout=60)
        return real(*args, **kwargs)

    grid_module.compute_norm = after_the_checks
    try:
        plan = _prepare_now(data, out, setting)
        results.put((setting, "ok", plan.layers))
    except UserError as exc:
        results.put((setting, "refused", str(exc)))
    except BaseException as exc:  # reported, so the test fails naming it instead of timing out
        results.put((setting, "error", repr(exc)))
        raise


@pytest.mark.slow
@pytest.mark.parametrize("same", [False, True], ids=["different", "same"])
def test_two_grid_calls_racing_on_a_new_folder(data: Path, tmp_path: Path, same: bool) -> None:
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(WARM)
    settings = ("a,b,c", "a,b,c") if same else ("a,b,c", "a,b")
    for round_ in range(8):
        out = tmp_path / f"R{round_}"
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_prepare, args=(data, out, s, barrier, results))
                 for s in settings]  # fmt: skip
        for p in procs:
            p.start()
        got = sorted(results.get(timeout=120) for _ in procs)
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        record = json.loads((out / "grid.json").read_text())
        if same:
            assert [g[1] for g in got] == ["ok", "ok"] and record["layers"] == list(LAYERS)
            continue
        assert sorted(g[1] for g in got) == ["ok", "refused"], got
        winner = next(g for g in got if g[1] == "ok")
        loser = next(g for g in got if g[1] == "refused")
        assert record["layers"] == winner[2]  # grid.json is the winner's, whole
        was, now = ("a, b, c", "a, b") if winner[0] == "a,b,c" else ("a, b", "a, b, c")
        assert loser[2] == (
            f"{out / 'grid.json'}: this RUNS folder was made with layers {was}, not {now}; use "
            "a new RUNS folder, or repeat the options this folder was made with"
        )
        assert not [p for p in out.iterdir() if p.name.endswith(".partial")]


@pytest.mark.slow
def test_two_lsd_train_started_together(data: Path, tmp_path: Path) -> None:
    """Real CLI processes: one trains, the other is refused in one line (whoever is first)."""
    out = tmp_path / "RUNS"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    entry = [sys.executable, "-c", "from lsd.pipeline.cli import main; main()"]
    procs = [subprocess.Popen([*entry, "train", "--data", str(data), "--out", str(out),
                               "--setting", s, *SMALL], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for s in ("a,b,c", "a,b")]  # fmt: skip
    done = [(p.wait(timeout=300), p.stdout.read()) for p in procs]
    codes = sorted(code for code, _ in done)
    assert codes == [0, 1], done
    refused = next(text for code, text in done if code == 1)
    errors = [ln for ln in refused.splitlines() if ln.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in refused, refused
    assert "this RUNS folder was made with layers" in errors[0]
    record = json.loads((out / "grid.json").read_text())
    trained = next(text for code, text in done if code == 0)
    assert f"layers {', '.join(record['layers'])}" in trained
