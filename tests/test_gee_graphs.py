"""The Earth Engine graphs of the 15-layer stack, built offline for the paper's 21 events.

Assertions read the serialised graph (what the client would send) back into calls and
arguments: which collections, which filters with which values, which formulas and parameters.
Each default is checked against the seed it follows (docs/layers.md): the dataset author's Code
Editor script for dNDVI, adugnag/gee_s1_ard and Vollrath et al., the paper's Table 2. The
flattening formulas are also checked numerically, both as plain functions and by evaluating the
ee graph.
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
from lsd.gee import event_graph as layers
from lsd.gee import s1
from lsd.gee.config import (
    ARCTICDEM_ASSET,
    CANOPY_HEIGHT_ASSET,
    CANOPY_HEIGHT_BOREAL_ASSET,
    CLOUD_SCORE_PLUS_COLLECTION,
    GLO30_ASSET,
    ICELAND_DEM_ASSET,
    KG_CLIMATE_ASSET,
    S1_COLLECTION,
    S2_CLOUD_PROB_COLLECTION,
    S2_L1C_COLLECTION,
    S2_SR_COLLECTION,
    SRTM_ASSET,
    FetchConfig,
)
from lsd.gee.event_facts import Constants, Resolved
from lsd.gee.landcover import FEATURE_BANDS
from lsd.layers import PAPER_LAYERS
from lsd.pipeline.paper.facts import PAPER_EVENTS
from lsd.spec import EventSpec, Window
from tests.ee_offline import Call, Lambda, calls, constants, filters_by_collection, graph_of

# ../shared/anchors beside the checkout (/work/main), or two levels up from a worktree (/work/wt/x):
# only test_the_event_table_is_the_anchors_one reads it; the graphs use lsd's own copy of Table 1
EVENTS_CSV = next(
    (p / "shared" / "anchors" / "paper_events.csv" for p in Path(__file__).resolve().parents[2:4]
     if (p / "shared" / "anchors" / "paper_events.csv").is_file()),
    Path(__file__).resolve().parents[2] / "shared" / "anchors" / "paper_events.csv",
)  # fmt: skip
CFG = FetchConfig()
WINDOW_DAYS = 60
TREE = "n= 40\nnode), split, n, loss, yval, (yprob)\n  1) root 40 30 2 (0.2 0.3 0.5)\n"
TRAIN = {
    "type": "FeatureCollection",
    "features": [
        {"type": "Feature", "geometry": None,
         "properties": {**{b: 0.1 * i for b in FEATURE_BANDS}, "class": 1 + i % 8}}
        for i in range(16)
    ],
}  # fmt: skip
S2_SCENES = {"20190601T103031_20190601T103026_T32VLP": 0.97,
             "20190611T103031_20190611T103026_T32VLP": 0.62}  # fmt: skip
CONST = Constants(
    look_direction={"DESCENDING": math.radians(100.0), "ASCENDING": math.radians(260.0)},
    vegetated_fraction=0.8,
    cart={"tree": TREE, "train": TRAIN, "accuracy": 0.9, "kappa": 0.85, "n_train": 16,
          "n_test": 4, "s2_scenes": S2_SCENES,
          "class_counts": {str(c): 12 for c in range(1, 9)}},
)  # fmt: skip
# Calls that aggregate over a region or the training data: what a tile must not repeat.
PER_EVENT_CALLS = ("Image.reduceRegion", "Image.stratifiedSample", "Image.sampleRegions",
                   "Classifier.train", "Collection.randomColumn")  # fmt: skip


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
    """The paper's 21 events (Table 1) as rows keyed like ../shared/anchors/paper_events.csv."""
    return [
        {"event_id": str(e.number), "location": e.location, "date": e.date,
         "lon": repr(e.lon), "lat": repr(e.lat)}
        for e in PAPER_EVENTS
    ]  # fmt: skip


ROWS = paper_rows()
ROWS_BY_ID = {r["event_id"]: r for r in ROWS}


def row(event_id: str) -> dict[str, str]:
    return ROWS_BY_ID[event_id]


@pytest.mark.real_data
def test_the_event_table_is_the_anchors_one() -> None:
    """lsd's Table 1 (lsd.pipeline.paper.facts) is the anchors' event list, point for point."""
    if not EVENTS_CSV.is_file():
        pytest.skip(f"{EVENTS_CSV} is absent (it sits beside the checkout)")
    with EVENTS_CSV.open(newline="") as fh:
        anchors = list(csv.DictReader(fh))
    assert [r["event_id"] for r in anchors] == [r["event_id"] for r in ROWS]
    for mine, theirs in zip(ROWS, anchors, strict=True):
        assert (mine["location"], mine["date"]) == (theirs["location"], theirs["date"])
        assert float(mine["lon"]) == float(theirs["lon"]) and float(mine["lat"]) == float(
            theirs["lat"]
        )


def millis(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


# ----------------------------------------------------------------------------- graph reading


def geometry_rings(geom: Call) -> tuple[tuple[tuple[float, float], ...], ...]:
    """The outer rings of a Polygon or MultiPolygon constructor."""
    if geom.name == "GeometryConstructors.Polygon":
        return (tuple(tuple(p) for p in geom.args["coordinates"][0]),)
    assert geom.name == "GeometryConstructors.MultiPolygon", geom.name
    return tuple(tuple(tuple(p) for p in poly[0]) for poly in geom.args["coordinates"])


def filter_facts(filters: list[Call]) -> set[tuple[Any, ...]]:
    """Filters as comparable tuples: ('eq', field, value), ('contains', field, value),
    ('date', start_ms, end_ms), ('bounds', rings)."""
    facts: set[tuple[Any, ...]] = set()
    for f in filters:
        a = f.args
        if f.name == "Filter.equals":
            facts.add(("eq", a["leftField"], a.get("rightValue", a.get("rightField"))))
        elif f.name == "Filter.listContains":
            facts.add(("contains", a["leftField"], a["rightValue"]))
        elif f.name == "Filter.dateRangeContains":
            rng = a["leftValue"]
            assert rng.name == "DateRange"
            facts.add(("date", rng.args["start"], rng.args["end"]))
        elif f.name == "Filter.intersects":
            facts.add(("bounds", geometry_rings(a["rightValue"].args["geometry"])))
        else:
            facts.add((f.name,))
    return facts


def aoi_rings(spec: EventSpec) -> tuple[tuple[tuple[float, float], ...], ...]:
    parts = getattr(spec.aoi, "geoms", [spec.aoi])
    return tuple(tuple(tuple(p) for p in part.exterior.coords) for part in parts)


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
        and isinstance(node.args["value"], int | float)
        and math.isclose(node.args["value"], value)
    )


def tile_graph(spec: EventSpec, cfg: FetchConfig = CFG, names=PAPER_LAYERS, **kw: Any) -> Any:
    """The image every download tile evaluates: built with the per-event constants."""
    resolved = kw.pop("resolved", Resolved())
    return graph_of(
        layers.build_event_image(spec, cfg, names, resolved=resolved, constants=CONST, **kw)
    )


