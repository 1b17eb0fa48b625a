"""`lsd import paper`: the paper's global_dataset, in the published format and the variations a
real archive may hold, becomes event folders with the 15 layers, the paper's roles and its
georeferencing; bad archives get one line and write nothing."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import tifffile
from click.testing import CliRunner

from lsd.events import list_events
from lsd.layers import PAPER_LAYERS
from lsd.pipeline.cli import main
from lsd.rasters import read_label, read_stack
from tests.paper_fixtures import event_arrays, write_input, write_label, write_paper_dataset

REPO = Path(__file__).resolve().parents[1]


def _import(src: Path, dest: Path):
    return CliRunner().invoke(main, ["import", "paper", str(src), str(dest), "--no-progress"])


def _one_line_error(result) -> str:
    assert result.exit_code != 0
    lines = [x for x in result.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The published layout as the paper's reader reads it (tifffile, no georeferencing)."""
    return write_paper_dataset(tmp_path_factory.mktemp("plain"), size=(40, 48))


def test_published_layout_round_trip(plain: Path, tmp_path: Path) -> None:
    result = _import(plain.parent, tmp_path / "events")  # the folder above, as unpacked
    assert result.exit_code == 0, result.output
    events = {e.event_id: e for e in list_events(tmp_path / "events")}
    with (REPO / "examples" / "events.csv").open() as f:
        example_ids = {row["id"] for row in csv.DictReader(f)}
    assert set(events) == example_ids  # 21 events, named as the examples name them
    for path in sorted((plain / "train_val" / "input").glob("*.tif")) + [
        plain / "test" / "input" / "5_input.tif"
    ]:
        number = int(path.name.split("_")[0])
        with tifffile.TiffFile(path) as tif:
            hwc = tif.pages[0].asarray()  # the paper's own reader
        assert hwc.shape[2] == 15
        ev = next(e for e in events.values() if e.meta["source"]["paper_event"] == number)
        stack, layers, _ = read_stack(ev.stack)
        assert layers == PAPER_LAYERS
        np.testing.assert_array_equal(stack, np.moveaxis(hwc, 2, 0))  # NaN where NaN
        label = tifffile.imread(path.parent.parent / "label" / path.name.replace("input", "label"))
        np.testing.assert_array_equal(read_label(ev.label)[0], label)
        assert ev.meta["georeferenced"] is False and ev.meta["grid"]["crs"] is None


def test_roles_follow_the_papers_validation_draw(plain: Path, tmp_path: Path) -> None:
    assert _import(plain, tmp_path / "events").exit_code == 0
    events = list_events(tmp_path / "events")
    roles = {e.event_id: e.role for e in events}
    assert roles["05-norway"] == "test"
    assert sorted(roles.values()).count("val") == 4 and sorted(roles.values()).count("train") == 16
    # the paper's code: sorted label files, NumPy's global generator seeded 42 (seed_everything),
    # sklearn's ShuffleSplit takes the first n_test = 20 - floor(0.8 * 20) of a permutation
    labels = sorted(p.name for p in (plain / "train_val" / "label").iterdir())
    np.random.seed(42)
    drawn = {labels[i] for i in np.random.permutation(len(labels))[:4]}
    val_files = {Path(e.meta["source"]["label"]).name for e in events if e.role == "val"}
    assert val_files == drawn


def test_georeferencing_kept_and_events_found_by_place(tmp_path: Path) -> None:
    src = write_paper_dataset(tmp_path / "geo", georef=True, train_val=[1, 2, 3, 8, 9],
                              name="site{n}_{kind}.tif")  # fmt: skip
    assert _import(src, tmp_path / "events").exit_code == 0
    events = {e.event_id: e for e in list_events(tmp_path / "events")}
    assert set(events) == {"01-iceland", "02-ireland", "03-new-zealand", "08-brazil",
                           "09-china", "05-norway"}  # fmt: skip
    norway = events["05-norway"]
    with rasterio.open(src / "test" / "input" / "site5_input.tif") as tif:
        assert norway.grid.crs == tif.crs and norway.grid.transform == tif.transform
    assert norway.meta["georeferenced"] is True and norway.meta["source"]["key"] == "site5"


