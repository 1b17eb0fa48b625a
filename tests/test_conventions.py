"""Conventions: the record, stack tags, detection from pixels, import, inspect, the ee graph.

The synthetic stacks (tests/conventions_fixtures.py) are made with lsd.gee.s1's own formulas
under each flattening sign, flag polarity and pass; detection must tell each back.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from shapely.geometry import box

from lsd import conventions as cv
from lsd.conventions_detect import (
    Geometry,
    detect,
    detect_stack,
    local_incidence_deg,
    range_azimuth_slopes,
    slope_aspect,
)
from lsd.errors import ConventionMismatch, InvalidFile
from lsd.events import read_event
from lsd.layers import PAPER_LAYERS
from tests.cli import invoke
from tests.conventions_fixtures import (
    LOOK_DEG,
    Arr,
    hills,
    radar_stack,
    write_radar_event,
)

CONVENTIONS = ("vollrath", "gee_s1_ard")
POLARITIES = ("1=distorted", "1=valid")
ORBITS = ("DESCENDING", "ASCENDING")
GEO = Geometry(10.0, True)


# ----------------------------------------------------------------------------- the record


def test_record_shape_is_checked() -> None:
    good = {"flattening": {"value": "gee_s1_ard", "how": "detected", "evidence": "x"}}
    rec = cv.check_record(good, "e.json")
    assert set(rec) == set(cv.NAMES) and rec["distortion_flags"]["how"] == "unknown"
    for bad, words in (
        ([], "must be an object"),
        ({"radar_scale": {"value": "decibel", "how": "recorded"}}, "'decibel' must be db or"),
        ({"flattening": {"value": "vollrath", "how": "guessed"}}, "how 'guessed'"),
        ({"flattening": {"how": "recorded"}}, "needs a 'value'"),
    ):
        with pytest.raises(InvalidFile, match=words):
            cv.check_record(bad, "e.json")


def test_which_layers_a_convention_changes() -> None:
    assert cv.affected_layers("flattening", PAPER_LAYERS) == [
        "preVV",
        "postVV",
        "dVV",
        "preVH",
        "postVH",
        "dVH",
        "layover",
        "shadow",
        "liaDeg",
    ]
    assert cv.affected_layers("distortion_flags", PAPER_LAYERS) == ["layover", "shadow"]
    assert cv.affected_layers("radar_scale", ["postVV_2", "VH", "dNDVI"]) == ["postVV_2", "VH"]
    assert cv.affected_layers("snow_mask", PAPER_LAYERS + ("preB8A",)) == [
        "landCover", "dNDVI", "preB8A"]  # fmt: skip
    # Landslide4Sense patches hold no layer a strict convention changes
    assert cv.relevant(["B2", "B3", "slope", "elevation"]) == ["dem", "source"]


def vollrath_record(**over: str) -> cv.Conventions:
    rec = {"flattening": cv.recorded("vollrath"), "distortion_flags": cv.recorded("1=distorted"),
           "radar_scale": cv.recorded("db")}  # fmt: skip
    rec.update({k: cv.recorded(v) for k, v in over.items()})
    return cv.complete(rec)


def test_compare_names_layers_and_kind_of_difference() -> None:
    model = vollrath_record(snow_mask="grow 300 m", dem="USGS/SRTMGL1_003")
    stack = vollrath_record(flattening="gee_s1_ard", snow_mask="erode 300 m",
                            dem="COPERNICUS/DEM/GLO30")  # fmt: skip
    comp = cv.compare(model, stack, ["postVV", "liaDeg", "dNDVI", "elevation"])
    assert [(d.name, d.layers) for d in comp.refusals] == [("flattening", ("postVV", "liaDeg"))]
    assert [d.name for d in comp.cautions] == ["snow_mask"]
    assert [d.name for d in comp.notes] == ["dem"]
    line = comp.refusals[0].line("s.tif", "the model m")
    assert line == ("s.tif: layer(s) postVV, liaDeg: flattening is gee_s1_ard (recorded) but the "
                    "training data of the model m had vollrath (recorded)")  # fmt: skip
    # a convention no model layer depends on is no difference
    assert not cv.compare(model, stack, ["elevation"]).refusals
    # unknown is not a difference, but is reported for the strict conventions
    comp = cv.compare(model, cv.complete({}), ["layover"])
    assert not comp.differences and comp.unknown_in_stack == ("flattening", "distortion_flags")


def test_combine_refuses_a_mixed_dataset_naming_both() -> None:
    a = vollrath_record(dem="USGS/SRTMGL1_003")
    b = vollrath_record(dem="COPERNICUS/DEM/GLO30")
    c = vollrath_record(distortion_flags="1=valid")
    both = cv.combine([("event a", a), ("event b", b), ("event x", None)])
    assert both["flattening"]["value"] == "vollrath" and both["flattening"]["how"] == "recorded"
    assert both["flattening"]["evidence"].startswith("2 of 3 stack(s)")
    assert both["dem"]["value"].startswith("mixed: USGS/SRTMGL1_003 (1), COPERNICUS")
    with pytest.raises(ConventionMismatch, match=r"distortion_flags differs within one dataset: "
                       r"event a has 1=distorted \(recorded.*event c has 1=valid"):  # fmt: skip
        cv.combine([("event a", a), ("event c", c)])


def test_event_folder_carries_conventions_in_event_json_and_tags(tmp_path: Path) -> None:
    rec = vollrath_record(distortion_flags="1=valid")
    folder = write_radar_event(tmp_path / "ev", radar_stack(polarity="1=valid", size=64),
                               conventions=rec)  # fmt: skip
    meta = json.loads((folder / "event.json").read_text())
    assert meta["conventions"]["distortion_flags"]["value"] == "1=valid"
    with rasterio.open(folder / "stack.tif") as src:
        assert json.loads(src.tags()[cv.STACK_TAG]) == rec
        i = src.descriptions.index("layover") + 1
        assert src.tags(i)["meaning"].startswith("1 = valid (no layover), 0 = layover")
        assert src.tags(i)["conventions"] == "distortion_flags 1=valid; flattening vollrath"
        assert src.tags(src.descriptions.index("preVV") + 1)["conventions"] == (
            "flattening vollrath; radar_scale db"
        )
    # the stack says it alone, once copied out of its folder
    alone = tmp_path / "copy.tif"
    alone.write_bytes((folder / "stack.tif").read_bytes())
    found, where = cv.of_stack(alone)
    assert found == rec and cv.STACK_TAG in where
    assert cv.of_stack(folder / "stack.tif")[1].endswith("event.json")


# ----------------------------------------------------------------------------- detection


def test_detector_geometry_is_lsd_fetchs() -> None:
    """The numpy geometry of the detector equals lsd.gee.s1's formulas, and the DEM's numeric
    slope and aspect are the analytic ones."""
    from lsd.gee import s1

    terrain = hills(96)
    slope, aspect = slope_aspect(terrain["elevation"], 10.0)
    inner = (slice(2, -2), slice(2, -2))
    error = np.abs(np.degrees(slope - terrain["slope"]))[inner]
    assert np.nanmax(error) < 1.5 and np.nanmedian(error) < 0.05
    diff = np.angle(np.exp(1j * (aspect - terrain["aspect"])))[inner]
    steep = terrain["slope"][inner] > math.radians(5)
    off = np.abs(np.degrees(diff[steep]))
    assert np.percentile(off, 99) < 1.0 and np.median(off) < 0.1  # central differences
    theta, look = math.radians(37), math.radians(100)
    s, a = terrain["slope"], terrain["aspect"]
    ar, az = range_azimuth_slopes(s, a, look)
    ours = local_incidence_deg(theta, ar, az)
    phi_r = s1.relative_look(Arr(look), Arr(a), "vollrath")
    sr, saz = s1.range_slope(Arr(s), phi_r), s1.azimuth_slope(Arr(s), phi_r)
    np.testing.assert_allclose(ours, s1.local_incidence_deg(Arr(theta), sr, saz).a, atol=1e-9)


@pytest.mark.parametrize("orbit", ORBITS)
@pytest.mark.parametrize("polarity", POLARITIES)
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_stacks_written_both_ways_are_detected(convention: str, polarity: str, orbit: str):
    layers = radar_stack(convention, polarity, orbit)
    for passes in ([orbit], None):  # the pass recorded, or both headings tried
        found = detect(layers, GEO, passes)
        assert found["flattening"]["value"] == convention, found["flattening"]["evidence"]
        assert found["distortion_flags"]["value"] == polarity, found["distortion_flags"]
        assert found["radar_scale"]["value"] == "db"
        assert all(e["how"] == "detected" for e in found.values())
    evidence = found["flattening"]["evidence"]
    assert "mirror images; no pass recorded" in evidence
    vollrath_look = LOOK_DEG[orbit] if convention == "vollrath" else 360 - LOOK_DEG[orbit]
    assert f"look direction {vollrath_look:.0f} deg" in evidence
    assert ("terrain is left in" if convention == "gee_s1_ard" else "flattened out") in evidence
    assert "coincides with layover or shadow = " + ("1" if polarity == "1=distorted" else "0") \
        in found["distortion_flags"]["evidence"]  # fmt: skip


def test_detection_survives_a_coarser_dem() -> None:
    """liaDeg made from the exact slopes, elevation rounded to whole metres and noisy: the fit
    still finds the geometry."""
    layers = radar_stack("gee_s1_ard", "1=distorted", "DESCENDING", seed=3)
    rng = np.random.default_rng(7)
    z = layers["elevation"]
    layers["elevation"] = np.round(z + rng.normal(0, 0.5, z.shape))
    found = detect(layers, GEO, ["DESCENDING"])
    assert found["flattening"]["value"] == "gee_s1_ard", found["flattening"]["evidence"]


def test_what_cannot_be_told_is_unknown_with_the_reason() -> None:
    layers = radar_stack(size=96)
    # flat ground: no slope to read a look direction from
    flat = dict(layers, elevation=np.full_like(layers["elevation"], 300.0))
    assert "too flat to tell" in detect(flat, GEO)["flattening"]["evidence"]
    # no liaDeg
    no_lia = {k: v for k, v in layers.items() if k != "liaDeg"}
    assert detect(no_lia, GEO)["flattening"] == cv.unknown("needs the liaDeg and elevation layers")
    # liaDeg that no geometry explains
    noise = dict(layers, liaDeg=np.random.default_rng(1).uniform(20, 60, layers["liaDeg"].shape))
    assert "no look direction explains liaDeg" in detect(noise, GEO)["flattening"]["evidence"]
    # flags that are not flags, and flags with no rare value
    odd = dict(layers, layover=layers["layover"] * 3)
    assert "values other than 0 and 1" in detect(odd, GEO)["distortion_flags"]["evidence"]
    half = {"layover": (np.arange(96 * 96).reshape(96, 96) % 2).astype(np.float32)}
    assert detect(half, GEO)["distortion_flags"]["how"] == "unknown"
    # without VV no data (distortions kept), the rare value decides
    kept = {k: v for k, v in radar_stack("vollrath", "1=valid", size=96).items()}
    for name in ("preVV", "postVV", "preVH", "postVH"):
        kept[name] = np.nan_to_num(kept[name], nan=-9.0)
    flags = detect(kept, GEO)["distortion_flags"]
    assert flags["value"] == "1=valid" and "judged by shares" in flags["evidence"]
    # a rotated grid: aspect cannot be read from the rows
    assert "rotated" in detect(layers, Geometry(10.0, False))["flattening"]["evidence"]


def test_linear_power_is_detected() -> None:
    found = detect(radar_stack(size=96, linear=True), GEO, ["DESCENDING"])
    assert found["radar_scale"]["value"] == "linear"
    assert found["flattening"]["value"] == "vollrath"  # read in dB for the VV test


def test_detect_stack_reads_a_file_without_metadata(tmp_path: Path) -> None:
    folder = write_radar_event(tmp_path / "ev", radar_stack("gee_s1_ard", "1=valid", size=128))
    assert cv.of_stack(folder / "stack.tif")[0] is None
    found = detect_stack(folder / "stack.tif", passes=["DESCENDING"], window=100)
    assert (found["flattening"]["value"], found["distortion_flags"]["value"]) == (
        "gee_s1_ard", "1=valid")  # fmt: skip


# ----------------------------------------------------------------------------- import


def write_paper_like(root: Path, conventions: dict[int, tuple[str, str]]) -> Path:
    """global_dataset/ whose inputs carry synthetic radar made under the conventions given per
    event number (the other layers from the paper's fixture)."""
    from lsd.pipeline.paper.facts import PAPER_TEST_EVENT
    from tests.paper_fixtures import event_arrays, write_input, write_label

    ds = root / "global_dataset"
    for n, (conv, pol) in conventions.items():
        part = "test" if n == PAPER_TEST_EVENT else "train_val"
        radar = radar_stack(conv, pol, "DESCENDING", size=128, seed=n)
        x, y = event_arrays(n, 128, 128)
        for i, name in enumerate(PAPER_LAYERS[:11]):
            x[..., i] = radar[name]
        write_input(ds / part / "input" / f"{n}_input.tif", x)
        write_label(ds / part / "label" / f"{n}_label.tif", y)
    return ds


def test_import_paper_detects_and_records(tmp_path: Path) -> None:
    src = write_paper_like(tmp_path / "src", {1: ("gee_s1_ard", "1=valid"),
                                              5: ("gee_s1_ard", "1=valid")})  # fmt: skip
    result = invoke("import", "paper", src, tmp_path / "data", "--no-progress")
    assert result.exit_code == 0, result.output
    for ev in (read_event(p) for p in sorted((tmp_path / "data").iterdir()) if p.is_dir()):
        rec = ev.meta["conventions"]
        assert rec["flattening"]["value"] == "gee_s1_ard" and rec["flattening"]["how"] == "detected"
        assert "no pass recorded" in rec["flattening"]["evidence"]
        assert rec["distortion_flags"]["value"] == "1=valid"
        assert rec["radar_scale"]["value"] == "db"
        assert (rec["snow_mask"]["value"], rec["snow_mask"]["how"]) == ("grow 300 m", "recorded")
        assert rec["source"]["value"].startswith("Ganerod et al.")
        assert rec["dem"]["how"] == "unknown"
        with rasterio.open(ev.stack) as src:
            assert json.loads(src.tags()[cv.STACK_TAG]) == rec


def test_import_refuses_a_dataset_of_two_conventions_naming_both(tmp_path: Path) -> None:
    src = write_paper_like(tmp_path / "src", {1: ("gee_s1_ard", "1=valid"),
                                              2: ("gee_s1_ard", "1=distorted"),
                                              5: ("gee_s1_ard", "1=valid")})  # fmt: skip
    result = invoke("import", "paper", src, tmp_path / "data", "--no-progress")
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "distortion_flags differs within one dataset" in line
    assert "1_input.tif has 1=valid (detected" in line and "2_input.tif has 1=distorted" in line
    assert not (tmp_path / "data").exists()  # checked before anything was written


def test_import_tiles_records_what_it_can(tmp_path: Path) -> None:
    """User tiles named with radar layers are detected; a second tile of the other sign is
    refused naming both."""
    from affine import Affine
    from rasterio.crs import CRS

    src = tmp_path / "tiles"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    for name, conv in (("a", "vollrath"), ("b", "gee_s1_ard")):
        layers = radar_stack(conv, "1=distorted", "DESCENDING", size=96, seed=ord(name))
        data = np.stack(list(layers.values()))
        profile = {
            "driver": "GTiff",
            "width": 96,
            "height": 96,
            "dtype": "float32",
            "crs": CRS.from_epsg(32632),
            "transform": Affine(10, 0, 4e5, 0, -10, 6.8e6),
        }
        with rasterio.open(src / "images" / f"{name}.tif", "w", count=len(layers),
                           **profile) as dst:  # fmt: skip
            dst.write(data)
            for i, n in enumerate(layers, start=1):
                dst.set_band_description(i, n)
        with rasterio.open(src / "masks" / f"{name}.tif", "w", count=1,
                           **{**profile, "dtype": "uint8"}) as dst:  # fmt: skip
            dst.write(np.zeros((1, 96, 96), np.uint8))
    result = invoke(
        "import", "tiles", src, tmp_path / "data", "--mapping", "0:0,1:1", "--no-progress"
    )
    assert result.exit_code == 1, result.output
    assert "flattening differs within one dataset" in result.output
    assert "a.tif has vollrath" in result.output and "b.tif has gee_s1_ard" in result.output
    rec = read_event(tmp_path / "data" / "a").meta["conventions"]
    assert rec["flattening"]["value"] == "vollrath" and rec["source"]["how"] == "recorded"


# ----------------------------------------------------------------------------- inspect


def test_inspect_conventions_side_by_side(tmp_path: Path) -> None:
    fetched = write_radar_event(tmp_path / "fetched", radar_stack(size=96),
                                conventions=vollrath_record(source="earthengine"))  # fmt: skip
    bare = tmp_path / "published.tif"
    other = write_radar_event(tmp_path / "other", radar_stack("gee_s1_ard", "1=valid", size=128))
    bare.write_bytes((other / "stack.tif").read_bytes())
    result = invoke("inspect", "--conventions", fetched, bare, "--json", tmp_path / "c.json")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split("|")[0].strip() == "convention"
    row = {ln.split("|")[0].strip(): [c.strip() for c in ln.split("|")[1:]] for ln in lines[2:9]}
    assert row["flattening"] == ["vollrath (recorded)", "gee_s1_ard (detected)"]
    assert row["distortion_flags"] == ["1=distorted (recorded)", "1=valid (detected)"]
    assert row["dem"][1] == "unknown (unknown)"
    assert any(ln.startswith(f"{bare}: ") and "detected from the pixels" in ln for ln in lines)
    assert any("no pass recorded" in ln for ln in lines)  # evidence shown
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["stacks"][1]["detected_from_pixels"] is True


# ----------------------------------------------------------------------------- the ee graph


def flag_output(root: Any, name: str) -> Any:
    """What the stack graph renames to `name`, below its toFloat."""
    from tests.ee_offline import calls

    (renamed,) = [c for c in calls(root, "Image.rename") if c.args.get("names") == [name]
                  and c.args["input"].name == "Image.toFloat"]  # fmt: skip
    return renamed.args["input"].args["value"]


def test_flag_polarity_is_chosen_at_the_output(ee_offline: Any) -> None:
    from lsd.gee import event_graph as layers
    from lsd.gee.config import FetchConfig
    from lsd.spec import make_spec
    from tests.ee_offline import calls, graph_of

    spec = make_spec("ev", dt.date(2020, 6, 1), box(7.0, 61.0, 7.02, 61.01))
    for polarity, inverted in (("1=distorted", False), ("1=valid", True)):
        cfg = FetchConfig(distortion_flags=polarity)
        root = graph_of(layers.build_event_image(spec, cfg, ["preVV", "layover", "shadow"]))
        for name in ("layover", "shadow"):
            assert (flag_output(root, name).name == "Image.not") is inverted
        # VV is masked on the distortions (1 = distorted inside the graph) either way
        masks = [c.args["mask"] for c in calls(root, "Image.updateMask")]
        assert any(getattr(m, "name", "") == "Image.not" for m in masks)


def test_worked_numbers_of_docs_conventions() -> None:
    """docs/conventions.md: a 30 degree slope, incidence 37, look 100 (descending), the terrain
    brightening raw gamma0 as the volume model says. Vollrath removes it; gee_s1_ard leaves
    terrain in (dB) and mirrors liaDeg east-west."""
    from lsd.gee import s1

    def after(convention: str, aspect: float) -> tuple[float, float]:
        theta, slope, look = Arr(math.radians(37)), Arr(math.radians(30)), Arr(math.radians(100))
        aspect_r = Arr(math.radians(aspect))
        true = s1.range_slope(slope, s1.relative_look(look, aspect_r, "vollrath"))
        raw = 10 * math.log10(float(s1.volume_factor(theta, true).a))
        phi_r = s1.relative_look(look, aspect_r, convention)
        ar, az = s1.range_slope(slope, phi_r), s1.azimuth_slope(slope, phi_r)
        f = 10 * math.log10(float(s1.volume_factor(theta, ar).a))
        left = raw + (f if convention == "gee_s1_ard" else -f)
        return round(left, 2), round(float(s1.local_incidence_deg(theta, ar, az).a), 1)

    assert [after("vollrath", a) for a in (0, 90, 180, 270)] == [
        (0.0, 50.3),
        (0.0, 9.3),
        (0.0, 42.0),
        (0.0, 66.7),
    ]
    assert [after("gee_s1_ard", a) for a in (0, 90, 180, 270)] == [
        (-1.77, 50.3),
        (2.78, 66.7),
        (1.87, 42.0),
        (2.78, 9.3),
    ]


def test_added_layers_keep_the_stacks_conventions(tmp_path: Path) -> None:
    from lsd.events import append_layers

    rec = vollrath_record(distortion_flags="1=valid")
    folder = write_radar_event(tmp_path / "ev", radar_stack(polarity="1=valid", size=64),
                               conventions=rec)  # fmt: skip
    append_layers(folder, ["coherence"], np.zeros((1, 64, 64), np.float32), [{"name": "x"}])
    assert read_event(folder).meta["conventions"] == rec
    with rasterio.open(folder / "stack.tif") as src:
        assert json.loads(src.tags()[cv.STACK_TAG]) == rec
        assert src.tags(src.descriptions.index("shadow") + 1)["meaning"].startswith("1 = valid")


def test_a_folder_fetched_before_conventions_says_them_through_its_settings(tmp_path: Path):
    """event.json of an older lsd fetch: source.config holds look_convention and the snow mask;
    its flags were 1 = distorted and its backscatter dB."""
    source = {
        "kind": "earthengine",
        "config": {
            "look_convention": "gee_s1_ard",
            "snow_mode": "grow",
            "snow_buffer_m": 300.0,
            "mask_distortions": True,
        },
        "provenance": {"dem_asset": "USGS/SRTMGL1_003"},
        "s1_passes": ["DESCENDING"],
    }
    folder = write_radar_event(tmp_path / "old", radar_stack("gee_s1_ard", size=64), source=source)
    rec, where = cv.of_stack(folder / "stack.tif")
    assert where.endswith("event.json")
    assert {n: rec[n]["value"] for n in cv.NAMES} == {
        "flattening": "gee_s1_ard", "distortion_flags": "1=distorted", "radar_scale": "db",
        "distortion_masking": "post_window_union",
        "snow_mask": "grow 300 m", "dem": "USGS/SRTMGL1_003", "land_cover": "unknown",
        "source": "earthengine",
    }  # fmt: skip
    assert "before lsd recorded conventions" in rec["flattening"]["evidence"]
    # other sources without a record say nothing
    meta = {"source": {"kind": "tiles"}}
    assert cv.of_event_meta(meta, "e.json") is None


def test_records_of_other_sources_and_newer_names_are_read() -> None:
    """A STAC stack says 'SCL 11 grown 300 m' where a fetch says 'grow 300 m': the same mask. A
    name outside the vocabulary is kept, not compared."""
    model = cv.complete({"snow_mask": cv.recorded("grow 300 m")})
    stac = cv.check_record(
        {"snow_mask": {"value": "SCL 11 grown 300 m", "how": "recorded"},
         "speckle_filter": {"value": "none", "how": "recorded"}}, "e.json",
    )  # fmt: skip
    assert stac["speckle_filter"]["value"] == "none"
    assert not cv.compare(model, stac, ["dNDVI"]).differences
    eroded = cv.complete({"snow_mask": cv.recorded("SCL 11 eroded 300 m")})
    assert [d.name for d in cv.compare(model, eroded, ["dNDVI"]).cautions] == ["snow_mask"]
    # unmasked VV in layover (distortion_masking none) is a caution for radar layers
    masked = cv.complete({"distortion_masking": cv.recorded("per_scene")})
    kept = cv.complete({"distortion_masking": cv.recorded("none")})
    comp = cv.compare(masked, kept, ["postVV", "elevation"])
    assert [(d.name, d.layers) for d in comp.cautions] == [("distortion_masking", ("postVV",))]
