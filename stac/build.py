"""One event's stack from the chosen items: masks, then window by window, every layer.

Order of work (each step bounded in memory by the window size, not the AOI):

1. Sentinel-2 masks, once per scene, on a 20 m grid around the event (lsd.stac.s2).
2. With landCover: the pre-event scenes ranked by the share of the CART region (the AOI grown
   by `cart_buffer_m`) they show clear, from their masks alone; the CART features (the
   least-cloudy image of those scenes, snow kept; elevation; pre-event VV/VH) over that
   region, window by window, into a temporary GeoTIFF; the WorldCover points are drawn while
   the windows pass, points on snow as class 8 (lsd.stac.landcover); the tree is trained.
3. Every requested layer over the event grid, window by window, into stack.tif; the CART
   features are read back from step 2 instead of recomputed.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely.geometry
from rasterio.windows import Window

from lsd.layers import LANDCOVER_LAYER
from lsd.rasters import Grid, stack_profile
from lsd.spec import EventSpec, aoi_centroid, event_grid, to_crs
from lsd.stac import radar, s2, terrain
from lsd.stac.auxlayers import AUX_LAYERS, clean, local_file
from lsd.stac.catalogs import asset_key
from lsd.stac.config import StacConfig
from lsd.stac.landcover import FEATURES, Cart, StratifiedSample, paper_classes, train_cart
from lsd.stac.read import Block, Target, blocks, grown_grid, offset_in, read_onto
from lsd.stac.scenes import EventScenes
from lsd.vectors import read_class_points

FEATURE_BANDS: tuple[str, ...] = FEATURES
BACKSCATTER = frozenset({"preVV", "postVV", "dVV", "preVH", "postVH", "dVH"})
Warn = Callable[[str], None]


class EventBuild:
    """The pixels of one event; `run(work)` writes stack.tif into the folder `work`."""

    def __init__(
        self,
        spec: EventSpec,
        layers: Sequence[str],
        cfg: StacConfig,
        found: EventScenes,
        warn: Warn,
    ) -> None:
        self.spec, self.layers, self.cfg, self.found, self.warn = (
            spec,
            list(layers),
            cfg,
            found,
            warn,
        )
        self.grid = event_grid(spec, cfg.scale)
        self.with_cart = LANDCOVER_LAYER in self.layers
        self.cart_grid = grown_grid(self.grid, cfg.cart_buffer_m) if self.with_cart else self.grid
        reach = (
            cfg.cloud_grow_px * cfg.cloud_morph_scale_m
            + cfg.shadow_search_px * cfg.shadow_search_scale_m
            + cfg.snow_buffer_m
        )
        self.mask_grid = s2.MaskGrid(grown_grid(self.cart_grid, reach, cfg.cloud_morph_scale_m))
        self.masks: dict[str, s2.SceneMasks] = {}
        self.cart: Cart | None = None
        self.cart_scenes: dict[str, float] = {}  # CART's image: scene id -> clear share
        self.sample_counts: dict[str, int] = {}
        self.lat = aoi_centroid(spec.aoi)[1]
        self.look = {p: radar.towards_sensor_deg(self.lat, p) for p in found.passes}
        self.pool = ThreadPoolExecutor(max(1, cfg.threads))
        self._footprints: dict[str, Any] = {}
        self.aux_files: dict[str, Path | None] = {}

    # ------------------------------------------------------------------ reading

    def read(self, item: Any, band: str, target: Target, resampling: str = "nearest") -> np.ndarray:
        key = asset_key(item.assets, band)
        where = f"event {self.spec.event_id}: item {item.id} asset {key}"
        return read_onto(
            item.assets[key].href, target, resampling, timeout_s=self.cfg.timeout_s, where=where
        )

    def mosaic(
        self, items: Sequence[Any], band: str, target: Target, resampling: str
    ) -> np.ndarray:
        """The first valid value of the items in order (GLO-30 and WorldCover tiles)."""
        out = np.full((target.height, target.width), np.nan, dtype=np.float32)
        for arr in self.pool.map(lambda i: self.read(i, band, target, resampling), items):
            gap = np.isnan(out)
            out[gap] = arr[gap]
        return out

    def s2_bands(self, item: Any, target: Target) -> dict[str, np.ndarray]:
        offset = s2.dn_offset(item)
        arrays = self.pool.map(lambda b: self.read(item, b, target), s2.COMPOSITE_BANDS)
        return {
            b: (a + offset) / s2.REFLECTANCE_SCALE
            for b, a in zip(s2.COMPOSITE_BANDS, arrays, strict=True)
        }

    # ------------------------------------------------------------------ Sentinel-2

    def make_masks(self) -> None:
        target = Block(0, 0, self.mask_grid.grid.height, self.mask_grid.grid.width).target(
            self.mask_grid.grid
        )
        items = [i for key in ("pre", "post") for i in self.found.s2.get(key, [])]
        for item in items:
            if item.id not in self.masks:
                scl = self.read(item, "SCL", target)
                self.masks[item.id] = s2.scene_masks(scl, s2.sun_azimuth(item), self.cfg)

    def composite(self, key: str, target: Target) -> dict[str, np.ndarray]:
        green = s2.Greenest((target.height, target.width), s2.COMPOSITE_BANDS)
        for index, item in enumerate(self.found.s2.get(key, [])):
            keep = self.mask_grid.lookup(target, self.masks[item.id].keep)
            if keep.any():
                green.add(index, self.s2_bands(item, target), keep)
        return green.result()

    def rank_cart_scenes(self) -> dict[str, float]:
        """CART's scenes, clearest first, with their clear share of the CART region: ranked
        once per event from the masks, so no band is read for a scene that is not used."""
        shares = {
            item.id: s2.clear_share(self.masks[item.id].clear, self.mask_grid, self.cart_grid)
            for item in self.found.s2.get("pre", [])
        }
        chosen = s2.clearest(shares, self.cfg.cart_s2_scenes)
        if not chosen:
            self.warn(
                f"event {self.spec.event_id}: no pre-event Sentinel-2 scene shows the land-cover "
                "region clear; landCover is NaN"
            )
        return {sid: round(shares[sid], 4) for sid in chosen}

    def cart_image(self, target: Target) -> dict[str, np.ndarray]:
        """The least-cloudy pre-event image over a window (s2.GapFilled), with NDVI and snow."""
        image = s2.GapFilled((target.height, target.width), s2.COMPOSITE_BANDS)
        items = {item.id: item for item in self.found.s2.get("pre", [])}
        for sid in self.cart_scenes:
            masks = self.masks[sid]
            clear = self.mask_grid.lookup(target, masks.clear)
            if clear.any():
                snow = self.mask_grid.lookup(target, masks.snow)
                image.add(self.s2_bands(items[sid], target), clear, snow)
        return image.result()

    # ------------------------------------------------------------------ Sentinel-1

    def backscatter_db(
        self,
        orbit: str,
        key: str,
        target: Target,
        distorted: Sequence[np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Median of the linear gamma0 of a pass's scenes in a window, in dB, per polarisation;
        with `distorted` (per scene, in item order) each scene is masked where it is itself in
        layover or shadow first, as gee_s1_ard masks each scene before any composite."""
        items = self.found.s1.get(orbit, {}).get(key, [])
        out = {}
        for pol in ("VV", "VH"):
            scenes = np.stack(
                list(self.pool.map(lambda i, pol=pol: self.read(i, pol, target), items))
            )
            scenes[~(scenes > 0)] = np.nan
            if distorted is not None:
                scenes[np.stack(distorted)] = np.nan
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                out[pol] = (10.0 * np.log10(np.nanmedian(scenes, axis=0))).astype(np.float32)
        return out

    def footprint(self, item: Any) -> Any:
        if item.id not in self._footprints:
            shape = shapely.geometry.shape(item.geometry)
            self._footprints[item.id] = to_crs(shape, 4326, self.grid.crs)
        return self._footprints[item.id]

    def scene_geometry(
        self, item: Any, orbit: str, target: Target, slope: np.ndarray, aspect: np.ndarray
    ) -> radar.Scene:
        """(layover, shadow, lia) of one scene, from its own footprint's incidence."""
        x, y = target.centres()
        cfg = self.cfg
        theta = radar.incidence_deg(
            x, y, self.footprint(item), self.look[orbit], cfg.incidence_near_deg,
            cfg.incidence_far_deg,
        )  # fmt: skip
        return radar.distortions(theta, slope, aspect, self.look[orbit])

    def geometry(
        self, orbit: str, target: Target, slope: np.ndarray, aspect: np.ndarray
    ) -> radar.PassGeometry:
        """A pass's per-scene distortions over both windows, aggregated as the Earth Engine
        path does (lsd.stac.radar.PassGeometry)."""
        windows = {
            key: [self.scene_geometry(item, orbit, target, slope, aspect) for item in items]
            for key, items in self.found.s1[orbit].items()
        }
        return radar.pass_geometry(windows)

    # ------------------------------------------------------------------ terrain

    def terrain(self, block: Block, grid: Grid) -> dict[str, np.ndarray]:
        halo = block.target(grid, halo=1)
        dem = self.mosaic(self.found.dem, "DEM", halo, self.cfg.dem_resample)
        pixel = abs(grid.transform.a)
        return {
            "elevation": dem[1:-1, 1:-1],
            "slope": terrain.slope_deg(dem, pixel),
            "aspect": terrain.aspect_deg(dem, pixel),
        }

    # ------------------------------------------------------------------ CART

    def features(self, block: Block, grid: Grid) -> dict[str, np.ndarray]:
        """CART's features over a window, and the NDVI and snow of its image (for the points)."""
        target = block.target(grid)
        image = self.cart_image(target)
        dem = self.mosaic(self.found.dem, "DEM", target, self.cfg.dem_resample)
        vv, vh = self.s1_combined("pre", target, masked=None)
        return {
            **{b: image[b] for b in s2.COMPOSITE_BANDS},
            "NDVI": image["NDVI"],
            "snow": image["snow"],
            "elevation": dem,
            "preVV": vv,
            "preVH": vh,
        }

    def s1_combined(self, key: str, target: Target, masked: dict[str, np.ndarray] | None):
        """VV, VH (dB) of a window over the passes: one pass as is, two passes averaged (each
        masked with its own distortions first, when `masked` gives them)."""
        vv, vh = [], []
        for orbit in self.found.passes:
            db = self.backscatter_db(orbit, key, target)
            bad = masked.get(orbit) if masked else None
            vv.append(np.where(bad, np.nan, db["VV"]) if bad is not None else db["VV"])
            vh.append(np.where(bad, np.nan, db["VH"]) if bad is not None else db["VH"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(np.stack(vv), axis=0), np.nanmean(np.stack(vh), axis=0)

    def train_landcover(self, work: Path) -> Path:
        """Step 2: the features over the CART grid into work/features.tif, the sample, the tree."""

        grid = self.cart_grid
        path = work / "features.tif"
        sample = StratifiedSample(self.cfg.cart_points_per_class, self.cfg.seed)
        self.cart_scenes = self.rank_cart_scenes()
        with rasterio.open(path, "w", **stack_profile(grid, len(FEATURE_BANDS))) as dst:
            for block in blocks(grid, self.cfg.window_px):
                feats = self.features(block, grid)
                window = _window(block)
                for i, name in enumerate(FEATURE_BANDS, start=1):
                    dst.write(feats[name], i, window=window)
                if self.spec.landcover_points is None:
                    wc = self.mosaic(
                        self.found.worldcover, "WorldCover", block.target(grid), "nearest"
                    )
                    snow = feats["snow"] == 1
                    classes = paper_classes(wc, feats["NDVI"], self.cfg.bare_rock_ndvi, snow)
                    rows, cols = np.indices(classes.shape)
                    index = (rows + block.row) * grid.width + (cols + block.col)
                    table = np.stack([feats[f] for f in FEATURES], axis=-1).reshape(
                        -1, len(FEATURES)
                    )
                    sample.add(classes.ravel(), table, index.ravel())
        if self.spec.landcover_points is not None:
            x, y = self._user_points(path, grid)
        else:
            x, y = sample.arrays()
        self.sample_counts = {str(c): int((y == c).sum()) for c in sorted(set(y.tolist()))}
        self.cart = train_cart(
            x,
            y,
            holdout=self.cfg.cart_holdout,
            seed=self.cfg.seed,
            max_nodes=self.cfg.cart_max_nodes,
        )
        if self.cart is None:
            self.warn(
                f"event {self.spec.event_id}: no land-cover training point has every "
                "feature; landCover is NaN"
            )
        return path

    def _user_points(self, path: Path, grid: Grid) -> tuple[np.ndarray, np.ndarray]:

        rows = read_class_points(self.spec.landcover_points)
        pts = [
            to_crs(__import__("shapely").geometry.Point(lon, lat), 4326, grid.crs)
            for lon, lat, _ in rows
        ]
        with rasterio.open(path) as src:
            values = np.array([v for v in src.sample([(p.x, p.y) for p in pts])], dtype=np.float32)
        return values[:, : len(FEATURES)], np.array([c for _, _, c in rows], dtype=np.int32)

    # ------------------------------------------------------------------ the stack

    def run(self, work: Path) -> Path:
        """Masks, CART, then the stack window by window into work/stack.tif."""
        try:
            return self._run(work)
        finally:
            self.pool.shutdown(cancel_futures=True)  # its threads' open datasets go with them

    def _run(self, work: Path) -> Path:

        if self.found.s2:
            self.make_masks()
        features = self.train_landcover(work) if self.with_cart else None
        for layer in AUX_LAYERS:
            if layer in self.layers:
                self.aux_files[layer] = local_file(layer, self.cfg)
        stack = work / "stack.tif"
        grid = self.grid
        with contextlib.ExitStack() as stack_ctx:
            dst = stack_ctx.enter_context(
                rasterio.open(stack, "w", **stack_profile(grid, len(self.layers)))
            )
            feats = stack_ctx.enter_context(rasterio.open(features)) if features else None
            for i, name in enumerate(self.layers, start=1):
                dst.set_band_description(i, name)
            off = offset_in(grid, self.cart_grid)
            for block in blocks(grid, self.cfg.window_px):
                values = self.block_layers(block, feats, off)
                for i, name in enumerate(self.layers, start=1):
                    dst.write(values[name].astype(np.float32), i, window=_window(block))
        return stack

    def block_layers(self, block: Block, feats: Any, off: tuple[int, int]) -> dict[str, np.ndarray]:
        names = set(self.layers)
        grid, target = self.grid, block.target(self.grid)
        shape = (block.height, block.width)
        out: dict[str, np.ndarray] = {}
        pre = post = None
        stored: dict[str, np.ndarray] = {}
        if feats is not None:
            window = Window(block.col + off[1], block.row + off[0], block.width, block.height)
            data = feats.read(window=window)
            stored = {name: data[i] for i, name in enumerate(FEATURE_BANDS)}
        if names & {"dNDVI", "preNDVI"}:
            pre = self.composite("pre", target)
        if names & {"dNDVI", "postNDVI"}:
            post = self.composite("post", target)
        if pre is not None and "preNDVI" in names:
            out["preNDVI"] = pre["NDVI"]
        if post is not None and "postNDVI" in names:
            out["postNDVI"] = post["NDVI"]
        if "dNDVI" in names:
            out["dNDVI"] = post["NDVI"] - pre["NDVI"]
        topo = self.terrain(block, grid) if self.found.dem else {}
        for name in ("elevation", "slope"):
            if name in names:
                out[name] = topo[name]
        if self.found.passes:
            out.update(self.s1_layers(names, target, topo))
        if LANDCOVER_LAYER in names:
            if self.cart is None:
                out[LANDCOVER_LAYER] = np.full(shape, np.nan, np.float32)
            else:
                table = np.stack([stored[f] for f in FEATURES], axis=-1).reshape(-1, len(FEATURES))
                out[LANDCOVER_LAYER] = self.cart.classify(table).reshape(shape)
        for layer in AUX_LAYERS:
            if layer in names:
                path = self.aux_files.get(layer)
                if path is None:
                    out[layer] = np.full(shape, np.nan, np.float32)
                else:
                    where = f"event {self.spec.event_id}: {layer} map"
                    out[layer] = clean(layer, read_onto(str(path), target, "nearest", where=where))
        return out

    def s1_layers(
        self, names: set[str], target: Target, topo: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """The radar layers of a window. With mask_distortions each scene's VV/VH is masked on
        its own layover/shadow before the median, and all six layers are no data exactly where
        the flags are 1 (every scene of a window distorted), as the Earth Engine path."""
        out: dict[str, np.ndarray] = {}
        mask = self.cfg.mask_distortions
        wants_geometry = names & {"layover", "shadow", "liaDeg"} or (mask and names & BACKSCATTER)
        geometry = (
            {p: self.geometry(p, target, topo["slope"], topo["aspect"]) for p in self.found.passes}
            if wants_geometry
            else {}
        )
        windows = {k for k in ("pre", "post") if names & {f"{k}VV", f"{k}VH", "dVV", "dVH"}}

        def composite(p: str, k: str) -> dict[str, np.ndarray]:
            distorted = geometry[p].scene_distorted.get(k) if mask else None
            return self.backscatter_db(p, k, target, distorted)

        per_pass = {p: {k: composite(p, k) for k in windows} for p in self.found.passes}

        def combine(arrays: list[np.ndarray]) -> np.ndarray:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return np.nanmean(np.stack(arrays), axis=0).astype(np.float32)

        def masked(p: str, arr: np.ndarray) -> np.ndarray:
            return np.where(geometry[p].nodata, np.nan, arr) if mask else arr

        for pol in ("VV", "VH"):
            for k in windows:
                if f"{k}{pol}" in names:
                    out[f"{k}{pol}"] = combine([masked(p, per_pass[p][k][pol]) for p in per_pass])
            if f"d{pol}" in names:
                out[f"d{pol}"] = combine(
                    [
                        masked(p, per_pass[p]["post"][pol] - per_pass[p]["pre"][pol])
                        for p in per_pass
                    ]
                )
        if geometry:
            valid = np.isfinite(topo["slope"])
            passes = list(geometry.values())
            for name in ("layover", "shadow"):
                if name in names:
                    flags = radar.distortion_flag(passes, name)  # type: ignore[arg-type]
                    out[name] = np.where(valid, flags.astype(np.float32), np.nan)
            lia = geometry[self.found.passes[0]].lia
            if "liaDeg" in names and lia is not None:
                out["liaDeg"] = np.where(valid, lia, np.nan).astype(np.float32)
        return out


def _window(block: Block):

    return Window(block.col, block.row, block.width, block.height)


def look_directions(build: EventBuild) -> dict[str, float]:
    return {p: round(v, 3) for p, v in build.look.items()}
