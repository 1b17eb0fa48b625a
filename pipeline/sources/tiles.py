"""Image/mask tile pairs (PNG or GeoTIFF, with their own label codes) as a data source.

Pairs come from a pairs file (Esri map.txt style, relative paths resolved beside it) or from
identical file stems in an image and a mask folder. Mask values go through an explicit mapping to
lsd codes; a value the mapping does not name stops the import, because datasets disagree on what
0 means (Chittagong uses it for "unlabelled") and a silent guess would corrupt the metrics. A
tile's georeferencing is kept exactly; a tile without one gets a nominal 1-unit pixel grid and
event.json says so.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from PIL import Image
from rasterio.enums import ColorInterp
from rasterio.errors import RasterioError

from lsd import conventions as cv
from lsd.errors import InputNotFound, InvalidFile, InvalidValue
from lsd.events import event_record, write_event
from lsd.formats import open_raster
from lsd.limits import check_memory, check_raster
from lsd.pipeline.conventions import DatasetConventions, detect_for_import
from lsd.pipeline.sources.common import check_source_folder, natural_key
from lsd.rasters import LABEL_BACKGROUND, LABEL_IGNORE, LABEL_LANDSLIDE, Grid

TILE_SUFFIXES = (".png", ".tif", ".tiff")
MAPPING_EXAMPLE = "0:255,1:0,2:1"
MASK_REDUCTION_RULE = "any channel nonzero -> 1, else 0 (multi-band masks only, before mapping)"


@dataclass(frozen=True)
class TilePair:
    event_id: str
    image: Path
    mask: Path


def parse_mapping(text: str) -> dict[int, int]:
    """Parse a label mapping ('source:target,...'); targets must be lsd label codes 0, 1 or 255.

    Requiring every code to be named (no default) is deliberate: datasets disagree on what 0
    means (Chittagong uses it for "unlabelled"), and a silent guess would corrupt the metrics.
    """
    text = (text or "").strip()
    if not text:
        raise InvalidValue(
            f"the label mapping is empty; give source:target pairs, e.g. {MAPPING_EXAMPLE}",
            field="mapping",
        )
    mapping: dict[int, int] = {}
    allowed = (LABEL_BACKGROUND, LABEL_LANDSLIDE, LABEL_IGNORE)
    for item in text.split(","):
        item = item.strip()
        match = re.fullmatch(r"(-?\d+)\s*:\s*(-?\d+)", item)
        if not match:
            raise InvalidValue(
                f"'{item}' is not source:target with whole numbers (e.g. {MAPPING_EXAMPLE})",
                field="mapping",
            )
        source, target = int(match.group(1)), int(match.group(2))
        if target not in allowed:
            raise InvalidValue(
                f"target {target} in '{item}' must be 0 (not landslide), "
                "1 (landslide) or 255 (ignored)",
                field="mapping",
            )
        if source in mapping:
            raise InvalidValue(f"source value {source} is mapped twice", field="mapping")
        mapping[source] = target
    return mapping


def format_mapping(mapping: dict[int, int]) -> str:
    return ",".join(f"{s}:{t}" for s, t in mapping.items())


def check_layer_names(layers: Sequence[str]) -> list[str]:
    """Layer names for the image bands: non-empty and distinct (they become band names)."""
    names = [str(n).strip() for n in layers]
    if not names or any(not n for n in names):
        raise InvalidValue(
            f"'{','.join(names)}': give non-empty layer names, e.g. R,G,B,NIR", field="layers"
        )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidValue(f"layer name(s) given twice: {', '.join(dupes)}", field="layers")
    return names


def _tile_files(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in TILE_SUFFIXES),
        key=natural_key,
    )


def _resolve_pairs_file(src: Path, pairs: Path) -> Path:
    """A relative pairs-file path is looked up in SRC first (map.txt usually sits there)."""
    if not pairs.is_absolute() and (src / pairs).is_file():
        return src / pairs
    if pairs.is_file():
        return pairs
    raise InputNotFound(f"{pairs}: pairs file not found (looked in {src} and the current folder)")


def _pairs_from_file(src: Path, pairs: Path) -> list[tuple[Path, Path]]:
    """Read 'image mask' lines (Esri map.txt style, Windows separators allowed)."""
    path = _resolve_pairs_file(src, pairs)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidFile(f"{path}: pairs file not readable ({exc})") from None
    out = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split("\t") if "\t" in text else text.split()
        parts = [p.strip() for p in parts if p.strip()]
        if len(parts) != 2:
            raise InvalidFile(f"{path} line {number}: expected 'image mask', found '{text}'")
        image, mask = (path.parent / p.replace("\\", "/") for p in parts)
        if not image.is_file():
            raise InputNotFound(f"{path} line {number}: image {image} not found")
        if not mask.is_file():
            raise InputNotFound(f"{path} line {number}: mask {mask} for {image.name} not found")
        out.append((image, mask))
    if not out:
        raise InvalidFile(f"{path}: pairs file lists no image/mask pairs")
    return out


def _pairs_by_stem(src: Path, images_dir: str, masks_dir: str) -> list[tuple[Path, Path]]:
    img_dir, mask_dir = src / images_dir, src / masks_dir
    for folder, option in ((img_dir, "images_dir"), (mask_dir, "masks_dir")):
        if not folder.is_dir():
            raise InputNotFound(
                f"{folder}: folder not found (name the right folder, or give a pairs file)",
                field=option,
            )
    images = _tile_files(img_dir)
    if not images:
        raise InvalidFile(f"{img_dir}: no PNG or GeoTIFF images found")
    masks: dict[str, Path] = {}
    for mask in _tile_files(mask_dir):
        if mask.stem in masks:
            raise InvalidFile(f"{mask}: two masks named {mask.stem} ({masks[mask.stem].name})")
        masks[mask.stem] = mask
    out = []
    for image in images:
        if image.stem not in masks:
            raise InvalidFile(f"{image}: no mask with the same name in {mask_dir}")
        out.append((image, masks[image.stem]))
    return out


def _open_raster(path: Path):
    """A tile, opened only as the format its name says and never with files beside it
    (lsd.formats): a .png or .tif that is really a VRT must not read other files."""

    with warnings.catch_warnings():
        # PNGs have no georeferencing; that is reported in event.json, not as a warning.
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        return open_raster(path, TILE_SUFFIXES)


def _check_png(path: Path) -> None:
    """GDAL fills a truncated PNG with zeros without an error; Pillow's full decode notices.
    Pillow may decode it only as a PNG (some of its other formats run external programs)."""

    try:
        with Image.open(path, formats=["PNG"]) as im:
            im.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidFile(f"{path}: not a readable PNG/GeoTIFF ({exc})") from None


def _read_bands(path: Path) -> tuple[np.ndarray, list[str | None], Any]:
    """Read every non-alpha band; alpha says where a PNG is drawn, not what is there."""

    with _open_raster(path) as ds:
        keep = [i for i, ci in enumerate(ds.colorinterp, 1) if ci != ColorInterp.alpha]
        if not keep:
            raise InvalidFile(f"{path}: has only an alpha band")
        check_raster(ds, path)
        itemsize = max(np.dtype(ds.dtypes[i - 1]).itemsize for i in keep)
        check_memory(f"reading {path} ({len(keep)} bands of {ds.width} x {ds.height} pixels)",
                     (itemsize + 4.0) * len(keep) * ds.width * ds.height)  # fmt: skip
        try:
            data = ds.read(keep)
        except (RasterioError, OSError) as exc:  # truncated or corrupt pixel data
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InvalidFile(f"{path}: not a readable PNG/GeoTIFF ({reason})") from None
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

    return info["crs"] is not None or info["transform"] != Affine.identity()


def _tile_grid(info: dict[str, Any]) -> tuple[Grid, bool]:
    """Keep a real grid exactly; give an ungeoreferenced tile a nominal north-up 1-unit grid.

    The nominal grid covers x 0..width, y 0..height. Its top-left corner sits at (0, height)
    rather than (0, 0) because GDAL drops a (flipped) identity transform, and readers would then
    warn; with no CRS it claims no place on Earth.
    """

    if _is_georeferenced(info):
        return Grid(info["width"], info["height"], info["crs"], info["transform"]), True
    nominal = Affine(1.0, 0.0, 0.0, 0.0, -1.0, float(info["height"]))
    return Grid(info["width"], info["height"], None, nominal), False


def _layer_names(
    image: Path, count: int, descriptions: list[str | None], driver: str, layers: list[str] | None
) -> list[str]:
    if layers is not None:
        if len(layers) != count:
            raise InvalidFile(
                f"{image}: has {count} band(s) but {len(layers)} layer names are given "
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
        raise InvalidFile(
            f"{mask_path}: mask value(s) {shown} not in the label mapping {format_mapping(mapping)}"
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
        raise InvalidFile(
            f"{mask}: mask is {minfo['width']}x{minfo['height']} pixels but image {image.name} "
            f"is {info['width']}x{info['height']}"
        )
    if (
        georeferenced
        and _is_georeferenced(minfo)
        and (minfo["crs"] != info["crs"] or not minfo["transform"].almost_equals(info["transform"]))
    ):
        raise InvalidFile(f"{mask}: mask georeferencing differs from image {image.name}")
    reduced = mdata.shape[0] > 1
    mask2d = (mdata != 0).any(axis=0).astype(np.uint8) if reduced else mdata[0]
    label = _map_mask(mask, mask2d, mapping)
    extra: dict[str, Any] = {"georeferenced": georeferenced, "mask_reduction": reduced}
    if not georeferenced:
        extra["georeferencing_note"] = (
            f"{image.name} has no georeferencing; the transform is a nominal 1-unit pixel grid "
            "with its lower-left corner at (0, 0), not a place on Earth"
        )
    return stack, names, label, grid, extra


class TileSource:
    """lsd.sources.DataSource over image/mask pairs; each image becomes one event."""

    name = "tiles"
    keep_going = False

    def __init__(
        self,
        src: Path | str,
        mapping: dict[int, int],
        *,
        images_dir: str = "images",
        masks_dir: str = "masks",
        pairs: Path | None = None,
        layers: Sequence[str] | None = None,
        prefix: str = "",
    ) -> None:
        self.src = Path(src)
        check_source_folder(self.src)
        if not mapping:
            raise InvalidValue(
                f"the label mapping is empty; give source:target pairs, e.g. {MAPPING_EXAMPLE}",
                field="mapping",
            )
        self.mapping = mapping
        self.layers = check_layer_names(layers) if layers is not None else None
        self.images_dir, self.masks_dir, self.pairs, self.prefix = (
            images_dir,
            masks_dir,
            pairs,
            prefix,
        )
        self.pairs_path: str | None = None
        self.seen = DatasetConventions()  # the conventions of the tiles built so far

    def items(self) -> list[TilePair]:
        if self.pairs is not None:
            found = _pairs_from_file(self.src, Path(self.pairs))
            self.pairs_path = str(_resolve_pairs_file(self.src, Path(self.pairs)).resolve())
        else:
            found = _pairs_by_stem(self.src, self.images_dir, self.masks_dir)
        seen: dict[str, Path] = {}
        for image, _ in found:
            if image.stem in seen:
                raise InvalidFile(f"{image}: two images named {image.stem} ({seen[image.stem]})")
            seen[image.stem] = image
        return [TilePair(f"{self.prefix}{image.stem}", image, mask) for image, mask in found]

    def plan(self, item: TilePair) -> dict[str, Any]:
        return {"event_id": item.event_id, "image": str(item.image), "mask": str(item.mask)}

    def origin(self, item: TilePair) -> dict[str, str]:
        return {"kind": self.name, "image": str(item.image.resolve()),
                "mask": str(item.mask.resolve())}  # fmt: skip

    def build(self, item: TilePair, folder: Path) -> None:
        stack, names, label, grid, extra = _read_tile_pair(
            item.image, item.mask, self.mapping, self.layers
        )
        source = {
            "kind": self.name,
            "image": str(item.image.resolve()),
            "mask": str(item.mask.resolve()),
            "pairs": self.pairs_path,
        }
        label_info = {"source_mapping": {str(s): t for s, t in self.mapping.items()}}
        if extra.pop("mask_reduction"):
            label_info["mask_reduction"] = MASK_REDUCTION_RULE
        geo = bool(extra.get("georeferenced", grid.crs is not None))
        known = {cv.SOURCE: cv.recorded(f"tiles from {self.src.resolve()}", "lsd import tiles")}
        conventions = self.seen.add(str(item.image), detect_for_import(
            dict(zip(names, stack, strict=True)), grid, georeferenced=geo, known=known,
        ))  # fmt: skip
        record = event_record(
            item.event_id, layers=names, grid=grid, source=source, label=label_info,
            conventions=conventions, **extra,
        )  # fmt: skip
        write_event(folder, record, grid=grid, stack=stack, label=label)
