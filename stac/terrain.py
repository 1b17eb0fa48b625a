"""Elevation, slope and aspect on the event grid from Copernicus GLO-30.

GLO-30 tiles (EPSG:4326, 1 arc second) are resampled bilinearly onto the 10 m UTM grid before
anything is derived from them, as the Earth Engine path does (`dem_resample`): with nearest
neighbour the 30 m cells become 3 x 3 blocks whose edges show as stripes in slope. Slope and
aspect use the 4-connected neighbours of each pixel (central differences), the rule of
ee.Terrain, so the two sources derive the same slope from the same heights.
"""

from __future__ import annotations

import numpy as np


def gradient(dem: np.ndarray, pixel_m: float) -> tuple[np.ndarray, np.ndarray]:
    """(dz/dx east, dz/dy north) of a DEM with a one-pixel halo, for its inner pixels."""
    dzdx = (dem[1:-1, 2:] - dem[1:-1, :-2]) / (2.0 * pixel_m)
    dzdy = (dem[:-2, 1:-1] - dem[2:, 1:-1]) / (2.0 * pixel_m)  # row 0 is north
    return dzdx, dzdy


def slope_deg(dem: np.ndarray, pixel_m: float) -> np.ndarray:
    """Slope in degrees of the inner pixels of a DEM read with a one-pixel halo."""
    dzdx, dzdy = gradient(dem, pixel_m)
    return np.degrees(np.arctan(np.hypot(dzdx, dzdy))).astype(np.float32)


def aspect_deg(dem: np.ndarray, pixel_m: float) -> np.ndarray:
    """Downslope azimuth in degrees clockwise from north (the way the slope faces), 0..360,
    of the inner pixels; flat pixels get 0."""
    dzdx, dzdy = gradient(dem, pixel_m)
    return (np.degrees(np.arctan2(-dzdx, -dzdy)) % 360.0).astype(np.float32)
