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

import rasterio

from lsd import __version__
from lsd.bundles import ModelFiles, check_threshold, training_pixel_m
from lsd.errors import InvalidFile, InvalidValue
from lsd.files import atomic_path, write_json
from lsd.formats import opened
from lsd.limits import check_disk, check_memory
from lsd.outputs import check_output, mark
from lsd.pipeline import maps, polygons
from lsd.pipeline.conventions import check_against_model, model_conventions
from lsd.pipeline.masks import MaskOptions, plan_masks
from lsd.progress import Progress, warn
from lsd.rasters import (
    LayerStats,
    RowReader,
    layer_statistics,
    read_grid,
    read_layer_names,
    require_layers,
)
from lsd.training.options import EXECUTORS, ForwardOptions, TileOptions

# Weights a CPU prediction holds at once (two UnetPlusPlus/resnet34 members); see predict_mean_std.
MEMBER_BUDGET_BYTES = 256 * 2**20
DEFAULT_MIN_AREA_M2 = 500.0
# GDAL's block cache defaults to 5% of RAM and fills up while large rasters are written and
# converted; capping it keeps peak memory independent of the raster's area.
GDAL_CACHE_MB = 64  # blocks are read once, in order: a cache mostly costs memory
# Input checks: a pixel size this much off the training events' (relative), or a layer whose mean
# lies this many training standard deviations from the training mean, or whose spread is this
# many times the training spread, gets a warning (the model has never seen such values).
PIXEL_TOL = 0.1
FAR_MEAN_STDS = 10.0
FAR_SPREAD_RATIO = 10.0


class EmptyInput(InvalidFile):
    """A layer the model needs holds no data: the map would be empty, not a finding."""


@dataclass
class PredictOptions:
    threshold: float | None = None  # None: the ensemble's own threshold
    tiles: TileOptions | None = None  # None: its defaults
    device: str = "auto"  # auto, cpu, cuda or cuda:N; resolved by prediction_device
    min_area_m2: float = DEFAULT_MIN_AREA_M2
    masks: MaskOptions = field(default_factory=MaskOptions)
    overwrite: bool = False
    progress: bool = True
    allow_empty_layers: bool = False  # map even when a needed layer holds no data
    ignore_conventions: bool = False  # map a stack whose conventions differ from the model's
    forward: ForwardOptions | None = None  # None: its defaults
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
    tiles: TileOptions
    device: Any  # torch.device (on Ray: the request, resolved on the workers)
    forward: ForwardOptions = field(default_factory=ForwardOptions)
    src: Any = None  # the open rasterio dataset
    tmp: Path = Path(".")
    checks: dict[str, Any] = field(default_factory=dict)  # what _inspect found


def _check(stack: Path, model: ModelFiles, opts: PredictOptions, out_dir: Path) -> _Job:
    """Everything that can be wrong with the input, checked before any model is loaded."""

    names = read_layer_names(stack)
    require_layers(stack, names, model.layers, "the model")
    conventions = check_against_model(
        stack, model_conventions(model), model.layers, model_where=f"the model {model.path}",
        ignore=opts.ignore_conventions,
    )  # fmt: skip
    plan = plan_masks(opts.masks, names)
    threshold = check_threshold(model.threshold if opts.threshold is None else opts.threshold)
    if opts.min_area_m2 < 0:
        raise InvalidValue(f"minimum area {opts.min_area_m2} m2 must be >= 0", field="min_area_m2")
    tiles = opts.tiles or TileOptions()
    forward = opts.forward or ForwardOptions()
    device = prediction_device(opts)
    job = _Job(stack, model, opts, names, plan, threshold, tiles, device, forward)
    _check_sizes(job, out_dir)
    job.checks = _inspect(stack, model, opts.allow_empty_layers, opts.progress)
    job.checks["warnings"] = conventions.warnings + job.checks["warnings"]
    job.checks["conventions"] = conventions.record
    for line in job.checks["warnings"]:
        warn(line)
    return job


def _groups(job: _Job) -> list[list[int]]:
    """The members loaded together: all on a GPU, groups within MEMBER_BUDGET_BYTES on a CPU."""
    from lsd.training.inference import member_groups

    budget = float("inf") if job.device.type == "cuda" else MEMBER_BUDGET_BYTES
    return member_groups(job.model.weight_bytes(), budget)


def _check_sizes(job: _Job, out_dir: Path) -> None:
    """What mapping the stack will hold, checked before reading it (lsd.limits): one strip of
    tiles across the whole width (the stack's layers, each loaded member's sums, the blend
    weights and the rows handed to the writers), and, for an ensemble in several groups, the
    two scratch files of per-pixel sums on disk."""
    grid = read_grid(job.stack)
    if job.opts.executor != "inprocess":
        return  # the workers hold the strips; each checks its own machine's memory
    groups = _groups(job)
    rows = min(job.tiles.tile, grid.height)
    per_pixel = 4 * len(job.model.layers) + 12 * max(map(len, groups)) + 16
    check_memory(
        f"mapping {job.stack} ({grid.width} pixels wide, {len(job.model.layers)} layers) in "
        f"tiles of {job.tiles.tile}", per_pixel * rows * grid.width, field="tile",
    )  # fmt: skip
    if len(groups) > 1:
        check_disk(out_dir.parent, 16.0 * grid.width * grid.height,
                   f"the per-pixel sums of {len(groups)} groups of members")  # fmt: skip


