"""Read and check events.csv, turning each row into an EventSpec.

No ee import here: `lsd fetch --dry-run`, the tests and the label writer need the parsed events
without the Earth Engine client or credentials. Every problem a user can make in the CSV becomes
a UserError naming the file, the 1-based data row, its CSV line and the column, because a list of
twenty events is edited by hand and the user has to find the cell at fault.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsd.errors import UserError
from lsd.spec import EventSpec, Window

DEFAULT_AOI_KM2 = 4.0
DEFAULT_SCALE_M = 10.0
DEFAULT_WINDOW_DAYS = 60
# Above this latitude a winter event gets a year each side: the low sun and snow leave no usable
# optical image in two months, and the paper itself used 12-month windows for some events.
HIGH_LATITUDE = 55.0
WINTER_WINDOW_DAYS = 365
NORTH_WINTER_MONTHS = frozenset({11, 12, 1, 2, 3, 4})
SOUTH_WINTER_MONTHS = frozenset({5, 6, 7, 8, 9, 10})

ORBITS = ("DESCENDING", "ASCENDING", "BOTH")
FLATTENINGS = ("auto", "volume", "surface")
ROLES = ("train", "val", "test")

# Columns this parser understands; anything else is carried along in EventSpec.extra.
KNOWN_COLUMNS = frozenset(
    {
        "id", "date", "lon", "lat", "polygon", "pre_days", "post_days", "pre_start", "pre_end",
        "post_start", "post_end", "orbit", "dem", "inventory", "landcover_points", "flattening",
        "role",
    }
)  # fmt: skip
ID_ALIASES = ("id", "event_id")
_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


# --------------------------------------------------------------------------- geometry helpers


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
    from pyproj import Transformer
    from shapely.geometry import Polygon

    to_utm = Transformer.from_crs(4326, epsg, always_xy=True)
    to_ll = Transformer.from_crs(epsg, 4326, always_xy=True)
    x, y = to_utm.transform(lon, lat)
    x, y = round(x / scale) * scale, round(y / scale) * scale
    half = math.sqrt(km2) * 1000.0 / 2.0
    xs, ys = (x - half, x + half), (y - half, y + half)
    corners = [(xs[0], ys[0]), (xs[1], ys[0]), (xs[1], ys[1]), (xs[0], ys[1])]
    return Polygon([to_ll.transform(cx, cy) for cx, cy in corners])


def aoi_in_utm(spec: EventSpec):
    """The event's AOI in its UTM zone (metres), where areas and the pixel grid are measured."""
    return to_crs(spec.aoi, 4326, spec.utm_epsg)


def to_crs(geom, src: Any, dst: Any):
    import shapely
    from pyproj import Transformer

    fn = Transformer.from_crs(src, dst, always_xy=True).transform
    return shapely.transform(geom, fn, interleaved=False)


def default_windows(date: dt.date, lat: float) -> tuple[int, int]:
    """Days before and after the event: 60 each, a year each in a high-latitude winter."""
    winter = NORTH_WINTER_MONTHS if lat >= 0 else SOUTH_WINTER_MONTHS
    if abs(lat) >= HIGH_LATITUDE and date.month in winter:
        return WINTER_WINDOW_DAYS, WINTER_WINDOW_DAYS
    return DEFAULT_WINDOW_DAYS, DEFAULT_WINDOW_DAYS


