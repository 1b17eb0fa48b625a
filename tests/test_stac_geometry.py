"""Formulas of the STAC source checked against numbers worked out by hand (docs/layers.md)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from lsd.stac import radar, s2
from lsd.stac.config import StacConfig
from lsd.stac.landcover import StratifiedSample
from lsd.stac.terrain import aspect_deg, slope_deg


def test_layover_lia_match_the_worked_number_of_the_earth_engine_path() -> None:
    # theta 35 deg, look 100 deg, a 20 deg slope facing east: alpha_r +19.7, LIA 15.7
    lay, sha, lia = radar.distortions(np.array([35.0]), np.array([20.0]), np.array([90.0]), 100.0)
    alpha_r = math.degrees(math.atan(math.tan(math.radians(20)) * math.cos(math.radians(10))))
    assert alpha_r == pytest.approx(19.7, abs=0.05)
    assert lia[0] == pytest.approx(15.7, abs=0.05) and not lay[0] and not sha[0]


def test_heading_and_look_of_sentinel1_passes() -> None:
    # a descending pass heads south-south-west, the sensor lies to the east of the ground
    assert 188 < radar.heading_deg(45.0, "DESCENDING") < 196
    assert 98 < radar.towards_sensor_deg(45.0, "DESCENDING") < 106
    assert 254 < radar.towards_sensor_deg(45.0, "ASCENDING") < 262


def test_incidence_runs_from_near_to_far_across_the_footprint() -> None:
    from shapely.geometry import box

    frame = box(0, 0, 250_000, 170_000)  # sensor to the east (look 90 deg): near edge at x=250 km
    x = np.array([250_000.0, 125_000.0, 0.0])
    theta = radar.incidence_deg(x, np.zeros(3), frame, 90.0, 29.1, 46.0)
    assert theta == pytest.approx([29.1, 37.55, 46.0], abs=1e-4)


def test_slope_and_aspect_of_planes() -> None:
    cols = np.arange(5.0)
    west_rising = np.tile(cols * 10 * 0.5, (5, 1))  # rises east at 0.5: faces west
    assert np.allclose(slope_deg(west_rising, 10.0), math.degrees(math.atan(0.5)))
    assert np.allclose(aspect_deg(west_rising, 10.0), 270.0)
    north_rising = west_rising.T[::-1]  # rises north: faces south
    assert np.allclose(aspect_deg(north_rising, 10.0), 180.0)


def test_boa_offset_rules() -> None:
    item = lambda **p: SimpleNamespace(properties=p)  # noqa: E731
    assert s2.dn_offset(item(**{"s2:processing_baseline": "02.14"})) == 0.0
    assert s2.dn_offset(item(**{"s2:processing_baseline": "04.00"})) == -1000.0
    assert s2.dn_offset(item(**{"s2:processing_baseline": "05.09"})) == -1000.0
    applied = {"s2:processing_baseline": "04.00", "earthsearch:boa_offset_applied": True}
    assert s2.dn_offset(item(**applied)) == 0.0


def test_cloud_shadows_are_cast_away_from_the_sun() -> None:
    clouds = np.zeros((50, 50), bool)
    clouds[20:25, 20:25] = True
    zone = s2.cast_shadows(clouds, away_deg=0.0, steps=3, factor=5)  # sun in the south
    assert zone[:20, 20:25].any() and not zone[25:, :].any()  # north of the cloud only
    cfg = StacConfig(cloud_open_px=0, cloud_grow_px=0, shadow_search_px=0, snow_buffer_m=40)
    scl = np.full((10, 10), 4.0)
    scl[5, 5] = 11
    keep = s2.keep_mask(scl, None, cfg)
    assert not keep[5, 7] and keep[5, 8]  # 40 m = 2 px at 20 m


def test_stratified_sample_does_not_depend_on_the_windows() -> None:
    rng = np.random.default_rng(1)
    classes = rng.integers(1, 4, 400)
    feats = rng.random((400, 9)).astype(np.float32)
    whole, split = StratifiedSample(10, 0), StratifiedSample(10, 0)
    whole.add(classes, feats, np.arange(400))
    for lo in range(0, 400, 64):
        split.add(classes[lo : lo + 64], feats[lo : lo + 64], np.arange(lo, min(lo + 64, 400)))
    (xa, ya), (xb, yb) = whole.arrays(), split.arrays()
    assert np.array_equal(ya, yb) and np.array_equal(xa, xb) and len(ya) == 30


def test_without_the_stac_extra_the_source_says_what_to_install(monkeypatch) -> None:
    import importlib.util

    from lsd.errors import UserError
    from lsd.stac.source import StacSource

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "pystac_client" else real(n, *a)
    )
    with pytest.raises(UserError, match=r"needs pystac_client: pip install 'lsd\[stac\]'"):
        StacSource([])


def test_cart_image_is_the_clearest_scene_with_its_gaps_filled() -> None:
    assert s2.clearest({"a": 0.5, "b": 0.9, "c": 0.0, "d": 0.9}, 3) == ["b", "d", "a"]
    assert s2.clearest({"a": 0.5, "b": 0.9}, 1) == ["b"]  # cart_s2_scenes = 1: the image alone
    image = s2.GapFilled((1, 3), s2.COMPOSITE_BANDS)
    bands = lambda v: {b: np.full((1, 3), v, np.float32) for b in s2.COMPOSITE_BANDS}  # noqa: E731
    clearest = np.array([[True, False, True]])  # a cloud over the middle pixel
    image.add(bands(0.8), clearest, np.array([[True, False, False]]))  # snow on the first
    image.add(bands(0.2), np.ones((1, 3), bool), np.zeros((1, 3), bool))
    out = image.result()
    assert np.allclose(out["B2"], [[0.8, 0.2, 0.8]]) and out["snow"].tolist() == [[1, 0, 0]]


def test_flags_are_where_every_scene_of_a_window_is_distorted() -> None:
    f, t = np.array([False]), np.array([True])
    lia = np.array([40.0], np.float32)
    # pre: one scene in layover, one not; post: both in shadow
    geo = radar.pass_geometry({"pre": [(t, f, lia), (f, f, lia)], "post": [(f, t, lia)] * 2})
    assert geo.nodata.tolist() == [True]  # every post scene distorted
    assert [a.tolist() for a in geo.scene_distorted["pre"]] == [[True], [False]]
    assert radar.distortion_flag([geo], "shadow").tolist() == [True]
    assert radar.distortion_flag([geo], "layover").tolist() == [True]  # a pre scene showed it
    seen = radar.pass_geometry(
        {"pre": [(t, f, lia), (f, f, lia)], "post": [(f, t, lia), (f, f, lia)]}
    )
    assert seen.nodata.tolist() == [False]  # some scene of each window sees the pixel
    assert radar.distortion_flag([geo, seen], "shadow").tolist() == [False]  # two passes: both
