"""Entry points: the ee graph of an event's layer stack, its per-event constants and provenance.

Nothing here calls the server (no getInfo): the caller decides when to pay for a round trip,
and tests build every graph offline. Each piece (S1, S2, DEM, CART) is built at most once per
call and only if a requested layer needs it.

A graph is built in one of two ways. Without constants (`EventGraph(spec, cfg, resolved)`),
the per-event values (look direction, vegetated share, CART training) are computed inside the
graph: that is the constants request itself, and what a dry run without a session shows. With
constants from that request, the tile graphs carry them as numbers and a tree, so each download
tile does per-pixel work only (lsd.gee.event_facts).

Layers beyond the paper's 15 (lsd.layergroups) reuse these pieces: the `s2bands` and `ndvi`
layers the masked Sentinel-2 scenes and greenest-pixel choice of dNDVI (lsd.gee.s2bands), the
`s1scenes` layers the flattened scenes of the first resolved pass (lsd.gee.s1scenes).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any

import ee
import shapely.geometry

from lsd import conventions as cv
from lsd.errors import InvalidValue
from lsd.gee import landcover, s1, s1scenes, s2, s2bands, terrain
from lsd.gee.config import (
    FILLED_FROM_GLO30,
    GLO30_ASSET,
    FetchConfig,
    dem_asset_for,
    kg_climate_zero_based,
)
from lsd.gee.event_facts import (
    CONSTANTS_TAG,
    Constants,
    Resolved,
    assumed_resolution,
    s1_windows,
    s2_windows,
    window_of,
)
from lsd.layergroups import LAYER_GROUPS, is_fetchable, scenes_needed
from lsd.layers import LANDCOVER_LAYER, PAPER_LAYERS
from lsd.spec import EventSpec, buffered_aoi

# Layers read from third-party assets, and the FetchConfig field (also the provenance key) that
# names each asset.
AUX_ASSET_FIELDS = {"kgClimate": "kg_climate_asset", "canopyHeight": "canopy_height_asset"}
BACKSCATTER = ("preVV", "postVV", "preVH", "postVH")


def geometry(shape: Any) -> ee.Geometry:
    """A planar EPSG:4326 geometry from shapely, so its edges are the straight lines shapely had
    (an AOI crossing 180 degrees arrives split in two parts, lsd.spec.normalize_aoi)."""
    return ee.Geometry(shapely.geometry.mapping(shape), "EPSG:4326", False)


def aoi_geometry(spec: EventSpec) -> ee.Geometry:
    return geometry(spec.aoi)


def check_layers(layers: Iterable[str]) -> list[str]:
    """The requested layers as a list; a name that fetch cannot compute is the user's mistake."""
    names = list(layers)
    unknown = [n for n in names if not is_fetchable(n)]
    if unknown:
        raise InvalidValue(
            f"layer {unknown[0]!r} cannot be fetched from Earth Engine; it makes the layers "
            f"of the groups {', '.join(LAYER_GROUPS)} (docs/layers.md)",
            field="layers",
        )
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InvalidValue(f"layer {dup!r} is requested twice", field="layers")
    return names


