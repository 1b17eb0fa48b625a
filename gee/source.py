"""Earth Engine as a data source: an EventSpec in, a finished event folder out.

For each event the server is asked three things, in this order: how many scenes each window holds
(an empty window fails the event with a hint before any pixel is computed), the provenance facts
for event.json, and the pixels of the layer stack (tiled direct downloads, or a batch export to
Cloud Storage or Drive for large areas). The label is burnt locally from the inventory polygons.
Every event is independent, so the driver reports a failed one and goes on with the rest.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsd.events import event_complete, event_record, write_event
from lsd.files import write_json
from lsd.gee.config import S1_COLLECTION, S2_SR_COLLECTION, FetchConfig, dem_asset_for
from lsd.labels import rasterize_labels
from lsd.layergroups import S1_POLARISATIONS, s1_scene_of, scenes_needed, windows_needed
from lsd.layers import PAPER_LAYERS
from lsd.rasters import Grid
from lsd.sources import EventFailed
from lsd.spec import EventSpec, aoi_in_utm, describe_spec, event_grid

Echo = Callable[[str], None]
Sleep = Callable[[float], None]

EXPORT_FILE = "export.tif"  # a finished export the user dropped into the event folder
EXPORT_NOTE = "export.json"
EXPORT_MODES = ("drive", "gcs")
DRIVE_FOLDER = "lsd"


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
    from lsd.gee import download

    grid = event_grid(spec, cfg.scale)
    lon0, lat0, lon1, lat1 = spec.aoi.bounds
    groups = download.band_groups(len(layers))
    tiles = download.plan_tiles(grid, max(len(g) for g in groups))
    return {
        "event_id": spec.event_id,
        "summary": f"{spec.date.isoformat()}, role {spec.role or '-'}",
        "aoi_bounds_lonlat": [round(v, 6) for v in (lon0, lat0, lon1, lat1)],
        "aoi_km2": round(aoi_in_utm(spec).area / 1e6, 6),
        "utm_epsg": spec.utm_epsg,
        "grid": f"{grid.width} x {grid.height} px at {cfg.scale:g} m",
        "pre_window": "..".join(spec.pre.as_strings()),
        "post_window": "..".join(spec.post.as_strings()),
        "collections": [S1_COLLECTION, S2_SR_COLLECTION, f"cloud mask: {cfg.s2_cloud}"],
        "orbit": spec.orbit,
        "dem": dem_asset_for(spec),
        "inventory": str(spec.inventory) if spec.inventory else None,
        "role": spec.role,
        "layers": f"{len(layers)}: {', '.join(layers)}",
        "requests": f"{len(tiles) * len(groups)} ({len(tiles)} tile(s) x {len(groups)} band "
        f"group(s) of at most {download.MAX_BANDS_PER_REQUEST} layers)",
    }


def window_problems(spec: EventSpec, counts: dict[str, Any], layers: Sequence[str]) -> list[str]:
    """Windows too empty for the requested layers, as one user-facing sentence each: no image
    at all, or fewer Sentinel-1 acquisitions than the single-scene layers ask for."""
    needs = windows_needed(layers)
    scenes = scenes_needed(layers)
    problems = []
    for key in ("s1_pre", "s1_post", "s2_pre", "s2_post"):
        if key not in needs:
            continue
        sensor, kind = key.split("_")
        window = "..".join((spec.pre if kind == "pre" else spec.post).as_strings())
        one_orbit = sensor == "s1" and spec.orbit != "BOTH"
        passes = f" ({spec.orbit} passes)" if one_orbit else ""
        hint = f"widen it with {kind}_days" + (" or set orbit BOTH" if one_orbit else "")
        if int(counts.get(key) or 0) == 0:
            name = "Sentinel-1" if sensor == "s1" else "Sentinel-2"
            problems.append(
                f"event {spec.event_id}: no {name} images{passes} in {kind} window {window}; {hint}"
            )
        elif sensor == "s1" and scenes[kind]:
            found = int(counts.get(f"{key}_acquisitions") or 0)
            if found < scenes[kind]:
                wanted = {(kind, pol, scenes[kind]) for pol in S1_POLARISATIONS}
                farthest = next(n for n in layers if s1_scene_of(n) in wanted)
                problems.append(
                    f"event {spec.event_id}: {kind} window {window} holds {found} Sentinel-1 "
                    f"acquisition(s){passes}, {scenes[kind]} asked for ({farthest}); {hint}"
                )
    return problems


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
    counts_online: bool = False  # a dry run asks the server for image counts when signed in

    name = "earthengine"
    keep_going = True

    def items(self) -> Sequence[EventSpec]:
        return self.specs

    def layers_for(self, spec: EventSpec) -> tuple[str, ...]:
        """The event's own layers (its events.csv row) or else the source's."""
        return tuple(spec.layers) or tuple(self.layers)

    def plan(self, spec: EventSpec) -> dict[str, Any]:
        plan = plan_event(spec, self.cfg, self.layers_for(spec))
        if self.counts_online:
            plan["counts"] = self._count_line(spec)
        return plan

    def build(self, spec: EventSpec, folder: Path) -> None:
        fetch_event(self, spec, folder)

    # ---------------------------------------------------------------- server calls

    def retry_note(self, event_id: str) -> Callable[[BaseException, float], None]:
        def note(exc: BaseException, delay: float) -> None:
            self.echo(
                f"event {event_id}: Earth Engine busy ({str(exc)[:80]}); retry in {delay:g} s"
            )

        return note

    def get_info(self, obj: Any, event_id: str) -> Any:
        from lsd.gee import download

        return download.with_retries(
            obj.getInfo, sleep=self.sleep, on_retry=self.retry_note(event_id)
        )

    def _count_line(self, spec: EventSpec) -> str:
        import ee

        from lsd.gee import layers as gl

        layers = self.layers_for(spec)
        try:
            counts = self.get_info(gl.window_counts(spec, self.cfg, layers), spec.event_id)
        except ee.EEException as exc:
            return f"not counted ({_first_line(exc)})"
        line = ", ".join(f"{k} {counts.get(k)}" for k in sorted(counts))
        problems = window_problems(spec, counts, layers)
        if problems:
            line += " | EMPTY: " + "; ".join(p.split(": ", 1)[1] for p in problems)
        return line


# --------------------------------------------------------------------------- one event


@dataclass
class _ServerFacts:
    layers: tuple[str, ...]
    counts: dict[str, Any]
    unavailable: frozenset[str]
    image: Any  # ee.Image of the requested layers
    provenance: dict[str, Any]


def _server_facts(src: EarthEngineSource, spec: EventSpec) -> _ServerFacts:
    """Image counts (failing early on an empty window), auxiliary assets, graph, provenance."""
    from lsd.gee import layers as gl

    layers = src.layers_for(spec)
    counts = src.get_info(gl.window_counts(spec, src.cfg, layers), spec.event_id)
    problems = window_problems(spec, counts, layers)
    if problems:
        raise EventFailed("; ".join(problems))
    missing = gl.unavailable_aux_layers(src.cfg, layers)
    for layer, asset in sorted(missing.items()):
        src.echo(f"warning: event {spec.event_id}: asset {asset} unavailable; {layer} is NaN")
    unavailable = frozenset(missing)
    image = gl.build_event_image(spec, src.cfg, layers, unavailable=unavailable)
    provenance = src.get_info(
        gl.event_provenance(spec, src.cfg, layers, unavailable=unavailable), spec.event_id
    )
    return _ServerFacts(layers, counts, unavailable, image, provenance)


def fetch_event(src: EarthEngineSource, spec: EventSpec, folder: Path) -> None:
    """Write one event folder; raises EventFailed with a one-line reason.

    Returns without event.json only when a Drive export waits for the user to download it.
    """
    import ee

    grid = event_grid(spec, src.cfg.scale)
    try:
        facts = _server_facts(src, spec)
        stack = _stack_writer(src, spec, facts, grid, folder)
        if stack is None:
            return  # Drive: the user downloads the file; a rerun finishes the event
        label = None
        if src.write_label:
            label = rasterize_labels(
                spec.inventory, spec.aoi, grid, warn=src.echo, event_id=spec.event_id
            )
        write_event(folder, _record(src, spec, grid, facts), grid=grid, stack=stack, label=label)
    except ee.EEException as exc:
        raise EventFailed(f"event {spec.event_id}: Earth Engine: {_first_line(exc)}") from None
    (folder / EXPORT_NOTE).unlink(missing_ok=True)


def _record(
    src: EarthEngineSource, spec: EventSpec, grid: Grid, facts: _ServerFacts
) -> dict[str, Any]:
    source = {
        "kind": EarthEngineSource.name,
        "event": describe_spec(spec),
        "windows": {
            "pre": list(spec.pre.as_strings()),
            "post": list(spec.post.as_strings()),
            "end_exclusive": True,
        },
        "image_counts": facts.counts,
        "unavailable_layers": sorted(facts.unavailable),
        "provenance": facts.provenance,
        "mode": src.export or "computePixels",
        "config": dataclasses.asdict(src.cfg),
    }
    label = None
    if src.write_label:
        label = {
            "inventory": str(spec.inventory) if spec.inventory else None,
            "rule": "pixel centre inside a polygon (all_touched=False)",
            "outside_aoi": "255 (unknown); the whole label is 255 without an inventory",
        }
    return event_record(
        spec.event_id, layers=facts.layers, grid=grid, source=source, role=spec.role, label=label
    )


def _stack_writer(
    src: EarthEngineSource, spec: EventSpec, facts: _ServerFacts, grid: Grid, folder: Path
) -> Callable[[Path], None] | None:
    """How stack.tif gets written: from an export the user dropped in, from a batch export, or
    by tiled downloads. None when a Drive export must first be downloaded by the user."""
    from lsd.gee import download

    layers = facts.layers
    folder.mkdir(parents=True, exist_ok=True)
    dropped = folder / EXPORT_FILE
    if dropped.is_file():
        src.echo(f"event {spec.event_id}: converting {dropped}")
        return lambda dest: download.geotiff_to_stack(dropped, dest, layers, grid)
    if src.export:
        exported = _run_export(src, spec, facts.image, grid, folder)
        if exported is None:
            return None

        def from_export(dest: Path) -> None:
            download.geotiff_to_stack(exported, dest, layers, grid)
            exported.unlink(missing_ok=True)

        return from_export
    return lambda dest: _download(src, spec, facts, grid, dest)


def _download(
    src: EarthEngineSource, spec: EventSpec, facts: _ServerFacts, grid: Grid, dest: Path
) -> None:
    from tqdm import tqdm

    from lsd.gee import download

    requests = download.plan_requests(grid, len(facts.layers))
    with tqdm(
        total=len(requests), desc=spec.event_id, unit="request", leave=False,
        disable=not src.show_progress, file=sys.stderr,
    ) as bar:  # fmt: skip
        download.download_stack(
            facts.image, grid, facts.layers, dest, sleep=src.sleep, progress=bar.update,
            on_retry=src.retry_note(spec.event_id),
        )  # fmt: skip


def _run_export(
    src: EarthEngineSource, spec: EventSpec, image: Any, grid: Grid, folder: Path
) -> Path | None:
    """Run a batch export; return the downloaded GeoTIFF (gcs) or None (drive, user downloads)."""
    from lsd.gee import download
    from lsd.gee.auth import current_credentials

    note = folder / EXPORT_NOTE
    name = f"lsd_{spec.event_id}"
    where = f"Google Drive folder '{DRIVE_FOLDER}' as {name}.tif"
    if src.export == "drive" and note.is_file():
        src.echo(
            f"event {spec.event_id}: already exported to {where}; "
            f"download it to {folder / EXPORT_FILE} and rerun"
        )
        return None
    task = download.start_export(
        image, grid, name, mode=src.export or "", scale=src.cfg.scale, bucket=src.bucket,
        drive_folder=DRIVE_FOLDER,
    )  # fmt: skip
    src.echo(f"event {spec.event_id}: export task {task.id} started ({src.export})")
    download.wait_for_task(
        task, sleep=src.sleep, on_state=lambda s: src.echo(f"event {spec.event_id}: export {s}")
    )
    if src.export == "drive":
        write_json(note, {"task_id": task.id, "drive_folder": DRIVE_FOLDER, "file": f"{name}.tif"})
        src.echo(
            f"event {spec.event_id}: exported to {where}; download it to "
            f"{folder / EXPORT_FILE} and rerun lsd fetch to finish the event"
        )
        return None
    dest = folder / ".export-download.tif"
    download.download_gcs(src.bucket or "", name, dest, credentials=current_credentials())
    return dest


def is_pending(folder: Path) -> bool:
    """A Drive export waits for the user: the folder is not complete but has an export note."""
    return not event_complete(folder) and (folder / EXPORT_NOTE).is_file()
