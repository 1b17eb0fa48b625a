"""The executors by name: `make_executor` for `lsd train --executor` and `EXECUTORS` for the names.

The registry lives apart from lsd.training.executors (the protocol, the in-process executor and
the shared dispatch loop) because it imports every executor, and the executors import that
module: one direction, no cycle. A new executor is one module plus one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lsd.errors import InvalidValue
from lsd.training.executor_pool import ProcessExecutor
from lsd.training.executor_ray import RayExecutor
from lsd.training.executors import Executor, InProcessExecutor


def _local(runs_per_gpu: int = 1, **_: Any) -> Executor:
    """This machine: one process, or worker processes when several runs share a device."""
    if runs_per_gpu == 1:
        return InProcessExecutor()
    return ProcessExecutor(runs_per_gpu)


def _ray(**options: Any) -> Executor:
    return RayExecutor(**options)


EXECUTORS: dict[str, Callable[..., Executor]] = {"inprocess": _local, "ray": _ray}


def check_runs_per_gpu(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidValue(
            f"runs per gpu must be a positive whole number, got {value}", field="runs_per_gpu"
        )
    return value


def make_executor(name: str, *, runs_per_gpu: int = 1, **options: Any) -> Executor:
    """The executor called `name`; `options` go to it (Ray: address, device)."""
    check_runs_per_gpu(runs_per_gpu)
    if name not in EXECUTORS:
        known = ", ".join(EXECUTORS)
        raise InvalidValue(f"unknown executor '{name}'; choose from {known}", field="executor")
    return EXECUTORS[name](runs_per_gpu=runs_per_gpu, **options)
