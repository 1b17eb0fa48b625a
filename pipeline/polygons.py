"""Landslide polygons from a mask raster, window by window, in bounded memory and time.

A map's mask can hold anything from a handful of landslides to salt-and-pepper noise with
millions of specks (an unsuited model, a wrong scaling). Vectorising the whole mask at once, as
lsd once did, cost 722 s and grew without bound on such a mask. So:

1. The mask is read in square windows. Each window's 4-connected components are labelled, and
   counted: pixels, area in m2 and boundary length (pixel edges, a bound on a polygon's
   vertices). A component that touches a window edge joins, through a union-find, its
   continuation in the neighbouring windows; one that does not is complete and decided at once.
2. The minimum mapping unit keeps the components whose area reaches it. Their boundary lengths
   add up to a bound on every vertex the polygons will hold; above MAX_BOUNDARY_EDGES the mask is
   too noisy to be a landslide map, and the polygons are not made (the caller says so; the
   raster outputs are written as always).
3. A second pass relabels each window (the same labels again), writes the mask without the
   components under the minimum mapping unit, and vectorises the kept ones. A complete polygon is
   streamed into the GeoPackage at once; the pieces of one that spans windows wait until its last
   piece is seen, and are merged then.

Memory is thus a few windows plus what spans window edges; time is linear in the pixels, plus the
vertices written. Areas come from pixel counts times each row's cell area (planar in a metre-based
projected CRS, else in an equal-area projection), which equals the polygon's own area on a
north-up grid, so the minimum mapping unit means the same everywhere and mask.tif and
landslides.gpkg always agree.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from pyogrio.raw import write
from pyproj import Transformer
from rasterio.features import shapes
from rasterio.windows import Window
from scipy import ndimage
from shapely.ops import unary_union

EQUAL_AREA_CRS = "EPSG:6933"  # WGS 84 / NSIDC EASE-Grid 2.0 Global: metres, equal area
POLYGON_LAYER = "landslides"
WINDOW = 1024  # pixels a side; a multiple of the 256 px blocks of lsd's map rasters
# The kept polygons' outlines may total at most EDGES_PER_PIXEL pixel edges per pixel of the map
# (each vertex ends an edge), at least MIN_EDGE_CAP and at most MAX_BOUNDARY_EDGES. Writing
# polygons costs about 5 us per edge on one CPU core, labelling about 0.2 us per pixel, and a
# CPU prediction with one member about 2.3 us per pixel, so at the cap the polygons stay near a
# fifth of the map's time. Real maps lie far below: one covered to 10% by landslides of 50
# pixels has 0.056 edges per pixel; speckle from a far too low threshold has 0.5 and more.
EDGES_PER_PIXEL = 0.1
MIN_EDGE_CAP = 1_000_000  # small maps: always polygons (a few seconds at most)
MAX_BOUNDARY_EDGES = 20_000_000  # about 320 MB of coordinates and two minutes of writing
# Polygons wait in memory until they hold this many vertices, then go into the GeoPackage: about
# 16 MB of coordinates (and the objects around them) whatever the map.
BATCH_VERTICES = 500_000


@dataclass
class PolygonSummary:
    """What the polygon step did, for run.json."""

    kept: int = 0
    removed_below_min_area: int = 0
    landslide_pixels: int = 0
    boundary_edges: int = 0  # of the kept polygons: the bound on their vertices
    written: bool = True
    skipped_reason: str | None = None  # why no polygons were made, when none were
    windows: int = 0


# --------------------------------------------------------------------------- areas


def cell_areas(transform: Any, crs: Any, height: int, width: int) -> np.ndarray:
    """Area in m2 of one pixel of each row: planar in a metre-based projected CRS, else that of
    the row's middle pixel in an equal-area projection (exact for north-up grids, whose pixels
    of one row are all alike). A stack without a CRS has no known unit; its pixels are taken to
    be metres (documented)."""
    det = abs(transform.a * transform.e - transform.b * transform.d)
    if crs is None:
        return np.full(height, det)
    units = crs.linear_units_factor if crs.is_projected else None
    if units and units[1] == 1.0:
        return np.full(height, det)

    col = width / 2.0
    rows = np.arange(height, dtype=np.float64)
    corners = [(col, rows), (col + 1, rows), (col + 1, rows + 1), (col, rows + 1)]
    to_area = Transformer.from_crs(crs, EQUAL_AREA_CRS, always_xy=True)
    xs, ys = [], []
    for c, r in corners:
        x, y = transform @ (np.full_like(r, c), r)
        ex, ey = to_area.transform(x, y)
        xs.append(np.asarray(ex))
        ys.append(np.asarray(ey))
    xs = [x - xs[0] for x in xs]  # relative to a corner: no cancellation of large products
    ys = [y - ys[0] for y in ys]
    shoelace = sum(xs[i] * ys[(i + 1) % 4] - xs[(i + 1) % 4] * ys[i] for i in range(4))
    return np.abs(shoelace) / 2.0


# --------------------------------------------------------------------------- components


class _Spanning:
    """Components that touch a window edge: a union-find over their pieces with the statistics
    merged at each root, and the piece count that tells when the last piece has been seen."""

    def __init__(self) -> None:
        self.parent: list[int] = [0]  # id 0 unused: "no component"
        self.pixels: list[int] = [0]
        self.area: list[float] = [0.0]
        self.edges: list[int] = [0]
        self.pieces: list[int] = [0]

    def add(self, pixels: np.ndarray, area: np.ndarray, edges: np.ndarray) -> np.ndarray:
        start = len(self.parent)
        n = len(pixels)
        self.parent.extend(range(start, start + n))
        self.pixels.extend(pixels.tolist())
        self.area.extend(area.tolist())
        self.edges.extend(edges.tolist())
        self.pieces.extend([1] * n)
        return np.arange(start, start + n, dtype=np.int64)

    def find(self, a: int) -> int:
        root = a
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[a] != root:
            self.parent[a], a = root, self.parent[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        keep, gone = min(ra, rb), max(ra, rb)
        self.parent[gone] = keep
        self.pixels[keep] += self.pixels[gone]
        self.area[keep] += self.area[gone]
        self.edges[keep] += self.edges[gone]
        self.pieces[keep] += self.pieces[gone]

    def join(self, ids_a: np.ndarray, ids_b: np.ndarray) -> None:
        """Union the components on the two sides of a window edge, pixel by pixel."""
        both = (ids_a > 0) & (ids_b > 0)
        for a, b in set(zip(ids_a[both].tolist(), ids_b[both].tolist(), strict=True)):
            self.union(a, b)


def _windows(height: int, width: int, size: int) -> Iterator[tuple[int, int, int, int]]:
    for r0 in range(0, height, size):
        for c0 in range(0, width, size):
            yield r0, min(r0 + size, height), c0, min(c0 + size, width)


def _label(src: Any, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, int]:

    hit = src.read(1, window=Window(c0, r0, c1 - c0, r1 - r0)) == 1
    lab, n = ndimage.label(hit)  # the default structure is 4-connectivity
    return lab, int(n)


def _boundary_edges(lab: np.ndarray, n: int) -> np.ndarray:
    """Pixel edges between each component and anything else (window borders included).

    Two 4-adjacent mask pixels always belong to one component, so a pixel's boundary edges are
    4 minus its 4-neighbours in the mask: counted with four shifted adds, summed per label."""
    hit = (lab > 0).view(np.uint8)
    inner = np.zeros(lab.shape, np.uint8)
    inner[:, 1:] += hit[:, :-1]
    inner[:, :-1] += hit[:, 1:]
    inner[1:] += hit[:-1]
    inner[:-1] += hit[1:]
    edges = np.bincount(lab.ravel(), weights=(4 - inner).ravel(), minlength=n + 1)
    edges[0] = 0
    return edges.astype(np.int64)


def _open_labels(lab: np.ndarray, n: int, r0, r1, c0, c1, height, width) -> np.ndarray:
    """Labels that touch an edge this window shares with another window."""
    is_open = np.zeros(n + 1, bool)
    if r0 > 0:
        is_open[lab[0]] = True
    if r1 < height:
        is_open[lab[-1]] = True
    if c0 > 0:
        is_open[lab[:, 0]] = True
    if c1 < width:
        is_open[lab[:, -1]] = True
    is_open[0] = False
    return is_open


def _areas(lab: np.ndarray, n: int, row_area: np.ndarray) -> np.ndarray:
    if row_area.min() == row_area.max():
        return np.bincount(lab.ravel(), minlength=n + 1) * float(row_area[0])
    weights = np.broadcast_to(row_area[:, None], lab.shape).ravel()
    return np.bincount(lab.ravel(), weights=weights, minlength=n + 1)


@dataclass
class _WindowPlan:
    """Pass one's findings for one window: which complete components stay, and which labels
    continue into other windows (and as which spanning component)."""

    keep: np.ndarray  # (n + 1,) bool, for complete components
    open_labels: np.ndarray  # labels that continue elsewhere
    open_ids: np.ndarray  # their ids in _Spanning


@dataclass
class _Pass1:
    plans: list[_WindowPlan] = field(default_factory=list)
    spanning: _Spanning = field(default_factory=_Spanning)
    summary: PolygonSummary = field(default_factory=PolygonSummary)
    root_keep: dict[int, bool] = field(default_factory=dict)


def _count(mask_src: Any, row_area: np.ndarray, min_area_m2: float, size: int) -> _Pass1:
    """Pass one: label every window, join components across window edges, decide each one."""
    height, width = mask_src.height, mask_src.width
    out = _Pass1()
    span, summary = out.spanning, out.summary
    above = np.zeros(width, np.int64)  # spanning ids on the last row of the band above
    below = np.zeros(width, np.int64)
    left = np.zeros(0, np.int64)
    for r0, r1, c0, c1 in _windows(height, width, size):
        if c0 == 0 and r0 > 0:
            above, below = below, np.zeros(width, np.int64)
        lab, n = _label(mask_src, r0, r1, c0, c1)
        pixels = np.bincount(lab.ravel(), minlength=n + 1)
        area = _areas(lab, n, row_area[r0:r1])
        edges = _boundary_edges(lab, n)
        is_open = _open_labels(lab, n, r0, r1, c0, c1, height, width)
        open_labels = np.nonzero(is_open)[0]
        ids = span.add(pixels[open_labels], area[open_labels], edges[open_labels])
        gid = np.zeros(n + 1, np.int64)
        gid[open_labels] = ids
        if r0 > 0:
            span.join(above[c0:c1], gid[lab[0]])
        if c0 > 0:
            span.join(left, gid[lab[:, 0]])
        left = gid[lab[:, -1]]
        below[c0:c1] = gid[lab[-1]]
        complete = ~is_open
        complete[0] = False
        keep = complete & (area >= min_area_m2)
        summary.kept += int(keep.sum())
        summary.removed_below_min_area += int((complete & ~keep).sum())
        summary.landslide_pixels += int(pixels[keep].sum())
        summary.boundary_edges += int(edges[keep].sum())
        summary.windows += 1
        out.plans.append(_WindowPlan(keep, open_labels, ids))
    roots = {span.find(i) for i in range(1, len(span.parent))}
    for root in roots:
        keep_it = span.area[root] >= min_area_m2
        out.root_keep[root] = keep_it
        if keep_it:
            summary.kept += 1
            summary.landslide_pixels += span.pixels[root]
            summary.boundary_edges += span.edges[root]
        else:
            summary.removed_below_min_area += 1
    return out


# --------------------------------------------------------------------------- writing


class _FeatureWriter:
    """Appends polygons to the GeoPackage layer in batches, with their statistics; the layer is
    created (empty if need be) so every map that has polygons has the layer."""

    def __init__(self, path: Path, transform: Any, crs: Any, batch_vertices: int) -> None:
        self.path, self.transform, self.batch_vertices = path, transform, batch_vertices
        self.crs = crs.to_wkt() if crs is not None else None
        self.batches: list[tuple[Any, ...]] = []
        self.buffered = 0
        self.vertices = 0
        self.written = 0
        self.created = False

    def add(self, geoms: Any, pixels: Any, area: Any, prob_sum: Any, prob_max: Any) -> None:
        """Polygons in pixel coordinates (a shapely array) with one value per polygon each."""

        pixels = np.asarray(pixels, np.int64)
        mean = np.asarray(prob_sum, np.float64) / np.maximum(pixels, 1)
        self.batches.append((geoms, np.asarray(area, np.float64), pixels, mean,
                             np.asarray(prob_max, np.float64)))  # fmt: skip
        self.buffered += len(pixels)
        self.vertices += int(shapely.get_num_coordinates(geoms).sum())
        if self.vertices >= self.batch_vertices:
            self.flush()

    def flush(self, *, final: bool = False) -> None:
        """Append the buffered features; the final call creates the layer if none came."""

        if not self.buffered and (self.created or not final):
            return
        parts = list(zip(*self.batches, strict=True)) or [[np.zeros(0)]] * 5
        geoms, area, pixels, mean, top = (np.concatenate(p) for p in parts)
        t = self.transform
        geoms = shapely.transform(
            geoms.astype(object),
            lambda xy: np.column_stack(
                (t.a * xy[:, 0] + t.b * xy[:, 1] + t.c, t.d * xy[:, 0] + t.e * xy[:, 1] + t.f)
            ),
        )
        ids = np.arange(self.written + 1, self.written + len(pixels) + 1, dtype=np.int64)
        with warnings.catch_warnings():
            # a stack without georeferencing (e.g. Landslide4Sense) gives polygons in its
            # pixel-sized frame; run.json records crs: null, so the no-CRS warning adds nothing
            warnings.filterwarnings("ignore", message="'crs' was not provided",
                                    category=UserWarning)  # fmt: skip
            write(
                str(self.path), shapely.to_wkb(geoms), [ids, area, pixels, mean, top],
                ["id", "area_m2", "pixels", "mean_prob", "max_prob"], layer=POLYGON_LAYER,
                driver="GPKG", geometry_type="Polygon", crs=self.crs, append=self.created,
            )  # fmt: skip
        self.batches, self.buffered, self.vertices = [], 0, 0
        self.created = True
        self.written += len(pixels)


def _window_stats(lab: np.ndarray, prob: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Probability sum and max of every label of a window."""
    flat = lab.ravel()
    sums = np.bincount(flat, weights=prob.ravel(), minlength=n + 1)
    maxes = np.full(n + 1, -np.inf)
    np.maximum.at(maxes, flat, prob.ravel())
    return sums, maxes


