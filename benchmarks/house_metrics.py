"""How the house stands: imports between floors, the largest modules and the longest functions.

    python benchmarks/house_metrics.py [CHECKOUT]     (default: this checkout)

Reads the source with ast (nothing is imported), so it also measures older checkouts, where
gee/, training/ and pipeline/ were top-level packages and the file contract lived in pipeline/
(pipeline/contract.py and pipeline/errors.py count as the ground floor there). Prints the figures
and writes benchmarks/results/house.json.
"""

from __future__ import annotations

import argparse
import ast
import collections
import json
from pathlib import Path

FLOOR = {"lsd": 0, "gee": 1, "training": 1, "pipeline": 2}
OLD_GROUND = ("pipeline.contract", "pipeline.errors", "pipeline.__version__")


def package_of_file(root: Path, path: Path) -> str | None:
    top = path.relative_to(root).parts[0]
    if top not in FLOOR:
        return None
    if top == "pipeline" and path.stem in ("contract", "errors"):
        return "lsd"  # the old layout's ground floor, inside the top-floor package
    return top


def package_of_module(module: str) -> str | None:
    if module.startswith(OLD_GROUND):
        return "lsd"
    parts = module.split(".")
    if parts[0] == "lsd":
        return parts[1] if len(parts) > 1 and parts[1] in FLOOR else "lsd"
    return parts[0] if parts[0] in FLOOR else None


def imports(path: Path) -> list[tuple[str, str]]:
    """(module named, package it lives in for its own layout) for every import statement."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            bare = node.module in ("lsd", "pipeline", "gee", "training")
            names = [f"{node.module}.{a.name}" for a in node.names] if bare else [node.module]
        out += [(m, "") for m in names]
    return out


def measure(root: Path) -> dict:
    edges: collections.Counter[str] = collections.Counter()
    upward, packages_up = [], []
    modules, functions = [], []
    for path in sorted(root.glob("*/**/*.py")):
        src = package_of_file(root, path)
        if src is None:
            continue
        text = path.read_text()
        modules.append((len(text.splitlines()), str(path.relative_to(root))))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                rel = path.relative_to(root)
                functions.append((node.end_lineno - node.lineno + 1, f"{rel}:{node.name}"))
        for module, _ in imports(path):
            dst = package_of_module(module)
            if dst is None or dst == src:
                continue
            edges[f"{src} -> {dst}"] += 1
            if FLOOR[dst] > FLOOR[src] or (FLOOR[dst] == FLOOR[src] and dst != src):
                upward.append(f"{path.relative_to(root)} -> {module}")
            if src in ("gee", "training") and module.split(".")[0] == "pipeline":
                packages_up.append(f"{path.relative_to(root)} -> {module}")
    return {
        "imports": dict(sorted(edges.items())),
        "upward_or_sideways": upward,
        "into_pipeline_package_from_gee_training": len(packages_up),
        "largest_modules": [f"{m} ({n})" for n, m in sorted(modules, reverse=True)[:8]],
        "functions_over_60_lines": sorted(
            (f"{f} ({n})" for n, f in functions if n > 60),
            key=lambda s: -int(s.split("(")[-1][:-1]),
        ),
        "longest_functions": [f"{f} ({n})" for n, f in sorted(functions, reverse=True)[:8]],
    }


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkout", nargs="?", type=Path, default=repo)
    ap.add_argument("--json", type=Path, default=repo / "benchmarks/results/house.json")
    args = ap.parse_args()
    result = measure(args.checkout.resolve())
    for key, value in result.items():
        print(f"{key}:")
        for item in (
            value.items()
            if isinstance(value, dict)
            else value
            if isinstance(value, list)
            else [value]
        ):
            print(f"  {item[0]}: {item[1]}" if isinstance(item, tuple) else f"  {item}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
