"""`lsd evaluate`: every model and every top-K ensemble of a grid, scored on test events."""

from __future__ import annotations

from pathlib import Path

import click

from lsd.pipeline.options import LsdCommand, device_option, overwrite_option
from lsd.versions import TORCH_STACK


@click.command(cls=LsdCommand, stacks=(TORCH_STACK,))
@click.argument("runs", type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Event folders.")
@click.option(
    "--events",
    "events_text",
    help="Comma-separated test event ids [split.json test, else event.json roles].",
)
@click.option("--out", type=click.Path(path_type=Path), help="Output folder [RUNS/evaluation].")
@click.option(
    "--threshold",
    default=0.5,
    show_default=True,
    type=float,
    help="Threshold on the (mean) probability.",
)
@click.option(
    "--ks",
    "ks_text",
    default="10,20,40",
    show_default=True,
    help="Ensemble sizes to mark in the figures and the report.",
)
@click.option(
    "--protocol", type=click.Choice(["lsd", "paper"]), default="lsd", show_default=True,
    help="paper: the paper notebook's scoring (whole centre-cropped image, p > 0.5, every K) "
    "beside its Table 8; RUNS may then be a folder of RUNS folders (one per setting).",
)  # fmt: skip
@click.option(
    "--anchors", type=click.Path(path_type=Path),
    help="Table 8 as CSV (setting,f1_single_best_val,f1_ens10,f1_ens20,f1_ens40) for "
    "--protocol paper [the paper's numbers, built in].",
)  # fmt: skip
@device_option
@overwrite_option
def evaluate(
    runs: Path,
    data: Path,
    events_text: str | None,
    out: Path | None,
    threshold: float,
    ks_text: str,
    protocol: str,
    anchors: Path | None,
    device: str,
    overwrite: bool,
) -> None:
    """Score every model of RUNS and every top-K ensemble on the test events of DATA."""
    from lsd.pipeline.evaluate import evaluate_runs, parse_ks
    from lsd.training.device import resolve_device

    ks = parse_ks(ks_text)
    ids = [p.strip() for p in events_text.split(",") if p.strip()] if events_text else None
    dev = str(resolve_device(device))
    if protocol == "paper":
        _evaluate_paper(runs, data, out, ids, anchors, dev, overwrite)
        return
    ev = evaluate_runs(
        runs, data, out, events=ids, threshold=threshold, ks=ks, overwrite=overwrite, device=dev
    )
    best, n = ev.test.single[0], len(ev.entries)
    click.echo(f"{len(ev.test_events)} test events, {n} models")
    click.echo(f"  best single ({ev.entries[0].run_id}): F1 {best.f1:.4f}")
    for k in sorted({*(k for k in ks if k <= n), n}):
        click.echo(f"  ensemble K={k}: F1 {ev.test.ensemble[k - 1].f1:.4f}")
    click.echo(f"wrote {ev.out}")


def _evaluate_paper(runs, data, out, ids, anchors, device: str, overwrite: bool) -> None:
    from lsd.paper import TABLE8_KS
    from lsd.pipeline.paper_protocol import evaluate_paper, read_table8

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
