"""Generated event folders: a valley with landslide scars, in the layers `lsd fetch` writes.

`lsd demo` runs the whole chain offline on them, and tests use them so that the code under test
sees event folders like real ones without downloading anything. A generated event is not a
photograph of a place, but each layer follows from the same terrain and land cover the way the
real layer follows from the real ground, so a model has to learn what it would learn from real
data (a scar is where vegetation and radar backscatter changed on a slope, not merely where
NDVI dropped):

- terrain: a meandering valley with a river, roughened by fractal relief (power-law spectrum,
  as real topography has); slope from the DEM on the 10 m grid, as `lsd fetch` computes it;
- Sentinel-1 geometry of a descending pass looking west: local incidence angle from the slope
  and aspect, active layover and radar shadow where the terrain faces the radar more steeply
  than the incidence angle (or turns away more steeply than its complement), NaN backscatter
  there as in terrain-flattened stacks;
- land cover (the paper's codes 1-8) from height, slope and the river: forest on the valley
  sides, grass on gentle ground, a village, bare rock and sparse vegetation up high;
- backscatter (dB, terrain-flattened gamma0) per class with texture and the residual speckle of
  a multi-scene median; NDVI per class with a seasonal shift between the windows;
- landslides: tracks that start on steep vegetated slopes and run down the steepest descent,
  widening towards their deposit; vegetation is stripped (dNDVI about -0.5), VH loses its
  volume scattering and VV drops in the source zone and rises on the rough deposit;
- what makes it not trivial: clear-cut forest and harvested fields (NDVI drops, unlabelled),
  clouds (dNDVI NaN), and backscatter noise of the size real composites show.

Everything is drawn from numpy's generator seeded by (seed, event number), so an event is the
same whatever the number of events asked for, on every machine.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.transform import Affine
from scipy import ndimage

from lsd.errors import InvalidValue
from lsd.events import event_record, write_event
from lsd.layers import LANDCOVER_CLASSES, PAPER_LAYERS
from lsd.pipeline.sources import build_events
from lsd.rasters import LABEL_BACKGROUND, LABEL_LANDSLIDE, Grid
from lsd.spec import utm_epsg

PIXEL_M = 10.0
MIN_SIZE = 64  # below this a valley, its slopes and a landslide track do not fit
MAX_SIZE = 2048
MIN_EVENTS = 3  # one each for training, validation and test

URBAN, FOREST, GRASS, SPARSE, WATER, WETLAND, ROCK, SNOW = range(1, 9)

# Terrain-flattened gamma0 in dB (VV, VH) per land-cover class: typical C-band values.
BACKSCATTER_DB: dict[int, tuple[float, float]] = {
    URBAN: (-4.0, -11.5), FOREST: (-7.5, -13.5), GRASS: (-10.5, -17.5),
    SPARSE: (-12.0, -19.5), WATER: (-21.0, -27.0), WETLAND: (-13.5, -20.5),
    ROCK: (-10.5, -19.0), SNOW: (-13.0, -21.0),
}  # fmt: skip
# Pre-event greenest-pixel NDVI per class.
NDVI: dict[int, float] = {
    URBAN: 0.25, FOREST: 0.82, GRASS: 0.66, SPARSE: 0.32, WATER: -0.15, WETLAND: 0.5,
    ROCK: 0.08, SNOW: -0.05,
}  # fmt: skip
CANOPY_M: dict[int, float] = {FOREST: 22.0, WETLAND: 2.0, URBAN: 1.0, SPARSE: 0.5}
BARE_SOIL_NDVI = 0.14

# Sites: the UTM zone and climate of real mountain regions (none of them a paper event), with
# the Koppen-Geiger class code of Beck et al. (2018) the region mostly has.
SITES: tuple[tuple[str, float, float, int], ...] = (
    ("Alps", 9.84, 46.62, 25),  # Dfb
    ("Southern Andes", -71.62, -36.95, 9),  # Csb
    ("Himalaya foothills", 85.52, 27.91, 12),  # Cwb
    ("Japanese Alps", 137.62, 36.27, 14),  # Cfa
    ("Cascades", -121.55, 47.81, 9),  # Csb
    ("Carpathians", 24.61, 47.55, 26),  # Dfc
    ("Atlas", -7.89, 31.14, 8),  # Csa
    ("Southern Alps", 170.81, -43.46, 15),  # Cfb
)


@dataclass(frozen=True)
class SyntheticEvent:
    """One event to generate: its id, the seed of its pixels, size, split role and site."""

    event_id: str
    number: int
    seed: int
    size: int
    role: str | None


@dataclass
class Scene:
    """A generated event: the 15 layers of the paper's Table 2, the label and what was drawn."""

    layers: np.ndarray  # (15, H, W) float32 in PAPER_LAYERS order
    label: np.ndarray  # (H, W) uint8: 1 landslide, 0 not
    grid: Grid
    facts: dict[str, Any]


