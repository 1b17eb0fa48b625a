"""The STAC source end to end, offline: a local STAC API in the catalogs' schema serves the
synthetic world of tests/stac_fixtures.py (COGs read over HTTP range requests); two events are
fetched through `lsd fetch --source stac`, their layers checked against values computed by hand
from the COGs, then trained on, ensembled and used to map a third area fetched through
`lsd predict --source stac`. Bad input: an empty window, a silent catalog, open sea.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

import tests.stac_fixtures as fx
import tests.stac_server as srv
from lsd.layers import PAPER_LAYERS
from lsd.pipeline.cli import main

pytest.importorskip("pystac_client")


def _ok(result):
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The server, the world and the two fetched events (fetched once for the module)."""
    import lsd.stac.catalogs as cats

    tmp = tmp_path_factory.mktemp("stac")
    with srv.running(tmp / "files") as server, pytest.MonkeyPatch.context() as mp:
        w = fx.make_world(tmp, server.url)
        pc = server.add(srv.Catalog("/api/stac/v1", w.collections, w.pc_items, "pgstac"))
        es = server.add(srv.Catalog("/v1", w.collections, w.es_items, "stac-server"))
        mp.setitem(
            cats.CATALOGS,
            "planetary-computer",
            dataclasses.replace(cats.CATALOGS["planetary-computer"], url=pc),
        )
        mp.setitem(
            cats.CATALOGS,
            "earth-search",
            dataclasses.replace(cats.CATALOGS["earth-search"], url=es),
        )
        inv = fx.inventory(tmp)
        csv = fx.events_csv(tmp, inv)
        settings = fx.settings(tmp, server.url + "/files/aux/kg.tif", tmp / "cache")
        data = tmp / "data"
        # the catalog by its URL, two events at once in worker processes
        result = CliRunner().invoke(
            main,
            [
                "fetch", "--source", "stac", "--catalog", pc, "--jobs", "2", "--aoi-km2", "1",
                "--event", str(csv), "--out", str(data), "--fetch-config", str(settings),
            ],
        )  # fmt: skip
        yield {
            "items": w.pc_items,
            "collections": w.collections,
            "tmp": tmp,
            "server": server,
            "data": data,
            "fetch": result,
            "settings": settings,
            "csv": csv,
            "pc": pc,
        }


def _stack(world, eid):
    with rasterio.open(world["data"] / eid / "stack.tif") as src:
        return {n: src.read(i + 1) for i, n in enumerate(src.descriptions)}, src.transform


def _centre(transform, row, col):
    return transform.c + transform.a * (col + 0.5), transform.f + transform.e * (row + 0.5)


def _cog(world, rel, x, y):
    """The value of a fixture COG at UTM 32N (x, y), read with rasterio like a user would."""
    from pyproj import Transformer

    with rasterio.open(world["tmp"] / "files" / rel) as src:
        px, py = Transformer.from_crs(32632, src.crs, always_xy=True).transform(x, y)
        return float(next(src.sample([(px, py)]))[0])


def _ndvi(world, scene, x, y, offset):
    sid = fx.S2_SCENES[scene][0]
    b4 = (_cog(world, f"s2/{sid}/B04.tif", x, y) - offset) / 10_000
    b8 = (_cog(world, f"s2/{sid}/B08.tif", x, y) - offset) / 10_000
    return (b8 - b4) / (b8 + b4)


