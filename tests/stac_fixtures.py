"""A small synthetic world in the exact layout of the STAC catalogs, for offline tests.

`make_world(folder)` writes cloud-optimised GeoTIFFs and the STAC items and collections that
point at them, laid out as the Planetary Computer publishes them (sentinel-2-l2a with band ids
B02 ... SCL at 10 and 20 m, sentinel-1-rtc with vv/vh in linear gamma0, cop-dem-glo-30 and
esa-worldcover tiles in EPSG:4326) and, for Earth Search, the same Sentinel-2 scenes under its
common-name asset keys. Every value is a closed-form function of the UTM position, so tests
compute the expected layer values by hand from the COGs.

The world: an 8 x 8 km square in UTM 32N around (9.0 E, 45.0 N), stripes of land cover 1 km
wide, a plane rising east (slope atan 0.2) under event ev-a and a north-south ridge with 60
degree faces under event ev-b, a fresh scar in ev-a after the event, a cloud in the far
corner of one pre-event scene and a snow patch beside ev-b in one post-event scene.

`make_world(folder, url, ALPINE)` writes a variant (the `alpine` event): a ridge whose 38
degree east face is in layover only for a scene that sees it from near range and whose 52
degree west face is in shadow only for scenes that see it from far range, so two post-event
scenes disagree on the flags; and snow (SCL 11, snow's reflectance) in the pre-event scene
that is the clearest, the other pre-event scene clouded over part of the land-cover region.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin

EPSG = 32632
X0, Y1, SIDE = 496_000.0, 4_987_000.0, 8_000.0  # the world, UTM 32N
EVENT_CENTRES = {"ev-a": (498_500.0, 4_983_500.0), "ev-b": (501_500.0, 4_981_500.0)}
PREDICT_CENTRE = (499_500.0, 4_985_500.0)
SCAR = (498_300.0, 4_983_300.0, 498_700.0, 4_983_700.0)  # x0, y0, x1, y1: bare after the event
CLOUD = (503_000.0, 4_986_000.0, 504_000.0, 4_987_000.0)  # SCL 9 in pre2
SNOW = (502_200.0, 4_981_000.0, 502_400.0, 4_982_000.0)  # SCL 11 in post2
RIDGE_X = 501_500.0
RIDGE_TAN = math.tan(math.radians(60.0))
PLANE_GRADIENT = 0.2  # m per m, rising east, west of x = 500000
STRIPES = (30, 50, 10, 30, 60, 10, 80, 60)  # WorldCover class per 1 km stripe, west to east
# reflectance B2, B3, B4, B8, B11, B12 per WorldCover class
REFLECTANCE = {
    10: (0.03, 0.05, 0.03, 0.35, 0.15, 0.07),
    30: (0.04, 0.07, 0.05, 0.30, 0.22, 0.12),
    50: (0.12, 0.13, 0.14, 0.20, 0.25, 0.22),
    60: (0.15, 0.17, 0.20, 0.25, 0.32, 0.28),
    80: (0.05, 0.04, 0.03, 0.01, 0.005, 0.003),
}
BARE = REFLECTANCE[60]
S2_BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
ES_KEYS = {
    "B02": "blue",
    "B03": "green",
    "B04": "red",
    "B08": "nir",
    "B11": "swir16",
    "B12": "swir22",
    "SCL": "scl",
}
# scene id, date, baseline, B8 factor west / east of x = 500000
S2_SCENES = (
    ("S2A_MSIL2A_20200605T101031_R022_T32TMQ", "2020-06-05T10:20:00Z", "02.14", 1.0, 1.0),
    ("S2B_MSIL2A_20200620T101031_R022_T32TMQ", "2020-06-20T10:20:00Z", "02.14", 1.1, 0.9),
    ("S2A_MSIL2A_20200710T101031_R022_T32TMQ", "2020-07-10T10:20:00Z", "04.00", 1.0, 1.0),
    ("S2B_MSIL2A_20200725T101031_R022_T32TMQ", "2020-07-25T10:20:00Z", "04.00", 1.05, 1.05),
)
NO_B11_SCENE = ("S2A_MSIL2A_20200730T101031_R022_T32TMQ", "2020-07-30T10:20:00Z")
EVENT_DATE = "2020-07-01"
# RTC: id, time, pass, VV factor (x the base), crs (None = the world's)
RTC_SCENES = (
    (
        "S1A_IW_GRDH_1SDV_20200603T053412_20200603T053437_032845_03CDCA_rtc",
        "2020-06-03T05:34:24Z",
        "descending",
        1.0,
        None,
    ),
    (
        "S1A_IW_GRDH_1SDV_20200615T053412_20200615T053437_033020_03D2F1_rtc",
        "2020-06-15T05:34:24Z",
        "descending",
        1.2,
        None,
    ),
    (
        "S1A_IW_GRDH_1SDV_20200611T172015_20200611T172040_032963_03D13B_rtc",
        "2020-06-11T17:20:27Z",
        "ascending",
        1.0,
        None,
    ),
    (
        "S1A_IW_GRDH_1SDV_20200709T053412_20200709T053437_033195_03D82C_rtc",
        "2020-07-09T05:34:24Z",
        "descending",
        0.8,
        None,
    ),
    (
        "S1A_IW_GRDH_1SDV_20200721T053412_20200721T053437_033370_03DD8A_rtc",
        "2020-07-21T05:34:24Z",
        "descending",
        None,
        32633,
    ),
)
RTC_CONSTANT_VV = 0.05  # the scene in another zone and at 20 m: constant, so any warp gives it
HEADING_DESCENDING = 192.0  # the generator's footprint only; lsd computes its own
KG_CODE = 13  # Csb
# the variant world of the `alpine` event (module docstring)
ALPINE_CENTRE = (501_500.0, 4_984_000.0)
ALPINE_EAST_DEG, ALPINE_WEST_DEG = 38.0, 52.0  # faces of its ridge at RIDGE_X
PRE_SNOW = (501_100.0, 4_984_100.0, 501_400.0, 4_984_400.0)  # SCL 11 in pre1, the clearest
ALPINE_CLOUD = (501_600.0, 4_983_200.0, 502_000.0, 4_983_400.0)  # SCL 9 in pre2
SNOW_REFLECTANCE = (0.85, 0.85, 0.84, 0.75, 0.10, 0.08)
# the footprint moved across track (m, towards far range): the alpine world 15 km from the
# near edge (incidence about 30 deg) or from the far edge (about 45 deg)
NEAR_RANGE_M, FAR_RANGE_M = 110_000.0, -110_000.0
ALPINE_RTC = (
    (RTC_SCENES[0][0], RTC_SCENES[0][1], "descending", 1.0, None),  # pre, far range
    (RTC_SCENES[1][0], RTC_SCENES[1][1], "descending", 1.2, None),  # pre, far range
    (RTC_SCENES[3][0], RTC_SCENES[3][1], "descending", 0.5, None),  # post, near range
    (RTC_SCENES[4][0], RTC_SCENES[4][1], "descending", 2.0, None),  # post, far range
)
ALPINE_SHIFT = {
    ALPINE_RTC[0][0]: FAR_RANGE_M,
    ALPINE_RTC[1][0]: FAR_RANGE_M,
    ALPINE_RTC[2][0]: NEAR_RANGE_M,
    ALPINE_RTC[3][0]: FAR_RANGE_M,
}


def to_lonlat(x: Any, y: Any) -> tuple[Any, Any]:
    return Transformer.from_crs(EPSG, 4326, always_xy=True).transform(x, y)


def to_utm(lon: Any, lat: Any) -> tuple[Any, Any]:
    return Transformer.from_crs(4326, EPSG, always_xy=True).transform(lon, lat)


def land_class(x: np.ndarray) -> np.ndarray:
    stripe = np.clip(((x - X0) // 1000).astype(int), 0, len(STRIPES) - 1)
    return np.asarray(STRIPES)[stripe]


def ripple(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A deterministic texture (+-5 %) so neighbouring pixels differ."""
    return 1.0 + 0.05 * np.sin(x / 37.0) * np.cos(y / 53.0)


