"""`lsd demo`: the whole chain on generated events, offline, in a few minutes on a CPU.

A newcomer without network (or without Earth Engine and the paper's archive yet) sees every
step work: events are generated (lsd.pipeline.sources.synthetic), then the ordinary `lsd train`,
`lsd ensemble`, `lsd evaluate` and `lsd predict` commands run on them, each printed as the
command line a user would type, so any step can be rerun or pointed at real data. The output
folder is marked as a demo folder: a rerun reuses its events and finished runs and replaces
the ensemble, evaluation and map.
"""

from __future__ import annotations

import csv
import shlex
import time
from pathlib import Path

import click

from lsd.bundles import read_manifest
from lsd.errors import InvalidValue
from lsd.files import write_json
from lsd.outputs import check_reusable, mark
from lsd.pipeline.options import PATH, LsdCommand, device_option

DEMO_SETTING = "s1s2"
# Half the quick preset's epochs: the generated scars are learnt in three or four, and a
# newcomer should see the whole chain in a few minutes.
DEMO_EPOCHS = 6
RESUME_LINE = "rerun the same command: generated events and finished runs are kept"


def _run_lsd(args: list[str]) -> None:
    """Run one lsd command in this process, as if typed; its own errors stop the demo."""
    from lsd.pipeline.cli import main

    click.echo(f"\n$ lsd {shlex.join(args)}", err=True)
    code = main.main(args=args, prog_name="lsd", standalone_mode=False)
    if isinstance(code, int) and code != 0:
        raise click.exceptions.Exit(code)


def _ensemble_f1(evaluation: Path, k: int) -> float | None:
    """Test F1 of the ensemble of size k, as lsd evaluate wrote it."""
    from lsd.pipeline.report import ENSEMBLES_CSV

    with (evaluation / ENSEMBLES_CSV).open(newline="") as f:
        for row in csv.DictReader(f):
            if int(row["k"]) == k and row["f1"]:
                return float(row["f1"])
    return None


@click.command(cls=LsdCommand, interrupt=RESUME_LINE)
@click.option(
    "--out", type=PATH, default=Path("lsd-demo"), show_default=True,
    help="Folder for everything the demo makes; a rerun reuses it.",
)  # fmt: skip
@click.option(
    "--events", "n_events", type=int, default=10, show_default=True,
    help="Number of generated events (the last one is the test event, about a fifth validate).",
)  # fmt: skip
@click.option(
    "--size", type=int, default=200, show_default=True,
    help="Side of each event in 10 m pixels (200 = the paper's 4 km2 square).",
)  # fmt: skip
@click.option(
    "--seed", type=int, default=0, show_default=True,
    help="Seed of the generated events (the same seed gives the same events).",
)  # fmt: skip
@click.option(
    "--epochs", type=int, default=DEMO_EPOCHS, show_default=True,
    help="Epoch cap of each run (the quick preset has 12); fewer is faster and finds less.",
)  # fmt: skip
@device_option
def demo(out: Path, n_events: int, size: int, seed: int, epochs: int, device: str) -> None:
    """Run the whole chain offline on generated events: import, train, ensemble, evaluate, map.

    Generates a small set of realistic events (a valley with landslide scars in all 15 layers
    of the paper, with labels), then runs lsd train (the quick preset), lsd ensemble, lsd
    evaluate and lsd predict on them, printing each command and where its output is. A few
    minutes on 2 CPU cores; nothing is downloaded.

    Example:

    \b
        lsd demo --out lsd-demo
    """
    from lsd.events import read_event
    from lsd.pipeline.maps import MASK_FILE, POLY_FILE, PROB_FILE, QUICKLOOK_FILE
    from lsd.pipeline.sources import build_events
    from lsd.pipeline.sources.synthetic import SyntheticSource
    from lsd.runs import LEADERBOARD_FILE

    if epochs < 1:
        raise InvalidValue(f"epochs {epochs} must be at least 1", field="epochs")
    source = SyntheticSource(n_events, size=size, seed=seed)  # bad sizes fail before writing
    check_reusable(out, "demo")
    out.mkdir(parents=True, exist_ok=True)
    mark(out, "demo")
    events, runs = out / "events", out / "runs"
    ensemble, evaluation, mapped = out / "ensemble", out / "evaluation", out / "map"
    started = time.perf_counter()
    times: dict[str, float] = {}

    t0 = time.perf_counter()
    click.echo(f"generating {n_events} events of {size} x {size} px in {events}", err=True)
    folders = build_events(source, events, desc="generate events").folders
    times["generate"] = time.perf_counter() - t0
    test = next(f for f in folders if read_event(f).role == "test")
    device_args = ["--device", device]
    steps = {
        "train": ["train", "--preset", "quick", "--setting", DEMO_SETTING, "--data", str(events),
                  "--out", str(runs), "--epochs", str(epochs), *device_args],
        "ensemble": ["ensemble", str(runs), "--k", "auto", "--out", str(ensemble), *device_args,
                     "--overwrite"],
        "evaluate": ["evaluate", str(runs), "--data", str(events), "--out", str(evaluation),
                     *device_args, "--overwrite"],
        "predict": ["predict", "--stack", str(test / "stack.tif"), "--model", str(ensemble),
                    "--out", str(mapped), *device_args, "--overwrite"],
    }  # fmt: skip
    for name, args in steps.items():
        t0 = time.perf_counter()
        _run_lsd(args)
        times[name] = time.perf_counter() - t0
    total = time.perf_counter() - started

    k = int(read_manifest(ensemble)["k"])
    f1 = _ensemble_f1(evaluation, k)
    write_json(out / "demo.json", {
        "format": "lsd-demo/1", "events": n_events, "size_px": size, "seed": seed,
        "epochs": epochs, "setting": DEMO_SETTING, "k": k, "test_event": test.name,
        "test_f1": f1, "seconds": {**{n: round(s, 1) for n, s in times.items()},
                                   "total": round(total, 1)},
        "commands": {n: "lsd " + shlex.join(a) for n, a in steps.items()},
    })  # fmt: skip
    roles = ", ".join(f"{sum(i.role == r for i in source.items())} {r}"
                      for r in ("train", "val", "test"))  # fmt: skip
    scored = f"test F1 {f1:.3f} on {test.name}" if f1 is not None else "no test F1"
    rows = [
        ("events", events, f"{len(folders)} generated event folders ({roles})"),
        ("models", runs / LEADERBOARD_FILE, "the quick grid ranked by validation F1"),
        ("ensemble", ensemble, f"K={k}, chosen on the validation events"),
        ("evaluation", evaluation / "report.md", f"ensemble K={k}: {scored}"),
        ("map", mapped, f"{PROB_FILE}, {MASK_FILE}, {POLY_FILE}, {QUICKLOOK_FILE}"),
    ]
    click.echo(f"\nlsd demo finished in {total / 60:.1f} min; its outputs:")
    width = max(len(str(path)) for _, path, _ in rows)
    for name, path, what in rows:
        click.echo(f"  {name:<10}  {str(path):<{width}}  {what}")
    click.echo("Each step above is an ordinary lsd command: rerun it, or give it your own data.")
