"""Sentinel-2 layers: cloud, shadow and snow masking, NDVI and the greenest-pixel composites.

Landslides strip vegetation, so the stack carries the change of the greenest-pixel NDVI between
the windows. Clouds, their shadows and snow all lower NDVI and would fake that change, hence the
masking before the composite. The defaults are those of the dataset author's Code Editor script
for dNDVI (its maskImage and maskSnow functions); docs/layers.md cites each one.
"""

from __future__ import annotations

from typing import Literal

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

Level = Literal["L2A", "L1C"]
SCL_WATER = 6
SCL_SNOW = 11
REFLECTANCE_SCALE = 10_000  # S2 reflectance (SR and TOA) is stored as reflectance x 10000
L1C_SNOW_NIR = 0.11  # NIR reflectance a snow pixel exceeds (with NDSI), for L1C scenes
# every band the stack may take (CART's six among them, and the s2bands group's ten)
COMPOSITE_BANDS: tuple[str, ...] = (*S2_BANDS, "NDVI")
LEVEL_COLLECTIONS: dict[str, str] = {"L2A": S2_SR_COLLECTION, "L1C": S2_L1C_COLLECTION}


def _same_index() -> ee.Filter:
    return ee.Filter.equals(leftField="system:index", rightField="system:index")


def _window(col: ee.ImageCollection, aoi: ee.Geometry, window: Window) -> ee.ImageCollection:
    return col.filterBounds(aoi).filterDate(date_millis(window.start), date_millis(window.end))


def scenes(aoi: ee.Geometry, window: Window, level: Level = "L2A") -> ee.ImageCollection:
    """Scenes of one processing level over the AOI in [start, end), before any join."""
    return _window(ee.ImageCollection(LEVEL_COLLECTIONS[level]), aoi, window)


def s2_sr_collection(aoi: ee.Geometry, window: Window) -> ee.ImageCollection:
    return scenes(aoi, window, "L2A")


def join_first(
    primary: ee.ImageCollection, secondary: ee.ImageCollection, key: str
) -> ee.ImageCollection:
    """Attach the secondary scene with the same system:index as property `key`; scenes without a
    partner are dropped, since they could not be masked (the fetch counts and reports them)."""
    joined = ee.Join.saveFirst(key).apply(
        primary=primary, secondary=secondary, condition=_same_index()
    )
    return ee.ImageCollection(joined)


def maskable(
    aoi: ee.Geometry, window: Window, level: Level, cfg: FetchConfig
) -> ee.ImageCollection:
    """The scenes that can be masked: joined with their cloud probability ('cloud_prob') and,
    for L2A, their L1C scene ('l1c', for the CDI and the cirrus band); or with Cloud Score+."""
    primary = scenes(aoi, window, level)
    if cfg.s2_cloud == "cloudscoreplus":
        cs = _window(ee.ImageCollection(CLOUD_SCORE_PLUS_COLLECTION), aoi, window)
        return join_first(primary, cs, "cs_plus")
    prob = _window(ee.ImageCollection(S2_CLOUD_PROB_COLLECTION), aoi, window)
    joined = join_first(primary, prob, "cloud_prob")
    if level == "L2A":
        l1c = _window(ee.ImageCollection(S2_L1C_COLLECTION), aoi, window)
        joined = join_first(joined, l1c, "l1c")
    return joined


def cloud_mask(image: ee.Image, level: Level, cfg: FetchConfig) -> ee.Image:
    """1 on cloud and cloud shadow, by the script's rule.

    Cloud: s2cloudless probability above cloud_prob and cloud displacement index below
    cdi_threshold (bright ground, fresh scars among it, shows no parallax between S2 bands, so
    the CDI keeps it), or cirrus-band (B10) reflectance above cirrus_b10; B10 rather than QA60,
    whose cirrus bit is empty from 2022-01-25 on. The cloud mask is opened (erode, dilate) at
    cloud_morph_scale_m; shadows are cast from it away from the sun over shadow_search_px pixels
    of shadow_search_scale_m (5 km), and the whole cast zone is masked unless shadow_nir_dark
    limits it to dark NIR pixels.
    """
    l1c = ee.Image(image.get("l1c")) if level == "L2A" else image
    prob = ee.Image(image.get("cloud_prob")).select("probability")
    cdi = ee.Algorithms.Sentinel2.CDI(l1c)
    cirrus = l1c.select("B10").divide(REFLECTANCE_SCALE).gt(cfg.cirrus_b10)
    clouds = prob.gt(cfg.cloud_prob).And(cdi.lt(cfg.cdi_threshold)).Or(cirrus)
    clouds = (
        clouds.focalMin(radius=cfg.cloud_open_px, kernelType="circle", units="pixels")
        .focalMax(radius=cfg.cloud_grow_px, kernelType="circle", units="pixels")
        .reproject(crs=cdi.projection(), scale=cfg.cloud_morph_scale_m)
    )
    # directionalDistanceTransform measures its angle counter-clockwise from east; the solar
    # azimuth is clockwise from north: 90 - azimuth points away from the sun.
    away = ee.Number(90).subtract(ee.Number(image.get("MEAN_SOLAR_AZIMUTH_ANGLE")))
    cast = (
        clouds.directionalDistanceTransform(away, cfg.shadow_search_px)
        .reproject(crs=cdi.projection(), scale=cfg.shadow_search_scale_m)
        .select("distance")
        .mask()
    )
    if cfg.shadow_nir_dark is None:
        return clouds.Or(cast).rename("cloudy")
    dark = image.select("B8").lt(cfg.shadow_nir_dark * REFLECTANCE_SCALE)
    if level == "L2A":
        dark = dark.And(image.select("SCL").neq(SCL_WATER))
    return clouds.Or(cast.And(dark)).rename("cloudy")


