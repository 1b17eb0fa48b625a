"""The paper's model grid: every (architecture, loss, learning rate), one run folder each.

Everything a user can get wrong is checked in `prepare_grid` before the first run starts, because a
typo found after three hours of training wastes the three hours. A RUNS folder records the split
and the normalisation it was made with; calling `lsd train` again on it resumes the grid, and a
call with a different split or layers is refused rather than mixing incomparable runs in one
leaderboard.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lsd.contract import (
    EventFolder,
    atomic_path,
    check_writable,
    list_events,
    read_json,
    read_stack,
    resolve_setting,
    write_json,
)
from lsd.errors import UserError
from lsd.training.models import ARCHITECTURES

RUNS_DIR = "runs"
SPLIT_FILE = "split.json"
GRID_FILE = "grid.json"
LEADERBOARD_FILE = "leaderboard.csv"
LEADERBOARD_COLUMNS = (
    "rank", "run_id", "arch", "encoder", "loss", "lr", "val_f1", "val_precision", "val_recall",
    "val_iou", "best_epoch", "epochs_run", "seconds", "bundle",
)  # fmt: skip
DEFAULT_LRS: tuple[float, ...] = (0.01, 0.001)
# Options that change what a run learns; a RUNS folder refuses a resume that changes them.
FIXED_OPTIONS = ("encoder", "encoder_weights", "crop", "batch_size", "iters_per_epoch", "seed")


def _default_losses() -> tuple[str, ...]:
    from lsd.training.losses import LOSSES

    return tuple(LOSSES)


@dataclass
class GridOptions:
    """The command line, parsed; defaults are the paper's protocol."""

    setting: str = "all"
    settings_file: str | None = None
    archs: tuple[str, ...] = ARCHITECTURES
    losses: tuple[str, ...] = field(default_factory=_default_losses)
    lrs: tuple[float, ...] = DEFAULT_LRS
    encoder: str = "resnet34"
    encoder_weights: str | None = None
    epochs: int = 500
    iters_per_epoch: int = 1000
    batch_size: int = 4
    crop: int = 256
    patience: int = 50
    seed: int = 0
    val: int | list[str] | None = None
    test: int | list[str] | None = None
    device: str = "auto"


@dataclass
class GridPlan:
    """A checked grid, ready to run: its folder, events, split and normalisation."""

    out: Path
    options: GridOptions
    layers: list[str]
    events: list[EventFolder]
    split: dict[str, Any]
    mean: list[float]
    std: list[float]
    device: Any  # torch.device

    def configs(self) -> list[Any]:
        """Runs in the paper's order: architectures, then losses, then learning rates."""
        from lsd.training.loop import RunConfig

        o = self.options
        return [
            RunConfig(
                arch=a,
                loss=loss,
                lr=lr,
                encoder=o.encoder,
                encoder_weights=o.encoder_weights,
                crop=o.crop,
                batch_size=o.batch_size,
                iters_per_epoch=o.iters_per_epoch,
                epochs=o.epochs,
                patience=o.patience,
                seed=o.seed,
            )  # fmt: skip
            for a in o.archs
            for loss in o.losses
            for lr in o.lrs
        ]


def check_options(opts: GridOptions) -> GridOptions:
    """Names canonicalised and numbers checked; each mistake is one line naming the value."""
    from lsd.training.losses import canonical_loss
    from lsd.training.models import canonical_arch, check_encoder

    opts.archs = tuple(dict.fromkeys(canonical_arch(a) for a in opts.archs))
    opts.losses = tuple(dict.fromkeys(canonical_loss(x) for x in opts.losses))
    if not opts.archs:
        raise UserError("--archs is empty; choose from " + ", ".join(ARCHITECTURES))
    if not opts.losses:
        raise UserError("--losses is empty")
    if not opts.lrs:
        raise UserError("--lrs is empty")
    for lr in opts.lrs:
        if not (isinstance(lr, float) and math.isfinite(lr) and lr > 0):
            raise UserError(f"learning rate '{lr}' is not a positive number")
    opts.lrs = tuple(dict.fromkeys(opts.lrs))
    check_encoder(opts.encoder)
    if opts.encoder_weights is not None and not Path(opts.encoder_weights).is_file():
        raise UserError(f"{opts.encoder_weights}: encoder weights file not found")
    for name in ("epochs", "iters_per_epoch", "batch_size", "crop", "patience"):
        value = getattr(opts, name)
        if not isinstance(value, int) or value <= 0:
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} must be a positive whole number, got {value}")
    from lsd.training.models import INPUT_MULTIPLE, min_input_size

    if opts.crop % INPUT_MULTIPLE:
        raise UserError(f"--crop {opts.crop} must be a multiple of {INPUT_MULTIPLE}")
    for arch in opts.archs:
        if opts.crop < min_input_size(arch):
            raise UserError(
                f"--crop {opts.crop} is too small for {arch} (needs at least "
                f"{min_input_size(arch)})"
            )
    if opts.seed < 0:
        raise UserError(f"--seed must be zero or positive, got {opts.seed}")
    return opts


