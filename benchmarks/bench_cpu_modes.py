"""What the CPU speed-ups do to the maps: F1 and probabilities of TRAINED models, per mode.

Trains a small grid on 15 of the 21 Landslide4Sense patches (12 train, 3 validation, as in
bench_l4s_baselines.py) through `lsd train`'s code, in fp32 and, where the CPU has native
bfloat16, again with bf16 autocast. Then every trained model predicts the 6 held-out test
patches in each mode and the micro F1 over their pixels is compared:

    fp32           contiguous tensors, no autocast (what lsd did on the CPU before)
    channels_last  fp32, channels_last (the CPU default now)
    bf16           channels_last + bf16 autocast (--precision bf16)
    onnx           ONNX Runtime fp32 (--runtime onnx), when onnxruntime is installed
    tta            channels_last fp32, mean of the 8 flips/rotations (--tta)

with, against fp32, the largest and mean change of a probability and the share of pixels whose
decision (p >= 0.5) flips. Prints a table and writes JSON.

    python benchmarks/bench_cpu_modes.py                              # about 30 min on 2 cores
    python benchmarks/bench_cpu_modes.py --archs Unet --epochs 3      # quick look
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
from lsd.training.grid import GridOptions, prepare_grid
from lsd.training.inference import predict_array
from lsd.training.metrics import Counts, confusion
from lsd.training.models import forward_whole
from lsd.training.normalise import norm_tensors, normalise
from lsd.training.options import ForwardOptions, TileOptions
from lsd.training.precision import cpu_has_bf16
from lsd.training.schedule import run_grid

REPO = Path(__file__).resolve().parents[1]


def plain_fp32(model, meta, image: np.ndarray) -> np.ndarray:
    """The reference: contiguous fp32, no precision policy at all."""
    mean, std = norm_tensors(meta.mean, meta.std, torch.device("cpu"))
    x = normalise(torch.from_numpy(image[None].copy()), mean, std)
    with torch.inference_mode():
        return torch.sigmoid(forward_whole(model.eval(), x))[0, 0].numpy()


def modes() -> dict[str, ForwardOptions | None]:
    out: dict[str, ForwardOptions | None] = {"fp32": None, "channels_last": ForwardOptions()}
    if cpu_has_bf16():
        out["bf16"] = ForwardOptions(precision="bf16")
    try:
        import onnxruntime  # noqa: F401

        out["onnx"] = ForwardOptions(runtime="onnx")
    except ImportError:
        pass
    out["tta"] = ForwardOptions(tta=True)
    return out


def evaluate_modes(bundle: Path, tests: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, dict]:
    """Each mode's F1 over the test patches and its probabilities against plain fp32."""
    model, meta = load_bundle(bundle)
    member = [(model, meta)]
    tiles = TileOptions(tile=128, overlap=0)  # whole patches, as validation runs them
    ref = [plain_fp32(model, meta, img) for img, _ in tests]
    out = {}
    for name, fwd in modes().items():
        t0 = time.perf_counter()
        probs = ref if fwd is None else [
            predict_array(member, img, tiles=tiles, forward=fwd)[0] for img, _ in tests
        ]  # fmt: skip
        secs = time.perf_counter() - t0
        counts = sum((confusion(p >= 0.5, lab) for p, (_, lab) in zip(probs, tests, strict=True)),
                     Counts())  # fmt: skip
        diff = np.concatenate([np.abs(p - r).ravel() for p, r in zip(probs, ref, strict=True)])
        flips = np.concatenate([((p >= 0.5) != (r >= 0.5)).ravel()
                                for p, r in zip(probs, ref, strict=True)])  # fmt: skip
        out[name] = {
            **counts.scores(), "max_abs_dp": float(diff.max()), "mean_abs_dp": float(diff.mean()),
            "decision_flips": float(flips.mean()), "seconds": round(secs, 3),
        }  # fmt: skip
    return out


def train(data: Path, runs: Path, args, val: list[str], test: list[str], precision: str):
    opts = GridOptions(
        setting=",".join(L4S_LAYERS), archs=tuple(args.archs.split(",")), losses=("Dice",),
        lrs=(args.lr,), encoder=args.encoder, epochs=args.epochs,
        iters_per_epoch=args.iters_per_epoch, batch_size=4, crop=128, patience=args.patience,
        seed=args.seed, val=val, test=test, device="cpu", precision=precision,
    )  # fmt: skip
    t0 = time.perf_counter()
    board = run_grid(prepare_grid(data, runs, opts), progress=args.progress)
    return board, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared/data/landslide4sense-21")
    ap.add_argument("--archs", default="Unet,UnetPlusPlus")
    ap.add_argument("--encoder", default="resnet34")
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--iters-per-epoch", type=int, default=40)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-bf16-training", action="store_true", help="skip the bf16-trained grid")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/cpu_modes.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    report: dict = {"options": vars(args) | {"data": str(args.data), "out": str(args.out)},
                    "cpu_has_bf16": cpu_has_bf16(), "models": {}}  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        import_landslide4sense(args.data, data, progress=False)
        ids = sorted(e.event_id for e in list_events(data))
        order = np.random.default_rng(args.seed).permutation(len(ids))
        test, val = sorted(ids[i] for i in order[:6]), sorted(ids[i] for i in order[6:9])
        by_id = {e.event_id: e for e in list_events(data)}
        tests = [(read_stack(by_id[i].stack, list(L4S_LAYERS))[0], read_label(by_id[i].label)[0])
                 for i in test]  # fmt: skip
        precisions = ["fp32"] + (["bf16"] if cpu_has_bf16() and not args.no_bf16_training else [])
        for precision in precisions:
            runs = Path(tmp) / f"runs-{precision}"
            board, secs = train(data, runs, args, val, test, precision)
            report[f"train_seconds_{precision}"] = round(secs, 1)
            for row in board:
                key = f"{row['run_id']} trained {precision}"
                report["models"][key] = {
                    "val_f1": float(row["val_f1"]),
                    "modes": evaluate_modes(runs / row["bundle"], tests),
                }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'model':40s} {'mode':14s} {'F1':>6s} {'max|dp|':>9s} {'mean|dp|':>9s} {'flips':>8s}")
    for key, m in report["models"].items():
        for name, r in m["modes"].items():
            print(f"{key:40s} {name:14s} {r['f1']:6.3f} {r['max_abs_dp']:9.2e} "
                  f"{r['mean_abs_dp']:9.2e} {100 * r['decision_flips']:7.3f}%")  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
