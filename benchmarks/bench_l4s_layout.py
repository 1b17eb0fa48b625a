"""One event folder per Landslide4Sense patch, or one per split: which trains faster?

The same 21 real patches are written both ways: (A) as `lsd import landslide4sense` writes them,
one 128 x 128 event folder each; (B) as one event folder whose stack is a mosaic of all the
patches side by side (7 x 3 patches, 896 x 384 px), which is what "one folder per split" would
be. For each layout the script times what a grid does with its data before and around the
training steps: writing the folders, `prepare_grid`'s listing and layer checks, loading the
arrays, and one validation pass of a Unet/resnet34 (fp32 on this CPU) through the scoring pass
`lsd train` validates with. The training steps themselves cut batches from arrays already in
memory, so they cost the same in both layouts (the preset's step time: bench_l4s_baselines.py
--step-time). Figures per patch are extrapolated to the benchmark's 3799 + 245 + 800 patches.

    OMP_NUM_THREADS=1 python benchmarks/bench_l4s_layout.py     # about 1 min

On a shared machine run it with one thread: with two, a thread that waits for the other spins,
and the CPU time of the many small per-patch passes then counts the spinning (measured here at
load 11: 17.6 CPU s per patch pass with 2 threads, 1.4 with 1).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lsd import landslide4sense as l4s
from lsd.events import event_record, list_events, write_event
from lsd.pipeline.sources import import_landslide4sense
from lsd.rasters import Grid, layer_statistics, read_label, read_stack

REPO = Path(__file__).resolve().parents[1]
COLS = 7


CPU: dict[str, float] = {}  # process CPU seconds of each timed step, by the step's name


def timed(fn, *args, name: str = "", **kw):
    """The result and the wall seconds; the CPU seconds (all threads) go to CPU[name]: on a
    shared machine the wall time is mostly waiting, the CPU time is the work."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kw)
    CPU[name] = time.process_time() - c0
    return out, time.perf_counter() - t0


def write_mosaic(per_patch: Path, dest: Path) -> Path:
    """All patches in one event folder, COLS per row; empty slots are no data (NaN, label 255)."""
    from affine import Affine

    events = list_events(per_patch)
    rows = -(-len(events) // COLS)
    size = l4s.PATCH_SIZE
    stack = np.full((len(l4s.LAYERS), rows * size, COLS * size), np.nan, np.float32)
    label = np.full((rows * size, COLS * size), 255, np.uint8)
    for i, ev in enumerate(events):
        r, c = divmod(i, COLS)
        stack[:, r * size : (r + 1) * size, c * size : (c + 1) * size] = read_stack(ev.stack)[0]
        label[r * size : (r + 1) * size, c * size : (c + 1) * size] = read_label(ev.label)[0]
    grid = Grid(width=COLS * size, height=rows * size, crs=None,
                transform=Affine(10.0, 0, 0, 0, -10.0, 0))  # fmt: skip
    record = event_record("mosaic", layers=l4s.LAYERS, grid=grid, source={"kind": "bench"},
                          georeferenced=False)  # fmt: skip
    return write_event(dest / "mosaic", record, grid=grid, stack=stack, label=label)


def around_training(data: Path, model: torch.nn.Module) -> dict[str, float]:
    """prepare_grid's reads (listing, layer statistics), loading, one validation pass."""
    from lsd.training.data import load_events
    from lsd.training.precision import Precision
    from lsd.training.scoring import validation_counts

    events, t_list = timed(list_events, data, name="list_s")
    _, t_stats = timed(lambda: [layer_statistics(e.stack, l4s.LAYERS) for e in events],
                       name="layer_stats_s")  # fmt: skip
    arrays, t_load = timed(load_events, events, l4s.LAYERS, l4s.MEAN, l4s.STD, name="load_s")
    val = [(torch.from_numpy(a.image), torch.from_numpy(a.label), torch.from_numpy(a.nodata))
           for a in arrays]  # fmt: skip
    precision = Precision.for_device(torch.device("cpu"))
    validation_counts(model, val[:1], precision)  # warm-up
    _, t_val = timed(validation_counts, model, val, precision, name="validate_s")
    wall = {"list_s": t_list, "layer_stats_s": t_stats, "load_s": t_load, "validate_s": t_val}
    return {**wall, **{f"cpu_{k}": CPU[k] for k in wall}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared/data/landslide4sense-21")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/l4s_layout.json")
    args = ap.parse_args()
    from lsd.training.models import build_model
    from lsd.training.precision import Precision

    torch.manual_seed(0)
    model = Precision.for_device(torch.device("cpu")).prepare_model(
        build_model("Unet", len(l4s.LAYERS), "resnet34").eval()
    )
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "per_patch", Path(tmp) / "per_split"
        folders, t_import = timed(import_landslide4sense, args.data, a, progress=False,
                                  name="write_s")  # fmt: skip
        cpu_import = CPU["write_s"]
        _, t_mosaic = timed(write_mosaic, a, b, name="write_s")
        cpu_mosaic = CPU["write_s"]
        n = len(folders)
        report = {
            "patches": n,
            "per_patch": {
                "write_s": t_import,
                "cpu_write_s": cpu_import,
                **around_training(a, model),
            },
            "per_split": {
                "write_s": t_mosaic,
                "cpu_write_s": cpu_mosaic,
                **around_training(b, model),
            },
            "load_average": list(os.getloadavg()),
            "threads": torch.get_num_threads(),
        }
    total = sum(l4s.SPLIT_COUNTS.values())
    print(f"{n} patches; CPU seconds (extrapolated to {total} patches), wall seconds")
    print(f"{'step':14s} {'one per patch':>32s} {'one per split':>32s}")
    for key in ("write_s", "list_s", "layer_stats_s", "load_s", "validate_s"):
        cells = [(report[k][f"cpu_{key}"], report[k][key]) for k in ("per_patch", "per_split")]
        print(f"{key:14s} " + " ".join(f"{c:8.2f} ({c / n * total:8.1f}) {w:8.2f} wall"
                                       for c, w in cells))  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
