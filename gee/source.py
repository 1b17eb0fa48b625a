"""Earth Engine as a data source: an EventSpec in, a finished event folder out.

For each event (EventRun) the server is asked, in this order: the facts (which scenes each
window holds per pass and level; a window too empty for the layers fails the event with a hint
before any pixel is computed), whether the assets exist, the per-event constants, and the pixels
of the layer stack (lsd.gee.pixels: direct downloads split by tile and band group, or a batch
export to Cloud Storage or Drive for large areas). Provenance for event.json is assembled on the
client from those answers. The layers are the event's own (its events.csv `layers` / `s1_scenes`
cells) or the source's. The label is burnt locally from the inventory polygons. Every event is
independent, so the driver reports a failed one and goes on with the rest.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsd.events import event_record, write_event
from lsd.gee import pixels
from lsd.gee.config import (
    FILLED_FROM_GLO30,
    S1_COLLECTION,
    FetchConfig,
    dem_asset_for,
    fetch_conventions,
    snow_mask_value,
)
from lsd.labels import label_record, rasterize_labels
from lsd.layers import LANDCOVER_LAYER, PAPER_LAYERS
from lsd.rasters import Grid
from lsd.sources import EventFailed
from lsd.spec import EventSpec, aoi_in_utm, describe_spec, event_grid, unwrap_lon

Echo = Callable[[str], None]
Sleep = Callable[[float], None]


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- planning


def plan_event(
    spec: EventSpec, cfg: FetchConfig, layers: Sequence[str] = PAPER_LAYERS
) -> dict[str, Any]:
    """What would be fetched for this event, computed locally (no credentials needed)."""

    grid = event_grid(spec, cfg.scale)
    lon0, lat0, lon1, lat1 = unwrap_lon(spec.aoi).bounds
    groups = pixels.band_groups(len(layers))
    tiles = pixels.plan_tiles(grid, max(len(g) for g in groups))
    return {
        "event_id": spec.event_id,
        "summary": f"{spec.date.isoformat()}, role {spec.role or '-'}",
        "aoi_bounds_lonlat": [round(v, 6) for v in (lon0, lat0, lon1, lat1)],
        "aoi_parts": len(getattr(spec.aoi, "geoms", [spec.aoi])),
        "aoi_km2": round(aoi_in_utm(spec).area / 1e6, 6),
        "utm_epsg": spec.utm_epsg,
        "grid": f"{grid.width} x {grid.height} px at {cfg.scale:g} m",
        "pre_window": "..".join(spec.pre.as_strings()),
        "post_window": "..".join(spec.post.as_strings()),
        "collections": [S1_COLLECTION, f"Sentinel-2 {cfg.s2_level}", f"cloud mask: {cfg.s2_cloud}"],
        "orbit": spec.orbit,
        "dem": dem_asset_for(spec, cfg),
        "inventory": str(spec.inventory) if spec.inventory else None,
        "role": spec.role,
        "layers": f"{len(layers)}: {', '.join(layers)}",
        "conventions": f"flattening {cfg.look_convention}, distortion_flags "
        f"{cfg.distortion_flags}, radar_scale db, snow_mask {snow_mask_value(cfg)}",
        "requests": f"{len(tiles) * len(groups)} ({len(tiles)} tile(s) x {len(groups)} band "
        f"group(s) of at most {pixels.MAX_BANDS_PER_REQUEST} layers)",
    }


# --------------------------------------------------------------------------- the source


@dataclass
class EarthEngineSource:
    """lsd.sources.DataSource over Earth Engine; ee must be initialised before `build`."""

    specs: Sequence[EventSpec]
    cfg: FetchConfig = field(default_factory=FetchConfig)
    layers: tuple[str, ...] = PAPER_LAYERS
    export: str | None = None  # None: direct downloads; "drive" or "gcs": batch export
    bucket: str | None = None
    write_label: bool = True  # False for a prediction area, which has no inventory
    sleep: Sleep | None = None
    echo: Echo = _err
    show_progress: bool = True
    counts_online: bool = False  # a dry run asks the server for scenes and assets when signed in
    graphs_dir: Path | None = None  # write each request's graph there (lsd.gee.graphs)
    warnings: list[str] = field(default_factory=list)  # for the run's summary

    name = "earthengine"
    keep_going = True

    def items(self) -> Sequence[EventSpec]:
        return self.specs

    def layers_for(self, spec: EventSpec) -> tuple[str, ...]:
        """The event's own layers (its events.csv row) or else the source's."""
        return tuple(spec.layers) or tuple(self.layers)

    def plan(self, spec: EventSpec) -> dict[str, Any]:
        """The local plan; signed in, also what the server says (scenes, choices, problems).
        With graphs_dir, each request's graph is written; without a session the choices the
        server would make (pass, level) are assumed and the constants stay in the graph."""
        import ee

        run = EventRun(self, spec)
        plan = plan_event(spec, self.cfg, run.layers)
        if self.counts_online:
            try:
                run.check()
                if not run.problems and self.graphs_dir:
                    run.fetch_constants()
            except ee.EEException as exc:
                run.problems.append(f"event {spec.event_id}: Earth Engine: {_first_line(exc)}")
            plan.update(run.plan_lines())
        if self.graphs_dir:
            run.write_graphs()
            where = str(self.graphs_dir / spec.event_id)
            plan["graphs"] = where if self.counts_online else f"{where} (choices assumed)"
        return plan

    def build(self, spec: EventSpec, folder: Path) -> None:
        fetch_event(self, spec, folder)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.echo(f"warning: {message}")

    # ---------------------------------------------------------------- server calls

    def retry_note(self, event_id: str) -> Callable[[BaseException, float], None]:
        def note(exc: BaseException, delay: float) -> None:
            self.echo(
                f"event {event_id}: Earth Engine busy ({str(exc)[:80]}); retry in {delay:g} s"
            )

        return note

    def get_info(self, obj: Any, event_id: str) -> Any:

        return pixels.with_retries(
            obj.getInfo, sleep=self.sleep, on_retry=self.retry_note(event_id)
        )


# --------------------------------------------------------------------------- one event


class EventRun:
    """One event's requests in order: facts, assets, constants, then the tile image."""

    def __init__(self, src: EarthEngineSource, spec: EventSpec) -> None:
        from lsd.gee.event_facts import assumed_resolution

        self.src, self.spec, self.cfg = src, spec, src.cfg
        self.layers = src.layers_for(spec)
        self.facts: dict[str, Any] = {}
        self.resolved = assumed_resolution(spec, src.cfg)
        self.problems: list[str] = []
        self.notes: list[str] = []  # warnings of this event
        self.dropped: dict[str, list[str]] = {}
        self.scenes: dict[str, Any] = {}  # window -> Sentinel-1 acquisitions of scene layers
        self.unavailable: dict[str, str | None] = {}
        self.constants: Any = None

    def check(self) -> None:
        """The facts request and the asset checks: choices, problems and warnings."""
        from lsd.gee import event_facts as ef
        from lsd.gee import event_graph as gl

        spec, cfg, layers = self.spec, self.cfg, self.layers
        request = ef.facts_request(spec, cfg, layers, gl.aoi_geometry(spec))
        self.facts = self.src.get_info(request, spec.event_id)
        outcome = ef.resolve(spec, cfg, layers, self.facts)
        self.resolved, self.dropped = outcome.resolved, outcome.dropped
        self.scenes = outcome.scenes
        self.problems += outcome.problems
        self.notes += outcome.warnings
        self._check_assets()

    def _check_assets(self) -> None:
        from lsd.gee import event_facts as ef
        from lsd.gee import event_graph as gl

        spec, layers = self.spec, self.layers
        needed = {}
        dem = dem_asset_for(spec, self.cfg)
        if spec.dem_asset:
            needed[spec.dem_asset] = "the event's dem"
        elif dem in FILLED_FROM_GLO30 and gl.needs_dem(layers):
            needed[dem] = "high_latitude_dem"
        auto_model = spec.flattening == "auto" and bool(ef.s1_windows(layers))
        if LANDCOVER_LAYER in layers or auto_model:
            needed[self.cfg.worldcover_asset] = "worldcover_asset"
        for asset, why in needed.items():
            if not gl.asset_available(asset):
                self.problems.append(
                    f"event {spec.event_id}: asset {asset} ({why}) does not exist or your "
                    "account cannot read it"
                )
        self.unavailable = gl.unavailable_aux_layers(self.cfg, layers)
        for layer, asset in sorted(self.unavailable.items()):
            if asset:
                self.problems_or_notes(
                    f"event {spec.event_id}: asset {asset} does not exist or your account cannot "
                    f"read it; {layer} is NaN"
                )
            else:
                self.notes.append(
                    f"event {spec.event_id}: no {layer} asset is configured (docs/layers.md, "
                    f"'{layer}'); {layer} is NaN"
                )

    def problems_or_notes(self, message: str) -> None:
        """A missing auxiliary asset fails a dry run (fix it before downloading) but only
        warns in a fetch, where the layer becomes NaN and the stack keeps its shape."""
        (self.problems if self.src.counts_online else self.notes).append(message)

    def plan_lines(self) -> dict[str, Any]:
        from lsd.gee import event_facts as ef

        counts = ef.counts_from_facts(self.facts, self.resolved)
        out: dict[str, Any] = {
            "counts": ", ".join(f"{k} {counts[k]}" for k in sorted(counts)) or "-",
            "s1_passes": ", ".join(self.resolved.passes),
            "s2_level": self.resolved.s2_level,
        }
        if self.scenes:
            out["s1_scenes"] = self.scene_line()
        if self.notes:
            out["warnings"] = list(self.notes)
        if self.problems:
            out["problems"] = list(self.problems)
        return out

    def scene_line(self) -> str:
        """The chosen acquisitions, nearest the event first: 'DESCENDING: pre 2019-07-24 (1
        image), ...; post ...'."""
        parts = []
        for window, acqs in self.scenes.items():
            days = ", ".join(f"{a.key[:10]} ({len(a.ids)} image(s))" for a in acqs)
            parts.append(f"{window} {days or 'none'}")
        return f"{self.resolved.passes[0]}: " + "; ".join(parts)

    def fetch_constants(self) -> None:
        from lsd.gee import event_facts as ef
        from lsd.gee import event_graph as gl

        names = set(self.layers) - set(self.unavailable)
        if not (ef.s1_windows(names) or LANDCOVER_LAYER in names):
            self.constants = ef.Constants()
            return
        request = gl.constants_request(self.spec, self.cfg, sorted(names), self.resolved)
        constants = ef.parse_constants(self.src.get_info(request, self.spec.event_id))
        if self.scenes:  # chosen on the client from the facts; the tiles carry their ids
            constants = dataclasses.replace(constants, s1_scenes=self.scenes)
        self.constants = constants

    @property
    def conventions(self) -> dict[str, dict[str, str]]:
        """What this event's stack means (lsd.conventions), for event.json and its tags: the
        settings' radar conventions and what this event's layers decided (snow, DEM, land
        cover, masking)."""
        from lsd.gee.event_graph import layer_conventions

        return {
            **fetch_conventions(self.cfg),
            **layer_conventions(self.spec, self.cfg, self.layers, self.resolved),
        }

    def image(self) -> Any:
        from lsd.gee import event_graph as gl

        return gl.build_event_image(
            self.spec, self.cfg, self.layers, unavailable=frozenset(self.unavailable),
            resolved=self.resolved, constants=self.constants,
        )  # fmt: skip

    def provenance(self) -> dict[str, Any]:
        from lsd.gee import event_facts as ef
        from lsd.gee import event_graph as gl

        out = gl.event_provenance(
            self.spec, self.cfg, self.layers, self.resolved, self.constants,
            unavailable=frozenset(self.unavailable),
        )  # fmt: skip
        out.update(ef.scene_summary(self.facts, self.resolved))
        if any(self.dropped.values()):
            out["s2_dropped_no_cloud_probability"] = self.dropped
        if self.notes:
            out["warnings"] = list(self.notes)
        return out

    def write_graphs(self) -> None:
        from lsd.gee import graphs

        graphs.write_event_graphs(
            self.src.graphs_dir / self.spec.event_id, self.spec, self.cfg, self.layers,
            self.resolved, self.constants, frozenset(self.unavailable),
        )  # fmt: skip


