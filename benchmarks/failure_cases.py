"""Issue 10's cases, run against one lsd install: exit code, last line and what happened to the
files, for a before/after table.

    python benchmarks/failure_cases.py --lsd /path/to/.venv/bin/lsd [--only 1a,5a] [--json OUT]

Every case works in a fresh folder under a temporary directory, on the real Landslide4Sense
patches in ../shared/data, with a tiny grid trained by the lsd under test. The helper snippets
run with the python beside that lsd and use only APIs both old and new versions have. Prints one
line per case and writes benchmarks/results/failure_cases-<label>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
L4S = REPO.parent / "shared" / "data" / "landslide4sense-21"
TRAIN = ["--setting", "B2,B3,B4,B8", "--losses", "BCE", "--lrs", "0.001", "--encoder",
         "resnet18", "--crop", "64", "--batch-size", "2", "--iters-per-epoch", "2",
         "--epochs", "2", "--seed", "1"]  # fmt: skip
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


class Runner:
    def __init__(self, lsd: Path, work: Path) -> None:
        self.lsd, self.python, self.work = lsd, lsd.with_name("python"), work

    def run(self, *args, cwd=None, fsize=None, sig=None, when=None, timeout=900):
        """(exit code, output) of `lsd args`; `sig` is sent once `when` shows in the output."""
        pre = None
        if fsize is not None:
            import resource

            def pre():
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, resource.RLIM_INFINITY))

        proc = subprocess.Popen([str(self.lsd), *map(str, args)], cwd=cwd or self.work,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=ENV, preexec_fn=pre)  # fmt: skip
        lines, start = [], time.monotonic()
        for line in proc.stdout:
            lines.append(line)
            if sig is not None and when in line:
                proc.send_signal(sig)
                sig = None
            if time.monotonic() - start > timeout:
                proc.kill()
        proc.wait()
        return proc.returncode, "".join(lines)

    def py(self, code: str, *args) -> str:
        res = subprocess.run([str(self.python), "-c", code, *map(str, args)], cwd=self.work,
                             capture_output=True, text=True, env=ENV)  # fmt: skip
        if res.returncode:
            raise RuntimeError(res.stderr[-2000:])
        return res.stdout


def summary(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    tb = sum("Traceback" in ln for ln in lines)
    last = lines[-1] if lines else ""
    return (f"[{len(lines)} lines, traceback] " if tb else "") + last[:300]


SNIPPETS = {
    "inf_stacks": """
import sys, numpy as np
from lsd.rasters import read_stack, write_stack, Grid
import rasterio
src, inf_out, nan_out = sys.argv[1:4]
data, names, g = read_stack(src)
a, b = data.copy(), data.copy()
a[1, :3, :3] = np.inf; b[1, :3, :3] = np.nan
write_stack(inf_out, a, names, g); write_stack(nan_out, b, names, g)
""",
    "variants": """
import sys, numpy as np, rasterio
from lsd.rasters import read_stack, write_stack, Grid
src, out = sys.argv[1:3]
data, names, g = read_stack(src)
geo = lambda px: Grid(g.width, g.height, rasterio.crs.CRS.from_epsg(32645),
                      rasterio.Affine(px, 0, 300000, 0, -px, 3000000))
d = data.copy(); d[2] = np.nan; write_stack(out + "/nanlayer/stack.tif", d, names, geo(10))
write_stack(out + "/allnan/stack.tif", np.full_like(data, np.nan), names, geo(10))
write_stack(out + "/px20/stack.tif", data, names, geo(20))
write_stack(out + "/x1000/stack.tif", data * 1000, names, geo(10))
big = np.block([[[data[c]] * 3] * 3 for c in range(len(names))])
write_stack(out + "/big/stack.tif", big, names, Grid(384, 384, rasterio.crs.CRS.from_epsg(32645),
            rasterio.Affine(10, 0, 300000, 0, -10, 3000000)))
""",
    "pixel_bundle": """
