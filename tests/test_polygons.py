"""pipeline/polygons.py: the windowed polygons equal the whole-mask ones, memory stays at a window
whatever the mask, and a mask too fragmented to be a map keeps its rasters without polygons."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.features import rasterize, shapes
from scipy import ndimage
from shapely.geometry import box, shape
from shapely.ops import unary_union

from lsd.pipeline import polygons
from lsd.pipeline.maps import tiled_profile

TRANSFORM = Affine(10, 0, 500000, 0, -10, 5000000)


def write_maps(folder: Path, prob: np.ndarray, crs="EPSG:32633", transform=TRANSFORM) -> None:
    """A probability and its 0.5 mask, laid out as `lsd predict` writes them."""
    profile = {"width": prob.shape[1], "height": prob.shape[0], "crs": crs, "transform": transform}
    with rasterio.open(folder / "p.tif", "w", **tiled_profile(profile, "float32", np.nan)) as dst:
        dst.write(prob.astype(np.float32), 1)
    mask = np.where(np.isnan(prob), 255, prob > 0.5).astype(np.uint8)
    with rasterio.open(folder / "m.tif", "w", **tiled_profile(profile, "uint8", 255)) as dst:
        dst.write(mask, 1)


def clean(size: int, seed: int = 1) -> np.ndarray:
    """Smooth blobs of tens to hundreds of pixels, as a landslide map has."""
    field = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=(size, size)), 5)
    field /= field.std()
    return (1 / (1 + np.exp(-(field - 2.0) * 6))).astype(np.float32)


def noisy(size: int, seed: int = 2) -> np.ndarray:
    """Independent per pixel: the worst speckle a map can hold."""
    return np.random.default_rng(seed).random((size, size)).astype(np.float32)


def run(folder: Path, min_area: float = 500.0, **kw) -> polygons.PolygonSummary:
    return polygons.polygonise(folder / "m.tif", folder / "p.tif", folder / "mm.tif",
                               folder / "o.gpkg", min_area, **kw)  # fmt: skip


def whole_mask(prob: np.ndarray, min_area: float) -> list:
    """The reference: every component of the whole mask at once (what lsd did before), kept
    when its polygon's area reaches the minimum."""
    mask = (prob > 0.5).astype(np.uint8)
    lab, _ = ndimage.label(mask)
    found = shapes(lab.astype(np.int32), mask=mask == 1, connectivity=4, transform=TRANSFORM)
    return [(shape(g), int(v)) for g, v in found if shape(g).area >= min_area]


@pytest.mark.parametrize("window", [64, 1024])
def test_windowed_polygons_equal_the_whole_mask_ones(tmp_path: Path, window: int) -> None:
    prob = clean(300)
    write_maps(tmp_path, prob)
    summary = run(tmp_path, window=window)
    ref = whole_mask(prob, 500.0)
    got = gpd.read_file(tmp_path / "o.gpkg", layer=polygons.POLYGON_LAYER)
    assert summary.written and summary.kept == len(got) == len(ref) > 10
    union_ref = unary_union([g for g, _ in ref])
    union_got = unary_union(list(got.geometry))
    assert union_ref.symmetric_difference(union_got).area == 0
    # each polygon: the very same shape, area and statistics, wherever window edges cut it
    lab, _ = ndimage.label(prob > 0.5)
    by_label = {v: g for g, v in ref}
    cut = 0
    for row in got.itertuples():
        inside = row.geometry.representative_point()
        col, line = ~TRANSFORM @ (inside.x, inside.y)
        label = lab[int(line), int(col)]
        assert row.geometry.equals(by_label[label])  # the same shape, merged or not
        pixels = lab == label
        assert row.pixels == pixels.sum() and row.area_m2 == pytest.approx(row.geometry.area)
        assert row.mean_prob == pytest.approx(prob[pixels].mean(), rel=1e-5)
        assert row.max_prob == pytest.approx(prob[pixels].max())
        rows, cols = np.nonzero(pixels)
        cut += rows.min() // window != rows.max() // window or cols.min() // window != (
            cols.max() // window
        )
    assert (cut > 0) == (window < 300)  # with small windows, polygons were merged across edges
    assert list(got["id"]) == list(range(1, len(got) + 1))
    # the mask keeps exactly the pixels of the kept polygons
    with rasterio.open(tmp_path / "mm.tif") as src:
        kept = src.read(1) == 1
    burnt = rasterize([(g, 1) for g, _ in ref], out_shape=prob.shape, transform=TRANSFORM)
    assert np.array_equal(kept, burnt == 1)


def test_noisy_mask_polygons_match_too(tmp_path: Path) -> None:
    """Thousands of specks, most under the minimum mapping unit, across many windows."""
    prob = noisy(200)
    write_maps(tmp_path, prob)
    summary = run(tmp_path, window=48)
    ref = whole_mask(prob, 500.0)
    got = gpd.read_file(tmp_path / "o.gpkg")
    assert summary.kept == len(got) == len(ref) and summary.removed_below_min_area > len(ref)
    assert unary_union([g for g, _ in ref]).equals(unary_union(list(got.geometry)))
    assert summary.landslide_pixels == int(got["pixels"].sum())


