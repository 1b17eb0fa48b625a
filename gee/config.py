"""Settings of the Earth Engine graph builders, kept free of ee so that dry runs, config
parsing and docs can import them without the ee client.

Every default here is documented in docs/layers.md; change both together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lsd.spec import EventSpec

# ESA WorldCover v200 class -> paper class. WorldCover has a single "bare / sparse vegetation"
# class (60); it is split into 4 (sparsely vegetated) and 7 (bare rock) by the pre-event NDVI
# (see FetchConfig.bare_rock_ndvi) so that CART sees examples of both paper classes.
WORLDCOVER_REMAP: dict[int, int] = {
    10: 2,  # tree cover
    20: 2,  # shrubland
    30: 3,  # grassland
    40: 3,  # cropland (managed grass/pasture-like cover)
    50: 1,  # built-up
    60: 4,  # bare / sparse vegetation (NDVI < bare_rock_ndvi -> 7 bare rock)
    70: 8,  # snow and ice
    80: 5,  # permanent water bodies
    90: 6,  # herbaceous wetland
    95: 6,  # mangroves
    100: 4,  # moss and lichen
}
WORLDCOVER_BARE = 60

# WorldCover classes counted as vegetated when `auto` picks the flattening model: volume
# scattering dominates in canopies and crops, direct surface scattering on bare ground, rock,
# snow and built-up surfaces. Water (80) is left out of the fraction altogether.
WORLDCOVER_VEGETATED: tuple[int, ...] = (10, 20, 30, 40, 90, 95)
WORLDCOVER_WATER = 80

# SRTM GL1 covers 56 S .. 60 N; outside it the Copernicus GLO-30 DEM is used.
SRTM_ASSET = "USGS/SRTMGL1_003"
GLO30_ASSET = "COPERNICUS/DEM/GLO30"
SRTM_LAT_RANGE = (-56.0, 60.0)


def dem_asset_for(spec: EventSpec) -> str:
    """The DEM asset id for this event: the user's override, else SRTM inside its coverage
    (56 S .. 60 N, judged from the whole AOI), else Copernicus GLO-30. Decided on the client,
    so a dry run shows it and event.json records it before anything runs on the server."""
    if spec.dem_asset:
        return spec.dem_asset
    _, min_lat, _, max_lat = spec.aoi.bounds
    lo, hi = SRTM_LAT_RANGE
    return SRTM_ASSET if (min_lat >= lo and max_lat <= hi) else GLO30_ASSET


S1_COLLECTION = "COPERNICUS/S1_GRD"
S2_SR_COLLECTION = "COPERNICUS/S2_SR_HARMONIZED"
S2_L1C_COLLECTION = "COPERNICUS/S2_HARMONIZED"
S2_CLOUD_PROB_COLLECTION = "COPERNICUS/S2_CLOUD_PROBABILITY"
CLOUD_SCORE_PLUS_COLLECTION = "GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED"

# Bands of the pre-event S2 composite that CART sees (with elevation, preVV and preVH).
CART_S2_BANDS: tuple[str, ...] = ("B2", "B3", "B4", "B8", "B11", "B12")

AssetKind = Literal["image", "collection"]


@dataclass(frozen=True)
class FetchConfig:
    """How the 15 layers are computed; one instance applies to every event of a fetch run."""

    scale: float = 10.0  # output pixel size, metres
    aoi_km2: float = 4.0  # default AOI area around a point event
    # Koppen-Geiger 1 km climate classes (Beck et al. 2018), from the GEE community catalogue.
    kg_climate_asset: str = "projects/sat-io/open-datasets/Beck/KG_V1_present_1km"
    kg_climate_kind: AssetKind = "image"
    # Global forest canopy height 2019 (Potapov et al. 2021, UMD GLAD, 30 m), tiles in a collection.
    canopy_height_asset: str = "users/potapovpeter/GEDI_V27"
    canopy_height_kind: AssetKind = "collection"
    worldcover_asset: str = "ESA/WorldCover/v200"
    # Sentinel-2 cloud masking
    s2_cloud: Literal["s2cloudless", "cloudscoreplus"] = "s2cloudless"
    cloud_prob: int = 65  # s2cloudless probability (%) above which a pixel may be cloud
    cdi_threshold: float = (
        -0.5
    )  # cloud displacement index below which it is cloud (not bright land)
    cloud_buffer_m: float = 50.0  # dilation of the cloud mask
    shadow_nir_dark: float = 0.15  # NIR reflectance below which a pixel may be cloud shadow
    shadow_project_km: float = 1.0  # how far shadows are cast from clouds along the sun azimuth
    cs_plus_threshold: float = 0.6  # Cloud Score+ cs_cdf at or above which a pixel is clear
    snow_erode_m: float = 300.0  # erosion of the SCL snow mask (drops small bright non-snow spots)
    # Sentinel-1 terrain flattening
    flattening_volume_fraction: float = (
        0.5  # vegetated share of the AOI at/above which auto = volume
    )
    look_direction_buffer_m: float = 10_000.0  # area around the AOI for the look direction estimate
    # CART land cover
    cart_points_per_class: int = 100
    cart_holdout: float = 0.3
    cart_buffer_m: float = 2_000.0  # AOI buffer from which CART training points are drawn
    cart_max_nodes: int | None = None  # None = unlimited (Earth Engine's default)
    bare_rock_ndvi: float = 0.1  # WorldCover 60 pixels below this pre-event NDVI train as bare rock
    seed: int = 0
