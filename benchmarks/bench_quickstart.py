"""How long the README's first command takes: download, import, quick-preset grid, ensemble, map.

The paper's dataset cannot be downloaded here, so an archive in its published format is
generated (21 events, 256 to 448 pixels a side, the paper's minimum being the 256-pixel crop)
and served by the local Zenodo stand-in of the tests; the README's lsd steps then run exactly
as written, each as its own `lsd` process, and are timed. The issue's bound is 20 minutes on
2 CPU cores.

    python -m benchmarks.bench_quickstart                 # prints the steps' times, writes JSON
    python -m benchmarks.bench_quickstart --size 256 512  # other event sizes

Run from the repository root as a module (it uses the tests' writers of the published formats).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lsd.pipeline.paper.facts import DATA_ARCHIVE
from tests.paper_fixtures import write_paper_dataset, zip_folder
from tests.test_quickstart import readme_steps
from tests.zenodo_server import zenodo_stand_in

REPO = Path(__file__).resolve().parents[1]

LIMIT_S = 20 * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(256, 448), metavar=("MIN", "MAX"))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    lsd = Path(sys.executable).parent / "lsd"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lo, hi = args.size
        ds = write_paper_dataset(tmp / "src", size=(lo, lo + (hi - lo) // 2))
        archive = zip_folder(ds, tmp / "src" / DATA_ARCHIVE)
        work = tmp / "work"
        work.mkdir()
        times: dict[str, float] = {}
        with zenodo_stand_in(tmp / "zenodo") as zenodo:
            zenodo.publish(archive)
            env = {**os.environ, "LSD_ZENODO_URL": zenodo.url}
            for step in readme_steps():
                started = time.perf_counter()
                quiet = ["--quiet"] if step[0] == "train" else []
                cmd = [str(lsd), *step, *quiet]
                subprocess.run(cmd, cwd=work, env=env, check=True, stdout=subprocess.DEVNULL)
                times[step[0]] = round(time.perf_counter() - started, 1)
                print(f"{step[0]:>9}: {times[step[0]]:7.1f} s", flush=True)
    total = round(sum(times.values()), 1)
    print(f"{'total':>9}: {total:7.1f} s (bound {LIMIT_S} s on 2 CPU cores)")
    record = {
        "benchmark": "quickstart", "steps_s": times, "total_s": total, "limit_s": LIMIT_S,
        "event_sizes": [lo, hi], "cpus": os.cpu_count(), "machine": platform.platform(),
        "python": platform.python_version(), "readme_steps": readme_steps(),
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quickstart.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
