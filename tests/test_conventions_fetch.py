"""`lsd fetch` records its conventions, and `--conventions-from` carries a dataset's or a model's
into the graph it sends (Earth Engine offline: tests/test_fetch_e2e.py's FakeEE)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import rasterio

from lsd import conventions as cv
from lsd.gee import graphs
from lsd.gee.graphs import read_graph
from tests.conventions_fixtures import radar_stack, write_radar_event
from tests.ee_offline import Call, calls, decode
from tests.test_fetch_e2e import FakeEE, run_fetch


@pytest.fixture
def server(ee_offline: Any, monkeypatch: pytest.MonkeyPatch) -> FakeEE:
    """Earth Engine answering from tests/test_fetch_e2e.py's stand-in, every asset there."""
    fake = FakeEE(ee_offline)
    fake.missing_assets = set()
    for name, fn in (("computeValue", fake.compute_value), ("getInfo", fake.get_info),
                     ("computePixels", fake.compute_pixels)):  # fmt: skip
        monkeypatch.setattr(ee_offline.data, name, fn)
    return fake


@pytest.fixture
def norway(tmp_path: Path) -> Path:
    csv = tmp_path / "events.csv"
    csv.write_text("id,date,lon,lat,role\n05-norway,2019-07-30,6.11699,61.51734,test\n")
    return csv


def gee_s1_ard_data(root: Path) -> Path:
    """A data folder of one event recorded as the paper's seed makes it."""
    rec = cv.complete({
        "flattening": cv.recorded("gee_s1_ard", "test"),
        "distortion_flags": cv.recorded("1=valid", "test"),
        "radar_scale": cv.recorded("db", "test"),
        "snow_mask": cv.recorded("erode 300 m", "test"),
    })  # fmt: skip
    write_radar_event(root / "paper-1", radar_stack("gee_s1_ard", "1=valid", size=64),
                      conventions=rec)  # fmt: skip
    return root


def flag_output(root: Any, name: str) -> Any:
    (renamed,) = [c for c in calls(root, "Image.rename") if c.args.get("names") == [name]
                  and c.args["input"].name == "Image.toFloat"]  # fmt: skip
    return renamed.args["input"].args["value"]


def gee_sign(root: Any) -> bool:
    """phi_r = phi_i + aspect (gee_s1_ard) in the per-scene flattening, rather than minus."""
    adds = [c for c in calls(root, "Image.add") if isinstance(c.args.get("image2"), Call)
            and c.args["image2"].name == "Image.select"
            and c.args["image2"].args.get("bandSelectors") == ["aspect"]]  # fmt: skip
    return bool(adds)


