"""Elevation, slope and the two auxiliary layers (Koppen-Geiger climate, canopy height).

The DEM is chosen on the client from the AOI's latitude so that the choice is visible in the
graph and in event.json before anything runs on the server.
"""

from __future__ import annotations

import ee

from lsd.gee.config import GLO30_ASSET, AssetKind, FetchConfig


def dem_image(asset_id: str) -> ee.Image:
    """Elevation (m) as a single band named 'elevation'.

    GLO-30 is a collection of tiles in differing projections; a plain mosaic takes a default
    WGS84 1-degree projection, which makes Terrain.slope meaningless, so the mosaic gets the
    tiles' own projection back. An override is read as an Image asset's first band.
    """
    if asset_id == GLO30_ASSET:
        tiles = ee.ImageCollection(GLO30_ASSET).select("DEM")
        proj = tiles.first().projection()
        return tiles.mosaic().setDefaultProjection(proj).rename("elevation")
    return ee.Image(asset_id).select([0]).rename("elevation")


def slope_deg(dem: ee.Image) -> ee.Image:
    """Terrain slope in degrees, named 'slope'."""
    return ee.Terrain.slope(dem).rename("slope")


def load_first_band(asset_id: str, kind: AssetKind, name: str) -> ee.Image:
    """First band of an Image asset, or of the mosaic of an ImageCollection asset."""
    image = ee.ImageCollection(asset_id).mosaic() if kind == "collection" else ee.Image(asset_id)
    return image.select([0]).rename(name)


def kg_climate(cfg: FetchConfig) -> ee.Image:
    return load_first_band(cfg.kg_climate_asset, cfg.kg_climate_kind, "kgClimate")


def canopy_height(cfg: FetchConfig) -> ee.Image:
    return load_first_band(cfg.canopy_height_asset, cfg.canopy_height_kind, "canopyHeight")


def masked_layer(name: str) -> ee.Image:
    """A float32 layer with no valid pixel: what an unavailable asset becomes (NaN on download)."""
    return ee.Image.constant(0).toFloat().updateMask(ee.Image.constant(0)).rename(name)


def asset_available(asset_id: str) -> bool:
    """True if the caller's credentials can read `asset_id`. Contacts the server (one call)."""
    try:
        return ee.data.getInfo(asset_id) is not None
    except ee.EEException:
        return False
