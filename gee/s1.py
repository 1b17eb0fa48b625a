"""Sentinel-1 GRD layers with angular radiometric terrain flattening.

The flattening follows Vollrath, Mullissa & Reiche (2020), Remote Sensing 12(11):1867: sigma0 is
turned into gamma0 and divided by a volume- or surface-scattering model factor computed from the
DEM slope and aspect relative to the radar look direction. Without it, slopes facing the sensor
look bright and slopes facing away look dark, and a landslide's change signal drowns in the
topography.

The formula helpers (`range_slope` ... `shadow_mask`) only use methods that ee.Image has
(add, subtract, multiply, divide, tan, cos, sin, atan, acos, gte, lte), so tests can run the very
same functions on a numpy stand-in and check them numerically.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Protocol

import ee

from lsd.gee.config import S1_COLLECTION, WORLDCOVER_VEGETATED, WORLDCOVER_WATER, FetchConfig
from lsd.spec import PASSES, EventSpec, Window

HALF_PI = math.pi / 2  # the 90 degree terms of the model factors, in radians
DEG = math.pi / 180
LOOK_DIRECTION_SCALE_M = 1000  # the angle band is smooth; a coarse scale is enough and cheap


class Raster(Protocol):
    """The arithmetic the formulas need; ee.Image has it, and so does the tests' numpy stand-in."""

    def add(self, other: Any) -> Raster: ...
    def subtract(self, other: Any) -> Raster: ...
    def multiply(self, other: Any) -> Raster: ...
    def divide(self, other: Any) -> Raster: ...
    def tan(self) -> Raster: ...
    def cos(self) -> Raster: ...
    def sin(self) -> Raster: ...
    def atan(self) -> Raster: ...
    def acos(self) -> Raster: ...
    def gte(self, other: Any) -> Raster: ...
    def lte(self, other: Any) -> Raster: ...
    def Or(self, other: Any) -> Raster: ...  # noqa: N802 - ee.Image's name
    def where(self, test: Any, value: Any) -> Raster: ...


# ----------------------------------------------------------------------------- formulas
# All angles in radians. theta = ellipsoid incidence angle, alpha_s = terrain slope,
# phi_r = look direction minus terrain aspect.


def ninety_minus(theta: Raster) -> Raster:
    """90 deg - theta_i."""
    return theta.multiply(-1).add(HALF_PI)


def range_slope(alpha_s: Raster, phi_r: Raster) -> Raster:
    """alpha_r = atan(tan(alpha_s) cos(phi_r)); positive on slopes facing the sensor."""
    return alpha_s.tan().multiply(phi_r.cos()).atan()


def azimuth_slope(alpha_s: Raster, phi_r: Raster) -> Raster:
    """alpha_az = atan(tan(alpha_s) sin(phi_r))."""
    return alpha_s.tan().multiply(phi_r.sin()).atan()


def volume_factor(theta: Raster, alpha_r: Raster) -> Raster:
    """tan(90 deg - theta_i + alpha_r) / tan(90 deg - theta_i): canopy (volume) scattering."""
    return ninety_minus(theta).add(alpha_r).tan().divide(ninety_minus(theta).tan())


def surface_factor(theta: Raster, alpha_r: Raster, alpha_az: Raster) -> Raster:
    """cos(90 deg - theta_i) / (cos(alpha_az) cos(90 deg - theta_i + alpha_r)): direct surface
    scattering."""
    denominator = alpha_az.cos().multiply(ninety_minus(theta).add(alpha_r).cos())
    return ninety_minus(theta).cos().divide(denominator)


def local_incidence_deg(theta: Raster, alpha_r: Raster, alpha_az: Raster) -> Raster:
    """acos(cos(alpha_az) cos(theta_i - alpha_r)), in degrees."""
    return alpha_az.cos().multiply(theta.subtract(alpha_r).cos()).acos().multiply(1 / DEG)


def layover_mask(theta: Raster, alpha_r: Raster) -> Raster:
    """Layover: the slope towards the sensor is at least as steep as the incidence angle."""
    return alpha_r.gte(theta)


def shadow_mask(theta: Raster, alpha_r: Raster) -> Raster:
    """Shadow: the slope away from the sensor is steeper than the grazing angle,
    alpha_r <= -(90 deg - theta_i)."""
    return alpha_r.lte(ninety_minus(theta).multiply(-1))


def defined_factor(factor: Raster, layover: Raster, shadow: Raster) -> Raster:
    """The model factor where flattening has a meaning, 1 in layover and shadow.

    There the angle 90 deg - theta_i + alpha_r leaves 0 .. 90 deg: the volume factor's tangent
    turns negative (or infinite at the edges) and the surface factor's cosine in layover too,
    so gamma0 / f would be negative or infinite and its dB (log10) NaN. Those pixels keep
    gamma0 unflattened instead: positive and finite, so dB, the composites and CART's radar
    features are defined everywhere; the layover and shadow flags say where they are. Where
    mask_distortions is on, the scene's VV and VH are masked there anyway.
    """
    return factor.where(layover.Or(shadow), 1)


# ----------------------------------------------------------------------------- collections


