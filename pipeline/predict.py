"""`lsd predict` on an existing stack: probability, mask, disagreement, polygons, quicklook.

Everything is streamed: inference hands finished rows to the map writers (pipeline.maps), the
polygons are built strip by strip (pipeline.polygons), and the minimum mapping unit removes small
polygons and then their pixels from the mask, so mask.tif and landslides.gpkg always agree. The
whole output folder is written under a temporary name and renamed only when all of it is
complete.
"""

from __future__ import annotations

import datetime as dt
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lsd import __version__
from lsd.bundles import ModelFiles, check_threshold
from lsd.errors import InvalidValue
from lsd.files import atomic_path, write_json
from lsd.pipeline import maps, polygons
from lsd.pipeline.masks import MaskOptions, plan_masks
from lsd.rasters import RowReader, read_layer_names, require_layers

# Weights a CPU prediction holds at once (two UnetPlusPlus/resnet34 members); see predict_mean_std.
MEMBER_BUDGET_BYTES = 256 * 2**20
DEFAULT_MIN_AREA_M2 = 500.0
# GDAL's block cache defaults to 5% of RAM and fills up while large rasters are written and
# converted; capping it keeps peak memory independent of the raster's area.
GDAL_CACHE_MB = 64  # blocks are read once, in order: a cache mostly costs memory


@dataclass
class PredictOptions:
    threshold: float | None = None  # None: the ensemble's own threshold
    tiles: Any = None  # lsd.training.inference.TileOptions; None: its defaults
    device: str = "auto"
    min_area_m2: float = DEFAULT_MIN_AREA_M2
    masks: MaskOptions = field(default_factory=MaskOptions)
    overwrite: bool = False
    progress: bool = True
    forward: Any = None  # lsd.training.inference.ForwardOptions; None: its defaults
    executor: str = "inprocess"  # or "ray": blocks of rows predicted on a Ray cluster
    ray_address: str | None = None  # None: a local Ray cluster
    block_rows: int | None = None  # Ray: image rows per block; None: about 64 MB of output


@dataclass
class _Job:
    """One prediction's inputs, checked, and the open stack and temporary folder it writes in."""

    stack: Path
    model: ModelFiles
    opts: PredictOptions
    names: tuple[str, ...]  # the stack's layers
    plan: dict[str, str]  # mask control -> layer
    threshold: float
    tiles: Any  # TileOptions
    device: Any  # torch.device (on Ray: the request, resolved on the workers)
    forward: Any = None  # ForwardOptions
    src: Any = None  # the open rasterio dataset
    tmp: Path = Path(".")


def _check(stack: Path, model: ModelFiles, opts: PredictOptions) -> _Job:
    """Everything that can be wrong with the input, checked before any model is loaded."""
    from lsd.training.device import resolve_device
    from lsd.training.executors import EXECUTORS
    from lsd.training.inference import ForwardOptions, TileOptions
    from lsd.training.precision import Precision

    names = read_layer_names(stack)
    require_layers(stack, names, model.layers, "the model")
    plan = plan_masks(opts.masks, names)
    threshold = check_threshold(model.threshold if opts.threshold is None else opts.threshold)
    if opts.min_area_m2 < 0:
        raise InvalidValue(f"minimum area {opts.min_area_m2} m2 must be >= 0", field="min_area_m2")
    tiles = opts.tiles or TileOptions()
    forward = opts.forward or ForwardOptions()
    if opts.executor not in EXECUTORS:
        raise InvalidValue(
            f"unknown executor '{opts.executor}'; choose from {', '.join(EXECUTORS)}",
            field="executor",
        )
    if opts.block_rows is not None and opts.block_rows < 1:
        raise InvalidValue(f"block rows {opts.block_rows} must be at least 1", field="block_rows")
    if opts.executor == "ray":  # the workers choose their device
        from lsd.training.executor_ray import RayExecutor

        RayExecutor(address=opts.ray_address, device=opts.device)  # installed, address answers
        device: Any = opts.device
    else:
        device = resolve_device(opts.device)
        Precision.for_device(device, mode=forward.precision)  # bf16 only where it is native
    if forward.runtime == "onnx":
        from lsd.training.onnx_runtime import import_ort

        import_ort()  # says how to install it
        if str(device).startswith("cuda"):
            raise InvalidValue("runtime onnx runs on the CPU; use device cpu with it",
                               field="runtime")  # fmt: skip
    return _Job(stack, model, opts, names, plan, threshold, tiles, device, forward)


