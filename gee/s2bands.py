"""The `s2bands` and `ndvi` layer groups: Sentinel-2 bands and NDVI of the greenest-pixel
composites, before and after the event.

The bands come from the very scenes, masks and pixel choice that dNDVI uses (s2.masked_collection
and qualityMosaic on NDVI), so a band layer and dNDVI always describe the same acquisition at a
pixel. The 20 m bands are resampled bilinearly onto the 10 m grid per scene, before the mosaic:
Earth Engine resamples each input of a composite, not the composite, and the default (nearest)
would print the 20 m pixel blocks into the stack. NDVI, made from the 10 m bands B4 and B8, is
untouched, so the pixel choice is the one dNDVI makes.
"""

from __future__ import annotations

import ee

from lsd.gee import s2
from lsd.layergroups import S2_BANDS, S2_BANDS_20M, ndvi_of, s2_band_of

REFLECTANCE_PER_DN = 1 / s2.REFLECTANCE_SCALE  # both levels store reflectance x 10000
LEVEL_VALUES = {
    "L2A": "surface reflectance (L2A, COPERNICUS/S2_SR_HARMONIZED), DN x 1e-4",
    "L1C": "top-of-atmosphere reflectance (L1C fallback, COPERNICUS/S2_HARMONIZED), DN x 1e-4",
}
RESAMPLING_20M = "bilinear"


def resampled_20m(col: ee.ImageCollection) -> ee.ImageCollection:
    """The masked scenes with their 20 m bands set to bilinear resampling."""

    def one(img: ee.Image) -> ee.Image:
        img = ee.Image(img)
        smooth = img.select(list(S2_BANDS_20M)).resample(RESAMPLING_20M)
        return img.addBands(smooth, None, True)

    return col.map(one)


def band_composite(masked: ee.ImageCollection) -> ee.Image:
    """Greenest-pixel composite of every band of S2_BANDS, as reflectance (0-1): surface
    reflectance from L2A scenes, top of atmosphere where the event fell back to L1C."""
    composite = s2.greenest(resampled_20m(masked))
    return composite.select(list(S2_BANDS)).multiply(REFLECTANCE_PER_DN)


def handles(name: str) -> bool:
    return s2_band_of(name) is not None or ndvi_of(name) is not None


def layer(name: str, band_composites: dict[str, ee.Image], greenest: dict[str, ee.Image]):
    """One layer of the groups: 'preB8A' from the band composite, 'postNDVI' from dNDVI's."""
    band = s2_band_of(name)
    if band is not None:
        window, b = band
        return band_composites[window].select(b)
    window = ndvi_of(name)
    if window is None:
        raise ValueError(f"{name} is not a layer of the s2bands or ndvi groups")
    return greenest[window].select("NDVI")


def provenance(names: set[str], level: str) -> dict[str, object]:
    """How the band and NDVI layers among `names` were made from `level` scenes, for
    event.json: plain values."""
    out: dict[str, object] = {}
    if any(s2_band_of(n) for n in names):
        out["s2_bands"] = {
            "composite": "greenest pixel (qualityMosaic on NDVI), the scenes and masks of dNDVI",
            "values": LEVEL_VALUES[level],
            "resampling_20m": f"{RESAMPLING_20M} per scene onto the 10 m grid: "
            + ", ".join(S2_BANDS_20M),
        }
    if any(ndvi_of(n) for n in names):
        out["s2_ndvi"] = "NDVI (B8 - B4) / (B8 + B4) of the greenest-pixel composite of dNDVI"
    return out
