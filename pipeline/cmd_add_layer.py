"""`lsd add-layer`: append a raster of the user's as a named layer to every event's stack."""

from __future__ import annotations

from pathlib import Path

import click

from lsd.pipeline.options import PATH, CommaList, LsdCommand, count, progress_option


@click.command("add-layer", cls=LsdCommand)
@click.argument("data", type=PATH)
@click.argument("raster", type=PATH)
@click.option(
    "--name",
    required=True,
    type=CommaList("NAME[,NAME...]"),
    help="Layer name (letters, digits, _ . -), or one name per band: H,A,alpha.",
)
@click.option(
    "--band", type=CommaList("N[,N...]", count),
    help="Bands of RASTER to add, e.g. 2 or 1,3 (default all).",
)  # fmt: skip
@click.option(
    "--resampling",
    type=click.Choice(["bilinear", "cubic", "average", "nearest", "mode"]),
    default="bilinear",
    show_default=True,
    help="bilinear/cubic for continuous values, average to shrink a finer raster, nearest or "
    "mode for classes.",
)
@click.option(
    "--only", type=CommaList("IDS"), help="Comma-separated event ids (default: every event)."
)
@click.option(
    "--allow-partial",
    is_flag=True,
    help="Accept a raster that covers only part of an event (NaN elsewhere).",
)
@progress_option
def add_layer(
    data: Path,
    raster: Path,
    name: tuple[str, ...],
    band: tuple[int, ...] | None,
    resampling: str,
    only: tuple[str, ...] | None,
    allow_partial: bool,
    progress: bool,
) -> None:
    """Reproject RASTER onto each event's grid in DATA and append it as layer NAME.

    DATA is a data folder (every event) or one event folder. RASTER is one file for all events
    (e.g. a national DEM) or a folder of files named after the events (<id>.tif). Nothing
    changes unless every event passes the checks; a rerun skips events already done.

    Example:

    \b
        lsd add-layer data coherence.tif --name coh
    """
    from lsd.pipeline.addlayer import LayerSource, add_layer, check_names

    source = LayerSource(
        names=check_names(name),
        bands=band,
        resampling=resampling,
        allow_partial=allow_partial,
    )
    ids = list(only) if only else None
    summary = add_layer(data, raster, source, only=ids, echo=click.echo, progress=progress)
    click.echo(f"{len(summary.added)} event(s) changed, {len(summary.skipped)} already had it")
