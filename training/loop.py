"""One training run of the grid: (architecture, loss, learning rate) trained to its best epoch.

A run can be killed at any moment (Ctrl-C, a preempted GPU node, a full disk) and must pick up
where it stopped, because the paper's grid is 90 runs of up to hours each. So after every epoch
the whole state (model, optimiser, sampler, RNG, best weights, early-stopping counter, metrics
rows) goes into one checkpoint written atomically, and a run only counts as finished once its
bundle and then `done.json` exist. Validation is on whole validation events, not crops, because
that is what the leaderboard and the ensemble are ranked by.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lsd.bundles import BundleMeta
from lsd.errors import UserError
from lsd.files import atomic_path
from lsd.progress import Progress
from lsd.progress import warn as progress_warn
from lsd.runs import (
    BUNDLE_DIR,
    CHECKPOINT_FILE,
    DONE_FILE,
    METRICS_FILE,
    read_done,
    write_done,
    write_metrics,
)
from lsd.training.bundle import load_bundle, save_bundle
from lsd.training.crops import CropSampler
from lsd.training.losses import build_loss
from lsd.training.metrics import Counts
from lsd.training.models import build_model, forward_whole
from lsd.training.options import RunConfig
from lsd.training.paper import centre_crop_box
from lsd.training.precision import Precision
from lsd.training.scoring import validation_counts

CHECKPOINT_FORMAT = "lsd-checkpoint/1"
PLATEAU = {"mode": "min", "factor": 0.1, "patience": 10}  # configs/model/default.yaml
EpochHook = Callable[[int, dict[str, Any]], None]
ValEvent = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]  # image, label, no-data mask


def warn(message: str) -> None:
    """One warning line on stderr that does not break progress bars."""
    progress_warn(message)


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
    pixel_m: float | None = None  # the training events' pixel size, recorded in each bundle
    conventions: dict[str, Any] | None = None  # the training events' (lsd.conventions)
    val_tensors: dict[str, list[ValEvent]] = field(default_factory=dict)

    def val_on(self, device: torch.device) -> list[ValEvent]:
        key = str(device)
        if key not in self.val_tensors:
            self.val_tensors[key] = [
                (
                    torch.from_numpy(np.ascontiguousarray(e.image)).to(device),
                    torch.from_numpy(np.ascontiguousarray(e.label)).to(device),
                    None if e.nodata is None else torch.from_numpy(e.nodata).to(device),
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


def stop_epoch(val_f1: Sequence[float], epochs: int, patience: int) -> int | None:
    """The epoch at which a run with this validation F1 history stops under these limits, or
    None when it would train on; the rule `train_run` follows, so a RUNS folder can tell whether
    runs made with other limits are what these limits would have made."""
    tracker = BestTracker(patience)
    for epoch, f1 in enumerate(val_f1, start=1):
        tracker.update(epoch, f1)
        if epoch >= epochs or tracker.exhausted:
            return epoch
    return None


def evaluate(model: nn.Module, val: Sequence[ValEvent], precision: Precision) -> Counts:
    """Micro confusion over every validation pixel (255 ignored), by the one scoring pass
    (lsd.training.scoring) that ensembles and lsd evaluate use too, tiles and threshold alike."""

    return validation_counts(model, val, precision)


@torch.no_grad()
def evaluate_with_loss(
    model: nn.Module,
    val: Sequence[ValEvent],
    precision: Precision,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> tuple[Counts, float]:
    """`evaluate`, plus the validation loss the paper's ReduceLROnPlateau watches, computed as
    its code did: the run's loss on each validation event centre-cropped to a multiple of 32
    (GlobalLandslideData with crop 0: torchvision CenterCrop to h - h % 32, w - w % 32), one
    event per batch, averaged over the events (Lightning's MeanMetric of `val/loss`). An event
    narrower than 32 px, which the paper's data never held, is taken whole (padded). The counts
    come from the one scoring pass; the loss needs logits, so it takes one forward per event of
    its own."""

    counts = evaluate(model, val, precision)
    was_training = model.training
    model.eval()
    losses = []
    try:
        for image, label, _ in val:
            rows, cols = centre_crop_box(*image.shape[-2:])
            if rows.stop > rows.start and cols.stop > cols.start:
                image, label = image[..., rows, cols], label[rows, cols]
            x = precision.prepare_input(image.unsqueeze(0))
            with precision.autocast():
                logits = forward_whole(model, x)
            losses.append(float(loss_fn(logits.float(), label.unsqueeze(0))))
    finally:
        model.train(was_training)
    return counts, sum(losses) / max(len(losses), 1)


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
        read_done(run_dir)
        load_bundle(run_dir / BUNDLE_DIR)
        return True
    except UserError as exc:
        warn(f"{run_dir.name}: finished run is damaged ({exc}); training it again")
        done.unlink(missing_ok=True)
        return False


# --------------------------------------------------------------------------- the run


class _Run:
    """The live state of one run: model, optimiser, sampler and the bookkeeping of its epochs,
    with the checkpoint that saves and restores all of it."""

    def __init__(self, cfg: RunConfig, data: RunData, run_dir: Path, device: torch.device,
                 precision: str = "auto"):  # fmt: skip

        self.cfg, self.data, self.run_dir, self.device = cfg, data, run_dir, device
        self.precision = Precision.for_device(device, training=True, mode=precision)
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.arch, len(data.layers), cfg.encoder, cfg.encoder_weights)
        self.model = self.precision.prepare_model(model.to(device))
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.optimiser = torch.optim.Adam(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.scheduler = (
            torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimiser, **PLATEAU)
            if cfg.lr_schedule == "plateau"
            else None
        )
        self.loss_fn = build_loss(cfg.loss)
        self.sampler = CropSampler(
            list(data.train), crop=cfg.crop, batch_size=cfg.batch_size, seed=cfg.seed,
            device=str(device), anchor=cfg.crop_anchor, augment=cfg.augment,
            order=cfg.event_order,
        )  # fmt: skip
        self.val = data.val_on(device)
        self.tracker = BestTracker(cfg.patience)
        self.best_state = _cpu_state(self.model)
        self.rows: list[dict[str, Any]] = []
        self.epoch = 0
        self.stop_reason = ""

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / CHECKPOINT_FILE

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        if self.scheduler is not None and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        scaler = self.precision.scaler
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.epoch = int(state["epoch"])
        self.tracker = BestTracker(
            self.cfg.patience, state["best_f1"], state["best_epoch"], state["bad_epochs"]
        )
        self.best_state = state["best_state"]
        self.rows = list(state["rows"])
        self.stop_reason = state.get("stop_reason", "")

    def save(self) -> None:
        scaler = self.precision.scaler
        state = {
            "format": CHECKPOINT_FORMAT,
            "model": _cpu_state(self.model),
            "optimiser": self.optimiser.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "sampler": self.sampler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device)
            if self.device.type == "cuda"
            else None,
            "epoch": self.epoch,
            "best_f1": self.tracker.best_f1,
            "best_epoch": self.tracker.best_epoch,
            "bad_epochs": self.tracker.bad_epochs,
            "best_state": self.best_state,
            "rows": copy.deepcopy(self.rows),
            "stop_reason": self.stop_reason,
        }
        with atomic_path(self.checkpoint) as tmp:
            torch.save(state, tmp)
        write_metrics(self.run_dir / METRICS_FILE, self.rows)

    def next_stop_reason(self) -> str:
        if self.stop_reason:
            return self.stop_reason
        if self.epoch >= self.cfg.epochs:
            return "epochs"
        return "patience" if self.tracker.exhausted else ""

    def train_epoch(self, bar: Progress) -> dict[str, Any]:
        """One epoch of steps, then validation; returns the epoch's metrics row."""
        cfg, precision, model = self.cfg, self.precision, self.model
        self.epoch += 1
        bar.reset(total=cfg.iters_per_epoch)
        bar.set_postfix(epoch=self.epoch, best_f1=f"{max(self.tracker.best_f1, 0.0):.4f}")
        started = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=self.device)
        for _ in range(cfg.iters_per_epoch):
            x, y = self.sampler.batch()
            x = precision.prepare_input(x)
            self.optimiser.zero_grad(set_to_none=True)
            with precision.autocast():
                logits = model(x)
            loss = self.loss_fn(logits.float(), y)
            if precision.scaler is not None:
                precision.scaler.scale(loss).backward()
                precision.scaler.step(self.optimiser)
                precision.scaler.update()
            else:
                loss.backward()
                self.optimiser.step()
            loss_sum += loss.detach()
            bar.update()
        train_loss = float(loss_sum) / cfg.iters_per_epoch
        lr_now = self.optimiser.param_groups[0]["lr"]
        if self.scheduler is not None:
            counts, val_loss = evaluate_with_loss(model, self.val, precision, self.loss_fn)
            self.scheduler.step(val_loss)
        else:
            counts = evaluate(model, self.val, precision)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        row = {
            "epoch": self.epoch,
            "train_loss": train_loss,
            "val_precision": counts.precision,
            "val_recall": counts.recall,
            "val_f1": counts.f1,
            "val_iou": counts.iou,
            "seconds": round(time.perf_counter() - started, 3),
            "lr": lr_now,
            "counts": [counts.tp, counts.fp, counts.fn, counts.tn],
        }
        self.rows.append(row)
        if self.tracker.update(self.epoch, counts.f1):
            self.best_state = _cpu_state(model)
        if not math.isfinite(train_loss):
            self.stop_reason = "diverged"
        return row


