"""Live Earth Engine: fetch one small real event and check the file contract (pytest -m live).

Needs the user's credentials (LSD_EE_SERVICE_ACCOUNT or `earthengine authenticate`) and a
project (EE_PROJECT or GOOGLE_CLOUD_PROJECT, unless the key names one); skipped otherwise.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lsd.events import read_event
from lsd.gee.auth import credentials_available
from lsd.gee.config import FetchConfig
from lsd.layers import PAPER_LAYERS
from lsd.pipeline.fetch import fetch_events
from lsd.rasters import read_label, read_stack

pytestmark = pytest.mark.live
REPO = Path(__file__).resolve().parents[1]
# three invented polygons near the Norway event: a fixture for the pipeline, not a survey
INVENTED_INVENTORY = REPO / "tests" / "data" / "invented_inventory_norway.geojson"


@pytest.fixture(scope="module")
def live_ee():
    if not credentials_available():
        pytest.skip(
            "no Earth Engine credentials: set LSD_EE_SERVICE_ACCOUNT or run `earthengine "
            "authenticate` (and set EE_PROJECT) to run the live suite"
        )
    import ee

    from lsd.gee import auth

    ee.Reset()
    auth.initialize(None)
    return ee


def test_fetch_small_norway_event(live_ee, tmp_path: Path) -> None:
    shutil.copy(
        REPO / "tests" / "data" / "invented_inventory_norway.geojson", tmp_path / "inv.geojson"
    )
    csv = tmp_path / "events.csv"
    csv.write_text(
        "id,date,lon,lat,role,inventory\n05-norway,2019-07-30,6.11699,61.51734,test,inv.geojson\n"
    )
    out = tmp_path / "data"
    summary = fetch_events(csv, out, cfg=FetchConfig(aoi_km2=0.25), show_progress=False)
    assert summary.failed == {} and summary.done == ["05-norway"]
    ev = read_event(out / "05-norway")
    assert ev.layers == PAPER_LAYERS and ev.grid.crs.to_epsg() == 32632
    assert (ev.grid.width, ev.grid.height) == (50, 50) and ev.grid.transform.a == 10.0
    data, _, _ = read_stack(ev.stack)
    assert data.dtype == np.float32
    assert np.isfinite(data[PAPER_LAYERS.index("elevation")]).all()
    elevation = data[PAPER_LAYERS.index("elevation")]
    assert 0 < np.nanmedian(elevation) < 2500  # a Norwegian fjord-side slope
    label, _ = read_label(ev.label)
    assert (label == 1).sum() > 0 and set(np.unique(label)) <= {0, 1}
    meta = json.loads((out / "05-norway" / "event.json").read_text())
    source = meta["source"]
    assert source["image_counts"]["s1_post"] > 0 and source["image_counts"]["s2_post"] > 0
    assert "provenance" in source and meta["grid"]["crs"] == "EPSG:32632"
    # issue 9 conventions, checked on real pixels
    assert source["s1_passes"] in (["DESCENDING"], ["ASCENDING"]) and source["s2_level"] == "L2A"
    look = source["provenance"]["s1_look_direction_deg"]
    assert all(0 <= v < 360 for v in look.values())
    layover, shadow = (data[PAPER_LAYERS.index(n)] for n in ("layover", "shadow"))
    assert set(np.unique(layover[np.isfinite(layover)])) <= {0.0, 1.0}
    distorted = (layover == 1) | (shadow == 1)
    assert np.isnan(data[PAPER_LAYERS.index("preVV")][distorted]).all()
    canopy = data[PAPER_LAYERS.index("canopyHeight")]
    assert np.nanmax(canopy, initial=0) <= 60  # the product's 101-103 codes are NaN


def test_dry_run_graphs_and_asset_check(live_ee, tmp_path: Path) -> None:
    csv = tmp_path / "events.csv"
    csv.write_text(
        "id,date,lon,lat,dem\n"
        "05-norway,2019-07-30,6.11699,61.51734,\n"
        "bad-dem,2019-07-30,6.11699,61.51734,users/lsd-does-not-exist/no_such_dem\n"
    )
    summary = fetch_events(csv, tmp_path / "d", dry_run=True, graphs=tmp_path / "g",
                           cfg=FetchConfig(aoi_km2=0.25), show_progress=False)  # fmt: skip
    assert [p for p in summary.problems if p.startswith("event bad-dem: asset ")]
    assert not [p for p in summary.problems if p.startswith("event 05-norway")]
    doc = json.loads((tmp_path / "g" / "05-norway" / "stack.json").read_text())
    assert doc["constants_known"] and not doc["resolved"]["assumed"]