def cloud_score_plus_clear(image: ee.Image, cfg: FetchConfig) -> ee.Image:
    """1 where Cloud Score+ rates the pixel clear (cs_cdf at or above the threshold)."""
    return ee.Image(image.get("cs_plus")).select("cs_cdf").gte(cfg.cs_plus_threshold)


def snow(image: ee.Image, level: Level, cfg: FetchConfig) -> ee.Image:
    """1 on snow: scene class SCL 11 (L2A), or for L1C, which has no scene classification,
    NDSI = (B3 - B11) / (B3 + B11) above l1c_snow_ndsi with NIR above 0.11."""
    if level == "L2A":
        return image.select("SCL").eq(SCL_SNOW)
    ndsi = image.normalizedDifference(["B3", "B11"])
    nir = image.select("B8").divide(REFLECTANCE_SCALE)
    return ndsi.gt(cfg.l1c_snow_ndsi).And(nir.gt(L1C_SNOW_NIR))


def snow_free(image: ee.Image, level: Level, cfg: FetchConfig) -> ee.Image:
    """0 on snow and, by default (snow_mode 'grow'), within snow_buffer_m of it.

    'grow' is the script's maskSnow: it erodes the not-snow mask by 300 m, i.e. grows snow by
    300 m, so thin snow patches and the rim of every snowfield (bright, half-melted, mixed
    pixels whose NDVI falls with the melt, not with a landslide) are masked. 'erode' instead
    erodes the snow mask by snow_buffer_m, keeping small 'snow' patches (the classifier calls
    some fresh scars snow) at the cost of snow remnants in the composites.
    """
    flags = snow(image, level, cfg)
    if cfg.snow_mode == "erode":
        grown = flags.focalMin(radius=cfg.snow_buffer_m, kernelType="circle", units="meters")
        return grown.Not()
    return flags.Not().focalMin(radius=cfg.snow_buffer_m, kernelType="circle", units="meters")


def add_ndvi(image: ee.Image) -> ee.Image:
    return image.addBands(image.normalizedDifference(["B8", "B4"]).rename("NDVI"))


def clear_of_clouds(img: ee.Image, level: Level, cfg: FetchConfig) -> ee.Image:
    """1 where a scene is free of cloud and cloud shadow by the configured rule; the composites
    and CART's image share it."""
    if cfg.s2_cloud == "cloudscoreplus":
        return cloud_score_plus_clear(img, cfg)
    return cloud_mask(img, level, cfg).Not()


def masked_collection(
    aoi: ee.Geometry, window: Window, cfg: FetchConfig, level: Level = "L2A"
) -> ee.ImageCollection:
    """Cloud-, shadow- and snow-masked scenes of a window with an NDVI band."""
    joined = maskable(aoi, window, level, cfg)

    def mask_one(img: ee.Image) -> ee.Image:
        img = ee.Image(img)
        clear = clear_of_clouds(img, level, cfg)
        keep = clear.And(snow_free(img, level, cfg))
        return add_ndvi(img.updateMask(keep)).select(list(COMPOSITE_BANDS))

    return joined.map(mask_one)


# ----------------------------------------------------------------------------- CART's image
# The paper trained CART on "a Sentinel-2 image with minimal cloud cover": a real image, clouds
# masked, snow left as it is (the greenest composite masks snow, so snowfields would have no
# features and class 8, glacier and snow, no training points).
CLEAR_SHARE = "clear_share"
CLEAR_SHARE_SCALE_M = 100  # clouds are opened at 20 m and their shadows cast at 100 m
SNOW_BAND = "snow"