def _check_layers(events: Sequence[EventFolder], layers: Sequence[str], setting: str) -> None:
    """Every event must hold every layer of the setting, and none may be empty (all NaN)."""
    for ev in events:
        absent = [x for x in layers if x not in ev.layers]
        if absent:
            raise UserError(
                f"setting '{setting}' needs layer '{absent[0]}' but event '{ev.event_id}' "
                f"({ev.stack}) lacks it; it has {', '.join(ev.layers)}"
            )
    for ev in events:
        data, names, _ = read_stack(ev.stack, layers)
        for name, band in zip(names, data, strict=True):
            if not np.isfinite(band).any():
                raise UserError(f"{ev.stack}: layer '{name}' of event '{ev.event_id}' is all NaN")


def _split_arg(value: int | list[str] | None, flag: str, ids: set[str]) -> Any:
    if isinstance(value, list):
        unknown = [v for v in value if v not in ids]
        if unknown:
            raise UserError(f"{flag}: no event named '{unknown[0]}' in the data folder")
    return value


def _options_record(opts: GridOptions) -> dict[str, Any]:
    rec = asdict(opts)
    for key in ("archs", "losses", "lrs"):
        rec[key] = list(rec[key])
    return rec


def _check_resume(out: Path, layers: list[str], split: dict[str, Any], opts: GridOptions) -> Any:
    """Refuse to mix runs made with other layers, split or fixed options in one RUNS folder."""
    hint = "use a new --out folder, or repeat the options this folder was made with"
    split_path, grid_path = out / SPLIT_FILE, out / GRID_FILE
    if split_path.exists():
        old = read_json(split_path)
        if not isinstance(old, dict):
            raise UserError(f"{split_path}: not an lsd split description; {hint}")
        for role, word in (("val", "validation"), ("test", "test"), ("train", "training")):
            was, now = sorted(old.get(role, [])), sorted(split[role])
            if was != now:
                gone = [i for i in was if i not in now] or ["(none)"]
                new = [i for i in now if i not in was] or ["(none)"]
                raise UserError(
                    f"{split_path}: this RUNS folder was made with other {word} events "
                    f"(it has {', '.join(gone[:3])}; this call gives {', '.join(new[:3])}); {hint}"
                )
    if not grid_path.exists():
        return None
    old = read_json(grid_path)
    if not isinstance(old, dict) or "layers" not in old:
        raise UserError(f"{grid_path}: not an lsd grid description; {hint}")
    if list(old["layers"]) != layers:
        raise UserError(
            f"{grid_path}: this RUNS folder was made with layers {', '.join(old['layers'])}, "
            f"not {', '.join(layers)}; {hint}"
        )
    old_opts = old.get("options", {})
    for key in FIXED_OPTIONS:
        if key in old_opts and old_opts[key] != getattr(opts, key):
            flag = "--" + key.replace("_", "-")
            raise UserError(
                f"{grid_path}: this RUNS folder was made with {flag} {old_opts[key]}, "
                f"not {getattr(opts, key)}; {hint}"
            )
    return old


