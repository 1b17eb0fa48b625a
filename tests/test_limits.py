"""lsd/limits.py and its callers: sizes a file or an option claims are checked before anything is
allocated, and the refusal is one line naming the limit and how to raise it (issue 20, item 5),
AOIs follow one rule in fetch and predict, and events do not lie in the future."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import Polygon, box

from lsd import limits
from lsd.errors import InvalidFile, InvalidValue, OutputNotWritable, TooLarge
from lsd.eventcsv import read_events
from lsd.pipeline.aoi import aoi_spec, parse_date
from tests.bounds_inputs import sparse_stack, tiny_model, write_h5_pair
from tests.cli import lsd

L4S_LAYERS = 14


def error_line(code: int, text: str) -> str:
    errors = [line for line in text.splitlines() if line.startswith("Error")]
    assert code == 1 and len(errors) == 1 and "Traceback" not in text, text
    return errors[0]


# --------------------------------------------------------------------------- the limits


def test_memory_limit_names_where_it_comes_from(monkeypatch) -> None:
    monkeypatch.delenv(limits.MEMORY_ENV, raising=False)
    total, why = limits.memory_limit()
    assert 0 < total <= limits.machine_memory()[0] and ("allow" in why or "has" in why)
    limits.check_memory("a small array", 1024)
    with pytest.raises(TooLarge, match=r"needs 1024\.0 TB of memory, .*\(set LSD_MEMORY_GB"):
        limits.check_memory("a huge array", 2**50)
    monkeypatch.setenv(limits.MEMORY_ENV, "0.5")
    assert limits.memory_limit() == (2**29, "LSD_MEMORY_GB=0.5 allows")
    with pytest.raises(TooLarge, match=r"needs 1\.0 GB of memory, more than the 512\.0 MB"):
        limits.check_memory("this", 2**30)
    monkeypatch.setenv(limits.MEMORY_ENV, "lots")
    with pytest.raises(InvalidValue, match="LSD_MEMORY_GB='lots' is not a positive number"):
        limits.memory_limit()


def test_pixel_limit_and_its_variable(monkeypatch) -> None:
    monkeypatch.delenv(limits.PIXELS_ENV, raising=False)
    limits.check_pixels("ok.tif", 31000, 31000)
    with pytest.raises(TooLarge, match=r"big\.tif: 200000 x 200000 pixels .* LSD_MAX_PIXELS"):
        limits.check_pixels("big.tif", 200_000, 200_000)
    monkeypatch.setenv(limits.PIXELS_ENV, "1e11")
    limits.check_pixels("big.tif", 200_000, 200_000)


def test_disk_check_reads_the_real_free_space(tmp_path: Path) -> None:
    limits.check_disk(tmp_path / "new" / "folder", 1024, "a small file")
    with pytest.raises(
        OutputNotWritable, match=r"new: cannot write \(unpacking x needs 1024\.0 TB"
    ):
        limits.check_disk(tmp_path / "new", 2**50, "unpacking x")


# --------------------------------------------------------------------------- item 5


def test_h5_claiming_a_shape_it_does_not_store_is_one_line(tmp_path: Path) -> None:
    """A 1.4 KB file declaring 9000 x 9000 x 14 drove the import past 6 GB."""
    src = tmp_path / "l4s"
    write_h5_pair(src, 1, ((9000, 9000, L4S_LAYERS), "float32"), ((9000, 9000), "uint8"))
    assert (src / "img" / "image_1.h5").stat().st_size < 10_000
    line = error_line(*lsd("import", "landslide4sense", src, tmp_path / "out"))
    assert "declares 9000 x 9000 x 14 values but stores none" in line
    assert not (tmp_path / "out").exists()


def test_h5_claiming_a_huge_shape_is_one_line(tmp_path: Path) -> None:
    src = tmp_path / "l4s"
    write_h5_pair(src, 1, ((2**20, 2**20, L4S_LAYERS), "float32"), ((2**20, 2**20), "uint8"))
    line = error_line(*lsd("import", "landslide4sense", src, tmp_path / "out"))
    assert "1048576 x 1048576 pixels" in line and "LSD_MAX_PIXELS" in line


def test_a_real_patch_over_the_memory_limit_names_the_variable(tmp_path: Path) -> None:
    src = tmp_path / "l4s"
    rng = np.random.default_rng(0)
    write_h5_pair(src, 1, rng.normal(size=(64, 64, L4S_LAYERS)).astype(np.float32),
                  np.zeros((64, 64), np.uint8))  # fmt: skip
    code, out = lsd("import", "landslide4sense", src, tmp_path / "out",
                    env={limits.MEMORY_ENV: "0.0001"})  # fmt: skip
    line = error_line(code, out)
    assert "needs 448.0 KB of memory, more than the 104.9 KB LSD_MEMORY_GB=0.0001" in line
    code, out = lsd("import", "landslide4sense", src, tmp_path / "out")
    assert code == 0, out


@pytest.mark.parametrize("command", ["predict", "inspect"])
def test_tiff_claiming_more_pixels_than_lsd_reads_is_one_line(tmp_path: Path, command) -> None:
    """A small TIFF claiming 200000 x 200000 kept predict silent for 300 s at 4.5 GB."""
    stack = tmp_path / "huge.tif"
    sparse_stack(stack, 40_000, ["B2", "B3"])  # 1.6e9 pixels, a 100 KB file
    assert stack.stat().st_size < 2**20
    args = ["inspect", stack]
    if command == "predict":
        model = tiny_model(tmp_path)
        args = ["predict", "--stack", stack, "--model", model, "--out", tmp_path / "map"]
    line = error_line(*lsd(*args))
    assert f"{stack}: 40000 x 40000 pixels (1.6e+09) is more than the 1e+09 pixels" in line
    assert "LSD_MAX_PIXELS" in line and not (tmp_path / "map").exists()


def test_predict_checks_the_strip_it_will_hold(tmp_path: Path) -> None:
    """Within the pixel limit, the memory of one strip of tiles across the width is checked."""
    stack = tmp_path / "wide.tif"
    sparse_stack(stack, 30_000, ["B2", "B3"])
    args = ["--stack", stack, "--model", tiny_model(tmp_path), "--out", tmp_path / "map"]
    code, out = lsd("predict", *args, "--device", "cpu", env={limits.MEMORY_ENV: "0.1"})
    line = error_line(code, out)
    assert "--tile: mapping" in line and "30000 pixels wide" in line and "LSD_MEMORY_GB" in line


# --------------------------------------------------------------------------- AOIs and dates


@pytest.fixture
def aois(tmp_path: Path) -> Path:
    huge = box(0.0, 0.0, 28.2, 28.0)  # about 9.5 million km2
    flat = Polygon([(10.0, 60.0), (10.01, 60.0), (10.02, 60.0), (10.0, 60.0)])
    fine = box(10.0, 61.0, 10.02, 61.01)
    for name, geom in (("huge", huge), ("flat", flat), ("fine", fine)):
        gpd.GeoDataFrame(geometry=[geom], crs="EPSG:4326").to_file(tmp_path / f"{name}.geojson")
        (tmp_path / f"{name}.csv").write_text(
            f"id,date,polygon\n{name},2021-06-01,{name}.geojson\n"
        )
    return tmp_path


def test_fetch_and_predict_aoi_share_one_area_rule(aois: Path) -> None:
    """fetch --dry-run planned a 9.5 million km2 AOI and a zero-area one that predict refused."""
    assert 9.4e6 < limits.geodesic_km2(gpd.read_file(aois / "huge.geojson").geometry[0]) < 9.6e6
    date = dt.date(2021, 6, 1)
    for name, words in (("huge", "covers 9,4.* more than the 100,000 km2 one event may cover"),
                        ("flat", "has zero area")):  # fmt: skip
        with pytest.raises(InvalidFile, match=f"column 'polygon': .*{name}.geojson: {words}"):
            read_events(aois / f"{name}.csv")
        with pytest.raises((InvalidFile, InvalidValue), match=f"{name}.geojson: {words}"):
            aoi_spec(aois / f"{name}.geojson", date)
    (spec,) = read_events(aois / "fine.csv")
    assert spec.event_id == "fine"
    assert aoi_spec(aois / "fine.geojson", date).extra["aoi_km2"] > 0
    with pytest.raises(TooLarge, match="the square around each lon/lat event: covers 9,500,000"):
        read_events(aois / "fine.csv", aoi_km2=9.5e6)


def test_fetch_dry_run_refuses_them_in_one_line(aois: Path) -> None:
    line = error_line(*lsd("fetch", "--event", aois / "huge.csv", "--out", aois / "d",
                           "--dry-run"))  # fmt: skip
    assert "huge.geojson: covers 9,4" in line and "split it into several events" in line
    line = error_line(*lsd("fetch", "--event", aois / "fine.csv", "--out", aois / "d",
                           "--dry-run", "--aoi-km2", "9500000"))  # fmt: skip
    assert line.startswith("Error: --aoi-km2: the square around each lon/lat event: covers")


def test_an_event_in_the_future_is_refused_by_fetch_as_by_predict(tmp_path: Path) -> None:
    future = dt.date.today() + dt.timedelta(days=30)
    csv = tmp_path / "events.csv"
    csv.write_text(f"id,date,lon,lat\nsoon,{future},10.5,61.5\n")
    with pytest.raises(InvalidFile, match=f"row 1 .*column 'date': {future} is in the future"):
        read_events(csv)
    with pytest.raises(InvalidValue, match=f"{future} is in the future"):
        parse_date(str(future))
    csv.write_text(f"id,date,lon,lat\ntoday,{dt.date.today()},10.5,61.5\n")
    assert read_events(csv)[0].date == dt.date.today()
