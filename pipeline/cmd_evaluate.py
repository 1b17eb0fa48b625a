"""`lsd evaluate`: every model and every top-K ensemble of a grid, scored on test events."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from lsd import landslide4sense as l4s
from lsd.bundles import DEFAULT_THRESHOLD
from lsd.errors import ConventionMismatch, UserError
from lsd.pipeline.options import CommaList, LsdCommand, count, device_option, overwrite_option
from lsd.pipeline.paper.facts import TABLE8_KS
from lsd.versions import TORCH_STACK


@click.command(cls=LsdCommand, stacks=(TORCH_STACK,))
@click.argument("runs", type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Event folders.")
@click.option(
    "--events",
    "event_ids",
    type=CommaList("IDS"),
    help="Comma-separated test event ids [split.json test, else event.json roles].",
)
@click.option("--out", type=click.Path(path_type=Path), help="Output folder [RUNS/evaluation].")
@click.option(
    "--threshold",
    default=DEFAULT_THRESHOLD,
    show_default=True,
    type=float,
    help="Threshold on the (mean) probability.",
)
@click.option(
    "--ks",
    type=CommaList("KS", count),
    default="10,20,40",
    show_default=True,
    help="Ensemble sizes to mark in the figures and the report.",
)
@click.option(
    "--protocol", type=click.Choice(["lsd", "paper", "landslide4sense"]), default="lsd",
    show_default=True,
    help="paper: the paper notebook's scoring (whole centre-cropped image, p > 0.5, every K) "
    "beside its Table 8; RUNS may then be a folder of RUNS folders (one per setting). "
    "landslide4sense: that benchmark's scoring (landslide-class precision, recall, F1 pooled "
    "over the test patches, p > 0.5) for every model and K, beside its Table I.",
)  # fmt: skip
@click.option(
    "--anchors", type=click.Path(path_type=Path),
    help="Table 8 as CSV (setting,f1_single_best_val,f1_ens10,f1_ens20,f1_ens40) for "
    "--protocol paper, Table I (model,recall_pct,precision_pct,f1_pct) for --protocol "
    "landslide4sense [the published numbers, built in].",
)  # fmt: skip
@click.option(
    "--ignore-conventions", is_flag=True,
    help="Score test events whose conventions (flattening sign, flag polarity, dB) differ from "
    "the models'.",
)  # fmt: skip
@device_option
@overwrite_option
def evaluate(
    runs: Path,
    data: Path,
    event_ids: tuple[str, ...] | None,
    out: Path | None,
    threshold: float,
    ks: tuple[int, ...],
    protocol: str,
    anchors: Path | None,
    ignore_conventions: bool,
    device: str,
    overwrite: bool,
) -> None:
    """Score every model of RUNS and every top-K ensemble on the test events of DATA.

    Example:

    \b
        lsd evaluate paper/runs --data paper/events
    """
    from lsd.pipeline.evaluate import evaluate_runs

    ids = list(event_ids) if event_ids else None
    if protocol == "paper":
        _evaluate_paper(runs, data, out, ids, anchors, device, overwrite)
        return
    if protocol == "landslide4sense":
        if click.get_current_context().get_parameter_source("threshold") != ParameterSource.DEFAULT:
            raise UserError(
                f"--threshold goes with --protocol lsd; the benchmark's is {l4s.THRESHOLD}"
            )
        _evaluate_landslide4sense(runs, data, out, ids, anchors, device, overwrite)
        return
    try:
        ev = evaluate_runs(
            runs, data, out, events=ids, threshold=threshold, ks=ks, overwrite=overwrite,
            device=device, ignore_conventions=ignore_conventions,
        )  # fmt: skip
    except ConventionMismatch as exc:
        raise ConventionMismatch(
            f"{exc} (lsd fetch --conventions-from {runs} fetches matching events; "
            "--ignore-conventions scores these anyway)"
        ) from None
    best, n, auto = ev.test.single[0], len(ev.entries), ev.best_val_k
    click.echo(f"{len(ev.test_events)} test events, {n} models")
    click.echo(f"  best single ({ev.entries[0].run_id}): F1 {best.f1:.4f}")
    if auto is not None:
        click.echo(f"  ensemble K={auto} (best validation F1, the K lsd ensemble --k auto "
                   f"chooses): F1 {ev.test.ensemble[auto - 1].f1:.4f}")  # fmt: skip
    else:
        click.echo("  (no validation events: the K of lsd ensemble --k auto is not known here)")
    for k in sorted({*(k for k in ks if k <= n), n} - {auto}):
        click.echo(f"  ensemble K={k}: F1 {ev.test.ensemble[k - 1].f1:.4f}")
    click.echo(f"wrote {ev.out}")


def _evaluate_paper(runs, data, out, ids, anchors, device: str, overwrite: bool) -> None:
    from lsd.pipeline.paper.protocol import evaluate_paper, read_table8

    results, folder = evaluate_paper(
        runs, data, out, events=ids, anchors=anchors, overwrite=overwrite, device=device
    )
    table8 = read_table8(anchors)
    for r in results:
        paper = table8.get(r.setting)
        shown = [f"single best {r.single[0].f1:.3f}"] + [
            f"ens{k} {r.ensemble[k - 1].f1:.3f}" for k in TABLE8_KS if k <= len(r.ensemble)
        ]
        names = ["single best", *(f"ens{k}" for k in TABLE8_KS)]
        tail = (
            " (paper: " + ", ".join(f"{n} {x:.2f}" for n, x in zip(names, paper, strict=True)) + ")"
            if paper
            else ""
        )
        click.echo(f"{r.setting}: {len(r.entries)} models; {'; '.join(shown)}{tail}")
    click.echo(f"wrote {folder}")


def _evaluate_landslide4sense(runs, data, out, ids, anchors, device: str, overwrite: bool) -> None:
    from lsd.pipeline.landslide4sense_protocol import evaluate_landslide4sense, line

    result = evaluate_landslide4sense(
        runs, data, out, events=ids, anchors=anchors, overwrite=overwrite, device=device
    )
    click.echo(
        f"{len(result.test_events)} test patches, {len(result.entries)} models; landslide "
        "class, pooled, p > 0.5, in %; Table I (Ghorbanzadeh et al. 2022) beside"
    )
    for row in [*result.models, *result.ensembles[1:]]:
        click.echo(f"  {line(row)}")
    if result.unmatched:
        click.echo(f"Table I models without an lsd counterpart: {', '.join(result.unmatched)}")
    click.echo(f"wrote {result.out}")
