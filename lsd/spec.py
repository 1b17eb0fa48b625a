"""An event as every data source is asked for it: where, when, which windows, and its grid.

Kept free of ee and torch so that parsing events.csv, planning (a dry run), prediction on a new
area and every data source (Earth Engine, importers, later STAC) share one description and one
rule for the UTM zone, the pixel grid and the default date windows.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import shapely
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.transform import Affine
from shapely import affinity
from shapely.geometry import Polygon, box

from lsd.errors import InvalidValue
from lsd.rasters import Grid

Orbit = Literal["AUTO", "DESCENDING", "ASCENDING", "BOTH"]
Flattening = Literal["auto", "volume", "surface"]
# AUTO: the pass with scenes in both windows, descending first (the paper's pass); BOTH: each
# pass composited on its own and the composites combined (docs/layers.md).
ORBITS: tuple[str, ...] = ("AUTO", "DESCENDING", "ASCENDING", "BOTH")
PASSES: tuple[str, ...] = ("DESCENDING", "ASCENDING")  # preference order of AUTO
DEFAULT_ORBIT = "AUTO"
FLATTENINGS: tuple[str, ...] = ("auto", "volume", "surface")
ROLES: tuple[str, ...] = ("train", "val", "test")

DEFAULT_AOI_KM2 = 4.0
DEFAULT_SCALE_M = 10.0
DEFAULT_WINDOW_DAYS = 60
# Above this latitude a winter event gets a year each side: the low sun and snow leave no usable
# optical image in two months, and the paper itself used 12-month windows for some events.
# October counts as winter (April in the south): a 60-day post window from an October event
# runs into December, the polar night at 65 N (event 1, Iceland, 2021-10-06).
HIGH_LATITUDE = 55.0
WINTER_WINDOW_DAYS = 365
NORTH_WINTER_MONTHS = frozenset({10, 11, 12, 1, 2, 3, 4})
SOUTH_WINTER_MONTHS = frozenset({4, 5, 6, 7, 8, 9, 10})


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
    orbit: Orbit = "AUTO"
    dem_asset: str | None = None  # overrides SRTM / Copernicus GLO-30
    inventory: Path | None = None  # landslide polygons for label.tif
    landcover_points: Path | None = None  # user's CART training points
    flattening: Flattening = "auto"
    role: str | None = None  # train / val / test
    utm_epsg: int = 0  # local UTM zone of the AOI centroid, e.g. 32632
    row: int = 0  # 1-based data row in events.csv, for messages
    extra: dict[str, Any] = field(default_factory=dict)
    layers: tuple[str, ...] = ()  # layer names to fetch; () = the data source's default


# --------------------------------------------------------------------------- geometry


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS 84 UTM zone holding (lon, lat), with the Norway and Svalbard exceptions.

    The exceptions matter because a stack is written in the zone users' other data (national
    inventories, DEMs) normally use there: zone 32V is widened over south-west Norway and
    Svalbard uses only the odd zones 31, 33, 35, 37.
    """
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise ValueError(f"not a lon/lat position: {lon}, {lat}")
    zone = min(int(math.floor((lon + 180.0) / 6.0)) + 1, 60)
    if 56.0 <= lat < 64.0 and 3.0 <= lon < 12.0:
        zone = 32
    elif 72.0 <= lat < 84.0 and 0.0 <= lon < 42.0:
        zone = 31 if lon < 9.0 else 33 if lon < 21.0 else 35 if lon < 33.0 else 37
    return (32600 if lat >= 0 else 32700) + zone


def square_aoi(lon: float, lat: float, km2: float, epsg: int, scale: float = DEFAULT_SCALE_M):
    """A square of `km2` around the point, built in UTM and returned in EPSG:4326.

    The centre is rounded to the nearest `scale` metres in UTM so that a square whose side is a
    whole number of pixels (2 km for the default 4 km2) fills its grid exactly, instead of
    spilling one extra row and column after the outward snap. The shift is at most half a pixel.
    """

    to_utm = Transformer.from_crs(4326, epsg, always_xy=True)
    to_ll = Transformer.from_crs(epsg, 4326, always_xy=True)
    x, y = to_utm.transform(lon, lat)
    x, y = round(x / scale) * scale, round(y / scale) * scale
    half = math.sqrt(km2) * 1000.0 / 2.0
    xs, ys = (x - half, x + half), (y - half, y + half)
    corners = [(xs[0], ys[0]), (xs[1], ys[0]), (xs[1], ys[1]), (xs[0], ys[1])]
    return normalize_aoi(Polygon([to_ll.transform(cx, cy) for cx, cy in corners]))


