"""One event as the Earth Engine side sees it, after events.csv has been parsed and checked.

Kept free of ee so that parsing, planning (`--dry-run`) and tests run without the ee client.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Orbit = Literal["DESCENDING", "ASCENDING", "BOTH"]
Flattening = Literal["auto", "volume", "surface"]


@dataclass(frozen=True)
class Window:
    """A closed-open date range [start, end) as Earth Engine's filterDate uses it."""

    start: dt.date
    end: dt.date

    def as_strings(self) -> tuple[str, str]:
        return self.start.isoformat(), self.end.isoformat()


@dataclass(frozen=True)
class EventSpec:
    event_id: str
    date: dt.date
    aoi: Any  # shapely Polygon/MultiPolygon in EPSG:4326 (lon, lat)
    pre: Window
    post: Window
    orbit: Orbit = "DESCENDING"
    dem_asset: str | None = None  # overrides SRTM / Copernicus GLO-30
    inventory: Path | None = None  # landslide polygons for label.tif
    landcover_points: Path | None = None  # user's CART training points
    flattening: Flattening = "auto"
    role: str | None = None  # train / val / test
    utm_epsg: int = 0  # local UTM zone of the AOI centroid, e.g. 32632
    row: int = 0  # 1-based data row in events.csv, for messages
    extra: dict[str, Any] = field(default_factory=dict)
