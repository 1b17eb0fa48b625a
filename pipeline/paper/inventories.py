"""Real labels for the paper's events: its georeferenced label tifs as inventories for `lsd fetch`.

For every imported event whose label is georeferenced, the landslide pixels become polygons
(one per connected patch, pixel edges kept exactly) in `<id>.gpkg`, the label's footprint the
event's AOI in `<id>_aoi.gpkg`, and events.csv lists each event with the paper's date, its
role, the AOI and the inventory. `lsd fetch --event DIR/events.csv` then builds fresh Earth
Engine stacks whose labels are the paper's: burnt by the pixel-centre rule, they reproduce the
label tif on its own grid. The folder is written under a temporary name and appears complete.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
from rasterio.features import shapes
from shapely.geometry import box, shape

from lsd.errors import InvalidValue, OutputExists
from lsd.eventcsv import read_events, write_events_csv
from lsd.events import EventFolder, read_event
from lsd.files import atomic_path
from lsd.pipeline.paper.facts import EVENTS_BY_NUMBER
from lsd.rasters import LABEL_LANDSLIDE, Grid, read_label

EVENTS_CSV = "events.csv"
INVENTORY_LAYER = "landslides"
Echo = Callable[[str], None]


def label_polygons(label: np.ndarray, grid: Grid) -> list[Any]:
    """Polygons of the landslide pixels (1), in the grid's CRS, one per 4-connected patch."""

    mask = label == LABEL_LANDSLIDE
    return [
        shape(geom)
        for geom, value in shapes(mask.astype(np.uint8), mask=mask, transform=grid.transform)
        if value == 1
    ]


def _footprint(grid: Grid):

    left, bottom, right, top = grid.record()["bounds"]
    return box(left, bottom, right, top)


def _write_gpkg(path: Path, geoms: list[Any], crs: Any, layer: str) -> None:

    gpd.GeoDataFrame({"geometry": geoms}, crs=crs).to_file(path, layer=layer, driver="GPKG")


def _row(ev: EventFolder, folder: Path, echo: Echo) -> dict[str, Any] | None:
    source = ev.meta.get("source") or {}
    number = source.get("paper_event")
    if not ev.meta.get("georeferenced"):
        echo(f"{ev.event_id}: its label tif has no georeferencing; no inventory written")
        return None
    if number not in EVENTS_BY_NUMBER:
        echo(f"{ev.event_id}: not one of the paper's numbered events (no date); skipped")
        return None
    label, grid = read_label(ev.label)
    polygons = label_polygons(label, grid)
    if not polygons:
        echo(f"{ev.event_id}: no landslide pixel in its label; no inventory written")
        return None
    _write_gpkg(folder / f"{ev.event_id}.gpkg", polygons, grid.crs, INVENTORY_LAYER)
    _write_gpkg(folder / f"{ev.event_id}_aoi.gpkg", [_footprint(grid)], grid.crs, "aoi")
    event = EVENTS_BY_NUMBER[number]
    return {
        "id": ev.event_id, "date": event.date, "polygon": f"{ev.event_id}_aoi.gpkg",
        "inventory": f"{ev.event_id}.gpkg", "role": ev.role or "", "location": event.location,
        "paper_event": number, "label_source": source.get("label", ""),
    }  # fmt: skip


def write_inventories(
    event_folders: Sequence[Path], out: Path | str, *, echo: Echo = print
) -> Path | None:
    """The inventories folder (GeoPackages + events.csv) for the imported events; None when no
    event's label is georeferenced (the folder is then not written)."""
    out = Path(out)
    if out.exists():
        raise OutputExists(f"{out}: already exists; give a new folder for the inventories",
                           field="inventories")  # fmt: skip
    events = sorted((read_event(f) for f in event_folders), key=lambda e: e.event_id)
    with atomic_path(out, directory=True) as tmp:
        rows = [r for r in (_row(ev, tmp, echo) for ev in events) if r is not None]
        if not rows:
            raise InvalidValue(
                "no imported label is georeferenced, so none can become an inventory for new "
                "stacks (the tifs hold no coordinates)",
                field="inventories",
            )
        write_events_csv(tmp / EVENTS_CSV, rows)
        read_events(tmp / EVENTS_CSV)  # the CSV and every file it names must read back
    return out / EVENTS_CSV
