"""Burn a landslide inventory into label.tif on the stack's grid: the same rule for every source.

An inventory is either polygons (any vector format) or a label raster (a GeoTIFF of 1 =
landslide, 0 = not, 255 or its nodata = unknown, such as the paper's label tifs). A raster is
reprojected onto the event grid with nearest neighbour, so codes are never blended; event
pixels the raster does not cover are unknown (255).

Codes follow the file contract: 1 landslide, 0 not landslide, 255 unknown. Pixels outside the AOI
polygon get 255, because nobody mapped landslides there: counting them as "not landslide" would
teach a model that unmapped slopes are stable. A pixel belongs to a polygon when its centre lies
inside it (rasterio's all_touched=False): a landslide's area is then neither inflated nor eroded
on average, whereas all_touched=True would add a ring of boundary pixels to every small scar.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.features import rasterize
from rasterio.warp import Resampling, reproject

from lsd.errors import InputNotFound, InvalidFile
from lsd.formats import open_raster
from lsd.rasters import LABEL_BACKGROUND, LABEL_IGNORE, LABEL_LANDSLIDE, Grid
from lsd.spec import to_crs
from lsd.vectors import read_polygons


def _burn(geoms: list, grid: Grid) -> np.ndarray:

    shapes = [(g, 1) for g in geoms if g is not None and not g.is_empty]
    if not shapes:
        return np.zeros((grid.height, grid.width), dtype=bool)
    out = rasterize(
        shapes,
        out_shape=(grid.height, grid.width),
        transform=grid.transform,
        fill=0,
        all_touched=False,
        dtype="uint8",
    )
    return out.astype(bool)


def aoi_mask(aoi_4326, grid: Grid) -> np.ndarray:
    """True where a pixel's centre lies inside the AOI polygon."""
    return _burn([to_crs(aoi_4326, 4326, grid.crs)], grid)


RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img")
RASTER_CODES = (LABEL_BACKGROUND, LABEL_LANDSLIDE, LABEL_IGNORE)


def is_label_raster(path: Path) -> bool:
    return Path(path).suffix.lower() in RASTER_SUFFIXES


def read_label_raster(path: Path, *, where: str):
    """A label raster's codes (uint8, nodata -> 255), checked, with its georeferencing."""
    path = Path(path)
    if not path.exists():
        raise InputNotFound(f"{where}: file {path} not found")
    try:
        src = open_raster(path, RASTER_SUFFIXES)
    except InvalidFile as exc:  # the gate's line, which names the file, after the row
        raise InvalidFile(f"{where}: {exc}") from None
    with src:
        if src.crs is None:
            raise InvalidFile(
                f"{where}: {path} has no coordinate reference system; a label raster must "
                "be georeferenced to be put on an event grid"
            )
        if src.count != 1:
            raise InvalidFile(f"{where}: {path} has {src.count} bands; expected one label")
        data = src.read(1, masked=True)
        crs, transform = src.crs, src.transform
    codes = np.asarray(data.filled(LABEL_IGNORE))
    bad = sorted(set(np.unique(codes).tolist()) - set(RASTER_CODES))
    if bad:
        raise InvalidFile(
            f"{where}: {path} holds value {bad[0]}; a label raster holds 0 (not landslide), "
            "1 (landslide) and 255 or nodata (unknown)"
        )
    return codes.astype(np.uint8), crs, transform


def raster_labels(path: Path, grid: Grid, *, where: str) -> np.ndarray:
    """A label raster on the event grid, nearest neighbour; uncovered pixels are 255."""

    codes, crs, transform = read_label_raster(path, where=where)
    out = np.full((grid.height, grid.width), LABEL_IGNORE, dtype=np.uint8)
    reproject(
        codes, out, src_transform=transform, src_crs=crs, src_nodata=LABEL_IGNORE,
        dst_transform=grid.transform, dst_crs=grid.crs, dst_nodata=LABEL_IGNORE,
        resampling=Resampling.nearest,
    )  # fmt: skip
    return out


def label_record(inventory: Path | str | None) -> dict[str, Any]:
    """What event.json says of a label `rasterize_labels` made, for every data source."""
    return {
        "inventory": str(inventory) if inventory else None,
        "rule": "pixel centre inside a polygon (all_touched=False)",
        "outside_aoi": "255 (unknown); the whole label is 255 without an inventory",
    }


def rasterize_labels(
    inventory: Path | None,
    aoi_4326,
    grid: Grid,
    *,
    warn: Callable[[str], None] = print,
    event_id: str = "",
) -> np.ndarray:
    """The uint8 label for one event: inventory polygons 1, rest of the AOI 0, outside 255;
    or, for a label raster, its codes inside the AOI (nearest neighbour) and 255 outside.

    Without an inventory every pixel is 255 (unknown): the event can still be mapped by a model,
    but it carries no ground truth for training or scoring. An inventory that misses the AOI
    entirely is almost always a CRS or file mix-up, so it is reported, yet the AOI is labelled 0
    as the user's data says.
    """
    label = np.full((grid.height, grid.width), LABEL_IGNORE, dtype=np.uint8)
    if inventory is None:
        return label
    inside = aoi_mask(aoi_4326, grid)
    if is_label_raster(inventory):
        where = f"event {event_id} inventory".strip()
        codes = raster_labels(Path(inventory), grid, where=where)
        if not (codes[inside] != LABEL_IGNORE).any():
            warn(f"warning: event {event_id}: {inventory} does not cover the AOI; its label is "
                 "all unknown (check the raster's CRS)")  # fmt: skip
        label[inside] = codes[inside]
        return label
    gdf = read_polygons(Path(inventory), where=f"event {event_id} inventory".strip())
    aoi_grid = to_crs(aoi_4326, 4326, grid.crs)
    geoms = list(gdf.to_crs(grid.crs).geometry)
    if not any(g.intersects(aoi_grid) for g in geoms):
        warn(
            f"warning: event {event_id}: no polygon of {inventory} touches the AOI; "
            "labelled as all 'not landslide' (check the inventory's CRS)"
        )
    burned = _burn(geoms, grid)
    label[inside] = LABEL_BACKGROUND
    label[inside & burned] = LABEL_LANDSLIDE
    return label
