"""Settings of the STAC source.

The settings it shares with the Earth Engine source (snow buffer, cloud opening, CART points,
seed ...) have the same names and defaults as lsd.gee.config.FetchConfig, so one `[fetch]`
table configures both (the command passes its values in through `from_values`); the settings
only a STAC fetch has (timeouts, window size, the files behind kgClimate and canopyHeight) live
in a `[stac]` table of the same file.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lsd.errors import InvalidFile
from lsd.files import check_setting

# Sentinel-1 IW swath: incidence on the ellipsoid from its near to its far edge (ESA).
IW_NEAR_DEG = 29.1
IW_FAR_DEG = 46.0


@dataclass(frozen=True)
class StacConfig:
    """How the STAC source builds the layers; one instance serves every event of a fetch."""

    scale: float = 10.0
    aoi_km2: float = 4.0
    # Sentinel-2 masks (seed: the dataset author's script, with SCL in place of s2cloudless)
    cloud_open_px: int = 3
    cloud_grow_px: int = 16
    cloud_morph_scale_m: float = 20.0
    shadow_search_px: int = 50
    shadow_search_scale_m: float = 100.0
    snow_mode: Literal["grow", "erode"] = "grow"
    snow_buffer_m: float = 300.0
    # Sentinel-1
    mask_distortions: bool = True
    incidence_near_deg: float = IW_NEAR_DEG
    incidence_far_deg: float = IW_FAR_DEG
    # DEM
    dem_resample: Literal["bilinear", "cubic", "nearest"] = "bilinear"
    # CART
    cart_points_per_class: int = 100
    cart_holdout: float = 0.3
    cart_buffer_m: float = 2_000.0
    cart_max_nodes: int | None = None
    # CART's S2 image: the pre-event scene that shows most of the CART region clear (clouds and
    # shadows masked, snow kept), its gaps from the next clearest, this many scenes in all
    # (1 = that one image alone, as the paper); the Earth Engine setting of the same name
    cart_s2_scenes: int = 3
    bare_rock_ndvi: float = 0.1
    seed: int = 0
    # auxiliary layers: a local file or an http(s) URL (downloaded once with pooch, cached);
    # None = the layer is NaN, with one warning naming it
    kg_climate_file: str | None = None
    kg_climate_sha256: str | None = None
    canopy_height_file: str | None = None
    canopy_height_sha256: str | None = None
    cache_dir: str | None = None  # pooch cache; default: the OS cache folder of lsd
    # service and reading
    timeout_s: float = 30.0  # a catalog or asset server silent this long fails the event
    window_px: int = 512  # the stack is computed window by window (bounded memory)
    threads: int = 4  # concurrent asset reads per window

    @classmethod
    def from_values(cls, values: dict[str, Any], **overrides: Any) -> StacConfig:
        """The fields of `values` this config knows (e.g. a FetchConfig as a dict), others
        ignored, then `overrides` (None values skipped)."""
        names = {f.name for f in dataclasses.fields(cls)}
        picked = {k: v for k, v in values.items() if k in names}
        picked.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**picked)

    @classmethod
    def from_toml(cls, path: Path | str, base: StacConfig | None = None) -> StacConfig:
        """`base` with the `[stac]` table of a TOML file applied (absent table: `base`)."""

        path = Path(path)
        try:
            doc = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise InvalidFile(f"{path}: not a readable TOML settings file ({exc})") from None
        table = doc.get("stac") or {}
        base = base or cls()
        hints = typing.get_type_hints(cls)
        fields = {f.name for f in dataclasses.fields(cls)}
        checked: dict[str, Any] = {}
        for key, value in table.items():
            if key not in fields:
                raise InvalidFile(
                    f"{path}: unknown stac setting '{key}'; known: {', '.join(sorted(fields))}"
                )
            checked[key] = check_setting(key, value, hints[key], str(path), table="stac")
        return dataclasses.replace(base, **checked)
