"""`lsd predict` on an existing stack: probability, mask, disagreement, polygons, quicklook.

Everything is streamed. Inference hands finished rows to `_RasterSink`, which writes them into
tiled GeoTIFFs in a temporary folder. Polygons are then built strip by strip: connected components
are labelled in each strip, components that touch across a strip border are joined with a
union-find, and their statistics (pixel count, probability sum and max) are combined, so no pass
holds more than one strip of the raster. The minimum mapping unit removes small polygons and, in a
last pass, their pixels from the mask, so mask.tif and landslides.gpkg always agree. Rasters are
converted to Cloud Optimized GeoTIFF and the temporary folder is renamed to the output folder only
when all of it is complete.
"""

from __future__ import annotations

import datetime as dt
import platform
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lsd import __version__
from lsd.contract import atomic_path, read_layer_names, write_json
from lsd.errors import UserError
from lsd.pipeline.masks import MaskOptions, apply_masks, plan_masks

PROB_FILE = "probability.tif"
MASK_FILE = "mask.tif"
STD_FILE = "disagreement.tif"
POLY_FILE = "landslides.gpkg"
# Weights a CPU prediction holds at once (two UnetPlusPlus/resnet34 members); see predict_mean_std.
MEMBER_BUDGET_BYTES = 256 * 2**20
QUICKLOOK_FILE = "quicklook.png"
RUN_FILE = "run.json"
OUTPUTS = (PROB_FILE, MASK_FILE, STD_FILE, POLY_FILE, QUICKLOOK_FILE, RUN_FILE)

MASK_NODATA = 255
DEFAULT_MIN_AREA_M2 = 500.0
EQUAL_AREA_CRS = "EPSG:6933"  # WGS 84 / NSIDC EASE-Grid 2.0 Global: metres, equal area
VECTOR_STRIP_ROWS = 1024
# GDAL's block cache defaults to 5% of RAM and fills up while large rasters are written and
# converted; capping it keeps peak memory independent of the raster's area.
GDAL_CACHE_MB = 64  # blocks are read once, in order: a cache mostly costs memory
QUICKLOOK_MAX_PX = 800


@dataclass
class PredictOptions:
    threshold: float | None = None  # None: the ensemble's own threshold
    tile: int = 512
    overlap: int = 64
    batch_size: int | None = None  # None: 8 on a GPU, 1 on a CPU
    device: str = "auto"
    min_area_m2: float = DEFAULT_MIN_AREA_M2
    masks: MaskOptions = field(default_factory=MaskOptions)
    overwrite: bool = False
    progress: bool = True


@dataclass
class LoadedModel:
    """One ensemble or one bundle, seen the same way; members are checked but not yet loaded, so
    a prediction can hold as few of them in memory at once as it must."""

    folders: list[Path]
    metas: list[Any]  # BundleMeta, in rank order
    layers: tuple[str, ...]
    threshold: float
    path: Path
    manifest: dict[str, Any]

    def weight_bytes(self) -> list[int]:
        from lsd.training.bundle import WEIGHTS_FILE

        return [(f / WEIGHTS_FILE).stat().st_size for f in self.folders]

    def load(self, indices: Sequence[int], device: Any) -> list[tuple[Any, Any]]:
        from lsd.training.bundle import load_bundle

        return [load_bundle(self.folders[i], device, checked=self.metas[i]) for i in indices]


def load_model(folder: Path | str) -> LoadedModel:
    """An ensemble folder (manifest.json) or a single model bundle (bundle.json), fully checked
    (checksums included) before any work starts; errors name the file."""
    from lsd.training.bundle import META_FILE, check_bundle
    from lsd.training.ensemble import MANIFEST_FILE, open_ensemble

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: model folder not found")
    if (folder / MANIFEST_FILE).exists() or not (folder / META_FILE).exists():
        ens = open_ensemble(folder)
        return LoadedModel(
            ens.folders, ens.metas, tuple(ens.layers), ens.threshold, folder, ens.manifest
        )
    meta = check_bundle(folder)
    manifest = {"single_bundle": str(folder), "arch": meta.arch, "encoder": meta.encoder}
    return LoadedModel([folder], [meta], tuple(meta.layers), 0.5, folder, manifest)


