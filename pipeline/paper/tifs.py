"""Reading the paper's input and label tifs in the layouts a real archive may hold.

The paper's reader (tifffile, `pages[0].asarray()`) expects one page of H x W x 15 samples. The
same numbers also turn up band-interleaved (one page of 15 x H x W, as GDAL writes), or as one
page per layer, or one page per image row (what tifffile writes for an H x W x 15 array unless
told otherwise). GDAL reads the first two as 15 bands; the page layouts are read page by page
and oriented by the one axis of length 15. Anything else is refused, saying what was expected
and what was found.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine

from lsd.errors import InvalidFile
from lsd.formats import GEOTIFF, open_raster, open_tiff_page
from lsd.limits import check_memory, check_pixels, check_raster
from lsd.pipeline.paper.facts import N_CHANNELS
from lsd.rasters import LABEL_BACKGROUND, LABEL_IGNORE, LABEL_LANDSLIDE, Grid

LABEL_VALUES = (LABEL_BACKGROUND, LABEL_LANDSLIDE, LABEL_IGNORE)
NOMINAL_PIXEL_M = 10.0  # the paper's stacks are 10 m; without georeferencing the grid is nominal


@dataclass(frozen=True)
class TifShape:
    """What a tif holds, from its header: channels, height, width and how they are laid out."""

    channels: int
    height: int
    width: int
    layout: str  # "bands" (GDAL bands), "pages" (one page per layer), "rows" (one per row)


@contextmanager
def _open(path: Path):
    """Archive files are opened only as GeoTIFFs, never with files beside them (lsd.formats):
    a tif of a crafted archive that is really a VRT must not read other files."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NotGeoreferencedWarning: recorded, not an error
        src = open_raster(path, GEOTIFF)
        with src:
            yield src


def _page_number(name: str) -> int:
    part = name.split(":")[1] if name.startswith("GTIFF_DIR:") else ""
    return int(part) if part.isdigit() else 0


def _pages(src) -> list[str]:
    """GDAL's names of every page (the first included), in page order: GDAL lists them as text
    (GTIFF_DIR:1, GTIFF_DIR:10, GTIFF_DIR:11 ...), so they are sorted by number here."""

    return sorted(src.subdatasets, key=_page_number)


def _page_shapes(src) -> list[tuple[int, int]]:
    shapes = []
    for name in _pages(src):
        with open_tiff_page(src.name, _page_number(name)) as page:
            if page.count != 1:
                return []
            shapes.append((page.height, page.width))
    return shapes


def tif_shape(path: Path) -> TifShape:
    """The layout of an input tif, read from its header only."""
    with _open(path) as src:
        if src.count > 1 or not src.subdatasets:
            return TifShape(src.count, src.height, src.width, "bands")
        shapes = _page_shapes(src)
    if not shapes or len(set(shapes)) != 1:
        raise InvalidFile(f"{path}: pages of different sizes; expected one H x W x 15 image")
    (h, w), pages = shapes[0], len(shapes)
    if pages == N_CHANNELS and w != N_CHANNELS:
        return TifShape(pages, h, w, "pages")
    if w == N_CHANNELS and pages != N_CHANNELS:
        return TifShape(w, pages, h, "rows")  # page i is image row i: (W, 15)
    return TifShape(pages, h, w, "pages")


def _read_pages(src) -> np.ndarray:
    pages = []
    for name in _pages(src):
        with open_tiff_page(src.name, _page_number(name)) as page:
            pages.append(page.read(1, out_dtype="float32"))
    return np.stack(pages)


def _grid(src, height: int, width: int) -> tuple[Grid, bool]:
    """The tif's own grid when it has one; else a nominal 10 m grid at (0, 0), not georeferenced."""

    transform = src.transform
    if src.crs is not None and not transform.is_identity:
        return Grid(width, height, src.crs, transform), True
    nominal = Affine(NOMINAL_PIXEL_M, 0.0, 0.0, 0.0, -NOMINAL_PIXEL_M, 0.0)
    return Grid(width, height, None, nominal), False


def tif_grid(path: Path) -> tuple[Grid, bool]:
    """The grid of a tif (nominal when it has no georeferencing) and whether it is real."""
    with _open(path) as src:
        shape = tif_shape(path) if src.count == 1 and src.subdatasets else None
        h, w = (shape.height, shape.width) if shape else (src.height, src.width)
        return _grid(src, h, w)


