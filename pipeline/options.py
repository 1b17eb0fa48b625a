"""What every `lsd` command shares: how errors become one line, and the common options.

Library code raises typed errors (lsd.errors) whose messages speak of data and values; where a
value came from an option, the error names the option's parameter in `field`. Only here do
parameters become flags: `LsdCommand` puts the flag in front of the message ("--crop 100 must be
a multiple of 32"), adds how to replace an existing output, and exits non-zero with one line.
"""

from __future__ import annotations

import errno
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from lsd.errors import OutputExists, UserError
from lsd.interrupts import TERMINATED_EXIT, Terminated, sigterm_interrupts
from lsd.training.options import PRECISIONS
from lsd.versions import require_for_command

PATH = click.Path(path_type=Path)


class UsageLine(click.ClickException):
    exit_code = 2  # click's status for usage mistakes


def _flag(command: click.Command, field: str) -> str | None:
    """The flag of the option whose parameter (or flag) is named `field`, e.g. "--batch-size"."""
    dashed = "--" + field.replace("_", "-")
    for param in command.params:
        if isinstance(param, click.Option) and (param.name == field or dashed in param.opts):
            return dashed if dashed in param.opts else max(param.opts, key=len)
        if isinstance(param, click.Argument) and param.name == field:
            return param.human_readable_name
    return None


def error_line(exc: UserError, command: click.Command | None) -> str:
    """The message with the option that caused it named the way the user typed it."""
    msg = exc.message
    flag = _flag(command, exc.field) if command is not None and exc.field else None
    if flag:
        words = exc.field.replace("_", " ")
        starts = msg.lower().startswith(words + " ")
        msg = flag + msg[len(words) :] if starts else f"{flag}: {msg}"
    if isinstance(exc, OutputExists) and command is not None and _flag(command, "overwrite"):
        msg += " (use --overwrite to replace it)"
    return msg


INTERRUPTED_EXIT = 130  # 128 + SIGINT, what shells report for a command stopped by Ctrl-C
DEFAULT_INTERRUPT = "nothing half-written was left; rerun the same command to start again"


# file-system refusals a user can meet (full disk, quota, read-only, permissions, size limit)
USER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM}


def os_error_line(exc: OSError) -> str | None:
    """One line for a file-system refusal that escaped the writers (e.g. a folder made in
    place): the path and the system's words for the cause; None for anything else (a bug)."""
    if type(exc).__module__ != "builtins" or exc.errno not in USER_ERRNOS:
        return None
    where = exc.filename if exc.filename is not None else "a file"
    return f"{where}: {exc.strerror}"


class LsdCommand(click.Command):
    """A command whose user errors are one line naming the flag at fault; Ctrl-C is one line
    saying what a rerun does, and exits 130 as shells expect; SIGTERM (a scheduler, `timeout`)
    is handled as Ctrl-C is (lsd.interrupts) and exits 143. Before it starts, it checks that
    the packages it uses are not older than lsd's floors (lsd.versions): every runtime
    dependency, and the heavy stacks named in `stacks` (e.g. TORCH_STACK); `--help` checks
    nothing."""

    def __init__(
        self,
        *args,
        interrupt: str = DEFAULT_INTERRUPT,
        stacks: tuple[tuple[str, ...], ...] = (),
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.interrupt = interrupt
        self.stacks = stacks

    def invoke(self, ctx: click.Context):
        from lsd.pipeline.libtiff import silence_default_printer

        try:
            require_for_command(*self.stacks)  # before anything imports the packages it checks
            silence_default_printer()  # a failed GeoTIFF write is reported once, as one line
            with sigterm_interrupts():
                return super().invoke(ctx)
        except UserError as exc:
            raise click.ClickException(error_line(exc, self)) from None
        except Terminated:
            click.echo(f"Terminated (SIGTERM): {self.interrupt}", err=True)
            raise click.exceptions.Exit(TERMINATED_EXIT) from None
        except KeyboardInterrupt:
            click.echo(f"Interrupted: {self.interrupt}", err=True)
            raise click.exceptions.Exit(INTERRUPTED_EXIT) from None
        except OSError as exc:
            line = os_error_line(exc)
            if line is None:
                raise
            raise click.ClickException(line) from None


class LsdGroup(click.Group):
    """Every mistake below becomes one line on stderr: a UserError exits 1; a malformed command
    line (bad option value, missing option) exits 2 with click's message and a pointer to --help
    instead of the usage block."""

    command_class = LsdCommand

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            raise click.ClickException(error_line(exc, None)) from None
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            raise UsageLine(f"{exc.format_message()} (see '{where} --help')") from None


LsdGroup.group_class = LsdGroup


class CommaList(click.ParamType):
    """A comma-separated list ('Unet,FPN') as a tuple, the one parser of every such option: items
    are stripped of spaces, an empty list or an empty item ('a,,b') is refused, and `item` turns
    each text into its value, raising ValueError with the reason for a bad one."""

    name = "list"

    def __init__(self, metavar: str = "A,B,...", item: Callable[[str], Any] = str) -> None:
        self.metavar = metavar
        self.item = item

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return self.metavar

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        items = [p.strip() for p in str(value).split(",")]
        if not str(value).strip():
            self.fail("is empty: give one or more comma-separated values", param, ctx)
        if "" in items:
            self.fail(f"'{value}' has an empty item (two commas, or one at an end)", param, ctx)
        try:
            return tuple(self.item(text) for text in items)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def positive_number(text: str) -> float:
    """A learning rate, say: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise ValueError(f"'{text}' is not a positive number")
    return value


def count(text: str) -> int:
    """A whole number of at least 1 (an ensemble size, a band number)."""
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"'{text}' is not a whole number of at least 1")
    return int(text)


class DeviceType(click.ParamType):
    """auto, cpu, cuda or cuda:N, shown as such in --help and checked before anything runs."""

    name = "device"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[auto|cpu|cuda|cuda:N]"

    def convert(self, value, param, ctx):
        text = str(value).strip()
        if text in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", text):
            return text
        self.fail(f"'{value}' is not auto, cpu, cuda or cuda:N (N: the GPU's number)", param, ctx)


class EnsembleSizeType(click.ParamType):
    """A whole number of at least 1, or auto; converted to None for auto."""

    name = "k"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[auto|N]"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, int):
            return value
        text = str(value).strip().lower()
        if text == "auto":
            return None
        if text.isdigit() and int(text) >= 1:
            return int(text)
        self.fail(f"'{value}' is neither auto nor a whole number of at least 1", param, ctx)


def device_option(f):
    return click.option(
        "--device", type=DeviceType(), default="auto", show_default=True,
        help="auto (a GPU when there is one), cpu, cuda or cuda:N.",
    )(f)  # fmt: skip


def precision_option(f):
    # the library's own list, from the torch-free lsd.training.options: --help needs no torch
    return click.option(
        "--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
        help="auto (mixed on GPUs, fp32 on CPUs), fp32, or bf16 (GPUs, and CPUs with "
        "AVX512-BF16/AMX).",
    )(f)  # fmt: skip


def ray_address_option(f):
    return click.option(
        "--ray-address", help="Ray cluster: HOST:PORT, ray://HOST:PORT or auto [a new local one]."
    )(f)


def overwrite_option(f):
    return click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")(f)


def progress_option(f):
    return click.option("--progress/--no-progress", default=True, help="Show a progress bar.")(f)