class EventGraph:
    """Lazily built pieces of one event's graph, shared between the layers that need them."""

    def __init__(
        self,
        spec: EventSpec,
        cfg: FetchConfig,
        resolved: Resolved | None = None,
        constants: Constants | None = None,
        layers: Sequence[str] = (),
    ) -> None:
        self.spec = spec
        self.cfg = cfg
        self.resolved = resolved or assumed_resolution(spec, cfg)
        self.constants = constants
        self.aoi = aoi_geometry(spec)
        self.layers = tuple(layers)  # the scene layers among them say how many scenes to take

    def region(self, metres: float) -> ee.Geometry:
        """The AOI grown by `metres`, built on the client (exact, and split at 180 degrees)."""
        return geometry(buffered_aoi(self.spec, metres))

    # -- terrain
    @cached_property
    def dem_id(self) -> str:
        return dem_asset_for(self.spec, self.cfg)

    @cached_property
    def dem(self) -> ee.Image:
        return terrain.dem_image(self.dem_id, self.aoi, self.cfg)

    @cached_property
    def worldcover(self) -> ee.Image:
        return landcover.worldcover_image(self.cfg)

    # -- Sentinel-1
    @cached_property
    def flattening(self) -> tuple[Any, Any, Any]:
        fraction = self.constants.vegetated_fraction if self.constants else None
        wc = self.worldcover if self.spec.flattening == "auto" and fraction is None else None
        return s1.flattening_choice(self.spec, self.cfg, wc, self.aoi, fraction)

    @cached_property
    def terrain_angles(self) -> ee.Image:
        return s1.terrain_angles(self.dem)

    def s1_raw(self, orbit: str, key: str) -> ee.ImageCollection:
        return s1.s1_collection(self.aoi, window_of(self.spec, key), orbit)

    def look(self, orbit: str) -> float | ee.Number:
        """The pass's look direction: the per-event constant, or computed over its scenes."""
        if self.constants and orbit in self.constants.look_direction:
            return self.constants.look_direction[orbit]
        scenes = self.s1_raw(orbit, "pre").merge(self.s1_raw(orbit, "post"))
        return s1.look_direction(scenes, self.region(self.cfg.look_direction_buffer_m))

    @cached_property
    def s1_pass(self) -> dict[str, dict[str, Any]]:
        """Per pass: flattened scenes per window, their dB composites and geometry layers.

        `distorted` is where every scene of a window (either window) is in layover or shadow:
        where the pass's composites, each scene masked on its own distortion, have no data.
        The six backscatter layers are masked to exactly that area, so that it is the same in
        all of them and in the flags. `db_all` are the composites of every scene, never
        masked: what CART sees."""
        out: dict[str, dict[str, Any]] = {}
        use_volume = self.flattening[0]
        mask = self.cfg.mask_distortions
        for orbit in self.resolved.passes:
            phi_i = self.look(orbit)
            flat = {
                k: s1.flattened_collection(
                    self.s1_raw(orbit, k), self.terrain_angles, use_volume, phi_i,
                    self.cfg.look_convention,
                )
                for k in ("pre", "post")
            }  # fmt: skip
            scenes = flat["pre"].merge(flat["post"])
            db_all = {k: s1.db_composite(c) for k, c in flat.items()}
            out[orbit] = {
                "flat": flat,
                "db": {k: s1.db_composite(c, mask) for k, c in flat.items()} if mask else db_all,
                "db_all": db_all,
                "distorted": s1.all_distorted(flat["pre"]).Or(s1.all_distorted(flat["post"])),
                "any_layover": scenes.select("layover").max(),
                "any_shadow": scenes.select("shadow").max(),
                "lia": flat["post"].select("lia").median(),
            }
        return out

    def _combine(self, images: list[ee.Image]) -> ee.Image:
        """One image from per-pass images: itself for one pass, their mean for BOTH (each pass
        composited on its own geometry first, so no composite mixes two geometries)."""
        return images[0] if len(images) == 1 else ee.ImageCollection(images).mean()

    def _masked(self, image: ee.Image, orbit: str) -> ee.Image:
        if not self.cfg.mask_distortions:
            return image
        return image.updateMask(self.s1_pass[orbit]["distorted"].Not())

    def backscatter(self, key: str, pol: str, masked: bool = True) -> ee.Image:
        parts = []
        for orbit, products in self.s1_pass.items():
            if masked:
                parts.append(self._masked(products["db"][key].select(pol), orbit))
            else:
                parts.append(products["db_all"][key].select(pol))
        return self._combine(parts)

    def change(self, pol: str) -> ee.Image:
        parts = []
        for orbit, products in self.s1_pass.items():
            db = products["db"]
            diff = db["post"].select(pol).subtract(db["pre"].select(pol))
            parts.append(self._masked(diff, orbit))
        return self._combine(parts)

    def distortion(self, name: str) -> ee.Image:
        """layover or shadow, 1 = distorted: where the backscatter layers have no data (every
        scene of a window distorted, in every pass), split by the kind of distortion any of
        those scenes shows. With one pass the look direction is one, so a pixel is in layover
        in all its distorted scenes or in shadow in all; with two passes a slope can be in
        layover for one and in shadow for the other, and is then flagged as both."""
        passes = list(self.s1_pass.values())
        if len(passes) == 1:
            nodata, any_kind = passes[0]["distorted"], passes[0][f"any_{name}"]
        else:
            nodata = ee.ImageCollection([p["distorted"] for p in passes]).min()
            any_kind = ee.ImageCollection([p[f"any_{name}"] for p in passes]).max()
        return nodata.And(any_kind)

    # -- Sentinel-2
    @cached_property
    def s2_masked(self) -> dict[str, ee.ImageCollection]:
        level = self.resolved.s2_level
        return {
            k: s2.masked_collection(self.aoi, window_of(self.spec, k), self.cfg, level)  # type: ignore[arg-type]
            for k in ("pre", "post")
        }

    @cached_property
    def s2_greenest(self) -> dict[str, ee.Image]:
        return {k: s2.greenest(col) for k, col in self.s2_masked.items()}

    @cached_property
    def s2_band_composites(self) -> dict[str, ee.Image]:
        return {k: s2bands.band_composite(col) for k, col in self.s2_masked.items()}

    @cached_property
    def s1_scenes(self) -> s1scenes.Scenes:
        """The scene layers' acquisitions, from the first resolved pass (lsd.gee.s1scenes)."""
        orbit = self.resolved.passes[0]
        raw = {k: self.s1_raw(orbit, k) for k in ("pre", "post")}
        chosen = self.constants.s1_scenes if self.constants else None
        return s1scenes.Scenes(
            raw, self.s1_pass[orbit]["flat"], self.layers, chosen, self.cfg.mask_distortions
        )

    # -- CART land cover
    @cached_property
    def cart_scenes(self) -> ee.ImageCollection:
        """The scenes of CART's S2 image, each with its clear share over the CART region: the
        per-event constants' when known (no reduction in a tile), else ranked in the graph."""
        level = self.resolved.s2_level
        known = (self.constants.cart or {}).get("s2_scenes") if self.constants else None
        if known is not None:
            col = s2.cloud_masked_collection(
                self.aoi,
                self.spec.pre,
                self.cfg,
                level,
                ids=sorted(known),  # type: ignore[arg-type]
            )
            return s2.with_shares(col, known)
        col = s2.cloud_masked_collection(self.aoi, self.spec.pre, self.cfg, level)  # type: ignore[arg-type]
        return s2.clearest(col, self.region(self.cfg.cart_buffer_m), self.cfg.cart_s2_scenes)

    @cached_property
    def cart_image(self) -> ee.Image:
        """The least-cloudy pre-event image, clouds masked and snow kept (s2.clearest_mosaic)."""
        return s2.clearest_mosaic(self.cart_scenes)

    @cached_property
    def cart_features(self) -> ee.Image:
        vv = self.backscatter("pre", "VV", masked=False)
        vh = self.backscatter("pre", "VH", masked=False)
        return landcover.features_image(self.cart_image, self.dem, vv, vh)

    @cached_property
    def cart(self) -> landcover.CartResult:
        """CART trained in the graph (the constants request)."""
        cfg, features = self.cfg, self.cart_features
        if self.spec.landcover_points is not None:
            points = landcover.user_points(features, self.spec.landcover_points, cfg)
        else:
            image = self.cart_image
            classes = landcover.paper_classes(
                self.worldcover, image.select("NDVI"), cfg, image.select(s2.SNOW_BAND)
            )
            region = self.region(cfg.cart_buffer_m)
            points = landcover.worldcover_points(features, classes, region, cfg)
        shares = ee.Dictionary.fromLists(
            self.cart_scenes.aggregate_array("system:index"),
            self.cart_scenes.aggregate_array(s2.CLEAR_SHARE),
        )
        return dataclasses.replace(landcover.train_cart(features, points, cfg), s2_scenes=shares)

    def land_cover(self) -> ee.Image:
        if self.constants and self.constants.cart:
            return landcover.classify_from_constants(
                self.cart_features, self.constants.cart, self.cfg
            )
        return self.cart.classified

    # -- layers
    def layer(self, name: str) -> ee.Image:
        """One layer as a single band called `name`."""
        if name in BACKSCATTER:
            image = self.backscatter(name[:-2], name[-2:])
        elif name in ("dVV", "dVH"):
            image = self.change(name[1:])
        elif name in ("layover", "shadow"):
            image = self.distortion(name)  # 1 = distorted, as every mask inside the graph
            if self.cfg.distortion_flags == "1=valid":  # gee_s1_ard's validity masks
                image = image.Not()
        elif name == "liaDeg":
            image = self.s1_pass[self.resolved.passes[0]]["lia"]
        elif name == "elevation":
            image = self.dem
        elif name == "slope":
            image = terrain.slope_deg(self.dem)
        elif name == "kgClimate":
            image = terrain.kg_climate(self.cfg)
        elif name == "canopyHeight":
            image = terrain.canopy_height(self.cfg)
        elif name == "landCover":
            image = self.land_cover()
        elif name == "dNDVI":
            green = self.s2_greenest
            image = green["post"].select("NDVI").subtract(green["pre"].select("NDVI"))
        elif s2bands.handles(name):
            image = s2bands.layer(name, self.s2_band_composites, self.s2_greenest)
        elif s1scenes.handles(name):
            image = self.s1_scenes.layer(name)  # masked on its own layover/shadow
        else:  # pragma: no cover - check_layers rejects these first
            raise InvalidValue(f"layer {name!r} cannot be fetched from Earth Engine")
        return image.toFloat().rename(name)


