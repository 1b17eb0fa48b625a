"""`lsd evaluate --protocol paper`: the paper's notebook scoring, and its Table 8 beside the result.

The notebook (notebooks/test_enseble_classification.ipynb) ranks each setting's 90 models by
validation F1, runs each once over the whole test image centre-cropped to a multiple of 32,
thresholds the sigmoid (or the mean sigmoid of the top k) with `.round()`, and reports
precision, recall and F1 over the pixels for every single model and every top-k ensemble,
k = 1..90 (lsd.training.paper holds the crop and threshold rules). This module does the same for
one RUNS folder or a folder of them (`lsd import paper-models` writes RUNS/s1, s2, s1s2, all),
writes the curves as CSV and a report that puts Table 8 (and Table 7's single models) beside
them. Table 8's numbers are read from an anchors CSV when one is given, else from
lsd.pipeline.paper.facts.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lsd import __version__
from lsd.bundles import common_layers
from lsd.errors import InputNotFound, InvalidFile
from lsd.files import atomic_path
from lsd.outputs import check_output, mark
from lsd.pipeline.evaluate import choose_events
from lsd.pipeline.paper.facts import TABLE7, TABLE8, TABLE8_KS
from lsd.pipeline.report import fmt, markdown_table
from lsd.rasters import read_label, read_stack
from lsd.runs import LEADERBOARD_FILE, RunEntry, read_grid_record, read_leaderboard
from lsd.training.metrics import Counts

CURVES_CSV = "paper_protocol.csv"
REPORT_MD = "report.md"
TABLE8_COLUMNS = ("setting", "f1_single_best_val", "f1_ens10", "f1_ens20", "f1_ens40")


@dataclass
class SettingScores:
    """One setting's models in rank order: each alone and each top-k ensemble, on the test."""

    setting: str
    runs_dir: Path
    entries: list[RunEntry]
    single: list[Counts] = field(default_factory=list)
    ensemble: list[Counts] = field(default_factory=list)


def runs_folders(runs: Path) -> list[tuple[str, Path]]:
    """(setting, RUNS folder): RUNS itself, or each sub-folder holding a leaderboard."""
    if not runs.is_dir():
        raise InputNotFound(f"{runs}: runs folder not found")
    folders = [runs] if (runs / LEADERBOARD_FILE).exists() else sorted(
        p for p in runs.iterdir() if (p / LEADERBOARD_FILE).exists()
    )  # fmt: skip
    if not folders:
        raise InputNotFound(f"{runs}: no {LEADERBOARD_FILE} here or in its sub-folders")
    out = []
    for folder in folders:
        grid = read_grid_record(folder) or {}
        out.append((str(grid.get("setting") or folder.name), folder))
    return out


def read_table8(path: Path | None) -> dict[str, tuple[float, ...]]:
    """Table 8 from an anchors CSV (setting, f1_single_best_val, f1_ens10, f1_ens20, f1_ens40)."""
    if path is None:
        return dict(TABLE8)
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise InputNotFound(f"{path}: anchors file not found", field="anchors") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidFile(f"{path}: not a readable CSV ({exc})", field="anchors") from None
    out: dict[str, tuple[float, ...]] = {}
    for i, row in enumerate(rows, start=2):
        try:
            out[row["setting"]] = tuple(float(row[c]) for c in TABLE8_COLUMNS[1:])
        except (KeyError, TypeError, ValueError):
            raise InvalidFile(f"{path}: row {i} lacks a number in {', '.join(TABLE8_COLUMNS)}",
                              field="anchors") from None  # fmt: skip
    return out


def score_setting(
    setting: str, runs_dir: Path, test_events: Sequence, *, device: str, progress: bool
) -> SettingScores:
    """Each ranked model alone and every top-k ensemble on the centre-cropped test events."""

    from lsd.training.bundle import load_bundle
    from lsd.training.paper import CroppedEvent, paper_counts, whole_image_probability

    entries = read_leaderboard(runs_dir)
    layers = common_layers([(str(e.bundle), e.meta()) for e in entries])
    events = [
        CroppedEvent.crop(ev.event_id, read_stack(ev.stack, layers)[0], read_label(ev.label)[0])
        for ev in test_events
    ]
    sums = {e.event_id: np.zeros(e.label.shape, np.float64) for e in events}
    scores = SettingScores(setting, runs_dir, entries)
    bar = tqdm(entries, desc=f"paper protocol {setting}", unit="model", disable=not progress)
    for k, entry in enumerate(bar, start=1):
        model, meta = load_bundle(entry.bundle, device)
        single, ens = Counts(), Counts()
        for ev in events:
            prob = whole_image_probability(model, ev.image, meta.mean, meta.std, device)
            sums[ev.event_id] += prob
            single = single + paper_counts(prob, ev.label)
            ens = ens + paper_counts(sums[ev.event_id] / k, ev.label)
        scores.single.append(single)
        scores.ensemble.append(ens)
        del model
    return scores


def _p(x: float) -> float:
    """The notebook's zero_division=0: a score with nothing to divide by is 0."""
    return x if math.isfinite(x) else 0.0


