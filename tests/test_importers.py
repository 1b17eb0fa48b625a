"""`lsd import`: real datasets survive the trip into event folders, reruns resume, bad input fails
with one line.

The round trips read the written files back through rasterio and pipeline.contract and compare
them with the source arrays, so a wrong band order, a lost CRS or a mislabelled code fails here.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rasterio.crs import CRS

from lsd.errors import UserError
from lsd.events import event_complete as is_finished
from lsd.events import list_events
from lsd.pipeline.cli import main
from lsd.pipeline.sources import import_landslide4sense, import_tiles
from lsd.pipeline.sources.landslide4sense import L4S_LAYERS
from lsd.pipeline.sources.tiles import parse_mapping
from lsd.rasters import read_label, read_stack
from tests.conftest import CHITTAGONG_LAYERS, CHITTAGONG_MAPPING
from tests.tile_fixtures import write_chips, write_pngs

L4S_TRANSFORM = Affine(10.0, 0.0, 0.0, 0.0, -10.0, 0.0)


def _chittagong_pairs(src: Path) -> list[tuple[Path, Path]]:
    pairs = []
    for line in (src / "map.txt").read_text().splitlines():
        image, label = line.replace("\\", "/").split()
        pairs.append((src / image, src / label))
    return pairs


def _apply(mapping: dict[int, int], values: np.ndarray) -> np.ndarray:
    out = np.full(values.shape, 77, np.uint8)  # 77: any pixel the mapping missed shows up
    for s, t in mapping.items():
        out[values == s] = t
    return out


# --------------------------------------------------------------------------- real data round trips


def _l4s_round_trip(l4s_dir: Path, l4s_events: Path) -> tuple[int, int]:
    """Every patch read back and compared with its source; (patches, patches with landslides)."""
    events = list_events(l4s_events)
    images = sorted((l4s_dir / "img").glob("image_*.h5"))
    assert {e.event_id for e in events} == {f"l4s_{p.stem}" for p in images}
    with_slides = 0
    for image in images:
        folder = l4s_events / f"l4s_{image.stem}"
        with h5py.File(image) as f:
            src_img = f["img"][()]
        with h5py.File(l4s_dir / "mask" / image.name.replace("image_", "mask_")) as f:
            src_mask = f["mask"][()]
        stack, layers, grid = read_stack(folder / "stack.tif")
        assert layers == L4S_LAYERS
        expected = np.moveaxis(src_img, 2, 0).astype(np.float32)
        assert np.array_equal(stack, expected, equal_nan=True)
        label, lgrid = read_label(folder / "label.tif")
        assert np.array_equal(label, src_mask.astype(np.uint8))
        with_slides += int(label.any())
        assert grid.crs is None and lgrid.crs is None
        assert grid.transform == L4S_TRANSFORM and lgrid.transform == L4S_TRANSFORM
        with rasterio.open(folder / "stack.tif") as ds:
            assert ds.dtypes == ("float32",) * 14
            assert ds.descriptions == L4S_LAYERS
        with rasterio.open(folder / "label.tif") as ds:
            assert ds.dtypes == ("uint8",)
        meta = json.loads((folder / "event.json").read_text())
        assert meta["format"] == "lsd-event/1" and meta["event_id"] == folder.name
        assert meta["georeferenced"] is False
        assert meta["grid"]["crs"] is None
        assert meta["source"]["nominal_resolution_m"] == 10.0
        assert meta["source"]["dataset"] == "Landslide4Sense"
        assert Path(meta["source"]["image"]).name == image.name
        assert meta["label"]["codes"]["1"] == "landslide"
        assert meta["layers"] == list(L4S_LAYERS)
        assert meta["written_by"].startswith("lsd ")
    return len(images), with_slides


@pytest.mark.real_data
def test_landslide4sense_all_patches_round_trip(l4s_dir: Path, l4s_events: Path) -> None:
    # the README: 3 of the 21 patches hold no landslide pixel
    assert _l4s_round_trip(l4s_dir, l4s_events) == (21, 18)


def test_landslide4sense_generated_patches_round_trip(l4s_generated: Path, tmp_path: Path) -> None:
    import_landslide4sense(l4s_generated, tmp_path / "events", progress=False)
    # every third generated patch holds no landslide (tests/l4s_fixtures.py)
    assert _l4s_round_trip(l4s_generated, tmp_path / "events") == (21, 14)


def _chips_round_trip(chittagong_dir: Path, chittagong_events: Path) -> tuple[int, int]:
    """Every chip read back and compared with its source; (chips, chips with landslides)."""
    pairs = _chittagong_pairs(chittagong_dir)
    assert len(list_events(chittagong_events)) == len(pairs)
    with_slides = 0
    for image, label_path in pairs:
        folder = chittagong_events / image.stem
        with rasterio.open(image) as src:
            src_img, src_crs, src_transform = src.read(), src.crs, src.transform
        with rasterio.open(label_path) as src:
            src_lab = src.read(1)
        stack, layers, grid = read_stack(folder / "stack.tif")
        assert layers == tuple(CHITTAGONG_LAYERS)
        assert np.array_equal(stack, src_img.astype(np.float32), equal_nan=True)
        assert grid.crs == src_crs == CRS.from_epsg(4326)
        assert grid.transform == src_transform  # exact, not almost
        label, lgrid = read_label(folder / "label.tif")
        assert lgrid.transform == src_transform and lgrid.crs == src_crs
        assert np.array_equal(label, _apply(CHITTAGONG_MAPPING, src_lab))
        with_slides += int((label == 1).any())
        meta = json.loads((folder / "event.json").read_text())
        assert meta["georeferenced"] is True and meta["grid"]["crs"] == "EPSG:4326"
        assert meta["label"]["source_mapping"] == {"0": 255, "1": 0, "2": 1}
    return len(pairs), with_slides


@pytest.mark.real_data
def test_chittagong_all_chips_round_trip(chittagong_dir: Path, chittagong_events: Path) -> None:
    assert _chips_round_trip(chittagong_dir, chittagong_events) == (100, 56)  # as its README says


def test_generated_chips_round_trip(tmp_path: Path) -> None:
    pairs = write_chips(tmp_path / "chips")
    import_tiles(tmp_path / "chips", tmp_path / "events", CHITTAGONG_MAPPING,
                 pairs=tmp_path / "chips" / "map.txt", layers=CHITTAGONG_LAYERS,
                 progress=False)  # fmt: skip
    slides = sum(int((rasterio.open(lab).read(1) == 2).any()) for _, lab in pairs)
    assert _chips_round_trip(tmp_path / "chips", tmp_path / "events") == (7, slides)
    assert slides > 0


@pytest.mark.real_data
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_bijie_png_rgb_masks_reduced_by_any_channel(bijie_dir: Path, tmp_path: Path) -> None:
    assert _pngs_round_trip(bijie_dir, tmp_path / "bijie") == 36


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_generated_png_rgb_masks_reduced_by_any_channel(tmp_path: Path) -> None:
    assert _pngs_round_trip(write_pngs(tmp_path / "pngs"), tmp_path / "events") == 2


def _pngs_round_trip(bijie_dir: Path, dest: Path) -> int:
    out = import_tiles(bijie_dir, dest, {0: 0, 1: 1}, progress=False)
    assert all(is_finished(p) for p in out)
    for folder in out:
        with rasterio.open(bijie_dir / "images" / f"{folder.name}.png") as src:
            src_img = src.read()
        with rasterio.open(bijie_dir / "masks" / f"{folder.name}.png") as src:
            src_mask = src.read()
        assert src_mask.shape[0] == 3
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # our nominal grid is stored: reading it back is quiet
            stack, layers, grid = read_stack(folder / "stack.tif")
            label, _ = read_label(folder / "label.tif")
        assert layers == ("R", "G", "B")
        assert np.array_equal(stack, src_img.astype(np.float32))
        assert np.array_equal(label, (src_mask != 0).any(axis=0).astype(np.uint8))
        assert grid.crs is None
        assert grid.transform == Affine(1.0, 0.0, 0.0, 0.0, -1.0, float(grid.height))
        meta = json.loads((folder / "event.json").read_text())
        assert meta["georeferenced"] is False and meta["label"]["mask_reduction"]
        assert "no georeferencing" in meta["georeferencing_note"]
    return len(out)


def test_geotiff_band_descriptions_name_layers_and_nodata_becomes_nan(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    transform = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0)
    crs = CRS.from_epsg(32645)
    img = np.arange(2 * 6 * 5, dtype=np.int16).reshape(2, 6, 5)
    img[1, 0, 0] = -9999
    common = dict(driver="GTiff", width=5, height=6, crs=crs, transform=transform)
    with rasterio.open(
        src / "images" / "a.tif", "w", count=2, dtype="int16", nodata=-9999, **common
    ) as ds:
        ds.write(img)
        ds.set_band_description(1, "dNDVI")
        ds.set_band_description(2, "slope")
    mask = np.array([[0, 1, 2, 0, 1]] * 6, np.uint8)
    with rasterio.open(src / "masks" / "a.tif", "w", count=1, dtype="uint8", **common) as ds:
        ds.write(mask, 1)
    (folder,) = import_tiles(src, tmp_path / "out", {0: 0, 1: 1, 2: 255}, progress=False)
    stack, layers, grid = read_stack(folder / "stack.tif")
    assert layers == ("dNDVI", "slope")
    assert np.isnan(stack[1, 0, 0]) and np.isnan(stack).sum() == 1
    assert stack[0, 0, 0] == 0.0 and stack[1, 5, 4] == img[1, 5, 4]
    assert grid.crs == crs and grid.transform == transform
    label, _ = read_label(folder / "label.tif")
    assert np.array_equal(label, _apply({0: 0, 1: 1, 2: 255}, mask))


# --------------------------------------------------------------------------- reruns


def _l4s_subset(l4s_dir: Path, root: Path, numbers: list[int]) -> Path:
    """A small Landslide4Sense folder of symlinks, so rerun tests stay fast."""
    for sub in ("img", "mask"):
        (root / sub).mkdir(parents=True)
    for n in numbers:
        (root / "img" / f"image_{n}.h5").symlink_to(l4s_dir / "img" / f"image_{n}.h5")
        (root / "mask" / f"mask_{n}.h5").symlink_to(l4s_dir / "mask" / f"mask_{n}.h5")
    return root


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir())}


def test_rerun_skips_finished_and_redoes_half_finished(l4s_generated: Path, tmp_path: Path) -> None:
    src = _l4s_subset(l4s_generated, tmp_path / "src", [1, 2, 3])
    dest = tmp_path / "dest"
    first = import_landslide4sense(src, dest, progress=False)
    assert [p.name for p in first] == ["l4s_image_1", "l4s_image_2", "l4s_image_3"]
    before = {p.name: _mtimes(p) for p in first}
    # l4s_image_2 is cut short: no event.json, a stale temporary file and a damaged stack
    half = dest / "l4s_image_2"
    (half / "event.json").unlink()
    (half / "stack.tif").write_bytes(b"cut short")
    (half / ".stack.tif.abc.partial").write_bytes(b"junk")
    os.utime(half / "stack.tif", ns=(1, 1))
    assert not is_finished(half)

    again = import_landslide4sense(src, dest, progress=False)
    assert again == first
    assert _mtimes(dest / "l4s_image_1") == before["l4s_image_1"]
    assert _mtimes(dest / "l4s_image_3") == before["l4s_image_3"]
    assert is_finished(half)
    assert sorted(p.name for p in half.iterdir()) == ["event.json", "label.tif", "stack.tif"]
    assert (half / "stack.tif").stat().st_mtime_ns != 1
    stack, _, _ = read_stack(half / "stack.tif")
    with h5py.File(l4s_generated / "img" / "image_2.h5") as f:
        assert np.array_equal(stack, np.moveaxis(f["img"][()], 2, 0).astype(np.float32))


# --------------------------------------------------------------------------- parse_mapping


def test_parse_mapping() -> None:
    assert parse_mapping("0:255, 1:0,2:1") == {0: 255, 1: 0, 2: 1}
    for bad, fragment in [
        ("", "empty"),
        ("0-255", "'0-255'"),
        ("0:7", "target 7"),
        ("0:0,0:1", "mapped twice"),
        ("a:1", "'a:1'"),
    ]:
        with pytest.raises(UserError, match=fragment):
            parse_mapping(bad)


# --------------------------------------------------------------------------- CLI errors


def _fails(args: list[str], *fragments: str) -> str:
    """Run the CLI; it must exit 1 with one 'Error:' line naming every fragment, no traceback."""
    result = CliRunner().invoke(main, [*map(str, args), "--no-progress"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def _one_chip_pairs(chittagong_dir: Path, tmp_path: Path) -> Path:
    """A pairs file with absolute paths to one chip whose label holds 0, 1 and 2."""
    for image, label in _chittagong_pairs(chittagong_dir):
        with rasterio.open(label) as ds:
            if set(np.unique(ds.read(1)).tolist()) == {0, 1, 2}:
                pairs = tmp_path / "one.txt"
                pairs.write_text(f"{image} {label}\n")
                return pairs
    raise AssertionError("no Chittagong chip holds all three label values")


def test_cli_landslide4sense_errors(l4s_generated: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    _fails(["import", "landslide4sense", tmp_path / "nowhere", dest], "nowhere", "not found")
    (tmp_path / "empty").mkdir()
    _fails(["import", "landslide4sense", tmp_path / "empty", dest], "empty", "no img/ folder")

    src = _l4s_subset(l4s_generated, tmp_path / "src", [1])
    (src / "img" / "image_9.h5").symlink_to(l4s_generated / "img" / "image_2.h5")
    _fails(["import", "landslide4sense", src, dest], "image_9.h5", "mask_9.h5")
    assert not dest.exists()  # pairing is checked before anything is written

    (src / "mask" / "mask_9.h5").write_bytes(b"this is not HDF5")
    _fails(["import", "landslide4sense", src, dest], "mask_9.h5", "not a readable HDF5")
    # the patch before the bad one is finished and stays; the bad one left nothing behind
    assert is_finished(dest / "l4s_image_1") and not (dest / "l4s_image_9").exists()

    (src / "mask" / "mask_9.h5").unlink()
    with h5py.File(src / "mask" / "mask_9.h5", "w") as f:
        f["labels"] = np.zeros((128, 128), np.uint8)
    _fails(["import", "landslide4sense", src, dest], "mask_9.h5", "no dataset 'mask'", "labels")

    (src / "img" / "image_9.h5").unlink()
    with h5py.File(src / "img" / "image_9.h5", "w") as f:
        f["img"] = np.zeros((128, 128, 13))
    _fails(["import", "landslide4sense", src, dest], "image_9.h5", "(128, 128, 13)")

    with h5py.File(src / "img" / "image_9.h5", "w") as f:
        f["img"] = np.zeros((128, 128, 14))
    (src / "mask" / "mask_9.h5").unlink()
    with h5py.File(src / "mask" / "mask_9.h5", "w") as f:
        f["mask"] = np.full((128, 128), 3, np.uint8)
    _fails(["import", "landslide4sense", src, dest], "mask_9.h5", "value 3")

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    _fails(["import", "landslide4sense", src, blocker / "dest"], "a_file", "cannot be written")


def test_cli_tiles_errors(tmp_path: Path) -> None:
    chittagong_dir, bijie_dir = tmp_path / "chips", write_pngs(tmp_path / "pngs")
    write_chips(chittagong_dir)
    dest = tmp_path / "dest"
    tiles = ["import", "tiles"]
    _fails([*tiles, tmp_path / "nowhere", dest, "--mapping", "0:0"], "nowhere", "not found")
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "masks").mkdir()
    _fails([*tiles, tmp_path / "empty", dest, "--mapping", "0:0"], "images", "no PNG or GeoTIFF")

    # an image without a mask, named; pairing is checked before anything is written
    src = tmp_path / "bj"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    for stem in ("10009", "10013"):
        (src / "images" / f"{stem}.png").symlink_to(bijie_dir / "images" / f"{stem}.png")
    (src / "masks" / "10009.png").symlink_to(bijie_dir / "masks" / "10009.png")
    _fails([*tiles, src, dest, "--mapping", "0:0,1:1"], "10013.png", "no mask")
    assert not dest.exists()

    # an unreadable PNG, named
    (src / "masks" / "10013.png").write_bytes(b"\x89PNG broken")
    _fails([*tiles, src, dest, "--mapping", "0:0,1:1"], "10013.png", "not a readable")
    # a truncated PNG (GDAL alone would fill the missing part with zeros) and a truncated TIF
    trunc = tmp_path / "trunc"
    (trunc / "images").mkdir(parents=True)
    (trunc / "masks").mkdir()
    png = (bijie_dir / "images" / "10009.png").read_bytes()
    (trunc / "images" / "p.png").write_bytes(png[: len(png) // 3])
    (trunc / "masks" / "p.png").symlink_to(bijie_dir / "masks" / "10009.png")
    # (the GDAL in rasterio 1.3 reports the read error itself; newer ones fill zeros silently and
    # Pillow's decode says "truncated")
    _fails([*tiles, trunc, tmp_path / "d3", "--mapping", "0:0,1:1"], "p.png", "not a readable")
    image, label = _chittagong_pairs(chittagong_dir)[0]
    (trunc / "images" / "p.png").unlink()
    (trunc / "masks" / "p.png").unlink()
    (trunc / "images" / "t.tif").write_bytes(image.read_bytes()[:300_000])
    (trunc / "masks" / "t.tif").symlink_to(label)
    _fails([*tiles, trunc, tmp_path / "d3", "--mapping", "0:255,1:0,2:1"], "t.tif", "readable")
    assert not (tmp_path / "d3" / "t").exists() and not (tmp_path / "d3" / "p").exists()
    # an unmapped value of a reduced RGB mask, named with the file
    _fails([*tiles, src, tmp_path / "d2", "--mapping", "0:0"], "10009.png", "value(s) 1")

    pairs = _one_chip_pairs(chittagong_dir, tmp_path)
    chip = pairs.read_text().split()[1]
    _fails(
        [*tiles, chittagong_dir, dest, "--pairs", pairs, "--mapping", "0:255,1:0"],
        Path(chip).name,
        "value(s) 2",
    )
    _fails([*tiles, chittagong_dir, dest, "--pairs", pairs, "--mapping", "0-255"], "'0-255'")
    _fails(
        [*tiles, chittagong_dir, dest, "--pairs", pairs, "--mapping", "0:255,1:0,2:1"]
        + ["--layers", "R,G,B"],
        Path(pairs.read_text().split()[0]).name,
        "4 band(s)",
        "3",
    )
    _fails([*tiles, chittagong_dir, dest, "--pairs", "nope.txt", "--mapping", "0:0"], "nope.txt")
    bad_pairs = tmp_path / "bad.txt"
    bad_pairs.write_text("only_one_column.tif\n")
    _fails([*tiles, chittagong_dir, dest, "--pairs", bad_pairs, "--mapping", "0:0"], "line 1")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    _fails(
        [*tiles, chittagong_dir, blocker / "d", "--pairs", pairs, "--mapping", "0:255,1:0,2:1"],
        "a_file",
        "cannot be written",
    )
    # after all those failures, a good run still works and writes one finished event
    result = CliRunner().invoke(
        main,
        [
            *tiles,
            str(chittagong_dir),
            str(dest),
            "--pairs",
            str(pairs),
            "--mapping",
            "0:255,1:0,2:1",
        ]
        + ["--layers", "R,G,B,NIR", "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    # 10009 was finished before the broken 10013 mask stopped that run; the chip joins it
    chip_id = Path(pairs.read_text().split()[0]).stem
    assert [e.event_id for e in list_events(dest)] == sorted(["10009", chip_id])
