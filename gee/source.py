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

from lsd.events import event_record, write_event
from lsd.files import write_json
from lsd.gee.config import S1_COLLECTION, S2_SR_COLLECTION, FetchConfig, dem_asset_for
from lsd.labels import rasterize_labels
from lsd.layers import LANDCOVER_LAYER, PAPER_LAYERS, S1_LAYERS
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


def plan_event(spec: EventSpec, cfg: FetchConfig) -> dict[str, Any]:
    """What would be fetched for this event, computed locally (no credentials needed)."""
    grid = event_grid(spec, cfg.scale)
    lon0, lat0, lon1, lat1 = spec.aoi.bounds
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
    }


def window_problems(spec: EventSpec, counts: dict[str, Any], layers: Sequence[str]) -> list[str]:
    """Empty windows that the requested layers need, as one user-facing sentence each."""
    wanted = set(layers)
    needs = set()
    if wanted & set(S1_LAYERS) or LANDCOVER_LAYER in wanted:
        needs |= {"s1_pre", "s1_post"} if wanted & set(S1_LAYERS) else {"s1_pre"}
    if LANDCOVER_LAYER in wanted or "dNDVI" in wanted:
        needs.add("s2_pre")
    if "dNDVI" in wanted:
        needs.add("s2_post")
    problems = []
    for key in ("s1_pre", "s1_post", "s2_pre", "s2_post"):
        if key not in needs or int(counts.get(key) or 0) != 0:
            continue
        sensor, kind = key.split("_")
        window = spec.pre if kind == "pre" else spec.post
        name = "Sentinel-1" if sensor == "s1" else "Sentinel-2"
        one_orbit = sensor == "s1" and spec.orbit != "BOTH"
        extra = f" ({spec.orbit} passes)" if one_orbit else ""
        hint = f"widen it with {kind}_days" + (" or set orbit BOTH" if one_orbit else "")
        problems.append(
            f"event {spec.event_id}: no {name} images{extra} in {kind} window "
            f"{'..'.join(window.as_strings())}; {hint}"
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

    def plan(self, spec: EventSpec) -> dict[str, Any]:
        plan = plan_event(spec, self.cfg)
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

        try:
            counts = self.get_info(gl.window_counts(spec, self.cfg), spec.event_id)
        except ee.EEException as exc:
            return f"not counted ({_first_line(exc)})"
        line = ", ".join(f"{k} {counts.get(k)}" for k in sorted(counts))
        problems = window_problems(spec, counts, self.layers)
        if problems:
            line += " | EMPTY: " + "; ".join(p.split(": ", 1)[1] for p in problems)
        return line


# --------------------------------------------------------------------------- one event


@dataclass
class _ServerFacts:
    counts: dict[str, Any]
    unavailable: frozenset[str]
    image: Any  # ee.Image of the requested layers
    provenance: dict[str, Any]


def _server_facts(src: EarthEngineSource, spec: EventSpec) -> _ServerFacts:
    """Image counts (failing early on an empty window), auxiliary assets, graph, provenance."""
    from lsd.gee import layers as gl

    counts = src.get_info(gl.window_counts(spec, src.cfg), spec.event_id)
    problems = window_problems(spec, counts, src.layers)
    if problems:
        raise EventFailed("; ".join(problems))
    missing = gl.unavailable_aux_layers(src.cfg, src.layers)
    for layer, asset in sorted(missing.items()):
        src.echo(f"warning: event {spec.event_id}: asset {asset} unavailable; {layer} is NaN")
    unavailable = frozenset(missing)
    image = gl.build_event_image(spec, src.cfg, src.layers, unavailable=unavailable)
    provenance = src.get_info(
        gl.event_provenance(spec, src.cfg, src.layers, unavailable=unavailable), spec.event_id
    )
    return _ServerFacts(counts, unavailable, image, provenance)


def fetch_event(src: EarthEngineSource, spec: EventSpec, folder: Path) -> None:
    """Write one event folder; raises EventFailed with a one-line reason.

    Returns without event.json only when a Drive export waits for the user to download it.
    """
    import ee

    grid = event_grid(spec, src.cfg.scale)
    try:
        facts = _server_facts(src, spec)
        stack = _stack_writer(src, spec, facts.image, grid, folder)
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
        spec.event_id, layers=src.layers, grid=grid, source=source, role=spec.role, label=label
    )


def _stack_writer(
    src: EarthEngineSource, spec: EventSpec, image: Any, grid: Grid, folder: Path
) -> Callable[[Path], None] | None:
    """How stack.tif gets written: from an export the user dropped in, from a batch export, or
    by tiled downloads. None when a Drive export must first be downloaded by the user."""
    from lsd.gee import download

    folder.mkdir(parents=True, exist_ok=True)
    dropped = folder / EXPORT_FILE
    if dropped.is_file():
        src.echo(f"event {spec.event_id}: converting {dropped}")
        return lambda dest: download.geotiff_to_stack(dropped, dest, src.layers, grid)
    if src.export:
        exported = _run_export(src, spec, image, grid, folder)
        if exported is None:
            return None

        def from_export(dest: Path) -> None:
            download.geotiff_to_stack(exported, dest, src.layers, grid)
            exported.unlink(missing_ok=True)

        return from_export
    return lambda dest: _download(src, spec, image, grid, dest)


def _download(src: EarthEngineSource, spec: EventSpec, image: Any, grid: Grid, dest: Path) -> None:
    from tqdm import tqdm

    from lsd.gee import download

    tiles = download.plan_tiles(grid, len(src.layers))
    with tqdm(
        total=len(tiles), desc=spec.event_id, unit="tile", leave=False,
        disable=not src.show_progress, file=sys.stderr,
    ) as bar:  # fmt: skip
        download.download_stack(
            image, grid, src.layers, dest, sleep=src.sleep, progress=bar.update,
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