def _col_of(transform, x):
    return int((x - transform.c) // transform.a)


def test_fetch_writes_the_contract_folders(world) -> None:
    result = world["fetch"]
    assert result.exit_code == 0, result.output
    assert "2 fetched, 0 already complete" in result.output
    for eid in ("ev-a", "ev-b"):
        rec = json.loads((world["data"] / eid / "event.json").read_text())
        assert rec["format"] == "lsd-event/1" and rec["layers"] == list(PAPER_LAYERS)
        assert rec["source"]["kind"] == "stac"
        assert rec["grid"]["crs"] == "EPSG:32632" and rec["grid"]["pixel_m"] == 10.0
        assert (rec["grid"]["width"], rec["grid"]["height"]) == (100, 100)
        items = rec["source"]["items"]
        assert set(items) == set(PAPER_LAYERS)
        assert items["dNDVI"] == [s[0] for s in fx.S2_SCENES]  # the B11-less scene left out
        assert fx.NO_B11_SCENE[0] in json.dumps(rec["source"]["left_out"])
        assert "ESA_WorldCover_10m_2021_v200_N45E009" in items["landCover"]
        assert "v100" not in json.dumps(items)  # the older WorldCover is not used
        conv = rec["conventions"]
        assert conv["flattening"]["value"] == "rtc-gamma0"
        assert conv["distortion_flags"]["value"] == "1=distorted"
        assert all(set(v) == {"value", "how", "evidence"} for v in conv.values())
    rerun = CliRunner().invoke(
        main,
        [
            "fetch", "--source", "stac", "--catalog", world["pc"], "--jobs", "2", "--aoi-km2",
            "1", "--event", str(world["csv"]), "--out", str(world["data"]),
            "--fetch-config", str(world["settings"]),
        ],
    )  # fmt: skip
    assert rerun.exit_code == 0 and "0 fetched, 2 already complete" in rerun.output
    label = rasterio.open(world["data"] / "ev-a" / "label.tif").read(1)
    assert 0 < (label == 1).sum() < label.size and set(np.unique(label)) == {0, 1}


def test_search_pages_are_followed(world) -> None:
    posts = [p for m, p in world["server"].requests if m == "POST"]
    # 5 Sentinel-2 items at 2 per page: a window of 3 (post) needs 2 pages
    assert len(posts) > 2 * 5


def test_dndvi_is_the_greenest_pixel_difference_computed_by_hand(world) -> None:
    stack, t = _stack(world, "ev-a")
    x, y = _centre(t, 90, 10)  # outside the scar
    pre = [_ndvi(world, 0, x, y, 0), _ndvi(world, 1, x, y, 0)]
    post = [_ndvi(world, 2, x, y, 1000), _ndvi(world, 3, x, y, 1000)]
    expected = max(post) - max(pre)
    assert pre[1] > pre[0] and post[1] > post[0]  # the greener scene wins, west of 500 km
    assert stack["dNDVI"][90, 10] == pytest.approx(expected, abs=2e-4)
    assert abs(expected - (post[0] - pre[0])) > 5e-3  # another choice would show
    scar = stack["dNDVI"][50, 50]  # the landslide scar strips the forest
    assert scar < -0.3
    without_offset = max(_ndvi(world, s, x, y, 0) for s in (2, 3)) - max(pre)
    assert abs(without_offset - expected) > 5e-3  # the baseline-04.00 offset matters


def test_snow_grown_300_m_takes_that_scene_out(world) -> None:
    stack, t = _stack(world, "ev-b")
    near = _col_of(t, 501_950.0)  # 250 m from the snow patch: masked in post2
    far = _col_of(t, 501_050.0)
    for col, scenes in ((near, (2,)), (far, (2, 3))):
        x, y = _centre(t, 50, col)
        post = max(_ndvi(world, s, x, y, 1000) for s in scenes)
        pre = max(_ndvi(world, s, x, y, 0) for s in (0, 1))
        assert stack["dNDVI"][50, col] == pytest.approx(post - pre, abs=2e-4)
    x, y = _centre(t, 50, near)
    assert _ndvi(world, 3, x, y, 1000) > _ndvi(world, 2, x, y, 1000)  # it would have won


def test_elevation_and_slope_of_the_plane(world) -> None:
    stack, t = _stack(world, "ev-a")
    x, _ = _centre(t, 0, 37)
    assert stack["elevation"][0, 37] == pytest.approx(500 + 0.2 * (x - fx.X0), abs=0.5)
    assert np.allclose(stack["slope"], math.degrees(math.atan(0.2)), atol=0.02)


def test_layover_and_shadow_on_the_ridge(world) -> None:
    stack, t = _stack(world, "ev-b")
    east = slice(_col_of(t, 501_600.0), _col_of(t, 501_900.0))  # faces the sensor (descending)
    west = slice(_col_of(t, 501_100.0), _col_of(t, 501_400.0))
    assert (stack["layover"][:, east] == 1).all() and (stack["shadow"][:, east] == 0).all()
    assert (stack["shadow"][:, west] == 1).all() and (stack["layover"][:, west] == 0).all()
    assert np.isnan(stack["preVV"][:, east]).all() and np.isnan(stack["dVH"][:, west]).all()
    flat, _ = _stack(world, "ev-a")
    assert (flat["layover"] == 0).all() and (flat["shadow"] == 0).all()
    # ev-a's plane faces west (away from a descending sensor) by 11.3 deg: LIA = theta + 11.07
    assert 29.1 + 11.0 < np.nanmedian(flat["liaDeg"]) < 46.0 + 11.2


def test_backscatter_medians_computed_by_hand(world) -> None:
    stack, t = _stack(world, "ev-a")
    x, y = _centre(t, 20, 70)
    base = fx.rtc_base(np.array(x), np.array(y))
    pre = 10 * math.log10(float(np.median([base * 1.0, base * 1.2])))
    post = 10 * math.log10(float(np.median([base * 0.8, fx.RTC_CONSTANT_VV])))
    assert stack["preVV"][20, 70] == pytest.approx(pre, abs=1e-3)
    assert stack["postVV"][20, 70] == pytest.approx(post, abs=1e-3)  # one scene in zone 33, 20 m
    assert stack["dVV"][20, 70] == pytest.approx(post - pre, abs=1e-3)
    assert stack["preVH"][20, 70] == pytest.approx(pre + 10 * math.log10(0.2), abs=1e-3)


def test_aux_layers_and_land_cover(world) -> None:
    stack, _ = _stack(world, "ev-a")
    assert (stack["kgClimate"] == fx.KG_CODE).all()
    assert np.isnan(stack["canopyHeight"]).all()
    kg_gets = [p for m, p in world["server"].requests if p.endswith("/aux/kg.tif")]
    assert len(kg_gets) == 1  # downloaded once with pooch, cached for the second event
    # one warning for the run (shown when it happens and again in the summary), not per event
    assert world["fetch"].output.count("canopyHeight is NaN") == 2
    rec = json.loads((world["data"] / "ev-a" / "event.json").read_text())
    cart = rec["source"]["provenance"]["landcover"]
    assert cart["accuracy"] >= 0.9 and cart["n_test"] > 0
    assert set(cart["points_per_class"]) >= {"1", "2", "3"}
    assert (stack["landCover"] == 2).mean() > 0.9  # the forest stripe


def test_earth_search_catalog_gives_the_same_dndvi(world, tmp_path) -> None:
    csv = world["tmp"] / "one.csv"  # beside the inventory it names
    rows = world["csv"].read_text().splitlines()
    csv.write_text(rows[0] + ",layers\n" + rows[1] + ",ndvi\n")
    out = tmp_path / "es"
    _ok(
        CliRunner().invoke(
            main,
            [
                "fetch",
                "--source",
                "stac",
                "--aoi-km2",
                "1",
                "--catalog",
                "earth-search",
                "--event",
                str(csv),
                "--out",
                str(out),
                "--fetch-config",
                str(world["settings"]),
            ],
        )
    )
    rec = json.loads((out / "ev-a" / "event.json").read_text())
    assert rec["source"]["products"]["s2"]["catalog"] == "earth-search"
    assert rec["source"]["items"]["postNDVI"][0].startswith("S2A_32TMQ_")
    with rasterio.open(out / "ev-a" / "stack.tif") as src:
        assert src.descriptions == ("preNDVI", "postNDVI")
        es = src.read(2) - src.read(1)
    pc, _ = _stack(world, "ev-a")
    assert np.allclose(es, pc["dNDVI"], atol=1e-6, equal_nan=True)


def test_train_ensemble_and_predict_an_area_from_stac(world, tmp_path) -> None:
    import torch

    torch.set_num_threads(1)
    runner = CliRunner()
    runs, ens, maps = tmp_path / "runs", tmp_path / "ens", tmp_path / "maps"
    setting = "dNDVI,slope,preVV,postVV"
    _ok(
        runner.invoke(
            main,
            [
                "train",
                "--setting",
                setting,
                "--data",
                str(world["data"]),
                "--out",
                str(runs),
                "--archs",
                "Unet",
                "--losses",
                "Dice",
                "--lrs",
                "0.001",
                "--encoder",
                "resnet18",
                "--epochs",
                "1",
                "--iters-per-epoch",
                "2",
                "--batch-size",
                "2",
                "--crop",
                "64",
                "--quiet",
            ],
        )
    )
    _ok(runner.invoke(main, ["ensemble", str(runs), "--k", "1", "--out", str(ens)]))
    aoi = tmp_path / "area.geojson"
    x, y = fx.PREDICT_CENTRE
    aoi.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {},
                        "geometry": fx._poly(x - 400, y - 400, x + 400, y + 400),
                    }
                ],
            }
        )
    )
    _ok(
        runner.invoke(
            main,
            [
                "predict",
                "--aoi",
                str(aoi),
                "--date",
                fx.EVENT_DATE,
                "--source",
                "stac",
                "--model",
                str(ens),
                "--out",
                str(maps),
            ],
        )
    )
    fetched = tmp_path / "maps.inputs" / "area"
    rec = json.loads((fetched / "event.json").read_text())
    assert rec["source"]["kind"] == "stac" and rec["layers"] == setting.split(",")
    with rasterio.open(maps / "probability.tif") as src:
        prob = src.read(1)
    assert prob.shape == (80, 80) and np.isfinite(prob).all()


