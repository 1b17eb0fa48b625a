"""The grid off the main process: worker processes (several runs per device) and a real local Ray
cluster (2 CPUs, small object store), on the generated events (tests/data/events). The cases
that start processes or a Ray cluster are marked slow (pytest -m slow).

Each executor must give the leaderboard the in-process executor gives with the same seed, survive
a worker killed mid-run (the run is retried and resumes from its checkpoint), isolate a failing
run, and share a RUNS folder with a second driver without training any run twice.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lsd.claims import CLAIM_FILE
from lsd.runs import FAILED_FILE
from lsd.training.bundle import load_bundle
from lsd.training.executor_pool import ProcessExecutor
from lsd.training.executor_ray import RayExecutor, placement
from lsd.training.executors import RunHooks
from lsd.training.grid import GridOptions, prepare_grid
from lsd.training.schedule import GridCall, run_grid
from tests.cli import invoke

LAYERS = "B2,B3,B4,B8,slope,elevation"
SMALL = dict(
    setting=LAYERS, archs=("Unet", "FPN"), losses=("Dice", "BCE"), lrs=(0.001,),
    encoder="mobilenet_v2", crop=64, batch_size=2, iters_per_epoch=2, epochs=3, seed=3,
    device="cpu",
)  # fmt: skip
CLI_SMALL = [
    "--setting", LAYERS, "--archs", "Unet,FPN", "--losses", "Dice,BCE", "--lrs", "0.001",
    "--encoder", "mobilenet_v2", "--crop", "64", "--batch-size", "2", "--iters-per-epoch", "2",
    "--epochs", "3", "--seed", "3", "--device", "cpu", "--quiet",
]  # fmt: skip
RUN_IDS = {"Unet-Dice-lr0.001", "Unet-BCE-lr0.001", "FPN-Dice-lr0.001", "FPN-BCE-lr0.001"}
COMPARED = ("rank", "run_id", "val_f1", "val_precision", "val_recall", "val_iou", "best_epoch",
            "epochs_run")  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def board(runs: Path) -> list[dict[str, str]]:
    with (runs / "leaderboard.csv").open(newline="") as f:
        return [{k: r[k] for k in COMPARED} for r in csv.DictReader(f)]


def epochs(run_dir: Path) -> list[str]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return [r["epoch"] for r in csv.DictReader(f)]


def same_weights(a: Path, b: Path) -> None:
    wa, _ = load_bundle(a / "bundle")
    wb, _ = load_bundle(b / "bundle")
    for (name, x), y in zip(wa.state_dict().items(), wb.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)


@pytest.fixture(scope="module")
def inprocess(gen_events: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the small grid in this process, one run after another."""
    out = tmp_path_factory.mktemp("inprocess") / "RUNS"
    run_grid(prepare_grid(gen_events, out, GridOptions(**SMALL)), progress=False)
    return out


