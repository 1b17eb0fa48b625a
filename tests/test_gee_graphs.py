"""The Earth Engine graphs of the 15-layer stack, built offline for the paper's 21 events.

Assertions read the serialised graph (what the client would send) back into calls and
arguments: which collections, which filters with which values, which formulas. The flattening
formulas are also checked numerically, both as plain functions and by evaluating the ee graph.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyproj
import pytest
from shapely.geometry import Point, Polygon

from lsd.errors import UserError
from lsd.gee import layers, s1
from lsd.gee.config import (
    CLOUD_SCORE_PLUS_COLLECTION,
    GLO30_ASSET,
    S1_COLLECTION,
    S2_CLOUD_PROB_COLLECTION,
    S2_L1C_COLLECTION,
    S2_SR_COLLECTION,
    SRTM_ASSET,
    FetchConfig,
)
from lsd.gee.landcover import FEATURE_BANDS
from lsd.layers import PAPER_LAYERS
from lsd.spec import EventSpec, Window
from tests.ee_offline import Call, Lambda, calls, constants, filters_by_collection, graph_of

EVENTS_CSV = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "paper_events.csv"
CFG = FetchConfig()
WINDOW_DAYS = 60


# ----------------------------------------------------------------------------- event fixtures


def utm_epsg(lon: float, lat: float) -> int:
    zone = int((lon + 180) // 6) + 1
    return (32600 if lat >= 0 else 32700) + zone


def square_aoi(lon: float, lat: float, side_m: float = 2000.0) -> tuple[Polygon, int]:
    """A side_m x side_m square centred on the point, square in the local UTM zone."""
    epsg = utm_epsg(lon, lat)
    to_utm = pyproj.Transformer.from_crs(4326, epsg, always_xy=True)
    to_geo = pyproj.Transformer.from_crs(epsg, 4326, always_xy=True)
    x, y = to_utm.transform(lon, lat)
    h = side_m / 2
    corners = [(x - h, y - h), (x + h, y - h), (x + h, y + h), (x - h, y + h)]
    return Polygon([to_geo.transform(cx, cy) for cx, cy in corners]), epsg


def make_spec(row: dict[str, str], **overrides: Any) -> EventSpec:
    date = dt.date.fromisoformat(row["date"])
    aoi, epsg = square_aoi(float(row["lon"]), float(row["lat"]))
    fields: dict[str, Any] = {
        "event_id": row["event_id"],
        "date": date,
        "aoi": aoi,
        "pre": Window(date - dt.timedelta(days=WINDOW_DAYS), date),
        "post": Window(date, date + dt.timedelta(days=WINDOW_DAYS)),
        "utm_epsg": epsg,
    }
    fields.update(overrides)
    return EventSpec(**fields)


def paper_rows() -> list[dict[str, str]]:
    if not EVENTS_CSV.is_file():
        return []
    with EVENTS_CSV.open(newline="") as fh:
        return list(csv.DictReader(fh))


ROWS = paper_rows()
ROWS_BY_ID = {r["event_id"]: r for r in ROWS}


def row(event_id: str) -> dict[str, str]:
    if event_id not in ROWS_BY_ID:
        pytest.skip(f"{EVENTS_CSV} is absent (it sits beside the checkout)")
    return ROWS_BY_ID[event_id]


def millis(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


# ----------------------------------------------------------------------------- graph reading


def filter_facts(filters: list[Call]) -> set[tuple[Any, ...]]:
    """Filters as comparable tuples: ('eq', field, value), ('contains', field, value),
    ('date', start_ms, end_ms), ('bounds', coordinates)."""
    facts: set[tuple[Any, ...]] = set()
    for f in filters:
        a = f.args
        if f.name == "Filter.equals":
            facts.add(("eq", a["leftField"], a["rightValue"]))
        elif f.name == "Filter.listContains":
            facts.add(("contains", a["leftField"], a["rightValue"]))
        elif f.name == "Filter.dateRangeContains":
            rng = a["leftValue"]
            assert rng.name == "DateRange"
            facts.add(("date", rng.args["start"], rng.args["end"]))
        elif f.name == "Filter.intersects":
            geom = a["rightValue"].args["geometry"]
            assert geom.name == "GeometryConstructors.Polygon"
            ring = tuple(tuple(p) for p in geom.args["coordinates"][0])
            facts.add(("bounds", ring))
        else:
            facts.add((f.name,))
    return facts


def aoi_ring(spec: EventSpec) -> tuple[tuple[float, float], ...]:
    return tuple(tuple(p) for p in spec.aoi.exterior.coords)


def output_bands(root: Any) -> list[str]:
    """Band names of the final stack, in order, from its toFloat(addBands(...rename)) chain."""
    assert isinstance(root, Call) and root.name == "Image.toFloat"
    node = root.args["value"]
    names: list[str] = []
    while isinstance(node, Call) and node.name == "Image.addBands":
        names[:0] = band_names(node.args["srcImg"])
        node = node.args["dstImg"]
    return band_names(node) + names


def band_names(node: Any) -> list[str]:
    assert isinstance(node, Call) and node.name == "Image.rename", node
    return list(node.args["names"])


def loaded_ids(root: Any) -> dict[str, set[str]]:
    return {
        kind: {c.args["id"] for c in calls(root, f"{kind}.load")}
        for kind in ("Image", "ImageCollection")
    }


def selects(root: Any) -> list[list[str]]:
    return [c.args["bandSelectors"] for c in calls(root, "Image.select")]


def is_constant_image(node: Any, value: float) -> bool:
    return (
        isinstance(node, Call)
        and node.name == "Image.constant"
        and math.isclose(node.args["value"], value)
    )


# ----------------------------------------------------------------------------- all 21 events


@pytest.mark.parametrize("event_id", [r["event_id"] for r in ROWS] or ["missing"])
def test_paper_event_graph(ee_offline: Any, event_id: str) -> None:
    spec = make_spec(row(event_id))
    root = graph_of(layers.build_event_image(spec, CFG))

    # the stack: the paper's 15 layers, named and ordered
    assert output_bands(root) == list(PAPER_LAYERS)

    ids = loaded_ids(root)
    for col in (S1_COLLECTION, S2_SR_COLLECTION, S2_CLOUD_PROB_COLLECTION, S2_L1C_COLLECTION):
        assert col in ids["ImageCollection"]
    assert CFG.worldcover_asset in ids["ImageCollection"]
    assert CFG.canopy_height_asset in ids["ImageCollection"]
    assert CFG.kg_climate_asset in ids["Image"]

    # DEM by latitude: SRTM inside 56S..60N, GLO-30 outside
    lat = float(ROWS_BY_ID[event_id]["lat"])
    if -56 <= lat <= 60:
        assert SRTM_ASSET in ids["Image"] and GLO30_ASSET not in ids["ImageCollection"]
    else:
        assert GLO30_ASSET in ids["ImageCollection"] and SRTM_ASSET not in ids["Image"]

    # Sentinel-1 filters: IW, VV and VH, descending pass, both windows, the AOI
    windows = {("date", millis(w.start), millis(w.end)) for w in (spec.pre, spec.post)}
    by_col = filters_by_collection(root)
    s1_facts = filter_facts(by_col[S1_COLLECTION])
    assert {
        ("eq", "instrumentMode", "IW"),
        ("contains", "transmitterReceiverPolarisation", "VV"),
        ("contains", "transmitterReceiverPolarisation", "VH"),
        ("eq", "orbitProperties_pass", "DESCENDING"),
        ("bounds", aoi_ring(spec)),
    } | windows <= s1_facts
    # each date filter is exactly one of the two windows, nothing else
    assert {f for f in s1_facts if f[0] == "date"} == windows
    for col in (S2_SR_COLLECTION, S2_CLOUD_PROB_COLLECTION, S2_L1C_COLLECTION):
        facts = filter_facts(by_col[col])
        assert {f for f in facts if f[0] == "date"} == windows
        assert ("bounds", aoi_ring(spec)) in facts

    # S1 bands used: VV, VH and the incidence angle
    assert ["VV", "VH"] in selects(root) and ["angle"] in selects(root)


def flatten_lambda(root: Any) -> Lambda:
    """The per-scene function mapped over the S1 collection."""
    for m in calls(root, "Collection.map"):
        base = m.args["collection"]
        while isinstance(base, Call) and base.name == "Collection.filter":
            base = base.args["collection"]
        if base.name == "ImageCollection.load" and base.args["id"] == S1_COLLECTION:
            return m.args["baseAlgorithm"]
    raise AssertionError("no map over the S1 collection")


def test_s1_flattening_graph(ee_offline: Any) -> None:
    spec = make_spec(row("10"))
    root = graph_of(layers.build_event_image(spec, CFG, ["preVV", "dVH", "layover", "liaDeg"]))
    body = flatten_lambda(root)
    names = {c.name for c in calls(body)}
    # the pieces of the model factors, slopes and local incidence angle
    assert {"Image.atan", "Image.tan", "Image.cos", "Image.sin", "Image.acos"} <= names
    # 90 degree terms: x + pi/2 with x = -theta
    halves = [
        c for c in calls(body, "Image.add") if is_constant_image(c.args["image2"], s1.HALF_PI)
    ]
    assert halves and all(c.args["image1"].name == "Image.multiply" for c in halves)
    # dB -> linear: 10 ** (x / 10)
    pows = calls(body, "Image.pow")
    assert any(is_constant_image(p.args["image1"], 10) for p in pows)
    # gamma0 = sigma0 / cos(theta)
    assert any(
        c.args["image2"].name == "Image.cos" and c.args["image1"].name == "Image.rename"
        for c in calls(body, "Image.divide")
    )
    # look direction from the aspect of the angle band, via a circular mean
    aspects = [c.args["input"] for c in calls(body, "Terrain.aspect")]
    assert any(a.name == "Image.select" and a.args["bandSelectors"] == ["angle"] for a in aspects)
    assert calls(body, "Number.atan2")
    # auto model: the factor is chosen by "vegetated share of the AOI's land >= 0.5"
    (factor_if,) = [
        c
        for c in calls(body, "If")
        if isinstance(c.args["trueCase"], Call) and c.args["trueCase"].name == "Image.divide"
    ]
    condition = factor_if.args["condition"]
    assert condition.name == "Number.gte" and condition.args["right"] == 0.5
    remaps = [c for c in calls(condition, "Image.remap") if c.args["to"] == [1] * 6]
    assert remaps and remaps[0].args["from"] == [10, 20, 30, 40, 90, 95]
    assert CFG.worldcover_asset in loaded_ids(condition)["ImageCollection"]
    # volume branch: tan(90 - theta + alpha_r) / tan(90 - theta)
    vol = factor_if.args["trueCase"]
    assert vol.name == "Image.divide"
    assert vol.args["image1"].name == vol.args["image2"].name == "Image.tan"
    # surface branch: cos(90 - theta) / (cos(alpha_az) cos(90 - theta + alpha_r))
    surf = factor_if.args["falseCase"]
    assert surf.name == "Image.divide" and surf.args["image1"].name == "Image.cos"
    assert surf.args["image2"].name == "Image.multiply"
    # composites: median of linear power, back to dB by 10*log10
    assert calls(root, "reduce.median") and calls(root, "Image.log10")
    # layover and shadow are the max over post scenes
    assert calls(root, "reduce.max")


def test_s2_masking_and_composite_graph(ee_offline: Any) -> None:
    spec = make_spec(row("4"))
    root = graph_of(layers.build_event_image(spec, CFG, ["dNDVI"]))
    ids = loaded_ids(root)
    assert S1_COLLECTION not in ids["ImageCollection"]  # dNDVI needs no radar
    assert not calls(root, "Classifier.smileCart")
    mosaics = calls(root, "ImageCollection.qualityMosaic")
    assert len(mosaics) == 2 and {m.args["qualityBand"] for m in mosaics} == {"NDVI"}
    nd = calls(root, "Image.normalizedDifference")
    assert nd and nd[0].args["bandNames"] == ["B8", "B4"]
    # s2cloudless and L1C scenes joined on system:index
    joins = calls(root, "Join.saveFirst")
    assert {j.args["matchKey"] for j in joins} == {"cloud_prob", "l1c"}
    for j in calls(root, "Join.apply"):
        cond = j.args["condition"]
        assert cond.name == "Filter.equals"
        assert cond.args["leftField"] == cond.args["rightField"] == "system:index"
    # clouds: probability > 65 and CDI < -0.5, or QA60 cirrus bit
    assert calls(root, "Sentinel2.CDI")
    gts = [c for c in calls(root, "Image.gt") if is_constant_image(c.args["image2"], 65)]
    lts = [c for c in calls(root, "Image.lt") if is_constant_image(c.args["image2"], -0.5)]
    assert gts and lts and lts[0].args["image1"].name == "Sentinel2.CDI"
    assert any(is_constant_image(c.args["image2"], 2048) for c in calls(root, "Image.bitwiseAnd"))
    # shadows: cast along 90 - solar azimuth over dark, non-water NIR
    ddt = calls(root, "Image.directionalDistanceTransform")
    assert len(ddt) == 1
    angle = ddt[0].args["angle"]
    assert angle.name == "Number.subtract" and angle.args["left"] == 90
    assert "MEAN_SOLAR_AZIMUTH_ANGLE" in constants(angle)
    assert ddt[0].args["maxDistance"] == 10
    # snow: SCL 11, eroded 300 m
    (erode,) = calls(root, "Image.focalMin")
    assert erode.args["radius"] == 300.0 and erode.args["units"] == "meters"
    assert is_constant_image(erode.args["image"].args["image2"], 11)


def test_cloud_score_plus_option(ee_offline: Any) -> None:
    spec = make_spec(row("4"))
    cfg = FetchConfig(s2_cloud="cloudscoreplus")
    root = graph_of(layers.build_event_image(spec, cfg, ["dNDVI"]))
    assert CLOUD_SCORE_PLUS_COLLECTION in loaded_ids(root)["ImageCollection"]
    assert S2_CLOUD_PROB_COLLECTION not in loaded_ids(root)["ImageCollection"]
    assert not calls(root, "Sentinel2.CDI")
    assert ["cs_cdf"] in selects(root)
    assert any(is_constant_image(c.args["image2"], 0.6) for c in calls(root, "Image.gte"))


def test_cart_graph(ee_offline: Any) -> None:
    spec = make_spec(row("22"))
    root = graph_of(layers.build_event_image(spec, CFG, ["landCover"]))
    assert output_bands(root) == ["landCover"]
    assert calls(root, "Classifier.smileCart")
    (train,) = calls(root, "Classifier.train")
    assert train.args["classProperty"] == "class"
    assert train.args["inputProperties"] == list(FEATURE_BANDS)
    assert list(FEATURE_BANDS) == ["B2", "B3", "B4", "B8", "B11", "B12", "elevation",
                                   "preVV", "preVH"]  # fmt: skip
    # training points: a stratified sample of remapped WorldCover, split by a random column
    split = train.args["features"]
    assert split.name == "Collection.filter"
    assert split.args["filter"].name == "Filter.lessThan"
    assert split.args["filter"].args["rightValue"] == pytest.approx(0.7)
    sample = split.args["collection"].args["collection"]
    assert split.args["collection"].name == "Collection.randomColumn"
    assert sample.name == "Image.stratifiedSample"
    assert sample.args["numPoints"] == CFG.cart_points_per_class
    assert sample.args["classBand"] == "class"
    remap = [c for c in calls(sample, "Image.remap") if 50 in c.args["from"]]
    assert remap and dict(zip(remap[0].args["from"], remap[0].args["to"], strict=True))[50] == 1
    # the features CART sees include pre-event radar, which therefore is fetched
    assert S1_COLLECTION in loaded_ids(root)["ImageCollection"]
    assert len(calls(root, "Image.classify")) == 1


@pytest.mark.parametrize(
    ("event_id", "dem"),
    [("1", GLO30_ASSET), ("5", GLO30_ASSET), ("15", GLO30_ASSET), ("12", SRTM_ASSET),
     ("3", SRTM_ASSET)],
)  # fmt: skip
def test_dem_by_latitude(ee_offline: Any, event_id: str, dem: str) -> None:
    """Iceland, Norway above 60N take GLO-30; Alaska at 59.2N and New Zealand take SRTM."""
    root = graph_of(layers.build_event_image(make_spec(row(event_id)), CFG, ["elevation"]))
    ids = loaded_ids(root)
    assert (dem in ids["Image"]) or (dem in ids["ImageCollection"])
    assert not (ids["Image"] | ids["ImageCollection"]) - {dem}
    if dem == GLO30_ASSET:
        # GLO-30 tiles are mosaicked with the tiles' own projection
        assert calls(root, "Image.setDefaultProjection")
        assert ["DEM"] in selects(root)


def test_dem_override_and_slope(ee_offline: Any) -> None:
    spec = make_spec(row("5"), dem_asset="users/someone/norway_dtm10")
    root = graph_of(layers.build_event_image(spec, CFG, ["elevation", "slope"]))
    assert loaded_ids(root) == {"Image": {"users/someone/norway_dtm10"}, "ImageCollection": set()}
    assert output_bands(root) == ["elevation", "slope"]
    assert calls(root, "Terrain.slope")


def test_orbit_both_has_no_pass_filter(ee_offline: Any) -> None:
    spec = make_spec(row("2"), orbit="BOTH")
    root = graph_of(layers.build_event_image(spec, CFG, ["preVV"]))
    facts = filter_facts(filters_by_collection(root)[S1_COLLECTION])
    assert not [f for f in facts if f[:2] == ("eq", "orbitProperties_pass")]
    assert ("eq", "instrumentMode", "IW") in facts

    asc = make_spec(row("2"), orbit="ASCENDING")
    root = graph_of(layers.build_event_image(asc, CFG, ["preVV"]))
    facts = filter_facts(filters_by_collection(root)[S1_COLLECTION])
    assert ("eq", "orbitProperties_pass", "ASCENDING") in facts


@pytest.mark.parametrize("model", ["volume", "surface"])
def test_flattening_override(ee_offline: Any, model: str) -> None:
    spec = make_spec(row("21"), flattening=model)
    root = graph_of(layers.build_event_image(spec, CFG, ["preVV", "postVH"]))
    factor_ifs = calls(flatten_lambda(root), "If")
    assert len(factor_ifs) == 1
    assert factor_ifs[0].args["condition"] == (1 if model == "volume" else 0)
    # no land-cover lookup when the user chose the model
    assert CFG.worldcover_asset not in loaded_ids(root)["ImageCollection"]


def test_only_needed_pieces_are_built(ee_offline: Any) -> None:
    spec = make_spec(row("9"))
    root = graph_of(layers.build_event_image(spec, CFG, ["slope", "elevation"]))
    assert output_bands(root) == ["slope", "elevation"]
    assert loaded_ids(root) == {"Image": {SRTM_ASSET}, "ImageCollection": set()}

    root = graph_of(layers.build_event_image(spec, CFG, ["dVV"]))
    assert S2_SR_COLLECTION not in loaded_ids(root)["ImageCollection"]
    assert not calls(root, "Classifier.smileCart")


def test_unavailable_layers_are_fully_masked(ee_offline: Any) -> None:
    spec = make_spec(row("19"))
    image = layers.build_event_image(
        spec, CFG, ["elevation", "kgClimate", "canopyHeight"], unavailable={"kgClimate"}
    )
    root = graph_of(image)
    assert output_bands(root) == ["elevation", "kgClimate", "canopyHeight"]
    ids = loaded_ids(root)
    assert CFG.kg_climate_asset not in ids["Image"]
    assert CFG.canopy_height_asset in ids["ImageCollection"]
    masked = [c for c in calls(root, "Image.updateMask") if is_constant_image(c.args["mask"], 0)]
    assert len(masked) == 1


def test_bad_layer_names_are_user_errors(ee_offline: Any) -> None:
    spec = make_spec(row("19"))
    with pytest.raises(UserError, match="'B04'"):
        layers.build_event_image(spec, CFG, ["elevation", "B04"])
    with pytest.raises(UserError, match="twice"):
        layers.build_event_image(spec, CFG, ["slope", "slope"])


# ----------------------------------------------------------------------------- provenance


def test_provenance_graph(ee_offline: Any) -> None:
    spec = make_spec(row("12"))
    root = graph_of(layers.event_provenance(spec, CFG))
    consts = constants(root)
    assert SRTM_ASSET in consts and "DESCENDING" in consts
    arrays = {c.args["property"] for c in calls(root, "AggregateFeatureCollection.array")}
    assert {"system:index", "system:time_start", "orbitProperties_pass",
            "relativeOrbitNumber_start"} <= arrays  # fmt: skip
    (matrix,) = calls(root, "Collection.errorMatrix")
    assert matrix.args["actual"] == "class" and matrix.args["predicted"] == "classification"
    assert matrix.args["order"] == list(range(1, 9))
    assert calls(root, "ConfusionMatrix.accuracy") and calls(root, "ConfusionMatrix.kappa")
    assert "glacier and snow" in consts and "urban/artificial" in consts
    # the flattening model chosen is reported from the same decision the graph uses
    assert any(c.args.get("trueCase") == "volume" for c in calls(root, "If"))

    # a dNDVI-only stack reports S2 only
    root = graph_of(layers.event_provenance(spec, CFG, ["dNDVI"]))
    assert not calls(root, "Collection.errorMatrix")
    assert S1_COLLECTION not in loaded_ids(root)["ImageCollection"]
    assert any("s2cloudless" in str(c) for c in constants(root))


def test_provenance_with_overrides(ee_offline: Any) -> None:
    """User's model and DEM are reported as such; unreadable assets are listed, not described."""
    spec = make_spec(row("5"), flattening="volume", dem_asset="users/someone/norway_dtm10")
    root = graph_of(layers.event_provenance(spec, CFG, unavailable={"kgClimate"}))
    facts = root.args["input"] if isinstance(root, Call) else root
    flat = facts["s1_flattening"]
    flat = flat.args["input"] if isinstance(flat, Call) else flat
    assert flat["requested"] == flat["model"] == "volume"
    assert flat["vegetated_fraction"] is None
    assert facts["dem_asset"] == "users/someone/norway_dtm10"
    assert facts["unavailable_layers"] == ["kgClimate"]
    assert "kg_climate_asset" not in facts
    assert facts["canopy_height_asset"] == CFG.canopy_height_asset