# ----------------------------------------------------------------------------- all 21 events


@pytest.mark.parametrize("event_id", [r["event_id"] for r in ROWS])
def test_paper_event_graph(ee_offline: Any, event_id: str) -> None:
    spec = make_spec(row(event_id))
    root = tile_graph(spec)

    # the stack: the paper's 15 layers, named and ordered
    assert output_bands(root) == list(PAPER_LAYERS)

    ids = loaded_ids(root)
    for col in (S1_COLLECTION, S2_SR_COLLECTION, S2_CLOUD_PROB_COLLECTION, S2_L1C_COLLECTION):
        assert col in ids["ImageCollection"]
    assert CFG.worldcover_asset not in ids["ImageCollection"]  # sampled once per event, not here
    assert {CANOPY_HEIGHT_ASSET, CANOPY_HEIGHT_BOREAL_ASSET} <= ids["ImageCollection"]
    assert KG_CLIMATE_ASSET in ids["Image"]  # the paper's map, fsn1995's public asset

    # DEM by latitude: SRTM inside 56S..60N, Iceland's 10 m DEM in Iceland (voids from
    # GLO-30), GLO-30 elsewhere; resampled bilinearly
    lat = float(ROWS_BY_ID[event_id]["lat"])
    if -56 <= lat <= 60:
        assert SRTM_ASSET in ids["Image"] and GLO30_ASSET not in ids["ImageCollection"]
    else:
        assert GLO30_ASSET in ids["ImageCollection"] and SRTM_ASSET not in ids["Image"]
        iceland = ROWS_BY_ID[event_id]["location"] == "Iceland"
        assert (ICELAND_DEM_ASSET in ids["Image"]) == iceland
    assert {c.args["mode"] for c in calls(root, "Image.resample")} == {"bilinear"}

    # Sentinel-1 filters: IW, VV and VH, the chosen pass, both windows, the AOI
    windows = {("date", millis(w.start), millis(w.end)) for w in (spec.pre, spec.post)}
    by_col = filters_by_collection(root)
    s1_facts = filter_facts(by_col[S1_COLLECTION])
    assert {
        ("eq", "instrumentMode", "IW"),
        ("contains", "transmitterReceiverPolarisation", "VV"),
        ("contains", "transmitterReceiverPolarisation", "VH"),
        ("eq", "orbitProperties_pass", "DESCENDING"),
        ("bounds", aoi_rings(spec)),
    } | windows <= s1_facts
    assert {f for f in s1_facts if f[0] == "date"} == windows
    for col in (S2_SR_COLLECTION, S2_CLOUD_PROB_COLLECTION, S2_L1C_COLLECTION):
        facts = filter_facts(by_col[col])
        assert {f for f in facts if f[0] == "date"} == windows
        assert ("bounds", aoi_rings(spec)) in facts

    # per-pixel work only: no region reduction, sampling or training in a tile
    for name in PER_EVENT_CALLS:
        assert not calls(root, name), name
    (tree,) = calls(root, "Classifier.decisionTree")
    assert tree.args["treeString"] == TREE
    assert ["VV", "VH"] in selects(root) and ["angle"] in selects(root)


def flatten_lambdas(root: Any) -> list[Lambda]:
    """The per-scene functions mapped over the S1 collections."""
    out = []
    for m in calls(root, "Collection.map"):
        base = m.args["collection"]
        while isinstance(base, Call) and base.name == "Collection.filter":
            base = base.args["collection"]
        if base.name == "ImageCollection.load" and base.args["id"] == S1_COLLECTION:
            out.append(m.args["baseAlgorithm"])
    assert out, "no map over the S1 collection"
    return out


def test_s1_flattening_graph(ee_offline: Any) -> None:
    spec = make_spec(row("10"))
    root = tile_graph(spec, names=["preVV", "dVH", "layover", "liaDeg"])
    body = flatten_lambdas(root)[0]
    names = {c.name for c in calls(body)}
    # the pieces of the model factors, slopes and local incidence angle
    assert {"Image.atan", "Image.tan", "Image.cos", "Image.sin", "Image.acos"} <= names
    # 90 degree terms: x + pi/2 with x = -theta
    halves = [
        c for c in calls(body, "Image.add") if is_constant_image(c.args["image2"], s1.HALF_PI)
    ]
    assert halves and all(c.args["image1"].name == "Image.multiply" for c in halves)
    # dB -> linear: 10 ** (x / 10); gamma0 = sigma0 / cos(theta)
    assert any(is_constant_image(p.args["image1"], 10) for p in calls(body, "Image.pow"))
    assert any(
        c.args["image2"].name == "Image.cos" and c.args["image1"].name == "Image.rename"
        for c in calls(body, "Image.divide")
    )
    # the look direction is the per-event constant (100 degrees), phi_r = phi_i - aspect
    (phi_r,) = [c for c in calls(body, "Image.subtract")
                if is_constant_image(c.args["image1"], math.radians(100.0))]  # fmt: skip
    assert phi_r.args["image2"].name == "Image.select"
    assert phi_r.args["image2"].args["bandSelectors"] == ["aspect"]
    assert not calls(body, "Terrain.aspect") or all(
        c.args["input"].name != "Image.select" for c in calls(body, "Terrain.aspect")
    )
    # vegetated share 0.8 >= 0.5: the volume model, chosen on the client (no If in the graph)
    assert not calls(body, "If")
    # the factor is 1 (gamma0 unflattened) in layover and shadow, where it changes sign
    (defined,) = calls(body, "Image.where")
    assert is_constant_image(defined.args["value"], 1)
    test = defined.args["test"]
    assert test.name == "Image.or"
    assert {x.args["names"][0] for x in (test.args["image1"], test.args["image2"])} == {
        "layover", "shadow"}  # fmt: skip
    assert defined.args["input"].name == "Image.divide"  # the volume factor
    # composites: median of linear power, back to dB by 10*log10; layover max over post scenes
    assert calls(root, "reduce.median") and calls(root, "Image.log10")
    assert calls(root, "reduce.max")


