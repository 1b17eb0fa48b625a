"""Landslide4Sense end to end without network: `lsd download landslide4sense` from a local Zenodo
stand-in serving the record's three split archives (generated h5 patches with the real dataset
names and dtypes), `lsd import landslide4sense` with roles from every accepted layout, and the
bad inputs each as one line."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from lsd import landslide4sense as l4s
from lsd.events import list_events
from lsd.pipeline.cli import main
from lsd.pipeline.zenodo import RECORD_FILE
from lsd.rasters import read_label, read_stack
from tests.l4s_fixtures import SPLIT_DIRS, write_benchmark, write_mirror, zip_split
from tests.zenodo_server import zenodo_stand_in

COUNTS = {"train": 4, "val": 2, "test": 2}
RECORD = l4s.ZENODO_RECORD


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three archives; ValidData.zip without the split folder at its top, as hand-made
    zips may be (either unpacks to DIR/ValidData/img ...)."""
    root = tmp_path_factory.mktemp("l4s_src")
    bench = write_benchmark(root / "bench", COUNTS)
    (root / "zips").mkdir()
    return {
        role: zip_split(bench / SPLIT_DIRS[role], root / "zips" / name, top=role != "val")
        for role, name in l4s.ARCHIVES.items()
    }


def _lsd(*args: object, url: str | None = None):
    env = {"LSD_ZENODO_URL": url} if url else {}
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def _download(to: Path, url: str | None, *args: object):
    return _lsd("download", "landslide4sense", "--to", to, "--no-progress", *args, url=url)


def _one_line_error(result) -> str:
    assert result.exit_code != 0, result.output
    lines = result.output.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.output
    assert "Traceback" not in result.output
    return errors[0]


def _roles(dest: Path) -> dict[str, str]:
    return {e.event_id: e.role for e in list_events(dest)}


def test_download_unpacks_the_three_splits_once_and_imports_them_with_roles(
    tmp_path: Path, archives: dict[str, Path]
) -> None:
    to = tmp_path / "l4s"
    with zenodo_stand_in(tmp_path / "zenodo") as zenodo:
        for archive in archives.values():
            zenodo.publish(archive, record=RECORD)
        result = _download(to, zenodo.url)
        assert result.exit_code == 0, result.output
        again = _download(to, zenodo.url)
        assert again.exit_code == 0 and again.output.count("already complete") == 3
        assert all(zenodo.requests_for(a.name) == 1 for a in archives.values())
    for role, n in COUNTS.items():
        split = to / SPLIT_DIRS[role]
        assert sorted(p.name for p in (split / "img").iterdir()) == sorted(
            f"image_{i}.h5" for i in range(1, n + 1))  # fmt: skip
        assert len(list((split / "mask").iterdir())) == n
    record = json.loads((to / RECORD_FILE).read_text())
    assert {e["md5_check"] for e in record.values()} == {"published md5 matched"}
    assert (to / f"zenodo-{RECORD}.json").is_file() and not (to / ".downloads").exists()

    dest = tmp_path / "events"
    imported = _lsd("import", "landslide4sense", to, dest, "--no-progress")
    assert imported.exit_code == 0, imported.output
    assert "8 event folder(s)" in imported.output and "(4 train, 2 val, 2 test)" in imported.output
    roles = _roles(dest)
    assert roles["l4s_train_image_4"] == "train" and roles["l4s_val_image_2"] == "val"
    assert sorted(i for i, r in roles.items() if r == "test") == [
        "l4s_test_image_1", "l4s_test_image_2"]  # fmt: skip
    # the pixels are the h5 datasets', moved to bands first and cast to float32 as the loader does
    with h5py.File(to / "ValidData" / "img" / "image_2.h5") as f:
        img = f["img"][()]
    with h5py.File(to / "ValidData" / "mask" / "mask_2.h5") as f:
        mask = f["mask"][()]
    stack, layers, _ = read_stack(dest / "l4s_val_image_2" / "stack.tif")
    assert tuple(layers) == l4s.LAYERS
    assert np.array_equal(stack, np.moveaxis(img, 2, 0).astype(np.float32))
    assert np.array_equal(read_label(dest / "l4s_val_image_2" / "label.tif")[0], mask)


def test_bad_checksum_deletes_the_archive_and_keeps_the_finished_splits(
    tmp_path: Path, archives: dict[str, Path]
) -> None:
    to = tmp_path / "l4s"
    with zenodo_stand_in(tmp_path / "zenodo") as zenodo:
        zenodo.publish(archives["train"], record=RECORD)
        zenodo.publish(archives["val"], record=RECORD)
        zenodo.publish(archives["test"], record=RECORD, md5="0" * 32)
        line = _one_line_error(_download(to, zenodo.url))
        assert "TestData.zip" in line and "hash" in line.lower() and "deleted" in line
        assert not (to / "TestData").exists()
        assert not [p for p in (to / ".downloads").iterdir() if p.name.startswith("TestData")]
        assert set(json.loads((to / RECORD_FILE).read_text())) == {"TrainData.zip",
                                                                   "ValidData.zip"}  # fmt: skip
        zenodo.publish(archives["test"], record=RECORD)  # the record corrected
        assert _download(to, zenodo.url).exit_code == 0
        assert zenodo.requests_for("TrainData.zip") == 1
        assert zenodo.requests_for("TestData.zip") == 2
    assert (to / "TestData" / "mask" / "mask_1.h5").is_file()