def test_fetch_records_its_conventions(server: FakeEE, norway: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    result = run_fetch("--event", str(norway), "--out", str(out), "--only", "05-norway")
    assert result.exit_code == 0, result.output
    rec = json.loads((out / "05-norway" / "event.json").read_text())["conventions"]
    assert {n: rec[n]["value"] for n in cv.STRICT | {"source"}} == {
        "flattening": "vollrath", "distortion_flags": "1=distorted", "radar_scale": "db",
        "source": "earthengine",
    }  # fmt: skip
    assert rec["snow_mask"]["value"] == "grow 300 m"
    assert rec["dem"]["value"] == "COPERNICUS/DEM/GLO30"
    assert "WorldCover" in rec["land_cover"]["value"]
    assert all(rec[n]["how"] == "recorded" for n in cv.NAMES)
    with rasterio.open(out / "05-norway" / "stack.tif") as src:
        assert json.loads(src.tags()[cv.STACK_TAG]) == rec
        assert src.tags(7)["meaning"].startswith("1 = layover (distorted")


def test_conventions_from_a_dataset_reach_the_graph_sent(
    server: FakeEE, norway: Path, tmp_path: Path
) -> None:
    source = gee_s1_ard_data(tmp_path / "paper")
    out, gdir = tmp_path / "data", tmp_path / "graphs"
    result = run_fetch("--event", str(norway), "--out", str(out), "--only", "05-norway",
                       "--conventions-from", str(source), "--graphs", str(gdir))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (f"conventions of {source} (data folder): look_convention = 'gee_s1_ard', "
            "distortion_flags = '1=valid', snow_mode = 'erode', snow_buffer_m = 300.0"
            ) in result.output  # fmt: skip
    # every tile request carries the requested sign and polarity
    sent = [decode(graphs.encode(r["expression"])) for r in server.pixel_requests]
    assert sent
    for graph in sent:
        assert gee_sign(graph)
        for name in ("layover", "shadow"):
            assert flag_output(graph, name).name == "Image.not"
    stack = decode(read_graph(gdir / "05-norway" / "stack.json")["graph"])
    assert gee_sign(stack) and flag_output(stack, "layover").name == "Image.not"
    rec = json.loads((out / "05-norway" / "event.json").read_text())["conventions"]
    assert (rec["flattening"]["value"], rec["distortion_flags"]["value"]) == (
        "gee_s1_ard", "1=valid")  # fmt: skip
    assert rec["snow_mask"]["value"] == "erode 300 m"
    with rasterio.open(out / "05-norway" / "stack.tif") as src:
        assert src.tags(7)["meaning"].startswith("1 = valid (no layover)")
    # the stack fetched matches the data it was asked to match
    comp = cv.compare(cv.of_events(cv_events(source)), rec, ["layover", "postVV", "liaDeg"])
    assert not comp.differences


def cv_events(folder: Path) -> list[Any]:
    from lsd.events import list_events

    return list_events(folder)


def test_default_fetch_graph_keeps_vollrath_and_distorted(
    server: FakeEE, norway: Path, tmp_path: Path
) -> None:
    result = run_fetch("--event", str(norway), "--out", str(tmp_path / "d"), "--only",
                       "05-norway", "--dry-run", "--graphs", str(tmp_path / "g"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "conventions: flattening vollrath, distortion_flags 1=distorted" in result.output
    stack = decode(read_graph(tmp_path / "g" / "05-norway" / "stack.json")["graph"])
    assert not gee_sign(stack) and flag_output(stack, "layover").name != "Image.not"


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ('look_convention = "vollrath"', "sets look_convention = 'vollrath' but"),
        ('distortion_flags = "1=distorted"', "sets distortion_flags = '1=distorted' but"),
    ],
)
def test_conventions_from_against_a_settings_file(tmp_path: Path, setting: str, words: str):
    source = gee_s1_ard_data(tmp_path / "paper")
    toml = tmp_path / "fetch.toml"
    toml.write_text(f"[fetch]\n{setting}\n")
    csv = tmp_path / "events.csv"
    csv.write_text("id,date,lon,lat\nx,2020-06-01,7.0,61.0\n")
    result = run_fetch("--event", str(csv), "--out", str(tmp_path / "d"), "--fetch-config",
                       str(toml), "--conventions-from", str(source), "--dry-run")  # fmt: skip
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: --conventions-from: {toml} {words} {source} (data folder) needs "
        f"'{'gee_s1_ard' if 'look' in setting else '1=valid'}'; drop one of the two"
    )


def test_conventions_from_what_records_none(tmp_path: Path) -> None:
    bare = write_radar_event(tmp_path / "data" / "ev", radar_stack(size=64))
    lone = tmp_path / "nothing"
    csv = tmp_path / "events.csv"
    csv.write_text("id,date,lon,lat\nx,2020-06-01,7.0,61.0\n")
    for path, words in (
        (tmp_path / "data", "this data folder records no conventions"),
        (bare, "this event folder records no conventions"),
        (lone, f"{lone}: not found"),
    ):
        result = run_fetch("--event", str(csv), "--out", str(tmp_path / "d"),
                           "--conventions-from", str(path), "--dry-run")  # fmt: skip
        assert result.exit_code == 1 and words in result.output, result.output
        assert "Traceback" not in result.output


def test_linear_or_foreign_flattening_cannot_be_fetched(tmp_path: Path) -> None:
    from lsd.errors import InvalidValue
    from lsd.gee.config import config_for_conventions

    linear = cv.complete({"radar_scale": cv.recorded("linear")})
    with pytest.raises(InvalidValue, match="radar_scale is linear; lsd fetch writes dB"):
        config_for_conventions(linear, "X")
    rtc = cv.complete({"flattening": cv.recorded("rtc-gamma0")})
    with pytest.raises(InvalidValue, match="flattening 'rtc-gamma0' cannot be made by lsd fetch"):
        config_for_conventions(rtc, "X")
    values, notes = config_for_conventions(cv.complete({}), "X")
    assert values == {} and notes[0] == "flattening unknown in X: lsd's default vollrath"
