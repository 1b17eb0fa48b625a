"""The README's first command, step by step, on an archive in the published format served by a
local stand-in for Zenodo: download, import, train (quick preset), ensemble, map the test event.
Offline, it stops at the first step with one line. The benchmark
`python -m benchmarks.bench_quickstart` runs the same steps unshortened and times them."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from lsd.pipeline.cli import main
from lsd.pipeline.paper.facts import DATA_ARCHIVE
from tests.paper_fixtures import write_paper_dataset, zip_folder
from tests.zenodo_server import zenodo_stand_in

README = Path(__file__).resolve().parents[1] / "README.md"
# only here: the quick preset's epochs, shortened so the suite stays fast
SHORT_TRAIN = ["--epochs", "1", "--iters-per-epoch", "2", "--quiet"]


def readme_steps() -> list[list[str]]:
    """The lsd commands of the README's first command line, in order."""
    text = README.read_text()
    first = text.split("```bash\n", 1)[1].splitlines()[0]
    return [shlex.split(step)[1:] for step in first.split(" && ") if step.startswith("lsd ")]


def test_readme_first_command_is_the_paper_chain() -> None:
    steps = readme_steps()
    assert [s[0] for s in steps] == ["download", "import", "train", "ensemble", "predict"]
    assert steps[0][:2] == ["download", "paper"] and "--data" in steps[0]
    assert steps[1][:2] == ["import", "paper"]
    assert "--preset" in steps[2] and steps[2][steps[2].index("--preset") + 1] == "quick"
    assert "--stack" in steps[4] and "05-norway" in steps[4][steps[4].index("--stack") + 1]


def test_readme_first_command_runs_on_the_published_format(tmp_path: Path, monkeypatch) -> None:
    ds = write_paper_dataset(tmp_path / "src", size=(48, 48), train_val=[1, 2, 3, 4, 8, 9])
    archive = zip_folder(ds, tmp_path / "src" / DATA_ARCHIVE)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with zenodo_stand_in(tmp_path / "zenodo") as zenodo:
        zenodo.publish(archive)
        for step in readme_steps():
            args = step + SHORT_TRAIN if step[0] == "train" else step
            if step[0] in ("download", "import"):
                args = [*args, "--no-progress"]
            result = CliRunner().invoke(main, args, env={"LSD_ZENODO_URL": zenodo.url})
            assert result.exit_code == 0, (step[0], result.output)
    assert (work / "paper" / "events" / "05-norway" / "label.tif").is_file()
    assert (work / "paper" / "ensemble" / "manifest.json").is_file()
    for name in ("probability.tif", "mask.tif", "landslides.gpkg", "run.json"):
        assert (work / "paper" / "norway-map" / name).is_file()


def test_readme_first_command_offline_is_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    step = readme_steps()[0] + ["--no-progress"]
    result = CliRunner().invoke(main, step, env={"LSD_ZENODO_URL": "http://127.0.0.1:9"})
    assert result.exit_code != 0
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1 and "cannot reach" in lines[0] and "--from-archive PATH" in lines[0]
    assert "`lsd demo` runs the whole chain offline" in lines[0]
    assert list(tmp_path.iterdir()) == []  # no empty paper/ folder left behind


def test_readme_says_to_run_the_demo_offline() -> None:
    text = README.read_text()
    after = text.split("```", 2)[2]  # the paragraph below the first commands
    assert "lsd demo" in after[: after.index("\n## ")]


@pytest.mark.parametrize("preset", ["paper", "quick"])
def test_presets_show_in_help(preset: str) -> None:
    assert preset in CliRunner().invoke(main, ["train", "--help"]).output