@dataclass(frozen=True)
class NoDataTag:
    """What an input's GDAL no-data tag declares, and how many of its values equal it."""

    value: float
    count: int  # values (pixels x layers) equal to it; NaN tags count the NaN values
    per_layer: tuple[int, ...]

    def record(self, layers: tuple[str, ...] | list[str]) -> dict:
        """For event.json: the tag, what lsd did with it, and where its value occurs."""
        value = None if np.isnan(self.value) else self.value
        return {
            "value": "nan" if value is None else value,
            "values_equal_to_it": self.count,
            "per_layer": {n: c for n, c in zip(layers, self.per_layer, strict=True) if c},
            "kept_as_values": value is not None,
            "why": "the paper's reader (tifffile pages[0].asarray()) ignores GDAL tags, so its "
            "statistics and inputs hold these values; only NaN is no data there",
        }


def read_input(path: Path) -> tuple[np.ndarray, Grid, bool, NoDataTag | None]:
    """(15, H, W) float32 exactly as stored, the grid, whether it is georeferenced, and the GDAL
    no-data tag when the tif declares one.

    The values are the paper's reader's, not GDAL's: its code reads the tif with tifffile, which
    knows no no-data tag, so a declared no-data value is a value in its statistics and in what
    its models see, and only NaN is no data. The tag is returned for the caller to report.
    """
    shape = tif_shape(path)
    check_channels(path, shape)
    check_pixels(str(path), shape.width, shape.height)
    check_memory(f"reading {path} ({shape.channels} layers of {shape.width} x {shape.height} "
                 "pixels)", 8.0 * shape.channels * shape.width * shape.height)  # fmt: skip
    with _open(path) as src:
        check_raster(src, path)
        if shape.layout == "bands":
            data = src.read(out_dtype="float32")
        else:
            pages = _read_pages(src)
            data = pages if shape.layout == "pages" else np.moveaxis(pages, 2, 0)
        nodata = src.nodata
        grid, geo = _grid(src, shape.height, shape.width)
    tag = None
    if nodata is not None:
        hits = np.isnan(data) if np.isnan(nodata) else data == np.float32(nodata)
        per_layer = tuple(int(n) for n in hits.sum(axis=(1, 2)))
        tag = NoDataTag(float(nodata), sum(per_layer), per_layer)
    return np.ascontiguousarray(data), grid, geo, tag


def check_channels(path: Path, shape: TifShape) -> None:
    if shape.channels != N_CHANNELS:
        what = {"bands": "band(s)", "pages": "page(s)", "rows": "samples per pixel"}[shape.layout]
        raise InvalidFile(
            f"{path}: {shape.channels} {what} of {shape.height} x {shape.width}; expected "
            f"{N_CHANNELS} layers (the paper's Table 2, H x W x {N_CHANNELS})"
        )


def label_shape(path: Path) -> tuple[int, int]:
    with _open(path) as src:
        if src.count != 1 or src.subdatasets:
            pages = max(len(src.subdatasets), 1)
            raise InvalidFile(
                f"{path}: {src.count} band(s) in {pages} page(s); expected one H x W label"
            )
        return src.height, src.width


def read_label_tif(path: Path) -> tuple[np.ndarray, Grid, bool]:
    """The label as uint8 0/1/255; any other value is refused, naming it and where it is."""
    label_shape(path)
    with _open(path) as src:
        check_raster(src, path)
        pixel_bytes = np.dtype(src.dtypes[0]).itemsize + 2.0  # the raw band, its copy as uint8
        check_memory(f"reading {path} ({src.width} x {src.height} pixels)",
                     pixel_bytes * src.width * src.height)  # fmt: skip
        raw = src.read(1)
        grid, geo = _grid(src, src.height, src.width)
    values = np.unique(raw[~np.isnan(raw)]) if raw.dtype.kind == "f" else np.unique(raw)
    bad = [v for v in values.tolist() if v not in LABEL_VALUES]
    if bad or (raw.dtype.kind == "f" and np.isnan(raw).any()):
        value = bad[0] if bad else "NaN"
        where = np.argwhere(raw == value)[0] if bad else np.argwhere(np.isnan(raw))[0]
        raise InvalidFile(
            f"{path}: label value {value} at row {where[0]}, column {where[1]}; expected "
            "0 (not landslide), 1 (landslide) or 255 (no data)"
        )
    return raw.astype(np.uint8), grid, geo
