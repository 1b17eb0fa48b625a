"""Sentinel-2 L2A from a STAC catalog: reflectance, the SCL masks and the greenest pixel.

The Earth Engine path masks clouds with s2cloudless probabilities and the cloud displacement
index, which no STAC catalog publishes. Here the scene classification of the L2A product (SCL)
stands in for them, and the script's morphology and shadow casting are kept:

* clouds: SCL 8, 9 (cloud, medium and high probability) and 10 (thin cirrus, where the Earth
  Engine path reads B10), opened at 20 m: eroded `cloud_open_px` then dilated `cloud_grow_px`;
* shadows: SCL 3 (cloud shadow), plus the whole zone cast away from the sun by the opened
  clouds over `shadow_search_px` pixels of `shadow_search_scale_m` (5 km), as the script;
* snow: SCL 11, grown by `snow_buffer_m` (300 m, the script's maskSnow);
* no data: SCL 0 and 1 (saturated or defective).

Masks are made once per scene on a 20 m grid around the event (its reach: the CART buffer and
the farthest a cloud can cast or grow), then looked up by every window.

Reflectance is DN / 10000 after the scene's offset: scenes of processing baseline 04.00 and
later carry BOA_ADD_OFFSET = -1000, which the Planetary Computer leaves in the DNs and Earth
Search removes in scenes it marks `earthsearch:boa_offset_applied`; Earth Engine's HARMONIZED
collection removes it too, so NDVI means the same in both sources.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import distance_transform_edt

from lsd.rasters import Grid
from lsd.stac.config import StacConfig
from lsd.stac.read import Target, grown_grid, whole

SCL_NO_DATA = (0, 1)
SCL_SHADOW = 3
SCL_CLOUD = (8, 9, 10)
SCL_SNOW = 11
REFLECTANCE_SCALE = 10_000.0
BOA_OFFSET_DN = -1000.0
OFFSET_BASELINE = (4, 0)
COMPOSITE_BANDS: tuple[str, ...] = ("B2", "B3", "B4", "B8", "B11", "B12")  # CART's six


def baseline(item: Any) -> tuple[int, int] | None:
    text = item.properties.get("s2:processing_baseline") or item.properties.get(
        "sentinel:processing_baseline"
    )
    try:
        major, minor = str(text).split(".")[:2]
        return int(major), int(minor)
    except (ValueError, AttributeError):
        return None


def dn_offset(item: Any) -> float:
    """What to add to a DN before dividing by 10000 (0 or -1000, see module docstring)."""
    props = item.properties
    applied = props.get("earthsearch:boa_offset_applied")
    if applied is True:
        return 0.0
    base = baseline(item)
    return BOA_OFFSET_DN if base is not None and base >= OFFSET_BASELINE else 0.0


def sun_azimuth(item: Any) -> float | None:
    props = item.properties
    for key in ("s2:mean_solar_azimuth", "view:sun_azimuth"):
        if props.get(key) is not None:
            return float(props[key])
    return None


def _disk_grow(mask: np.ndarray, radius_px: float) -> np.ndarray:
    """Pixels within `radius_px` of a True pixel (a circular dilation, done with a distance
    transform so a 16 px radius costs no more than a 1 px one)."""

    if radius_px <= 0 or not mask.any():
        return mask.copy()
    return distance_transform_edt(~mask) <= radius_px


def _disk_shrink(mask: np.ndarray, radius_px: float) -> np.ndarray:
    if radius_px <= 0:
        return mask.copy()
    return ~_disk_grow(~mask, radius_px)


def cast_shadows(clouds: np.ndarray, away_deg: float, steps: int, factor: int) -> np.ndarray:
    """The zone that clouds (on a fine grid) shade along azimuth `away_deg` within `steps`
    pixels of a grid `factor` times coarser, back on the fine grid: the script's
    directionalDistanceTransform at 100 m."""
    h, w = clouds.shape
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    padded = np.zeros((ch * factor, cw * factor), dtype=bool)
    padded[:h, :w] = clouds
    coarse = padded.reshape(ch, factor, cw, factor).any(axis=(1, 3))
    east, north = math.sin(math.radians(away_deg)), math.cos(math.radians(away_deg))
    zone = np.zeros_like(coarse)
    for d in range(1, steps + 1):
        dc, dr = round(d * east), round(-d * north)
        src = coarse[max(0, -dr) : ch - max(0, dr), max(0, -dc) : cw - max(0, dc)]
        zone[max(0, dr) : ch - max(0, -dr), max(0, dc) : cw - max(0, -dc)] |= src
    fine = np.repeat(np.repeat(zone, factor, axis=0), factor, axis=1)
    return fine[:h, :w]


@dataclass(frozen=True)
class SceneMasks:
    """A scene's masks on the mask grid, made once from its SCL.

    `keep` is what the greenest-pixel composites may take: clear and away from snow (dNDVI
    must not see snow melt as vegetation loss). `clear` is what CART's image may take: no
    cloud, shadow or no data, but snow kept, since the paper trained CART on "an image with
    minimal cloud cover" and its class 8 is glacier and snow. `snow` is SCL 11 as it is
    (not grown): where CART's training points are class 8."""

    keep: np.ndarray
    clear: np.ndarray
    snow: np.ndarray