def test_window_counts_graph(ee_offline: Any) -> None:
    spec = make_spec(row("12"))
    root = graph_of(layers.window_counts(spec, CFG))
    counts = root.args["input"] if isinstance(root, Call) else root
    assert set(counts) == {"s1_pre", "s1_post", "s2_pre", "s2_post"}
    for key, value in counts.items():
        assert value.name == "Collection.size"
        facts = filter_facts(filters_by_collection(value)[
            S1_COLLECTION if key.startswith("s1") else S2_SR_COLLECTION])  # fmt: skip
        win = spec.pre if key.endswith("pre") else spec.post
        assert {f for f in facts if f[0] == "date"} == {
            ("date", millis(win.start), millis(win.end))
        }


# ----------------------------------------------------------------------------- user points


def test_user_landcover_points(ee_offline: Any, tmp_path: Path) -> None:
    spec0 = make_spec(row("26"))
    c = spec0.aoi.centroid
    pts = gpd.GeoDataFrame(
        {"class": [2, 3, 7]},
        geometry=[Point(c.x, c.y), Point(c.x + 0.001, c.y), Point(c.x, c.y + 0.001)],
        crs=4326,
    )
    path = tmp_path / "points.geojson"
    pts.to_file(path, driver="GeoJSON")
    spec = make_spec(row("26"), landcover_points=path)
    root = graph_of(layers.build_event_image(spec, CFG, ["landCover"]))
    assert not calls(root, "Image.stratifiedSample")
    (sampled,) = calls(root, "Image.sampleRegions")
    assert sampled.args["properties"] == ["class"]
    classes = [
        f.args["metadata"]["class"] for f in calls(sampled, "Feature") if "metadata" in f.args
    ]
    assert sorted(classes) == [2, 3, 7]

    bad = pts.copy()
    bad.loc[1, "class"] = 9
    bad.to_file(path, driver="GeoJSON")
    with pytest.raises(UserError, match=r"points\.geojson: row 2: class 9"):
        layers.build_event_image(spec, CFG, ["landCover"])
    pts.drop(columns="class").to_file(path, driver="GeoJSON")
    with pytest.raises(UserError, match="no 'class' column"):
        layers.build_event_image(spec, CFG, ["landCover"])


