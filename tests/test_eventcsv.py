"""events.csv parsing: the 21 example events, exact geometry helpers, and one-line CLI errors."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import geopandas as gpd
import pytest
from click.testing import CliRunner
from shapely.geometry import Point, box

from lsd.errors import UserError
from lsd.eventcsv import read_events
from lsd.pipeline.cli import main
from lsd.spec import aoi_in_utm, default_windows, event_grid, to_crs, utm_epsg

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "events.csv"

# Expected UTM zone of each example event, worked out by hand: zone = floor((lon + 180) / 6) + 1,
# 326xx north of the equator and 327xx south.
EXPECTED_EPSG = {
    "01-iceland": 32628, "02-ireland": 32629, "03-new-zealand": 32760, "04-ecuador": 32717,
    "05-norway": 32632, "08-brazil": 32722, "09-china": 32648, "10-philippines": 32651,
    "12-usa": 32608, "14-new-zealand": 32759, "15-iceland": 32627, "19-india": 32643,
    "20-peru": 32719, "21-kyrgyzstan": 32643, "22-italy": 32632, "23-indonesia": 32647,
    "24-brazil": 32725, "25-canada": 32610, "26-usa": 32610, "28-australia": 32756,
    "29-indonesia": 32750,
}  # fmt: skip


def test_all_example_events_parse() -> None:
    specs = read_events(EXAMPLES)
    assert [s.event_id for s in specs] == list(EXPECTED_EPSG)
    assert {s.event_id: s.utm_epsg for s in specs} == EXPECTED_EPSG
    roles = {s.event_id: s.role for s in specs}
    assert [k for k, v in roles.items() if v == "test"] == ["05-norway"]
    assert sorted(k for k, v in roles.items() if v == "val") == [
        "02-ireland", "10-philippines", "20-peru", "25-canada",
    ]  # fmt: skip
    assert sum(v == "train" for v in roles.values()) == 16
    norway = next(s for s in specs if s.event_id == "05-norway")
    assert norway.inventory is None  # real labels come from the paper's dataset (docs/import.md)
    assert norway.extra == {"location": "Norway", "paper_event": "5"}
    assert all(s.orbit == "AUTO" and s.flattening == "auto" for s in specs)
    assert [s.row for s in specs] == list(range(1, 22))


@pytest.mark.parametrize("km2", [4.0, 0.25, 50.0])
def test_aoi_square_area_and_centre_in_utm(km2: float) -> None:
    for spec in read_events(EXAMPLES, aoi_km2=km2):
        square = aoi_in_utm(spec)
        assert abs(square.area / 1e6 - km2) < 1e-6
        minx, miny, maxx, maxy = square.bounds
        assert abs((maxx - minx) - (maxy - miny)) < 1e-6  # a square, axis-aligned in UTM
        lon, lat = _point_of(spec.event_id)
        px, py = to_crs(Point(lon, lat), 4326, spec.utm_epsg).coords[0]
        cx, cy = square.centroid.coords[0]
        assert abs(cx - px) <= 5.0 + 1e-6 and abs(cy - py) <= 5.0 + 1e-6  # centre within 1/2 px


def _point_of(event_id: str) -> tuple[float, float]:
    for line in EXAMPLES.read_text().splitlines()[1:]:
        cells = line.split(",")
        if cells[0] == event_id:
            return float(cells[2]), float(cells[3])
    raise KeyError(event_id)


def test_norway_grid_is_exact() -> None:
    (spec,) = read_events(EXAMPLES, only={"05-norway"})
    grid = event_grid(spec, 10.0)
    assert (grid.width, grid.height) == (200, 200)
    assert grid.crs.to_epsg() == 32632
    assert tuple(grid.transform)[:6] == (10.0, 0.0, 345650.0, 0.0, -10.0, 6824810.0)
    # every example grid starts on a 10 m multiple and is 200 x 200 at the default 4 km2
    for spec in read_events(EXAMPLES):
        g = event_grid(spec, 10.0)
        assert (g.width, g.height) == (200, 200)
        assert g.transform.c % 10 == 0 and g.transform.f % 10 == 0


def test_utm_zone_exceptions() -> None:
    assert utm_epsg(4.0, 60.0) == 32632  # south-west Norway: zone 32V is widened west
    assert utm_epsg(4.0, 55.0) == 32631  # just south of the exception
    assert [utm_epsg(lon, 78.0) for lon in (5.0, 10.0, 25.0, 35.0)] == [
        32631,
        32633,
        32635,
        32637,
    ]  # fmt: skip  (Svalbard uses only odd zones)
    assert utm_epsg(180.0, -10.0) == 32760 and utm_epsg(-180.0, 10.0) == 32601


def test_default_windows() -> None:
    specs = {s.event_id: s for s in read_events(EXAMPLES)}
    nor = specs["05-norway"]
    assert nor.pre.as_strings() == ("2019-05-31", "2019-07-30")
    assert nor.post.as_strings() == ("2019-07-30", "2019-09-28")
    # high-latitude winter events get a year each side
    usa = specs["12-usa"]  # 59.2 N, 2 December
    assert usa.pre.as_strings() == ("2018-12-02", "2019-12-02")
    assert usa.post.as_strings() == ("2019-12-02", "2020-12-01")
    assert (specs["15-iceland"].post.end - specs["15-iceland"].post.start).days == 365
    # October is winter at 65.9 N: 60 days after 2021-10-06 would end in the polar night
    ice = specs["01-iceland"]
    assert ice.pre.as_strings() == ("2020-10-06", "2021-10-06")
    assert ice.post.as_strings() == ("2021-10-06", "2022-10-06")
    # November in Canada (49 N) and June in Peru (15.7 S) keep 60 days
    for eid in ("25-canada", "20-peru"):
        assert (specs[eid].post.end - specs[eid].post.start).days == 60
    # the month edges of the rule, north and south (April is winter in both hemispheres)
    for day, lat, days in (("2021-09-30", 65.0, 60), ("2021-10-01", 65.0, 365),
                           ("2021-04-30", 65.0, 365), ("2021-05-01", 65.0, 60),
                           ("2021-04-01", -60.0, 365), ("2021-03-31", -60.0, 60),
                           ("2021-10-31", -60.0, 365), ("2021-11-01", -60.0, 60),
                           ("2021-10-06", 54.9, 60)):  # fmt: skip
        assert default_windows(dt.date.fromisoformat(day), lat) == (days, days), (day, lat)


def test_window_columns_and_options(tmp_path: Path) -> None:
    csv = tmp_path / "e.csv"
    csv.write_text(
        "id,date,lon,lat,pre_days,post_days,pre_start,pre_end,post_start,post_end,orbit,"
        "flattening,dem,role,note\n"
        "a,2020-06-16,-71.685998,-15.660252,30,10,,,,,both,Surface,projects/x/dem,TEST,hi\n"
        "b,2020-06-16,-71.685998,-15.660252,,,2019-01-01,2019-03-01,2020-07-01,2020-09-01,"
        "ascending,,,,\n"
    )
    a, b = read_events(csv)
    assert a.pre == type(a.pre)(dt.date(2020, 5, 17), dt.date(2020, 6, 16))
    assert a.post.as_strings() == ("2020-06-16", "2020-06-26")
    assert (a.orbit, a.flattening, a.dem_asset, a.role) == (
        "BOTH",
        "surface",
        "projects/x/dem",
        "test",
    )
    assert a.extra == {"note": "hi"}
    assert b.pre.as_strings() == ("2019-01-01", "2019-03-01")
    assert b.post.as_strings() == ("2020-07-01", "2020-09-01") and b.orbit == "ASCENDING"


def test_polygon_area_in_any_crs(tmp_path: Path) -> None:
    # two squares 1 km and 0.5 km in UTM 32N, stored in ETRS89-LAEA: AOI = their union
    sq = [box(346000, 6823000, 347000, 6824000), box(347000, 6823000, 347500, 6823500)]
    gdf = gpd.GeoDataFrame(geometry=sq, crs=32632).to_crs(3035)
    gdf.to_file(tmp_path / "aoi.gpkg")
    csv = tmp_path / "e.csv"
    csv.write_text("id,date,polygon\np,2019-07-30,aoi.gpkg\n")
    (spec,) = read_events(csv)
    assert spec.utm_epsg == 32632
    assert abs(aoi_in_utm(spec).area - 1.25e6) < 1.0
    grid = event_grid(spec, 10.0)
    assert (grid.width, grid.height) == (150, 100)
    assert tuple(grid.transform)[2::3][:2] == (346000.0, 6824000.0)


# --------------------------------------------------------------------------- one-line errors

HEADER = "id,date,lon,lat,inventory,orbit,role,pre_start,pre_end\n"
GOOD = "ok,2019-07-30,6.11699,61.51734,,,,,\n"


def _points_file(tmp: Path) -> None:
    gpd.GeoDataFrame(geometry=[Point(6.1, 61.5)], crs=4326).to_file(tmp / "points.geojson")


R = "x,2019-07-30,6.1,61.5"  # a good id, date, lon, lat; the other cells vary per case
BAD_CASES = {
    "missing column": ("id,lon,lat\nx,1,2\n", "missing column 'date'"),
    "bad date": (
        HEADER + "x,2019-13-01,6.1,61.5,,,,,\n",
        "row 1 (line 2), column 'date': '2019-13-01' is not a date",
    ),
    "date form": (HEADER + GOOD + "x,30/07/2019,6.1,61.5,,,,,\n", "row 2 (line 3), column 'date'"),
    "lon range": (
        HEADER + "x,2019-07-30,200,61.5,,,,,\n",
        "row 1 (line 2), column 'lon': 200.0 is out of range",
    ),
    "lat range": (HEADER + "x,2019-07-30,6.1,-85,,,,,\n", "column 'lat': -85.0 is out of range"),
    "lon text": (HEADER + "x,2019-07-30,east,61.5,,,,,\n", "column 'lon': 'east' is not a number"),
    "duplicate": (
        HEADER + GOOD + GOOD,
        "row 2 (line 3), column 'id': duplicate id 'ok' (first used in row 1)",
    ),
    "window order": (
        HEADER + R + ",,,,2019-07-01,2019-06-01\n",
        "column 'pre_end': window ends 2019-06-01 on or before it starts",
    ),
    "half window": (
        HEADER + R + ",,,,2019-07-01,\n",
        "column 'pre_end': empty, but pre_start is given",
    ),
    "orbit": (
        HEADER + R + ",,north,,,\n",
        "column 'orbit': 'north' is not one of AUTO, DESCENDING, ASCENDING, BOTH",
    ),
    "role": (
        HEADER + R + ",,,holdout,,\n",
        "column 'role': 'holdout' is not one of train, val, test",
    ),
    "inventory missing": (HEADER + R + ",nope.geojson,,,,\n", "column 'inventory': file"),
    "inventory garbage": (
        HEADER + R + ",junk.geojson,,,,\n",
        "junk.geojson is not a readable vector file",
    ),
    "inventory points": (HEADER + R + ",points.geojson,,,,\n", "column 'inventory': "),
    "bad id": (
        HEADER + "../up,2019-07-30,6.1,61.5,,,,,\n",
        "column 'id': '../up' cannot be a folder name",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_one_line(case: str, tmp_path: Path) -> None:
    text, expected = BAD_CASES[case]
    (tmp_path / "junk.geojson").write_text("{ this is not geojson")
    _points_file(tmp_path)
    csv = tmp_path / "events.csv"
    csv.write_text(text)
    result = CliRunner().invoke(
        main, ["fetch", "--event", str(csv), "--out", str(tmp_path / "out"), "--dry-run"]
    )
    assert result.exit_code != 0
    out = result.output.strip()
    assert "Traceback" not in out and isinstance(result.exception, SystemExit)
    assert out.count("\n") == 0, out  # exactly one line
    assert out.startswith(f"Error: {csv}")
    assert expected in out, out
    if case == "inventory points":
        assert "contains no polygon" in out
    assert not (tmp_path / "out").exists()


def test_only_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"id\(s\) not in .*99-mars") as err:
        read_events(EXAMPLES, only={"05-norway", "99-mars"})
    assert err.value.field == "only"  # the CLI names it --only
    empty = tmp_path / "empty.csv"
    empty.write_text("id,date,lon,lat\n")
    with pytest.raises(UserError, match="no events"):
        read_events(empty)
    with pytest.raises(UserError, match="events file not found"):
        read_events(tmp_path / "absent.csv")


# --------------------------------------------------------------------------- credentials


@pytest.fixture
def no_credentials(tmp_path: Path, monkeypatch) -> Path:
    """A user who never ran `earthengine authenticate`, and ee not yet initialised."""
    import ee

    ee.Reset()
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # no metadata-server probe for ADC
    for env in ("LSD_EE_SERVICE_ACCOUNT", "GOOGLE_APPLICATION_CREDENTIALS", "EE_PROJECT",
                "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CONFIG"):  # fmt: skip
        monkeypatch.delenv(env, raising=False)
    yield home
    ee.Reset()


def test_missing_credentials_one_line(no_credentials: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["fetch", "--event", str(EXAMPLES), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: no Earth Engine credentials: run `earthengine authenticate` "
        "or set LSD_EE_SERVICE_ACCOUNT to a service-account key file"
    )


def test_bad_service_account_one_line(no_credentials: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LSD_EE_SERVICE_ACCOUNT", str(tmp_path / "key.json"))
    result = CliRunner().invoke(
        main, ["fetch", "--event", str(EXAMPLES), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    assert (
        result.output.strip()
        == f"Error: LSD_EE_SERVICE_ACCOUNT={tmp_path / 'key.json'}: key file not found"
    )
    (tmp_path / "key.json").write_text(json.dumps({"type": "authorized_user"}))
    result = CliRunner().invoke(
        main, ["fetch", "--event", str(EXAMPLES), "--out", str(tmp_path / "o")]
    )
    assert "not a service-account key" in result.output and result.exit_code == 1


def test_dry_run_without_credentials_prints_plan(no_credentials: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["fetch", "--event", str(EXAMPLES), "--out", str(tmp_path / "o"), "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert (
        "no Earth Engine credentials" in result.output and "without image counts" in result.output
    )
    assert result.output.count("grid: 200 x 200 px at 10 m") == 21
    assert "dem: USGS/SRTMGL1_003" in result.output and "dem: COPERNICUS/DEM/GLO30" in result.output
    assert "21 event(s) planned; nothing written" in result.output
    assert not (tmp_path / "o").exists()


def test_bad_landcover_points_named_at_parse_time(tmp_path: Path) -> None:
    pts = gpd.GeoDataFrame({"class": [2, 9]}, geometry=[Point(6.1, 61.5), Point(6.11, 61.51)])
    pts.set_crs(4326).to_file(tmp_path / "pts.geojson")
    csv = tmp_path / "e.csv"
    csv.write_text("id,date,lon,lat,landcover_points\na,2019-07-30,6.1,61.5,pts.geojson\n")
    result = CliRunner().invoke(main, ["fetch", "--event", str(csv), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "row 1 (line 2), column 'landcover_points'" in result.output
    assert "class 9 is not one of" in result.output


def test_make_spec_matches_the_csv_rules() -> None:
    from lsd.spec import make_spec

    (csv_spec,) = read_events(EXAMPLES, only={"05-norway"})
    spec = make_spec("area", csv_spec.date, csv_spec.aoi)
    assert (spec.pre, spec.post, spec.utm_epsg) == (csv_spec.pre, csv_spec.post, 32632)
    assert event_grid(spec, 10.0).same_as(event_grid(csv_spec, 10.0))
    assert spec.inventory is None and make_spec("a", spec.date, spec.aoi, post_days=5).post.end == (
        dt.date(2019, 8, 4)
    )
