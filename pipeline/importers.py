"""Turn labelled datasets made elsewhere into lsd event folders.

Public landslide datasets come as HDF5 patches (Landslide4Sense) or as image/mask tile pairs
(PNG or GeoTIFF, with their own label codes). Converting them once into the file contract lets
`lsd train` and `lsd evaluate` treat them exactly like fetched events, so the model grid and the
metrics never need a dataset-specific reader.

Each event folder is written file by file through `atomic_path`, with event.json last: a folder
holding all three files is finished and a rerun skips it; a folder without event.json was cut
short and is written again.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from lsd import __version__
from lsd.contract import (
    EVENT_FILE,
    LABEL_BACKGROUND,
    LABEL_FILE,
    LABEL_IGNORE,
    LABEL_LANDSLIDE,
    STACK_FILE,
    Grid,
    check_writable,
    write_json,
    write_label,
    write_stack,
)
from lsd.contract import event_complete as is_finished  # reruns skip finished folders
from lsd.errors import UserError

# The dataset's own channel order: Sentinel-2 bands without B8A, then slope, then ALOS elevation.
L4S_LAYERS: tuple[str, ...] = (
    "B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11", "B12",
    "slope", "elevation",
)  # fmt: skip
L4S_RESOLUTION_M = 10.0
L4S_IMAGE_KEY = "img"
L4S_MASK_KEY = "mask"

LABEL_CODES: dict[str, str] = {
    str(LABEL_BACKGROUND): "not landslide",
    str(LABEL_LANDSLIDE): "landslide",
    str(LABEL_IGNORE): "ignored (unknown or unlabelled)",
}
TILE_SUFFIXES = (".png", ".tif", ".tiff")
MAPPING_EXAMPLE = "0:255,1:0,2:1"
MASK_REDUCTION_RULE = "any channel nonzero -> 1, else 0 (multi-band masks only, before mapping)"


# --------------------------------------------------------------------------- small helpers


def parse_mapping(text: str) -> dict[int, int]:
    """Parse `--mapping` ('source:target,...'); targets must be lsd label codes 0, 1 or 255.

    Requiring every code to be named (no default) is deliberate: datasets disagree on what 0
    means (Chittagong uses it for "unlabelled"), and a silent guess would corrupt the metrics.
    """
    text = (text or "").strip()
    if not text:
        raise UserError(f"--mapping is empty; give source:target pairs, e.g. {MAPPING_EXAMPLE}")
    mapping: dict[int, int] = {}
    allowed = (LABEL_BACKGROUND, LABEL_LANDSLIDE, LABEL_IGNORE)
    for item in text.split(","):
        item = item.strip()
        match = re.fullmatch(r"(-?\d+)\s*:\s*(-?\d+)", item)
        if not match:
            raise UserError(
                f"--mapping: '{item}' is not source:target with whole numbers "
                f"(e.g. {MAPPING_EXAMPLE})"
            )
        source, target = int(match.group(1)), int(match.group(2))
        if target not in allowed:
            raise UserError(
                f"--mapping: target {target} in '{item}' must be 0 (not landslide), "
                "1 (landslide) or 255 (ignored)"
            )
        if source in mapping:
            raise UserError(f"--mapping: source value {source} is mapped twice")
        mapping[source] = target
    return mapping


def format_mapping(mapping: dict[int, int]) -> str:
    return ",".join(f"{s}:{t}" for s, t in mapping.items())


def parse_layers(text: str) -> list[str]:
    """Split `--layers R,G,B,NIR`; names must be non-empty and distinct (they become band names)."""
    names = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not n for n in names):
        raise UserError(f"--layers '{text}': give comma-separated non-empty names, e.g. R,G,B,NIR")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"--layers names layer(s) twice: {', '.join(dupes)}")
    return names


def _natural_key(path: Path) -> list[Any]:
    """image_2 before image_10: the order users expect in listings and progress."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _check_source(src: Path) -> None:
    if not src.exists():
        raise UserError(f"{src}: source folder not found")
    if not src.is_dir():
        raise UserError(f"{src}: source is not a folder")


