"""Does the study's finding (optical bands: RGB+NIR+SWIR best) hold on Landslide4Sense patches?

Orynbaikyzy et al. (2025) compared feature groups on 563 patches over 8 test sites and report
average F1 of 0.69 for RGB + NIR and 0.83 for RGB + NIR + SWIR (all SAR features 0.60; SAR
backscatter + polarimetric + NDVI 0.79). This script trains the same small grid, through the
same code as `lsd train`, on the 21 Landslide4Sense patches with each optical group:

    rgbn          B2 B3 B4 B8
    rgbn_re       + B5 B6 B7 (red edge; the patches have no B8A)
    rgbn_swir     + B11 B12
    rgbn_re_swir  all of the above ("all optical")

and scores the best run of each (by validation F1) on 6 held-out patches: micro F1 over their
pixels and F1 per patch. The split is the one of bench_l4s_baselines.py (seeded). With 21 small
patches the figures are noisy: use --seeds 0,1,2 to see the spread. Prints a table and writes
JSON to benchmarks/results/.

    python benchmarks/bench_feature_groups.py                       # ~10 min on 2 CPU cores
    python benchmarks/bench_feature_groups.py --seeds 0,1,2 --epochs 15 --device cuda
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lsd.events import list_events
from lsd.pipeline.sources import import_landslide4sense
from lsd.rasters import read_label, read_stack
from lsd.training.bundle import load_bundle
from lsd.training.grid import GridOptions, prepare_grid
from lsd.training.inference import predict_array
from lsd.training.metrics import Counts, confusion
from lsd.training.schedule import run_grid

REPO = Path(__file__).resolve().parents[1]
GROUPS = ("rgbn", "rgbn_re", "rgbn_swir", "rgbn_re_swir")
# Average F1 over the study's 8 test sites (Orynbaikyzy et al. 2025); None: no figure at hand.
STUDY_F1: dict[str, float | None] = {
    "rgbn": 0.69,
    "rgbn_re": None,
    "rgbn_swir": 0.83,
    "rgbn_re_swir": None,
}
STUDY_OTHER = {"sar_all": 0.60, "sar_backscatter_polarimetric_ndvi": 0.79}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared/data/landslide4sense-21")
    ap.add_argument("--groups", default=",".join(GROUPS), help="settings to compare")
    ap.add_argument("--archs", default="Unet")
    ap.add_argument("--losses", default="Dice")
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--encoder", default="resnet18")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--iters-per-epoch", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--patience", type=int, default=8)
    ap.add_argument("--seeds", default="0", help="training seeds, e.g. 0,1,2")
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/feature_groups.json")
    return ap.parse_args()


def split_ids(ids: list[str], seed: int) -> tuple[list[str], list[str]]:
    """6 test and 3 validation patches, as bench_l4s_baselines.py draws them."""
    order = np.random.default_rng(seed).permutation(len(ids))
    return sorted(ids[i] for i in order[6:9]), sorted(ids[i] for i in order[:6])


def train_and_score(data: Path, runs: Path, setting: str, seed: int, val, test, args) -> dict:
    """One grid for one setting and seed; the best run by validation F1 scored on test."""
    torch.manual_seed(seed)
    opts = GridOptions(
        setting=setting, archs=tuple(args.archs.split(",")), losses=tuple(args.losses.split(",")),
        lrs=(args.lr,), encoder=args.encoder, epochs=args.epochs,
        iters_per_epoch=args.iters_per_epoch, batch_size=args.batch_size, crop=args.crop,
        patience=args.patience, seed=seed, val=val, test=test, device=args.device,
    )  # fmt: skip
    t0 = time.perf_counter()
    plan = prepare_grid(data, runs, opts)
    board = run_grid(plan, progress=False)
    seconds = time.perf_counter() - t0
    model, meta = load_bundle(runs / board[0]["bundle"])
    by_id = {e.event_id: e for e in list_events(data)}
    micro, per_event = Counts(), {}
    for eid in plan.split["test"]:
        ev = by_id[eid]
        stack, _, _ = read_stack(ev.stack, meta.layers)
        label, _ = read_label(ev.label)
        prob = predict_array([(model, meta)], stack, device=args.device)[0]
        counts = confusion(prob > 0.5, label)
        micro += counts
        per_event[eid] = {"f1": counts.f1, "landslide_px": counts.tp + counts.fn}
    with_slides = [v["f1"] for v in per_event.values() if v["landslide_px"] > 0]
    return {
        "setting": setting,
        "seed": seed,
        "layers": plan.layers,
        "run": board[0]["run_id"],
        "val_f1": board[0]["val_f1"],
        "micro": micro.scores(),
        "per_event": per_event,
        "mean_event_f1": float(np.mean(with_slides)) if with_slides else float("nan"),
        "train_seconds": seconds,
    }


def summarise(results: list[dict], groups: list[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for g in groups:
        rows = [r for r in results if r["setting"] == g]
        micro = [r["micro"]["f1"] for r in rows]
        mean_ev = [r["mean_event_f1"] for r in rows]
        out[g] = {
            "layers": rows[0]["layers"],
            "micro_f1_mean": statistics.fmean(micro),
            "micro_f1_sd": statistics.stdev(micro) if len(micro) > 1 else 0.0,
            "mean_event_f1_mean": statistics.fmean(mean_ev),
            "study_f1": STUDY_F1.get(g),
        }
    return out


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # on a shared machine 1 thread avoids spin-waiting
    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        import_landslide4sense(args.data, data, progress=False)
        ids = sorted(e.event_id for e in list_events(data))
        val, test = split_ids(ids, args.split_seed)
        for g in groups:
            for seed in seeds:
                runs = Path(tmp) / f"runs_{g}_{seed}"
                res = train_and_score(data, runs, g, seed, val, test, args)
                results.append(res)
                print(f"{g:14s} seed {seed}: micro F1 {res['micro']['f1']:.3f}, mean event F1 "
                      f"{res['mean_event_f1']:.3f} ({res['train_seconds'] / 60:.1f} min)",
                      flush=True)  # fmt: skip
    summary = summarise(results, groups)
    report = {
        "split": {"val": val, "test": test, "split_seed": args.split_seed},
        "summary": summary,
        "runs": results,
        "study": {
            "source": "Orynbaikyzy et al. 2025, 563 patches, 8 test sites, average F1",
            "optical": STUDY_F1,
            "other": STUDY_OTHER,
        },  # fmt: skip
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "torch_threads": torch.get_num_threads(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\ntest patches: {', '.join(test)}; seeds {args.seeds}")
    print(f"{'setting':14s} {'layers':>6s} {'micro F1':>14s} {'mean event F1':>14s} {'study':>6s}")
    for g, s in summary.items():
        study = f"{s['study_f1']:.2f}" if s["study_f1"] is not None else "-"
        spread = f"{s['micro_f1_mean']:.3f} +- {s['micro_f1_sd']:.3f}"
        print(f"{g:14s} {len(s['layers']):6d} {spread:>14s} {s['mean_event_f1_mean']:14.3f} "
              f"{study:>6s}")  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