def build_event_image(
    spec: EventSpec,
    cfg: FetchConfig,
    layers: Sequence[str] = PAPER_LAYERS,
    unavailable: Iterable[str] = frozenset(),
    resolved: Resolved | None = None,
    constants: Constants | None = None,
) -> ee.Image:
    """The requested layers, in the requested order, one float32 band each, masked where there
    is no data. Layers named in `unavailable` (e.g. an auxiliary asset the user cannot read)
    come back fully masked, so the stack keeps its shape and the download gives NaN there."""
    names = check_layers(layers)
    missing = set(unavailable)
    graph = EventGraph(spec, cfg, resolved, constants, names)
    bands = [terrain.masked_layer(n) if n in missing else graph.layer(n) for n in names]
    return ee.Image.cat(bands).toFloat()


def constants_request(
    spec: EventSpec, cfg: FetchConfig, layers: Sequence[str], resolved: Resolved
) -> ee.Dictionary:
    """The per-event values the tiles will carry, computed once: look direction per pass, the
    vegetated share (auto flattening), and CART's training points, tree and holdout scores."""
    names = set(check_layers(layers))
    graph = EventGraph(spec, cfg, resolved)
    out: dict[str, Any] = {"request": CONSTANTS_TAG}
    if s1_windows(names):
        out["look_direction"] = {p: graph.look(p) for p in resolved.passes}
        if spec.flattening == "auto":
            out["vegetated_fraction"] = graph.flattening[2]
    if LANDCOVER_LAYER in names:
        out["cart"] = landcover.cart_constants(graph.cart)
    return ee.Dictionary(out)


