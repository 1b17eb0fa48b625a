"""One training run of the grid: (architecture, loss, learning rate) trained to its best epoch.

A run can be killed at any moment (Ctrl-C, a preempted GPU node, a full disk) and must pick up
where it stopped, because the paper's grid is 90 runs of up to hours each. So after every epoch
the whole state (model, optimiser, sampler, RNG, best weights, early-stopping counter, metrics
rows) goes into one checkpoint written atomically, and a run only counts as finished once its
bundle and then `done.json` exist. Validation is on whole validation events, not crops, because
that is what the leaderboard and the ensemble are ranked by.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from lsd.contract import atomic_path, read_json, write_json
from lsd.errors import UserError
from lsd.training.bundle import BundleMeta, load_bundle, save_bundle
from lsd.training.metrics import Counts, confusion
from lsd.training.models import build_model, forward_whole

CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.csv"
BUNDLE_DIR = "bundle"
DONE_FILE = "done.json"
METRIC_COLUMNS = (
    "epoch", "train_loss", "val_precision", "val_recall", "val_f1", "val_iou", "seconds", "lr",
)  # fmt: skip
CHECKPOINT_FORMAT = "lsd-checkpoint/1"


def run_id(arch: str, loss: str, lr: float) -> str:
    """Folder name of a run; `g` formatting keeps 0.001 as '0.001' rather than '1e-03'."""
    return f"{arch}-{loss}-lr{lr:g}"


def warn(message: str) -> None:
    """One warning line on stderr that does not break tqdm bars."""
    tqdm.write(f"Warning: {message}", file=sys.stderr)


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides what one run learns; defaults are the paper's protocol."""

    arch: str
    loss: str
    lr: float
    encoder: str = "resnet34"
    encoder_weights: str | None = None
    crop: int = 256
    batch_size: int = 4
    iters_per_epoch: int = 1000
    epochs: int = 500
    patience: int = 50
    seed: int = 0

    @property
    def run_id(self) -> str:
        return run_id(self.arch, self.loss, self.lr)


@dataclass
class RunData:
    """What every run of a grid shares: the loaded events and where they came from.

    `val_tensors` caches the validation images on the training device so that 90 runs do not
    copy them 90 times.
    """

    train: Sequence[Any]  # training.data.EventArrays
    val: Sequence[Any]
    layers: list[str]
    mean: list[float]
    std: list[float]
    setting: str = ""
    split: dict[str, Any] = field(default_factory=dict)
    val_tensors: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=dict)

    def val_on(self, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
        key = str(device)
        if key not in self.val_tensors:
            self.val_tensors[key] = [
                (
                    torch.from_numpy(np.ascontiguousarray(e.image)).to(device),
                    torch.from_numpy(np.ascontiguousarray(e.label)).to(device),
                )
                for e in self.val
            ]
        return self.val_tensors[key]


class BestTracker:
    """Best-epoch bookkeeping and early stopping, apart from torch so it can be reasoned about.

    An epoch improves only if its F1 is strictly higher, so ties keep the earlier (cheaper to
    reach, less fitted) weights. The first epoch always counts as an improvement, even at F1 0.
    """

    def __init__(self, patience: int, best_f1: float = -math.inf, best_epoch: int = 0,
                 bad_epochs: int = 0) -> None:  # fmt: skip
        self.patience = patience
        self.best_f1 = best_f1
        self.best_epoch = best_epoch
        self.bad_epochs = bad_epochs

    def update(self, epoch: int, f1: float) -> bool:
        """Record an epoch's F1; True when it is the new best."""
        if f1 > self.best_f1:
            self.best_f1, self.best_epoch, self.bad_epochs = f1, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def exhausted(self) -> bool:
        return self.bad_epochs >= self.patience


@dataclass
class Precision:
    """How the forward pass runs: fp32 on CPU; bf16 autocast on CUDA, else fp16 + GradScaler."""

    device: torch.device
    dtype: torch.dtype | None
    scaler: Any

    @classmethod
    def for_device(cls, device: torch.device) -> Precision:
        if device.type != "cuda":
            return cls(device, None, None)
        if torch.cuda.is_bf16_supported():
            return cls(device, torch.bfloat16, None)
        return cls(device, torch.float16, torch.amp.GradScaler("cuda"))

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)


