"""Generated stand-ins for the tile datasets in ../shared/data, for the import and predict tests.

`write_chips`: Chittagong-like Sentinel-2 chips (GeoTIFF image/label pairs in degrees, with a
map.txt pairing them); `write_pngs`: Bijie-like PNG pairs (RGB images, RGB masks of 0/255).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio
import rasterio.errors

# Chips as the Chittagong Sentinel-2 set has them (../shared/data/chittagong-s2-chips): 256 px,
# EPSG:4326 at 22.5 N with 8.98e-5 degree pixels (about 9.2 m x 10 m), overlapping by half,
# raw R, G, B, NIR values in the thousands, sparse labels (0 unlabelled, 1 not, 2 landslide).
CHIP, STEP, DEG = 256, 128, 8.983152841196085e-05
CHIP_SPOTS = [(r, c) for r in range(2) for c in range(4)][:7]  # no chip at the bottom right


def write_chips(root: Path, seed: int = 0) -> list[tuple[Path, Path]]:
    """Seven overlapping chips cut from one generated scene, so the mosaic has a gap of no
    data where the eighth would be; (image, label) GeoTIFF pairs."""
    rng = np.random.default_rng(seed)
    rows, cols = CHIP + STEP, CHIP + 3 * STEP
    yy, xx = np.mgrid[0:rows, 0:cols]
    scars = np.zeros((rows, cols), bool)
    for _ in range(14):
        cy, cx, ry, rx = (
            rng.uniform(10, rows - 10),
            rng.uniform(10, cols - 10),
            *rng.uniform(4, 14, 2),
        )
        scars |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    level = np.array([260.0, 345.0, 235.0, 1520.0])[:, None, None]
    texture = rng.normal(0, 1, (4, rows, cols)).cumsum(axis=2) * 3
    scene = level * (1 + 0.2 * np.sin(xx / 40 + yy / 70)) + texture
    scene[:, scars] += np.array([500.0, 450.0, 400.0, -700.0])[:, None]
    scene = np.clip(scene, 1, 5700).astype(np.float32)
    labelled = rng.random((rows, cols)) < 0.3  # sparse, as the hand-made labels are
    label = np.where(labelled, np.where(scars, 2, 1), 0).astype(np.uint8)
    label[scars & (rng.random((rows, cols)) < 0.7)] = 2  # most scar pixels are labelled
    pairs = []
    for r, c in CHIP_SPOTS:
        window = (slice(r * STEP, r * STEP + CHIP), slice(c * STEP, c * STEP + CHIP))
        transform = rasterio.Affine(DEG, 0, 91.7574 + c * STEP * DEG, 0, -DEG,
                                    22.4925 - r * STEP * DEG)  # fmt: skip
        profile = {"driver": "GTiff", "width": CHIP, "height": CHIP, "crs": "EPSG:4326",
                   "transform": transform}  # fmt: skip
        image, lab = root / "images" / f"chip_{r}_{c}.tif", root / "labels" / f"chip_{r}_{c}.tif"
        for path, data in ((image, scene[(slice(None), *window)]), (lab, label[window][None])):
            path.parent.mkdir(parents=True, exist_ok=True)
            with rasterio.open(path, "w", count=data.shape[0], dtype=data.dtype, **profile) as dst:
                dst.write(data)
        pairs.append((image, lab))
    (root / "map.txt").write_text(
        "".join(f"{i.relative_to(root)} {lab.relative_to(root)}\n" for i, lab in pairs)
    )
    return pairs


def write_pngs(root: Path, stems: tuple[str, ...] = ("10009", "10013"), size: int = 96) -> Path:
    """root/images/<stem>.png (RGB uint8) and root/masks/<stem>.png (RGB, 0 or 255 in any
    channel), as the Bijie sample has them; no georeferencing."""
    rng = np.random.default_rng(3)
    for stem in stems:
        image = rng.integers(0, 256, (3, size, size), dtype=np.uint8)
        mask = np.zeros((3, size, size), np.uint8)
        mask[0, 20:50, 30:60] = 255  # a landslide marked in the red channel only
        mask[:, 60:70, 10:20] = 255
        for folder, data in (("images", image), ("masks", mask)):
            path = root / folder / f"{stem}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():  # a PNG has no georeferencing, as Bijie's have none
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                with rasterio.open(path, "w", driver="PNG", width=size, height=size, count=3,
                                   dtype="uint8") as dst:  # fmt: skip
                    dst.write(data)
    return root
