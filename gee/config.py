"""Settings of the Earth Engine graph builders, kept free of ee so that dry runs, config
parsing and docs can import them without the ee client.

Every default here is documented in docs/layers.md, with the seed line it follows (the paper's
Table 2, the dataset author's Code Editor script for dNDVI, or adugnag/gee_s1_ard); where lsd
departs from a seed, the seed's way is the default and the departure is a setting. Change both
together.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lsd import conventions as cv
from lsd.errors import InvalidFile, InvalidValue
from lsd.files import check_setting, read_toml_table
from lsd.spec import EventSpec, aoi_centroid

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

# DEMs. SRTM GL1 covers 56 S .. 60 N; outside it the Copernicus GLO-30 DEM is used. Above 60 N
# the paper used local 10 m DEMs. Iceland's (IslandsDEM v1.0, 10 m, ISN93) is in Earth Engine
# through the community catalog (gee-community-catalog.org, the page the paper cites): it is the
# default for AOIs inside Iceland, voids (sea) filled from GLO-30. Elsewhere above 60 N the
# catalog holds no 10 m DEM (no 10 m ArcticDEM: only the 5 m mosaic below, deprecated there, a
# surface model with voids, and 2 m strips), so GLO-30 stays the default and the mosaic is an
# option (FetchConfig.high_latitude_dem).
SRTM_ASSET = "USGS/SRTMGL1_003"
GLO30_ASSET = "COPERNICUS/DEM/GLO30"
ARCTICDEM_ASSET = "UMN/PGC/ArcticDEM/V2/5m"
ICELAND_DEM_ASSET = "projects/ee-landmaelingar/assets/IslandsDEMv1_10m_isn93"
# lon/lat box of Iceland with its near islands (Bjargtangar 24.53 W, Gerpir 13.50 W, the
# Vestmannaeyjar and Surtsey 63.3 N, Grimsey 66.55 N): an AOI wholly inside takes its DEM
ICELAND_BOUNDS = (-24.6, 63.2, -13.4, 66.6)
SRTM_LAT_RANGE = (-56.0, 60.0)
ARCTIC_LAT = 60.0
# DEMs that are not whole-globe catalog products: their voids are filled from GLO-30
FILLED_FROM_GLO30 = (ARCTICDEM_ASSET, ICELAND_DEM_ASSET)

S1_COLLECTION = "COPERNICUS/S1_GRD"
S2_SR_COLLECTION = "COPERNICUS/S2_SR_HARMONIZED"
S2_L1C_COLLECTION = "COPERNICUS/S2_HARMONIZED"
S2_CLOUD_PROB_COLLECTION = "COPERNICUS/S2_CLOUD_PROBABILITY"
CLOUD_SCORE_PLUS_COLLECTION = "GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED"

# Global forest canopy height 2019 (Potapov et al. 2021, GEDI + Landsat, 30 m), as the GEE
# community catalog lists it (gee-community-catalog.org/projects/gfch): heights 0-60 m, then
# 101 water, 102 snow/ice, 103 no data. The boreal prototype fills north of the GEDI range.
CANOPY_HEIGHT_ASSET = "projects/sat-io/open-datasets/GLAD/GEDI_V27"
CANOPY_HEIGHT_BOREAL_ASSET = "projects/sat-io/open-datasets/GLAD/GEDI_V25_Boreal"
CANOPY_HEIGHT_MAX_M = 60  # codes above are classes (water, snow/ice, no data), not heights

# Koppen-Geiger classes of the map the paper names (Rubel et al. 2017, 1986-2010, 5 arc
# minutes, koeppen-geiger.vu-wien.ac.at): lsd's codes 1-32, those of the map's GeoTIFF.
KG_CLASSES: dict[int, str] = dict(enumerate(
    ("Af", "Am", "As", "Aw", "BSh", "BSk", "BWh", "BWk", "Cfa", "Cfb", "Cfc", "Csa", "Csb",
     "Csc", "Cwa", "Cwb", "Cwc", "Dfa", "Dfb", "Dfc", "Dfd", "Dsa", "Dsb", "Dsc", "Dsd", "Dwa",
     "Dwb", "Dwc", "Dwd", "EF", "ET", "Ocean"), start=1))  # fmt: skip

# The same map as a public Earth Engine asset (github fsn1995/Fun-with-Google-Earth-Engine,
# README section 4 and koppen.js): its codes start at 0 (koppen.js lists Af .. ET for 0 .. 30
# and masks values above 30, the ocean), one below lsd's table, so 0 .. 31 become 1 .. 32.
KG_CLIMATE_ASSET = "users/fsn1995/Global_19862010_KG_5m"
KG_ZERO_BASED_ASSETS = frozenset({KG_CLIMATE_ASSET})

# Bands of the pre-event S2 composite that CART sees (with elevation, preVV and preVH).
CART_S2_BANDS: tuple[str, ...] = ("B2", "B3", "B4", "B8", "B11", "B12")

AssetKind = Literal["image", "collection"]


def dem_asset_for(spec: EventSpec, cfg: FetchConfig | None = None) -> str:
    """The DEM asset id for this event: the user's override, else SRTM inside its coverage
    (56 S .. 60 N, judged from the whole AOI), else Copernicus GLO-30 (or the ArcticDEM mosaic
    above 60 N when asked for). Decided on the client, so a dry run shows it and event.json
    records it before anything runs on the server."""
    if spec.dem_asset:
        return spec.dem_asset
    _, min_lat, _, max_lat = spec.aoi.bounds
    lo, hi = SRTM_LAT_RANGE
    if min_lat >= lo and max_lat <= hi:
        return SRTM_ASSET
    choice = cfg.high_latitude_dem if cfg is not None else "national"
    if choice == "national" and inside_iceland(spec.aoi):
        return ICELAND_DEM_ASSET
    if choice == "arcticdem" and aoi_centroid(spec.aoi)[1] >= ARCTIC_LAT:
        return ARCTICDEM_ASSET
    return GLO30_ASSET


def inside_iceland(aoi: Any) -> bool:
    """True when the whole AOI lies in Iceland's box (ICELAND_BOUNDS)."""
    west, south, east, north = ICELAND_BOUNDS
    lon0, lat0, lon1, lat1 = aoi.bounds
    return west <= lon0 and lon1 <= east and south <= lat0 and lat1 <= north


