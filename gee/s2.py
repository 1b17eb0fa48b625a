"""Sentinel-2 layers: cloud, shadow and snow masking, NDVI and the greenest-pixel composites.

Landslides strip vegetation, so the stack carries the change of the greenest-pixel NDVI between
the windows. Clouds, their shadows and snow all lower NDVI and would fake that change, hence the
masking before the composite.
"""

from __future__ import annotations

import ee

from lsd.gee.config import (
    CLOUD_SCORE_PLUS_COLLECTION,
    S2_CLOUD_PROB_COLLECTION,
    S2_L1C_COLLECTION,
    S2_SR_COLLECTION,
    FetchConfig,
)
from lsd.gee.s1 import date_millis
from lsd.layers import S2_BANDS
from lsd.spec import Window

CIRRUS_BIT = 1 << 11  # QA60 bit 11: cirrus
SCL_WATER = 6
SCL_SNOW = 11
SR_SCALE = 10_000  # S2 SR reflectance is stored as reflectance x 10000
SHADOW_SEARCH_SCALE_M = 100  # the shadow projection runs on a coarse grid, as in s2cloudless
# every band the stack may take (CART's six among them, and the s2bands group's ten)
COMPOSITE_BANDS: tuple[str, ...] = (*S2_BANDS, "NDVI")


def _same_index() -> ee.Filter:
    return ee.Filter.equals(leftField="system:index", rightField="system:index")


def _window(col: ee.ImageCollection, aoi: ee.Geometry, window: Window) -> ee.ImageCollection:
    return col.filterBounds(aoi).filterDate(date_millis(window.start), date_millis(window.end))


def s2_sr_collection(aoi: ee.Geometry, window: Window) -> ee.ImageCollection:
    """Surface reflectance scenes over the AOI in [start, end), before any join."""
    return _window(ee.ImageCollection(S2_SR_COLLECTION), aoi, window)


def join_first(
    primary: ee.ImageCollection, secondary: ee.ImageCollection, key: str
) -> ee.ImageCollection:
    """Attach the secondary scene with the same system:index as property `key`; scenes without a
    partner are dropped, since they could not be masked."""
    joined = ee.Join.saveFirst(key).apply(
        primary=primary, secondary=secondary, condition=_same_index()
    )
    return ee.ImageCollection(joined)


def s2cloudless_inputs(
    aoi: ee.Geometry, window: Window, sr: ee.ImageCollection
) -> ee.ImageCollection:
    """SR scenes carrying their s2cloudless probability ('cloud_prob') and L1C scene ('l1c')."""
    prob = _window(ee.ImageCollection(S2_CLOUD_PROB_COLLECTION), aoi, window)
    l1c = _window(ee.ImageCollection(S2_L1C_COLLECTION), aoi, window)
    return join_first(join_first(sr, prob, "cloud_prob"), l1c, "l1c")


def cloud_score_plus_inputs(
    aoi: ee.Geometry, window: Window, sr: ee.ImageCollection
) -> ee.ImageCollection:
    cs = _window(ee.ImageCollection(CLOUD_SCORE_PLUS_COLLECTION), aoi, window)
    return join_first(sr, cs, "cs_plus")


