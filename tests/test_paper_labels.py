"""Real labels for the example events: a label raster as an inventory (nearest neighbour onto the
event grid), and `lsd import paper --inventories` turning the paper's georeferenced labels into
polygons and an events.csv from which `lsd fetch` (Earth Engine offline) builds stacks whose
labels are the paper's, pixel for pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rasterio.crs import CRS
from shapely.geometry import box

from lsd.errors import InvalidFile
from lsd.eventcsv import read_events
from lsd.events import read_event
from lsd.labels import rasterize_labels
from lsd.pipeline.cli import main
from lsd.rasters import Grid, read_label
from lsd.spec import event_grid
from tests.paper_fixtures import write_paper_dataset
from tests.test_fetch_e2e import FakeEE, fake  # noqa: F401  (offline Earth Engine)

UTM = CRS.from_epsg(32632)


def _label_tif(path: Path, label: np.ndarray, transform: Affine, nodata=None) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=label.shape[1], height=label.shape[0],
                       count=1, dtype="uint8", crs=UTM, transform=transform,
                       nodata=nodata) as dst:  # fmt: skip
        dst.write(label, 1)
    return path


def test_label_raster_goes_onto_the_event_grid_by_nearest_neighbour(tmp_path: Path) -> None:
    """A 20 m label against a 10 m event grid offset by 3 m: every event pixel takes the code of
    the source pixel its centre falls in; outside the raster, or outside the AOI, 255."""
    rng = np.random.default_rng(3)
    src = rng.choice([0, 1, 255], size=(12, 15), p=[0.6, 0.3, 0.1]).astype(np.uint8)
    src_t = Affine(20, 0, 500_000, 0, -20, 6_800_000)
    path = _label_tif(tmp_path / "label.tif", src, src_t)
    grid = Grid(40, 30, UTM, Affine(10, 0, 499_953, 0, -10, 6_800_033))  # no centre on an edge
    aoi_utm = box(500_000, 6_800_000 - 200, 500_000 + 250, 6_800_000)
    from lsd.spec import to_crs

    label = rasterize_labels(path, to_crs(aoi_utm, UTM, 4326), grid)
    expected = np.full((30, 40), 255, np.uint8)
    for r in range(30):
        for c in range(40):
            x, y = grid.transform * (c + 0.5, r + 0.5)
            sr, sc = int((6_800_000 - y) // 20), int((x - 500_000) // 20)
            inside = 500_000 < x < 500_250 and 6_799_800 < y < 6_800_000
            if inside and 0 <= sr < 12 and 0 <= sc < 15:
                expected[r, c] = src[sr, sc]
    np.testing.assert_array_equal(label, expected)
    assert {0, 1, 255} <= set(np.unique(label).tolist())


def test_bad_label_rasters_are_one_line_in_events_csv(tmp_path: Path) -> None:
    t = Affine(10, 0, 500_000, 0, -10, 6_800_000)
    _label_tif(tmp_path / "two.tif", np.full((4, 4), 2, np.uint8), t)
    with rasterio.open(tmp_path / "nocrs.tif", "w", driver="GTiff", width=4, height=4, count=1,
                       dtype="uint8") as dst:  # fmt: skip
        dst.write(np.zeros((4, 4), np.uint8), 1)
    for name, expect in (("two.tif", "holds value 2"), ("nocrs.tif", "no coordinate reference")):
        (tmp_path / "events.csv").write_text(
            f"id,date,lon,lat,inventory\n05-norway,2019-07-30,6.11699,61.51734,{name}\n"
        )
        with pytest.raises(InvalidFile, match=expect) as info:
            read_events(tmp_path / "events.csv")
        assert "row 1" in str(info.value) and "column 'inventory'" in str(info.value)


@pytest.fixture(scope="module")
def georeferenced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_paper_dataset(tmp_path_factory.mktemp("geo"), size=(48, 56), georef=True,
                               train_val=[1, 2, 22])  # fmt: skip


def test_inventories_reproduce_the_papers_labels_through_lsd_fetch(
    georeferenced: Path,
    tmp_path: Path,
    fake: FakeEE,  # noqa: F811
) -> None:
    inv = tmp_path / "inv"
    result = CliRunner().invoke(main, ["import", "paper", str(georeferenced),
                                       str(tmp_path / "paper"), "--inventories", str(inv),
                                       "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    specs = read_events(inv / "events.csv")
    assert [s.event_id for s in specs] == ["01-iceland", "02-ireland", "05-norway", "22-italy"]
    assert {s.event_id: s.date.isoformat() for s in specs}["05-norway"] == "2019-07-30"
    assert {s.event_id: s.role for s in specs}["05-norway"] == "test"
    fetched = tmp_path / "fetched"
    result = CliRunner().invoke(main, ["fetch", "--event", str(inv / "events.csv"), "--out",
                                       str(fetched)], catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    for spec in specs:
        paper = read_event(tmp_path / "paper" / spec.event_id)
        new = read_event(fetched / spec.event_id)
        assert new.grid.same_as(paper.grid) and event_grid(spec).same_as(paper.grid)
        np.testing.assert_array_equal(read_label(new.label)[0], read_label(paper.label)[0])
        assert (read_label(new.label)[0] == 1).any()


def test_inventories_need_georeferenced_labels(tmp_path: Path) -> None:
    src = write_paper_dataset(tmp_path / "plain", size=(32, 32), train_val=[1, 2])
    result = CliRunner().invoke(main, ["import", "paper", str(src), str(tmp_path / "events"),
                                       "--inventories", str(tmp_path / "inv"),
                                       "--no-progress"])  # fmt: skip
    assert result.exit_code != 0
    assert "--inventories: no imported label is georeferenced" in result.output
    assert not (tmp_path / "inv").exists() and (tmp_path / "events" / "05-norway").is_dir()
