"""The `s1scenes` layer group: single Sentinel-1 acquisitions nearest the event, not composites.

Orynbaikyzy et al. (2025) compared 1 and 3 scenes before and after the event with composites;
this group gives the same choice. A scene is an *acquisition*: the GRD images of one pass (same
UTC day, same relative orbit) that touch the AOI, mosaicked, because an AOI on a frame boundary
is covered by two consecutive slices of the same pass. Acquisitions are ranked by time: `_1` is
the one nearest the event on its side (the last before, the first after), `_3` the farthest.

All scene layers come from one pass, the first of the event's resolved passes (the pass orbit
AUTO chose, or the requested one; with BOTH the first pass that has the acquisitions asked for,
descending before ascending), so a pre- and a post-event scene always share their geometry.
Every image is flattened exactly as that pass's composites are (the same flattened collection
of lsd.gee.event_graph, same model and look direction), then the acquisition's linear gamma0 is
mosaicked and turned into dB; by default it is masked where the acquisition's own layover or
shadow flags are set, as the composites are.

Which acquisitions are used is decided on the client from the facts request's scene listing
(ids, start times and relative orbits per pass and window): `choose` groups and ranks them, the
tiles then carry the image ids as constants. Without facts (a dry run without a session) the
same choice is made inside the graph (`Scenes` with `chosen=None`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import ee

from lsd.gee import s1
from lsd.layergroups import s1_scene_of, scenes_needed
from lsd.spec import EventSpec

ACQUISITION = "lsd_acquisition"  # property set on each image: "YYYY-MM-dd_<relative orbit>"
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Acquisition:
    """One pass over the AOI: the images of one UTC day and relative orbit."""

    key: str  # "YYYY-MM-DD_<relative orbit>", as ACQUISITION in the graph
    time_ms: int  # start of its first image
    ids: tuple[str, ...]  # system:index of its images
    relative_orbit: int
    orbit: str  # the pass, DESCENDING or ASCENDING


# --------------------------------------------------------------------------- on the client


def acquisitions_of(listing: Mapping[str, Any], orbit: str, window: str) -> list[Acquisition]:
    """The acquisitions in one pass's facts listing of a window, nearest the event first."""
    groups: dict[str, list[tuple[int, str, int]]] = {}
    rows = zip(listing["ids"], listing["times"], listing["relative_orbits"], strict=True)
    for image_id, t, rel in rows:
        key = f"{s1.utc_time(t)[:10]}_{int(rel)}"
        groups.setdefault(key, []).append((int(t), str(image_id), int(rel)))
    out = [
        Acquisition(key, min(t for t, _, _ in g), tuple(i for _, i, _ in sorted(g)), g[0][2], orbit)
        for key, g in groups.items()
    ]
    return sorted(out, key=lambda a: a.time_ms, reverse=window == "pre")


def choose(
    listing: Mapping[str, Any], orbit: str, need: Mapping[str, int]
) -> dict[str, tuple[Acquisition, ...]]:
    """The nearest `need[window]` acquisitions of `orbit` per window (fewer where the window
    holds fewer: the pass choice reports that as a problem)."""
    return {
        w: tuple(acquisitions_of(listing[w][orbit], orbit, w)[:n])
        for w, n in need.items()
        if n and w in listing
    }


def describe(acq: Acquisition, event_ms: int) -> dict[str, Any]:
    """An acquisition for event.json: plain values."""
    return {
        "acquisition": acq.key,
        "time": s1.utc_time(acq.time_ms),
        "days_from_event": round((acq.time_ms - event_ms) / DAY_MS, 3),
        "ids": list(acq.ids),
        "relative_orbit": acq.relative_orbit,
        "pass": acq.orbit,
    }


def provenance(
    spec: EventSpec,
    layers: Iterable[str],
    orbit: str,
    chosen: Mapping[str, tuple[Acquisition, ...]] | None,
    masked: bool,
) -> dict[str, Any]:
    """How the scene layers were made; `scenes` lists the acquisitions in layer order."""
    event_ms = s1.date_millis(spec.date)
    out: dict[str, Any] = {
        "pass": orbit,
        "asked": {w: n for w, n in scenes_needed(layers).items()},
        "order": "_1 nearest the event: last before it, first after it",
        "acquisition": "GRD images of one pass (UTC day + relative orbit), mosaicked",
        "flattening": "as the pass's composites (s1_flattening), per image, then dB",
        "distortions_masked": masked,
    }
    if chosen is not None:
        out["scenes"] = {w: [describe(a, event_ms) for a in acqs] for w, acqs in chosen.items()}
    return out


def handles(name: str) -> bool:
    return s1_scene_of(name) is not None


# --------------------------------------------------------------------------- in the graph


def keyed(col: ee.ImageCollection) -> ee.ImageCollection:
    """Each image labelled with its acquisition (UTC day and relative orbit)."""

    def one(img: ee.Image) -> ee.Image:
        img = ee.Image(img)
        day = ee.Date(img.get("system:time_start")).format("YYYY-MM-dd")
        orbit = ee.Number(img.get("relativeOrbitNumber_start")).format("%d")
        return img.set(ACQUISITION, day.cat("_").cat(orbit))

    return col.map(one)


def acquisitions(col: ee.ImageCollection, window: str) -> ee.ImageCollection:
    """One image per acquisition, nearest the event first (latest for pre, earliest for post)."""
    return keyed(col).distinct(ACQUISITION).sort("system:time_start", window == "post")


class Scenes:
    """The scene layers of one event graph, from one pass's raw and flattened scenes.

    With `chosen` (the client's choice from the facts) each layer filters the flattened scenes
    by the listed image ids; without it, the nearest acquisitions are found in the graph.
    """

    def __init__(
        self,
        raw: Mapping[str, ee.ImageCollection],
        flat: Mapping[str, ee.ImageCollection],
        layers: Iterable[str],
        chosen: Mapping[str, tuple[Acquisition, ...]] | None = None,
        masked: bool = True,
    ) -> None:
        self.raw = raw
        self.flat = flat
        self.masked = masked
        self.chosen = chosen
        need = scenes_needed(layers)
        self.ranked = (
            {w: acquisitions(raw[w], w).toList(n) for w, n in need.items() if n}
            if chosen is None
            else {}
        )

    def image_ids(self, window: str, index: int) -> ee.List | list[str]:
        """system:index of the images of the index-th acquisition (1 = nearest the event)."""
        if self.chosen is not None:
            acqs = self.chosen.get(window, ())
            return list(acqs[index - 1].ids) if index <= len(acqs) else []
        key = ee.Image(self.ranked[window].get(index - 1)).get(ACQUISITION)
        return (
            keyed(self.raw[window])
            .filter(ee.Filter.eq(ACQUISITION, key))
            .aggregate_array("system:index")
        )

    def layer(self, name: str) -> ee.Image:
        """'postVH_2' -> VH gamma0 (dB) of the second acquisition after the event."""
        scene = s1_scene_of(name)
        if scene is None:
            raise ValueError(f"{name} is not a layer of the s1scenes group")
        window, pol, index = scene
        ids = self.image_ids(window, index)
        mosaic = self.flat[window].filter(ee.Filter.inList("system:index", ids)).mosaic()
        image = s1.to_db(mosaic.select(pol))
        if not self.masked:
            return image
        distorted = mosaic.select("layover").Or(mosaic.select("shadow"))
        return image.updateMask(distorted.Not())