def prediction_device(opts: PredictOptions) -> Any:
    """The device to predict on (a torch.device), checked with the executor and runtime asked
    for; on Ray the request itself, which each worker resolves. predict_stack calls it; a caller
    that does slow work first (`lsd predict --aoi` fetches the stack) calls it before that work
    too, so a device that cannot be used fails in the first second."""
    from lsd.training.device import resolve_device
    from lsd.training.precision import Precision

    forward = opts.forward or ForwardOptions()
    if opts.executor not in EXECUTORS:
        raise InvalidValue(
            f"unknown executor '{opts.executor}'; choose from {', '.join(EXECUTORS)}",
            field="executor",
        )
    if opts.block_rows is not None and opts.block_rows < 1:
        raise InvalidValue(f"block rows {opts.block_rows} must be at least 1", field="block_rows")
    if forward.runtime == "onnx":
        from lsd.training.onnx_runtime import import_ort

        import_ort()  # says how to install it
    if opts.executor == "ray":  # the workers choose their device
        from lsd.training.executor_ray import RayExecutor

        RayExecutor(address=opts.ray_address, device=opts.device)  # installed, address answers
        return opts.device
    device = resolve_device(opts.device)
    Precision.for_device(device, mode=forward.precision)  # bf16 only where it is native
    if forward.runtime == "onnx" and device.type == "cuda":
        raise InvalidValue("runtime onnx runs on the CPU; use device cpu with it", field="runtime")
    return device


def _inspect(stack: Path, model: ModelFiles, allow_empty: bool, progress: bool) -> dict[str, Any]:
    """Read the needed layers once and compare them with what the models were trained on:
    an empty layer is refused (unless allowed), anything else the models never saw is a
    warning, recorded in run.json and README.txt."""
    grid = read_grid(stack)
    with Progress(grid.height, desc="check", unit="rows", enabled=progress) as bar:
        stats = layer_statistics(stack, model.layers, progress=bar)
    empty = [name for name, st in stats.items() if st.finite == 0]
    why = sorted({_no_data(stats[name]) for name in empty})
    if empty and not allow_empty:
        what = "any layer" if len(empty) == len(stats) else f"layer(s) {', '.join(empty)}"
        raise EmptyInput(
            f"{stack}: holds no data in {what} the model needs ({'; '.join(why)}), so the "
            "map would show nothing"
        )
    warnings = [f"{stack}: layer(s) {', '.join(empty)} hold no data ({'; '.join(why)})"]
    warnings = warnings if empty else []
    inf = {name: st.inf for name, st in stats.items() if st.inf}
    if inf:
        counts = ", ".join(f"{name} ({n})" for name, n in inf.items())
        warnings.append(f"{stack}: +/-inf values in {counts}, read as no data")
    flat = {name: st.min for name, st in stats.items() if st.finite and st.min == st.max}
    if flat:
        values = ", ".join(f"{name} {value:.4g}" for name, value in flat.items())
        whole = len(flat) + len(empty) == len(stats)
        warnings.append(
            f"{stack}: {'every layer the model needs holds' if whole else 'layer(s) hold'} a "
            f"single value everywhere ({values}); "
            + ("the stack carries no image (a failed download or export?), so the map shows "
               "nothing real" if whole else "the model learnt from layers that vary")
        )  # fmt: skip
    if grid.crs is None:
        warnings.append(
            f"{stack}: has no CRS, so the map sits on a nominal pixel grid and cannot be "
            "overlaid on other maps"
        )
    pixel, trained = grid.pixel_size_m(), training_pixel_m(model.metas[0])
    off = pixel is not None and trained is not None and abs(pixel - trained) > PIXEL_TOL * trained
    if off:
        warnings.append(
            f"{stack}: pixels are {pixel:.3g} m but the models were trained on {trained:.3g} "
            f"m pixels; resample the stack to {trained:.3g} m for a trustworthy map"
        )
    meta = model.metas[0]
    for name, mean, std in zip(meta.layers, meta.mean, meta.std, strict=True):
        far = _far_from_training(name, stats[name], mean, std)
        if far:
            warnings.append(f"{stack}: {far}")
    return {
        "warnings": warnings,
        "empty_layers": empty,
        "inf_values": inf,
        "single_value_layers": flat,
        "pixel_m": pixel,
        "training_pixel_m": trained,
    }


def _no_data(st: LayerStats) -> str:
    """How a layer without a finite value is empty, in words."""
    if st.inf and st.nan:
        return "every pixel is NaN or +/-inf"
    return "every pixel is +/-inf" if st.inf else "every pixel is NaN"


