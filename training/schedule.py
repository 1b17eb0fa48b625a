"""Running a planned grid: claims, executors and the leaderboard, until every run is finished.

`run_grid` takes the `GridPlan` that lsd.training.grid made (options checked, split and
normalisation recorded), hands the runs still to do to an executor (lsd.training.executors),
and keeps the leaderboard current as runs finish. A run is started only under its claim
(lsd.claims), so several drivers can share one RUNS folder.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsd.claims import (
    CLAIM_HEARTBEAT_S,
    CLAIM_STALE_S,
    ClaimOwner,
    claim_state,
    refresh_claim,
    release_claim,
    take_claim,
)
from lsd.progress import Progress, say, warn
from lsd.runs import (
    CHECKPOINT_FILE,
    clear_failure,
    run_folder,
    write_failure,
    write_leaderboard,
)
from lsd.training.executors import (
    EpochHook,
    Executor,
    InProcessExecutor,
    RunHooks,
    RunsFailed,
    RunTask,
)
from lsd.training.grid import GridPlan
from lsd.training.loop import is_finished


class _Claims:
    """The runs this grid call holds, with a heartbeat thread that keeps their claims fresh."""

    def __init__(self, stale_s: float, heartbeat_s: float) -> None:
        self.owner = ClaimOwner.here()
        self.stale_s = stale_s
        self.held: set[Path] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, args=(heartbeat_s,), daemon=True)
        self.thread.start()

    def _beat(self, every: float) -> None:
        while not self.stop.wait(every):
            with self.lock:
                held = list(self.held)
            for run_dir in held:
                if not refresh_claim(run_dir, self.owner):
                    warn(f"{run_dir.name}: lost its claim to another driver")

    def take(self, run_dir: Path) -> bool:
        if not take_claim(run_dir, self.owner, self.stale_s):
            return False
        with self.lock:
            self.held.add(run_dir)
        return True

    def release(self, run_dir: Path) -> None:
        with self.lock:
            self.held.discard(run_dir)
        release_claim(run_dir, self.owner)

    def close(self) -> None:
        self.stop.set()
        for run_dir in list(self.held):
            self.release(run_dir)
        self.owner.retire()


@dataclass
class GridCall:
    """What one call of `run_grid` did, for its caller's summary."""

    trained: list[str] = field(default_factory=list)  # finished by this call
    elsewhere: list[str] = field(default_factory=list)  # finished by another driver meanwhile
    failed: dict[str, str] = field(default_factory=dict)  # run id -> one-line reason


class _Hooks:
    """What the grid does when an executor starts, finishes or loses a run."""

    def __init__(self, plan: GridPlan, claims: _Claims, call: GridCall, bar: Any) -> None:
        self.plan, self.claims, self.call, self.bar = plan, claims, call, bar

    def on_start(self, task: RunTask) -> bool:

        if not self.claims.take(task.run_dir):
            return False
        if is_finished(task.run_dir):  # finished by another driver since we planned
            self.claims.release(task.run_dir)
            return False
        clear_failure(task.run_dir)
        return True

    def on_done(self, task: RunTask, done: dict[str, Any]) -> None:
        write_leaderboard(self.plan.out)
        self.claims.release(task.run_dir)
        self.call.trained.append(task.run_id)
        self.bar.update(text=f"{task.run_id}: val F1 {float(done.get('val_f1', math.nan)):.4f}")

    def on_failed(self, task: RunTask, message: str, details: str) -> None:
        write_failure(task.run_dir, details)
        self.claims.release(task.run_dir)
        self.call.failed[task.run_id] = message
        warn(f"{task.run_id}: run failed: {message}")


def run_grid(
    plan: GridPlan,
    *,
    progress: bool = True,
    on_epoch: EpochHook | None = None,
    executor: Executor | None = None,
    claim_stale_s: float = CLAIM_STALE_S,
    heartbeat_s: float = CLAIM_HEARTBEAT_S,
    poll_s: float = 5.0,
    call: GridCall | None = None,
) -> list[dict[str, Any]]:
    """Plan the runs still to do, hand them to the executor, keep the leaderboard current as
    they finish; returns the final leaderboard rows. A resumed grid says first how many runs it
    skips (finished), continues (from a checkpoint) and starts.

    A run is started only under its claim (lsd.claims), so other drivers on the same RUNS folder
    train other runs. Runs another driver holds are waited for: they end finished, or their
    claim goes stale and this call trains them. Runs that fail are reported together at the end
    (RunsFailed) after the others have finished.
    """

    call = call if call is not None else GridCall()
    configs = plan.configs()
    todo = [c for c in configs if not is_finished(run_folder(plan.out, c.run_id))]
    going_on = [c for c in todo if (run_folder(plan.out, c.run_id) / CHECKPOINT_FILE).is_file()]
    skipped = len(configs) - len(todo)
    if skipped or going_on:
        say(
            f"resuming {plan.out}: {skipped} finished run(s) skipped, {len(going_on)} continued "
            f"from their last epoch, {len(todo) - len(going_on)} started"
        )
    write_leaderboard(plan.out)
    bar = Progress(len(configs), desc="grid", unit="runs", enabled=progress, position=0)
    bar.skip(skipped)
    claims = _Claims(claim_stale_s, heartbeat_s)
    grid = _Hooks(plan, claims, call, bar)
    hooks = RunHooks(on_done=grid.on_done, on_epoch=on_epoch, on_start=grid.on_start,
                     on_failed=grid.on_failed)  # fmt: skip
    pending = plan.tasks(todo)
    try:
        while pending:
            before = len(pending)
            (executor or InProcessExecutor()).run(pending, hooks, progress=progress)
            pending = [t for t in pending if t.run_id not in call.trained + list(call.failed)]
            if pending and len(pending) == before:
                time.sleep(poll_s)  # a free-looking claim we could not take (a takeover race)
            pending = _wait_for_others(plan, pending, call, claim_stale_s, poll_s, bar)
    finally:
        claims.close()
        bar.close()
    rows = write_leaderboard(plan.out)
    if call.failed:
        lines = "; ".join(f"{rid}: {why}" for rid, why in call.failed.items())
        raise RunsFailed(
            f"{len(call.failed)} of {len(configs)} run(s) failed ({lines}); the others are on "
            f"{plan.out / 'leaderboard.csv'}; run the same command again to retry them"
        )
    return rows


def _wait_for_others(
    plan: GridPlan,
    pending: list[RunTask],
    call: GridCall,
    stale_s: float,
    poll_s: float,
    bar: Any,
) -> list[RunTask]:
    """Wait while other drivers hold every pending run; return the runs still unfinished once
    one of them is free or stale (none when the others finished them all)."""

    told = False
    while pending:
        still = []
        for task in pending:
            if is_finished(task.run_dir):
                call.elsewhere.append(task.run_id)
                bar.update(text=f"{task.run_id}: finished by another driver")
            else:
                still.append(task)
        if len(still) < len(pending):
            write_leaderboard(plan.out)
        pending = still
        states = {t.run_id: claim_state(t.run_dir, stale_s) for t in pending}
        free = [t for t in pending if states[t.run_id].holder is None or states[t.run_id].stale]
        if free or not pending:
            return pending
        if not told:
            holders = sorted({s.holder for s in states.values() if s.holder})
            warn(f"waiting for {len(pending)} run(s) that {', '.join(holders)} is training")
            told = True
        time.sleep(poll_s)
    return pending
