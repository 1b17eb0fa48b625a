"""How the house stands: imports between floors, lazy imports and why, the largest modules and
the longest functions.

    python benchmarks/house_metrics.py [CHECKOUT] [--json FILE]   (default: this checkout)

Reads the source with ast (nothing is imported), so it also measures older checkouts, where
gee/, training/ and pipeline/ were top-level packages and the file contract lived in pipeline/
(pipeline/contract.py and pipeline/errors.py count as the ground floor there). Prints the figures
and writes benchmarks/results/house.json (or FILE).

A lazy import is an import statement inside a function (counted once per statement). Each is
given one reason, the first that holds: it defers `torch` or `ee` (the library itself, or a project
module that loads it at import time, directly or through other modules) from a module that does
not load it already, or an optional `extra` (a package only an extra of pyproject.toml installs);
`cli`: the file is loaded by `import lsd.pipeline.cli` (the CLI registers every command) and the
import would add third-party modules to it (keeps `lsd --help` fast); it is a `reimport` of a
module the file already imports at its top; it breaks a `cycle` (the imported module loads this
one at import time); or `habit` (none of these).
"""

from __future__ import annotations

import argparse
import ast
import collections
import json
import sys
from pathlib import Path

FLOOR = {"lsd": 0, "gee": 1, "stac": 1, "training": 1, "pipeline": 2}
OLD_GROUND = ("pipeline.contract", "pipeline.errors", "pipeline.__version__")
TORCH = ("torch", "torchvision", "segmentation_models_pytorch")
EE = ("ee",)
# packages that only optional extras (or dev) install
EXTRAS = (
    "ray", "onnxruntime", "onnx", "pystac_client", "planetary_computer", "sklearn",
    "tensorboard", "pytorch_lightning", "lightning", "omegaconf", "tifffile", "geemap",
)  # fmt: skip
REASONS = ("torch", "ee", "extra", "cli", "reimport", "cycle", "habit")
# standard-library modules slow enough to keep out of `lsd --help` (bench_cli_startup: importing
# importlib.metadata costs about 20 ms of email and zipfile parsers, a third of the CLI's import)
SLOW_STDLIB = ("importlib.metadata",)
STDLIB = sys.stdlib_module_names


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


def module_name(root: Path, path: Path) -> str:
    """The dotted name a file is imported as (lsd.* layout; old layouts keep their top name)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if parts[0] != "lsd" and (root / "lsd").is_dir():
        parts = ["lsd", *parts]
    return ".".join(parts)


def _named(node: ast.Import | ast.ImportFrom, known: set[str]) -> list[str]:
    """The modules an import statement loads (a `from pkg import name` names pkg.name when that
    is a module of the project)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level or not node.module:
        return []
    subs = [f"{node.module}.{a.name}" for a in node.names]
    found = [s for s in subs if s in known]
    bare = node.module in ("lsd", "pipeline", "gee", "training", "stac")
    return found or (subs if bare else [node.module])


