"""Generated Landslide4Sense patches in the benchmark's exact published form, for tests.

HDF5 files as the record and the baseline code have them: img/image_N.h5 holding the dataset
"img", float64, 128 x 128 x 14 (Sentinel-2 B1-B12 without B8A, slope, DEM, already rescaled to a
few units as the benchmark ships them), and mask/mask_N.h5 holding "mask", uint8, 128 x 128 of
0/1. Landslides are bright, unvegetated ellipses (B4 up, B8 down, steeper slope), so a model and
an NDVI threshold have something to find. Split folders (TrainData/, ValidData/, TestData/),
their zip archives (with or without the split folder at the top, as hand-made zips differ) and
the Hugging Face mirror's images/<split>/ + annotations/<split>/ layout are all built here.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from lsd import landslide4sense as l4s

SIZE = l4s.PATCH_SIZE
# a plausible level per band in the benchmark's rescaled units (B1 .. B12, slope, DEM)
LEVELS = np.array([1.2, 1.0, 1.0, 0.9, 1.1, 1.6, 1.8, 1.9, 0.6, 0.2, 1.5, 1.0, 0.4, 1.3])


def patch(rng: np.random.Generator, landslides: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(128, 128, 14) float64 image and (128, 128) uint8 mask with `landslides` ellipses."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    mask = np.zeros((SIZE, SIZE), np.uint8)
    for _ in range(landslides):
        cy, cx = rng.uniform(20, SIZE - 20, 2)
        ry, rx = rng.uniform(5, 14, 2)
        mask[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = 1
    trend = (yy + xx)[..., None] / (4 * SIZE)
    img = LEVELS * (1 + 0.15 * trend) + rng.normal(0, 0.05, (SIZE, SIZE, 14))
    scar = mask.astype(bool)
    img[scar, 3] += 0.6  # B4 (red) up on bare soil
    img[scar, 7] -= 0.9  # B8 (NIR) down without vegetation
    img[scar, 12] += 0.3  # steeper
    return np.clip(img, 0, None), mask


def write_patches(images: Path, masks: Path | None, numbers: list[int], *, seed: int = 0) -> None:
    """images/image_N.h5 (+ masks/mask_N.h5) for each N; every third patch has no landslide."""
    import h5py

    rng = np.random.default_rng(seed)
    for folder in (images, masks):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        img, mask = patch(rng, landslides=0 if n % 3 == 0 else 1 + n % 2)
        with h5py.File(images / f"image_{n}.h5", "w") as f:
            f.create_dataset(l4s.IMAGE_KEY, data=img)
        if masks is not None:
            with h5py.File(masks / f"mask_{n}.h5", "w") as f:
                f.create_dataset(l4s.MASK_KEY, data=mask)


def write_split(folder: Path, numbers: list[int], *, seed: int = 0, masks: bool = True) -> Path:
    """folder/img/image_N.h5 and folder/mask/mask_N.h5 (the latter only with `masks`)."""
    write_patches(folder / l4s.IMAGE_DIR, folder / l4s.MASK_DIR if masks else None, numbers,
                  seed=seed)  # fmt: skip
    return folder


SPLIT_DIRS = {role: names[0] for role, names in l4s.SPLIT_FOLDERS.items()}


def write_benchmark(root: Path, counts: dict[str, int], *, test_masks: bool = True) -> Path:
    """root/TrainData, ValidData, TestData with counts[role] patches each (numbered from 1)."""
    for i, (role, n) in enumerate(counts.items()):
        write_split(root / SPLIT_DIRS[role], list(range(1, n + 1)), seed=10 + i,
                    masks=test_masks or role != "test")  # fmt: skip
    return root


def write_mirror(root: Path, counts: dict[str, int]) -> Path:
    """The Hugging Face mirror's layout: images/<split>/, annotations/<split>/ (split names
    train, validation, test), with a stray image_N.h5 in annotations/train as the mirror has."""
    names = {"train": "train", "val": "validation", "test": "test"}
    for i, (role, n) in enumerate(counts.items()):
        write_patches(root / l4s.MIRROR_IMAGES / names[role],
                      root / l4s.MIRROR_MASKS / names[role], list(range(1, n + 1)),
                      seed=20 + i)  # fmt: skip
    (root / l4s.MIRROR_MASKS / "train" / "image_1.h5").write_bytes(b"\0" * 800)
    return root


def zip_split(folder: Path, archive: Path, *, top: bool = True) -> Path:
    """Zip a split folder as the record does: members TrainData/img/... (or img/... when
    `top` is False)."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                rel = path.relative_to(folder.parent if top else folder)
                zf.write(path, rel.as_posix())
    return archive
