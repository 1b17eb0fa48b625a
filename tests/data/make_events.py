"""Writes tests/data/events: twelve small generated event folders for the core tests.

They stand in for the 21 real Landslide4Sense patches (../shared/data/landslide4sense-21), which
a user's machine and a bare CI runner do not have: the same 14 layers in the same order
(Sentinel-2 B1-B12 without B8A, slope, elevation), values in the same range (roughly 0 to 15),
64 x 64 pixels of 10 m on a UTM grid, and a binary label. Ten events hold one or two landslide
scars, two hold none (as 3 of the 21 real patches do). A scar is what a model can learn: bare
soil (brighter visible and short-wave infrared, darker near infrared) on a steep slope.

Values are multiples of 1/64, so the deflated GeoTIFFs stay small (about 1.2 MB in all) and the
files are the same on every machine. The folders are written through lsd.events.write_event,
the one writer of event folders; tests/test_generated_data.py checks that the committed folders
are what this script writes (apart from the time and version stamps of event.json). Run it again,
with lsd installed, after a change to the event-folder format:

    python tests/data/make_events.py            # rewrites tests/data/events
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "events"
LAYERS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11", "B12",
          "slope", "elevation")  # fmt: skip
SIZE = 64
EVENTS = 12
WITHOUT_LANDSLIDES = (5, 11)  # event numbers whose label is all 0
# per layer: background level, and how much a scar adds (bare soil against vegetation)
LEVEL = np.array([1.2, 1.0, 0.9, 0.8, 1.4, 2.6, 3.0, 3.2, 3.4, 0.3, 2.0, 1.4, 3.0, 6.0])
SCAR = np.array([0.3, 0.8, 0.9, 1.1, 0.7, 0.1, -0.3, -0.9, -0.8, 0.0, 1.2, 1.3, 2.5, 0.0])
QUANTUM = 1 / 64


def _smooth(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """A smooth random field: white noise blurred by averaging in blocks, then upsampled."""
    coarse = rng.normal(0, scale, (size // 8 + 2, size // 8 + 2))
    fine = np.kron(coarse, np.ones((8, 8)))[: size + 8, : size + 8]
    kernel = np.ones(8) / 8
    fine = np.apply_along_axis(np.convolve, 0, fine, kernel, mode="valid")
    fine = np.apply_along_axis(np.convolve, 1, fine, kernel, mode="valid")
    return fine[:size, :size]


def _scars(rng: np.random.Generator, size: int, count: int) -> np.ndarray:
    """`count` elongated blobs (a landslide runs downslope) as a 0/1 mask."""
    yy, xx = np.mgrid[0:size, 0:size]
    label = np.zeros((size, size), np.uint8)
    for _ in range(count):
        cy, cx = rng.uniform(12, size - 12, 2)
        ry, rx = rng.uniform(6, 12), rng.uniform(3, 6)
        angle = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = dy * np.cos(angle) + dx * np.sin(angle)
        v = -dy * np.sin(angle) + dx * np.cos(angle)
        label[(u / ry) ** 2 + (v / rx) ** 2 <= 1] = 1
    return label


def event_arrays(number: int, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(stack (14, size, size) float32, label (size, size) uint8) of event `number`."""
    rng = np.random.default_rng(1000 + number)
    label = (
        np.zeros((size, size), np.uint8)
        if number in WITHOUT_LANDSLIDES
        else _scars(rng, size, 1 + number % 2)
    )
    terrain = _smooth(rng, size, 1.0)
    stack = np.empty((len(LAYERS), size, size), np.float32)
    for i in range(len(LAYERS)):
        texture = _smooth(rng, size, 0.3)
        noise = rng.normal(0, 0.15, (size, size))
        stack[i] = LEVEL[i] + 0.4 * terrain + texture + noise + SCAR[i] * label
    stack[-1] = LEVEL[-1] + 3.0 * terrain + 0.05 * np.arange(size)[:, None]  # elevation
    stack = np.clip(stack, 0, 15)
    return (np.round(stack / QUANTUM) * QUANTUM).astype(np.float32), label


def write_events(out: Path = OUT, count: int = EVENTS) -> list[Path]:
    """Write the event folders `gen-01` ... into `out` (replaced if it exists)."""
    from affine import Affine
    from rasterio.crs import CRS

    from lsd.events import event_record, write_event
    from lsd.rasters import Grid

    if out.exists():
        shutil.rmtree(out)
    folders = []
    for number in range(1, count + 1):
        stack, label = event_arrays(number)
        # events side by side in UTM zone 33N, 10 m pixels, as lsd fetch lays them out
        west = 500_000 + (number - 1) * SIZE * 10 * 2
        grid = Grid(SIZE, SIZE, CRS.from_epsg(32633), Affine(10, 0, west, 0, -10, 6_900_000))
        event_id = f"gen-{number:02d}"
        record = event_record(
            event_id,
            layers=LAYERS,
            grid=grid,
            source={"kind": "generated", "generator": "tests/data/make_events.py"},
        )
        folders.append(write_event(out / event_id, record, grid=grid, stack=stack, label=label))
    return folders


if __name__ == "__main__":
    for folder in write_events(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT):
        print(folder)
