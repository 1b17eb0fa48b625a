"""Entry points: the ee graph of an event's layer stack, its provenance and its image counts.

Nothing here calls the server (no getInfo): the caller decides when to pay for a round trip,
and tests build every graph offline. Each piece (S1, S2, DEM, CART) is built at most once per
call and only if a requested layer needs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cached_property

import ee
import shapely.geometry

from lsd.errors import InvalidValue
from lsd.gee import landcover, s1, s1scenes, s2, s2bands, terrain
from lsd.gee.config import FetchConfig, dem_asset_for
from lsd.layergroups import LAYER_GROUPS, is_fetchable, scenes_needed, windows_needed
from lsd.layers import LANDCOVER_LAYER, PAPER_LAYERS, S1_LAYERS
from lsd.spec import EventSpec

# Layers read from third-party assets, and the FetchConfig field (also the provenance key) that
# names each asset.
AUX_ASSET_FIELDS = {"kgClimate": "kg_climate_asset", "canopyHeight": "canopy_height_asset"}


def aoi_geometry(spec: EventSpec) -> ee.Geometry:
    """The AOI as a planar EPSG:4326 geometry, so its edges are the straight lines shapely had."""
    return ee.Geometry(shapely.geometry.mapping(spec.aoi), "EPSG:4326", False)


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

    def __init__(self, spec: EventSpec, cfg: FetchConfig, layers: Sequence[str] = ()) -> None:
        self.spec = spec
        self.cfg = cfg
        self.aoi = aoi_geometry(spec)
        self.layers = tuple(layers)  # what the scene layers need to know how many to choose

    # -- terrain
    @cached_property
    def dem_id(self) -> str:
        return dem_asset_for(self.spec)

    @cached_property
    def dem(self) -> ee.Image:
        return terrain.dem_image(self.dem_id)

    @cached_property
    def worldcover(self) -> ee.Image:
        return landcover.worldcover_image(self.cfg)

    # -- Sentinel-1
    @cached_property
    def s1_raw(self) -> dict[str, ee.ImageCollection]:
        spec = self.spec
        return {
            "pre": s1.s1_collection(self.aoi, spec.pre, spec.orbit),
            "post": s1.s1_collection(self.aoi, spec.post, spec.orbit),
        }

    @cached_property
    def flattening(self) -> tuple[ee.ComputedObject, ee.String, ee.ComputedObject]:
        wc = self.worldcover if self.spec.flattening == "auto" else None
        return s1.flattening_choice(self.spec, self.cfg, wc, self.aoi)

    @cached_property
    def s1_flat(self) -> dict[str, ee.ImageCollection]:
        use_volume = self.flattening[0]
        terrain_angles = s1.terrain_angles(self.dem)
        region = self.aoi.buffer(self.cfg.look_direction_buffer_m, 100)
        return {
            k: s1.flattened_collection(col, terrain_angles, use_volume, region)
            for k, col in self.s1_raw.items()
        }

    @cached_property
    def s1_db(self) -> dict[str, ee.Image]:
        return {k: s1.db_composite(col) for k, col in self.s1_flat.items()}

    # -- Sentinel-2
    @cached_property
    def s2_masked(self) -> dict[str, ee.ImageCollection]:
        spec, cfg = self.spec, self.cfg
        return {
            "pre": s2.masked_collection(self.aoi, spec.pre, cfg),
            "post": s2.masked_collection(self.aoi, spec.post, cfg),
        }

    @cached_property
    def s2_greenest(self) -> dict[str, ee.Image]:
        return {k: s2.greenest(col) for k, col in self.s2_masked.items()}

    @cached_property
    def s2_band_composites(self) -> dict[str, ee.Image]:
        return {k: s2bands.band_composite(col) for k, col in self.s2_masked.items()}

    @cached_property
    def s1_scenes(self) -> s1scenes.Scenes:
        return s1scenes.Scenes(self.spec, self.s1_raw, self.s1_flat, self.layers)

    # -- CART land cover
    @cached_property
    def cart(self) -> landcover.CartResult:
        cfg = self.cfg
        pre = self.s2_greenest["pre"]
        features = landcover.features_image(
            pre, self.dem, self.s1_db["pre"].select("VV"), self.s1_db["pre"].select("VH")
        )
        if self.spec.landcover_points is not None:
            points = landcover.user_points(features, self.spec.landcover_points, cfg)
        else:
            classes = landcover.paper_classes(self.worldcover, pre.select("NDVI"), cfg)
            region = self.aoi.buffer(cfg.cart_buffer_m, 100)
            points = landcover.worldcover_points(features, classes, region, cfg)
        return landcover.train_cart(features, points, cfg)

    # -- layers
    def layer(self, name: str) -> ee.Image:
        """One layer as a single band called `name`."""
        db, flat = (self.s1_db, self.s1_flat) if name in S1_LAYERS else ({}, {})
        if name in ("preVV", "postVV", "preVH", "postVH"):
            image = db[name[:-2]].select(name[-2:])
        elif name in ("dVV", "dVH"):
            pol = name[1:]
            image = db["post"].select(pol).subtract(db["pre"].select(pol))
        elif name in ("layover", "shadow"):
            image = flat["post"].select(name).max()
        elif name == "liaDeg":
            image = flat["post"].select("lia").median()
        elif name == "elevation":
            image = self.dem
        elif name == "slope":
            image = terrain.slope_deg(self.dem)
        elif name == "kgClimate":
            image = terrain.kg_climate(self.cfg)
        elif name == "canopyHeight":
            image = terrain.canopy_height(self.cfg)
        elif name == "landCover":
            image = self.cart.classified
        elif name == "dNDVI":
            green = self.s2_greenest
            image = green["post"].select("NDVI").subtract(green["pre"].select("NDVI"))
        elif s2bands.handles(name):
            image = s2bands.layer(name, self.s2_band_composites, self.s2_greenest)
        elif s1scenes.handles(name):
            image = self.s1_scenes.layer(name)
        else:  # pragma: no cover - check_layers rejects these first
            raise InvalidValue(f"layer {name!r} cannot be fetched from Earth Engine")
        return image.toFloat().rename(name)


def build_event_image(
    spec: EventSpec,
    cfg: FetchConfig,
    layers: Sequence[str] = PAPER_LAYERS,
    unavailable: Iterable[str] = frozenset(),
) -> ee.Image:
    """The requested layers, in the requested order, one float32 band each, masked where there
    is no data. Layers named in `unavailable` (e.g. an auxiliary asset the user cannot read)
    come back fully masked, so the stack keeps its shape and the download gives NaN there."""
    names = check_layers(layers)
    missing = set(unavailable)
    graph = EventGraph(spec, cfg, names)
    bands = [terrain.masked_layer(n) if n in missing else graph.layer(n) for n in names]
    return ee.Image.cat(bands).toFloat()


def event_provenance(
    spec: EventSpec,
    cfg: FetchConfig,
    layers: Sequence[str] = PAPER_LAYERS,
    unavailable: Iterable[str] = frozenset(),
) -> ee.Dictionary:
    """Server-side facts for event.json, for the pieces the requested layers use; the caller
    fetches them with one getInfo."""
    names = set(check_layers(layers)) - set(unavailable)
    graph = EventGraph(spec, cfg, sorted(names))
    out: dict[str, object] = {"layers": [n for n in layers]}
    windows = windows_needed(names)
    needs_s1 = bool(windows & {"s1_pre", "s1_post"})
    needs_s2 = bool(windows & {"s2_pre", "s2_post"})
    if needs_s1:
        out.update(_s1_provenance(graph))
    if needs_s2:
        out["s2_pre"] = s2.collection_summary(graph.s2_masked["pre"])
        out["s2_post"] = s2.collection_summary(graph.s2_masked["post"])
        out["s2_masking"] = s2.masking_method(cfg)
        out["s2_composite"] = "greenest pixel (qualityMosaic on NDVI)"
    if needs_s1 or names & {"elevation", "slope"}:
        out["dem_asset"] = graph.dem_id
    for layer, attr in AUX_ASSET_FIELDS.items():
        if layer in names:
            out[attr] = getattr(cfg, attr)
    if LANDCOVER_LAYER in names:
        out["landcover"] = _landcover_provenance(graph)
    out.update(s2bands.provenance(names))
    if any(scenes_needed(names).values()):
        out["s1_scenes"] = graph.s1_scenes.provenance()
    if unavailable:
        out["unavailable_layers"] = sorted(set(unavailable))
    return ee.Dictionary(out)


def _s1_provenance(graph: EventGraph) -> dict[str, object]:
    use_volume, model, fraction = graph.flattening
    return {
        "s1_pre": s1.collection_summary(graph.s1_raw["pre"]),
        "s1_post": s1.collection_summary(graph.s1_raw["post"]),
        "s1_orbit": graph.spec.orbit,
        "s1_flattening": ee.Dictionary(
            {
                "requested": graph.spec.flattening,
                "model": model,
                "vegetated_fraction": fraction,
                "volume_threshold": graph.cfg.flattening_volume_fraction,
                "method": "angular flattening, Vollrath, Mullissa & Reiche 2020",
                "layover_shadow": "max over post-window scenes",
                "lia": "median over post-window scenes",
            }
        ),
    }


def _landcover_provenance(graph: EventGraph) -> ee.Dictionary:
    spec, cfg, cart = graph.spec, graph.cfg, graph.cart
    source = (
        f"points file {spec.landcover_points}"
        if spec.landcover_points is not None
        else f"{cfg.worldcover_asset} remapped, stratified sample"
    )
    return ee.Dictionary(
        {
            "classifier": "smileCart",
            "training_source": source,
            "holdout": cfg.cart_holdout,
            "accuracy": cart.accuracy,
            "kappa": cart.kappa,
            "n_train": cart.n_train,
            "n_test": cart.n_test,
            "classes": landcover.class_table(),
        }
    )


def window_counts(spec: EventSpec, cfg: FetchConfig, layers: Sequence[str] = ()) -> ee.Dictionary:
    """Scenes found per sensor and window: {"s1_pre", "s1_post", "s2_pre", "s2_post"}, plus
    "s1_pre_acquisitions" and "s1_post_acquisitions" when `layers` holds single-scene layers."""
    aoi = aoi_geometry(spec)
    counts = ee.Dictionary(
        {
            "s1_pre": s1.s1_collection(aoi, spec.pre, spec.orbit).size(),
            "s1_post": s1.s1_collection(aoi, spec.post, spec.orbit).size(),
            "s2_pre": s2.s2_sr_collection(aoi, spec.pre).size(),
            "s2_post": s2.s2_sr_collection(aoi, spec.post).size(),
        }
    )
    if any(scenes_needed(layers).values()):
        counts = counts.combine(s1scenes.acquisition_counts(spec, aoi))
    return counts


def asset_available(asset_id: str) -> bool:
    """True if the caller can read the asset (one server call)."""
    return terrain.asset_available(asset_id)


def aux_assets(cfg: FetchConfig) -> dict[str, str]:
    """Auxiliary layers that come from third-party assets, which may be missing or unshared."""
    return {layer: getattr(cfg, attr) for layer, attr in AUX_ASSET_FIELDS.items()}


def unavailable_aux_layers(
    cfg: FetchConfig, layers: Sequence[str] = PAPER_LAYERS
) -> dict[str, str]:
    """{layer: asset} for the auxiliary layers among `layers` whose asset cannot be read (server
    calls). Such a layer becomes NaN rather than failing the event: pass the keys as
    build_event_image(..., unavailable=...) and warn the user."""
    assets = aux_assets(cfg)
    return {n: a for n, a in assets.items() if n in layers and not asset_available(a)}