def scene_masks(scl: np.ndarray, sun_az: float | None, cfg: StacConfig) -> SceneMasks:
    """The masks of a scene from its SCL on the 20 m mask grid (module docstring)."""
    finite = np.isfinite(scl)
    codes = np.where(finite, scl, 0).astype(np.int16)
    no_data = ~finite | np.isin(codes, SCL_NO_DATA)
    clouds = np.isin(codes, SCL_CLOUD)
    clouds = _disk_grow(_disk_shrink(clouds, cfg.cloud_open_px), cfg.cloud_grow_px)
    shadow = codes == SCL_SHADOW
    if sun_az is not None and clouds.any():
        factor = max(1, round(cfg.shadow_search_scale_m / cfg.cloud_morph_scale_m))
        shadow |= cast_shadows(clouds, (sun_az + 180.0) % 360.0, cfg.shadow_search_px, factor)
    snow = codes == SCL_SNOW
    radius = cfg.snow_buffer_m / cfg.cloud_morph_scale_m
    grown = _disk_grow(snow, radius) if cfg.snow_mode == "grow" else _disk_shrink(snow, radius)
    clear = ~(no_data | clouds | shadow)
    return SceneMasks(keep=clear & ~grown, clear=clear, snow=snow)


def keep_mask(scl: np.ndarray, sun_az: float | None, cfg: StacConfig) -> np.ndarray:
    """True where a scene's pixel may enter the composite (SCL on the 20 m mask grid)."""
    return scene_masks(scl, sun_az, cfg).keep


@dataclass
class MaskGrid:
    """The 20 m grid the masks live on, and a lookup from a 10 m window into it."""

    grid: Grid

    def lookup(self, target: Target, mask: np.ndarray) -> np.ndarray:
        """`mask` (on this grid) at the pixel centres of `target` (nearest; False outside)."""
        x, y = target.centres()
        t = self.grid.transform
        cols = np.floor((x - t.c) / t.a).astype(np.int64)
        rows = np.floor((y - t.f) / t.e).astype(np.int64)
        inside = (rows >= 0) & (rows < mask.shape[0]) & (cols >= 0) & (cols < mask.shape[1])
        out = np.zeros(x.shape, dtype=bool)
        out[inside] = mask[rows[inside], cols[inside]]
        return out


