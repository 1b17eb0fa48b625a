"""The STAC source against the real catalogs (network; run with: pytest -m live).

Fetches one small event (1 km2 at the paper's Norway test event's area) from the Planetary
Computer and checks that the stack has the paper's layers, real values and the catalog's item
ids. The RTC assets need a Planetary Computer account (PC_SDK_SUBSCRIPTION_KEY).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from lsd.pipeline.cli import main

pytestmark = pytest.mark.live


@pytest.mark.parametrize("catalog", ["planetary-computer", "earth-search"])
def test_one_event_from_the_real_catalog(tmp_path, catalog) -> None:
    csv = tmp_path / "events.csv"
    csv.write_text("id,date,lon,lat,layers\nlive,2023-08-10,10.65,61.30,paper\n")
    result = CliRunner().invoke(main, [
        "fetch", "--source", "stac", "--catalog", catalog, "--event", str(csv),
        "--out", str(tmp_path / "data"), "--aoi-km2", "1",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    rec = json.loads((tmp_path / "data" / "live" / "event.json").read_text())
    assert rec["source"]["kind"] == "stac" and rec["source"]["items"]["dNDVI"]
    with rasterio.open(tmp_path / "data" / "live" / "stack.tif") as src:
        elevation = src.read(src.descriptions.index("elevation") + 1)
    assert np.isfinite(elevation).mean() > 0.99 and 0 < np.nanmean(elevation) < 2500
