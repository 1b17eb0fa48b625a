"""`lsd inspect`: per-layer statistics of one or more stacks, side by side."""

from __future__ import annotations

from pathlib import Path

import click

from lsd.files import write_json
from lsd.pipeline.options import LsdCommand


@click.command(cls=LsdCommand)
@click.argument("stacks", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--json",
    "json_out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write the statistics as JSON to this file.",
)
@click.option(
    "--conventions",
    is_flag=True,
    help="Show each stack's conventions (flattening sign, flag polarity, dB, snow mask, DEM, "
    "land cover, source) side by side, recorded or detected, with the evidence.",
)
def inspect(stacks: tuple[Path, ...], json_out: Path | None, conventions: bool) -> None:
    """Valid share, min/mean/max and class values of every layer of STACK files or event
    folders, one column per stack (compare a fetch with the paper's published stack).

    Example:

    \b
        lsd inspect data/05-norway paper/events/05-norway
    """
    from lsd.pipeline.layer_stats import comparison_lines, records, stack_stats

    if conventions:
        from lsd.pipeline.conventions import inspect_found, inspect_lines, inspect_records

        found = inspect_found(stacks)
        for line in inspect_lines(found):
            click.echo(line)
        if json_out is not None:
            write_json(json_out, {"format": "lsd-inspect-conventions/1",
                                  "stacks": inspect_records(found)})  # fmt: skip
            click.echo(f"conventions written to {json_out}")
        return
    stats = [stack_stats(s) for s in stacks]
    for line in comparison_lines(stats):
        click.echo(line)
    if json_out is not None:
        write_json(json_out, {"format": "lsd-inspect/1", "stacks": records(stats)})
        click.echo(f"statistics written to {json_out}")