def event_roles(n: int) -> list[str]:
    """The split recorded in event.json: the last event tests, about a fifth validate."""
    if n < MIN_EVENTS:
        raise InvalidValue(
            f"{n} event(s) cannot be split into training, validation and test events: give at "
            f"least {MIN_EVENTS}",
            field="events",
        )
    n_val = max(1, round(0.2 * n))
    return ["train"] * (n - 1 - n_val) + ["val"] * n_val + ["test"]


def check_size(size: int) -> int:
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise InvalidValue(
            f"size {size} is outside {MIN_SIZE}..{MAX_SIZE} pixels a side", field="size"
        )
    return size


class SyntheticSource:
    """lsd.sources.DataSource of generated events (`lsd demo`, and tests)."""

    name = "synthetic"
    keep_going = False

    def __init__(
        self, n_events: int = 10, *, size: int = 200, seed: int = 0, prefix: str = "demo-"
    ) -> None:
        roles = event_roles(n_events)
        check_size(size)
        self.events = [
            SyntheticEvent(f"{prefix}{i + 1:02d}", i + 1, seed, size, role)
            for i, role in enumerate(roles)
        ]

    def items(self) -> list[SyntheticEvent]:
        return list(self.events)

    def plan(self, item: SyntheticEvent) -> dict[str, Any]:
        site = _site(item.seed, item.number)
        return {"event_id": item.event_id, "summary": f"generated, {item.size} px, {site[0]}",
                "role": item.role, "seed": item.seed}  # fmt: skip

    def build(self, item: SyntheticEvent, folder: Path) -> None:
        scene = generate_scene(item.seed, item.number, item.size)
        source = {
            "kind": self.name,
            "generator": __name__,
            "seed": item.seed,
            "number": item.number,
            "size_px": item.size,
            **scene.facts,
            "note": "generated by lsd, not observed: for trying lsd and for its tests",
        }
        record = event_record(
            item.event_id, layers=PAPER_LAYERS, grid=scene.grid, source=source, role=item.role,
            label={"rule": "generated landslide tracks: 1 inside, 0 elsewhere"},
            conventions=_conventions(),
        )  # fmt: skip
        write_event(folder, record, grid=scene.grid, stack=scene.layers, label=scene.label)


def _conventions() -> dict[str, dict[str, str]]:
    """What the generator chose, in the shape event.json records conventions."""
    why = "generated by lsd.pipeline.sources.synthetic"
    values = {"flattening": "vollrath", "distortion_flags": "1=distorted", "radar_scale": "db",
              "source": "synthetic"}  # fmt: skip
    return {k: {"value": v, "how": "recorded", "evidence": why} for k, v in values.items()}


def _site(seed: int, number: int) -> tuple[str, float, float, int]:
    """The region of event `number`: the sites in turn, shifted by the seed."""
    return SITES[(number - 1 + seed) % len(SITES)]


# --------------------------------------------------------------------------- the scene


