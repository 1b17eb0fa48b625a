"""Which catalog serves which product, under which collection id and asset keys.

Two public STAC APIs hold the inputs of the paper's stack as cloud-optimised GeoTIFFs:

    product       Planetary Computer        Earth Search
    s2 (L2A)      sentinel-2-l2a (B04, SCL) sentinel-2-l2a (red, scl)
    s1 (RTC)      sentinel-1-rtc (vv, vh)   -
    dem           cop-dem-glo-30 (data)     cop-dem-glo-30 (data)
    worldcover    esa-worldcover (map)      -

A user names one catalog (or the URL of another STAC API with the same collection ids); a
product that catalog does not offer comes from the Planetary Computer, and event.json records
the catalog of every layer. Asset keys differ between the two (Planetary Computer uses band
ids, Earth Search common names), so a band is looked up under each of its known keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lsd.errors import InvalidValue

PLANETARY_COMPUTER = "planetary-computer"
EARTH_SEARCH = "earth-search"
PRODUCTS: tuple[str, ...] = ("s2", "s1", "dem", "worldcover")

# Sentinel-2 band -> asset keys, Planetary Computer's first, then Earth Search's.
S2_ASSET_KEYS: dict[str, tuple[str, ...]] = {
    "B2": ("B02", "blue"),
    "B3": ("B03", "green"),
    "B4": ("B04", "red"),
    "B5": ("B05", "rededge1"),
    "B6": ("B06", "rededge2"),
    "B7": ("B07", "rededge3"),
    "B8": ("B08", "nir"),
    "B8A": ("B8A", "nir08"),
    "B11": ("B11", "swir16"),
    "B12": ("B12", "swir22"),
    "SCL": ("SCL", "scl"),
}
OTHER_ASSET_KEYS: dict[str, tuple[str, ...]] = {
    "VV": ("vv",),
    "VH": ("vh",),
    "DEM": ("data",),
    "WorldCover": ("map",),
}


@dataclass(frozen=True)
class Catalog:
    """One STAC API: its name (for records), root URL, the collection of each product it offers,
    and whether its asset URLs need a Planetary Computer signature (a SAS token)."""

    name: str
    url: str
    collections: dict[str, str] = field(default_factory=dict)
    signed: bool = False

    def offers(self, product: str) -> bool:
        return product in self.collections

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "collections": dict(self.collections)}


CATALOGS: dict[str, Catalog] = {
    PLANETARY_COMPUTER: Catalog(
        PLANETARY_COMPUTER,
        "https://planetarycomputer.microsoft.com/api/stac/v1",
        {
            "s2": "sentinel-2-l2a",
            "s1": "sentinel-1-rtc",
            "dem": "cop-dem-glo-30",
            "worldcover": "esa-worldcover",
        },
        signed=True,
    ),
    EARTH_SEARCH: Catalog(
        EARTH_SEARCH,
        "https://earth-search.aws.element84.com/v1",
        {"s2": "sentinel-2-l2a", "dem": "cop-dem-glo-30"},
    ),
}


def catalog_named(text: str) -> Catalog:
    """A catalog by name, or another STAC API by its http(s) URL (assumed to use the Planetary
    Computer's collection ids; its asset URLs are signed only if they point at Azure blobs)."""
    text = text.strip()
    if text in CATALOGS:
        return CATALOGS[text]
    if text.startswith(("http://", "https://")):
        url = text.rstrip("/")
        return Catalog(url, url, dict(CATALOGS[PLANETARY_COMPUTER].collections), signed=True)
    raise InvalidValue(
        f"catalog '{text}' is not one of {', '.join(CATALOGS)} or an http(s) URL of a STAC API",
        field="catalog",
    )


@dataclass(frozen=True)
class CatalogChoice:
    """The catalog of each product for one fetch: the user's where it offers the product, the
    Planetary Computer otherwise (the only public source of Sentinel-1 RTC and WorldCover)."""

    primary: Catalog

    @property
    def fallback(self) -> Catalog:
        return CATALOGS[PLANETARY_COMPUTER]

    def for_product(self, product: str) -> Catalog:
        return self.primary if self.primary.offers(product) else self.fallback

    def catalogs(self) -> list[Catalog]:
        seen: dict[str, Catalog] = {}
        for product in PRODUCTS:
            cat = self.for_product(product)
            seen.setdefault(cat.url, cat)
        return list(seen.values())

    def record(self) -> dict[str, Any]:
        return {
            product: {
                "catalog": self.for_product(product).name,
                "collection": self.for_product(product).collections[product],
            }
            for product in PRODUCTS
        }


def asset_key(assets: dict[str, Any], band: str) -> str | None:
    """The key under which an item holds `band` (B4, SCL, VV, DEM ...), or None."""
    keys = S2_ASSET_KEYS.get(band) or OTHER_ASSET_KEYS.get(band) or (band,)
    return next((k for k in keys if k in assets), None)
