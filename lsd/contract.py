"""The file contract between gee/ (writes event folders) and training/ (reads them).

An event folder holds `stack.tif` (float32, one band per layer, band descriptions are the layer
names, NaN is no data), `label.tif` (uint8 on the same grid: 1 landslide, 0 not, 255 ignored) and
`event.json` (provenance). Everything that reads or writes those files goes through this module so
that both sides agree on names, codes and the atomic-write rule: a file only ever appears under its
final name once it is complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lsd.errors import UserError

STACK_FILE = "stack.tif"
LABEL_FILE = "label.tif"
EVENT_FILE = "event.json"

LABEL_BACKGROUND = 0
LABEL_LANDSLIDE = 1
LABEL_IGNORE = 255

# The paper's stack (Ganerod et al., Table 2), in its order.
PAPER_LAYERS: tuple[str, ...] = (
    "preVV", "postVV", "dVV", "preVH", "postVH", "dVH", "layover", "shadow", "liaDeg",
    "elevation", "slope", "kgClimate", "canopyHeight", "landCover", "dNDVI",
)  # fmt: skip

BUILTIN_SETTINGS: dict[str, tuple[str, ...]] = {
    "s1": PAPER_LAYERS[:9],
    "s2": ("landCover", "dNDVI"),
    "s1s2": PAPER_LAYERS[:9] + ("landCover", "dNDVI"),
    "all": PAPER_LAYERS,
}


# --------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_path(final: Path | str, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `final`; rename it into place only if the block succeeds.

    The temporary name starts with '.' and ends with '.partial', so an interrupted write never
    looks like a finished output and readers that list folders skip it.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
        os.close(fd)
        tmp = Path(name)
    # mkstemp/mkdtemp create private (0600/0700) entries; outputs should follow the umask
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod((0o777 if directory else 0o666) & ~umask)
    try:
        yield tmp
        if directory and final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path | str, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path | str) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not readable JSON ({exc})") from None


# --------------------------------------------------------------------------- settings


def load_settings_file(path: Path | str) -> dict[str, tuple[str, ...]]:
    """Read user settings from a TOML file with a `[settings]` table of name = [layers]."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: settings file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"{path}: not a readable TOML settings file ({exc})") from None
    table = doc.get("settings")
    if not isinstance(table, dict) or not table:
        raise UserError(f'{path}: needs a [settings] table, e.g. mine = ["dNDVI", "slope"]')
    out: dict[str, tuple[str, ...]] = {}
    for name, layers in table.items():
        if (
            not isinstance(layers, list)
            or not layers
            or not all(isinstance(x, str) and x for x in layers)
        ):
            raise UserError(f"{path}: setting '{name}' must be a non-empty list of layer names")
        out[name] = tuple(layers)
    return out


def resolve_setting(spec: str, settings_file: Path | str | None = None) -> tuple[str, ...]:
    """Turn `--setting` into layer names: a user setting, a built-in one, or 'a,b,c'."""
    spec = spec.strip()
    user = load_settings_file(settings_file) if settings_file else {}
    if spec in user:
        layers = user[spec]
    elif spec in BUILTIN_SETTINGS:
        layers = BUILTIN_SETTINGS[spec]
    elif "," in spec:
        layers = tuple(p.strip() for p in spec.split(",") if p.strip())
    elif spec:
        # a single layer name is a valid one-layer setting only if it is not a typo of a setting
        known = ", ".join(sorted(set(BUILTIN_SETTINGS) | set(user)))
        if spec.lower() in {k.lower() for k in BUILTIN_SETTINGS}:
            raise UserError(f"unknown setting '{spec}' (settings are case-sensitive: {known})")
        layers = (spec,)
    else:
        layers = ()
    if not layers:
        raise UserError("--setting is empty: give s1, s2, s1s2, all, a user setting or 'a,b,c'")
    dupes = sorted({x for x in layers if layers.count(x) > 1})
    if dupes:
        raise UserError(f"setting '{spec}' names layer(s) twice: {', '.join(dupes)}")
    return layers


