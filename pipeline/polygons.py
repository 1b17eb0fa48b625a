"""Landslide polygons from a mask raster, built strip by strip so memory stays at one strip.

Connected components (4-connected) are labelled in each strip; components that touch across a
strip border are joined with a union-find, and their statistics (pixel count, probability sum and
max) are combined. Areas are measured in metres (planar in a metric CRS, else equal-area), so the
minimum mapping unit means the same everywhere; `burn_out` removes the pixels of dropped polygons
from the mask, so mask.tif and landslides.gpkg always agree.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

EQUAL_AREA_CRS = "EPSG:6933"  # WGS 84 / NSIDC EASE-Grid 2.0 Global: metres, equal area
VECTOR_STRIP_ROWS = 1024
POLYGON_LAYER = "landslides"


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = [0]  # index 0 unused (background)

    def add(self, n: int) -> None:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))

    def find(self, a: int) -> int:
        root = a
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[a] != root:
            self.parent[a], a = root, self.parent[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class Polygons:
    """Landslide polygons in pixel coordinates (col, row) plus per-polygon statistics."""

    geoms: list[Any]
    pixels: np.ndarray
    prob_sum: np.ndarray
    prob_max: np.ndarray


def vectorise(mask_path: Path, prob_path: Path, strip_rows: int = VECTOR_STRIP_ROWS) -> Polygons:
    """4-connected components of mask == 1 as polygons, built strip by strip."""
    import rasterio
    from affine import Affine
    from rasterio.features import shapes
    from rasterio.windows import Window
    from scipy import ndimage
    from shapely.geometry import shape

    uf = _UnionFind()
    geoms: list[Any] = [None]
    pixels: list[np.ndarray] = [np.zeros(1)]
    sums: list[np.ndarray] = [np.zeros(1)]
    maxes: list[np.ndarray] = [np.zeros(1)]
    prev_last: np.ndarray | None = None
    with rasterio.open(mask_path) as msrc, rasterio.open(prob_path) as psrc:
        height, width = msrc.height, msrc.width
        for r0 in range(0, height, strip_rows):
            win = Window(0, r0, width, min(strip_rows, height - r0))
            hit = msrc.read(1, window=win) == 1
            lab, n = ndimage.label(hit)
            offset = len(uf.parent) - 1
            uf.add(n)
            if n:
                prob = psrc.read(1, window=win)
                flat = lab.ravel()
                pixels.append(np.bincount(flat, minlength=n + 1)[1:].astype(np.int64))
                sums.append(np.bincount(flat, weights=prob.ravel(), minlength=n + 1)[1:])
                maxes.append(
                    np.asarray(ndimage.maximum(prob, lab, index=np.arange(1, n + 1)), np.float64)
                )
                piece = [None] * n
                for geom, value in shapes(
                    lab.astype(np.int32),
                    mask=hit,
                    connectivity=4,
                    transform=Affine.translation(0, r0),
                ):
                    piece[int(value) - 1] = shape(geom)
                geoms.extend(piece)
            glob = np.where(lab > 0, lab + offset, 0)
            if prev_last is not None:
                both = (prev_last > 0) & (glob[0] > 0)
                for a, b in set(zip(prev_last[both].tolist(), glob[0][both].tolist(), strict=True)):
                    uf.union(a, b)
            prev_last = glob[-1].copy()

    return _merge(uf, geoms, pixels, sums, maxes)


def _merge(
    uf: _UnionFind,
    geoms: list[Any],
    pixels: list[np.ndarray],
    sums: list[np.ndarray],
    maxes: list[np.ndarray],
) -> Polygons:
    """One polygon per union-find group: pieces unioned, statistics combined."""
    from shapely.ops import unary_union

    pix = np.concatenate(pixels)
    psum = np.concatenate(sums)
    pmax = np.concatenate(maxes)
    groups: dict[int, list[int]] = {}
    for i in range(1, len(uf.parent)):
        groups.setdefault(uf.find(i), []).append(i)
    out = Polygons(
        [], np.zeros(len(groups), np.int64), np.zeros(len(groups)), np.zeros(len(groups))
    )
    for j, members in enumerate(groups.values()):
        idx = np.asarray(members)
        geom = geoms[members[0]] if len(members) == 1 else unary_union([geoms[i] for i in members])
        out.geoms.append(geom)
        out.pixels[j] = pix[idx].sum()
        out.prob_sum[j] = psum[idx].sum()
        out.prob_max[j] = pmax[idx].max()
    return out


def polygon_areas_m2(geoms_crs: Sequence[Any], crs: Any, pixel_area: float) -> np.ndarray:
    """Areas in m2: planar in a metre-based projected CRS, else in an equal-area projection.

    A stack without a CRS has no known unit; its pixels are taken to be metres (documented).
    """
    import geopandas as gpd

    if not geoms_crs:
        return np.zeros(0)
    gs = gpd.GeoSeries(list(geoms_crs), crs=crs)
    if crs is None:
        return gs.area.to_numpy() * 1.0
    if crs.is_projected and (crs.linear_units_factor[1] if crs.linear_units_factor else 0) == 1.0:
        return gs.area.to_numpy()
    return gs.to_crs(EQUAL_AREA_CRS).area.to_numpy()


def pixel_to_crs(geoms: Sequence[Any], transform: Any) -> list[Any]:
    from shapely.affinity import affine_transform

    t = transform
    coeffs = [t.a, t.b, t.d, t.e, t.c, t.f]
    return [affine_transform(g, coeffs) for g in geoms]


def write_polygons(
    path: Path, geoms_crs: list[Any], table: dict[str, np.ndarray], crs: Any
) -> None:
    import geopandas as gpd

    gdf = gpd.GeoDataFrame(
        {"id": np.arange(1, len(geoms_crs) + 1, dtype=np.int64), **table},
        geometry=gpd.GeoSeries(geoms_crs, crs=crs),
        crs=crs,
    )
    with warnings.catch_warnings():
        # a stack without georeferencing (e.g. Landslide4Sense) gives polygons in its pixel-sized
        # frame; run.json records crs: null, so the writer's no-CRS warning adds nothing
        warnings.filterwarnings("ignore", message="'crs' was not provided", category=UserWarning)
        gdf.to_file(path, driver="GPKG", layer=POLYGON_LAYER, geometry_type="Polygon")


def burn_out(mask_src: Path, mask_dst: Path, removed: Sequence[Any], strip_rows: int) -> None:
    """Copy the mask, setting the pixels of `removed` (pixel-coordinate polygons) to 0."""
    import rasterio
    from affine import Affine
    from rasterio.features import rasterize
    from rasterio.windows import Window

    bounds = np.array([g.bounds for g in removed]).reshape(-1, 4)  # minx, miny, maxx, maxy
    with rasterio.open(mask_src) as src, rasterio.open(mask_dst, "w", **src.profile) as dst:
        for r0 in range(0, src.height, strip_rows):
            rows = min(strip_rows, src.height - r0)
            win = Window(0, r0, src.width, rows)
            data = src.read(1, window=win)
            sel = np.nonzero((bounds[:, 1] < r0 + rows) & (bounds[:, 3] > r0))[0]
            if sel.size:
                burn = rasterize(
                    [(removed[i], 1) for i in sel],
                    out_shape=(rows, src.width),
                    transform=Affine.translation(0, r0),
                    fill=0,
                    dtype="uint8",
                )
                data[(burn == 1) & (data == 1)] = 0
            dst.write(data, 1, window=win)
