"""Small generated inputs for the size, bad-input and polygon tests: Landslide4Sense-like HDF5
pairs, stacks, sparse GeoTIFFs that claim what they do not store, and a tiny real bundle."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import rasterio
import torch

from lsd.bundles import BundleMeta
from lsd.training.bundle import save_bundle
from lsd.training.models import build_model


def write_h5_pair(folder: Path, n: int, img, mask) -> None:
    """image_N.h5 / mask_N.h5; a (shape, dtype) pair declares a dataset that is never written."""
    for sub, key, value in (("img", "img", img), ("mask", "mask", mask)):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        name = f"image_{n}.h5" if sub == "img" else f"mask_{n}.h5"
        with h5py.File(folder / sub / name, "w") as f:
            if isinstance(value, tuple):
                f.create_dataset(key, shape=value[0], dtype=value[1], chunks=True)
            else:
                f.create_dataset(key, data=value)


def sparse_stack(path: Path, size: int, names: list[str]) -> None:
    """A GeoTIFF whose header claims size x size pixels, with no tile stored."""
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=len(names),
                       dtype="float32", crs="EPSG:32633", tiled=True, blockxsize=512,
                       blockysize=512, BIGTIFF="YES", SPARSE_OK="TRUE",
                       transform=rasterio.Affine(10, 0, 5e5, 0, -10, 5e6)) as dst:  # fmt: skip
        for i, name in enumerate(names, 1):
            dst.set_band_description(i, name)


def tiny_model(folder: Path) -> Path:
    """A real bundle reading layers B2 and B3 (random weights: what it maps does not matter)."""
    torch.manual_seed(0)
    meta = BundleMeta("Unet", "resnet18", "BCE", 1e-3, ["B2", "B3"], [0.0, 0.0], [1.0, 1.0])
    save_bundle(folder / "model", build_model("Unet", 2, "resnet18"), meta)
    return folder / "model"


def write_stack(path: Path, data: np.ndarray, dtype: str = "float32") -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=dtype, crs="EPSG:32633",
                       transform=rasterio.Affine(10, 0, 5e5, 0, -10, 5e6)) as dst:  # fmt: skip
        dst.write(data.astype(dtype))
        for i in range(data.shape[0]):
            dst.set_band_description(i + 1, ["B2", "B3"][i])
    return path
