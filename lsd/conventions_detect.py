"""Conventions read from the pixels, for stacks whose maker did not record them.

Three conventions leave traces in the values (lsd.conventions):

* **radar_scale**: linear power is never negative and mostly below 1; dB backscatter of land is
  mostly negative (VV about -10, VH about -17).
* **distortion_flags**: the seeds set VV/VH to no data where a pixel is in layover or shadow, so
  the flag value found where VV is NaN is the "distorted" value. Without such no data, the rarer
  value is: layover and shadow cover a few percent of even steep terrain.
* **flattening**: `liaDeg` is a pure function of the DEM slope and aspect, the incidence angle and
  the look direction, so fitting it over look directions gives the direction the stack's maker
  used. The gee_s1_ard sign (aspect negated) with look direction phi produces exactly the
  Vollrath geometry of look direction -phi, and Sentinel-1's two passes look from mirror-image
  directions (towards the sensor: 90 + x degrees descending, 270 - x ascending), so liaDeg alone
  says "Vollrath on a descending pass, or gee_s1_ard on an ascending one". The pass recorded with
  the stack breaks the tie. Without it the backscatter can: Vollrath-flattened VV no longer
  depends on the terrain, while gee_s1_ard's VV keeps 10 log10 f(alpha_r(phi - aspect)) +
  10 log10 f(alpha_r(phi + aspect)) of it (f the volume model factor), which is the same for
  both candidate passes. VV regressed on that term gives a slope near 1 for gee_s1_ard, near 0
  for Vollrath.

Where the evidence is not enough the answer is `unknown`, with the reason. Detection reads at
most a window of `WINDOW` x `WINDOW` pixels in the middle of the stack, so its memory does not
grow with the stack. The geometry below restates the formulas of lsd.gee.s1 in numpy (the ground
floor cannot import the Earth Engine side); tests/test_conventions.py checks the two against each
other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from lsd.conventions import (
    DISTORTION_FLAGS,
    FLAG_LAYERS,
    FLAGS_DISTORTED,
    FLAGS_VALID,
    FLATTENING,
    RADAR_SCALE,
    Conventions,
    detected,
    is_radar,
    unknown,
)
from lsd.formats import opened
from lsd.rasters import Grid, read_layer_names

WINDOW = 1024  # side of the window read from a stack
MIN_VALUES = 200  # finite values a decision needs at least
FLAG_MINORITY_MAX = 0.25  # the "distorted" value covers at most this share of a flag layer
NODATA_IOU_MIN = 0.5  # flags and VV no data must overlap at least this well to decide
NEGATIVE_DB_MIN = 0.05  # a share of negative values this large rules out linear power
MIN_STEEP = 500  # pixels with slope >= STEEP_DEG the flattening fit needs
STEEP_DEG = 10.0
LIA_R2_MIN = 0.6  # share of liaDeg's variance the fitted geometry must explain
SENSOR_SIDE_MAX_DEG = 40.0  # a Sentinel-1 look direction lies this close to due east or west
VV_RESIDUAL_MIN_STD = 0.5  # dB of spread the gee_s1_ard residual needs to be tested
VV_GEE_SLOPE = 0.5  # VV regressed on that residual: at least this -> gee_s1_ard
VV_VOLLRATH_SLOPE = 0.25  # at most this (in magnitude) -> Vollrath
VV_MIN_CORR = 0.3
PASS_SIDE = {"DESCENDING": "east", "ASCENDING": "west"}  # where the sensor is, right-looking
NOMINAL_PIXEL_M = 10.0


# ----------------------------------------------------------------------------- geometry
# Angles in radians; aspect = downslope azimuth clockwise from north (ee.Terrain.aspect).


def slope_aspect(elevation: np.ndarray, pixel_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Slope and aspect of a north-up DEM from its 4-connected neighbours (as ee.Terrain does);
    the outermost rows and columns are NaN."""
    z = np.asarray(elevation, dtype=np.float64)
    east = np.full(z.shape, np.nan)
    north = np.full(z.shape, np.nan)
    east[:, 1:-1] = (z[:, 2:] - z[:, :-2]) / (2 * pixel_m)
    north[1:-1, :] = (z[:-2, :] - z[2:, :]) / (2 * pixel_m)  # rows run north to south
    slope = np.arctan(np.hypot(east, north))
    aspect = np.mod(np.arctan2(-east, -north), 2 * math.pi)
    return slope, aspect


