"""Issue 20's security, data-loss and scheduler cases (items 1-4, 7), run against one lsd
install: exit code, first line and what happened to the files, for a before/after table.

    python -m benchmarks.hostile_cases --lsd /path/to/.venv/bin/lsd --label main [--only sigterm]

The hostile files are made here, by this script's own Python (rasterio, h5py, zipfile), so old
and new lsd meet the same bytes: a `.tif` or `.png` that is really GDAL VRT XML reading a private
file, a Landslide4Sense `.h5` whose dataset is stored in that private file, user files inside
lsd's folders, a symlinked output, two `lsd train` on one RUNS folder, and SIGTERM sent to real
`lsd` processes (the download against tests/zenodo_server.py, slowed down). Cases 3, 4 and 7 train
a tiny grid on the real Landslide4Sense patches in ../shared/data. Prints one line per case and
writes benchmarks/results/hostile_cases-<label>.json. LSD_SHARED_DATA names the shared data
folder where it is not ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
L4S = (
    Path(os.environ.get("LSD_SHARED_DATA", REPO.parent / "shared" / "data")) / "landslide4sense-21"
)
SECRET = b"root:x:0:0:TOP-SECRET-hunter2:/root:/bin/bash\n"
TRAIN = ["--archs", "FPN", "--losses", "BCE,Dice", "--lrs", "0.001", "--encoder", "resnet18",
         "--crop", "64", "--batch-size", "2", "--iters-per-epoch", "2", "--epochs", "2",
         "--seed", "1", "--val", "3", "--test", "1"]  # fmt: skip
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def raw_vrt(secret: Path, bands: int, size: int) -> str:
    """GDAL VRT XML whose bands are the raw bytes of `secret` (VRTRawRasterBand)."""
    band = (
        '<VRTRasterBand dataType="Byte" band="{i}" subClass="VRTRawRasterBand">'
        f'<SourceFilename relativetoVRT="0">{secret}</SourceFilename><ImageOffset>0'
        f"</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>{size}</LineOffset>"
        "</VRTRasterBand>"
    )
    body = "".join(band.format(i=i + 1) for i in range(bands))
    return f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}">{body}</VRTDataset>'


def write_tif(path: Path, data: np.ndarray, *, crs: int | None = 32633) -> None:
    import rasterio
    from rasterio.transform import from_origin

    path.parent.mkdir(parents=True, exist_ok=True)
    data = data if data.ndim == 3 else data[None]
    extra = {"crs": f"EPSG:{crs}", "transform": from_origin(500000, 7000000, 10, 10)} if crs else {}
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=data.dtype, **extra) as dst:  # fmt: skip
        dst.write(data)


def holds_secret(folder: Path) -> bool:
    """True when any stack.tif below `folder` holds the private file's first bytes, band by
    band or pixel by pixel."""
    import rasterio

    for stack in folder.rglob("stack.tif"):
        with rasterio.open(stack) as src:
            data = np.nan_to_num(src.read()).clip(0, 255).astype(np.uint8)
        for order in (data, np.moveaxis(data, 0, 2)):
            if SECRET[:24] in order.tobytes():
                return True
    return False


def temporaries(folder: Path) -> list[str]:
    names = [p for p in folder.rglob(".*") if p.name.endswith((".partial", ".replaced"))]
    names += [p for p in folder.rglob("tmp*") if ".downloads" in p.parts]
    return sorted(str(p.relative_to(folder)) for p in names)


class Runner:
    def __init__(self, lsd: Path, work: Path) -> None:
        self.lsd, self.work = lsd, work

    def start(self, *args, cwd=None):
        """`lsd args` with Ctrl-C's default disposition (a background job starts without)."""

        def default_sigint() -> None:
            signal.signal(signal.SIGINT, signal.SIG_DFL)

        return subprocess.Popen([str(self.lsd), *map(str, args)], cwd=cwd or self.work,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=ENV, preexec_fn=default_sigint)  # fmt: skip

    def run(self, *args, cwd=None, sig=None, when=None, poll=None, timeout=900):
        """(exit code, output) of `lsd args`; `sig` goes once `when` shows in the output, or
        once `poll()` is true (checked every 0.1 s)."""
        proc = self.start(*args, cwd=cwd)
        lines: list[str] = []
        if poll is not None:

            def watch():
                while proc.poll() is None:
                    if poll():
                        proc.send_signal(sig)
                        return
                    time.sleep(0.1)

            threading.Thread(target=watch, daemon=True).start()
        start = time.monotonic()
        for line in proc.stdout:
            lines.append(line)
            if sig is not None and poll is None and when in line:
                proc.send_signal(sig)
                sig = None
            if time.monotonic() - start > timeout:
                proc.kill()
        proc.wait()
        return proc.returncode, "".join(lines)