class Greenest:
    """Running greenest-pixel composite: scenes are added one at a time, so memory does not
    grow with the number of scenes (a 12-month window holds 70)."""

    def __init__(self, shape: tuple[int, int], bands: tuple[str, ...]) -> None:
        self.ndvi = np.full(shape, -np.inf, dtype=np.float32)
        self.bands = {b: np.full(shape, np.nan, dtype=np.float32) for b in bands}
        self.scene = np.full(shape, -1, dtype=np.int16)

    def add(self, index: int, values: dict[str, np.ndarray], keep: np.ndarray) -> None:
        b4, b8 = values["B4"], values["B8"]
        with np.errstate(invalid="ignore", divide="ignore"):
            ndvi = (b8 - b4) / (b8 + b4)
        ok = keep & np.isfinite(ndvi)
        better = ok & (ndvi > self.ndvi)  # ties keep the earlier scene
        self.ndvi[better] = ndvi[better]
        self.scene[better] = index
        for band, arr in self.bands.items():
            arr[better] = values[band][better]

    def result(self) -> dict[str, np.ndarray]:
        ndvi = np.where(np.isfinite(self.ndvi), self.ndvi, np.nan).astype(np.float32)
        return {**self.bands, "NDVI": ndvi}


# ----------------------------------------------------------------------------- CART's image
# As the Earth Engine path (lsd.gee.s2.clearest_mosaic): the pre-event scenes ranked once per
# event by the share of the CART region they show clear, at 100 m; per pixel the clearest scene
# that shows it, `cart_s2_scenes` scenes at most; clouds and shadows masked, snow kept.
CLEAR_SHARE_SCALE_M = 100.0


def clear_share(clear: np.ndarray, masks: MaskGrid, region: Grid) -> float:
    """Share of `region` a scene shows clear (covered, no cloud or shadow), 0 .. 1, sampled at
    100 m as the Earth Engine path reduces it: the ranking needs no 10 m read."""
    coarse = whole(grown_grid(region, 0.0, CLEAR_SHARE_SCALE_M))
    return float(masks.lookup(coarse, clear).mean())


def clearest(shares: Mapping[str, float], n: int) -> list[str]:
    """The ids of the `n` scenes with the largest clear share, clearest first; scenes that show
    none of the region are left out, ties keep the catalog's order."""
    shown = [sid for sid, share in shares.items() if share > 0]
    return sorted(shown, key=lambda sid: -shares[sid])[: max(0, n)]


class GapFilled:
    """CART's image, scene by scene: per pixel the first scene added that shows it clear, so
    scenes added clearest first give the least-cloudy image with its gaps (clouds, granule
    edges) filled from the next; a band 'snow' (1 on SCL 11 in the scene taken) says where
    the image shows snow."""

    def __init__(self, shape: tuple[int, int], bands: Sequence[str]) -> None:
        self.bands = {b: np.full(shape, np.nan, dtype=np.float32) for b in bands}
        self.snow = np.zeros(shape, dtype=bool)
        self.filled = np.zeros(shape, dtype=bool)

    def add(self, values: dict[str, np.ndarray], clear: np.ndarray, snow: np.ndarray) -> None:
        seen = clear & np.isfinite(values["B4"]) & np.isfinite(values["B8"])
        take = seen & ~self.filled
        for band, arr in self.bands.items():
            arr[take] = values[band][take]
        self.snow[take] = snow[take]
        self.filled |= take

    def result(self) -> dict[str, np.ndarray]:
        b4, b8 = self.bands["B4"], self.bands["B8"]
        with np.errstate(invalid="ignore", divide="ignore"):
            ndvi = ((b8 - b4) / (b8 + b4)).astype(np.float32)
        snow = np.where(self.filled, self.snow, np.nan).astype(np.float32)
        return {**self.bands, "NDVI": ndvi, "snow": snow}


def masking_method(cfg: StacConfig) -> str:
    """One line for event.json saying how clouds and snow were masked."""
    verb = "grown" if cfg.snow_mode == "grow" else "eroded"
    return (
        f"SCL 8, 9, 10 as clouds, opened {cfg.cloud_open_px} px and grown {cfg.cloud_grow_px} px "
        f"at {cfg.cloud_morph_scale_m:g} m; SCL 3 and the zone cast "
        f"{cfg.shadow_search_px * cfg.shadow_search_scale_m / 1000:g} km away from the sun as "
        f"shadow; SCL 0, 1 as no data; snow = SCL 11 {verb} {cfg.snow_buffer_m:g} m"
    )