def test_constants_request_graph(ee_offline: Any) -> None:
    """What is computed once per event: look direction over the pass's scenes in both windows,
    the vegetated share of WorldCover land, and CART's points, tree and holdout scores."""
    spec = make_spec(row("10"))
    root = graph_of(layers.constants_request(spec, CFG, PAPER_LAYERS, Resolved()))
    values = root.args["input"] if isinstance(root, Call) else root
    assert set(values) == {"request", "look_direction", "vegetated_fraction", "cart"}
    look = values["look_direction"]
    look = look.args["input"] if isinstance(look, Call) else look
    assert set(look) == {"DESCENDING"}
    (reduce,) = calls(look["DESCENDING"], "Image.reduceRegion")
    assert reduce.args["scale"] == s1.LOOK_DIRECTION_SCALE_M
    aspects = [c.args["input"] for c in calls(look["DESCENDING"], "Terrain.aspect")]
    assert aspects and all(a.args["bandSelectors"] == ["angle"] for a in aspects)
    assert calls(look["DESCENDING"], "ImageCollection.merge")  # pre and post scenes
    assert calls(look["DESCENDING"], "Number.atan2")  # circular mean
    # the region: the AOI grown 10 km on the client, a constant polygon
    region = reduce.args["geometry"]
    assert region.name == "GeometryConstructors.Polygon"
    lons = [p[0] for p in region.args["coordinates"][0]]
    width_km = (max(lons) - min(lons)) * 111.32 * math.cos(math.radians(10.68))
    assert width_km == pytest.approx(2 + 2 * 10, rel=0.01)  # the 2 km AOI + 10 km each side
    # vegetated share: WorldCover land classes 10..95 remapped to 1
    remaps = [
        c for c in calls(values["vegetated_fraction"], "Image.remap") if c.args["to"] == [1] * 6
    ]
    assert remaps and remaps[0].args["from"] == [10, 20, 30, 40, 90, 95]
    cart = values["cart"]
    cart = cart.args["input"] if isinstance(cart, Call) else cart
    assert set(cart) == {"train", "tree", "accuracy", "kappa", "n_train", "n_test",
                         "class_counts", "s2_scenes"}  # fmt: skip
    assert calls(cart["tree"], "Classifier.explain")
    assert calls(cart["train"], "Image.stratifiedSample")


@pytest.mark.parametrize("model", ["volume", "surface"])
def test_flattening_override(ee_offline: Any, model: str) -> None:
    spec = make_spec(row("21"), flattening=model)
    root = tile_graph(spec, names=["preVV", "postVH"])
    body = flatten_lambdas(root)[0]
    assert not calls(body, "If")
    divides = calls(body, "Image.divide")
    if model == "volume":  # tan(90 - theta + alpha_r) / tan(90 - theta)
        assert any(d.args["image1"].name == d.args["image2"].name == "Image.tan" for d in divides)
    else:  # cos(90 - theta) / (cos(alpha_az) cos(90 - theta + alpha_r))
        assert any(d.args["image1"].name == "Image.cos"
                   and d.args["image2"].name == "Image.multiply" for d in divides)  # fmt: skip
    # no land-cover lookup when the user chose the model
    request = graph_of(layers.constants_request(spec, CFG, ["preVV"], Resolved()))
    assert CFG.worldcover_asset not in loaded_ids(request)["ImageCollection"]


def test_inline_graph_chooses_the_model_on_the_server(ee_offline: Any) -> None:
    """Without constants (a dry run without a session) the graph holds the auto choice."""
    spec = make_spec(row("10"))
    root = graph_of(layers.build_event_image(spec, CFG, ["preVV"]))
    (factor_if,) = [c for c in calls(root, "If")
                    if isinstance(c.args["trueCase"], Call)
                    and c.args["trueCase"].name == "Image.divide"]  # fmt: skip
    condition = factor_if.args["condition"]
    assert condition.name == "Number.gte" and condition.args["right"] == 0.5
    assert calls(root, "Image.reduceRegion")  # the look direction and the share, in the graph


def not_masks(root: Any) -> list[Call]:
    """The masks of the form updateMask(x.Not())."""
    masks = [c.args["mask"] for c in calls(root, "Image.updateMask")]
    return [m for m in masks if isinstance(m, Call) and m.name == "Image.not"]


def layer_node(root: Any, name: str) -> Call:
    """The output layer `name`: the rename of a toFloat that build_event_image adds."""
    (node,) = [c for c in calls(root, "Image.rename") if c.args["names"] == [name]
               and c.args["input"].name == "Image.toFloat"]  # fmt: skip
    return node


def scene_masked_medians(root: Any) -> list[Call]:
    """Medians over scenes each masked on its own distortion (gee_s1_ard's per-scene mask):
    reduce.median of Collection.map(<scene -> VV,VH .updateMask(not(layover or shadow))>)."""
    out = []
    for median in calls(root, "reduce.median"):
        col = median.args["collection"]
        if not (isinstance(col, Call) and col.name == "Collection.map"):
            continue
        body = col.args["baseAlgorithm"].body
        if body.name != "Image.updateMask" or body.args["mask"].name != "Image.not":
            continue
        flags = body.args["mask"].args["value"]
        kinds = {c.args["bandSelectors"][0] for c in calls(flags, "Image.select")}
        scene = col.args["collection"]  # the flattened scenes of one window
        assert kinds == {"layover", "shadow"} and flatten_lambdas(scene)
        out.append(median)
    return out


def test_distortions_mask_each_scene_and_flags_match_no_data(ee_offline: Any) -> None:
    """gee_s1_ard masks each scene before the median: a composite pixel is no data only where
    every scene of a window is distorted, and the flags mark exactly that area (Table 2: they
    'should match the NoData areas in the VV and VH bands')."""
    spec = make_spec(row("5"))
    root = tile_graph(spec, names=["preVV", "dVH", "layover", "shadow"])
    assert len(scene_masked_medians(root)) == 2  # pre and post, each scene masked on its own
    assert not [c for c in calls(root, "reduce.median")
                if c not in scene_masked_medians(root)
                and not calls(c, "Image.updateMask")
                and ["lia"] not in selects(c)]  # fmt: skip
    # the no-data area: every scene of the pre window distorted, or every scene of the post
    masks = [m for m in not_masks(root) if m.args["value"].name == "Image.or"]  # of layers
    areas = {id(m.args["value"]) for m in masks}
    assert len(masks) == 2 and len(areas) == 1  # preVV and dVH: one and the same area
    area = masks[0].args["value"]
    assert area.name == "Image.or"
    for side in (area.args["image1"], area.args["image2"]):
        assert side.name == "reduce.min"  # every scene...
        per_scene = side.args["collection"].args["baseAlgorithm"].body  # ...layover or shadow
        assert per_scene.name == "Image.rename" and per_scene.args["input"].name == "Image.or"
    assert {m for m in calls(root, "Image.updateMask")
            if calls(m.args["mask"], "reduce.max")} == set()  # no union over scenes  # fmt: skip
    # the flags: that same area, by the kind of distortion the scenes show
    flags = {n: layer_node(root, n) for n in ("layover", "shadow")}
    for name, flag in flags.items():
        (both,) = calls(flag, "Image.and")
        assert both.args["image1"] is area
        kind = both.args["image2"]
        assert kind.name == "reduce.max"  # any scene showing that kind
        selected = kind.args["collection"]  # ImageCollection.select maps Image.select
        body = selected.args["baseAlgorithm"].body
        assert body.name == "Image.select" and body.args["bandSelectors"] == [name]
        assert selected.args["collection"].name == "ImageCollection.merge"  # both windows
    # mask_distortions off: no scene and no layer masked, the flags unchanged in kind
    root = tile_graph(spec, FetchConfig(mask_distortions=False), names=["preVV", "dVH", "layover"])
    assert not not_masks(root) and not scene_masked_medians(root)
    assert calls(root, "Image.and")