def first_line(text: str) -> str:
    """The first line a user reads, Python warnings (and their source line) left out."""
    lines, skip = [], False
    for raw in text.replace("\r", "\n").splitlines():
        if skip and raw.startswith(" "):
            continue
        skip = "Warning: " in raw
        if raw.strip() and not skip:
            lines.append(raw.strip())
    shown = lines
    tb = " [traceback]" if "Traceback" in text else ""
    return ((shown or lines or [""])[0])[:220] + tb


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
    return (lines[-1] if lines else "")[:220]


# --------------------------------------------------------------------------- hostile inputs


def paper_archive(w: Path, secret: Path) -> Path:
    """global_dataset.zip whose test input 5_input.tif is VRT XML reading `secret`."""
    from tests.paper_fixtures import write_paper_dataset, zip_folder

    ds = write_paper_dataset(w / "made", size=(64, 64))
    (ds / "test" / "input" / "5_input.tif").write_text(raw_vrt(secret, 15, 64))
    return zip_folder(ds, w / "global_dataset.zip")


def tile_source(root: Path, secret: Path | None, suffix: str = ".tif", seed: int = 0) -> Path:
    """images/a<suffix>, images/b.tif and masks; with `secret`, image a is VRT XML."""
    rng = np.random.default_rng(seed)
    for name in ("a", "b"):
        write_tif(root / "masks" / f"{name}.tif", (rng.random((32, 32)) > 0.7).astype(np.uint8))
        write_tif(root / "images" / f"{name}.tif", rng.random((3, 32, 32)).astype(np.float32))
    if secret is not None:
        (root / "images" / "a.tif").unlink()
        (root / "images" / f"a{suffix}").write_text(raw_vrt(secret, 3, 32))
    return root


def l4s_source(root: Path, secret: Path | None) -> Path:
    """Two 8 x 8 Landslide4Sense patches; with `secret`, image_1's data is stored in it."""
    import h5py

    (root / "img").mkdir(parents=True)
    (root / "mask").mkdir()
    rng = np.random.default_rng(1)
    for n in (1, 2):
        with h5py.File(root / "img" / f"image_{n}.h5", "w") as f:
            if n == 1 and secret is not None:
                f.create_dataset("img", (8, 8, 14), "uint8", external=[(str(secret), 0, 896)])
            else:
                f["img"] = rng.random((8, 8, 14))
        with h5py.File(root / "mask" / f"mask_{n}.h5", "w") as f:
            f["mask"] = (rng.random((8, 8)) > 0.5).astype(np.uint8)
    return root


# --------------------------------------------------------------------------- the cases


