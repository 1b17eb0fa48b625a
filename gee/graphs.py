"""Serialised Earth Engine graphs on disk: what each request of a fetch sends, to inspect or replay.

`lsd fetch --dry-run --graphs DIR` (and a fetch with `--graphs`) writes, per event, one JSON file
per request: `facts.json` (scene listing), `constants.json` (per-event values), `stack.json`
(what every download request evaluates: the stack unmasked to the no-data sentinel and cast to
float32, lsd.gee.pixels.unmasked, byte for byte the `expression` of each computePixels request)
and one file per graph group (s1, terrain, aux, landcover, s2; s2bands, ndvi, s1scenes for the
layer groups beyond the paper) with the image of that group's layers alone, masks kept, to read
rather than to send. Each file holds the graph exactly as the ee client serialises it
(`ee.serializer.encode(..., for_cloud_api=True)`), so `ee.deserializer.decode(doc["graph"])`
rebuilds the object, and the offline tests read these same files. Format `lsd-ee-graph/1`, owned
here.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import ee
from ee import apitestcase

from lsd.files import write_json
from lsd.gee import event_facts as ef
from lsd.gee import event_graph as gl
from lsd.gee import pixels
from lsd.layergroups import ndvi_of, s1_scene_of, s2_band_of
from lsd.layers import LANDCOVER_LAYER, S1_LAYERS

GRAPH_FORMAT = "lsd-ee-graph/1"

# Graph groups: layers computed from the same inputs, one graph file each. The paper's layers
# are listed; the layer groups beyond the paper (lsd.layergroups) are recognised by name.
GRAPH_GROUPS: dict[str, Callable[[str], bool]] = {
    "s1": lambda n: n in S1_LAYERS,
    "terrain": lambda n: n in ("elevation", "slope"),
    "aux": lambda n: n in ("kgClimate", "canopyHeight"),
    "landcover": lambda n: n == LANDCOVER_LAYER,
    "s2": lambda n: n == "dNDVI",
    "s2bands": lambda n: s2_band_of(n) is not None,
    "ndvi": lambda n: ndvi_of(n) is not None,
    "s1scenes": lambda n: s1_scene_of(n) is not None,
}


def groups_of(layers: Sequence[str]) -> dict[str, list[str]]:
    """The requested layers per graph group, in request order; groups with no requested layer
    left out."""
    out: dict[str, list[str]] = {}
    for group, member in GRAPH_GROUPS.items():
        chosen = [n for n in layers if member(n)]
        if chosen:
            out[group] = chosen
    return out


@contextlib.contextmanager
def offline_client() -> Iterator[None]:
    """The ee client able to build and serialise graphs without a server (a dry run without
    credentials, the graph benchmark): it needs only the algorithm signatures, which its wheel
    ships (the list its own tests use). A session already open is used as it is; otherwise
    the client is restored afterwards."""

    if ee.data.is_initialized():
        yield
        return
    saved = (
        ee.data._install_cloud_api_resource, ee.data.getAlgorithms,
        ee.deprecation._FetchDataCatalogStac,
    )  # fmt: skip
    ee.data._install_cloud_api_resource = lambda: None
    ee.data.getAlgorithms = apitestcase.GetAlgorithms
    ee.deprecation._FetchDataCatalogStac = lambda: {}  # no catalog look-up over the network
    ee.Initialize(None, "", project="lsd-offline")
    try:
        yield
    finally:
        ee.Reset()
        (
            ee.data._install_cloud_api_resource, ee.data.getAlgorithms,
            ee.deprecation._FetchDataCatalogStac,
        ) = saved  # fmt: skip


def function_calls(encoded: dict[str, Any]) -> dict[str, int]:
    """How often each function is invoked in a serialised graph (shared sub-graphs once)."""
    counts: dict[str, int] = {}

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            name = node.get("functionInvocationValue", {}).get("functionName")
            if name:
                counts[name] = counts.get(name, 0) + 1
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(encoded.get("values", {}))
    return counts


def encode(obj: Any) -> dict[str, Any]:
    """The graph of an ee object as the client sends it to the server."""
    return ee.serializer.encode(obj, for_cloud_api=True)


def graph_bytes(obj: Any) -> int:
    """Size of the serialised graph in bytes (compact JSON, as in the request body)."""
    return len(json.dumps(encode(obj), separators=(",", ":")).encode())


def write_graph(
    path: Path, obj: Any, *, event_id: str, request: str, **meta: Any
) -> dict[str, Any]:
    """Write one request's graph with what it is for; returns the document."""
    doc = {
        "format": GRAPH_FORMAT,
        "event_id": event_id,
        "request": request,
        **meta,
        "bytes": graph_bytes(obj),
        "graph": encode(obj),
    }
    write_json(path, doc)
    return doc


def read_graph(path: Path) -> dict[str, Any]:
    """A graph file written by write_graph (the caller decodes `graph` as it needs)."""
    doc = json.loads(Path(path).read_text())
    if doc.get("format") != GRAPH_FORMAT:
        raise ValueError(f"{path}: not an {GRAPH_FORMAT} file")
    return doc


def write_event_graphs(
    folder: Path,
    spec: Any,
    cfg: Any,
    layers: Sequence[str],
    resolved: Any,
    constants: Any,
    unavailable: frozenset[str] = frozenset(),
) -> list[Path]:
    """Every request of one event's fetch, one file each: facts.json, constants.json (when a
    layer needs per-event values), stack.json (the expression each download request sends, with
    the band ids of its band group) and one file per graph group. Built with `constants` when they
    are known, else with the per-event values computed inside the graphs."""

    meta = {
        "layers": list(layers),
        "windows": {"pre": list(spec.pre.as_strings()), "post": list(spec.post.as_strings())},
        "aoi_wkt": spec.aoi.wkt,
        "resolved": {
            "s1_passes": list(resolved.passes),
            "s2_level": resolved.s2_level,
            "assumed": resolved.assumed,
        },
        "constants_known": constants is not None,
    }
    written = [folder / "facts.json"]
    facts = ef.facts_request(spec, cfg, layers, gl.aoi_geometry(spec))
    write_graph(written[0], facts, event_id=spec.event_id, request="facts", **meta)
    names = [n for n in layers if n not in unavailable]
    if ef.s1_windows(names) or LANDCOVER_LAYER in names:
        path = folder / "constants.json"
        request = gl.constants_request(spec, cfg, names, resolved)
        write_graph(path, request, event_id=spec.event_id, request="constants", **meta)
        written.append(path)
    band_ids = [[layers[i] for i in g] for g in pixels.band_groups(len(layers))]
    parts = [("stack", list(layers)), *groups_of(layers).items()]
    for group, members in parts:
        image = gl.build_event_image(
            spec, cfg, members, unavailable=unavailable & set(members), resolved=resolved,
            constants=constants,
        )  # fmt: skip
        path = folder / f"{group}.json"
        extra: dict[str, Any] = {}
        if group == "stack":  # what computePixels and the exports are sent, unmask included
            image = pixels.unmasked(image)
            extra = {"band_ids_per_request": band_ids,
                     "no_data_sentinel": pixels.NODATA_SENTINEL}  # fmt: skip
        write_graph(
            path, image, event_id=spec.event_id, request="computePixels", group=group,
            group_layers=members, **extra, **meta,
        )  # fmt: skip
        written.append(path)
    return written