def generate_scene(seed: int, number: int, size: int) -> Scene:
    """Event `number` of the set drawn with `seed`: a `size` x `size` scene on a 10 m UTM grid."""
    check_size(size)
    rng = np.random.default_rng([seed, number])
    site = _site(seed, number)
    elevation = _terrain(rng, size)
    slope, aspect_x, aspect_y = _slope(elevation)
    river = _river(elevation)
    cover = _land_cover(rng, elevation, slope, river)
    lia, layover, shadow = _radar_geometry(rng, elevation)
    tracks = _landslides(rng, elevation, slope, cover)
    changes = _disturbances(rng, cover, slope, tracks)
    layers = _layers(rng, elevation, slope, cover, lia, layover, shadow, tracks, changes, site)
    label = np.where(tracks > 0, LABEL_LANDSLIDE, LABEL_BACKGROUND).astype(np.uint8)
    grid = _grid(rng, site, size)
    date = dt.date(2018, 1, 1) + dt.timedelta(days=int(rng.integers(0, 5 * 365)))
    facts = {
        "site": site[0],
        "event_date": date.isoformat(),
        "landslides": int(tracks.max()),
        "landslide_share": round(float(label.mean()), 5),
        "layover_share": round(float(layover.mean()), 5),
        "shadow_share": round(float(shadow.mean()), 5),
        "cloud_share": round(float(np.isnan(layers[PAPER_LAYERS.index("dNDVI")]).mean()), 5),
        "land_cover_shares": {
            LANDCOVER_CLASSES[c]: round(float((cover == c).mean()), 4)
            for c in np.unique(cover).tolist()
        },  # fmt: skip
    }
    return Scene(layers, label, grid, facts)


def _fractal(rng: np.random.Generator, size: int, beta: float) -> np.ndarray:
    """Zero-mean, unit-std noise with a power spectrum falling as k**-beta (terrain: about 3)."""
    ky = np.fft.fftfreq(size)[:, None]
    kx = np.fft.rfftfreq(size)[None, :]
    k = np.hypot(kx, ky)
    k[0, 0] = np.inf
    spectrum = k ** (-beta / 2) * np.exp(2j * np.pi * rng.random(k.shape))
    field = np.fft.irfft2(spectrum, s=(size, size))
    return (field - field.mean()) / field.std()


def _terrain(rng: np.random.Generator, size: int) -> np.ndarray:
    """Elevation in metres: a meandering valley (sides of 18-28 degrees) plus fractal relief;
    mean slopes come out at 22-33 degrees, as in the mountain valleys landslide maps cover."""
    extent = size * PIXEL_M
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    wiggle = rng.uniform(0.05, 0.12) * size
    phase, turns = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.2)
    axis = size * rng.uniform(0.4, 0.6) + wiggle * np.sin(2 * np.pi * turns * rows / size + phase)
    distance = np.abs(cols - axis) * PIXEL_M
    half_width = 0.42 * extent
    depth = np.tan(np.radians(rng.uniform(18, 28))) * half_width
    valley = depth * np.clip(distance / half_width, 0, 1.6) ** 1.15
    tilt = rng.uniform(-0.06, 0.06) * rows * PIXEL_M  # the valley floor falls along its axis
    relief = 0.15 * depth * _fractal(rng, size, 3.8)
    return (rng.uniform(150, 1200) + valley + tilt + relief).astype(np.float32)