def predict_stack(
    stack: Path | str,
    model: ModelFiles,
    out_dir: Path | str,
    opts: PredictOptions,
    inputs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the whole prediction; returns the run record also written to run.json."""
    import rasterio

    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    job = _check(Path(stack), model, opts)
    maps.check_output_folder(out_dir, opts.overwrite)
    timings: dict[str, float] = {}
    with (
        rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB),
        atomic_path(out_dir, directory=True) as job.tmp,
        rasterio.open(job.stack) as job.src,
    ):
        stats, sink = _infer(job)
        timings["inference_s"] = time.perf_counter() - t_start
        timings["read_s"], timings["write_s"] = stats.pop("read_s"), sink.write_s

        t0 = time.perf_counter()
        kept = _polygons(job.src, job.tmp, opts.min_area_m2)
        timings["vectorise_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        _finish_rasters(job.tmp)
        timings["cog_quicklook_s"] = time.perf_counter() - t0
        timings["total_s"] = time.perf_counter() - t_start
        record = _run_record(job, inputs or {}, sink, kept, stats, timings)
        write_json(job.tmp / maps.RUN_FILE, record)
    return record


def _infer(job: _Job) -> tuple[dict[str, Any], maps.RasterSink]:
    """Stream the ensemble's mean and std over the stack into the map writers.

    On a GPU every member lives in device memory; on a CPU members come in groups whose weights
    fit MEMBER_BUDGET_BYTES, so memory does not grow with ensemble size. With the Ray executor
    the stack is cut into blocks of rows that workers predict (lsd.training.executor_ray); the
    blocks come back with the values a single pass gives, and are written here as they arrive.
    """
    from tqdm import tqdm

    src, model = job.src, job.model
    idx = [job.names.index(n) + 1 for n in model.layers]
    profile = {"width": src.width, "height": src.height, "crs": src.crs, "transform": src.transform}
    stats: dict[str, Any] = {}
    bar = tqdm(total=src.height, unit="row", desc="predict", disable=not job.opts.progress)
    sink = maps.RasterSink(
        job.tmp, profile, job.threshold, src, job.plan, job.opts.masks, job.names, bar
    )
    try:
        if job.opts.executor == "ray":
            _infer_on_ray(job, idx, sink, stats)
        else:
            _infer_here(job, idx, sink, stats)
    finally:
        sink.close()
        bar.close()
    return stats, sink


def _infer_here(job: _Job, idx: list[int], sink: maps.RasterSink, stats: dict[str, Any]) -> None:
    from lsd.training.bundle import load_members
    from lsd.training.inference import member_groups, predict_mean_std

    src, model = job.src, job.model
    read_rows = RowReader(src, idx)
    budget = float("inf") if job.device.type == "cuda" else MEMBER_BUDGET_BYTES
    predict_mean_std(
        lambda members: load_members(model, members, job.device),
        member_groups(model.weight_bytes(), budget), read_rows, src.height, src.width, sink,
        scratch=job.tmp, tiles=job.tiles, device=job.device, stats=stats, forward=job.forward,
    )  # fmt: skip
    stats["read_s"] = read_rows.seconds


def _infer_on_ray(job: _Job, idx: list[int], sink: maps.RasterSink, stats: dict[str, Any]) -> None:
    from lsd.training.executor_ray import BlockJob, predict_on_ray

    src = job.src
    block = BlockJob(
        model=job.model, stack=job.stack.resolve(), indexes=tuple(idx), height=src.height,
        width=src.width, tiles=job.tiles, forward=job.forward, member_budget=MEMBER_BUDGET_BYTES,
        rows_per_block=job.opts.block_rows,
    )  # fmt: skip
    predict_on_ray(block, sink, address=job.opts.ray_address, device=job.opts.device, stats=stats)


def _polygons(src, tmp: Path, min_area_m2: float) -> dict[str, Any]:
    """Vectorise the mask, drop polygons under the minimum mapping unit (and their pixels)."""
    mask_tmp, prob_tmp = tmp / ".mask.tif", tmp / ".prob.tif"
    polys = polygons.vectorise(mask_tmp, prob_tmp)
    geoms_crs = polygons.pixel_to_crs(polys.geoms, src.transform)
    areas = polygons.polygon_areas_m2(geoms_crs, src.crs, abs(src.transform.a * src.transform.e))
    keep = areas >= min_area_m2
    removed = [g for g, k in zip(polys.geoms, keep, strict=True) if not k]
    polygons.burn_out(mask_tmp, tmp / ".mask_mmu.tif", removed, polygons.VECTOR_STRIP_ROWS)
    mask_tmp.unlink()
    kept_idx = np.nonzero(keep)[0]
    table = {
        "area_m2": areas[kept_idx],
        "pixels": polys.pixels[kept_idx],
        "mean_prob": polys.prob_sum[kept_idx] / np.maximum(polys.pixels[kept_idx], 1),
        "max_prob": polys.prob_max[kept_idx],
    }
    polygons.write_polygons(tmp / maps.POLY_FILE, [geoms_crs[i] for i in kept_idx], table, src.crs)
    return {
        "kept": int(keep.sum()),
        "removed_below_min_area": int((~keep).sum()),
        "landslide_pixels": int(polys.pixels[kept_idx].sum()),
    }


def _finish_rasters(tmp: Path) -> None:
    maps.to_cog(tmp / ".prob.tif", tmp / maps.PROB_FILE, resampling="AVERAGE",
                description="probability")  # fmt: skip
    maps.to_cog(tmp / ".std.tif", tmp / maps.STD_FILE, resampling="AVERAGE",
                description="disagreement")  # fmt: skip
    maps.to_cog(tmp / ".mask_mmu.tif", tmp / maps.MASK_FILE, resampling="NEAREST",
                description="landslide")  # fmt: skip
    maps.write_quicklook(tmp / maps.PROB_FILE, tmp / maps.MASK_FILE, tmp / maps.QUICKLOOK_FILE)


def _run_record(
    job: _Job,
    inputs: dict[str, Any],
    sink: maps.RasterSink,
    kept: dict[str, Any],
    stats: dict[str, Any],
    timings: dict[str, float],
) -> dict[str, Any]:
    """run.json: what was mapped with what, so the map can be reproduced and audited."""
    src, model, opts, tiles = job.src, job.model, job.opts, job.tiles
    return {
        "lsd_version": __version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "inputs": {"stack": str(job.stack.resolve()), **inputs},
        "model": {
            "path": str(model.path.resolve()),
            "manifest": model.manifest,
            "members": [
                {"arch": m.arch, "encoder": m.encoder, "loss": m.loss, "lr": m.lr}
                for m in model.metas
            ],
            "layers": list(model.layers),
        },
        "grid": {
            "width": src.width,
            "height": src.height,
            "crs": src.crs.to_string() if src.crs else None,
            "transform": list(src.transform)[:6],
        },
        "threshold": job.threshold,
        "masks": {"applied": job.plan, **asdict(opts.masks), "pixels_removed": sink.removed},
        "min_area_m2": opts.min_area_m2,
        "polygons": {k: kept[k] for k in ("kept", "removed_below_min_area")},
        "landslide_pixels": kept["landslide_pixels"],
        "tile": tiles.tile,
        "overlap": tiles.overlap,
        "batch_size": stats.get("batch_size", tiles.batch_size),
        "device": str(job.device),
        "precision": job.forward.precision,
        "tta": job.forward.tta,
        "runtime": job.forward.runtime,
        "executor": opts.executor,
        "inference": stats,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "host": {"python": platform.python_version(), "machine": platform.machine()},
    }