def fetch_event(src: EarthEngineSource, spec: EventSpec, folder: Path) -> None:
    """Write one event folder; raises EventFailed with a one-line reason.

    Returns without event.json only when a Drive export waits for the user to download it.
    """
    import ee

    grid = event_grid(spec, src.cfg.scale)
    run = EventRun(src, spec)
    try:
        run.check()
        if run.problems:
            raise EventFailed("; ".join(run.problems))
        for note in run.notes:
            src.warn(note)
        run.fetch_constants()
        if src.graphs_dir:
            run.write_graphs()
        stack = pixels.stack_writer(run, grid, folder)
        if stack is None:
            return  # Drive: the user downloads the file; a rerun finishes the event
        label = None
        if src.write_label:
            label = rasterize_labels(
                spec.inventory, spec.aoi, grid, warn=src.echo, event_id=spec.event_id
            )
        write_event(folder, _record(src, spec, grid, run), grid=grid, stack=stack, label=label)
    except ee.EEException as exc:
        raise EventFailed(f"event {spec.event_id}: Earth Engine: {_first_line(exc)}") from None
    (folder / pixels.EXPORT_NOTE).unlink(missing_ok=True)


def _record(src: EarthEngineSource, spec: EventSpec, grid: Grid, run: EventRun) -> dict[str, Any]:
    from lsd.gee import event_facts as ef

    source = {
        "kind": EarthEngineSource.name,
        "event": describe_spec(spec),
        "windows": {
            "pre": list(spec.pre.as_strings()),
            "post": list(spec.post.as_strings()),
            "end_exclusive": True,
        },
        "image_counts": ef.counts_from_facts(run.facts, run.resolved),
        "s1_passes": list(run.resolved.passes),
        "s2_level": run.resolved.s2_level,
        "unavailable_layers": sorted(run.unavailable),
        "provenance": run.provenance(),
        "mode": src.export or "computePixels",
        "config": dataclasses.asdict(src.cfg),
    }
    label = label_record(spec.inventory) if src.write_label else None
    return event_record(
        spec.event_id, layers=run.layers, grid=grid, source=source, role=spec.role, label=label,
        conventions=run.conventions,
    )  # fmt: skip
