"""Issue 20 items 5, 8 and 9 run against one lsd install: hostile sizes, tracebacks and silently
accepted nonsense, each as (command, exit code, first line) for a before/after table.

    python -m benchmarks.bounds_cases --lsd /path/to/main/.venv/bin/lsd --label main
    python -m benchmarks.bounds_cases --lsd .venv/bin/lsd --label bounds [--only 5a,9e]

The inputs are generated once by the python running this script into --inputs (kept, so every
install sees the same files); each case then runs `lsd` of the install under test in a fresh
folder, from a working directory outside any checkout (so its python imports its own lsd). A
case is killed when it runs past --timeout seconds or its process group holds more than --rss-gb
of memory; the table says so. Writes benchmarks/results/bounds_cases-<label>.json.
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
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
ENV.pop("LSD_MEMORY_GB", None)
ENV.pop("LSD_MAX_PIXELS", None)
L4S_LAYERS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11", "B12",
              "slope", "elevation"]  # fmt: skip
TRAIN = ["--setting", "B2,B3,B4,B8", "--archs", "Unet", "--losses", "BCE", "--lrs", "0.001",
         "--encoder", "resnet18", "--batch-size", "2", "--iters-per-epoch", "1", "--epochs", "1",
         "--val", "l4s_image_2", "--test", "l4s_image_3", "--device", "cpu",
         "--quiet"]  # fmt: skip


# --------------------------------------------------------------------------- running lsd


def _group_rss(pgid: int) -> int:
    """Resident bytes of every process in the group (the lsd process and its workers)."""
    total, page = 0, os.sysconf("SC_PAGE_SIZE")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            total += int((entry / "statm").read_text().split()[1]) * page
        except (OSError, ValueError, IndexError):
            continue
    return total


def run_lsd(lsd: Path, args: list[str], cwd: Path, timeout: float, rss_cap: float,
            env: dict | None = None) -> dict:  # fmt: skip
    """Exit code, output and peak memory of `lsd args`; killed past the time or memory cap."""
    out, err = cwd / ".stdout", cwd / ".stderr"
    with out.open("w") as fo, err.open("w") as fe:
        proc = subprocess.Popen([str(lsd), *map(str, args)], cwd=cwd, stdout=fo, stderr=fe,
                                env=env or ENV, start_new_session=True)  # fmt: skip
        start, peak, killed = time.monotonic(), 0, None
        while proc.poll() is None:
            time.sleep(0.2)
            peak = max(peak, _group_rss(proc.pid))
            secs = time.monotonic() - start
            if secs > timeout or peak > rss_cap:
                killed = f"killed after {secs:.0f} s at {peak / 2**30:.1f} GB"
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    stdout, stderr = out.read_text(errors="replace"), err.read_text(errors="replace")
    out.unlink()
    err.unlink()
    return {"rc": proc.returncode, "killed": killed, "secs": round(time.monotonic() - start, 1),
            "peak_gb": round(peak / 2**30, 2), "stdout": stdout[-4000:],
            "stderr": stderr[-4000:]}  # fmt: skip


def first_line(res: dict) -> str:
    """The line that tells what happened: a traceback's last line (named as one), else the
    'Error:' line, else the first 'Warning:' line, else stderr's first line, else stdout's; a
    killed run says so."""
    if res["killed"]:
        return f"({res['killed']}, no message)"
    err = [ln for ln in res["stderr"].splitlines() if ln.strip()]
    if any(ln.startswith("Traceback") for ln in err):
        return f"Traceback ... {err[-1][:220]}"
    errors = [ln for ln in err if ln.startswith("Error:")]
    warnings = [ln for ln in err if ln.startswith("Warning:")]
    lines = errors or warnings or err or [ln for ln in res["stdout"].splitlines() if ln.strip()]
    return lines[0][:260] if lines else "(no output)"


# --------------------------------------------------------------------------- inputs


def _h5_pair(folder: Path, n: int, img, mask) -> None:
    import h5py

    (folder / "img").mkdir(parents=True, exist_ok=True)
    (folder / "mask").mkdir(parents=True, exist_ok=True)
    for path, key, value in ((folder / "img" / f"image_{n}.h5", "img", img),
                             (folder / "mask" / f"mask_{n}.h5", "mask", mask)):  # fmt: skip
        with h5py.File(path, "w") as f:
            if isinstance(value, tuple):  # (shape, dtype): declared, never written
                f.create_dataset(key, shape=value[0], dtype=value[1], chunks=True)
            else:
                f.create_dataset(key, data=value)


def _patch(n: int, size: int = 128, label: str = "normal") -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n)
    img = rng.normal(size=(size, size, 14)).astype(np.float32)
    lab = np.zeros((size, size), np.uint8)
    lab[40 + n : 70 + n, 30:60] = 1
    img[..., 1:4] += 2.0 * lab[..., None]
    return img, lab


def _stack(path: Path, data: np.ndarray, names: list[str], *, dtype: str = "float32",
           crs: str | None = "EPSG:32633") -> None:  # fmt: skip
    import rasterio

    c, h, w = data.shape
    profile = {"driver": "GTiff", "width": w, "height": h, "count": c, "dtype": dtype,
               "transform": rasterio.Affine(10, 0, 500000, 0, -10, 5000000)}  # fmt: skip
    if crs:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(dtype))
        for i, n in enumerate(names, 1):
            dst.set_band_description(i, n)


def _sparse_stack(path: Path, size: int, names: list[str]) -> None:
    """A GeoTIFF that claims size x size pixels but stores no tile (GDAL's SPARSE_OK)."""
    import rasterio

    profile = {"driver": "GTiff", "width": size, "height": size, "count": len(names),
               "dtype": "float32", "crs": "EPSG:32633", "tiled": True, "blockxsize": 256,
               "blockysize": 256, "compress": "deflate", "BIGTIFF": "YES", "SPARSE_OK": "TRUE",
               "transform": rasterio.Affine(10, 0, 500000, 0, -10, 5000000)}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        for i, n in enumerate(names, 1):
            dst.set_band_description(i, n)


def make_inputs(root: Path) -> None:
    """Every input the cases read, generated once (the paper-models runs train for a minute)."""
    import torch

    from lsd.bundles import BundleMeta
    from lsd.training.bundle import save_bundle
    from lsd.training.models import build_model

    root.mkdir(parents=True, exist_ok=True)
    # Landslide4Sense-like patches: five real 128 px ones, and files that claim huge shapes
    for n in range(1, 6):
        _h5_pair(root / "l4s", n, *_patch(n))
    _h5_pair(root / "l4s_9000", 1, ((9000, 9000, 14), "float32"), ((9000, 9000), "uint8"))
    _h5_pair(root / "l4s_huge", 1, ((2**20, 2**20, 14), "float32"), ((2**20, 2**20), "uint8"))
    for n in range(1, 6):  # every label pixel 255 (nothing labelled)
        img, _ = _patch(n)
        _h5_pair(root / "l4s_unlabelled", n, img, np.zeros((128, 128), np.uint8))
    # a bundle reading two layers, for predict
    torch.manual_seed(0)
    names = ["B2", "B3"]
    meta = BundleMeta("Unet", "resnet18", "BCE", 1e-3, names, [0.0, 0.0], [1.0, 1.0])
    save_bundle(root / "model", build_model("Unet", 2, "resnet18"), meta)
    rng = np.random.default_rng(0)
    _stack(root / "stack.tif", rng.normal(size=(2, 256, 256)), names)
    _sparse_stack(root / "huge.tif", 200_000, names)
    _stack(root / "complex.tif", rng.normal(size=(2, 256, 256)) + 1j, names, dtype="complex64")
    _stack(root / "zeros.tif", np.zeros((2, 256, 256)), names)
    inf = rng.normal(size=(2, 256, 256))
    inf[1] = np.inf
    _stack(root / "inf.tif", inf, names)
    # --encoder-weights files that are not a state dict of tensors
    torch.save([torch.zeros(3)], root / "weights_list.pt")
    torch.save(torch.zeros(3), root / "weights_tensor.pt")
    torch.save({"conv1.weight": "not a tensor"}, root / "weights_str.pt")
    # archives: an empty zip, and a real one to unpack on a small full file system
    (root / "empty").mkdir(exist_ok=True)
    zipfile.ZipFile(root / "empty" / "global_dataset.zip", "w").close()
    from tests.paper_fixtures import write_paper_dataset, zip_folder

    paper = write_paper_dataset(root / "paper", size=(64, 64))
    (root / "full").mkdir(exist_ok=True)
    zip_folder(paper, root / "full" / "global_dataset.zip")
    # AOIs and events for fetch --dry-run / predict --aoi
    _aois(root)
    # the paper's dataset imported, and its trained models (hparams.yaml cases)
    from tests.paper_models_fixture import write_trained_models

    subprocess.run([str(Path(sys.executable).with_name("lsd")), "import", "paper", str(paper),
                    str(root / "paper_events"), "--no-progress"], check=True, cwd=root,
                   env=ENV)  # fmt: skip
    write_trained_models(root / "paper")
    (root / "done").write_text("inputs complete\n")


def _aois(root: Path) -> None:
    import geopandas as gpd
    from shapely.geometry import Polygon, box

    aoi = root / "aoi"
    aoi.mkdir(exist_ok=True)
    huge = box(0.0, 0.0, 28.2, 28.0)  # about 9.5 million km2
    flat = Polygon([(10.0, 60.0), (10.01, 60.0), (10.02, 60.0), (10.0, 60.0)])  # zero area
    for name, geom in (("huge", huge), ("flat", flat)):
        gpd.GeoDataFrame(geometry=[geom], crs="EPSG:4326").to_file(aoi / f"{name}.geojson")
    (aoi / "huge.csv").write_text("id,date,polygon\nhuge,2021-06-01,huge.geojson\n")
    (aoi / "flat.csv").write_text("id,date,polygon\nflat,2021-06-01,flat.geojson\n")
    (aoi / "future.csv").write_text("id,date,lon,lat\nsoon,2099-06-01,10.5,61.5\n")
    (aoi / "point.csv").write_text("id,date,lon,lat\nbig,2021-06-01,10.5,61.5\n")


# --------------------------------------------------------------------------- the cases


def _hparams(models: Path, edit) -> None:
    import yaml

    for path in sorted(models.rglob("hparams.yaml"))[:1]:
        cfg = yaml.safe_load(path.read_text())
        edit(cfg)
        path.write_text(yaml.safe_dump(cfg))


def _l4s_events(lsd: Path, inputs: Path, work: Path, src: str = "l4s") -> Path:
    data = work / "data"
    subprocess.run([str(lsd), "import", "landslide4sense", str(inputs / src), str(data),
                    "--no-progress"], cwd=work, env=ENV, capture_output=True)  # fmt: skip
    return data


def _paper_models(inputs: Path, work: Path, edit) -> list[str]:
    models = work / "trained_models"
    shutil.copytree(inputs / "paper" / "trained_models", models)
    _hparams(models, edit)
    return ["import", "paper-models", str(models), str(work / "runs"), "--data",
            str(inputs / "paper_events"), "--device", "cpu"]  # fmt: skip


def cases(lsd: Path, inputs: Path):
    """(id, what, setup(work) -> argv, post(work, res) -> extra note or None)."""
    i = inputs
    model = str(i / "model")

    def predict(stack: str):
        return lambda w: ["predict", "--stack", str(i / stack), "--model", model, "--out",
                          str(w / "map"), "--device", "cpu"]  # fmt: skip

    def train(crop: str, src: str = "l4s"):
        return lambda w: ["train", *TRAIN, "--crop", crop, "--data",
                          str(_l4s_events(lsd, i, w, src)), "--out", str(w / "runs")]  # fmt: skip

    def unlabelled(w: Path) -> list[str]:
        argv = train("64")(w)
        for label in (w / "data").glob("*/label.tif"):  # every pixel 255: nothing labelled
            import rasterio

            with rasterio.open(label, "r+") as dst:
                dst.write(np.full((dst.height, dst.width), 255, np.uint8), 1)
        return argv

    def full_disk(w: Path) -> list[str]:
        return ["download", "paper", "--from-archive", str(i / "full" / "global_dataset.zip"),
                "--to", str(w / "small_fs" / "paper")]  # fmt: skip

    def empty_zip(w: Path) -> list[str]:
        return ["download", "paper", "--from-archive", str(i / "empty" / "global_dataset.zip"),
                "--to", str(w / "paper")]  # fmt: skip

    def empty_then_real(w: Path) -> list[str]:
        run_lsd(lsd, empty_zip(w), w, 60, 4 * 2**30)
        return ["download", "paper", "--from-archive", str(i / "full" / "global_dataset.zip"),
                "--to", str(w / "paper")]  # fmt: skip

    yield (
        "5a",
        "import: a 1 KB .h5 claiming 9000 x 9000 x 14",
        lambda w: ["import", "landslide4sense", str(i / "l4s_9000"), str(w / "out")],
    )
    yield ("5b", "predict: a small TIFF claiming 200000 x 200000", predict("huge.tif"))
    yield ("5c", "inspect: the same TIFF", lambda w: ["inspect", str(i / "huge.tif")])
    yield ("5d", "train --crop 2048 on 128 px patches", train("2048"))
    yield ("5e", "train --crop 100000", train("100000"))
    for key, what, edit in (
        ("8a", "hparams.yaml: model.net is a string", lambda c: c["model"].update(net="Unet")),
        ("8b", "hparams.yaml: model.loss is a string", lambda c: c["model"].update(loss="Dice")),
        (
            "8c",
            "hparams.yaml: model.optimizer is a list",
            lambda c: c["model"].update(optimizer=[0.001]),
        ),
        ("8d", "hparams.yaml: data is a list", lambda c: c.update(data=[1, 2])),
    ):
        yield (key, what, lambda w, edit=edit: _paper_models(i, w, edit))
    for key, what, name in (("8e", "--encoder-weights holding a list", "weights_list.pt"),
                            ("8f", "--encoder-weights holding a tensor", "weights_tensor.pt"),
                            ("8g", "--encoder-weights: a dict with a string value",
                             "weights_str.pt")):  # fmt: skip
        yield (key, what, lambda w, name=name: [*train("64")(w), "--encoder-weights",
                                                str(i / name)])  # fmt: skip
    yield (
        "8h",
        "predict --out with a newline in its name",
        lambda w: [*predict("stack.tif")(w)[:-4], "--out", str(w / "a\nb"), "--device", "cpu"],
    )
    yield (
        "8i",
        "import: an .h5 claiming 2^20 x 2^20 x 14",
        lambda w: ["import", "landslide4sense", str(i / "l4s_huge"), str(w / "out")],
    )
    yield ("9a", "predict: a complex64 stack", predict("complex.tif"))
    yield ("9a2", "inspect: a complex64 stack", lambda w: ["inspect", str(i / "complex.tif")])
    yield ("9b", "predict: an all-zero stack", predict("zeros.tif"))
    yield ("9c", "train on labels that are all 255", unlabelled)
    yield ("9c2", "train on labels without a landslide pixel", train("64", "l4s_unlabelled"))
    yield ("9d", "predict: a layer that is +inf everywhere", predict("inf.tif"))
    yield ("9e", "download --from-archive: an empty zip", empty_zip)
    yield ("9e2", "... then the real zip into the same folder", empty_then_real)
    yield ("9f", "download --from-archive onto a full (1 MB) file system", full_disk)
    aoi = i / "aoi"
    yield ("9g", "fetch --dry-run: a 9.5 million km2 polygon",
           lambda w: ["fetch", "--event", str(aoi / "huge.csv"), "--out", str(w / "d"),
                      "--dry-run"])  # fmt: skip
    yield ("9g2", "fetch --dry-run --aoi-km2 9500000",
           lambda w: ["fetch", "--event", str(aoi / "point.csv"), "--out", str(w / "d"),
                      "--dry-run", "--aoi-km2", "9500000"])  # fmt: skip
    yield ("9g3", "fetch --dry-run: a zero-area polygon",
           lambda w: ["fetch", "--event", str(aoi / "flat.csv"), "--out", str(w / "d"),
                      "--dry-run"])  # fmt: skip
    yield ("9g4", "predict --aoi: the same zero-area polygon",
           lambda w: ["predict", "--aoi", str(aoi / "flat.geojson"), "--date", "2021-06-01",
                      "--model", model, "--out", str(w / "map")])  # fmt: skip
    yield ("9g5", "predict --aoi: the 9.5 million km2 polygon",
           lambda w: ["predict", "--aoi", str(aoi / "huge.geojson"), "--date", "2021-06-01",
                      "--model", model, "--out", str(w / "map")])  # fmt: skip
    yield ("9h", "fetch --dry-run: an event dated 2099-06-01",
           lambda w: ["fetch", "--event", str(aoi / "future.csv"), "--out", str(w / "d"),
                      "--dry-run"])  # fmt: skip


def _small_fs(work: Path) -> Path | None:
    """A 1 MB tmpfs (needs root); None where one cannot be mounted."""
    target = work / "small_fs"
    target.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)],
                         capture_output=True)  # fmt: skip
    return target if res.returncode == 0 else None