def check_output_folder(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise UserError(f"{out_dir}: output folder exists and is not empty (use --overwrite)")


# --------------------------------------------------------------------------- raster writing


def _tiled_profile(src_profile: dict[str, Any], dtype: str, nodata: float | int) -> dict[str, Any]:
    profile = {
        "driver": "GTiff",
        "width": src_profile["width"],
        "height": src_profile["height"],
        "count": 1,
        "dtype": dtype,
        "nodata": nodata,
        "crs": src_profile.get("crs"),
        "transform": src_profile["transform"],
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
    }
    if profile["crs"] is None:
        del profile["crs"]
    return profile


def _to_cog(src: Path, dst: Path, *, resampling: str, description: str) -> None:
    """Copy a tiled GeoTIFF to a Cloud Optimized GeoTIFF (GDAL streams the copy)."""
    import rasterio
    import rasterio.shutil

    with rasterio.open(src, "r+") as ds:
        ds.set_band_description(1, description)
    rasterio.shutil.copy(
        src,
        dst,
        driver="COG",
        COMPRESS="DEFLATE",
        BLOCKSIZE=256,
        RESAMPLING=resampling,
        OVERVIEW_RESAMPLING=resampling,
        BIGTIFF="IF_SAFER",
    )
    src.unlink()


# --------------------------------------------------------------------------- polygons


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = [0]  # index 0 unused (background)

    def add(self, n: int) -> None:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))

    def find(self, a: int) -> int:
        root = a
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[a] != root:
            self.parent[a], a = root, self.parent[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class Polygons:
    """Landslide polygons in pixel coordinates (col, row) plus per-polygon statistics."""

    geoms: list[Any]
    pixels: np.ndarray
    prob_sum: np.ndarray
    prob_max: np.ndarray


def vectorise(mask_path: Path, prob_path: Path, strip_rows: int = VECTOR_STRIP_ROWS) -> Polygons:
    """4-connected components of mask == 1 as polygons, built strip by strip."""
    import rasterio
    from affine import Affine
    from rasterio.features import shapes
    from rasterio.windows import Window
    from scipy import ndimage
    from shapely.geometry import shape
    from shapely.ops import unary_union

    uf = _UnionFind()
    geoms: list[Any] = [None]
    pixels: list[np.ndarray] = [np.zeros(1)]
    sums: list[np.ndarray] = [np.zeros(1)]
    maxes: list[np.ndarray] = [np.zeros(1)]
    prev_last: np.ndarray | None = None
    with rasterio.open(mask_path) as msrc, rasterio.open(prob_path) as psrc:
        height, width = msrc.height, msrc.width
        for r0 in range(0, height, strip_rows):
            win = Window(0, r0, width, min(strip_rows, height - r0))
            hit = msrc.read(1, window=win) == 1
            lab, n = ndimage.label(hit)
            offset = len(uf.parent) - 1
            uf.add(n)
            if n:
                prob = psrc.read(1, window=win)
                flat = lab.ravel()
                pixels.append(np.bincount(flat, minlength=n + 1)[1:].astype(np.int64))
                sums.append(np.bincount(flat, weights=prob.ravel(), minlength=n + 1)[1:])
                maxes.append(
                    np.asarray(ndimage.maximum(prob, lab, index=np.arange(1, n + 1)), np.float64)
                )
                piece = [None] * n
                for geom, value in shapes(
                    lab.astype(np.int32),
                    mask=hit,
                    connectivity=4,
                    transform=Affine.translation(0, r0),
                ):
                    piece[int(value) - 1] = shape(geom)
                geoms.extend(piece)
            glob = np.where(lab > 0, lab + offset, 0)
            if prev_last is not None:
                both = (prev_last > 0) & (glob[0] > 0)
                for a, b in set(zip(prev_last[both].tolist(), glob[0][both].tolist(), strict=True)):
                    uf.union(a, b)
            prev_last = glob[-1].copy()

    pix = np.concatenate(pixels)
    psum = np.concatenate(sums)
    pmax = np.concatenate(maxes)
    groups: dict[int, list[int]] = {}
    for i in range(1, len(uf.parent)):
        groups.setdefault(uf.find(i), []).append(i)
    out = Polygons(
        [], np.zeros(len(groups), np.int64), np.zeros(len(groups)), np.zeros(len(groups))
    )
    for j, members in enumerate(groups.values()):
        idx = np.asarray(members)
        geom = geoms[members[0]] if len(members) == 1 else unary_union([geoms[i] for i in members])
        out.geoms.append(geom)
        out.pixels[j] = pix[idx].sum()
        out.prob_sum[j] = psum[idx].sum()
        out.prob_max[j] = pmax[idx].max()
    return out


def polygon_areas_m2(geoms_crs: Sequence[Any], crs: Any, pixel_area: float) -> np.ndarray:
    """Areas in m2: planar in a metre-based projected CRS, else in an equal-area projection.

    A stack without a CRS has no known unit; its pixels are taken to be metres (documented).
    """
    import geopandas as gpd

    if not geoms_crs:
        return np.zeros(0)
    gs = gpd.GeoSeries(list(geoms_crs), crs=crs)
    if crs is None:
        return gs.area.to_numpy() * 1.0
    if crs.is_projected and (crs.linear_units_factor[1] if crs.linear_units_factor else 0) == 1.0:
        return gs.area.to_numpy()
    return gs.to_crs(EQUAL_AREA_CRS).area.to_numpy()


def _pixel_to_crs(geoms: Sequence[Any], transform: Any) -> list[Any]:
    from shapely.affinity import affine_transform

    t = transform
    coeffs = [t.a, t.b, t.d, t.e, t.c, t.f]
    return [affine_transform(g, coeffs) for g in geoms]


def write_polygons(
    path: Path, geoms_crs: list[Any], table: dict[str, np.ndarray], crs: Any
) -> None:
    import geopandas as gpd

    gdf = gpd.GeoDataFrame(
        {"id": np.arange(1, len(geoms_crs) + 1, dtype=np.int64), **table},
        geometry=gpd.GeoSeries(geoms_crs, crs=crs),
        crs=crs,
    )
    with warnings.catch_warnings():
        # a stack without georeferencing (e.g. Landslide4Sense) gives polygons in its pixel-sized
        # frame; run.json records crs: null, so the writer's no-CRS warning adds nothing
        warnings.filterwarnings("ignore", message="'crs' was not provided", category=UserWarning)
        gdf.to_file(path, driver="GPKG", layer="landslides", geometry_type="Polygon")


def _burn_out(mask_src: Path, mask_dst: Path, removed: Sequence[Any], strip_rows: int) -> None:
    """Copy the mask, setting the pixels of `removed` (pixel-coordinate polygons) to 0."""
    import rasterio
    from affine import Affine
    from rasterio.features import rasterize
    from rasterio.windows import Window

    bounds = np.array([g.bounds for g in removed]).reshape(-1, 4)  # minx, miny, maxx, maxy
    with rasterio.open(mask_src) as src, rasterio.open(mask_dst, "w", **src.profile) as dst:
        for r0 in range(0, src.height, strip_rows):
            rows = min(strip_rows, src.height - r0)
            win = Window(0, r0, src.width, rows)
            data = src.read(1, window=win)
            sel = np.nonzero((bounds[:, 1] < r0 + rows) & (bounds[:, 3] > r0))[0]
            if sel.size:
                burn = rasterize(
                    [(removed[i], 1) for i in sel],
                    out_shape=(rows, src.width),
                    transform=Affine.translation(0, r0),
                    fill=0,
                    dtype="uint8",
                )
                data[(burn == 1) & (data == 1)] = 0
            dst.write(data, 1, window=win)


# --------------------------------------------------------------------------- quicklook


def write_quicklook(prob_path: Path, mask_path: Path, out: Path) -> None:
    """A small PNG: probability in a colour map, landslide outlines in cyan, no data grey."""
    import rasterio
    from matplotlib import colormaps
    from PIL import Image
    from scipy import ndimage

    with rasterio.open(prob_path) as src:
        scale = max(src.width, src.height) / QUICKLOOK_MAX_PX
        shape = (
            max(1, round(src.height / max(scale, 1))),
            max(1, round(src.width / max(scale, 1))),
        )
        prob = src.read(1, out_shape=shape)
    with rasterio.open(mask_path) as src:
        mask = src.read(1, out_shape=shape, resampling=rasterio.enums.Resampling.nearest)
    rgba = colormaps["magma"](np.nan_to_num(prob, nan=0.0), bytes=True)
    rgba[np.isnan(prob)] = (128, 128, 128, 255)
    hit = mask == 1
    edge = hit & ~ndimage.binary_erosion(hit)
    rgba[edge] = (0, 255, 255, 255)
    Image.fromarray(rgba[..., :3]).save(out, format="PNG")


# --------------------------------------------------------------------------- the run


class _RasterSink:
    """Receives finished rows from inference; writes mean, std and the thresholded mask."""

    def __init__(self, tmp: Path, profile: dict[str, Any], threshold: float, src, mask_plan,
                 mask_opts: MaskOptions, names: tuple[str, ...], progress) -> None:  # fmt: skip
        import rasterio

        self.prob = rasterio.open(
            tmp / ".prob.tif", "w", **_tiled_profile(profile, "float32", np.nan)
        )
        self.std = rasterio.open(
            tmp / ".std.tif", "w", **_tiled_profile(profile, "float32", np.nan)
        )
        self.mask = rasterio.open(
            tmp / ".mask.tif", "w", **_tiled_profile(profile, "uint8", MASK_NODATA)
        )
        self.threshold = threshold
        self.src = src
        self.plan = mask_plan
        self.mask_opts = mask_opts
        self.mask_idx = {layer: names.index(layer) + 1 for layer in set(mask_plan.values())}
        self.removed: dict[str, int] = {}
        self.write_s = 0.0
        self.progress = progress
        self.positive = 0

    def __call__(self, r0: int, mean: np.ndarray, std: np.ndarray) -> None:
        from rasterio.windows import Window

        t0 = time.perf_counter()
        rows, width = mean.shape
        win = Window(0, r0, width, rows)
        nodata = np.isnan(mean)
        with np.errstate(invalid="ignore"):
            mask = (mean >= self.threshold).astype(np.uint8)
        if self.plan:
            layers = {
                layer: self.src.read(i, window=win, out_dtype="float32")
                for layer, i in self.mask_idx.items()
            }
            apply_masks(mask, self.plan, self.mask_opts, layers, self.removed)
        mask[nodata] = MASK_NODATA
        self.positive += int((mask == 1).sum())
        self.prob.write(mean.astype(np.float32), 1, window=win)
        self.std.write(std.astype(np.float32), 1, window=win)
        self.mask.write(mask, 1, window=win)
        self.write_s += time.perf_counter() - t0
        if self.progress is not None:
            self.progress.update(rows)

    def close(self) -> None:
        for ds in (self.prob, self.std, self.mask):
            ds.close()


def predict_stack(
    stack: Path | str, model: LoadedModel, out_dir: Path | str, opts: PredictOptions,
    inputs: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run the whole prediction; returns the run record also written to run.json."""
    import rasterio
    from tqdm import tqdm

    from lsd.training.device import resolve_device
    from lsd.training.inference import check_tiling, member_groups, predict_mean_std

    t_start = time.perf_counter()
    stack, out_dir = Path(stack), Path(out_dir)
    names = read_layer_names(stack)
    absent = [n for n in model.layers if n not in names]
    if absent:
        raise UserError(f"{stack}: lacks layer(s) {', '.join(absent)} that the model needs")
    plan = plan_masks(opts.masks, names)
    check_tiling(opts.tile, opts.overlap, opts.batch_size)
    threshold = model.threshold if opts.threshold is None else float(opts.threshold)
    if not 0.0 < threshold < 1.0:
        raise UserError(f"--threshold {threshold} must be between 0 and 1")
    if opts.min_area_m2 < 0:
        raise UserError(f"--min-area-m2 {opts.min_area_m2} must be >= 0")
    device = resolve_device(opts.device)
    check_output_folder(out_dir, opts.overwrite)
    idx = [names.index(n) + 1 for n in model.layers]
    stats: dict[str, Any] = {}
    timings: dict[str, float] = {}

    with (
        rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB),
        atomic_path(out_dir, directory=True) as tmp,
        rasterio.open(stack) as src,
    ):
        nodata_value = src.nodata
        grid = {
            "width": src.width,
            "height": src.height,
            "crs": src.crs,
            "transform": src.transform,
        }
        read_s = [0.0]

        def read_rows(r0: int, r1: int) -> np.ndarray:
            t0 = time.perf_counter()
            from rasterio.windows import Window

            data = src.read(idx, window=Window(0, r0, src.width, r1 - r0), out_dtype="float32")
            if nodata_value is not None and not np.isnan(nodata_value):
                for layer in data:  # per layer: no boolean copy of the whole strip
                    layer[layer == nodata_value] = np.nan
            read_s[0] += time.perf_counter() - t0
            return data

        bar = tqdm(total=src.height, unit="row", desc="predict", disable=not opts.progress)
        sink = _RasterSink(tmp, grid, threshold, src, plan, opts.masks, names, bar)
        try:
            # on a GPU every member lives in device memory; on a CPU members come in groups
            # whose weights fit MEMBER_BUDGET_BYTES, so memory does not grow with ensemble size
            budget = float("inf") if device.type == "cuda" else MEMBER_BUDGET_BYTES
            predict_mean_std(
                lambda idx: model.load(idx, device), member_groups(model.weight_bytes(), budget),
                read_rows, src.height, src.width, sink, scratch=tmp, tile=opts.tile,
                overlap=opts.overlap, batch_size=opts.batch_size, device=device, stats=stats,
            )  # fmt: skip
        finally:
            sink.close()
            bar.close()
        timings["inference_s"] = time.perf_counter() - t_start
        timings["read_s"] = read_s[0]
        timings["write_s"] = sink.write_s

        t0 = time.perf_counter()
        polys = vectorise(tmp / ".mask.tif", tmp / ".prob.tif")
        geoms_crs = _pixel_to_crs(polys.geoms, src.transform)
        areas = polygon_areas_m2(geoms_crs, src.crs, abs(src.transform.a * src.transform.e))
        keep = areas >= opts.min_area_m2
        removed = [g for g, k in zip(polys.geoms, keep, strict=True) if not k]
        _burn_out(tmp / ".mask.tif", tmp / ".mask_mmu.tif", removed, VECTOR_STRIP_ROWS)
        (tmp / ".mask.tif").unlink()
        kept_idx = np.nonzero(keep)[0]
        table = {
            "area_m2": areas[kept_idx],
            "pixels": polys.pixels[kept_idx],
            "mean_prob": polys.prob_sum[kept_idx] / np.maximum(polys.pixels[kept_idx], 1),
            "max_prob": polys.prob_max[kept_idx],
        }
        write_polygons(tmp / POLY_FILE, [geoms_crs[i] for i in kept_idx], table, src.crs)
        timings["vectorise_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        _to_cog(tmp / ".prob.tif", tmp / PROB_FILE, resampling="AVERAGE", description="probability")
        _to_cog(tmp / ".std.tif", tmp / STD_FILE, resampling="AVERAGE", description="disagreement")
        _to_cog(
            tmp / ".mask_mmu.tif", tmp / MASK_FILE, resampling="NEAREST", description="landslide"
        )
        write_quicklook(tmp / PROB_FILE, tmp / MASK_FILE, tmp / QUICKLOOK_FILE)
        timings["cog_quicklook_s"] = time.perf_counter() - t0
        timings["total_s"] = time.perf_counter() - t_start

        record = {
            "lsd_version": __version__,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "inputs": {"stack": str(stack.resolve()), **(inputs or {})},
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
                "width": grid["width"],
                "height": grid["height"],
                "crs": grid["crs"].to_string() if grid["crs"] else None,
                "transform": list(grid["transform"])[:6],
            },
            "threshold": threshold,
            "masks": {"applied": plan, **asdict(opts.masks), "pixels_removed": sink.removed},
            "min_area_m2": opts.min_area_m2,
            "polygons": {"kept": int(keep.sum()), "removed_below_min_area": int((~keep).sum())},
            "landslide_pixels": int(polys.pixels[kept_idx].sum()),
            "tile": opts.tile,
            "overlap": opts.overlap,
            "batch_size": stats.get("batch_size", opts.batch_size),
            "device": str(device),
            "inference": stats,
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
            "host": {"python": platform.python_version(), "machine": platform.machine()},
        }
        write_json(tmp / RUN_FILE, record)
    return record


# --------------------------------------------------------------------------- AOI + date (fetch)

# A direct (synchronous) Earth Engine download is limited in bytes per request; beyond this area a
# 15-layer float32 stack at 10 m is better fetched with a batch export or AOI tiles.
DIRECT_DOWNLOAD_MAX_KM2 = 100.0


def parse_date(text: str, *, today: dt.date | None = None) -> dt.date:
    try:
        date = dt.date.fromisoformat(text.strip())
    except ValueError:
        raise UserError(f"--date '{text}' is not a date in YYYY-MM-DD form") from None
    today = today or dt.date.today()
    if date > today:
        raise UserError(f"--date {date} is in the future (today is {today}); no imagery exists yet")
    return date


def aoi_spec(aoi_path: Path | str, date: dt.date, max_km2: float = DIRECT_DOWNLOAD_MAX_KM2):
    """An EventSpec for `lsd predict --aoi --date`: the AOI in EPSG:4326 (reprojected from any
    CRS), its UTM zone, and the same default date windows as events.csv rows get."""
    import dataclasses

    from lsd.gee.events import make_spec, read_polygons, to_crs, utm_epsg

    aoi_path = Path(aoi_path)
    gdf = read_polygons(aoi_path, where="--aoi")
    geom = gdf.geometry.union_all()
    if geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise UserError(f"--aoi: {aoi_path} does not describe a polygon area")
    centre = geom.centroid
    km2 = to_crs(geom, 4326, utm_epsg(centre.x, centre.y)).area / 1e6
    if km2 <= 0:
        raise UserError(f"--aoi: {aoi_path} has zero area")
    if km2 > max_km2:
        raise UserError(
            f"--aoi: {aoi_path} covers {km2:.0f} km2, too large for a direct download "
            f"(max {max_km2:.0f} km2): split it into tiles of at most {max_km2:.0f} km2, "
            "or fetch it with a batch export (lsd fetch) and run lsd predict --stack"
        )
    spec = make_spec(aoi_path.stem, date, geom)
    return dataclasses.replace(spec, extra={"aoi_file": str(aoi_path), "aoi_km2": round(km2, 3)})


def fetch_for_prediction(spec: Any, layers: Sequence[str], work_dir: Path, project: str | None):
    """Fetch only the layers the model needs; the event folder is kept so a rerun skips it."""
    from lsd.contract import PAPER_LAYERS
    from lsd.gee import auth

    unfetchable = [name for name in layers if name not in PAPER_LAYERS]
    if unfetchable:
        raise UserError(
            f"the model needs layer(s) {', '.join(unfetchable)} that lsd fetch does not make "
            "(it makes the paper's 15); predict on an existing stack with --stack instead"
        )
    if not auth.credentials_available():
        raise UserError(auth.HOW_TO)
    from lsd.gee.config import FetchConfig
    from lsd.pipeline.fetch import fetch_event

    auth.initialize(project)
    event_dir = fetch_event(spec, work_dir, FetchConfig(), layers=list(layers), write_label=False)
    return Path(event_dir) / "stack.tif"