def test_orbit_both_composites_each_pass_on_its_own(ee_offline: Any) -> None:
    spec = make_spec(row("2"), orbit="BOTH")
    both = Resolved(passes=("DESCENDING", "ASCENDING"))
    root = tile_graph(spec, names=["preVV", "layover", "liaDeg"], resolved=both)
    facts = filter_facts(filters_by_collection(root)[S1_COLLECTION])
    passes = {f[2] for f in facts if f[:2] == ("eq", "orbitProperties_pass")}
    assert passes == {"DESCENDING", "ASCENDING"}
    # each pass flattened with its own look direction
    lambdas = flatten_lambdas(root)

    def look_of(body: Lambda) -> float:
        """phi_i of phi_r = phi_i - aspect, a constant image in the per-scene function."""
        (phi_r,) = [c for c in calls(body, "Image.subtract")
                    if c.args["image2"].name == "Image.select"
                    and c.args["image2"].args["bandSelectors"] == ["aspect"]]  # fmt: skip
        return math.degrees(phi_r.args["image1"].args["value"])

    assert {round(look_of(body)) for body in lambdas} == {100, 260}
    # preVV: mean of the two per-pass composites; layover: flagged only where both passes are
    # distorted (their no-data areas, min over passes), by the kind any pass shows there
    assert calls(root, "reduce.mean") and calls(root, "reduce.min")
    (both_flag,) = calls(layer_node(root, "layover"), "Image.and")
    nodata, kind = both_flag.args["image1"], both_flag.args["image2"]
    assert nodata.name == "reduce.min" and kind.name == "reduce.max"
    assert len(nodata.args["collection"].args["images"]) == 2  # one area per pass
    assert len(kind.args["collection"].args["images"]) == 2
    # liaDeg from one pass (the first), not a median across geometries
    lia = [c for c in calls(root, "Image.rename") if c.args["names"] == ["liaDeg"]][0]
    lia_passes = filter_facts(filters_by_collection(lia)[S1_COLLECTION])
    assert {f[2] for f in lia_passes if f[:2] == ("eq", "orbitProperties_pass")} == {"DESCENDING"}


def test_look_convention_gee_s1_ard(ee_offline: Any) -> None:
    spec = make_spec(row("10"))
    root = tile_graph(spec, FetchConfig(look_convention="gee_s1_ard"), names=["preVV"])
    body = flatten_lambdas(root)[0]
    assert any(is_constant_image(c.args["image1"], math.radians(100.0))
               for c in calls(body, "Image.add"))  # phi_r = phi_i + aspect  # fmt: skip
    assert any(c.args["image1"].name == "Image.divide" for c in calls(body, "Image.multiply")
               if isinstance(c.args["image1"], Call))  # gamma0 * factor  # fmt: skip


def test_s2_masking_follows_the_script(ee_offline: Any) -> None:
    spec = make_spec(row("4"))
    root = tile_graph(spec, names=["dNDVI"])
    ids = loaded_ids(root)
    assert S1_COLLECTION not in ids["ImageCollection"]  # dNDVI needs no radar
    assert not calls(root, "Classifier.decisionTree")
    mosaics = calls(root, "ImageCollection.qualityMosaic")
    assert len(mosaics) == 2 and {m.args["qualityBand"] for m in mosaics} == {"NDVI"}
    nd = [c.args["bandNames"] for c in calls(root, "Image.normalizedDifference")]
    assert ["B8", "B4"] in nd
    joins = calls(root, "Join.saveFirst")
    assert {j.args["matchKey"] for j in joins} == {"cloud_prob", "l1c"}
    for j in calls(root, "Join.apply"):
        cond = j.args["condition"]
        assert cond.args["leftField"] == cond.args["rightField"] == "system:index"
    # clouds: probability > 65 and CDI < -0.5, or B10 reflectance > 0.01; no QA60 bit test
    gts = [c for c in calls(root, "Image.gt") if is_constant_image(c.args["image2"], 65)]
    lts = [c for c in calls(root, "Image.lt") if is_constant_image(c.args["image2"], -0.5)]
    assert gts and lts and lts[0].args["image1"].name == "Sentinel2.CDI"
    cirrus = [c for c in calls(root, "Image.gt") if is_constant_image(c.args["image2"], 0.01)]
    assert cirrus and ["B10"] in selects(cirrus[0])
    assert not calls(root, "Image.bitwiseAnd") and ["QA60"] not in selects(root)
    # opened at 20 m: erode 3 px, dilate 16 px
    (erode,) = [c for c in calls(root, "Image.focalMin") if c.args["units"] == "pixels"]
    (grow,) = calls(root, "Image.focalMax")
    assert (erode.args["radius"], grow.args["radius"]) == (3, 16)
    scales = sorted(c.args["scale"] for c in calls(root, "Image.reproject"))
    assert scales == [20.0, 100.0]
    # shadows: cast 50 px at 100 m (5 km) along 90 - solar azimuth; the whole zone masked
    (ddt,) = calls(root, "Image.directionalDistanceTransform")
    assert ddt.args["maxDistance"] == 50
    angle = ddt.args["angle"]
    assert angle.name == "Number.subtract" and angle.args["left"] == 90
    assert "MEAN_SOLAR_AZIMUTH_ANGLE" in constants(angle)
    assert not [c for c in calls(root, "Image.lt") if is_constant_image(c.args["image2"], 1500)]
    # snow: SCL 11, the not-snow mask eroded 300 m (snow grown 300 m), as maskSnow does
    (snow,) = [c for c in calls(root, "Image.focalMin") if c.args["units"] == "meters"]
    assert snow.args["radius"] == 300.0
    assert snow.args["image"].name == "Image.not"
    assert is_constant_image(snow.args["image"].args["value"].args["image2"], 11)


def test_s2_options_erode_snow_and_dark_shadows(ee_offline: Any) -> None:
    spec = make_spec(row("4"))
    cfg = FetchConfig(snow_mode="erode", shadow_nir_dark=0.15)
    root = tile_graph(spec, cfg, names=["dNDVI"])
    (snow,) = [c for c in calls(root, "Image.focalMin") if c.args["units"] == "meters"]
    assert snow.args["image"].name == "Image.eq"  # the snow mask itself is eroded
    dark = [c for c in calls(root, "Image.lt") if is_constant_image(c.args["image2"], 1500)]
    assert dark and ["B8"] in selects(dark[0])


