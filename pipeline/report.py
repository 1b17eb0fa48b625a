"""Figures and the Markdown report of `lsd evaluate`, and the names of the files it writes.

lsd.pipeline.evaluate scores the models and calls on this module for everything it shows:
the performance diagram, F1 against ensemble size and report.md, section by section.

The performance diagram (Roebber 2009, Weather and Forecasting 24:601) puts precision (success
ratio) on x and recall (probability of detection) on y, so one point shows both kinds of error;
F1 isolines show the score the paper ranks by, and straight lines through the origin show the
frequency bias (predicted landslide area over true area): points above the bias-1 diagonal
over-predict landslides, points below it miss them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from lsd.layers import BUILTIN_SETTINGS
from lsd.pipeline.paper.facts import EVENTS_BY_NUMBER, PAPER_TEST_EVENT, TABLE8, TABLE8_KS

if TYPE_CHECKING:
    from lsd.pipeline.evaluate import Evaluation, Headline

MODELS_CSV = "models.csv"
ENSEMBLES_CSV = "ensembles.csv"
PER_EVENT_CSV = "per_event.csv"
DIAGRAM_PNG = "performance_diagram.png"
F1_PNG = "f1_by_ensemble_size.png"
REPORT_MD = "report.md"
SUMMARY_JSON = "evaluation.json"
BIAS_LINES = (0.25, 0.5, 0.8, 1.0, 1.25, 2.0, 4.0)
F1_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class Point:
    """One model or ensemble on the performance diagram."""

    label: str
    precision: float
    recall: float
    f1: float


def _pyplot():

    matplotlib.use("Agg", force=True)

    return plt


def performance_diagram(points: Sequence[Point], path: Path | str, title: str) -> list[str]:
    """Draw the diagram; returns the labels of points left out because a score is undefined."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 7), dpi=120)
    _diagram_background(fig, ax)
    markers = ["o", "s", "D", "^", "v", "P", "X", "*", "h", "<"]
    drawn = [p for p in points if math.isfinite(p.precision) and math.isfinite(p.recall)]
    skipped = [p.label for p in points if p not in drawn]
    spots = _label_spots([(p.precision, p.recall) for p in drawn], [p.label for p in drawn])
    for i, (p, spot) in enumerate(zip(drawn, spots, strict=True)):
        ax.plot(
            p.precision,
            p.recall,
            marker=markers[i % len(markers)],
            ms=9,
            ls="none",
            mec="black",
            label=f"{p.label}: P {p.precision:.2f}, R {p.recall:.2f}, F1 {p.f1:.3f}",
        )
        ax.annotate(
            p.label,
            (p.precision, p.recall),
            xytext=spot,
            ha="center",
            va="center",
            fontsize=9,
            fontweight="bold",
            bbox={"fc": "white", "ec": "gray", "alpha": 0.8, "pad": 1.5, "lw": 0.5},
            arrowprops={"arrowstyle": "-", "color": "gray", "lw": 0.7},
        )
    ax.set_title(title, fontsize=11, pad=18)
    if drawn:
        ax.legend(loc="best", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return skipped


def _diagram_background(fig, ax) -> None:
    """F1 shading and isolines, frequency-bias rays, axes: the part that is the same for every
    diagram."""
    grid = np.linspace(0.001, 1, 400)
    sr, pod = np.meshgrid(grid, grid)
    f1 = 2 * sr * pod / (sr + pod)
    filled = ax.contourf(sr, pod, f1, levels=np.linspace(0, 1, 11), cmap="Blues", alpha=0.35)
    lines = ax.contour(sr, pod, f1, levels=F1_LEVELS, colors="steelblue", linewidths=0.8)
    ax.clabel(lines, fmt="F1 %.1f", fontsize=8, inline=True)
    cbar = fig.colorbar(filled, ax=ax, shrink=0.8, pad=0.03)
    cbar.set_label("F1")
    for bias in BIAS_LINES:
        x_end, y_end = (1.0, bias) if bias <= 1 else (1.0 / bias, 1.0)
        ax.plot([0, x_end], [0, y_end], ls="--", lw=0.8, color="dimgray")
        ax.text(
            0.9 * x_end,
            0.9 * y_end,
            f"bias {bias:g}",
            fontsize=7,
            color="dimgray",
            ha="center",
            va="center",
            rotation=math.degrees(math.atan2(y_end, x_end)),
            bbox={"fc": "white", "ec": "none", "alpha": 0.7, "pad": 0.5},
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("success ratio = precision")
    ax.set_ylabel("probability of detection = recall")


def _label_spots(
    xy: Sequence[tuple[float, float]], labels: Sequence[str]
) -> list[tuple[float, float]]:
    """Greedy label placement: each label goes to the candidate spot (around its point, inside
    the unit square) farthest from every point and every label already placed, so clustered
    ensembles (they usually sit close together) stay readable."""
    placed: list[tuple[float, float]] = []
    out = []
    for (x, y), label in zip(xy, labels, strict=True):
        half = 0.0085 * len(label) + 0.01  # rough half-width of the label in axis units
        best, best_score = (x + 0.05, y + 0.05), -1.0
        for r in (0.06, 0.1, 0.15):
            for a in range(0, 360, 30):
                cx = x + (r + half * 0.8) * math.cos(math.radians(a))
                cy = y + r * math.sin(math.radians(a))
                if not (half + 0.01 < cx < 1 - half - 0.01 and 0.03 < cy < 0.97):
                    continue
                others = [*placed, *xy]
                score = min(
                    min(abs(cx - ox) / (half + 0.02), abs(cy - oy) / 0.03)
                    if (ox, oy) in placed
                    else math.hypot((cx - ox) / max(half, 0.03), (cy - oy) / 0.03)
                    for ox, oy in others
                )
                if score > best_score:
                    best, best_score = (cx, cy), score
        placed.append(best)
        out.append(best)
    return out


def f1_by_size(
    test_f1: Sequence[float],
    val_f1: Sequence[float] | None,
    best_val_k: int | None,
    best_single: float,
    marked: Sequence[int],
    path: Path | str,
    title: str,
) -> None:
    """Ensemble F1 against K, with the K chosen on validation (`best_val_k`) marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    ks = np.arange(1, len(test_f1) + 1)
    ax.plot(ks, test_f1, marker="o", ms=4, color="tab:blue", label="test F1 (ensemble of top K)")
    if val_f1 is not None:
        ax.plot(ks, val_f1, marker="s", ms=4, color="tab:orange", label="validation F1")
    if best_val_k is not None:
        kbest = best_val_k
        ax.axvline(kbest, color="tab:orange", ls=":", lw=1)
        ax.text(
            kbest,
            0.98,
            f" best val K={kbest}",
            transform=ax.get_xaxis_transform(),
            va="top",
            fontsize=9,
            color="tab:orange",
        )
    ax.axhline(best_single, color="gray", ls="--", lw=1, label="best single model (by val F1)")
    for k in marked:
        if 1 <= k <= len(test_f1):
            ax.plot(k, test_f1[k - 1], marker="o", ms=8, mfc="none", mec="tab:blue")
            ax.annotate(
                f"K={k}\n{test_f1[k - 1]:.3f}",
                (k, test_f1[k - 1]),
                textcoords="offset points",
                xytext=(0, 8),
                ha="center",
                va="bottom",
                fontsize=8,
                color="tab:blue",
            )
    ax.set_xlabel("ensemble size K (members ranked by validation F1)")
    ax.set_ylabel("F1")
    top = max([*test_f1, *(val_f1 or []), best_single, 0.05])
    ax.set_ylim(-0.01, min(1.0, top * 1.3 + 0.02))
    ax.set_xlim(0.5, len(test_f1) + 0.5)
    if len(test_f1) <= 20:
        ax.set_xticks(ks)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="lower right")
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def report_lines(
    intro: list[str],
    head: Headline,
    not_shown: list[int],
    skipped: list[str],
    best_f1: float,
    test_f1: list[float],
) -> list[str]:
    """report.md, section by section; long because it is the report's text, not logic."""
    n = len(test_f1)
    lines = ["# lsd evaluation", "", *intro, "", "## Best single model against ensembles", ""]
    lines += [
        markdown_table(
            ["model", "val F1", "precision", "recall", "F1", "IoU", "bias"],
            [
                [name, fmt(v), fmt(c.precision), fmt(c.recall), fmt(c.f1), fmt(c.iou), fmt(c.bias)]
                for name, c, v in head.rows
            ],
        ),
        "",
    ]
    if not_shown:
        lines += [f"K = {', '.join(map(str, not_shown))} not shown: only {n} runs finished.", ""]
    if head.auto_k is not None:
        lines += [f"The validation curve peaks first at K = {head.auto_k}: the size `lsd ensemble "
                  "--k auto` chooses.", ""]  # fmt: skip
    else:
        lines += ["No validation events were at hand, so the K that `lsd ensemble --k auto` "
                  "chooses is not known here.", ""]  # fmt: skip
    lines += [
        "## Performance diagram",
        "",
        f"![performance diagram]({DIAGRAM_PNG})",
        "",
        "x = precision (success ratio), y = recall (probability of detection); curves are F1 "
        "isolines; dashed lines through the origin are frequency bias (predicted over true "
        "landslide pixels; above the bias-1 diagonal = over-prediction).",
        "",
    ]
    if skipped:
        lines += [f"Not drawn (nothing predicted, precision undefined): {', '.join(skipped)}.", ""]
    lines += [
        "## F1 against ensemble size",
        "",
        f"![F1 against ensemble size]({F1_PNG})",
        "",
        f"Tables: `{MODELS_CSV}` (every model), `{ENSEMBLES_CSV}` (K = 1..{n}), "
        f"`{PER_EVENT_CSV}` (every model and K per event).",
        "",
    ]
    return lines


def paper_lines(ev: Evaluation, best_f1: float, test_f1: list[float]) -> list[str]:
    """The paper's Table 8 beside this run only where the two measure the same thing: its test
    event (Norway) and one of its layer settings. Anywhere else its figures say nothing about
    these models, and the report says so instead of printing them side by side."""
    norway = EVENTS_BY_NUMBER[PAPER_TEST_EVENT].event_id
    setting = next((s for s in TABLE8 if BUILTIN_SETTINGS[s] == ev.layers), None)
    lines = ["## The paper's Table 8", ""]
    if ev.test_events != [norway] or setting is None:
        why = (
            f"the test events here ({', '.join(ev.test_events)}) are not the paper's test event "
            f"({norway})"
            if ev.test_events != [norway]
            else "these models use none of the paper's layer settings (s1, s2, s1s2, all)"
        )
        return lines + [
            f"Not shown: the paper's Table 8 scores its own models on the Norway event with "
            f"its layer settings, and {why}, so its figures are not comparable with these.", "",
        ]  # fmt: skip
    n = len(test_f1)
    mine = [fmt(best_f1, 2)] + [fmt(test_f1[k - 1], 2) if k <= n else "-" for k in TABLE8_KS]
    return lines + [
        f"Test F1 on {norway} with the {setting} layers: the paper's models (Ganerod et al. 2023, "
        "Table 8) and these. The paper scored one centre-cropped whole-image pass; `lsd evaluate "
        "--protocol paper` repeats its scoring exactly.",
        "",
        markdown_table(
            ["models", "single best", *(f"ens{k}" for k in TABLE8_KS)],
            [["the paper's", *(fmt(x, 2) for x in TABLE8[setting])], ["these", *mine]],
        ),
        "",
    ]
