"""Burn a landslide inventory into label.tif on the stack's grid: the same rule for every source.

Codes follow the file contract: 1 landslide, 0 not landslide, 255 unknown. Pixels outside the AOI
polygon get 255, because nobody mapped landslides there: counting them as "not landslide" would
teach a model that unmapped slopes are stable. A pixel belongs to a polygon when its centre lies
inside it (rasterio's all_touched=False): a landslide's area is then neither inflated nor eroded
on average, whereas all_touched=True would add a ring of boundary pixels to every small scar.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from lsd.rasters import LABEL_BACKGROUND, LABEL_IGNORE, LABEL_LANDSLIDE, Grid
from lsd.spec import to_crs
from lsd.vectors import read_polygons


def _burn(geoms: list, grid: Grid) -> np.ndarray:
    from rasterio.features import rasterize

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


def rasterize_labels(
    inventory: Path | None,
    aoi_4326,
    grid: Grid,
    *,
    warn: Callable[[str], None] = print,
    event_id: str = "",
) -> np.ndarray:
    """The uint8 label for one event: inventory polygons 1, rest of the AOI 0, outside 255.

    Without an inventory every pixel is 255 (unknown): the event can still be mapped by a model,
    but it carries no ground truth for training or scoring. An inventory that misses the AOI
    entirely is almost always a CRS or file mix-up, so it is reported, yet the AOI is labelled 0
    as the user's data says.
    """
    label = np.full((grid.height, grid.width), LABEL_IGNORE, dtype=np.uint8)
    if inventory is None:
        return label
    inside = aoi_mask(aoi_4326, grid)
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
