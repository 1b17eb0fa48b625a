"""`lsd ensemble`: the K best runs of a grid as one self-contained ensemble folder."""

from __future__ import annotations

from pathlib import Path

import click

from lsd.bundles import DEFAULT_THRESHOLD
from lsd.pipeline.options import EnsembleSizeType, LsdCommand, device_option, overwrite_option
from lsd.versions import TORCH_STACK


@click.command(cls=LsdCommand, stacks=(TORCH_STACK,))
@click.argument("runs", type=click.Path(path_type=Path))
@click.option(
    "--k",
    "k",
    type=EnsembleSizeType(),
    default="auto",
    show_default=True,
    help="Ensemble size, or 'auto' = the size with the best validation F1.",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Ensemble folder.")
@click.option(
    "--threshold",
    default=DEFAULT_THRESHOLD,
    show_default=True,
    type=float,
    help="Threshold on the mean probability, stored in the manifest.",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="Event folders for --k auto [the data folder recorded in RUNS/grid.json].",
)
@device_option
@overwrite_option
def ensemble(
    runs: Path,
    k: int | None,
    out: Path,
    threshold: float,
    data: Path | None,
    device: str,
    overwrite: bool,
) -> None:
    """Bundle the K best runs of RUNS (by validation F1) into a self-contained ENSEMBLE folder.

    Example:

    \b
        lsd ensemble paper/runs --k auto --out paper/ensemble
    """
    from lsd.training.ensemble import make_ensemble

    manifest = make_ensemble(
        runs,
        out,
        k=k,
        threshold=threshold,
        data_dir=data,
        overwrite=overwrite,
        device=device,
    )
    sel = manifest["k_selection"]
    if sel.get("mode") == "auto":
        click.echo(f"validation F1 by ensemble size ({len(sel['val_events'])} val events):")
        for point in sel["curve"]:
            f1 = point["val_f1"]
            mark = "  <- chosen" if point["k"] == manifest["k"] else ""
            click.echo(
                f"  K={point['k']:>3}  F1 {f1 if f1 is not None else float('nan'):.4f}{mark}"
            )
    names = ", ".join(m["name"] for m in manifest["members"])
    click.echo(f"wrote {out}: K={manifest['k']} members ({names})")