def security(r: Runner, secret: Path, record) -> None:
    w = r.work
    archive = paper_archive(w / "1a", secret)
    c, t = r.run("download", "paper", "--from-archive", archive, "--to", w / "1a" / "dl")
    c2, t2 = r.run("import", "paper", w / "1a" / "dl" / "global_dataset", w / "1a" / "out",
                   "--no-progress")  # fmt: skip
    record(
        "1a",
        "lsd download paper --from-archive evil.zip --to DL; lsd import paper "
        "DL/global_dataset OUT",
        c2,
        t2,
        f"download rc={c}; private bytes in a stack: {holds_secret(w / '1a' / 'out')}",
    )

    for key, suffix in (("1b", ".tif"), ("1c", ".png")):
        src = tile_source(w / key / "src", secret, suffix)
        c, t = r.run("import", "tiles", src, w / key / "out", "--mapping", "0:0,1:1",
                     "--no-progress")  # fmt: skip
        record(
            key,
            f"lsd import tiles SRC OUT --mapping 0:0,1:1  (images/a{suffix} is a VRT)",
            c,
            t,
            f"private bytes in a stack: {holds_secret(w / key / 'out')}",
        )

    src = l4s_source(w / "1d" / "src", secret)
    c, t = r.run("import", "landslide4sense", src, w / "1d" / "out", "--no-progress")
    record(
        "1d",
        "lsd import landslide4sense SRC OUT  (image_1.h5 'img' stored in another file)",
        c,
        t,
        f"private bytes in a stack: {holds_secret(w / '1d' / 'out')}",
    )

    evil = w / "1e" / "stack.tif"
    evil.parent.mkdir()
    evil.write_text(raw_vrt(secret, 1, 32))
    c, t = r.run("inspect", evil)
    record(
        "1e",
        "lsd inspect evil.tif  (VRT reading a private file)",
        c,
        t,
        f"statistics printed: {'band1' in t or 'layer' in t.lower()}",
    )


def outputs(r: Runner, record) -> None:
    w = r.work
    src = l4s_source(w / "2a" / "src", None)
    dest = w / "2a" / "dest"
    user_stack = dest / "l4s_image_1" / "stack.tif"
    write_tif(user_stack, np.full((2, 8, 8), 7, np.float32))
    mine = user_stack.read_bytes()
    c, t = r.run("import", "landslide4sense", src, dest, "--no-progress")
    record(
        "2a",
        "lsd import landslide4sense SRC DEST  (DEST/l4s_image_1/stack.tif is the user's)",
        c,
        t,
        f"user's stack.tif kept: {user_stack.read_bytes() == mine}",
    )

    tiles = tile_source(w / "2b" / "src", None)
    before = sorted(p.name for p in tiles.iterdir())
    c, t = r.run("import", "tiles", tiles, tiles, "--mapping", "0:0,1:1", "--no-progress")
    record(
        "2b",
        "lsd import tiles SRC SRC",
        c,
        t,
        f"SRC unchanged: {sorted(p.name for p in tiles.iterdir()) == before}",
    )
    c, t = r.run("import", "tiles", tiles, tiles / "images" / "out", "--mapping", "0:0,1:1",
                 "--no-progress")  # fmt: skip
    record(
        "2c",
        "lsd import tiles SRC SRC/images/out",
        c,
        t,
        f"written inside SRC: {(tiles / 'images' / 'out').exists()}",
    )
    cwd = w / "2d"
    cwd.mkdir()
    c, t = r.run("import", "tiles", tiles, ".", "--mapping", "0:0,1:1", "--no-progress", cwd=cwd)
    record(
        "2d",
        "cd W && lsd import tiles SRC .",
        c,
        t,
        f"W now holds: {', '.join(sorted(p.name for p in cwd.iterdir())) or 'nothing'}",
    )

    other = tile_source(w / "2e" / "src2", None, seed=5)
    out = w / "2e" / "out"
    r.run("import", "tiles", tiles, out, "--mapping", "0:0,1:1", "--no-progress")
    first = (out / "a" / "event.json").read_bytes()
    c, t = r.run("import", "tiles", other, out, "--mapping", "0:0,1:1", "--no-progress")
    record(
        "2e",
        "lsd import tiles SRC1 OUT; lsd import tiles SRC2 OUT  (same ids a, b)",
        c,
        t,
        f"OUT/a still from SRC1: {(out / 'a' / 'event.json').read_bytes() == first}; "
        f"SRC2's a imported: {'src2' in (out / 'a' / 'event.json').read_text()}",
    )


