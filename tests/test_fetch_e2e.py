"""`lsd fetch` end to end with Earth Engine offline: only the network calls are replaced.

ee is initialised from the algorithm signatures in its wheel (tests/ee_offline.py) and the real
graph builders run; ee.data.computePixels, computeValue and getInfo are the fakes. The fake
pixels encode where they were requested (band 0 = easting / 10 m, band 1 = northing / 10 m of the
pixel's top-left corner), so the test can see that every tile landed where it belongs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import zlib
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
from lsd.gee import graphs
from lsd.gee import pixels as download
from lsd.gee.config import (
    ICELAND_DEM_ASSET,
    KG_CLIMATE_ASSET,
    S2_L1C_COLLECTION,
    S2_SR_COLLECTION,
    FetchConfig,
)
from lsd.gee.graphs import read_graph
from lsd.layers import PAPER_LAYERS
from lsd.pipeline.cli import main
from lsd.pipeline.fetch import fetch_events
from lsd.rasters import read_label, read_stack
from lsd.spec import event_grid
from tests.ee_offline import calls, constants, decode, graph_of

REPO = Path(__file__).resolve().parents[1]
# three invented polygons near the Norway event: a fixture for the pipeline, not a survey
INVENTED_INVENTORY = REPO / "tests" / "data" / "invented_inventory_norway.geojson"
EXAMPLES = REPO / "examples"
SENTINEL = download.NODATA_SENTINEL
CANOPY = FetchConfig().canopy_height_asset


T0 = 1_560_000_000_000


def plain(value: Any) -> dict[str, Any]:
    """The keys a request asked for, whether given as a dict or an ee.Dictionary."""
    return dict(getattr(value, "_dictionary", None) or value)


def fake_value(name: str) -> float:
    """What the fake server puts in a layer: its paper index, else a number fixed by its name."""
    if name in PAPER_LAYERS:
        return float(PAPER_LAYERS.index(name))
    return float(100 + zlib.crc32(name.encode()) % 1000)


TREE = "n= 40\nnode), split, n, loss, yval, (yprob)\n  1) root 40 30 2 (0.2 0.3 0.5)\n"


class FakeEE:
    """Stands in for the Earth Engine server: scene facts, constants, assets and pixels.

    Answers follow the structure the client asked for (which windows, passes and levels), so
    the client code that reads them runs unchanged.
    """

    def __init__(self, ee: Any) -> None:
        self.ee = ee
        self.pixel_requests: list[dict[str, Any]] = []
        self.value_requests: list[dict[str, Any]] = []
        self.s1 = {"DESCENDING": (7, 6), "ASCENDING": (5, 5)}  # scenes per pass: pre, post
        self.s2 = {"L2A": (12, 11), "L1C": (12, 11)}
        self.unmaskable = 0  # S2 scenes per window without a cloud-probability partner
        self.glo30_tiles = 1
        self.missing_assets = {CANOPY}
        self.fail_on: dict[int, Exception] = {}  # pixel request number -> error to raise

    def compute_value(self, obj: Any) -> Any:
        request = dict(getattr(obj, "_dictionary", {}) or {})
        self.value_requests.append(request)
        if request.get("request") == "lsd-facts":
            return self.facts(request)
        if request.get("request") == "lsd-constants":
            return self.constants(request)
        raise AssertionError(f"unexpected value request {sorted(request)}")

    def facts(self, request: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"glo30_tiles": self.glo30_tiles}
        if "s1" in request:
            out["s1"] = {
                w: {p: self._s1(p, w, n[i]) for p, n in self.s1.items()}
                for i, w in enumerate(("pre", "post")) if w in request["s1"]
            }  # fmt: skip
        if "s2" in request:
            out["s2"] = {}
            for i, w in enumerate(("pre", "post")):
                if w not in request["s2"]:
                    continue
                levels = plain(request["s2"][w])
                entry: dict[str, Any] = {}
                for level, n in self.s2.items():
                    if level not in levels:
                        continue
                    ids = [f"2019{w}{level}{k:02d}" for k in range(n[i])]
                    keep = ids[: max(n[i] - self.unmaskable, 0)]
                    entry.update({level: ids, f"{level}_maskable": keep,
                                  f"{level}_times": [T0] * len(keep)})  # fmt: skip
                out["s2"][w] = entry
        return out

    def _s1(self, orbit: str, window: str, n: int) -> dict[str, Any]:
        return {
            "ids": [f"S1A_IW_GRDH_{orbit[0]}{window}{k}" for k in range(n)],
            "times": [T0 + k * 86_400_000 for k in range(n)],
            "relative_orbits": [37] * n,
        }

    def constants(self, request: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "look_direction" in request:
            looks = plain(request["look_direction"])
            out["look_direction"] = {p: (1.745 if p == "DESCENDING" else 4.538) for p in looks}
        if "vegetated_fraction" in request:
            out["vegetated_fraction"] = 0.8
        if "cart" in request:
            out["cart"] = {"tree": TREE, "train": {"type": "FeatureCollection", "features": []},
                           "accuracy": 0.87, "kappa": 0.8, "n_train": 70, "n_test": 30,
                           "s2_scenes": {"2019preL2A03": 0.99, "2019preL2A07": 0.4},
                           "class_counts": {str(c): 12 for c in range(1, 9)}}  # fmt: skip
        return out

    def get_info(self, asset_id: str) -> Any:
        if asset_id in self.missing_assets:
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
        bands = params.get("bandIds") or list(PAPER_LAYERS)
        assert h * w * len(bands) * 4 <= download.MAX_REQUEST_BYTES
        assert len(bands) <= download.MAX_BANDS_PER_REQUEST
        out = np.zeros((h, w), dtype=np.dtype([(name, "<f4") for name in bands]))
        for name in bands:
            out[name] = fake_value(name)
        if "preVV" in bands:
            out["preVV"] = east
        if "postVV" in bands:
            out["postVV"] = north
        if "dVV" in bands:  # masked pixels arrive as the sentinel: every 7th easting column
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


def millis(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


def date_ranges(root: Any) -> set[tuple[int, int]]:
    return {(c.args["start"], c.args["end"]) for c in calls(root, "DateRange")}


def graphs_decode(encoded: dict[str, Any]) -> Any:
    import ee

    return ee.deserializer.decode(encoded)


def run_fetch(*args: str) -> Any:
    return CliRunner().invoke(main, ["fetch", *args], catch_exceptions=False)


def test_fetch_writes_contract_folders(fake: FakeEE, events_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    result = run_fetch("--event", str(events_csv), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "3 fetched, 0 already complete" in result.output
    # the missing canopy asset warns, during and in the summary; the climate map is the
    # default public asset, which the fake server has
    missing = (
        f"warning: event 05-norway: asset {CANOPY} does not exist or your account cannot read "
        "it; canopyHeight is NaN"
    )
    assert result.output.count(missing) == 2
    assert "kgClimate" not in result.output
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
        prov = source["provenance"]
        assert prov["landcover"]["accuracy"] == 0.87
        assert prov["s1_pre"]["DESCENDING"]["relative_orbits"] == [37]
        assert prov["s1_pre"]["DESCENDING"]["dates"][0] == "2019-06-08T13:20:00"
        assert source["s1_passes"] == ["DESCENDING"] and source["s2_level"] == "L2A"
        assert prov["s1_look_direction_deg"] == {"DESCENDING": pytest.approx(99.981, abs=1e-3)}
        assert prov["s1_flattening"]["model"] == "volume"  # vegetated share 0.8
        assert source["image_counts"] == {"s1_pre": 7, "s1_post": 6, "s2_pre": 12, "s2_post": 11}
        assert source["unavailable_layers"] == ["canopyHeight"]
        assert prov["kg_climate_asset"] == KG_CLIMATE_ASSET
        conventions = meta["conventions"]
        assert conventions["distortion_masking"]["value"] == "per_scene"
        assert conventions["land_cover"]["how"] == "recorded"
        assert conventions["dem"]["value"] == prov["dem_asset"]
        assert prov["landcover"]["s2_scenes_clear_share"] == {"2019preL2A03": 0.99,
                                                              "2019preL2A07": 0.4}  # fmt: skip
        assert prov["landcover"]["points_per_class"]["8"] == 12
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
    assert not (out / "22-italy").exists()  # a failed event leaves no half-made folder
    assert not [p for p in out.iterdir() if p.name.endswith(".partial")]
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
    fake.s2 = {"L2A": (12, 0), "L1C": (12, 0)}
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
    fake.missing_assets = set()
    fake.s1["DESCENDING"] = (0, 6)  # only ascending scenes before the events
    result = run_fetch("--event", str(events_csv), "--out", str(tmp_path / "d"), "--dry-run")
    assert result.exit_code == 0, result.output  # orbit auto takes the ascending pass
    assert "grid: 200 x 200 px at 10 m" in result.output and "utm_epsg: 32719" in result.output
    assert "s1_passes: ASCENDING" in result.output and "s2_level: L2A" in result.output
    assert "counts: s1_post 5, s1_pre 5, s2_post 11, s2_pre 12" in result.output
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


# ----------------------------------------------------------------------------- issue 9


def write_csv(tmp_path: Path, header: str, *rows: str) -> Path:
    csv = tmp_path / "events.csv"
    csv.write_text(header + "\n" + "\n".join(rows) + "\n")
    return csv


def test_dry_run_fails_on_missing_assets_and_empty_orbits(fake: FakeEE, tmp_path: Path) -> None:
    """Bad input found before any download: an asset id that does not exist, and a window
    with no scenes of the requested pass (naming event, orbit, window and the pass that has
    scenes)."""
    fake.missing_assets = {CANOPY, "users/someone/missing_dem"}
    fake.s1["DESCENDING"] = (0, 6)
    csv = write_csv(
        tmp_path, "id,date,lon,lat,orbit,dem",
        "a-norway,2019-07-30,6.11699,61.51734,DESCENDING,users/someone/missing_dem",
    )  # fmt: skip
    result = run_fetch("--event", str(csv), "--out", str(tmp_path / "d"), "--dry-run")
    assert result.exit_code == 1
    problems = [ln.strip() for ln in result.output.splitlines() if ln.startswith("  problem:")]
    assert problems == [
        "problem: event a-norway: no Sentinel-1 images (DESCENDING passes) in pre window "
        "2019-05-31..2019-07-30; ASCENDING has 5 there: set orbit ASCENDING or AUTO",
        "problem: event a-norway: asset users/someone/missing_dem (the event's dem) does not "
        "exist or your account cannot read it",
        f"problem: event a-norway: asset {CANOPY} does not exist or your account cannot read "
        "it; canopyHeight is NaN",
    ]
    assert fake.pixel_requests == [] and not (tmp_path / "d").exists()
    # the fetch fails that event with the same first two lines, and downloads nothing
    result = run_fetch("--event", str(csv), "--out", str(tmp_path / "d"))
    assert result.exit_code == 1 and fake.pixel_requests == []
    assert "failed: event a-norway: no Sentinel-1 images (DESCENDING passes)" in result.output


def test_dry_run_checks_icelands_dem_and_the_climate_map(fake: FakeEE, tmp_path: Path) -> None:
    """The community assets lsd reads by default are checked before any download: Iceland's
    10 m DEM for an Iceland event (not for Norway), and the Koppen-Geiger map."""
    fake.missing_assets = {ICELAND_DEM_ASSET, KG_CLIMATE_ASSET}
    csv = write_csv(tmp_path, "id,date,lon,lat",
                    "01-iceland,2021-10-06,-17.5558,65.8674",
                    "05-norway,2019-07-30,6.11699,61.51734")  # fmt: skip
    result = run_fetch("--event", str(csv), "--out", str(tmp_path / "d"), "--dry-run")
    assert result.exit_code == 1
    problems = [ln.strip() for ln in result.output.splitlines() if ln.startswith("  problem:")]
    assert problems == [
        f"problem: event 01-iceland: asset {ICELAND_DEM_ASSET} (high_latitude_dem) does not "
        "exist or your account cannot read it",
        f"problem: event 01-iceland: asset {KG_CLIMATE_ASSET} does not exist or your account "
        "cannot read it; kgClimate is NaN",
        f"problem: event 05-norway: asset {KG_CLIMATE_ASSET} does not exist or your account "
        "cannot read it; kgClimate is NaN",
    ]
    assert f"dem: {ICELAND_DEM_ASSET}" in result.output


def test_open_sea_event_fails_with_a_hint(fake: FakeEE, tmp_path: Path) -> None:
    fake.s1 = {"DESCENDING": (0, 0), "ASCENDING": (0, 0)}
    fake.s2 = {"L2A": (0, 0), "L1C": (0, 0)}
    fake.glo30_tiles = 0
    csv = write_csv(tmp_path, "id,date,lon,lat", "sea,2020-06-01,-30.0,40.0")
    result = run_fetch("--event", str(csv), "--out", str(tmp_path / "d"))
    assert result.exit_code == 1 and fake.pixel_requests == []
    assert "it looks like open sea (both missions image land and coasts)" in result.output
    assert "Traceback" not in result.output


def test_l1c_fallback_and_dropped_scenes_are_recorded(fake: FakeEE, tmp_path: Path) -> None:
    fake.missing_assets = set()
    fake.s2 = {"L2A": (0, 0), "L1C": (9, 8)}  # 2017, Kyrgyzstan: no L2A in Earth Engine yet
    fake.unmaskable = 1
    csv = write_csv(tmp_path, "id,date,lon,lat", "21-kyrgyzstan,2017-04-30,73.290135,40.587722")
    result = run_fetch("--event", str(csv), "--out", str(tmp_path / "d"), "--graphs",
                       str(tmp_path / "g"))  # fmt: skip
    assert result.exit_code == 0, result.output
    source = json.loads((tmp_path / "d" / "21-kyrgyzstan" / "event.json").read_text())["source"]
    assert source["s2_level"] == "L1C" and source["image_counts"]["s2_pre"] == 8
    dropped = source["provenance"]["s2_dropped_no_cloud_probability"]
    assert dropped == {"pre": ["2019preL1C08"], "post": ["2019postL1C07"]}
    warning = ("warning: event 21-kyrgyzstan: 1 Sentinel-2 L1C scene(s) of the pre window have "
               "no cloud-probability scene and were left out: 2019preL1C08")  # fmt: skip
    assert result.output.count(warning) == 2  # when it happens, and in the summary
    graph = decode(read_graph(tmp_path / "g" / "21-kyrgyzstan" / "s2.json")["graph"])
    ids = {c.args["id"] for c in calls(graph, "ImageCollection.load")}
    assert S2_L1C_COLLECTION in ids and S2_SR_COLLECTION not in ids


def test_dry_run_graphs_are_what_the_fetch_sends(fake: FakeEE, events_csv: Path, tmp_path: Path):
    """--graphs writes one JSON per event and request; the tiles send exactly stack.json."""
    fake.missing_assets = set()
    gdir = tmp_path / "graphs"
    result = run_fetch("--event", str(events_csv), "--out", str(tmp_path / "d"), "--dry-run",
                       "--graphs", str(gdir), "--only", "05-norway")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"graphs in {gdir}" in result.output and not (tmp_path / "d").exists()
    files = sorted(p.name for p in (gdir / "05-norway").iterdir())
    assert files == ["aux.json", "constants.json", "facts.json", "landcover.json", "s1.json",
                     "s2.json", "stack.json", "terrain.json"]  # fmt: skip
    (spec,) = read_events(events_csv, only={"05-norway"})
    windows = {(millis(w.start), millis(w.end)) for w in (spec.pre, spec.post)}
    s1_doc = read_graph(gdir / "05-norway" / "s1.json")
    assert s1_doc["resolved"] == {"s1_passes": ["DESCENDING"], "s2_level": "L2A",
                                  "assumed": False}  # fmt: skip
    assert s1_doc["group_layers"] == list(PAPER_LAYERS[:9]) and s1_doc["constants_known"]
    s1_graph = decode(s1_doc["graph"])
    assert date_ranges(s1_graph) == windows
    assert {c.args["rightValue"] for c in calls(s1_graph, "Filter.equals")
            if c.args.get("leftField") == "orbitProperties_pass"} == {"DESCENDING"}  # fmt: skip
    assert 1.745 in constants(s1_graph)  # the look direction, a constant
    land = decode(read_graph(gdir / "05-norway" / "landcover.json")["graph"])
    assert [c.args["treeString"] for c in calls(land, "Classifier.decisionTree")] == [TREE]
    facts = decode(read_graph(gdir / "05-norway" / "facts.json")["graph"])
    assert date_ranges(facts) == windows
    for name in ("stack", "s1", "s2", "terrain", "aux", "landcover"):
        graph = decode(read_graph(gdir / "05-norway" / f"{name}.json")["graph"])
        for call in ("Image.reduceRegion", "Image.stratifiedSample", "Classifier.train"):
            assert not calls(graph, call), (name, call)
    constants_graph = decode(read_graph(gdir / "05-norway" / "constants.json")["graph"])
    assert calls(constants_graph, "Image.stratifiedSample")
    assert calls(constants_graph, "Image.reduceRegion")
    # the fetch sends the same stack graph in every tile request
    result = run_fetch("--event", str(events_csv), "--out", str(tmp_path / "d"),
                       "--only", "05-norway")  # fmt: skip
    assert result.exit_code == 0, result.output
    sent = [graphs.encode(r["expression"]) for r in fake.pixel_requests]
    doc = read_graph(gdir / "05-norway" / "stack.json")
    assert sent and all(g == doc["graph"] for g in sent)  # byte for byte, unmask included
    root = decode(doc["graph"])
    assert root.name == "Image.toFloat" and root.args["value"].name == "Image.unmask"
    fill = root.args["value"].args["value"]  # Image.unmask(input, value)
    assert fill.name == "Image.constant" and fill.args["value"] == download.NODATA_SENTINEL
    assert doc["no_data_sentinel"] == download.NODATA_SENTINEL
    assert graphs.encode(graphs_decode(doc["graph"])) == doc["graph"]  # replays as documented


def test_large_aoi_and_year_long_window(fake: FakeEE, tmp_path: Path) -> None:
    """100 km2 and 365-day windows: four tiles, each the same per-pixel graph, pixels placed."""
    fake.missing_assets = set()
    csv = write_csv(tmp_path, "id,date,lon,lat,pre_days,post_days",
                    "big,2019-07-30,6.11699,61.51734,365,365")  # fmt: skip
    out = tmp_path / "d"
    result = run_fetch("--event", str(csv), "--out", str(out), "--aoi-km2", "100")
    assert result.exit_code == 0, result.output
    (spec,) = read_events(csv, aoi_km2=100)
    grid = event_grid(spec, 10.0)
    assert (grid.width, grid.height) == (1000, 1000)
    assert len(fake.pixel_requests) == 4
    facts = next(r for r in fake.value_requests if r["request"] == "lsd-facts")
    pre = facts["s1"]["pre"]["DESCENDING"]
    assert date_ranges(graph_of(pre)) == {(millis(spec.pre.start), millis(spec.pre.end))}
    assert (spec.pre.end - spec.pre.start).days == 365
    expressions = {json.dumps(graphs.encode(r["expression"]), sort_keys=True)
                   for r in fake.pixel_requests}  # fmt: skip
    assert len(expressions) == 1  # every tile carries the same graph, constants included
    tile = decode(json.loads(expressions.pop()))
    for call in ("Image.reduceRegion", "Image.stratifiedSample", "Classifier.train"):
        assert not calls(tile, call)
    data, _, got = read_stack(out / "big" / "stack.tif", ["preVV", "postVV"])
    assert got.same_as(grid)
    x0, y1 = grid.transform.c / 10, grid.transform.f / 10
    cols = np.array([0, 511, 512, 999])  # either side of the tile seam
    np.testing.assert_array_equal(data[0][:, cols], np.broadcast_to(x0 + cols, (1000, 4)))
    np.testing.assert_array_equal(data[1][[0, 999], 5], y1 - np.array([0, 999]))
    with rasterio.open(out / "big" / "stack.tif") as src:
        assert src.descriptions[6] == "layover"
        assert src.tags(7)["meaning"].startswith("1 = layover (distorted")


def test_dry_run_without_credentials_writes_graphs(tmp_path: Path) -> None:
    """No session at all (a fresh process, no credentials): the plan, and graphs built with the
    ee client's bundled algorithm list, the choices the server would make assumed."""
    csv = write_csv(tmp_path, "id,date,lon,lat", "05-norway,2019-07-30,6.11699,61.51734")
    env = {k: v for k, v in os.environ.items()
           if k not in ("LSD_EE_SERVICE_ACCOUNT", "GOOGLE_APPLICATION_CREDENTIALS")}  # fmt: skip
    env["HOME"] = str(tmp_path)
    cli = [sys.executable, "-c", "from lsd.pipeline.cli import main; main()"]
    proc = subprocess.run(
        [*cli, "fetch", "--event", str(csv), "--out", str(tmp_path / "d"), "--dry-run",
         "--graphs", str(tmp_path / "g")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "(choices assumed)" in proc.stdout
    doc = read_graph(tmp_path / "g" / "05-norway" / "stack.json")
    assert doc["resolved"]["assumed"] and not doc["constants_known"]
    graph = decode(doc["graph"])
    assert calls(graph, "Image.reduceRegion")  # per-event values computed in the graph


# ----------------------------------------------------------------------------- layer groups

ALL_GROUPS = ("paper", "s2bands", "ndvi", "s1scenes")


def test_layer_groups_go_into_one_stack_in_band_groups(
    fake: FakeEE, events_csv: Path, tmp_path: Path
) -> None:
    from lsd.layergroups import group_layers

    out = tmp_path / "data"
    result = run_fetch(
        "--event", str(events_csv), "--out", str(out), "--only", "05-norway",
        "--layers", ",".join(ALL_GROUPS), "--s1-scenes", "3+3",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    names = group_layers(ALL_GROUPS, "3+3")
    assert len(names) == 15 + 20 + 2 + 12
    ev = read_event(out / "05-norway")
    assert ev.layers == names
    meta = json.loads((out / "05-norway" / "event.json").read_text())
    assert meta["layers"] == list(names) and meta["source"]["event"]["layers"] == list(names)
    # 49 layers on 200 x 200 px: one tile, four band groups of 13, 12, 12, 12 layers
    asked = [r["bandIds"] for r in fake.pixel_requests]
    assert [len(b) for b in asked] == [13, 12, 12, 12]
    assert [n for b in asked for n in b] == list(names)
    data, _, _ = read_stack(ev.stack)
    for i, name in enumerate(names):
        if name not in ("preVV", "postVV", "dVV"):
            assert (data[i] == fake_value(name)).all(), name
    with rasterio.open(ev.stack) as src:
        assert src.tags(names.index("postB8A") + 1)["meaning"].startswith("reflectance 0-1")
        assert "acquisition 2 before" in src.tags(names.index("preVH_2") + 1)["meaning"]
    # provenance: plain values from the facts, the scenes nearest the event on each side
    prov = meta["source"]["provenance"]
    assert {"s1_scenes", "s2_bands", "s2_ndvi", "s1_pre", "s2_pre"} <= set(prov)
    scenes = prov["s1_scenes"]
    assert scenes["pass"] == "DESCENDING" and scenes["asked"] == {"pre": 3, "post": 3}
    pre_ids = [s["ids"] for s in scenes["scenes"]["pre"]]
    assert pre_ids == [["S1A_IW_GRDH_Dpre6"], ["S1A_IW_GRDH_Dpre5"], ["S1A_IW_GRDH_Dpre4"]]
    assert scenes["scenes"]["pre"][0]["time"] == "2019-06-14T13:20:00"
    assert [s["ids"][0][-5:] for s in scenes["scenes"]["post"]] == ["post0", "post1", "post2"]
    assert prov["s2_bands"]["values"].startswith("surface reflectance (L2A")
    # every request sends the same per-pixel image, its band group chosen by bandIds; the
    # scene choice travels as constants: the ids are in it, no request ranks scenes
    sent = {json.dumps(graphs.encode(r["expression"]), sort_keys=True) for r in fake.pixel_requests}
    assert len(sent) == 1
    tile = decode(json.loads(sent.pop()))
    assert not calls(tile, "Collection.distinct") and not calls(tile, "Image.reduceRegion")
    assert {"S1A_IW_GRDH_Dpre4", "S1A_IW_GRDH_Dpost2"} <= set(map(str, constants(tile)))
    (consts,) = [r for r in fake.value_requests if r["request"] == "lsd-constants"]
    assert set(plain(consts["look_direction"])) == {"DESCENDING"}


def test_events_csv_layers_column_chooses_layers_per_event(fake: FakeEE, tmp_path: Path) -> None:
    from lsd.layergroups import group_layers

    csv = tmp_path / "events.csv"
    csv.write_text(
        "id,date,lon,lat,layers,s1_scenes\n"
        "a,2019-07-30,6.11699,61.51734,ndvi,\n"
        'b,2018-11-02,11.972334,46.34617,"ndvi,s1scenes",1+3\n'
        "c,2020-06-16,-71.685998,-15.660252,,\n"
    )
    out = tmp_path / "data"
    result = run_fetch("--event", str(csv), "--out", str(out), "--layers", "s2bands")
    assert result.exit_code == 0, result.output
    assert read_event(out / "a").layers == ("preNDVI", "postNDVI")
    assert read_event(out / "b").layers == group_layers(["ndvi", "s1scenes"], "1+3")
    assert read_event(out / "b").layers[-6:] == (
        "postVV_1",
        "postVV_2",
        "postVV_3",
        "postVH_1",
        "postVH_2",
        "postVH_3",
    )
    assert read_event(out / "c").layers == group_layers(["s2bands"])
    # each event's facts request asked only for the sensors its own layers need
    facts = [r for r in fake.value_requests if r["request"] == "lsd-facts"]
    assert [("s1" in r, "s2" in r) for r in facts] == [(False, True), (True, True), (False, True)]


def _few_scenes_csv(tmp_path: Path, orbit: str) -> Path:
    return write_csv(tmp_path, "id,date,lon,lat,orbit,layers,s1_scenes",
                     f"05-norway,2019-07-30,6.11699,61.51734,{orbit},s1scenes,3+1")  # fmt: skip


def test_window_with_too_few_acquisitions_fails_that_event(fake: FakeEE, tmp_path: Path) -> None:
    fake.s1["DESCENDING"] = (2, 6)  # two acquisitions before the event, three asked for
    result = run_fetch("--event", str(_few_scenes_csv(tmp_path, "DESCENDING")), "--out",
                       str(tmp_path / "d"))  # fmt: skip
    assert result.exit_code == 1
    assert (
        "failed: event 05-norway: pre window 2019-05-31..2019-07-30 holds 2 Sentinel-1 "
        "acquisition(s) (DESCENDING passes), 3 asked for (preVV_3); ASCENDING has 5 there: "
        "set orbit ASCENDING or AUTO" in result.output
    )
    assert fake.pixel_requests == []
    # orbit AUTO takes the pass that has them, and records it
    result = run_fetch("--event", str(_few_scenes_csv(tmp_path, "AUTO")), "--out",
                       str(tmp_path / "d"))  # fmt: skip
    assert result.exit_code == 0, result.output
    source = json.loads((tmp_path / "d" / "05-norway" / "event.json").read_text())["source"]
    assert source["s1_passes"] == ["ASCENDING"]
    scenes = source["provenance"]["s1_scenes"]["scenes"]
    assert [s["pass"] for s in scenes["pre"]] == ["ASCENDING"] * 3
    # no pass has them: one line with what each pass holds
    fake.s1["ASCENDING"] = (1, 5)
    fake.pixel_requests.clear()
    result = run_fetch("--event", str(_few_scenes_csv(tmp_path, "AUTO")), "--out",
                       str(tmp_path / "e"))  # fmt: skip
    assert result.exit_code == 1 and fake.pixel_requests == []
    assert (
        "failed: event 05-norway: orbit AUTO: no Sentinel-1 pass has the acquisitions asked for "
        "in every window (pre 2019-05-31..2019-07-30: 3 asked for (preVV_3), post "
        "2019-07-30..2019-09-28: 1 asked for (postVV_1); acquisitions per pass: DESCENDING: pre "
        "2, post 6; ASCENDING: pre 1, post 5); widen the windows with pre_days/post_days or ask "
        "for fewer with s1_scenes" in result.output
    )


def test_dry_run_lists_every_layer_and_request(
    fake: FakeEE, events_csv: Path, tmp_path: Path
) -> None:
    fake.missing_assets = set()
    result = run_fetch(
        "--event", str(events_csv), "--out", str(tmp_path / "d"), "--dry-run",
        "--only", "05-norway", "--layers", "paper,s2bands,s1scenes", "--aoi-km2", "50",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "layers: 39: preVV, postVV, dVV," in result.output
    bands = "preB2, preB3, preB4, preB5, preB6, preB7, preB8, preB8A, preB11, preB12"
    assert bands in result.output
    assert result.output.count("postB12") == 1
    assert "requests: 12 (4 tile(s) x 3 band group(s) of at most 16 layers)" in result.output
    assert (
        "s1_scenes: DESCENDING: pre 2019-06-14 (1 image(s)); post 2019-06-08 (1 image(s))"
        in result.output
    )
    assert fake.pixel_requests == []


def test_graph_files_cover_the_new_layer_groups(
    fake: FakeEE, events_csv: Path, tmp_path: Path
) -> None:
    """One file per graph group, the groups beyond the paper included; with a session the
    scene graph carries the chosen image ids, without one it ranks acquisitions itself."""
    fake.missing_assets = set()
    gdir = tmp_path / "graphs"
    result = run_fetch("--event", str(events_csv), "--out", str(tmp_path / "d"), "--dry-run",
                       "--graphs", str(gdir), "--only", "05-norway",
                       "--layers", "ndvi,s2bands,s1scenes", "--s1-scenes", "1+3")  # fmt: skip
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in (gdir / "05-norway").iterdir())
    assert files == ["constants.json", "facts.json", "ndvi.json", "s1scenes.json",
                     "s2bands.json", "stack.json"]  # fmt: skip
    stack = read_graph(gdir / "05-norway" / "stack.json")
    assert [len(b) for b in stack["band_ids_per_request"]] == [15, 15]
    scenes = read_graph(gdir / "05-norway" / "s1scenes.json")
    assert scenes["group_layers"] == ["preVV_1", "preVH_1", *(
        f"post{p}_{i}" for p in ("VV", "VH") for i in (1, 2, 3))]  # fmt: skip
    graph = decode(scenes["graph"])
    assert not calls(graph, "Collection.distinct")
    assert {"S1A_IW_GRDH_Dpre6", "S1A_IW_GRDH_Dpost2"} <= set(map(str, constants(graph)))
    bands = decode(read_graph(gdir / "05-norway" / "s2bands.json")["graph"])
    assert calls(bands, "Image.resample") and not calls(bands, "ImageCollection.mosaic")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("--layers", "paper,sar"),
         "Error: --layers: unknown layer group 'sar'; groups: paper, s2bands, ndvi, s1scenes"),
        (("--s1-scenes", "4+0"),
         "Error: --s1-scenes '4+0' is not one of 1+1, 3+1, 1+3, 3+3 (acquisitions before + "
         "after the event)"),
    ],
)  # fmt: skip
def test_bad_layer_options_are_one_line(
    events_csv: Path, tmp_path: Path, args: tuple[str, ...], line: str
) -> None:
    result = run_fetch("--event", str(events_csv), "--out", str(tmp_path / "d"), *args)
    assert result.exit_code == 1
    assert result.output.strip() == line
    assert not (tmp_path / "d").exists()