def range_azimuth_slopes(
    slope: np.ndarray, aspect: np.ndarray, look: float
) -> tuple[np.ndarray, np.ndarray]:
    """alpha_r, alpha_az for the Vollrath relative look direction phi_r = look - aspect."""
    phi_r = look - aspect
    t = np.tan(slope)
    return np.arctan(t * np.cos(phi_r)), np.arctan(t * np.sin(phi_r))


def local_incidence_deg(theta: float | np.ndarray, alpha_r: np.ndarray, alpha_az: np.ndarray):
    return np.degrees(np.arccos(np.clip(np.cos(alpha_az) * np.cos(theta - alpha_r), -1, 1)))


def volume_factor_db(theta: float, alpha_r: np.ndarray) -> np.ndarray:
    """10 log10 of the volume model factor; NaN where its angle leaves (0, 90) degrees."""
    angle = math.pi / 2 - theta + alpha_r
    ok = (angle > math.radians(1)) & (angle < math.radians(89))
    out = np.full(alpha_r.shape, np.nan)
    out[ok] = 10 * np.log10(np.tan(angle[ok]) / math.tan(math.pi / 2 - theta))
    return out


# ----------------------------------------------------------------------------- the detectors


@dataclass(frozen=True)
class Geometry:
    """Where the pixels sit: the pixel size and whether rows run north to south."""

    pixel_m: float | None
    north_up: bool | None  # None: no georeferencing, north-up assumed

    def note(self) -> str:
        if self.north_up is None:
            return "; no georeferencing: rows assumed to run north to south at 10 m"
        return ""


def detect(
    arrays: Mapping[str, np.ndarray],
    geometry: Geometry = Geometry(None, None),
    passes: Sequence[str] | None = None,
) -> Conventions:
    """The detectable conventions of a stack given as {layer: 2-D array} (NaN = no data).

    `passes` are the Sentinel-1 passes the stack was made from, when its maker said (liaDeg is
    from the first); without them both candidate headings are tried.
    """
    scale = radar_scale(arrays)
    return {
        RADAR_SCALE: scale,
        DISTORTION_FLAGS: distortion_flags(arrays),
        FLATTENING: flattening(arrays, geometry, passes, scale),
    }


def _radar_layers(arrays: Mapping[str, np.ndarray]) -> list[str]:
    """Backscatter layers that hold levels (not differences), pre-event first."""
    names = [n for n in arrays if is_radar(n) and not n.startswith("d")]
    return sorted(names, key=lambda n: (not n.startswith("pre"), "VH" in n, n))


def radar_scale(arrays: Mapping[str, np.ndarray]) -> dict[str, str]:
    names = _radar_layers(arrays)
    if not names:
        return unknown("no backscatter layer (preVV, postVH, ...) in the stack")
    values = np.concatenate([arrays[n][np.isfinite(arrays[n])].ravel() for n in names])
    if values.size < MIN_VALUES:
        return unknown(f"{values.size} finite backscatter values in {', '.join(names)}: too few")
    negative = float((values < 0).mean())
    median = float(np.median(values))
    seen = f"{', '.join(names)}: {values.size} values, {100 * negative:.1f}% negative, median " \
        f"{median:.4g}"  # fmt: skip
    if negative >= NEGATIVE_DB_MIN:
        return detected("db", f"{seen} (linear power is never negative)")
    if median < 1.0:
        return detected("linear", f"{seen} (no negative values, mostly below 1: power)")
    return unknown(f"{seen}: neither dB (mostly negative) nor linear power (mostly below 1)")