def _short(arg: str, inputs: Path, work: Path) -> str:
    return str(arg).replace(str(inputs), "IN").replace(str(work), "W").replace("\n", "\\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lsd", type=Path, required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--inputs", type=Path, default=Path(tempfile.gettempdir()) / "lsd-bounds-inputs")
    p.add_argument("--only", default="")
    p.add_argument("--timeout", type=float, default=90.0)
    p.add_argument("--rss-gb", type=float, default=3.0)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if not (args.inputs / "done").exists():
        print(f"generating inputs in {args.inputs} ...", flush=True)
        make_inputs(args.inputs)
    only = {x for x in args.only.split(",") if x}
    rows = []
    for key, what, setup in cases(args.lsd.resolve(), args.inputs.resolve()):
        if only and key not in only:
            continue
        with tempfile.TemporaryDirectory(prefix=f"lsd-bounds-{key}-") as tmp:
            work = Path(tmp)
            mounted = _small_fs(work) if key == "9f" else None
            try:
                argv = setup(work)
                res = run_lsd(args.lsd, argv, work, args.timeout, args.rss_gb * 2**30)
                extra = ""
                if key == "9e":
                    rec = work / "paper" / "download.json"
                    extra = f"download.json written: {rec.exists()}"
            finally:
                if mounted:
                    subprocess.run(["umount", str(mounted)], check=False)
        cmd = "lsd " + " ".join(_short(a, args.inputs.resolve(), work) for a in argv)
        row = {"case": key, "what": what, "command": cmd, "rc": res["rc"],
               "first_line": first_line(res), "killed": res["killed"], "secs": res["secs"],
               "peak_gb": res["peak_gb"], "note": extra, "stderr_tail": res["stderr"][-1500:],
               "stdout_tail": res["stdout"][-1500:]}  # fmt: skip
        rows.append(row)
        print(f"{key:4} rc={res['rc']!s:4} {res['secs']:6.1f}s {res['peak_gb']:5.2f}GB  "
              f"{row['first_line'][:200]}", flush=True)  # fmt: skip
    out = args.json or REPO / "benchmarks" / "results" / f"bounds_cases-{args.label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if only and out.exists():  # a partial rerun replaces its cases in the table
        done = {r["case"] for r in rows}
        old = [r for r in json.loads(out.read_text())["cases"] if r["case"] not in done]
        order = [key for key, _, _ in cases(args.lsd.resolve(), args.inputs.resolve())]
        rows = sorted(old + rows, key=lambda r: order.index(r["case"]))
    out.write_text(json.dumps({"lsd": str(args.lsd), "label": args.label, "cases": rows},
                              indent=2) + "\n")  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
