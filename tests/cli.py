"""The one in-process runner of the `lsd` command line for tests.

Click's CliRunner runs `lsd` in this process (no interpreter start, no re-import of torch), so a
CLI case costs what the command itself costs. `invoke` returns click's Result (exit code, stdout
and stderr apart); `lsd` returns (exit code, all output) and lets an unexpected exception through
as itself, so a crash in a command fails the test with its traceback instead of a vague exit 1.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from click.testing import CliRunner, Result


def invoke(
    *args: object,
    env: Mapping[str, str | None] | None = None,
    cwd: Path | str | None = None,
    catch_exceptions: bool = True,
    **kwargs: object,
) -> Result:
    """Run `lsd ARGS` in this process; `cwd` is entered for the call and left after it."""
    from lsd.pipeline.cli import main

    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(
            main,
            [str(a) for a in args],
            env=dict(env) if env else None,
            catch_exceptions=catch_exceptions,
            **kwargs,  # type: ignore[arg-type]
        )
    finally:
        os.chdir(old)


def lsd(
    *args: object, env: Mapping[str, str | None] | None = None, cwd: Path | str | None = None
) -> tuple[int, str]:
    """(exit code, stdout and stderr together); an exception other than an exit is raised."""
    result = invoke(*args, env=env, cwd=cwd)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def error_lines(text: str) -> list[str]:
    """The lines of `text` that start with 'Error'."""
    return [line for line in text.splitlines() if line.startswith("Error")]


def one_error_line(code: int, text: str, *names: str) -> str:
    """Exit status 1, exactly one 'Error' line that names every one of `names`, no traceback."""
    errors = error_lines(text)
    assert code == 1 and len(errors) == 1 and "Traceback" not in text, text
    for name in names:
        assert name in errors[0], (name, errors[0])
    return errors[0]