def prepare_grid(data_dir: Path | str, out_dir: Path | str, opts: GridOptions) -> GridPlan:
    """Check everything, then record split.json and grid.json; nothing is trained here."""
    from lsd.training.data import compute_norm, split_events
    from lsd.training.device import resolve_device

    opts = check_options(opts)
    device = resolve_device(opts.device)
    layers = list(resolve_setting(opts.setting, opts.settings_file))
    events = list_events(data_dir)
    out = check_writable(out_dir)
    _check_layers(events, layers, opts.setting)

    ids = {e.event_id for e in events}
    val = _split_arg(opts.val, "--val", ids)
    test = _split_arg(opts.test, "--test", ids)
    split = split_events(events, val=val, test=test, seed=opts.seed)
    for role in ("train", "val"):
        if not split.get(role):
            raise UserError(
                f"no {role} events in {data_dir} after splitting {len(events)} event(s); "
                "give --val/--test counts or ids that leave some for both"
            )
    split = {role: sorted(split.get(role, [])) for role in ("train", "val", "test")}
    old = _check_resume(out, layers, split, opts)
    if old is not None and "mean" in old and "std" in old:
        mean, std = [float(m) for m in old["mean"]], [float(s) for s in old["std"]]
    else:
        train_events = [e for e in events if e.event_id in set(split["train"])]
        mean, std = compute_norm(train_events, layers)
        mean, std = [float(m) for m in mean], [float(s) for s in std]

    write_json(out / SPLIT_FILE, {**split, "seed": opts.seed})
    write_json(
        out / GRID_FILE,
        {
            "setting": opts.setting,
            "layers": layers,
            "mean": mean,
            "std": std,
            # the data folder lets `lsd ensemble --k auto` find the validation events unaided
            "options": {**_options_record(opts), "data": str(Path(data_dir).resolve())},
        },
    )
    return GridPlan(out, opts, layers, events, split, mean, std, device)


def finished_runs(out: Path) -> list[dict[str, Any]]:
    """done.json of every finished run under RUNS/runs, whatever grid call produced it."""
    rows = []
    runs = out / RUNS_DIR
    if not runs.is_dir():
        return rows
    for done in sorted(runs.glob("*/done.json")):
        try:
            rec = read_json(done)
        except UserError:
            continue
        if isinstance(rec, dict) and "val_f1" in rec:
            rec["bundle"] = f"{RUNS_DIR}/{done.parent.name}/{rec.get('bundle', 'bundle')}"
            rec["run_id"] = done.parent.name
            rows.append(rec)
    return rows


def write_leaderboard(out: Path | str) -> list[dict[str, Any]]:
    """Rank finished runs by validation F1 (descending; ties by run id) into leaderboard.csv."""
    out = Path(out)

    def key(rec: dict[str, Any]) -> tuple[float, str]:
        f1 = float(rec.get("val_f1", float("nan")))
        return (-f1 if math.isfinite(f1) else math.inf, rec["run_id"])

    rows = sorted(finished_runs(out), key=key)
    with atomic_path(out / LEADERBOARD_FILE) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LEADERBOARD_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for rank, rec in enumerate(rows, start=1):
            rec["rank"] = rank
            writer.writerow(rec)
    return rows


def run_grid(
    plan: GridPlan,
    *,
    progress: bool = True,
    on_epoch: Callable[[str, int, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) every run of the plan in order; returns the final leaderboard rows."""
    from tqdm import tqdm

    from lsd.training.loop import RunData, is_finished, train_run

    configs = plan.configs()
    runs = plan.out / RUNS_DIR
    todo = [c for c in configs if not is_finished(runs / c.run_id)]
    data = _load_data(plan) if todo else None
    write_leaderboard(plan.out)
    bar = tqdm(total=len(configs), desc="grid", unit="run", disable=not progress, position=0)
    bar.update(len(configs) - len(todo))
    try:
        for cfg in todo:
            bar.set_postfix(run=cfg.run_id)
            hook = None
            if on_epoch is not None:

                def hook(epoch: int, row: dict[str, Any], _id: str = cfg.run_id) -> None:
                    on_epoch(_id, epoch, row)

            assert isinstance(data, RunData)
            train_run(
                cfg, data, runs / cfg.run_id, device=plan.device, progress=progress,
                on_epoch=hook,
            )  # fmt: skip
            write_leaderboard(plan.out)
            bar.update()
    finally:
        bar.close()
    return write_leaderboard(plan.out)


def _load_data(plan: GridPlan) -> Any:
    from lsd.training.data import load_events
    from lsd.training.loop import RunData

    by_id = {e.event_id: e for e in plan.events}
    train = load_events([by_id[i] for i in plan.split["train"]], plan.layers, plan.mean, plan.std)
    val = load_events([by_id[i] for i in plan.split["val"]], plan.layers, plan.mean, plan.std)
    return RunData(
        train=train, val=val, layers=plan.layers, mean=plan.mean, std=plan.std,
        setting=plan.options.setting, split=plan.split,
    )  # fmt: skip
