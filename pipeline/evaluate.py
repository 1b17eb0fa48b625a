"""`lsd evaluate`: score every single model and every top-K ensemble of a grid on test events.

Scores are micro (counts summed over all test pixels, then divided), as in the paper, and per
event, because a grid that wins on one large event can lose on most small ones. The whole output
folder is written under a temporary name and renamed at the end, so a crash or Ctrl-C never
leaves CSVs that look complete.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsd import __version__
from lsd.bundles import DEFAULT_THRESHOLD, check_threshold, common_layers
from lsd.conventions import of_models
from lsd.errors import InvalidValue, UserError
from lsd.events import EventFolder, list_events, select_events
from lsd.files import atomic_path
from lsd.outputs import check_output, mark
from lsd.pipeline.conventions import check_events_against_model
from lsd.pipeline.report import (
    DIAGRAM_PNG,
    ENSEMBLES_CSV,
    F1_PNG,
    MODELS_CSV,
    PER_EVENT_CSV,
    REPORT_MD,
    SUMMARY_JSON,
    Point,
    f1_by_size,
    paper_lines,
    performance_diagram,
    report_lines,
)
from lsd.progress import warn
from lsd.runs import SPLIT_FILE, RunEntry, read_leaderboard, read_split
from lsd.training.ensemble import (
    Scores,
    best_k,
    member_loaders,
    member_progress,
    prepare_events,
    score_members,
)
from lsd.training.metrics import Counts

DEFAULT_KS = (10, 20, 40)

COUNT_COLS = ("tp", "fp", "fn", "tn", "precision", "recall", "f1", "iou", "bias")


def _num(x: float) -> str:
    """CSV cell: empty when undefined (precision with nothing predicted, recall with nothing
    to find) so that spreadsheets and pandas read it as missing rather than as a number."""
    return "" if not math.isfinite(x) else f"{x:.6g}"


def _count_cells(c: Counts) -> list[str]:
    return [str(c.tp), str(c.fp), str(c.fn), str(c.tn)] + [
        _num(v) for v in (c.precision, c.recall, c.f1, c.iou, c.bias)
    ]


def _mean_event_f1(per_event: dict[str, list[Counts]], i: int) -> float:
    """Macro F1 over events that have something to score (a landslide or a prediction)."""
    vals = [cs[i].f1 for cs in per_event.values() if cs[i].tp + cs[i].fp + cs[i].fn > 0]
    return sum(vals) / len(vals) if vals else math.nan


def _events_by_role(data_dir: Path, role: str) -> list[EventFolder]:
    return [e for e in list_events(data_dir) if e.role == role]


def choose_events(
    runs_dir: Path, data_dir: Path, ids: Sequence[str] | None
) -> tuple[list[EventFolder], str, list[EventFolder], str]:
    """Test and validation events and a sentence on where each list came from.

    Test: the ids given, else split.json "test", else event.json roles. Validation (for the F1
    curve) is best effort: used only if all its events are in the data folder.
    """
    split = read_split(runs_dir)
    if ids:
        test = select_events(data_dir, ids, source="events", field="events")
        test_src = "the test events given"
    elif split["test"]:
        test = select_events(data_dir, split["test"], source=str(runs_dir / SPLIT_FILE))
        test_src = f"the test list of {runs_dir / SPLIT_FILE}"
    else:
        test = _events_by_role(data_dir, "test")
        test_src = f'events whose event.json role is "test" in {data_dir}'
        if not test:
            raise InvalidValue(
                f"no test events: {runs_dir / SPLIT_FILE} lists none and no event in {data_dir} "
                "has role test; name the test events",
                field="events",
            )
    val: list[EventFolder] = []
    val_src = "none"
    if split["val"]:
        try:
            val = select_events(data_dir, split["val"], source=str(runs_dir / SPLIT_FILE))
            val_src = f"the val list of {runs_dir / SPLIT_FILE}"
        except UserError:
            val, val_src = [], f"not available (val events of {SPLIT_FILE} not all in {data_dir})"
    else:
        val = _events_by_role(data_dir, "val")
        if val:
            val_src = f'events whose event.json role is "val" in {data_dir}'
    _check_not_trained_on(test, split, runs_dir / SPLIT_FILE)
    test_ids = {e.event_id for e in test}
    val = [e for e in val if e.event_id not in test_ids]
    return test, test_src, val, val_src


def _check_not_trained_on(
    test: Sequence[EventFolder], split: dict[str, list[str]], split_path: Path
) -> None:
    """A test score of an event the models trained or were selected on flatters them."""
    for role, word in (("train", "training"), ("val", "validation")):
        seen = [e.event_id for e in test if e.event_id in set(split[role])]
        if seen:
            shown = ", ".join(seen[:5]) + (" ..." if len(seen) > 5 else "")
            raise InvalidValue(
                f"test event(s) {shown} are in the {word} list of {split_path}: the models "
                f"{'learnt from' if role == 'train' else 'were chosen on'} them, so a test score "
                "there would flatter them; choose test events the grid did not use",
                field="events",
            )


@dataclass
class Evaluation:
    entries: list[RunEntry]
    test: Scores
    val: Scores | None
    test_events: list[str]
    val_events: list[str]
    out: Path
    layers: tuple[str, ...] = ()

    @property
    def best_val_k(self) -> int | None:
        """The ensemble size `lsd ensemble --k auto` chooses (None without validation events)."""
        return best_k([c.f1 for c in self.val.ensemble]) if self.val is not None else None


def evaluate_runs(
    runs_dir: Path | str,
    data_dir: Path | str,
    out: Path | str | None = None,
    *,
    events: Sequence[str] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    ks: Sequence[int] = DEFAULT_KS,
    overwrite: bool = False,
    device: str = "cpu",
    progress: bool = True,
    ignore_conventions: bool = False,
) -> Evaluation:
    """Score every model and top-K ensemble of `runs_dir` on the test events of `data_dir`;
    events whose conventions differ from the models' are refused unless `ignore_conventions`.
    """
    from lsd.training.device import resolve_device

    device = str(resolve_device(device))  # auto, cpu, cuda or cuda:N; unusable ones fail here
    runs_dir, data_dir = Path(runs_dir), Path(data_dir)
    out = Path(out) if out is not None else runs_dir / "evaluation"
    threshold = check_threshold(threshold)
    entries = read_leaderboard(runs_dir)
    check_output(out, "evaluation", overwrite=overwrite, inputs=(runs_dir, data_dir))
    layers = common_layers([(str(e.bundle), e.meta()) for e in entries])
    test_f, test_src, val_f, val_src = choose_events(runs_dir, data_dir, events)
    _check_conventions(entries, layers, test_f, runs_dir, ignore_conventions)
    test_ev = prepare_events(test_f, layers)
    val_ev = prepare_events(val_f, layers) if val_f else []
    members = member_loaders(entries, device)
    test = score_members(
        members,
        test_ev,
        threshold=threshold,
        device=device,
        progress=member_progress("test events") if progress else None,
    )
    val = None
    if val_ev:
        val = score_members(
            members,
            val_ev,
            threshold=threshold,
            device=device,
            progress=member_progress("validation events") if progress else None,
        )
    result = Evaluation(
        entries,
        test,
        val,
        [e.event_id for e in test_ev],
        [e.event_id for e in val_ev],
        out,
        tuple(layers),
    )
    with atomic_path(out, directory=True) as tmp:
        _write_csvs(tmp, result)
        _write_figures_and_report(
            tmp,
            result,
            ks=ks,
            threshold=threshold,
            data_dir=data_dir,
            test_src=test_src,
            val_src=val_src,
            runs_dir=runs_dir,
        )
        mark(tmp, "evaluation")
    return result


def _check_conventions(
    entries: Sequence[RunEntry],
    layers: Sequence[str],
    test: Sequence[EventFolder],
    runs_dir: Path,
    ignore: bool,
) -> None:
    """The test events must mean what the models learnt (lsd.conventions); say once what cannot
    be checked."""

    model = of_models([e.meta() for e in entries], [e.bundle for e in entries])
    found = check_events_against_model(
        test, model, layers, model_where=f"the models of {runs_dir}", ignore=ignore
    )
    for line in found.warnings:
        warn(line)


def _write_csvs(folder: Path, ev: Evaluation) -> None:
    n = len(ev.entries)
    with (folder / MODELS_CSV).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "rank",
                "run_id",
                "arch",
                "encoder",
                "loss",
                "lr",
                "val_f1",
                *COUNT_COLS,
                "mean_event_f1",
            ]
        )
        for i, (entry, c) in enumerate(zip(ev.entries, ev.test.single, strict=True)):
            row = entry.row
            w.writerow(
                [
                    i + 1,
                    entry.run_id,
                    row.get("arch", ""),
                    row.get("encoder", ""),
                    row.get("loss", ""),
                    row.get("lr", ""),
                    _num(entry.val_f1),
                    *_count_cells(c),
                    _num(_mean_event_f1(ev.test.single_by_event, i)),
                ]
            )
    with (folder / ENSEMBLES_CSV).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["k", "added_run_id", "val_f1", *COUNT_COLS, "mean_event_f1"])
        for i in range(n):
            val_f1 = ev.val.ensemble[i].f1 if ev.val is not None else math.nan
            w.writerow(
                [
                    i + 1,
                    ev.entries[i].run_id,
                    _num(val_f1),
                    *_count_cells(ev.test.ensemble[i]),
                    _num(_mean_event_f1(ev.test.ensemble_by_event, i)),
                ]
            )
    with (folder / PER_EVENT_CSV).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["event_id", "kind", "name", "rank", "k", *COUNT_COLS])
        for event_id in ev.test_events:
            for i, c in enumerate(ev.test.single_by_event[event_id]):
                w.writerow([event_id, "single", ev.entries[i].run_id, i + 1, "", *_count_cells(c)])
            for i, c in enumerate(ev.test.ensemble_by_event[event_id]):
                w.writerow([event_id, "ensemble", f"top{i + 1}", "", i + 1, *_count_cells(c)])


@dataclass
class Headline:
    """The rows the report leads with: the best single model and the marked ensemble sizes."""

    rows: list[tuple[str, Counts, float | None]]  # (name, test counts, val F1)
    points: list[Point]  # the same, for the performance diagram
    shown: list[int]  # ensemble sizes asked for that exist
    auto_k: int | None  # the size with the best validation F1
    val_curve: list[float] | None


def _headline(ev: Evaluation, ks: Sequence[int]) -> Headline:
    n = len(ev.entries)
    val_curve = [c.f1 for c in ev.val.ensemble] if ev.val is not None else None
    shown = [k for k in ks if 1 < k <= n]
    extra = [k for k in (n,) if k > 1 and k not in shown]
    auto_k = ev.best_val_k
    best = ev.test.single[0]
    rows: list[tuple[str, Counts, float | None]] = [
        (f"best single ({ev.entries[0].run_id})", best, ev.entries[0].val_f1)
    ]
    points = [Point("best single", best.precision, best.recall, best.f1)]

    def label(k: int) -> str:
        notes = [note for note, on in (("best val", k == auto_k), ("all", k == n)) if on]
        return f"K={k}" + (f" ({', '.join(notes)})" if notes else "")

    # first the K `lsd ensemble --k auto` chooses (even K=1), then the sizes asked for
    first = [auto_k] if auto_k is not None else []
    marked = [(k, label(k)) for k in dict.fromkeys([*first, *shown, *extra])]
    for k, label_k in marked:
        c = ev.test.ensemble[k - 1]
        rows.append((f"ensemble {label_k}", c, val_curve[k - 1] if val_curve else None))
        points.append(Point(label_k, c.precision, c.recall, c.f1))
    return Headline(rows, points, shown, auto_k, val_curve)


def _write_figures_and_report(
    folder: Path,
    ev: Evaluation,
    *,
    ks: Sequence[int],
    threshold: float,
    data_dir: Path,
    test_src: str,
    val_src: str,
    runs_dir: Path,
) -> None:
    n = len(ev.entries)
    head = _headline(ev, ks)
    best = ev.test.single[0]
    skipped = performance_diagram(
        head.points,
        folder / DIAGRAM_PNG,
        f"Performance diagram, {len(ev.test_events)} test event(s), threshold {threshold:g}",
    )
    test_f1 = [c.f1 for c in ev.test.ensemble]
    f1_by_size(test_f1, head.val_curve, head.auto_k, best.f1, head.shown, folder / F1_PNG,
               f"F1 against ensemble size ({n} finished runs)")  # fmt: skip
    intro = [
        f"- runs: `{runs_dir}` ({n} finished runs, ranked by validation F1)",
        f"- data: `{data_dir}`",
        f"- test events ({len(ev.test_events)}, from {test_src}): " + ", ".join(ev.test_events),
        f"- validation events ({len(ev.val_events)}, from {val_src})"
        + (": " + ", ".join(ev.val_events) if ev.val_events else ""),
        f"- threshold on the (mean) landslide probability: {threshold:g}; "
        "scores are micro (pixel counts summed over all test events, label 255 ignored)",
        f"- lsd {__version__}",
    ]
    lines = report_lines(intro, head, [k for k in ks if k > n], skipped, best.f1, test_f1)
    lines += paper_lines(ev, best.f1, test_f1)
    (folder / REPORT_MD).write_text("\n".join(lines))
    summary: dict[str, Any] = {
        "runs": str(runs_dir),
        "data": str(data_dir),
        "threshold": threshold,
        "test_events": ev.test_events,
        "val_events": ev.val_events,
        "best_val_k": head.auto_k,
        "lsd_version": __version__,
    }
    (folder / SUMMARY_JSON).write_text(json.dumps(summary, indent=2) + "\n")
