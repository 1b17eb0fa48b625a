"""`lsd train`: the model grid over a folder of event stacks.

Options are parsed here into plain values; every check that can fail on user input happens in
`lsd.training.grid.prepare_grid` before any training, so a mistake costs seconds, not hours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from lsd.errors import UserError
from lsd.layers import BUILTIN_SETTINGS, FEATURE_GROUP_SETTINGS
from lsd.pipeline.options import (
    CommaList,
    LsdCommand,
    device_option,
    positive_number,
    precision_option,
    ray_address_option,
)
from lsd.training.options import (
    ARCHITECTURES,
    CROP_ANCHORS,
    DEFAULT_LRS,
    EXECUTORS,
    LOSSES,
    LR_SCHEDULES,
    TrainOptions,
)
from lsd.training.presets import DEFAULT_PRESET, PRESETS, preset_options
from lsd.versions import TORCH_STACK

PAPER_SETTINGS = [s for s in BUILTIN_SETTINGS if s not in FEATURE_GROUP_SETTINGS]
RUN = TrainOptions()  # the defaults every option below shows
RESUME_LINE = (
    "rerun the same command to resume: finished runs are kept and an unfinished run goes on "
    "from its last finished epoch"
)


def _count_or_ids(value: tuple[str, ...] | None) -> int | list[str] | None:
    """--val/--test: a count of events ('3') or event ids ('iburi,kodagu')."""
    if value is None:
        return None
    return int(value[0]) if len(value) == 1 and value[0].isdigit() else list(value)


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
    "--preset", default=DEFAULT_PRESET, show_default=True, type=click.Choice(tuple(PRESETS)),
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
@click.option(
    "--archs", type=CommaList("NAMES"),
    help=f"Comma-separated architectures [all nine: {','.join(ARCHITECTURES)}].",
)  # fmt: skip
@click.option(
    "--losses", type=CommaList("NAMES"), help=f"Comma-separated losses [{','.join(LOSSES)}]."
)
@click.option(
    "--lrs", type=CommaList("LRS", positive_number),
    help=f"Comma-separated learning rates [{','.join(map(str, DEFAULT_LRS))}].",
)  # fmt: skip
@click.option("--encoder", default=RUN.encoder, show_default=True, help="SMP encoder name.")
@click.option(
    "--encoder-weights", type=click.Path(path_type=Path),
    help="Local encoder state dict to start from (default: random weights).",
)  # fmt: skip
@click.option(
    "--epochs", type=int, default=RUN.epochs, show_default=True, help="Epoch cap per run."
)
@click.option(
    "--iters-per-epoch",
    type=int,
    default=RUN.iters_per_epoch,
    show_default=True,
    help="Optimiser steps per epoch (validation runs after each epoch).",
)
@click.option(
    "--batch-size", type=int, default=RUN.batch_size, show_default=True, help="Crops per step."
)
@click.option("--crop", type=int, default=RUN.crop, show_default=True, help="Training crop size.")
@click.option(
    "--patience", type=int, default=RUN.patience, show_default=True,
    help="Stop a run after this many epochs without a better validation F1.",
)  # fmt: skip
@click.option(
    "--seed",
    type=int,
    default=RUN.seed,
    show_default=True,
    help="Seed of the event split, the training crops and the initial weights.",
)
@click.option(
    "--lr-schedule", type=click.Choice(LR_SCHEDULES), default=RUN.lr_schedule, show_default=True,
    help="plateau: ReduceLROnPlateau on the validation loss (factor 0.1, patience 10).",
)  # fmt: skip
@click.option(
    "--crop-anchor", type=click.Choice(CROP_ANCHORS), default=RUN.crop_anchor,
    show_default=True, help="Where the anchoring landslide pixel sits in a training crop.",
)  # fmt: skip
@click.option(
    "--val", "val", type=CommaList("N|IDS"),
    help="Validation events: a count or comma-separated event ids.",
)  # fmt: skip
@click.option(
    "--test", "test", type=CommaList("N|IDS"),
    help="Test events: a count or comma-separated event ids.",
)  # fmt: skip
@device_option
@precision_option
@click.option(
    "--executor", type=click.Choice(EXECUTORS), default=EXECUTORS[0], show_default=True,
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
    archs: tuple[str, ...] | None,
    losses: tuple[str, ...] | None,
    lrs: tuple[float, ...] | None,
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
    val: tuple[str, ...] | None,
    test: tuple[str, ...] | None,
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

    axes = {"archs": archs, "losses": losses, "lrs": lrs}
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
        val=_count_or_ids(val),
        test=_count_or_ids(test),
        device=device,
        preset=preset,
    )
    if preset != DEFAULT_PRESET:
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
