"""Executors: who trains the runs of a grid, and where.

The grid plans its runs and hands each one, as a self-contained `RunTask`, to an executor; the
executor trains them and reports each finished run back, and the grid keeps the RUNS records
(leaderboard) up to date. A task carries everything a worker needs, by value or by path (the data
folder, split, layers, normalisation), so an executor in another process or on another machine
that sees the same folders can run it. `InProcessExecutor` is the default: one run after another,
in this process, on one device. A distributed executor is one new module plus one entry in
`EXECUTORS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lsd.errors import InvalidValue
from lsd.training.loop import RunConfig, RunData

EpochHook = Callable[[str, int, dict[str, Any]], None]  # (run_id, epoch, metrics row)
DoneHook = Callable[["RunTask", dict[str, Any]], None]  # (task, done.json record)


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

    def load(self) -> RunData:
        """Read and normalise the training and validation events (NaN -> 0 after normalising)."""
        from lsd.events import select_events
        from lsd.training.data import load_events

        where = f"the split of {self.data_dir}"
        layers, mean, std = list(self.layers), list(self.mean), list(self.std)
        train = select_events(self.data_dir, self.train, source=where)
        val = select_events(self.data_dir, self.val, source=where)
        return RunData(
            train=load_events(train, layers, mean, std),
            val=load_events(val, layers, mean, std),
            layers=layers, mean=mean, std=std, setting=self.setting,
            split={role: list(ids) for role, ids in self.split}, pixel_m=self.pixel_m,
        )  # fmt: skip


@dataclass(frozen=True)
class RunTask:
    """One run of a grid: what to train, where its folder is, and the data it trains on."""

    cfg: RunConfig
    run_dir: Path
    data: DataRef
    device: str  # as resolved by the grid ("cpu", "cuda", "cuda:1")

    @property
    def run_id(self) -> str:
        return self.cfg.run_id


class Executor(Protocol):
    def run(
        self,
        tasks: Sequence[RunTask],
        *,
        on_done: DoneHook,
        on_epoch: EpochHook | None = None,
        progress: bool = True,
    ) -> None:
        """Train every task (resuming its checkpoint where there is one); call `on_done` after
        each run's done.json is written. Tasks are independent and may finish in any order."""
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
        *,
        on_done: DoneHook,
        on_epoch: EpochHook | None = None,
        progress: bool = True,
    ) -> None:
        from lsd.training.loop import train_run

        for task in tasks:
            hook = None
            if on_epoch is not None:

                def hook(epoch: int, row: dict[str, Any], _id: str = task.run_id) -> None:
                    on_epoch(_id, epoch, row)

            done = train_run(
                task.cfg, self.data_for(task.data), task.run_dir, device=task.device,
                progress=progress, on_epoch=hook,
            )  # fmt: skip
            on_done(task, done)


EXECUTORS: dict[str, Callable[[], Executor]] = {"inprocess": InProcessExecutor}


def make_executor(name: str) -> Executor:
    try:
        return EXECUTORS[name]()
    except KeyError:
        known = ", ".join(EXECUTORS)
        raise InvalidValue(
            f"unknown executor '{name}'; choose from {known}", field="executor"
        ) from None
