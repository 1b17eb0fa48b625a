"""What an event's fetch decides before any pixel: which scenes exist, which pass and which
Sentinel-2 level to use, and the per-event values every download tile shares.

Two server requests per event, both built here or in lsd.gee.layers and answered by one getInfo
each: the facts (scene ids per window, pass and level; DEM tiles) and, once the pass and level
are chosen on the client, the constants (look direction per pass, vegetated share for the
flattening model, CART training points and tree). The tiles then carry the constants as plain
numbers and strings, so each tile request is per-pixel work only.

Everything after the facts request is plain Python on plain values: the choice of orbit
(`orbit=auto`), the L1C fallback, the scenes dropped for want of a cloud-probability partner,
and the one-line problems a user sees, so tests exercise it without a server.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ee

from lsd.gee import s1, s2
from lsd.gee.config import GLO30_ASSET, FetchConfig, dem_asset_for
from lsd.layers import LANDCOVER_LAYER, S1_LAYERS
from lsd.spec import PASSES, EventSpec, Window

WINDOWS = ("pre", "post")
LEVELS = ("L2A", "L1C")
FACTS_TAG = "lsd-facts"
CONSTANTS_TAG = "lsd-constants"


# --------------------------------------------------------------------------- what layers need


def s1_windows(layers: Iterable[str]) -> tuple[str, ...]:
    """The windows whose radar scenes the layers need (landCover needs pre-event radar only)."""
    names = set(layers)
    if names & set(S1_LAYERS):
        return WINDOWS
    return ("pre",) if LANDCOVER_LAYER in names else ()


def s2_windows(layers: Iterable[str]) -> tuple[str, ...]:
    names = set(layers)
    if "dNDVI" in names:
        return WINDOWS
    return ("pre",) if LANDCOVER_LAYER in names else ()


def window_of(spec: EventSpec, key: str) -> Window:
    return spec.pre if key == "pre" else spec.post


def window_text(spec: EventSpec, key: str) -> str:
    return "..".join(window_of(spec, key).as_strings())


# --------------------------------------------------------------------------- the facts request


def facts_request(
    spec: EventSpec, cfg: FetchConfig, layers: Sequence[str], aoi: ee.Geometry
) -> ee.Dictionary:
    """Scene ids (and times, relative orbits) per window: Sentinel-1 per pass, Sentinel-2 per
    level with the subset that can be masked; and the GLO-30 tiles over the AOI."""
    out: dict[str, Any] = {"request": FACTS_TAG}
    wanted_s1, wanted_s2 = s1_windows(layers), s2_windows(layers)
    if wanted_s1:
        out["s1"] = {
            w: {p: _s1_listing(s1.s1_collection(aoi, window_of(spec, w), p)) for p in PASSES}
            for w in wanted_s1
        }
    if wanted_s2:
        levels = LEVELS if cfg.s2_level == "auto" else (cfg.s2_level,)
        out["s2"] = {w: _s2_listing(aoi, window_of(spec, w), levels, cfg) for w in wanted_s2}
    if dem_asset_for(spec, cfg) == GLO30_ASSET or wanted_s1:
        out["glo30_tiles"] = ee.ImageCollection(GLO30_ASSET).filterBounds(aoi).size()
    return ee.Dictionary(out)


def _s1_listing(col: ee.ImageCollection) -> ee.Dictionary:
    return ee.Dictionary(
        {
            "ids": col.aggregate_array("system:index"),
            "times": col.aggregate_array("system:time_start"),
            "relative_orbits": col.aggregate_array("relativeOrbitNumber_start"),
        }
    )


def _s2_listing(
    aoi: ee.Geometry, window: Window, levels: Sequence[str], cfg: FetchConfig
) -> ee.Dictionary:
    out = {}
    for level in levels:
        out[level] = s2.scene_ids(s2.scenes(aoi, window, level))  # type: ignore[arg-type]
        maskable = s2.maskable(aoi, window, level, cfg)  # type: ignore[arg-type]
        out[f"{level}_maskable"] = s2.scene_ids(maskable)
        out[f"{level}_times"] = maskable.aggregate_array("system:time_start")
    return ee.Dictionary(out)


# --------------------------------------------------------------------------- choices


@dataclass(frozen=True)
class Resolved:
    """The client's choices for one event: Sentinel-1 passes (one, or both for orbit BOTH)
    and the Sentinel-2 processing level (the same for both windows)."""

    passes: tuple[str, ...] = ("DESCENDING",)
    s2_level: str = "L2A"
    assumed: bool = False  # True when made without the facts (a dry run without a session)


@dataclass
class Outcome:
    resolved: Resolved
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dropped: dict[str, list[str]] = field(default_factory=dict)  # window -> S2 ids left out


def assumed_resolution(spec: EventSpec, cfg: FetchConfig) -> Resolved:
    """What to build without facts: AUTO taken as the paper's descending pass, L2A."""
    if spec.orbit == "BOTH":
        passes: tuple[str, ...] = PASSES
    else:
        passes = (spec.orbit if spec.orbit in PASSES else PASSES[0],)
    level = "L2A" if cfg.s2_level == "auto" else cfg.s2_level
    return Resolved(passes=passes, s2_level=level, assumed=True)