def date_millis(day: Any) -> int:
    """UTC midnight of a date as epoch milliseconds: windows are sent as plain numbers, so the
    graph states exactly which instant each window starts and ends."""

    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    return int(start.timestamp() * 1000)


def utc_time(millis: Any) -> str:
    """Epoch milliseconds (as Earth Engine lists system:time_start) as 'YYYY-MM-DDTHH:MM:SS' UTC."""

    return dt.datetime.fromtimestamp(float(millis) / 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def s1_collection(aoi: ee.Geometry, window: Window, orbit: str) -> ee.ImageCollection:
    """IW GRD scenes with VV and VH over the AOI in [start, end) of one pass (DESCENDING or
    ASCENDING); any other value (BOTH, AUTO before it is resolved) applies no pass filter."""
    col = (
        ee.ImageCollection(S1_COLLECTION)
        .filterBounds(aoi)
        .filterDate(date_millis(window.start), date_millis(window.end))
        .filter(ee.Filter.eq("instrumentMode", "IW"))
        .filter(ee.Filter.listContains("transmitterReceiverPolarisation", "VV"))
        .filter(ee.Filter.listContains("transmitterReceiverPolarisation", "VH"))
    )
    if orbit in PASSES:
        col = col.filter(ee.Filter.eq("orbitProperties_pass", orbit))
    return col


def terrain_angles(dem: ee.Image) -> ee.Image:
    """Slope and aspect of the DEM in radians, bands 'slope' and 'aspect'."""
    slope = ee.Terrain.slope(dem).multiply(DEG).rename("slope")
    aspect = ee.Terrain.aspect(dem).multiply(DEG).rename("aspect")
    return slope.addBands(aspect)


def look_direction(col: ee.ImageCollection, region: ee.Geometry) -> ee.Number:
    """Azimuth (radians, clockwise from north) towards which the ellipsoid incidence angle falls,
    i.e. towards the sensor: the aspect of the `angle` band, as a circular mean over the region
    and every scene of one pass.

    One value per pass and event, not per scene as in the seeds: scenes of one pass share the
    orbit's inclination, so their headings over a few kilometres differ by a fraction of a
    degree, and one value lets every download tile carry it as a constant. Averaging sin and
    cos rather than the angle keeps the mean right if azimuths straddle north.
    """

    def components(img: ee.Image) -> ee.Image:
        aspect = ee.Terrain.aspect(ee.Image(img).select("angle")).multiply(DEG)
        return aspect.sin().rename("s").addBands(aspect.cos().rename("c"))

    means = (
        col.map(components)
        .mean()
        .reduceRegion(
            reducer=ee.Reducer.mean(),
            geometry=region,
            scale=LOOK_DIRECTION_SCALE_M,
            bestEffort=True,
        )
    )
    return ee.Number(means.get("s")).atan2(ee.Number(means.get("c")))


def relative_look(phi_i: Raster, aspect: Raster, convention: str) -> Raster:
    """phi_r, the look direction relative to the terrain aspect.

    'vollrath' (Vollrath et al. 2020 and their library): phi_r = phi_i - aspect, with
    ee.Terrain.aspect (downslope azimuth) as is; alpha_r is then positive on slopes facing the
    sensor, and layover falls on those slopes, as it physically must. 'gee_s1_ard' (its HEAD,
    after issue #4): aspect negated ('made uphill'), phi_r = phi_i + aspect, which mirrors
    east- and west-facing slopes; the library compensates by multiplying gamma0 by the factor.
    """
    if convention == "gee_s1_ard":
        return phi_i.add(aspect)
    return phi_i.subtract(aspect)


def flatten_image(
    image: ee.Image,
    terrain: ee.Image,
    use_volume: bool | ee.ComputedObject,
    phi_i: float | ee.ComputedObject,
    convention: str = "vollrath",
) -> ee.Image:
    """One S1 scene -> flattened gamma0 VV, VH (linear power) plus layover, shadow, lia bands."""
    theta = image.select("angle").multiply(DEG)
    phi_r = relative_look(ee.Image.constant(phi_i), terrain.select("aspect"), convention)
    alpha_s = terrain.select("slope")
    alpha_r = range_slope(alpha_s, phi_r)
    alpha_az = azimuth_slope(alpha_s, phi_r)

    sigma0 = ee.Image.constant(10).pow(image.select(["VV", "VH"]).divide(10)).rename(["VV", "VH"])
    gamma0 = sigma0.divide(theta.cos())
    layover = layover_mask(theta, alpha_r).rename("layover")
    shadow = shadow_mask(theta, alpha_r).rename("shadow")
    factor = defined_factor(model_factor(theta, alpha_r, alpha_az, use_volume), layover, shadow)
    flat = gamma0.multiply(factor) if convention == "gee_s1_ard" else gamma0.divide(factor)
    lia = local_incidence_deg(theta, alpha_r, alpha_az).rename("lia")
    out = flat.rename(["VV", "VH"]).addBands(layover).addBands(shadow).addBands(lia)
    return ee.Image(out.copyProperties(image, ["system:time_start", "system:index"]))


def model_factor(
    theta: ee.Image, alpha_r: ee.Image, alpha_az: ee.Image, use_volume: bool | ee.ComputedObject
) -> ee.Image:
    """The volume or surface model factor; a Python bool (the per-event constant) picks one on
    the client, an ee value (computed in the graph) on the server."""
    if isinstance(use_volume, bool):
        if use_volume:
            return volume_factor(theta, alpha_r)
        return surface_factor(theta, alpha_r, alpha_az)
    return ee.Image(
        ee.Algorithms.If(
            use_volume, volume_factor(theta, alpha_r), surface_factor(theta, alpha_r, alpha_az)
        )
    )


def flattened_collection(
    col: ee.ImageCollection,
    terrain: ee.Image,
    use_volume: bool | ee.ComputedObject,
    phi_i: float | ee.ComputedObject,
    convention: str = "vollrath",
) -> ee.ImageCollection:
    return col.map(lambda img: flatten_image(ee.Image(img), terrain, use_volume, phi_i, convention))


def to_db(linear: ee.Image) -> ee.Image:
    return linear.log10().multiply(10)


def distorted(scene: ee.Image) -> ee.Image:
    """1 where a flattened scene is in layover or shadow."""
    return scene.select("layover").Or(scene.select("shadow")).rename("distorted")


def valid_backscatter(scene: ee.Image) -> ee.Image:
    """A flattened scene's VV, VH masked where that scene is in layover or shadow, as
    gee_s1_ard masks each scene (`gamma0_flat.mask(mask)` in its terrain flattening)."""
    return scene.select(["VV", "VH"]).updateMask(distorted(scene).Not())


def db_composite(flat: ee.ImageCollection, mask_distortions: bool = False) -> ee.Image:
    """Median of the flattened linear VV, VH over a window, back in dB.

    With mask_distortions each scene is masked where it is itself distorted before the median,
    so a pixel takes the median of the scenes that see it, and is no data only where every
    scene of the window is distorted (scenes of other relative orbits have other incidence
    angles, so steep slopes are often in layover in some and not in others)."""
    col = flat.map(valid_backscatter) if mask_distortions else flat.select(["VV", "VH"])
    return to_db(col.median()).rename(["VV", "VH"])


def all_distorted(flat: ee.ImageCollection) -> ee.Image:
    """1 where every scene of the collection is in layover or shadow: where the masked
    composite of these scenes has no data."""
    return flat.map(distorted).min()


# ----------------------------------------------------------------------------- model choice


def vegetated_fraction(worldcover: ee.Image, aoi: ee.Geometry, scale: float) -> ee.Number:
    """Share of the AOI's land (water left out) that ESA WorldCover calls vegetated."""
    wc = worldcover.select([0])
    vegetated = wc.remap(list(WORLDCOVER_VEGETATED), [1] * len(WORLDCOVER_VEGETATED), 0)
    land_only = vegetated.updateMask(wc.neq(WORLDCOVER_WATER)).rename("vegetated")
    value = land_only.reduceRegion(
        reducer=ee.Reducer.mean(), geometry=aoi, scale=scale, maxPixels=1e9, bestEffort=True
    ).get("vegetated")
    return ee.Number(ee.Algorithms.If(value, value, 0))


def flattening_choice(
    spec: EventSpec,
    cfg: FetchConfig,
    worldcover: ee.Image | None,
    aoi: ee.Geometry,
    fraction: float | None = None,
) -> tuple[bool | ee.ComputedObject, str | ee.String, float | ee.ComputedObject | None]:
    """(use_volume, model name, vegetated fraction or None) for this event.

    `auto` picks the volume model when at least cfg.flattening_volume_fraction of the AOI's land
    is vegetated by WorldCover, else the surface model; volume/surface in the event row win.
    With the fraction already known (a per-event constant) the choice is made here, on the
    client; without it the graph computes it.
    """
    if spec.flattening in ("volume", "surface"):
        return spec.flattening == "volume", spec.flattening, None
    if fraction is not None:
        use = fraction >= cfg.flattening_volume_fraction
        return use, "volume" if use else "surface", fraction
    if worldcover is None:
        raise ValueError("auto flattening needs the WorldCover image")
    computed = vegetated_fraction(worldcover, aoi, cfg.scale)
    use_volume = computed.gte(cfg.flattening_volume_fraction)
    model = ee.String(ee.Algorithms.If(use_volume, "volume", "surface"))
    return use_volume, model, computed


def collection_summary(col: ee.ImageCollection) -> ee.Dictionary:
    """Ids, acquisition dates, count, passes and relative orbits of the scenes in a window."""
    dates = col.aggregate_array("system:time_start").map(
        lambda t: ee.Date(t).format("YYYY-MM-dd'T'HH:mm:ss")
    )
    return ee.Dictionary(
        {
            "ids": col.aggregate_array("system:index"),
            "dates": dates,
            "count": col.size(),
            "passes": col.aggregate_array("orbitProperties_pass").distinct(),
            "relative_orbits": col.aggregate_array("relativeOrbitNumber_start").distinct(),
        }
    )