def s2cloudless_clear(image: ee.Image, cfg: FetchConfig) -> ee.Image:
    """1 where the scene is free of cloud and cloud shadow, by s2cloudless + CDI + QA60.

    A high cloud probability alone also flags bright bare ground (fresh landslide scars among
    them); the cloud displacement index separates real clouds, which show parallax between the
    S2 bands, from bright surfaces, which do not.
    """
    prob = ee.Image(image.get("cloud_prob")).select("probability")
    cdi = ee.Algorithms.Sentinel2.CDI(ee.Image(image.get("l1c")))
    cirrus = image.select("QA60").bitwiseAnd(CIRRUS_BIT).neq(0)
    clouds = prob.gt(cfg.cloud_prob).And(cdi.lt(cfg.cdi_threshold)).Or(cirrus).rename("clouds")

    # Shadows: dark NIR pixels that are not water, lying within shadow_project_km of a cloud in
    # the direction away from the sun. directionalDistanceTransform measures its angle
    # counter-clockwise from east; the solar azimuth is clockwise from north.
    sun_towards = ee.Number(90).subtract(ee.Number(image.get("MEAN_SOLAR_AZIMUTH_ANGLE")))
    max_pixels = int(round(cfg.shadow_project_km * 1000 / SHADOW_SEARCH_SCALE_M))
    dark = (
        image.select("B8")
        .lt(cfg.shadow_nir_dark * SR_SCALE)
        .And(image.select("SCL").neq(SCL_WATER))
    )
    cast = (
        clouds.directionalDistanceTransform(sun_towards, max_pixels)
        .reproject(crs=image.select("B8").projection(), scale=SHADOW_SEARCH_SCALE_M)
        .select("distance")
        .mask()
    )
    shadows = cast.And(dark)
    cloudy = (
        clouds.Or(shadows)
        .focalMax(radius=cfg.cloud_buffer_m, kernelType="circle", units="meters")
        .rename("cloudy")
    )
    return cloudy.Not()


def cloud_score_plus_clear(image: ee.Image, cfg: FetchConfig) -> ee.Image:
    """1 where Cloud Score+ rates the pixel clear (cs_cdf at or above the threshold)."""
    return ee.Image(image.get("cs_plus")).select("cs_cdf").gte(cfg.cs_plus_threshold)


def snow_free(image: ee.Image, cfg: FetchConfig) -> ee.Image:
    """0 on snow (SCL 11) after eroding the snow mask by snow_erode_m.

    The erosion drops small, isolated 'snow' patches: the scene classifier also calls fresh,
    bright landslide scars snow, and masking them would erase the very change we look for.
    """
    snow = (
        image.select("SCL")
        .eq(SCL_SNOW)
        .focalMin(radius=cfg.snow_erode_m, kernelType="circle", units="meters")
    )
    return snow.Not()


def add_ndvi(image: ee.Image) -> ee.Image:
    return image.addBands(image.normalizedDifference(["B8", "B4"]).rename("NDVI"))


def masked_collection(aoi: ee.Geometry, window: Window, cfg: FetchConfig) -> ee.ImageCollection:
    """Cloud-, shadow- and snow-masked scenes of a window with an NDVI band."""
    sr = s2_sr_collection(aoi, window)
    if cfg.s2_cloud == "cloudscoreplus":
        joined = cloud_score_plus_inputs(aoi, window, sr)
        clear_fn = cloud_score_plus_clear
    else:
        joined = s2cloudless_inputs(aoi, window, sr)
        clear_fn = s2cloudless_clear

    def mask_one(img: ee.Image) -> ee.Image:
        img = ee.Image(img)
        keep = clear_fn(img, cfg).And(snow_free(img, cfg))
        return add_ndvi(img.updateMask(keep)).select(list(COMPOSITE_BANDS))

    return joined.map(mask_one)


def greenest(col: ee.ImageCollection) -> ee.Image:
    """Greenest-pixel composite: every band taken from the scene with the highest NDVI."""
    return col.qualityMosaic("NDVI")


def masking_method(cfg: FetchConfig) -> str:
    """One line for event.json saying how clouds and snow were masked."""
    if cfg.s2_cloud == "cloudscoreplus":
        clouds = f"Cloud Score+ cs_cdf >= {cfg.cs_plus_threshold}"
    else:
        clouds = (
            f"s2cloudless probability > {cfg.cloud_prob} and CDI < {cfg.cdi_threshold}, or QA60 "
            f"cirrus; shadows projected {cfg.shadow_project_km} km from clouds over dark NIR "
            f"(< {cfg.shadow_nir_dark}) non-water pixels; dilated {cfg.cloud_buffer_m} m"
        )
    return f"{clouds}; snow = SCL 11 eroded {cfg.snow_erode_m} m"


def collection_summary(col: ee.ImageCollection) -> ee.Dictionary:
    dates = col.aggregate_array("system:time_start").map(
        lambda t: ee.Date(t).format("YYYY-MM-dd'T'HH:mm:ss")
    )
    return ee.Dictionary(
        {"ids": col.aggregate_array("system:index"), "dates": dates, "count": col.size()}
    )
