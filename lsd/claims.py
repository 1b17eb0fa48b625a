"""Run claims: how several drivers share one RUNS folder (lsd.runs) without training a run twice.

Drivers are grid calls, on one machine or on many that share the folder. A driver trains a run
only while it holds the run's claim: claim.json, created whole and exclusively (written beside it,
then hard-linked under its name, or O_CREAT | O_EXCL where there are no hard links; shared file
systems honour both), naming the host, process and a random token of the driver, and touched
every CLAIM_HEARTBEAT_S seconds. A claim whose file has not been touched for CLAIM_STALE_S
seconds, or whose process is gone (same host), is stale and may be taken over; takeovers are
serialised by a second exclusive file, so two drivers never both break the same stale claim.
leaderboard.csv is rewritten under a short lock of the same kind (`exclusive`) so that two
drivers' rewrites cannot interleave and drop a run.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsd.errors import OutputNotWritable
from lsd.files import create_json

CLAIM_FILE = "claim.json"
CLAIM_HEARTBEAT_S = 30.0
CLAIM_STALE_S = 300.0  # ten missed heartbeats; machines' clocks must agree far better than this
LOCK_STALE_S = 60.0  # the leaderboard lock is held for milliseconds
EMPTY_STALE_S = 5.0  # a lock is written in microseconds; still empty after this, its writer died


@dataclass(frozen=True)
class ClaimOwner:
    """Who holds claims: one grid call (driver) on one host."""

    host: str
    pid: int
    token: str

    @classmethod
    def here(cls) -> ClaimOwner:
        owner = cls(socket.gethostname(), os.getpid(), uuid.uuid4().hex)
        _LIVE_TOKENS.add(owner.token)
        return owner

    def retire(self) -> None:
        """This owner holds nothing any more (its grid call ended)."""
        _LIVE_TOKENS.discard(self.token)

    def describe(self) -> str:
        return f"{self.host} (process {self.pid})"


_LIVE_TOKENS: set[str] = set()  # owners alive in this process


@dataclass(frozen=True)
class ClaimState:
    """A run's claim as read: None fields when it is free."""

    holder: str | None  # "host (process pid)"
    token: str | None
    stale: bool


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_lock(path: Path) -> tuple[dict[str, Any], float] | None:
    """(record, seconds since last touched), None when there is no file; a file still being
    written (empty) reads as an empty record."""
    try:
        age = time.time() - path.stat().st_mtime
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        rec = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        rec = {}
    return (rec if isinstance(rec, dict) else {}), age


def _is_stale(rec: dict[str, Any], age: float, stale_s: float) -> bool:
    if age > stale_s:
        return True
    if not rec and age > EMPTY_STALE_S:  # left empty by a writer killed mid-write (no hard links)
        return True
    if rec.get("host") != socket.gethostname() or not isinstance(rec.get("pid"), int):
        return False
    if rec["pid"] == os.getpid():  # this process: stale unless one of its grid calls is live
        return rec.get("token") not in _LIVE_TOKENS
    return not _pid_alive(rec["pid"])


def _owner_record(owner: ClaimOwner) -> dict[str, Any]:
    return {
        "host": owner.host, "pid": owner.pid, "token": owner.token,
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip


def _break_if_stale(path: Path, token: Any, stale_s: float) -> None:
    """Remove the stale lock `path` if it still holds `token`; one breaker at a time."""
    breaker = path.with_name(path.name + ".break")
    if not create_json(breaker, {"pid": os.getpid(), "host": socket.gethostname()}):
        seen = _read_lock(breaker)
        if seen is not None and seen[1] > stale_s:  # a breaker that died mid-break
            breaker.unlink(missing_ok=True)
        return
    try:
        seen = _read_lock(path)
        if seen is not None and seen[0].get("token") == token and _is_stale(*seen, stale_s):
            path.unlink(missing_ok=True)
    finally:
        breaker.unlink(missing_ok=True)


def claim_state(run_dir: Path | str, stale_s: float = CLAIM_STALE_S) -> ClaimState:
    seen = _read_lock(Path(run_dir) / CLAIM_FILE)
    if seen is None:
        return ClaimState(None, None, False)
    rec, age = seen
    holder = f"{rec.get('host', '?')} (process {rec.get('pid', '?')})"
    return ClaimState(holder, rec.get("token"), _is_stale(rec, age, stale_s))


def take_claim(run_dir: Path | str, owner: ClaimOwner, stale_s: float = CLAIM_STALE_S) -> bool:
    """Claim a run for `owner`: True when it now holds it (or already did), False when another
    live driver does. A stale claim is taken over."""
    path = Path(run_dir) / CLAIM_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        if create_json(path, _owner_record(owner)):
            return True
        seen = _read_lock(path)
        if seen is None:
            continue  # released meanwhile
        rec, age = seen
        if rec.get("token") == owner.token:
            return True
        if not _is_stale(rec, age, stale_s):
            return False
        _break_if_stale(path, rec.get("token"), stale_s)
    return False


def refresh_claim(run_dir: Path | str, owner: ClaimOwner) -> bool:
    """The heartbeat: touch the claim; False when it is no longer this owner's."""
    path = Path(run_dir) / CLAIM_FILE
    seen = _read_lock(path)
    if seen is None or seen[0].get("token") != owner.token:
        return False
    with contextlib.suppress(FileNotFoundError):
        os.utime(path)
        return True
    return False


def release_claim(run_dir: Path | str, owner: ClaimOwner) -> None:
    path = Path(run_dir) / CLAIM_FILE
    seen = _read_lock(path)
    if seen is not None and seen[0].get("token") == owner.token:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def exclusive(path: Path, stale_s: float, wait_s: float = 120.0) -> Iterator[None]:
    """A short exclusive section across processes and hosts (the leaderboard rewrite)."""
    token = uuid.uuid4().hex
    rec = {"host": socket.gethostname(), "pid": os.getpid(), "token": token}
    _LIVE_TOKENS.add(token)
    deadline = time.monotonic() + wait_s
    try:
        while not create_json(path, rec):
            seen = _read_lock(path)
            if seen is not None and _is_stale(*seen, stale_s):
                _break_if_stale(path, seen[0].get("token"), stale_s)
            elif time.monotonic() > deadline:
                raise OutputNotWritable(f"{path}: held by another process for over {wait_s:.0f} s")
            else:
                time.sleep(0.02)
        yield
    finally:
        _LIVE_TOKENS.discard(token)
        seen = _read_lock(path)
        if seen is not None and seen[0].get("token") == token:
            path.unlink(missing_ok=True)