import json, sys
p = sys.argv[1] + "/bundle.json"
m = json.load(open(p)); m["extra"]["pixel_m"] = 10.0; json.dump(m, open(p, "w"))
""",
    "flat_bundle": """
import sys, torch
from lsd.training.bundle import load_bundle, save_bundle
model, meta = load_bundle(sys.argv[1])
torch.nn.init.zeros_(model.segmentation_head[0].weight)
torch.nn.init.zeros_(model.segmentation_head[0].bias)
save_bundle(sys.argv[2], model, meta)
""",
    "pan_runs": """
import sys, torch
from pathlib import Path
from lsd.bundles import BundleMeta
from lsd.events import list_events
from lsd.rasters import Grid, read_label, read_stack, write_label, write_stack
from lsd.runs import run_folder, write_done, write_leaderboard, write_split
from lsd.training.bundle import save_bundle
from lsd.training.models import build_model
src, data, runs = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
events = list_events(src)[:6]
for ev in events:
    s, names, g = read_stack(ev.stack); small = Grid(100, 100, g.crs, g.transform)
    write_stack(data / ev.event_id / "stack.tif", s[:, :100, :100], names, small)
    write_label(data / ev.event_id / "label.tif", read_label(ev.label)[0][:100, :100], small)
ids = [e.event_id for e in events]
torch.manual_seed(0)
for i, lr in enumerate((0.01, 0.001)):
    rid = f"PAN-BCE-lr{lr:g}"
    meta = BundleMeta("PAN", "mobilenet_v2", "BCE", lr, list(names), [0.0] * len(names),
                      [1.0] * len(names), {"val_f1": 0.5 - i / 10})
    model = build_model("PAN", len(names), "mobilenet_v2")
    save_bundle(run_folder(runs, rid) / "bundle", model, meta)
    write_done(run_folder(runs, rid), {"run_id": rid, "val_f1": 0.5 - i / 10, "bundle": "bundle"})
write_leaderboard(runs)
write_split(runs, {"train": ids[:2], "val": ids[2:4], "test": ids[4:]}, seed=0)
print(ids[4])
""",
    "grid_mean": """
import json, math, sys
g = json.load(open(sys.argv[1]))
print("non-finite mean:", [n for n, m in zip(g["layers"], g["mean"]) if not math.isfinite(m)])
""",
    "maxdiff": """
import sys, numpy as np, rasterio
a = rasterio.open(sys.argv[1]).read(1); b = rasterio.open(sys.argv[2]).read(1)
print("max |p_inf - p_nan| =", float(np.nanmax(np.abs(a - b))))
""",
    "mask_ones": """
