"""The generated events of `lsd demo`: the event-folder contract, the value ranges `lsd fetch`
writes, the physics the layers share, and determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lsd.events import list_events, read_event
from lsd.layers import LANDCOVER_CLASSES, PAPER_LAYERS
from lsd.pipeline.cli import main
from lsd.pipeline.sources.synthetic import (
    SyntheticSource,
    _slope,
    event_roles,
    generate_scene,
    write_synthetic_events,
)
from lsd.rasters import read_label, read_stack


def layer(scene, name: str) -> np.ndarray:
    return scene.layers[PAPER_LAYERS.index(name)]


@pytest.fixture(scope="module")
def scenes():
    return [generate_scene(0, n, 128) for n in range(1, 6)]


def test_event_folders_follow_the_contract(tmp_path: Path) -> None:
    folders = write_synthetic_events(tmp_path / "events", 4, size=96, seed=3)
    events = list_events(tmp_path / "events")
    assert [e.path for e in events] == folders
    assert [e.role for e in events] == ["train", "train", "val", "test"]
    for ev in events:
        assert ev.layers == PAPER_LAYERS
        assert ev.grid.width == ev.grid.height == 96
        assert ev.grid.crs.to_epsg() // 100 in (326, 327)  # a UTM zone, as lsd fetch writes
        assert ev.grid.transform.a == 10.0 and ev.grid.transform.e == -10.0
        assert ev.grid.transform.c % 10 == 0 and ev.grid.transform.f % 10 == 0
        meta = json.loads((ev.path / "event.json").read_text())
        assert meta["format"] == "lsd-event/1" and meta["source"]["kind"] == "synthetic"
        assert meta["grid"]["pixel_m"] == 10.0 and meta["label"]["written"] is True
        assert meta["conventions"]["radar_scale"]["value"] == "db"
        label, _ = read_label(ev.label)
        assert set(np.unique(label).tolist()) <= {0, 1}
    stack, names, _ = read_stack(folders[0] / "stack.tif")
    assert stack.dtype == np.float32 and names == PAPER_LAYERS


def test_value_ranges_are_those_of_a_fetched_stack(scenes) -> None:
    for s in scenes:
        distorted = (layer(s, "layover") == 1) | (layer(s, "shadow") == 1)
        for flag in ("layover", "shadow"):
            assert set(np.unique(layer(s, flag)).tolist()) <= {0.0, 1.0}
        for name in ("preVV", "postVV", "dVV", "preVH", "postVH", "dVH"):
            x = layer(s, name)
            assert np.array_equal(np.isnan(x), distorted), name  # NaN exactly where distorted
        for name, lo, hi in (("preVV", -30, 2), ("postVV", -30, 4), ("preVH", -35, -5),
                             ("postVH", -35, -5), ("liaDeg", 0, 180), ("slope", 0, 90),
                             ("dNDVI", -1.5, 1.0), ("canopyHeight", 0, 60)):  # fmt: skip
            x = layer(s, name)
            assert lo <= np.nanmin(x) and np.nanmax(x) <= hi, name
        dvv = layer(s, "postVV") - layer(s, "preVV")
        assert np.allclose(layer(s, "dVV"), dvv, equal_nan=True, atol=1e-5)
        cover = layer(s, "landCover")
        assert set(np.unique(cover).astype(int).tolist()) <= set(LANDCOVER_CLASSES)
        no_canopy = np.isin(cover, (5, 8))  # water, snow: NaN as the canopy product leaves them
        assert np.array_equal(np.isnan(layer(s, "canopyHeight")), no_canopy)
        assert len(np.unique(layer(s, "kgClimate"))) == 1
        assert np.isfinite(layer(s, "elevation")).all() and np.isfinite(layer(s, "slope")).all()


def test_slope_is_the_dem_s_slope_and_terrain_is_mountainous(scenes) -> None:
    for s in scenes:
        slope, _, _ = _slope(layer(s, "elevation"))
        assert np.allclose(layer(s, "slope"), slope, atol=1e-3)
        assert 15 < float(np.mean(slope)) < 40


def test_layover_faces_the_radar_in_the_east(scenes) -> None:
    """A descending pass looks west: layover sits on slopes whose downhill side faces east."""
    for s in scenes:
        lay = layer(s, "layover") == 1
        if lay.sum() < 20:
            continue
        _, downhill_east, _ = _slope(layer(s, "elevation"))
        assert downhill_east[lay].mean() > 0.8
        assert layer(s, "liaDeg")[lay].mean() < layer(s, "liaDeg")[~lay].mean()


def test_scars_show_in_dndvi_and_backscatter_and_on_slopes(scenes) -> None:
    for s in scenes:
        slide = s.label == 1
        assert 0.002 < slide.mean() < 0.1 and s.facts["landslides"] >= 1
        inside, outside = (float(np.nanmean(layer(s, "dNDVI")[m])) for m in (slide, ~slide))
        assert inside < outside - 0.3
        dvv = np.abs(layer(s, "dVV"))
        assert np.nanmean(dvv[slide]) > np.nanmean(dvv[~slide]) + 1.0
        dvh = layer(s, "dVH")
        assert np.nanmean(dvh[slide]) < np.nanmean(dvh[~slide]) - 1.0
        assert np.mean(layer(s, "slope")[slide]) > 15
    # NDVI also drops where no landslide is (clear-cuts, harvests): dNDVI alone is not the label
    drops = sum(int(((layer(s, "dNDVI") < -0.25) & (s.label == 0)).sum()) for s in scenes)
    assert drops > 100


def test_deterministic_and_independent_of_the_number_of_events(tmp_path: Path) -> None:
    a, b = generate_scene(7, 2, 80), generate_scene(7, 2, 80)
    assert np.array_equal(a.layers, b.layers, equal_nan=True) and np.array_equal(a.label, b.label)
    assert not np.array_equal(a.label, generate_scene(8, 2, 80).label)
    few = SyntheticSource(3, size=80, seed=7).items()
    many = SyntheticSource(9, size=80, seed=7).items()
    assert (few[1].event_id, few[1].number, few[1].seed) == (
        many[1].event_id, many[1].number, many[1].seed)  # fmt: skip
    folder = write_synthetic_events(tmp_path / "e", 3, size=80, seed=7)[1]
    stack, _, _ = read_stack(folder / "stack.tif")
    assert np.array_equal(stack, a.layers, equal_nan=True)
    assert np.array_equal(read_label(folder / "label.tif")[0], a.label)
    assert read_event(folder).role == "val"  # of 3 events: train, val, test


def test_roles_and_sizes_are_checked() -> None:
    assert event_roles(10) == ["train"] * 7 + ["val"] * 2 + ["test"]
    assert event_roles(3) == ["train", "val", "test"]
    with pytest.raises(ValueError, match="at least 3"):
        event_roles(2)
    with pytest.raises(ValueError, match="size 32 is outside 64..2048"):
        SyntheticSource(4, size=32)


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--size", "10"], "Error: --size 10 is outside 64..2048"),
     (["--events", "2"], "Error: --events: 2 event(s) cannot be split"),
     (["--epochs", "0"], "Error: --epochs 0 must be at least 1")],
)  # fmt: skip
def test_demo_refuses_sizes_in_one_line_before_writing(tmp_path: Path, args, needle) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--out", str(out), *args])
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith(needle), line
    assert not out.exists()
