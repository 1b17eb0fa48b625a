"""Training throughput and data-path cost for one model of the paper's grid.

Measures, for UnetPlusPlus/resnet34 on 256 x 256 crops, batch 4, 11 layers (the s1s2 setting):
samples/s and achieved TFLOP/s of a full training step (forward, backward, Adam update), and the
share of a step spent in the data path (anchored crop, rotation/flip, collate; normalisation is
done once when events are loaded). On a GPU it compares fp32 with bf16 + channels_last, and
CPU-fed batches with GPU-resident data; on a CPU, contiguous fp32 (lsd before channels_last)
with channels_last fp32 (the default) and channels_last + bf16 (where the CPU has native
bfloat16). Prints a table and writes JSON.

    python benchmarks/bench_train.py                      # CPU, real Landslide4Sense patches
    python benchmarks/bench_train.py --device cuda        # GPU figures (when one is present)
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from lsd.events import list_events
from lsd.pipeline.sources import import_landslide4sense
from lsd.training.crops import CropSampler
from lsd.training.data import compute_norm, load_events
from lsd.training.losses import build_loss
from lsd.training.models import build_model

REPO = Path(__file__).resolve().parents[1]

# 11 of the 14 Landslide4Sense layers stand in for the 11 layers of s1s2
L4S_11 = ["B2", "B3", "B4", "B5", "B6", "B7", "B8", "B11", "B12", "slope", "elevation"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_flops(model, x, y, loss_fn) -> int:
    """FLOPs of one forward + backward, counted by torch's dispatcher (matmul/conv dominated)."""
    with FlopCounterMode(display=False) as counter:
        loss = loss_fn(model(x), y)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def time_steps(model, opt, loss_fn, next_batch, device, steps, warmup, amp_dtype=None) -> float:
    """Mean seconds per full training step, with the batch fetched inside the timed loop."""
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        x, y = next_batch()
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return (time.perf_counter() - t0) / steps


def cpu_modes(model, opt, loss_fn, next_batch, device, args) -> dict[str, dict]:
    """The CPU paths of lsd.training.precision: channels_last fp32 (the default) and, where the
    CPU has native bfloat16, channels_last + bf16 autocast (--precision bf16)."""
    from lsd.training.precision import cpu_has_bf16

    model.to(memory_format=torch.channels_last)

    def cl():
        x, y = next_batch()
        return x.contiguous(memory_format=torch.channels_last), y

    out = {"fp32_channels_last": {"step_s": time_steps(model, opt, loss_fn, cl, device,
                                                        args.steps, args.warmup)}}  # fmt: skip
    if cpu_has_bf16():
        out["bf16_channels_last"] = {"step_s": time_steps(
            model, opt, loss_fn, cl, device, args.steps, args.warmup, torch.bfloat16)}  # fmt: skip
    model.to(memory_format=torch.contiguous_format)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared/data/landslide4sense-21")
    ap.add_argument("--arch", default="UnetPlusPlus")
    ap.add_argument("--encoder", default="resnet34")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads [all cores]")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/train_throughput.json")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        import_landslide4sense(args.data, Path(tmp), progress=False)
        events = list_events(tmp)
        mean, std = compute_norm(events, L4S_11)
        arrays = load_events(events, L4S_11, mean, std)

    model = build_model(args.arch, len(L4S_11), args.encoder).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = build_loss("Dice")
    cpu_sampler = CropSampler(arrays, crop=args.crop, batch_size=args.batch_size, seed=0)

    # data path alone (CPU sampler), then the whole step fed by it
    for _ in range(3):
        cpu_sampler.batch()
    t0 = time.perf_counter()
    n_data = 50
    for _ in range(n_data):
        cpu_sampler.batch()
    data_s = (time.perf_counter() - t0) / n_data

    x0, y0 = cpu_sampler.batch()
    flops = step_flops(model, x0.to(device), y0.to(device), loss_fn)

    def cpu_fed():
        x, y = cpu_sampler.batch()
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    results: dict[str, dict] = {}
    step_s = time_steps(model, opt, loss_fn, cpu_fed, device, args.steps, args.warmup)
    results["fp32_cpu_fed"] = {"step_s": step_s}
    if device.type == "cpu":
        results.update(cpu_modes(model, opt, loss_fn, cpu_fed, device, args))
    if device.type == "cuda":
        gpu_sampler = CropSampler(
            arrays, crop=args.crop, batch_size=args.batch_size, seed=0, device=device
        )
        results["fp32_gpu_resident"] = {
            "step_s": time_steps(
                model, opt, loss_fn, gpu_sampler.batch, device, args.steps, args.warmup
            )
        }
        model = model.to(memory_format=torch.channels_last)
        amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

        def cl(batch_fn):
            def f():
                x, y = batch_fn()
                return x.contiguous(memory_format=torch.channels_last), y

            return f

        for name, fn in (("cpu_fed", cpu_fed), ("gpu_resident", gpu_sampler.batch)):
            results[f"bf16_channels_last_{name}"] = {
                "step_s": time_steps(
                    model, opt, loss_fn, cl(fn), device, args.steps, args.warmup, amp
                )
            }
    for r in results.values():
        r["samples_per_s"] = args.batch_size / r["step_s"]
        r["tflops"] = flops / r["step_s"] / 1e12

    base = results["fp32_cpu_fed"]["step_s"]
    # a 90-run grid at the paper's protocol: every run lasts at least patience + 1 = 51 epochs
    epoch_s = 1000 * base
    report = {
        "config": {
            "arch": args.arch,
            "encoder": args.encoder,
            "crop": args.crop,
            "batch_size": args.batch_size,
            "layers": len(L4S_11),
            "device": str(device),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        },  # fmt: skip
        "gflop_per_step": flops / 1e9,
        "data_path_s": data_s,
        "data_path_share_of_step": data_s / base,
        "modes": results,
        "epoch_1000_iters_h": epoch_s / 3600,
        "run_51_epochs_h": 51 * epoch_s / 3600,
        "grid_90_runs_51_epochs_h": 90 * 51 * epoch_s / 3600,
        "paper_rtx4090_min_per_model": 16,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"{args.arch}/{args.encoder} {args.crop}x{args.crop} batch {args.batch_size}, "
          f"{len(L4S_11)} layers on {device} ({torch.get_num_threads()} threads)")  # fmt: skip
    print(f"  {flops / 1e9:.1f} GFLOP per training step (forward + backward)")
    for name, r in results.items():
        print(f"  {name:32s} {r['step_s'] * 1000:8.1f} ms/step {r['samples_per_s']:7.2f} "
              f"samples/s {r['tflops']:6.3f} TFLOP/s")  # fmt: skip
    print(f"  data path {data_s * 1000:.2f} ms/batch = {100 * data_s / base:.2f}% of a step")
    print(f"  one 1000-iteration epoch {epoch_s / 3600:.2f} h; a 90-run grid at 51 epochs "
          f"each {90 * 51 * epoch_s / 3600:.0f} h")  # fmt: skip
    print(f"  wrote {args.out}")


if __name__ == "__main__":
    main()
