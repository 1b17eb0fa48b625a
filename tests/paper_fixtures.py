"""The paper's published formats, written by the real writers, on small generated data.

`write_paper_dataset` lays out global_dataset/{train_val,test}/{input,label}/ exactly as
Zenodo 13471162 describes it: inputs H x W x 15 float32 written by tifffile as one page of
pixel-interleaved samples (what the paper's reader, `TiffFile(f).pages[0].asarray()`, expects),
or, georeferenced, by rasterio as a GeoTIFF on the event's UTM grid; labels H x W uint8 0/1.
The pixels carry a learnable signal (dNDVI drops and VV changes where the label is 1), so a
model trained on them for a minute finds something.

Benchmarks and the reproduction script use the same writer, so the chain they time is the one
the tests check.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from lsd.pipeline.paper.facts import EVENTS_BY_NUMBER, PAPER_EVENTS, PAPER_TEST_EVENT

TRAIN_VAL = [e.number for e in PAPER_EVENTS if e.number != PAPER_TEST_EVENT]


def event_arrays(number: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 15) float32 input and (H, W) uint8 label for one event, seeded by its number."""
    rng = np.random.default_rng(1000 + number)
    yy, xx = np.mgrid[0:height, 0:width]
    label = np.zeros((height, width), np.uint8)
    for _ in range(int(rng.integers(2, 5))):
        cy, cx = rng.integers(8, height - 8), rng.integers(8, width - 8)
        ry, rx = rng.integers(3, max(4, height // 10)), rng.integers(2, max(3, width // 14))
        label[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = 1
    slide = label.astype(np.float32)
    noise = rng.normal(0, 1, (height, width, 15)).astype(np.float32)
    x = np.empty((height, width, 15), np.float32)
    x[..., 0] = -12 + 1.5 * noise[..., 0]  # preVV (dB)
    x[..., 1] = -12 + 1.5 * noise[..., 1] + 4 * slide  # postVV
    x[..., 2] = x[..., 1] - x[..., 0]  # dVV
    x[..., 3] = -19 + 1.5 * noise[..., 3]
    x[..., 4] = -19 + 1.5 * noise[..., 4] + 3 * slide
    x[..., 5] = x[..., 4] - x[..., 3]
    x[..., 6] = (noise[..., 6] > 2.0).astype(np.float32)  # layover
    x[..., 7] = (noise[..., 7] > 2.2).astype(np.float32)  # shadow
    x[..., 8] = 35 + 8 * noise[..., 8]  # liaDeg
    x[..., 9] = 400 + 50 * yy / height + noise[..., 9]  # elevation
    x[..., 10] = 20 + 5 * noise[..., 10] + 8 * slide  # slope
    x[..., 11] = float(number % 5 + 1)  # kgClimate
    x[..., 12] = np.clip(12 + 4 * noise[..., 12] - 10 * slide, 0, None)  # canopyHeight
    x[..., 13] = np.where(slide > 0, 4.0, 2.0)  # landCover
    x[..., 14] = -0.05 + 0.05 * noise[..., 14] - 0.35 * slide  # dNDVI
    x[: max(1, height // 16), : max(1, width // 16), 14] = np.nan  # cloud: no dNDVI there
    return x, label


def _utm(number: int, height: int, width: int):
    from pyproj import CRS, Transformer
    from rasterio.transform import from_origin

    event = EVENTS_BY_NUMBER[number]
    zone = int((event.lon + 180) // 6) + 1
    epsg = (32600 if event.lat >= 0 else 32700) + zone
    x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(event.lon, event.lat)
    left, top = round(x / 10) * 10 - width * 5, round(y / 10) * 10 + height * 5
    return CRS.from_epsg(epsg), from_origin(left, top, 10, 10)


def write_input(path: Path, data: np.ndarray, *, georef: int | None = None) -> None:
    """HWC float32: tifffile one-page pixel-interleaved, or a rasterio GeoTIFF (event number)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if georef is None:
        import tifffile

        tifffile.imwrite(path, data, planarconfig="contig", photometric="minisblack")
        return
    import rasterio

    h, w, c = data.shape
    crs, transform = _utm(georef, h, w)
    with rasterio.open(
        path, "w", driver="GTiff", width=w, height=h, count=c, dtype="float32", crs=crs,
        transform=transform, interleave="pixel", compress="lzw",
    ) as dst:  # fmt: skip
        dst.write(np.moveaxis(data, 2, 0))


def write_label(path: Path, label: np.ndarray, *, georef: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if georef is None:
        import tifffile

        tifffile.imwrite(path, label)
        return
    import rasterio

    h, w = label.shape
    crs, transform = _utm(georef, h, w)
    with rasterio.open(
        path, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8", crs=crs,
        transform=transform,
    ) as dst:  # fmt: skip
        dst.write(label, 1)


def write_paper_dataset(
    root: Path,
    *,
    size: tuple[int, int] = (64, 64),
    georef: bool = False,
    train_val: list[int] | None = None,
    name: str = "{n}_{kind}.tif",
) -> Path:
    """root/global_dataset/{train_val,test}/{input,label}/; returns root/global_dataset."""
    ds = root / "global_dataset"
    parts = {"train_val": TRAIN_VAL if train_val is None else train_val, "test": [5]}
    for part, numbers in parts.items():
        for i, n in enumerate(numbers):
            h, w = size[0] + 8 * (i % 3), size[1] + 8 * (i % 2)  # sizes differ between events
            x, y = event_arrays(n, h, w)
            geo = n if georef else None
            write_input(ds / part / "input" / name.format(n=n, kind="input"), x, georef=geo)
            write_label(ds / part / "label" / name.format(n=n, kind="label"), y, georef=geo)
    return ds


def zip_folder(folder: Path, archive: Path) -> Path:
    """A zip of `folder` with the folder itself as the top entry, as Zenodo's archives hold."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(folder.parent).as_posix())
    return archive