def aoi_in_utm(spec: EventSpec):
    """The event's AOI in its UTM zone (metres), where areas and the pixel grid are measured.

    An AOI split at 180 degrees is rejoined first (rejoined_aoi): the split adds a vertex on
    each cut edge, placed on the straight line in degrees, which in UTM lies off the edge (2 cm
    outside a 2 km square), so its bounds, and the grid snapped to them, would grow a row."""
    return to_crs(rejoined_aoi(spec.aoi), 4326, spec.utm_epsg)


def to_crs(geom, src: Any, dst: Any):

    fn = Transformer.from_crs(src, dst, always_xy=True).transform
    return shapely.transform(geom, fn, interleaved=False)


# --------------------------------------------------------------------------- the antimeridian
# An AOI is small (kilometres), so one whose longitudes span more than half the globe is read as
# crossing 180 degrees: in EPSG:4326 its ring would otherwise enclose the rest of the world, and
# every filter, reduction and grid computed from it would span the globe. Such an AOI is kept as
# a MultiPolygon split at 180 degrees, each part within -180..180, which Earth Engine, pyproj
# and shapely all read as the small area it is.


def _lon_extent(geom) -> float:
    minx, _, maxx, _ = geom.bounds
    return maxx - minx


def crosses_antimeridian(geom) -> bool:
    """True if the geometry crosses 180 degrees: given with longitudes outside -180..180, or
    with wrapped longitudes whose span exceeds 180 degrees."""
    minx, _, maxx, _ = geom.bounds
    return minx < -180.0 or maxx > 180.0 or _lon_extent(geom) > 180.0


def unwrap_lon(geom):
    """The geometry with continuous longitudes across 180 degrees (negative ones shifted by 360
    when the geometry was given wrapped), so its shape, area and centroid are the real ones."""

    if _lon_extent(geom) <= 180.0:
        return geom
    return shapely.transform(geom, _shift_west_lons)


def _shift_west_lons(xy):
    out = xy.copy()
    out[:, 0] = [x + 360.0 if x < 0 else x for x in xy[:, 0]]
    return out


def normalize_aoi(geom):
    """The AOI as Earth Engine and pyproj should see it: unchanged unless it crosses the
    antimeridian, else split at 180 degrees into parts that each lie within -180..180."""

    if not crosses_antimeridian(geom):
        return geom
    whole = unwrap_lon(geom)
    if _lon_extent(whole) > 180.0:
        raise InvalidValue(
            f"the area spans {_lon_extent(whole):.0f} degrees of longitude; "
            "an event AOI must be a local area",
            field="aoi",
        )
    minx, miny, maxx, maxy = whole.bounds
    shift = 360.0 if minx >= 180.0 else 0.0  # given entirely east of 180 degrees
    whole = affinity.translate(whole, xoff=-shift) if shift else whole
    parts = []
    for lo, hi, dx in ((-540.0, -180.0, 360.0), (-180.0, 180.0, 0.0), (180.0, 540.0, -360.0)):
        piece = whole.intersection(box(lo, miny - 1, hi, maxy + 1))
        if not piece.is_empty and piece.area > 0:
            parts.append(affinity.translate(piece, xoff=dx))
    polys = [p for part in parts for p in getattr(part, "geoms", [part]) if p.area > 0]
    return shapely.MultiPolygon(polys) if len(polys) > 1 else polys[0]


# Vertices this close (degrees, 0.1 mm) to the line through their neighbours are the split's own
SPLIT_VERTEX_TOLERANCE = 1e-9


def rejoined_aoi(geom):
    """An AOI split at 180 degrees (normalize_aoi) as the one shape it was, on continuous
    longitudes and without the vertices the split added on the cut edges (they lie on the line
    between their neighbours in degrees, so dropping them leaves the shape as given); any other
    AOI unchanged. For measuring in UTM only: Earth Engine keeps the split parts."""

    if getattr(geom, "geom_type", "") != "MultiPolygon" or _lon_extent(geom) <= 180.0:
        return geom
    whole = shapely.union_all(list(unwrap_lon(geom).geoms))
    return whole.simplify(SPLIT_VERTEX_TOLERANCE, preserve_topology=True)


