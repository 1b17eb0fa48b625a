"""Reading any asset onto (a window of) the event grid, and the windows themselves.

Every raster a STAC fetch reads (Sentinel-2 bands, RTC backscatter, GLO-30 tiles, WorldCover,
the auxiliary maps) goes through `read_onto`: the COG is opened with the GTiff driver only, and
a GDAL warped view in the target's CRS and pixel grid reads just the blocks (and the overview)
the window needs, over HTTP range requests for remote assets. The file's own georeferencing is
used, not the item's projection metadata, so an item in another UTM zone or at another
resolution lands in the right place, and a catalog whose metadata is missing or wrong cannot
shift a layer.

Windows bound the memory: a stack is computed window by window (`window_px`, 512 by default),
each window read with a halo of pixels where a neighbourhood operation (slope) needs them.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import Affine
from rasterio.vrt import WarpedVRT

from lsd.errors import ServiceUnavailable
from lsd.rasters import Grid

RESAMPLING = ("nearest", "bilinear", "cubic")


@dataclass(frozen=True)
class Target:
    """A block of pixels on a grid: the (CRS, transform, size) a read is warped onto."""

    crs: Any
    transform: Any
    width: int
    height: int

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinates (x, y) of the pixel centres, each (height, width)."""
        t = self.transform
        cols = np.arange(self.width) + 0.5
        rows = np.arange(self.height) + 0.5
        x = t.c + t.a * cols
        y = t.f + t.e * rows
        return np.broadcast_to(x, (self.height, self.width)), np.broadcast_to(
            y[:, None], (self.height, self.width)
        )


@dataclass(frozen=True)
class Block:
    """One window of a grid: its offsets and size in the grid's pixels."""

    row: int
    col: int
    height: int
    width: int

    def target(self, grid: Grid, halo: int = 0) -> Target:

        t = grid.transform
        x0 = t.c + t.a * (self.col - halo)
        y0 = t.f + t.e * (self.row - halo)
        return Target(
            grid.crs,
            Affine(t.a, 0.0, x0, 0.0, t.e, y0),
            self.width + 2 * halo,
            self.height + 2 * halo,
        )

    def slices(self) -> tuple[slice, slice]:
        return slice(self.row, self.row + self.height), slice(self.col, self.col + self.width)


def blocks(grid: Grid, size: int) -> Iterator[Block]:
    """The grid cut into windows of at most size x size pixels, row by row."""
    for row in range(0, grid.height, size):
        for col in range(0, grid.width, size):
            yield Block(row, col, min(size, grid.height - row), min(size, grid.width - col))


def whole(grid: Grid) -> Target:
    return Block(0, 0, grid.height, grid.width).target(grid)


def grown_grid(grid: Grid, metres: float, scale: float | None = None) -> Grid:
    """The grid grown by `metres` on every side, at `scale` (default its own), its edges on
    multiples of `scale` so the grown grid and the event grid share their lattice."""

    t = grid.transform
    scale = scale or abs(t.a)
    x0, y1 = t.c - metres, t.f + metres
    x1, y0 = t.c + t.a * grid.width + metres, t.f + t.e * grid.height - metres
    x0, y0 = math.floor(x0 / scale) * scale, math.floor(y0 / scale) * scale
    x1, y1 = math.ceil(x1 / scale) * scale, math.ceil(y1 / scale) * scale
    return Grid(
        width=round((x1 - x0) / scale),
        height=round((y1 - y0) / scale),
        crs=grid.crs,
        transform=Affine(scale, 0.0, x0, 0.0, -scale, y1),
    )


def offset_in(inner: Grid, outer: Grid) -> tuple[int, int]:
    """(row, col) of `inner`'s first pixel in `outer` (same lattice and pixel size)."""
    ti, to = inner.transform, outer.transform
    return round((ti.f - to.f) / to.e), round((ti.c - to.c) / to.a)


def gdal_options(timeout_s: float) -> dict[str, Any]:
    """GDAL settings of every read: a silent server fails within the timeout, listing a
    remote folder is never tried, the block cache stays small."""
    return {
        "GDAL_HTTP_TIMEOUT": max(1, int(timeout_s)),
        "GDAL_HTTP_CONNECTTIMEOUT": max(1, int(min(timeout_s, 10))),
        "GDAL_HTTP_MAX_RETRY": 2,
        "GDAL_HTTP_RETRY_DELAY": 1,
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "GDAL_CACHEMAX": 64,
        "CPL_VSIL_CURL_USE_HEAD": "NO",
    }


_OPEN = threading.local()
OPEN_PER_THREAD = 64


def _dataset(href: str) -> Any:
    """An open dataset for `href`, kept per thread (GDAL handles are not shared between
    threads): a window after the first reads no header again."""

    cache: OrderedDict[str, Any] = getattr(_OPEN, "cache", None) or OrderedDict()
    _OPEN.cache = cache
    if href in cache:
        cache.move_to_end(href)
        return cache[href]
    src = rasterio.open(href, driver="GTiff")
    cache[href] = src
    while len(cache) > OPEN_PER_THREAD:
        cache.popitem(last=False)[1].close()
    return src


def close_datasets() -> None:
    """Close this thread's cached datasets."""
    for src in getattr(_OPEN, "cache", {}).values():
        src.close()
    _OPEN.cache = OrderedDict()


class AssetUnreadable(ServiceUnavailable):
    """An asset could not be opened or read (a server error, a timeout, a damaged file)."""


def read_onto(
    href: str,
    target: Target,
    resampling: str = "nearest",
    *,
    timeout_s: float = 30.0,
    where: str = "",
    nodata: float | None = None,
) -> np.ndarray:
    """The first band of the raster at `href` warped onto `target`, float32, NaN where the
    raster has no data or does not reach. `where` names the item and asset in errors."""

    try:
        with rasterio.Env(**gdal_options(timeout_s)):
            src = _dataset(href)
            src_nodata = nodata if nodata is not None else src.nodata
            with WarpedVRT(
                src,
                crs=target.crs,
                transform=target.transform,
                width=target.width,
                height=target.height,
                resampling=Resampling[resampling],
                src_nodata=src_nodata,
                nodata=np.nan,
                dtype="float32",
            ) as vrt:
                return vrt.read(1)
    except rasterio.errors.RasterioError as exc:
        text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise AssetUnreadable(f"{where or href}: cannot read {href} ({text})") from None
