"""The `s1scenes` layer group: single Sentinel-1 acquisitions nearest the event, not composites.

Orynbaikyzy et al. (2025) compared 1 and 3 scenes before and after the event with composites;
this group gives the same choice. A scene is an *acquisition*: the GRD images of one pass (same
day, same relative orbit) that touch the AOI, mosaicked, because an AOI on a frame boundary is
covered by two consecutive slices of the same pass. Acquisitions are ranked by time: `_1` is the
one nearest the event on its side (the last before, the first after), `_3` the farthest.

Every image is flattened exactly as the composites are (the same flattened collection of
lsd.gee.s1, same model and look direction), then the acquisition's linear gamma0 is mosaicked
and turned into dB.
"""

from __future__ import annotations

from collections.abc import Iterable

import ee

from lsd.gee import s1
from lsd.layergroups import s1_scene_of, scenes_needed
from lsd.spec import EventSpec

ACQUISITION = "lsd_acquisition"  # property set on each image: "YYYY-MM-dd_<relative orbit>"


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


def acquisition_counts(spec: EventSpec, aoi: ee.Geometry) -> ee.Dictionary:
    """Acquisitions per window: {"s1_pre_acquisitions", "s1_post_acquisitions"}."""
    out = {}
    for window, dates in (("pre", spec.pre), ("post", spec.post)):
        col = s1.s1_collection(aoi, dates, spec.orbit)
        out[f"s1_{window}_acquisitions"] = keyed(col).distinct(ACQUISITION).size()
    return ee.Dictionary(out)


def handles(name: str) -> bool:
    return s1_scene_of(name) is not None


class Scenes:
    """The nearest acquisitions of both windows, chosen once per event graph."""

    def __init__(
        self,
        spec: EventSpec,
        raw: dict[str, ee.ImageCollection],
        flat: dict[str, ee.ImageCollection],
        layers: Iterable[str],
    ) -> None:
        self.spec = spec
        self.raw = raw
        self.flat = flat
        self.need = scenes_needed(layers)
        self.chosen = {w: acquisitions(raw[w], w).toList(n) for w, n in self.need.items() if n}

    def image_ids(self, window: str, index: int) -> ee.List:
        """system:index of the images of the index-th acquisition (1 = nearest the event)."""
        key = ee.Image(self.chosen[window].get(index - 1)).get(ACQUISITION)
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
        return s1.to_db(mosaic.select(pol))

    def provenance(self) -> ee.Dictionary:
        """Per window, the acquisitions used in layer order: day, orbit, images, time offset."""
        event = ee.Date(s1.date_millis(self.spec.date))
        out = {
            window: chosen.map(_describer(keyed(self.raw[window]), event))
            for window, chosen in self.chosen.items()
        }
        return ee.Dictionary(
            {
                "scenes": ee.Dictionary(out),
                "asked": {w: n for w, n in self.need.items()},
                "order": "_1 nearest the event: last before it, first after it",
                "acquisition": "GRD images of one pass (UTC day + relative orbit), mosaicked",
                "flattening": "as the composites (s1_flattening), per image, then dB",
            }
        )


def _describer(keyed_raw: ee.ImageCollection, event: ee.Date):
    """A one-argument function (ee.List.map calls it server-side) describing an acquisition."""

    def describe(rep: ee.ComputedObject) -> ee.Dictionary:
        rep = ee.Image(rep)
        key = rep.get(ACQUISITION)
        images = keyed_raw.filter(ee.Filter.eq(ACQUISITION, key))
        start = ee.Date(images.aggregate_min("system:time_start"))
        return ee.Dictionary(
            {
                "acquisition": key,
                "time": start.format("YYYY-MM-dd'T'HH:mm:ss"),
                "days_from_event": start.difference(event, "day"),
                "ids": images.aggregate_array("system:index"),
                "relative_orbit": rep.get("relativeOrbitNumber_start"),
                "pass": rep.get("orbitProperties_pass"),
            }
        )

    return describe