def event_provenance(
    spec: EventSpec,
    cfg: FetchConfig,
    layers: Sequence[str],
    resolved: Resolved,
    constants: Constants | None,
    unavailable: Iterable[str] = frozenset(),
) -> dict[str, Any]:
    """How each requested layer was made, for event.json: plain values, no server call."""
    names = set(check_layers(layers)) - set(unavailable)
    out: dict[str, Any] = {"layers": list(layers)}
    if s1_windows(names):
        out.update(_s1_provenance(spec, cfg, resolved, constants))
    if s2_windows(names):
        out["s2_level"] = resolved.s2_level
        out["s2_masking"] = s2.masking_method(cfg, resolved.s2_level)  # type: ignore[arg-type]
        out["s2_composite"] = "greenest pixel (qualityMosaic on NDVI)"
    if needs_dem(names):
        out["dem_asset"] = dem_asset_for(spec, cfg)
        out["dem_resample"] = cfg.dem_resample
        if out["dem_asset"] in FILLED_FROM_GLO30:
            out["dem_voids"] = f"filled from {GLO30_ASSET}"
    for layer, attr in AUX_ASSET_FIELDS.items():
        if layer in names:
            out[attr] = getattr(cfg, attr)
    if "kgClimate" in names and cfg.kg_climate_asset:
        out["kg_climate_codes"] = (
            "the asset's codes 0-31 plus 1: lsd's 1 (Af) .. 32 (Ocean)"
            if kg_climate_zero_based(cfg)
            else "the asset's codes as they are (lsd's table: 1 Af .. 32 Ocean)"
        )
    if "canopyHeight" in names:
        out["canopy_height_fill_asset"] = cfg.canopy_height_fill_asset
        out["canopy_height_codes_masked"] = "values above 60 (101 water, 102 snow/ice, 103 no data)"
    if LANDCOVER_LAYER in names and constants and constants.cart:
        out["landcover"] = _landcover_provenance(spec, cfg, constants.cart)
    out.update(s2bands.provenance(names, resolved.s2_level))
    if any(scenes_needed(names).values()):
        chosen = constants.s1_scenes if constants else None
        out["s1_scenes"] = s1scenes.provenance(
            spec, names, resolved.passes[0], chosen, cfg.mask_distortions
        )
    if unavailable:
        out["unavailable_layers"] = sorted(set(unavailable))
    return out