@torch.no_grad()
def evaluate(
    model: nn.Module, val: Sequence[tuple[torch.Tensor, torch.Tensor]], precision: Precision
) -> Counts:
    """Micro confusion over every validation pixel (255 ignored); landslide where p >= 0.5, as in
    ensembles and maps (sigmoid(z) >= 0.5 exactly when z >= 0)."""
    was_training = model.training
    model.eval()
    total = Counts()
    try:
        for image, label in val:
            x = image.unsqueeze(0)
            if precision.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with precision.autocast():
                logits = forward_whole(model, x)
            total = total + confusion(logits[0, 0].float() >= 0, label)
    finally:
        model.train(was_training)
    return total


def write_metrics(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in METRIC_COLUMNS})


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def _load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The saved state, or None (after one warning line) when the file cannot be used."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("not an lsd checkpoint")
        return state
    except Exception as exc:  # torch raises many types for a damaged file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        warn(f"{path}: checkpoint unreadable ({reason[:120]}); restarting this run from scratch")
        return None


def is_finished(run_dir: Path) -> bool:
    """A run is finished iff done.json is readable and its bundle loads; damage gets a warning."""
    done = run_dir / DONE_FILE
    if not done.exists():
        return False
    try:
        read_json(done)
        load_bundle(run_dir / BUNDLE_DIR)
        return True
    except UserError as exc:
        warn(f"{run_dir.name}: finished run is damaged ({exc}); training it again")
        done.unlink(missing_ok=True)
        return False


