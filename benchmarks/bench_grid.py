"""The grid in-process vs on a local Ray cluster (and, on a GPU, 1 vs 2 vs 4 runs per GPU).

A 4-run grid (2 architectures x 2 losses) on the real Landslide4Sense patches is trained once in
this process and once on a local Ray cluster started here. For each run the driver notes when it
started it and when it learnt it had finished; the run's own training + validation time is in
its done.json, so overhead per run = (finished - started) - seconds trained: model building,
saving the bundle and, on Ray, scheduling, worker start and loading the events in the worker.
The cluster's start-up is reported apart (once per `lsd train`).

With --device cuda it also trains the grid with 1, 2 and 4 runs per GPU (worker processes, or
fractional GPUs on Ray) and reports samples/s per GPU and the GPU memory in use at the peak.

    python benchmarks/bench_grid.py                                  # CPU, about 5 min on 2 cores
    python benchmarks/bench_grid.py --device cuda --runs-per-gpu 1 2 4 --iters-per-epoch 200

Prints a table and writes JSON (benchmarks/results/grid.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import torch

from lsd.pipeline.sources import import_landslide4sense
from lsd.training.executors import InProcessExecutor, RunHooks
from lsd.training.grid import GridOptions, prepare_grid

REPO = Path(__file__).resolve().parents[1]


class GpuMemory:
    """Peak memory in use on the GPU (all processes), sampled twice a second."""

    def __init__(self) -> None:
        self.peak = 0
        self.stop = threading.Event()
        self.base = self._used()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    @staticmethod
    def _used() -> int:
        free, total = torch.cuda.mem_get_info()
        return total - free

    def _watch(self) -> None:
        while not self.stop.wait(0.5):
            self.peak = max(self.peak, self._used())

    def close(self) -> float:
        self.stop.set()
        self.thread.join()
        return (max(self.peak, self._used()) - self.base) / 2**20


def timed_grid(plan, executor) -> dict:
    """Train every run of the plan with `executor`; per-run wall time and trained time."""
    started: dict[str, float] = {}
    rows: dict[str, dict] = {}

    def on_start(task) -> bool:
        started[task.run_id] = time.perf_counter()
        return True

    def on_done(task, done) -> None:
        wall = time.perf_counter() - started[task.run_id]
        rows[task.run_id] = {"wall_s": round(wall, 3), "trained_s": done["seconds"],
                             "overhead_s": round(wall - done["seconds"], 3),
                             "val_f1": done["val_f1"], "epochs": done["epochs_run"]}  # fmt: skip

    t0 = time.perf_counter()
    executor.run(
        plan.tasks(plan.configs()), RunHooks(on_done=on_done, on_start=on_start), progress=False
    )
    wall = time.perf_counter() - t0
    n = len(rows)
    return {
        "wall_s": round(wall, 2), "runs": rows,
        "mean_overhead_per_run_s": round(sum(r["overhead_s"] for r in rows.values()) / n, 3),
        "samples": sum(r["epochs"] for r in rows.values()) * plan.options.iters_per_epoch
        * plan.options.batch_size,
    }  # fmt: skip


def options(args, device: str) -> GridOptions:
    return GridOptions(
        setting="B2,B3,B4,B8,B11,B12,slope,elevation", archs=tuple(args.archs.split(",")),
        losses=tuple(args.losses.split(",")), lrs=(0.001,), encoder=args.encoder,
        crop=args.crop, batch_size=args.batch_size, iters_per_epoch=args.iters_per_epoch,
        epochs=args.epochs, patience=args.epochs, seed=0, device=device,
    )  # fmt: skip


def cpu_comparison(args, data: Path, tmp: Path) -> dict:
    import ray

    from lsd.training.executor_ray import RayExecutor

    torch.set_num_threads(args.threads)
    plan = prepare_grid(data, tmp / "inprocess", options(args, "cpu"))
    out = {"inprocess": timed_grid(plan, InProcessExecutor())}
    t0 = time.perf_counter()
    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
    start_s = time.perf_counter() - t0
    try:
        plan = prepare_grid(data, tmp / "ray", options(args, "cpu"), device_on_workers=True)
        out["ray"] = timed_grid(plan, RayExecutor(device="cpu", poll_s=0.2))
    finally:
        ray.shutdown()
    out["ray"]["cluster_start_s"] = round(start_s, 2)
    out["ray_overhead_per_run_s"] = round(
        out["ray"]["mean_overhead_per_run_s"] - out["inprocess"]["mean_overhead_per_run_s"], 3
    )
    return out


def gpu_comparison(args, data: Path, tmp: Path) -> dict:
    from lsd.training.executor_pool import ProcessExecutor

    gpus = torch.cuda.device_count()
    out = {}
    for r in args.runs_per_gpu:
        plan = prepare_grid(data, tmp / f"gpu-{r}", options(args, "cuda"))
        executor = InProcessExecutor() if r == 1 else ProcessExecutor(r)
        mem = GpuMemory()
        res = timed_grid(plan, executor)
        res["peak_gpu_mib"] = round(mem.close(), 1)
        res["samples_per_s_per_gpu"] = round(res["samples"] / res["wall_s"] / gpus, 2)
        out[f"{r}_per_gpu"] = res
        print(f"{r} run(s) per GPU: {res['wall_s']} s, {res['samples_per_s_per_gpu']} samples/s "
              f"per GPU, peak {res['peak_gpu_mib']} MiB")  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared/data/landslide4sense-21")
    ap.add_argument("--archs", default="Unet,FPN")
    ap.add_argument("--losses", default="Dice,BCE")
    ap.add_argument("--encoder", default="resnet18")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--iters-per-epoch", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="torch threads of the in-process run")  # fmt: skip
    ap.add_argument("--ray-cpus", type=int, default=os.cpu_count() or 1,
                    help="CPUs of the local Ray cluster (one per run)")  # fmt: skip
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--runs-per-gpu", type=int, nargs="*", default=[1, 2, 4])
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/grid.json")
    args = ap.parse_args()
    report: dict = {"options": vars(args) | {"data": str(args.data), "out": str(args.out)},
                    "host": {"cpus": os.cpu_count(), "machine": platform.machine()}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        import_landslide4sense(args.data, tmp / "data", progress=False)
        if args.device == "cuda":
            report["gpu"] = gpu_comparison(args, tmp / "data", tmp)
        else:
            report["cpu"] = cpu_comparison(args, tmp / "data", tmp)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if "cpu" in report:
        c = report["cpu"]
        for name in ("inprocess", "ray"):
            r = c[name]
            print(f"{name:10s} wall {r['wall_s']:7.1f} s for {len(r['runs'])} runs; overhead per "
                  f"run {r['mean_overhead_per_run_s']:.2f} s")  # fmt: skip
        print(
            f"Ray: cluster start {c['ray']['cluster_start_s']} s once; "
            f"{c['ray_overhead_per_run_s']:.2f} s more overhead per run than in-process"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