def aoi_centroid(geom) -> tuple[float, float]:
    """(lon, lat) of the AOI's centroid, taken on continuous longitudes and wrapped back into
    -180..180: the centroid of an AOI split at 180 degrees would otherwise fall near 0."""
    c = unwrap_lon(geom).centroid
    lon = ((c.x + 180.0) % 360.0) - 180.0
    return lon, c.y


def buffered_aoi(spec: EventSpec, metres: float):
    """The AOI grown by `metres` (measured in its UTM zone), back in EPSG:4326 and split at the
    antimeridian if it reaches it: the region of the per-event reductions, built on the client
    so that it is exact and the same for every request."""
    grown = aoi_in_utm(spec).buffer(metres, 16)
    return normalize_aoi(to_crs(grown, spec.utm_epsg, 4326))


def default_windows(date: dt.date, lat: float) -> tuple[int, int]:
    """Days before and after the event: 60 each, a year each in a high-latitude winter."""
    winter = NORTH_WINTER_MONTHS if lat >= 0 else SOUTH_WINTER_MONTHS
    if abs(lat) >= HIGH_LATITUDE and date.month in winter:
        return WINTER_WINDOW_DAYS, WINTER_WINDOW_DAYS
    return DEFAULT_WINDOW_DAYS, DEFAULT_WINDOW_DAYS


def event_grid(spec: EventSpec, scale: float = DEFAULT_SCALE_M):
    """The stack's pixel grid: the AOI's UTM bounds snapped outward to multiples of `scale`.

    Snapping to multiples (not to the AOI corner) keeps every event on the same global lattice
    per zone, so neighbouring or repeated fetches line up pixel for pixel. A tolerance of a
    thousandth of a pixel absorbs the round trip through EPSG:4326, which would otherwise add a
    spurious row or column when a bound sits exactly on a multiple.
    """

    minx, miny, maxx, maxy = aoi_in_utm(spec).bounds
    tol = 1e-3
    x0 = math.floor(minx / scale + tol) * scale
    y0 = math.floor(miny / scale + tol) * scale
    x1 = math.ceil(maxx / scale - tol) * scale
    y1 = math.ceil(maxy / scale - tol) * scale
    width, height = round((x1 - x0) / scale), round((y1 - y0) / scale)
    return Grid(
        width=max(width, 1),
        height=max(height, 1),
        crs=CRS.from_epsg(spec.utm_epsg),
        transform=Affine(scale, 0.0, x0, 0.0, -scale, y1),
    )


def make_spec(
    event_id: str,
    date: dt.date,
    aoi_4326,
    *,
    pre_days: int | None = None,
    post_days: int | None = None,
    orbit: str = DEFAULT_ORBIT,
) -> EventSpec:
    """An EventSpec for an area given in code rather than in a CSV (e.g. `lsd predict --aoi`).

    Uses the same UTM and default-window rules as events.csv, so a mapped area gets the stack a
    fetched training event would have had.
    """
    if orbit not in ORBITS:
        raise InvalidValue(f"orbit '{orbit}' is not one of {', '.join(ORBITS)}", field="orbit")
    aoi = normalize_aoi(aoi_4326)
    lon, lat = aoi_centroid(aoi)
    default_pre, default_post = default_windows(date, lat)
    pre = Window(date - dt.timedelta(days=pre_days or default_pre), date)
    post = Window(date, date + dt.timedelta(days=post_days or default_post))
    return EventSpec(
        event_id=event_id,
        date=date,
        aoi=aoi,
        pre=pre,
        post=post,
        orbit=orbit,  # type: ignore[arg-type]
        utm_epsg=utm_epsg(lon, lat),
    )


def describe_spec(spec: EventSpec) -> dict[str, Any]:
    """The parsed row as plain JSON values, for event.json and the dry-run plan."""
    return {
        "event_id": spec.event_id,
        "date": spec.date.isoformat(),
        "csv_row": spec.row,
        "aoi_wkt": spec.aoi.wkt,
        "utm_epsg": spec.utm_epsg,
        "pre_window": list(spec.pre.as_strings()),
        "post_window": list(spec.post.as_strings()),
        "orbit": spec.orbit,
        "dem": spec.dem_asset,
        "inventory": str(spec.inventory) if spec.inventory else None,
        "landcover_points": str(spec.landcover_points) if spec.landcover_points else None,
        "flattening": spec.flattening,
        "role": spec.role,
        "layers": list(spec.layers),
        "extra": dict(spec.extra),
    }
