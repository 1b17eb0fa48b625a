"""What a fetch decides on the client from the server's facts, and the ground-floor geometry.

orbit=auto, explicit orbits that have no scenes, BOTH, the L1C fallback, scenes dropped for want
of a cloud-probability partner, an AOI over open sea; AOIs across the antimeridian; the fetch
settings file; and the worked numbers that tell the two flattening sign conventions apart.
No server and no ee graph: these are plain functions of plain values.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from shapely.geometry import Polygon, box

from lsd.errors import InvalidFile, InvalidValue
from lsd.eventcsv import read_events
from lsd.gee import s1
from lsd.gee.config import FetchConfig
from lsd.gee.event_facts import counts_from_facts, resolve, scene_summary
from lsd.layers import PAPER_LAYERS
from lsd.spec import (
    aoi_centroid,
    aoi_in_utm,
    buffered_aoi,
    event_grid,
    make_spec,
    normalize_aoi,
)

SPEC = make_spec("05-norway", dt.date(2019, 7, 30), box(6.10, 61.51, 6.13, 61.52))
T0 = 1_560_000_000_000  # a UTC time in milliseconds


def listing(n: int, prefix: str) -> dict[str, Any]:
    return {
        "ids": [f"{prefix}{i}" for i in range(n)],
        "times": [T0 + i * 86_400_000 for i in range(n)],
        "relative_orbits": [37 + i % 2 for i in range(n)],
    }


def facts(
    desc: tuple[int, int] = (5, 4),
    asc: tuple[int, int] = (6, 6),
    l2a: tuple[int, int] = (12, 11),
    l1c: tuple[int, int] = (12, 11),
    unmaskable: int = 0,
    glo30: int = 1,
) -> dict[str, Any]:
    out: dict[str, Any] = {"request": "lsd-facts", "glo30_tiles": glo30, "s1": {}, "s2": {}}
    for i, w in enumerate(("pre", "post")):
        out["s1"][w] = {"DESCENDING": listing(desc[i], f"D{w}"),
                        "ASCENDING": listing(asc[i], f"A{w}")}  # fmt: skip
        s2w: dict[str, Any] = {}
        for level, counts in (("L2A", l2a), ("L1C", l1c)):
            ids = [f"{level}{w}{k}" for k in range(counts[i])]
            keep = ids[: max(counts[i] - unmaskable, 0)]
            s2w[level], s2w[f"{level}_maskable"] = ids, keep
            s2w[f"{level}_times"] = [T0] * len(keep)
        out["s2"][w] = s2w
    return out


def spec(**kw: Any):
    return make_spec("05-norway", dt.date(2019, 7, 30), SPEC.aoi, **kw)


# ----------------------------------------------------------------------------- orbit


def test_auto_prefers_descending_as_the_paper_did() -> None:
    out = resolve(spec(), FetchConfig(), PAPER_LAYERS, facts())
    assert out.resolved.passes == ("DESCENDING",) and not out.problems


def test_auto_takes_ascending_where_descending_is_missing() -> None:
    """Since Sentinel-1B ended (Dec 2021) many areas have one pass only."""
    out = resolve(spec(), FetchConfig(), PAPER_LAYERS, facts(desc=(0, 3)))
    assert out.resolved.passes == ("ASCENDING",) and not out.problems
    counts = counts_from_facts(facts(desc=(0, 3)), out.resolved)
    assert counts["s1_pre"] == 6 and counts["s2_post"] == 11


def test_requested_orbit_without_scenes_names_event_orbit_window_and_the_other_pass() -> None:
    out = resolve(spec(orbit="DESCENDING"), FetchConfig(), PAPER_LAYERS, facts(desc=(0, 4)))
    assert out.problems == [
        "event 05-norway: no Sentinel-1 images (DESCENDING passes) in pre window "
        "2019-05-31..2019-07-30; ASCENDING has 6 there: set orbit ASCENDING or AUTO"
    ]


def test_auto_without_any_complete_pass_says_what_each_has() -> None:
    out = resolve(spec(), FetchConfig(), PAPER_LAYERS, facts(desc=(0, 4), asc=(2, 0)))
    (problem,) = out.problems
    assert problem.startswith("event 05-norway: orbit AUTO: no Sentinel-1 pass has images")
    assert "DESCENDING: pre 0, post 4; ASCENDING: pre 2, post 0" in problem


def test_both_uses_each_pass_with_scenes_or_warns() -> None:
    out = resolve(spec(orbit="BOTH"), FetchConfig(), PAPER_LAYERS, facts())
    assert out.resolved.passes == ("DESCENDING", "ASCENDING")
    out = resolve(spec(orbit="BOTH"), FetchConfig(), PAPER_LAYERS, facts(asc=(0, 0)))
    assert out.resolved.passes == ("DESCENDING",) and not out.problems
    assert out.warnings == [
        "event 05-norway: orbit BOTH, but only DESCENDING has Sentinel-1 images in every "
        "window; it is used alone"
    ]


def test_land_cover_alone_needs_pre_event_radar_only() -> None:
    out = resolve(spec(), FetchConfig(), ["landCover"], facts(desc=(3, 0), asc=(0, 0)))
    assert out.resolved.passes == ("DESCENDING",) and not out.problems


# ----------------------------------------------------------------------------- Sentinel-2


def test_l1c_fallback_for_both_windows_when_a_window_lacks_l2a() -> None:
    """Events 21 (2017-04-30) and 29 (2018-09-28) predate global L2A in Earth Engine."""
    out = resolve(spec(), FetchConfig(), PAPER_LAYERS, facts(l2a=(0, 9)))
    assert out.resolved.s2_level == "L1C" and not out.problems
    summary = scene_summary(facts(l2a=(0, 9)), out.resolved)
    assert summary["s2_pre"]["level"] == "L1C" and summary["s2_pre"]["count"] == 12
    forced = resolve(spec(), FetchConfig(s2_level="L2A"), PAPER_LAYERS, facts(l2a=(0, 9)))
    assert forced.problems == [
        "event 05-norway: no Sentinel-2 images in pre window 2019-05-31..2019-07-30; "
        "widen it with pre_days"
    ]


def test_scenes_without_cloud_probability_are_counted_and_named() -> None:
    out = resolve(spec(), FetchConfig(), PAPER_LAYERS, facts(unmaskable=2))
    assert out.dropped == {"pre": ["L2Apre10", "L2Apre11"], "post": ["L2Apost10", "L2Apost9"]}
    assert out.warnings[0] == (
        "event 05-norway: 2 Sentinel-2 L2A scene(s) of the pre window have no "
        "cloud-probability scene and were left out: L2Apre10, L2Apre11"
    )


def test_open_sea() -> None:
    sea = facts(desc=(0, 0), asc=(0, 0), l2a=(0, 0), l1c=(0, 0), glo30=0)
    out = resolve(spec(), FetchConfig(), PAPER_LAYERS, sea)
    assert out.problems[-1] == (
        "event 05-norway: no Sentinel-1 or Sentinel-2 scene and no Copernicus DEM tile covers "
        "the AOI: it looks like open sea (both missions image land and coasts)"
    )
    summary = scene_summary(facts(), resolve(spec(), FetchConfig(), PAPER_LAYERS, facts()).resolved)
    assert summary["s1_pre"]["DESCENDING"]["dates"][0] == "2019-06-08T13:20:00"
    assert summary["s1_pre"]["DESCENDING"]["relative_orbits"] == [37, 38]


# ----------------------------------------------------------------------------- antimeridian


def test_antimeridian_polygon_is_split_and_local() -> None:
    ring = Polygon([(179.98, -16.0), (-179.98, -16.0), (-179.98, -16.03), (179.98, -16.03)])
    aoi = normalize_aoi(ring)
    assert aoi.geom_type == "MultiPolygon" and len(aoi.geoms) == 2
    assert all(-180 <= x <= 180 for g in aoi.geoms for x, _ in g.exterior.coords)
    assert aoi_centroid(aoi) == pytest.approx((-180.0, -16.015)) or aoi_centroid(aoi) == (
        pytest.approx(180.0), pytest.approx(-16.015))  # fmt: skip
    s = make_spec("fiji", dt.date(2020, 6, 1), ring)
    km2 = aoi_in_utm(s).area / 1e6
    assert km2 == pytest.approx(4.28 * 3.34, rel=0.02)  # 0.04 x 0.03 degrees at 16 S
    grid = event_grid(s)
    assert grid.width * grid.height < 500 * 400  # not a grid around the world
    grown = buffered_aoi(s, 2000)
    assert grown.geom_type == "MultiPolygon"
    expected = aoi_in_utm(s).buffer(2000, 16).area / 1e6  # computed the same in UTM
    assert to_km2(grown, s.utm_epsg) == pytest.approx(expected, rel=0.01)
    # given east of 180 (180.2..180.5) the AOI is moved into -180..180
    assert normalize_aoi(box(180.2, -16, 180.5, -15.8)).bounds == pytest.approx(
        (-179.8, -16, -179.5, -15.8)
    )
    wide = Polygon([(-170, 0), (-10, 0), (10, 0), (170, 0), (170, 1), (10, 1), (-10, 1), (-170, 1)])
    with pytest.raises(InvalidValue, match="spans 340 degrees of longitude"):
        normalize_aoi(wide)


@pytest.mark.parametrize(
    ("lon", "lat"), [(179.995, -16.0), (-179.999, 65.0), (179.9999, -16.0), (-179.99, 52.0)]
)
def test_antimeridian_square_gets_the_grid_of_any_square(tmp_path: Path, lon, lat) -> None:
    """A 2 km square split at 180 degrees is 200 x 200 pixels like any other (the split's
    vertices, 2 cm outside the UTM square, gave 200 x 201) and covers the square exactly."""
    csv = tmp_path / "events.csv"
    csv.write_text(f"id,date,lon,lat\nx,2020-06-01,{lon},{lat}\n")
    (s,) = read_events(csv)
    assert s.aoi.geom_type == "MultiPolygon"  # it does cross
    grid = event_grid(s)
    assert (grid.width, grid.height) == (200, 200)
    left, bottom, right, top = grid.record()["bounds"]
    assert aoi_in_utm(s).bounds == pytest.approx((left, bottom, right, top), abs=1e-6)
    assert aoi_in_utm(s).area == pytest.approx(4e6, rel=1e-9)


def to_km2(geom, epsg: int) -> float:
    from lsd.spec import to_crs

    return to_crs(geom, 4326, epsg).area / 1e6


def test_antimeridian_polygon_in_events_csv(tmp_path: Path) -> None:
    poly = tmp_path / "fiji.geojson"
    poly.write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, '
        '"geometry": {"type": "Polygon", "coordinates": [[[179.98, -16.0], [-179.98, -16.0], '
        "[-179.98, -16.03], [179.98, -16.03], [179.98, -16.0]]]}}]}"
    )
    csv = tmp_path / "events.csv"
    csv.write_text("id,date,polygon\nfiji,2020-06-01,fiji.geojson\n")
    (s,) = read_events(csv)
    assert s.aoi.geom_type == "MultiPolygon" and s.utm_epsg in (32660, 32701)
    assert event_grid(s).width < 500


# ----------------------------------------------------------------------------- settings file


def test_fetch_settings_file(tmp_path: Path) -> None:
    path = tmp_path / "fetch.toml"
    path.write_text(
        '[fetch]\nsnow_mode = "erode"\nshadow_nir_dark = 0.15\nkg_climate_asset = "users/me/kg"\n'
        'canopy_height_fill_asset = ""\nmask_distortions = false\n'
    )
    cfg = FetchConfig.from_toml(path, aoi_km2=9.0)
    assert (cfg.snow_mode, cfg.shadow_nir_dark, cfg.kg_climate_asset) == (
        "erode",
        0.15,
        "users/me/kg",
    )
    assert cfg.canopy_height_fill_asset is None and not cfg.mask_distortions and cfg.aoi_km2 == 9
    for text, message in (
        ('[fetch]\nsnow_mode = "melt"\n', "'snow_mode' = 'melt' must be 'grow' or 'erode'"),
        ("[fetch]\nsnow_buffer = 3\n", "unknown fetch setting 'snow_buffer'"),
        ('[fetch]\ncloud_prob = "high"\n', "'cloud_prob' = 'high' must be int"),
        ("[other]\n", "needs a [fetch] table"),
    ):
        path.write_text(text)
        with pytest.raises(InvalidFile, match=message.replace("[", r"\[")):
            FetchConfig.from_toml(path)


# ----------------------------------------------------------------------------- sign conventions


class Arr:
    def __init__(self, a: Any) -> None:
        self.a = np.asarray(a, dtype=float)

    def _v(self, o: Any) -> Any:
        return o.a if isinstance(o, Arr) else o

    def __getattr__(self, name: str):
        ops = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply,
               "divide": np.divide, "gte": np.greater_equal, "lte": np.less_equal}  # fmt: skip
        if name in ops:
            return lambda o: Arr(ops[name](self.a, self._v(o)))
        unary = {"tan": np.tan, "cos": np.cos, "sin": np.sin, "atan": np.arctan, "acos": np.arccos}
        if name in unary:
            return lambda: Arr(unary[name](self.a))
        raise AttributeError(name)


def flattened_db(convention: str, model: str, aspect_deg: float) -> tuple[float, float, bool]:
    """(dB change by flattening, LIA, layover) on a 20 degree slope, theta 35 degrees, look
    direction 100 degrees (a descending pass: the sensor lies to the east)."""
    theta, slope = Arr(math.radians(35)), Arr(math.radians(20))
    phi_r = s1.relative_look(Arr(math.radians(100)), Arr(math.radians(aspect_deg)), convention)
    ar, az = s1.range_slope(slope, phi_r), s1.azimuth_slope(slope, phi_r)
    f = s1.volume_factor(theta, ar) if model == "volume" else s1.surface_factor(theta, ar, az)
    ratio = f.a if convention == "gee_s1_ard" else 1 / f.a
    lia = float(s1.local_incidence_deg(theta, ar, az).a)
    return float(10 * np.log10(ratio)), lia, bool(s1.layover_mask(theta, ar).a)


def test_sign_conventions_worked_numbers() -> None:
    """docs/layers.md: an east-facing 20 degree slope facing the sensor."""
    assert flattened_db("vollrath", "volume", 90) == pytest.approx((-4.09, 15.69, False), abs=0.01)
    assert flattened_db("gee_s1_ard", "volume", 90) == pytest.approx(
        (-3.05, 54.80, False), abs=0.01
    )
    assert flattened_db("vollrath", "surface", 90)[0] == pytest.approx(-3.39, abs=0.01)
    assert flattened_db("gee_s1_ard", "surface", 90)[0] == pytest.approx(-1.52, abs=0.01)
    # gee_s1_ard mirrors east and west: its foreslope is Vollrath's backslope
    west_vollrath = flattened_db("vollrath", "volume", 270)
    assert flattened_db("gee_s1_ard", "volume", 270)[1] == pytest.approx(15.69, abs=0.01)
    assert west_vollrath[1] == pytest.approx(54.80, abs=0.01)
    # north- and south-facing slopes agree on geometry (the mirror is east-west only)
    assert flattened_db("vollrath", "volume", 0)[1] == pytest.approx(
        flattened_db("gee_s1_ard", "volume", 0)[1]
    )


def test_orbit_values_in_events_csv(tmp_path: Path) -> None:
    csv = tmp_path / "events.csv"
    csv.write_text(
        "id,date,lon,lat,orbit\na,2022-03-27,177.4694,-38.9681,auto\n"
        "b,2022-03-27,177.4694,-38.9681,Both\nc,2022-03-27,177.4694,-38.9681,\n"
    )
    assert [s.orbit for s in read_events(csv)] == ["AUTO", "BOTH", "AUTO"]
    csv.write_text("id,date,lon,lat,orbit\na,2022-03-27,177.4694,-38.9681,north\n")
    with pytest.raises(InvalidFile, match="'north' is not one of AUTO, DESCENDING, ASCENDING"):
        read_events(csv)
