"""stack.tif and label.tif: the two rasters of an event folder, read and written only here.

A stack is float32, one band per layer, band descriptions are the layer names, NaN is no data. A
label is uint8 on the same grid: 1 landslide, 0 not, 255 ignored. Layers are found by name, so a
stack may hold more layers than a setting uses, in any order.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from lsd.errors import InvalidFile, LayerMissing
from lsd.files import atomic_path
from lsd.formats import GEOTIFF, open_raster
from lsd.layers import family_hint
from lsd.limits import check_memory, check_raster

LABEL_BACKGROUND = 0
LABEL_LANDSLIDE = 1
LABEL_IGNORE = 255
LABEL_CODES: dict[str, str] = {
    str(LABEL_BACKGROUND): "not landslide",
    str(LABEL_LANDSLIDE): "landslide",
    str(LABEL_IGNORE): "ignored (unknown or unlabelled)",
}


@dataclass(frozen=True)
class Grid:
    """Where a raster sits: size, CRS (None when the source had no georeferencing), transform."""

    width: int
    height: int
    crs: Any
    transform: Any

    def same_as(self, other: Grid) -> bool:
        return (
            self.width == other.width
            and self.height == other.height
            and (self.crs == other.crs)
            and self.transform.almost_equals(other.transform)
        )

    def pixel_size_m(self) -> float | None:
        """Side of a pixel in metres (geometric mean of width and height; degrees converted at
        the grid's centre latitude); None without a CRS, where the size is only nominal."""
        if self.crs is None or self.transform is None:
            return None
        t = self.transform
        if self.crs.is_geographic:
            lat = np.radians(t.f + t.e * self.height / 2)
            width, height = abs(t.a) * 111_320.0 * np.cos(lat), abs(t.e) * 110_574.0
        else:
            try:
                factor = float(self.crs.linear_units_factor[1])
            except Exception:  # a CRS without linear units: assume metres
                factor = 1.0
            width, height = abs(t.a) * factor, abs(t.e) * factor
        return float(np.sqrt(width * height))

    def record(self) -> dict[str, Any]:
        """The grid as JSON values, for event.json and run records. `pixel_m` is in metres
        whatever the CRS (degrees converted, as bundles record it), null without a CRS."""
        t = self.transform
        size = self.pixel_size_m()
        return {
            "crs": self.crs.to_string() if self.crs is not None else None,
            "width": self.width,
            "height": self.height,
            "transform": [t.a, t.b, t.c, t.d, t.e, t.f],
            "pixel_m": round(size, 3) if size is not None else None,
            "bounds": [t.c, t.f + t.e * self.height, t.c + t.a * self.width, t.f],
        }


def _open(path: Path):
    """Stacks and labels come from users too (predict --stack, event folders made elsewhere):
    they are opened through the one gate for such files, as GeoTIFFs only."""
    return open_raster(path, GEOTIFF)


def require_layers(
    where: Path | str, available: Sequence[str], needed: Sequence[str], needed_by: str = ""
) -> None:
    """The one check that a stack holds every layer something needs; the message names them.

    `needed_by` completes "... that {needed_by} needs" (e.g. "the model", "setting 's2'").
    """

    absent = [n for n in needed if n not in available]
    if absent:
        why = f" that {needed_by} needs" if needed_by else ""
        hints = "".join(f"; {h}" for h in map(family_hint, absent[:2]) if h)
        raise LayerMissing(
            f"{where}: lacks layer(s) {', '.join(absent)}{why}{hints}; it has "
            f"{', '.join(available)}"
        )


def read_layer_names(stack_path: Path | str) -> tuple[str, ...]:
    """Layer names come from band descriptions; a stack without them cannot be trusted."""
    stack_path = Path(stack_path)
    with _open(stack_path) as src:
        check_raster(src, stack_path)
        names = tuple(src.descriptions)
    missing = [i + 1 for i, n in enumerate(names) if not n]
    if missing:
        raise InvalidFile(
            f"{stack_path}: band(s) {', '.join(map(str, missing))} have no layer name "
            "(band description); lsd needs every band named"
        )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidFile(f"{stack_path}: layer name(s) used twice: {', '.join(dupes)}")
    return names


def read_grid(path: Path | str) -> Grid:
    with _open(Path(path)) as src:
        return Grid(src.width, src.height, src.crs, src.transform)


def read_stack(
    stack_path: Path | str, layers: Sequence[str] | None = None
) -> tuple[np.ndarray, tuple[str, ...], Grid]:
    """Read the named layers (all when None) as float32 (C, H, W), in the order asked for."""
    stack_path = Path(stack_path)
    names = read_layer_names(stack_path)
    wanted = tuple(layers) if layers is not None else names
    require_layers(stack_path, names, wanted)
    with _open(stack_path) as src:
        idx = [names.index(n) + 1 for n in wanted]
        check_memory(f"reading {stack_path} whole ({len(idx)} layers of {src.width} x "
                     f"{src.height} pixels)", 4.0 * len(idx) * src.width * src.height)  # fmt: skip
        data = src.read(idx, out_dtype="float32")
        if src.nodata is not None and not np.isnan(src.nodata):
            data[data == src.nodata] = np.nan
        grid = Grid(src.width, src.height, src.crs, src.transform)
    return data, wanted, grid


@dataclass(frozen=True)
class LayerStats:
    """What a layer of a stack holds: counts of finite, NaN (no data) and +/-inf values, and the
    range, mean and (population) std of the finite ones."""

    finite: int
    nan: int
    inf: int
    min: float
    max: float
    mean: float
    std: float


STATS_BLOCK_ROWS = 512


def layer_statistics(
    stack_path: Path | str, layers: Sequence[str] | None = None, progress: Any = None
) -> dict[str, LayerStats]:
    """Per-layer statistics of a stack, read in blocks of rows so memory stays at one block.

    +/-inf counts as no data (lsd treats every non-finite value so); it is counted apart, since
    it usually means a damaged source or a division by zero upstream. `progress` (an
    lsd.progress.Progress over the rows), when given, shows the pass: on a large stack it
    takes minutes.
    """
    stack_path = Path(stack_path)
    names = read_layer_names(stack_path)
    wanted = tuple(layers) if layers is not None else names
    require_layers(stack_path, names, wanted)
    n = len(wanted)
    finite, nan, inf = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
    lo, hi = np.full(n, np.inf), np.full(n, -np.inf)
    total, total_sq = np.zeros(n), np.zeros(n)
    with _open(stack_path) as src:
        idx = [names.index(name) + 1 for name in wanted]
        nodata = src.nodata
        for r0 in range(0, src.height, STATS_BLOCK_ROWS):
            rows = min(STATS_BLOCK_ROWS, src.height - r0)
            block = src.read(idx, window=Window(0, r0, src.width, rows), out_dtype="float32")
            for i, band in enumerate(block):
                if nodata is not None and not np.isnan(nodata):
                    band[band == nodata] = np.nan
                ok = np.isfinite(band)
                values = band[ok].astype(np.float64)
                nan[i] += int(np.isnan(band).sum())
                inf[i] += int(band.size - ok.sum()) - int(np.isnan(band).sum())
                finite[i] += values.size
                if values.size:
                    lo[i], hi[i] = min(lo[i], values.min()), max(hi[i], values.max())
                    total[i] += values.sum()
                    total_sq[i] += np.square(values).sum()
            if progress is not None:
                progress.update(rows)
    out: dict[str, LayerStats] = {}
    for i, name in enumerate(wanted):
        k = int(finite[i])
        mean = total[i] / k if k else float("nan")
        var = max(total_sq[i] / k - mean * mean, 0.0) if k else float("nan")
        out[name] = LayerStats(k, int(nan[i]), int(inf[i]), float(lo[i]) if k else float("nan"),
                               float(hi[i]) if k else float("nan"), float(mean),
                               float(np.sqrt(var)))  # fmt: skip
    return out


class RowReader:
    """Rows of chosen bands of an open stack as float32 (C, rows, width), its nodata value and
    +/-inf as NaN: what streamed prediction reads, on one machine or on the workers of a
    cluster."""

    def __init__(self, src: Any, indexes: Sequence[int]) -> None:
        self.src, self.indexes = src, list(indexes)
        self.nodata = src.nodata
        self.seconds = 0.0

    def __call__(self, r0: int, r1: int) -> np.ndarray:

        t0 = time.perf_counter()
        window = Window(0, r0, self.src.width, r1 - r0)
        data = self.src.read(self.indexes, window=window, out_dtype="float32")
        for layer in data:  # per layer: no boolean copy of the whole strip
            if self.nodata is not None and not np.isnan(self.nodata):
                layer[layer == self.nodata] = np.nan
            layer[np.isinf(layer)] = np.nan  # non-finite is no data, as in training
        self.seconds += time.perf_counter() - t0
        return data


def read_label(label_path: Path | str) -> tuple[np.ndarray, Grid]:
    label_path = Path(label_path)
    with _open(label_path) as src:
        if src.count != 1:
            raise InvalidFile(f"{label_path}: a label must have one band, found {src.count}")
        check_raster(src, label_path)
        check_memory(f"reading {label_path} ({src.width} x {src.height} pixels)",
                     2.0 * src.width * src.height)  # fmt: skip
        data = src.read(1)
        grid = Grid(src.width, src.height, src.crs, src.transform)
    bad = np.setdiff1d(np.unique(data), [LABEL_BACKGROUND, LABEL_LANDSLIDE, LABEL_IGNORE])
    if bad.size:
        raise InvalidFile(
            f"{label_path}: label values must be 0, 1 or 255; found {', '.join(map(str, bad[:5]))}"
        )
    return data.astype(np.uint8, copy=False), grid


def raster_profile(
    grid: Grid, count: int, dtype: str, nodata: float | int | None
) -> dict[str, Any]:
    """The GeoTIFF layout every lsd raster shares; writers that stream tiles use it too, so a
    streamed stack is laid out exactly like one written whole."""
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": count,
        "dtype": dtype,
        "nodata": nodata,
        "compress": "deflate",
        "predictor": 3 if dtype == "float32" else 2,
        "interleave": "band",
    }
    if grid.crs is not None:
        profile["crs"] = grid.crs
    if grid.transform is not None:
        profile["transform"] = grid.transform
    if grid.width >= 512 and grid.height >= 512:
        profile.update(tiled=True, blockxsize=512, blockysize=512)
    return profile


