"""`lsd predict` end to end on generated rasters: Landslide4Sense-like patches on a UTM grid and
a mosaic of Chittagong-like chips in degrees (EPSG:4326) with a gap of no data."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import geopandas as gpd
import h5py
import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner
from rasterio.features import rasterize
from shapely.geometry import Point, box

from lsd.bundles import BundleMeta
from lsd.errors import UserError
from lsd.files import write_json
from lsd.outputs import MARKER_FILE
from lsd.pipeline.aoi import DIRECT_DOWNLOAD_MAX_KM2, aoi_spec, parse_date
from lsd.pipeline.cli import main
from lsd.rasters import Grid, write_stack
from lsd.training.bundle import save_bundle
from lsd.training.models import build_model
from tests.tile_fixtures import write_chips

L4S_LAYERS = [*(f"B{i}" for i in range(1, 13)), "slope", "elevation"]
CHIT_LAYERS = ["R", "G", "B", "NIR"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _train_member(arch: str, x: np.ndarray, y: np.ndarray, seed: int, steps: int = 6):
    """A few Adam steps on 64 px crops: enough for weights that respond to the data."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mean = np.nanmean(x, axis=(0, 2, 3))
    std = np.nanstd(x, axis=(0, 2, 3)) + 1e-6
    xn = np.nan_to_num((x - mean[None, :, None, None]) / std[None, :, None, None])
    model = build_model(arch, x.shape[1], "resnet18")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        idx = rng.integers(0, len(x), 4)
        r, c = rng.integers(0, x.shape[2] - 64), rng.integers(0, x.shape[3] - 64)
        xb = torch.from_numpy(xn[idx, :, r : r + 64, c : c + 64].astype(np.float32))
        yb = torch.from_numpy(y[idx, r : r + 64, c : c + 64].astype(np.float32))
        valid = yb != 255
        logits = model(xb)[:, 0]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[valid], yb[valid])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model, mean.tolist(), std.tolist()


def _write_ensemble(
    folder: Path, layers: list[str], x: np.ndarray, y: np.ndarray, steps: int
) -> Path:
    members = []
    for i, arch in enumerate(["Unet", "FPN"]):
        model, mean, std = _train_member(arch, x, y, seed=i, steps=steps)
        name = f"{arch}-BCE-lr0.001"
        meta = BundleMeta(
            arch, "resnet18", "BCE", 1e-3, layers, mean, std, {"val_f1": 0.5 - i / 10}
        )
        save_bundle(folder / "members" / name, model, meta)
        members.append({"name": name, "path": f"members/{name}", "val_f1": 0.5 - i / 10})
    manifest = {"format": "lsd-ensemble/1", "k": 2, "threshold": 0.5, "layers": layers,
                "members": members, "k_selection": {}, "lsd_version": "test"}  # fmt: skip
    write_json(folder / "manifest.json", manifest)
    return folder


@pytest.fixture(scope="module")
def l4s(l4s_generated: Path, tiny_runs, tmp_path_factory) -> dict[str, Path]:
    """Two single-patch stacks (UTM grid, 10 m) and the session's tiny grid (trained on the same
    14 layers) as a 2-member ensemble: these tests are about files, grids and masks."""
    from tests.cli import lsd

    root = tmp_path_factory.mktemp("l4s_predict")
    files = sorted((l4s_generated / "img").glob("image_*.h5"))
    grid = Grid(128, 128, rasterio.crs.CRS.from_epsg(32654),
                rasterio.Affine(10, 0, 500000, 0, -10, 4750000))  # fmt: skip
    stacks = {}
    for i in (0, 1):
        with h5py.File(files[i]) as h:
            x = np.asarray(h["img"], np.float32).transpose(2, 0, 1)
        stacks[f"stack{i}"] = root / f"patch{i}" / "stack.tif"
        write_stack(stacks[f"stack{i}"], x, L4S_LAYERS, grid)
    assert list(tiny_runs.layers) == L4S_LAYERS
    code, text = lsd("ensemble", tiny_runs.runs, "--k", 2, "--out", root / "ensemble")
    assert code == 0, text
    return {"root": root, "ensemble": root / "ensemble", **stacks}


