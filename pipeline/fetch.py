"""`lsd fetch`: events.csv -> one event folder per event, through the Earth Engine source.

Each event is independent: a failure (empty window, Earth Engine error) is reported and the
others go on, because a 20-event fetch takes hours and one bad row should not cost the rest.
Completeness is judged by event.json, which is written last, so a rerun redoes exactly the
unfinished events.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from lsd.errors import InvalidValue, UserError
from lsd.eventcsv import read_events
from lsd.files import check_writable
from lsd.gee import auth
from lsd.gee.config import FetchConfig
from lsd.gee.pixels import EXPORT_MODES
from lsd.layergroups import DEFAULT_GROUPS, S1Scenes
from lsd.outputs import mark
from lsd.pipeline.sources import BuildSummary, build_events, plan_events, source_class
from lsd.stac.catalogs import PLANETARY_COMPUTER
from lsd.stac.config import StacConfig

Echo = Callable[[str], None]


@dataclass
class FetchSummary(BuildSummary):
    """The driver's summary plus what the user should know about events that did complete
    (scenes left out, layers that are NaN): repeated at the end, where it is read."""

    warnings: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """A dry run's findings that would fail events (empty windows, missing assets)."""
        return [p for plan in self.planned for p in plan.get("problems", [])]


def fetch_events(
    csv: Path,
    out: Path,
    *,
    cfg: FetchConfig | None = None,
    dry_run: bool = False,
    export: str | None = None,
    bucket: str | None = None,
    only: Sequence[str] | None = None,
    project: str | None = None,
    groups: Sequence[str] = DEFAULT_GROUPS,
    s1_scenes: str | S1Scenes | None = None,
    sleep: Callable[[float], None] | None = None,
    echo: Echo = print,
    show_progress: bool = True,
    graphs: Path | None = None,
    source: str = "earthengine",
    catalog: str | None = None,
    settings_file: Path | None = None,
    jobs: int = 1,
) -> FetchSummary:
    """Fetch every event of the CSV into `out`; failures are collected, not raised.

    `groups` and `s1_scenes` choose the layers of every row without its own `layers` cell.
    `source` "stac" reads open STAC catalogs (`catalog`: a name or URL) instead of Earth
    Engine; its own settings are the `[stac]` table of `settings_file`; `jobs` events are
    built at once in worker processes.
    """
    cfg = cfg or FetchConfig()
    if jobs < 1:
        raise InvalidValue(f"jobs must be at least 1, got {jobs}", field="jobs")
    if source == "stac":
        return _fetch_stac(
            csv, out, cfg, dry_run=dry_run, only=only, groups=groups, s1_scenes=s1_scenes,
            echo=echo, show_progress=show_progress, catalog=catalog, settings_file=settings_file,
            jobs=jobs,
        )  # fmt: skip
    if catalog:
        raise InvalidValue("a catalog goes with the STAC source", field="catalog")
    if jobs > 1:
        raise InvalidValue("jobs above 1 go with the STAC source", field="jobs")

    if export not in (None, *EXPORT_MODES):
        raise InvalidValue(f"export mode must be drive or gcs, got '{export}'", field="export")
    if export == "gcs" and not bucket:
        raise InvalidValue(
            "an export to Cloud Storage needs a bucket you can write", field="bucket"
        )
    specs = read_events(
        csv, aoi_km2=cfg.aoi_km2, scale=cfg.scale, only=set(only or ()) or None, groups=groups,
        s1_scenes=s1_scenes,
    )  # fmt: skip
    source = source_class("earthengine")(
        specs, cfg, export=export, bucket=bucket, sleep=sleep, echo=echo,
        show_progress=show_progress, graphs_dir=Path(graphs) if graphs else None,
    )  # fmt: skip
    if dry_run:
        try:
            auth.initialize(project)
            source.counts_online = True
        except UserError as exc:
            echo(f"{exc}; showing the plan without image counts")
        if graphs and not source.counts_online:
            from lsd.gee.graphs import offline_client

            with offline_client():
                return _with_warnings(plan_events(source, echo=echo), source.warnings)
        return _with_warnings(plan_events(source, echo=echo), source.warnings)
    auth.initialize(project)
    summary = build_events(source, out, progress=show_progress, echo=echo, desc="events")
    return _with_warnings(summary, source.warnings)


