"""kgClimate and canopyHeight: layers no STAC catalog offers.

The paper's Koeppen-Geiger map (Rubel et al. 2017) and the GEDI/Landsat canopy height map
(Potapov et al. 2021) are published as files, not STAC items. A setting (`kg_climate_file`,
`canopy_height_file` in the `[stac]` table) names a local GeoTIFF or an http(s) URL; a URL is
downloaded once with pooch (hash-checked when `*_sha256` is given) into the cache and reused by
every later fetch. Without a setting the layer is NaN and the fetch warns once, naming it.
Canopy-height codes above 60 (101 water, 102 snow/ice, 103 no data) become NaN, as in the Earth
Engine path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pooch
import requests

from lsd.errors import InputNotFound, ServiceUnavailable
from lsd.stac.config import StacConfig

AUX_LAYERS: dict[str, str] = {"kgClimate": "kg_climate_file", "canopyHeight": "canopy_height_file"}
CANOPY_HEIGHT_MAX_M = 60.0


def cache_folder(cfg: StacConfig) -> Path:

    return Path(cfg.cache_dir) if cfg.cache_dir else Path(pooch.os_cache("lsd")) / "stac"


def configured(layer: str, cfg: StacConfig) -> str | None:
    return getattr(cfg, AUX_LAYERS[layer])


def local_file(layer: str, cfg: StacConfig) -> Path | None:
    """The layer's map as a local path (downloaded and cached if a URL), or None if unset."""
    source = configured(layer, cfg)
    if not source:
        return None
    if not source.startswith(("http://", "https://")):
        path = Path(source).expanduser()
        if not path.is_file():
            raise InputNotFound(
                f"{path}: the {layer} map named by {AUX_LAYERS[layer]} is not there"
            )
        return path

    sha = getattr(cfg, AUX_LAYERS[layer].replace("_file", "_sha256"))
    folder = cache_folder(cfg) / layer
    try:
        name = pooch.retrieve(
            source,
            known_hash=f"sha256:{sha}" if sha else None,
            path=folder,
            downloader=pooch.HTTPDownloader(timeout=cfg.timeout_s, progressbar=False),
        )
    except (requests.exceptions.RequestException, OSError, ValueError) as exc:
        raise ServiceUnavailable(
            f"{layer}: cannot download {source} ({str(exc).splitlines()[0][:160]})"
        ) from None
    return Path(name)


def clean(layer: str, values: np.ndarray) -> np.ndarray:
    if layer == "canopyHeight":
        return np.where(values <= CANOPY_HEIGHT_MAX_M, values, np.nan).astype(np.float32)
    return values
