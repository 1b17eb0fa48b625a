"""Executors: who trains the runs of a grid, and where.

The grid plans its runs and hands each one, as a self-contained `RunTask`, to an executor; the
executor trains them and reports each finished run back, and the grid keeps the RUNS records
(leaderboard) up to date. A task carries everything a worker needs, by value or by path (the data
folder, split, layers, normalisation), so an executor in another process or on another machine
that sees the same folders can run it. `InProcessExecutor` is the default: one run after another,
in this process, on one device; with several runs per device it hands the runs to worker
processes (lsd.training.executor_pool), and `ray` spreads them over a Ray cluster
(lsd.training.executor_ray). A distributed executor is one new module plus one entry in
`EXECUTORS` (lsd.training.executor_registry, which imports the executors, so that they can import
this module); `dispatch` is the loop that such executors share.

An executor reports to one `RunHooks` object. Before starting a task it asks `on_start(task)`:
the grid answers False when another driver holds the run's claim (lsd.claims), and the executor
skips the task. Executors that isolate runs report a failed run with
`on_failed(task, message, details)` and go on with the others.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import socket
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lsd.errors import InputNotFound, UserError
from lsd.events import select_events
from lsd.runs import read_metrics
from lsd.training.data import load_events
from lsd.training.loop import RunData, train_run
from lsd.training.options import RunConfig

EpochHook = Callable[[str, int, dict[str, Any]], None]  # (run_id, epoch, metrics row)
DoneHook = Callable[["RunTask", dict[str, Any]], None]  # (task, done.json record)
StartHook = Callable[["RunTask"], bool]  # False: do not start this task (claimed elsewhere)
FailHook = Callable[["RunTask", str, str], None]  # (task, one-line message, traceback text)


@dataclass(frozen=True)
class RunHooks:
    """What an executor tells its caller: each run's start (may veto it), epochs, end, failure.

    One object instead of five callbacks, so that an executor passes them on in one piece; a
    hook left None is not called (without `on_failed` a failure is raised, without `on_epoch`
    nobody follows the epochs)."""

    on_done: DoneHook
    on_epoch: EpochHook | None = None
    on_start: StartHook | None = None
    on_failed: FailHook | None = None


class RunsFailed(UserError):
    """Some runs of a grid failed; the others finished and are on the leaderboard."""


@dataclass(frozen=True)
class DataRef:
    """The events a grid trains on, as paths and numbers: enough to load them anywhere."""

    data_dir: Path
    train: tuple[str, ...]
    val: tuple[str, ...]
    layers: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    setting: str
    split: tuple[tuple[str, tuple[str, ...]], ...]  # the whole split, recorded in each bundle
    pixel_m: float | None = None  # pixel size of the training events, recorded in each bundle
    conventions: str = ""  # JSON of the training events' conventions, recorded in each bundle

    def load(self) -> RunData:
        """Read and normalise the training and validation events (NaN -> 0 after normalising)."""

        where = f"the split of {self.data_dir}"
        layers, mean, std = list(self.layers), list(self.mean), list(self.std)
        train = select_events(self.data_dir, self.train, source=where)
        val = select_events(self.data_dir, self.val, source=where)
        return RunData(
            train=load_events(train, layers, mean, std),
            val=load_events(val, layers, mean, std),
            layers=layers, mean=mean, std=std, setting=self.setting,
            split={role: list(ids) for role, ids in self.split}, pixel_m=self.pixel_m,
            conventions=json.loads(self.conventions) if self.conventions else None,
        )  # fmt: skip

    def check_here(self) -> None:
        """On a worker: the data folder must be there, or the run fails naming it."""
        if not self.data_dir.is_dir():
            raise InputNotFound(
                f"{self.data_dir}: data folder not found on {socket.gethostname()} "
                "(every worker must see the data folder at this path)"
            )


@dataclass(frozen=True)
class RunTask:
    """One run of a grid: what to train, where its folder is, and the data it trains on."""

    cfg: RunConfig
    run_dir: Path
    data: DataRef
    device: str  # as resolved by the grid ("cpu", "cuda", "cuda:1")
    precision: str = "auto"  # lsd.training.options.PRECISIONS

    @property
    def run_id(self) -> str:
        return self.cfg.run_id


_WORKER_DATA: dict[DataRef, RunData] = {}


def train_task(task: RunTask, *, progress: bool = False) -> dict[str, Any]:
    """Train one task in this process (a worker's entry point); the events are loaded once per
    process and kept for its next tasks."""

    task.data.check_here()
    runs = task.run_dir.parent.parent
    if not runs.is_dir():
        raise InputNotFound(
            f"{runs}: RUNS folder not found on {socket.gethostname()} "
            "(every worker must see the RUNS folder at this path)"
        )
    if task.data not in _WORKER_DATA:
        _WORKER_DATA.clear()  # one grid's data at a time
        _WORKER_DATA[task.data] = task.data.load()
    return train_run(
        task.cfg, _WORKER_DATA[task.data], task.run_dir, device=task.device, progress=progress,
        precision=task.precision,
    )  # fmt: skip


class Executor(Protocol):
    def run(
        self,
        tasks: Sequence[RunTask],
        hooks: RunHooks,
        *,
        progress: bool = True,
    ) -> None:
        """Train every task (resuming its checkpoint where there is one); call `hooks.on_done`
        after each run's done.json is written. Tasks are independent and may finish in any order."""
        ...


class InProcessExecutor:
    """Runs the tasks one after another in this process; the data is loaded once for all."""

    name = "inprocess"

    def __init__(self) -> None:
        self._loaded: dict[DataRef, RunData] = {}

    def data_for(self, ref: DataRef) -> RunData:
        if ref not in self._loaded:
            self._loaded[ref] = ref.load()
        return self._loaded[ref]

    def run(
        self,
        tasks: Sequence[RunTask],
        hooks: RunHooks,
        *,
        progress: bool = True,
    ) -> None:
        """A failure stops the grid here (as it always did): in one process, the next run
        would meet the same problem."""

        on_epoch = hooks.on_epoch
        for task in tasks:
            if hooks.on_start is not None and not hooks.on_start(task):
                continue
            hook = None
            if on_epoch is not None:

                def hook(epoch: int, row: dict[str, Any], _id: str = task.run_id) -> None:
                    on_epoch(_id, epoch, row)

            done = train_run(
                task.cfg, self.data_for(task.data), task.run_dir, device=task.device,
                progress=progress, on_epoch=hook, precision=task.precision,
            )  # fmt: skip
            hooks.on_done(task, done)


# --------------------------------------------------------------------------- shared dispatch


def failure_text(exc: BaseException) -> tuple[str, str]:
    """(one line for the user, the traceback for failed.txt); a user error is its message."""
    if isinstance(exc, UserError):
        return exc.message, "".join(traceback.format_exception(exc))
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    line = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return line, "".join(traceback.format_exception(exc))


@dataclass
class Dispatch:
    """How an executor starts tasks and explains failures, for `dispatch`."""

    submit: Callable[[RunTask], cf.Future]
    slots: int  # tasks in flight at once
    explain: Callable[[BaseException], tuple[str, str]] = failure_text
    retry: Callable[[RunTask, BaseException], bool] = lambda task, exc: False
    poll_s: float = 2.0


def dispatch(
    tasks: Sequence[RunTask],
    how: Dispatch,
    hooks: RunHooks,
) -> None:
    """Keep up to `how.slots` tasks in flight, claiming each as it starts (so other drivers can
    take the rest), report each as it ends, and follow epochs through the runs' metrics.csv."""
    on_epoch = hooks.on_epoch
    queue = list(tasks)
    flying: dict[cf.Future, RunTask] = {}
    epochs: dict[str, int] = {}
    while queue or flying:
        while queue and len(flying) < how.slots:
            task = queue.pop(0)
            if hooks.on_start is None or hooks.on_start(task):
                flying[how.submit(task)] = task
        if not flying:
            break
        done, _ = cf.wait(flying, timeout=how.poll_s, return_when=cf.FIRST_COMPLETED)
        if on_epoch is not None:
            _follow_epochs(flying.values(), epochs, on_epoch)
        for fut in done:
            task = flying.pop(fut)
            try:
                record = fut.result()
            except Exception as exc:
                if how.retry(task, exc):
                    flying[how.submit(task)] = task
                    continue
                if hooks.on_failed is None:
                    raise
                hooks.on_failed(task, *how.explain(exc))
                continue
            if on_epoch is not None:
                _follow_epochs([task], epochs, on_epoch)
            hooks.on_done(task, record)


def _follow_epochs(tasks, seen: dict[str, int], on_epoch: EpochHook) -> None:

    for task in tasks:
        for row in read_metrics(task.run_dir):
            try:
                epoch = int(row["epoch"])
            except (KeyError, ValueError):
                continue
            if epoch > seen.get(task.run_id, 0):
                seen[task.run_id] = epoch
                on_epoch(task.run_id, epoch, dict(row))
