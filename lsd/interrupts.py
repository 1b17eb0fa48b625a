"""Stopping a command from outside: SIGTERM ends it the way Ctrl-C (SIGINT) does.

Schedulers stop jobs with SIGTERM: `timeout`, Slurm at the time limit or on pre-emption (and
earlier with `--signal`), Kubernetes when it evicts a pod. Python's default for SIGTERM is to die
on the spot: no cleanup, temporaries left, no message. While `sigterm_interrupts()` is active,
SIGTERM instead raises `Terminated`, a KeyboardInterrupt, so every path that cleans up after
Ctrl-C runs for it too (atomic writes remove their temporaries, runs release their claims, a
download keeps the part it has for the rerun to resume), and the CLI says so in one line and
exits 143 (128 + 15, what shells report for a process ended by SIGTERM).

A second SIGTERM while that cleanup runs takes Python's default action again (the process ends
at once), so a cleanup that hangs can still be stopped. Worker processes (the process executor)
install the handler for the whole of their life; there a second SIGTERM is ignored, since the
driver waits for its workers and the scheduler's SIGKILL ends any that hang.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

TERMINATED_EXIT = 128 + signal.SIGTERM  # 143


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; raised where Ctrl-C would raise KeyboardInterrupt."""


def _handler(then: signal.Handlers):
    def on_sigterm(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, then)  # the next one: default action, or ignored
        raise Terminated(f"signal {signum}")

    return on_sigterm


def raise_on_sigterm(*, again: signal.Handlers = signal.SIG_DFL) -> bool:
    """From now on SIGTERM raises Terminated in the main thread (once; then `again` applies).
    False where that cannot be arranged (not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGTERM, _handler(again))
    return True


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises Terminated inside the block; the previous handling is restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.getsignal(signal.SIGTERM)
    raise_on_sigterm()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old if old is not None else signal.SIG_DFL)