def test_asset_available(ee_offline: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mocked server: readable, missing (None) and forbidden (EEException) assets."""

    def fake_info(asset_id: str) -> Any:
        if asset_id == "forbidden":
            raise ee_offline.EEException("Permission denied")
        return {"type": "IMAGE"} if asset_id == CFG.canopy_height_asset else None

    monkeypatch.setattr(ee_offline.data, "getInfo", fake_info)
    assert layers.asset_available(CFG.canopy_height_asset)
    assert not layers.asset_available("forbidden")
    assert not layers.asset_available(CFG.kg_climate_asset)
    assert layers.unavailable_aux_layers(CFG) == {"kgClimate": CFG.kg_climate_asset}
    assert layers.unavailable_aux_layers(CFG, ["elevation"]) == {}


def test_graph_builders_do_not_contact_the_server(ee_offline: Any) -> None:
    """The offline fixture refuses any value request; getInfo must therefore fail here."""
    from tests.ee_offline import ServerContacted

    with pytest.raises(ServerContacted):
        ee_offline.Number(1).getInfo()


# ----------------------------------------------------------------------------- numerics


class Arr:
    """numpy stand-in with the ee.Image methods the formula helpers use."""

    def __init__(self, a: Any) -> None:
        self.a = np.asarray(a, dtype=float)

    @staticmethod
    def _v(o: Any) -> Any:
        return o.a if isinstance(o, Arr) else o

    def add(self, o: Any) -> Arr:
        return Arr(self.a + self._v(o))

    def subtract(self, o: Any) -> Arr:
        return Arr(self.a - self._v(o))

    def multiply(self, o: Any) -> Arr:
        return Arr(self.a * self._v(o))

    def divide(self, o: Any) -> Arr:
        return Arr(self.a / self._v(o))

    def tan(self) -> Arr:
        return Arr(np.tan(self.a))

    def cos(self) -> Arr:
        return Arr(np.cos(self.a))

    def sin(self) -> Arr:
        return Arr(np.sin(self.a))

    def atan(self) -> Arr:
        return Arr(np.arctan(self.a))

    def acos(self) -> Arr:
        return Arr(np.arccos(self.a))

    def gte(self, o: Any) -> Arr:
        return Arr(self.a >= self._v(o))

    def lte(self, o: Any) -> Arr:
        return Arr(self.a <= self._v(o))


def reference(theta: Any, alpha_s: Any, phi_r: Any) -> dict[str, Any]:
    """The paper's equations written directly in numpy, independent of gee/s1.py."""
    ar = np.arctan(np.tan(alpha_s) * np.cos(phi_r))
    aaz = np.arctan(np.tan(alpha_s) * np.sin(phi_r))
    return {
        "alpha_r": ar,
        "alpha_az": aaz,
        "volume": np.tan(np.pi / 2 - theta + ar) / np.tan(np.pi / 2 - theta),
        "surface": np.cos(np.pi / 2 - theta) / (np.cos(aaz) * np.cos(np.pi / 2 - theta + ar)),
        "lia": np.degrees(np.arccos(np.cos(aaz) * np.cos(theta - ar))),
        "layover": ar >= theta,
        "shadow": ar <= -(np.pi / 2 - theta),
    }


def ours(theta: Any, alpha_s: Any, phi_r: Any, wrap: Any = Arr) -> dict[str, Any]:
    t, s, p = wrap(theta), wrap(alpha_s), wrap(phi_r)
    ar, aaz = s1.range_slope(s, p), s1.azimuth_slope(s, p)
    return {
        "alpha_r": ar,
        "alpha_az": aaz,
        "volume": s1.volume_factor(t, ar),
        "surface": s1.surface_factor(t, ar, aaz),
        "lia": s1.local_incidence_deg(t, ar, aaz),
        "layover": s1.layover_mask(t, ar),
        "shadow": s1.shadow_mask(t, ar),
    }


DEG = np.pi / 180
THETA = np.radians(np.array([30.0, 35.0, 40.0, 45.0]))[:, None, None]
SLOPE = np.radians(np.array([0.0, 10.0, 25.0, 50.0, 70.0]))[None, :, None]
PHI_R = np.radians(np.array([0.0, 45.0, 90.0, 135.0, 180.0, 270.0]))[None, None, :]


def test_flattening_formulas_match_reference() -> None:
    theta, slope, phi = np.broadcast_arrays(THETA, SLOPE, PHI_R)
    want = reference(theta, slope, phi)
    got = ours(theta, slope, phi)
    for key, value in want.items():
        np.testing.assert_allclose(got[key].a, value, rtol=1e-12, atol=1e-12, err_msg=key)


def test_flattening_physics() -> None:
    theta = np.radians(35.0)
    flat = {k: v.a for k, v in ours(theta, 0.0, 0.3).items()}
    assert flat["volume"] == pytest.approx(1.0) and flat["surface"] == pytest.approx(1.0)
    assert flat["lia"] == pytest.approx(35.0)
    assert not flat["layover"] and not flat["shadow"]

    fore = {k: v.a for k, v in ours(theta, np.radians(20.0), 0.0).items()}  # facing the sensor
    assert fore["alpha_r"] == pytest.approx(np.radians(20.0))
    assert fore["volume"] > 1 and fore["surface"] > 1  # bright slope is divided down
    assert fore["lia"] == pytest.approx(15.0)
    back = {k: v.a for k, v in ours(theta, np.radians(20.0), np.pi).items()}  # facing away
    assert back["volume"] < 1 and back["surface"] < 1
    assert back["lia"] == pytest.approx(55.0)
    side = {k: v.a for k, v in ours(theta, np.radians(20.0), np.pi / 2).items()}
    assert side["alpha_r"] == pytest.approx(0.0, abs=1e-12)
    assert side["lia"] > 35.0

    assert ours(theta, np.radians(40.0), 0.0)["layover"].a  # steeper than theta, towards
    assert not ours(theta, np.radians(30.0), 0.0)["layover"].a
    assert ours(theta, np.radians(60.0), np.pi)["shadow"].a  # steeper than 90-theta, away
    assert not ours(theta, np.radians(50.0), np.pi)["shadow"].a


UNARY = {"Image.tan": np.tan, "Image.cos": np.cos, "Image.sin": np.sin,
         "Image.atan": np.arctan, "Image.acos": np.arccos}  # fmt: skip
BINARY = {"Image.add": np.add, "Image.subtract": np.subtract, "Image.multiply": np.multiply,
          "Image.divide": np.divide, "Image.gte": np.greater_equal,
          "Image.lte": np.less_equal}  # fmt: skip


def evaluate(node: Any) -> float:
    """Run a graph of constant images through numpy: a tiny interpreter of the ops used."""
    if isinstance(node, (int, float)):
        return float(node)
    assert isinstance(node, Call), node
    if node.name == "Image.constant":
        return float(node.args["value"])
    if node.name in UNARY:
        return float(UNARY[node.name](evaluate(node.args["value"])))
    if node.name in BINARY:
        return float(BINARY[node.name](evaluate(node.args["image1"]),
                                       evaluate(node.args["image2"])))  # fmt: skip
    raise AssertionError(f"unexpected op {node.name}")


def test_ee_flattening_graph_evaluates_to_reference(ee_offline: Any) -> None:
    """The serialised ee expressions, evaluated, give the textbook values."""
    cases = [(35.0, 0.0, 0.0), (35.0, 20.0, 0.0), (40.0, 25.0, 180.0), (30.0, 50.0, 45.0),
             (45.0, 10.0, 270.0), (38.0, 60.0, 180.0)]  # fmt: skip
    for th_deg, s_deg, p_deg in cases:
        theta, slope, phi = np.radians([th_deg, s_deg, p_deg])
        want = reference(theta, slope, phi)
        got = ours(theta, slope, phi, wrap=lambda v: ee_offline.Image.constant(float(v)))
        for key in want:
            value = evaluate(graph_of(got[key]))
            assert value == pytest.approx(float(want[key]), rel=1e-9, abs=1e-12), key