def read_polygons(path: Path, *, where: str):
    """The polygons of a vector file in EPSG:4326, or a UserError starting with `where`.

    Lines and points are dropped: a landslide inventory or an AOI is an area, and a file with no
    area at all is a mistake worth one clear line rather than an empty label.
    """
    import geopandas as gpd

    if not path.exists():
        raise UserError(f"{where}: file {path} not found")
    try:
        gdf = gpd.read_file(path)
    except Exception as exc:  # fiona/pyogrio raise many types; all mean "cannot read"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{where}: {path} is not a readable vector file ({first})") from None
    if gdf.crs is None:
        raise UserError(f"{where}: {path} has no coordinate reference system (add a .prj)")
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    gdf = gdf[gdf.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    if gdf.empty:
        raise UserError(f"{where}: {path} contains no polygon")
    gdf = gdf.to_crs(4326)
    gdf["geometry"] = gdf.geometry.make_valid()
    return gdf


# --------------------------------------------------------------------------- CSV parsing


@dataclass
class _Row:
    """One CSV row plus where it came from, so that every check can name its cell."""

    csv_path: Path
    number: int  # 1-based data row
    line: int  # line of the CSV file the row starts on
    values: dict[str, str]

    def where(self, column: str) -> str:
        return f"{self.csv_path}: row {self.number} (line {self.line}), column '{column}'"

    def get(self, column: str) -> str:
        return (self.values.get(column) or "").strip()

    def fail(self, column: str, problem: str) -> UserError:
        return UserError(f"{self.where(column)}: {problem}")

    def parse(self, column: str, fn: Callable[[str], Any], what: str) -> Any:
        text = self.get(column)
        try:
            return fn(text)
        except (ValueError, TypeError):
            raise self.fail(column, f"'{text}' is not {what}") from None


def _date(text: str) -> dt.date:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise ValueError(text)
    return dt.date.fromisoformat(text)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(text)
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def read_events(
    csv_path: Path | str,
    *,
    aoi_km2: float = DEFAULT_AOI_KM2,
    scale: float = DEFAULT_SCALE_M,
    only: set[str] | None = None,
) -> list[EventSpec]:
    """Parse and check every row of events.csv; `only` keeps the named ids (all checked first)."""
    csv_path = Path(csv_path)
    if not aoi_km2 > 0:
        raise UserError(f"--aoi-km2 must be positive, got {aoi_km2}")
    if not csv_path.exists():
        raise UserError(f"{csv_path}: events file not found")
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{csv_path}: not a readable UTF-8 CSV file ({exc})") from None
    reader = csv.DictReader(text.splitlines(keepends=True))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        raise UserError(f"{csv_path}: empty file; needs a header with at least id and date")
    reader.fieldnames = header
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise UserError(f"{csv_path}: column(s) named twice in the header: {', '.join(dupes)}")
    id_col = next((c for c in ID_ALIASES if c in header), None)
    for col, present in (("id", id_col), ("date", "date" in header)):
        if not present:
            raise UserError(f"{csv_path}: missing column '{col}' (header: {', '.join(header)})")
    if not ("polygon" in header or ("lon" in header and "lat" in header)):
        raise UserError(f"{csv_path}: missing columns 'lon' and 'lat' (or 'polygon') for the area")

    specs: list[EventSpec] = []
    seen: dict[str, int] = {}
    for number, values in enumerate(reader, start=1):
        row = _Row(csv_path, number, reader.line_num, values)
        if None in values:  # more cells than header columns
            raise UserError(
                f"{csv_path}: row {number} (line {row.line}) has more cells than the header"
            )
        if not any((v or "").strip() for v in values.values()):
            continue  # a blank line in a hand-edited file is not an event
        spec = _parse_row(row, id_col, aoi_km2, scale)
        if spec.event_id in seen:
            raise row.fail(
                id_col, f"duplicate id '{spec.event_id}' (first used in row {seen[spec.event_id]})"
            )
        seen[spec.event_id] = number
        specs.append(spec)
    if not specs:
        raise UserError(f"{csv_path}: no events (only a header)")
    if only:
        unknown = sorted(set(only) - set(seen))
        if unknown:
            raise UserError(f"--only names id(s) not in {csv_path}: {', '.join(unknown)}")
        specs = [s for s in specs if s.event_id in only]
    return specs


def _parse_row(row: _Row, id_col: str, aoi_km2: float, scale: float) -> EventSpec:
    event_id = row.get(id_col)
    if not event_id:
        raise row.fail(id_col, "empty id")
    if not _ID_RE.match(event_id):
        raise row.fail(
            id_col,
            f"'{event_id}' cannot be a folder name: use letters, digits, '.', '_' or '-'",
        )
    if not row.get("date"):
        raise row.fail("date", "empty date; give YYYY-MM-DD")
    date = row.parse("date", _date, "a date in YYYY-MM-DD form")

    aoi, epsg = _parse_area(row, aoi_km2, scale)
    centre_lat = aoi.centroid.y
    pre, post = _parse_windows(row, date, centre_lat)

    orbit = _choice(row, "orbit", ORBITS, "DESCENDING", upper=True)
    flattening = _choice(row, "flattening", FLATTENINGS, "auto", upper=False)
    role = _choice(row, "role", ROLES, None, upper=False)
    base = row.csv_path.parent
    inventory = _vector_path(row, "inventory", base)
    points = _vector_path(row, "landcover_points", base, polygons=False)
    extra = {
        k: v.strip()
        for k, v in row.values.items()
        if k not in KNOWN_COLUMNS and k != id_col and v is not None and v.strip()
    }
    return EventSpec(
        event_id=event_id,
        date=date,
        aoi=aoi,
        pre=pre,
        post=post,
        orbit=orbit,
        dem_asset=row.get("dem") or None,
        inventory=inventory,
        landcover_points=points,
        flattening=flattening,
        role=role,
        utm_epsg=epsg,
        row=row.number,
        extra=extra,
    )


def _parse_area(row: _Row, aoi_km2: float, scale: float):
    has_point = bool(row.get("lon") or row.get("lat"))
    polygon = row.get("polygon")
    if polygon and has_point:
        raise row.fail("polygon", "give either lon/lat or polygon for the area, not both")
    if polygon:
        path = row.csv_path.parent / polygon
        gdf = read_polygons(path, where=row.where("polygon"))
        aoi = gdf.geometry.union_all()
        c = aoi.centroid
        return aoi, utm_epsg(c.x, c.y)
    for col in ("lon", "lat"):
        if not row.get(col):
            raise row.fail(col, "empty; give lon and lat in degrees, or a polygon file")
    lon = row.parse("lon", _float, "a number (degrees east)")
    lat = row.parse("lat", _float, "a number (degrees north)")
    if not -180.0 <= lon <= 180.0:
        raise row.fail("lon", f"{lon} is out of range -180..180")
    if not -80.0 <= lat <= 84.0:
        raise row.fail("lat", f"{lat} is out of range -80..84 (where UTM zones are defined)")
    epsg = utm_epsg(lon, lat)
    return square_aoi(lon, lat, aoi_km2, epsg, scale), epsg


def _parse_windows(row: _Row, date: dt.date, lat: float) -> tuple[Window, Window]:
    default_pre, default_post = default_windows(date, lat)
    pre = _one_window(row, "pre", date, default_pre)
    post = _one_window(row, "post", date, default_post)
    if pre.end > post.start:
        raise row.fail(
            "pre_end", f"pre window ends {pre.end}, after the post window starts {post.start}"
        )
    return pre, post


def _one_window(row: _Row, kind: str, date: dt.date, default_days: int) -> Window:
    """pre = [date - days, date), post = [date, date + days); explicit ends are exclusive."""
    days_col, start_col, end_col = f"{kind}_days", f"{kind}_start", f"{kind}_end"
    has_start, has_end = bool(row.get(start_col)), bool(row.get(end_col))
    if row.get(days_col) and (has_start or has_end):
        raise row.fail(days_col, f"give {days_col} or {start_col}/{end_col}, not both")
    if has_start != has_end:
        missing = end_col if has_start else start_col
        raise row.fail(missing, f"empty, but {start_col if has_start else end_col} is given")
    if has_start:
        start = row.parse(start_col, _date, "a date in YYYY-MM-DD form")
        end = row.parse(end_col, _date, "a date in YYYY-MM-DD form")
        if end <= start:
            raise row.fail(end_col, f"window ends {end} on or before it starts {start}")
        return Window(start, end)
    days = default_days
    if row.get(days_col):
        days = row.parse(days_col, _positive_int, "a positive whole number of days")
    if kind == "pre":
        return Window(date - dt.timedelta(days=days), date)
    return Window(date, date + dt.timedelta(days=days))


def _choice(row: _Row, column: str, allowed: tuple[str, ...], default, *, upper: bool):
    text = row.get(column)
    if not text:
        return default
    value = text.upper() if upper else text.lower()
    if value not in allowed:
        raise row.fail(column, f"'{text}' is not one of {', '.join(allowed)}")
    return value


def _vector_path(row: _Row, column: str, base: Path, *, polygons: bool = True) -> Path | None:
    text = row.get(column)
    if not text:
        return None
    path = (base / text).resolve()
    if polygons:
        read_polygons(path, where=row.where(column))
    elif not path.exists():
        raise row.fail(column, f"file {path} not found")
    else:
        # checked now, not hours later on Earth Engine; landcover imports ee, hence the late import
        from lsd.gee.landcover import read_user_points

        try:
            read_user_points(path)
        except UserError as exc:
            raise row.fail(column, str(exc)) from None
    return path


def describe_spec(spec: EventSpec) -> dict[str, Any]:
    """The parsed row as plain JSON values, for event.json and the dry-run plan."""
    return {
        "id": spec.event_id,
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
        "extra": dict(spec.extra),
    }


def event_grid(spec: EventSpec, scale: float = DEFAULT_SCALE_M):
    """The stack's pixel grid: the AOI's UTM bounds snapped outward to multiples of `scale`.

    Snapping to multiples (not to the AOI corner) keeps every event on the same global lattice
    per zone, so neighbouring or repeated fetches line up pixel for pixel. A tolerance of a
    thousandth of a pixel absorbs the round trip through EPSG:4326, which would otherwise add a
    spurious row or column when a bound sits exactly on a multiple.
    """
    from rasterio.crs import CRS
    from rasterio.transform import Affine

    from lsd.contract import Grid

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
    orbit: str = "DESCENDING",
) -> EventSpec:
    """An EventSpec for an area given in code rather than in a CSV (e.g. `lsd predict --aoi`).

    Uses the same UTM and default-window rules as events.csv, so a mapped area gets the stack a
    fetched training event would have had.
    """
    if orbit not in ORBITS:
        raise UserError(f"orbit '{orbit}' is not one of {', '.join(ORBITS)}")
    c = aoi_4326.centroid
    default_pre, default_post = default_windows(date, c.y)
    pre = Window(date - dt.timedelta(days=pre_days or default_pre), date)
    post = Window(date, date + dt.timedelta(days=post_days or default_post))
    return EventSpec(
        event_id=event_id,
        date=date,
        aoi=aoi_4326,
        pre=pre,
        post=post,
        orbit=orbit,  # type: ignore[arg-type]
        utm_epsg=utm_epsg(c.x, c.y),
    )