def resolve(
    spec: EventSpec, cfg: FetchConfig, layers: Sequence[str], facts: dict[str, Any]
) -> Outcome:
    """Choose pass(es) and level from the facts; collect problems (the event cannot be built)
    and warnings (it can, with something the user should know)."""
    problems: list[str] = []
    warnings: list[str] = []
    passes = _choose_passes(spec, s1_windows(layers), facts.get("s1") or {}, problems, warnings)
    level, dropped = _choose_level(spec, cfg, s2_windows(layers), facts.get("s2") or {}, problems)
    for key, ids in dropped.items():
        if ids:
            warnings.append(
                f"event {spec.event_id}: {len(ids)} Sentinel-2 {level} scene(s) of the {key} "
                f"window have no cloud-probability scene and were left out: {', '.join(ids)}"
            )
    if problems and _over_sea(facts):
        problems.append(
            f"event {spec.event_id}: no Sentinel-1 or Sentinel-2 scene and no Copernicus DEM "
            "tile covers the AOI: it looks like open sea (both missions image land and coasts)"
        )
    return Outcome(Resolved(passes, level), problems, warnings, dropped)


def _over_sea(facts: dict[str, Any]) -> bool:
    if facts.get("glo30_tiles", 1) != 0:
        return False
    s1_counts = [len(p["ids"]) for w in (facts.get("s1") or {}).values() for p in w.values()]
    s2_counts = [
        len(ids) for w in (facts.get("s2") or {}).values() for k, ids in w.items() if k in LEVELS
    ]
    return not any(s1_counts) and not any(s2_counts)


def _choose_passes(
    spec: EventSpec,
    needed: Sequence[str],
    listing: dict[str, Any],
    problems: list[str],
    warnings: list[str],
) -> tuple[str, ...]:
    if not needed:
        return assumed_resolution(spec, FetchConfig()).passes
    counts = {p: {w: len(listing[w][p]["ids"]) for w in needed} for p in PASSES}
    complete = [p for p in PASSES if all(counts[p].values())]
    if spec.orbit in PASSES:
        if spec.orbit not in complete:
            problems.extend(_pass_problems(spec, spec.orbit, counts, complete))
        return (spec.orbit,)
    if spec.orbit == "BOTH" and len(complete) == 1:
        warnings.append(
            f"event {spec.event_id}: orbit BOTH, but only {complete[0]} has Sentinel-1 images "
            "in every window; it is used alone"
        )
    if complete:
        return tuple(complete) if spec.orbit == "BOTH" else (complete[0],)
    per_pass = "; ".join(
        f"{p}: " + ", ".join(f"{w} {counts[p][w]}" for w in needed) for p in PASSES
    )
    windows = ", ".join(f"{w} {window_text(spec, w)}" for w in needed)
    problems.append(
        f"event {spec.event_id}: orbit {spec.orbit}: no Sentinel-1 pass has images in every "
        f"window ({windows}; images per pass: {per_pass}); widen the windows with pre_days/"
        "post_days"
    )
    return (PASSES[0],)