def train_run(
    cfg: RunConfig,
    data: RunData,
    run_dir: Path | str,
    *,
    device: torch.device | str = "cpu",
    progress: bool = True,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train one run (resuming from its checkpoint when there is one) and return done.json.

    `on_epoch(epoch, row)` is called after each epoch's checkpoint is safely on disk, which is
    the point where stopping the process loses nothing.
    """
    from lsd.training.data import CropSampler
    from lsd.training.losses import build_loss

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    precision = Precision.for_device(device)
    ckpt_path = run_dir / CHECKPOINT_FILE

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, len(data.layers), cfg.encoder, cfg.encoder_weights).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = build_loss(cfg.loss)
    sampler = CropSampler(
        list(data.train), crop=cfg.crop, batch_size=cfg.batch_size, seed=cfg.seed,
        device=str(device),
    )  # fmt: skip
    val = data.val_on(device)

    tracker = BestTracker(cfg.patience)
    best_state = _cpu_state(model)
    rows: list[dict[str, Any]] = []
    epoch = 0
    stop_reason = ""
    state = _load_checkpoint(ckpt_path) if ckpt_path.exists() else None
    if state is None:
        ckpt_path.unlink(missing_ok=True)
    else:
        try:
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
            sampler.load_state_dict(state["sampler"])
            if precision.scaler is not None and state.get("scaler"):
                precision.scaler.load_state_dict(state["scaler"])
            torch.set_rng_state(state["torch_rng"])
            if device.type == "cuda" and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(state["cuda_rng"], device)
            epoch = int(state["epoch"])
            tracker = BestTracker(
                cfg.patience, state["best_f1"], state["best_epoch"], state["bad_epochs"]
            )
            best_state = state["best_state"]
            rows = list(state["rows"])
            stop_reason = state.get("stop_reason", "")
        except Exception as exc:  # a checkpoint from other options or a damaged one
            warn(f"{ckpt_path}: checkpoint does not fit this run ({type(exc).__name__}); "
                 "restarting this run from scratch")  # fmt: skip
            ckpt_path.unlink(missing_ok=True)
            return train_run(cfg, data, run_dir, device=device, progress=progress,
                             on_epoch=on_epoch)  # fmt: skip
    if rows:
        write_metrics(run_dir / METRICS_FILE, rows)
    else:
        (run_dir / METRICS_FILE).unlink(missing_ok=True)

    bar = tqdm(
        total=cfg.iters_per_epoch, desc=cfg.run_id, unit="it", leave=False, disable=not progress,
        file=sys.stderr, dynamic_ncols=True,
    )  # fmt: skip
    try:
        while not stop_reason:
            if epoch >= cfg.epochs:
                stop_reason = "epochs"
                break
            if tracker.exhausted:
                stop_reason = "patience"
                break
            epoch += 1
            bar.reset(total=cfg.iters_per_epoch)
            bar.set_postfix(epoch=epoch, best_f1=f"{max(tracker.best_f1, 0.0):.4f}")
            started = time.perf_counter()
            model.train()
            loss_sum = torch.zeros((), device=device)
            for _ in range(cfg.iters_per_epoch):
                x, y = sampler.batch()
                if device.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                optimiser.zero_grad(set_to_none=True)
                with precision.autocast():
                    logits = model(x)
                loss = loss_fn(logits.float(), y)
                if precision.scaler is not None:
                    precision.scaler.scale(loss).backward()
                    precision.scaler.step(optimiser)
                    precision.scaler.update()
                else:
                    loss.backward()
                    optimiser.step()
                loss_sum += loss.detach()
                bar.update()
            train_loss = float(loss_sum) / cfg.iters_per_epoch
            counts = evaluate(model, val, precision)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            row = {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_precision": counts.precision,
                "val_recall": counts.recall,
                "val_f1": counts.f1,
                "val_iou": counts.iou,
                "seconds": round(time.perf_counter() - started, 3),
                "lr": cfg.lr,
                "counts": [counts.tp, counts.fp, counts.fn, counts.tn],
            }
            rows.append(row)
            if tracker.update(epoch, counts.f1):
                best_state = _cpu_state(model)
            if not math.isfinite(train_loss):
                stop_reason = "diverged"
            _save_checkpoint(
                ckpt_path, model, optimiser, sampler, precision, device, epoch, tracker,
                best_state, rows, stop_reason,
            )  # fmt: skip
            write_metrics(run_dir / METRICS_FILE, rows)
            if on_epoch is not None:
                on_epoch(epoch, row)
    finally:
        bar.close()

    return _finish(cfg, data, run_dir, model, best_state, tracker, rows, stop_reason)


def _save_checkpoint(
    path: Path,
    model: nn.Module,
    optimiser: torch.optim.Optimizer,
    sampler: Any,
    precision: Precision,
    device: torch.device,
    epoch: int,
    tracker: BestTracker,
    best_state: dict[str, torch.Tensor],
    rows: list[dict[str, Any]],
    stop_reason: str,
) -> None:
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": _cpu_state(model),
        "optimiser": optimiser.state_dict(),
        "sampler": sampler.state_dict(),
        "scaler": precision.scaler.state_dict() if precision.scaler is not None else None,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "epoch": epoch,
        "best_f1": tracker.best_f1,
        "best_epoch": tracker.best_epoch,
        "bad_epochs": tracker.bad_epochs,
        "best_state": best_state,
        "rows": copy.deepcopy(rows),
        "stop_reason": stop_reason,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _finish(
    cfg: RunConfig,
    data: RunData,
    run_dir: Path,
    model: nn.Module,
    best_state: dict[str, torch.Tensor],
    tracker: BestTracker,
    rows: list[dict[str, Any]],
    stop_reason: str,
) -> dict[str, Any]:
    """Bundle the best weights, then done.json last, then drop the checkpoint."""
    model.load_state_dict(best_state)
    best = next(r for r in rows if r["epoch"] == tracker.best_epoch)
    seconds = round(sum(r["seconds"] for r in rows), 3)
    bias = Counts(*best["counts"]).bias
    scores = {
        "val_precision": best["val_precision"],
        "val_recall": best["val_recall"],
        "val_f1": best["val_f1"],
        "val_iou": best["val_iou"],
        "val_bias": bias,
        "best_epoch": tracker.best_epoch,
        "epochs_run": len(rows),
        "seconds": seconds,
    }
    extra = {
        "crop": cfg.crop,
        "batch_size": cfg.batch_size,
        "iters_per_epoch": cfg.iters_per_epoch,
        "patience": cfg.patience,
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "setting": data.setting,
        "split": data.split,
        "optimiser": "Adam",
        "stop_reason": stop_reason,
    }
    meta = BundleMeta(
        arch=cfg.arch, encoder=cfg.encoder, loss=cfg.loss, lr=cfg.lr, layers=list(data.layers),
        mean=[float(m) for m in data.mean], std=[float(s) for s in data.std], scores=scores,
        extra=extra,
    )  # fmt: skip
    save_bundle(run_dir / BUNDLE_DIR, model, meta)
    done = {
        "run_id": cfg.run_id,
        "arch": cfg.arch,
        "encoder": cfg.encoder,
        "loss": cfg.loss,
        "lr": cfg.lr,
        **scores,
        "stop_reason": stop_reason,
        "bundle": BUNDLE_DIR,
    }
    write_json(run_dir / DONE_FILE, done)
    (run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    return done