@pytest.fixture(scope="module")
def ray_cluster():
    """One real local Ray cluster for the module: 2 CPUs, 100 MB object store, no dashboard."""
    import ray

    ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False,
             log_to_driver=False)  # fmt: skip
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def worker_pids(title: str) -> list[int]:
    """Processes whose command line starts with `title` (Ray names a worker after its task)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cmd.startswith(title):
            pids.append(int(entry.name))
    return pids


# --------------------------------------------------------------------------- worker processes


@pytest.mark.slow
def test_two_runs_per_device_in_worker_processes_match_inprocess(
    inprocess: Path, gen_events: Path, tmp_path: Path
):
    out = tmp_path / "RUNS"
    ex = ProcessExecutor(2, threads=1, poll_s=0.2)
    call = GridCall()
    run_grid(prepare_grid(gen_events, out, GridOptions(**SMALL)), progress=False, executor=ex,
             call=call)  # fmt: skip
    assert board(out) == board(inprocess)
    assert set(call.trained) == RUN_IDS and ex.restarts == 0
    for rid in RUN_IDS:
        same_weights(out / "runs" / rid, inprocess / "runs" / rid)
        assert not (out / "runs" / rid / CLAIM_FILE).exists()


# --------------------------------------------------------------------------- Ray


def test_placement_asks_for_gpu_shares_or_cpus():
    p = placement({"GPU": 4.0, "CPU": 64.0}, "auto", runs_per_gpu=4, cpus_per_run=1)
    assert (p.num_gpus, p.num_cpus, p.device, p.slots) == (0.25, 1.0, "cuda", 16)
    p = placement({"GPU": 1.0, "CPU": 2.0}, "cuda", runs_per_gpu=3, cpus_per_run=1)
    assert (p.num_gpus, p.slots) == (pytest.approx(1 / 3), 2)  # two CPUs feed at most two runs
    p = placement({"GPU": 2.0, "CPU": 8.0}, "cpu", runs_per_gpu=2, cpus_per_run=2)
    assert (p.num_gpus, p.num_cpus, p.device, p.threads, p.slots) == (0.0, 2.0, "cpu", 2, 4)
    p = placement({"CPU": 2.0}, "auto", runs_per_gpu=2, cpus_per_run=1)
    assert (p.num_gpus, p.device, p.slots) == (0.0, "cpu", 2)


@pytest.mark.slow
def test_ray_grid_matches_inprocess_and_survives_a_killed_worker(
    ray_cluster: str, inprocess: Path, gen_events: Path, tmp_path: Path
):
    out = tmp_path / "RUNS"
    victim, killed = "FPN-Dice-lr0.001", []

    def kill_at_epoch_1(run: str, epoch: int, row: dict) -> None:
        if run == victim and epoch == 1 and not killed:
            for pid in worker_pids(f"ray::lsd-train:{victim}"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    ex = RayExecutor(device="cpu", poll_s=0.1)
    call = GridCall()
    plan = prepare_grid(gen_events, out, GridOptions(**SMALL), device_on_workers=True)
    run_grid(plan, progress=False, executor=ex, on_epoch=kill_at_epoch_1, call=call)
    assert killed, "the victim's worker was not found running"
    assert (ex.placement.num_cpus, ex.placement.num_gpus, ex.placement.slots) == (1.0, 0.0, 2)
    assert board(out) == board(inprocess)
    assert set(call.trained) == RUN_IDS
    assert epochs(out / "runs" / victim) == ["1", "2", "3"]
    for rid in RUN_IDS:  # the retried run resumed to exactly the uninterrupted weights
        same_weights(out / "runs" / rid, inprocess / "runs" / rid)
        assert not (out / "runs" / rid / CLAIM_FILE).exists()


@pytest.mark.slow
def test_ray_run_without_its_data_folder_fails_alone(
    ray_cluster: str, gen_events: Path, tmp_path: Path
):
    plan = prepare_grid(gen_events, tmp_path / "RUNS", GridOptions(**{**SMALL, "epochs": 1}),
                        device_on_workers=True)  # fmt: skip
    tasks = plan.tasks(plan.configs())
    missing = tmp_path / "not-mounted"
    tasks[1] = replace(tasks[1], data=replace(tasks[1].data, data_dir=missing))
    done, failed = [], []
    RayExecutor(device="cpu").run(tasks, RunHooks(
        on_done=lambda t, d: done.append(t.run_id),
        on_failed=lambda t, msg, details: failed.append((t.run_id, msg)),
    ))  # fmt: skip
    assert sorted(done) == sorted(t.run_id for i, t in enumerate(tasks) if i != 1)
    [(rid, msg)] = failed
    assert rid == tasks[1].run_id
    assert str(missing) in msg and "data folder not found" in msg and "\n" not in msg


@pytest.mark.slow
def test_failed_runs_are_reported_together_and_retried_by_a_rerun(
    ray_cluster: str, gen_events: Path, tmp_path: Path
):
    import shutil

    from lsd.training.executors import RunsFailed

    data = tmp_path / "data"
    shutil.copytree(gen_events, data)
    opts = GridOptions(**{**SMALL, "epochs": 1})
    plan = prepare_grid(data, tmp_path / "RUNS", opts, device_on_workers=True)
    data.rename(tmp_path / "elsewhere")  # the workers no longer see the data folder
    with pytest.raises(RunsFailed) as err:
        run_grid(plan, progress=False, executor=RayExecutor(device="cpu"))
    assert str(err.value).startswith("4 of 4 run(s) failed (")
    assert str(data) in str(err.value) and "run the same command again" in str(err.value)
    for rid in RUN_IDS:
        run = tmp_path / "RUNS" / "runs" / rid
        assert "data folder not found" in (run / FAILED_FILE).read_text()
        assert not (run / CLAIM_FILE).exists()
    (tmp_path / "elsewhere").rename(data)
    call = GridCall()
    run_grid(plan, progress=False, executor=RayExecutor(device="cpu"), call=call)
    assert set(call.trained) == RUN_IDS
    assert not list((tmp_path / "RUNS" / "runs").glob(f"*/{FAILED_FILE}"))


@pytest.mark.slow
def test_second_driver_on_the_same_runs_folder_neither_duplicates_nor_loses(
    ray_cluster: str, gen_events: Path, tmp_path: Path
):
    out = tmp_path / "RUNS"
    lsd_exe = str(Path(sys.executable).parent / "lsd")
    # two CPUs per run: each driver trains one run at a time, in one worker process of its own
    cmd = [lsd_exe, "train", "--data", str(gen_events), "--out", str(out), *CLI_SMALL,
           "--executor", "ray", "--ray-address", ray_cluster, "--cpus-per-run", "2"]  # fmt: skip
    drivers = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    time.sleep(1.0)
    drivers.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    trained = []
    for d in drivers:
        _, err = d.communicate(timeout=600)  # generous: shared CI machines can be slow
        assert d.returncode == 0, err[-2000:]
        [line] = [x for x in err.splitlines() if x.startswith("trained here:")]
        trained.append({r for r in line.removeprefix("trained here:").strip().split(", ") if
                        r != "none"})  # fmt: skip
    assert trained[0] and trained[1], trained  # the second driver took a share
    assert not trained[0] & trained[1], trained
    assert trained[0] | trained[1] == RUN_IDS
    assert sorted(r["run_id"] for r in board(out)) == sorted(RUN_IDS)  # each once, none lost
    for rid in RUN_IDS:
        assert epochs(out / "runs" / rid) == ["1", "2", "3"]
        assert not (out / "runs" / rid / CLAIM_FILE).exists()
        assert not (out / "runs" / rid / FAILED_FILE).exists()


@pytest.mark.gpu
def test_two_runs_share_one_gpu_in_processes_and_on_ray(
    ray_cluster: str, gen_events: Path, tmp_path: Path
):
    """On a CUDA machine (pytest -m gpu): half a GPU per run, in worker processes and on Ray."""
    opts = GridOptions(**{**SMALL, "device": "cuda"})
    pool = ProcessExecutor(2, threads=1, poll_s=0.2)
    call = GridCall()
    run_grid(prepare_grid(gen_events, tmp_path / "pool", opts), progress=False, executor=pool,
             call=call)  # fmt: skip
    assert set(call.trained) == RUN_IDS and pool.restarts == 0
    ray_ex = RayExecutor(device="cuda", runs_per_gpu=2, poll_s=0.2)
    call = GridCall()
    plan = prepare_grid(gen_events, tmp_path / "ray", opts, device_on_workers=True)
    run_grid(plan, progress=False, executor=ray_ex, call=call)
    assert set(call.trained) == RUN_IDS
    assert ray_ex.placement.num_gpus == 0.5 and ray_ex.placement.device == "cuda"
    for rid in RUN_IDS:
        _, meta = load_bundle(tmp_path / "ray" / "runs" / rid / "bundle")
        assert meta.extra["precision"] in ("bf16", "fp16")  # trained under CUDA autocast


# --------------------------------------------------------------------------- mistakes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_executor_mistakes_are_one_line(gen_events: Path, tmp_path: Path, monkeypatch):
    base = ["train", "--data", gen_events, "--out", tmp_path / "RUNS", *CLI_SMALL]
    cases = {  # a value that is not a choice is a usage mistake (exit 2), as click has it
        "--executor nosuch": (["--executor", "nosuch"], "'nosuch' is not one of", 2),
        "--runs-per-gpu 0": (["--runs-per-gpu", "0"], "--runs-per-gpu must be a positive", 1),
        "address w/o ray": (["--ray-address", "auto"], "--ray-address goes with --executor ray", 1),
    }
    for name, (extra, expected, code) in cases.items():
        result = invoke(*base, *extra)
        assert result.exit_code == code, name
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (name, result.output)

    t0 = time.monotonic()
    dead = f"127.0.0.1:{free_port()}"
    result = invoke(*base, "--executor", "ray", "--ray-address", dead)
    assert result.exit_code == 1 and time.monotonic() - t0 < 30
    [line] = result.output.strip().splitlines()
    assert line.startswith("Error: --ray-address") and dead in line and "does not answer" in line

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    result = invoke(*base, "--executor", "ray")
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert "pip install 'lsd[ray]'" in line and line.startswith("Error: --executor")
    assert not (tmp_path / "RUNS" / "runs").exists()  # nothing trained by any of these


# --------------------------------------------------------------------------- prediction on Ray


@pytest.fixture(scope="module")
def mosaic(gen_events: Path, inprocess: Path, tmp_path_factory: pytest.TempPathFactory):
    """A 256 x 384 mosaic of the generated events (4 x 6 of them, 64 px each) with a hole of no
    data, and a 2-member ensemble of the grid trained above."""
    import numpy as np
    import rasterio

    from lsd.events import list_events
    from lsd.rasters import Grid, read_stack, write_stack
    from lsd.training.ensemble import make_ensemble

    root = tmp_path_factory.mktemp("mosaic")
    events = list_events(gen_events)
    parts = [read_stack(e.stack)[0] for e in events]
    names = list(read_stack(events[0].stack)[1])
    rows = [[parts[(r * 6 + c) % len(parts)] for c in range(6)] for r in range(4)]
    image = np.concatenate([np.concatenate(row, axis=2) for row in rows], axis=1)
    assert image.shape[1:] == (256, 384)
    image[:, 100:170, 20:90] = np.nan
    grid = Grid(image.shape[2], image.shape[1], rasterio.crs.CRS.from_epsg(32654),
                rasterio.Affine(10, 0, 500000, 0, -10, 4750000))  # fmt: skip
    write_stack(root / "stack.tif", image.astype(np.float32), names, grid)
    make_ensemble(inprocess, root / "ensemble", k=2, progress=False)
    return root


@pytest.mark.slow
def test_ray_prediction_in_blocks_is_the_single_process_map(ray_cluster: str, mosaic: Path,
                                                             tmp_path: Path):  # fmt: skip
    import json

    import numpy as np
    import rasterio

    args = ["predict", "--stack", mosaic / "stack.tif", "--model", mosaic / "ensemble",
            "--tile", "64", "--overlap", "16", "--device", "cpu", "--min-area-m2", "0"]  # fmt: skip
    assert invoke(*args, "--out", tmp_path / "one").exit_code == 0
    res = invoke(*args, "--out", tmp_path / "ray", "--executor", "ray", "--block-rows", "48")
    assert res.exit_code == 0, res.output
    run = json.loads((tmp_path / "ray" / "run.json").read_text())
    assert run["executor"] == "ray" and run["inference"]["blocks"] == 5
    for name in ("probability.tif", "disagreement.tif", "mask.tif"):
        with rasterio.open(tmp_path / "one" / name) as a:
            x = a.read(1)
        with rasterio.open(tmp_path / "ray" / name) as b:
            y = b.read(1)
        assert np.isnan(x).any() or name == "mask.tif"
        assert np.array_equal(x, y, equal_nan=True), name  # to the last bit, seams included
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes()
    one = json.loads((tmp_path / "one" / "run.json").read_text())
    assert run["polygons"] == one["polygons"] and run["landslide_pixels"] == one["landslide_pixels"]