@pytest.fixture(scope="module")
def chittagong(tmp_path_factory) -> dict[str, Path]:
    """A mosaic of generated overlapping chips (EPSG:4326) with a gap of no data, and an
    ensemble trained on the chips' R,G,B,NIR layers and sparse labels."""
    from rasterio.merge import merge

    root = tmp_path_factory.mktemp("chips_predict")
    pairs = write_chips(root / "chips")
    mosaic, transform = merge([str(p) for p, _ in pairs], nodata=np.nan, dtype="float32")
    grid = Grid(mosaic.shape[2], mosaic.shape[1], rasterio.crs.CRS.from_epsg(4326), transform)
    stack = root / "mosaic" / "stack.tif"
    write_stack(stack, mosaic.astype(np.float32), CHIT_LAYERS, grid)
    xs, ys = [], []
    for image, label in pairs:
        with rasterio.open(image) as src:
            xs.append(src.read(out_dtype="float32"))
        with rasterio.open(label) as src:
            lab = src.read(1)
        ys.append(np.select([lab == 2, lab == 1], [1, 0], 255).astype(np.uint8))
    ens = _write_ensemble(root / "ensemble", CHIT_LAYERS, np.stack(xs), np.stack(ys), steps=6)
    return {"root": root, "stack": stack, "ensemble": ens}


def _run(*args: str | Path) -> object:
    return CliRunner().invoke(main, ["predict", *map(str, args)])


def _read(path: Path) -> tuple[np.ndarray, rasterio.DatasetReader]:
    with rasterio.open(path) as src:
        return src.read(1), src


def _check_outputs(out: Path, stack: Path) -> dict:
    with rasterio.open(stack) as s:
        crs, transform, shape = s.crs, s.transform, (s.height, s.width)
        first = s.read(1)
    for name in ("probability.tif", "mask.tif", "disagreement.tif"):
        with rasterio.open(out / name) as src:
            assert src.crs == crs and src.transform == transform, name
            assert (src.height, src.width) == shape
            assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG", name
    prob, _ = _read(out / "probability.tif")
    mask, _ = _read(out / "mask.tif")
    std, _ = _read(out / "disagreement.tif")
    assert np.array_equal(np.isnan(prob), np.isnan(first))  # NaN exactly where no data
    assert set(np.unique(mask)) <= {0, 1, 255}
    assert np.array_equal(mask == 255, np.isnan(prob))
    valid = ~np.isnan(prob)
    assert ((prob[valid] >= 0) & (prob[valid] <= 1)).all() and (std[valid] >= 0).all()
    assert (out / "quicklook.png").stat().st_size > 0
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [MARKER_FILE]
    return json.loads((out / "run.json").read_text())


def _polygons_match_mask(out: Path, min_area: float) -> gpd.GeoDataFrame:
    mask, _ = _read(out / "mask.tif")
    with rasterio.open(out / "mask.tif") as src:
        transform, shape = src.transform, (src.height, src.width)
    gdf = gpd.read_file(out / "landslides.gpkg")
    burnt = np.zeros(shape, np.uint8)
    if len(gdf):
        burnt = rasterize([(g, 1) for g in gdf.geometry], out_shape=shape, transform=transform)
        assert (gdf["area_m2"] >= min_area).all()
        assert ((gdf["mean_prob"] <= gdf["max_prob"]) & (gdf["max_prob"] <= 1)).all()
    np.testing.assert_array_equal(burnt == 1, mask == 1)
    return gdf