def test_layout_variations_are_tolerated(tmp_path: Path) -> None:
    """Band-interleaved GeoTIFF, one page per layer, one page per row (tifffile's default for
    an H x W x 15 array), '-' separators, extra folders and files, a nested root."""
    root = tmp_path / "unpacked" / "extra" / "global_dataset"
    x1, y1 = event_arrays(1, 32, 40)
    (root / "train_val" / "input").mkdir(parents=True)
    band_tif = root / "train_val" / "input" / "1-input.tif"
    with rasterio.open(band_tif, "w", driver="GTiff", width=40, height=32, count=15,
                       dtype="float32", interleave="band") as dst:  # fmt: skip
        dst.write(np.moveaxis(x1, 2, 0))
    write_label(root / "train_val" / "label" / "1-label.tif", y1)
    x2, y2 = event_arrays(2, 32, 40)
    tifffile.imwrite(root / "train_val" / "input" / "2_stack.tif", np.moveaxis(x2, 2, 0).copy())
    write_label(root / "train_val" / "label" / "2_gt.tif", y2)
    x3, y3 = event_arrays(3, 32, 40)
    tifffile.imwrite(root / "train_val" / "input" / "3_input.tif", x3)  # 32 pages of 40 x 15
    write_label(root / "train_val" / "label" / "3_label.tif", y3)
    x5, y5 = event_arrays(5, 32, 40)
    write_input(root / "test" / "input" / "5_input.tif", x5)
    write_label(root / "test" / "label" / "5_label.tif", y5)
    (root / "train_val" / "input" / "README.txt").write_text("not a tif")
    (root / "train_val" / "input" / "._1-input.tif").write_bytes(b"mac resource fork")
    (root.parent / "__MACOSX").mkdir()
    result = _import(tmp_path / "unpacked", tmp_path / "events")
    assert result.exit_code == 0, result.output
    events = {e.event_id: e for e in list_events(tmp_path / "events")}
    for event_id, x in (("01-iceland", x1), ("02-ireland", x2), ("03-new-zealand", x3),
                        ("05-norway", x5)):  # fmt: skip
        np.testing.assert_array_equal(read_stack(events[event_id].stack)[0], np.moveaxis(x, 2, 0))


def test_declared_nodata_is_kept_as_the_papers_reader_keeps_it(tmp_path: Path) -> None:
    """A GDAL no-data tag is reported, not applied: the paper's reader (tifffile) knows no tag,
    so its inputs and its statistics hold those values. Tags -9999 (tifffile's GDAL_NODATA
    tag), 0 (a GeoTIFF by rasterio: every 'not layover' pixel would have become NaN) and NaN."""
    from lsd.training.paper import paper_statistics

    src = write_paper_dataset(tmp_path / "src", size=(40, 40), train_val=[1, 2, 3, 4, 8])
    inputs = src / "train_val" / "input"

    def shape(n: int) -> tuple[int, int]:  # the fixture's events differ in size
        return tifffile.imread(src / "train_val" / "label" / f"{n}_label.tif").shape

    x2, _ = event_arrays(2, *shape(2))
    x2[:5, :6, :] = -9999.0
    gdal_nodata = (42113, "s", 0, "-9999", True)  # the TIFF tag GDAL reads its no-data from
    tifffile.imwrite(inputs / "2_input.tif", x2, planarconfig="contig",
                     photometric="minisblack", extratags=[gdal_nodata])  # fmt: skip
    x3, _ = event_arrays(3, *shape(3))
    with rasterio.open(inputs / "3_input.tif", "w", driver="GTiff", width=x3.shape[1],
                       height=x3.shape[0],
                       count=15, dtype="float32", nodata=0.0) as dst:  # fmt: skip
        dst.write(np.moveaxis(x3, 2, 0))
    x4, _ = event_arrays(4, *shape(4))
    with rasterio.open(inputs / "4_input.tif", "w", driver="GTiff", width=x4.shape[1],
                       height=x4.shape[0],
                       count=15, dtype="float32", nodata=float("nan")) as dst:  # fmt: skip
        dst.write(np.moveaxis(x4, 2, 0))
    result = _import(src, tmp_path / "events")
    assert result.exit_code == 0, result.output
    events = {e.event_id: e for e in list_events(tmp_path / "events")}
    by_number = {e.meta["source"]["paper_event"]: e for e in events.values()}
    for path in sorted(inputs.glob("*.tif")) + [src / "test" / "input" / "5_input.tif"]:
        with tifffile.TiffFile(path) as tif:
            raw = tif.pages[0].asarray()  # HWC, or CHW for the rasterio GeoTIFFs
        hwc = raw if raw.shape[-1] == 15 else np.moveaxis(raw, 0, 2)
        ev = by_number[int(path.name.split("_")[0])]
        np.testing.assert_array_equal(read_stack(ev.stack)[0], np.moveaxis(hwc, 2, 0))
    tags = {n: by_number[n].meta["source"].get("nodata_tag") for n in (1, 2, 3, 4)}
    assert tags[1] is None
    assert tags[2]["value"] == -9999 and tags[2]["values_equal_to_it"] == 5 * 6 * 15
    assert tags[2]["kept_as_values"] and tags[2]["per_layer"]["dNDVI"] == 30
    n_zero = int((x3 == 0).sum())
    assert n_zero > 1000 and tags[3]["value"] == 0 and tags[3]["values_equal_to_it"] == n_zero
    assert {"layover", "shadow"} <= set(tags[3]["per_layer"])  # 0 = not distorted, a value
    assert tags[4]["value"] == "nan" and not tags[4]["kept_as_values"]
    assert tags[4]["values_equal_to_it"] == int(np.isnan(x4).sum())
    warned = [line for line in result.output.splitlines() if line.startswith("Warning: ")]
    assert len(warned) == 2 and "declares GDAL no-data -9999, held by 450 value(s)" in warned[0]
    assert "3_input.tif: declares GDAL no-data 0, held by" in warned[1]
    # statistics: lsd's paper statistics on the imported stacks = compute_metadata of
    # src/data/landslides.py on the source files read by tifffile
    psum, psum_sq, pvalid = np.zeros(15), np.zeros(15), np.zeros(15)
    for path in sorted(inputs.glob("*.tif")):
        arr = tifffile.TiffFile(path).pages[0].asarray()
        arr = arr if arr.shape[-1] == 15 else np.ascontiguousarray(np.moveaxis(arr, 0, 2))
        psum += np.nansum(arr, axis=(0, 1))
        psum_sq += np.nansum(arr**2, axis=(0, 1))
        pvalid += (~np.isnan(arr)).sum(axis=(0, 1))
    mean = psum / pvalid
    train_val = [e for e in events.values() if e.meta["source"]["part"] == "train_val"]
    got_mean, got_std = paper_statistics(read_stack(e.stack)[0] for e in train_val)
    np.testing.assert_allclose(got_mean, mean, rtol=1e-12)
    np.testing.assert_allclose(got_std, np.sqrt(psum_sq / pvalid - mean**2), rtol=1e-12)