def _progress(items: list[Any], desc: str, enabled: bool) -> Iterator[tuple[Any, Any]]:
    """Yield (bar, item) so the loop can report skipped folders in the bar's postfix."""
    from tqdm import tqdm

    with tqdm(items, desc=desc, unit="event", disable=not enabled, leave=True) as bar:
        for item in bar:
            yield bar, item


def _write_event(
    folder: Path,
    stack: np.ndarray,
    layers: Iterable[str],
    label: np.ndarray,
    grid: Grid,
    meta: dict[str, Any],
) -> None:
    """Write stack, label, then event.json; leftovers of an interrupted run are cleared first."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(".*.partial"):
            if stale.is_file():
                stale.unlink()
        write_stack(folder / STACK_FILE, stack, list(layers), grid)
        write_label(folder / LABEL_FILE, label, grid)
        write_json(folder / EVENT_FILE, meta)
    except OSError as exc:
        raise UserError(f"{folder}: cannot write event folder ({exc.strerror or exc})") from None


def _base_meta(event_id: str, dataset: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "dataset": dataset,
        "imported_by": f"lsd {__version__}",
        "imported_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------- Landslide4Sense


def _l4s_pairs(src: Path) -> list[tuple[str, Path, Path]]:
    """(event id, image, mask) for every img/image_N.h5; a missing mask is an error up front."""
    _check_source(src)
    img_dir, mask_dir = src / "img", src / "mask"
    if not img_dir.is_dir():
        raise UserError(
            f"{src}: no img/ folder (a Landslide4Sense folder holds img/image_N.h5 and "
            "mask/mask_N.h5)"
        )
    images = sorted(img_dir.glob("*.h5"), key=_natural_key)
    if not images:
        raise UserError(f"{img_dir}: no .h5 images found")
    pairs = []
    for image in images:
        if not image.stem.startswith("image_"):
            raise UserError(f"{image}: expected a name like image_N.h5")
        mask = mask_dir / f"mask_{image.stem[len('image_') :]}.h5"
        if not mask.is_file():
            raise UserError(f"{image}: no matching mask {mask}")
        pairs.append((f"l4s_{image.stem}", image, mask))
    return pairs


def _read_h5(path: Path, key: str) -> np.ndarray:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if key not in f:
                found = ", ".join(sorted(f.keys())) or "none"
                raise UserError(f"{path}: no dataset '{key}' (found: {found})")
            return np.asarray(f[key][()])
    except OSError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: not a readable HDF5 file ({reason})") from None


def _read_l4s_pair(image: Path, mask: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return the stack as float32 (C, H, W) and the label as uint8 (H, W), both checked."""
    img = _read_h5(image, L4S_IMAGE_KEY)
    if img.ndim != 3 or img.shape[2] != len(L4S_LAYERS):
        raise UserError(
            f"{image}: dataset '{L4S_IMAGE_KEY}' has shape {tuple(img.shape)}, expected "
            f"(height, width, {len(L4S_LAYERS)})"
        )
    if not np.issubdtype(img.dtype, np.number):
        raise UserError(f"{image}: dataset '{L4S_IMAGE_KEY}' holds {img.dtype}, not numbers")
    lab = _read_h5(mask, L4S_MASK_KEY)
    if lab.shape != img.shape[:2]:
        raise UserError(
            f"{mask}: dataset '{L4S_MASK_KEY}' has shape {tuple(lab.shape)}, expected "
            f"{tuple(img.shape[:2])} to match {image.name}"
        )
    values = np.unique(lab)
    bad = [v for v in values.tolist() if v not in (0, 1)]
    if bad:
        raise UserError(f"{mask}: mask value {bad[0]} is not 0 or 1")
    stack = np.ascontiguousarray(np.moveaxis(img, 2, 0), dtype=np.float32)
    return stack, lab.astype(np.uint8)