def _walk_imports(tree: ast.AST):
    """(import node, inside a function?) for every import statement; `if TYPE_CHECKING:` blocks
    are skipped (they never run)."""

    def visit(node: ast.AST, in_function: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, in_function
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            yield from visit(child, inner)

    yield from visit(tree, False)


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def measure(root: Path) -> dict:
    files = {}
    for path in sorted(root.glob("*/**/*.py")):
        if package_of_file(root, path) is not None and ".venv" not in path.parts:
            files[module_name(root, path)] = path
    known = set(files)
    trees = {m: ast.parse(p.read_text()) for m, p in files.items()}
    top: dict[str, set[str]] = {}
    lazy: dict[str, list[tuple[int, str, int]]] = {}
    for mod, tree in trees.items():
        top[mod], lazy[mod] = set(), []
        for node, in_function in _walk_imports(tree):
            for name in _named(node, known):
                if in_function:
                    lazy[mod].append((node.lineno, name, id(node)))
                else:
                    top[mod].add(name)

    closure_cache: dict[str, set[str]] = {}

    def closure(module: str) -> set[str]:
        """Every module (project or library, top names for libraries) importing `module` loads."""
        if module in closure_cache:
            return closure_cache[module]
        seen: set[str] = set()
        stack = [p for p in _parents(module)]
        while stack:
            m = stack.pop()
            if m in seen:
                continue
            seen.add(m)
            for name in top.get(m, ()):
                stack += [p for p in _parents(name) if p in known or p == name.split(".")[0]]
        closure_cache[module] = seen
        return seen

    cli_roots = [m for m in known if m.startswith("lsd.pipeline.cmd_") or m == "lsd.pipeline.cli"]
    cli = set().union(*(closure(m) for m in cli_roots)) if cli_roots else set()

    def libs_of(name: str) -> set[str]:
        loads = closure(name) if name in known or name.startswith("lsd") else {name}
        return {m.split(".")[0] for m in loads if m not in known} | {name.split(".")[0]}

    def reason(mod: str, name: str) -> str:
        libs, own = libs_of(name), libs_of(mod)
        for why, group in (("torch", TORCH), ("ee", EE), ("extra", EXTRAS)):
            if libs & set(group) - own:
                return why
        if mod in cli and (
            libs - {m.split(".")[0] for m in cli} - set(STDLIB) or name in SLOW_STDLIB
        ):
            return "cli"
        tops = top[mod]
        if name in tops or any(name.startswith(t + ".") or t.startswith(name + ".") for t in tops):
            return "reimport"
        if mod in closure(name):
            return "cycle"
        return "habit"

    edges: collections.Counter[str] = collections.Counter()
    lazy_edges: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    lazy_list: list[str] = []
    upward: list[str] = []
    modules, functions = [], []
    for mod, path in files.items():
        rel = path.relative_to(root)
        src = package_of_file(root, path)
        text = path.read_text()
        modules.append((len(text.splitlines()), str(rel)))
        for node in ast.walk(trees[mod]):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions.append((node.end_lineno - node.lineno + 1, f"{rel}:{node.name}"))
        pairs = [(n, False) for n in sorted(top[mod])] + [(n, True) for _, n, _ in lazy[mod]]
        for name, is_lazy in pairs:
            dst = package_of_module(name)
            if dst is None:
                continue
            edges[f"{src} -> {dst}"] += 1
            if is_lazy:
                lazy_edges[f"{src} -> {dst}"] += 1
            if FLOOR[dst] > FLOOR[src] or (FLOOR[dst] == FLOOR[src] and dst != src):
                upward.append(f"{rel} -> {name}")
        statements: dict[int, tuple[int, list[str]]] = {}
        for line, name, key in lazy[mod]:
            statements.setdefault(key, (line, []))[1].append(name)
        for line, names in statements.values():
            whys = [reason(mod, n) for n in names]
            why = min(whys, key=REASONS.index)  # the strongest reason of the statement
            reasons[why] += 1
            lazy_list.append(f"{rel}:{line} {', '.join(names)} [{why}]")
    biggest = sorted(functions, reverse=True)
    return {
        "imports": dict(sorted(edges.items())),
        "lazy_imports_by_pair": dict(sorted(lazy_edges.items())),
        "upward_or_sideways": upward,
        "lazy_import_statements": sum(reasons.values()),
        "lazy_imports_by_reason": {r: reasons.get(r, 0) for r in REASONS},
        "largest_modules": [f"{m} ({n})" for n, m in sorted(modules, reverse=True)[:10]],
        "longest_functions": [f"{f} ({n})" for n, f in biggest[:10]],
        "functions_over_60_lines": [f"{f} ({n})" for n, f in biggest if n > 60],
        "lazy_import_list": lazy_list,
    }


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkout", nargs="?", type=Path, default=repo)
    ap.add_argument("--json", type=Path, default=repo / "benchmarks/results/house.json")
    ap.add_argument("--list", action="store_true", help="also print every lazy import")
    args = ap.parse_args()
    result = measure(args.checkout.resolve())
    for key, value in result.items():
        if key == "lazy_import_list" and not args.list:
            continue
        print(f"{key}:")
        items = value.items() if isinstance(value, dict) else value
        for item in items if isinstance(value, dict | list) else [value]:
            print(f"  {item[0]}: {item[1]}" if isinstance(item, tuple) else f"  {item}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
