"""The file contract: settings, atomic writes, stack/label round trips and folder checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from lsd.errors import UserError
from lsd.events import list_events, read_event
from lsd.files import atomic_path, check_writable, read_json, write_json
from lsd.layers import BUILTIN_SETTINGS, PAPER_LAYERS, resolve_setting
from lsd.rasters import Grid, read_label, read_layer_names, read_stack, write_label, write_stack

GRID = Grid(40, 30, CRS.from_epsg(32632), from_origin(360000.0, 6820000.0, 10.0, 10.0))


def _event(folder: Path, layers=("a", "b", "c"), grid: Grid = GRID, label=True) -> Path:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(len(layers), grid.height, grid.width)).astype(np.float32)
    data[0, 0, 0] = np.nan
    write_stack(folder / "stack.tif", data, layers, grid)
    if label:
        lab = np.zeros((grid.height, grid.width), np.uint8)
        lab[5:9, 5:9] = 1
        lab[0, :] = 255
        write_label(folder / "label.tif", lab, grid)
    return folder


def test_settings_match_design():
    assert BUILTIN_SETTINGS["s1"] == PAPER_LAYERS[:9]
    assert BUILTIN_SETTINGS["s2"] == ("landCover", "dNDVI")
    assert BUILTIN_SETTINGS["s1s2"][-2:] == ("landCover", "dNDVI")
    assert len(BUILTIN_SETTINGS["s1s2"]) == 11
    assert BUILTIN_SETTINGS["all"] == PAPER_LAYERS
    assert len(PAPER_LAYERS) == 15


def test_resolve_setting_forms(tmp_path):
    assert resolve_setting("s2") == ("landCover", "dNDVI")
    assert resolve_setting(" dNDVI , slope ") == ("dNDVI", "slope")
    assert resolve_setting("slope") == ("slope",)
    cfg = tmp_path / "settings.toml"
    cfg.write_text('[settings]\nl4s_rgb = ["B4", "B3", "B2"]\ns2 = ["dNDVI"]\n')
    assert resolve_setting("l4s_rgb", cfg) == ("B4", "B3", "B2")
    # a user setting may shadow a built-in one: the user's file is explicit
    assert resolve_setting("s2", cfg) == ("dNDVI",)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [("S2", "case-sensitive"), ("a,b,a", "twice"), (" , ", "empty")],
)
def test_resolve_setting_errors(spec, needle):
    with pytest.raises(UserError, match=needle):
        resolve_setting(spec)


def test_settings_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[settings\n")
    with pytest.raises(UserError, match="bad.toml"):
        resolve_setting("x", bad)
    empty = tmp_path / "empty.toml"
    empty.write_text("[settings]\nmine = []\n")
    with pytest.raises(UserError, match="mine"):
        resolve_setting("mine", empty)
    with pytest.raises(UserError, match="not found"):
        resolve_setting("x", tmp_path / "nope.toml")


def test_event_json_pixel_size_is_in_metres_in_every_crs(tmp_path):
    """event.json's grid.pixel_m is metres, as bundles and predict's check read it: a grid in
    degrees (EPSG:4326, 0.0001 degrees near 22 N) says 10.68 m, not 0.0001."""
    from lsd.events import event_record, write_event

    degrees = Grid(8, 8, CRS.from_epsg(4326), from_origin(92.0, 22.0, 0.0001, 0.0001))
    metres = Grid(8, 8, CRS.from_epsg(32646), from_origin(500000, 2400000, 10, 10))
    nominal = Grid(8, 8, None, from_origin(0, 0, 10, 10))
    for name, grid, expected in (("deg", degrees, 10.68), ("utm", metres, 10.0),
                                 ("none", nominal, None)):  # fmt: skip
        record = event_record(name, layers=["a"], grid=grid, source={"kind": "test"})
        write_event(tmp_path / name, record, grid=grid, stack=np.zeros((1, 8, 8), np.float32))
        got = read_json(tmp_path / name / "event.json")["grid"]["pixel_m"]
        assert got == (pytest.approx(expected, abs=0.01) if expected else None), name


def test_stack_round_trip_keeps_values_names_and_grid(tmp_path):
    _event(tmp_path)
    data, names, grid = read_stack(tmp_path / "stack.tif")
    assert names == ("a", "b", "c")
    assert grid.same_as(GRID) and grid.crs == GRID.crs and grid.transform == GRID.transform
    assert data.dtype == np.float32 and np.isnan(data[0, 0, 0])
    again, names2, _ = read_stack(tmp_path / "stack.tif", ["c", "a"])
    assert names2 == ("c", "a")
    np.testing.assert_array_equal(again[1], data[0])
    with rasterio.open(tmp_path / "stack.tif") as src:
        assert src.dtypes[0] == "float32" and np.isnan(src.nodata)


def test_missing_layer_is_named(tmp_path):
    _event(tmp_path)
    with pytest.raises(UserError, match="lacks layer.*dNDVI"):
        read_stack(tmp_path / "stack.tif", ["a", "dNDVI"])


def test_stack_without_layer_names_is_refused(tmp_path):
    path = tmp_path / "stack.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=4, height=4, count=2, dtype="float32",
        crs=GRID.crs, transform=GRID.transform,
    ) as dst:  # fmt: skip
        dst.write(np.zeros((2, 4, 4), np.float32))
        dst.set_band_description(1, "a")
    with pytest.raises(UserError, match="band\\(s\\) 2 have no layer name"):
        read_layer_names(path)


def test_label_codes_are_checked(tmp_path):
    grid = Grid(4, 4, GRID.crs, GRID.transform)
    lab = np.full((4, 4), 2, np.uint8)
    write_label(tmp_path / "label.tif", lab, grid)
    with pytest.raises(UserError, match="0, 1 or 255; found 2"):
        read_label(tmp_path / "label.tif")


def test_read_event_checks_label(tmp_path):
    ev = _event(tmp_path / "e1")
    folder = read_event(ev)
    assert folder.layers == ("a", "b", "c") and folder.event_id == "e1"
    (ev / "label.tif").unlink()
    with pytest.raises(UserError, match="e1: event has no label.tif"):
        read_event(ev)
    other = Grid(40, 30, GRID.crs, from_origin(360010.0, 6820000.0, 10.0, 10.0))
    write_label(ev / "label.tif", np.zeros((30, 40), np.uint8), other)
    with pytest.raises(UserError, match="label grid .* differs from its stack"):
        read_event(ev)


def test_list_events_errors(tmp_path):
    with pytest.raises(UserError, match="data folder not found"):
        list_events(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no event folders"):
        list_events(tmp_path / "empty")
    _event(tmp_path / "data" / "b")
    _event(tmp_path / "data" / "a")
    (tmp_path / "data" / "a" / "event.json").write_text(json.dumps({"role": "test"}))
    events = list_events(tmp_path / "data")
    assert [e.event_id for e in events] == ["a", "b"]
    assert events[0].role == "test" and events[1].role is None


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"x": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert json.loads(target.read_text()) == {"x": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_directory_replaces_whole(tmp_path):
    final = tmp_path / "bundle"
    with atomic_path(final, directory=True) as tmp:
        (tmp / "a.txt").write_text("1")
    with atomic_path(final, directory=True) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in final.iterdir()) == ["b.txt"]


def test_check_writable(tmp_path):
    assert check_writable(tmp_path / "new" / "dir").is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot be written"):
        check_writable(blocker / "sub")


def test_read_json_errors(tmp_path):
    bad = tmp_path / "event.json"
    bad.write_text("{")
    with pytest.raises(UserError, match="event.json: not readable JSON"):
        read_json(bad)


def test_atomic_outputs_follow_the_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {})
        with atomic_path(tmp_path / "d", directory=True):
            pass
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_malformed_command_lines_are_one_line():
    from click.testing import CliRunner

    from lsd.pipeline.cli import main

    for args, needle in (
        (["train", "--setting", "s2", "--data", "d", "--out", "o", "--epochs", "abc"], "--epochs"),
        (["import", "tiles", "a", "b"], "--mapping"),
        (["nonsense"], "nonsense"),
    ):
        res = CliRunner().invoke(main, args)
        lines = res.output.strip().splitlines()
        assert res.exit_code == 2 and len(lines) == 1, res.output
        assert needle in lines[0] and "--help" in lines[0]
