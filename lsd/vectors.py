"""Vector inputs users hand to lsd: AOI and inventory polygons, land-cover training points.

Read here, once, with geopandas, and checked so that a wrong file is one line naming it: such
files are edited by hand in a GIS, and the usual mistakes (no .prj, lines instead of polygons, a
class code outside the table) must not surface hours later on a server.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd

from lsd.errors import InputNotFound, InvalidFile
from lsd.formats import check_vector_file
from lsd.layers import LANDCOVER_CLASSES

CLASS_COLUMN = "class"


def read_polygons(path: Path, *, where: str):
    """The polygons of a vector file in EPSG:4326, or an error starting with `where`.

    Lines and points are dropped: a landslide inventory or an AOI is an area, and a file with no
    area at all is a mistake worth one clear line rather than an empty label.
    """

    if not path.exists():
        raise InputNotFound(f"{where}: file {path} not found")
    try:
        check_vector_file(path)
    except InvalidFile as exc:
        raise InvalidFile(f"{where}: {exc}") from None
    try:
        gdf = gpd.read_file(path)
    except Exception as exc:  # fiona/pyogrio raise many types; all mean "cannot read"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidFile(f"{where}: {path} is not a readable vector file ({first})") from None
    if gdf.crs is None:
        raise InvalidFile(f"{where}: {path} has no coordinate reference system (add a .prj)")
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    gdf = gdf[gdf.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    if gdf.empty:
        raise InvalidFile(f"{where}: {path} contains no polygon")
    gdf = gdf.to_crs(4326)
    gdf["geometry"] = gdf.geometry.make_valid()
    return gdf


def read_class_points(path: Path) -> list[tuple[float, float, int]]:
    """(lon, lat, class) rows of a land-cover point file, checked against the class table."""

    check_vector_file(path)
    try:
        frame = gpd.read_file(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is the file's fault here
        raise InvalidFile(f"{path}: cannot read land-cover points ({exc})") from None
    if CLASS_COLUMN not in frame.columns:
        raise InvalidFile(f"{path}: no '{CLASS_COLUMN}' column (the land-cover class, 1-8)")
    if len(frame) == 0:
        raise InvalidFile(f"{path}: no land-cover points")
    if frame.crs is None:
        raise InvalidFile(f"{path}: no coordinate reference system")
    frame = frame.to_crs(4326)
    rows: list[tuple[float, float, int]] = []
    for i, (geom, value) in enumerate(zip(frame.geometry, frame[CLASS_COLUMN], strict=True)):
        if geom is None or geom.geom_type != "Point":
            kind = "empty" if geom is None else geom.geom_type
            raise InvalidFile(f"{path}: row {i + 1}: geometry is {kind}, expected a Point")
        try:
            code = int(value)
        except (TypeError, ValueError):
            code = -1
        if code not in LANDCOVER_CLASSES or code != value:
            raise InvalidFile(
                f"{path}: row {i + 1}: class {value!r} is not one of {sorted(LANDCOVER_CLASSES)}"
            )
        rows.append((float(geom.x), float(geom.y), code))
    return rows
