"""Benchmark `lsd predict`: CPU modes, Ray workers, pipeline overhead, and peak memory vs area.

Measurements on synthetic stacks written to a temporary folder (random weights are fine for
speed and memory, which do not depend on what the network learnt; bench_cpu_modes.py measures
what the modes do to F1 with trained models):

1. time, per mode: an M-member ensemble over an N x N, C-layer stack. The full pipeline
   (`predict_stack`: windowed reads, blending, COG writing, vectorising, quicklook) is timed end
   to end, then every member's forward pass alone on the same tiles in the same batch shapes.
   overhead = end_to_end / sum(pure forward) - 1 (target < 0.25). Modes:
     fp32_contiguous  fp32 without channels_last: the CPU path before it (reproduced here by
                      turning channels_last off in lsd.training.precision)
     channels_last    fp32 channels_last, the CPU default
     bf16             channels_last + bf16 autocast (--precision bf16; CPUs with AVX512-BF16/AMX)
     onnx             ONNX Runtime fp32 (--runtime onnx; export time reported apart)
2. Ray: the same prediction with `--executor ray` on a local cluster of 1 and 2 worker CPUs
   (--ray-workers), to compare with the in-process run.
3. memory: the pipeline runs in a fresh subprocess per stack size and reports its peak resident
   set size; equal peaks for a small and a large stack show memory does not grow with area.
4. masks: the whole prediction again in a fresh subprocess per size and mask kind, with the
   members' mean replaced, row by row as it reaches the writers, by a synthetic probability:
   `noisy` (independent per pixel: the worst speckle) or `clean` (one disc of 3-15 px radius per
   200 x 200 px, as a landslide map). Inference, writing and COGs run for real; the polygon step
   sees a known mask. Reported: predict time, polygon time and its share, peak RSS (target: under
   20% and under 2 GB at 10000 x 10000 for either kind).
5. polygon step alone (`--polygon-sizes`): the same synthetic masks written as lsd predict writes
   them, and only the polygon step timed in a child of `--polygon-python` (any lsd install: the
   windowed `polygonise`, or the whole-mask `vectorise` of lsd before it), for a before/after.

    python benchmarks/bench_predict.py                       # the issue's configuration: long
    python benchmarks/bench_predict.py --size 1024 --members 2 --memory-sizes 2048 6000
    python benchmarks/bench_predict.py --skip-time --memory-sizes --mask-sizes 2048 8000 10000
    python benchmarks/bench_predict.py --skip-time --memory-sizes --mask-sizes \
        --polygon-sizes 2048 --polygon-python /path/to/other/.venv/bin/python

Writes benchmarks/results/predict.json (or --json PATH) and prints the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def write_synthetic_stack(path: Path, size: int, layers: int, seed: int = 0) -> list[str]:
    """A smooth random field plus noise, written in strips so even 10000^2 needs little memory."""
    import rasterio
    from rasterio.windows import Window

    names = [f"L{i}" for i in range(layers)]
    rng = np.random.default_rng(seed)
    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": layers, "dtype": "float32",
        "nodata": float("nan"), "crs": "EPSG:32633", "tiled": True, "blockxsize": 512,
        "blockysize": 512, "compress": "deflate", "BIGTIFF": "IF_SAFER",
        "transform": rasterio.Affine(10, 0, 500000, 0, -10, 5000000),
    }  # fmt: skip
    coarse = rng.normal(size=(layers, size // 64 + 2, size // 64 + 2)).astype(np.float32)
    with rasterio.open(path, "w", **profile) as dst:
        for i, n in enumerate(names, start=1):
            dst.set_band_description(i, n)
        idx_c = (np.arange(size) // 64)[None, :]
        for r0 in range(0, size, 128):
            rows = min(128, size - r0)
            idx_r = (np.arange(r0, r0 + rows) // 64)[:, None]
            block = coarse[:, idx_r, idx_c]
            block += 0.1 * rng.standard_normal(size=block.shape, dtype=np.float32)
            dst.write(block, window=Window(0, r0, size, rows))
    return names


def make_members(n: int, arch: str, encoder: str, layers: list[str], folder: Path, *,
                 empty: bool = False):  # fmt: skip
    """n random-weight members written as real bundles, returned as `lsd predict` loads them.

    With `empty`, each member's segmentation head is zeroed (probability 0.27 everywhere): the
    network's weights and activations are real, but the map is empty. Random decoders otherwise
    draw salt-and-pepper masks with ~5000 blobs per 512 x 512 tile, which no real map resembles
    and which would make the polygon stage measure noise.
    """
    import torch

    from lsd.bundles import BundleMeta, ModelFiles, check_bundle
    from lsd.training.bundle import save_bundle
    from lsd.training.models import build_model

    folders = []
    for i in range(n):
        torch.manual_seed(i)
        model = build_model(arch, len(layers), encoder)
        if empty:
            with torch.no_grad():
                for prm in model.segmentation_head.parameters():
                    prm.zero_()
                model.segmentation_head[0].bias.fill_(-1.0)
        meta = BundleMeta(arch, encoder, "Dice", 1e-3, layers, [0.0] * len(layers),
                          [1.0] * len(layers))  # fmt: skip
        save_bundle(folder / f"m{i:02d}", model, meta)
        folders.append(folder / f"m{i:02d}")
    metas = [check_bundle(f) for f in folders]
    return ModelFiles(folders, metas, tuple(layers), 0.5, folder, {"benchmark": True})


MODES = {  # name -> (precision, runtime, channels_last)
    "fp32_contiguous": ("fp32", "torch", False),
    "channels_last": ("auto", "torch", True),
    "bf16": ("bf16", "torch", True),
    "onnx": ("fp32", "onnx", False),
}


@contextlib.contextmanager
def channels_last(on: bool):
    """The CPU path before channels_last, for comparison: the policy with it turned off."""
    from lsd.training.precision import Precision

    original = Precision.for_device.__func__

    def without(cls, device, **kw):
        p = original(cls, device, **kw)
        p.channels_last = False
        return p

    if not on:
        Precision.for_device = classmethod(without)
    try:
        yield
    finally:
        Precision.for_device = classmethod(original)


def run_pipeline(stack: Path, model, out: Path, args, mode: str = "channels_last",
                 executor: str = "inprocess") -> dict:  # fmt: skip
    from lsd.pipeline.predict import PredictOptions, predict_stack
    from lsd.training.options import ForwardOptions, TileOptions

    precision, runtime, cl = MODES[mode]
    block_rows = getattr(args, "block_rows", None) or max(1, args.size // 4)
    opts = PredictOptions(
        tiles=TileOptions(args.tile, args.overlap, args.batch_size), device=args.device,
        overwrite=True, progress=False, executor=executor,
        forward=ForwardOptions(precision=precision, runtime=runtime),
        block_rows=block_rows if executor == "ray" else None,
    )  # fmt: skip
    with channels_last(cl):
        return predict_stack(stack, model, out, opts)


def pure_forward_s(model, tiles: int, th: int, tw: int, channels: int, batch: int,
                   mode: str) -> list[float]:  # fmt: skip
    """Each member's forward alone on `tiles` tiles in the pipeline's batch shapes, in `mode`."""
    import torch

    from lsd.training.bundle import load_members
    from lsd.training.models import pad_to_multiple
    from lsd.training.precision import Precision

    precision, runtime, cl = MODES[mode]
    sizes = [batch] * (tiles // batch) + ([tiles % batch] if tiles % batch else [])
    x = torch.randn(batch, channels, th, tw)
    x, _, _ = pad_to_multiple(x)
    with channels_last(cl):
        policy = Precision.for_device(torch.device("cpu"), mode=precision)
    out = []
    with torch.inference_mode():
        for i in range(len(model.folders)):
            [(net, _)] = load_members(model, [i], "cpu")
            if runtime == "onnx":
                from lsd.training.onnx_runtime import onnx_net

                net = onnx_net(net, channels, 64, f"member {i + 1}") or net
            else:
                policy.prepare_model(net)

            def fwd(n: int, net=net) -> None:
                xin = policy.prepare_input(x[:n]) if runtime == "torch" else x[:n]
                with policy.autocast() if runtime == "torch" else contextlib.nullcontext():
                    net(xin)

            fwd(1)  # warm-up, as the pipeline's first batch is not special either
            t0 = time.perf_counter()
            for n in sizes:
                fwd(n)
            out.append(time.perf_counter() - t0)
            del net
    return out


def time_run(args, mode: str, tmp: Path, names: list[str], model) -> dict:
    """One mode end to end, then its pure forward time."""
    reset_peak_rss()
    export_s = 0.0
    if MODES[mode][1] == "onnx":  # export into the cache first: a one-off cost per member
        t0 = time.perf_counter()
        pure_forward_s(model, 1, 64, 64, len(names), 1, mode)
        export_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    record = run_pipeline(tmp / "stack.tif", model, tmp / f"out-{mode}", args, mode)
    e2e = time.perf_counter() - t0
    peak = peak_rss_mib()
    inf = record["inference"]
    th, tw = inf["tile_shape"]
    pure = pure_forward_s(model, inf["tiles"], th, tw, len(names), inf["batch_size"], mode)
    pure_sum = sum(pure)
    return {
        "mode": mode, "size": args.size, "layers": args.layers, "members": args.members,
        "arch": args.arch, "encoder": args.encoder, "tile": args.tile, "overlap": args.overlap,
        "batch_size": inf["batch_size"], "threads": args.threads, "tiles": inf["tiles"],
        "member_groups": len(inf["member_groups"]), "peak_rss_mib": round(peak, 1),
        "end_to_end_s": round(e2e, 2), "pure_forward_sum_s": round(pure_sum, 2),
        "in_pipeline_forward_s": inf["forward_s"], "onnx_export_s": round(export_s, 2),
        "overhead_fraction": round(e2e / pure_sum - 1.0, 4),
        "pipeline_timings_s": record["timings_s"],
    }  # fmt: skip


def ray_runs(args, tmp: Path, model) -> list[dict]:
    """The default mode on a local Ray cluster of W worker CPUs, for each W."""
    import ray

    out = []
    for workers in args.ray_workers:
        t0 = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        start_s = time.perf_counter() - t0
        try:
            t0 = time.perf_counter()
            rec = run_pipeline(tmp / "stack.tif", model, tmp / f"out-ray{workers}", args,
                               executor="ray")  # fmt: skip
            secs = time.perf_counter() - t0
        finally:
            ray.shutdown()
        out.append({"workers": workers, "cluster_start_s": round(start_s, 2),
                    "end_to_end_s": round(secs, 2), "blocks": rec["inference"]["blocks"],
                    "tiles": rec["inference"]["tiles"]})  # fmt: skip
        inf = rec["inference"]
        print(f"ray: {workers} worker(s): {secs:.1f} s end to end ({inf['blocks']} blocks, "
              f"{inf['tiles']} tiles; cluster start {start_s:.1f} s)")  # fmt: skip
    return out


def time_runs(args) -> dict:
    import torch

    from lsd.training.precision import cpu_has_bf16

    torch.set_num_threads(args.threads)
    modes = [m for m in args.modes if m != "bf16" or cpu_has_bf16()]
    result: dict = {"modes": {}}
    with tempfile.TemporaryDirectory(prefix="lsd-bench-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        names = write_synthetic_stack(tmp / "stack.tif", args.size, args.layers)
        result["stack_write_s"] = round(time.perf_counter() - t0, 2)
        model = make_members(args.members, args.arch, args.encoder, names, tmp / "members")
        for mode in modes:
            t = result["modes"][mode] = time_run(args, mode, tmp, names, model)
            print(f"time [{mode}]: {t['members']} x {t['arch']}/{t['encoder']} on "
                  f"{t['size']}^2 x {t['layers']} layers, {t['tiles']} tiles: end-to-end "
                  f"{t['end_to_end_s']} s, pure forward {t['pure_forward_sum_s']} s, overhead "
                  f"{100 * t['overhead_fraction']:.1f}%")  # fmt: skip
        if args.ray_workers:
            result["ray"] = ray_runs(args, tmp, model)
    base = result["modes"].get("fp32_contiguous")
    if base:
        for t in result["modes"].values():
            t["speedup_vs_fp32_contiguous"] = round(base["end_to_end_s"] / t["end_to_end_s"], 3)
    return result


def peak_rss_mib() -> float:
    """Peak RSS of this process image. VmHWM resets at exec, unlike ru_maxrss, which Linux
    carries over from the parent and would report the parent's peak for a small child."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> None:
    """Linux >= 4.0: writing 5 to clear_refs resets VmHWM to the current RSS."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def memory_child(args) -> None:
    """Runs in its own process: prints one JSON line with peak RSS for one stack size."""
    import torch

    torch.set_num_threads(args.threads)
    stack = Path(args.memory_child)
    with tempfile.TemporaryDirectory(prefix="lsd-bench-mem-") as tmp:
        tmp = Path(tmp)
        names = [f"L{i}" for i in range(args.layers)]
        model = make_members(args.members, args.arch, args.encoder, names, tmp / "members",
                             empty=True)  # fmt: skip
        base = peak_rss_mib()
        reset_peak_rss()  # the peak from here on is the prediction's alone
        start = peak_rss_mib()
        t0 = time.perf_counter()
        record = run_pipeline(stack, model, tmp / "out", args)
        secs = time.perf_counter() - t0
    peak = peak_rss_mib()
    print(json.dumps({
        "size": args.size, "layers": args.layers, "members": args.members, "arch": args.arch,
        "encoder": args.encoder, "tile": args.tile, "peak_rss_mib": round(peak, 1),
        "peak_rss_before_predict_mib": round(base, 1),
        "rss_at_predict_start_mib": round(start, 1), "predict_s": round(secs, 1),
        "tiles": record["inference"]["tiles"], "polygons": record["polygons"],
    }))  # fmt: skip


def memory_runs(args) -> list[dict]:
    """One child per size, given a stack written here: writing 10000^2 x 11 layers through
    GDAL's default cache (5% of RAM) leaves the writer's heap grown, which a child that wrote
    its own stack would carry into the prediction's peak."""
    out = []
    for size in args.memory_sizes:
        with tempfile.TemporaryDirectory(prefix="lsd-bench-mem-") as tmp:
            stack = Path(tmp) / "stack.tif"
            write_synthetic_stack(stack, size, args.memory_layers)
            out.append(memory_run(args, size, stack))
    return out


