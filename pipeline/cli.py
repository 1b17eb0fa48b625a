"""The `lsd` command line.

Each command lives in its own `cmd_*.py` module and imports torch or ee only inside its body, so
`lsd --help` and `lsd fetch` never pay for torch, and `lsd train` never needs ee.
"""

from __future__ import annotations

import click

from lsd import __version__
from lsd.errors import UserError


class _UsageLine(click.ClickException):
    exit_code = 2  # click's status for usage mistakes


class LsdGroup(click.Group):
    """Every mistake below becomes one line on stderr: a UserError exits 1; a malformed command
    line (bad option value, missing option) exits 2 with click's message and a pointer to --help
    instead of the usage block."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            raise click.ClickException(str(exc)) from None
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            raise _UsageLine(f"{exc.format_message()} (see '{where} --help')") from None


@click.group(cls=LsdGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lsd")
def main() -> None:
    """Find landslides in Sentinel-1/2 imagery: fetch layers, train model grids, map landslides."""


def _register() -> None:
    from lsd.pipeline import cmd_fetch, cmd_import, cmd_predict, cmd_train

    main.add_command(cmd_fetch.fetch)
    main.add_command(cmd_import.import_group)
    main.add_command(cmd_train.train)
    main.add_command(cmd_predict.ensemble)
    main.add_command(cmd_predict.evaluate)
    main.add_command(cmd_predict.predict)


_register()