def layer_conventions(
    spec: EventSpec, cfg: FetchConfig, layers: Sequence[str], resolved: Resolved
) -> dict[str, dict[str, str]]:
    """The value-changing choices this fetch made that lsd.gee decides, as event.json's
    `conventions` entries ({"value", "how": "recorded", "evidence"}; names and shape shared
    with lsd.conventions): the snow mask of the optical composites, the DEM, the land-cover
    source, and whether VV/VH were masked on layover and shadow. Only those the layers use."""
    names = set(check_layers(layers))
    out: dict[str, dict[str, str]] = {}

    def record(name: str, value: str, evidence: str) -> None:
        out[name] = {"value": value, "how": "recorded", "evidence": evidence}

    optical = {n for n in names if n == "dNDVI" or s2bands.handles(n)}
    if optical:
        rule = "SCL 11" if resolved.s2_level == "L2A" else f"NDSI > {cfg.l1c_snow_ndsi}"
        verb = "grown" if cfg.snow_mode == "grow" else "eroded"
        record(
            "snow_mask", f"{cfg.snow_mode} {cfg.snow_buffer_m:g} m",
            f"{', '.join(sorted(optical))}: snow ({rule}) {verb} by {cfg.snow_buffer_m:g} m "
            "and masked before the greenest-pixel composites; landCover's image is not "
            "snow-masked",
        )  # fmt: skip
    if needs_dem(names):
        dem = dem_asset_for(spec, cfg)
        voids = f", voids from {GLO30_ASSET}" if dem in FILLED_FROM_GLO30 else ""
        record("dem", dem, f"resampled {cfg.dem_resample}{voids}")
    if LANDCOVER_LAYER in names:
        points = (
            f"points file {spec.landcover_points.name}"
            if spec.landcover_points is not None
            else cfg.worldcover_asset
        )
        record(
            "land_cover", f"cart:{points}",
            f"smileCart per event on {points}; features from the least-cloudy pre-event "
            f"Sentinel-2 image ({cfg.cart_s2_scenes} scene(s), clouds masked, snow kept), "
            "elevation, pre-event VV/VH",
        )  # fmt: skip
    if s1_windows(names) and names & {*BACKSCATTER, "dVV", "dVH"}:
        record(
            "distortion_masking", "per_scene" if cfg.mask_distortions else "none",
            cv.PER_SCENE_MASKING if cfg.mask_distortions else
            "nothing masked; in layover and shadow VV/VH are gamma0 not flattened",
        )  # fmt: skip
    return out