def import_landslide4sense(src: Path, dest: Path, progress: bool = True) -> list[Path]:
    """Import every Landslide4Sense patch under `src` into `dest/l4s_image_N/`.

    The patches carry no georeferencing, so the rasters get no CRS and a nominal 10 m pixel grid
    at origin (0, 0); event.json says so, and nothing downstream may treat the position as real.
    """
    src, dest = Path(src), Path(dest)
    pairs = _l4s_pairs(src)
    check_writable(dest)
    from affine import Affine

    out: list[Path] = []
    skipped = 0
    for bar, (event_id, image, mask) in _progress(pairs, "import landslide4sense", progress):
        folder = dest / event_id
        out.append(folder)
        if is_finished(folder):
            skipped += 1
            bar.set_postfix(skipped=skipped, refresh=False)
            continue
        stack, label = _read_l4s_pair(image, mask)
        height, width = label.shape
        transform = Affine(L4S_RESOLUTION_M, 0.0, 0.0, 0.0, -L4S_RESOLUTION_M, 0.0)
        grid = Grid(width=width, height=height, crs=None, transform=transform)
        meta = _base_meta(event_id, "Landslide4Sense")
        meta.update(
            source={"image": str(image.resolve()), "mask": str(mask.resolve())},
            layers=list(L4S_LAYERS),
            georeferenced=False,
            crs=None,
            transform=list(transform)[:6],
            nominal_resolution_m=L4S_RESOLUTION_M,
            georeferencing_note=(
                "the source patch has no location; the transform is a nominal 10 m grid at "
                "(0, 0), not a place on Earth"
            ),
            label_codes=LABEL_CODES,
            source_label_mapping={"0": LABEL_BACKGROUND, "1": LABEL_LANDSLIDE},
        )
        _write_event(folder, stack, L4S_LAYERS, label, grid, meta)
    return out


# --------------------------------------------------------------------------- image/mask tiles


def _tile_files(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in TILE_SUFFIXES),
        key=_natural_key,
    )


def _resolve_pairs_file(src: Path, pairs: Path) -> Path:
    """A relative --pairs path is looked up in SRC first (map.txt usually sits there)."""
    if not pairs.is_absolute() and (src / pairs).is_file():
        return src / pairs
    if pairs.is_file():
        return pairs
    raise UserError(f"{pairs}: pairs file not found (looked in {src} and the current folder)")


def _pairs_from_file(src: Path, pairs: Path) -> list[tuple[Path, Path]]:
    """Read 'image mask' lines (Esri map.txt style, Windows separators allowed)."""
    path = _resolve_pairs_file(src, pairs)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: pairs file not readable ({exc})") from None
    out = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split("\t") if "\t" in text else text.split()
        parts = [p.strip() for p in parts if p.strip()]
        if len(parts) != 2:
            raise UserError(f"{path} line {number}: expected 'image mask', found '{text}'")
        image, mask = (path.parent / p.replace("\\", "/") for p in parts)
        if not image.is_file():
            raise UserError(f"{path} line {number}: image {image} not found")
        if not mask.is_file():
            raise UserError(f"{path} line {number}: mask {mask} for {image.name} not found")
        out.append((image, mask))
    if not out:
        raise UserError(f"{path}: pairs file lists no image/mask pairs")
    return out


def _pairs_by_stem(src: Path, images_dir: str, masks_dir: str) -> list[tuple[Path, Path]]:
    img_dir, mask_dir = src / images_dir, src / masks_dir
    for folder, option in ((img_dir, "--images-dir"), (mask_dir, "--masks-dir")):
        if not folder.is_dir():
            raise UserError(f"{folder}: folder not found (set {option}, or give --pairs)")
    images = _tile_files(img_dir)
    if not images:
        raise UserError(f"{img_dir}: no PNG or GeoTIFF images found")
    masks: dict[str, Path] = {}
    for mask in _tile_files(mask_dir):
        if mask.stem in masks:
            raise UserError(f"{mask}: two masks named {mask.stem} ({masks[mask.stem].name})")
        masks[mask.stem] = mask
    out = []
    for image in images:
        if image.stem not in masks:
            raise UserError(f"{image}: no mask with the same name in {mask_dir}")
        out.append((image, masks[image.stem]))
    return out


