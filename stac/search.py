"""Searching a STAC API: the items of one product over an area and a date window.

A catalog that does not answer within the configured timeout (30 s by default), or answers
with an error, becomes one ServiceUnavailable line naming the catalog and its URL; pages are
followed by pystac-client, and items are sorted by time so that every fetch sees them in the
same order. Windows are [start, end) as everywhere in lsd: STAC intervals include their end, so
items at or after the end instant are dropped here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import requests
import shapely.geometry

from lsd.errors import ServiceUnavailable
from lsd.spec import Window
from lsd.stac.catalogs import Catalog

WORLDCOVER_VERSION = "2.0.0"  # ESA WorldCover v200 (2021), as the Earth Engine path uses


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _network_errors() -> tuple[type[BaseException], ...]:
    from pystac_client.exceptions import APIError

    return (requests.exceptions.RequestException, APIError, OSError, ValueError)


class CatalogClient:
    """An opened STAC API (opened lazily, once), searched per product."""

    def __init__(self, catalog: Catalog, timeout_s: float) -> None:
        self.catalog = catalog
        self.timeout_s = timeout_s
        self._client: Any = None

    def _fail(self, exc: BaseException, what: str) -> ServiceUnavailable:

        chain = [e for e in (exc, exc.__cause__, exc.__context__) if e is not None]
        if any(isinstance(e, requests.exceptions.Timeout) for e in chain) or "timed out" in str(
            exc
        ):
            why = f"no answer within {self.timeout_s:g} s"
        elif any(isinstance(e, requests.exceptions.ConnectionError) for e in chain):
            why = "cannot connect (no network, or the host is down)"
        else:
            why = _first_line(exc)
        return ServiceUnavailable(
            f"STAC catalog {self.catalog.name} ({self.catalog.url}) {what}: {why}"
        )

    @property
    def client(self) -> Any:
        if self._client is None:
            from pystac_client import Client

            modifier = None
            if self.catalog.signed:
                import planetary_computer

                modifier = planetary_computer.sign_inplace  # Azure blob URLs only
            try:
                self._client = Client.open(
                    self.catalog.url, modifier=modifier, timeout=self.timeout_s
                )
            except _network_errors() as exc:
                raise self._fail(exc, "did not answer") from None
        return self._client

    def search(
        self,
        collection: str,
        aoi_4326: Any,
        window: Window | None = None,
        keep: Callable[[Any], bool] | None = None,
    ) -> list[Any]:
        """Items of `collection` intersecting the AOI (in [start, end) when a window is given),
        sorted by time and id; `keep` filters them further on the client."""

        kwargs: dict[str, Any] = {
            "collections": [collection],
            "intersects": shapely.geometry.mapping(aoi_4326),
        }
        if window is not None:
            kwargs["datetime"] = (
                f"{window.start.isoformat()}T00:00:00Z/{window.end.isoformat()}T00:00:00Z"
            )
        try:
            items = list(self.client.search(**kwargs).items())
        except ServiceUnavailable:
            raise
        except _network_errors() as exc:
            raise self._fail(exc, f"failed a search of {collection}") from None
        if window is not None:
            end = dt.datetime(window.end.year, window.end.month, window.end.day, tzinfo=dt.UTC)
            items = [i for i in items if item_time(i) < end]
        if keep is not None:
            items = [i for i in items if keep(i)]
        return sorted(items, key=lambda i: (item_time(i), i.id))


def item_time(item: Any) -> dt.datetime:
    """The item's datetime (its start when it only has a range), in UTC."""
    when = item.datetime or item.common_metadata.start_datetime
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def is_iw_dual_pol(item: Any) -> bool:
    """Sentinel-1 IW scenes with both VV and VH, as the Earth Engine path filters GRD."""
    props = item.properties
    pols = {p.upper() for p in props.get("sar:polarizations", [])}
    return props.get("sar:instrument_mode", "IW") == "IW" and {"VV", "VH"} <= pols


def orbit_state(item: Any) -> str:
    """DESCENDING or ASCENDING, from sat:orbit_state (lsd's spelling of the pass)."""
    return str(item.properties.get("sat:orbit_state", "")).upper()


def worldcover_items(items: Sequence[Any]) -> list[Any]:
    """The v200 (2021) tiles where the catalog has them, else its newest version."""
    v200 = [
        i for i in items if i.properties.get("esa_worldcover:product_version") == WORLDCOVER_VERSION
    ]
    if v200:
        return v200
    if not items:
        return []
    newest = max(item_time(i) for i in items)
    return [i for i in items if item_time(i) == newest]
