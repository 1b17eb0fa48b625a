"""Several runs per device on one machine, in worker processes (no cluster needed).

A small model leaves most of a large GPU idle; `runs_per_gpu` = N trains N runs at once on each
device, each in its own process (one CUDA context each, so one run's crash or out-of-memory error
cannot take the others down). Processes are started with `spawn` (CUDA cannot be forked) and
keep the loaded events between runs. On a machine with several GPUs and device "cuda", the
workers are spread over all of them; on the CPU, the cores are shared out between the workers.

A worker that dies (killed, out of memory) breaks Python's process pool; the pool is started
again and the unfinished runs resume from their checkpoints, up to `max_restarts` times.

SIGTERM (lsd.interrupts) stops a worker as Ctrl-C does: a worker training a run raises
Terminated there, so the run's temporaries are removed and its checkpoint is kept; an idle worker
just exits. A driver stopped by SIGTERM (`timeout` signals it alone) passes it on to its workers
and waits for them, so no run goes on training after the command has ended.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import signal
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import Any

import torch

from lsd.interrupts import TERMINATED_EXIT, Terminated
from lsd.training.executors import (
    Dispatch,
    RunHooks,
    RunTask,
    dispatch,
    failure_text,
    train_task,
)

_DEVICE = ""  # this worker's device when the pool spreads workers over GPUs
_BUSY = False  # this worker is training a run


def worker_devices(device: str, workers_per_device: int) -> list[str]:
    """One entry per worker process: the device it trains on."""

    if device == "cuda" and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        return [f"cuda:{g}" for g in range(torch.cuda.device_count())] * workers_per_device
    return [device] * workers_per_device


def _init(devices: Any, threads: int) -> None:
    """Worker start: take a device slot and a share of the CPU cores."""

    global _DEVICE
    _DEVICE = devices.get()
    torch.set_num_threads(threads)
    signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: object) -> None:
    """In a worker: stop the run being trained as Ctrl-C would; an idle worker exits quietly.
    Further SIGTERMs are ignored while the run cleans up (the driver waits for it)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if _BUSY:
        raise Terminated(f"signal {signum}")
    raise SystemExit(TERMINATED_EXIT)


def _train_in_worker(task: RunTask) -> dict[str, Any]:

    global _BUSY
    _BUSY = True
    try:
        return train_task(replace(task, device=_DEVICE or task.device))
    finally:
        _BUSY = False


def _stop_workers(pool: cf.ProcessPoolExecutor) -> None:
    """SIGTERM to each live worker of `pool` (the executor keeps them in `_processes`)."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        if proc.is_alive():
            proc.terminate()


class ProcessExecutor:
    """`runs_per_gpu` worker processes per device, fed one run at a time."""

    name = "processes"

    def __init__(
        self,
        runs_per_gpu: int,
        max_restarts: int = 2,
        poll_s: float = 2.0,
        threads: int | None = None,
    ) -> None:
        self.runs_per_gpu, self.max_restarts, self.poll_s = runs_per_gpu, max_restarts, poll_s
        self.threads = threads  # torch threads per worker; None: the cores shared out
        self.restarts = 0

    def run(
        self,
        tasks: Sequence[RunTask],
        hooks: RunHooks,
        *,
        progress: bool = True,
    ) -> None:
        """Run the tasks on a pool of spawned workers, one slot per device share; a pool whose
        worker died is replaced and its runs resumed. One function, long, because submit,
        restart and retry share the pool's generation count."""
        if not tasks:
            return
        devices = worker_devices(tasks[0].device, self.runs_per_gpu)
        threads = self.threads or max(1, (os.cpu_count() or 1) // len(devices))
        ctx = mp.get_context("spawn")
        pool: list[cf.ProcessPoolExecutor] = []
        started_in: dict[str, int] = {}  # run id -> the pool generation it was submitted to

        def start_pool() -> cf.ProcessPoolExecutor:
            slots = ctx.Queue()
            for d in devices:
                slots.put(d)
            pool.append(cf.ProcessPoolExecutor(
                len(devices), mp_context=ctx, initializer=_init, initargs=(slots, threads),
            ))  # fmt: skip
            return pool[-1]

        def restart() -> None:
            pool[-1].shutdown(wait=False, cancel_futures=True)
            self.restarts += 1
            start_pool()

        def submit(task: RunTask) -> cf.Future:
            if not pool:
                start_pool()
            try:
                fut = pool[-1].submit(_train_in_worker, task)
            except BrokenProcessPool:  # a worker died since the last submission
                if self.restarts >= self.max_restarts:
                    raise
                restart()
                fut = pool[-1].submit(_train_in_worker, task)
            started_in[task.run_id] = len(pool)
            return fut

        def retry(task: RunTask, exc: BaseException) -> bool:
            if not isinstance(exc, BrokenProcessPool) or self.restarts >= self.max_restarts:
                return False
            if started_in.get(task.run_id) == len(pool):  # first casualty of this pool
                restart()
            return True

        def explain(exc: BaseException) -> tuple[str, str]:
            if isinstance(exc, BrokenProcessPool):
                return "its worker process died (killed, or out of memory)", repr(exc)
            return failure_text(exc)

        how = Dispatch(submit=submit, slots=len(devices), explain=explain, retry=retry,
                       poll_s=self.poll_s)  # fmt: skip
        try:
            dispatch(tasks, how, hooks)
        except Terminated:
            if pool:
                _stop_workers(pool[-1])  # `timeout` and some schedulers signal the driver alone
            raise
        finally:
            if pool:
                pool[-1].shutdown(wait=True, cancel_futures=True)

    def describe(self) -> str:
        return f"{self.runs_per_gpu} worker processes per device"