def distortion_flags(arrays: Mapping[str, np.ndarray]) -> dict[str, str]:
    flags = [n for n in FLAG_LAYERS if n in arrays]
    if not flags:
        return unknown("no layover or shadow layer in the stack")
    valid = np.ones(arrays[flags[0]].shape, bool)
    for name in flags:
        values = arrays[name][np.isfinite(arrays[name])]
        odd = np.setdiff1d(np.unique(values), [0.0, 1.0])
        if odd.size:
            return unknown(f"{name} holds values other than 0 and 1 ({odd[0]:g}): not a flag")
        valid &= np.isfinite(arrays[name])
    if valid.sum() < MIN_VALUES:
        return unknown(f"{int(valid.sum())} pixels with flags: too few")
    radar = [n for n in _radar_layers(arrays)]
    by_nodata = _flags_by_nodata(arrays, flags, radar, valid)
    by_share = _flags_by_share(arrays, flags, valid)
    if by_nodata is not None:
        verdict, evidence = by_nodata
        if by_share is not None and by_share[0] != verdict:
            evidence += f"; note: {by_share[1]}"
        return detected(verdict, evidence)
    if by_share is not None:
        verdict, evidence = by_share
        why = "no backscatter layer" if not radar else "backscatter no data does not follow them"
        return detected(verdict, f"{evidence} ({why}, so judged by shares)")
    shares = ", ".join(f"{n} 1 on {100 * arrays[n][valid].mean():.1f}%" for n in flags)
    return unknown(f"{shares}: no value is rare enough to be 'distorted', and no backscatter "
                   "no data to compare with")  # fmt: skip


def _flags_by_nodata(
    arrays: Mapping[str, np.ndarray], flags: list[str], radar: list[str], valid: np.ndarray
) -> tuple[str, str] | None:
    """The polarity under which the flagged pixels are the backscatter's no data, if one is."""
    if not radar:
        return None
    nodata = np.zeros(valid.shape, bool)
    for name in radar:
        nodata |= ~np.isfinite(arrays[name])
    nodata &= valid
    if nodata.sum() == 0 or nodata.all():
        return None
    scores = {}
    for polarity, distorted_value in ((FLAGS_DISTORTED, 1.0), (FLAGS_VALID, 0.0)):
        distorted = np.zeros(valid.shape, bool)
        for name in flags:
            distorted |= arrays[name] == distorted_value
        distorted &= valid
        union = (distorted | nodata).sum()
        scores[polarity] = float((distorted & nodata).sum() / union) if union else 0.0
    best = max(scores, key=lambda k: scores[k])
    other = FLAGS_VALID if best == FLAGS_DISTORTED else FLAGS_DISTORTED
    if scores[best] < NODATA_IOU_MIN:
        return None
    value = "1" if best == FLAGS_DISTORTED else "0"
    return best, (
        f"{', '.join(radar)} no data ({int(nodata.sum())} px) coincides with {' or '.join(flags)} "
        f"= {value} (overlap {scores[best]:.2f}; {scores[other]:.2f} for the other polarity)"
    )


def _flags_by_share(
    arrays: Mapping[str, np.ndarray], flags: list[str], valid: np.ndarray
) -> tuple[str, str] | None:
    """The polarity under which every flag layer's 'distorted' value is the rare one."""
    shares = {n: float(arrays[n][valid].mean()) for n in flags}
    votes = set()
    for share in shares.values():
        if share <= FLAG_MINORITY_MAX:
            votes.add(FLAGS_DISTORTED)
        elif share >= 1 - FLAG_MINORITY_MAX:
            votes.add(FLAGS_VALID)
        else:
            return None
    if len(votes) != 1:
        return None
    shown = ", ".join(f"{n} = 1 on {100 * s:.1f}%" for n, s in shares.items())
    return votes.pop(), f"{shown} of the pixels; layover and shadow are the rare cases"


# ----------------------------------------------------------------------------- flattening


@dataclass(frozen=True)
class LookFit:
    """The Vollrath look direction (towards the sensor) and incidence angle that best explain
    liaDeg, and how well."""

    look_deg: float
    theta_deg: float
    r2: float
    rmse: float
    steep: int

    @property
    def side(self) -> str | None:
        """Where the sensor is ('east', 'west'), or None if no Sentinel-1 pass looks so."""
        for side, centre in (("east", 90.0), ("west", 270.0)):
            if abs((self.look_deg - centre + 180) % 360 - 180) <= SENSOR_SIDE_MAX_DEG:
                return side
        return None

    def text(self) -> str:
        return (
            f"liaDeg is the local incidence angle of look direction {self.look_deg:.0f} deg "
            f"(incidence {self.theta_deg:.1f} deg, R2 {self.r2:.3f}, RMSE {self.rmse:.2f} deg "
            f"over {self.steep} px steeper than {STEEP_DEG:g} deg)"
        )


