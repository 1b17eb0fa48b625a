"""Getting pixels out of Earth Engine: tiled computePixels downloads, and batch exports.

The network boundary is one function, `fetch_pixels`: everything else (tiling, retries, writing
the stack, converting an exported GeoTIFF) is local and testable offline by replacing it or
ee.data.computePixels.

A request is one tile of one band group. computePixels refuses more than 48 MB, 32768 px a side
or 1024 bands per request, and a request must finish its computation within the interactive time
limit, which grows with the bands asked for: so bands are split into groups of at most
MAX_BANDS_PER_REQUEST (the paper's 15 stay one group) and tiles are sized for the largest group.

An event's stack is written one of three ways (`stack_writer`): converted from an export the user
dropped into the event folder, from a batch export to Cloud Storage or Drive, or downloaded tile
by tile; lsd.gee.source decides what to ask for, this module how the pixels arrive.

Masked pixels: computePixels and exports do not carry a mask through NUMPY_NDARRAY or GeoTIFF
reliably (masked pixels come back as 0, a valid value for most layers), so the image is unmasked
to the lowest float32 before leaving Earth Engine and that value is turned into NaN here.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
from google.cloud import storage
from rasterio.transform import Affine
from rasterio.windows import Window
from tqdm import tqdm

from lsd.files import atomic_path, write_json
from lsd.formats import opened
from lsd.gee.auth import current_credentials
from lsd.rasters import Grid, describe_bands, stack_profile

if TYPE_CHECKING:
    from lsd.gee.source import EarthEngineSource, EventRun
    from lsd.spec import EventSpec

# Request limits of ee.data.computePixels (bytes of the response, pixels per side).
MAX_REQUEST_BYTES = 48 * 1024 * 1024
MAX_SIDE = 32768
MAX_BANDS = 1024
MAX_BANDS_PER_REQUEST = 16
DEFAULT_TILE = 512
NODATA_SENTINEL = float(np.finfo(np.float32).min)  # -3.4028235e38, stands for "masked"
_SENTINEL_CUT = -3.0e38

RETRY_TRIES = 5
RETRY_BASE_S = 2.0
_TRANSIENT = re.compile(
    r"\b429\b|too many (concurrent|requests)|rate limit|\brate\b|quota exceeded|"
    r"\b5\d\d\b|internal error|backend error|service unavailable|unavailable|"
    r"timed? ?out|deadline|connection (reset|aborted)",
    re.IGNORECASE,
)

Sleep = Callable[[float], None]

EXPORT_FILE = "export.tif"  # a finished export the user dropped into the event folder
EXPORT_NOTE = "export.json"
EXPORT_MODES = ("drive", "gcs")
DRIVE_FOLDER = "lsd"


# --------------------------------------------------------------------------- tiling


def tile_side(n_bands: int, tile: int = DEFAULT_TILE) -> int:
    """Largest square side <= `tile` whose float32 response stays under the request limit."""
    side = min(tile, MAX_SIDE)
    while side > 1 and side * side * max(n_bands, 1) * 4 > MAX_REQUEST_BYTES:
        side //= 2
    return side


def plan_tiles(grid: Grid, n_bands: int, tile: int = DEFAULT_TILE) -> list[Any]:
    """Row-major rasterio Windows covering the grid, each small enough for `n_bands` bands."""

    side = tile_side(n_bands, tile)
    return [
        Window(col, row, min(side, grid.width - col), min(side, grid.height - row))
        for row in range(0, grid.height, side)
        for col in range(0, grid.width, side)
    ]


def band_groups(n_bands: int, max_bands: int = MAX_BANDS_PER_REQUEST) -> list[range]:
    """Consecutive band indices in as few groups of at most `max_bands` as possible, of
    near-equal size (40 bands -> 14, 13, 13 rather than 16, 16, 8)."""
    if n_bands <= 0:
        return []
    max_bands = max(1, min(max_bands, MAX_BANDS))
    n_groups = math.ceil(n_bands / max_bands)
    size, extra = divmod(n_bands, n_groups)
    groups, start = [], 0
    for i in range(n_groups):
        stop = start + size + (1 if i < extra else 0)
        groups.append(range(start, stop))
        start = stop
    return groups


def plan_requests(
    grid: Grid, n_bands: int, tile: int = DEFAULT_TILE, max_bands: int = MAX_BANDS_PER_REQUEST
) -> list[tuple[Any, range]]:
    """Every (window, band indices) request that together covers the stack, tile by tile."""
    groups = band_groups(n_bands, max_bands)
    windows = plan_tiles(grid, max((len(g) for g in groups), default=1), tile)
    return [(window, bands) for window in windows for bands in groups]


# --------------------------------------------------------------------------- the network boundary


def unmasked(image: Any) -> Any:
    """The image with masked pixels set to the sentinel, as float32, ready to leave EE."""
    return image.unmask(NODATA_SENTINEL, False).toFloat()


def fetch_pixels(
    image: Any, grid: Grid, window: Any, bands: Sequence[str] | None = None
) -> np.ndarray:
    """Pixels of `image` (of its `bands`, default all) on one window of `grid`: (bands, h, w)
    float32, NaN where masked."""
    import ee

    t = grid.transform @ Affine.translation(window.col_off, window.row_off)
    request = {
        "expression": unmasked(image),
        "fileFormat": "NUMPY_NDARRAY",
        "grid": {
            "dimensions": {"width": int(window.width), "height": int(window.height)},
            "affineTransform": {
                "scaleX": t.a,
                "shearX": t.b,
                "translateX": t.c,
                "shearY": t.d,
                "scaleY": t.e,
                "translateY": t.f,
            },
            "crsCode": grid.crs.to_string(),
        },
    }
    if bands is not None:
        request["bandIds"] = list(bands)
    return to_bands(ee.data.computePixels(request))


def to_bands(array: np.ndarray) -> np.ndarray:
    """A computePixels answer (structured (h, w) or plain (h, w, bands)) as (bands, h, w) NaN."""
    array = np.asarray(array)
    if array.dtype.names:
        out = np.stack([array[name] for name in array.dtype.names]).astype(np.float32)
    elif array.ndim == 3:
        out = np.moveaxis(array, -1, 0).astype(np.float32)
    else:
        out = array[np.newaxis].astype(np.float32)
    out[out <= _SENTINEL_CUT] = np.nan
    return out


# --------------------------------------------------------------------------- retries


def is_transient(exc: BaseException) -> bool:
    """Errors worth another try: rate limits, server-side 5xx, timeouts, dropped connections."""
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    try:
        import ee

        if not isinstance(exc, ee.EEException):
            return False
    except ImportError:  # pragma: no cover - ee is a dependency
        return False
    return bool(_TRANSIENT.search(str(exc)))


def with_retries(
    fn: Callable[[], Any],
    *,
    tries: int = RETRY_TRIES,
    base_s: float = RETRY_BASE_S,
    sleep: Sleep | None = None,
    on_retry: Callable[[BaseException, float], None] | None = None,
) -> Any:
    """Call fn, retrying transient errors with exponential backoff (2, 4, 8, 16 s by default)."""
    for attempt in range(tries):
        try:
            return fn()
        except Exception as exc:
            if attempt == tries - 1 or not is_transient(exc):
                raise
            delay = base_s * 2**attempt
            if on_retry:
                on_retry(exc, delay)
            (sleep or time.sleep)(delay)
    raise AssertionError("unreachable")  # pragma: no cover


# --------------------------------------------------------------------------- writing stacks


def download_stack(
    image: Any,
    grid: Grid,
    layers: Sequence[str],
    dest: Path,
    *,
    tile: int = DEFAULT_TILE,
    max_bands: int = MAX_BANDS_PER_REQUEST,
    sleep: Sleep | None = None,
    fetch: Callable[[Any, Grid, Any, Sequence[str]], np.ndarray] | None = None,
    progress: Callable[[int], None] | None = None,
    on_retry: Callable[[BaseException, float], None] | None = None,
    conventions: dict[str, dict[str, str]] | None = None,
) -> None:
    """Download the image request by request into `dest` (a temporary name until the last
    request lands); `layers` are the image's band names, in stack order; `conventions` go into
    the stack's tags.

    Blocks are written as they arrive so memory stays at one request whatever the AOI size.
    """

    fetch = fetch or fetch_pixels
    with (
        atomic_path(dest) as tmp,
        rasterio.open(tmp, "w", **stack_profile(grid, len(layers))) as dst,
    ):
        describe_bands(dst, layers, conventions)
        for window, group in plan_requests(grid, len(layers), tile, max_bands):
            names = [layers[i] for i in group]
            block = with_retries(
                lambda w=window, b=names: fetch(image, grid, w, b), sleep=sleep, on_retry=on_retry
            )
            expected = (len(names), int(window.height), int(window.width))
            if block.shape != expected:
                raise RuntimeError(f"Earth Engine returned {block.shape}, expected {expected}")
            dst.write(block, indexes=[i + 1 for i in group], window=window)
            if progress:
                progress(1)


def geotiff_to_stack(
    src_path: Path,
    dest: Path,
    layers: Sequence[str],
    grid: Grid,
    conventions: dict[str, dict[str, str]] | None = None,
) -> None:
    """Turn an exported GeoTIFF (sentinel for masked) into a contract stack, block by block."""

    with opened(src_path) as src:  # a file the user dropped in goes through the gate too
        if src.count != len(layers) or (src.width, src.height) != (grid.width, grid.height):
            raise RuntimeError(
                f"{src_path}: {src.count} bands {src.width}x{src.height}, expected "
                f"{len(layers)} bands {grid.width}x{grid.height}"
            )
        with (
            atomic_path(dest) as tmp,
            rasterio.open(tmp, "w", **stack_profile(grid, len(layers))) as dst,
        ):
            describe_bands(dst, layers, conventions)
            for window in plan_tiles(grid, len(layers)):
                block = src.read(window=window, out_dtype="float32")
                block[block <= _SENTINEL_CUT] = np.nan
                dst.write(block, window=window)


# --------------------------------------------------------------------------- batch exports


def export_params(grid: Grid, name: str, *, scale: float) -> dict[str, Any]:
    """Keyword arguments that make an export produce exactly `grid`.

    crs + crsTransform + "WIDTHxHEIGHT" (and no region or scale) is the combination for which
    Earth Engine cuts the exact rectangle of that pixel grid; adding `scale` or `region` would
    make it resample or snap the region differently, and the stack would no longer match the
    label. `scale` is only checked against the transform.
    """
    t = grid.transform
    if not math.isclose(abs(t.a), scale) or not math.isclose(abs(t.e), scale):
        raise ValueError(f"grid pixel {t.a} x {t.e} is not the configured scale {scale}")
    shard = 256
    side = math.ceil(max(grid.width, grid.height) / shard) * shard
    return {
        "description": re.sub(r"[^A-Za-z0-9_-]", "_", name)[:100],
        "fileNamePrefix": name,
        "crs": grid.crs.to_string(),
        "crsTransform": [t.a, t.b, t.c, t.d, t.e, t.f],
        "dimensions": f"{grid.width}x{grid.height}",
        "fileFormat": "GeoTIFF",
        "maxPixels": int(1e10),
        "shardSize": shard,
        "fileDimensions": side,  # one file, never split into tiles
    }


def start_export(
    image: Any,
    grid: Grid,
    name: str,
    *,
    mode: str,
    scale: float,
    bucket: str | None = None,
    drive_folder: str = "lsd",
) -> Any:
    """Create and start the export task; returns the ee.batch.Task."""
    import ee

    params = export_params(grid, name, scale=scale)
    if mode == "gcs":
        if not bucket:
            raise ValueError("gcs export needs a bucket")
        task = ee.batch.Export.image.toCloudStorage(unmasked(image), bucket=bucket, **params)
    elif mode == "drive":
        task = ee.batch.Export.image.toDrive(unmasked(image), folder=drive_folder, **params)
    else:
        raise ValueError(f"unknown export mode {mode}")
    task.start()
    return task


def wait_for_task(
    task: Any,
    *,
    poll_s: float = 15.0,
    timeout_s: float = 6 * 3600,
    sleep: Sleep | None = None,
    on_state: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Poll until the task ends; raise with Earth Engine's message if it did not complete."""
    waited = 0.0
    last = None
    while True:
        status = with_retries(task.status, sleep=sleep)
        state = status.get("state", "UNKNOWN")
        if state != last and on_state:
            on_state(state)
        last = state
        if state == "COMPLETED":
            return status
        if state in ("FAILED", "CANCELLED", "CANCEL_REQUESTED"):
            raise RuntimeError(f"export {state.lower()}: {status.get('error_message', '')}")
        if waited >= timeout_s:
            raise RuntimeError(f"export still {state} after {timeout_s:.0f} s")
        (sleep or time.sleep)(poll_s)
        waited += poll_s


