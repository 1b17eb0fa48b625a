"""How long `lsd --help` takes to start, and what it loads: the CLI must stay torch-free.

Each figure is taken in fresh interpreters (the import cache of a long-lived process would hide
the cost):

- import_ms: `python -X importtime -c "import lsd.pipeline.cli"`, the cumulative time of that
  import as Python reports it (median of --repeat runs);
- help_ms: wall time of `python -c "... main(['--help'])"`, interpreter start included (median);
- modules: how many modules are in sys.modules after `--help`, and which heavy stacks (torch, ee,
  smp, ray, onnxruntime) among them (none expected).

    python benchmarks/bench_cli_startup.py                  # this checkout's lsd
    /other/.venv/bin/python benchmarks/bench_cli_startup.py --json /tmp/before.json
                                                            # any other install, for a before/after

Writes benchmarks/results/cli_startup.json (or --json PATH) and prints the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "ee", "segmentation_models_pytorch", "ray", "onnxruntime")
HELP = (
    "import sys\nfrom lsd.pipeline.cli import main\n"
    "try:\n    main(['--help'], prog_name='lsd')\nexcept SystemExit:\n    pass\n"
    "print(len(sys.modules), sorted({m.split('.')[0] for m in sys.modules} & set(HEAVY)),"
    " file=sys.stderr)\n"
)


def import_ms() -> float:
    """Cumulative microseconds of `import lsd.pipeline.cli` from -X importtime, in ms."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import lsd.pipeline.cli"],
        capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    line = next(x for x in err.splitlines() if x.rstrip().endswith("| lsd.pipeline.cli"))
    return int(line.split("|")[1]) / 1000


def help_run() -> tuple[float, int, list[str]]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{HELP}"], capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    wall = (time.perf_counter() - started) * 1000
    count, heavy = result.stderr.strip().splitlines()[-1].split(" ", 1)
    return wall, int(count), json.loads(heavy.replace("'", '"'))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/cli_startup.json")
    args = parser.parse_args()
    import lsd.pipeline.cli

    imports = [import_ms() for _ in range(args.repeat)]
    helps = [help_run() for _ in range(args.repeat)]
    result = {
        "python": sys.executable,
        "lsd": str(Path(lsd.pipeline.cli.__file__).parent),
        "repeat": args.repeat,
        "import_ms_median": round(statistics.median(imports), 1),
        "import_ms_min": round(min(imports), 1),
        "help_ms_median": round(statistics.median(h[0] for h in helps), 1),
        "help_ms_min": round(min(h[0] for h in helps), 1),
        "modules_after_help": helps[0][1],
        "heavy_after_help": helps[0][2],
    }
    for key, value in result.items():
        print(f"{key:>20}: {value}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
