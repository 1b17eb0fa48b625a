"""Fault injection on the real CLI: signals, a file-size limit, corrupted files.

Every case checks the same three things afterwards: the rerun succeeds, nothing written earlier
is lost, and no temporary file is left behind.

- SIGINT, SIGTERM and SIGKILL go to real `lsd` subprocesses at points of train, ensemble,
  evaluate, predict, import and download, chosen by the plain progress line each prints (stderr
  is not a terminal) or by the size of a download's part. SIGTERM (`timeout`, Slurm, Kubernetes)
  must be handled as Ctrl-C is: one line, temporaries removed, exit 143, the rerun resumes.
- RLIMIT_FSIZE is set in this process around a command (Python ignores SIGXFSZ, so writes past
  the limit fail with EFBIG, as GDAL, SQLite and torch see a full disk).
- Corrupted files of each kind the commands read.

The data is the tiny grid on the generated events (tests/fixtures_ensemble.py). The cases that
send signals to subprocesses are marked slow (pytest -m slow); the others run by default.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from lsd.pipeline.cli import main
from lsd.pipeline.cmd_import import GO_ON_LINE
from lsd.pipeline.cmd_train import RESUME_LINE
from lsd.pipeline.options import DEFAULT_INTERRUPT
from lsd.rasters import Grid, read_stack, write_stack
from tests.cli import lsd

TRAIN = [
    "--setting", "B2,B3,B4,B8", "--archs", "FPN", "--losses", "BCE,Dice", "--lrs", "0.001",
    "--encoder", "resnet18", "--crop", "64", "--batch-size", "2", "--iters-per-epoch", "2",
    "--epochs", "2", "--seed", "1",
]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def signalled(
    args: list[object],
    when: str,
    sig: int,
    timeout: float = 240,
    env: dict | None = None,
    ready: Callable[[], bool] | None = None,
) -> tuple[int, str]:
    """Run `lsd args` as a subprocess and send `sig` once a line of its output contains `when`
    (or, with `ready`, once `ready()` is true, checked every 0.05 s)."""
    script = Path(sys.executable).with_name("lsd")
    entry = [sys.executable, "-c", "from lsd.pipeline.cli import main; main()"]
    cmd = [str(script)] if script.exists() else entry
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           **(env or {})}  # fmt: skip
    # a shell's background jobs start with SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: give the child the default disposition, as a terminal's Ctrl-C finds it
    proc = subprocess.Popen(
        cmd + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    lines, sent = [], threading.Event()

    def watch() -> None:
        while proc.poll() is None and not sent.is_set():
            if ready():
                proc.send_signal(sig)
                sent.set()
            time.sleep(0.05)

    if ready is not None:
        threading.Thread(target=watch, daemon=True).start()
    try:
        for line in proc.stdout:
            lines.append(line)
            if ready is None and not sent.is_set() and when in line:
                proc.send_signal(sig)
                sent.set()
        proc.wait()
    finally:
        watchdog.cancel()
    text = "".join(lines)
    assert sent.is_set(), f"never saw {when!r}:\n{text}"
    return proc.returncode, text


def terminated(code: int, text: str, line: str) -> None:
    """SIGTERM's outcome: exit 143 and one last line saying what a rerun does, no traceback."""
    assert code == 143, text
    assert text.strip().splitlines()[-1] == f"Terminated (SIGTERM): {line}", text
    assert "Traceback" not in text, text


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def temporaries(folder: Path) -> list[Path]:
    """lsd's hidden temporaries anywhere below `folder` (the output markers are not ones)."""
    return [p for p in folder.rglob(".*") if p.name.endswith((".partial", ".replaced"))]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def one_error(text: str) -> str:
    errors = [line for line in text.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "Traceback" not in text, text
    return errors[0]


@pytest.fixture(scope="module")
def world(tiny_runs, tmp_path_factory) -> dict[str, Path]:
    """A private copy of the tiny grid, its ensemble, an old map, and a 384 px georeferenced
    stack mosaicked from the generated events (large enough for predict to be stopped midway)."""
    root = tmp_path_factory.mktemp("faults")
    runs, data = root / "runs", root / "data"
    shutil.copytree(tiny_runs.runs, runs)
    shutil.copytree(tiny_runs.data, data)
    grid = json.loads((runs / "grid.json").read_text())
    grid["options"]["data"] = str(data)
    (runs / "grid.json").write_text(json.dumps(grid))
    assert lsd("ensemble", runs, "--k", "2", "--out", root / "ens")[0] == 0
    events = sorted(p for p in data.iterdir() if p.is_dir())
    tiles = [read_stack(e / "stack.tif", tiny_runs.layers)[0] for e in events]
    n = 384 // tiles[0].shape[-1]  # n x n events, cycling through them
    rows = [[tiles[(r * n + i) % len(tiles)] for i in range(n)] for r in range(n)]
    mosaic = np.block([[[t[c] for t in row] for row in rows]
                       for c in range(len(tiny_runs.layers))])  # fmt: skip
    big = root / "big" / "stack.tif"
    write_stack(big, mosaic, tiny_runs.layers,
                Grid(384, 384, rasterio.crs.CRS.from_epsg(32645),
                     rasterio.Affine(10, 0, 300000, 0, -10, 3000000)))  # fmt: skip
    code, text = lsd("predict", "--stack", big, "--model", root / "ens", "--out", root / "map")
    assert code == 0, text
    return {"root": root, "runs": runs, "data": data, "ens": root / "ens", "big": big,
            "map": root / "map", "l4s": tiny_runs.data}  # fmt: skip


# --------------------------------------------------------------------------- signals


@pytest.mark.slow
def test_predict_interrupted_or_killed_keeps_the_old_map(world) -> None:
    root, old = world["root"], snapshot(world["map"])
    args = ["predict", "--stack", world["big"], "--model", world["ens"], "--out", world["map"],
            "--tile", 128, "--overlap", 16, "--overwrite"]  # fmt: skip
    code, text = signalled(args, "predict: ", signal.SIGINT)
    assert code == 130 and text.strip().splitlines()[-1].startswith("Interrupted: "), text
    assert snapshot(world["map"]) == old and not temporaries(root)
    code, text = signalled(args, "predict: ", signal.SIGTERM)
    terminated(code, text, DEFAULT_INTERRUPT)
    assert snapshot(world["map"]) == old and not temporaries(root)
    code, text = signalled(args, "predict: ", signal.SIGKILL)
    assert code == -signal.SIGKILL and snapshot(world["map"]) == old
    assert temporaries(root), "a killed predict leaves its hidden partial folder"
    code, text = lsd(*args)  # the rerun replaces the map and clears the leftover
    assert code == 0, text
    assert not temporaries(root) and snapshot(world["map"]) != old


@pytest.mark.slow
def test_ensemble_and_evaluate_stopped_while_scoring(world) -> None:
    root, runs = world["root"], world["runs"]
    before = snapshot(runs)
    code, text = signalled(["ensemble", runs, "--out", root / "ens_auto"], "validation: 1/",
                           signal.SIGKILL)  # fmt: skip
    assert code == -signal.SIGKILL and not (root / "ens_auto").exists()
    code, text = signalled(["evaluate", runs, "--data", world["data"], "--out", root / "ev"],
                           "test events: 1/", signal.SIGINT)  # fmt: skip
    assert code == 130 and "Interrupted: " in text.strip().splitlines()[-1], text
    assert not (root / "ev").exists() and not temporaries(root) and snapshot(runs) == before
    code, text = lsd("ensemble", runs, "--out", root / "ens_auto")
    assert code == 0 and json.loads((root / "ens_auto" / "manifest.json").read_text())["k"]


@pytest.mark.slow
def test_train_interrupted_then_killed_resumes(world, tmp_path: Path) -> None:
    out = tmp_path / "R"
    args = ["train", "--data", world["data"], "--out", out, *TRAIN]
    code, text = signalled(args, "epoch 1/2", signal.SIGINT)
    assert code == 130, text
    assert text.strip().splitlines()[-1].startswith("Interrupted: rerun the same command to resume")
    assert list(out.glob("runs/*/checkpoint.pt"))
    code, text = signalled(args, "grid: 1/2", signal.SIGKILL)
    assert code == -signal.SIGKILL and "1 continued from their last epoch" in text, text
    finished = snapshot(out / "runs" / sorted(p.name for p in (out / "runs").iterdir())[0])
    code, text = lsd(*args)
    assert code == 0, text
    assert "1 finished run(s) skipped" in text and "best: " in text
    assert len((out / "leaderboard.csv").read_text().strip().splitlines()) == 3
    assert not temporaries(out)
    first = sorted(p.name for p in (out / "runs").iterdir())[0]
    assert snapshot(out / "runs" / first) == finished  # the finished run was not touched


@pytest.mark.slow
def test_train_terminated_resumes(world, tmp_path: Path) -> None:
    """`timeout`, Slurm and Kubernetes send SIGTERM: the same line and rerun as Ctrl-C."""
    out = tmp_path / "R"
    args = ["train", "--data", world["data"], "--out", out, *TRAIN]
    code, text = signalled(args, "epoch 1/2", signal.SIGTERM)
    terminated(code, text, RESUME_LINE)
    assert list(out.glob("runs/*/checkpoint.pt")) and not temporaries(out)
    assert not list(out.glob("runs/*/claim.json"))  # released, so a rerun need not wait
    code, text = lsd(*args)
    assert code == 0 and "continued from their last epoch" in text, text
    assert len((out / "leaderboard.csv").read_text().strip().splitlines()) == 3


@pytest.mark.slow
def test_train_on_worker_processes_terminated(world, tmp_path: Path) -> None:
    """SIGTERM to the driver alone (as `timeout` sends it): its workers stop too, cleanly."""
    out = tmp_path / "R"
    args = ["train", "--data", world["data"], "--out", out, *TRAIN, "--runs-per-gpu", "2",
            "--epochs", "4"]  # fmt: skip
    # the workers' epochs are not printed; their first checkpoint says training is under way
    code, text = signalled(args, "", signal.SIGTERM,
                           ready=lambda: bool(list(out.glob("runs/*/checkpoint.pt"))))  # fmt: skip
    terminated(code, text, RESUME_LINE)
    assert "grid: 2/2" not in text, text
    after = snapshot(out)
    time.sleep(3)  # a worker still training would write metrics or checkpoints now
    assert snapshot(out) == after and not temporaries(out)
    assert not list(out.glob("runs/*/claim.json")) and not list(out.glob("runs/*/failed.txt"))
    code, text = lsd(*args)
    assert code == 0, text
    assert len((out / "leaderboard.csv").read_text().strip().splitlines()) == 3


@pytest.mark.slow
def test_import_killed_and_interrupted_resumes(world, l4s_generated: Path, tmp_path: Path) -> None:
    dest = tmp_path / "imported"
    args = ["import", "landslide4sense", l4s_generated, dest]
    code, text = signalled(args, "5/21 events", signal.SIGKILL)
    assert code == -signal.SIGKILL
    done = {p.name: (p / "event.json").read_bytes() for p in dest.iterdir() if
            (p / "event.json").exists()}  # fmt: skip
    code, text = signalled(args, "7/21 events", signal.SIGINT)
    assert code == 130 and "rerun the same command to go on" in text, text
    assert not temporaries(dest)
    code, text = signalled(args, "12/21 events", signal.SIGTERM)
    terminated(code, text, GO_ON_LINE)
    assert not temporaries(dest)
    assert not [p for p in dest.iterdir() if p.is_dir() and not (p / "event.json").exists()]
    code, text = lsd(*args)
    assert code == 0 and "21 event folder(s)" in text, text
    assert all((dest / k / "event.json").read_bytes() == v for k, v in done.items())
    assert len([p for p in dest.iterdir() if (p / "event.json").exists()]) == 21
    assert not temporaries(dest)


@pytest.mark.slow
def test_download_terminated_keeps_its_part_and_resumes(tmp_path: Path) -> None:
    """SIGTERM midway through a download from the local Zenodo stand-in (served slowly): the
    part that arrived stays for the rerun, which asks only for the rest (HTTP Range)."""
    from lsd.pipeline.cmd_download import GO_ON_LINE as DOWNLOAD_LINE
    from tests.paper_fixtures import write_paper_dataset, zip_folder
    from tests.zenodo_server import zenodo_stand_in

    ds = write_paper_dataset(tmp_path / "made", size=(64, 64), train_val=[1, 2, 3, 4, 8])
    archive = zip_folder(ds, tmp_path / "global_dataset.zip")
    to = tmp_path / "to"
    part = to / ".downloads" / "global_dataset.zip.part"
    args = ["download", "paper", "--data", "--to", to, "--no-progress"]
    with zenodo_stand_in(tmp_path / "zenodo") as zenodo:
        zenodo.publish(archive)
        zenodo.slow_down(archive.name, chunk=8192, delay_s=0.05)
        code, text = signalled(
            args,
            "",
            signal.SIGTERM,
            env={"LSD_ZENODO_URL": zenodo.url},
            ready=lambda: part.exists() and part.stat().st_size >= 32768,
        )
        terminated(code, text, DOWNLOAD_LINE)
        have = part.stat().st_size
        assert 32768 <= have < archive.stat().st_size
        assert sorted(p.name for p in (to / ".downloads").iterdir()) == [part.name]  # no tmp
        assert not temporaries(to) and not (to / "global_dataset").exists()
        zenodo.slow_down(archive.name, chunk=1 << 20, delay_s=0)
        got = CliRunner().invoke(main, [str(a) for a in args], env={"LSD_ZENODO_URL": zenodo.url})
        assert got.exit_code == 0, got.output
        assert ("/files/global_dataset.zip", f"bytes={have}-") in zenodo.ranges
    assert (to / "global_dataset" / "test").is_dir() and not (to / ".downloads").exists()


# --------------------------------------------------------------------------- a file-size limit


def test_full_disk_while_writing_is_one_line_everywhere(world, l4s_generated: Path,
                                                        tmp_path: Path) -> None:  # fmt: skip
    root, old_map = world["root"], snapshot(world["map"])
    predict = ["predict", "--stack", world["big"], "--model", world["ens"], "--out",
               world["map"], "--overwrite"]  # fmt: skip
    cases = [
        (predict, 300_000, f"{world['map']}: cannot write (File too large"),
        (predict, 32_000, "output folder cannot be written (File too large)"),  # up front
        (["ensemble", world["runs"], "--k", "2", "--out", tmp_path / "e"], 300_000,
         f"{tmp_path / 'e'}: cannot write (File too large"),
        (["import", "landslide4sense", l4s_generated, tmp_path / "d"], 100_000,
         "cannot write (File too large"),
        (["train", "--data", world["data"], "--out", tmp_path / "R", *TRAIN], 2_000_000,
         "cannot write (File too large"),
    ]  # fmt: skip
    for args, limit, message in cases:
        with file_size_limit(limit):
            code, text = lsd(*args)
        assert code == 1 and message in one_error(text), (args[0], text)
    assert snapshot(world["map"]) == old_map
    assert not (tmp_path / "e").exists() and not (tmp_path / "d").exists()
    assert not temporaries(root) and not temporaries(tmp_path)
    # the reruns, with room to write, succeed
    assert lsd("import", "landslide4sense", l4s_generated, tmp_path / "d")[0] == 0
    assert lsd("ensemble", world["runs"], "--k", "2", "--out", tmp_path / "e")[0] == 0


# --------------------------------------------------------------------------- corrupted files


def test_corrupted_files_are_one_line_and_the_repaired_rerun_succeeds(
    world, tmp_path: Path
) -> None:
    runs, data = tmp_path / "runs", tmp_path / "data"
    shutil.copytree(world["runs"], runs)
    shutil.copytree(world["data"], data)
    event = sorted(json.loads((runs / "split.json").read_text())["test"])[0]
    train_args = ["train", "--data", data, "--out", tmp_path / "R", *TRAIN, "--archs", "FPN"]
    cases = [
        (data / event / "stack.tif", ["predict", "--stack", data / event / "stack.tif",
                                      "--model", world["ens"], "--out", tmp_path / "m"]),
        (data / event / "label.tif", train_args),
        (data / event / "event.json", train_args),
        (runs / "split.json", ["evaluate", runs, "--data", data, "--out", tmp_path / "ev"]),
        (runs / "grid.json", ["ensemble", runs, "--out", tmp_path / "e"]),
        (world["ens"] / "manifest.json", ["predict", "--stack", world["big"], "--model",
                                          world["ens"], "--out", tmp_path / "m"]),
    ]  # fmt: skip
    for path, args in cases:
        good = path.read_bytes()
        path.write_bytes(good[: len(good) // 2])
        try:
            code, text = lsd(*args)
        finally:
            path.write_bytes(good)
        assert code == 1 and str(path.name) in one_error(text), (path, text)
        assert not temporaries(tmp_path), path
    code, text = lsd("predict", "--stack", data / event / "stack.tif", "--model", world["ens"],
                     "--out", tmp_path / "m")  # fmt: skip
    assert code == 0, text
    # a damaged marker marks nothing: the map is no longer lsd's to replace
    (tmp_path / "m" / ".lsd-output.json").write_text("{")
    code, text = lsd("predict", "--stack", data / event / "stack.tif", "--model", world["ens"],
                     "--out", tmp_path / "m", "--overwrite")  # fmt: skip
    assert code == 1 and "no lsd marker" in one_error(text)
    assert (tmp_path / "m" / "run.json").exists()