def test_l1c_fallback_graph(ee_offline: Any) -> None:
    """Without L2A (2017 outside Europe) the TOA scenes are masked: CDI and B10 on the scene
    itself, snow by NDSI since L1C has no scene classification."""
    spec = make_spec(row("21"))
    root = tile_graph(spec, names=["dNDVI"], resolved=Resolved(s2_level="L1C"))
    ids = loaded_ids(root)["ImageCollection"]
    assert S2_SR_COLLECTION not in ids and {S2_L1C_COLLECTION, S2_CLOUD_PROB_COLLECTION} <= ids
    assert {j.args["matchKey"] for j in calls(root, "Join.saveFirst")} == {"cloud_prob"}
    assert ["SCL"] not in selects(root)
    assert ["B3", "B11"] in [c.args["bandNames"] for c in calls(root, "Image.normalizedDifference")]
    assert any(is_constant_image(c.args["image2"], 0.4) for c in calls(root, "Image.gt"))


def test_cloud_score_plus_option(ee_offline: Any) -> None:
    spec = make_spec(row("4"))
    cfg = FetchConfig(s2_cloud="cloudscoreplus")
    root = tile_graph(spec, cfg, names=["dNDVI"])
    assert CLOUD_SCORE_PLUS_COLLECTION in loaded_ids(root)["ImageCollection"]
    assert S2_CLOUD_PROB_COLLECTION not in loaded_ids(root)["ImageCollection"]
    assert not calls(root, "Sentinel2.CDI")
    assert ["cs_cdf"] in selects(root)
    assert any(is_constant_image(c.args["image2"], 0.6) for c in calls(root, "Image.gte"))


def test_cart_in_tiles(ee_offline: Any) -> None:
    spec = make_spec(row("22"))
    root = tile_graph(spec, names=["landCover"])
    assert output_bands(root) == ["landCover"]
    (tree,) = calls(root, "Classifier.decisionTree")
    assert tree.args["treeString"] == TREE
    (classify,) = calls(root, "Image.classify")
    features = classify.args["image"]
    assert ["B2", "B3", "B4", "B8", "B11", "B12"] in selects(features)
    assert list(FEATURE_BANDS) == ["B2", "B3", "B4", "B8", "B11", "B12", "elevation",
                                   "preVV", "preVH"]  # fmt: skip
    # the radar features are not masked for distortions (CART classifies every pixel), and
    # their values are finite there: the model factor is 1 in layover and shadow
    assert not [c for c in calls(features, "Image.updateMask")
                if isinstance(c.args["mask"], Call) and c.args["mask"].name == "Image.not"
                and calls(c.args["mask"], "reduce.min")]  # fmt: skip
    assert not scene_masked_medians(features)
    medians = [m for m in calls(features, "reduce.median") if selects(m) != [["lia"]]]
    assert medians and all(
        [w.args["value"].args["value"] for w in calls(m, "Image.where")] == [1] for m in medians
    )
    # option: retrain on the constant points in each tile
    root = tile_graph(spec, FetchConfig(cart_tile_input="samples"), names=["landCover"])
    (train,) = calls(root, "Classifier.train")
    assert train.args["classProperty"] == "class"
    assert train.args["inputProperties"] == list(FEATURE_BANDS)
    points = [f for f in calls(train.args["features"], "Feature")]
    assert len(points) == len(TRAIN["features"])
    assert not calls(root, "Image.stratifiedSample")


def test_cart_training_in_the_constants_request(ee_offline: Any) -> None:
    spec = make_spec(row("22"))
    root = graph_of(layers.constants_request(spec, CFG, ["landCover"], Resolved()))
    (train,) = calls(root, "Classifier.train")
    assert train.args["classProperty"] == "class"
    split = train.args["features"]
    assert split.name == "Collection.filter"
    assert split.args["filter"].args["rightValue"] == pytest.approx(0.7)
    sample = split.args["collection"].args["collection"]
    assert split.args["collection"].name == "Collection.randomColumn"
    assert sample.name == "Image.stratifiedSample"
    assert sample.args["numPoints"] == CFG.cart_points_per_class
    assert sample.args["classBand"] == "class" and sample.args["geometries"] is False
    remap = [c for c in calls(sample, "Image.remap") if 50 in c.args["from"]]
    assert remap and dict(zip(remap[0].args["from"], remap[0].args["to"], strict=True))[50] == 1
    (matrix,) = calls(root, "Collection.errorMatrix")
    assert matrix.args["order"] == list(range(1, 9))
    assert S1_COLLECTION in loaded_ids(root)["ImageCollection"]  # pre-event radar features


@pytest.mark.parametrize("event_id", ["1", "5", "14", "21"])  # Iceland, Norway, NZ, Kyrgyzstan
def test_cart_image_is_the_least_cloudy_scene_with_snow_kept(ee_offline: Any, event_id: str):
    """The paper trained CART on a Sentinel-2 image with minimal cloud cover: the features come
    from the pre-event scenes ranked by the share of the CART region they show clear (clouds
    masked by the dNDVI rule, snow not masked), and snow in that image trains class 8; so all
    eight classes can get points (the snow-masked greenest composite gave snow none)."""
    spec = make_spec(row(event_id))
    root = graph_of(layers.constants_request(spec, CFG, ["landCover"], Resolved()))
    (sample,) = calls(root, "Image.stratifiedSample")
    # features: a qualityMosaic on each scene's clear share, of the 3 clearest scenes
    (mosaic,) = calls(sample, "ImageCollection.qualityMosaic")
    assert mosaic.args["qualityBand"] == "clear_share"
    assert not [q for q in calls(sample, "ImageCollection.qualityMosaic")
                if q.args["qualityBand"] == "NDVI"]  # not the greenest composite  # fmt: skip
    (limit,) = calls(mosaic, "Collection.limit")
    assert (limit.args["limit"], limit.args["key"], limit.args["ascending"]) == (
        CFG.cart_s2_scenes, "clear_share", False)  # fmt: skip
    # each scene's share: mean of 'shown' over the AOI + 2 km at 100 m
    (share,) = [r for r in calls(limit, "Image.reduceRegion") if r.args["scale"] == 100]
    assert share.args["reducer"].name == "Reducer.mean"
    lons = [p[0] for p in share.args["geometry"].args["coordinates"][0]]
    width_km = (max(lons) - min(lons)) * 111.32 * math.cos(math.radians(spec.aoi.centroid.y))
    assert width_km == pytest.approx(2 + 2 * 2, rel=0.02)
    # clouds masked as for dNDVI (opened 3 px, cast 5 km), snow NOT masked (no 300 m erosion)
    assert [c.args["radius"] for c in calls(mosaic, "Image.focalMin")] == [3]
    assert calls(mosaic, "Image.directionalDistanceTransform")
    assert not [c for c in calls(sample, "Image.focalMin") if c.args["units"] == "meters"]
    # classes: WorldCover remapped, bare rock by NDVI of that image, snow in it is class 8
    (remap,) = [c for c in calls(sample, "Image.remap") if 50 in c.args["from"]]
    wheres = {c.args["value"].args["value"]: c for c in calls(sample, "Image.where")
              if c.args["value"].name == "Image.constant"}  # fmt: skip
    assert set(remap.args["to"]) | set(wheres) >= set(range(1, 9))  # every class trainable
    snow_test = wheres[8].args["test"]
    assert snow_test.name == "Image.select" and snow_test.args["bandSelectors"] == ["snow"]
    assert calls(snow_test, "ImageCollection.qualityMosaic")[0] is mosaic  # the same image
    snow_flag = [c for c in calls(mosaic, "Image.eq") if is_constant_image(c.args["image2"], 11)]
    assert snow_flag  # SCL 11, as a band, not a mask
    ndvi_test = wheres[7].args["test"].args["image2"]  # NDVI < 0.1 of CART's image
    assert calls(ndvi_test, "ImageCollection.qualityMosaic")[0] is mosaic
    # the constants carry the scenes and their shares, and the points per class
    cart = root.args["input"]["cart"] if isinstance(root, Call) else root["cart"]
    cart = cart.args["input"] if isinstance(cart, Call) else cart
    assert cart["s2_scenes"].name == "Dictionary.fromLists"
    counts = cart["class_counts"]
    assert counts.name == "AggregateFeatureCollection.histogram"
    assert counts.args["property"] == "class"
    assert calls(counts, "Image.stratifiedSample")[0] is sample  # all points, before the split