# ----------------------------------------------------------------------------- the alpine world


@pytest.fixture(scope="module")
def alpine(tmp_path_factory):
    """The variant world (tests/stac_fixtures.py, ALPINE) on its own server, its one event
    fetched with the paper's layers; the stack, its transform and event.json."""
    tmp = tmp_path_factory.mktemp("alpine")
    with srv.running(tmp / "files") as server:
        w = fx.make_world(tmp, server.url, fx.ALPINE)
        url = server.add(srv.Catalog("/api/stac/v1", w.collections, w.pc_items, "pgstac"))
        lon, lat = fx.to_lonlat(*fx.ALPINE_CENTRE)
        csv = tmp / "alpine.csv"
        csv.write_text(f"id,date,lon,lat\nalpine,{fx.EVENT_DATE},{lon:.8f},{lat:.8f}\n")
        settings = fx.settings(tmp, server.url + "/files/aux/kg.tif", tmp / "cache")
        data = tmp / "data"
        args = [
            "fetch", "--source", "stac", "--catalog", url, "--aoi-km2", "1", "--event", str(csv),
            "--out", str(data), "--fetch-config", str(settings),
        ]  # fmt: skip
        _ok(CliRunner().invoke(main, args))
    with rasterio.open(data / "alpine" / "stack.tif") as src:
        stack = {n: src.read(i + 1) for i, n in enumerate(src.descriptions)}
        transform = src.transform
    rec = json.loads((data / "alpine" / "event.json").read_text())
    return {"stack": stack, "transform": transform, "record": rec}


