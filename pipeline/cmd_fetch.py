"""`lsd fetch`: download layer stacks and labels for every event of an events.csv.

ee is imported only inside the command (through lsd.pipeline.fetch), so `lsd --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from lsd.files import read_toml_table
from lsd.layergroups import parse_groups, parse_s1_scenes
from lsd.pipeline.options import CommaList, LsdCommand, ray_address_option
from lsd.training.options import EXECUTORS
from lsd.versions import EARTH_ENGINE_STACK, STAC_STACK, require


@click.command(
    cls=LsdCommand,
    interrupt="rerun the same command to go on: finished event folders are kept and skipped",
)
@click.option(
    "--event",
    "events_csv",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="events.csv: one row per event (id, date, lon/lat or polygon, ...; see docs/fetch.md).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Data folder; each event becomes DATA/<id>/ with stack.tif, label.tif, event.json.",
)
@click.option(
    "--aoi-km2",
    default=4.0,
    show_default=True,
    type=float,
    help="Area of the square around a lon/lat event, in km2.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the plan; signed in, also scenes, choices, missing assets (exit 1 on problems).",
)
@click.option(
    "--graphs",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Write each event's Earth Engine request graphs (JSON) into this folder.",
)
@click.option(
    "--fetch-config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="TOML file with a [fetch] table of layer settings (docs/layers.md, 'Settings').",
)
@click.option(
    "--conventions-from",
    type=click.Path(path_type=Path),
    default=None,
    help="Fetch stacks that mean what this data or model learnt: an event or data folder, a "
    "RUNS folder, an ensemble or a bundle; sets the flattening sign, flag polarity and snow "
    "mask (docs/conventions.md).",
)
@click.option(
    "--export",
    type=click.Choice(["drive", "gcs"]),
    default=None,
    help="Use an Earth Engine batch export instead of direct downloads (large AOIs).",
)
@click.option("--bucket", default=None, help="Cloud Storage bucket for --export gcs.")
@click.option("--project", default=None, help="Google Cloud project for Earth Engine.")
@click.option(
    "--only", type=CommaList("IDS"), help="Comma-separated event ids to fetch (default: all)."
)
@click.option(
    "--layers",
    "groups",
    type=CommaList("GROUPS"),
    default="paper",
    show_default=True,
    help="Layer groups, comma-separated: paper (the 15), s2bands (preB2 ... postB12), ndvi "
    "(preNDVI, postNDVI), s1scenes (single Sentinel-1 acquisitions). A row's 'layers' cell "
    "wins over this.",
)
@click.option(
    "--source",
    type=click.Choice(["earthengine", "stac"]),
    default="earthengine",
    show_default=True,
    help="Where the layers come from: Earth Engine, or open STAC catalogs (no account; "
    "pip install 'lsd[stac]').",
)
@click.option(
    "--catalog",
    default=None,
    help="With --source stac: planetary-computer (default), earth-search, or a STAC API URL; "
    "layers it does not offer come from planetary-computer.",
)
@click.option(
    "--jobs",
    type=int,
    default=1,
    show_default=True,
    help="With --source stac: events fetched at once, each in a worker process.",
)
@click.option(
    "--executor", type=click.Choice(EXECUTORS), default=EXECUTORS[0], show_default=True,
    help="With --source stac: inprocess (--jobs worker processes), or ray: each event a task on "
    "a Ray cluster whose workers see --out (pip install 'lsd[ray]').",
)  # fmt: skip
@ray_address_option
@click.option(
    "--s1-scenes",
    default="1+1",
    show_default=True,
    help="Acquisitions before+after the event for s1scenes: 1+1, 3+1, 1+3 or 3+3.",
)
def fetch(
    events_csv: Path,
    out: Path,
    aoi_km2: float,
    dry_run: bool,
    graphs: Path | None,
    fetch_config: Path | None,
    conventions_from: Path | None,
    export: str | None,
    bucket: str | None,
    project: str | None,
    only: tuple[str, ...] | None,
    groups: tuple[str, ...],
    source: str,
    catalog: str | None,
    jobs: int,
    executor: str,
    ray_address: str | None,
    s1_scenes: str,
) -> None:
    """Fetch Sentinel-1/2 layer stacks and landslide labels for the events of a CSV.

    Example:

    \b
        lsd fetch --event examples/events.csv --out data --only 05-norway
    """

    require(*(STAC_STACK if source == "stac" else EARTH_ENGINE_STACK))  # the source's packages
    from lsd.gee.config import FetchConfig
    from lsd.pipeline.fetch import fetch_events, summary_lines

    if aoi_km2 <= 0:
        raise click.BadParameter(f"must be positive, got {aoi_km2}", param_hint="--aoi-km2")
    layer_groups = parse_groups(groups, field="groups")
    scenes = parse_s1_scenes(s1_scenes)
    ids = list(only) if only else None
    if fetch_config is not None:
        cfg = FetchConfig.from_toml(fetch_config, aoi_km2=aoi_km2)
    else:
        cfg = FetchConfig(aoi_km2=aoi_km2)
    if conventions_from is not None:
        from lsd.pipeline.conventions import matching_fetch_config

        in_file = read_toml_table(fetch_config, "fetch", "fetch settings", "") if fetch_config \
            else {}  # fmt: skip
        cfg, lines = matching_fetch_config(cfg, conventions_from, in_file, fetch_config)
        for line in lines:
            click.echo(line, err=True)
    summary = fetch_events(
        events_csv,
        out,
        cfg=cfg,
        dry_run=dry_run,
        graphs=graphs,
        export=export,
        bucket=bucket,
        only=ids,
        project=project,
        groups=layer_groups,
        s1_scenes=scenes,
        echo=click.echo,
        source=source,
        catalog=catalog,
        settings_file=fetch_config,
        jobs=jobs,
        executor=executor,
        ray_address=ray_address,
    )
    if dry_run:
        wrote = f"; graphs in {graphs}" if graphs else "; nothing written"
        click.echo(f"{len(summary.planned)} event(s) planned{wrote}")
        for line in summary.problems:
            click.echo(f"  problem: {line}")
        if summary.problems:
            raise click.exceptions.Exit(1)
        return
    for line in summary_lines(summary):
        click.echo(line)
    if summary.failed:
        raise click.exceptions.Exit(1)
