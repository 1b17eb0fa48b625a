"""What an event's fetch decides before any pixel: which scenes exist, which pass and which
Sentinel-2 level to use, and the per-event values every download tile shares.

Two server requests per event, both built here or in lsd.gee.event_graph and answered by one getInfo
each: the facts (scene ids per window, pass and level; DEM tiles) and, once the pass and level
are chosen on the client, the constants (look direction per pass, vegetated share for the
flattening model, CART training points and tree). The tiles then carry the constants as plain
numbers and strings, so each tile request is per-pixel work only.

Everything after the facts request is plain Python on plain values: the choice of orbit
(`orbit=auto`), the single Sentinel-1 acquisitions of the `s1scenes` layers (lsd.gee.s1scenes),
the L1C fallback, the scenes dropped for want of a cloud-probability partner, and the one-line
problems a user sees, so tests exercise it without a server.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ee

from lsd.gee import s1, s1scenes, s2
from lsd.gee.config import GLO30_ASSET, FetchConfig, dem_asset_for
from lsd.gee.s1scenes import Acquisition
from lsd.layergroups import s1_scene_of, scenes_needed, windows_needed
from lsd.spec import PASSES, EventSpec, Window

WINDOWS = ("pre", "post")
LEVELS = ("L2A", "L1C")
FACTS_TAG = "lsd-facts"
CONSTANTS_TAG = "lsd-constants"


# --------------------------------------------------------------------------- what layers need


def s1_windows(layers: Iterable[str]) -> tuple[str, ...]:
    """The windows whose radar scenes the layers need (landCover needs pre-event radar only;
    a scene layer the radar of its own window)."""
    needs = windows_needed(layers)
    return tuple(w for w in WINDOWS if f"s1_{w}" in needs)


def s2_windows(layers: Iterable[str]) -> tuple[str, ...]:
    needs = windows_needed(layers)
    return tuple(w for w in WINDOWS if f"s2_{w}" in needs)


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
    scenes: dict[str, tuple[Acquisition, ...]] = field(default_factory=dict)  # s1scenes' choice


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
    listing = facts.get("s1") or {}
    passes = _choose_passes(spec, _s1_table(layers, listing), problems, warnings)
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
    need = scenes_needed(layers)
    scenes = s1scenes.choose(listing, passes[0], need) if any(need.values()) else {}
    return Outcome(Resolved(passes, level), problems, warnings, dropped, scenes)


def _over_sea(facts: dict[str, Any]) -> bool:
    if facts.get("glo30_tiles", 1) != 0:
        return False
    s1_counts = [len(p["ids"]) for w in (facts.get("s1") or {}).values() for p in w.values()]
    s2_counts = [
        len(ids) for w in (facts.get("s2") or {}).values() for k, ids in w.items() if k in LEVELS
    ]
    return not any(s1_counts) and not any(s2_counts)


@dataclass(frozen=True)
class _S1Table:
    """What each pass holds per needed window (images, acquisitions) against what the layers
    ask for: one acquisition for composites, `n` for a scene layer `_n`."""

    images: dict[str, dict[str, int]]
    acquisitions: dict[str, dict[str, int]]
    asked: dict[str, int]  # window -> acquisitions needed
    farthest: dict[str, str]  # window -> the scene layer that asks for the most, e.g. preVV_3

    @property
    def scenes(self) -> bool:
        """True when a scene layer asks a window for more than one acquisition."""
        return any(n > 1 for n in self.asked.values())

    def complete(self, orbit: str) -> bool:
        return all(self.acquisitions[orbit][w] >= n for w, n in self.asked.items())


def _s1_table(layers: Sequence[str], listing: dict[str, Any]) -> _S1Table:
    needed, need = s1_windows(layers), scenes_needed(layers)
    images = {p: {w: len(listing[w][p]["ids"]) for w in needed} for p in PASSES}
    acquisitions = {
        p: {w: len(s1scenes.acquisitions_of(listing[w][p], p, w)) for w in needed} for p in PASSES
    }
    asked = {w: max(1, need.get(w, 0)) for w in needed}
    farthest: dict[str, str] = {}
    for name in layers:
        scene = s1_scene_of(name)
        if scene is not None and scene[2] == asked.get(scene[0]):
            farthest.setdefault(scene[0], name)
    return _S1Table(images, acquisitions, asked, farthest)


def _choose_passes(
    spec: EventSpec, table: _S1Table, problems: list[str], warnings: list[str]
) -> tuple[str, ...]:
    """The pass(es) to use: the requested one, or for AUTO the first pass (descending, as in
    the paper) with what the layers need in every window, or for BOTH every such pass."""
    if not table.asked:
        return assumed_resolution(spec, FetchConfig()).passes
    complete = [p for p in PASSES if table.complete(p)]
    if spec.orbit in PASSES:
        if spec.orbit not in complete:
            problems.extend(_pass_problems(spec, spec.orbit, table, complete))
        return (spec.orbit,)
    if spec.orbit == "BOTH" and len(complete) == 1:
        what = "the Sentinel-1 acquisitions asked for" if table.scenes else "Sentinel-1 images"
        warnings.append(
            f"event {spec.event_id}: orbit BOTH, but only {complete[0]} has {what} in every "
            "window; it is used alone"
        )
    if complete:
        return tuple(complete) if spec.orbit == "BOTH" else (complete[0],)
    problems.append(_no_pass_problem(spec, table))
    return (PASSES[0],)


def _no_pass_problem(spec: EventSpec, table: _S1Table) -> str:
    counts = table.acquisitions if table.scenes else table.images
    per_pass = "; ".join(
        f"{p}: " + ", ".join(f"{w} {counts[p][w]}" for w in table.asked) for p in PASSES
    )
    if table.scenes:
        windows = ", ".join(f"{w} {window_text(spec, w)}: {_asked(table, w)}" for w in table.asked)
        what, unit = "the acquisitions asked for", "acquisitions"
        hint = "widen the windows with pre_days/post_days or ask for fewer with s1_scenes"
    else:
        windows = ", ".join(f"{w} {window_text(spec, w)}" for w in table.asked)
        what, unit, hint = "images", "images", "widen the windows with pre_days/post_days"
    return (
        f"event {spec.event_id}: orbit {spec.orbit}: no Sentinel-1 pass has {what} in every "
        f"window ({windows}; {unit} per pass: {per_pass}); {hint}"
    )


def _asked(table: _S1Table, window: str) -> str:
    n = table.asked[window]
    return f"{n} asked for ({table.farthest[window]})" if window in table.farthest else f"{n}"


def _pass_problems(spec: EventSpec, orbit: str, table: _S1Table, complete: list[str]) -> list[str]:
    """One line per window where the requested pass lacks images or acquisitions, with what
    the other pass holds there."""
    out = []
    for w, n in table.asked.items():
        found = table.acquisitions[orbit][w]
        if found >= n:
            continue
        hint = f"set orbit {complete[0]} or AUTO" if complete else f"widen it with {w}_days"
        if table.images[orbit][w] == 0:
            others = {p: table.images[p][w] for p in PASSES if p != orbit and table.images[p][w]}
            has = "; ".join(f"{p} has {k} there" for p, k in others.items()) or "no pass has any"
            out.append(
                f"event {spec.event_id}: no Sentinel-1 images ({orbit} passes) in {w} window "
                f"{window_text(spec, w)}; {has}: {hint}"
            )
            continue
        acqs = table.acquisitions
        others = {p: acqs[p][w] for p in PASSES if p != orbit and acqs[p][w]}
        has = "; ".join(f"{p} has {k} there" for p, k in others.items()) or "no other pass has any"
        out.append(
            f"event {spec.event_id}: {w} window {window_text(spec, w)} holds {found} Sentinel-1 "
            f"acquisition(s) ({orbit} passes), {_asked(table, w)}; {has}: {hint}"
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
    of the AOI's land (auto flattening), the CART result (training points, tree, scores), and
    the Sentinel-1 acquisitions of the scene layers (chosen from the facts, Outcome.scenes;
    None: chosen inside the graph)."""

    look_direction: dict[str, float] = field(default_factory=dict)
    vegetated_fraction: float | None = None
    cart: dict[str, Any] | None = None
    s1_scenes: dict[str, tuple[Acquisition, ...]] | None = None


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
                "dates": [s1.utc_time(t) for t in listing.get("times", [])],
                "relative_orbits": sorted(set(listing.get("relative_orbits", []))),
                "count": len(listing["ids"]),
            }
    for w, per_level in (facts.get("s2") or {}).items():
        level = resolved.s2_level
        out[f"s2_{w}"] = {
            "level": level,
            "ids": per_level.get(f"{level}_maskable", []),
            "dates": [s1.utc_time(t) for t in per_level.get(f"{level}_times", [])],
            "count": len(per_level.get(f"{level}_maskable", [])),
        }
    return out
