"""`lsd fetch`: events.csv -> one event folder per event (stack.tif, label.tif, event.json).

Each event is independent: a failure (empty window, Earth Engine error) is reported and the
others go on, because a 20-event fetch takes hours and one bad row should not cost the rest.
Completeness is judged by event.json, which is written last; stack and label are written under
temporary names and renamed, so an interrupted run never leaves a folder that looks finished and
a rerun redoes exactly the unfinished events.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsd import __version__, contract
from lsd.contract import (
    EVENT_FILE,
    LABEL_BACKGROUND,
    LABEL_FILE,
    LABEL_IGNORE,
    LABEL_LANDSLIDE,
    PAPER_LAYERS,
    STACK_FILE,
    Grid,
    check_writable,
    event_complete,
    write_json,
)
from lsd.errors import UserError
from lsd.gee.config import FetchConfig
from lsd.gee.events import describe_spec, event_grid, read_events
from lsd.spec import EventSpec

Echo = Callable[[str], None]

S1_LAYERS = frozenset(PAPER_LAYERS[:9])
# Auxiliary layers from third-party assets that may be missing or unshared: NaN instead of failure.
AUX_ASSETS = {"kgClimate": "kg_climate_asset", "canopyHeight": "canopy_height_asset"}
EXPORT_FILE = "export.tif"  # a finished export the user dropped into the event folder
EXPORT_NOTE = "export.json"


class EventFailed(Exception):
    """One event cannot be fetched; the message is one line that starts with the event id."""


@dataclass
class FetchSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    exported: list[str] = field(default_factory=list)  # Drive exports waiting for the user
    failed: dict[str, str] = field(default_factory=dict)
    planned: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


# --------------------------------------------------------------------------- completeness


# --------------------------------------------------------------------------- planning


def dem_choice(spec: EventSpec) -> str:
    """The DEM the graph builders will use, judged from the AOI's latitude span."""
    from lsd.gee.config import GLO30_ASSET, SRTM_ASSET, SRTM_LAT_RANGE

    if spec.dem_asset:
        return spec.dem_asset
    _, south, _, north = spec.aoi.bounds
    inside = SRTM_LAT_RANGE[0] <= south and north <= SRTM_LAT_RANGE[1]
    return SRTM_ASSET if inside else GLO30_ASSET


def grid_json(grid: Grid) -> dict[str, Any]:
    t = grid.transform
    return {
        "crs": grid.crs.to_string(),
        "width": grid.width,
        "height": grid.height,
        "transform": [t.a, t.b, t.c, t.d, t.e, t.f],
        "pixel_m": abs(t.a),
        "bounds": [t.c, t.f + t.e * grid.height, t.c + t.a * grid.width, t.f],
    }


def plan_event(spec: EventSpec, cfg: FetchConfig) -> dict[str, Any]:
    """What would be fetched for this event, computed locally (no credentials needed)."""
    from lsd.gee.config import S1_COLLECTION, S2_SR_COLLECTION
    from lsd.gee.events import aoi_in_utm

    grid = event_grid(spec, cfg.scale)
    lon0, lat0, lon1, lat1 = spec.aoi.bounds
    return {
        "id": spec.event_id,
        "date": spec.date.isoformat(),
        "aoi_bounds_lonlat": [round(v, 6) for v in (lon0, lat0, lon1, lat1)],
        "aoi_km2": round(aoi_in_utm(spec).area / 1e6, 6),
        "utm_epsg": spec.utm_epsg,
        "grid": f"{grid.width} x {grid.height} px at {cfg.scale:g} m",
        "pre_window": "..".join(spec.pre.as_strings()),
        "post_window": "..".join(spec.post.as_strings()),
        "collections": [S1_COLLECTION, S2_SR_COLLECTION, f"cloud mask: {cfg.s2_cloud}"],
        "orbit": spec.orbit,
        "dem": dem_choice(spec),
        "inventory": str(spec.inventory) if spec.inventory else None,
        "role": spec.role,
    }