def test_predict_single_patch(l4s, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = _run("--stack", l4s["stack0"], "--model", l4s["ensemble"], "--out", out, "--tile", 512)
    assert res.exit_code == 0, res.output
    run = _check_outputs(out, l4s["stack0"])
    assert run["threshold"] == 0.5 and len(run["model"]["members"]) == 2
    assert run["inference"]["tiles"] == 1  # a 128 px patch runs whole
    _polygons_match_mask(out, 500.0)


def test_predict_mosaic_polygons_cover_mask(chittagong, tmp_path: Path) -> None:
    out = tmp_path / "first"
    res = _run("--stack", chittagong["stack"], "--model", chittagong["ensemble"], "--out", out,
               "--tile", 128, "--overlap", 16)  # fmt: skip
    assert res.exit_code == 0, res.output
    run = _check_outputs(out, chittagong["stack"])
    assert run["inference"]["tiles"] > 4
    # a threshold that marks about a fifth of the area, so there are polygons of many sizes
    prob, _ = _read(out / "probability.tif")
    thr = float(np.nanquantile(prob, 0.8))
    out2 = tmp_path / "second"
    args = ["--tile", 128, "--overlap", 16, "--threshold", thr, "--min-area-m2", 2000]
    res = _run("--stack", chittagong["stack"], "--model", chittagong["ensemble"], "--out", out2,
               *args)  # fmt: skip
    assert res.exit_code == 0, res.output
    run2 = _check_outputs(out2, chittagong["stack"])
    gdf = _polygons_match_mask(out2, 2000.0)
    assert len(gdf) > 0 and run2["polygons"]["removed_below_min_area"] > 0
    assert gdf.crs.to_epsg() == 4326
    # areas are true m2 even though the grid is in degrees: about 10 m x 10 m per pixel
    per_pixel = gdf["area_m2"] / gdf["pixels"]
    assert per_pixel.between(80, 105).all()
    prob2, _ = _read(out2 / "probability.tif")
    np.testing.assert_allclose(prob2, prob, equal_nan=True)  # threshold does not change probs


def test_slope_mask_removes_flat_detections(l4s, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with rasterio.open(l4s["stack1"]) as src:
        slope = src.read(L4S_LAYERS.index("slope") + 1)
    cut = float(np.median(slope))
    res = _run("--stack", l4s["stack1"], "--model", l4s["ensemble"], "--out", out,
               "--threshold", 0.01, "--min-slope", cut, "--min-area-m2", 0)  # fmt: skip
    assert res.exit_code == 0, res.output
    mask, _ = _read(out / "mask.tif")
    assert not (mask[slope < cut] == 1).any()
    run = json.loads((out / "run.json").read_text())
    assert run["masks"]["applied"] == {"slope": "slope"} and run["masks"]["pixels_removed"]["slope"]


def test_bad_inputs_are_one_line(l4s, chittagong, tmp_path: Path) -> None:
    def fails(*args, match: str) -> None:
        res = _run(*args)
        assert res.exit_code == 1, res.output
        line = res.output.strip()
        assert line.startswith("Error: ") and "\n" not in line and match in line, line

    ens, stack = l4s["ensemble"], l4s["stack0"]
    out = tmp_path / "out"
    # a stack that lacks a layer the ensemble needs
    fails("--stack", chittagong["stack"], "--model", ens, "--out", out, match="B1")
    assert not out.exists()
    # masks whose layer is missing
    fails("--stack", stack, "--model", ens, "--out", out, "--mask-water", match="landCover")
    # an existing folder lsd did not write: refused even with --overwrite, and kept
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    fails("--stack", stack, "--model", ens, "--out", out, match="not written by lsd")
    fails("--stack", stack, "--model", ens, "--out", out, "--overwrite", match="no lsd marker")
    assert (out / "keep.txt").read_text() == "mine"
    # a damaged model folder: a member's weights truncated, then missing
    bad = tmp_path / "bad_ens"
    import shutil

    shutil.copytree(ens, bad)
    weights = next((bad / "members").iterdir()) / "model.pt"
    weights.write_bytes(weights.read_bytes()[:1000])
    fails("--stack", stack, "--model", bad, "--out", tmp_path / "o2", match=str(weights))
    weights.unlink()
    fails("--stack", stack, "--model", bad, "--out", tmp_path / "o2", match="model.pt")
    (bad / "manifest.json").unlink()
    fails("--stack", stack, "--model", bad, "--out", tmp_path / "o2", match="manifest.json")
    assert not (tmp_path / "o2").exists()
    fails("--stack", tmp_path / "none.tif", "--model", ens, "--out", tmp_path / "o3",
          match="none.tif")  # fmt: skip
    fails("--stack", stack, "--model", ens, "--out", tmp_path / "o3", "--overlap", 300,
          match="--overlap")  # fmt: skip


def test_overwrite_replaces_only_a_map(l4s, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ("--stack", l4s["stack0"], "--model", l4s["ensemble"], "--out", out)
    assert _run(*args).exit_code == 0
    first = json.loads((out / "run.json").read_text())["created"]
    res = _run(*args)
    assert res.exit_code == 1 and "--overwrite" in res.output  # a map: replaceable, if asked
    (out / "old.txt").write_text("x")  # the user's: --overwrite must not delete it
    res = _run(*args, "--overwrite")
    assert res.exit_code == 1 and "holds old.txt (not written by lsd)" in res.output
    assert (out / "old.txt").read_text() == "x"
    (out / "old.txt").unlink()
    res = _run(*args, "--overwrite")
    assert res.exit_code == 0, res.output
    assert first and not list(tmp_path.glob(".out.*"))  # the old map went only once replaced
    # a symlinked --out stays a link; the folder it points to is replaced, nothing left behind
    link = tmp_path / "project" / "map"
    link.parent.mkdir()
    link.symlink_to(out)
    res = _run("--stack", l4s["stack0"], "--model", l4s["ensemble"], "--out", link, "--overwrite")
    assert res.exit_code == 0, res.output
    assert link.is_symlink() and (out / "run.json").is_file()
    assert [p.name for p in link.parent.iterdir()] == ["map"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_all_nan_stack_gives_nan_probability(l4s, tmp_path: Path) -> None:
    with rasterio.open(l4s["stack0"]) as src:
        grid = Grid(src.width, src.height, src.crs, src.transform)
    stack = tmp_path / "nan" / "stack.tif"
    write_stack(stack, np.full((14, 128, 128), np.nan, np.float32), L4S_LAYERS, grid)
    out = tmp_path / "out"
    res = _run("--stack", stack, "--model", l4s["ensemble"], "--out", out)
    assert res.exit_code == 1 and "holds no data in any layer" in res.output
    assert "--allow-empty-layers" in res.output and not out.exists()
    res = _run("--stack", stack, "--model", l4s["ensemble"], "--out", out, "--allow-empty-layers")
    assert res.exit_code == 0, res.output
    prob, _ = _read(out / "probability.tif")
    mask, _ = _read(out / "mask.tif")
    assert np.isnan(prob).all() and (mask == 255).all()
    assert len(gpd.read_file(out / "landslides.gpkg")) == 0


# --------------------------------------------------------------------------- AOI + date


def _aoi_file(path: Path, geoms, crs) -> Path:
    gpd.GeoDataFrame({"name": ["a"] * len(geoms)}, geometry=geoms, crs=crs).to_file(path)
    return path


def test_aoi_spec_reprojects_and_checks(tmp_path: Path) -> None:
    date = dt.date(2023, 8, 10)
    # an AOI drawn in UTM 46N around Chittagong: reprojected, not refused
    utm = _aoi_file(tmp_path / "utm.gpkg", [box(376000, 2477000, 379000, 2480000)], 32646)
    spec = aoi_spec(utm, date)
    assert spec.utm_epsg == 32646 and spec.pre.end == date == spec.post.start
    assert abs(spec.extra["aoi_km2"] - 9.0) < 0.05
    assert 91 < spec.aoi.centroid.x < 93 and 22 < spec.aoi.centroid.y < 23
    with pytest.raises(UserError, match="too large for a direct download.*tiles"):
        big = box(376000, 2477000, 386000, 2487000 + DIRECT_DOWNLOAD_MAX_KM2 * 100)
        aoi_spec(_aoi_file(tmp_path / "big.gpkg", [big], 32646), date)
    with pytest.raises(UserError, match="contains no polygon"):
        aoi_spec(_aoi_file(tmp_path / "pt.gpkg", [Point(91.8, 22.4)], 4326), date)
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="not a readable vector file"):
        aoi_spec(bad, date)
    with pytest.raises(UserError, match="in the future"):
        parse_date("2999-01-01")
    with pytest.raises(UserError, match="YYYY-MM-DD"):
        parse_date("10/08/2023")


def test_aoi_without_credentials_says_how(l4s, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("LSD_EE_SERVICE_ACCOUNT", "GOOGLE_APPLICATION_CREDENTIALS", "EE_SERVICE_ACCOUNT"):
        monkeypatch.delenv(var, raising=False)
    from lsd.gee import auth

    monkeypatch.delenv(auth.SERVICE_ACCOUNT_ENV, raising=False)
    aoi = _aoi_file(tmp_path / "a.gpkg", [box(91.80, 22.40, 91.82, 22.42)], 4326)
    # Landslide4Sense layers (B1..B12) are not among the layers lsd fetch makes: said first
    res = _run("--aoi", aoi, "--date", "2023-08-10", "--model", l4s["ensemble"], "--out",
               tmp_path / "o")  # fmt: skip
    assert res.exit_code == 1 and "B1, B2" in res.output and "existing stack" in res.output, (
        res.output
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 2, 64, 64)).astype(np.float32)
    paper = _write_ensemble(tmp_path / "paper_ens", ["dNDVI", "slope"], x,
                            np.zeros((2, 64, 64), np.uint8), steps=0)  # fmt: skip
    res = _run("--aoi", aoi, "--date", "2023-08-10", "--model", paper, "--out", tmp_path / "o")
    assert res.exit_code == 1 and "earthengine authenticate" in res.output, res.output
    assert not (tmp_path / "o").exists()
    res = _run("--aoi", aoi, "--date", "2999-08-10", "--model", l4s["ensemble"], "--out",
               tmp_path / "o")  # fmt: skip
    assert res.exit_code == 1 and "future" in res.output
    res = _run("--stack", l4s["stack0"], "--aoi", aoi, "--model", l4s["ensemble"], "--out",
               tmp_path / "o")  # fmt: skip
    assert res.exit_code == 1 and "either --stack" in res.output


def test_water_and_snow_masks_use_landcover(l4s, tmp_path: Path) -> None:
    with rasterio.open(l4s["stack0"]) as src:
        data = src.read(out_dtype="float32")
        grid = Grid(src.width, src.height, src.crs, src.transform)
    landcover = np.full((1, 128, 128), 2.0, np.float32)
    landcover[0, :, :40] = 5  # water
    landcover[0, :20, 60:] = 8  # snow
    stack = tmp_path / "lc" / "stack.tif"
    write_stack(stack, np.concatenate([data, landcover]), [*L4S_LAYERS, "landCover"], grid)
    out = tmp_path / "out"
    res = _run("--stack", stack, "--model", l4s["ensemble"], "--out", out, "--threshold", 0.01,
               "--mask-water", "--mask-snow", "--min-area-m2", 0)  # fmt: skip
    assert res.exit_code == 0, res.output
    mask, _ = _read(out / "mask.tif")
    prob, _ = _read(out / "probability.tif")
    assert not (mask[landcover[0] == 5] == 1).any() and not (mask[landcover[0] == 8] == 1).any()
    rest = (landcover[0] == 2) & (prob >= 0.01)
    assert rest.any() and (mask[rest] == 1).all()
    run = json.loads((out / "run.json").read_text())
    assert run["masks"]["applied"] == {"water": "landCover", "snow": "landCover"}
    assert run["masks"]["pixels_removed"]["water"] > 0


def test_mask_plan_prefers_own_layers() -> None:
    from lsd.pipeline.masks import MaskOptions, plan_masks

    opts = MaskOptions(water=True, snow=True, min_slope=10)
    assert plan_masks(opts, ("water", "snow", "landCover", "slope")) == {
        "water": "water", "snow": "snow", "slope": "slope"}  # fmt: skip
    with pytest.raises(UserError, match="'slope' layer"):
        plan_masks(MaskOptions(min_slope=5), ("landCover",))
    with pytest.raises(UserError, match="snow mask.*'snow'.*'landCover'"):
        plan_masks(MaskOptions(snow=True), ("R", "G"))


def test_members_in_groups_match_one_pass(chittagong, tmp_path: Path, monkeypatch) -> None:
    """A CPU run whose members do not fit the weight budget loads them one group at a time and
    keeps sums on disk between passes; the maps must equal those of a single pass."""
    import lsd.pipeline.predict as predict_mod

    args = ["--model", chittagong["ensemble"], "--tile", 128, "--overlap", 16, "--device", "cpu"]
    one = tmp_path / "one"
    assert _run("--stack", chittagong["stack"], "--out", one, *args).exit_code == 0
    monkeypatch.setattr(predict_mod, "MEMBER_BUDGET_BYTES", 1)  # every member its own group
    grouped = tmp_path / "grouped"
    res = _run("--stack", chittagong["stack"], "--out", grouped, *args)
    assert res.exit_code == 0, res.output
    run = json.loads((grouped / "run.json").read_text())
    assert run["inference"]["member_groups"] == [[0], [1]]
    assert json.loads((one / "run.json").read_text())["inference"]["member_groups"] == [[0, 1]]
    for name in ("probability.tif", "disagreement.tif"):
        a, _ = _read(one / name)
        b, _ = _read(grouped / name)
        np.testing.assert_allclose(b, a, atol=2e-6, equal_nan=True)
    assert (_read(one / "mask.tif")[0] == _read(grouped / "mask.tif")[0]).all()
    assert sorted(p.name for p in grouped.iterdir()) == sorted(p.name for p in one.iterdir())