def _box(transform, box, margin=30.0):
    """Row and column slices of the pixels inside a box (x0, y0, x1, y1), `margin` m in."""
    c0, c1 = _col_of(transform, box[0] + margin), _col_of(transform, box[2] - margin)
    r0 = int((transform.f - (box[3] - margin)) // -transform.e)
    r1 = int((transform.f - (box[1] + margin)) // -transform.e)
    return slice(r0, r1), slice(c0, c1)


def test_snow_in_the_clearest_pre_event_scene_is_land_cover_class_8(alpine) -> None:
    stack, t, rec = alpine["stack"], alpine["transform"], alpine["record"]
    cart = rec["source"]["provenance"]["landcover"]
    snow = stack["landCover"][_box(t, fx.PRE_SNOW)]
    assert snow.size > 50 and (snow == 8).mean() > 0.9
    rows, cols = _box(t, fx.PRE_SNOW)
    assert (stack["landCover"][rows, cols.stop + 30 :] != 8).mean() > 0.9  # not beside it
    assert cart["points_per_class"].get("8", 0) > 0  # points on the image's snow: class 8
    # the image is pre1, which shows the whole land-cover region; pre2 has a cloud and its
    # shadow in it
    shares = cart["s2_scenes_clear_share"]
    assert list(shares)[0] == fx.S2_SCENES[0][0] and shares[fx.S2_SCENES[0][0]] == 1.0
    assert shares[fx.S2_SCENES[1][0]] < 1.0
    assert rec["source"]["items"]["landCover"][:2] == [fx.S2_SCENES[0][0], fx.S2_SCENES[1][0]]


def test_each_scene_is_masked_on_its_own_distortions(alpine) -> None:
    stack, t = alpine["stack"], alpine["transform"]
    # the east face (38 deg, towards the descending sensor) is in layover only in the
    # near-range post scene: masked there alone, the post composite is the far-range scene's
    east = slice(_col_of(t, 501_600.0), _col_of(t, 501_900.0))
    assert (stack["layover"][:, east] == 0).all() and (stack["shadow"][:, east] == 0).all()
    x, y = _centre(t, 20, east.start + 5)
    base = fx.rtc_base(np.array(x), np.array(y))
    post = 10 * math.log10(2.0 * base)  # the far-range post scene alone, not the median of both
    pre = 10 * math.log10(1.1 * base)  # median of the two pre scenes (1.0, 1.2), none distorted
    assert stack["postVV"][20, east.start + 5] == pytest.approx(post, abs=1e-3)
    assert stack["preVV"][20, east.start + 5] == pytest.approx(pre, abs=1e-3)
    assert stack["dVV"][20, east.start + 5] == pytest.approx(post - pre, abs=1e-3)
    assert stack["postVH"][20, east.start + 5] == pytest.approx(post + 10 * math.log10(0.2), 1e-3)
    # the west face (52 deg) is in shadow in every far-range scene: every pre-window scene is
    # distorted, so that is no data in all six layers (though the near-range post scene sees
    # it) and shadow = 1 there: the flags are the no-data area, as in the Earth Engine path
    west = slice(_col_of(t, 501_100.0), _col_of(t, 501_400.0))
    assert (stack["shadow"][:, west] == 1).all() and (stack["layover"][:, west] == 0).all()
    for name in ("preVV", "postVV", "dVV", "preVH", "postVH", "dVH"):
        assert np.isnan(stack[name][:, west]).all(), name
        assert np.isfinite(stack[name][:, east]).all(), name


def test_distortion_masking_is_recorded_per_scene(world, alpine) -> None:
    for rec in (
        json.loads((world["data"] / "ev-a" / "event.json").read_text()),
        alpine["record"],
    ):
        assert rec["conventions"]["distortion_masking"]["value"] == "per_scene"
        assert rec["conventions"]["distortion_masking"]["how"] == "recorded"
    s1 = alpine["record"]["source"]["provenance"]["s1"]
    assert s1["distortion_masking"].startswith("each scene's VV, VH masked on its own")


# ----------------------------------------------------------------------------- bad input


def test_empty_window_fails_that_event_in_one_line(world, tmp_path) -> None:
    lon, lat = fx.to_lonlat(*fx.EVENT_CENTRES["ev-a"])
    csv = tmp_path / "late.csv"
    csv.write_text(f"id,date,lon,lat\nlate,2022-07-01,{lon},{lat}\n")
    out = tmp_path / "late"
    result = CliRunner().invoke(
        main,
        [
            "fetch",
            "--source",
            "stac",
            "--aoi-km2",
            "1",
            "--event",
            str(csv),
            "--out",
            str(out),
            "--fetch-config",
            str(world["settings"]),
        ],
    )
    assert result.exit_code == 1
    line = next(x for x in result.output.splitlines() if "FAILED" in x)
    assert "event late: no sentinel-2-l2a scene in pre window 2022-05-02..2022-07-01" in line
    assert "Traceback" not in result.output
    assert not (out / "late").exists()


@pytest.mark.slow
def test_silent_catalog_fails_within_the_timeout(world, tmp_path) -> None:
    lon, lat = fx.to_lonlat(*fx.EVENT_CENTRES["ev-a"])
    csv = tmp_path / "one.csv"
    csv.write_text(f"id,date,lon,lat\nquiet,{fx.EVENT_DATE},{lon},{lat}\n")
    settings = tmp_path / "s.toml"
    settings.write_text(world["settings"].read_text().replace("timeout_s = 5.0", "timeout_s = 2.0"))
    out = tmp_path / "quiet"
    with srv.silent_server() as url:
        start = time.monotonic()
        result = CliRunner().invoke(
            main,
            [
                "fetch",
                "--source",
                "stac",
                "--aoi-km2",
                "1",
                "--catalog",
                url,
                "--event",
                str(csv),
                "--out",
                str(out),
                "--fetch-config",
                str(settings),
            ],
        )
        took = time.monotonic() - start
    assert result.exit_code == 1 and took < 30
    assert f"event quiet: STAC catalog {url} ({url}) did not answer: no answer within 2 s" in (
        result.output
    )
    assert not (out / "quiet").exists()


def test_open_sea_has_no_dem_tile(world, tmp_path) -> None:
    csv = tmp_path / "sea.csv"
    csv.write_text("id,date,lon,lat\nsea,2020-07-01,8.0,43.5\n")
    result = CliRunner().invoke(
        main,
        [
            "fetch",
            "--source",
            "stac",
            "--aoi-km2",
            "1",
            "--event",
            str(csv),
            "--out",
            str(tmp_path / "sea"),
            "--fetch-config",
            str(world["settings"]),
        ],
    )
    assert result.exit_code == 1
    assert "event sea: cop-dem-glo-30 has no tile over the AOI" in result.output


def test_a_layer_the_stac_source_cannot_make_is_refused_before_anything(world, tmp_path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "fetch",
            "--source",
            "stac",
            "--aoi-km2",
            "1",
            "--event",
            str(world["csv"]),
            "--out",
            str(tmp_path / "x"),
            "--layers",
            "paper,s1scenes",
        ],
    )
    assert result.exit_code != 0 and "is not made by the STAC source" in result.output
    assert not (tmp_path / "x").exists()


def test_an_unreadable_asset_fails_the_event_in_one_line(world, tmp_path) -> None:
    import copy

    broken = copy.deepcopy([i for i in world["items"] if i["collection"] == "sentinel-2-l2a"])
    for item in broken:
        item["assets"]["SCL"]["href"] = world["server"].url + "/files/gone/SCL.tif"
    url = world["server"].add(srv.Catalog("/broken", world["collections"], broken))
    csv = world["tmp"] / "broken.csv"
    rows = world["csv"].read_text().splitlines()
    csv.write_text(rows[0] + ",layers\n" + rows[1] + ",ndvi\n")
    out = tmp_path / "broken"
    result = CliRunner().invoke(
        main,
        [
            "fetch", "--source", "stac", "--catalog", url, "--aoi-km2", "1", "--event", str(csv),
            "--out", str(out), "--fetch-config", str(world["settings"]),
        ],
    )  # fmt: skip
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = next(x for x in result.output.splitlines() if x.startswith("FAILED"))
    assert "event ev-a: item S2A_MSIL2A_20200605T101031_R022_T32TMQ asset SCL" in line
    assert "/files/gone/SCL.tif" in line
    assert not (out / "ev-a").exists()


@pytest.mark.slow
def test_events_as_ray_tasks_make_the_same_folders(world, tmp_path) -> None:
    """`--executor ray`: each event a task on a new local Ray cluster; the folders are those of
    the worker-process fetch, pixel for pixel, and a rerun skips them."""
    args = [
        "fetch", "--source", "stac", "--catalog", world["pc"], "--executor", "ray", "--aoi-km2",
        "1", "--event", str(world["csv"]), "--out", str(tmp_path / "data"),
        "--fetch-config", str(world["settings"]),
    ]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "2 fetched, 0 already complete" in result.output
    for eid in ("ev-a", "ev-b"):
        for name in ("stack.tif", "label.tif"):
            with (
                rasterio.open(tmp_path / "data" / eid / name) as a,
                rasterio.open(world["data"] / eid / name) as b,
            ):
                assert a.descriptions == b.descriptions and a.transform == b.transform
                np.testing.assert_array_equal(a.read(), b.read())
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "0 fetched, 2 already complete" in again.output


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--ray-address", "auto"], "--ray-address: a Ray address goes with executor ray"),
        (
            ["--executor", "ray", "--jobs", "2"],
            "--jobs goes with executor inprocess; on Ray every event is a task",
        ),
    ],
)
def test_parallel_options_that_do_not_go_together(world, tmp_path, extra, words) -> None:
    result = CliRunner().invoke(
        main,
        ["fetch", "--source", "stac", "--event", str(world["csv"]), "--out",
         str(tmp_path / "x"), *extra],
    )  # fmt: skip
    assert result.exit_code == 1 and words in result.output, result.output
    assert not (tmp_path / "x").exists()


def test_earth_engine_events_are_not_fetched_on_ray(world, tmp_path) -> None:
    result = CliRunner().invoke(
        main,
        ["fetch", "--event", str(world["csv"]), "--out", str(tmp_path / "x"), "--executor",
         "ray"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "--executor: events in parallel go with the STAC source" in result.output
    assert not (tmp_path / "x").exists()
