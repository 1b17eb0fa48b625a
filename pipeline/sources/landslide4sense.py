"""Landslide4Sense patches (img/image_N.h5 + mask/mask_N.h5) as a data source.

SRC is either one folder of patches (img/ and mask/ in it) or the folder that holds the
benchmark's split folders: TrainData/, ValidData/ and TestData/ as the competition and its Zenodo
record publish them (other names mirrors use are accepted, lsd.landslide4sense.SPLIT_FOLDERS),
or images/<split>/ beside annotations/<split>/ as on the Hugging Face mirror. Every split found
is imported in one go, each patch with its split as its role (train, val, test), which `lsd
train` and `lsd evaluate` take as the benchmark's own split. A split that is absent, or has
images but no masks (the record's test split, if it withholds them), is left out with a warning
line naming it; the others are imported.

Each patch becomes one event folder: the training sampler then cuts whole 128-pixel patches as
the benchmark's loader reads them, and every patch is scored on its own (docs/import.md says why
this beats one folder per split, with the measurements).

The patches carry no georeferencing, so the rasters get no CRS and a nominal 10 m pixel grid at
origin (0, 0); event.json says so, and nothing downstream may treat the position as real.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from lsd import conventions as cv
from lsd import landslide4sense as l4s
from lsd.errors import InvalidFile
from lsd.events import event_record, write_event
from lsd.formats import read_h5_dataset
from lsd.pipeline.conventions import detect_for_import
from lsd.pipeline.sources.common import check_source_folder, natural_key
from lsd.progress import warn
from lsd.rasters import LABEL_BACKGROUND, LABEL_LANDSLIDE, Grid

# The dataset's own channel order: Sentinel-2 bands without B8A, then slope, then ALOS elevation.
L4S_LAYERS: tuple[str, ...] = l4s.LAYERS
L4S_RESOLUTION_M = 10.0
L4S_IMAGE_KEY = l4s.IMAGE_KEY
L4S_MASK_KEY = l4s.MASK_KEY


@dataclass(frozen=True)
class Patch:
    event_id: str
    image: Path
    mask: Path
    role: str | None = None  # the benchmark split it came from (train, val, test)
    split: str | None = None  # that split's folder, as found (TrainData, images/validation ...)


@dataclass(frozen=True)
class SplitFolder:
    """Where one split's images and masks are; `role` None for a lone folder of patches."""

    role: str | None
    name: str
    images: Path
    masks: Path


def _split_pairs(split: SplitFolder) -> list[Patch]:
    """Every image_N.h5 of a split with its mask_N.h5; an image without its mask, or a mask
    without its image, is an error naming the file before anything is written."""
    images = sorted(split.images.glob("*.h5"), key=natural_key)
    if not images:
        raise InvalidFile(f"{split.images}: no .h5 images found")
    prefix = "l4s_" if split.role is None else f"l4s_{split.role}_"
    pairs = []
    for image in images:
        if not image.stem.startswith("image_"):
            raise InvalidFile(f"{image}: expected a name like image_N.h5")
        mask = split.masks / f"mask_{image.stem[len('image_') :]}.h5"
        if not mask.is_file():
            raise InvalidFile(f"{image}: no matching mask {mask}")
        pairs.append(Patch(f"{prefix}{image.stem}", image, mask, split.role,
                           None if split.role is None else split.name))  # fmt: skip
    numbers = {image.stem[len("image_") :] for image in images}
    for mask in sorted(split.masks.glob("mask_*.h5"), key=natural_key):
        if mask.stem[len("mask_") :] not in numbers:
            raise InvalidFile(
                f"{mask}: no matching image {split.images / mask.name.replace('mask_', 'image_')}"
            )
    return pairs


def _find_split(src: Path, role: str) -> SplitFolder | None:
    """The first of the split's accepted folder names present in SRC, in either layout."""
    for name in l4s.SPLIT_FOLDERS[role]:
        folder = src / name
        if folder.is_dir():
            if not (folder / l4s.IMAGE_DIR).is_dir():
                raise InvalidFile(
                    f"{folder}: no {l4s.IMAGE_DIR}/ folder (a split folder holds "
                    f"{l4s.IMAGE_DIR}/image_N.h5 and {l4s.MASK_DIR}/mask_N.h5)"
                )
            return SplitFolder(role, name, folder / l4s.IMAGE_DIR, folder / l4s.MASK_DIR)
        mirrored = src / l4s.MIRROR_IMAGES / name
        if mirrored.is_dir():
            return SplitFolder(role, f"{l4s.MIRROR_IMAGES}/{name}", mirrored,
                               src / l4s.MIRROR_MASKS / name)  # fmt: skip
    return None


