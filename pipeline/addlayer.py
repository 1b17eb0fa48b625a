"""`lsd add-layer`: any raster a user brings, placed on each event's grid as a named layer.

Layers Earth Engine cannot make (interferometric coherence, H/A/alpha from SNAP, a national 1 m
DEM) are computed elsewhere in whatever CRS and resolution; here they are reprojected onto the
event's 10 m UTM grid (rasterio.warp.reproject, i.e. GDAL's warper) and appended to its stack
through lsd.events.append_layers, which also records their source in event.json.

Everything is checked for every event before the first folder changes: names, CRS, overlap and
coverage (a pass that reprojects and throws the pixels away), so a mistake never leaves half the
events with the layer. A rerun skips events that already hold the layer from the same raster.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from pyproj import Geod, Transformer
from rasterio.warp import Resampling, reproject
from shapely.geometry import box
from tqdm import tqdm

from lsd import __version__
from lsd.errors import InputNotFound, InvalidFile, InvalidValue
from lsd.events import STACK_FILE, EventFolder, append_layers, list_events, read_event
from lsd.formats import open_raster
from lsd.limits import check_real
from lsd.rasters import Grid
from lsd.spec import to_crs

RESAMPLINGS: tuple[str, ...] = ("bilinear", "cubic", "average", "nearest", "mode")
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2", ".nc", ".dem", ".asc")
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")

Echo = Callable[[str], None]


@dataclass(frozen=True)
class LayerSource:
    """What to add: the raster's bands (1-based) as the named layers, and how to resample."""

    names: tuple[str, ...]
    bands: tuple[int, ...] | None = None  # None: every band of the raster
    resampling: str = "bilinear"
    allow_partial: bool = False


@dataclass(frozen=True)
class Placement:
    """One event's share of the job: which raster, and how much of the grid it fills."""

    event: EventFolder
    raster: Path
    bands: tuple[int, ...]
    coverage: float  # share of the grid's pixels that get a value
    skip: bool = False  # the event already holds these layers from this raster


# --------------------------------------------------------------------------- checks


def check_names(given: Sequence[str]) -> tuple[str, ...]:
    """The new layers' names (('coh',) or ('H', 'A', 'alpha')); they must work in settings lists
    and TOML."""
    names = tuple(str(n).strip() for n in given)
    if not names or any(not n for n in names):
        raise InvalidValue(
            "name is empty; give a layer name such as coh, or H,A,alpha", field="name"
        )
    for n in names:
        if not _NAME_RE.match(n):
            raise InvalidValue(
                f"name '{n}' is not a layer name: use letters, digits, '_', '.' or '-', starting "
                "with a letter, and no spaces",
                field="name",
            )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidValue(f"name '{dupes[0]}' is given twice", field="name")
    return names


def _events(data: Path, only: Sequence[str] | None) -> list[EventFolder]:
    """The events to change: DATA itself if it is an event folder, else its event folders."""
    if (data / STACK_FILE).is_file():
        return [read_event(data, need_label=False)]
    events = list_events(data, need_label=False)
    if only:
        by_id = {e.event_id: e for e in events}
        unknown = [i for i in only if i not in by_id]
        if unknown:
            raise InvalidValue(f"no event named '{unknown[0]}' in {data}", field="only")
        events = [by_id[i] for i in dict.fromkeys(only)]
    return events


def match_rasters(raster: Path, events: Sequence[EventFolder], echo: Echo) -> dict[str, Path]:
    """One raster for every event, or the file in the folder `raster` named after each event."""
    if raster.is_file():
        return {e.event_id: raster for e in events}
    if not raster.is_dir():
        raise InputNotFound(f"{raster}: raster file or folder not found")
    files = [p for p in sorted(raster.iterdir()) if p.is_file()]
    found = {p: p.stem for p in files if p.suffix.lower() in RASTER_SUFFIXES}
    out: dict[str, Path] = {}
    for ev in events:
        hits = [p for p, stem in found.items() if stem == ev.event_id]
        if len(hits) > 1:
            raise InvalidFile(
                f"{raster}: several rasters for event {ev.event_id}: "
                f"{', '.join(p.name for p in hits)}"
            )
        if hits:
            out[ev.event_id] = hits[0]
    missing = [e.event_id for e in events if e.event_id not in out]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InputNotFound(
            f"{raster}: no raster named after event(s) {shown} (expected e.g. "
            f"{raster / (missing[0] + '.tif')})"
        )
    unused = sorted(p.name for p, stem in found.items() if stem not in out)
    if unused:
        echo(f"warning: {len(unused)} raster(s) in {raster} match no event: {', '.join(unused)}")
    return out


