"""Does a model trained as Landslide4Sense's baseline beat trivial baselines on held-out patches?

15 of the 21 real patches train (12) and validate (3) a small grid with `--preset
landslide4sense`'s options (Adam 1e-3 with 5e-4 L2, batch 32, whole 128 px patches in shuffled
passes, no augmentation, the loader's fixed statistics, BCE), shortened to --epochs x
--iters-per-epoch steps; the other 6 are the test set. Every model and every top-K ensemble is
scored by `lsd evaluate --protocol landslide4sense` (landslide-class precision, recall, F1 pooled
over the test patches at p > 0.5) and compared, with the same formula, with two baselines:
  - all landslide: every pixel predicted as landslide (F1 = 2p / (1 + p), p = prevalence);
  - NDVI threshold: landslide where NDVI = (B8 - B4) / (B8 + B4) < t, with t chosen to maximise
    F1 on the 15 training+validation patches (fresh landslide scars have lost their vegetation).
With --step-time it instead measures the preset's training step (batch 32 of 128 px x 14 bands,
forward, BCE, backward, Adam) for every architecture on this machine's CPU (or --device).
Prints a table and writes JSON.

    python benchmarks/bench_l4s_baselines.py --archs Unet,Linknet --encoder resnet18 \
        --epochs 4 --iters-per-epoch 8                        # 22 min on 2 loaded CPU cores
    OMP_NUM_THREADS=1 python benchmarks/bench_l4s_baselines.py --step-time --steps 2

For --step-time on a shared machine use one thread: two threads spin while they wait for each
other, and the CPU time then counts the spinning (Unet: 10.3 CPU s per step with 2 threads at
load 18, 5.1 with 1 at load 17).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lsd import landslide4sense as l4s
from lsd.events import list_events
from lsd.pipeline.sources import import_landslide4sense
from lsd.progress import Progress
from lsd.rasters import read_label, read_stack
from lsd.training.metrics import Counts, confusion
from lsd.training.presets import PRESETS

REPO = Path(__file__).resolve().parents[1]
PRESET = PRESETS["landslide4sense"]


def ndvi(stack: np.ndarray) -> np.ndarray:
    b4, b8 = stack[l4s.LAYERS.index("B4")], stack[l4s.LAYERS.index("B8")]
    with np.errstate(divide="ignore", invalid="ignore"):
        return (b8 - b4) / (b8 + b4)


def best_ndvi_threshold(events) -> tuple[float, float]:
    """Threshold with the highest pooled F1 over `events`, from a fine sweep of NDVI values."""
    pairs = []
    for ev in events:
        stack, _, _ = read_stack(ev.stack)
        label, _ = read_label(ev.label)
        pairs.append((ndvi(stack), label))
    best = (float("nan"), -1.0)
    for t in np.linspace(-1.0, 1.0, 401):
        total = sum((confusion(np.nan_to_num(v, nan=1.0) < t, y) for v, y in pairs), Counts())
        if total.f1 > best[1]:
            best = (float(t), total.f1)
    return best


def pct(c: Counts) -> dict[str, float]:
    """The protocol's precision, recall and F1 of the landslide class, in %."""
    p, r, f1 = l4s.scores(c.tp, c.fp, c.fn)
    return {"precision": 100 * p, "recall": 100 * r, "f1": 100 * f1}