def benchmark_splits(src: Path) -> list[SplitFolder]:
    """The splits to import from SRC, each named with its role, with a warning line for each
    split that is absent or has no masks; a folder with none of them is an error."""
    check_source_folder(src)
    if (src / l4s.IMAGE_DIR).is_dir():
        return [SplitFolder(None, src.name, src / l4s.IMAGE_DIR, src / l4s.MASK_DIR)]
    found = {role: _find_split(src, role) for role in l4s.SPLIT_FOLDERS}
    if not any(found.values()):
        names = ", ".join(f"{names[0]}/" for names in l4s.SPLIT_FOLDERS.values())
        raise InvalidFile(
            f"{src}: no img/ folder and no split folders ({names}, or {l4s.MIRROR_IMAGES}/<split>/ "
            "as on the Hugging Face mirror); a Landslide4Sense folder holds img/image_N.h5 and "
            "mask/mask_N.h5"
        )
    splits = []
    for role, split in found.items():
        if split is None:
            names = " or ".join(f"{n}/" for n in l4s.SPLIT_FOLDERS[role])
            warn(f"{src}: no {role} split ({names}); importing the other splits without it")
        elif not split.masks.is_dir():
            warn(f"{split.masks}: not found, so the {role} split's patches have no labels to "
                 f"train or score on; not imported (the Hugging Face mirror {l4s.HF_MIRROR} "
                 "holds masks for every split)")  # fmt: skip
        else:
            splits.append(split)
    if not splits:
        raise InvalidFile(f"{src}: no split with masks to import")
    return splits


def _read_h5(path: Path, key: str, copy_bytes: int = 0) -> np.ndarray:
    """Only data stored inside the file is read, and only after its size is checked
    (lsd.formats): no links, no external storage, no header claiming gigabytes."""
    return read_h5_dataset(path, key, copy_bytes)


def _read_l4s_pair(image: Path, mask: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return the stack as float32 (C, H, W) and the label as uint8 (H, W), both checked."""
    img = _read_h5(image, L4S_IMAGE_KEY, copy_bytes=4)
    if img.ndim != 3 or img.shape[2] != len(L4S_LAYERS):
        raise InvalidFile(
            f"{image}: dataset '{L4S_IMAGE_KEY}' has shape {tuple(img.shape)}, expected "
            f"(height, width, {len(L4S_LAYERS)})"
        )
    if not np.issubdtype(img.dtype, np.number) or np.iscomplexobj(img):
        raise InvalidFile(f"{image}: dataset '{L4S_IMAGE_KEY}' holds {img.dtype}, not real numbers")
    lab = _read_h5(mask, L4S_MASK_KEY)
    if lab.shape != img.shape[:2]:
        raise InvalidFile(
            f"{mask}: dataset '{L4S_MASK_KEY}' has shape {tuple(lab.shape)}, expected "
            f"{tuple(img.shape[:2])} to match {image.name}"
        )
    values = np.unique(lab)
    bad = [v for v in values.tolist() if v not in (0, 1)]
    if bad:
        raise InvalidFile(f"{mask}: mask value {bad[0]} is not 0 or 1")
    stack = np.ascontiguousarray(np.moveaxis(img, 2, 0), dtype=np.float32)
    return stack, lab.astype(np.uint8)


L4S_CONVENTIONS = {
    cv.SOURCE: cv.recorded("Landslide4Sense", "lsd import landslide4sense"),
    cv.DEM: cv.recorded("ALOS PALSAR", "Landslide4Sense: slope and elevation from ALOS PALSAR"),
}


class Landslide4SenseSource:
    """lsd.sources.DataSource over a Landslide4Sense folder; each patch becomes one event."""

    name = "landslide4sense"
    keep_going = False

    def __init__(self, src: Path | str) -> None:
        self.src = Path(src)

    def items(self) -> list[Patch]:
        return [p for split in benchmark_splits(self.src) for p in _split_pairs(split)]

    def plan(self, item: Patch) -> dict[str, Any]:
        return {"event_id": item.event_id, "role": item.role, "image": str(item.image),
                "mask": str(item.mask)}  # fmt: skip

    def origin(self, item: Patch) -> dict[str, str]:
        return {"kind": self.name, "image": str(item.image.resolve()),
                "mask": str(item.mask.resolve())}  # fmt: skip

    def build(self, item: Patch, folder: Path) -> None:

        stack, label = _read_l4s_pair(item.image, item.mask)
        height, width = label.shape
        transform = Affine(L4S_RESOLUTION_M, 0.0, 0.0, 0.0, -L4S_RESOLUTION_M, 0.0)
        grid = Grid(width=width, height=height, crs=None, transform=transform)
        source = {
            "kind": self.name,
            "dataset": "Landslide4Sense",
            "image": str(item.image.resolve()),
            "mask": str(item.mask.resolve()),
            "nominal_resolution_m": L4S_RESOLUTION_M,
            **({"split": item.split} if item.split else {}),
        }
        record = event_record(
            item.event_id, layers=L4S_LAYERS, grid=grid, source=source, georeferenced=False,
            role=item.role,
            label={"source_mapping": {"0": LABEL_BACKGROUND, "1": LABEL_LANDSLIDE}},
            georeferencing_note=(
                "the source patch has no location; the transform is a nominal 10 m grid at "
                "(0, 0), not a place on Earth"
            ),
            conventions=detect_for_import(
                dict(zip(L4S_LAYERS, stack, strict=True)), grid, georeferenced=False,
                known=L4S_CONVENTIONS,
            ),
        )  # fmt: skip
        write_event(folder, record, grid=grid, stack=stack, label=label)
