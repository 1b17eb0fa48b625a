"""Run claims in the RUNS folder: one holder at a time, stale claims taken over, heartbeats, and
a leaderboard rewrite that two drivers cannot interleave."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from lsd.claims import CLAIM_FILE, ClaimOwner, claim_state, refresh_claim, release_claim, take_claim
from lsd.runs import LEADERBOARD_LOCK, write_done, write_leaderboard


def dead_pid() -> int:
    """The id of a process that has just exited (ours, so nothing else is touched)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def plant(run_dir: Path, host: str, pid: int, age_s: float = 0.0) -> None:
    """A claim as another driver would have left it, last touched `age_s` seconds ago."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CLAIM_FILE
    path.write_text(json.dumps({"host": host, "pid": pid, "token": "other"}))
    t = time.time() - age_s
    os.utime(path, (t, t))


def test_one_holder_then_release(tmp_path: Path):
    a, b = ClaimOwner.here(), ClaimOwner.here()
    run = tmp_path / "runs" / "Unet-BCE-lr0.01"
    assert take_claim(run, a)
    assert take_claim(run, a)  # already a's
    assert not take_claim(run, b)
    rec = json.loads((run / CLAIM_FILE).read_text())
    assert rec["host"] == socket.gethostname() and rec["pid"] == os.getpid()
    assert claim_state(run).holder == f"{socket.gethostname()} (process {os.getpid()})"
    release_claim(run, b)  # not b's to release
    assert (run / CLAIM_FILE).exists()
    release_claim(run, a)
    assert not (run / CLAIM_FILE).exists() and take_claim(run, b)


def test_live_claim_of_another_host_is_respected_until_stale(tmp_path: Path):
    me = ClaimOwner.here()
    run = tmp_path / "r"
    plant(run, "other-node", 12345, age_s=10)
    assert not take_claim(run, me, stale_s=60)
    assert not claim_state(run, 60).stale
    plant(run, "other-node", 12345, age_s=120)  # no heartbeat for two minutes
    assert claim_state(run, 60).stale
    assert take_claim(run, me, stale_s=60)
    assert json.loads((run / CLAIM_FILE).read_text())["token"] == me.token


def test_claim_of_a_dead_process_on_this_host_is_taken_at_once(tmp_path: Path):
    me = ClaimOwner.here()
    run = tmp_path / "r"
    plant(run, socket.gethostname(), dead_pid())
    assert take_claim(run, me)
    # a grid call of this very process that has ended (retired) holds nothing either
    old = ClaimOwner.here()
    other = tmp_path / "r2"
    assert take_claim(other, old)
    assert not take_claim(other, me)
    old.retire()
    assert take_claim(other, me)


def test_a_driver_killed_while_claiming_leaves_no_claim_to_wait_out(tmp_path: Path):
    """SIGKILL as a driver claims its next run (test_faults sends it on 'grid: 1/2'): the record
    is linked in whole, so a rerun never meets an empty claim.json; one left empty by a writer
    without hard links is stale after seconds, not the five minutes of a silent driver."""
    killed = subprocess.run(
        [sys.executable, "-c",
         "import os, signal, sys, lsd.files as f\n"
         "def die(obj):\n"
         "    os.kill(os.getpid(), signal.SIGKILL)\n"
         "f._json_text = die\n"
         "from lsd.claims import ClaimOwner, take_claim\n"
         f"take_claim({str(tmp_path / 'r')!r}, ClaimOwner.here())\n"],
        check=False,
    )  # fmt: skip
    assert killed.returncode == -9
    assert not (tmp_path / "r" / CLAIM_FILE).exists()  # nothing half-made under the name
    me = ClaimOwner.here()
    assert take_claim(tmp_path / "r", me)
    empty = tmp_path / "e" / CLAIM_FILE
    empty.parent.mkdir()
    empty.write_text("")
    assert not take_claim(empty.parent, me)  # a writer may be between open and write
    t = time.time() - 6
    os.utime(empty, (t, t))
    assert take_claim(empty.parent, me)


def test_heartbeat_keeps_a_claim_fresh_and_notices_a_takeover(tmp_path: Path):
    me = ClaimOwner.here()
    run = tmp_path / "r"
    assert take_claim(run, me)
    t = time.time() - 500
    os.utime(run / CLAIM_FILE, (t, t))
    assert claim_state(run, 300).stale
    assert refresh_claim(run, me)
    assert not claim_state(run, 300).stale
    plant(run, "other-node", 1)  # someone took it over after we went quiet
    assert not refresh_claim(run, me)


def test_racing_takeovers_of_a_stale_claim_leave_one_holder(tmp_path: Path):
    run = tmp_path / "r"
    plant(run, "other-node", 1, age_s=1000)
    owners = [ClaimOwner.here() for _ in range(8)]
    won: list[ClaimOwner] = []
    start = threading.Barrier(len(owners))

    def race(owner: ClaimOwner) -> None:
        start.wait()
        if take_claim(run, owner, stale_s=60):
            won.append(owner)

    threads = [threading.Thread(target=race, args=(o,)) for o in owners]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert json.loads((run / CLAIM_FILE).read_text())["token"] == won[0].token
    assert not (run / (CLAIM_FILE + ".break")).exists()


def test_leaderboard_rewrites_do_not_interleave(tmp_path: Path):
    """Runs finishing while several writers rewrite the leaderboard: the last rewrite lists all."""
    runs = tmp_path / "RUNS"
    errors: list[BaseException] = []

    def finish(i: int) -> None:
        try:
            rid = f"Unet-BCE-lr0.{i:03d}"
            write_done(runs / "runs" / rid, {"run_id": rid, "val_f1": i / 100, "bundle": "bundle"})
            write_leaderboard(runs)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=finish, args=(i,)) for i in range(1, 13)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    text = (runs / "leaderboard.csv").read_text().splitlines()  # as the last writer left it
    assert len(text) == 1 + 12 and not (runs / LEADERBOARD_LOCK).exists()