def download_gcs(bucket: str, name: str, dest: Path, credentials: Any = None) -> Path:
    """Fetch gs://bucket/name.tif to `dest` with the same credentials Earth Engine used."""

    client = storage.Client(credentials=credentials, project=None)
    blob = client.bucket(bucket).blob(f"{name}.tif")
    with atomic_path(dest) as tmp:
        blob.download_to_filename(str(tmp))
    return dest


# --------------------------------------------------------------------------- one event's stack


def stack_writer(run: EventRun, grid: Grid, folder: Path) -> Callable[[Path], None] | None:
    """How stack.tif gets written: from an export the user dropped in, from a batch export, or
    by downloads per tile and band group. None when a Drive export must first be downloaded by
    the user."""

    src, spec, layers = run.src, run.spec, run.layers
    folder.mkdir(parents=True, exist_ok=True)
    dropped = folder / EXPORT_FILE
    if dropped.is_file():
        src.echo(f"event {spec.event_id}: converting {dropped}")
        return lambda dest: geotiff_to_stack(dropped, dest, layers, grid, run.conventions)
    image = run.image()
    if src.export:
        exported = run_export(src, spec, image, grid, folder)
        if exported is None:
            return None

        def from_export(dest: Path) -> None:
            geotiff_to_stack(exported, dest, layers, grid, run.conventions)
            exported.unlink(missing_ok=True)

        return from_export
    return lambda dest: download_event(run, image, grid, dest)


