"""Which items each layer of an event is made from: searched once per event, checked, chosen.

The checks fail an event before any pixel is read, with one line naming the event, the
collection and the window (an empty window, a pass without scenes, no GLO-30 tile over the
AOI, as over open sea). Items that lack an asset a layer needs are left out with a warning and
listed in event.json; when that empties a window, the event fails the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from lsd.layers import LANDCOVER_LAYER
from lsd.sources import EventFailed
from lsd.spec import PASSES, EventSpec, Window, buffered_aoi
from lsd.stac.catalogs import CatalogChoice, asset_key
from lsd.stac.search import CatalogClient, is_iw_dual_pol, orbit_state, worldcover_items

S1_LAYERS = {"preVV", "postVV", "dVV", "preVH", "postVH", "dVH", "layover", "shadow", "liaDeg"}
NDVI_LAYERS = {"preNDVI", "postNDVI"}
STAC_LAYERS: tuple[str, ...] = (
    "preVV",
    "postVV",
    "dVV",
    "preVH",
    "postVH",
    "dVH",
    "layover",
    "shadow",
    "liaDeg",
    "elevation",
    "slope",
    "kgClimate",
    "canopyHeight",
    "landCover",
    "dNDVI",
    "preNDVI",
    "postNDVI",
)
S2_NEEDED = ("B2", "B3", "B4", "B8", "B11", "B12", "SCL")


def needs(layers: Iterable[str]) -> dict[str, set[str]]:
    """Per product, the windows (or 'any') the layers read."""
    names = set(layers)
    out: dict[str, set[str]] = {"s2": set(), "s1": set(), "dem": set(), "worldcover": set()}
    if names & {"dNDVI", "preNDVI", LANDCOVER_LAYER}:
        out["s2"].add("pre")
    if names & {"dNDVI", "postNDVI"}:
        out["s2"].add("post")
    backscatter = names & {"preVV", "postVV", "dVV", "preVH", "postVH", "dVH"}
    if names & {"preVV", "preVH", "dVV", "dVH", LANDCOVER_LAYER}:
        out["s1"].add("pre")
    if names & {"postVV", "postVH", "dVV", "dVH", "layover", "shadow", "liaDeg"}:
        out["s1"].add("post")
    if backscatter or names & {"layover", "shadow"}:
        # the distortion area (the flags, and the mask of the backscatter) is where every
        # scene of the pre or of the post window is distorted: it needs both windows
        out["s1"] |= {"pre", "post"}
    if (
        names & {"elevation", "slope", "layover", "shadow", "liaDeg", LANDCOVER_LAYER}
        or backscatter
    ):
        out["dem"].add("any")
    if LANDCOVER_LAYER in names:
        out["worldcover"].add("any")
    return out


@dataclass
class EventScenes:
    """The items of one event per product and window, and what was left out."""

    s2: dict[str, list[Any]] = field(default_factory=dict)  # window -> items
    s1: dict[str, dict[str, list[Any]]] = field(default_factory=dict)  # pass -> window -> items
    dem: list[Any] = field(default_factory=list)
    worldcover: list[Any] = field(default_factory=list)
    passes: list[str] = field(default_factory=list)
    left_out: dict[str, list[str]] = field(default_factory=dict)  # why -> item ids

    def counts(self) -> dict[str, int]:
        out = {f"s2_{w}": len(items) for w, items in self.s2.items()}
        for p, windows in self.s1.items():
            for w, items in windows.items():
                out[f"s1_{p.lower()}_{w}"] = len(items)
        if self.dem:
            out["dem_tiles"] = len(self.dem)
        if self.worldcover:
            out["worldcover_tiles"] = len(self.worldcover)
        return out


def window_of_spec(spec: EventSpec, key: str) -> Window:
    return spec.pre if key == "pre" else spec.post


def _has(item: Any, bands: Iterable[str]) -> bool:
    return all(asset_key(item.assets, b) for b in bands)


def find_scenes(
    spec: EventSpec,
    layers: Iterable[str],
    choice: CatalogChoice,
    client: Callable[[str], CatalogClient],
    *,
    cart_buffer_m: float,
) -> EventScenes:
    """Search every product the layers need; raise EventFailed with one line on a gap."""
    need = needs(layers)
    found = EventScenes()
    eid = spec.event_id

    def fail(msg: str) -> EventFailed:
        return EventFailed(f"event {eid}: {msg}")

    def window_text(key: str) -> str:
        w = window_of_spec(spec, key)
        return f"{key} window {w.start.isoformat()}..{w.end.isoformat()}"

    def where(product: str) -> tuple[CatalogClient, str]:
        cat = choice.for_product(product)
        return client(cat.url), cat.collections[product]

    # the DEM first: over open sea its absence says more than an empty scene window
    if need["dem"] or need["worldcover"]:
        region = buffered_aoi(spec, cart_buffer_m) if need["worldcover"] else spec.aoi
    if need["dem"]:
        cli, coll = where("dem")
        found.dem = [i for i in cli.search(coll, region) if _has(i, ("DEM",))]
        if not found.dem:
            raise fail(
                f"{coll} has no tile over the AOI ({cli.catalog.name}); over open sea "
                "there is no DEM (and no scene) to build a stack from"
            )
    if need["s2"]:
        cli, coll = where("s2")
        for key in sorted(need["s2"], reverse=True):  # pre, then post
            items = cli.search(coll, spec.aoi, window_of_spec(spec, key))
            usable = [i for i in items if _has(i, S2_NEEDED)]
            missing = [i.id for i in items if not _has(i, S2_NEEDED)]
            if missing:
                found.left_out.setdefault(
                    f"{coll} without assets {', '.join(S2_NEEDED)}", []
                ).extend(missing)
            if not usable:
                extra = f" ({len(missing)} left out for missing assets)" if missing else ""
                raise fail(f"no {coll} scene in {window_text(key)} ({cli.catalog.name}){extra}")
            found.s2[key] = usable
    if need["s1"]:
        cli, coll = where("s1")
        by_window: dict[str, list[Any]] = {}
        for key in sorted(need["s1"], reverse=True):
            items = cli.search(coll, spec.aoi, window_of_spec(spec, key), keep=is_iw_dual_pol)
            usable = [i for i in items if _has(i, ("VV", "VH"))]
            missing = [i.id for i in items if not _has(i, ("VV", "VH"))]
            if missing:
                found.left_out.setdefault(f"{coll} without assets vv, vh", []).extend(missing)
            by_window[key] = usable
        found.passes = choose_passes(spec, by_window, coll, window_text, fail)
        found.s1 = {
            p: {k: [i for i in items if orbit_state(i) == p] for k, items in by_window.items()}
            for p in found.passes
        }
    if need["worldcover"]:
        cli, coll = where("worldcover")
        found.worldcover = worldcover_items(
            [i for i in cli.search(coll, region) if _has(i, ("WorldCover",))]
        )
        if not found.worldcover:
            raise fail(
                f"{coll} has no tile over the AOI ({cli.catalog.name}); landCover needs its "
                "training points"
            )
    return found


def choose_passes(
    spec: EventSpec,
    by_window: dict[str, list[Any]],
    collection: str,
    window_text: Callable[[str], str],
    fail: Callable[[str], EventFailed],
) -> list[str]:
    """The passes of the event's orbit setting, as the Earth Engine path resolves them: AUTO
    takes the first pass (descending, then ascending) with scenes in every window needed."""

    def count(p: str, key: str) -> int:
        return sum(orbit_state(i) == p for i in by_window[key])

    def complete(p: str) -> bool:
        return all(count(p, k) for k in by_window)

    if spec.orbit in PASSES:
        for key in by_window:
            if not count(spec.orbit, key):
                other = next(p for p in PASSES if p != spec.orbit)
                hint = (
                    f"; {other} has {count(other, key)} there: set orbit {other} or AUTO"
                    if count(other, key)
                    else ""
                )
                raise fail(
                    f"no {collection} scene ({spec.orbit} passes) in {window_text(key)}{hint}"
                )
        return [spec.orbit]
    full = [p for p in PASSES if complete(p)]
    if spec.orbit == "BOTH" and full:
        return full
    if full:
        return full[:1]
    counts = "; ".join(
        f"{window_text(k)}: " + ", ".join(f"{p} {count(p, k)}" for p in PASSES) for k in by_window
    )
    raise fail(f"no Sentinel-1 pass of {collection} has scenes in every window ({counts})")


def item_ids(items: Iterable[Any]) -> list[str]:
    return [i.id for i in items]


def window_items(found: EventScenes, product: str, key: str) -> list[Any]:
    if product == "s2":
        return found.s2.get(key, [])
    return [i for p in found.passes for i in found.s1.get(p, {}).get(key, [])]
