"""`lsd demo` end to end at a reduced size: every output is there, the ensemble finds the
generated scars far better than chance, the K that `lsd ensemble --k auto` chose is the one
`lsd evaluate` leads with, and a rerun reuses what is finished."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lsd.pipeline.cli import main
from lsd.rasters import read_label

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# 5 events (3 train, 1 val, 1 test) of 128 px and two epochs: about 20 s on 2 idle cores
SMALL = ["--events", "5", "--size", "128", "--epochs", "2", "--device", "cpu"]
MAP_FILES = ("probability.tif", "mask.tif", "landslides.gpkg", "quicklook.png", "run.json")


def f1(predicted: np.ndarray, truth: np.ndarray) -> float:
    tp = int((predicted & truth).sum())
    return 2 * tp / max(int(predicted.sum()) + int(truth.sum()), 1)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo") / "lsd-demo"
    result = CliRunner().invoke(main, ["demo", "--out", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.mark.slow
def test_every_output_is_written_and_named(demo) -> None:
    out, text = demo
    events = sorted(p.name for p in (out / "events").iterdir() if p.is_dir())
    assert events == [f"demo-0{i}" for i in range(1, 6)]
    for event in events:
        for name in ("stack.tif", "label.tif", "event.json"):
            assert (out / "events" / event / name).is_file()
    assert (out / "runs" / "leaderboard.csv").is_file()
    assert (out / "ensemble" / "manifest.json").is_file()
    assert (out / "evaluation" / "report.md").is_file()
    for name in MAP_FILES:
        assert (out / "map" / name).is_file(), name
    summary = text[text.index("lsd demo finished") :]
    for path in ("events", "runs/leaderboard.csv", "ensemble", "evaluation/report.md", "map"):
        assert str(out / path) in summary, path
    for step in ("train --preset quick", "ensemble", "evaluate", "predict --stack"):
        assert f"$ lsd {step}" in text, step  # each step shown as the command a user types
    record = json.loads((out / "demo.json").read_text())
    assert record["test_event"] == "demo-05" and set(record["seconds"]) >= {"train", "total"}


@pytest.mark.slow
def test_the_ensemble_finds_the_scars_far_better_than_chance(demo) -> None:
    out, _ = demo
    label, _ = read_label(out / "events" / "demo-05" / "label.tif")
    mask, _ = read_label(out / "map" / "mask.tif")
    truth, scored = label == 1, label != 255
    mapped = f1((mask == 1) & scored, truth)
    everything = f1(scored, truth)  # the best a model that knows nothing can do
    assert everything < 0.1
    assert mapped > 0.4 and mapped > 5 * everything, (mapped, everything)
    record = json.loads((out / "demo.json").read_text())
    assert record["test_f1"] > 0.4  # the same event scored by lsd evaluate


@pytest.mark.slow
def test_evaluate_leads_with_the_k_ensemble_auto_chose(demo) -> None:
    out, text = demo
    k = json.loads((out / "ensemble" / "manifest.json").read_text())["k"]
    assert json.loads((out / "evaluation" / "evaluation.json").read_text())["best_val_k"] == k
    evaluate = text[text.index("$ lsd evaluate") :]
    assert f"ensemble K={k} (best validation F1, the K lsd ensemble --k auto chooses)" in evaluate
    report = (out / "evaluation" / "report.md").read_text()
    assert f"| ensemble K={k} (best val" in report
    assert f"peaks first at K = {k}: the size `lsd ensemble --k auto` chooses" in report


@pytest.mark.slow
def test_report_does_not_set_the_paper_s_table_8_beside_other_events(demo) -> None:
    report = (demo[0] / "evaluation" / "report.md").read_text()
    section = report[report.index("## The paper's Table 8") :]
    assert "not comparable" in section and "demo-05" in section
    assert "| 0.64 |" not in section and "ens10" not in section  # none of its figures


@pytest.mark.slow
def test_a_rerun_reuses_events_and_runs(demo) -> None:
    out, _ = demo
    stack = out / "events" / "demo-01" / "stack.tif"
    bundle = next((out / "runs" / "runs").iterdir()) / "bundle" / "bundle.json"
    before = stack.stat().st_mtime_ns, bundle.stat().st_mtime_ns
    result = CliRunner().invoke(main, ["demo", "--out", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    assert (stack.stat().st_mtime_ns, bundle.stat().st_mtime_ns) == before
    assert "trained here: none" in result.output
    for name in MAP_FILES:
        assert (out / "map" / name).is_file()


def test_a_folder_lsd_did_not_make_is_refused(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(main, ["demo", "--out", str(mine), *SMALL])
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"Error: --out: {mine}: exists and is not a demo folder of lsd"), line
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
