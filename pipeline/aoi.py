"""`lsd predict --aoi --date`: the area and date of a new event, and its stack fetched for a model.

The area gets the same UTM zone and date windows as an events.csv row (lsd.spec.make_spec), so a
mapped area is given the stack a fetched training event would have had.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lsd.errors import InvalidFile, InvalidValue, ServiceUnavailable
from lsd.events import STACK_FILE
from lsd.gee import auth
from lsd.gee.source import EarthEngineSource
from lsd.layergroups import LAYER_GROUPS, is_fetchable
from lsd.limits import check_aoi_km2, check_event_date, geodesic_km2
from lsd.pipeline.sources import build_events
from lsd.sources import EventFailed
from lsd.spec import EventSpec, make_spec, normalize_aoi
from lsd.stac.catalogs import PLANETARY_COMPUTER
from lsd.stac.source import StacSource
from lsd.vectors import read_polygons
from lsd.versions import EARTH_ENGINE_STACK, require

# A direct (synchronous) Earth Engine download is limited in bytes per request; beyond this area a
# 15-layer float32 stack at 10 m is better fetched with a batch export or AOI tiles.
DIRECT_DOWNLOAD_MAX_KM2 = 100.0


def parse_date(text: str, *, today: dt.date | None = None) -> dt.date:
    try:
        date = dt.date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidValue(f"'{text}' is not a date in YYYY-MM-DD form", field="date") from None
    check_event_date(date, today=today, field="date")
    return date


def aoi_spec(
    aoi_path: Path | str, date: dt.date, max_km2: float = DIRECT_DOWNLOAD_MAX_KM2
) -> EventSpec:
    """An EventSpec for the AOI file: in EPSG:4326 (reprojected from any CRS), its UTM zone, and
    the default date windows an events.csv row gets."""
    aoi_path = Path(aoi_path)
    where = f"AOI {aoi_path}"
    gdf = read_polygons(aoi_path, where=where)
    geom = normalize_aoi(gdf.geometry.union_all())  # split at 180 degrees if it crosses them
    km2 = geodesic_km2(geom)
    check_aoi_km2(km2, where, field="aoi")  # the rule lsd fetch applies too
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise InvalidFile(f"{where}: does not describe a polygon area")
    if km2 > max_km2:
        raise InvalidValue(
            f"{where}: covers {km2:.0f} km2, too large for a direct download "
            f"(max {max_km2:.0f} km2): split it into tiles of at most {max_km2:.0f} km2, "
            "or fetch it with a batch export (lsd fetch) and map the stack",
            field="aoi",
        )
    spec = make_spec(aoi_path.stem, date, geom)
    return dataclasses.replace(spec, extra={"aoi_file": str(aoi_path), "aoi_km2": round(km2, 3)})


def fetch_for_prediction(
    spec: EventSpec,
    layers: Sequence[str],
    work_dir: Path,
    project: str | None,
    *,
    source: str = "earthengine",
    catalog: str | None = None,
    cfg: Any = None,
) -> Path:
    """Fetch only the layers the model needs; the event folder is kept so a rerun skips it.
    `source` "stac" reads open STAC catalogs (`catalog`) instead of Earth Engine; `cfg` is the
    FetchConfig of an Earth Engine fetch (the one that matches the model's conventions)."""

    if source == "stac":
        stac = StacSource([spec], catalog=catalog or PLANETARY_COMPUTER, layers=tuple(layers),
                          write_label=False)  # fmt: skip
        summary = build_events(stac, work_dir, need_label=False, progress=False)
        if summary.failed:
            raise EventFailed(next(iter(summary.failed.values())))
        return work_dir / spec.event_id / STACK_FILE

    require(*EARTH_ENGINE_STACK)  # before the imports below load ee

    unfetchable = [name for name in layers if not is_fetchable(name)]
    if unfetchable:
        raise InvalidValue(
            f"the model needs layer(s) {', '.join(unfetchable)} that Earth Engine fetching does "
            f"not make (it makes the groups {', '.join(LAYER_GROUPS)}); map an existing stack "
            "instead",
            field="aoi",
        )
    if not auth.credentials_available():
        raise ServiceUnavailable(auth.HOW_TO)
    auth.initialize(project)
    kw = {"cfg": cfg} if cfg is not None else {}
    source = EarthEngineSource([spec], layers=tuple(layers), write_label=False, **kw)
    summary = build_events(source, work_dir, need_label=False, progress=False)
    if summary.failed:
        raise EventFailed(next(iter(summary.failed.values())))
    return work_dir / spec.event_id / STACK_FILE
