"""`lsd train`: the model grid over a folder of event stacks.

Options are parsed here into plain values; every check that can fail on user input happens in
`lsd.training.grid.prepare_grid` before any training, so a mistake costs seconds, not hours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from lsd.errors import InvalidValue, UserError
from lsd.layers import BUILTIN_SETTINGS, FEATURE_GROUP_SETTINGS
from lsd.pipeline.options import (
    EXECUTORS,
    LsdCommand,
    device_option,
    precision_option,
    ray_address_option,
)
from lsd.training.presets import preset_options
from lsd.versions import TORCH_STACK

PAPER_SETTINGS = [s for s in BUILTIN_SETTINGS if s not in FEATURE_GROUP_SETTINGS]
RESUME_LINE = (
    "rerun the same command to resume: finished runs are kept and an unfinished run goes on "
    "from its last finished epoch"
)


def _names(value: str | None, flag: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(p.strip() for p in value.split(",") if p.strip())
    if not names:
        raise InvalidValue(f"{flag} is empty: give one or more comma-separated names")
    return names


def _lrs(value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    out = []
    for part in value.split(","):
        part = part.strip()
        try:
            lr = float(part)
        except ValueError:
            raise InvalidValue(
                f"learning rate '{part}' is not a positive number", field="lrs"
            ) from None
        if not lr > 0 or lr == float("inf"):
            raise InvalidValue(f"learning rate '{part}' is not a positive number", field="lrs")
        out.append(lr)
    return tuple(out)


def _split(value: str | None, flag: str) -> int | list[str] | None:
    """A count of events ('3') or event ids ('iburi,kodagu')."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    ids = [p.strip() for p in value.split(",") if p.strip()]
    if not ids:
        raise InvalidValue(f"{flag} '{value}' is neither a number of events nor event ids")
    return ids


def _with_preset(preset: str, values: dict[str, Any]) -> dict[str, Any]:
    """The preset's value for every option left at its default on the command line."""
    ctx = click.get_current_context()
    out = dict(values)
    for key, value in preset_options(preset).items():
        source = ctx.get_parameter_source(key)
        if key not in values or source in (None, ParameterSource.DEFAULT):
            out[key] = value
    return out


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _executor(name: str, address: str | None, runs_per_gpu: int, cpus_per_run: int, device: str):
    """The executor the options ask for; options that go with Ray alone are refused elsewhere."""
    from lsd.training.executor_registry import make_executor

    if name != "ray" and address:
        raise UserError("--ray-address goes with --executor ray")
    if name != "ray" and cpus_per_run != 1:
        raise UserError("--cpus-per-run goes with --executor ray")
    if name == "ray":
        return make_executor(name, runs_per_gpu=runs_per_gpu, address=address, device=device,
                             cpus_per_run=cpus_per_run)  # fmt: skip
    return make_executor(name, runs_per_gpu=runs_per_gpu)


