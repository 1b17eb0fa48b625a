"""`lsd evaluate`: every model and every top-K ensemble of a grid, scored on test events."""

from __future__ import annotations

from pathlib import Path

import click

from lsd.pipeline.options import LsdCommand, device_option, overwrite_option


@click.command(cls=LsdCommand)
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
@device_option
@overwrite_option
def evaluate(
    runs: Path,
    data: Path,
    events_text: str | None,
    out: Path | None,
    threshold: float,
    ks_text: str,
    device: str,
    overwrite: bool,
) -> None:
    """Score every model of RUNS and every top-K ensemble on the test events of DATA."""
    from lsd.pipeline.evaluate import evaluate_runs, parse_ks
    from lsd.training.device import resolve_device

    ks = parse_ks(ks_text)
    ids = [p.strip() for p in events_text.split(",") if p.strip()] if events_text else None
    dev = str(resolve_device(device))
    ev = evaluate_runs(
        runs, data, out, events=ids, threshold=threshold, ks=ks, overwrite=overwrite, device=dev
    )
    best, n = ev.test.single[0], len(ev.entries)
    click.echo(f"{len(ev.test_events)} test events, {n} models")
    click.echo(f"  best single ({ev.entries[0].run_id}): F1 {best.f1:.4f}")
    for k in sorted({*(k for k in ks if k <= n), n}):
        click.echo(f"  ensemble K={k}: F1 {ev.test.ensemble[k - 1].f1:.4f}")
    click.echo(f"wrote {ev.out}")
