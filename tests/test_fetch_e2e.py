"""`lsd fetch` end to end with Earth Engine offline: only the network calls are replaced.

ee is initialised from the algorithm signatures in its wheel (tests/ee_offline.py) and the real
graph builders run; ee.data.computePixels, computeValue and getInfo are the fakes. The fake
pixels encode where they were requested (band 0 = easting / 10 m, band 1 = northing / 10 m of the
pixel's top-left corner), so the test can see that every tile landed where it belongs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from shapely.geometry import Point

from lsd.eventcsv import read_events
from lsd.events import read_event
from lsd.gee import download
from lsd.gee.config import FetchConfig
from lsd.layers import PAPER_LAYERS
from lsd.pipeline.cli import main
from lsd.pipeline.fetch import fetch_events
from lsd.rasters import read_label, read_stack
from lsd.spec import event_grid

REPO = Path(__file__).resolve().parents[1]
# three invented polygons near the Norway event: a fixture for the pipeline, not a survey
INVENTED_INVENTORY = REPO / "tests" / "data" / "invented_inventory_norway.geojson"
EXAMPLES = REPO / "examples"
SENTINEL = download.NODATA_SENTINEL
CANOPY = FetchConfig().canopy_height_asset


class FakeEE:
    """Stands in for the Earth Engine server: counts, provenance, assets and pixels."""

    def __init__(self, ee: Any) -> None:
        self.ee = ee
        self.pixel_requests: list[dict[str, Any]] = []
        self.counts = {"s1_pre": 7, "s1_post": 6, "s2_pre": 12, "s2_post": 11}
        self.empty: dict[str, str] = {}  # event date -> window key reported empty
        self.fail_on: dict[int, Exception] = {}  # pixel request number -> error to raise

    def compute_value(self, obj: Any) -> Any:
        keys = set(getattr(obj, "_dictionary", {}) or {})
        if keys == set(self.counts):
            return dict(self.counts)
        return {
            "layers": list(PAPER_LAYERS),
            "s1_pre": {"count": 7, "ids": ["S1A_IW_GRDH_1SDV_20190601"], "relative_orbits": [37]},
            "s1_orbit": "DESCENDING",
            "s1_flattening": {"model": "volume", "vegetated_fraction": 0.8},
            "s2_masking": "s2cloudless p>65 and CDI<-0.5",
            "dem_asset": "COPERNICUS/DEM/GLO30",
            "landcover": {"accuracy": 0.87, "kappa": 0.8, "classes": {"2": "forest"}},
        }

    def get_info(self, asset_id: str) -> Any:
        if asset_id == CANOPY:
            raise self.ee.EEException(f"Asset '{asset_id}' not found (does not exist or no access)")
        return {"type": "IMAGE", "id": asset_id}

    def compute_pixels(self, params: dict[str, Any]) -> np.ndarray:
        n = len(self.pixel_requests)
        self.pixel_requests.append(params)
        if n in self.fail_on:
            raise self.fail_on.pop(n)
        assert params["fileFormat"] == "NUMPY_NDARRAY"
        grid = params["grid"]
        w, h = grid["dimensions"]["width"], grid["dimensions"]["height"]
        t = grid["affineTransform"]
        assert t["scaleX"] == 10.0 and t["scaleY"] == -10.0 and t["shearX"] == t["shearY"] == 0
        rows, cols = np.mgrid[0:h, 0:w]
        east = t["translateX"] / 10.0 + cols
        north = t["translateY"] / 10.0 - rows
        dtype = np.dtype([(name, "<f4") for name in PAPER_LAYERS])
        out = np.zeros((h, w), dtype=dtype)
        out["preVV"], out["postVV"] = east, north
        for i, name in enumerate(PAPER_LAYERS[2:], start=2):
            out[name] = i
        # masked pixels arrive as the sentinel: every 7th easting column in dVV
        out["dVV"][(east % 7) == 0] = SENTINEL
        return out


@pytest.fixture
def fake(ee_offline, monkeypatch) -> FakeEE:
    fake = FakeEE(ee_offline)
    monkeypatch.setattr(ee_offline.data, "computeValue", fake.compute_value)
    monkeypatch.setattr(ee_offline.data, "getInfo", fake.get_info)
    monkeypatch.setattr(ee_offline.data, "computePixels", fake.compute_pixels)
    return fake


@pytest.fixture
def events_csv(tmp_path: Path) -> Path:
    """Norway (with the example inventory), Italy and Peru, as a user would write them."""
    shutil.copy(
        REPO / "tests" / "data" / "invented_inventory_norway.geojson", tmp_path / "inv.geojson"
    )
    csv = tmp_path / "events.csv"
    csv.write_text(
        "id,date,lon,lat,role,inventory,location\n"
        "05-norway,2019-07-30,6.11699,61.51734,test,inv.geojson,Norway\n"
        "22-italy,2018-11-02,11.972334,46.34617,train,,Italy\n"
        "20-peru,2020-06-16,-71.685998,-15.660252,val,,Peru\n"
    )
    return csv


def run_fetch(*args: str) -> Any:
    return CliRunner().invoke(main, ["fetch", *args], catch_exceptions=False)


def test_fetch_writes_contract_folders(fake: FakeEE, events_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    result = run_fetch("--event", str(events_csv), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "3 fetched, 0 already complete" in result.output
    assert f"asset {CANOPY} unavailable; canopyHeight is NaN" in result.output
    assert len(fake.pixel_requests) == 3  # 200 x 200 px: one tile each

    for eid, epsg in (("05-norway", 32632), ("22-italy", 32632), ("20-peru", 32719)):
        ev = read_event(out / eid)
        assert ev.layers == PAPER_LAYERS
        assert ev.grid.crs.to_epsg() == epsg
        assert (ev.grid.width, ev.grid.height) == (200, 200)
        assert ev.grid.transform.a == 10.0 and ev.grid.transform.e == -10.0
        assert ev.grid.transform.c % 10 == 0 and ev.grid.transform.f % 10 == 0
        with rasterio.open(ev.stack) as src:
            assert src.dtypes == ("float32",) * 15 and np.isnan(src.nodata)
        data, _, grid = read_stack(ev.stack)
        x0, y1 = grid.transform.c / 10, grid.transform.f / 10
        np.testing.assert_array_equal(data[0], x0 + np.arange(200)[None, :].repeat(200, 0))
        np.testing.assert_array_equal(data[1], y1 - np.arange(200)[:, None].repeat(200, 1))
        assert np.isnan(data[2]).sum() > 0 and (np.isnan(data[2]) == ((data[0] % 7) == 0)).all()
        assert (data[14] == 14).all()
        meta = json.loads((out / eid / "event.json").read_text())
        assert meta["format"] == "lsd-event/1" and meta["source"]["kind"] == "earthengine"
        assert meta["event_id"] == eid and ev.role == meta["role"]
        source = meta["source"]
        assert source["provenance"]["landcover"]["accuracy"] == 0.87
        assert source["provenance"]["s1_pre"]["relative_orbits"] == [37]
        assert source["image_counts"]["s2_post"] == 11
        assert source["unavailable_layers"] == ["canopyHeight"]
        assert meta["grid"]["crs"] == f"EPSG:{epsg}" and meta["grid"]["width"] == 200
        assert source["event"]["extra"]["location"] in ("Norway", "Italy", "Peru")
        assert meta["written_by"].startswith("lsd ") and meta["label"]["written"]
        text = (out / eid / "event.json").read_text()
        assert "private_key" not in text and "refresh_token" not in text

    # Norway: labels on the right pixels, checked by pixel-centre containment in UTM 32N
    label, grid = read_label(out / "05-norway" / "label.tif")
    polys = gpd.read_file(events_csv.parent / "inv.geojson").to_crs(32632).geometry.union_all()
    t = grid.transform
    expected = np.array(
        [[polys.contains(Point(t.c + 10 * c + 5, t.f - 10 * r - 5)) for c in range(200)]
         for r in range(200)]
    )  # fmt: skip
    assert expected.sum() > 40
    np.testing.assert_array_equal(label == 1, expected)
    assert set(np.unique(label)) == {0, 1}
    # no inventory: unknown everywhere
    label, _ = read_label(out / "22-italy" / "label.tif")
    assert (label == 255).all()

    # a rerun skips every finished event and touches nothing
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    fake.pixel_requests.clear()
    result = run_fetch("--event", str(events_csv), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "0 fetched, 3 already complete" in result.output
    assert fake.pixel_requests == []
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == mtimes


def test_multi_tile_aoi_places_every_tile(fake: FakeEE, events_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "big"
    result = run_fetch(
        "--event", str(events_csv), "--out", str(out), "--aoi-km2", "50", "--only", "05-norway"
    )
    assert result.exit_code == 0, result.output
    (spec,) = read_events(events_csv, aoi_km2=50, only={"05-norway"})
    grid = event_grid(spec, 10.0)
    assert (grid.width, grid.height) == (708, 708)  # sqrt(50 km2) = 7071 m -> 708 px outward
    assert len(fake.pixel_requests) == 4  # 512 + 196 in each direction
    sizes = sorted(
        (r["grid"]["dimensions"]["width"], r["grid"]["dimensions"]["height"])
        for r in fake.pixel_requests
    )
    assert sizes == [(196, 196), (196, 512), (512, 196), (512, 512)]
    assert {r["grid"]["crsCode"] for r in fake.pixel_requests} == {"EPSG:32632"}
    data, _, got = read_stack(out / "05-norway" / "stack.tif", ["preVV", "postVV"])
    assert got.same_as(grid)
    x0, y1 = grid.transform.c / 10, grid.transform.f / 10
    np.testing.assert_array_equal(data[0], np.broadcast_to(x0 + np.arange(708), (708, 708)))
    np.testing.assert_array_equal(
        data[1], np.broadcast_to(y1 - np.arange(708)[:, None], (708, 708))
    )


def test_failed_event_leaves_nothing_complete_and_others_go_on(
    fake: FakeEE, events_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "data"
    # the second event's pixel request dies with a non-transient error
    fake.fail_on[1] = fake.ee.EEException("User memory limit exceeded.")
    result = run_fetch("--event", str(events_csv), "--out", str(out))
    assert result.exit_code == 1
    assert "2 fetched, 0 already complete, 0 exported to Drive, 1 failed" in result.output
    assert "failed: event 22-italy: Earth Engine: User memory limit exceeded." in result.output
    assert "Traceback" not in result.output
    italy = out / "22-italy"
    assert not (italy / "stack.tif").exists() and not (italy / "event.json").exists()
    assert not [p for p in italy.iterdir() if p.name.endswith(".partial")]
    assert (out / "20-peru" / "event.json").exists() and (out / "05-norway" / "event.json").exists()
    # the rerun fetches only the failed event
    fake.pixel_requests.clear()
    result = run_fetch("--event", str(events_csv), "--out", str(out))
    assert result.exit_code == 0 and "1 fetched, 2 already complete" in result.output
    assert len(fake.pixel_requests) == 1


def test_rate_limits_are_retried_with_backoff(
    fake: FakeEE, events_csv: Path, tmp_path: Path
) -> None:
    fake.fail_on[0] = fake.ee.EEException("Too many concurrent aggregations (HTTP 429)")
    slept: list[float] = []
    summary = fetch_events(
        events_csv, tmp_path / "d", only=["05-norway"], sleep=slept.append, show_progress=False,
        echo=lambda _m: None,
    )  # fmt: skip
    assert summary.done == ["05-norway"] and not summary.failed
    assert slept == [2.0] and len(fake.pixel_requests) == 2


def test_empty_window_fails_that_event_with_a_hint(
    fake: FakeEE, events_csv: Path, tmp_path: Path
) -> None:
    fake.counts["s2_post"] = 0
    result = run_fetch(
        "--event", str(events_csv), "--out", str(tmp_path / "d"), "--only", "05-norway"
    )
    assert result.exit_code == 1
    assert (
        "event 05-norway: no Sentinel-2 images in post window 2019-07-30..2019-09-28; "
        "widen it with post_days" in result.output
    )
    assert fake.pixel_requests == []


def test_dry_run_with_session_counts_images(fake: FakeEE, events_csv: Path, tmp_path: Path) -> None:
    fake.counts["s1_pre"] = 0
    result = run_fetch("--event", str(events_csv), "--out", str(tmp_path / "d"), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "grid: 200 x 200 px at 10 m" in result.output and "utm_epsg: 32719" in result.output
    assert "EMPTY: no Sentinel-1 images (DESCENDING passes) in pre window" in result.output
    assert not (tmp_path / "d").exists()  # a dry run writes nothing
    assert fake.pixel_requests == []


def test_export_parameters_cut_the_exact_grid(fake: FakeEE, monkeypatch) -> None:
    import ee

    from tests.ee_offline import calls, graph_of

    (spec,) = read_events(EXAMPLES / "events.csv", only={"05-norway"})
    grid = event_grid(spec, 10.0)
    params = download.export_params(grid, "lsd_05-norway", scale=10.0)
    assert params["crs"] == "EPSG:32632" and params["dimensions"] == "200x200"
    assert params["crsTransform"] == [10.0, 0.0, 345650.0, 0.0, -10.0, 6824810.0]
    assert params["fileFormat"] == "GeoTIFF" and params["fileDimensions"] == 256
    assert "scale" not in params and "region" not in params
    started: list[Any] = []
    monkeypatch.setattr(ee.batch.Task, "start", lambda self: started.append(self))
    image = ee.Image.constant(1).rename("x")
    task = download.start_export(image, grid, "lsd_05-norway", mode="gcs", scale=10, bucket="bk")
    assert started == [task]
    dest = task.config["fileExportOptions"]
    assert dest["fileFormat"] == "GEO_TIFF"
    assert dest["cloudStorageDestination"] == {"bucket": "bk", "filenamePrefix": "lsd_05-norway"}
    graph = graph_of(task.config["expression"])
    (reproject,) = calls(graph, "Image.reproject")
    assert reproject.args["crsTransform"] == params["crsTransform"]
    (unmask,) = calls(graph, "Image.unmask")
    assert unmask.args["value"].args["value"] == SENTINEL and unmask.args["sameFootprint"] is False
    task = download.start_export(image, grid, "lsd_05-norway", mode="drive", scale=10)
    assert task.config["fileExportOptions"]["driveDestination"]["folder"] == "lsd"


def test_wait_for_task_polls_until_done() -> None:
    class Task:
        def __init__(self, states: list[str]) -> None:
            self.states = states

        def status(self) -> dict[str, str]:
            state = self.states.pop(0)
            return {"state": state, "error_message": "boom" if state == "FAILED" else ""}

    slept: list[float] = []
    status = download.wait_for_task(Task(["READY", "RUNNING", "COMPLETED"]), sleep=slept.append)
    assert status["state"] == "COMPLETED" and slept == [15.0, 15.0]
    with pytest.raises(RuntimeError, match="export failed: boom"):
        download.wait_for_task(Task(["RUNNING", "FAILED"]), sleep=slept.append)


def test_geotiff_export_converts_to_a_stack(tmp_path: Path) -> None:
    """An exported GeoTIFF (sentinel for masked, no band names) becomes a contract stack."""
    (spec,) = read_events(EXAMPLES / "events.csv", only={"05-norway"})
    grid = event_grid(spec, 10.0)
    src = tmp_path / "export.tif"
    data = np.arange(3 * 200 * 200, dtype=np.float32).reshape(3, 200, 200)
    data[1, 5, 7] = SENTINEL
    profile = dict(driver="GTiff", width=200, height=200, count=3, dtype="float32",
                   crs=grid.crs, transform=grid.transform)  # fmt: skip
    with rasterio.open(src, "w", **profile) as dst:
        dst.write(data)
    download.geotiff_to_stack(src, tmp_path / "stack.tif", ["a", "b", "c"], grid)
    got, names, g = read_stack(tmp_path / "stack.tif")
    assert names == ("a", "b", "c") and g.same_as(grid)
    assert np.isnan(got[1, 5, 7]) and np.isnan(got).sum() == 1
    np.testing.assert_array_equal(got[0], data[0])


def _write_export(path: Path, grid: Any) -> None:
    """What an Earth Engine GeoTIFF export of the event looks like: 15 bands, sentinel = masked."""
    data = np.full((15, grid.height, grid.width), 3.0, dtype=np.float32)
    data[4, 0, 0] = SENTINEL
    profile = dict(driver="GTiff", width=grid.width, height=grid.height, count=15,
                   dtype="float32", crs=grid.crs, transform=grid.transform)  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def test_export_modes_complete_the_event(
    fake: FakeEE, events_csv: Path, tmp_path: Path, monkeypatch
) -> None:
    import ee

    states = iter(["READY", "RUNNING", "COMPLETED"] * 4)
    monkeypatch.setattr(ee.batch.Task, "start", lambda self: None)
    monkeypatch.setattr(ee.batch.Task, "status", lambda self: {"state": next(states)})
    monkeypatch.setattr("time.sleep", lambda s: None)  # the 15 s polls
    (spec,) = read_events(events_csv, only={"05-norway"})
    grid = event_grid(spec, 10.0)
    fetched: list[tuple[str, str]] = []

    def fake_gcs(bucket: str, name: str, dest: Path, credentials: Any = None) -> Path:
        fetched.append((bucket, name))
        _write_export(dest, grid)
        return dest

    monkeypatch.setattr(download, "download_gcs", fake_gcs)
    out = tmp_path / "gcs"
    args = ["--event", str(events_csv), "--only", "05-norway", "--export"]
    result = run_fetch(*args, "gcs", "--bucket", "bk", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert fetched == [("bk", "lsd_05-norway")] and fake.pixel_requests == []
    data, names, _ = read_stack(out / "05-norway" / "stack.tif")
    assert names == PAPER_LAYERS and np.isnan(data).sum() == 1 and np.isnan(data[4, 0, 0])
    assert json.loads((out / "05-norway" / "event.json").read_text())["source"]["mode"] == "gcs"
    assert not list((out / "05-norway").glob("*export*"))

    # Drive: the user downloads the file into the folder, and a rerun finishes the event
    out = tmp_path / "drive"
    result = run_fetch(*args, "drive", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "Google Drive folder 'lsd' as lsd_05-norway.tif" in result.output
    assert "1 exported to Drive" in result.output
    assert not (out / "05-norway" / "event.json").exists()
    assert (out / "05-norway" / "export.json").exists()
    _write_export(out / "05-norway" / "export.tif", grid)
    result = run_fetch(*args, "drive", "--out", str(out))
    assert result.exit_code == 0 and "1 fetched" in result.output, result.output
    assert read_event(out / "05-norway").layers == PAPER_LAYERS
    assert not (out / "05-norway" / "export.json").exists()


def test_gcs_export_needs_a_bucket(events_csv: Path, tmp_path: Path) -> None:
    result = run_fetch("--event", str(events_csv), "--out", str(tmp_path), "--export", "gcs")
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: --bucket: an export to Cloud Storage needs a bucket you can write"
    )
