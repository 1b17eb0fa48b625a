"""Synthetic radar stacks written under either convention, from the formulas lsd fetch uses.

A DEM of Gaussian hills has known slopes and aspects (its analytic gradient). A sensor looks from
a known direction (towards the sensor: 100 deg on a descending pass, 260 deg ascending). The
terrain brightens the raw gamma0 as the volume model says (so Vollrath flattening removes it
exactly); the stack's maker then flattens, computes the local incidence angle and flags layover
and shadow with lsd.gee.s1's own formula helpers, run on a numpy stand-in of ee.Image, under
the flattening sign asked for; VV/VH are no data where the maker's flags say distorted; the flags
are written with the polarity asked for. lsd.conventions_detect must tell all of it back.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

LOOK_DEG = {"DESCENDING": 100.0, "ASCENDING": 260.0}
S1_STACK_LAYERS = ("preVV", "postVV", "dVV", "preVH", "postVH", "dVH", "layover", "shadow",
                   "liaDeg", "elevation", "slope")  # fmt: skip


class Arr:
    """numpy stand-in with the ee.Image methods lsd.gee.s1's formula helpers use."""

    def __init__(self, a: Any) -> None:
        self.a = np.asarray(a, dtype=float)

    @staticmethod
    def _v(o: Any) -> Any:
        return o.a if isinstance(o, Arr) else o

    def __getattr__(self, name: str):
        binary = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply,
                  "divide": np.divide, "gte": np.greater_equal, "lte": np.less_equal}  # fmt: skip
        if name in binary:
            return lambda o: Arr(binary[name](self.a, self._v(o)))
        unary = {"tan": np.tan, "cos": np.cos, "sin": np.sin, "atan": np.arctan, "acos": np.arccos}
        if name in unary:
            return lambda: Arr(unary[name](self.a))
        raise AttributeError(name)


def hills(size: int = 192, pixel_m: float = 10.0, seed: int = 0) -> dict[str, np.ndarray]:
    """Elevation (m) of Gaussian hills and a ridge, with the exact slope and downslope aspect
    (radians)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    x, y = xx * pixel_m, -yy * pixel_m  # metres east, metres north (rows run south)
    z = np.full((size, size), 500.0)
    dz_dx = np.zeros((size, size))
    dz_dy = np.zeros((size, size))
    extent = size * pixel_m
    for _ in range(max(2, round(7 * (size / 192) ** 2))):
        cx, cy = rng.uniform(0.1, 0.9) * extent, -rng.uniform(0.1, 0.9) * extent
        h, s = rng.uniform(150, 300), rng.uniform(250, 400)
        g = h * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s**2))
        z += g
        dz_dx += -g * (x - cx) / s**2
        dz_dy += -g * (y - cy) / s**2
    # a steep north-south ridge: layover on the flank facing the sensor, shadow behind it
    x0, w, top = 0.7 * extent, 60.0, 130.0
    g = top * np.exp(-(((x - x0) / w) ** 2))
    z += g
    dz_dx += -2 * g * (x - x0) / w**2
    slope = np.arctan(np.hypot(dz_dx, dz_dy))
    aspect = np.mod(np.arctan2(-dz_dx, -dz_dy), 2 * math.pi)
    return {"elevation": z, "slope": slope, "aspect": aspect}


def radar_stack(
    convention: str = "vollrath",
    polarity: str = "1=distorted",
    orbit: str = "DESCENDING",
    *,
    size: int = 192,
    seed: int = 0,
    theta_deg: float = 37.0,
    linear: bool = False,
) -> dict[str, np.ndarray]:
    """{layer: (H, W) float32} of the first eleven paper layers, as a maker with `convention`,
    `polarity` and `orbit` would have written them."""
    from lsd.gee import s1

    terrain = hills(size, seed=seed)
    rng = np.random.default_rng(seed + 1)
    theta = Arr(np.full((size, size), math.radians(theta_deg)))
    slope, aspect = Arr(terrain["slope"]), Arr(terrain["aspect"])
    look = Arr(math.radians(LOOK_DEG[orbit]))
    true_r = s1.range_slope(slope, s1.relative_look(look, aspect, "vollrath"))
    # what the terrain does to raw gamma0; where the sensor's own view is in layover (factor
    # beyond tan 90 deg) or deep shadow the model fails, and the pixel is just bright or dark
    brightening = s1.volume_factor(theta, true_r).a
    brightening = np.where(brightening > 0, np.clip(brightening, 0.05, 20.0), 20.0)
    phi_r = s1.relative_look(look, aspect, convention)
    ar, az = s1.range_slope(slope, phi_r), s1.azimuth_slope(slope, phi_r)
    factor = s1.volume_factor(theta, ar).a
    layover = s1.layover_mask(theta, ar).a.astype(bool)
    shadow = s1.shadow_mask(theta, ar).a.astype(bool)
    distorted = layover | shadow
    out: dict[str, np.ndarray] = {}
    for pol, level in (("VV", -10.0), ("VH", -17.0)):
        for window in ("pre", "post"):
            base = level + rng.normal(0, 1.0, (size, size))  # land cover texture, dB
            raw = 10 ** (base / 10) * brightening
            with np.errstate(invalid="ignore", divide="ignore"):
                flat = raw * factor if convention == "gee_s1_ard" else raw / factor
                value = flat if linear else 10 * np.log10(flat)
            value = np.where(distorted | ~np.isfinite(value), np.nan, value)
            out[f"{window}{pol}"] = value
        out[f"d{pol}"] = out[f"post{pol}"] - out[f"pre{pol}"]
    valid = polarity == "1=valid"
    out["layover"] = (~layover if valid else layover).astype(float)
    out["shadow"] = (~shadow if valid else shadow).astype(float)
    out["liaDeg"] = s1.local_incidence_deg(theta, ar, az).a
    out["elevation"] = terrain["elevation"]
    out["slope"] = np.degrees(terrain["slope"])
    return {k: np.asarray(out[k], np.float32) for k in S1_STACK_LAYERS}


def write_radar_event(
    folder: Path,
    layers: dict[str, np.ndarray],
    *,
    conventions: dict | None = None,
    source: dict | None = None,
    georeferenced: bool = True,
    label: bool = True,
) -> Path:
    """An event folder (through lsd.events.write_event) holding `layers` on a 10 m UTM grid."""
    from affine import Affine
    from rasterio.crs import CRS

    from lsd.events import event_record, write_event
    from lsd.rasters import Grid

    names = list(layers)
    data = np.stack([layers[n] for n in names])
    h, w = data.shape[1:]
    if georeferenced:
        grid = Grid(w, h, CRS.from_epsg(32632), Affine(10, 0, 400000, 0, -10, 6800000))
    else:
        grid = Grid(w, h, None, Affine.identity())
    extra = {"conventions": conventions} if conventions is not None else {}
    record = event_record(
        folder.name, layers=names, grid=grid, source=source or {"kind": "test"},
        georeferenced=georeferenced, **extra,
    )  # fmt: skip
    lab = None
    if label:
        lab = np.zeros((h, w), np.uint8)
        lab[h // 3 : h // 3 + 12, w // 3 : w // 3 + 12] = 1
    write_event(folder, record, grid=grid, stack=data, label=lab)
    return folder