def kg_climate_zero_based(cfg: FetchConfig) -> bool:
    """Whether the kgClimate asset numbers its classes from 0 (Af = 0), so lsd adds one."""
    if cfg.kg_climate_codes == "auto":
        return cfg.kg_climate_asset in KG_ZERO_BASED_ASSETS
    return cfg.kg_climate_codes == "from0"


@dataclass(frozen=True)
class FetchConfig:
    """How the 15 layers are computed; one instance applies to every event of a fetch run."""

    scale: float = 10.0  # output pixel size, metres
    aoi_km2: float = 4.0  # default AOI area around a point event
    # Auxiliary layers. kgClimate: the paper's Koppen-Geiger map as shared by fsn1995 (codes
    # from 0, mapped to lsd's 1-32), or an asset of your own; None = the layer is NaN.
    kg_climate_asset: str | None = KG_CLIMATE_ASSET
    kg_climate_kind: AssetKind = "image"
    kg_climate_codes: Literal["auto", "from0", "from1"] = "auto"  # auto: from0 for fsn1995's
    canopy_height_asset: str = CANOPY_HEIGHT_ASSET
    canopy_height_kind: AssetKind = "collection"
    canopy_height_fill_asset: str | None = CANOPY_HEIGHT_BOREAL_ASSET  # None = no boreal fill
    worldcover_asset: str = "ESA/WorldCover/v200"
    # Sentinel-2 scenes and cloud masking (seed: the dataset author's Code Editor script)
    s2_level: Literal["auto", "L2A", "L1C"] = "auto"  # auto: L1C when a window lacks L2A
    s2_cloud: Literal["s2cloudless", "cloudscoreplus"] = "s2cloudless"
    cloud_prob: int = 65  # s2cloudless probability (%) above which a pixel may be cloud
    cdi_threshold: float = -0.5  # cloud displacement index below which it is cloud
    cirrus_b10: float = 0.01  # B10 (cirrus band) reflectance above which a pixel is cirrus
    cloud_open_px: int = 3  # erosion of the cloud mask, pixels of cloud_morph_scale_m
    cloud_grow_px: int = 16  # then dilation, pixels of cloud_morph_scale_m
    cloud_morph_scale_m: float = 20.0
    shadow_search_px: int = 50  # shadows cast this many pixels of shadow_search_scale_m
    shadow_search_scale_m: float = 100.0
    shadow_nir_dark: float | None = None  # None: mask the whole cast zone; x: only NIR < x
    cs_plus_threshold: float = 0.6  # Cloud Score+ cs_cdf at or above which a pixel is clear
    snow_mode: Literal["grow", "erode"] = "grow"  # grow: mask snow + 300 m (seed)
    snow_buffer_m: float = 300.0
    l1c_snow_ndsi: float = 0.4  # L1C scenes have no SCL: snow = NDSI above this and bright NIR
    # Sentinel-1 terrain flattening (seed: Vollrath et al. 2020 and adugnag/gee_s1_ard)
    look_convention: Literal["vollrath", "gee_s1_ard"] = "vollrath"
    mask_distortions: bool = True  # VV/VH NoData where layover or shadow (paper, Table 2)
    # What 1 means in the layover and shadow layers: lsd's "1=distorted", or gee_s1_ard's
    # validity masks, "1=valid" (docs/conventions.md)
    distortion_flags: Literal["1=distorted", "1=valid"] = "1=distorted"
    flattening_volume_fraction: float = 0.5  # vegetated share of the AOI at which auto = volume
    look_direction_buffer_m: float = 10_000.0  # area around the AOI for the look direction
    # DEM
    dem_resample: Literal["bilinear", "bicubic", "nearest"] = "bilinear"
    # above 60 N: national = Iceland's 10 m DEM inside Iceland, GLO-30 elsewhere (paper)
    high_latitude_dem: Literal["national", "glo30", "arcticdem"] = "national"
    # CART land cover
    cart_points_per_class: int = 100
    cart_holdout: float = 0.3
    cart_buffer_m: float = 2_000.0  # AOI buffer from which CART training points are drawn
    cart_max_nodes: int | None = None  # None = unlimited (Earth Engine's default)
    cart_tile_input: Literal["tree", "samples"] = "tree"  # what each tile request carries
    # CART's S2 image: the pre-event scene that shows most of the CART region, clouds masked,
    # snow kept (the paper's "image with minimal cloud cover"); its gaps filled from the next
    # clearest, this many scenes in all (1 = that one image alone)
    cart_s2_scenes: int = 3
    bare_rock_ndvi: float = 0.1  # WorldCover 60 pixels below this pre-event NDVI train as bare rock
    seed: int = 0

    @classmethod
    def from_toml(cls, path: Path | str, **overrides: Any) -> FetchConfig:
        """Settings from the `[fetch]` table of a TOML file, each checked against its type;
        `overrides` (e.g. the AOI size given on the command line) win over the file."""
        path = Path(path)
        table = read_toml_table(path, "fetch", "fetch settings", 'snow_mode = "erode"')
        return cls.from_mapping(table, where=str(path), **overrides)

    @classmethod
    def from_mapping(cls, values: dict[str, Any], *, where: str, **overrides: Any) -> FetchConfig:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        checked: dict[str, Any] = {}
        for key, value in values.items():
            if key not in fields:
                raise InvalidFile(
                    f"{where}: unknown fetch setting '{key}'; known: {', '.join(fields)}"
                )
            checked[key] = check_setting(key, value, hints[key], where, table="fetch")
        checked.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**checked)


