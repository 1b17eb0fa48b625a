"""The map folder `lsd predict` writes, and its raster writers.

    probability.tif   mean landslide probability of the members (COG, float32, NaN = no data)
    disagreement.tif  standard deviation across members (COG)
    mask.tif          1 landslide, 0 not, 255 no data, after masks and the minimum mapping unit
    landslides.gpkg   polygons with area, pixel count, mean and max probability
    quicklook.png     probability in a colour map with landslide outlines
    run.json          inputs, model, options, timings: enough to reproduce the map

Rows arrive from inference already final; `RasterSink` writes them into tiled GeoTIFFs in the
temporary output folder, and `to_cog` converts each finished raster to a Cloud Optimized GeoTIFF.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from lsd.errors import InvalidValue, OutputExists
from lsd.pipeline.masks import MaskOptions, apply_masks

PROB_FILE = "probability.tif"
MASK_FILE = "mask.tif"
STD_FILE = "disagreement.tif"
POLY_FILE = "landslides.gpkg"
QUICKLOOK_FILE = "quicklook.png"
RUN_FILE = "run.json"
OUTPUTS = (PROB_FILE, MASK_FILE, STD_FILE, POLY_FILE, QUICKLOOK_FILE, RUN_FILE)
MASK_NODATA = 255
QUICKLOOK_MAX_PX = 800


def check_output_folder(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidValue(f"{out_dir}: exists and is not a folder", field="out")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise OutputExists(f"{out_dir}: output folder exists and is not empty")


def tiled_profile(src_profile: dict[str, Any], dtype: str, nodata: float | int) -> dict[str, Any]:
    profile = {
        "driver": "GTiff",
        "width": src_profile["width"],
        "height": src_profile["height"],
        "count": 1,
        "dtype": dtype,
        "nodata": nodata,
        "crs": src_profile.get("crs"),
        "transform": src_profile["transform"],
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
    }
    if profile["crs"] is None:
        del profile["crs"]
    return profile


def to_cog(src: Path, dst: Path, *, resampling: str, description: str) -> None:
    """Copy a tiled GeoTIFF to a Cloud Optimized GeoTIFF (GDAL streams the copy)."""
    import rasterio
    import rasterio.shutil

    with rasterio.open(src, "r+") as ds:
        ds.set_band_description(1, description)
    rasterio.shutil.copy(
        src,
        dst,
        driver="COG",
        COMPRESS="DEFLATE",
        BLOCKSIZE=256,
        RESAMPLING=resampling,
        OVERVIEW_RESAMPLING=resampling,
        BIGTIFF="IF_SAFER",
    )
    src.unlink()


def write_quicklook(prob_path: Path, mask_path: Path, out: Path) -> None:
    """A small PNG: probability in a colour map, landslide outlines in cyan, no data grey."""
    import rasterio
    from matplotlib import colormaps
    from PIL import Image
    from scipy import ndimage

    with rasterio.open(prob_path) as src:
        scale = max(src.width, src.height) / QUICKLOOK_MAX_PX
        shape = (
            max(1, round(src.height / max(scale, 1))),
            max(1, round(src.width / max(scale, 1))),
        )
        prob = src.read(1, out_shape=shape)
    with rasterio.open(mask_path) as src:
        mask = src.read(1, out_shape=shape, resampling=rasterio.enums.Resampling.nearest)
    rgba = colormaps["magma"](np.nan_to_num(prob, nan=0.0), bytes=True)
    rgba[np.isnan(prob)] = (128, 128, 128, 255)
    hit = mask == 1
    edge = hit & ~ndimage.binary_erosion(hit)
    rgba[edge] = (0, 255, 255, 255)
    Image.fromarray(rgba[..., :3]).save(out, format="PNG")


class RasterSink:
    """Receives finished rows from inference; writes mean, std and the thresholded mask."""

    def __init__(self, tmp: Path, profile: dict[str, Any], threshold: float, src, mask_plan,
                 mask_opts: MaskOptions, names: tuple[str, ...], progress) -> None:  # fmt: skip
        import rasterio

        self.prob = rasterio.open(
            tmp / ".prob.tif", "w", **tiled_profile(profile, "float32", np.nan)
        )
        self.std = rasterio.open(tmp / ".std.tif", "w", **tiled_profile(profile, "float32", np.nan))
        self.mask = rasterio.open(
            tmp / ".mask.tif", "w", **tiled_profile(profile, "uint8", MASK_NODATA)
        )
        self.threshold = threshold
        self.src = src
        self.plan = mask_plan
        self.mask_opts = mask_opts
        self.mask_idx = {layer: names.index(layer) + 1 for layer in set(mask_plan.values())}
        self.removed: dict[str, int] = {}
        self.write_s = 0.0
        self.progress = progress
        self.positive = 0

    def __call__(self, r0: int, mean: np.ndarray, std: np.ndarray) -> None:
        from rasterio.windows import Window

        t0 = time.perf_counter()
        rows, width = mean.shape
        win = Window(0, r0, width, rows)
        nodata = np.isnan(mean)
        with np.errstate(invalid="ignore"):
            mask = (mean >= self.threshold).astype(np.uint8)
        if self.plan:
            layers = {
                layer: self.src.read(i, window=win, out_dtype="float32")
                for layer, i in self.mask_idx.items()
            }
            apply_masks(mask, self.plan, self.mask_opts, layers, self.removed)
        mask[nodata] = MASK_NODATA
        self.positive += int((mask == 1).sum())
        self.prob.write(mean.astype(np.float32), 1, window=win)
        self.std.write(std.astype(np.float32), 1, window=win)
        self.mask.write(mask, 1, window=win)
        self.write_s += time.perf_counter() - t0
        if self.progress is not None:
            self.progress.update(rows)

    def close(self) -> None:
        for ds in (self.prob, self.std, self.mask):
            ds.close()