def _polygon_array(rings_of: list[list[Any]], c0: int, r0: int) -> Any:
    """GeoJSON-style rings (lists of (col, row) in the window) as a shapely array in the
    raster's pixel coordinates, built in one call rather than one object at a time."""

    rings = [np.asarray(ring, np.float64) for poly in rings_of for ring in poly]
    coords = np.concatenate(rings) + (c0, r0)
    ring_ends = np.cumsum([0] + [len(r) for r in rings])
    poly_ends = np.cumsum([0] + [len(p) for p in rings_of])
    return shapely.from_ragged_array(shapely.GeometryType.POLYGON, coords,
                                     (ring_ends, poly_ends))  # fmt: skip


def _write(first: _Pass1, mask_src: Any, prob_src: Any, mask_dst: Any, writer: Any,
           row_area: np.ndarray, size: int) -> None:  # fmt: skip
    """Pass two: the mask without the dropped components, and the kept ones as polygons."""

    span = first.spanning
    pieces: dict[int, list[Any]] = {}
    stats: dict[int, list[float]] = {}  # root -> [prob sum, prob max]
    height, width = mask_src.height, mask_src.width
    for plan, (r0, r1, c0, c1) in zip(first.plans, _windows(height, width, size), strict=True):
        win = Window(c0, r0, c1 - c0, r1 - r0)
        lab, n = _label(mask_src, r0, r1, c0, c1)
        roots = np.array([span.find(int(i)) for i in plan.open_ids], np.int64)
        keep = plan.keep.copy()
        keep[plan.open_labels] = [first.root_keep[int(r)] for r in roots]
        drop = ~keep
        drop[0] = False
        data = mask_src.read(1, window=win)
        data[drop[lab]] = 0
        mask_dst.write(data, 1, window=win)
        if writer is None or not keep.any():
            continue
        prob = prob_src.read(1, window=win).astype(np.float64)
        sums, maxes = _window_stats(lab, prob, n)
        pixels = np.bincount(lab.ravel(), minlength=n + 1)
        area = _areas(lab, n, row_area[r0:r1])
        root_of = dict(zip(plan.open_labels.tolist(), roots.tolist(), strict=True))
        found: dict[bool, tuple[list[int], list[Any]]] = {True: ([], []), False: ([], [])}
        kept_px = keep[lab]
        for geom, value in shapes(np.where(kept_px, lab, 0).astype(np.int32), mask=kept_px,
                                  connectivity=4):  # fmt: skip
            labels, rings = found[int(value) in root_of]
            labels.append(int(value))
            rings.append(geom["coordinates"])
        whole, rings = found[False]
        if whole:
            idx = np.asarray(whole)
            writer.add(_polygon_array(rings, c0, r0), pixels[idx], area[idx], sums[idx],
                       maxes[idx])  # fmt: skip
        labels, rings = found[True]
        for label, piece in zip(labels, _polygon_array(rings, c0, r0) if labels else [],
                                strict=True):  # fmt: skip
            root = root_of[label]
            pieces.setdefault(root, []).append(piece)
            acc = stats.setdefault(root, [0.0, -np.inf])
            acc[0] += float(sums[label])
            acc[1] = max(acc[1], float(maxes[label]))
            if len(pieces[root]) == span.pieces[root]:
                parts = pieces.pop(root)
                total, top = stats.pop(root)
                merged = parts[0] if len(parts) == 1 else unary_union(parts)
                writer.add(np.array([merged], object), [span.pixels[root]], [span.area[root]],
                           [total], [top])  # fmt: skip


