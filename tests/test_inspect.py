"""`lsd inspect`: statistics of real GeoTIFF stacks, read block by block, side by side."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin

from lsd.errors import InputNotFound
from lsd.layers import PAPER_LAYERS
from lsd.pipeline.cli import main
from lsd.pipeline.layer_stats import comparison_lines, stack_stats
from lsd.rasters import Grid, write_stack

GRID = Grid(width=300, height=260, crs=rasterio.crs.CRS.from_epsg(32632),
            transform=from_origin(345650.0, 6824810.0, 10.0, 10.0))  # fmt: skip


def fetched_like(seed: int) -> np.ndarray:
    """A 15-layer stack with the value kinds of a fetch: dB with NaN, flags, classes, m."""
    rng = np.random.default_rng(seed)
    data = rng.normal(-12.0, 3.0, (15, GRID.height, GRID.width)).astype(np.float32)
    data[6] = (rng.random((GRID.height, GRID.width)) < 0.05).astype(np.float32)  # layover
    data[7] = 0.0  # shadow
    data[0][data[6] == 1] = np.nan  # preVV NoData where layover
    data[13] = rng.integers(1, 9, (GRID.height, GRID.width)).astype(np.float32)  # landCover
    data[11] = np.nan  # kgClimate not configured
    data[9] = np.linspace(100.0, 900.0, GRID.width, dtype=np.float32)[None, :]  # elevation
    return data


def test_stats_of_a_fetched_stack(tmp_path: Path) -> None:
    data = fetched_like(0)
    write_stack(tmp_path / "a.tif", data, PAPER_LAYERS, GRID)
    stats = stack_stats(tmp_path / "a.tif")
    assert list(stats.layers) == list(PAPER_LAYERS) and not stats.names_assumed
    lay = stats.layers["layover"]
    assert lay.pixels == GRID.width * GRID.height and lay.valid_share == 1.0
    assert set(lay.values) == {0.0, 1.0}
    assert lay.values[1.0] == int(data[6].sum())
    vv = stats.layers["preVV"]
    assert vv.valid_share == pytest.approx(1 - data[6].mean())
    assert vv.mean == pytest.approx(float(np.nanmean(data[0])), rel=1e-6)
    assert (vv.low, vv.high) == (float(np.nanmin(data[0])), float(np.nanmax(data[0])))
    assert vv.values is None  # continuous
    assert stats.layers["kgClimate"].valid == 0
    assert sorted(stats.layers["landCover"].values) == list(range(1, 9))
    assert stats.layers["elevation"].low == 100.0 and stats.layers["elevation"].high == 900.0


def test_side_by_side_with_an_unnamed_paper_stack(tmp_path: Path) -> None:
    ours = tmp_path / "ev" / "stack.tif"
    ours.parent.mkdir()
    write_stack(ours, fetched_like(1), PAPER_LAYERS, GRID)
    paper = tmp_path / "paper.tif"  # as published: 15 bands, no band names
    profile = dict(driver="GTiff", width=GRID.width, height=GRID.height, count=15,
                   dtype="float32", crs=GRID.crs, transform=GRID.transform)  # fmt: skip
    published = fetched_like(2)
    published[6] = 1 - published[6]  # the other polarity: what inspect is for
    with rasterio.open(paper, "w", **profile) as dst:
        dst.write(published)
    result = CliRunner().invoke(
        main, ["inspect", str(tmp_path / "ev"), str(paper), "--json", str(tmp_path / "s.json")]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "(names assumed: paper order)" in lines[0] and str(ours) in lines[0]
    layover = next(ln for ln in lines if ln.startswith("layover"))
    ours_cell, paper_cell = [c.strip() for c in layover.split("|")[1:]]
    assert ours_cell.startswith("100.0% 0:9") and paper_cell.startswith("100.0% 1:9")
    kg = next(ln for ln in lines if ln.startswith("kgClimate"))
    assert kg.count("0.0% no data") == 2
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["format"] == "lsd-inspect/1" and len(doc["stacks"]) == 2
    assert doc["stacks"][1]["names_assumed"] is True
    assert set(doc["stacks"][0]["layers"]["shadow"]["values"]) == {"0"}


def test_bad_stack_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputNotFound, match="stack not found"):
        stack_stats(tmp_path / "nope.tif")
    (tmp_path / "junk.tif").write_text("not a tiff")
    result = CliRunner().invoke(main, ["inspect", str(tmp_path / "junk.tif")])
    assert result.exit_code != 0
    assert "junk.tif: not a readable GeoTIFF (not recognized" in result.output
    assert "Traceback" not in result.output
    assert comparison_lines([])[-1].startswith("cells:")
