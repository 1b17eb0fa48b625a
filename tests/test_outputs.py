"""The ground rules for outputs: which folder --overwrite may replace, how a replacement goes in,
what a killed writer leaves, and file-system failures as one line (no torch, all real files)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lsd.errors import InvalidValue, OutputExists, OutputNotWritable
from lsd.files import (
    PARTIAL_SUFFIX,
    REPLACED_SUFFIX,
    atomic_path,
    check_writable,
    clean_stale,
    create_json,
    write_json,
    writing,
)
from lsd.outputs import MARKER_FILE, check_output, check_reusable, mark, marked_kind


def _dead_pid() -> int:
    """The id of a process that has exited (a killed writer)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_a_marked_output_of_the_same_kind_is_replaced(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "ens"
    assert check_output(out, "ensemble", overwrite=False) == out  # new: fine, nothing created
    assert not out.exists()
    out.mkdir()
    assert check_output(out, "ensemble", overwrite=False)  # empty: fine
    (out / "notes.txt").write_text("mine")
    for overwrite in (False, True):  # a folder lsd did not write: refused either way
        with pytest.raises(InvalidValue, match="no lsd marker") as info:
            check_output(out, "ensemble", overwrite=overwrite)
        assert info.value.field == "out"
    mark(out, "map")
    with pytest.raises(InvalidValue, match="is a map folder of lsd, not an ensemble folder"):
        check_output(out, "ensemble", overwrite=True)
    mark(out, "ensemble")
    assert marked_kind(out) == "ensemble"
    with pytest.raises(OutputExists, match="an ensemble folder already exists"):
        check_output(out, "ensemble", overwrite=False)
    assert check_output(out, "ensemble", overwrite=True) == out
    # ... unless it holds an input of the command, or the working folder
    (out / "members").mkdir()
    with pytest.raises(InvalidValue, match="an input of this command"):
        check_output(out, "ensemble", overwrite=True, inputs=[out / "members"])
    monkeypatch.chdir(out / "members")
    with pytest.raises(InvalidValue, match="working folder"):
        check_output(out, "ensemble", overwrite=True)
    with pytest.raises(InvalidValue, match="working folder"):
        check_output(Path("."), "ensemble", overwrite=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(InvalidValue, match="not a folder"):
        check_output(tmp_path / "file", "map", overwrite=True)
    (out / MARKER_FILE).write_text("{damaged")  # a damaged marker marks nothing
    assert marked_kind(out) is None
    assert (out / "notes.txt").read_text() == "mine"


def test_reusable_folder_must_be_lsds(tmp_path: Path) -> None:
    folder = tmp_path / "map.inputs"
    assert check_reusable(folder, "data") == folder
    folder.mkdir()
    (folder / "x").write_text("")
    with pytest.raises(InvalidValue, match="not a data folder of lsd"):
        check_reusable(folder, "data")
    mark(folder, "data")
    assert check_reusable(folder, "data") == folder


def test_overwrite_refuses_what_lsd_did_not_write_and_names_it(tmp_path: Path) -> None:
    out = tmp_path / "map"
    with atomic_path(out, directory=True) as tmp:  # as a command writes its folder
        (tmp / "prob.tif").write_bytes(b"1234")
        (tmp / "quicklook").mkdir()
        (tmp / "quicklook" / "q.png").write_bytes(b"png")
        mark(tmp, "map")
    marker = json.loads((out / MARKER_FILE).read_text())
    assert marker["files"] == {"prob.tif": 4, "quicklook": None, "quicklook/q.png": 3}
    assert check_output(out, "map", overwrite=True) == out  # all lsd's: replaceable
    (out / "prob.tif.aux.xml").write_text("<PAMDataset/>")  # QGIS's statistics cache
    (out / "quicklook" / ".DS_Store").write_bytes(b"\0")
    assert check_output(out, "map", overwrite=True) == out  # viewers' caches are not user work
    (out / "notes.txt").write_text("my notes")
    (out / "mine").mkdir()
    (out / "mine" / "a.txt").write_text("a")
    with pytest.raises(InvalidValue) as info:
        check_output(out, "map", overwrite=True)
    assert str(info.value) == (
        f"{out}: holds mine (not written by lsd), notes.txt (not written by lsd); lsd replaces a "
        "folder only when everything in it is its own: move those out, or choose another folder"
    )
    assert info.value.field == "out"
    (out / "notes.txt").unlink()
    (out / "mine" / "a.txt").unlink()
    (out / "mine").rmdir()
    (out / "prob.tif").write_bytes(b"123456")  # edited after lsd wrote it
    with pytest.raises(InvalidValue, match=r"holds prob.tif \(changed since lsd wrote it\)"):
        check_output(out, "map", overwrite=True)
    marker.pop("files")  # a marker of an older lsd, which did not list its files
    (out / MARKER_FILE).write_text(json.dumps(marker))
    with pytest.raises(InvalidValue, match="its marker, from an older lsd, does not list"):
        check_output(out, "map", overwrite=True)
    mark(out, "runs")  # folders lsd adds to are not replaced whole and list nothing
    assert "files" not in json.loads((out / MARKER_FILE).read_text())


def test_a_symlinked_output_folder_stays_a_link(tmp_path: Path) -> None:
    target = tmp_path / "scratch" / "ens"
    with atomic_path(target, directory=True) as tmp:
        (tmp / "v").write_text("1")
    link = tmp_path / "project" / "ens"
    link.parent.mkdir()
    link.symlink_to(target)
    with atomic_path(link, directory=True) as tmp:
        assert tmp.parent == target.parent  # written beside the real folder
        (tmp / "v").write_text("2")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert (target / "v").read_text() == "2"
    assert sorted(p.name for p in link.parent.iterdir()) == ["ens"]  # no hidden .replaced
    assert sorted(p.name for p in target.parent.iterdir()) == ["ens"]
    with pytest.raises(KeyboardInterrupt), atomic_path(link, directory=True) as tmp:
        (tmp / "v").write_text("3")
        raise KeyboardInterrupt
    assert link.is_symlink() and (target / "v").read_text() == "2"
    assert sorted(p.name for p in target.parent.iterdir()) == ["ens"]


def test_replacement_keeps_the_old_folder_until_the_new_one_is_complete(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with atomic_path(final, directory=True) as tmp:
        (tmp / "v").write_text("1")
    with pytest.raises(KeyboardInterrupt), atomic_path(final, directory=True) as tmp:
        (tmp / "v").write_text("2")
        raise KeyboardInterrupt
    assert (final / "v").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]

    # a writer killed after moving the old folder aside, before the new one went in
    pid = _dead_pid()
    os.rename(final, tmp_path / f".out.{pid}-abc{REPLACED_SUFFIX}")
    half = tmp_path / f".out.{pid}-def{PARTIAL_SUFFIX}"
    half.mkdir()
    live = tmp_path / f".out.{os.getpid()}-ghi{PARTIAL_SUFFIX}"  # a writer still at work
    live.mkdir()
    removed = clean_stale(final)
    assert (final / "v").read_text() == "1"  # put back, nothing lost
    assert removed == [half] and live.is_dir()
    live.rmdir()
    # a killed writer's temporary file beside a JSON record goes on the next write
    stale = tmp_path / f".rec.json.{pid}-x{PARTIAL_SUFFIX}"
    stale.write_text("half")
    write_json(tmp_path / "rec.json", {"a": 1})
    assert not stale.exists() and json.loads((tmp_path / "rec.json").read_text()) == {"a": 1}


def test_check_writable_leaves_nothing_and_names_the_cause(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    assert check_writable(target, create=False) == target
    assert not (tmp_path / "a").exists()
    assert check_writable(target).is_dir()
    assert not [p for p in target.iterdir()]
    # /sys refuses new entries even to root, like a read-only mount
    with pytest.raises(OutputNotWritable, match="cannot be written"):
        check_writable(Path("/sys/lsd-test-out"))
    with pytest.raises(OutputNotWritable, match="cannot be written"):
        check_output(Path("/sys/lsd-test-out/ens"), "ensemble", overwrite=False)


def test_a_writer_survives_another_process_removing_the_folder_it_probed(
    tmp_path: Path, monkeypatch
) -> None:
    """Two lsd train on one new RUNS folder: one creates the folder, the other's
    check_writable(create=False) removes it again while it is still empty; the first one's
    records must still be written (test_grid_race met it now and then)."""
    import tempfile

    real = tempfile.mkstemp
    removed: list[Path] = []

    def probe_then_mkstemp(*args, **kwargs):
        folder = Path(kwargs["dir"])
        if not removed:  # the other process's cleanup lands between mkdir and the temporary
            folder.rmdir()
            removed.append(folder)
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", probe_then_mkstemp)
    runs = tmp_path / "RUNS"
    assert create_json(runs / "grid.json", {"layers": ["a"]})
    assert removed == [runs]
    assert json.loads((runs / "grid.json").read_text()) == {"layers": ["a"]}
    assert [p.name for p in runs.iterdir()] == ["grid.json"]


def test_a_check_survives_another_process_removing_the_folder(tmp_path: Path, monkeypatch) -> None:
    """The other half of that race: the folder goes between this check's mkdir and its probe."""
    import lsd.files

    real = lsd.files.probe_write
    calls: list[Path] = []

    def removed_then_probe(folder: Path) -> str | None:
        if not calls:
            folder.rmdir()
        calls.append(folder)
        return real(folder)

    monkeypatch.setattr(lsd.files, "probe_write", removed_then_probe)
    runs = tmp_path / "RUNS"
    assert check_writable(runs, create=False) == runs
    assert calls == [runs, runs] and not runs.exists()


def test_a_full_device_is_one_line(tmp_path: Path) -> None:
    """/dev/full answers every write with ENOSPC, as a full disk does."""
    with (
        pytest.raises(OutputNotWritable) as info,
        writing(tmp_path / "out.csv"),
        open("/dev/full", "w") as f,
    ):
        f.write("x" * 10_000)
    assert str(info.value) == f"{tmp_path / 'out.csv'}: cannot write ({os.strerror(errno.ENOSPC)})"
    with pytest.raises(ZeroDivisionError), writing(tmp_path / "out.csv"):
        1 / 0  # noqa: B018 - not a file-system failure: left as it is


FSIZE_CHILD = """
import resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.RLIM_INFINITY))
from lsd.errors import OutputNotWritable
from lsd.files import atomic_path
final = Path(sys.argv[1])
try:
    with atomic_path(final, directory=True) as tmp:
        (tmp / "small").write_bytes(b"1" * 1000)
        (tmp / "big").write_bytes(b"2" * 500_000)
except OutputNotWritable as exc:
    print(exc)
"""


def test_a_file_size_limit_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    """RLIMIT_FSIZE in a child process: writes past it fail with EFBIG (Python ignores SIGXFSZ)."""
    final = tmp_path / "out"
    with atomic_path(final, directory=True) as tmp:
        (tmp / "old").write_text("kept")
    res = subprocess.run([sys.executable, "-c", FSIZE_CHILD, str(final), "200000"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert res.stdout.strip() == f"{final}: cannot write (File too large)", res.stderr
    assert (final / "old").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