import sys, rasterio
m = rasterio.open(sys.argv[1]).read(1); print("mask pixels = 1:", int((m == 1).sum()), "of", m.size)
""",
}


def prepare(r: Runner) -> dict:
    """Data (with one role=test event), a tiny RUNS, an ensemble, test stacks."""
    w = r.work
    r.run("import", "landslide4sense", L4S, w / "data", "--no-progress")
    events = sorted(p.name for p in (w / "data").iterdir() if p.is_dir())
    role_event = events[0]
    ej = w / "data" / role_event / "event.json"
    rec = json.loads(ej.read_text())
    rec["role"] = "test"
    ej.write_text(json.dumps(rec))
    code, text = r.run("train", "--data", w / "data", "--out", w / "R", "--archs", "FPN,Linknet",
                       *TRAIN, "--val", "3", "--test", "1", "--quiet")  # fmt: skip
    assert code == 0, text
    assert r.run("ensemble", w / "R", "--k", "2", "--out", w / "ens")[0] == 0
    split = json.loads((w / "R" / "split.json").read_text())
    stack = w / "data" / split["test"][0] / "stack.tif"
    r.py(SNIPPETS["variants"], stack, w / "st")
    return {"events": events, "role_event": role_event, "split": split, "stack": stack}


def cases(r: Runner, ctx: dict) -> dict:
    w, out = r.work, {}
    R, ens, stack, data = w / "R", w / "ens", ctx["stack"], w / "data"

    def record(key, cmd, code, text, note=""):
        out[key] = {"cmd": cmd, "rc": code, "line": summary(text), "note": note}
        print(f"{key:4s} rc={code} {summary(text)[:160]} | {note}", flush=True)

    def copy(src, name):
        dst = w / name
        shutil.copytree(src, dst)
        return dst

    r1 = copy(R, "R1")
    c, t = r.run("ensemble", r1, "--k", "1", "--out", r1, "--overwrite")
    record(
        "1a",
        "lsd ensemble R --k 1 --out R --overwrite",
        c,
        t,
        f"grid.json still there: {(r1 / 'grid.json').exists()}",
    )
    ev = copy(stack.parent, "ev")
    c, t = r.run("predict", "--stack", ev / "stack.tif", "--model", ens, "--out", ev, "--overwrite")
    record(
        "1b",
        "lsd predict --stack ev/stack.tif --out ev --overwrite",
        c,
        t,
        f"input stack still there: {(ev / 'stack.tif').exists()}",
    )
    for key, cmd in (("1c", ["predict", "--stack", stack, "--model", ens]),
                     ("1d", ["evaluate", R, "--data", data])):  # fmt: skip
        mine = w / f"mine{key}"
        mine.mkdir()
        (mine / "notes.txt").write_text("mine")
        c, t = r.run(*cmd, "--out", mine, "--overwrite")
        record(
            key,
            f"lsd {cmd[0]} ... --out DIR-with-notes.txt --overwrite",
            c,
            t,
            f"notes.txt kept: {(mine / 'notes.txt').exists()}",
        )
    cwd = w / "cwd"
    cwd.mkdir()
    (cwd / "notes.txt").write_text("mine")
    c, t = r.run("evaluate", R, "--data", data, "--out", ".", "--overwrite", cwd=cwd)
    record(
        "1e",
        "lsd evaluate R --data D --out . --overwrite",
        c,
        t,
        f"notes.txt kept: {(cwd / 'notes.txt').exists()}",
    )

    c, t = r.run("train", "--data", data, "--out", w / "R2", "--archs", "FPN", *TRAIN,
                 "--val", "2", "--test", "0", "--quiet")  # fmt: skip
    split2 = (
        json.loads((w / "R2" / "split.json").read_text())
        if (w / "R2" / "split.json").exists()
        else {}
    )
    record(
        "2a",
        "lsd train ... --val 2 --test 0 (one event has role test)",
        c,
        t,
        f"role-test event in train: {ctx['role_event'] in split2.get('train', [])}",
    )
    c, t = r.run("evaluate", R, "--data", data, "--events", ctx["split"]["train"][0], "--out",
                 w / "ev2a")  # fmt: skip
    record("2b", "lsd evaluate R --events <a training event>", c, t)

    dinf = copy(data, "data_inf")
    victim = dinf / ctx["split"]["train"][0] / "stack.tif"
    r.py(SNIPPETS["inf_stacks"], victim, victim, w / "tmp_nan.tif")
    c, t = r.run("train", "--data", dinf, "--out", w / "R3", "--archs", "FPN", *TRAIN,
                 "--val", "3", "--test", "1", "--quiet")  # fmt: skip
    note = (
        r.py(SNIPPETS["grid_mean"], w / "R3" / "grid.json").strip()
        if (w / "R3" / "grid.json").exists()
        else ""
    )
    record("3a", "lsd train on data with +/-inf in one layer of a training event", c, t, note)
    (w / "s3").mkdir()
    r.py(SNIPPETS["inf_stacks"], stack, w / "s3" / "inf.tif", w / "s3" / "nan.tif")
    r.run("predict", "--stack", w / "s3" / "nan.tif", "--model", ens, "--out", w / "m3nan")
    c, t = r.run("predict", "--stack", w / "s3" / "inf.tif", "--model", ens, "--out", w / "m3inf")
    note = r.py(SNIPPETS["maxdiff"], w / "m3inf" / "probability.tif",
                w / "m3nan" / "probability.tif").strip() if c == 0 else ""  # fmt: skip
    record("3b", "lsd predict on a stack with +/-inf (vs the same with NaN)", c, t, note)

    r4 = copy(R, "R4")
    victim = next((r4 / "runs").iterdir()) / "bundle" / "model.pt"
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))
    c, t = r.run("ensemble", r4, "--k", "2", "--out", w / "e4")
    record(
        "4",
        "lsd ensemble R --k 2 (a member's model.pt damaged)",
        c,
        t,
        f"ensemble written: {(w / 'e4').exists()}",
    )

    big = w / "st" / "big" / "stack.tif"
    c, t = r.run("predict", "--stack", big, "--model", ens, "--out", w / "m5", fsize=300_000)
    record(
        "5a",
        "ulimit -f 300; lsd predict (384 px stack)",
        c,
        t,
        f"stray temporaries: {len(list(w.glob('.m5*')))}",
    )
    c, t = r.run("ensemble", R, "--k", "2", "--out", w / "e5", fsize=300_000)
    record("5b", "ulimit -f 300; lsd ensemble", c, t, f"stray: {len(list(w.glob('.e5*')))}")
    c, t = r.run("evaluate", R, "--data", data, "--out", w / "ev5", fsize=100_000)
    record("5c", "ulimit -f 100; lsd evaluate", c, t, f"stray: {len(list(w.glob('.ev5*')))}")
    start = time.monotonic()
    c, t = r.run("evaluate", R, "--data", data, "--out", "/sys/lsd-ro/ev")
    record(
        "5d",
        "lsd evaluate --out /sys/lsd-ro/ev (cannot be created)",
        c,
        t,
        f"{time.monotonic() - start:.0f} s",
    )

    for key, name, what in (("6a", "nanlayer", "a needed layer all NaN"),
                            ("6b", "allnan", "an all-NaN stack")):  # fmt: skip
        c, t = r.run("predict", "--stack", w / "st" / name / "stack.tif", "--model", ens,
                     "--out", w / f"m{key}")  # fmt: skip
        record(key, f"lsd predict on {what}", c, t)
    bundle = copy(next((R / "runs").iterdir()) / "bundle", "b10m")
    r.py(SNIPPETS["pixel_bundle"], bundle)
    for key, name, what in (("6c", "px20", "a 20 m stack (model trained at 10 m)"),
                            ("6d", "x1000", "values 1000x the training range")):  # fmt: skip
        c, t = r.run("predict", "--stack", w / "st" / name / "stack.tif", "--model", bundle,
                     "--out", w / f"m{key}")  # fmt: skip
        warn = [ln for ln in t.splitlines() if ln.startswith("Warning")]
        record(key, f"lsd predict on {what}", c, t, f"warnings: {warn[:2]}")

    r7 = copy(R, "R7")
    train7 = list(TRAIN)
    train7[train7.index("--epochs") + 1] = "3"
    c, t = r.run("train", "--data", data, "--out", r7, "--archs", "FPN,Linknet", *train7,
                 "--val", "3", "--test", "1", "--quiet")  # fmt: skip
    ep = json.loads((r7 / "grid.json").read_text())["options"]["epochs"]
    runs_ep = [json.loads(p.read_text())["epochs_run"] for p in r7.glob("runs/*/done.json")]
    record(
        "7",
        "lsd train ... --epochs 3 on a RUNS folder made with --epochs 2",
        c,
        t,
        f"grid.json epochs {ep}, runs' epochs_run {runs_ep}",
    )

    c, t = r.run("predict", "--stack", big, "--model", ens, "--out", w / "m8", "--tile", "128",
                 "--overlap", "16", sig=signal.SIGKILL, when="predict")  # fmt: skip
    stray = [p.name for p in w.glob(".m8*")]
    c2, t2 = r.run("predict", "--stack", big, "--model", ens, "--out", w / "m8")
    record(
        "8a",
        "lsd predict killed (SIGKILL), then the same command again",
        c2,
        t2,
        f"after kill: {len(stray)} hidden; after rerun: {len(list(w.glob('.m8*')))}",
    )
    c, t = r.run("train", "--data", data, "--out", w / "R8", "--setting", "nope")
    record("8b", "lsd train --setting nope --out NEW", c, t, f"NEW left: {(w / 'R8').exists()}")
    src = w / "l4s_bad"
    shutil.copytree(L4S, src)
    (src / "mask" / "mask_2.h5").write_bytes(b"not hdf5")
    c, t = r.run("import", "landslide4sense", src, w / "d8", "--no-progress")
    made = list((w / "d8").iterdir()) if (w / "d8").exists() else []
    half = [p.name for p in made if p.is_dir() and not (p / "event.json").exists()]
    record(
        "8c",
        "lsd import landslide4sense (one mask file damaged)",
        c,
        t,
        f"half-made folders: {half}",
    )

    c, t = r.run("train", "--data", data, "--out", w / "R9", "--archs", "FPN,Linknet", *TRAIN,
                 "--val", "3", "--test", "1", sig=signal.SIGINT, when="grid")  # fmt: skip
    record("9a", "Ctrl-C (SIGINT) during lsd train", c, t)
    c, t = r.run("train", "--data", data, "--out", w / "R9", "--archs", "FPN,Linknet", *TRAIN,
                 "--val", "3", "--test", "1")  # fmt: skip
    resumed = [ln for ln in t.splitlines() if "resum" in ln.lower()]
    record("9b", "the same lsd train again", c, t, f"resume line: {resumed[:1]}")
    log = t
    record(
        "14",
        "lsd train 2> log (stderr not a terminal)",
        c,
        t,
        f"log: {len(log.splitlines())} lines, {log.count(chr(13))} carriage returns, "
        f"{log.count(chr(27))} escape codes",
    )

    pan_test = r.py(SNIPPETS["pan_runs"], data, w / "pdata", w / "pruns").strip()
    c, t = r.run("ensemble", w / "pruns", "--k", "auto", "--data", w / "pdata", "--out", w / "pe")
    record("10a", "lsd ensemble --k auto, PAN members, 100 px events", c, t)
    model = w / "pe" if c == 0 else w / "pruns" / "runs" / "PAN-BCE-lr0.01" / "bundle"
    c, t = r.run("predict", "--stack", w / "pdata" / pan_test / "stack.tif", "--model", model,
                 "--out", w / "pm")  # fmt: skip
    record("10b", "lsd predict, PAN, 100 px stack", c, t)
    c, t = r.run("evaluate", w / "pruns", "--data", w / "pdata", "--out", w / "pev")
    record("10c", "lsd evaluate, PAN, 100 px events", c, t)

    r.py(SNIPPETS["flat_bundle"], next((R / "runs").iterdir()) / "bundle", w / "flat")
    c, t = r.run("predict", "--stack", stack, "--model", w / "flat", "--out", w / "m12",
                 "--min-area-m2", "0")  # fmt: skip
    note = r.py(SNIPPETS["mask_ones"], w / "m12" / "mask.tif").strip() if c == 0 else ""
    record("12", "lsd predict with a model whose probability is exactly 0.5", c, t, note)

    c, t = r.run("predict", "--stack", stack, "--model", ens, "--out", w / "m15")
    names = sorted(p.name for p in (w / "m15").iterdir()) if c == 0 else []
    run = json.loads((w / "m15" / "run.json").read_text()) if c == 0 else {}
    record(
        "15",
        "lsd predict on a Landslide4Sense stack (no CRS)",
        c,
        t,
        f"files: {names}; run.json georeferenced: {run.get('georeferenced', 'absent')}",
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lsd", type=Path, required=True)
    ap.add_argument("--label", default="run")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lsd-cases-") as tmp:
        r = Runner(args.lsd.resolve(), Path(tmp))
        ctx = prepare(r)
        result = cases(r, ctx)
    path = args.json or REPO / "benchmarks" / "results" / f"failure_cases-{args.label}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