def fit_look(
    lia: np.ndarray, slope: np.ndarray, aspect: np.ndarray, *, sample: int = 6_000
) -> LookFit | None:
    """Scan look directions and incidence angles for the Vollrath geometry that reproduces
    liaDeg (coarse, then finer around the best); None when too few pixels are finite."""
    ok = np.isfinite(lia) & np.isfinite(slope) & np.isfinite(aspect)
    steep = int((ok & (slope >= math.radians(STEEP_DEG))).sum())
    if ok.sum() < MIN_VALUES:
        return None
    idx = np.flatnonzero(ok)
    if idx.size > sample:
        idx = np.random.default_rng(0).choice(idx, sample, replace=False)
    y, s, a = lia.ravel()[idx], slope.ravel()[idx], aspect.ravel()[idx]
    t = np.tan(s)

    def sse(looks: np.ndarray, thetas: np.ndarray) -> np.ndarray:
        """Squared error for each (look, theta) pair, in radians; one row per pair."""
        phi_r = looks[:, None] - a[None, :]
        ar, az = np.arctan(t * np.cos(phi_r)), np.arctan(t * np.sin(phi_r))
        pred = local_incidence_deg(thetas[:, None], ar, az)
        return np.square(pred - y[None, :]).sum(axis=1)

    flat = s < math.radians(3)
    theta0 = float(np.median(y[flat])) if flat.sum() >= 50 else 37.0
    looks, thetas = np.meshgrid(np.arange(0, 360, 6.0), theta0 + np.arange(-8, 8.5, 4.0))
    looks, thetas = looks.ravel(), np.clip(thetas.ravel(), 20, 50)
    errors = sse(np.radians(looks), np.radians(thetas))
    look, theta = float(looks[errors.argmin()]), float(thetas[errors.argmin()])
    for step_look, step_theta in ((2.0, 1.0), (0.5, 0.25)):
        dl, dt = np.meshgrid(np.arange(-3, 4) * step_look, np.arange(-3, 4) * step_theta)
        looks, thetas = look + dl.ravel(), theta + dt.ravel()
        errors = sse(np.radians(looks), np.radians(thetas))
        look, theta = float(looks[errors.argmin()]), float(thetas[errors.argmin()])
    err = float(errors.min())
    total = float(np.square(y - y.mean()).sum())
    r2 = 1 - err / total if total > 0 else 0.0
    return LookFit(look % 360, theta, r2, math.sqrt(err / y.size), steep)


def vv_gee_slope(
    vv_db: np.ndarray, slope: np.ndarray, aspect: np.ndarray, fit: LookFit
) -> tuple[float, float, float] | None:
    """(slope, correlation, spread) of VV regressed on the terrain term gee_s1_ard leaves in
    it; None when the term has too little spread or too few pixels."""
    look, theta = math.radians(fit.look_deg), math.radians(fit.theta_deg)
    ar_minus, _ = range_azimuth_slopes(slope, aspect, look)
    ar_plus, _ = range_azimuth_slopes(slope, -aspect, look)  # phi + aspect
    term = volume_factor_db(theta, ar_minus) + volume_factor_db(theta, ar_plus)
    ok = np.isfinite(term) & np.isfinite(vv_db)
    if ok.sum() < MIN_VALUES:
        return None
    x, y = term[ok], vv_db[ok]
    spread = float(x.std())
    if spread < VV_RESIDUAL_MIN_STD or y.std() == 0:
        return None
    cov = float(np.mean((x - x.mean()) * (y - y.mean())))
    return cov / spread**2, cov / (spread * float(y.std())), spread


