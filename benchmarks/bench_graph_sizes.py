"""Benchmark the request each download tile sends: per-event values in the graph vs as constants.

Before, every tile request carried the whole event graph, so the server recomputed, for every
512 x 512 tile, the look-direction reduction, the vegetated share of the AOI (auto flattening)
and CART's stratified sampling and training over the AOI plus 2 km. Now these are computed once
per event (lsd.gee.event_facts) and each tile carries them as numbers and a decision tree.

For the paper's 21 events (examples/events.csv) this builds both graphs offline (the ee client
with its bundled algorithm list, no server) and prints per event and in total:

* bytes of the serialised graph (the request body's expression),
* graph nodes (values in the serialised DAG),
* aggregations over a region or a training set per tile (reduceRegion, stratifiedSample,
  sampleRegions, randomColumn, Classifier.train, errorMatrix): server work that grows with the
  AOI and with the number of scenes, repeated by every tile before, absent now.

The constants are stand-ins of realistic size (a CART tree of --tree-nodes nodes; with
--cart-input samples, 560 training points instead). Graph sizes do not depend on their values.

    python benchmarks/bench_graph_sizes.py
    python benchmarks/bench_graph_sizes.py --cart-input samples

Writes benchmarks/results/graph_sizes.json (or --json PATH).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

AGGREGATIONS = (
    "Image.reduceRegion", "Image.stratifiedSample", "Image.sampleRegions",
    "Collection.randomColumn", "Classifier.train", "Collection.errorMatrix",
)  # fmt: skip


def tree_string(nodes: int) -> str:
    """A CART tree in the text form Classifier.explain gives, of the given size."""
    lines = [
        f"n= {nodes * 6}",
        "node), split, n, loss, yval, (yprob)",
        "      * denotes terminal node",
    ]
    for i in range(1, nodes + 1):
        probs = " ".join(f"{(i * k) % 7 / 10:.4f}" for k in range(1, 9))
        lines.append(f"{'  ' * min(i.bit_length(), 12)}{i}) B8<={1000 + i}.5 {nodes * 6 // i} "
                     f"{i % 5} {1 + i % 8} ({probs}){' *' if i > nodes // 2 else ''}")  # fmt: skip
    return "\n".join(lines)


def samples(n: int) -> dict:
    from lsd.gee.landcover import FEATURE_BANDS

    feats = [
        {"type": "Feature", "geometry": None,
         "properties": {**{b: 1234.5678 + i for b in FEATURE_BANDS}, "class": 1 + i % 8}}
        for i in range(n)
    ]  # fmt: skip
    return {"type": "FeatureCollection", "features": feats}


def measure(obj) -> dict[str, int]:
    from lsd.gee.graphs import encode, function_calls, graph_bytes

    encoded = encode(obj)
    counts = function_calls(encoded)
    return {
        "bytes": graph_bytes(obj),
        "nodes": len(encoded["values"]),
        "aggregations": sum(counts.get(name, 0) for name in AGGREGATIONS),
    }


def run(args: argparse.Namespace) -> dict:
    from lsd.eventcsv import read_events
    from lsd.gee import event_graph as layers
    from lsd.gee.config import FetchConfig
    from lsd.gee.event_facts import Constants, assumed_resolution
    from lsd.gee.graphs import offline_client
    from lsd.layers import PAPER_LAYERS

    cfg = FetchConfig(cart_tile_input=args.cart_input)
    cart = {"tree": tree_string(args.tree_nodes), "train": samples(args.points),
            "accuracy": 0.9, "kappa": 0.85, "n_train": args.points, "n_test": 240,
            # CART's image: the clearest pre-event scenes and their shares, as the request
            # returns them (cart_s2_scenes of them)
            "s2_scenes": {f"20190{k + 6}01T103031_20190{k + 6}01T103026_T32VLP": 0.9 - k / 10
                          for k in range(cfg.cart_s2_scenes)}}  # fmt: skip
    consts = Constants({"DESCENDING": math.radians(100.0), "ASCENDING": math.radians(260.0)},
                       0.7, cart)  # fmt: skip
    rows = []
    t0 = time.perf_counter()
    with offline_client():
        for spec in read_events(REPO / "examples" / "events.csv"):
            resolved = assumed_resolution(spec, cfg)
            before = layers.build_event_image(spec, cfg, PAPER_LAYERS, resolved=resolved)
            after = layers.build_event_image(
                spec, cfg, PAPER_LAYERS, resolved=resolved, constants=consts
            )
            once = layers.constants_request(spec, cfg, PAPER_LAYERS, resolved)
            rows.append({"event": spec.event_id, "before": measure(before),
                         "after": measure(after), "per_event_request": measure(once)})  # fmt: skip
    seconds = time.perf_counter() - t0
    total = {k: {m: sum(r[k][m] for r in rows) for m in ("bytes", "nodes", "aggregations")}
             for k in ("before", "after", "per_event_request")}  # fmt: skip
    return {
        "benchmark": "graph_sizes",
        "cart_tile_input": args.cart_input,
        "tree_nodes": args.tree_nodes,
        "events": rows,
        "total": total,
        "build_seconds": round(seconds, 2),
        "python": platform.python_version(),
        "machine": platform.platform(),
    }


def report(result: dict) -> None:
    print(f"{'event':18} {'before B':>9} {'after B':>9} {'ratio':>6} {'aggr before':>11} "
          f"{'aggr after':>10} {'once B':>8}")  # fmt: skip
    for r in result["events"]:
        b, a, o = r["before"], r["after"], r["per_event_request"]
        print(f"{r['event']:18} {b['bytes']:9d} {a['bytes']:9d} {a['bytes'] / b['bytes']:6.2f} "
              f"{b['aggregations']:11d} {a['aggregations']:10d} {o['bytes']:8d}")  # fmt: skip
    t = result["total"]
    print(f"total: tile graph {t['before']['bytes']} -> {t['after']['bytes']} bytes "
          f"({100 * (1 - t['after']['bytes'] / t['before']['bytes']):.0f}% smaller), "
          f"{t['before']['nodes']} -> {t['after']['nodes']} nodes, "
          f"{t['before']['aggregations']} -> {t['after']['aggregations']} region/training "
          f"aggregations per tile; the per-event request ({t['per_event_request']['bytes']} "
          "bytes in all) runs once per event")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cart-input", choices=["tree", "samples"], default="tree")
    parser.add_argument("--tree-nodes", type=int, default=61)
    parser.add_argument("--points", type=int, default=560)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/graph_sizes.json")
    args = parser.parse_args()
    result = run(args)
    report(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"written {args.json}")


if __name__ == "__main__":
    main()