def prepare(r: Runner) -> dict[str, Path]:
    w = r.work
    code, text = r.run("import", "landslide4sense", L4S, w / "data", "--no-progress")
    assert code == 0, text
    code, text = r.run("train", "--data", w / "data", "--out", w / "R", "--setting",
                       "B2,B3,B4,B8", *TRAIN, "--quiet")  # fmt: skip
    assert code == 0, text
    code, text = r.run("ensemble", w / "R", "--k", "2", "--out", w / "ens")
    assert code == 0, text
    import rasterio

    from lsd.rasters import Grid, read_stack, write_stack

    events = sorted(p for p in (w / "data").iterdir() if p.is_dir())
    layers = ("B2", "B3", "B4", "B8")
    tiles = [read_stack(e / "stack.tif", layers)[0] for e in events[:9]]
    mosaic = np.block([[[t[c] for t in tiles[i * 3: i * 3 + 3]] for i in range(3)]
                       for c in range(len(layers))])  # fmt: skip
    big = w / "big" / "stack.tif"
    write_stack(
        big,
        mosaic,
        layers,
        Grid(
            384,
            384,
            rasterio.crs.CRS.from_epsg(32645),
            rasterio.Affine(10, 0, 300000, 0, -10, 3000000),
        ),
    )
    return {"data": w / "data", "runs": w / "R", "ens": w / "ens", "big": big}


def overwrite(r: Runner, ctx: dict[str, Path], record) -> None:
    w = r.work
    out = w / "3a"
    assert r.run("ensemble", ctx["runs"], "--k", "1", "--out", out)[0] == 0
    (out / "notes.txt").write_text("my notes on this ensemble\n")
    c, t = r.run("ensemble", ctx["runs"], "--k", "1", "--out", out, "--overwrite")
    record(
        "3a",
        "lsd ensemble RUNS --out E --overwrite  (E holds the user's notes.txt)",
        c,
        t,
        f"notes.txt kept: {(out / 'notes.txt').exists()}",
    )

    target = w / "3b" / "scratch" / "ens"
    target.parent.mkdir(parents=True)
    assert r.run("ensemble", ctx["runs"], "--k", "1", "--out", target)[0] == 0
    link = w / "3b" / "ens"
    link.symlink_to(target)
    c, t = r.run("ensemble", ctx["runs"], "--k", "2", "--out", link, "--overwrite")
    hidden = sorted(p.name for p in link.parent.iterdir() if p.name.startswith("."))
    record(
        "3b",
        "lsd ensemble RUNS --out LINK --overwrite  (LINK -> scratch/ens)",
        c,
        t,
        f"LINK still a link: {link.is_symlink()}; hidden entries left: {hidden or 'none'}; "
        f"target has K=2: {json.loads((target / 'manifest.json').read_text()).get('k') == 2}",
    )


def concurrent_train(r: Runner, ctx: dict[str, Path], record, rounds: int) -> None:
    both, refused_lines = 0, []
    opts = ["--archs", "FPN", "--losses", "BCE", "--lrs", "0.001", "--encoder", "resnet18",
            "--crop", "64", "--batch-size", "2", "--iters-per-epoch", "1", "--epochs", "1",
            "--seed", "1", "--val", "3", "--test", "1", "--quiet"]  # fmt: skip
    for i in range(rounds):
        out = r.work / "4" / f"R{i}"
        procs = [r.start("train", "--data", ctx["data"], "--out", out, "--setting", s, *opts)
                 for s in ("B2,B3,B4,B8", "B2,B3,B4")]  # fmt: skip
        results = [(p.wait(), p.stdout.read()) for p in procs]
        if all(code == 0 for code, _ in results):
            both += 1
        refused_lines += [first_line(t) for code, t in results if code != 0]
    shown = refused_lines[0] if refused_lines else "(none refused)"
    record(
        "4",
        f"2 x lsd train --setting <different> --out RUNS, started together, {rounds} rounds",
        1 if refused_lines else 0,  # the refused call's status (0: none was refused)
        shown,
        f"both exit 0 (two layer lists under one grid.json) in {both} of {rounds} rounds",
    )