def stack_profile(grid: Grid, n_layers: int) -> dict[str, Any]:
    """The profile of a stack.tif, for writers that stream it block by block."""
    return raster_profile(grid, n_layers, "float32", float("nan"))


def describe_bands(
    dst: Any, layers: Sequence[str], conventions: dict[str, dict[str, str]] | None = None
) -> None:
    """Name the bands of an open stack being written (band descriptions are the layer names,
    which is how stacks are read) and say what their values mean: each band's `meaning` tag
    (e.g. that layover 1 is distorted) and, with `conventions`, the stack's record in the
    dataset tag and each band's `conventions` tag (lsd.conventions)."""
    from lsd.conventions import band_tag, layer_meaning, stack_tags

    for i, name in enumerate(layers, start=1):
        dst.set_band_description(i, name)
        tags = {"meaning": layer_meaning(name, conventions)}
        if conventions:
            tags["conventions"] = band_tag(conventions, name)
        tags = {k: v for k, v in tags.items() if v}
        if tags:
            dst.update_tags(i, **tags)
    if conventions:
        dst.update_tags(**stack_tags(conventions))


def write_stack(
    stack_path: Path | str,
    data: np.ndarray,
    layers: Sequence[str],
    grid: Grid,
    conventions: dict[str, dict[str, str]] | None = None,
) -> None:
    """Write a (C, H, W) float32 stack with band descriptions, atomically; `conventions` go
    into its tags (describe_bands)."""

    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 3 or data.shape[0] != len(layers):
        raise ValueError(f"stack shape {data.shape} does not match {len(layers)} layer names")
    if data.shape[1:] != (grid.height, grid.width):
        raise ValueError(f"stack shape {data.shape} does not match grid {grid}")
    with (
        atomic_path(stack_path) as tmp,
        rasterio.open(tmp, "w", **stack_profile(grid, len(layers))) as dst,
    ):
        dst.write(data)
        describe_bands(dst, layers, conventions)