def _open_raster(path: Path):
    import rasterio

    try:
        with warnings.catch_warnings():
            # PNGs have no georeferencing; that is reported in event.json, not as a warning.
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "unknown format"
        raise UserError(f"{path}: not a readable PNG/GeoTIFF ({reason})") from None


def _check_png(path: Path) -> None:
    """GDAL fills a truncated PNG with zeros without an error; Pillow's full decode notices."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{path}: not a readable PNG/GeoTIFF ({exc})") from None


def _read_bands(path: Path) -> tuple[np.ndarray, list[str | None], Any]:
    """Read every non-alpha band; alpha says where a PNG is drawn, not what is there."""
    from rasterio.enums import ColorInterp
    from rasterio.errors import RasterioError

    with _open_raster(path) as ds:
        keep = [i for i, ci in enumerate(ds.colorinterp, 1) if ci != ColorInterp.alpha]
        if not keep:
            raise UserError(f"{path}: has only an alpha band")
        try:
            data = ds.read(keep)
        except (RasterioError, OSError) as exc:  # truncated or corrupt pixel data
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"{path}: not a readable PNG/GeoTIFF ({reason})") from None
        if ds.driver == "PNG":
            _check_png(path)
        nodata = [ds.nodatavals[i - 1] for i in keep]
        descriptions = [ds.descriptions[i - 1] for i in keep]
        info = {
            "crs": ds.crs,
            "transform": ds.transform,
            "width": ds.width,
            "height": ds.height,
            "driver": ds.driver,
            "nodata": nodata,
        }
    return data, descriptions, info


def _is_georeferenced(info: dict[str, Any]) -> bool:
    from affine import Affine

    return info["crs"] is not None or info["transform"] != Affine.identity()


def _tile_grid(info: dict[str, Any]) -> tuple[Grid, bool]:
    """Keep a real grid exactly; give an ungeoreferenced tile a nominal north-up 1-unit grid.

    The nominal grid covers x 0..width, y 0..height. Its top-left corner sits at (0, height)
    rather than (0, 0) because GDAL drops a (flipped) identity transform, and readers would then
    warn; with no CRS it claims no place on Earth.
    """
    from affine import Affine

    if _is_georeferenced(info):
        return Grid(info["width"], info["height"], info["crs"], info["transform"]), True
    nominal = Affine(1.0, 0.0, 0.0, 0.0, -1.0, float(info["height"]))
    return Grid(info["width"], info["height"], None, nominal), False


def _layer_names(
    image: Path, count: int, descriptions: list[str | None], driver: str, layers: list[str] | None
) -> list[str]:
    if layers is not None:
        if len(layers) != count:
            raise UserError(
                f"{image}: has {count} band(s) but --layers names {len(layers)} "
                f"({','.join(layers)})"
            )
        return list(layers)
    if all(descriptions) and len(set(descriptions)) == count:
        return [str(d) for d in descriptions]
    if driver == "PNG" and count == 3:
        return ["R", "G", "B"]
    return [f"band{i}" for i in range(1, count + 1)]


def _map_mask(mask_path: Path, mask: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    values = np.unique(mask)
    unmapped = [v for v in values.tolist() if v not in mapping]
    if unmapped:
        shown = ", ".join(str(v) for v in unmapped[:5])
        raise UserError(
            f"{mask_path}: mask value(s) {shown} not in --mapping {format_mapping(mapping)}"
        )
    out = np.full(mask.shape, LABEL_IGNORE, dtype=np.uint8)
    for source, target in mapping.items():
        out[mask == source] = target
    return out


def _read_tile_pair(
    image: Path, mask: Path, mapping: dict[int, int], layers: list[str] | None
) -> tuple[np.ndarray, list[str], np.ndarray, Grid, dict[str, Any]]:
    data, descriptions, info = _read_bands(image)
    names = _layer_names(image, data.shape[0], descriptions, info["driver"], layers)
    stack = data.astype(np.float32)
    for band, nodata in enumerate(info["nodata"]):
        if nodata is not None and not np.isnan(nodata):
            stack[band][data[band] == nodata] = np.nan
    grid, georeferenced = _tile_grid(info)

    mdata, _, minfo = _read_bands(mask)
    if (minfo["height"], minfo["width"]) != (info["height"], info["width"]):
        raise UserError(
            f"{mask}: mask is {minfo['width']}x{minfo['height']} pixels but image {image.name} "
            f"is {info['width']}x{info['height']}"
        )
    if (
        georeferenced
        and _is_georeferenced(minfo)
        and (minfo["crs"] != info["crs"] or not minfo["transform"].almost_equals(info["transform"]))
    ):
        raise UserError(f"{mask}: mask georeferencing differs from image {image.name}")
    reduced = mdata.shape[0] > 1
    mask2d = (mdata != 0).any(axis=0).astype(np.uint8) if reduced else mdata[0]
    label = _map_mask(mask, mask2d, mapping)
    extra = {
        "georeferenced": georeferenced,
        "crs": grid.crs.to_string() if grid.crs is not None else None,
        "transform": list(grid.transform)[:6],
        "mask_reduction": MASK_REDUCTION_RULE if reduced else None,
    }
    if not georeferenced:
        extra["georeferencing_note"] = (
            f"{image.name} has no georeferencing; the transform is a nominal 1-unit pixel grid "
            "with its lower-left corner at (0, 0), not a place on Earth"
        )
    return stack, names, label, grid, extra


def import_tiles(
    src: Path,
    dest: Path,
    mapping: dict[int, int],
    *,
    images_dir: str = "images",
    masks_dir: str = "masks",
    pairs: Path | None = None,
    layers: list[str] | None = None,
    prefix: str = "",
    progress: bool = True,
) -> list[Path]:
    """Import image/mask tile pairs under `src` into `dest/<prefix><image stem>/`.

    Pairs come from a pairs file (relative paths resolved beside it) or from identical stems in
    `images_dir` and `masks_dir`. Mask values go through `mapping` to lsd codes; a value the
    mapping does not name stops the import, because guessing would mislabel pixels.
    """
    src, dest = Path(src), Path(dest)
    _check_source(src)
    if not mapping:
        raise UserError(f"--mapping is empty; give source:target pairs, e.g. {MAPPING_EXAMPLE}")
    if layers is not None:
        layers = parse_layers(",".join(layers))
    if pairs is not None:
        pair_list = _pairs_from_file(src, Path(pairs))
        pairs_path: str | None = str(_resolve_pairs_file(src, Path(pairs)).resolve())
    else:
        pair_list = _pairs_by_stem(src, images_dir, masks_dir)
        pairs_path = None
    seen: dict[str, Path] = {}
    for image, _ in pair_list:
        if image.stem in seen:
            raise UserError(f"{image}: two images named {image.stem} ({seen[image.stem]})")
        seen[image.stem] = image
    check_writable(dest)

    out: list[Path] = []
    skipped = 0
    for bar, (image, mask) in _progress(pair_list, "import tiles", progress):
        event_id = f"{prefix}{image.stem}"
        folder = dest / event_id
        out.append(folder)
        if is_finished(folder):
            skipped += 1
            bar.set_postfix(skipped=skipped, refresh=False)
            continue
        stack, names, label, grid, extra = _read_tile_pair(image, mask, mapping, layers)
        meta = _base_meta(event_id, "tiles")
        meta.update(
            source={
                "image": str(image.resolve()),
                "mask": str(mask.resolve()),
                "pairs": pairs_path,
            },
            layers=names,
            **extra,
            label_codes=LABEL_CODES,
            source_label_mapping={str(s): t for s, t in mapping.items()},
        )
        _write_event(folder, stack, names, label, grid, meta)
    return out