def _start(
    cfg: RunConfig, data: RunData, run_dir: Path, device: torch.device, precision: str = "auto"
) -> _Run:
    """A fresh run, or the one its checkpoint describes; a checkpoint that is unreadable or
    does not fit these options is dropped (with a warning) and the run starts over."""
    run = _Run(cfg, data, run_dir, device, precision)
    state = _load_checkpoint(run.checkpoint) if run.checkpoint.exists() else None
    if state is None:
        run.checkpoint.unlink(missing_ok=True)
        return run
    try:
        run.restore(state)
        return run
    except Exception as exc:  # a checkpoint from other options or a damaged one
        warn(f"{run.checkpoint}: checkpoint does not fit this run ({type(exc).__name__}); "
             "restarting this run from scratch")  # fmt: skip
        run.checkpoint.unlink(missing_ok=True)
        return _Run(cfg, data, run_dir, device, precision)


def train_run(
    cfg: RunConfig,
    data: RunData,
    run_dir: Path | str,
    *,
    device: torch.device | str = "cpu",
    progress: bool = True,
    on_epoch: EpochHook | None = None,
    precision: str = "auto",
) -> dict[str, Any]:
    """Train one run (resuming from its checkpoint when there is one) and return done.json.

    `on_epoch(epoch, row)` is called after each epoch's checkpoint is safely on disk, which is
    the point where stopping the process loses nothing. `precision` is a mode of
    lsd.training.precision (auto, fp32, bf16).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    run = _start(cfg, data, run_dir, torch.device(device), precision)
    if run.rows:
        write_metrics(run_dir / METRICS_FILE, run.rows)
    else:
        (run_dir / METRICS_FILE).unlink(missing_ok=True)

    bar = Progress(
        cfg.iters_per_epoch, desc=cfg.run_id, unit="it", leave=False, enabled=progress, steps=False
    )
    try:
        while not (reason := run.next_stop_reason()):
            row = run.train_epoch(bar)
            run.save()
            bar.step(
                f"epoch {run.epoch}/{cfg.epochs}: train loss {row['train_loss']:.4f}, val F1 "
                f"{row['val_f1']:.4f} (best {run.tracker.best_f1:.4f}), {row['seconds']:.1f} s"
            )
            if on_epoch is not None:
                on_epoch(run.epoch, row)
        run.stop_reason = reason
    finally:
        bar.close()
    return _finish(run)


def _finish(run: _Run) -> dict[str, Any]:
    """Bundle the best weights, then done.json last, then drop the checkpoint."""
    cfg, data, tracker, rows = run.cfg, run.data, run.tracker, run.rows
    run.model.load_state_dict(run.best_state)
    best = next(r for r in rows if r["epoch"] == tracker.best_epoch)
    scores = {
        "val_precision": best["val_precision"],
        "val_recall": best["val_recall"],
        "val_f1": best["val_f1"],
        "val_iou": best["val_iou"],
        "val_bias": Counts(*best["counts"]).bias,
        "best_epoch": tracker.best_epoch,
        "epochs_run": len(rows),
        "seconds": round(sum(r["seconds"] for r in rows), 3),
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
        "lr_schedule": cfg.lr_schedule,
        "crop_anchor": cfg.crop_anchor,
        "weight_decay": cfg.weight_decay,
        "augment": cfg.augment,
        "event_order": cfg.event_order,
        "stop_reason": run.stop_reason,
        "pixel_m": data.pixel_m,
        "precision": run.precision.name,
    }
    if data.conventions is not None:
        extra["conventions"] = data.conventions
    meta = BundleMeta(
        arch=cfg.arch, encoder=cfg.encoder, loss=cfg.loss, lr=cfg.lr, layers=list(data.layers),
        mean=[float(m) for m in data.mean], std=[float(s) for s in data.std], scores=scores,
        extra=extra,
    )  # fmt: skip
    save_bundle(run.run_dir / BUNDLE_DIR, run.model, meta)
    done = {
        "run_id": cfg.run_id,
        "arch": cfg.arch,
        "encoder": cfg.encoder,
        "loss": cfg.loss,
        "lr": cfg.lr,
        **scores,
        "stop_reason": run.stop_reason,
        "bundle": BUNDLE_DIR,
    }
    write_done(run.run_dir, done)
    run.checkpoint.unlink(missing_ok=True)
    return done
