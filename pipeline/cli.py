"""The `lsd` command line.

Each command lives in its own `cmd_*.py` module and imports torch or ee only inside its body, so
`lsd --help` and `lsd fetch` never pay for torch, and `lsd train` never needs ee. Errors become
one line through pipeline.options.
"""

from __future__ import annotations

import click

from lsd.pipeline import (
    cmd_add_layer,
    cmd_demo,
    cmd_download,
    cmd_ensemble,
    cmd_evaluate,
    cmd_fetch,
    cmd_import,
    cmd_inspect,
    cmd_predict,
    cmd_train,
)
from lsd.pipeline.options import LsdGroup


@click.group(cls=LsdGroup, context_settings={"help_option_names": ["-h", "--help"]})
# the installed distribution's version, read from its metadata only when --version is given
@click.version_option(package_name="lsd", prog_name="lsd")
def main() -> None:
    """Find landslides in Sentinel-1/2 imagery: fetch layers, train model grids, map landslides.

    New here, or offline? `lsd demo` runs the whole chain on generated events in a few minutes.

    Example:

    \b
        lsd demo --out lsd-demo
    """


def _register() -> None:
    main.add_command(cmd_download.download_group)
    main.add_command(cmd_fetch.fetch)
    main.add_command(cmd_import.import_group)
    main.add_command(cmd_inspect.inspect)
    main.add_command(cmd_add_layer.add_layer)
    main.add_command(cmd_train.train)
    main.add_command(cmd_ensemble.ensemble)
    main.add_command(cmd_evaluate.evaluate)
    main.add_command(cmd_predict.predict)
    main.add_command(cmd_demo.demo)


_register()