def _broken(tmp_path: Path, how: str) -> Path:
    src = write_paper_dataset(tmp_path / how, size=(32, 32), train_val=[1, 2, 3, 4, 8])
    if how == "no labels":
        shutil.rmtree(src / "train_val" / "label")
    elif how == "14 bands":
        x, _ = event_arrays(3, 32, 32)
        write_input(src / "train_val" / "input" / "3_input.tif", x[..., :14])
        write_label(src / "train_val" / "label" / "3_label.tif", np.zeros((32, 32), np.uint8))
    elif how == "label 2":
        y = tifffile.imread(src / "train_val" / "label" / "4_label.tif")
        y[5, 7] = 2
        write_label(src / "train_val" / "label" / "4_label.tif", y)
    elif how == "label missing":
        (src / "train_val" / "label" / "8_label.tif").unlink()
    return src


@pytest.mark.parametrize(
    ("how", "expect"),
    [
        ("no labels", "no label .tif for the 5 input(s)"),
        ("14 bands", "3_input.tif: 14 band(s) of 32 x 32; expected 15 layers"),
        ("label 2", "4_label.tif: label value 2 at row 5, column 7"),
        ("label missing", "8_input.tif: no label pairs with it"),
    ],
)
def test_bad_archives_are_one_line_and_write_nothing(tmp_path: Path, how: str, expect: str):
    dest = tmp_path / "events"
    (dest / "earlier").mkdir(parents=True)
    (dest / "earlier" / "keep.txt").write_text("earlier result")
    line = _one_line_error(_import(_broken(tmp_path, how), dest))
    assert expect in line
    assert sorted(p.name for p in dest.iterdir()) == ["earlier"]
    assert (dest / "earlier" / "keep.txt").read_text() == "earlier result"


def test_not_the_papers_layout_says_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "src" / "images").mkdir(parents=True)
    line = _one_line_error(_import(tmp_path / "src", tmp_path / "events"))
    assert "expected the paper's layout train_val/ and test/" in line and "found: images" in line


def test_event_json_records_the_source(plain: Path, tmp_path: Path) -> None:
    assert _import(plain, tmp_path / "events").exit_code == 0
    record = json.loads((tmp_path / "events" / "05-norway" / "event.json").read_text())
    assert record["format"] == "lsd-event/1" and record["source"]["kind"] == "paper"
    assert record["source"]["part"] == "test" and record["layers"] == list(PAPER_LAYERS)
    assert "nominal 10 m grid" in record["georeferencing_note"]