def memory_run(args, size: int, stack: Path) -> dict:
    cmd = [sys.executable, __file__, "--memory-child", str(stack), "--size", str(size),
           "--layers", str(args.memory_layers), "--members", str(args.memory_members),
           "--arch", args.memory_arch, "--encoder", args.memory_encoder,
           "--tile", str(args.tile), "--overlap", str(args.overlap),
           "--threads", str(args.threads)]  # fmt: skip
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    row = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"memory: {size} x {size}: peak RSS {row['peak_rss_mib']} MiB "
          f"({row['predict_s']} s, {row['tiles']} tiles, "
          f"{row['polygons']['kept']} polygons)")  # fmt: skip
    return row


def synthetic_rows(kind: str, size: int, seed: int = 0):
    """rows(r0, n, width) -> (n, width) float32 probability of a `noisy` or `clean` map, the
    same for any split into rows (noisy: seeded per row; clean: discs drawn where rows meet)."""
    rng = np.random.default_rng(seed)
    n = max(1, size * size // 40_000)
    cy, cx, rad = rng.uniform(0, size, n), rng.uniform(0, size, n), rng.uniform(3, 15, n)

    def rows(r0: int, nrows: int, width: int) -> np.ndarray:
        if kind == "noisy":
            out = np.empty((nrows, width), np.float32)
            for i in range(nrows):
                out[i] = np.random.default_rng([seed, r0 + i]).random(width, dtype=np.float32)
            return out
        out = np.full((nrows, width), 0.1, np.float32)
        yy = np.arange(r0, r0 + nrows)[:, None]
        for y, x, r in zip(*(a[(cy + rad >= r0) & (cy - rad < r0 + nrows)] for a in (cy, cx, rad)),
                           strict=True):  # fmt: skip
            c0, c1 = int(max(0, x - r)), int(min(width, x + r + 1))
            inside = (yy - y) ** 2 + (np.arange(c0, c1)[None, :] - x) ** 2 <= r * r
            out[:, c0:c1][inside] = 0.9
        return out

    return rows


@contextlib.contextmanager
def injected_mask(kind: str, size: int):
    """The members' mean replaced by the synthetic probability as rows reach the writers."""
    from lsd.pipeline import maps

    rows = synthetic_rows(kind, size)
    original = maps.RasterSink.__call__

    def call(self, r0, mean, std):
        fake = rows(r0, mean.shape[0], mean.shape[1])
        fake[np.isnan(mean)] = np.nan
        return original(self, r0, fake, std)

    maps.RasterSink.__call__ = call
    try:
        yield
    finally:
        maps.RasterSink.__call__ = original


def mask_child(args) -> None:
    """Runs in its own process: one prediction with an injected mask; prints one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    stack = Path(args.mask_child)
    with tempfile.TemporaryDirectory(prefix="lsd-bench-mask-") as tmp:
        tmp = Path(tmp)
        names = [f"L{i}" for i in range(args.layers)]
        model = make_members(args.members, args.arch, args.encoder, names, tmp / "members",
                             empty=True)  # fmt: skip
        reset_peak_rss()
        t0 = time.perf_counter()
        with injected_mask(args.kind, args.size):
            record = run_pipeline(stack, model, tmp / "out", args)
        secs = time.perf_counter() - t0
    t = record["timings_s"]
    print(json.dumps({
        "size": args.size, "kind": args.kind, "layers": args.layers, "members": args.members,
        "arch": args.arch, "encoder": args.encoder, "peak_rss_mib": round(peak_rss_mib(), 1),
        "predict_s": round(secs, 1), "polygon_s": t["vectorise_s"],
        "polygon_share": round(t["vectorise_s"] / secs, 4), "timings_s": t,
        "polygons": record["polygons"], "landslide_pixels": record["landslide_pixels"],
    }))  # fmt: skip


def mask_runs(args) -> list[dict]:
    out = []
    for size in args.mask_sizes:
        with tempfile.TemporaryDirectory(prefix="lsd-bench-mask-") as tmp:
            stack = Path(tmp) / "stack.tif"
            write_synthetic_stack(stack, size, args.memory_layers)
            for kind in args.mask_kinds:
                cmd = [sys.executable, __file__, "--mask-child", str(stack), "--kind", kind,
                       "--size", str(size), "--layers", str(args.memory_layers), "--members",
                       str(args.memory_members), "--arch", args.memory_arch, "--encoder",
                       args.memory_encoder, "--tile", str(args.tile), "--overlap",
                       str(args.overlap), "--threads", str(args.threads)]  # fmt: skip
                res = subprocess.run(cmd, capture_output=True, text=True, check=True)
                row = json.loads(res.stdout.strip().splitlines()[-1])
                out.append(row)
                poly = row["polygons"]
                print(f"mask: {size} x {size} {kind}: predict {row['predict_s']} s, polygons "
                      f"{row['polygon_s']} s ({100 * row['polygon_share']:.1f}%), peak RSS "
                      f"{row['peak_rss_mib']} MiB; {poly['kept']} polygons "
                      f"{'written' if poly['written'] else 'NOT written (cap)'}")  # fmt: skip
    return out


POLYGON_STEP = """
import json, sys, time, resource
from pathlib import Path
import numpy as np, rasterio
folder, min_area = Path(sys.argv[1]), 500.0
def peak():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
cap = {"max_boundary_edges": 10**15} if sys.argv[2] == "no-cap" else {}
import geopandas, pyogrio, pyproj, rasterio.features, scipy.ndimage, shapely  # not timed
try:
    from lsd.pipeline.polygons import polygonise
except ImportError:  # lsd before the windowed polygons: the whole-mask path of its predict
    from lsd.pipeline.predict import _polygons
    polygonise = None
t0 = time.perf_counter()
with rasterio.Env(GDAL_CACHEMAX=64):
    if polygonise is None:
        with rasterio.open(folder / ".prob.tif") as src:
            kept = _polygons(src, folder, min_area)
        how = "whole mask"
    else:
        s = polygonise(folder / ".mask.tif", folder / ".prob.tif", folder / ".mask_mmu.tif",
                       folder / "landslides.gpkg", min_area, **cap)
        kept, how = {"kept": s.kept, "written": s.written}, "windows" + (" (no cap)" if cap else "")
print(json.dumps({"polygon_s": round(time.perf_counter() - t0, 2), "peak_rss_mib": peak(),
                  "kept": kept, "how": how}))
"""


def polygon_runs(args) -> list[dict]:
    """The polygon step alone on synthetic masks, in a child of `--polygon-python`."""
    import rasterio
    from rasterio.windows import Window

    from lsd.pipeline.maps import tiled_profile

    out = []
    for size in args.polygon_sizes:
        for kind in args.mask_kinds:
            with tempfile.TemporaryDirectory(prefix="lsd-bench-poly-") as tmp:
                folder = Path(tmp)
                profile = {"width": size, "height": size, "crs": "EPSG:32633",
                           "transform": rasterio.Affine(10, 0, 5e5, 0, -10, 5e6)}  # fmt: skip
                rows = synthetic_rows(kind, size)
                with (
                    rasterio.Env(GDAL_CACHEMAX=64),
                    rasterio.open(folder / ".prob.tif", "w",
                                  **tiled_profile(profile, "float32", np.nan)) as prob,
                    rasterio.open(folder / ".mask.tif", "w",
                                  **tiled_profile(profile, "uint8", 255)) as mask,
                ):  # fmt: skip
                    for r0 in range(0, size, 256):
                        n = min(256, size - r0)
                        p = rows(r0, n, size)
                        prob.write(p, 1, window=Window(0, r0, size, n))
                        mask.write((p > 0.5).astype(np.uint8), 1, window=Window(0, r0, size, n))
                python = args.polygon_python or sys.executable
                try:
                    cap = "no-cap" if args.polygon_no_cap else "cap"
                    res = subprocess.run([python, "-c", POLYGON_STEP, str(folder), cap],
                                         capture_output=True, text=True, check=True,
                                         timeout=args.polygon_timeout, cwd=tmp)  # fmt: skip
                    row = json.loads(res.stdout.strip().splitlines()[-1])
                except subprocess.TimeoutExpired:
                    row = {"polygon_s": None, "timeout_s": args.polygon_timeout}
                row.update(size=size, kind=kind, python=python)
                out.append(row)
                print(f"polygon step [{python}]: {size} x {size} {kind}: {row}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--layers", type=int, default=11)
    p.add_argument("--members", type=int, default=20)
    p.add_argument("--arch", default="UnetPlusPlus")
    p.add_argument("--encoder", default="resnet34")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=None, help="default: as lsd predict")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--memory-sizes", type=int, nargs="*", default=[2500, 10000])
    p.add_argument("--memory-layers", type=int, default=11)
    p.add_argument("--memory-members", type=int, default=1)
    p.add_argument("--memory-arch", default="UnetPlusPlus")
    p.add_argument("--memory-encoder", default="resnet34")
    p.add_argument("--modes", nargs="*", default=list(MODES), choices=list(MODES))
    p.add_argument("--ray-workers", type=int, nargs="*", default=[1, 2])
    p.add_argument("--block-rows", type=int, default=None,
                   help="rows per Ray block [a quarter of the stack]")  # fmt: skip
    p.add_argument("--mask-sizes", type=int, nargs="*", default=[2048, 8000, 10000])
    p.add_argument("--mask-kinds", nargs="*", default=["noisy", "clean"],
                   choices=["noisy", "clean"])  # fmt: skip
    p.add_argument("--polygon-sizes", type=int, nargs="*", default=[])
    p.add_argument("--polygon-python", help="python of the lsd install whose polygon step to time")
    p.add_argument("--polygon-timeout", type=float, default=1800.0)
    p.add_argument("--polygon-no-cap", action="store_true",
                   help="windowed polygons: vectorise a mask over the cap too")  # fmt: skip
    p.add_argument("--skip-time", action="store_true")
    p.add_argument("--memory-child", metavar="STACK", help=argparse.SUPPRESS)
    p.add_argument("--mask-child", metavar="STACK", help=argparse.SUPPRESS)
    p.add_argument("--kind", default="noisy", help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "predict.json")
    args = p.parse_args()
    if args.memory_child:
        memory_child(args)
        return
    if args.mask_child:
        mask_child(args)
        return
    result: dict = {"host": {"python": platform.python_version(), "machine": platform.machine(),
                             "cpus": __import__("os").cpu_count()}}  # fmt: skip
    if args.memory_sizes:  # first, so no child starts from a parent grown by the time run
        result["memory"] = memory_runs(args)
        result["memory_limit_mib"] = 2048
    if args.mask_sizes:
        result["masks"] = mask_runs(args)
        result["polygon_share_target"] = 0.2
    if args.polygon_sizes:
        result["polygon_step"] = polygon_runs(args)
    if not args.skip_time:
        result["time"] = time_runs(args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
