"""`lsd evaluate --protocol landslide4sense`: the benchmark's scoring, its Table I beside it.

The benchmark scores the landslide class only: every test patch passes once through the model
(128 x 128, whole), a pixel is landslide where the softmax of that class wins (p > 0.5), and the
true/false positive and negative counts are pooled over all patches before precision, recall and
F1 are taken with the baseline's epsilon (Train.py lines 146-172; lsd.landslide4sense.scores).
Here each model of a RUNS folder, and each top-K ensemble (the mean probability of the K best by
validation F1), is scored that way on the test patches, through the one scoring pass lsd's own
evaluation uses (a patch is a single tile of it), and printed model by model beside Table I,
whose rows are matched by architecture (lsd.landslide4sense.TABLE1_ROW). Table I's numbers are
read from an anchors CSV when one is given, else from lsd.landslide4sense.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lsd import __version__
from lsd import landslide4sense as l4s
from lsd.bundles import common_layers
from lsd.errors import InputNotFound, InvalidFile
from lsd.files import atomic_path
from lsd.outputs import check_output, mark
from lsd.pipeline.evaluate import choose_events
from lsd.pipeline.report import markdown_table
from lsd.runs import RunEntry, read_grid_record, read_leaderboard
from lsd.training.device import resolve_device
from lsd.training.ensemble import member_loaders, member_progress, prepare_events, score_members
from lsd.training.metrics import Counts

CURVES_CSV = "landslide4sense_protocol.csv"
REPORT_MD = "report.md"
TABLE1_COLUMNS = ("model", "recall_pct", "precision_pct", "f1_pct")
OUT_NAME = "evaluation-landslide4sense"


@dataclass(frozen=True)
class Score:
    """Precision, recall and F1 of the landslide class in percent, as Table I gives them."""

    precision: float
    recall: float
    f1: float

    @classmethod
    def of(cls, c: Counts) -> Score:
        p, r, f1 = l4s.scores(c.tp, c.fp, c.fn)
        return cls(100 * p, 100 * r, 100 * f1)


@dataclass
class Row:
    """One line of the comparison: a model or an ensemble, and the Table I row beside it."""

    name: str
    counts: Counts
    score: Score
    table1_model: str | None
    table1: Score | None

    @property
    def f1_difference(self) -> float:
        return self.score.f1 - self.table1.f1 if self.table1 else math.nan


@dataclass
class Landslide4SenseResult:
    entries: list[RunEntry]
    models: list[Row]
    ensembles: list[Row]  # K = 1 .. N
    test_events: list[str]
    unmatched: list[str]  # Table I models with no lsd counterpart among the runs
    out: Path


def read_table1(path: Path | None) -> dict[str, Score]:
    """Table I from an anchors CSV (model, recall_pct, precision_pct, f1_pct), or built in."""
    if path is None:
        return {m: Score(*v) for m, v in l4s.TABLE1.items()}
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise InputNotFound(f"{path}: anchors file not found", field="anchors") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidFile(f"{path}: not a readable CSV ({exc})", field="anchors") from None
    out: dict[str, Score] = {}
    for i, row in enumerate(rows, start=2):
        try:
            out[row["model"]] = Score(float(row["precision_pct"]), float(row["recall_pct"]),
                                      float(row["f1_pct"]))  # fmt: skip
        except (KeyError, TypeError, ValueError):
            raise InvalidFile(f"{path}: row {i} lacks a number in {', '.join(TABLE1_COLUMNS)}",
                              field="anchors") from None  # fmt: skip
    if not out:
        raise InvalidFile(f"{path}: no rows (columns {', '.join(TABLE1_COLUMNS)})", field="anchors")
    return out


def _table1_row(entry: RunEntry, table1: dict[str, Score]) -> tuple[str | None, Score | None]:
    model = l4s.TABLE1_ROW.get(entry.row.get("arch", ""))
    return (model, table1[model]) if model in table1 else (None, None)


def compare(
    entries: Sequence[RunEntry],
    single: Sequence[Counts],
    ensemble: Sequence[Counts],
    table1: dict[str, Score],
) -> tuple[list[Row], list[Row], list[str]]:
    """Rows for every model (beside its Table I row) and every K (beside Table I's best)."""
    models = []
    for entry, counts in zip(entries, single, strict=True):
        name, ref = _table1_row(entry, table1)
        models.append(Row(entry.run_id, counts, Score.of(counts), name, ref))
    best = max(table1, key=lambda m: table1[m].f1)
    ensembles = [Row(f"top-{k} ensemble", c, Score.of(c), f"{best} (best of Table I)", table1[best])
                 for k, c in enumerate(ensemble, start=1)]  # fmt: skip
    matched = {r.table1_model for r in models}
    return models, ensembles, [m for m in table1 if m not in matched]


def line(row: Row) -> str:
    """'name  P 70.12 R 66.00 F1 68.00 | ResU-Net P .. R .. F1 .. | F1 -3.65'."""
    ours = f"P {row.score.precision:5.2f} R {row.score.recall:5.2f} F1 {row.score.f1:5.2f}"
    if row.table1 is None:
        return f"{row.name}: {ours} | no Table I row"
    t = row.table1
    return (f"{row.name}: {ours} | {row.table1_model} P {t.precision:5.2f} R {t.recall:5.2f} "
            f"F1 {t.f1:5.2f} | F1 {row.f1_difference:+.2f}")  # fmt: skip


def _cells(row: Row) -> list[str]:
    s, t = row.score, row.table1
    ref = [f"{t.precision:.2f}", f"{t.recall:.2f}", f"{t.f1:.2f}", f"{row.f1_difference:+.2f}"]
    return [row.name, f"{s.precision:.2f}", f"{s.recall:.2f}", f"{s.f1:.2f}",
            row.table1_model or "-", *(ref if t else ["-"] * 4)]  # fmt: skip


def _csv_cells(kind: str, i: int, row: Row, entry: RunEntry) -> list[object]:
    c, s, t = row.counts, row.score, row.table1
    model = [entry.row.get("arch", ""), f"{entry.val_f1:.6g}"] if kind == "model" else ["", ""]
    ref = [f"{t.precision:.2f}", f"{t.recall:.2f}", f"{t.f1:.2f}", f"{row.f1_difference:.4f}"]
    return [kind, i, row.name, *model, c.tp, c.fp, c.fn, c.tn, f"{s.precision:.4f}",
            f"{s.recall:.4f}", f"{s.f1:.4f}", row.table1_model or "",
            *(ref if t else [""] * 4)]  # fmt: skip


def write_curves(path: Path, result: Landslide4SenseResult) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kind", "rank_or_k", "name", "arch", "val_f1", "tp", "fp", "fn", "tn",
                    "precision_pct", "recall_pct", "f1_pct", "table1_model",
                    "table1_precision_pct", "table1_recall_pct", "table1_f1_pct",
                    "f1_difference"])  # fmt: skip
        for kind, rows in (("model", result.models), ("ensemble", result.ensembles)):
            for i, (row, entry) in enumerate(zip(rows, result.entries, strict=True), start=1):
                w.writerow(_csv_cells(kind, i, row, entry))


