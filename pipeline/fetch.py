"""`lsd fetch`: events.csv -> one event folder per event, through the Earth Engine source.

Each event is independent: a failure (empty window, Earth Engine error) is reported and the
others go on, because a 20-event fetch takes hours and one bad row should not cost the rest.
Completeness is judged by event.json, which is written last, so a rerun redoes exactly the
unfinished events.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
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
from lsd.ray_cluster import connect
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
    executor: str = "inprocess",
    ray_address: str | None = None,
) -> FetchSummary:
    """Fetch every event of the CSV into `out`; failures are collected, not raised.

    `groups` and `s1_scenes` choose the layers of every row without its own `layers` cell.
    `source` "stac" reads open STAC catalogs (`catalog`: a name or URL) instead of Earth
    Engine; its own settings are the `[stac]` table of `settings_file`; `jobs` events are
    built at once in worker processes, or with `executor` "ray" each event is a task on the Ray
    cluster at `ray_address` (a new local one when None), whose free CPUs set how many run at
    once; its workers must see `out` (one machine, or a shared file system).
    """
    cfg = cfg or FetchConfig()
    _check_parallel(source, jobs, executor, ray_address)
    if source == "stac":
        return _fetch_stac(
            csv, out, cfg, dry_run=dry_run, only=only, groups=groups, s1_scenes=s1_scenes,
            echo=echo, show_progress=show_progress, catalog=catalog, settings_file=settings_file,
            jobs=jobs, executor=executor, ray_address=ray_address,
        )  # fmt: skip
    if catalog:
        raise InvalidValue("a catalog goes with the STAC source", field="catalog")

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


def _check_parallel(source: str, jobs: int, executor: str, ray_address: str | None) -> None:
    """Events in parallel are a STAC feature (Earth Engine has its own queue and quotas)."""
    if jobs < 1:
        raise InvalidValue(f"jobs must be at least 1, got {jobs}", field="jobs")
    if executor not in ("inprocess", "ray"):
        raise InvalidValue(f"executor '{executor}' is not one of inprocess, ray", field="executor")
    if ray_address and executor != "ray":
        raise InvalidValue("a Ray address goes with executor ray", field="ray_address")
    if source != "stac" and (jobs > 1 or executor == "ray"):
        field_name = "jobs" if jobs > 1 else "executor"
        raise InvalidValue("events in parallel go with the STAC source", field=field_name)
    if executor == "ray" and jobs > 1:
        raise InvalidValue(
            "jobs goes with executor inprocess; on Ray every event is a task and the cluster's "
            "free CPUs set how many run at once",
            field="jobs",
        )


def stac_source(specs, cfg: FetchConfig, *, catalog: str | None, settings_file: Path | None, **kw):
    """The STAC source with the shared settings of `cfg` and the `[stac]` table of the file."""

    stac_cfg = StacConfig.from_values(dataclasses.asdict(cfg))
    if settings_file is not None:
        stac_cfg = StacConfig.from_toml(settings_file, stac_cfg)
    return source_class("stac")(specs, stac_cfg, catalog=catalog or PLANETARY_COMPUTER, **kw)


def _fetch_stac(
    csv: Path, out: Path, cfg: FetchConfig, *, dry_run: bool, only, groups, s1_scenes, echo: Echo,
    show_progress: bool, catalog: str | None, settings_file: Path | None, jobs: int,
    executor: str, ray_address: str | None,
) -> FetchSummary:  # fmt: skip
    specs = read_events(
        csv, aoi_km2=cfg.aoi_km2, scale=cfg.scale, only=set(only or ()) or None, groups=groups,
        s1_scenes=s1_scenes,
    )  # fmt: skip
    source = stac_source(specs, cfg, catalog=catalog, settings_file=settings_file, echo=echo)
    if dry_run:
        return _with_warnings(plan_events(source, echo=echo), source.warnings)
    if executor == "ray":
        return _fetch_parallel(source, out, echo, _parts_on_ray(source, out, ray_address))
    if jobs > 1 and len(specs) > 1:
        return _fetch_parallel(source, out, echo, _parts_in_processes(source, out, jobs))
    summary = build_events(source, out, progress=show_progress, echo=echo, desc="events")
    return _with_warnings(summary, source.warnings)


Part = tuple[BuildSummary, list[str], list[str]]  # one event's summary, lines and warnings


def _fetch_parallel(source, out: Path, echo: Echo, parts: Iterator[Part]) -> FetchSummary:
    """Events of a STAC fetch built apart, in worker processes or Ray tasks (`parts`, a generator
    that starts when iterated, yields each event's result as it ends); the driver runs in each
    worker for its event, so skipping, failure isolation and clean-up are the same as in one
    process."""

    out = Path(out)
    check_writable(out)
    if not any(out.iterdir()):
        mark(out, "data")
    summary = FetchSummary()
    seen_warnings: dict[str, None] = {}
    seen_lines: set[str] = set()
    source.download_static_files()
    for part, lines, warnings in parts:
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


def _parts_in_processes(source, out: Path, jobs: int) -> Iterator[Part]:
    """`jobs` events at a time, one spawned worker process each (no GDAL or thread state is
    inherited)."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(jobs, len(source.specs)), mp_context=ctx) as pool:
        futures = [
            pool.submit(_build_one_event, spec, source.cfg, source.catalog, source.layers, out)
            for spec in source.specs
        ]
        for future in as_completed(futures):
            yield future.result()


def _parts_on_ray(source, out: Path, address: str | None) -> Iterator[Part]:
    """Every event a Ray task of one CPU; an event whose task dies is reported failed, the
    others go on."""
    with connect(address) as ray:
        remote = ray.remote(num_cpus=1)(_build_one_event)
        flying = {
            remote.remote(spec, source.cfg, source.catalog, source.layers, Path(out)): spec
            for spec in source.specs
        }
        while flying:
            ready, _ = ray.wait(list(flying), num_returns=1)
            spec = flying.pop(ready[0])
            try:
                part = ray.get(ready[0])
            except ray.exceptions.RayError as exc:  # the worker died; the driver in it
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                msg = f"event {spec.event_id}: {first}"  # (it catches everything else)
                part = BuildSummary(failed={spec.event_id: msg}), [f"FAILED {msg}"], []
            yield part


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