def test_offline_is_one_line_and_placed_archives_need_no_network(
    tmp_path: Path, archives: dict[str, Path]
) -> None:
    line = _one_line_error(_download(tmp_path / "a", "http://127.0.0.1:9"))
    assert f"api/records/{RECORD}" in line and "--from-archive PATH" in line
    assert "TrainData.zip, ValidData.zip, TestData.zip" in line
    assert f"zenodo.org/records/{RECORD}" in line
    wrong = tmp_path / "global_dataset.zip"
    wrong.write_bytes(archives["val"].read_bytes())
    line = _one_line_error(_download(tmp_path / "b", None, "--from-archive", wrong))
    assert "expected a file named TrainData.zip or ValidData.zip or TestData.zip" in line
    flags = [x for a in archives.values() for x in ("--from-archive", a)]
    result = _download(tmp_path / "c", "http://127.0.0.1:9", *flags)
    assert result.exit_code == 0, result.output
    assert result.output.count("zip's own CRCs") == 3
    assert (tmp_path / "c" / "TestData" / "img" / "image_2.h5").is_file()


def test_mirror_layout_and_split_names_import_with_roles(tmp_path: Path) -> None:
    src = write_mirror(tmp_path / "hf", COUNTS)
    dest = tmp_path / "events"
    result = _lsd("import", "landslide4sense", src, dest, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "(4 train, 2 val, 2 test)" in result.output  # the stray image_1.h5 is not a mask
    meta = json.loads((dest / "l4s_val_image_1" / "event.json").read_text())
    assert meta["role"] == "val" and meta["source"]["split"] == "images/validation"


def test_missing_split_and_split_without_masks_import_the_others(tmp_path: Path) -> None:
    src = write_benchmark(tmp_path / "src", {"train": 3, "test": 2}, test_masks=False)
    dest = tmp_path / "events"
    result = _lsd("import", "landslide4sense", src, dest, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "no val split (ValidData/ or validation/ or val/ or valid/)" in result.output
    assert "TestData/mask: not found" in result.output and "not imported" in result.output
    assert "3 event folder(s)" in result.output and set(_roles(dest).values()) == {"train"}


def test_a_lone_folder_of_patches_still_imports_without_roles(tmp_path: Path) -> None:
    src = write_benchmark(tmp_path / "src", {"train": 2}) / "TrainData"
    dest = tmp_path / "events"
    result = _lsd("import", "landslide4sense", src, dest, "--no-progress")
    assert result.exit_code == 0 and "2 event folder(s)" in result.output
    assert _roles(dest) == {"l4s_image_1": None, "l4s_image_2": None}


def _rewrite(path: Path, key: str, data: np.ndarray) -> None:
    path.unlink()
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=data)


def test_bad_input_is_one_line_naming_file_dataset_and_shape(tmp_path: Path) -> None:
    src = write_benchmark(tmp_path / "src", {"train": 3, "val": 1})
    dest = tmp_path / "events"
    orphan = src / "ValidData" / "mask" / "mask_7.h5"
    orphan.write_bytes((src / "ValidData" / "mask" / "mask_1.h5").read_bytes())
    line = _one_line_error(_lsd("import", "landslide4sense", src, dest, "--no-progress"))
    assert str(orphan) in line and "no matching image" in line and "image_7.h5" in line
    assert not dest.exists()  # found before anything was written
    orphan.unlink()

    image = src / "TrainData" / "img" / "image_2.h5"
    _rewrite(image, "data", np.zeros((128, 128, 14)))
    line = _one_line_error(_lsd("import", "landslide4sense", src, dest, "--no-progress"))
    assert str(image) in line and "no dataset 'img'" in line and "'data' (128, 128, 14)" in line
    _rewrite(image, "img", np.zeros((128, 128, 13)))
    line = _one_line_error(_lsd("import", "landslide4sense", src, dest, "--no-progress"))
    assert str(image) in line and "dataset 'img' has shape (128, 128, 13)" in line
    _rewrite(image, "img", np.zeros((128, 128, 14)))
    mask = src / "TrainData" / "mask" / "mask_3.h5"
    _rewrite(mask, "mask", np.zeros((64, 64), np.uint8))
    line = _one_line_error(_lsd("import", "landslide4sense", src, dest, "--no-progress"))
    assert str(mask) in line and "dataset 'mask' has shape (64, 64)" in line
    assert (dest / "l4s_train_image_1" / "event.json").is_file()  # finished folders are kept
    assert not (dest / "l4s_train_image_3").exists()


def test_no_split_folders_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    line = _one_line_error(_lsd("import", "landslide4sense", tmp_path / "empty", tmp_path / "d"))
    assert "no img/ folder and no split folders (TrainData/, ValidData/, TestData/" in line
    (tmp_path / "odd" / "TrainData" / "TrainData").mkdir(parents=True)  # unzipped one level deep
    line = _one_line_error(_lsd("import", "landslide4sense", tmp_path / "odd", tmp_path / "d"))
    assert "odd/TrainData: no img/ folder" in line