def test_cart_image_in_tiles_from_the_constants(ee_offline: Any) -> None:
    """A tile rebuilds CART's image from the scene ids and shares of the constants: no ranking,
    no reduction; the scenes filtered by id, the shares set from a constant dictionary."""
    spec = make_spec(row("1"))
    root = tile_graph(spec, names=["landCover"])
    assert not calls(root, "Image.reduceRegion") and not calls(root, "Collection.limit")
    (mosaic,) = calls(root, "ImageCollection.qualityMosaic")
    assert mosaic.args["qualityBand"] == "clear_share"
    (by_id,) = [c for c in calls(mosaic, "Filter.listContains")
                if c.args.get("rightField") == "system:index"]  # fmt: skip
    assert by_id.args["leftValue"] == sorted(S2_SCENES)
    (shares,) = calls(mosaic, "Dictionary.get")
    assert shares.args["dictionary"] == S2_SCENES


@pytest.mark.parametrize(
    ("event_id", "dem"),
    [("1", ICELAND_DEM_ASSET), ("15", ICELAND_DEM_ASSET), ("5", GLO30_ASSET),
     ("12", SRTM_ASSET), ("3", SRTM_ASSET)],
)  # fmt: skip
def test_dem_by_latitude(ee_offline: Any, event_id: str, dem: str) -> None:
    """Iceland takes its 10 m DEM (the paper's local DEM; GLO-30 fills the sea), Norway above
    60N GLO-30; Alaska at 59.2N and New Zealand take SRTM."""
    spec = make_spec(row(event_id))
    root = tile_graph(spec, names=["elevation"])
    ids = loaded_ids(root)
    assert (dem in ids["Image"]) or (dem in ids["ImageCollection"])
    fill = {GLO30_ASSET} if dem == ICELAND_DEM_ASSET else set()
    assert (ids["Image"] | ids["ImageCollection"]) - {dem} == fill
    (resample,) = calls(root, "Image.resample")
    assert resample.args["mode"] == "bilinear"
    assert layers.event_provenance(spec, CFG, ["elevation"], Resolved(), CONST)[
        "dem_asset"] == dem  # fmt: skip
    if dem == ICELAND_DEM_ASSET:
        # Iceland's DEM where it has data, GLO-30 elsewhere, on the 10 m DEM's own grid
        (unmask,) = calls(root, "Image.unmask")
        assert unmask.args["input"].args["input"].args["id"] == ICELAND_DEM_ASSET
        assert GLO30_ASSET in loaded_ids(unmask.args["value"])["ImageCollection"]
        proj = [c for c in calls(root, "Image.setDefaultProjection")
                if c.args["image"] is unmask]  # fmt: skip
        assert calls(proj[0].args["crs"], "Image.load")[0].args["id"] == ICELAND_DEM_ASSET
    if dem == GLO30_ASSET:
        # the projection comes from a GLO-30 tile that intersects the AOI
        (proj,) = calls(root, "Image.setDefaultProjection")
        (first,) = calls(proj.args["crs"], "Collection.first")
        tile_filters = filters_by_collection(first)[GLO30_ASSET]
        assert ("bounds", aoi_rings(spec)) in filter_facts(tile_filters)
        assert ["DEM"] in selects(root)


def test_dem_options(ee_offline: Any) -> None:
    spec = make_spec(row("5"), dem_asset="users/someone/norway_dtm10")
    root = tile_graph(spec, names=["elevation", "slope"])
    assert loaded_ids(root) == {"Image": {"users/someone/norway_dtm10"}, "ImageCollection": set()}
    assert output_bands(root) == ["elevation", "slope"] and calls(root, "Terrain.slope")
    root = tile_graph(make_spec(row("5")), FetchConfig(dem_resample="nearest"), names=["slope"])
    assert not calls(root, "Image.resample")
    root = tile_graph(make_spec(row("5")), FetchConfig(high_latitude_dem="arcticdem"),
                      names=["elevation"])  # fmt: skip
    ids = loaded_ids(root)
    assert ARCTICDEM_ASSET in ids["Image"] and GLO30_ASSET in ids["ImageCollection"]  # voids
    assert calls(root, "Image.unmask")
    root = tile_graph(make_spec(row("12")), FetchConfig(high_latitude_dem="arcticdem"),
                      names=["elevation"])  # 59.2 N: SRTM, not the Arctic DEM  # fmt: skip
    assert loaded_ids(root)["Image"] == {SRTM_ASSET}
    # Iceland: glo30 asks for GLO-30 alone, arcticdem for the Arctic mosaic
    for choice, asset in (("glo30", GLO30_ASSET), ("arcticdem", ARCTICDEM_ASSET)):
        root = tile_graph(make_spec(row("1")), FetchConfig(high_latitude_dem=choice),
                          names=["elevation"])  # fmt: skip
        ids = loaded_ids(root)
        assert ICELAND_DEM_ASSET not in ids["Image"]
        assert asset in ids["Image"] | ids["ImageCollection"]
    # an AOI that leaves Iceland's box (a 60 km square at its east coast) takes GLO-30
    from lsd.gee.config import dem_asset_for, inside_iceland

    wide = make_spec(row("1"), aoi=Polygon([(-14.0, 65.0), (-13.0, 65.0), (-13.0, 65.5),
                                            (-14.0, 65.5)]))  # fmt: skip
    assert not inside_iceland(wide.aoi) and dem_asset_for(wide, CFG) == GLO30_ASSET