# --------------------------------------------------------------------------- conventions

# FetchConfig fields set by each convention a fetch can match (lsd.conventions).
CONVENTION_FIELDS = {"flattening": "look_convention", "distortion_flags": "distortion_flags"}


def snow_mask_value(cfg: FetchConfig) -> str:
    """The snow_mask convention of a fetch: 'grow 300 m' (the seed's) or 'erode 300 m'."""
    return f"{cfg.snow_mode} {cfg.snow_buffer_m:g} m"


def fetch_conventions(cfg: FetchConfig) -> dict[str, dict[str, str]]:
    """The conventions a fetch with `cfg` records whatever its event and layers: the radar sign,
    the flag polarity, the scale and the source. What depends on the event and its layers (snow
    mask, DEM, land cover, distortion masking) is recorded by lsd.gee.event_graph.layer_conventions;
    the source joins both (`FetchRun.conventions`)."""

    where = "lsd fetch setting"
    return {
        cv.FLATTENING: cv.recorded(cfg.look_convention, f"{where} look_convention"),
        cv.DISTORTION_FLAGS: cv.recorded(cfg.distortion_flags, f"{where} distortion_flags"),
        cv.RADAR_SCALE: cv.recorded("db", "lsd fetch writes backscatter in dB (10 log10)"),
        cv.SOURCE: cv.recorded("earthengine", "lsd fetch (Earth Engine)"),
    }


def config_for_conventions(
    record: dict[str, dict[str, str]], where: str
) -> tuple[dict[str, Any], list[str]]:
    """FetchConfig values that make a fetch match `record`, and notes on what cannot be matched
    (unknown conventions keep lsd's defaults; DEM and land cover follow each event).

    Raises:
        InvalidValue: the record asks for something lsd fetch cannot make (linear backscatter,
            a catalog's flattening model).
    """

    values: dict[str, Any] = {}
    notes: list[str] = []
    defaults = FetchConfig()
    flattening = cv.known(record, cv.FLATTENING)
    if flattening is not None and flattening not in cv.FLATTENING_SIGNS:
        raise InvalidValue(
            f"{where}: flattening {flattening!r} cannot be made by lsd fetch (it makes "
            f"{' or '.join(cv.FLATTENING_SIGNS)}); fetch such stacks from that source",
            field="conventions_from",
        )
    if cv.known(record, cv.RADAR_SCALE) == "linear":
        raise InvalidValue(
            f"{where}: radar_scale is linear; lsd fetch writes dB backscatter only",
            field="conventions_from",
        )
    for name, fld in CONVENTION_FIELDS.items():
        value = cv.known(record, name)
        if value is None:
            notes.append(f"{name} unknown in {where}: lsd's default {getattr(defaults, fld)}")
        else:
            values[fld] = value
    snow = cv.known(record, cv.SNOW_MASK)
    parsed = _parse_snow(cv.canonical(cv.SNOW_MASK, snow)) if snow else None
    if parsed:
        values["snow_mode"], values["snow_buffer_m"] = parsed
    elif snow:
        notes.append(f"snow_mask {snow!r} of {where} is not one lsd fetch makes: lsd's default")
    return values, notes


def _parse_snow(text: str) -> tuple[str, float] | None:
    """'grow 300 m' -> ('grow', 300.0); None for anything else."""
    parts = text.split()
    if len(parts) == 3 and parts[0] in ("grow", "erode") and parts[2] == "m":
        try:
            return parts[0], float(parts[1])
        except ValueError:
            return None
    return None
