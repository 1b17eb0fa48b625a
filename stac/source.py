"""STAC catalogs as a data source: an EventSpec in, a finished event folder out, with no Earth
Engine account.

The same folder, layer names, 10 m UTM grid, label rule and event.json keys as the Earth Engine
source (lsd.gee.source), with `source.kind = "stac"`, the catalog and collection of every
product, the item ids each layer was made from, and the conventions of each layer (flattening
model, flag polarity, dB, snow mask, DEM, land cover) at the top level under `conventions`.
Work happens in a hidden folder inside the event folder; stack.tif is moved into place only
when complete, and the driver removes a folder whose build failed, so nothing half-written
looks finished.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsd import conventions as cv
from lsd.errors import InvalidValue, ServiceUnavailable
from lsd.events import event_record, write_event
from lsd.labels import label_record, rasterize_labels
from lsd.layers import LANDCOVER_LAYER, PAPER_LAYERS
from lsd.rasters import Grid
from lsd.sources import EventFailed
from lsd.spec import EventSpec, aoi_in_utm, describe_spec, event_grid
from lsd.stac import s2
from lsd.stac.auxlayers import AUX_LAYERS, configured, local_file
from lsd.stac.build import EventBuild
from lsd.stac.catalogs import PLANETARY_COMPUTER, CatalogChoice, catalog_named
from lsd.stac.config import StacConfig
from lsd.stac.scenes import STAC_LAYERS, EventScenes, find_scenes, item_ids, needs
from lsd.stac.search import CatalogClient

Echo = Callable[[str], None]
WORK_DIR = ".stac-work.partial"
RTC_EVIDENCE = (
    "sentinel-1-rtc: gamma0 terrain-flattened by the catalog's processor (Catalyst), area "
    "projection after Small (2011) with PlanetDEM; lsd takes it as published, no Vollrath factor"
)


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def _event_line(spec: EventSpec, exc: Exception) -> str:
    """The failure as one line that starts with the event id."""
    text = str(exc)
    return text if text.startswith("event ") else f"event {spec.event_id}: {text}"


def require_extra() -> None:
    """One line, not a traceback, when the `[stac]` extra is not installed."""

    missing = [
        m for m in ("pystac_client", "planetary_computer", "sklearn")
        if importlib.util.find_spec(m) is None
    ]  # fmt: skip
    if missing:
        raise ServiceUnavailable(
            f"the STAC source needs {', '.join(missing)}: pip install 'lsd[stac]'"
        )


def check_layers(layers: Sequence[str]) -> tuple[str, ...]:
    unknown = [n for n in layers if n not in STAC_LAYERS]
    if unknown:
        raise InvalidValue(
            f"layer {unknown[0]!r} is not made by the STAC source; it makes the paper's 15 and "
            "preNDVI, postNDVI (docs/layers.md, 'The STAC source')",
            field="layers",
        )
    return tuple(layers)


@dataclass
class StacSource:
    """lsd.sources.DataSource over STAC catalogs (Planetary Computer, Earth Search, a URL)."""

    specs: Sequence[EventSpec]
    cfg: StacConfig = field(default_factory=StacConfig)
    catalog: str = PLANETARY_COMPUTER
    layers: tuple[str, ...] = PAPER_LAYERS
    write_label: bool = True  # False for a prediction area, which has no inventory
    echo: Echo = _err
    warnings: list[str] = field(default_factory=list)

    name = "stac"
    keep_going = True

    def __post_init__(self) -> None:
        self.choice = CatalogChoice(catalog_named(self.catalog))
        self._clients: dict[str, CatalogClient] = {}
        self._warned: set[str] = set()
        for spec in self.specs:
            check_layers(self.layers_for(spec))
        require_extra()

    def items(self) -> Sequence[EventSpec]:
        return self.specs

    def download_static_files(self) -> None:
        """Fetch the run-wide files (the kgClimate and canopyHeight maps) once, before events are
        built in several processes at a time, so that workers find them cached instead of all
        downloading the same file."""

        needed = {name for spec in self.specs for name in self.layers_for(spec)}
        for layer in AUX_LAYERS:
            if layer in needed:
                local_file(layer, self.cfg)

    def layers_for(self, spec: EventSpec) -> tuple[str, ...]:
        return tuple(spec.layers) or tuple(self.layers)

    def client(self, url: str) -> CatalogClient:
        if url not in self._clients:
            cat = next(c for c in self.choice.catalogs() if c.url == url)
            self._clients[url] = CatalogClient(cat, self.cfg.timeout_s)
        return self._clients[url]

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.echo(f"warning: {message}")

    def warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.warn(message)

    def plan(self, spec: EventSpec) -> dict[str, Any]:
        grid = event_grid(spec, self.cfg.scale)
        layers = self.layers_for(spec)
        need = needs(layers)
        products = [p for p, windows in need.items() if windows]
        return {
            "event_id": spec.event_id,
            "summary": f"{spec.date.isoformat()}, role {spec.role or '-'}",
            "aoi_km2": round(aoi_in_utm(spec).area / 1e6, 6),
            "utm_epsg": spec.utm_epsg,
            "grid": f"{grid.width} x {grid.height} px at {self.cfg.scale:g} m",
            "pre_window": "..".join(spec.pre.as_strings()),
            "post_window": "..".join(spec.post.as_strings()),
            "collections": [
                f"{p}: {cat.collections[p]} ({cat.name})"
                for p in products
                for cat in [self.choice.for_product(p)]
            ],
            "orbit": spec.orbit,
            "layers": f"{len(layers)}: {', '.join(layers)}",
            "nan_layers": [n for n in AUX_LAYERS if n in layers and not configured(n, self.cfg)]
            or None,
        }

    def build(self, spec: EventSpec, folder: Path) -> None:

        layers = self.layers_for(spec)
        for layer in AUX_LAYERS:
            if layer in layers and not configured(layer, self.cfg):
                self.warn_once(
                    layer,
                    f"no STAC catalog offers {layer} and no "
                    f"{AUX_LAYERS[layer]} is set ([stac] settings); {layer} is NaN",
                )
        notes: list[str] = []

        def note(msg: str) -> None:
            notes.append(msg)
            self.warn(msg)

        try:
            found = find_scenes(
                spec, layers, self.choice, self.client, cart_buffer_m=self.cfg.cart_buffer_m
            )
        except ServiceUnavailable as exc:
            raise EventFailed(_event_line(spec, exc)) from None
        for why, ids in found.left_out.items():
            note(
                f"event {spec.event_id}: {len(ids)} item(s) left out ({why}): {', '.join(ids[:3])}"
                + (" ..." if len(ids) > 3 else "")
            )
        work = folder / WORK_DIR
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            job = EventBuild(spec, layers, self.cfg, found, note)
            try:
                stack = job.run(work)
            except ServiceUnavailable as exc:
                raise EventFailed(_event_line(spec, exc)) from None
            label = None
            if self.write_label:
                label = rasterize_labels(
                    spec.inventory, spec.aoi, job.grid, warn=self.echo, event_id=spec.event_id
                )
            record = self.record(spec, job.grid, layers, found, job, notes)
            write_event(
                folder,
                record,
                grid=job.grid,
                stack=lambda dest: os.replace(stack, dest),
                label=label,
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # ------------------------------------------------------------------ event.json

    def record(
        self,
        spec: EventSpec,
        grid: Grid,
        layers: Sequence[str],
        found: EventScenes,
        job: Any,
        notes: list[str],
    ) -> dict[str, Any]:
        source = {
            "kind": self.name,
            "catalog": self.choice.primary.record(),
            "products": self.choice.record(),
            "event": describe_spec(spec),
            "windows": {
                "pre": list(spec.pre.as_strings()),
                "post": list(spec.post.as_strings()),
                "end_exclusive": True,
            },
            "image_counts": found.counts(),
            "s1_passes": list(found.passes),
            "items": layer_items(layers, found, list(job.cart_scenes)),
            "provenance": self.provenance(layers, found, job),
            "unavailable_layers": sorted(
                n for n in AUX_LAYERS if n in layers and not configured(n, self.cfg)
            ),
            "left_out": found.left_out,
            "warnings": notes,
            "config": dataclasses.asdict(self.cfg),
        }
        label = label_record(spec.inventory) if self.write_label else None
        return event_record(
            spec.event_id,
            layers=layers,
            grid=grid,
            source=source,
            role=spec.role,
            label=label,
            conventions=conventions(layers, self.choice, self.cfg),
        )

    def provenance(self, layers: Sequence[str], found: EventScenes, job: Any) -> dict[str, Any]:
        names = set(layers)
        out: dict[str, Any] = {"layers": list(layers)}
        if found.s2:
            out["s2"] = self._s2_record(found)
        if found.passes:
            out["s1"] = self._s1_record(found, job)
        if found.dem:
            out["dem"] = {
                "collection": self.choice.for_product("dem").collections["dem"],
                "resample": self.cfg.dem_resample,
                "slope": "4-neighbour central differences",
            }
        if LANDCOVER_LAYER in names:
            out["landcover"] = self._landcover_record(job)
        for layer in AUX_LAYERS:
            if layer in names:
                out[layer] = configured(layer, self.cfg)
        return out

    def _s2_record(self, found: EventScenes) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "collection": self.choice.for_product("s2").collections["s2"],
            "level": "L2A",
            "masking": s2.masking_method(cfg),
            "composite": "greenest pixel: every band from the scene with the highest NDVI",
            "reflectance": "(DN + offset) / 10000; offset -1000 for processing baseline "
            "04.00 and later unless the catalog already applied it",
            "offsets": {i.id: s2.dn_offset(i) for w in found.s2.values() for i in w},
        }

    def _s1_record(self, found: EventScenes, job: Any) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "collection": self.choice.for_product("s1").collections["s1"],
            "passes": list(found.passes),
            "flattening": RTC_EVIDENCE,
            "composite": "median of linear gamma0 per window, then 10 log10",
            "towards_sensor_deg": {p: round(v, 3) for p, v in job.look.items()},
            "incidence": f"linear across the footprint, {cfg.incidence_near_deg:g} deg (near) "
            f"to {cfg.incidence_far_deg:g} deg (far)",
            "distortions_masked": cfg.mask_distortions,
            "distortion_masking": cv.PER_SCENE_MASKING if cfg.mask_distortions else "none",
            "layover_shadow": cv.distortion_flag_rule(len(found.passes)),
            "lia": f"median over post-window scenes of {found.passes[0]}",
        }

    def _landcover_record(self, job: Any) -> dict[str, Any]:
        cfg = self.cfg
        training = (
            f"points file {job.spec.landcover_points}"
            if job.spec.landcover_points is not None
            else f"{self.choice.for_product('worldcover').collections['worldcover']} remapped, "
            f"stratified sample of up to {cfg.cart_points_per_class} per class within "
            f"{cfg.cart_buffer_m:g} m of the AOI"
        )
        return {
            **(job.cart.record() if job.cart else {"classifier": None}),
            "s2_image": (
                f"the pre-event Sentinel-2 scene that shows most of the AOI + "
                f"{cfg.cart_buffer_m:g} m clear (clouds and their shadows masked as for "
                f"dNDVI, snow not masked), its gaps filled from the next clearest "
                f"({cfg.cart_s2_scenes} scene(s) at most)"
            ),
            "s2_scenes_clear_share": job.cart_scenes,
            "snow_points": "points on snow in that image (SCL 11) train class 8",
            "training_source": training,
            "holdout": cfg.cart_holdout,
            "points_per_class": job.sample_counts,
        }


def layer_items(
    layers: Sequence[str], found: EventScenes, cart_scenes: Sequence[str] = ()
) -> dict[str, list[str]]:
    """The STAC item ids each layer was made from (landCover: the scenes of CART's image)."""
    s2_pre, s2_post = item_ids(found.s2.get("pre", [])), item_ids(found.s2.get("post", []))

    def s1(key: str) -> list[str]:
        return [i.id for p in found.passes for i in found.s1[p].get(key, [])]

    dem = item_ids(found.dem)
    table = {
        "preVV": s1("pre") + dem,
        "preVH": s1("pre") + dem,
        "postVV": s1("post") + dem,
        "postVH": s1("post") + dem,
        "dVV": s1("pre") + s1("post") + dem,
        "dVH": s1("pre") + s1("post") + dem,
        "layover": s1("pre") + s1("post") + dem,
        "shadow": s1("pre") + s1("post") + dem,
        "liaDeg": s1("post") + dem,
        "elevation": dem,
        "slope": dem,
        "kgClimate": [],
        "canopyHeight": [],
        "landCover": list(cart_scenes) + s1("pre") + dem + item_ids(found.worldcover),
        "dNDVI": s2_pre + s2_post,
        "preNDVI": s2_pre,
        "postNDVI": s2_post,
    }
    return {n: table[n] for n in layers}


def conventions(layers: Sequence[str], choice: CatalogChoice, cfg: StacConfig) -> dict[str, Any]:
    """The conventions record (shared shape: value, how, evidence) of a STAC stack."""
    names = set(layers)
    source = "+".join(sorted({c.name for c in choice.catalogs()}))
    out: dict[str, Any] = {
        "source": {
            "value": f"stac:{source}",
            "how": "recorded",
            "evidence": "lsd.stac.source: "
            + ", ".join(
                f"{p} from {choice.for_product(p).name}" for p in ("s2", "s1", "dem", "worldcover")
            ),
        },
    }
    out.update(_radar_conventions(names, cfg))
    if names & {"dNDVI", "preNDVI", "postNDVI", "landCover"}:
        verb = "grown" if cfg.snow_mode == "grow" else "eroded"
        out["snow_mask"] = {
            "value": f"SCL 11 {verb} {cfg.snow_buffer_m:g} m",
            "how": "recorded",
            "evidence": s2.masking_method(cfg)
            + "; before the greenest-pixel composites; landCover's image is not snow-masked",
        }
    if names & {"elevation", "slope", "layover", "shadow", "liaDeg", "landCover"}:
        dem = choice.for_product("dem")
        out["dem"] = {
            "value": f"{dem.collections['dem']} ({dem.name})",
            "how": "recorded",
            "evidence": f"Copernicus GLO-30 resampled {cfg.dem_resample} to the 10 m grid",
        }
    if "landCover" in names:
        out["land_cover"] = {
            "value": "CART (scikit-learn) on ESA WorldCover v200 points",
            "how": "recorded",
            "evidence": "lsd.stac.landcover; features from the least-cloudy pre-event Sentinel-2 "
            f"image ({cfg.cart_s2_scenes} scene(s), clouds masked, snow kept), elevation, "
            "pre-event VV/VH; points on snow are class 8",
        }
    return out


def _radar_conventions(names: set[str], cfg: StacConfig) -> dict[str, Any]:
    """The radar part of `conventions`: what RTC backscatter and lsd's own flags mean."""
    out: dict[str, Any] = {}
    radar_layers = names & {"preVV", "postVV", "dVV", "preVH", "postVH", "dVH", "landCover"}
    if radar_layers:
        out["flattening"] = {"value": "rtc-gamma0", "how": "recorded", "evidence": RTC_EVIDENCE}
        out["radar_scale"] = {
            "value": "db",
            "how": "recorded",
            "evidence": "10 log10 of the median linear gamma0",
        }
    if names & {"layover", "shadow"}:
        out["distortion_flags"] = {
            "value": "1=distorted",
            "how": "recorded",
            "evidence": "lsd.stac.radar: 1 where every scene of the pre or the post window is "
            "in layover or shadow (where VV/VH are no data), by the kind those scenes show",
        }
    if names & {"preVV", "postVV", "dVV", "preVH", "postVH", "dVH"}:
        out["distortion_masking"] = {
            "value": "per_scene" if cfg.mask_distortions else "none",
            "how": "recorded",
            "evidence": cv.PER_SCENE_MASKING
            if cfg.mask_distortions
            else "nothing masked: VV/VH keep their values in layover and shadow",
        }
    return out