def _format_plan(plan: dict[str, Any]) -> str:
    lines = [f"{plan['id']} ({plan['date']}, role {plan['role'] or '-'})"]
    for key in ("aoi_bounds_lonlat", "aoi_km2", "utm_epsg", "grid", "pre_window", "post_window",
                "collections", "orbit", "dem", "inventory", "counts"):  # fmt: skip
        if key in plan:
            value = plan[key]
            if isinstance(value, list):
                value = ", ".join(map(str, value))
            lines.append(f"  {key}: {value}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- counts


def _window_problems(spec: EventSpec, counts: dict[str, Any], layers: Sequence[str]) -> list[str]:
    """Empty windows that the requested layers need, as one user-facing sentence each."""
    wanted = set(layers)
    needs = set()
    if wanted & S1_LAYERS or "landCover" in wanted:
        needs |= {"s1_pre", "s1_post"} if wanted & S1_LAYERS else {"s1_pre"}
    if "landCover" in wanted or "dNDVI" in wanted:
        needs.add("s2_pre")
    if "dNDVI" in wanted:
        needs.add("s2_post")
    problems = []
    for key in ("s1_pre", "s1_post", "s2_pre", "s2_post"):
        if key not in needs:
            continue
        sensor, kind = key.split("_")
        window = spec.pre if kind == "pre" else spec.post
        if int(counts.get(key) or 0) == 0:
            name = "Sentinel-1" if sensor == "s1" else "Sentinel-2"
            extra = f" ({spec.orbit} passes)" if sensor == "s1" and spec.orbit != "BOTH" else ""
            hint = f"widen it with {kind}_days" + (
                " or set orbit BOTH" if sensor == "s1" and spec.orbit != "BOTH" else ""
            )
            problems.append(
                f"event {spec.event_id}: no {name} images{extra} in {kind} window "
                f"{'..'.join(window.as_strings())}; {hint}"
            )
    return problems


# --------------------------------------------------------------------------- one event


def fetch_event(
    spec: EventSpec,
    out_dir: Path,
    cfg: FetchConfig,
    layers: Sequence[str] = PAPER_LAYERS,
    *,
    write_label: bool = True,
    export: str | None = None,
    bucket: str | None = None,
    sleep: Callable[[float], None] | None = None,
    echo: Echo = _err,
    show_progress: bool = True,
) -> Path:
    """Write one event folder and return it; raises EventFailed with a one-line reason.

    ee must already be initialised (gee.auth.initialize). With write_label=False (used by
    `lsd predict --aoi`, which has no inventory) only stack.tif and event.json are written.
    """
    import ee
    from tqdm import tqdm

    from lsd.gee import download
    from lsd.gee import layers as gl
    from lsd.pipeline.labels import rasterize_labels

    layers = tuple(layers)
    event_dir = Path(out_dir) / spec.event_id
    event_dir.mkdir(parents=True, exist_ok=True)
    grid = event_grid(spec, cfg.scale)

    def retry_note(exc: BaseException, delay: float) -> None:
        echo(f"event {spec.event_id}: Earth Engine busy ({str(exc)[:80]}); retry in {delay:g} s")

    def get_info(obj: Any) -> Any:
        return download.with_retries(obj.getInfo, sleep=sleep, on_retry=retry_note)

    try:
        counts = get_info(gl.window_counts(spec, cfg))
        problems = _window_problems(spec, counts, layers)
        if problems:
            raise EventFailed("; ".join(problems))
        unavailable = set()
        for layer, attr in AUX_ASSETS.items():
            asset = getattr(cfg, attr)
            if layer in layers and not gl.asset_available(asset):
                echo(f"warning: event {spec.event_id}: asset {asset} unavailable; {layer} is NaN")
                unavailable.add(layer)
        image = gl.build_event_image(spec, cfg, layers, unavailable=frozenset(unavailable))
        provenance = get_info(
            gl.event_provenance(spec, cfg, layers, unavailable=frozenset(unavailable))
        )
    except ee.EEException as exc:
        raise EventFailed(f"event {spec.event_id}: Earth Engine: {_first_line(exc)}") from None

    stack_path = event_dir / STACK_FILE
    dropped = event_dir / EXPORT_FILE
    try:
        if dropped.is_file():
            echo(f"event {spec.event_id}: converting {dropped}")
            download.geotiff_to_stack(dropped, stack_path, layers, grid)
        elif export:
            exported = _run_export(spec, image, grid, cfg, export, bucket, event_dir, sleep, echo)
            if exported is None:
                return event_dir  # Drive: the user downloads the file; a rerun finishes it
            download.geotiff_to_stack(exported, stack_path, layers, grid)
            exported.unlink(missing_ok=True)
        else:
            tiles = download.plan_tiles(grid, len(layers))
            with tqdm(
                total=len(tiles),
                desc=f"{spec.event_id}",
                unit="tile",
                leave=False,
                disable=not show_progress,
                file=sys.stderr,
            ) as bar:
                download.download_stack(
                    image, grid, layers, stack_path, sleep=sleep,
                    progress=bar.update, on_retry=retry_note,
                )  # fmt: skip
    except ee.EEException as exc:
        raise EventFailed(f"event {spec.event_id}: Earth Engine: {_first_line(exc)}") from None

    if write_label:
        label = rasterize_labels(spec.inventory, spec.aoi, grid, warn=echo, event_id=spec.event_id)
        contract.write_label(event_dir / LABEL_FILE, label, grid)

    meta = {
        "id": spec.event_id,
        "role": spec.role,
        "event": describe_spec(spec),
        "layers": list(layers),
        "grid": grid_json(grid),
        "windows": {
            "pre": list(spec.pre.as_strings()),
            "post": list(spec.post.as_strings()),
            "end_exclusive": True,
        },
        "image_counts": counts,
        "unavailable_layers": sorted(unavailable),
        "provenance": provenance,
        "label": {
            "written": write_label,
            "inventory": str(spec.inventory) if spec.inventory else None,
            "codes": {
                str(LABEL_LANDSLIDE): "landslide",
                str(LABEL_BACKGROUND): "not landslide",
                str(LABEL_IGNORE): "unknown (outside the AOI, or no inventory)",
            },
            "rule": "pixel centre inside a polygon (all_touched=False)",
        },
        "fetch": {
            "mode": export or "computePixels",
            "config": dataclasses.asdict(cfg),
        },
        "lsd_version": __version__,
        "fetched_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_json(event_dir / EVENT_FILE, meta)
    (event_dir / EXPORT_NOTE).unlink(missing_ok=True)
    return event_dir


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _run_export(
    spec: EventSpec,
    image: Any,
    grid: Grid,
    cfg: FetchConfig,
    mode: str,
    bucket: str | None,
    event_dir: Path,
    sleep: Callable[[float], None],
    echo: Echo,
) -> Path | None:
    """Run a batch export; return the downloaded GeoTIFF (gcs) or None (drive, user downloads)."""
    from lsd.gee import download
    from lsd.gee.auth import current_credentials

    note = event_dir / EXPORT_NOTE
    name = f"lsd_{spec.event_id}"
    if mode == "drive" and note.is_file():
        echo(
            f"event {spec.event_id}: already exported to Google Drive folder 'lsd' as {name}.tif; "
            f"download it to {event_dir / EXPORT_FILE} and rerun"
        )
        return None
    task = download.start_export(image, grid, name, mode=mode, scale=cfg.scale, bucket=bucket)
    echo(f"event {spec.event_id}: export task {task.id} started ({mode})")
    download.wait_for_task(
        task, sleep=sleep, on_state=lambda s: echo(f"event {spec.event_id}: export {s}")
    )
    if mode == "drive":
        write_json(note, {"task_id": task.id, "drive_folder": "lsd", "file": f"{name}.tif"})
        echo(
            f"event {spec.event_id}: exported to Google Drive folder 'lsd' as {name}.tif; "
            f"download it to {event_dir / EXPORT_FILE} and rerun lsd fetch to finish the event"
        )
        return None
    dest = event_dir / ".export-download.tif"
    download.download_gcs(bucket or "", name, dest, credentials=current_credentials())
    return dest


# --------------------------------------------------------------------------- all events


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
    layers: Sequence[str] = PAPER_LAYERS,
    sleep: Callable[[float], None] | None = None,
    echo: Echo = print,
    show_progress: bool = True,
) -> FetchSummary:
    """Fetch every event of the CSV into `out`; failures are collected, not raised."""
    from tqdm import tqdm

    from lsd.gee import auth

    cfg = cfg or FetchConfig()
    if export not in (None, "drive", "gcs"):
        raise UserError(f"--export must be drive or gcs, got '{export}'")
    if export == "gcs" and not bucket:
        raise UserError("--export gcs needs --bucket B (a Cloud Storage bucket you can write)")
    specs = read_events(csv, aoi_km2=cfg.aoi_km2, scale=cfg.scale, only=set(only or ()) or None)
    summary = FetchSummary()

    if dry_run:
        online = False
        try:
            auth.initialize(project)
            online = True
        except UserError as exc:
            echo(f"{exc}; showing the plan without image counts")
        for spec in specs:
            plan = plan_event(spec, cfg)
            if online:
                _count_for_plan(spec, cfg, layers, plan, sleep)
            summary.planned.append(plan)
            echo(_format_plan(plan))
        return summary

    out = check_writable(out)
    auth.initialize(project)
    with tqdm(
        specs, desc="events", unit="event", disable=not show_progress, file=sys.stderr
    ) as bar:
        for spec in bar:
            bar.set_postfix_str(spec.event_id)
            event_dir = out / spec.event_id
            if event_complete(event_dir):
                summary.skipped.append(spec.event_id)
                echo(f"{spec.event_id}: already complete, skipped")
                continue
            try:
                fetch_event(
                    spec, out, cfg, layers, export=export, bucket=bucket, sleep=sleep,
                    echo=echo, show_progress=show_progress,
                )  # fmt: skip
            except (EventFailed, UserError) as exc:
                summary.failed[spec.event_id] = str(exc)
                echo(f"FAILED {exc}")
                continue
            except Exception as exc:  # one broken event must not stop the rest
                msg = f"event {spec.event_id}: {type(exc).__name__}: {_first_line(exc)}"
                summary.failed[spec.event_id] = msg
                echo(f"FAILED {msg}")
                continue
            if event_complete(event_dir):
                summary.done.append(spec.event_id)
                echo(f"{spec.event_id}: done -> {event_dir}")
            else:
                summary.exported.append(spec.event_id)
    return summary


def _count_for_plan(
    spec: EventSpec,
    cfg: FetchConfig,
    layers: Sequence[str],
    plan: dict[str, Any],
    sleep: Callable[[float], None],
) -> None:
    import ee

    from lsd.gee import download
    from lsd.gee import layers as gl

    try:
        counts = download.with_retries(gl.window_counts(spec, cfg).getInfo, sleep=sleep)
    except ee.EEException as exc:
        plan["counts"] = f"not counted ({_first_line(exc)})"
        return
    plan["counts"] = ", ".join(f"{k} {counts.get(k)}" for k in sorted(counts))
    problems = _window_problems(spec, counts, layers)
    if problems:
        plan["counts"] += " | EMPTY: " + "; ".join(p.split(": ", 1)[1] for p in problems)


def summary_lines(summary: FetchSummary) -> list[str]:
    lines = [
        f"{len(summary.done)} fetched, {len(summary.skipped)} already complete, "
        f"{len(summary.exported)} exported to Drive, {len(summary.failed)} failed"
    ]
    lines += [f"  failed: {msg}" for msg in summary.failed.values()]
    return lines