def test_kg_climate_default_asset_and_codes(ee_offline: Any) -> None:
    """fsn1995's asset numbers Af .. ET from 0 (koppen.js), lsd's table from 1: the default is
    remapped 0..31 -> 1..32 (other codes masked); an asset of one's own is taken as it is
    unless kg_climate_codes says it starts at 0."""
    from lsd.gee.config import KG_CLASSES

    spec = make_spec(row("19"))
    root = tile_graph(spec, names=["kgClimate"])
    assert loaded_ids(root)["Image"] == {KG_CLIMATE_ASSET}
    (remap,) = calls(root, "Image.remap")
    pairs = dict(zip(remap.args["from"], remap.args["to"], strict=True))
    assert pairs == {c - 1: c for c in range(1, 33)}
    assert KG_CLASSES[pairs[0]] == "Af" and KG_CLASSES[pairs[30]] == "ET"
    assert KG_CLASSES[pairs[31]] == "Ocean"
    assert loaded_ids(remap.args["image"])["Image"] == {KG_CLIMATE_ASSET}
    prov = layers.event_provenance(spec, CFG, ["kgClimate"], Resolved(), CONST)
    assert prov["kg_climate_asset"] == KG_CLIMATE_ASSET and "plus 1" in prov["kg_climate_codes"]
    own = FetchConfig(kg_climate_asset="users/me/KG_1986_2010")
    root = tile_graph(spec, own, names=["kgClimate"])
    assert loaded_ids(root)["Image"] == {"users/me/KG_1986_2010"}
    assert not calls(root, "Image.remap")
    root = tile_graph(spec, FetchConfig(kg_climate_asset="users/me/kg0", kg_climate_codes="from0"),
                      names=["kgClimate"])  # fmt: skip
    assert calls(root, "Image.remap")
    root = tile_graph(spec, FetchConfig(kg_climate_codes="from1"), names=["kgClimate"])
    assert not calls(root, "Image.remap")  # the default asset, told to read as it is


def test_auxiliary_layers(ee_offline: Any) -> None:
    spec = make_spec(row("19"))
    root = tile_graph(spec, FetchConfig(kg_climate_asset=None), names=["kgClimate", "canopyHeight"])
    # kgClimate: asset switched off -> fully masked; canopy codes > 60 masked in both products
    assert loaded_ids(root)["Image"] == set()
    masked = [c for c in calls(root, "Image.updateMask") if is_constant_image(c.args["mask"], 0)]
    assert len(masked) == 1
    lte = [c for c in calls(root, "Image.lte") if c.args["image2"].name == "Image.constant"
           and c.args["image2"].args["value"] == 60]  # fmt: skip
    assert len(lte) == 2
    (fill,) = calls(root, "Image.unmask")
    assert CANOPY_HEIGHT_BOREAL_ASSET in loaded_ids(fill.args["value"])["ImageCollection"]
    cfg = FetchConfig(kg_climate_asset="users/me/KG_1986_2010", canopy_height_fill_asset=None)
    root = tile_graph(spec, cfg, names=["kgClimate", "canopyHeight"])
    assert loaded_ids(root)["Image"] == {"users/me/KG_1986_2010"}
    assert not calls(root, "Image.unmask")


def test_unavailable_layers_are_fully_masked(ee_offline: Any) -> None:
    spec = make_spec(row("19"))
    cfg = FetchConfig(kg_climate_asset="users/me/kg")
    image = layers.build_event_image(
        spec, cfg, ["elevation", "kgClimate", "canopyHeight"], unavailable={"kgClimate"}
    )
    root = graph_of(image)
    assert output_bands(root) == ["elevation", "kgClimate", "canopyHeight"]
    assert "users/me/kg" not in loaded_ids(root)["Image"]


def test_only_needed_pieces_are_built(ee_offline: Any) -> None:
    spec = make_spec(row("9"))
    root = tile_graph(spec, names=["slope", "elevation"])
    assert output_bands(root) == ["slope", "elevation"]
    assert loaded_ids(root) == {"Image": {SRTM_ASSET}, "ImageCollection": set()}
    root = tile_graph(spec, names=["dVV"])
    assert S2_SR_COLLECTION not in loaded_ids(root)["ImageCollection"]
    assert not calls(root, "Classifier.decisionTree")


def test_bad_layer_names_are_user_errors(ee_offline: Any) -> None:
    spec = make_spec(row("19"))
    with pytest.raises(UserError, match="'B04'"):
        layers.build_event_image(spec, CFG, ["elevation", "B04"])
    with pytest.raises(UserError, match="twice"):
        layers.build_event_image(spec, CFG, ["slope", "slope"])


def test_antimeridian_aoi_stays_local(ee_offline: Any) -> None:
    """An AOI across 180 degrees is sent as two small parts, not a ring around the world."""
    from lsd.spec import make_spec as spec_for_area

    ring = Polygon([(179.98, -16.0), (-179.98, -16.0), (-179.98, -16.03), (179.98, -16.03)])
    spec = spec_for_area("fiji", dt.date(2020, 6, 1), ring)
    assert spec.aoi.geom_type == "MultiPolygon" and spec.utm_epsg in (32660, 32701)
    root = tile_graph(spec, names=["preVV", "dNDVI"])
    for col in (S1_COLLECTION, S2_SR_COLLECTION):
        (bounds,) = [f for f in filter_facts(filters_by_collection(root)[col]) if f[0] == "bounds"]
        rings = bounds[1]
        assert len(rings) == 2
        for r in rings:
            lons = [p[0] for p in r]
            assert max(lons) - min(lons) < 0.05 and all(-180 <= x <= 180 for x in lons)
    request = graph_of(layers.constants_request(spec, CFG, ["preVV"], Resolved()))
    reduces = calls(request, "Image.reduceRegion")
    (reduce,) = [r for r in reduces if r.args["scale"] == s1.LOOK_DIRECTION_SCALE_M]
    region = reduce.args["geometry"]
    assert region.name == "GeometryConstructors.MultiPolygon"
    assert all(max(p[0] for p in r) - min(p[0] for p in r) < 0.5 for r in geometry_rings(region))


# ----------------------------------------------------------------------------- provenance


def test_provenance_record(ee_offline: Any) -> None:
    spec = make_spec(row("5"), flattening="auto")
    out = layers.event_provenance(spec, CFG, PAPER_LAYERS, Resolved(), CONST)
    flat = out["s1_flattening"]
    assert (flat["model"], flat["vegetated_fraction"], flat["convention"]) == (
        "volume", 0.8, "vollrath")  # fmt: skip
    assert out["s1_passes"] == ["DESCENDING"] and out["s1_orbit"] == "AUTO"
    assert out["s1_look_direction_deg"] == {"DESCENDING": 100.0, "ASCENDING": 260.0}
    assert out["dem_asset"] == GLO30_ASSET and out["dem_resample"] == "bilinear"
    assert out["s2_level"] == "L2A" and "B10 > 0.01" in out["s2_masking"]
    assert "SCL 11 grown 300 m" in out["s2_masking"]
    assert out["landcover"]["accuracy"] == 0.9 and out["landcover"]["tile_input"] == "tree"
    assert out["kg_climate_asset"] == KG_CLIMATE_ASSET
    out = layers.event_provenance(spec, CFG, ["dNDVI"], Resolved(s2_level="L1C"), None)
    assert "s1_flattening" not in out and out["s2_level"] == "L1C"
    assert "NDSI > 0.4" in out["s2_masking"]


