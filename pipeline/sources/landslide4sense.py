"""Landslide4Sense patches (img/image_N.h5 + mask/mask_N.h5) as a data source.

The patches carry no georeferencing, so the rasters get no CRS and a nominal 10 m pixel grid at
origin (0, 0); event.json says so, and nothing downstream may treat the position as real.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lsd.errors import InvalidFile
from lsd.events import event_record, write_event
from lsd.limits import check_memory, check_pixels
from lsd.pipeline.sources.common import check_source_folder, natural_key
from lsd.rasters import LABEL_BACKGROUND, LABEL_LANDSLIDE, Grid

# The dataset's own channel order: Sentinel-2 bands without B8A, then slope, then ALOS elevation.
L4S_LAYERS: tuple[str, ...] = (
    "B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11", "B12",
    "slope", "elevation",
)  # fmt: skip
L4S_RESOLUTION_M = 10.0
L4S_IMAGE_KEY = "img"
L4S_MASK_KEY = "mask"


@dataclass(frozen=True)
class Patch:
    event_id: str
    image: Path
    mask: Path


def _l4s_pairs(src: Path) -> list[Patch]:
    """(event id, image, mask) for every img/image_N.h5; a missing mask is an error up front."""
    check_source_folder(src)
    img_dir, mask_dir = src / "img", src / "mask"
    if not img_dir.is_dir():
        raise InvalidFile(
            f"{src}: no img/ folder (a Landslide4Sense folder holds img/image_N.h5 and "
            "mask/mask_N.h5)"
        )
    images = sorted(img_dir.glob("*.h5"), key=natural_key)
    if not images:
        raise InvalidFile(f"{img_dir}: no .h5 images found")
    pairs = []
    for image in images:
        if not image.stem.startswith("image_"):
            raise InvalidFile(f"{image}: expected a name like image_N.h5")
        mask = mask_dir / f"mask_{image.stem[len('image_') :]}.h5"
        if not mask.is_file():
            raise InvalidFile(f"{image}: no matching mask {mask}")
        pairs.append(Patch(f"l4s_{image.stem}", image, mask))
    return pairs


def _check_h5(path: Path, key: str, dset: Any, copy_bytes: int) -> None:
    """A dataset's header can claim any shape in a few bytes: its size is checked before it is
    read (lsd.limits), and one that stores nothing at all is refused (every value would be the
    fill value). `copy_bytes` per value is what the import adds (a float32 copy)."""
    import h5py

    where = f"{path}: dataset '{key}'"
    if not isinstance(dset, h5py.Dataset):
        raise InvalidFile(f"{where} is a group, not an array")
    if dset.ndim >= 2:
        check_pixels(where, int(dset.shape[1]), int(dset.shape[0]))
    if dset.size and dset.id.get_storage_size() == 0:
        raise InvalidFile(
            f"{where} declares {' x '.join(map(str, dset.shape))} values but stores none "
            f"(the file has {path.stat().st_size} bytes): nothing to import"
        )
    check_memory(f"reading {where} ({' x '.join(map(str, dset.shape))} values)",
                 float(dset.size) * (dset.dtype.itemsize + copy_bytes))  # fmt: skip


def _read_h5(path: Path, key: str, copy_bytes: int = 0) -> np.ndarray:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if key not in f:
                found = ", ".join(sorted(f.keys())) or "none"
                raise InvalidFile(f"{path}: no dataset '{key}' (found: {found})")
            _check_h5(path, key, f[key], copy_bytes)
            return np.asarray(f[key][()])
    except OSError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidFile(f"{path}: not a readable HDF5 file ({reason})") from None


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


class Landslide4SenseSource:
    """lsd.sources.DataSource over a Landslide4Sense folder; each patch becomes one event."""

    name = "landslide4sense"
    keep_going = False

    def __init__(self, src: Path | str) -> None:
        self.src = Path(src)

    def items(self) -> list[Patch]:
        return _l4s_pairs(self.src)

    def plan(self, item: Patch) -> dict[str, Any]:
        return {"event_id": item.event_id, "image": str(item.image), "mask": str(item.mask)}

    def build(self, item: Patch, folder: Path) -> None:
        from affine import Affine

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
        }
        record = event_record(
            item.event_id, layers=L4S_LAYERS, grid=grid, source=source, georeferenced=False,
            label={"source_mapping": {"0": LABEL_BACKGROUND, "1": LABEL_LANDSLIDE}},
            georeferencing_note=(
                "the source patch has no location; the transform is a nominal 10 m grid at "
                "(0, 0), not a place on Earth"
            ),
        )  # fmt: skip
        write_event(folder, record, grid=grid, stack=stack, label=label)
