"""The importers follow lsd's output rules (lsd.outputs): they write event folders only into a
new, empty or lsd-made data folder, never into SRC or the working folder, and an event id that
another input already took is refused rather than skipped or replaced.

Small generated datasets (image/mask tiles, Landslide4Sense patches, the paper's layout) go
through the real CLI.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from lsd.outputs import MARKER_FILE
from tests.cli import invoke
from tests.paper_fixtures import write_paper_dataset
from tests.test_formats import write_tif

TILES = ["--mapping", "0:0,1:1", "--no-progress"]


def tiles_src(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for name in ("a", "b"):
        write_tif(root / "masks" / f"{name}.tif", (rng.random((16, 16)) > 0.5).astype(np.uint8))
        write_tif(root / "images" / f"{name}.tif", rng.random((3, 16, 16)).astype(np.float32))
    return root


def l4s_src(root: Path) -> Path:
    rng = np.random.default_rng(1)
    (root / "img").mkdir(parents=True)
    (root / "mask").mkdir()
    for n in (1, 2):
        with h5py.File(root / "img" / f"image_{n}.h5", "w") as f:
            f["img"] = rng.random((8, 8, 14))
        with h5py.File(root / "mask" / f"mask_{n}.h5", "w") as f:
            f["mask"] = (rng.random((8, 8)) > 0.5).astype(np.uint8)
    return root


def lsd(*args: object, cwd: Path | None = None) -> tuple[int, str]:
    result = invoke(*args, cwd=cwd)
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def error(args: list[object], cwd: Path | None = None) -> str:
    code, text = lsd(*args, cwd=cwd)
    lines = [ln for ln in text.splitlines() if ln.startswith("Error: ")]
    assert code == 1 and len(lines) == 1, text
    return lines[0]


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_folder_lsd_did_not_make_is_never_written(tmp_path: Path) -> None:
    src = l4s_src(tmp_path / "src")
    dest = tmp_path / "dest"
    write_tif(dest / "l4s_image_1" / "stack.tif", np.full((2, 8, 8), 7, np.float32))
    before = tree(dest)
    line = error(["import", "landslide4sense", src, dest, "--no-progress"])
    assert line == (
        f"Error: {dest}: exists and is not a data folder of lsd (it has no lsd marker); lsd "
        "adds only to new, empty or its own data folders, so that nothing of yours is replaced: "
        "choose another folder"
    )
    assert tree(dest) == before
    # an empty folder, or one lsd made, is fine; a rerun keeps the finished folders
    (tmp_path / "empty").mkdir()
    assert lsd("import", "landslide4sense", src, tmp_path / "empty", "--no-progress")[0] == 0
    assert (tmp_path / "empty" / MARKER_FILE).is_file()
    done = tree(tmp_path / "empty")
    assert lsd("import", "landslide4sense", src, tmp_path / "empty", "--no-progress")[0] == 0
    assert tree(tmp_path / "empty") == done


def test_dest_is_not_src_inside_src_or_the_working_folder(tmp_path: Path) -> None:
    src = tiles_src(tmp_path / "src")
    before = tree(src)
    assert error(["import", "tiles", src, src, *TILES]) == (
        f"Error: {src}: is an input of this command; give a folder outside it"
    )
    inside = src / "images" / "out"
    assert error(["import", "tiles", src, inside, *TILES]) == (
        f"Error: {inside}: lies inside {src}, an input of this command; give a folder outside it"
    )
    work = tmp_path / "work"
    work.mkdir()
    assert error(["import", "tiles", src, ".", *TILES], cwd=work) == (
        "Error: .: is the working folder or holds it; give a new folder instead"
    )
    assert error(["import", "tiles", src, tmp_path, *TILES]).startswith(
        f"Error: {tmp_path}: holds {src}, an input of this command"
    )
    assert tree(src) == before and not any(work.iterdir())
    paper = write_paper_dataset(tmp_path / "paper", size=(32, 32), train_val=[1, 2])
    assert "an input of this command" in error(["import", "paper", paper, paper / "events"])


def test_colliding_ids_from_a_second_source_are_refused(tmp_path: Path) -> None:
    first, second = tiles_src(tmp_path / "src1"), tiles_src(tmp_path / "src2", seed=5)
    out = tmp_path / "out"
    assert lsd("import", "tiles", first, out, *TILES)[0] == 0
    before = tree(out)
    line = error(["import", "tiles", second, out, *TILES])
    assert line.startswith(
        f"Error: {out / 'a'}: already holds event a from {first / 'images' / 'a.tif'}, "
        f"{first / 'masks' / 'a.tif'}, not from {second / 'images' / 'a.tif'}"
    )
    assert "1 more id(s) collide (b)" in line and "import into another folder" in line
    assert tree(out) == before
    # a prefix keeps both; the first import's rerun still skips its finished folders
    assert lsd("import", "tiles", second, out, *TILES, "--prefix", "s2_")[0] == 0
    assert lsd("import", "tiles", first, out, *TILES)[0] == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["a", "b", "s2_a", "s2_b"]
    assert all(tree(out)[k] == v for k, v in before.items())


def test_two_inputs_with_one_id_in_one_import(tmp_path: Path) -> None:
    """The importers refuse such pairs themselves; the driver refuses them for any source."""
    from dataclasses import dataclass

    from lsd.errors import InvalidValue
    from lsd.pipeline.sources import build_events

    src = tiles_src(tmp_path / "src")
    other = tiles_src(tmp_path / "other", seed=3)
    pairs = src / "pairs.txt"
    pairs.write_text(f"images/a.tif masks/a.tif\n{other}/images/a.tif {other}/masks/a.tif\n")
    line = error(["import", "tiles", src, tmp_path / "out", *TILES, "--pairs", pairs])
    assert line.startswith(f"Error: {other / 'images' / 'a.tif'}: two images named a")

    @dataclass(frozen=True)
    class Item:
        event_id: str
        path: str

    class Twice:  # a source whose items() lets one id through twice
        name, keep_going = "twice", False

        def items(self) -> list[Item]:
            return [Item("x", "/data/one.tif"), Item("x", "/data/two.tif")]

        def plan(self, item: Item) -> dict:
            return {"event_id": item.event_id}

        def origin(self, item: Item) -> dict:
            return {"kind": self.name, "path": item.path}

        def build(self, item: Item, folder: Path) -> None:
            raise AssertionError("nothing may be built")

    out = tmp_path / "out"
    try:
        build_events(Twice(), out, progress=False)
    except InvalidValue as exc:
        assert str(exc) == (f"{out / 'x'}: two inputs would become event x (/data/one.tif and "
                            "/data/two.tif); give them different names")  # fmt: skip
    else:
        raise AssertionError("two items with one id were accepted")
    assert not out.exists()