def _far_from_training(name: str, st: LayerStats, mean: float, std: float) -> str | None:
    """How far a layer's values lie from the training statistics, when it is far."""
    if st.finite == 0:
        return None
    std = std if std > 0 else 1.0
    shift = abs(st.mean - mean) / std
    spread = st.std / std
    if shift <= FAR_MEAN_STDS and spread <= FAR_SPREAD_RATIO:
        return None
    return (
        f"layer '{name}' lies far outside the training data: its mean {st.mean:.4g} is "
        f"{shift:.3g} training standard deviations from the training mean {mean:.4g} "
        f"(std {std:.4g}), its spread {spread:.3g} times the training spread, values "
        f"{st.min:.4g} to {st.max:.4g}; check its units and scaling"
    )


def predict_stack(
    stack: Path | str,
    model: ModelFiles,
    out_dir: Path | str,
    opts: PredictOptions,
    inputs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the whole prediction; returns the run record also written to run.json."""

    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    check_output(out_dir, "map", overwrite=opts.overwrite, inputs=(stack, model.path))
    # the cap covers the input checks too: their one pass over the stack would otherwise fill
    # GDAL's default cache (5% of RAM) with blocks that are never read again
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        job = _check(Path(stack), model, opts, out_dir)
        return _write_map(job, out_dir, inputs or {}, t_start)


def _write_map(job: _Job, out_dir: Path, inputs: dict[str, Any], t_start: float) -> dict[str, Any]:
    """Everything goes into a hidden folder that becomes `out_dir` only when complete."""

    timings: dict[str, float] = {}
    with (
        atomic_path(out_dir, directory=True) as job.tmp,
        opened(job.stack) as job.src,
    ):
        stats, sink = _infer(job)
        timings["inference_s"] = time.perf_counter() - t_start
        timings["read_s"], timings["write_s"] = stats.pop("read_s"), sink.write_s

        t0 = time.perf_counter()
        kept = _polygons(job)
        timings["vectorise_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        _finish_rasters(job.tmp)
        timings["cog_quicklook_s"] = time.perf_counter() - t0
        timings["total_s"] = time.perf_counter() - t_start
        record = _run_record(job, inputs, sink, kept, stats, timings)
        maps.write_mask_style(job.tmp / maps.MASK_STYLE_FILE)
        maps.write_readme(job.tmp / maps.README_FILE, record)
        write_json(job.tmp / maps.RUN_FILE, record)
        mark(job.tmp, "map")
    return record


def _infer(job: _Job) -> tuple[dict[str, Any], maps.RasterSink]:
    """Stream the ensemble's mean and std over the stack into the map writers.

    On a GPU every member lives in device memory; on a CPU members come in groups whose weights
    fit MEMBER_BUDGET_BYTES, so memory does not grow with ensemble size. With the Ray executor
    the stack is cut into blocks of rows that workers predict (lsd.training.executor_ray); the
    blocks come back with the values a single pass gives, and are written here as they arrive.
    """

    src, model = job.src, job.model
    idx = [job.names.index(n) + 1 for n in model.layers]
    profile = {"width": src.width, "height": src.height, "crs": src.crs, "transform": src.transform}
    stats: dict[str, Any] = {}
    bar = Progress(src.height, desc="predict", unit="rows", enabled=job.opts.progress)
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
    from lsd.training.inference import predict_mean_std

    src, model = job.src, job.model
    read_rows = RowReader(src, idx)
    predict_mean_std(
        lambda members: load_members(model, members, job.device),
        _groups(job), read_rows, src.height, src.width, sink,
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


def _polygons(job: _Job) -> dict[str, Any]:
    """The mask without landslides under the minimum mapping unit, and the polygons of the rest
    (pipeline.polygons); a mask too fragmented to be a map keeps its rasters, with a warning."""
    tmp = job.tmp
    summary = polygons.polygonise(tmp / ".mask.tif", tmp / ".prob.tif", tmp / ".mask_mmu.tif",
                                  tmp / maps.POLY_FILE, job.opts.min_area_m2)  # fmt: skip
    (tmp / ".mask.tif").unlink()
    if not summary.written:
        warn(f"{job.stack}: no {maps.POLY_FILE}: {summary.skipped_reason}")
    return asdict(summary)


def _finish_rasters(tmp: Path) -> None:
    maps.to_cog(tmp / ".prob.tif", tmp / maps.PROB_FILE, resampling="AVERAGE",
                description="probability")  # fmt: skip
    maps.to_cog(tmp / ".std.tif", tmp / maps.STD_FILE, resampling="AVERAGE",
                description="disagreement")  # fmt: skip
    maps.colour_mask(tmp / ".mask_mmu.tif")
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
        # without a CRS the map sits on a nominal grid and cannot be overlaid on other maps
        "georeferenced": src.crs is not None,
        "input_checks": job.checks,
        "threshold": job.threshold,
        "masks": {"applied": job.plan, **asdict(opts.masks), "pixels_removed": sink.removed},
        "min_area_m2": opts.min_area_m2,
        "polygons": {k: v for k, v in kept.items() if k not in ("landslide_pixels", "windows")},
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