def download_event(run: EventRun, image: Any, grid: Grid, dest: Path) -> None:

    src, spec = run.src, run.spec
    requests = plan_requests(grid, len(run.layers))
    with tqdm(
        total=len(requests), desc=spec.event_id, unit="request", leave=False,
        disable=not src.show_progress, file=sys.stderr,
    ) as bar:  # fmt: skip
        download_stack(
            image, grid, run.layers, dest, sleep=src.sleep, progress=bar.update,
            on_retry=src.retry_note(spec.event_id), conventions=run.conventions,
        )  # fmt: skip


def run_export(
    src: EarthEngineSource, spec: EventSpec, image: Any, grid: Grid, folder: Path
) -> Path | None:
    """Run a batch export; return the downloaded GeoTIFF (gcs) or None (drive, user downloads)."""

    note = folder / EXPORT_NOTE
    name = f"lsd_{spec.event_id}"
    where = f"Google Drive folder '{DRIVE_FOLDER}' as {name}.tif"
    if src.export == "drive" and note.is_file():
        src.echo(
            f"event {spec.event_id}: already exported to {where}; "
            f"download it to {folder / EXPORT_FILE} and rerun"
        )
        return None
    task = start_export(
        image, grid, name, mode=src.export or "", scale=src.cfg.scale, bucket=src.bucket,
        drive_folder=DRIVE_FOLDER,
    )  # fmt: skip
    src.echo(f"event {spec.event_id}: export task {task.id} started ({src.export})")
    wait_for_task(
        task, sleep=src.sleep, on_state=lambda s: src.echo(f"event {spec.event_id}: export {s}")
    )
    if src.export == "drive":
        write_json(note, {"task_id": task.id, "drive_folder": DRIVE_FOLDER, "file": f"{name}.tif"})
        src.echo(
            f"event {spec.event_id}: exported to {where}; download it to "
            f"{folder / EXPORT_FILE} and rerun lsd fetch to finish the event"
        )
        return None
    dest = folder / ".export-download.tif"
    download_gcs(src.bucket or "", name, dest, credentials=current_credentials())
    return dest