def step_time(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds per training step of the preset for each architecture: the loop's own epoch
    (lsd.training.loop) timed at 1 and at 1 + --steps iterations, validation (one patch) and
    set-up cancelling out in the difference. Wall and process CPU time both: on a shared
    machine the wall time is mostly waiting, the CPU time (summed over threads) is not."""
    from lsd.training.data import load_events
    from lsd.training.loop import RunData, _Run
    from lsd.training.options import ARCHITECTURES, RunConfig

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        import_landslide4sense(args.data, data, progress=False)
        events = list_events(data)
        arrays = load_events(events, l4s.LAYERS, l4s.MEAN, l4s.STD)
        run_data = RunData(train=arrays[1:], val=arrays[:1], layers=list(l4s.LAYERS),
                           mean=list(l4s.MEAN), std=list(l4s.STD))  # fmt: skip
        out: dict[str, Any] = {}
        cpu: dict[str, float] = {}
        for arch in args.archs.split(",") if args.archs else ARCHITECTURES:
            times, cpu_times = [], []
            for n in (1, 1 + args.steps):
                cfg = RunConfig(
                    arch=arch, loss="BCE", lr=0.001, encoder=args.encoder, crop=PRESET["crop"],
                    batch_size=PRESET["batch_size"], iters_per_epoch=n,
                    weight_decay=PRESET["weight_decay"], augment=PRESET["augment"],
                    event_order=PRESET["event_order"],
                )  # fmt: skip
                run = _Run(cfg, run_data, Path(tmp) / arch, torch.device(args.device))
                t0, c0 = time.perf_counter(), time.process_time()
                run.train_epoch(Progress(n, desc=arch, enabled=False))
                times.append(time.perf_counter() - t0)
                cpu_times.append(time.process_time() - c0)
            out[arch] = (times[1] - times[0]) / args.steps
            cpu[arch] = (cpu_times[1] - cpu_times[0]) / args.steps
            print(f"{arch:14s} {out[arch]:7.2f} s/step wall, {cpu[arch]:7.2f} CPU-s/step "
                  f"({PRESET['batch_size']} x 128 px x 14)")  # fmt: skip
    steps = PRESET["iters_per_epoch"] * PRESET["epochs"]
    total_h = sum(out.values()) * steps / 3600
    print(f"the preset's grid ({len(out)} runs x {steps} steps): {total_h:.1f} h of steps here")
    return {"seconds_per_step": out, "cpu_seconds_per_step": cpu, "steps_per_run": steps,
            "grid_hours": total_h, "load_average": list(os.getloadavg()),
            "device": args.device, "threads": torch.get_num_threads(),
            "encoder": args.encoder}  # fmt: skip


def step_flops(args: argparse.Namespace) -> dict[str, float]:
    """Floating-point operations of one preset step (forward, BCE, backward) per architecture,
    counted by torch's FlopCounterMode: the basis of the GPU cost on paper (docs/train.md)."""
    from torch.utils.flop_counter import FlopCounterMode

    from lsd.training.losses import build_loss
    from lsd.training.models import build_model
    from lsd.training.options import ARCHITECTURES

    x = torch.randn(PRESET["batch_size"], len(l4s.LAYERS), PRESET["crop"], PRESET["crop"])
    y = (torch.rand(PRESET["batch_size"], PRESET["crop"], PRESET["crop"]) > 0.97).to(torch.uint8)
    loss_fn, out = build_loss("BCE"), {}
    for arch in args.archs.split(",") if args.archs else ARCHITECTURES:
        model = build_model(arch, len(l4s.LAYERS), args.encoder)
        with FlopCounterMode(display=False) as counter:
            loss_fn(model(x), y).backward()
        out[arch] = float(counter.get_total_flops())
        print(f"{arch:14s} {out[arch] / 1e9:8.1f} GFLOP per step")
    return out


def grid_against_baselines(args: argparse.Namespace) -> dict[str, Any]:
    from lsd.pipeline.landslide4sense_protocol import evaluate_landslide4sense
    from lsd.training.grid import GridOptions, prepare_grid
    from lsd.training.schedule import run_grid

    with tempfile.TemporaryDirectory() as tmp:
        data, runs = Path(tmp) / "data", Path(tmp) / "runs"
        import_landslide4sense(args.data, data, progress=False)
        ids = sorted(e.event_id for e in list_events(data))
        order = np.random.default_rng(args.seed).permutation(len(ids))
        test = sorted(ids[i] for i in order[:6])
        val = sorted(ids[i] for i in order[6:9])
        preset = {k: v for k, v in PRESET.items() if k not in ("epochs", "iters_per_epoch")}
        opts = GridOptions(
            **preset, setting="all", archs=tuple(args.archs.split(",")), encoder=args.encoder,
            epochs=args.epochs, iters_per_epoch=args.iters_per_epoch, seed=args.seed, val=val,
            test=test, device=args.device, preset="landslide4sense",
        )  # fmt: skip
        t0 = time.perf_counter()
        plan = prepare_grid(data, runs, opts)
        board = run_grid(plan, progress=True)
        train_s = time.perf_counter() - t0
        result = evaluate_landslide4sense(runs, data, device=args.device, progress=False)

        by_id = {e.event_id: e for e in list_events(data)}
        fit_events = [by_id[i] for i in plan.split["train"] + plan.split["val"]]
        threshold, fit_f1 = best_ndvi_threshold(fit_events)
        ndvi_c, all_c = Counts(), Counts()
        for event_id in plan.split["test"]:
            stack, _, _ = read_stack(by_id[event_id].stack)
            label, _ = read_label(by_id[event_id].label)
            ndvi_c += confusion(np.nan_to_num(ndvi(stack), nan=1.0) < threshold, label)
            all_c += confusion(np.ones_like(label, bool), label)

    rows = [(r.name, pct(r.counts)) for r in [*result.models, *result.ensembles[1:]]]
    rows += [("all landslide", pct(all_c)), (f"NDVI < {threshold:.3f} (chosen on 15)", pct(ndvi_c))]
    print(f"test patches: {', '.join(test)}  (grid trained in {train_s / 60:.1f} min)")
    print(f"{'landslide class, pooled, in %':40s} {'precision':>9s} {'recall':>7s} {'F1':>6s}")
    for name, s in rows:
        print(f"{name:40s} {s['precision']:9.2f} {s['recall']:7.2f} {s['f1']:6.2f}")
    return {
        "split": {"train": plan.split["train"], "val": val, "test": test},
        "grid": [{k: r[k] for k in ("run_id", "val_f1", "best_epoch")} for r in board],
        "train_seconds": train_s,
        "protocol": {name: s for name, s in rows},
        "counts": {"all_landslide": all_c.scores(), "ndvi": ndvi_c.scores()},
        "ndvi_threshold": {"t": threshold, "f1_on_15": fit_f1},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared/data/landslide4sense-21")
    ap.add_argument("--step-time", action="store_true", help="Time the preset's step instead.")
    ap.add_argument("--steps", type=int, default=3, help="Timed steps per architecture.")
    ap.add_argument("--archs", default=None, help="[grid: Unet,Linknet,FPN; step time: all]")
    ap.add_argument("--encoder", default="resnet34")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--iters-per-epoch", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    if args.step_time:
        report = step_time(args)
        report["flops_per_step"] = step_flops(args)
        out = args.out or REPO / "benchmarks/results/l4s_step_time.json"
    else:
        args.archs = args.archs or "Unet,Linknet,FPN"
        report = grid_against_baselines(args)
        out = args.out or REPO / "benchmarks/results/l4s_baselines.json"
    report["options"] = vars(args) | {"data": str(args.data), "out": str(out)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
