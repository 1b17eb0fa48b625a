"""Does a trained model beat trivial baselines on held-out Landslide4Sense patches?

15 of the 21 patches train (12) and validate (3) a small grid through the same code as `lsd train`;
the other 6 are the test set. The best run by validation F1 is compared, in micro F1 over the 6
test patches, with two baselines:
  - all landslide: every valid pixel predicted as landslide (F1 = 2p / (1 + p), p = prevalence);
  - NDVI threshold: landslide where NDVI = (B8 - B4) / (B8 + B4) < t, with t chosen to maximise
    F1 on the 15 training+validation patches (fresh landslide scars have lost their vegetation).
Prints a table and writes JSON.

    python benchmarks/bench_l4s_baselines.py                 # about 10-20 min on 2 CPU cores
    python benchmarks/bench_l4s_baselines.py --epochs 3      # quick look
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lsd.events import list_events
from lsd.pipeline.sources import import_landslide4sense
from lsd.pipeline.sources.landslide4sense import L4S_LAYERS
from lsd.rasters import read_label, read_stack
from lsd.training.bundle import load_bundle
from lsd.training.grid import GridOptions, prepare_grid, run_grid
from lsd.training.inference import predict_array
from lsd.training.metrics import Counts, confusion

REPO = Path(__file__).resolve().parents[1]


def ndvi(stack: np.ndarray) -> np.ndarray:
    b4, b8 = stack[L4S_LAYERS.index("B4")], stack[L4S_LAYERS.index("B8")]
    with np.errstate(divide="ignore", invalid="ignore"):
        return (b8 - b4) / (b8 + b4)


def best_ndvi_threshold(events) -> tuple[float, float]:
    """Threshold with the highest micro F1 over `events`, from a fine sweep of NDVI values."""
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared/data/landslide4sense-21")
    ap.add_argument("--archs", default="Unet,FPN")
    ap.add_argument("--losses", default="Dice,BCE")
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--encoder", default="resnet18")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--iters-per-epoch", type=int, default=60)
    ap.add_argument("--patience", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/l4s_baselines.json")
    args = ap.parse_args()
    torch.manual_seed(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        data, runs = Path(tmp) / "data", Path(tmp) / "runs"
        import_landslide4sense(args.data, data, progress=False)
        ids = sorted(e.event_id for e in list_events(data))
        order = np.random.default_rng(args.seed).permutation(len(ids))
        test = sorted(ids[i] for i in order[:6])
        val = sorted(ids[i] for i in order[6:9])
        opts = GridOptions(
            setting=",".join(L4S_LAYERS), archs=tuple(args.archs.split(",")),
            losses=tuple(args.losses.split(",")), lrs=(args.lr,), encoder=args.encoder,
            epochs=args.epochs, iters_per_epoch=args.iters_per_epoch, batch_size=4, crop=128,
            patience=args.patience, seed=args.seed, val=val, test=test, device="cpu",
        )  # fmt: skip
        t0 = time.perf_counter()
        plan = prepare_grid(data, runs, opts)
        board = run_grid(plan, progress=True)
        train_s = time.perf_counter() - t0

        by_id = {e.event_id: e for e in list_events(data)}
        fit_events = [by_id[i] for i in plan.split["train"] + plan.split["val"]]
        test_events = [by_id[i] for i in plan.split["test"]]
        threshold, fit_f1 = best_ndvi_threshold(fit_events)

        model, meta = load_bundle(runs / board[0]["bundle"])
        model_c, ndvi_c, all_c = Counts(), Counts(), Counts()
        for ev in test_events:
            stack, _, _ = read_stack(ev.stack, meta.layers)
            label, _ = read_label(ev.label)
            prob = predict_array([(model, meta)], stack)[0]
            model_c += confusion(prob > 0.5, label)
            ndvi_c += confusion(np.nan_to_num(ndvi(stack), nan=1.0) < threshold, label)
            all_c += confusion(np.ones_like(label, bool), label)

    report = {
        "split": {"train": plan.split["train"], "val": val, "test": test},
        "grid": [{k: r[k] for k in ("run_id", "val_f1", "best_epoch")} for r in board],
        "train_seconds": train_s,
        "model": {"run": board[0]["run_id"], **model_c.scores()},
        "baseline_all_landslide": all_c.scores(),
        "baseline_ndvi": {"threshold": threshold, "f1_on_15": fit_f1, **ndvi_c.scores()},
        "options": vars(args) | {"data": str(args.data), "out": str(args.out)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"test patches: {', '.join(test)}  (grid trained in {train_s / 60:.1f} min)")
    print(f"{'method':34s} {'precision':>9s} {'recall':>7s} {'F1':>6s}")
    for name, c in (
        (f"model {board[0]['run_id']}", model_c),
        ("all landslide", all_c),
        (f"NDVI < {threshold:.3f} (chosen on 15)", ndvi_c),
    ):
        print(f"{name:34s} {c.precision:9.3f} {c.recall:7.3f} {c.f1:6.3f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