def test_conventions_record_what_the_fetch_decided(ee_offline: Any, tmp_path: Path) -> None:
    """event.json `conventions` entries in the shared shape for the choices lsd.gee makes."""
    spec = make_spec(row("1"))  # Iceland
    out = layers.layer_conventions(spec, CFG, PAPER_LAYERS, Resolved())
    assert set(out) == {"snow_mask", "dem", "land_cover", "distortion_masking"}
    assert all(set(v) == {"value", "how", "evidence"} and v["how"] == "recorded"
               for v in out.values())  # fmt: skip
    assert out["dem"]["value"] == ICELAND_DEM_ASSET and GLO30_ASSET in out["dem"]["evidence"]
    assert out["snow_mask"]["value"] == "grow 300 m" and "SCL 11" in out["snow_mask"]["evidence"]
    assert out["land_cover"]["value"] == "cart:ESA/WorldCover/v200"
    assert out["distortion_masking"]["value"] == "per_scene"
    cfg = FetchConfig(mask_distortions=False, snow_mode="erode", high_latitude_dem="glo30")
    out = layers.layer_conventions(spec, cfg, ["preVV", "dNDVI"], Resolved(s2_level="L1C"))
    assert out["distortion_masking"]["value"] == "none" and "land_cover" not in out
    assert out["snow_mask"]["value"] == "erode 300 m" and "NDSI > 0.4" in out["snow_mask"][
        "evidence"]  # fmt: skip
    assert out["dem"]["value"] == GLO30_ASSET
    assert layers.layer_conventions(spec, CFG, ["kgClimate"], Resolved()) == {}


def test_asset_available(ee_offline: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mocked server: readable, missing (None) and forbidden (EEException) assets."""

    def fake_info(asset_id: str) -> Any:
        if asset_id == "forbidden":
            raise ee_offline.EEException("Permission denied")
        return {"type": "IMAGE"} if asset_id == CFG.canopy_height_asset else None

    monkeypatch.setattr(ee_offline.data, "getInfo", fake_info)
    assert layers.asset_available(CFG.canopy_height_asset)
    assert not layers.asset_available("forbidden")
    assert layers.unavailable_aux_layers(CFG) == {"kgClimate": KG_CLIMATE_ASSET}  # None: missing
    off = FetchConfig(kg_climate_asset=None)
    assert layers.unavailable_aux_layers(off) == {"kgClimate": None}  # switched off
    cfg = FetchConfig(kg_climate_asset="users/me/kg")
    assert layers.unavailable_aux_layers(cfg) == {"kgClimate": "users/me/kg"}
    assert layers.unavailable_aux_layers(cfg, ["elevation"]) == {}


def test_graph_builders_do_not_contact_the_server(ee_offline: Any) -> None:
    """The offline fixture refuses any value request; getInfo must therefore fail here."""
    from tests.ee_offline import ServerContacted

    with pytest.raises(ServerContacted):
        ee_offline.Number(1).getInfo()


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
    root = graph_of(layers.constants_request(spec, CFG, ["landCover"], Resolved()))
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

    def Or(self, o: Any) -> Arr:  # noqa: N802 - ee.Image's name
        return Arr(np.logical_or(self.a, self._v(o)))

    def where(self, test: Any, value: Any) -> Arr:
        return Arr(np.where(self._v(test), self._v(value), self.a))


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
        "defined_volume": np.where(
            (ar >= theta) | (ar <= -(np.pi / 2 - theta)),
            1.0,
            np.tan(np.pi / 2 - theta + ar) / np.tan(np.pi / 2 - theta),
        ),
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
        "defined_volume": s1.defined_factor(
            s1.volume_factor(t, ar), s1.layover_mask(t, ar), s1.shadow_mask(t, ar)
        ),
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


def test_flattening_values_are_defined_in_layover_and_shadow() -> None:
    """mask_distortions off keeps the values: the model factors change sign in layover and
    shadow (gamma0 / f negative or infinite, its dB NaN); there gamma0 stays unflattened, so
    every value is positive and finite and CART never sees NaN."""
    theta, slope, phi = np.broadcast_arrays(
        np.radians(np.linspace(29.0, 46.0, 18))[:, None, None],
        np.radians(np.linspace(0.0, 80.0, 81))[None, :, None],
        np.radians(np.linspace(0.0, 350.0, 36))[None, None, :],
    )
    t, sl, p = Arr(theta), Arr(slope), Arr(phi)
    ar, aaz = s1.range_slope(sl, p), s1.azimuth_slope(sl, p)
    lay, sh = s1.layover_mask(t, ar), s1.shadow_mask(t, ar)
    distorted = np.logical_or(lay.a, sh.a)
    gamma0 = 0.05
    for raw in (s1.volume_factor(t, ar), s1.surface_factor(t, ar, aaz)):
        with np.errstate(divide="ignore", invalid="ignore"):
            before = 10 * np.log10(gamma0 / raw.a)
        after = 10 * np.log10(gamma0 / s1.defined_factor(raw, lay, sh).a)
        assert np.isfinite(after).all()  # no NaN, no inf, anywhere
        np.testing.assert_array_equal(after[~distorted], before[~distorted])
        np.testing.assert_allclose(after[distorted], 10 * np.log10(gamma0))  # not flattened
        assert (~np.isfinite(before[distorted])).sum() > 1000  # the bug: NaN there
    assert 0.2 < distorted.mean() < 0.6


UNARY = {"Image.tan": np.tan, "Image.cos": np.cos, "Image.sin": np.sin,
         "Image.atan": np.arctan, "Image.acos": np.arccos}  # fmt: skip
BINARY = {"Image.add": np.add, "Image.subtract": np.subtract, "Image.multiply": np.multiply,
          "Image.divide": np.divide, "Image.gte": np.greater_equal,
          "Image.lte": np.less_equal, "Image.or": np.logical_or}  # fmt: skip


def evaluate(node: Any) -> float:
    """Run a graph of constant images through numpy: a tiny interpreter of the ops used."""
    if isinstance(node, (int, float)):
        return float(node)
    assert isinstance(node, Call), node
    if node.name == "Image.constant":
        return float(node.args["value"])
    if node.name in UNARY:
        return float(UNARY[node.name](evaluate(node.args["value"])))
    if node.name == "Image.where":
        test = evaluate(node.args["test"])
        return evaluate(node.args["value"]) if test else evaluate(node.args["input"])
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
