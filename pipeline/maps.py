"""The map folder `lsd predict` writes, and its raster writers.

    probability.tif   mean landslide probability of the members (COG, float32, NaN = no data)
    disagreement.tif  standard deviation across members (COG)
    mask.tif          1 landslide, 0 not, 255 no data, after masks and the minimum mapping unit
    landslides.gpkg   polygons with area, pixel count, mean and max probability
    quicklook.png     probability in a colour map with landslide outlines
    mask.qml          QGIS style for mask.tif (QGIS applies a .qml beside a raster itself)
    README.txt        what each file holds, the codes of mask.tif, georeferencing
    run.json          inputs, model, options, timings: enough to reproduce the map

Rows arrive from inference already final; `RasterSink` writes them into tiled GeoTIFFs in the
temporary output folder, and `to_cog` converts each finished raster to a Cloud Optimized GeoTIFF.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from matplotlib import colormaps
from PIL import Image
from rasterio.windows import Window
from scipy import ndimage

from lsd.bundles import is_landslide
from lsd.pipeline.masks import MaskOptions, apply_masks

PROB_FILE = "probability.tif"
MASK_FILE = "mask.tif"
STD_FILE = "disagreement.tif"
POLY_FILE = "landslides.gpkg"
QUICKLOOK_FILE = "quicklook.png"
RUN_FILE = "run.json"
MASK_STYLE_FILE = "mask.qml"
README_FILE = "README.txt"
OUTPUTS = (PROB_FILE, MASK_FILE, STD_FILE, POLY_FILE, QUICKLOOK_FILE, MASK_STYLE_FILE,
           README_FILE, RUN_FILE)  # fmt: skip
MASK_NODATA = 255
QUICKLOOK_MAX_PX = 800
# mask.tif codes -> (label, RGBA): the colour table inside the GeoTIFF and the QGIS style agree
# (a GeoTIFF palette has no alpha, so "not landslide" is white there; the style makes it clear)
MASK_CLASSES = {
    0: ("not landslide", (255, 255, 255, 0)),
    1: ("landslide", (227, 26, 28, 255)),
    MASK_NODATA: ("no data", (128, 128, 128, 0)),
}


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


def colour_mask(path: Path) -> None:
    """Give the mask its colour table, so any GIS shows landslides in red at once."""

    with rasterio.open(path, "r+") as ds:
        ds.write_colormap(1, {code: rgba for code, (_, rgba) in MASK_CLASSES.items()})


def write_mask_style(path: Path) -> None:
    """A QGIS style (.qml) for mask.tif: a paletted renderer with the mask's classes named."""
    entries = "\n".join(
        f'        <paletteEntry value="{code}" label="{label}" '
        f'color="#{r:02x}{g:02x}{b:02x}" alpha="{a}"/>'
        for code, (label, (r, g, b, a)) in MASK_CLASSES.items()
    )
    path.write_text(
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.28" styleCategories="AllStyleCategories">\n'
        "  <pipe>\n"
        '    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" nodataColor="">\n'
        "      <rasterTransparency/>\n"
        "      <colorPalette>\n"
        f"{entries}\n"
        "      </colorPalette>\n"
        "    </rasterrenderer>\n"
        '    <brightnesscontrast brightness="0" contrast="0"/>\n'
        '    <huesaturation saturation="0" colorizeOn="0"/>\n'
        '    <rasterresampler maxOversampling="2"/>\n'
        "  </pipe>\n"
        "  <blendMode>0</blendMode>\n"
        "</qgis>\n"
    )


def write_readme(path: Path, record: dict[str, Any]) -> None:
    """README.txt: what a person opening the folder needs first, above all a missing CRS."""
    lines = ["Landslide map made by lsd " + str(record.get("lsd_version", "")), ""]
    if not record.get("georeferenced", True):
        lines += [
            "NOT GEOREFERENCED: the input stack had no coordinate reference system (e.g. a",
            "Landslide4Sense patch), so these rasters and polygons sit on a nominal pixel grid",
            "and cannot be overlaid on other maps. Areas assume the nominal pixel size.",
            "",
        ]
    lines += [
        f"{PROB_FILE}  mean landslide probability of the ensemble members (NaN = no data)",
        f"{STD_FILE}  standard deviation of the members' probabilities",
        f"{MASK_FILE}  1 landslide (probability > {record.get('threshold')}, after masks and the "
        f"minimum area of {record.get('min_area_m2')} m2), 0 not, {MASK_NODATA} no data",
        f"{MASK_STYLE_FILE}  QGIS style for {MASK_FILE}",
        f"{POLY_FILE}  landslide polygons with area, pixel count, mean and max probability"
        if record.get("polygons", {}).get("written", True)
        else f"({POLY_FILE} not written: {record['polygons'].get('skipped_reason')})",
        f"{QUICKLOOK_FILE}  probability with landslide outlines",
        f"{RUN_FILE}  inputs, model, options, input checks and timings",
    ]
    warnings = record.get("input_checks", {}).get("warnings", [])
    if warnings:
        lines += ["", "Warnings about the input:", *(f"- {w}" for w in warnings)]
    path.write_text("\n".join(lines) + "\n")


def write_quicklook(prob_path: Path, mask_path: Path, out: Path) -> None:
    """A small PNG: probability in a colour map, landslide outlines in cyan, no data grey."""

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

        t0 = time.perf_counter()
        rows, width = mean.shape
        win = Window(0, r0, width, rows)
        nodata = np.isnan(mean)
        with np.errstate(invalid="ignore"):
            mask = is_landslide(mean, self.threshold).astype(np.uint8)
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
