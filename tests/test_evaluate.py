"""`lsd evaluate` on a real tiny grid: CSVs, figures, report and the one-line errors."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lsd.outputs import MARKER_FILE
from lsd.rasters import read_grid, read_label, read_stack, write_label, write_stack
from tests.cli import lsd

COUNTS = ("tp", "fp", "fn", "tn")


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def evaluation(tiny_runs, tmp_path_factory) -> tuple[Path, str]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("eval") / "ev"
    code, text = lsd(
        "evaluate",
        tiny_runs.runs,
        "--data",
        tiny_runs.data,
        "--out",
        out,
        "--ks",
        "2,3,10",
        "--device",
        "cpu",
    )
    assert code == 0, text
    return out, text


def test_writes_tables_figures_and_report(tiny_runs, evaluation):
    out, text = evaluation
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "models.csv",
            "ensembles.csv",
            "per_event.csv",
            "performance_diagram.png",
            "f1_by_ensemble_size.png",
            "report.md",
            "evaluation.json",
            MARKER_FILE,
        ]
    )
    models, ens = rows(out / "models.csv"), rows(out / "ensembles.csv")
    assert [r["rank"] for r in models] == ["1", "2", "3", "4"]
    assert [float(r["val_f1"]) for r in models] == sorted(
        (float(r["val_f1"]) for r in models), reverse=True
    )
    assert [r["k"] for r in ens] == ["1", "2", "3", "4"]
    # an ensemble of one is the best single model
    assert [ens[0][c] for c in COUNTS] == [models[0][c] for c in COUNTS]
    # validation F1 of K=1 is the leaderboard's score of the best run
    assert float(ens[0]["val_f1"]) == pytest.approx(float(models[0]["val_f1"]), abs=1e-3)
    for png in ("performance_diagram.png", "f1_by_ensemble_size.png"):
        with Image.open(out / png) as im:
            assert im.width >= 600 and im.height >= 500
            pixels = np.asarray(im.convert("RGB"))
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # curves, text, not blank
        assert pixels.std() > 20
    report = (out / "report.md").read_text()
    assert "(performance_diagram.png)" in report and "(f1_by_ensemble_size.png)" in report
    assert str(tiny_runs.data) in report
    for event_id in tiny_runs.split["test"]:
        assert event_id in report
    # the size with the best validation F1 (the first of equals) is marked in the report
    val = [float(r["val_f1"]) for r in ens]
    best_k = ens[val.index(max(val))]["k"]
    assert "| best single (" in report and f"| ensemble K={best_k} (best val) |" in report
    assert "K = 10 not shown: only 4 runs finished." in report
    # the generated events are not the paper's Norway event: its Table 8 is not set beside
    assert "not comparable" in report and "ens10" not in report
    assert "best single" in text and "wrote" in text


def test_micro_counts_are_sums_of_per_event_counts(tiny_runs, evaluation):
    out, _ = evaluation
    per_event = rows(out / "per_event.csv")
    assert sorted({r["event_id"] for r in per_event}) == sorted(tiny_runs.split["test"])
    for table, kind, key in (("models.csv", "single", "rank"), ("ensembles.csv", "ensemble", "k")):
        for row in rows(out / table):
            mine = [r for r in per_event if r["kind"] == kind and r[key] == row[key]]
            assert len(mine) == len(tiny_runs.split["test"])
            for c in COUNTS:
                assert int(row[c]) == sum(int(r[c]) for r in mine), (table, row[key], c)
            tp, fp, fn = (int(row[c]) for c in ("tp", "fp", "fn"))
            assert float(row["f1"]) == pytest.approx(2 * tp / max(2 * tp + fp + fn, 1), abs=1e-5)
    # every scored pixel is a labelled (not 255) pixel of a test event, counted once
    labelled = {}
    for e in tiny_runs.split["test"]:
        label = read_label(tiny_runs.data / e / "label.tif")[0]
        labelled[e] = (int((label != 255).sum()), int((label == 1).sum()))
    for r in per_event:
        assert sum(int(r[c]) for c in COUNTS) == labelled[r["event_id"]][0]
        assert int(r["tp"]) + int(r["fn"]) == labelled[r["event_id"]][1]


def test_events_option_and_unknown_event(tiny_runs, tmp_path):
    pick = tiny_runs.split["test"][:2]
    code, text = lsd(
        "evaluate",
        tiny_runs.runs,
        "--data",
        tiny_runs.data,
        "--events",
        ",".join(pick),
        "--out",
        tmp_path / "two",
    )
    assert code == 0, text
    assert sorted({r["event_id"] for r in rows(tmp_path / "two" / "per_event.csv")}) == pick

    code, text = lsd(
        "evaluate",
        tiny_runs.runs,
        "--data",
        tiny_runs.data,
        "--events",
        f"{pick[0]},nowhere-9",
        "--out",
        tmp_path / "bad",
    )
    assert code == 1 and text.count("\n") == 1
    assert "--events names event(s) not in" in text and "nowhere-9" in text
    assert not (tmp_path / "bad").exists()


def test_existing_output_refused(tiny_runs, evaluation):
    out, _ = evaluation
    before = (out / "models.csv").read_bytes()
    code, text = lsd("evaluate", tiny_runs.runs, "--data", tiny_runs.data, "--out", out)
    assert code == 1 and text.count("\n") == 1
    assert f"{out}: an evaluation folder already exists (use --overwrite" in text
    assert (out / "models.csv").read_bytes() == before


def test_data_lacking_a_layer_is_named(tiny_runs, tmp_path):
    data = tmp_path / "data"
    event = tiny_runs.split["test"][0]
    src = tiny_runs.data / event
    stack, layers, grid = read_stack(src / "stack.tif")
    keep = [i for i, n in enumerate(layers) if n != layers[-1]]
    (data / event).mkdir(parents=True)
    write_stack(data / event / "stack.tif", stack[keep], [layers[i] for i in keep], grid)
    write_label(
        data / event / "label.tif", read_label(src / "label.tif")[0], read_grid(src / "label.tif")
    )
    code, text = lsd(
        "evaluate", tiny_runs.runs, "--data", data, "--events", event, "--out", tmp_path / "ev"
    )
    assert code == 1 and text.count("\n") == 1
    assert f"lacks layer(s) {layers[-1]}" in text and str(data / event / "stack.tif") in text
    assert not (tmp_path / "ev").exists()


def test_runs_without_leaderboard_or_with_damaged_member(tiny_runs, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(tiny_runs.runs, runs)
    victim = next((runs / "runs").iterdir()) / "bundle" / "model.pt"
    victim.write_bytes(victim.read_bytes()[:-100])
    code, text = lsd("evaluate", runs, "--data", tiny_runs.data, "--out", tmp_path / "ev")
    assert code == 1 and text.count("\n") == 1 and str(victim.resolve()) in text
    assert not (tmp_path / "ev").exists()
    (runs / "leaderboard.csv").unlink()
    code, text = lsd("evaluate", runs, "--data", tiny_runs.data, "--out", tmp_path / "ev")
    assert code == 1 and str(runs / "leaderboard.csv") in text


def test_table8_sits_beside_only_the_paper_s_test_event_and_settings() -> None:
    from lsd.layers import BUILTIN_SETTINGS
    from lsd.pipeline.evaluate import Evaluation
    from lsd.pipeline.report import paper_lines

    def section(events: list[str], layers: tuple[str, ...]) -> str:
        ev = Evaluation([], None, None, events, [], Path("ev"), layers)  # type: ignore[arg-type]
        return "\n".join(paper_lines(ev, 0.5, [0.6] * 12))

    norway = section(["05-norway"], BUILTIN_SETTINGS["s1s2"])
    assert "| the paper's | 0.64 | 0.68 | 0.69 | 0.69 |" in norway
    assert "| these | 0.50 | 0.60 | - | - |" in norway and "--protocol paper" in norway
    other = section(["demo-05"], BUILTIN_SETTINGS["s1s2"])
    assert "not comparable" in other and "demo-05" in other and "0.64" not in other
    mine = section(["05-norway"], ("dNDVI", "slope"))
    assert "none of the paper's layer settings" in mine and "0.64" not in mine


def test_best_k_never_chooses_an_undefined_f1() -> None:
    from lsd.training.ensemble import best_k

    assert best_k([float("nan"), 0.4, 0.5, 0.5]) == 3  # the smallest of the best, NaN skipped
    assert best_k([0.2, float("nan")]) == 1
