"""Layer groups beyond the paper's 15: their names, and their Earth Engine graphs built offline.

The graphs are read back into calls (tests/ee_offline.py): the band layers must come from the
same masked scenes and pixel choice as dNDVI, the 20 m bands must be resampled bilinearly per
scene, and the scene layers must pick the nearest acquisitions on each side of the event.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from lsd.errors import InvalidFile, InvalidValue
from lsd.eventcsv import read_events
from lsd.gee import pixels as download
from lsd.gee.config import S1_COLLECTION, S2_SR_COLLECTION, FetchConfig
from lsd.layergroups import (
    S2_BANDS_20M,
    group_layers,
    is_fetchable,
    parse_groups,
    parse_s1_scenes,
    s1_scene_of,
    s2_band_of,
    scenes_needed,
    windows_needed,
)
from lsd.layers import PAPER_LAYERS
from tests.conftest import REPO
from tests.ee_offline import Call, calls, graph_of

CFG = FetchConfig()


@pytest.fixture(scope="module")
def norway():
    (spec,) = read_events(REPO / "examples" / "events.csv", only={"05-norway"})
    return spec


# ----------------------------------------------------------------------------- vocabulary


def test_groups_name_every_layer_once_in_stack_order() -> None:
    assert group_layers(["paper"]) == PAPER_LAYERS
    bands = group_layers(["s2bands"])
    assert bands[:10] == tuple(
        f"pre{b}" for b in ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
    )
    assert bands[10:] == tuple(n.replace("pre", "post") for n in bands[:10])
    assert group_layers(["ndvi"]) == ("preNDVI", "postNDVI")
    assert group_layers(["s1scenes"], "3+1") == (
        "preVV_1", "preVV_2", "preVV_3", "preVH_1", "preVH_2", "preVH_3", "postVV_1", "postVH_1",
    )  # fmt: skip
    both = group_layers(["ndvi", "paper", "ndvi"])
    assert both == ("preNDVI", "postNDVI", *PAPER_LAYERS)
    assert all(is_fetchable(n) for n in group_layers(parse_groups("paper s2bands;ndvi,s1scenes")))
    assert not is_fetchable("preB1") and not is_fetchable("preVV_0") and not is_fetchable("B2")


def test_names_say_how_they_are_made() -> None:
    assert s2_band_of("preB8A") == ("pre", "B8A") and s2_band_of("postB12") == ("post", "B12")
    assert s2_band_of("preB10") is None and s2_band_of("B2") is None
    assert s1_scene_of("postVH_2") == ("post", "VH", 2) and s1_scene_of("postVH") is None
    assert scenes_needed(["preVV_3", "preVH_1", "postVV_1", "dNDVI"]) == {"pre": 3, "post": 1}
    assert windows_needed(["preB2"]) == {"s2_pre"}
    assert windows_needed(["postNDVI", "preVH_1"]) == {"s2_post", "s1_pre"}
    assert windows_needed(["landCover"]) == {"s1_pre", "s2_pre"}
    assert windows_needed(["dVV", "dNDVI"]) == {"s1_pre", "s1_post", "s2_pre", "s2_post"}


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: parse_groups("paper,sar"),
         "unknown layer group 'sar'; groups: paper, s2bands, ndvi, s1scenes"),
        (lambda: parse_groups(" , "), "no layer group given"),
        (lambda: parse_s1_scenes("4+0"), "s1 scenes '4+0' is not one of 1+1, 3+1, 1+3, 3+3"),
        (lambda: parse_s1_scenes("2+2"), "is not one of"),
    ],
)  # fmt: skip
def test_bad_groups_and_scene_counts(call, needle: str) -> None:
    with pytest.raises(InvalidValue, match=re.escape(needle)):
        call()


# ----------------------------------------------------------------------------- events.csv


def test_csv_layers_and_s1_scenes_columns(tmp_path) -> None:
    csv = tmp_path / "events.csv"
    csv.write_text(
        "id,date,lon,lat,layers,s1_scenes\n"
        "a,2019-07-30,6.1,61.5,,\n"
        "b,2019-07-30,6.1,61.5,ndvi s1scenes,3+3\n"
        "c,2019-07-30,6.1,61.5,s1scenes,\n"
    )
    a, b, c = read_events(csv, groups=("paper", "ndvi"), s1_scenes="1+3")
    assert a.layers == (*PAPER_LAYERS, "preNDVI", "postNDVI")
    assert b.layers == group_layers(["ndvi", "s1scenes"], "3+3")
    assert c.layers == group_layers(["s1scenes"], "1+3")  # the fetch's scene count


@pytest.mark.parametrize(
    ("cells", "needle"),
    [
        ("sar,", "row 1 (line 2), column 'layers': unknown layer group 'sar'; groups: paper, "
                 "s2bands, ndvi, s1scenes"),
        ("s1scenes,4+0", "row 1 (line 2), column 's1_scenes': s1 scenes '4+0' is not one of"),
        ("paper,3+3", "row 1 (line 2), column 's1_scenes': '3+3' is given but the row's layer "
                      "groups (paper) do not include s1scenes"),
    ],
)  # fmt: skip
def test_csv_layer_cells_are_checked(tmp_path, cells: str, needle: str) -> None:
    csv = tmp_path / "events.csv"
    csv.write_text(f"id,date,lon,lat,layers,s1_scenes\na,2019-07-30,6.1,61.5,{cells}\n")
    with pytest.raises(InvalidFile, match=re.escape(needle)):
        read_events(csv)


# ----------------------------------------------------------------------------- graphs


def _image(spec, names) -> Any:
    from lsd.gee import event_graph as layers

    return graph_of(layers.build_event_image(spec, CFG, names))


def _s2_loads(root: Any) -> list[Call]:
    return [c for c in calls(root, "ImageCollection.load") if c.args["id"] == S2_SR_COLLECTION]


def test_band_layers_share_dndvi_scenes_and_pixel_choice(ee_offline: Any, norway) -> None:
    names = ["dNDVI", "preB2", "preB11", "postB8A", "preNDVI", "postNDVI"]
    root = _image(norway, names)
    mosaics = calls(root, "ImageCollection.qualityMosaic")
    assert {m.args["qualityBand"] for m in mosaics} == {"NDVI"}
    inputs = [m.args["collection"] for m in mosaics]
    banded = [c for c in inputs if calls(c.args["baseAlgorithm"], "Image.resample")]
    dndvi = [c for c in inputs if c not in banded]
    # dNDVI's two composites (which preNDVI/postNDVI read) and the two band composites ...
    assert len(banded) == len(dndvi) == 2
    # ... made from the very same masked scenes
    assert {id(c.args["collection"]) for c in banded} == {id(c) for c in dndvi}
    assert len(_s2_loads(root)) == len(_s2_loads(_image(norway, ["dNDVI"])))
    # the 20 m bands are resampled bilinearly per scene, nothing else is
    (resample,) = calls(root, "Image.resample")
    assert resample.args["mode"] == "bilinear"
    assert resample.args["image"].args["bandSelectors"] == list(S2_BANDS_20M)
    (overwrite,) = [c for c in calls(root, "Image.addBands") if c.args.get("overwrite")]
    assert overwrite.args["srcImg"] is resample
    # reflectance: DN x 1e-4
    scales = [c for c in calls(root, "Image.multiply") if c.args["image2"].name == "Image.constant"]
    assert any(c.args["image2"].args["value"] == pytest.approx(1e-4) for c in scales)


def _scene_chain(root: Any) -> dict[bool, int]:
    """For each sort direction (True = ascending = post), how many acquisitions are listed."""
    out = {}
    for tolist in calls(root, "Collection.toList"):
        limit = tolist.args["collection"]
        assert limit.name == "Collection.limit" and limit.args["key"] == "system:time_start"
        distinct = limit.args["collection"]
        assert distinct.name == "Collection.distinct"
        assert distinct.args["properties"] == "lsd_acquisition"
        out[limit.args["ascending"]] = tolist.args["count"]
    return out


def test_scene_layers_take_the_nearest_acquisitions(ee_offline: Any, norway) -> None:
    names = group_layers(["s1scenes"], "3+1")
    root = _image(norway, names)
    # latest first before the event, earliest first after it; as many as asked
    assert _scene_chain(root) == {False: 3, True: 1}
    assert sorted(c.args["index"] for c in calls(root, "List.get")) == [0, 0, 1, 2]
    # an acquisition is a UTC day and relative orbit, its images mosaicked, then dB
    formats = {c.args["format"] for c in calls(root, "Date.format")}
    assert "YYYY-MM-dd" in formats
    assert [c.args["pattern"] for c in calls(root, "Number.format")] == ["%d"]
    dbs = calls(root, "Image.log10")
    assert len(dbs) == len(names)
    assert all(c.args["value"].args["input"].name == "ImageCollection.mosaic" for c in dbs)
    pols = sorted(c.args["value"].args["bandSelectors"][0] for c in dbs)
    assert pols == ["VH"] * 4 + ["VV"] * 4
    loads = {c.args["id"] for c in calls(root, "ImageCollection.load")}
    assert S1_COLLECTION in loads and S2_SR_COLLECTION not in loads


def test_scenes_are_flattened_exactly_as_the_composites(ee_offline: Any, norway) -> None:
    root = _image(norway, ["preVV", "preVV_1"])
    (median,) = calls(root, "reduce.median")
    flattened = median.args["collection"].args["collection"]  # flat, then select(VV, VH)
    assert flattened.name == "Collection.map" and calls(flattened, "Image.tan")
    scene_filters = [
        c for c in calls(root, "Collection.filter")
        if c.args["filter"].args.get("rightField") == "system:index"
    ]  # fmt: skip
    (by_ids,) = scene_filters
    assert by_ids.args["collection"] is flattened
    (mosaic,) = [c for c in calls(root, "ImageCollection.mosaic") if c.args["collection"] is by_ids]
    db_inputs = [c.args["value"].args.get("input") for c in calls(root, "Image.log10")]
    assert any(i is mosaic for i in db_inputs)  # the scene: its mosaic, in dB


DAY = 86_400_000
T0 = 1_564_444_800_000  # 2019-07-30T00:00 UTC, the Norway event


def _listing(*images: tuple[int, int]) -> dict[str, Any]:
    """A facts listing of one pass and window from (day offset, relative orbit) per image."""
    return {
        "ids": [f"img{k}" for k in range(len(images))],
        "times": [T0 + day * DAY + k * 25_000 for k, (day, _) in enumerate(images)],
        "relative_orbits": [rel for _, rel in images],
    }


def _facts(pre_desc, post_desc, pre_asc=(), post_asc=()) -> dict[str, Any]:
    return {
        "s1": {
            "pre": {"DESCENDING": _listing(*pre_desc), "ASCENDING": _listing(*pre_asc)},
            "post": {"DESCENDING": _listing(*post_desc), "ASCENDING": _listing(*post_asc)},
        },
        "s2": {
            w: {"L2A": [f"s2{w}"], "L2A_maskable": [f"s2{w}"], "L2A_times": [T0]}
            for w in ("pre", "post")
        },  # fmt: skip
        "glo30_tiles": 1,
    }


def test_acquisitions_are_counted_and_chosen_from_the_facts(ee_offline: Any, norway) -> None:
    """An acquisition is a UTC day and relative orbit: two slices of one pass are one scene."""
    from lsd.gee import event_facts, s1scenes

    names = group_layers(["paper", "s1scenes", "s2bands"], "1+3")
    request = event_facts.facts_request(norway, CFG, names, ee_offline.Geometry.Point(6, 61))
    listing = graph_of(request)["s1"]
    assert set(listing) == {"pre", "post"} and set(listing["pre"]) == {"DESCENDING", "ASCENDING"}
    assert set(listing["pre"]["DESCENDING"]) == {"ids", "times", "relative_orbits"}
    only_bands = graph_of(event_facts.facts_request(norway, CFG, ["preB2"], None))
    assert "s1" not in only_bands and set(only_bands["s2"]) == {"pre"}

    # pre: day -20 orbit 37 (two slices), day -8 orbit 139, day -8 orbit 37 (25 s later)
    pre = _listing((-20, 37), (-20, 37), (-8, 139), (-8, 37))
    acqs = s1scenes.acquisitions_of(pre, "DESCENDING", "pre")
    assert [a.ids for a in acqs] == [("img3",), ("img2",), ("img0", "img1")]  # latest first
    assert acqs[2].key == "2019-07-10_37" and acqs[2].time_ms == T0 - 20 * DAY
    post = _listing((12, 37), (0, 37), (6, 139))
    assert [a.ids for a in s1scenes.acquisitions_of(post, "DESCENDING", "post")] == [
        ("img1",), ("img2",), ("img0",)]  # fmt: skip

    facts = _facts([(-20, 37), (-20, 37), (-8, 37)], [(1, 37), (7, 37), (13, 37)])
    out = event_facts.resolve(norway, CFG, names, facts)
    assert out.resolved.passes == ("DESCENDING",) and not out.problems
    assert [a.ids for a in out.scenes["pre"]] == [("img2",)]
    assert [a.ids for a in out.scenes["post"]] == [("img0",), ("img1",), ("img2",)]
    # three images but two acquisitions after the event: not enough for 1+3
    short = _facts([(-8, 37)], [(1, 37), (1, 37), (7, 37)])
    (problem,) = event_facts.resolve(norway, CFG, names, short).problems
    assert "holds 2 Sentinel-1 acquisition(s)" not in problem  # AUTO: the one-line summary
    assert "post 2019-07-30..2019-09-28: 3 asked for (postVV_3)" in problem
    assert "acquisitions per pass: DESCENDING: pre 1, post 2; ASCENDING: pre 0, post 0" in problem


def test_both_takes_scenes_from_one_pass(norway) -> None:
    """BOTH composites every pass with what the layers need; the scenes come from the first
    of them, so pre and post scenes share their geometry."""
    from dataclasses import replace

    from lsd.gee import event_facts

    names = group_layers(["s1scenes"], "3+1")
    both = replace(norway, orbit="BOTH")
    facts = _facts([(-20, 37), (-14, 37), (-8, 37)], [(1, 37)],
                   [(-19, 88), (-7, 88), (-1, 88)], [(2, 88)])  # fmt: skip
    out = event_facts.resolve(both, CFG, names, facts)
    assert out.resolved.passes == ("DESCENDING", "ASCENDING") and not out.problems
    assert {a.orbit for acqs in out.scenes.values() for a in acqs} == {"DESCENDING"}
    # descending short of acquisitions: BOTH falls back to ascending alone, and says so
    facts["s1"]["pre"]["DESCENDING"] = _listing((-8, 37), (-8, 37))
    out = event_facts.resolve(both, CFG, names, facts)
    assert out.resolved.passes == ("ASCENDING",)
    assert out.warnings == [
        "event 05-norway: orbit BOTH, but only ASCENDING has the Sentinel-1 acquisitions asked "
        "for in every window; it is used alone"
    ]
    assert [a.key for a in out.scenes["pre"]] == ["2019-07-29_88", "2019-07-23_88", "2019-07-11_88"]


def test_provenance_of_the_new_groups_is_plain_values(norway) -> None:
    from lsd.gee import event_facts
    from lsd.gee import event_graph as layers

    names = group_layers(["paper", "s1scenes", "s2bands", "ndvi"], "1+3")
    facts = _facts([(-8, 37)], [(1, 37), (7, 37), (13, 37)])
    out = event_facts.resolve(norway, CFG, names, facts)
    constants = event_facts.Constants({"DESCENDING": 1.745}, 0.8, s1_scenes=out.scenes)
    prov = layers.event_provenance(norway, CFG, names, out.resolved, constants)
    assert {"s1_scenes", "s2_bands", "s2_ndvi", "s2_level", "s1_passes"} <= set(prov)
    scenes = prov["s1_scenes"]
    assert scenes["pass"] == "DESCENDING" and scenes["asked"] == {"pre": 1, "post": 3}
    (pre,) = scenes["scenes"]["pre"]
    assert pre["ids"] == ["img0"] and pre["days_from_event"] == -8.0
    assert [s["time"][:10] for s in scenes["scenes"]["post"]] == [
        "2019-07-31", "2019-08-06", "2019-08-12"]  # fmt: skip
    assert prov["s2_bands"]["values"].startswith("surface reflectance (L2A")
    l1c = layers.event_provenance(
        norway, CFG, ["preB2"], event_facts.Resolved(s2_level="L1C"), None
    )
    assert l1c["s2_bands"]["values"].startswith("top-of-atmosphere reflectance (L1C")
    assert l1c["s2_level"] == "L1C" and "NDSI" in l1c["s2_masking"]
    assert "s1_scenes" not in l1c and "s1_passes" not in l1c


def test_tile_graph_carries_the_chosen_scene_ids(ee_offline: Any, norway) -> None:
    from lsd.gee import event_facts
    from lsd.gee import event_graph as layers

    names = group_layers(["s1scenes"], "1+3")
    facts = _facts([(-8, 37)], [(1, 37), (1, 37), (7, 37), (13, 37)])
    out = event_facts.resolve(norway, CFG, names, facts)
    assert not out.problems
    constants = event_facts.Constants({"DESCENDING": 1.745}, 0.8, s1_scenes=out.scenes)
    root = graph_of(layers.build_event_image(norway, CFG, names, (), out.resolved, constants))
    for call in ("Collection.distinct", "Collection.limit", "Image.reduceRegion"):
        assert not calls(root, call), call
    id_lists = [
        c.args["leftValue"] for c in calls(root, "Filter.listContains")
        if c.args.get("rightField") == "system:index"
    ]  # fmt: skip
    assert set(map(tuple, id_lists)) == {("img0",), ("img0", "img1"), ("img2",), ("img3",)}
    # each scene is masked on its own acquisition's layover and shadow flags
    masks = calls(root, "Image.updateMask")
    assert len(masks) == len(names)


def test_unknown_layer_is_refused_naming_the_groups(ee_offline: Any, norway) -> None:
    from lsd.gee import event_graph as layers

    with pytest.raises(InvalidValue, match="layer 'preB1' cannot be fetched.*paper, s2bands"):
        layers.build_event_image(norway, CFG, ["preB1"])


# ----------------------------------------------------------------------------- requests


def test_band_groups_split_evenly_and_stay_under_the_limits() -> None:
    assert [len(g) for g in download.band_groups(15)] == [15]
    assert [len(g) for g in download.band_groups(16)] == [16]
    assert [len(g) for g in download.band_groups(17)] == [9, 8]
    assert [len(g) for g in download.band_groups(49)] == [13, 12, 12, 12]
    groups = download.band_groups(3000, max_bands=5000)
    assert max(len(g) for g in groups) <= download.MAX_BANDS
    assert [i for g in download.band_groups(49) for i in g] == list(range(49))


def test_requests_cover_the_stack_once(norway) -> None:
    from lsd.spec import event_grid

    grid = event_grid(norway, 10.0)
    for n in (1, 15, 49, 200):
        requests = download.plan_requests(grid, n)
        cells = {}
        for window, bands in requests:
            assert window.width * window.height * len(bands) * 4 <= download.MAX_REQUEST_BYTES
            for b in bands:
                key = (window.col_off, window.row_off, b)
                assert key not in cells
                cells[key] = window.width * window.height
        assert sum(cells.values()) == grid.width * grid.height * n