def _open_raster(path: Path):
    """A raster of the user's, opened only as the format its name says (lsd.formats)."""

    return open_raster(path, RASTER_SUFFIXES)


def _bands(path: Path, count: int, source: LayerSource) -> tuple[int, ...]:
    bands = source.bands or tuple(range(1, count + 1))
    absent = [b for b in bands if b > count]
    if absent:
        raise InvalidValue(
            f"{path} has {count} band(s); there is no band {absent[0]}", field="band"
        )
    if len(bands) != len(source.names):
        raise InvalidValue(
            f"{len(source.names)} name(s) for {len(bands)} band(s) of {path}: give one name per "
            "band (e.g. H,A,alpha) or choose the bands to add",
            field="name",
        )
    return bands


def _centre_km(src: Any, grid: Grid) -> float:
    """Distance between the raster's centre and the grid's, in km (for 'far away' messages)."""

    left, bottom, right, top = src.bounds
    rx, ry = Transformer.from_crs(src.crs, 4326, always_xy=True).transform(
        (left + right) / 2, (bottom + top) / 2
    )
    b = grid.record()["bounds"]
    ex, ey = Transformer.from_crs(grid.crs, 4326, always_xy=True).transform(
        (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    )
    return Geod(ellps="WGS84").inv(rx, ry, ex, ey)[2] / 1000.0


def check_overlap(src: Any, path: Path, ev: EventFolder) -> None:
    """Refuse a raster that cannot be placed on the event: no CRS, nonsense bounds for its CRS,
    or nowhere near the event (usually a wrong CRS)."""

    grid, eid = ev.grid, ev.event_id
    if grid.crs is None:
        if src.crs is not None or (src.width, src.height) != (grid.width, grid.height):
            what = f"{src.width} x {src.height} px" + (f" in {src.crs}" if src.crs else "")
            raise InvalidFile(
                f"{path}: event {eid} has no georeferencing, so its rasters are copied pixel for "
                f"pixel and must be {grid.width} x {grid.height} px without a CRS; this is {what}"
            )
        return
    if src.crs is None:
        raise InvalidFile(
            f"{path}: has no CRS, so it cannot be placed on the grid of event {eid} "
            f"({grid.crs}); give it one (e.g. gdal_edit.py -a_srs EPSG:...)"
        )
    # the raster's outline, densified so that it bends as it should in the event's CRS
    step = max(src.width * abs(src.res[0]), src.height * abs(src.res[1])) / 64
    footprint = shapely.segmentize(box(*src.bounds), step)
    placed = to_crs(footprint, src.crs, grid.crs)
    bounds = np.asarray(placed.bounds)
    if not np.isfinite(bounds).all() or not placed.is_valid:
        raise InvalidFile(
            f"{path}: its bounds {tuple(round(v, 3) for v in src.bounds)} are not positions in "
            f"its CRS {src.crs}; check the CRS"
        )
    if not placed.intersects(box(*grid.record()["bounds"])):
        raise InvalidFile(
            f"{path} ({src.crs}) does not overlap event {eid} ({grid.crs}): its centre lies "
            f"{_centre_km(src, grid):,.0f} km from the event's; check the raster and its CRS"
        )


def reproject_bands(path: Path, grid: Grid, bands: Sequence[int], resampling: str) -> np.ndarray:
    """The raster's bands on the event grid as float32 (k, H, W), NaN where it has no value."""

    out = np.full((len(bands), grid.height, grid.width), np.nan, dtype=np.float32)
    with _open_raster(path) as src:
        for i, band in enumerate(bands):
            if grid.crs is None:  # not georeferenced: same size, copied as it is
                out[i] = src.read(band, out_dtype="float32")
                if src.nodata is not None:
                    out[i][out[i] == np.float32(src.nodata)] = np.nan
                continue
            reproject(
                source=rasterio.band(src, band),
                destination=out[i],
                src_transform=src.transform,
                src_crs=src.crs,
                src_nodata=src.nodata,
                dst_transform=grid.transform,
                dst_crs=grid.crs,
                dst_nodata=np.nan,
                resampling=Resampling[resampling],
            )
    return out


def coverage(data: np.ndarray) -> float:
    """Share of the grid's pixels where every new band has a value."""
    return float(np.isfinite(data).all(axis=0).mean())


# --------------------------------------------------------------------------- the job


def _already_added(ev: EventFolder, raster: Path, source: LayerSource) -> bool:
    """True when the event holds every name, each added from this raster (a rerun); a name the
    event has for any other reason is a clash."""
    records = {r.get("name"): r for r in ev.meta.get("added_layers", []) if isinstance(r, dict)}
    held = [n for n in source.names if n in ev.layers]
    same = [n for n in held if records.get(n, {}).get("source") == str(raster.resolve())]
    if held and len(same) == len(source.names):
        return True
    if held:
        raise InvalidValue(
            f"event {ev.event_id} already has a layer '{held[0]}'; choose another name",
            field="name",
        )
    return False


def plan_placement(ev: EventFolder, raster: Path, source: LayerSource) -> Placement:
    """Every check for one event, including how much of its grid the raster fills."""
    with _open_raster(raster) as src:
        check_real(src, raster)  # reprojected window by window: any size, but real values
        bands = _bands(raster, src.count, source)
        if _already_added(ev, raster, source):
            return Placement(ev, raster, bands, 1.0, skip=True)
        check_overlap(src, raster, ev)
    share = coverage(reproject_bands(raster, ev.grid, bands, source.resampling))
    if share < 1.0 and not source.allow_partial:
        missing = round((1.0 - share) * ev.grid.width * ev.grid.height)
        raise InvalidFile(
            f"{raster} covers {100 * share:.1f}% of event {ev.event_id}: {missing:,} of its "
            f"{ev.grid.width} x {ev.grid.height} pixels get no value (outside the raster or no "
            "data there); give a raster that covers the event, or allow a partial layer"
        )
    return Placement(ev, raster, bands, share)


def layer_records(p: Placement, source: LayerSource) -> list[dict[str, Any]]:
    """event.json's `added_layers` entries: where each layer came from and how it was placed."""

    with _open_raster(p.raster) as src:
        crs = src.crs.to_string() if src.crs else None
        res, nodata = [float(r) for r in src.res], src.nodata
    stat = p.raster.stat()
    method = source.resampling if p.event.grid.crs is not None else "none (copied pixel for pixel)"
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return [
        {
            "name": name,
            "source": str(p.raster.resolve()),
            "band": band,
            "source_crs": crs,
            "source_resolution": res,
            "source_nodata": nodata,
            "source_bytes": stat.st_size,
            "resampling": method,
            "coverage": round(p.coverage, 6),
            "added_at": now,
            "added_by": f"lsd {__version__}",
        }  # fmt: skip
        for name, band in zip(source.names, p.bands, strict=True)
    ]


@dataclass
class AddSummary:
    added: list[str]
    skipped: list[str]


def add_layer(
    data: Path | str,
    raster: Path | str,
    source: LayerSource,
    *,
    only: Sequence[str] | None = None,
    echo: Echo = print,
    progress: bool = True,
) -> AddSummary:
    """Place `raster` (a file, or a folder of files named after the events) on every event of
    `data` (a data folder or one event folder) as the layers `source.names`."""

    data, raster = Path(data), Path(raster)
    if source.resampling not in RESAMPLINGS:
        raise InvalidValue(
            f"resampling '{source.resampling}' is not one of {', '.join(RESAMPLINGS)}",
            field="resampling",
        )
    check_names(source.names)
    events = _events(data, only)
    rasters = match_rasters(raster, events, echo)
    bar = tqdm(total=2 * len(events), desc="add-layer", unit="step", disable=not progress,
               file=sys.stderr)  # fmt: skip
    with bar:
        plans = []
        for ev in events:  # every check first: nothing changes unless all events pass
            plans.append(plan_placement(ev, rasters[ev.event_id], source))
            bar.update()
        summary = AddSummary([], [])
        for p in plans:
            if p.skip:
                summary.skipped.append(p.event.event_id)
                echo(f"{p.event.event_id}: already has {', '.join(source.names)}, skipped")
            else:
                pixels = reproject_bands(p.raster, p.event.grid, p.bands, source.resampling)
                append_layers(p.event.path, source.names, pixels, layer_records(p, source))
                summary.added.append(p.event.event_id)
                echo(f"{p.event.event_id}: added {', '.join(source.names)} "
                     f"({100 * p.coverage:.1f}% covered)")  # fmt: skip
            bar.update()
    return summary