# --------------------------------------------------------------------------- rasters


@dataclass(frozen=True)
class Grid:
    """Where a raster sits: size, CRS (None when the source had no georeferencing), transform."""

    width: int
    height: int
    crs: Any
    transform: Any

    def same_as(self, other: Grid) -> bool:
        return (
            self.width == other.width
            and self.height == other.height
            and (self.crs == other.crs)
            and self.transform.almost_equals(other.transform)
        )


def _open(path: Path):
    import rasterio

    if not path.exists():
        raise UserError(f"{path}: file not found")
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise UserError(f"{path}: not a readable raster ({str(exc).splitlines()[0]})") from None


def read_layer_names(stack_path: Path | str) -> tuple[str, ...]:
    """Layer names come from band descriptions; a stack without them cannot be trusted."""
    stack_path = Path(stack_path)
    with _open(stack_path) as src:
        names = tuple(src.descriptions)
    missing = [i + 1 for i, n in enumerate(names) if not n]
    if missing:
        raise UserError(
            f"{stack_path}: band(s) {', '.join(map(str, missing))} have no layer name "
            "(band description); lsd needs every band named"
        )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"{stack_path}: layer name(s) used twice: {', '.join(dupes)}")
    return names


def read_grid(path: Path | str) -> Grid:
    with _open(Path(path)) as src:
        return Grid(src.width, src.height, src.crs, src.transform)


def read_stack(
    stack_path: Path | str, layers: Sequence[str] | None = None
) -> tuple[np.ndarray, tuple[str, ...], Grid]:
    """Read the named layers (all when None) as float32 (C, H, W), in the order asked for."""
    stack_path = Path(stack_path)
    names = read_layer_names(stack_path)
    wanted = tuple(layers) if layers is not None else names
    absent = [n for n in wanted if n not in names]
    if absent:
        raise UserError(f"{stack_path}: lacks layer(s) {', '.join(absent)}")
    with _open(stack_path) as src:
        idx = [names.index(n) + 1 for n in wanted]
        data = src.read(idx, out_dtype="float32")
        if src.nodata is not None and not np.isnan(src.nodata):
            data[data == src.nodata] = np.nan
        grid = Grid(src.width, src.height, src.crs, src.transform)
    return data, wanted, grid


def read_label(label_path: Path | str) -> tuple[np.ndarray, Grid]:
    label_path = Path(label_path)
    with _open(label_path) as src:
        if src.count != 1:
            raise UserError(f"{label_path}: a label must have one band, found {src.count}")
        data = src.read(1)
        grid = Grid(src.width, src.height, src.crs, src.transform)
    bad = np.setdiff1d(np.unique(data), [LABEL_BACKGROUND, LABEL_LANDSLIDE, LABEL_IGNORE])
    if bad.size:
        raise UserError(
            f"{label_path}: label values must be 0, 1 or 255; found {', '.join(map(str, bad[:5]))}"
        )
    return data.astype(np.uint8, copy=False), grid


def raster_profile(
    grid: Grid, count: int, dtype: str, nodata: float | int | None
) -> dict[str, Any]:
    """The GeoTIFF layout every lsd raster shares; writers that stream tiles use it too, so a
    streamed stack is laid out exactly like one written whole."""
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": count,
        "dtype": dtype,
        "nodata": nodata,
        "compress": "deflate",
        "predictor": 3 if dtype == "float32" else 2,
        "interleave": "band",
    }
    if grid.crs is not None:
        profile["crs"] = grid.crs
    if grid.transform is not None:
        profile["transform"] = grid.transform
    if grid.width >= 512 and grid.height >= 512:
        profile.update(tiled=True, blockxsize=512, blockysize=512)
    return profile