CHILD = """
import json, sys
from pathlib import Path
import pyogrio.raw, pyproj, rasterio, rasterio.features, scipy.ndimage, shapely
from lsd.pipeline import polygons

def rss(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024

folder = Path(sys.argv[1])
with rasterio.Env(GDAL_CACHEMAX=64):  # as lsd predict runs it
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS from here on
    start = rss("VmRSS:")
    s = polygons.polygonise(folder / "m.tif", folder / "p.tif", folder / "mm.tif",
                            folder / "o.gpkg", 500.0, window=256, batch_vertices=50_000,
                            max_boundary_edges=10**9)
print(json.dumps({"peak": rss("VmHWM:") - start, "kept": s.kept}))
"""


def _peak_bytes(folder: Path, prob: np.ndarray) -> tuple[int, int]:
    """Peak memory the polygon step adds, measured in a fresh process (its libraries already
    imported, so only what it allocates counts)."""
    folder.mkdir()
    write_maps(folder, prob)
    res = subprocess.run([sys.executable, "-c", CHILD, str(folder)], capture_output=True,
                         text=True, check=True)  # fmt: skip
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return out["peak"], out["kept"]


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_memory_stays_at_a_window_on_a_noisy_mask(tmp_path: Path) -> None:
    """The polygon bound: 4x the pixels of pure speckle, not 4x the memory (the whole-mask way
    held every polygon at once: 1.16 GB for 2048 x 2048). Windows of 256 and batches of 50000
    vertices stand in for the defaults (1024, 500000) at a size a test affords."""
    small, kept_small = _peak_bytes(tmp_path / "a", noisy(512))
    large, kept_large = _peak_bytes(tmp_path / "b", noisy(1024))
    assert kept_large > 3 * kept_small  # four times the landslide areas ...
    assert large < 1.5 * small + 8 * 2**20  # ... in about the same memory
    assert large < 64 * 2**20


def test_a_mask_too_fragmented_keeps_its_rasters_without_polygons(tmp_path: Path) -> None:
    prob = noisy(1200)
    write_maps(tmp_path, prob)
    summary = run(tmp_path)  # 1.44 million pixels: the cap is the floor of a million edges
    assert summary.boundary_edges > polygons.edge_cap(1200 * 1200) == polygons.MIN_EDGE_CAP
    assert not summary.written and "noise, not landslides" in summary.skipped_reason
    assert not (tmp_path / "o.gpkg").exists()
    with rasterio.open(tmp_path / "mm.tif") as src:  # the mask still has its minimum area
        kept = src.read(1) == 1
    lab, n = ndimage.label(prob > 0.5)
    sizes = np.bincount(lab.ravel())
    assert np.array_equal(kept, (lab > 0) & (sizes[lab] * 100.0 >= 500.0))
    assert summary.kept == int((sizes[1:] * 100.0 >= 500.0).sum())


def test_cap_grows_with_the_map_up_to_a_ceiling() -> None:
    assert polygons.edge_cap(128 * 128) == polygons.MIN_EDGE_CAP
    assert polygons.edge_cap(10000 * 10000) == 10_000_000
    assert polygons.edge_cap(10**10) == polygons.MAX_BOUNDARY_EDGES


def test_areas_in_degrees_are_equal_area_metres(tmp_path: Path) -> None:
    """A lon/lat map: each row's cell area in an equal-area projection, so the minimum mapping
    unit means the same at 60 degrees north as at the equator."""
    transform = Affine(0.0001, 0, 10.0, 0, -0.0001, 60.0)
    prob = clean(200, seed=3)
    write_maps(tmp_path, prob, crs="EPSG:4326", transform=transform)
    run(tmp_path, min_area=0.0)
    got = gpd.read_file(tmp_path / "o.gpkg")
    assert len(got) > 5
    expected = got.geometry.to_crs(polygons.EQUAL_AREA_CRS).area.to_numpy()
    assert np.allclose(got["area_m2"].to_numpy(), expected, rtol=1e-6)
    cells = polygons.cell_areas(transform, rasterio.crs.CRS.from_epsg(4326), 200, 200)
    top = gpd.GeoSeries([box(10.0, 59.9999, 10.0001, 60.0)], crs=4326).to_crs(
        polygons.EQUAL_AREA_CRS
    )
    assert cells[0] == pytest.approx(float(top.area.iloc[0]), rel=1e-9)
    assert cells[-1] > cells[0]  # cells grow towards the equator


def test_no_landslide_gives_an_empty_layer(tmp_path: Path) -> None:
    write_maps(tmp_path, np.zeros((100, 100), np.float32))
    summary = run(tmp_path)
    got = gpd.read_file(tmp_path / "o.gpkg", layer=polygons.POLYGON_LAYER)
    assert summary.written and summary.kept == 0 and len(got) == 0
    assert {"area_m2", "pixels", "mean_prob", "max_prob"} <= set(got.columns)