def _pass_problems(
    spec: EventSpec, orbit: str, counts: dict[str, dict[str, int]], complete: list[str]
) -> list[str]:
    out = []
    for w, n in counts[orbit].items():
        if n:
            continue
        others = [p for p in PASSES if p != orbit and counts[p][w]]
        has = "; ".join(f"{p} has {counts[p][w]} there" for p in others) or "no pass has any"
        hint = f"set orbit {complete[0]} or AUTO" if complete else f"widen it with {w}_days"
        out.append(
            f"event {spec.event_id}: no Sentinel-1 images ({orbit} passes) in {w} window "
            f"{window_text(spec, w)}; {has}: {hint}"
        )
    return out


def _choose_level(
    spec: EventSpec,
    cfg: FetchConfig,
    needed: Sequence[str],
    listing: dict[str, Any],
    problems: list[str],
) -> tuple[str, dict[str, list[str]]]:
    fixed = None if cfg.s2_level == "auto" else cfg.s2_level
    if not needed:
        return fixed or "L2A", {}

    def usable(level: str) -> bool:
        return all(listing[w].get(f"{level}_maskable") for w in needed)

    level = fixed or next((lv for lv in LEVELS if usable(lv)), "L2A")
    for w in needed:
        if not listing[w].get(f"{level}_maskable"):
            problems.append(
                f"event {spec.event_id}: no Sentinel-2 images in {w} window "
                f"{window_text(spec, w)}; widen it with {w}_days"
            )
    dropped = {
        w: sorted(set(listing[w].get(level, [])) - set(listing[w].get(f"{level}_maskable", [])))
        for w in needed
    }
    return level, dropped


# --------------------------------------------------------------------------- constants


@dataclass(frozen=True)
class Constants:
    """Per-event values the tiles carry: look direction (radians) per pass, the vegetated share
    of the AOI's land (auto flattening), and the CART result (training points, tree, scores)."""

    look_direction: dict[str, float] = field(default_factory=dict)
    vegetated_fraction: float | None = None
    cart: dict[str, Any] | None = None


def parse_constants(values: dict[str, Any]) -> Constants:
    looks = {p: float(v) for p, v in (values.get("look_direction") or {}).items()}
    fraction = values.get("vegetated_fraction")
    return Constants(
        look_direction=looks,
        vegetated_fraction=None if fraction is None else float(fraction),
        cart=values.get("cart"),
    )


# --------------------------------------------------------------------------- provenance


def counts_from_facts(facts: dict[str, Any], resolved: Resolved) -> dict[str, int]:
    """Images per sensor and window as event.json's image_counts: s1 of the chosen pass(es),
    s2 of the chosen level that could be masked."""
    out: dict[str, int] = {}
    for w, per_pass in (facts.get("s1") or {}).items():
        out[f"s1_{w}"] = sum(len(per_pass[p]["ids"]) for p in resolved.passes)
    for w, per_level in (facts.get("s2") or {}).items():
        out[f"s2_{w}"] = len(per_level.get(f"{resolved.s2_level}_maskable", []))
    return out


def scene_summary(facts: dict[str, Any], resolved: Resolved) -> dict[str, Any]:
    """Ids, UTC times and relative orbits of the scenes each window uses."""
    out: dict[str, Any] = {}
    for w, per_pass in (facts.get("s1") or {}).items():
        for p in resolved.passes:
            listing = per_pass[p]
            out.setdefault(f"s1_{w}", {})[p] = {
                "ids": listing["ids"],
                "dates": [_utc(t) for t in listing.get("times", [])],
                "relative_orbits": sorted(set(listing.get("relative_orbits", []))),
                "count": len(listing["ids"]),
            }
    for w, per_level in (facts.get("s2") or {}).items():
        level = resolved.s2_level
        out[f"s2_{w}"] = {
            "level": level,
            "ids": per_level.get(f"{level}_maskable", []),
            "dates": [_utc(t) for t in per_level.get(f"{level}_times", [])],
            "count": len(per_level.get(f"{level}_maskable", [])),
        }
    return out


def _utc(millis: Any) -> str:
    return dt.datetime.fromtimestamp(float(millis) / 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