@click.command(cls=LsdCommand, interrupt=RESUME_LINE, stacks=(TORCH_STACK,))
@click.option(
    "--setting", required=True, metavar="SETTING",
    help=f"Layers to train on: a built-in setting ({', '.join(PAPER_SETTINGS)}; the feature "
    f"groups {', '.join(FEATURE_GROUP_SETTINGS)}), a setting of --settings-file, or layer names "
    "'a,b,c'.",
)  # fmt: skip
@click.option(
    "--preset", default="lsd", show_default=True,
    type=click.Choice(["lsd", "paper", "quick", "landslide4sense"]),
    help="Named options for the ones not given: lsd (the paper's text), paper (the paper's "
    "code), quick (a small grid in minutes on a CPU), landslide4sense (that benchmark's "
    "baseline). See docs/train.md.",
)  # fmt: skip
@click.option(
    "--data", "data_dir", required=True, type=click.Path(path_type=Path),
    help="Folder of event folders (stack.tif + label.tif each).",
)  # fmt: skip
@click.option(
    "--out", "out_dir", required=True, type=click.Path(path_type=Path),
    help="RUNS folder: runs, leaderboard and split go here; rerun to resume.",
)  # fmt: skip
@click.option("--settings-file", type=click.Path(path_type=Path), help="TOML with [settings].")
@click.option("--archs", help="Comma-separated architectures [all nine].")
@click.option("--losses", help="Comma-separated losses [BCE,Dice,Focal,Jaccard,Lovasz].")
@click.option("--lrs", help="Comma-separated learning rates [0.01,0.001].")
@click.option("--encoder", default="resnet34", show_default=True, help="SMP encoder name.")
@click.option(
    "--encoder-weights", type=click.Path(path_type=Path),
    help="Local encoder state dict to start from (default: random weights).",
)  # fmt: skip
@click.option("--epochs", type=int, default=500, show_default=True, help="Epoch cap per run.")
@click.option(
    "--iters-per-epoch",
    type=int,
    default=1000,
    show_default=True,
    help="Optimiser steps per epoch (validation runs after each epoch).",
)
@click.option("--batch-size", type=int, default=4, show_default=True, help="Crops per step.")
@click.option("--crop", type=int, default=256, show_default=True, help="Training crop size.")
@click.option(
    "--patience", type=int, default=50, show_default=True,
    help="Stop a run after this many epochs without a better validation F1.",
)  # fmt: skip
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the event split, the training crops and the initial weights.",
)
@click.option(
    "--lr-schedule", type=click.Choice(["none", "plateau"]), default="none", show_default=True,
    help="plateau: ReduceLROnPlateau on the validation loss (factor 0.1, patience 10).",
)  # fmt: skip
@click.option(
    "--crop-anchor", type=click.Choice(["random", "centre"]), default="random",
    show_default=True, help="Where the anchoring landslide pixel sits in a training crop.",
)  # fmt: skip
@click.option("--val", "val", help="Validation events: a count or comma-separated event ids.")
@click.option("--test", "test", help="Test events: a count or comma-separated event ids.")
@device_option
@precision_option
@click.option(
    "--executor", type=click.Choice(EXECUTORS), default="inprocess", show_default=True,
    help="inprocess (this machine) or ray (a Ray cluster; pip install 'lsd[ray]').",
)  # fmt: skip
@ray_address_option
@click.option(
    "--runs-per-gpu", type=int, default=1, show_default=True,
    help="Runs trained at once on each device (worker processes, or fractional GPUs on Ray).",
)  # fmt: skip
@click.option(
    "--cpus-per-run", type=int, default=1, show_default=True,
    help="CPU cores each run takes on a Ray cluster without GPUs.",
)  # fmt: skip
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train(
    setting: str,
    preset: str,
    data_dir: Path,
    out_dir: Path,
    settings_file: Path | None,
    archs: str | None,
    losses: str | None,
    lrs: str | None,
    encoder: str,
    encoder_weights: Path | None,
    epochs: int,
    iters_per_epoch: int,
    batch_size: int,
    crop: int,
    patience: int,
    seed: int,
    lr_schedule: str,
    crop_anchor: str,
    val: str | None,
    test: str | None,
    device: str,
    precision: str,
    executor: str,
    ray_address: str | None,
    runs_per_gpu: int,
    cpus_per_run: int,
    quiet: bool,
) -> None:
    """Train the grid of architectures x losses x learning rates and rank it by validation F1.

    Example:

    \b
        lsd train --preset quick --setting s1s2 --data paper/events --out paper/runs

    \f
    Long because click hands every option over as a parameter; the work is in
    lsd.training.grid."""
    from lsd.runs import LEADERBOARD_FILE
    from lsd.training.grid import GridOptions, prepare_grid
    from lsd.training.schedule import GridCall, run_grid

    axes = {
        "archs": _names(archs, "--archs"),
        "losses": _names(losses, "--losses"),
        "lrs": _lrs(lrs),
    }
    given = {
        "encoder": encoder, "epochs": epochs, "iters_per_epoch": iters_per_epoch,
        "batch_size": batch_size, "crop": crop, "patience": patience, "seed": seed,
        "lr_schedule": lr_schedule, "crop_anchor": crop_anchor, "precision": precision,
    }  # fmt: skip
    opts = GridOptions(
        **_with_preset(preset, {**{k: v for k, v in axes.items() if v is not None}, **given}),
        setting=setting,
        settings_file=str(settings_file) if settings_file else None,
        encoder_weights=str(encoder_weights) if encoder_weights else None,
        val=_split(val, "--val"),
        test=_split(test, "--test"),
        device=device,
        preset=preset,
    )
    if preset != "lsd":
        click.echo(f"preset {preset}: " + ", ".join(
            f"{k} {_shown(getattr(opts, k))}" for k in preset_options(preset)
        ), err=True)  # fmt: skip
    runner = _executor(executor, ray_address, runs_per_gpu, cpus_per_run, device)
    plan = prepare_grid(data_dir, out_dir, opts, device_on_workers=executor == "ray")
    n = len(plan.configs())
    where = f"Ray ({ray_address or 'a local cluster'})" if executor == "ray" else plan.device
    click.echo(
        f"{n} run(s) on {where}: {len(plan.split['train'])} train, "
        f"{len(plan.split['val'])} val, {len(plan.split['test'])} test event(s); "
        f"layers {', '.join(plan.layers)}",
        err=True,
    )
    call = GridCall()
    rows = run_grid(plan, progress=not quiet, executor=runner, call=call)
    if call.elsewhere:
        click.echo(f"{len(call.elsewhere)} run(s) were finished by another driver: "
                   f"{', '.join(call.elsewhere)}", err=True)  # fmt: skip
    click.echo(f"trained here: {', '.join(call.trained) or 'none'}", err=True)
    if rows:
        best = rows[0]
        click.echo(
            f"best: {best['run_id']} val F1 {float(best['val_f1']):.4f}; "
            f"leaderboard: {plan.out / LEADERBOARD_FILE}"
        )
