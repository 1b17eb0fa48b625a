"""label.tif rasterisation: exact pixel counts on real coordinates (Norway event, EPSG:32632)."""

from __future__ import annotations

import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from rasterio.crs import CRS
from rasterio.transform import Affine
from shapely.geometry import Point, box

from lsd.errors import UserError
from lsd.eventcsv import read_events
from lsd.labels import rasterize_labels
from lsd.rasters import Grid
from lsd.spec import to_crs

REPO = Path(__file__).resolve().parents[1]
# three invented polygons near the Norway event: a fixture for the pipeline, not a survey
INVENTED_INVENTORY = REPO / "tests" / "data" / "invented_inventory_norway.geojson"
EXAMPLES = REPO / "examples"
# The Norway event's grid: a 2 km square centred on (346650, 6823810) in UTM 32N.
X0, Y1 = 345650.0, 6824810.0
GRID = Grid(200, 200, CRS.from_epsg(32632), Affine(10.0, 0.0, X0, 0.0, -10.0, Y1))
AOI_UTM = box(X0, Y1 - 2000, X0 + 2000, Y1)
AOI_LL = to_crs(AOI_UTM, 32632, 4326)


def write_polygons(path: Path, geoms_utm, crs: int) -> Path:
    """Save UTM polygons in another CRS, so the reader has to reproject them back."""
    geoms = [to_crs(g, 32632, crs) for g in geoms_utm]
    gpd.GeoDataFrame({"n": range(len(geoms))}, geometry=geoms, crs=crs).to_file(path)
    return path


def col(x: float) -> int:
    return int((x - X0) // 10)


def row(y: float) -> int:
    return int((Y1 - y) // 10)


@pytest.mark.parametrize("crs", [4326, 3035, 32632])
def test_pixel_aligned_rectangle_is_burned_exactly(tmp_path: Path, crs: int) -> None:
    # 5 x 3 pixels: x 346000..346050, y 6823500..6823530 (any storage CRS, reprojected back)
    rect = box(346000, 6823500, 346050, 6823530)
    inv = write_polygons(tmp_path / f"inv_{crs}.gpkg", [rect], crs)
    label = rasterize_labels(inv, AOI_LL, GRID)
    assert label.dtype == np.uint8 and label.shape == (200, 200)
    ones = np.argwhere(label == 1)
    assert len(ones) == 15
    assert ones[:, 0].min() == row(6823530) == 128 and ones[:, 0].max() == 130
    assert ones[:, 1].min() == col(346000) == 35 and ones[:, 1].max() == 39
    assert (label == 0).sum() == 200 * 200 - 15  # the whole square AOI is mapped


def test_pixel_centre_rule_not_all_touched(tmp_path: Path) -> None:
    # Pixel (row 100, col 35) spans x 346000..346010, centre 346005.
    y0, y1 = Y1 - 1010, Y1 - 1000  # exactly row 100
    covers_centre = box(346002, y0, 346008, y1)  # 6 m wide, contains the centre -> 1 pixel
    misses_centres = box(346006, y0 + 2, 346014, y1 - 2)  # touches 2 pixels, no centre -> 0
    inv = write_polygons(tmp_path / "a.gpkg", [covers_centre], 32632)
    label = rasterize_labels(inv, AOI_LL, GRID)
    assert np.argwhere(label == 1).tolist() == [[100, 35]]
    inv = write_polygons(tmp_path / "b.gpkg", [misses_centres], 32632)
    label = rasterize_labels(inv, AOI_LL, GRID)
    assert (label == 1).sum() == 0


def test_outside_aoi_polygon_is_ignored(tmp_path: Path) -> None:
    # AOI = the western 60 columns only; a landslide straddling its eastern edge is cut there.
    aoi = to_crs(box(X0, Y1 - 2000, X0 + 600, Y1), 32632, 4326)
    slide = box(X0 + 550, Y1 - 100, X0 + 650, Y1 - 50)  # cols 55..64, rows 5..9
    inv = write_polygons(tmp_path / "s.gpkg", [slide], 4326)
    label = rasterize_labels(inv, aoi, GRID)
    assert (label[:, :60] != 255).all() and (label[:, 60:] == 255).all()
    assert np.argwhere(label == 1)[:, 1].tolist() == list(range(55, 60)) * 5
    assert (label == 1).sum() == 25


def test_no_inventory_is_all_unknown() -> None:
    label = rasterize_labels(None, AOI_LL, GRID)
    assert (label == 255).all()


def test_inventory_outside_aoi_warns_and_labels_zero(tmp_path: Path) -> None:
    far = box(X0 + 5000, Y1 + 5000, X0 + 5100, Y1 + 5100)
    inv = write_polygons(tmp_path / "far.gpkg", [far], 4326)
    warnings: list[str] = []
    label = rasterize_labels(inv, AOI_LL, GRID, warn=warnings.append, event_id="05-norway")
    assert (label == 0).all()
    assert len(warnings) == 1 and "05-norway" in warnings[0] and "AOI" in warnings[0]


def test_norway_example_inventory_matches_point_in_polygon(tmp_path: Path) -> None:
    """An invented inventory (a test fixture, not a survey) against an independent
    rasterisation: pixel-centre containment."""
    shutil.copy(
        REPO / "tests" / "data" / "invented_inventory_norway.geojson", tmp_path / "i.geojson"
    )
    (tmp_path / "events.csv").write_text(
        "id,date,lon,lat,inventory\n05-norway,2019-07-30,6.11699,61.51734,i.geojson\n"
    )
    (spec,) = read_events(tmp_path / "events.csv")
    label = rasterize_labels(spec.inventory, spec.aoi, GRID)
    polys = gpd.read_file(spec.inventory).to_crs(32632).geometry.union_all()
    rows, cols = np.mgrid[0:200, 0:200]
    xs, ys = X0 + 5 + 10 * cols.ravel(), Y1 - 5 - 10 * rows.ravel()
    expected = np.array([polys.contains(Point(x, y)) for x, y in zip(xs, ys, strict=True)])
    assert expected.sum() > 40  # the three invented scars cover a few dozen pixels
    np.testing.assert_array_equal(label.ravel() == 1, expected)
    assert set(np.unique(label)) == {0, 1}


def test_unreadable_inventory_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="bad.geojson is not a readable vector file"):
        rasterize_labels(bad, AOI_LL, GRID, event_id="x")