def stac_source(specs, cfg: FetchConfig, *, catalog: str | None, settings_file: Path | None, **kw):
    """The STAC source with the shared settings of `cfg` and the `[stac]` table of the file."""

    stac_cfg = StacConfig.from_values(dataclasses.asdict(cfg))
    if settings_file is not None:
        stac_cfg = StacConfig.from_toml(settings_file, stac_cfg)
    return source_class("stac")(specs, stac_cfg, catalog=catalog or PLANETARY_COMPUTER, **kw)


def _fetch_stac(
    csv: Path, out: Path, cfg: FetchConfig, *, dry_run: bool, only, groups, s1_scenes, echo: Echo,
    show_progress: bool, catalog: str | None, settings_file: Path | None, jobs: int,
) -> FetchSummary:  # fmt: skip
    specs = read_events(
        csv, aoi_km2=cfg.aoi_km2, scale=cfg.scale, only=set(only or ()) or None, groups=groups,
        s1_scenes=s1_scenes,
    )  # fmt: skip
    source = stac_source(specs, cfg, catalog=catalog, settings_file=settings_file, echo=echo)
    if dry_run:
        return _with_warnings(plan_events(source, echo=echo), source.warnings)
    if jobs > 1 and len(specs) > 1:
        return _fetch_parallel(source, out, jobs, echo)
    summary = build_events(source, out, progress=show_progress, echo=echo, desc="events")
    return _with_warnings(summary, source.warnings)


def _fetch_parallel(source, out: Path, jobs: int, echo: Echo) -> FetchSummary:
    """Events of a STAC fetch built `jobs` at a time, one worker process each (spawned, so no
    GDAL or thread state is inherited); the driver runs in each worker for its event, so
    skipping, failure isolation and clean-up are the same as in one process."""

    out = Path(out)
    check_writable(out)
    if not any(out.iterdir()):
        mark(out, "data")
    summary = FetchSummary()
    seen_warnings: dict[str, None] = {}
    seen_lines: set[str] = set()
    source.download_static_files()
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(jobs, len(source.specs)), mp_context=ctx) as pool:
        futures = [
            pool.submit(_build_one_event, spec, source.cfg, source.catalog, source.layers, out)
            for spec in source.specs
        ]
        for future in as_completed(futures):
            part, lines, warnings = future.result()
            for line in lines:
                if line not in seen_lines:  # a run-wide warning comes once, not once per worker
                    echo(line)
                if line.startswith("warning:"):
                    seen_lines.add(line)
            for name in ("done", "skipped", "pending", "folders"):
                getattr(summary, name).extend(getattr(part, name))
            summary.failed.update(part.failed)
            seen_warnings.update(dict.fromkeys(warnings))
    summary.warnings = list(seen_warnings)
    return summary


def _build_one_event(spec, cfg, catalog: str, layers, out: Path):
    """In a worker process: one event through the driver; its lines come back to the parent."""
    lines: list[str] = []
    source = source_class("stac")([spec], cfg, catalog=catalog, layers=layers, echo=lines.append)
    part = build_events(source, out, progress=False, echo=lines.append)
    return part, lines, source.warnings


def _with_warnings(summary: BuildSummary, warnings: list[str]) -> FetchSummary:
    return FetchSummary(**vars(summary), warnings=list(warnings))


def summary_lines(summary: BuildSummary) -> list[str]:
    lines = [
        f"{len(summary.done)} fetched, {len(summary.skipped)} already complete, "
        f"{len(summary.pending)} exported to Drive, {len(summary.failed)} failed"
    ]
    lines += [f"  failed: {msg}" for msg in summary.failed.values()]
    lines += [f"  warning: {msg}" for msg in getattr(summary, "warnings", [])]
    return lines
