"""Elevation, slope and the two auxiliary layers (Koppen-Geiger climate, canopy height).

The DEM is chosen on the client from the AOI's latitude so that the choice is visible in the
graph and in event.json before anything runs on the server.
"""

from __future__ import annotations

import ee

from lsd.gee.config import (
    CANOPY_HEIGHT_MAX_M,
    FILLED_FROM_GLO30,
    GLO30_ASSET,
    KG_CLASSES,
    SRTM_ASSET,
    AssetKind,
    FetchConfig,
    kg_climate_zero_based,
)


def dem_image(asset_id: str, aoi: ee.Geometry, cfg: FetchConfig) -> ee.Image:
    """Elevation (m) as one band 'elevation', resampled as cfg.dem_resample says.

    Resampling matters because every terrain product (slope, aspect, the flattening factor,
    the local incidence angle) is computed on the 10 m output grid: with nearest neighbour a
    30 m DEM becomes 3 x 3 blocks of equal height, whose edges show as 30 m stripes in slope
    and in flattened backscatter (gee_s1_ard issue #4; its wrapper now resamples bilinearly).
    """
    if asset_id == GLO30_ASSET:
        image = glo30_mosaic(aoi)
    elif asset_id in FILLED_FROM_GLO30:
        # the ArcticDEM mosaic has voids, and Iceland's DEM ends at the coast: GLO-30 fills
        # them so the terrain products stay continuous; the grid stays the fine DEM's
        fine = ee.Image(asset_id).select([0])
        image = fine.unmask(glo30_mosaic(aoi), False).setDefaultProjection(fine.projection())
    elif asset_id == SRTM_ASSET:
        image = ee.Image(SRTM_ASSET).select("elevation")
    else:
        image = ee.Image(asset_id).select([0])
    if cfg.dem_resample != "nearest":
        image = image.resample(cfg.dem_resample)
    return image.rename("elevation")


def glo30_mosaic(aoi: ee.Geometry) -> ee.Image:
    """The GLO-30 tiles over the AOI, mosaicked in the projection of a tile that intersects it.

    A plain mosaic takes a default WGS84 1-degree projection, which makes Terrain.slope
    meaningless; GLO-30 tiles also differ in longitude spacing with latitude, so the projection
    must come from a tile at the AOI, not the collection's first tile (which lies elsewhere).
    """
    tiles = ee.ImageCollection(GLO30_ASSET).filterBounds(aoi).select("DEM")
    proj = tiles.first().projection()
    return tiles.mosaic().setDefaultProjection(proj)


def slope_deg(dem: ee.Image) -> ee.Image:
    """Terrain slope in degrees, named 'slope'."""
    return ee.Terrain.slope(dem).rename("slope")


def load_first_band(asset_id: str, kind: AssetKind, name: str) -> ee.Image:
    """First band of an Image asset, or of the mosaic of an ImageCollection asset."""
    image = ee.ImageCollection(asset_id).mosaic() if kind == "collection" else ee.Image(asset_id)
    return image.select([0]).rename(name)


def kg_climate(cfg: FetchConfig) -> ee.Image:
    """The Koppen-Geiger class codes of the configured map in lsd's table (1 Af .. 32 Ocean):
    a map numbered from 0 (fsn1995's asset) is shifted up by one, any other code is masked."""
    if not cfg.kg_climate_asset:
        return masked_layer("kgClimate")
    image = load_first_band(cfg.kg_climate_asset, cfg.kg_climate_kind, "kgClimate")
    if kg_climate_zero_based(cfg):
        codes = sorted(KG_CLASSES)
        image = image.remap([c - 1 for c in codes], codes).rename("kgClimate")
    return image


def canopy_height(cfg: FetchConfig) -> ee.Image:
    """Canopy height in metres; the product's class codes above 60 (101 water, 102 snow/ice,
    103 no data) are masked, so they become NaN instead of 100 m trees. Where the GEDI-range
    map has no height, the boreal prototype fills in (if configured)."""
    height = _heights(load_first_band(cfg.canopy_height_asset, cfg.canopy_height_kind, "h"))
    if cfg.canopy_height_fill_asset:
        fill = _heights(load_first_band(cfg.canopy_height_fill_asset, "collection", "h"))
        height = height.unmask(fill, False)
    return height.rename("canopyHeight")


def _heights(image: ee.Image) -> ee.Image:
    return image.updateMask(image.lte(CANOPY_HEIGHT_MAX_M))


def masked_layer(name: str) -> ee.Image:
    """A float32 layer with no valid pixel: what an unavailable asset becomes (NaN on download)."""
    return ee.Image.constant(0).toFloat().updateMask(ee.Image.constant(0)).rename(name)


def asset_available(asset_id: str) -> bool:
    """True if the caller's credentials can read `asset_id`. Contacts the server (one call)."""
    try:
        return ee.data.getInfo(asset_id) is not None
    except ee.EEException:
        return False
