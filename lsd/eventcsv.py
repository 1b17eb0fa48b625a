"""events.csv: the user's list of landslide events, parsed and checked into EventSpecs.

Every problem a user can make in the CSV becomes one error naming the file, the 1-based data row,
its CSV line and the column, because a list of twenty events is edited by hand and the user has to
find the cell at fault. No ee import here: a dry run, the tests and every data source read the
same parsed events without the Earth Engine client.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsd.errors import InputNotFound, InvalidFile, InvalidValue, UserError
from lsd.files import atomic_path
from lsd.labels import is_label_raster, read_label_raster
from lsd.layergroups import (
    DEFAULT_GROUPS,
    S1Scenes,
    group_layers,
    parse_groups,
    parse_s1_scenes,
)
from lsd.limits import check_aoi_km2, check_event_date, geodesic_km2
from lsd.spec import (
    DEFAULT_AOI_KM2,
    DEFAULT_ORBIT,
    DEFAULT_SCALE_M,
    FLATTENINGS,
    ORBITS,
    ROLES,
    EventSpec,
    Window,
    aoi_centroid,
    default_windows,
    normalize_aoi,
    square_aoi,
    utm_epsg,
)
from lsd.vectors import read_class_points, read_polygons

# Columns this parser understands; anything else is carried along in EventSpec.extra.
KNOWN_COLUMNS = frozenset(
    {
        "id", "date", "lon", "lat", "polygon", "pre_days", "post_days", "pre_start", "pre_end",
        "post_start", "post_end", "orbit", "dem", "inventory", "landcover_points", "flattening",
        "role", "layers", "s1_scenes",
    }
)  # fmt: skip
ID_ALIASES = ("id", "event_id")
_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


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

    def fail(self, column: str, problem: str) -> InvalidFile:
        return InvalidFile(f"{self.where(column)}: {problem}")

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
    groups: Sequence[str] = DEFAULT_GROUPS,
    s1_scenes: str | S1Scenes | None = None,
) -> list[EventSpec]:
    """Parse and check every row of events.csv; `only` keeps the named ids (all checked first).

    `groups` and `s1_scenes` are the layers of rows whose `layers` / `s1_scenes` cells are
    empty; every spec comes back with its layer names resolved.
    """
    csv_path = Path(csv_path)
    if not aoi_km2 > 0:
        raise InvalidValue(f"AOI area must be positive, got {aoi_km2} km2", field="aoi_km2")
    check_aoi_km2(aoi_km2, "the square around each lon/lat event", field="aoi_km2")
    defaults = _LayerDefaults(parse_groups(list(groups)), parse_s1_scenes(s1_scenes))
    reader, id_col = _open_csv(csv_path)
    specs: list[EventSpec] = []
    seen: dict[str, int] = {}
    for number, values in enumerate(reader, start=1):
        row = _Row(csv_path, number, reader.line_num, values)
        if None in values:  # more cells than header columns
            raise InvalidFile(
                f"{csv_path}: row {number} (line {row.line}) has more cells than the header"
            )
        if not any((v or "").strip() for v in values.values()):
            continue  # a blank line in a hand-edited file is not an event
        spec = _parse_row(row, id_col, aoi_km2, scale, defaults)
        if spec.event_id in seen:
            raise row.fail(
                id_col, f"duplicate id '{spec.event_id}' (first used in row {seen[spec.event_id]})"
            )
        seen[spec.event_id] = number
        specs.append(spec)
    if not specs:
        raise InvalidFile(f"{csv_path}: no events (only a header)")
    if only:
        unknown = sorted(set(only) - set(seen))
        if unknown:
            raise InvalidValue(f"id(s) not in {csv_path}: {', '.join(unknown)}", field="only")
        specs = [s for s in specs if s.event_id in only]
    return specs


def _open_csv(csv_path: Path) -> tuple[csv.DictReader, str]:
    """A reader over the file's rows, its header checked; and the id column's name."""
    if not csv_path.exists():
        raise InputNotFound(f"{csv_path}: events file not found")
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidFile(f"{csv_path}: not a readable UTF-8 CSV file ({exc})") from None
    reader = csv.DictReader(text.splitlines(keepends=True))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        raise InvalidFile(f"{csv_path}: empty file; needs a header with at least id and date")
    reader.fieldnames = header
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise InvalidFile(f"{csv_path}: column(s) named twice in the header: {', '.join(dupes)}")
    id_col = next((c for c in ID_ALIASES if c in header), None)
    for col, present in (("id", id_col), ("date", "date" in header)):
        if not present:
            raise InvalidFile(f"{csv_path}: missing column '{col}' (header: {', '.join(header)})")
    if not ("polygon" in header or ("lon" in header and "lat" in header)):
        raise InvalidFile(
            f"{csv_path}: missing columns 'lon' and 'lat' (or 'polygon') for the area"
        )
    return reader, str(id_col)


@dataclass(frozen=True)
class _LayerDefaults:
    groups: tuple[str, ...]
    s1_scenes: S1Scenes


def _parse_layers(row: _Row, defaults: _LayerDefaults) -> tuple[str, ...]:
    """The row's layer names: its own `layers` / `s1_scenes` cells, else the fetch's."""
    groups, scenes = defaults.groups, defaults.s1_scenes
    try:
        if row.get("layers"):
            groups = parse_groups(row.get("layers"))
    except UserError as exc:
        raise row.fail("layers", str(exc)) from None
    try:
        if row.get("s1_scenes"):
            scenes = parse_s1_scenes(row.get("s1_scenes"))
    except UserError as exc:
        raise row.fail("s1_scenes", str(exc)) from None
    if row.get("s1_scenes") and "s1scenes" not in groups:
        raise row.fail(
            "s1_scenes",
            f"'{row.get('s1_scenes')}' is given but the row's layer groups "
            f"({', '.join(groups)}) do not include s1scenes",
        )
    return group_layers(groups, scenes)


def _parse_row(
    row: _Row, id_col: str, aoi_km2: float, scale: float, defaults: _LayerDefaults
) -> EventSpec:
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
    try:
        check_event_date(date)
    except UserError as exc:
        raise row.fail("date", exc.message) from None

    aoi, epsg = _parse_area(row, aoi_km2, scale)
    centre_lat = aoi_centroid(aoi)[1]
    pre, post = _parse_windows(row, date, centre_lat)

    orbit = _choice(row, "orbit", ORBITS, DEFAULT_ORBIT, upper=True)
    flattening = _choice(row, "flattening", FLATTENINGS, "auto", upper=False)
    role = _choice(row, "role", ROLES, None, upper=False)
    base = row.csv_path.parent
    inventory = _inventory_path(row, base)
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
        layers=_parse_layers(row, defaults),
    )


def _parse_area(row: _Row, aoi_km2: float, scale: float):
    has_point = bool(row.get("lon") or row.get("lat"))
    polygon = row.get("polygon")
    if polygon and has_point:
        raise row.fail("polygon", "give either lon/lat or polygon for the area, not both")
    if polygon:
        path = row.csv_path.parent / polygon
        gdf = read_polygons(path, where=row.where("polygon"))
        try:
            aoi = normalize_aoi(gdf.geometry.union_all())
        except InvalidValue as exc:
            raise row.fail("polygon", f"{path}: {exc}") from None
        try:
            check_aoi_km2(geodesic_km2(aoi), str(path))  # the rule lsd predict --aoi applies too
        except UserError as exc:
            raise row.fail("polygon", exc.message) from None
        lon, lat = aoi_centroid(aoi)
        return aoi, utm_epsg(lon, lat)
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


def _inventory_path(row: _Row, base: Path) -> Path | None:
    """Polygons, or a label raster (GeoTIFF of 0/1/255), checked now rather than on a server."""

    text = row.get("inventory")
    if text and is_label_raster(Path(text)):
        path = (base / text).resolve()
        read_label_raster(path, where=row.where("inventory"))
        return path
    return _vector_path(row, "inventory", base)


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
        # checked now, not hours later on Earth Engine
        try:
            read_class_points(path)
        except UserError as exc:
            raise row.fail(column, str(exc)) from None
    return path


def write_events_csv(path: Path | str, rows: Sequence[dict[str, Any]]) -> Path:
    """An events.csv that read_events reads back: id and date first, then the other columns in
    the order they first appear; paths are written as given (relative to the CSV's folder)."""

    columns: list[str] = ["id", "date"]
    for row in rows:
        columns += [c for c in row if c not in columns]
    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})
    return path
