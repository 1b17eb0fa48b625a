"""`lsd add-layer`: real rasters in other CRSs and resolutions placed on real event folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from pyproj import Transformer
from rasterio.transform import Affine, from_origin

from lsd import events as lsd_events
from lsd.events import event_record, read_event, write_event
from lsd.pipeline.addlayer import LayerSource, add_layer
from lsd.pipeline.cli import main
from lsd.rasters import Grid, read_stack

UTM = rasterio.crs.CRS.from_epsg(32632)
# two 40 x 30 px events at 10 m near the Norway example (345650 E, 6824810 N)
ORIGINS = {"ev-a": (345650.0, 6824810.0), "ev-b": (346650.0, 6824810.0)}
W, H = 40, 30


def _grid(eid: str) -> Grid:
    x0, y1 = ORIGINS[eid]
    return Grid(W, H, UTM, Affine(10.0, 0.0, x0, 0.0, -10.0, y1))


def make_events(root: Path, ids=("ev-a", "ev-b")) -> Path:
    data = root / "data"
    for eid in ids:
        grid = _grid(eid)
        stack = np.stack([np.full((H, W), 1.0), np.arange(H * W).reshape(H, W)]).astype("f4")
        record = event_record(eid, layers=["a", "b"], grid=grid, source={"kind": "test"})
        write_event(data / eid, record, grid=grid, stack=stack, label=np.zeros((H, W), "u1"))
    return data


def dem(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """A smooth field of position, so bilinear resampling can be checked against it."""
    return 1000.0 + 5000.0 * (lon - 6.0) + 3000.0 * (lat - 61.0)


def write_raster(path: Path, data: np.ndarray, transform, crs, nodata=None) -> Path:
    data = data if data.ndim == 3 else data[None]
    count, height, width = data.shape
    profile = dict(
        driver="GTiff", width=width, height=height, count=count, dtype=str(data.dtype),
        transform=transform, nodata=nodata,
    )  # fmt: skip
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def lonlat_dem(path: Path, lon0=6.08, lat0=61.55, step=0.0001, n=800, nodata=None) -> Path:
    """A DEM in EPSG:4326 at about 5-10 m, covering both events with room to spare."""
    lons = lon0 + step * (np.arange(n) + 0.5)
    lats = lat0 - step * (np.arange(n) + 0.5)
    lon, lat = np.meshgrid(lons, lats)
    return write_raster(
        path, dem(lon, lat).astype("f4"), from_origin(lon0, lat0, step, step), "EPSG:4326", nodata
    )


def pixel_lonlat(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    t = grid.transform
    cols, rows = np.meshgrid(np.arange(grid.width) + 0.5, np.arange(grid.height) + 0.5)
    x, y = t.c + t.a * cols, t.f + t.e * rows
    return Transformer.from_crs(grid.crs, 4326, always_xy=True).transform(x, y)


def run(*args: str):
    return CliRunner().invoke(main, ["add-layer", *args, "--no-progress"], catch_exceptions=False)


def snapshot(data: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(data.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- placing


def test_dem_in_another_crs_is_reprojected_onto_every_event(tmp_path: Path) -> None:
    data = make_events(tmp_path)
    raster = lonlat_dem(tmp_path / "dem.tif")
    before = {e: read_stack(data / e / "stack.tif")[0] for e in ORIGINS}
    result = run(str(data), "--name", "dem10", str(raster))
    assert result.exit_code == 0, result.output
    assert "2 event(s) changed" in result.output
    for eid in ORIGINS:
        ev = read_event(data / eid)
        assert ev.layers == ("a", "b", "dem10")
        stack, _, grid = read_stack(ev.stack)
        np.testing.assert_array_equal(stack[:2], before[eid])  # old layers untouched
        lon, lat = pixel_lonlat(grid)
        np.testing.assert_allclose(stack[2], dem(lon, lat), atol=0.05)  # bilinear on a plane
        meta = json.loads((ev.path / "event.json").read_text())
        assert meta["layers"] == ["a", "b", "dem10"] and meta["source"] == {"kind": "test"}
        (rec,) = meta["added_layers"]
        assert rec["name"] == "dem10" and rec["source"] == str(raster.resolve())
        assert rec["band"] == 1 and rec["resampling"] == "bilinear" and rec["coverage"] == 1.0
        assert rec["source_crs"] == "EPSG:4326"
        assert not [p for p in ev.path.iterdir() if p.name.endswith(".partial")]
    # a rerun changes nothing
    snap = snapshot(data)
    result = run(str(data), "--name", "dem10", str(raster))
    assert result.exit_code == 0 and "0 event(s) changed, 2 already had it" in result.output
    assert snapshot(data) == snap


def test_classes_keep_their_codes_with_nearest(tmp_path: Path) -> None:
    data = make_events(tmp_path, ids=("ev-a",))
    classes = (np.indices((20, 25)).sum(axis=0) % 4 + 1).astype("u1")  # 20 m checkerboard-ish
    raster = write_raster(tmp_path / "lc.tif", classes, from_origin(345600, 6824850, 20, 20), UTM)
    summary = add_layer(
        data,
        raster,
        LayerSource(("lc",), resampling="nearest"),
        echo=lambda _m: None,
        progress=False,
    )
    assert summary.added == ["ev-a"]
    (lc,), _, _ = read_stack(data / "ev-a" / "stack.tif", ["lc"])
    assert set(np.unique(lc)) <= {1.0, 2.0, 3.0, 4.0}
    # each 10 m pixel takes the class of the 20 m cell holding its centre
    x0, y1 = ORIGINS["ev-a"]
    cols = ((x0 + 10 * np.arange(W) + 5 - 345600) // 20).astype(int)
    rows = ((6824850 - (y1 - 10 * np.arange(H) - 5)) // 20).astype(int)
    np.testing.assert_array_equal(lc, classes[np.ix_(rows, cols)])
    add_layer(data, raster, LayerSource(("lc_smooth",)), echo=lambda _m: None, progress=False)
    (smooth,), _, _ = read_stack(data / "ev-a" / "stack.tif", ["lc_smooth"])
    assert not np.isin(smooth, [1, 2, 3, 4]).all()  # bilinear would invent classes


def test_folder_of_rasters_matched_by_event_id_and_band_names(tmp_path: Path) -> None:
    data = make_events(tmp_path)
    folder = tmp_path / "coh"
    folder.mkdir()
    for k, eid in enumerate(ORIGINS):
        x0, y1 = ORIGINS[eid]
        bands = np.stack(
            [np.full((H, W), k + 0.25), np.full((H, W), k + 0.5), np.full((H, W), k + 0.75)]
        ).astype("f4")
        write_raster(folder / f"{eid}.tif", bands, from_origin(x0, y1, 10, 10), UTM)
    write_raster(folder / "other.tif", np.ones((2, 2), "f4"), from_origin(0, 0, 10, 10), UTM)
    result = run(str(data), str(folder), "--name", "H,A,alpha")
    assert result.exit_code == 0, result.output
    assert "warning: 1 raster(s) in" in result.output and "other.tif" in result.output
    for k, eid in enumerate(ORIGINS):
        got, names, _ = read_stack(data / eid / "stack.tif", ["H", "A", "alpha"])
        assert [float(np.unique(b)[0]) for b in got] == [k + 0.25, k + 0.5, k + 0.75]
        recs = read_event(data / eid).meta["added_layers"]
        assert [(r["name"], r["band"]) for r in recs] == [("H", 1), ("A", 2), ("alpha", 3)]
    # one band of a multi-band raster
    result = run(str(data), str(folder), "--name", "alpha2", "--band", "3", "--only", "ev-b")
    assert result.exit_code == 0, result.output
    assert "alpha2" in read_event(data / "ev-b").layers
    assert "alpha2" not in read_event(data / "ev-a").layers


def test_unreferenced_event_takes_a_same_size_raster_as_it_is(tmp_path: Path) -> None:
    grid = Grid(16, 16, None, Affine(10.0, 0, 0, 0, -10.0, 0))
    record = event_record("l4s", layers=["B2"], grid=grid, source={"kind": "test"})
    folder = tmp_path / "l4s"
    write_event(folder, record, grid=grid, stack=np.zeros((1, 16, 16), "f4"))
    values = np.arange(256, dtype="f4").reshape(16, 16)
    raster = write_raster(tmp_path / "x.tif", values, Affine.identity(), None)
    add_layer(folder, raster, LayerSource(("x",)), echo=lambda _m: None, progress=False)
    (got,), _, _ = read_stack(folder / "stack.tif", ["x"])
    np.testing.assert_array_equal(got, values)
    assert (
        read_event(folder, need_label=False)
        .meta["added_layers"][0]["resampling"]
        .startswith("none")
    )


# ----------------------------------------------------------------------------- refusals


def _no_crs(tmp_path: Path) -> Path:
    return write_raster(
        tmp_path / "nocrs.tif", np.ones((30, 40), "f4"), from_origin(345650, 6824810, 10, 10), None
    )


def _far(tmp_path: Path) -> Path:
    """Web-Mercator raster over Peru: a real raster, nowhere near the Norway events."""
    x, y = Transformer.from_crs(4326, 3857, always_xy=True).transform(-71.7, -15.7)
    return write_raster(
        tmp_path / "far.tif", np.ones((50, 50), "f4"), from_origin(x, y, 30, 30), "EPSG:3857"
    )


def _half(tmp_path: Path) -> Path:
    """Covers only the western half of event ev-a (and nothing of ev-b)."""
    x0, y1 = ORIGINS["ev-a"]
    return write_raster(
        tmp_path / "half.tif", np.ones((30, 20), "f4"), from_origin(x0, y1, 10, 10), UTM
    )


def _holes(tmp_path: Path) -> Path:
    """Covers both events, but no data (-9999) over a 10 x 10 px block of ev-a."""
    x0, y1 = ORIGINS["ev-a"]
    values = np.ones((30, 140), "f4")
    values[:10, :10] = -9999
    return write_raster(tmp_path / "holes.tif", values, from_origin(x0, y1, 10, 10), UTM, -9999)


@pytest.mark.parametrize(
    ("make", "name", "needle"),
    [
        (
            _no_crs,
            "x",
            "nocrs.tif: has no CRS, so it cannot be placed on the grid of event ev-a (EPSG:32632)",
        ),
        (
            _far,
            "x",
            "far.tif (EPSG:3857) does not overlap event ev-a (EPSG:32632): its centre lies 10,",
        ),
        (_half, "x", "half.tif covers 50.0% of event ev-a: 600 of its 40 x 30 pixels get no value"),
        (_holes, "x", "holes.tif covers 91.7% of event ev-a: 100 of its 40 x 30 pixels"),
        (
            lonlat_dem,
            "my dem",
            "Error: --name 'my dem' is not a layer name: use letters, digits, "
            "'_', '.' or '-', starting with a letter, and no spaces",
        ),
        (lonlat_dem, "b", "Error: --name: event ev-a already has a layer 'b'; choose another"),
        (lonlat_dem, "x,y", "Error: --name: 2 name(s) for 1 band(s) of"),
    ],
)
def test_bad_rasters_and_names_are_one_line_and_change_nothing(
    tmp_path: Path, make, name: str, needle: str
) -> None:
    data = make_events(tmp_path)
    raster = make(tmp_path) if make is not lonlat_dem else lonlat_dem(tmp_path / "dem.tif")
    before = snapshot(data)
    result = run(str(data), "--name", name, str(raster))
    assert result.exit_code == 1, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert needle in result.output
    assert snapshot(data) == before


def test_partial_coverage_can_be_allowed(tmp_path: Path) -> None:
    data = make_events(tmp_path, ids=("ev-a",))
    result = run(str(data), "--name", "x", str(_half(tmp_path)), "--allow-partial")
    assert result.exit_code == 0, result.output
    (x,), _, _ = read_stack(data / "ev-a" / "stack.tif", ["x"])
    assert (x[:, :20] == 1).all() and np.isnan(x[:, 20:]).all()
    assert read_event(data / "ev-a").meta["added_layers"][0]["coverage"] == 0.5


def test_folder_missing_an_event_raster_is_refused(tmp_path: Path) -> None:
    data = make_events(tmp_path)
    folder = tmp_path / "rasters"
    folder.mkdir()
    write_raster(
        folder / "ev-a.tif", np.ones((30, 40), "f4"), from_origin(*ORIGINS["ev-a"], 10, 10), UTM
    )
    result = run(str(data), str(folder), "--name", "x")
    assert result.exit_code == 1
    assert f"{folder}: no raster named after event(s) ev-b (expected e.g. {folder}/ev-b.tif)" in (
        result.output
    )


def test_interrupted_append_leaves_the_folder_as_it_was(tmp_path: Path, monkeypatch) -> None:
    data = make_events(tmp_path, ids=("ev-a",))
    before = snapshot(data)
    real = lsd_events.write_stack_with_layers

    def dies_after_writing(stack, dest, pixels, names):
        real(stack, dest, pixels, names)
        raise KeyboardInterrupt  # the user pressed Ctrl-C just before the rename

    monkeypatch.setattr(lsd_events, "write_stack_with_layers", dies_after_writing)
    with pytest.raises(KeyboardInterrupt):
        add_layer(
            data,
            lonlat_dem(tmp_path / "dem.tif"),
            LayerSource(("dem",)),
            echo=lambda _m: None,
            progress=False,
        )
    assert snapshot(data) == before  # no new file, no partial file, nothing changed