def write_curves(path: Path, results: Sequence[SettingScores]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["setting", "k", "run_id", "arch", "loss", "lr", "val_f1", "precision",
                    "recall", "f1", "ens_precision", "ens_recall", "ens_f1"])  # fmt: skip
        for r in results:
            for k, (e, s, c) in enumerate(zip(r.entries, r.single, r.ensemble, strict=True), 1):
                w.writerow([r.setting, k, e.run_id, e.row.get("arch", ""), e.row.get("loss", ""),
                            e.row.get("lr", ""), f"{e.val_f1:.6g}",
                            *(f"{_p(x):.6g}" for x in (s.precision, s.recall, s.f1,
                                                       c.precision, c.recall, c.f1))])  # fmt: skip


def _table8_rows(results: Sequence[SettingScores], table8: dict) -> list[list[str]]:
    rows = []
    for r in results:
        ours = [r.single[0].f1] + [r.ensemble[k - 1].f1 if k <= len(r.ensemble) else math.nan
                                   for k in TABLE8_KS]  # fmt: skip
        paper = table8.get(r.setting)
        cells = [f"{fmt(o, 3)} ({fmt(p, 2)})" if paper else fmt(o, 3)
                 for o, p in zip(ours, paper or ours, strict=True)]  # fmt: skip
        rows.append([r.setting, r.entries[0].run_id, *cells])
    return rows


def _table7_rows(results: Sequence[SettingScores]) -> list[list[str]]:
    """Table 7's models found among ours, matched by (setting, arch, loss, lr)."""
    rows = []
    for r in results:
        ours = {(e.row.get("arch"), e.row.get("loss"), float(e.row.get("lr") or "nan")): (i, e)
                for i, e in enumerate(r.entries)}  # fmt: skip
        for setting, val, loss, lr, arch, p, rec, f1 in TABLE7:
            hit = ours.get((arch, loss, lr)) if setting == r.setting else None
            if hit is not None:
                i, e = hit
                c = r.single[i]
                rows.append([setting, f"{arch}/{loss}/{lr:g}", f"{e.val_f1:.3f} ({val:.3f})",
                             f"{_p(c.precision):.3f} ({p:.3f})", f"{_p(c.recall):.3f} ({rec:.3f})",
                             f"{c.f1:.3f} ({f1:.3f})"])  # fmt: skip
    return rows


def _curve_rows(results: Sequence[SettingScores], table8: dict) -> list[list[str]]:
    n = max(len(r.ensemble) for r in results)
    rows = []
    for k in range(1, n + 1):
        row = [str(k)]
        for r in results:
            cell = fmt(r.ensemble[k - 1].f1) if k <= len(r.ensemble) else "-"
            paper = table8.get(r.setting)
            if paper and k in TABLE8_KS:
                cell += f" ({paper[1 + TABLE8_KS.index(k)]:.2f})"
            row.append(cell)
        rows.append(row)
    return rows


def report_lines(results: Sequence[SettingScores], table8: dict, test_ids: list[str]) -> list[str]:
    settings = [r.setting for r in results]
    lines = [
        "# lsd evaluation, the paper's protocol", "",
        f"- test events: {', '.join(test_ids)}; each centre-cropped to a multiple of 32 and "
        "passed through every model once, whole; landslide where the (mean) probability is "
        "above 0.5 (the notebook's `.round()`); scores over all pixels, label 255 ignored",
        f"- models ranked by validation F1; lsd {__version__}", "",
        "## Table 8: test F1, this run (the paper's in brackets)", "",
        markdown_table(["setting", "best single model", "single best", "ens10", "ens20",
                        "ens40"], _table8_rows(results, table8)),  # fmt: skip
        "",
    ]  # fmt: skip
    t7 = _table7_rows(results)
    if t7:
        lines += ["## Table 7's models: val F1, test precision, recall, F1 (the paper's)", "",
                  markdown_table(["setting", "model", "val F1", "precision", "recall", "F1"], t7),
                  ""]  # fmt: skip
    lines += [
        "## Ensemble test F1 for every K (Table 8's K in brackets)", "",
        markdown_table(["K", *settings], _curve_rows(results, table8)), "",
        f"Every single model and ensemble with precision and recall: `{CURVES_CSV}`.", "",
    ]  # fmt: skip
    return lines


def evaluate_paper(
    runs: Path | str,
    data: Path | str,
    out: Path | str | None = None,
    *,
    events: Sequence[str] | None = None,
    anchors: Path | str | None = None,
    overwrite: bool = False,
    device: str = "cpu",
    progress: bool = True,
) -> tuple[list[SettingScores], Path]:
    from lsd.training.device import resolve_device

    device = str(resolve_device(device))  # auto, cpu, cuda or cuda:N; unusable ones fail here
    runs, data = Path(runs), Path(data)
    out = Path(out) if out is not None else runs / "evaluation-paper"
    check_output(out, "evaluation", overwrite=overwrite, inputs=(runs, data))
    table8 = read_table8(Path(anchors) if anchors else None)
    folders = runs_folders(runs)
    results = []
    test_ids: list[str] = []
    for setting, folder in folders:
        test, _, _, _ = choose_events(folder, data, events)
        test_ids = [e.event_id for e in test]
        results.append(score_setting(setting, folder, test, device=device, progress=progress))
    with atomic_path(out, directory=True) as tmp:
        write_curves(tmp / CURVES_CSV, results)
        (tmp / REPORT_MD).write_text("\n".join(report_lines(results, table8, test_ids)))
        mark(tmp, "evaluation")
    return results, out
