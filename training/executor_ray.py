"""The grid (and large-area prediction) on a Ray cluster: each run is one Ray task.

Ray (https://docs.ray.io) already does what a grid of independent runs needs across GPUs and
machines: scheduling by resources (whole or fractional GPUs, CPUs), retrying a task whose worker
died, and starting a local cluster when there is none. So lsd does not keep a queue of its own:
each run becomes a task that asks for 1/`runs_per_gpu` of a GPU (or `cpus_per_run` CPUs where the
cluster has no GPU) and calls the same `train_run` as the in-process executor, on the same run
folder, so resuming is the same too. The driver (the `lsd train` process) claims each run before
submitting it, keeps the claims fresh, and writes the leaderboard as tasks finish (lsd.runs
remains the only writer of RUNS files; workers write their run folders through it as well).

Every worker must see the data folder and the RUNS folder at the same paths as the driver (a
shared file system); a worker that does not fails its runs with one line naming the path.
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch

from lsd.errors import DeviceUnavailable, InvalidValue, UserError
from lsd.formats import opened
from lsd.rasters import RowReader
from lsd.ray_cluster import check_answers, connect, import_ray
from lsd.training.bundle import load_members
from lsd.training.executors import (
    Dispatch,
    RunHooks,
    RunTask,
    dispatch,
    failure_text,
    train_task,
)
from lsd.training.inference import block_rows, member_groups, predict_mean_std, row_blocks

DEFAULT_RETRIES = 3  # times Ray re-runs a task whose worker died; the retry resumes the run


@dataclass(frozen=True)
class Placement:
    """What each task asks Ray for, and how many run at once."""

    num_cpus: float
    num_gpus: float
    device: str  # on the worker: "cuda" (Ray sets CUDA_VISIBLE_DEVICES) or "cpu"
    threads: int
    slots: int


def placement(
    resources: dict[str, float], device: str, runs_per_gpu: int, cpus_per_run: int
) -> Placement:
    """GPU tasks where the cluster has GPUs and the device allows them, CPU tasks otherwise."""
    gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 0))
    if device.startswith("cuda:"):
        raise InvalidValue(
            f"device {device}: on Ray each run is given its GPU; use cuda or auto", field="device"
        )
    if device == "cuda" and gpus == 0:
        raise DeviceUnavailable("device cuda: the Ray cluster has no GPU", field="device")
    if device in ("auto", "cuda") and gpus > 0:
        slots = int(gpus * runs_per_gpu + 1e-9)
        if cpus >= 1:
            slots = min(slots, int(cpus))
        return Placement(1.0, 1.0 / runs_per_gpu, "cuda", 1, max(1, slots))
    if device not in ("auto", "cpu", "cuda"):
        raise InvalidValue(f"'{device}' is not a device for Ray (use auto, cpu or cuda)",
                           field="device")  # fmt: skip
    slots = int(cpus // cpus_per_run) if cpus else 1
    return Placement(float(cpus_per_run), 0.0, "cpu", cpus_per_run, max(1, slots))


def _train_remote(task: RunTask, threads: int) -> dict[str, Any]:
    """A Ray worker trains one run (the task's device is already the worker's)."""

    torch.set_num_threads(threads)
    return train_task(task)


def explain(exc: BaseException) -> tuple[str, str]:
    """One line and the details for a task that failed on Ray."""
    ray = import_ray()
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, UserError):
            return cause.message, str(exc)
        line, _ = failure_text(cause) if isinstance(cause, BaseException) else ("", "")
        return line or str(exc).splitlines()[0], str(exc)
    if isinstance(exc, ray.exceptions.RayError):
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        return f"{type(exc).__name__}: {first}", str(exc)
    return failure_text(exc)


class RayExecutor:
    """Runs the tasks as Ray tasks: up to the cluster's capacity at once, claimed one by one as
    they are submitted, so a second driver on the same RUNS folder trains the others."""

    name = "ray"

    def __init__(
        self,
        runs_per_gpu: int = 1,
        address: str | None = None,
        device: str = "auto",
        cpus_per_run: int = 1,
        max_retries: int = DEFAULT_RETRIES,
        poll_s: float = 2.0,
    ) -> None:
        if not isinstance(cpus_per_run, int) or cpus_per_run < 1:
            raise InvalidValue(
                f"cpus per run must be a positive whole number, got {cpus_per_run}",
                field="cpus_per_run",
            )
        import_ray()  # says how to install it before anything else happens
        placement({"CPU": 1.0}, device if device != "cuda" else "auto", runs_per_gpu, cpus_per_run)
        if address:
            check_answers(address)  # a dead address fails now, in seconds
        self.runs_per_gpu, self.address, self.device = runs_per_gpu, address, device
        self.cpus_per_run, self.max_retries, self.poll_s = cpus_per_run, max_retries, poll_s
        self.placement: Placement | None = None

    def run(
        self,
        tasks: Sequence[RunTask],
        hooks: RunHooks,
        *,
        progress: bool = True,
    ) -> None:
        with connect(self.address) as ray:
            where = self.placement = placement(
                ray.cluster_resources(), self.device, self.runs_per_gpu, self.cpus_per_run
            )
            remote = ray.remote(_train_remote)
            asks = {"num_cpus": where.num_cpus, "num_gpus": where.num_gpus,
                    "max_retries": self.max_retries, "retry_exceptions": False}  # fmt: skip

            def submit(task: RunTask):
                task = replace(task, device=where.device)
                named = remote.options(name=f"lsd-train:{task.run_id}", **asks)
                return named.remote(task, where.threads).future()

            how = Dispatch(submit=submit, slots=where.slots, explain=explain, poll_s=self.poll_s)
            dispatch(tasks, how, hooks)

    def describe(self) -> str:
        p = self.placement
        if p is None:
            return "Ray"
        share = f"{p.num_gpus:g} GPU" if p.num_gpus else f"{p.num_cpus:g} CPU"
        return f"Ray ({share} per run, up to {p.slots} at once)"


# --------------------------------------------------------------------------- large-area prediction

BLOCK_BYTES = 64 * 2**20  # mean + std of one block, float32: what a worker returns at a time


@dataclass(frozen=True)
class BlockJob:
    """Everything a worker needs to predict a block of rows of one stack (paths by value: the
    stack and the ensemble must be readable at the same paths on every worker)."""

    model: Any  # lsd.bundles.ModelFiles, checked once by the driver
    stack: Any  # Path
    indexes: tuple[int, ...]  # the members' layers as 1-based bands of the stack
    height: int
    width: int
    tiles: Any  # TileOptions
    forward: Any  # ForwardOptions
    member_budget: float  # bytes of weights a CPU worker holds at once
    rows_per_block: int | None = None  # None: about BLOCK_BYTES of output per block

    def blocks(self) -> list[tuple[int, int]]:

        rows = self.rows_per_block or max(1, BLOCK_BYTES // (8 * self.width))
        return row_blocks(self.height, self.tiles, rows)


def predict_block(job: BlockJob, k0: int, k1: int, device: str, threads: int) -> tuple:
    """On a worker: mean and std of the rows that rows k0..k1-1 of tiles finish, with the
    values a whole-stack pass gives them. Memory: one strip, one block, one group of members."""

    torch.set_num_threads(threads)
    r0, r1 = block_rows(job.height, job.tiles, k0, k1)
    mean = np.empty((r1 - r0, job.width), dtype=np.float32)
    std = np.empty_like(mean)

    def keep(row: int, m: np.ndarray, s: np.ndarray) -> None:
        mean[row - r0 : row - r0 + len(m)] = m
        std[row - r0 : row - r0 + len(s)] = s

    budget = float("inf") if device.startswith("cuda") else job.member_budget
    stats: dict[str, Any] = {}
    with (
        rasterio.Env(GDAL_CACHEMAX=64),
        opened(job.stack) as src,
        tempfile.TemporaryDirectory(prefix="lsd-block-") as scratch,
    ):
        read = RowReader(src, job.indexes)
        predict_mean_std(
            lambda members: load_members(job.model, members, device),
            member_groups(job.model.weight_bytes(), budget), read, job.height, job.width, keep,
            scratch=Path(scratch), tiles=job.tiles, device=device, stats=stats,
            forward=job.forward, tile_rows=(k0, k1),
        )  # fmt: skip
    stats["read_s"] = read.seconds
    stats["host"] = socket.gethostname()
    return r0, mean, std, stats


def predict_on_ray(
    job: BlockJob,
    emit: Any,
    *,
    address: str | None = None,
    device: str = "auto",
    cpus_per_block: int = 1,
    stats: dict[str, Any] | None = None,
) -> None:
    """Predict every block on the cluster and hand each to `emit(row0, mean, std)` as it comes
    back (in any order; the map writers write windows). At most as many blocks are in flight as
    the cluster runs at once, so the driver holds at most that many blocks."""
    with connect(address) as ray:
        where = placement(ray.cluster_resources(), device, 1, cpus_per_block)
        remote = ray.remote(predict_block).options(
            num_cpus=where.num_cpus, num_gpus=where.num_gpus, max_retries=DEFAULT_RETRIES,
            name="lsd-predict-block",
        )  # fmt: skip
        shared = ray.put(job)
        queue, flying, per_block = list(job.blocks()), [], []
        while queue or flying:
            while queue and len(flying) < where.slots:
                k0, k1 = queue.pop(0)
                flying.append(remote.remote(shared, k0, k1, where.device, where.threads))
            ready, flying = ray.wait(flying, num_returns=1)
            try:
                r0, mean, std, st = ray.get(ready[0])
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                raise cause if isinstance(cause, UserError) else exc from None
            emit(r0, mean, std)
            per_block.append(st)
            del mean, std
    if stats is not None:
        _merge_block_stats(stats, per_block, where)


def _merge_block_stats(stats: dict[str, Any], blocks: list[dict[str, Any]], where) -> None:
    first = blocks[0]
    stats.update({k: first[k] for k in ("batch_size", "tile_shape", "member_groups") if k in first})
    stats["device"] = where.device
    stats["executor"] = "ray"
    stats["blocks"] = len(blocks)
    stats["hosts"] = sorted({b["host"] for b in blocks})
    stats["tiles"] = sum(b["tiles"] for b in blocks)
    stats["tiles_skipped_all_nan"] = sum(b["tiles_skipped_all_nan"] for b in blocks)
    stats["forward_s"] = round(sum(b["forward_s"] for b in blocks), 4)
    stats["read_s"] = sum(b["read_s"] for b in blocks)
