"""`lsd download paper` against a real local HTTP server standing in for Zenodo: the archive is
listed, fetched by pooch, checked against the published md5, unpacked once; bad checksums,
truncated zips, no network and placed archives each get one line and leave DIR as it was."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from lsd.pipeline.cli import main
from lsd.pipeline.paper.facts import DATA_ARCHIVE, MODELS_ARCHIVE
from lsd.pipeline.zenodo import RECORD_FILE, parse_listing
from tests.paper_fixtures import write_paper_dataset, zip_folder
from tests.zenodo_server import zenodo_stand_in


@pytest.fixture(scope="module")
def dataset_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("paper_src")
    ds = write_paper_dataset(root, size=(64, 64), train_val=[1, 2, 3, 4, 8])
    return zip_folder(ds, root / DATA_ARCHIVE)


def _download(to: Path, url: str | None, *args: str):
    env = {"LSD_ZENODO_URL": url} if url else {}
    return CliRunner().invoke(
        main, ["download", "paper", "--to", str(to), "--no-progress", *args], env=env
    )


def _one_line_error(result) -> str:
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.output
    assert "Traceback" not in result.output
    return errors[0]


def test_download_unpacks_once_and_imports(tmp_path: Path, dataset_zip: Path) -> None:
    with zenodo_stand_in(tmp_path / "zenodo") as zenodo:
        zenodo.publish(dataset_zip)
        to = tmp_path / "paper"
        result = _download(to, zenodo.url, "--data")
        assert result.exit_code == 0, result.output
        assert (to / "global_dataset" / "train_val" / "input" / "1_input.tif").is_file()
        assert (to / "global_dataset" / "test" / "label" / "5_label.tif").is_file()
        record = json.loads((to / RECORD_FILE).read_text())[DATA_ARCHIVE]
        assert (
            record["md5_check"] == "published md5 matched" and record["folder"] == "global_dataset"
        )
        assert not (to / ".downloads").exists()  # the archive went once unpacked
        again = _download(to, zenodo.url, "--data")
        assert again.exit_code == 0 and "already complete" in again.output
        assert zenodo.requests_for(DATA_ARCHIVE) == 1
    imported = CliRunner().invoke(
        main, ["import", "paper", str(to), str(tmp_path / "events"), "--no-progress"]
    )
    assert imported.exit_code == 0, imported.output
    assert "6 event folder(s)" in imported.output and "1 test" in imported.output


def test_bad_checksum_deletes_download_and_unpacks_nothing(tmp_path: Path, dataset_zip: Path):
    with zenodo_stand_in(tmp_path / "zenodo") as zenodo:
        zenodo.publish(dataset_zip, md5="0" * 32)
        to = tmp_path / "paper"
        line = _one_line_error(_download(to, zenodo.url, "--data"))
    assert "hash" in line.lower() and "deleted" in line
    assert not (to / "global_dataset").exists()
    assert not list((to / ".downloads").glob("*")) if (to / ".downloads").exists() else True
    assert not (to / RECORD_FILE).exists()


def test_truncated_zip_is_refused_and_earlier_results_stay(tmp_path: Path, dataset_zip: Path):
    to = tmp_path / "paper"
    models_src = tmp_path / "m" / "trained_models"
    (models_src / "all_ch_ensemble" / "0").mkdir(parents=True)
    (models_src / "all_ch_ensemble" / "0" / "note.txt").write_text("run 0")
    assert _download(to, None, "--from-archive", str(zip_folder(models_src, tmp_path / "m" /
                     MODELS_ARCHIVE))).exit_code == 0  # fmt: skip
    truncated = tmp_path / "cut" / DATA_ARCHIVE
    truncated.parent.mkdir()
    truncated.write_bytes(dataset_zip.read_bytes()[: dataset_zip.stat().st_size // 2])
    with zenodo_stand_in(tmp_path / "zenodo") as zenodo:
        zenodo.publish(truncated)  # the md5 of the cut file: only the zip can tell
        line = _one_line_error(_download(to, zenodo.url, "--data"))
    assert "not a complete zip" in line and "nothing was unpacked" in line
    assert not (to / "global_dataset").exists()
    assert not [p for p in to.iterdir() if p.name.endswith(".partial")]
    assert (to / "trained_models" / "all_ch_ensemble" / "0" / "note.txt").read_text() == "run 0"
    assert MODELS_ARCHIVE in json.loads((to / RECORD_FILE).read_text())


def test_offline_says_what_and_how_in_one_line(tmp_path: Path) -> None:
    line = _one_line_error(_download(tmp_path / "paper", "http://127.0.0.1:9", "--data"))
    assert "cannot reach http://127.0.0.1:9/api/records/13471162" in line
    assert "--from-archive PATH" in line and "zenodo.org/records/13471162" in line


def test_placed_archive_checked_against_recorded_listing(tmp_path: Path, dataset_zip: Path):
    to = tmp_path / "paper"
    with zenodo_stand_in(tmp_path / "zenodo") as zenodo:
        zenodo.publish(dataset_zip, md5="1" * 32)  # the listing says another file
        assert _download(to, zenodo.url, "--data").exit_code != 0  # hash check fails
    # offline now; the listing saved by the first try still knows the published md5
    line = _one_line_error(_download(to, "http://127.0.0.1:9", "--from-archive", str(dataset_zip)))
    assert "differs from the 1111" in line and "left where it is" in line
    assert dataset_zip.is_file() and not (to / "global_dataset").exists()
    fresh = tmp_path / "fresh"
    result = _download(fresh, "http://127.0.0.1:9", "--from-archive", str(dataset_zip))
    assert result.exit_code == 0, result.output
    assert "zip's own CRCs" in result.output
    assert (fresh / "global_dataset" / "train_val" / "label").is_dir()


def test_foreign_folder_and_bad_members_are_refused(tmp_path: Path, dataset_zip: Path) -> None:
    to = tmp_path / "paper"
    (to / "global_dataset").mkdir(parents=True)
    line = _one_line_error(_download(to, None, "--from-archive", str(dataset_zip)))
    assert "not unpacked by lsd download" in line
    evil = tmp_path / "evil" / DATA_ARCHIVE
    evil.parent.mkdir()
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../outside.txt", "x")
    line = _one_line_error(_download(tmp_path / "other", None, "--from-archive", str(evil)))
    assert "outside its folder" in line and not (tmp_path / "outside.txt").exists()


def test_both_listing_forms_parse() -> None:
    new = {"files": [{"key": "a.zip", "checksum": "md5:ab", "size": 3,
                      "links": {"self": "http://x/a.zip"}}]}  # fmt: skip
    old = {"files": [{"filename": "a.zip", "checksum": "ab", "filesize": 3,
                      "links": {"download": "http://x/a.zip"}}]}  # fmt: skip
    assert parse_listing(new, "x") == parse_listing(old, "x")
    assert parse_listing(new, "x")[0].md5 == "ab"
    # InvenioRDM: links.self is the file's metadata, links.content the file
    native = {"files": {"enabled": True, "entries": {"a.zip": {
        "key": "a.zip", "checksum": "md5:ab", "size": 3,
        "links": {"self": "http://x/api/records/1/files/a.zip",
                  "content": "http://x/a.zip"}}}}}  # fmt: skip
    # 2023 transitional: links.self names a file id the API answers 404 for
    links = {"self": "http://x/api/files/39922d36", "download": "http://x/a.zip"}
    transitional = {"files": [{"id": "39922d36", "filename": "a.zip", "checksum": "ab",
                               "filesize": 3, "links": links}]}  # fmt: skip
    assert parse_listing(native, "x") == parse_listing(transitional, "x") == parse_listing(new, "x")


@pytest.mark.parametrize("form", ["native", "transitional"])
def test_download_takes_the_file_link_of_each_listing_form(
    tmp_path: Path, dataset_zip: Path, form: str
) -> None:
    """Against the stand-in: the archive comes from links.content / links.download, and the
    links.self of these forms (metadata JSON, a 404) is never asked for."""
    from tests.zenodo_server import FILE_ID, METADATA

    with zenodo_stand_in(tmp_path / "zenodo") as zenodo:
        zenodo.publish(dataset_zip, form=form)
        listing = json.loads((tmp_path / "zenodo" / "api" / "records" / "13471162").read_text())
        assert isinstance(listing["files"], dict) == (form == "native")
        to = tmp_path / "paper"
        result = _download(to, zenodo.url, "--data")
        assert result.exit_code == 0, result.output
        assert (to / "global_dataset" / "test" / "label" / "5_label.tif").is_file()
        record = json.loads((to / RECORD_FILE).read_text())[DATA_ARCHIVE]
        assert record["md5_check"] == "published md5 matched"
        assert zenodo.requests_for(DATA_ARCHIVE) == 1
        assert zenodo.requests_to(f"/{METADATA}/{DATA_ARCHIVE}") == 0
        assert zenodo.requests_to(f"/api/files/{FILE_ID}") == 0


def test_interrupted_download_resumes_where_it_stopped(tmp_path: Path, dataset_zip: Path):
    size = dataset_zip.stat().st_size
    with zenodo_stand_in(tmp_path / "zenodo") as zenodo:
        zenodo.publish(dataset_zip)
        zenodo.drop_after(DATA_ARCHIVE, size // 3)
        to = tmp_path / "paper"
        line = _one_line_error(_download(to, zenodo.url, "--data"))
        assert "cannot download" in line and "--from-archive PATH" in line
        part = to / ".downloads" / f"{DATA_ARCHIVE}.part"
        kept = part.stat().st_size  # what arrived, up to the last whole chunk
        assert 0 < kept <= size // 3 and not (to / "global_dataset").exists()
        result = _download(to, zenodo.url, "--data")
        assert result.exit_code == 0, result.output
        got = [r for path, r in zenodo.ranges if path.endswith(DATA_ARCHIVE)]
    assert got == [None, f"bytes={kept}-"]  # the second request asked for the rest only
    assert (to / "global_dataset" / "test" / "input" / "5_input.tif").is_file()
    assert not part.exists()