def flattening(
    arrays: Mapping[str, np.ndarray],
    geometry: Geometry,
    passes: Sequence[str] | None,
    scale: Mapping[str, str] | None = None,
) -> dict[str, str]:
    if "liaDeg" not in arrays or "elevation" not in arrays:
        return unknown("needs the liaDeg and elevation layers")
    if geometry.north_up is False:
        return unknown("the stack's grid is rotated; aspect cannot be read from its rows")
    pixel = geometry.pixel_m or NOMINAL_PIXEL_M
    slope, aspect = slope_aspect(arrays["elevation"], pixel)
    fit = fit_look(np.asarray(arrays["liaDeg"], float), slope, aspect)
    if fit is None:
        return unknown("too few pixels where liaDeg and elevation hold data")
    if fit.steep < MIN_STEEP:
        return unknown(f"{fit.steep} pixels steeper than {STEEP_DEG:g} deg: too flat to tell")
    if fit.r2 < LIA_R2_MIN:
        return unknown(f"{fit.text()}: no look direction explains liaDeg{geometry.note()}")
    if fit.side is None:
        return unknown(f"{fit.text()}: no Sentinel-1 pass looks from there{geometry.note()}")
    vv = _vv_evidence(arrays, slope, aspect, fit, scale)
    vv_text = f"; {vv[1]}" if vv else ""
    first = (passes or [None])[0]
    if first in PASS_SIDE:
        verdict = "vollrath" if PASS_SIDE[first] == fit.side else "gee_s1_ard"
        if vv and vv[0] is not None and vv[0] != verdict:
            return unknown(f"{fit.text()}, which on the recorded {first} pass means {verdict}, "
                           f"but {vv[1]}{geometry.note()}")  # fmt: skip
        return detected(verdict, f"{fit.text()}: the sensor is to the {fit.side}; recorded "
                        f"pass {first}{vv_text}{geometry.note()}")  # fmt: skip
    mirror = "west" if fit.side == "east" else "east"
    ambiguous = (
        f"{fit.text()}: Vollrath with the sensor to the {fit.side} or gee_s1_ard with it to the "
        f"{mirror} (mirror images; no pass recorded)"
    )
    if vv and vv[0] is not None:
        return detected(vv[0], f"{ambiguous}; {vv[1]}{geometry.note()}")
    why = vv[1] if vv else "no backscatter to separate them"
    return unknown(f"{ambiguous}; {why}{geometry.note()}")


def _vv_evidence(
    arrays: Mapping[str, np.ndarray],
    slope: np.ndarray,
    aspect: np.ndarray,
    fit: LookFit,
    scale: Mapping[str, str] | None,
) -> tuple[str | None, str] | None:
    """(verdict or None, text) from the backscatter, or None without backscatter."""
    names = _radar_layers(arrays)
    if not names:
        return None
    name = names[0]
    vv = np.asarray(arrays[name], dtype=np.float64)
    if scale and scale.get("value") == "linear":
        with np.errstate(divide="ignore", invalid="ignore"):
            vv = 10 * np.log10(np.where(vv > 0, vv, np.nan))
    reg = vv_gee_slope(vv, slope, aspect, fit)
    if reg is None:
        return None, f"{name} cannot be tested (too little relief in the gee_s1_ard term)"
    b, r, spread = reg
    text = (
        f"{name} regressed on the terrain term gee_s1_ard leaves (spread {spread:.2f} dB): "
        f"slope {b:.2f}, correlation {r:.2f}"
    )
    if b >= VV_GEE_SLOPE and r >= VV_MIN_CORR:
        return "gee_s1_ard", f"{text}: the terrain is left in, gee_s1_ard"
    if abs(b) <= VV_VOLLRATH_SLOPE:
        return "vollrath", f"{text}: the terrain is flattened out, vollrath"
    return None, f"{text}: between the two"


# ----------------------------------------------------------------------------- stacks on disk

NEEDED = ("liaDeg", "elevation", *FLAG_LAYERS)


def detect_stack(
    stack: Path | str, passes: Sequence[str] | None = None, window: int = WINDOW
) -> Conventions:
    """detect() on the middle `window` x `window` pixels of a stack.tif (the layers it needs
    only); NaN and the declared no-data value are no data."""

    stack = Path(stack)
    names = read_layer_names(stack)
    wanted = [n for n in names if n in NEEDED or is_radar(n)]
    with opened(stack) as src:
        w, h = min(window, src.width), min(window, src.height)
        win = Window((src.width - w) // 2, (src.height - h) // 2, w, h)
        arrays: dict[str, Any] = {}
        for name in wanted:
            band = src.read(names.index(name) + 1, window=win, out_dtype="float32")
            if src.nodata is not None and not np.isnan(src.nodata):
                band[band == src.nodata] = np.nan
            band[np.isinf(band)] = np.nan
            arrays[name] = band
        grid = Grid(src.width, src.height, src.crs, src.transform)
    return detect(arrays, geometry_of(grid), passes)


def geometry_of(grid: Grid, georeferenced: bool | None = None) -> Geometry:
    """Pixel size in metres and orientation of a grid; a grid without a CRS (or one its maker
    called nominal) is assumed north-up at 10 m."""
    t = grid.transform
    if grid.crs is None or t is None or georeferenced is False:
        return Geometry(None, None)
    north_up = abs(t.b) < 1e-12 and abs(t.d) < 1e-12 and t.e < 0
    return Geometry(grid.pixel_size_m(), north_up)