def report_lines(result: Landslide4SenseResult, runs: Path, data: Path) -> list[str]:
    grid = read_grid_record(runs) or {}
    opts = grid.get("options", {})
    head = ["run / ensemble", "precision", "recall", "F1", "Table I model", "its precision",
            "its recall", "its F1", "F1 difference"]  # fmt: skip
    return [
        "# lsd evaluation, the Landslide4Sense protocol", "",
        f"- runs: `{runs}` ({len(result.entries)} models, ranked by validation F1); data: `{data}`",
        f"- test patches: {len(result.test_events)} (the benchmark's test split has "
        f"{l4s.SPLIT_COUNTS['test']}); each passed once, whole, through every model",
        "- landslide where the (mean) probability is above 0.5; counts pooled over all test "
        "patches; precision, recall and F1 of the landslide class in %, with the baseline's "
        "epsilon (Train.py lines 164-168)",
        f"- trained with preset `{opts.get('preset', '?')}`, normalisation "
        f"`{opts.get('normalisation', 'training')}`; lsd {__version__}", "",
        "## Each model beside Table I (Ghorbanzadeh et al. 2022)", "",
        markdown_table(head, [_cells(r) for r in result.models]), "",
        "## Each ensemble size beside Table I's best model", "",
        markdown_table(head, [_cells(r) for r in result.ensembles]), "",
        "Table I models without an lsd counterpart here: "
        + (", ".join(result.unmatched) or "none") + ".", "",
        f"Every model and ensemble with its pixel counts: `{CURVES_CSV}`.", "",
    ]  # fmt: skip


def evaluate_landslide4sense(
    runs: Path | str,
    data: Path | str,
    out: Path | str | None = None,
    *,
    events: Sequence[str] | None = None,
    anchors: Path | str | None = None,
    overwrite: bool = False,
    device: str = "cpu",
    progress: bool = True,
) -> Landslide4SenseResult:
    """Score every model of RUNS and every top-K ensemble on the test patches of DATA (the
    split's test events, else the events whose role is test) as the benchmark does; write
    the comparison with Table I to `out` (RUNS/evaluation-landslide4sense)."""

    device = str(resolve_device(device))  # auto, cpu, cuda or cuda:N; unusable ones fail here
    runs, data = Path(runs), Path(data)
    out = Path(out) if out is not None else runs / OUT_NAME
    table1 = read_table1(Path(anchors) if anchors else None)
    entries = read_leaderboard(runs)
    check_output(out, "evaluation", overwrite=overwrite, inputs=(runs, data))
    layers = common_layers([(str(e.bundle), e.meta()) for e in entries])
    test, _, _, _ = choose_events(runs, data, events)
    scores = score_members(
        member_loaders(entries, device), prepare_events(test, layers), threshold=l4s.THRESHOLD,
        device=device, progress=member_progress("test patches") if progress else None,
    )  # fmt: skip
    models, ensembles, unmatched = compare(entries, scores.single, scores.ensemble, table1)
    result = Landslide4SenseResult(
        entries, models, ensembles, [e.event_id for e in test], unmatched, out
    )
    with atomic_path(out, directory=True) as tmp:
        write_curves(tmp / CURVES_CSV, result)
        (tmp / REPORT_MD).write_text("\n".join(report_lines(result, runs, data)))
        mark(tmp, "evaluation")
    return result