def _s1_provenance(
    spec: EventSpec, cfg: FetchConfig, resolved: Resolved, constants: Constants | None
) -> dict[str, Any]:

    fraction = constants.vegetated_fraction if constants else None
    if spec.flattening in ("volume", "surface"):
        model = spec.flattening
    elif fraction is not None:
        model = "volume" if fraction >= cfg.flattening_volume_fraction else "surface"
    else:
        model = None
    looks = constants.look_direction if constants else {}
    return {
        "s1_orbit": spec.orbit,
        "s1_passes": list(resolved.passes),
        "s1_look_direction_deg": {p: round(math.degrees(v) % 360, 3) for p, v in looks.items()},
        "s1_flattening": {
            "requested": spec.flattening,
            "model": model,
            "vegetated_fraction": fraction,
            "volume_threshold": cfg.flattening_volume_fraction,
            "method": "angular flattening, Vollrath, Mullissa & Reiche 2020",
            "convention": cfg.look_convention,
            "distortions_masked": cfg.mask_distortions,
            "distortion_flags": cfg.distortion_flags,
            "distortion_masking": (
                cv.PER_SCENE_MASKING
                if cfg.mask_distortions
                else "none: in layover and shadow the values are gamma0 not flattened"
            ),
            "layover_shadow": cv.distortion_flag_rule(len(resolved.passes)),
            "lia": f"median over post-window scenes of {resolved.passes[0]}",
        },
    }


def _landcover_provenance(spec: EventSpec, cfg: FetchConfig, cart: dict[str, Any]) -> dict:
    source = (
        f"points file {spec.landcover_points}"
        if spec.landcover_points is not None
        else f"{cfg.worldcover_asset} remapped, stratified sample"
    )
    return {
        "classifier": "smileCart",
        "s2_image": (
            f"the pre-event Sentinel-2 scene that shows most of the AOI + {cfg.cart_buffer_m:g} m "
            f"(clouds and their shadows masked as for dNDVI, snow not masked), its gaps filled "
            f"from the next clearest ({cfg.cart_s2_scenes} scene(s) at most)"
        ),
        "s2_scenes_clear_share": cart.get("s2_scenes"),
        "snow_points": "points on snow in that image (the dNDVI snow rule) train class 8",
        "points_per_class": cart.get("class_counts"),
        "training_source": source,
        "holdout": cfg.cart_holdout,
        "accuracy": cart.get("accuracy"),
        "kappa": cart.get("kappa"),
        "n_train": cart.get("n_train"),
        "n_test": cart.get("n_test"),
        "tile_input": cfg.cart_tile_input,
        "classes": landcover.class_table(),
    }


def needs_dem(layers: Iterable[str]) -> bool:
    """Whether any of the layers is computed from the DEM (terrain flattening, slope, CART)."""
    names = set(layers)
    return bool(s1_windows(names) or names & {"elevation", "slope", LANDCOVER_LAYER})


def asset_available(asset_id: str) -> bool:
    """True if the caller can read the asset (one server call)."""
    return terrain.asset_available(asset_id)


def aux_assets(cfg: FetchConfig) -> dict[str, str | None]:
    """Auxiliary layers that come from third-party assets, which may be missing or unshared."""
    return {layer: getattr(cfg, attr) for layer, attr in AUX_ASSET_FIELDS.items()}


def unavailable_aux_layers(
    cfg: FetchConfig, layers: Sequence[str] = PAPER_LAYERS
) -> dict[str, str | None]:
    """{layer: asset} for the auxiliary layers among `layers` whose asset is not configured or
    cannot be read (server calls). Such a layer becomes NaN rather than failing the event: pass
    the keys as build_event_image(..., unavailable=...) and warn the user."""
    assets = aux_assets(cfg)
    return {n: a for n, a in assets.items() if n in layers and (not a or not asset_available(a))}
