"""CPU paths side by side, interleaved: one forward pass and one training step per mode.

Modes: fp32 (contiguous: lsd's CPU path before channels_last), channels_last (fp32, the
default), channels_last + bf16 autocast (on CPUs with native bfloat16), and ONNX Runtime fp32
(forward only; when onnxruntime is installed). The modes take turns in each of `--rounds` rounds
and the best time of each is kept, so a load that comes and goes on a shared machine hurts all
modes alike. Random weights: speed does not depend on what the network learnt
(bench_cpu_modes.py measures what the modes do to F1 with trained models).

    python benchmarks/bench_cpu_forward.py                       # UnetPlusPlus/resnet34, 11 layers
    python benchmarks/bench_cpu_forward.py --archs Unet,FPN --rounds 5

Prints a table and writes JSON (benchmarks/results/cpu_forward.json).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from lsd.training.losses import build_loss
from lsd.training.models import build_model
from lsd.training.precision import cpu_has_bf16

REPO = Path(__file__).resolve().parents[1]


def timed(fn) -> float:
    fn()  # warm-up (oneDNN picks and caches its kernels on the first call of a shape)
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def arch_modes(arch: str, args) -> dict[str, dict[str, float]]:
    torch.manual_seed(0)
    model = build_model(arch, args.layers, args.encoder)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = build_loss("Dice")
    x = torch.randn(args.batch_size, args.layers, args.crop, args.crop)
    y = (torch.rand(args.batch_size, args.crop, args.crop) > 0.9).float()
    tile = torch.randn(1, args.layers, args.tile, args.tile)
    modes = {"fp32": (False, False), "channels_last": (True, False)}
    if cpu_has_bf16():
        modes["bf16_channels_last"] = (True, True)
    ort_net = None
    if not args.no_onnx:
        try:
            from lsd.training.onnx_runtime import onnx_net

            ort_net = onnx_net(model.eval(), args.layers, 64, arch)
        except Exception:  # no onnxruntime: no ONNX column
            ort_net = None

    def step(cl: bool, bf: bool) -> None:
        xi = x.contiguous(memory_format=torch.channels_last) if cl else x
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf):
            out = model.train()(xi)
        loss = loss_fn(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def forward(cl: bool, bf: bool) -> None:
        xi = tile.contiguous(memory_format=torch.channels_last) if cl else tile
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf):
            model.eval()(xi)

    best: dict[str, dict[str, float]] = {}
    for _ in range(args.rounds):
        for name, (cl, bf) in modes.items():
            model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
            row = best.setdefault(name, {"forward_s": float("inf"), "step_s": float("inf")})
            row["forward_s"] = min(row["forward_s"], timed(lambda: forward(cl, bf)))  # noqa: B023
            if not args.no_step:
                row["step_s"] = min(row["step_s"], timed(lambda: step(cl, bf)))  # noqa: B023
        if ort_net is not None:
            row = best.setdefault("onnx", {"forward_s": float("inf")})
            row["forward_s"] = min(row["forward_s"], timed(lambda: ort_net(tile)))
    base = best["fp32"]
    for row in best.values():
        for key in ("forward_s", "step_s"):
            if key in row and row[key] != float("inf"):
                row[key.replace("_s", "_speedup")] = round(base[key] / row[key], 3)
                row[key] = round(row[key], 4)
            else:
                row.pop(key, None)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default="UnetPlusPlus")
    ap.add_argument("--encoder", default="resnet34")
    ap.add_argument("--layers", type=int, default=11)
    ap.add_argument("--tile", type=int, default=512, help="forward pass: one tile of this side")
    ap.add_argument("--crop", type=int, default=256, help="training step: crops of this side")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-step", action="store_true", help="forward passes only")
    ap.add_argument("--no-onnx", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/cpu_forward.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    report = {"options": vars(args) | {"out": str(args.out)}, "cpu_has_bf16": cpu_has_bf16(),
              "torch": torch.__version__, "archs": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as cache:
        os.environ.setdefault("LSD_CACHE", cache)  # exports of random weights: throw away
        for arch in args.archs.split(","):
            report["archs"][arch] = arch_modes(arch, args)
            for name, row in report["archs"][arch].items():
                step = f"{row['step_s']:7.3f} s/step ({row['step_speedup']:.2f}x)" if (
                    "step_s" in row) else ""  # fmt: skip
                print(f"{arch:14s} {name:20s} forward {row['forward_s']:7.3f} s "
                      f"({row['forward_speedup']:.2f}x)  {step}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
