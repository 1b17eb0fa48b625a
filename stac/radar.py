"""Sentinel-1 scene geometry without an incidence-angle band: look direction, ellipsoid
incidence per pixel, and from them and the DEM the layover and shadow flags and the local
incidence angle.

RTC items on the Planetary Computer carry no incidence-angle or heading band, only the pass
(`sat:orbit_state`) and the scene footprint. So:

* heading: the ground track of Sentinel-1's orbit (inclination 98.18 deg, 175 orbits in 12
  days) at the AOI's latitude, on the rotating Earth; right-looking, so the azimuth towards
  the sensor is the heading minus 90 deg (about 102 deg on a descending pass, 258 deg on an
  ascending one at mid latitudes);
* incidence: the IW swath spans 29.1 deg (near range) to 46.0 deg (far range); a pixel's
  incidence is interpolated linearly from its position across the footprint, measured along
  the look direction between the footprint's nearest and farthest vertices.

The flags and the angle then follow the formulas of the Earth Engine path (docs/layers.md,
Vollrath convention): alpha_r = atan(tan(slope) cos(phi_r)), phi_r = look - aspect; layover
where alpha_r >= theta_i, shadow where alpha_r <= -(90 deg - theta_i),
lia = acos(cos(alpha_az) cos(theta_i - alpha_r)). Written here for numpy, since the middle
floors do not import each other.

Distortions are per scene, as in the Earth Engine path (lsd.gee.s1, after gee_s1_ard): each
scene's VV and VH are masked where that scene is itself in layover or shadow before the median
(`PassGeometry.scene_distorted`), so a composite pixel is no data only where every scene of a
window is distorted; the flags are that same area (`nodata`), split by the kind of distortion
the scenes show. Scenes of other relative orbits see a slope at other incidence angles, so a
steep slope is often in layover in some scenes and not in others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

INCLINATION_DEG = 98.18
ORBIT_PERIOD_S = 12 * 86400 / 175  # 175 orbits per 12-day repeat cycle
EARTH_RADIUS_M = 6_371_000.0
EARTH_ROTATION_RAD_S = 7.2921159e-5


def heading_deg(lat_deg: float, state: str) -> float:
    """Azimuth of the ground track (deg clockwise from north) at a latitude, on the rotating
    Earth, for an ASCENDING or DESCENDING pass."""
    lat = math.radians(lat_deg)
    sin_psi = max(-1.0, min(1.0, math.cos(math.radians(INCLINATION_DEG)) / math.cos(lat)))
    psi = math.asin(sin_psi)  # inertial heading of an ascending pass, from north
    speed = 2 * math.pi * EARTH_RADIUS_M / ORBIT_PERIOD_S
    north = speed * math.cos(psi)
    east = speed * math.sin(psi)
    if state.upper() == "DESCENDING":
        north = -north
    east -= EARTH_ROTATION_RAD_S * EARTH_RADIUS_M * math.cos(lat)
    return math.degrees(math.atan2(east, north)) % 360.0


def towards_sensor_deg(lat_deg: float, state: str) -> float:
    """Azimuth from the ground towards the (right-looking) sensor: heading - 90 deg."""
    return (heading_deg(lat_deg, state) - 90.0) % 360.0


def incidence_deg(
    x: np.ndarray, y: np.ndarray, footprint_xy: Any, look_deg: float, near: float, far: float
) -> np.ndarray:
    """Ellipsoid incidence at map coordinates (x, y) from their position across the footprint
    (a shapely polygon in the same CRS): near range lies towards the sensor (`look_deg`)."""
    away = math.radians(look_deg + 180.0)
    ux, uy = math.sin(away), math.cos(away)  # unit vector from near to far range
    xs, ys = np.asarray(footprint_xy.exterior.coords).T
    along = xs * ux + ys * uy
    lo, hi = float(along.min()), float(along.max())
    frac = np.clip((x * ux + y * uy - lo) / max(hi - lo, 1.0), 0.0, 1.0)
    return (near + frac * (far - near)).astype(np.float32)


def distortions(
    theta_deg: np.ndarray, slope: np.ndarray, aspect: np.ndarray, look_deg: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(layover, shadow, local incidence in degrees) of each pixel for one scene."""
    theta = np.radians(theta_deg)
    alpha_s = np.radians(slope)
    phi_r = np.radians(look_deg - aspect)
    alpha_r = np.arctan(np.tan(alpha_s) * np.cos(phi_r))
    alpha_az = np.arctan(np.tan(alpha_s) * np.sin(phi_r))
    layover = alpha_r >= theta
    shadow = alpha_r <= -(np.pi / 2 - theta)
    lia = np.degrees(np.arccos(np.clip(np.cos(alpha_az) * np.cos(theta - alpha_r), -1, 1)))
    return layover, shadow, lia.astype(np.float32)


Scene = tuple[np.ndarray, np.ndarray, np.ndarray]  # one scene's (layover, shadow, lia)


@dataclass(frozen=True)
class PassGeometry:
    """What a pass's scenes say about distortion over a window.

    `scene_distorted`: per window, each scene's layover-or-shadow flags (in item order), to
    mask that scene before the median. `nodata`: where every scene of the pre window, or every
    scene of the post window, is distorted: where the masked composites have no data, and
    where all six backscatter layers are set to no data so that the area is the same in each.
    `any_layover`, `any_shadow`: where any scene of either window shows that kind. `lia`: the
    median over the post-window scenes (None without them)."""

    scene_distorted: dict[str, list[np.ndarray]]
    nodata: np.ndarray
    any_layover: np.ndarray
    any_shadow: np.ndarray
    lia: np.ndarray | None


def pass_geometry(windows: Mapping[str, Sequence[Scene]]) -> PassGeometry:
    """A pass's geometry from its scenes' own flags, per window (at least one scene in all)."""
    scenes = [scene for found in windows.values() for scene in found]
    shape = scenes[0][0].shape
    distorted = {k: [lay | sha for lay, sha, _ in found] for k, found in windows.items()}
    nodata = np.zeros(shape, bool)
    for flags in distorted.values():
        if flags:
            nodata |= np.logical_and.reduce(flags)
    post = [lia for _, _, lia in windows.get("post", [])]
    return PassGeometry(
        scene_distorted=distorted,
        nodata=nodata,
        any_layover=np.logical_or.reduce([lay for lay, _, _ in scenes]),
        any_shadow=np.logical_or.reduce([sha for _, sha, _ in scenes]),
        lia=np.median(np.stack(post), axis=0).astype(np.float32) if post else None,
    )


def distortion_flag(
    passes: Sequence[PassGeometry], kind: Literal["layover", "shadow"]
) -> np.ndarray:
    """layover or shadow, 1 = distorted: where the backscatter layers have no data (in every
    pass), by the kind any of those scenes shows. With one pass a pixel is in layover in all
    its distorted scenes or in shadow in all; with two passes a slope can be in layover for
    one and in shadow for the other, and is flagged as both (the Earth Engine rule)."""
    nodata = np.logical_and.reduce([p.nodata for p in passes])
    shown = np.logical_or.reduce([getattr(p, f"any_{kind}") for p in passes])
    return nodata & shown