def sigterm(r: Runner, ctx: dict[str, Path], record) -> None:
    w = r.work
    out = w / "7a"
    args = ["train", "--data", ctx["data"], "--out", out, "--setting", "B2,B3,B4,B8", *TRAIN]
    c, t = r.run(*args, sig=signal.SIGTERM, when="epoch 1/2")
    tmp = temporaries(out)
    c2, t2 = r.run(*args)
    record(
        "7a",
        "lsd train ... ; SIGTERM at 'epoch 1/2'",
        c,
        t,
        f"last line: {last_line(t)!r}; temporaries: {tmp or 'none'}; rerun rc={c2}, "
        f"resumed: {'continued from their last epoch' in t2}",
    )

    m = w / "7b" / "map"
    args = ["predict", "--stack", ctx["big"], "--model", ctx["ens"], "--out", m, "--tile", "128",
            "--overlap", "16"]  # fmt: skip
    c, t = r.run(*args, sig=signal.SIGTERM, when="predict: ")
    tmp = temporaries(m.parent)
    c2, _ = r.run(*args)
    record(
        "7b",
        "lsd predict ... ; SIGTERM at 'predict: '",
        c,
        t,
        f"last line: {last_line(t)!r}; temporaries: {tmp or 'none'}; rerun rc={c2}",
    )

    dest = w / "7c"
    args = ["import", "landslide4sense", L4S, dest]
    c, t = r.run(*args, sig=signal.SIGTERM, when="7/21 events")
    tmp = temporaries(dest)
    c2, t2 = r.run(*args)
    record(
        "7c",
        "lsd import landslide4sense ... ; SIGTERM at '7/21 events'",
        c,
        t,
        f"last line: {last_line(t)!r}; temporaries: {tmp or 'none'}; rerun rc={c2}",
    )

    from tests.paper_fixtures import write_paper_dataset, zip_folder
    from tests.zenodo_server import zenodo_stand_in

    ds = write_paper_dataset(w / "7d" / "made", size=(96, 96))
    archive = zip_folder(ds, w / "7d" / "global_dataset.zip")
    to = w / "7d" / "to"
    part = to / ".downloads" / "global_dataset.zip.part"
    with zenodo_stand_in(w / "7d" / "zenodo") as zenodo:
        zenodo.publish(archive)
        zenodo.slow_down("global_dataset.zip", chunk=16384, delay_s=0.2)
        env_url = {"LSD_ZENODO_URL": zenodo.url}
        ENV.update(env_url)
        try:
            args = ["download", "paper", "--data", "--to", to, "--no-progress"]
            c, t = r.run(
                *args,
                sig=signal.SIGTERM,
                poll=lambda: part.exists() and part.stat().st_size > 50_000,
            )
            have = part.stat().st_size if part.exists() else 0
            tmp = temporaries(to)
            zenodo.slow_down("global_dataset.zip", chunk=1 << 20, delay_s=0)
            c2, _ = r.run(*args)
            ranged = any(h for p, h in zenodo.ranges if p.endswith(".zip") and h)
        finally:
            for key in env_url:
                ENV.pop(key)
    record(
        "7d",
        "lsd download paper --data --to TO ; SIGTERM mid-download",
        c,
        t,
        f"last line: {last_line(t)!r}; part kept: {have} B; temporaries: {tmp or 'none'}; "
        f"rerun rc={c2}, resumed with a Range request: {ranged}",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lsd", type=Path, required=True)
    ap.add_argument("--label", default="run")
    ap.add_argument("--only", default="", help="groups: security,outputs,overwrite,race,sigterm")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    results: dict[str, dict] = {}

    def record(key, cmd, code, text, note=""):
        results[key] = {"cmd": cmd, "rc": code, "first": first_line(text), "note": note}
        print(f"{key:3s} rc={code:<4} {first_line(text)[:150]} | {note}", flush=True)

    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        work = Path(tmp)
        secret = work / "private.txt"
        secret.write_bytes(SECRET * 400)
        r = Runner(args.lsd, work)
        if not only or "security" in only:
            security(r, secret, record)
        if not only or "outputs" in only:
            outputs(r, record)
        if not only or only & {"overwrite", "race", "sigterm"}:
            ctx = prepare(r)
            if not only or "overwrite" in only:
                overwrite(r, ctx, record)
            if not only or "race" in only:
                concurrent_train(r, ctx, record, args.rounds)
            if not only or "sigterm" in only:
                sigterm(r, ctx, record)
    out = REPO / "benchmarks" / "results" / f"hostile_cases-{args.label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