def edge_cap(pixels: int) -> int:
    """The most boundary edges the polygons of a map of `pixels` pixels may have."""
    return int(min(MAX_BOUNDARY_EDGES, max(MIN_EDGE_CAP, EDGES_PER_PIXEL * pixels)))


def polygonise(
    mask_src_path: Path,
    prob_path: Path,
    mask_dst_path: Path,
    gpkg_path: Path,
    min_area_m2: float,
    *,
    window: int = WINDOW,
    max_boundary_edges: int | None = None,
    batch_vertices: int = BATCH_VERTICES,
) -> PolygonSummary:
    """Write `mask_dst_path` (the mask without components under `min_area_m2`) and, unless the
    kept components' outlines exceed `max_boundary_edges` (None: edge_cap of the map's size),
    their polygons into `gpkg_path`."""

    with rasterio.open(mask_src_path) as msrc, rasterio.open(prob_path) as psrc:
        row_area = cell_areas(msrc.transform, msrc.crs, msrc.height, msrc.width)
        first = _count(msrc, row_area, min_area_m2, window)
        summary = first.summary
        cap = (
            edge_cap(msrc.width * msrc.height) if max_boundary_edges is None else max_boundary_edges
        )
        writer = None
        if summary.boundary_edges > cap:
            summary.written = False
            summary.skipped_reason = (
                f"its {summary.kept:,} landslide areas have outlines of "
                f"{summary.boundary_edges:,} pixel edges, more than the {cap:,} polygons are "
                f"made for on a map of {msrc.width} x {msrc.height} pixels; a mask this "
                "fragmented is noise, not landslides (check the threshold and the stack's "
                "scaling), so only the rasters were written"
            )
        else:
            writer = _FeatureWriter(gpkg_path, msrc.transform, msrc.crs, batch_vertices)
        with rasterio.open(mask_dst_path, "w", **msrc.profile) as mdst:
            _write(first, msrc, psrc, mdst, writer, row_area, window)
        if writer is not None:
            writer.flush(final=True)
    return summary