def _gradient(elevation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """dz/dx (east) and dz/dy (north) per metre; rows run south."""
    d_row, d_col = np.gradient(elevation.astype(np.float64), PIXEL_M)
    return d_col, -d_row


def _slope(elevation: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slope in degrees and the unit vector pointing downhill (east, north components)."""
    gx, gy = _gradient(elevation)
    steep = np.hypot(gx, gy)
    slope = np.degrees(np.arctan(steep))
    safe = np.where(steep > 0, steep, 1.0)
    return slope, -gx / safe, -gy / safe


def _river(elevation: np.ndarray) -> np.ndarray:
    """The river: the lowest pixels of each row, widened to a few pixels."""

    lowest = np.zeros(elevation.shape, bool)
    lowest[np.arange(elevation.shape[0]), np.argmin(elevation, axis=1)] = True
    return ndimage.binary_dilation(lowest, iterations=max(1, elevation.shape[1] // 90))


def _land_cover(
    rng: np.random.Generator, elevation: np.ndarray, slope: np.ndarray, river: np.ndarray
) -> np.ndarray:
    """The paper's classes from height above the valley floor, slope and patchiness."""

    size = elevation.shape[0]
    height = elevation - np.percentile(elevation, 2)
    top = np.percentile(height, 99)
    patch = _fractal(rng, size, 2.0)
    cover = np.full(elevation.shape, FOREST, np.uint8)
    cover[(slope < 12 + 4 * patch) & (height < 0.35 * top)] = GRASS
    cover[(slope < 22) & (patch > 1.2)] = GRASS  # meadows in the forest
    high = height > top * rng.uniform(0.75, 0.9) + 0.05 * top * patch
    cover[high] = SPARSE
    cover[high & (slope > 30)] = ROCK
    cover[slope > 48] = ROCK
    wet = ndimage.binary_dilation(river, iterations=2) & (slope < 6) & (patch < -0.8)
    cover[wet] = WETLAND
    village = np.hypot(*np.mgrid[0:size, 0:size] - _flattest(slope)[:, None, None]) < size / 25
    cover[village & (slope < 15)] = URBAN
    cover[river] = WATER
    return cover


def _flattest(slope: np.ndarray) -> np.ndarray:
    """Row and column of the flattest ground away from the edges (where the village is)."""

    size = slope.shape[0]
    smooth = ndimage.uniform_filter(slope, size // 8)
    m = size // 8
    inner = smooth[m:-m, m:-m]
    r, c = np.unravel_index(np.argmin(inner), inner.shape)
    return np.array([r + m, c + m])


def _radar_geometry(
    rng: np.random.Generator, elevation: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local incidence angle (degrees), layover and shadow of a descending pass looking west.

    The radar sits up and to the east-south-east (azimuth about 100 degrees from the ground);
    a slope facing it more steeply than the incidence angle folds over (layover), one facing
    away more steeply than 90 degrees minus the incidence angle is hidden (shadow)."""
    size = elevation.shape[0]
    gx, gy = _gradient(elevation)
    incidence = np.radians(np.linspace(36.0, 42.0, size))[None, :] + 0 * gx  # near to far range
    towards = np.radians(rng.uniform(95.0, 105.0))  # azimuth from the ground to the radar
    ex, ey = np.sin(towards), np.cos(towards)
    normal = np.stack([-gx, -gy, np.ones_like(gx)]) / np.sqrt(gx**2 + gy**2 + 1)
    radar = np.stack([np.sin(incidence) * ex, np.sin(incidence) * ey, np.cos(incidence)])
    lia = np.degrees(np.arccos(np.clip((normal * radar).sum(axis=0), -1, 1)))
    facing = np.arctan(-(gx * ex + gy * ey))  # slope angle towards the radar, in range
    layover = facing > incidence
    shadow = -facing > np.pi / 2 - incidence
    return lia.astype(np.float32), layover, shadow


def _landslides(
    rng: np.random.Generator, elevation: np.ndarray, slope: np.ndarray, cover: np.ndarray
) -> np.ndarray:
    """Landslide tracks numbered 1..n: from steep vegetated slopes down the steepest descent,
    widening from the scarp to the deposit, stopping where the ground flattens."""

    size = elevation.shape[0]
    smooth = ndimage.gaussian_filter(elevation.astype(np.float64), 2)
    tracks = np.zeros(elevation.shape, np.int16)
    candidates = np.argwhere((slope > 25) & np.isin(cover, (FOREST, GRASS, SPARSE)))
    wanted = int(rng.integers(2, 4 + size // 60))
    if len(candidates) == 0:
        return tracks
    rows, cols = np.mgrid[0:size, 0:size]
    edge = rng.uniform(-1, 1, elevation.shape)  # ragged outlines
    n = 0
    for start in rng.permutation(candidates)[: wanted * 4]:
        if n == wanted:
            break
        r, c = (int(v) for v in start)
        if tracks[max(0, r - 6) : r + 7, max(0, c - 6) : c + 7].any():
            continue
        path = _descend(smooth, slope, r, c, max_len=int(rng.integers(12, 12 + size // 4)))
        if len(path) < 8:
            continue
        n += 1
        w0, w1 = rng.uniform(1.2, 2.5), rng.uniform(2.5, 2.5 + size / 60)
        for i, (pr, pc) in enumerate(path):
            w = w0 + (w1 - w0) * i / (len(path) - 1)
            box = np.s_[max(0, pr - 8) : pr + 9, max(0, pc - 8) : pc + 9]
            inside = np.hypot(rows[box] - pr, cols[box] - pc) <= w + 0.6 * edge[box]
            tracks[box][inside & (tracks[box] == 0)] = n
    return tracks


def _descend(smooth: np.ndarray, slope: np.ndarray, r: int, c: int, max_len: int) -> list:
    """The steepest-descent path from (r, c) over the smoothed DEM, until the ground flattens."""
    size = smooth.shape[0]
    path = [(r, c)]
    for _ in range(max_len):
        best, best_z = None, smooth[r, c]
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                rr, cc = r + dr, c + dc
                if (dr or dc) and 0 <= rr < size and 0 <= cc < size and smooth[rr, cc] < best_z:
                    best, best_z = (rr, cc), smooth[rr, cc]
        if best is None or (len(path) > 6 and slope[best] < 10):
            break
        r, c = best
        path.append(best)
    return path


def _disturbances(
    rng: np.random.Generator, cover: np.ndarray, slope: np.ndarray, tracks: np.ndarray
) -> np.ndarray:
    """NDVI losses that are not landslides: clear-cuts (forest, gentle or moderate slopes) and
    harvested fields (grass); rectangles, as people make them."""
    size = cover.shape[0]
    change = np.zeros(cover.shape, np.float32)
    for kind, n in ((FOREST, int(rng.integers(1, 4))), (GRASS, int(rng.integers(1, 4)))):
        spots = np.argwhere((cover == kind) & (slope < 25) & (tracks == 0))
        for r, c in rng.permutation(spots)[:n] if len(spots) else []:
            h, w = (int(x) for x in rng.integers(size // 20, size // 8 + 2, 2))
            box = np.s_[r : r + h, c : c + w]
            mask = np.isin(cover[box], (kind,)) & (tracks[box] == 0)
            drop = rng.uniform(0.35, 0.6) if kind == FOREST else rng.uniform(0.2, 0.4)
            change[box][mask] = drop
    return change


def _layers(
    rng: np.random.Generator,
    elevation: np.ndarray,
    slope: np.ndarray,
    cover: np.ndarray,
    lia: np.ndarray,
    layover: np.ndarray,
    shadow: np.ndarray,
    tracks: np.ndarray,
    changes: np.ndarray,
    site: tuple[str, float, float, int],
) -> np.ndarray:
    size = elevation.shape[0]
    slide = tracks > 0
    order = np.zeros(elevation.shape, np.float32)  # 0 at the scarp, 1 at the deposit
    for n in range(1, int(tracks.max()) + 1):
        part = tracks == n
        z = elevation[part]
        order[part] = (z.max() - z) / max(float(z.max() - z.min()), 1.0)

    def texture(scale_db: float) -> np.ndarray:
        return scale_db * _fractal(rng, size, 2.4)

    vv0, vh0 = (np.vectorize(lambda c, i=i: BACKSCATTER_DB[int(c)][i])(cover) for i in (0, 1))
    residual = 0.03 * (lia - 39.0)  # what terrain flattening leaves of the slope's brightness
    pre_vv = vv0 + residual + texture(1.0)
    pre_vh = vh0 + residual + texture(1.2)
    season = rng.normal(0, 0.4)  # soil moisture between the windows
    post_vv = pre_vv + season + np.where(slide, np.where(order < 0.5, -2.2, 2.4), 0.0)
    post_vh = pre_vh + season + np.where(slide & (cover == FOREST), -3.2, np.where(slide, -1.2, 0))
    post_vh = post_vh + 0.5 * np.where(changes > 0.3, -4.0, 0.0) * (cover == FOREST)  # clear-cut
    speckle = 0.45  # residual of the median of about ten scenes, dB
    sar = [x + rng.normal(0, speckle, x.shape) for x in (pre_vv, post_vv, pre_vh, post_vh)]
    pre_vv, post_vv, pre_vh, post_vh = sar
    distorted = layover | shadow
    for x in sar:
        x[distorted] = np.nan

    ndvi0 = np.vectorize(lambda c: NDVI[int(c)])(cover) + 0.04 * _fractal(rng, size, 2.0)
    vegetated = np.clip(ndvi0, 0, 1)
    pre_ndvi = ndvi0 + rng.normal(0, 0.025, ndvi0.shape)
    post_ndvi = ndvi0 + rng.normal(0, 0.06) * vegetated + rng.normal(0, 0.025, ndvi0.shape)
    post_ndvi = post_ndvi - changes * vegetated
    post_ndvi = np.where(slide, BARE_SOIL_NDVI + rng.normal(0, 0.05, ndvi0.shape), post_ndvi)
    dndvi = (post_ndvi - pre_ndvi).astype(np.float32)
    dndvi[_clouds(rng, size)] = np.nan

    canopy = np.vectorize(lambda c: CANOPY_M.get(int(c), 0.0))(cover) * (1 + 0.3 * texture(1))
    canopy = np.clip(canopy, 0, None)
    canopy[np.isin(cover, (WATER, SNOW))] = np.nan
    layers = {
        "preVV": pre_vv, "postVV": post_vv, "dVV": post_vv - pre_vv,
        "preVH": pre_vh, "postVH": post_vh, "dVH": post_vh - pre_vh,
        "layover": layover.astype(np.float32), "shadow": shadow.astype(np.float32),
        "liaDeg": lia, "elevation": elevation, "slope": slope,
        "kgClimate": np.full(elevation.shape, site[3], np.float32),
        "canopyHeight": canopy, "landCover": cover.astype(np.float32), "dNDVI": dndvi,
    }  # fmt: skip
    return np.stack([np.asarray(layers[name], np.float32) for name in PAPER_LAYERS])


def _clouds(rng: np.random.Generator, size: int) -> np.ndarray:
    """Cloud left in the post-event composite: no dNDVI there (0 to about 10% of the scene)."""
    field = _fractal(rng, size, 3.0)
    return field > rng.uniform(1.3, 3.5)


def _grid(rng: np.random.Generator, site: tuple[str, float, float, int], size: int) -> Grid:
    """A 10 m grid in the site's UTM zone, on the same lattice `lsd fetch` snaps to."""

    lon = site[1] + rng.uniform(-0.05, 0.05)
    lat = site[2] + rng.uniform(-0.05, 0.05)
    epsg = utm_epsg(lon, lat)
    x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
    left = round(x / PIXEL_M) * PIXEL_M - size // 2 * PIXEL_M
    top = round(y / PIXEL_M) * PIXEL_M + size // 2 * PIXEL_M
    return Grid(size, size, CRS.from_epsg(epsg), Affine(PIXEL_M, 0, left, 0, -PIXEL_M, top))


def write_synthetic_events(
    dest: Path | str,
    n_events: int = 10,
    *,
    size: int = 200,
    seed: int = 0,
    progress: bool = False,
) -> list[Path]:
    """Generate `n_events` event folders in `dest` (for tests and scripts); returns them."""

    source = SyntheticSource(n_events, size=size, seed=seed)
    return build_events(source, dest, progress=progress, desc="generate events").folders
