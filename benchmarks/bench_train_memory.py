"""Memory of one training step per architecture, per pixel of a batch: the figure behind
lsd.training.data.ACTIVATION_BYTES_PER_PIXEL, which `lsd train` uses to refuse a crop and batch
that cannot fit before it loads any event.

Each (architecture, encoder, crop) runs in a fresh process: a model is built as `lsd train`
builds it, one Adam step runs on a random batch (forward, loss, backward), and the growth of the
process's peak RSS over the step is reported. The slope between two crops, divided by the pixels
of the batch, is the activation memory per pixel (the fixed part, weights and gradients, cancels).

    python -m benchmarks.bench_train_memory [--archs Unet,FPN] [--encoders resnet34]

Writes benchmarks/results/train_memory.json and prints one line per architecture.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child(arch: str, encoder: str, crop: int, batch: int, channels: int) -> None:
    import torch

    from benchmarks.bench_predict import peak_rss_mib, reset_peak_rss
    from lsd.training.models import build_model, min_input_size

    torch.set_num_threads(1)
    model = build_model(arch, channels, encoder)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, channels, crop, crop)
    y = (torch.rand(batch, 1, crop, crop) > 0.5).float()
    model.train()
    opt.zero_grad()  # Adam's state and the gradients exist from the first step on
    warm = min_input_size(arch)
    torch.nn.functional.binary_cross_entropy_with_logits(
        model(x[:, :, :warm, :warm]), y[:, :, :warm, :warm]
    ).backward()
    opt.step()
    reset_peak_rss()
    start = peak_rss_mib()
    opt.zero_grad()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
    loss.backward()
    opt.step()
    print(json.dumps({"step_mib": peak_rss_mib() - start}))


def measure(arch: str, encoder: str, crop: int, batch: int, channels: int) -> float:
    cmd = [sys.executable, "-m", "benchmarks.bench_train_memory", "--child", arch, encoder,
           str(crop), str(batch), str(channels)]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO)
    return float(json.loads(res.stdout.strip().splitlines()[-1])["step_mib"])


def main() -> None:
    from lsd.training.options import ARCHITECTURES

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", default=",".join(ARCHITECTURES))
    p.add_argument("--encoders", default="resnet34,resnet18")
    p.add_argument("--crops", default="128,256")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--channels", type=int, default=15)
    p.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" /
                   "train_memory.json")  # fmt: skip
    args = p.parse_args()
    if args.child:
        arch, encoder, crop, batch, channels = args.child
        child(arch, encoder, int(crop), int(batch), int(channels))
        return
    lo, hi = (int(c) for c in args.crops.split(","))
    rows = []
    for encoder in args.encoders.split(","):
        for arch in args.archs.split(","):
            a = measure(arch, encoder, lo, args.batch, args.channels)
            b = measure(arch, encoder, hi, args.batch, args.channels)
            per_px = (b - a) * 2**20 / (args.batch * (hi * hi - lo * lo))
            rows.append({"arch": arch, "encoder": encoder, "step_mib": {lo: a, hi: b},
                         "bytes_per_pixel": round(per_px)})  # fmt: skip
            print(f"{arch}/{encoder}: step {a:.0f} MiB at {lo} px, {b:.0f} MiB at {hi} px: "
                  f"{per_px:.0f} bytes per pixel of the batch")  # fmt: skip
    result = {"host": {"python": platform.python_version(), "machine": platform.machine()},
              "batch": args.batch, "channels": args.channels, "rows": rows,
              "min_bytes_per_pixel": min(r["bytes_per_pixel"] for r in rows)}  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"smallest: {result['min_bytes_per_pixel']} bytes per pixel; wrote {args.json}")


if __name__ == "__main__":
    main()
