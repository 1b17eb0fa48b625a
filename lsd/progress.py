"""Progress and warnings on stderr, the same way in every command.

On a terminal a tqdm bar redraws in place. Anywhere else (a log file, a pipe, a batch job) a
redrawn bar is a stream of carriage returns and cursor codes, so there the bar is silent and each
finished step (an event, a run, an epoch, a member, a block of rows) prints one plain line.
Warnings go through tqdm.write so that they never break a live bar.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def interactive() -> bool:
    """True when stderr is a terminal (a bar can redraw in place)."""
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


def say(message: str) -> None:
    """One line on stderr that does not break a live bar."""

    tqdm.write(message, file=sys.stderr)


def warn(message: str) -> None:
    say(f"Warning: {message}")


class Progress:
    """A bar on a terminal; elsewhere one line per finished step, or nothing when disabled.

    `steps=True`: every `update` is a finished step (a run, an event) and prints its line.
    `steps=False`: updates are too fine to log (iterations); `step(text)` prints the line of a
    coarser finished step (an epoch) instead.
    """

    def __init__(
        self,
        total: int | None = None,
        *,
        desc: str,
        unit: str = "it",
        enabled: bool = True,
        leave: bool = True,
        steps: bool = True,
        position: int | None = None,
    ) -> None:
        self.desc, self.unit, self.total, self.n = desc, unit, total, 0
        self.enabled, self.steps = enabled, steps
        self.bar: Any = None
        if enabled and interactive():
            self.bar = tqdm(
                total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr,
                dynamic_ncols=True, position=position,
            )  # fmt: skip

    @property
    def plain(self) -> bool:
        return self.enabled and self.bar is None

    def update(self, n: int = 1, text: str | None = None) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.plain and self.steps:
            of = f"/{self.total}" if self.total else ""
            say(f"{self.desc}: {self.n}{of} {self.unit}" + (f" ({text})" if text else ""))

    def skip(self, n: int) -> None:
        """Count steps finished before this call (a resumed grid's runs) without a line each."""
        self.n += n
        if self.bar is not None and n:
            self.bar.update(n)

    def step(self, text: str) -> None:
        """The line of a finished step that is not one update (e.g. an epoch of iterations)."""
        if self.plain:
            say(f"{self.desc}: {text}")

    def reset(self, total: int | None = None) -> None:
        self.n, self.total = 0, total
        if self.bar is not None:
            self.bar.reset(total=total)

    def set_postfix(self, **values: Any) -> None:
        if self.bar is not None:
            self.bar.set_postfix(**values)

    def set_postfix_str(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def iterate(self, items: Iterable[T]) -> Iterator[T]:
        """Yield the items; each counts as finished when the next one is asked for."""
        for item in items:
            yield item
            self.update()