def write_stack(
    stack_path: Path | str, data: np.ndarray, layers: Sequence[str], grid: Grid
) -> None:
    """Write a (C, H, W) float32 stack with band descriptions, atomically."""
    import rasterio

    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 3 or data.shape[0] != len(layers):
        raise ValueError(f"stack shape {data.shape} does not match {len(layers)} layer names")
    if data.shape[1:] != (grid.height, grid.width):
        raise ValueError(f"stack shape {data.shape} does not match grid {grid}")
    with (
        atomic_path(stack_path) as tmp,
        rasterio.open(
            tmp, "w", **raster_profile(grid, len(layers), "float32", float("nan"))
        ) as dst,
    ):
        dst.write(data)
        for i, name in enumerate(layers, start=1):
            dst.set_band_description(i, name)


def write_label(label_path: Path | str, label: np.ndarray, grid: Grid) -> None:
    import rasterio

    label = np.asarray(label)
    if label.shape != (grid.height, grid.width):
        raise ValueError(f"label shape {label.shape} does not match grid {grid}")
    with (
        atomic_path(label_path) as tmp,
        rasterio.open(tmp, "w", **raster_profile(grid, 1, "uint8", LABEL_IGNORE)) as dst,
    ):
        dst.write(label.astype(np.uint8), 1)
        dst.set_band_description(1, "label")


# --------------------------------------------------------------------------- event folders


@dataclass(frozen=True)
class EventFolder:
    """A checked event folder: layer names known, label (if any) on the stack's grid."""

    path: Path
    layers: tuple[str, ...]
    grid: Grid
    meta: dict[str, Any]

    @property
    def event_id(self) -> str:
        return self.path.name

    @property
    def stack(self) -> Path:
        return self.path / STACK_FILE

    @property
    def label(self) -> Path:
        return self.path / LABEL_FILE

    @property
    def role(self) -> str | None:
        """The split role recorded at fetch/import time: train, val or test (or None)."""
        role = self.meta.get("role")
        return role if role in ("train", "val", "test") else None


def event_complete(folder: Path | str, *, need_label: bool = True) -> bool:
    """Writers put event.json last, so its presence beside the rasters marks a finished folder;
    reruns of fetch and import skip such folders."""
    folder = Path(folder)
    needed = (STACK_FILE, EVENT_FILE) + ((LABEL_FILE,) if need_label else ())
    return all((folder / name).is_file() for name in needed)


def open_event(path: Path | str, *, need_label: bool = True) -> EventFolder:
    path = Path(path)
    stack = path / STACK_FILE
    if not stack.exists():
        raise UserError(f"{path}: no {STACK_FILE} in this event folder")
    layers = read_layer_names(stack)
    grid = read_grid(stack)
    label = path / LABEL_FILE
    if need_label:
        if not label.exists():
            raise UserError(f"{path}: event has no {LABEL_FILE}")
        lgrid = read_grid(label)
        if not lgrid.same_as(grid):
            raise UserError(
                f"{label}: label grid ({lgrid.width}x{lgrid.height}, {lgrid.crs}) differs from "
                f"its stack ({grid.width}x{grid.height}, {grid.crs})"
            )
    meta_path = path / EVENT_FILE
    meta = read_json(meta_path) if meta_path.exists() else {}
    return EventFolder(path=path, layers=layers, grid=grid, meta=meta)


def list_events(data_dir: Path | str, *, need_label: bool = True) -> list[EventFolder]:
    """Every event folder under `data_dir`, sorted by id; errors name the folder at fault."""
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise UserError(f"{data_dir}: data folder not found")
    if not data_dir.is_dir():
        raise UserError(f"{data_dir}: not a folder")
    try:
        children = sorted(
            p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
    except PermissionError:
        raise UserError(f"{data_dir}: data folder is not readable") from None
    events = [open_event(p, need_label=need_label) for p in children if (p / STACK_FILE).exists()]
    if not events:
        raise UserError(f"{data_dir}: no event folders (sub-folders with {STACK_FILE}) found")
    return events


def check_writable(out_dir: Path | str) -> Path:
    """Fail early, with one line, when an output folder cannot be created or written."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".lsd-write-test."):
            pass
    except OSError as exc:
        raise UserError(f"{out_dir}: output folder cannot be written ({exc.strerror})") from None
    return out_dir