def write_label(label_path: Path | str, label: np.ndarray, grid: Grid) -> None:

    label = np.asarray(label)
    if label.shape != (grid.height, grid.width):
        raise ValueError(f"label shape {label.shape} does not match grid {grid}")
    with (
        atomic_path(label_path) as tmp,
        rasterio.open(tmp, "w", **raster_profile(grid, 1, "uint8", LABEL_IGNORE)) as dst,
    ):
        dst.write(label.astype(np.uint8), 1)
        dst.set_band_description(1, "label")


def write_stack_with_layers(
    stack_path: Path | str, dest: Path | str, data: np.ndarray, names: Sequence[str]
) -> tuple[str, ...]:
    """Write to `dest` the stack at `stack_path` with the (k, H, W) `data` appended as layers
    `names`; returns every layer name of the result. Copied block by block, so only the new
    layers are held in memory whole. `dest` is written as given: the caller makes it atomic."""

    stack_path = Path(stack_path)
    old = read_layer_names(stack_path)
    grid = read_grid(stack_path)
    data = np.asarray(data, dtype=np.float32)
    if data.shape != (len(names), grid.height, grid.width):
        raise ValueError(f"new layers {data.shape} do not match {len(names)} names on {grid}")
    layers = (*old, *names)
    with (
        _open(stack_path) as src,
        rasterio.open(dest, "w", **stack_profile(grid, len(layers))) as dst,
    ):
        for i, name in enumerate(layers, start=1):
            dst.set_band_description(i, name)
            if i <= len(old) and src.tags(i):
                dst.update_tags(i, **src.tags(i))  # what the old bands mean stays said
        if src.tags():
            dst.update_tags(**src.tags())  # e.g. the stack's conventions
        rows = 512
        for row in range(0, grid.height, rows):
            window = Window(0, row, grid.width, min(rows, grid.height - row))
            block = src.read(window=window, out_dtype="float32")
            if src.nodata is not None and not np.isnan(src.nodata):
                block[block == src.nodata] = np.nan
            dst.write(block, indexes=list(range(1, len(old) + 1)), window=window)
            new = data[:, row : row + int(window.height)]
            dst.write(new, indexes=list(range(len(old) + 1, len(layers) + 1)), window=window)
    return layers
