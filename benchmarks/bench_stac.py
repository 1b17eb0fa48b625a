"""Benchmark the STAC source: wall time per layer group and peak memory, from local COGs.

A synthetic world in the catalogs' exact layout (tests/stac_fixtures.py, enlarged to hold the
AOIs and their margins) is searched through a local STAC API (tests/stac_server.py); the COGs
are read from local paths (or over local HTTP with --http). Each case runs `StacSource` in a
fresh subprocess, so its peak resident set size is its own:

* a 4 km2 event (the paper's AOI) and a 100 km2 AOI (target: peak under 2 GB);
* per layer group: s1 (the nine radar layers), terrain (elevation, slope), s2 (dNDVI),
  landCover (CART, its buffered features), aux (kgClimate from a local map), and all fifteen.

Settings are the defaults (5 km shadow search, 2 km CART buffer, 512 px windows), so the
figures are those of a real fetch less the network.

    python benchmarks/bench_stac.py                 # both AOIs, every group
    python benchmarks/bench_stac.py --areas 4 --groups all

Writes benchmarks/results/stac.json (or --json PATH) and prints the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GROUPS = {
    "s1": ("preVV", "postVV", "dVV", "preVH", "postVH", "dVH", "layover", "shadow", "liaDeg"),
    "terrain": ("elevation", "slope"),
    "s2": ("dNDVI",),
    "landCover": ("landCover",),
    "aux": ("kgClimate",),
}
WORLD_SIDE_M = 15_000.0  # holds a 10 km AOI and its 2 km CART buffer (beyond: no data)


def _fixture(name: str):
    """tests/<name>.py loaded by path (the benchmark runs outside pytest's rootdir)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "tests" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def peak_mib() -> float:
    """This process's peak resident set (VmHWM): unlike ru_maxrss it is not inherited across
    exec from the parent, which wrote the world."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> None:
    """One fetch in this process; prints JSON with the wall time."""
    import datetime as dt

    import lsd.stac.catalogs as cats
    from lsd.layers import PAPER_LAYERS
    from lsd.pipeline.sources import build_events
    from lsd.spec import make_spec, square_aoi, utm_epsg
    from lsd.stac.config import StacConfig
    from lsd.stac.source import StacSource

    fx = _fixture("stac_fixtures")

    cats.CATALOGS["planetary-computer"] = dataclasses.replace(
        cats.CATALOGS["planetary-computer"], url=args.catalog
    )
    layers = PAPER_LAYERS if args.group == "all" else GROUPS[args.group]
    fx.SIDE = WORLD_SIDE_M
    lon, lat = fx.to_lonlat(fx.X0 + WORLD_SIDE_M / 2, fx.Y1 - WORLD_SIDE_M / 2)
    aoi = square_aoi(lon, lat, args.km2, utm_epsg(lon, lat))
    spec = make_spec("bench", dt.date.fromisoformat(fx.EVENT_DATE), aoi, pre_days=60, post_days=60)
    cfg = StacConfig(kg_climate_file=args.kg, cache_dir=args.out + "/cache")
    source = StacSource([spec], cfg, layers=tuple(layers), write_label=False, echo=lambda m: None)
    start = time.perf_counter()
    summary = build_events(source, Path(args.out) / "data", need_label=False, progress=False)
    wall = time.perf_counter() - start
    peak = peak_mib()
    print(
        json.dumps(
            {
                "wall_s": round(wall, 2),
                "peak_mib": round(peak, 1),
                "failed": summary.failed,
                "layers": len(layers),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--areas", type=float, nargs="+", default=[4.0, 100.0])
    parser.add_argument("--groups", nargs="+", default=[*GROUPS, "all"])
    parser.add_argument("--http", action="store_true", help="read the COGs over local HTTP")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/stac.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--group", help=argparse.SUPPRESS)
    parser.add_argument("--km2", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--catalog", help=argparse.SUPPRESS)
    parser.add_argument("--kg", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    fx, srv = _fixture("stac_fixtures"), _fixture("stac_server")

    fx.SIDE = WORLD_SIDE_M
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_stac_") as tmp:
        tmp = Path(tmp)
        with srv.running(tmp / "files") as server:
            start = time.perf_counter()
            world = fx.make_world(tmp, server.url if args.http else str(tmp))
            print(f"world written in {time.perf_counter() - start:.1f} s", flush=True)
            url = server.add(
                srv.Catalog("/api/stac/v1", world.collections, world.pc_items, page_size=50)
            )
            kg = str(tmp / "files/aux/kg.tif")
            for km2 in args.areas:
                for group in args.groups:
                    out = tmp / f"run-{km2:g}-{group}"
                    cmd = [
                        sys.executable,
                        __file__,
                        "--child",
                        "--group",
                        group,
                        "--km2",
                        str(km2),
                        "--catalog",
                        url,
                        "--kg",
                        kg,
                        "--out",
                        str(out),
                    ]
                    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
                    if proc.returncode:
                        print(proc.stderr[-2000:], file=sys.stderr)
                        raise SystemExit(f"{group} at {km2:g} km2 failed")
                    row = {"km2": km2, "group": group, **json.loads(proc.stdout.splitlines()[-1])}
                    results.append(row)
                    print(
                        f"{km2:6g} km2  {group:10s} {row['layers']:3d} layers  "
                        f"{row['wall_s']:8.1f} s  peak {row['peak_mib']:7.0f} MiB",
                        flush=True,
                    )
    record = {
        "benchmark": "bench_stac",
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "reads": "http" if args.http else "local paths",
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
