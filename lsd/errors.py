"""Typed errors for mistakes a user can make, one base class for all of them.

Library code raises a subclass that also inherits the matching built-in (FileNotFoundError,
ValueError, ...), so code that calls lsd as a library can catch what it already knows, and the
CLI can catch `UserError` alone and print one line without a traceback. Anything else that
escapes is a bug in lsd and keeps its traceback.

Messages speak of data and values, never of command-line flags: the same function serves the CLI,
notebooks and tests. Where a value came from an option, the error names the option's parameter in
`field` (e.g. "tile", "min_area_m2") and the CLI puts the flag in front of the message.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, files or options; the message is one line naming it."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(" ".join(str(message).split()))
        self.field = field

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        # keep `field` when an error crosses a process boundary (worker processes, Ray tasks)
        return (_rebuild, (type(self), self.message, self.field))


def _rebuild(cls: type[UserError], message: str, field: str | None) -> UserError:
    return cls(message, field=field)


class InputNotFound(UserError, FileNotFoundError):
    """A file or folder the user named (or that an lsd folder should hold) is not there."""


class InvalidValue(UserError, ValueError):
    """A value is out of range, of the wrong kind or inconsistent with the rest of the input."""


class InvalidFile(UserError, ValueError):
    """A file exists but cannot be used: unreadable, damaged, or not in the format lsd expects."""


class LayerMissing(UserError, LookupError):
    """A stack lacks a layer that a setting, a model or a mask needs."""


class ConventionMismatch(UserError, ValueError):
    """Stacks (or a stack and a model) disagree on a convention that changes what values mean,
    such as the flattening sign or the polarity of the layover/shadow flags (lsd.conventions)."""


class OutputExists(UserError, FileExistsError):
    """An output is already there and replacing it was not asked for."""


class OutputNotWritable(UserError, OSError):
    """An output cannot be created or written (permissions, read-only or full disk)."""


class DeviceUnavailable(UserError, RuntimeError):
    """The compute device asked for is not there (e.g. CUDA on a machine without a GPU)."""


class ServiceUnavailable(UserError, ConnectionError):
    """A remote service (Earth Engine, a download server) cannot be reached or refuses access."""


class DependencyTooOld(UserError, ImportError):
    """An installed package is older than lsd's floor for it (or absent); the message names it,
    the version found, the floor and the pip command."""


class TooLarge(InvalidValue):
    """An input or option asks for more memory, pixels or area than lsd agrees to use (lsd.limits);
    the message names the limit and how to raise it."""