def cloud_masked_collection(
    aoi: ee.Geometry,
    window: Window,
    cfg: FetchConfig,
    level: Level = "L2A",
    ids: list[str] | None = None,
) -> ee.ImageCollection:
    """Cloud- and shadow-masked scenes (the composites' rule), snow kept, with NDVI and a band
    'snow' (1 on snow by the composites' snow rule, for CART's class 8); only `ids` if given."""
    joined = maskable(aoi, window, level, cfg)
    if ids is not None:
        joined = joined.filter(ee.Filter.inList("system:index", ids))

    def mask_one(img: ee.Image) -> ee.Image:
        img = ee.Image(img)
        clear = clear_of_clouds(img, level, cfg)
        flags = snow(img, level, cfg).rename(SNOW_BAND)
        bands = add_ndvi(img).select(list(COMPOSITE_BANDS)).addBands(flags)
        return ee.Image(bands.updateMask(clear).copyProperties(img, ["system:index"]))

    return joined.map(mask_one)


def clear_share(scene: ee.Image, region: ee.Geometry) -> ee.Number:
    """Share of the region a cloud-masked scene shows (covered and clear), 0 .. 1."""
    seen = scene.select("B4").mask().unmask(0, False)
    share = seen.reduceRegion(
        reducer=ee.Reducer.mean(), geometry=region, scale=CLEAR_SHARE_SCALE_M, maxPixels=1e9,
        bestEffort=True,
    ).get("B4")  # fmt: skip
    return ee.Number(ee.Algorithms.If(share, share, 0))


def clearest(col: ee.ImageCollection, region: ee.Geometry, n: int) -> ee.ImageCollection:
    """The n scenes that show most of the region, each with its share as property
    'clear_share' (scenes that show none of it left out). Computed once per event."""
    with_share = col.map(lambda img: ee.Image(img).set(CLEAR_SHARE, clear_share(img, region)))
    return with_share.filter(ee.Filter.gt(CLEAR_SHARE, 0)).limit(n, CLEAR_SHARE, False)


def with_shares(col: ee.ImageCollection, shares: dict[str, float]) -> ee.ImageCollection:
    """The scenes with the clear shares the per-event request found, as constants."""
    table = ee.Dictionary(shares)
    return col.map(lambda img: ee.Image(img).set(CLEAR_SHARE, table.get(img.get("system:index"))))


def clearest_mosaic(col: ee.ImageCollection) -> ee.Image:
    """Per pixel the scene with the largest clear share among those that show it: the least
    cloudy image, its gaps (clouds, granule edges) filled from the next clearest."""

    def rank(img: ee.Image) -> ee.Image:
        img = ee.Image(img)
        share = ee.Image.constant(img.get(CLEAR_SHARE)).toFloat().rename(CLEAR_SHARE)
        return img.addBands(share.updateMask(img.select("B4").mask()))

    return col.map(rank).qualityMosaic(CLEAR_SHARE)


def greenest(col: ee.ImageCollection) -> ee.Image:
    """Greenest-pixel composite: every band taken from the scene with the highest NDVI."""
    return col.qualityMosaic("NDVI")


def masking_method(cfg: FetchConfig, level: Level = "L2A") -> str:
    """One line for event.json saying how clouds and snow were masked."""
    if cfg.s2_cloud == "cloudscoreplus":
        clouds = f"Cloud Score+ cs_cdf >= {cfg.cs_plus_threshold}"
    else:
        shadow = (
            "the whole cast zone"
            if cfg.shadow_nir_dark is None
            else f"pixels with NIR < {cfg.shadow_nir_dark} in it"
        )
        clouds = (
            f"s2cloudless probability > {cfg.cloud_prob} and CDI < {cfg.cdi_threshold}, or B10 "
            f"> {cfg.cirrus_b10}; opened {cfg.cloud_open_px} px and grown {cfg.cloud_grow_px} "
            f"px at {cfg.cloud_morph_scale_m:g} m; shadows cast "
            f"{cfg.shadow_search_px * cfg.shadow_search_scale_m / 1000:g} km away from the sun, "
            f"{shadow} masked"
        )
    rule = "SCL 11" if level == "L2A" else f"NDSI > {cfg.l1c_snow_ndsi} and NIR > {L1C_SNOW_NIR}"
    verb = "grown" if cfg.snow_mode == "grow" else "eroded"
    return f"{clouds}; snow = {rule} {verb} {cfg.snow_buffer_m:g} m"


def scene_ids(col: ee.ImageCollection) -> ee.List:
    return col.aggregate_array("system:index")