def inside(x: np.ndarray, y: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    return (x >= box[0]) & (x < box[2]) & (y >= box[1]) & (y < box[3])


def reflectance(
    x: np.ndarray, y: np.ndarray, band: int, scene: int, snow: tuple | None = None
) -> np.ndarray:
    """Reflectance of band index 0..5 (B2 ... B12) at UTM (x, y) in scene 0..3; snow's in the
    `snow` box of scene 0."""
    cls = land_class(x)
    table = np.array([REFLECTANCE[c][band] for c in STRIPES])
    values = table[np.clip(((x - X0) // 1000).astype(int), 0, len(STRIPES) - 1)] * ripple(x, y)
    if scene >= 2:  # after the event: the scar is bare ground
        values = np.where(inside(x, y, SCAR), BARE[band] * ripple(x, y), values)
    if band == 3:  # B8: the scene's greenness factor
        west, east = S2_SCENES[scene][3], S2_SCENES[scene][4]
        values = values * np.where(x < 500_000.0, west, east)
    if snow is not None and scene == 0:
        values = np.where(inside(x, y, snow), SNOW_REFLECTANCE[band] * ripple(x, y), values)
    del cls
    return values


def elevation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    plane = 500.0 + PLANE_GRADIENT * (x - X0)
    ridge = 2000.0 - RIDGE_TAN * np.abs(x - RIDGE_X)
    return np.where(x < 500_000.0, plane, ridge) + 0.0 * y


def alpine_elevation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The plane in the west, in the east a ridge with a 38 deg east and a 52 deg west face."""
    plane = 500.0 + PLANE_GRADIENT * (x - X0)
    d = x - RIDGE_X
    east, west = math.tan(math.radians(ALPINE_EAST_DEG)), math.tan(math.radians(ALPINE_WEST_DEG))
    ridge = 2000.0 - np.where(d > 0, east * d, -west * d)
    return np.where(x < 500_000.0, plane, ridge) + 0.0 * y


def rtc_base(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return 0.1 * ripple(x, y)


def _centres(transform: Any, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    xs, ys = rasterio.transform.xy(
        transform, rows.ravel() - 0.5, cols.ravel() - 0.5, offset="center"
    )
    return np.asarray(xs).reshape(height, width), np.asarray(ys).reshape(height, width)


def write_cog(path: Path, data: np.ndarray, crs: Any, transform: Any, nodata: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(
        driver="COG",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype=str(data.dtype),
        crs=crs,
        transform=transform,
        nodata=nodata,
        compress="deflate",
        blocksize=256,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def _poly(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    xs, ys = to_lonlat([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0])
    return {
        "type": "Polygon",
        "coordinates": [[[float(a), float(b)] for a, b in zip(xs, ys, strict=True)]],
    }


def _bbox(geom: dict[str, Any]) -> list[float]:
    xs = [p[0] for p in geom["coordinates"][0]]
    ys = [p[1] for p in geom["coordinates"][0]]
    return [min(xs), min(ys), max(xs), max(ys)]


def _item(
    item_id: str,
    collection: str,
    when: str,
    geom: dict[str, Any],
    props: dict[str, Any],
    assets: dict[str, Any],
    extensions: list[str],
) -> dict[str, Any]:
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": extensions,
        "id": item_id,
        "collection": collection,
        "geometry": geom,
        "bbox": _bbox(geom),
        "properties": {"datetime": when, **props},
        "links": [],
        "assets": assets,
    }


def _asset(
    href: str,
    title: str,
    shape: tuple[int, int],
    transform: Any,
    dtype: str,
    nodata: Any,
    res: float,
) -> dict[str, Any]:
    return {
        "href": href,
        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
        "title": title,
        "roles": ["data"],
        "gsd": res,
        "proj:shape": list(shape),
        "proj:transform": [
            transform.a,
            transform.b,
            transform.c,
            transform.d,
            transform.e,
            transform.f,
        ],
        "raster:bands": [{"nodata": nodata, "data_type": dtype, "spatial_resolution": res}],
    }


PROJ = "https://stac-extensions.github.io/projection/v1.0.0/schema.json"
RASTER = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
EO = "https://stac-extensions.github.io/eo/v1.0.0/schema.json"
SAT = "https://stac-extensions.github.io/sat/v1.0.0/schema.json"
SAR = "https://stac-extensions.github.io/sar/v1.0.0/schema.json"


@dataclass(frozen=True)
class Variant:
    """What a world may differ in; the defaults are the shared world of the module."""

    cloud: tuple[float, float, float, float] = CLOUD  # SCL 9 in pre2
    pre_snow: tuple[float, float, float, float] | None = None  # SCL 11 and snow in pre1
    terrain: Callable[[np.ndarray, np.ndarray], np.ndarray] = elevation
    rtc: tuple = RTC_SCENES
    shift_m: dict[str, float] = field(default_factory=dict)  # footprint across track, by id


ALPINE = Variant(
    cloud=ALPINE_CLOUD,
    pre_snow=PRE_SNOW,
    terrain=alpine_elevation,
    rtc=ALPINE_RTC,
    shift_m=ALPINE_SHIFT,
)


@dataclass
class World:
    files: Path
    pc_items: list[dict[str, Any]]
    es_items: list[dict[str, Any]]
    collections: dict[str, dict[str, Any]]


def _collection(cid: str, title: str) -> dict[str, Any]:
    return {
        "type": "Collection",
        "id": cid,
        "stac_version": "1.0.0",
        "title": title,
        "description": title,
        "license": "proprietary",
        "links": [],
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [["2014-10-10T00:00:00Z", None]]},
        },
    }


def make_world(folder: Path, base_url: str, variant: Variant | None = None) -> World:
    """Write every COG under folder/files and return the items (hrefs under base_url/files);
    the shared world, or a variant of it."""
    variant = variant or Variant()
    files = folder / "files"
    href = lambda rel: f"{base_url}/files/{rel}"  # noqa: E731
    world_geom = _poly(X0, Y1 - SIDE, X0 + SIDE, Y1)
    pc: list[dict[str, Any]] = []
    es: list[dict[str, Any]] = []
    # ---- Sentinel-2 L2A
    for scene, (sid, when, baseline, _w, _e) in enumerate(S2_SCENES):
        assets, es_assets = {}, {}
        offset = 1000 if baseline >= "04.00" else 0
        for res in (10.0, 20.0):
            n = int(SIDE / res)
            transform = from_origin(X0, Y1, res, res)
            x, y = _centres(transform, n, n)
            bands = [b for b in S2_BANDS if (b in ("B02", "B03", "B04", "B08")) == (res == 10.0)]
            for band in bands:
                refl = reflectance(x, y, S2_BANDS.index(band), scene, variant.pre_snow)
                dn = np.clip(np.round(refl * 10_000) + offset, 1, 65535).astype("uint16")
                rel = f"s2/{sid}/{band}.tif"
                write_cog(files / rel, dn, f"EPSG:{EPSG}", transform, 0)
                assets[band] = _asset(href(rel), band, dn.shape, transform, "uint16", 0, res)
            if res == 20.0:
                scl = np.full((n, n), 4, dtype="uint8")
                scl[land_class(x) == 80] = 6
                boxes = {1: (variant.cloud, 9), 3: (SNOW, 11), 0: (variant.pre_snow, 11)}
                box, code = boxes.get(scene, (None, 0))
                if box:
                    scl[inside(x, y, box)] = code
                rel = f"s2/{sid}/SCL.tif"
                write_cog(files / rel, scl, f"EPSG:{EPSG}", transform, 0)
                assets["SCL"] = _asset(href(rel), "SCL", scl.shape, transform, "uint8", 0, res)
        props = {
            "platform": "Sentinel-2A",
            "constellation": "Sentinel 2",
            "instruments": ["msi"],
            "eo:cloud_cover": 3.5,
            "s2:mgrs_tile": "32TMQ",
            "s2:processing_baseline": baseline,
            "s2:mean_solar_azimuth": 150.0,
            "s2:mean_solar_zenith": 30.0,
            "sat:orbit_state": "descending",
            "sat:relative_orbit": 22,
            "proj:epsg": EPSG,
        }
        pc.append(
            _item(sid, "sentinel-2-l2a", when, world_geom, props, assets, [EO, PROJ, RASTER, SAT])
        )
        es_props = {**props, "view:sun_azimuth": 150.0, "earthsearch:boa_offset_applied": False}
        del es_props["s2:mean_solar_azimuth"]
        es_assets = {ES_KEYS[k]: v for k, v in assets.items()}
        es_id = f"S2{'AB'[scene % 2]}_32TMQ_{when[:10].replace('-', '')}_0_L2A"
        es.append(
            _item(
                es_id,
                "sentinel-2-l2a",
                when,
                world_geom,
                es_props,
                es_assets,
                [EO, PROJ, RASTER, SAT],
            )
        )
    # a post-event scene without its B11 asset: left out with a warning
    last = dict(pc[-1])
    incomplete = {k: v for k, v in last["assets"].items() if k != "B11"}
    pc.append(
        _item(
            NO_B11_SCENE[0],
            "sentinel-2-l2a",
            NO_B11_SCENE[1],
            world_geom,
            last["properties"] | {},
            incomplete,
            last["stac_extensions"],
        )
    )
    # ---- Sentinel-1 RTC
    cx, cy = X0 + SIDE / 2, Y1 - SIDE / 2
    for sid, when, state, factor, crs in variant.rtc:
        heading = (
            HEADING_DESCENDING if state == "descending" else (HEADING_DESCENDING + 156.0) % 360
        )
        footprint = _frame(cx, cy, heading, variant.shift_m.get(sid, 0.0))
        assets = {}
        for pol, scale in (("vv", 1.0), ("vh", 0.2)):
            if crs is None:
                transform = from_origin(X0, Y1, 10.0, 10.0)
                x, y = _centres(transform, int(SIDE / 10), int(SIDE / 10))
                data = (rtc_base(x, y) * factor * scale).astype("float32")
                epsg, res = EPSG, 10.0
            else:  # another UTM zone, 20 m: a constant, so every warp returns exactly it
                tx = Transformer.from_crs(EPSG, crs, always_xy=True)
                ex, ey = tx.transform(
                    [X0, X0 + SIDE, X0, X0 + SIDE], [Y1, Y1, Y1 - SIDE, Y1 - SIDE]
                )
                x0, y1 = math.floor(min(ex) / 20) * 20 - 2000, math.ceil(max(ey) / 20) * 20 + 2000
                n = int((max(ex) - min(ex) + 4000) / 20) + 2
                transform = from_origin(x0, y1, 20.0, 20.0)
                data = np.full((n, n), RTC_CONSTANT_VV * scale, dtype="float32")
                epsg, res = crs, 20.0
            rel = f"s1/{sid}/{pol}.tif"
            write_cog(files / rel, data, f"EPSG:{epsg}", transform, -32768)
            assets[pol] = _asset(
                href(rel), pol.upper(), data.shape, transform, "float32", -32768, res
            )
        props = {
            "platform": "SENTINEL-1A",
            "constellation": "Sentinel-1",
            "sar:instrument_mode": "IW",
            "sar:polarizations": ["VV", "VH"],
            "sar:product_type": "GRD",
            "sar:frequency_band": "C",
            "sar:observation_direction": "right",
            "sat:orbit_state": state,
            "sat:relative_orbit": 66 if state == "descending" else 15,
            "sat:absolute_orbit": 32845,
            "s1:processing_level": "1",
            "s1:resolution": "high",
            "proj:epsg": epsg,
        }
        pc.append(
            _item(sid, "sentinel-1-rtc", when, footprint, props, assets, [SAR, SAT, PROJ, RASTER])
        )
    # ---- GLO-30 (EPSG:4326, 1 arc second) and WorldCover (1/12000 degree)
    lon0, lat0 = to_lonlat(X0 - 3000, Y1 - SIDE - 3000)
    lon1, lat1 = to_lonlat(X0 + SIDE + 3000, Y1 + 3000)
    for name, step, maker, dtype, nodata, coll, key in (
        (
            "Copernicus_DSM_COG_10_N44_00_E008_00_DEM",
            1 / 3600,
            variant.terrain,
            "float32",
            -32767.0,
            "cop-dem-glo-30",
            "data",
        ),
        (
            "ESA_WorldCover_10m_2021_v200_N45E009",
            1 / 12000,
            None,
            "uint8",
            0,
            "esa-worldcover",
            "map",
        ),
    ):
        w0, s0 = math.floor(lon0 / step) * step, math.floor(lat0 / step) * step
        e1, n1 = math.ceil(lon1 / step) * step, math.ceil(lat1 / step) * step
        width, height = round((e1 - w0) / step), round((n1 - s0) / step)
        transform = from_origin(w0, n1, step, step)
        lons, lats = _centres(transform, width, height)
        ux, uy = to_utm(lons, lats)
        data = (maker(ux, uy) if maker else land_class(ux)).astype(dtype)
        rel = f"{coll}/{name}.tif"
        write_cog(files / rel, data, "EPSG:4326", transform, nodata)
        geom = {
            "type": "Polygon",
            "coordinates": [[[w0, s0], [e1, s0], [e1, n1], [w0, n1], [w0, s0]]],
        }
        props = {"proj:epsg": 4326, "platform": "TanDEM-X" if key == "data" else "sentinel-2"}
        if key == "map":
            props["esa_worldcover:product_version"] = "2.0.0"
        when = "2021-04-22T00:00:00Z" if key == "data" else "2021-01-01T00:00:00Z"
        assets = {key: _asset(href(rel), key, data.shape, transform, dtype, nodata, step)}
        item = _item(name, coll, when, geom, props, assets, [PROJ, RASTER])
        pc.append(item)
        if key == "data":
            es.append(item)
    # an older WorldCover tile that must not be used
    old = json.loads(json.dumps(pc[-1]))
    old["id"], old["properties"]["esa_worldcover:product_version"] = (
        "ESA_WorldCover_10m_2020_v100_N45E009",
        "1.0.0",
    )
    old["properties"]["datetime"] = "2020-01-01T00:00:00Z"
    old["assets"]["map"]["href"] = href("esa-worldcover/missing_v100.tif")
    pc.append(old)
    # ---- the Koeppen-Geiger map behind kg_climate_file (served, downloaded once with pooch)
    transform = from_origin(8.0, 46.0, 0.25, 0.25)
    write_cog(files / "aux/kg.tif", np.full((8, 8), KG_CODE, "uint8"), "EPSG:4326", transform, 0)
    collections = {
        c: _collection(c, c)
        for c in ("sentinel-2-l2a", "sentinel-1-rtc", "cop-dem-glo-30", "esa-worldcover")
    }
    return World(files, pc, es, collections)


def _frame(cx: float, cy: float, heading: float, shift_m: float = 0.0) -> dict[str, Any]:
    """An IW slice footprint (250 km across, 170 km along track) centred on (cx, cy) moved
    `shift_m` across track towards far range (the right of the heading)."""
    h = math.radians(heading)
    along = np.array([math.sin(h), math.cos(h)])
    across = np.array([math.cos(h), -math.sin(h)])
    centre = np.array([cx, cy]) + shift_m * across
    corners = [
        centre + a * 85_000 * along + b * 125_000 * across
        for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1))
    ]
    xs, ys = to_lonlat([c[0] for c in corners], [c[1] for c in corners])
    return {
        "type": "Polygon",
        "coordinates": [[[float(a), float(b)] for a, b in zip(xs, ys, strict=True)]],
    }


def events_csv(folder: Path, inventory: Path) -> Path:
    """events.csv with the two events (1 km2 each), both mapped by the scar's inventory (ev-b,
    the validation event, must be labelled: training refuses validation events with no label)."""
    rows = ["id,date,lon,lat,inventory,role"]
    for eid, (x, y) in EVENT_CENTRES.items():
        lon, lat = to_lonlat(x, y)
        inv = inventory.name
        rows.append(
            f"{eid},{EVENT_DATE},{lon:.8f},{lat:.8f},{inv},{'train' if eid == 'ev-a' else 'val'}"
        )
    path = folder / "events.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def inventory(folder: Path) -> Path:
    path = folder / "scar.geojson"
    feature = {"type": "Feature", "properties": {}, "geometry": _poly(*SCAR)}
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    return path


def settings(folder: Path, kg_url: str, cache: Path, **stac: Any) -> Path:
    """Small masks and buffers so the tests run in seconds; windows of 64 px so a 100 px event
    is stitched from four."""
    path = folder / "settings.toml"
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in stac.items())
    path.write_text(
        "[fetch]\ncloud_grow_px = 2\nshadow_search_px = 5\n"
        "cart_points_per_class = 30\ncart_buffer_m = 300.0\n\n"
        f'[stac]\nwindow_px = 64\ntimeout_s = 5.0\nkg_climate_file = "{kg_url}"\n'
        f'cache_dir = "{cache}"\n{extra}'
    )
    return path


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)
