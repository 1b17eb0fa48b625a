"""The paper's published dataset (Zenodo 13471162, global_dataset.zip) as a data source.

    global_dataset/{train_val,test}/{input,label}/*.tif  ->  DEST/<event id>/ (15 layers)

Inputs and labels pair by the part of the file name before the first separator, as the paper's
reader pairs them (src/data/landslides.py); words such as "input" or "label" are skipped so
that "input_5.tif" pairs with "label_5.tif" too. A numeric key is the paper's event number and
becomes the id examples/events.csv uses (5 -> 05-norway); a georeferenced tif whose footprint
holds one of the paper's event points gets that event's id; any other key is kept as it is.

Roles: test/ gives "test"; of train_val/ the files the paper's code drew for validation get "val"
and the rest "train" (lsd.pipeline.paper.facts, PAPER_SEED), so `lsd train` and imported models
see the paper's split. Every file is checked (pairs, 15 layers, label values 0/1/255, sizes)
before the first folder is written, so a bad archive writes nothing.

Values are kept as the paper's reader (tifffile) holds them: NaN is no data, and a GDAL no-data
tag, which tifffile does not know, is reported (a warning, event.json `source.nodata_tag`) but
not applied, so statistics and model inputs are the ones its code computed. Other importers
(lsd.pipeline.sources.tiles) do apply the tag.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pyproj import Transformer

from lsd import conventions as cv
from lsd.errors import InputNotFound, InvalidFile
from lsd.events import event_record, write_event
from lsd.layers import PAPER_LAYERS
from lsd.pipeline.conventions import DatasetConventions, detect_for_import
from lsd.pipeline.paper.facts import (
    EVENTS_BY_NUMBER,
    INPUT_DIR,
    LABEL_DIR,
    PAPER_EVENTS,
    PAPER_SEED,
    PAPER_TRAIN_FRACTION,
    TEST_DIR,
    TRAIN_VAL_DIR,
    ZENODO_DOI,
    PaperEvent,
)
from lsd.pipeline.paper.tifs import (
    check_channels,
    label_shape,
    read_input,
    read_label_tif,
    tif_grid,
    tif_shape,
)
from lsd.pipeline.sources.common import check_source_folder, natural_key
from lsd.progress import warn
from lsd.rasters import Grid

PARTS = {TRAIN_VAL_DIR: "train", TEST_DIR: "test"}
TIF_SUFFIXES = (".tif", ".tiff")
ROLE_WORDS = {"input", "inputs", "label", "labels", "mask", "masks", "gt", "image", "img", "stack"}
SEARCH_DEPTH = 3


@dataclass(frozen=True)
class PaperPair:
    event_id: str
    key: str
    part: str  # train_val or test
    input: Path
    label: Path
    role: str
    paper_event: int | None


def pair_key(path: Path) -> str:
    """The paper's pairing key: the name before the first separator, skipping role words."""
    tokens = [t for t in re.split(r"[_\-\s.]+", path.stem) if t]
    for token in tokens:
        if token.lower() not in ROLE_WORDS:
            return token
    return path.stem


def _tifs(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir()
         if p.is_file() and p.suffix.lower() in TIF_SUFFIXES and not p.name.startswith(".")),
        key=natural_key,
    )  # fmt: skip


def find_dataset(src: Path) -> Path:
    """The folder holding train_val/ and test/: SRC itself or one below it (an unpacked zip)."""
    check_source_folder(src)
    frontier = [src]
    for _ in range(SEARCH_DEPTH + 1):
        for folder in frontier:
            if any((folder / part / INPUT_DIR).is_dir() for part in PARTS):
                return folder
        frontier = [
            c for f in frontier for c in sorted(f.iterdir())
            if c.is_dir() and not c.name.startswith((".", "__"))
        ]  # fmt: skip
    found = ", ".join(sorted(p.name for p in src.iterdir())[:8]) or "nothing"
    raise InvalidFile(
        f"{src}: expected the paper's layout {TRAIN_VAL_DIR}/ and {TEST_DIR}/, each with "
        f"{INPUT_DIR}/ and {LABEL_DIR}/ of .tif files (global_dataset.zip); found: {found}"
    )


def _keyed(files: list[Path], what: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in files:
        key = pair_key(path)
        if key in out:
            raise InvalidFile(
                f"{path}: pairs by '{key}' like {out[key].name}; each {what} needs its own key "
                "(the file-name part before the first '_')"
            )
        out[key] = path
    return out


def _part_pairs(root: Path, part: str) -> list[tuple[str, Path, Path]]:
    """(key, input, label) in the paper's order: label files sorted by name."""
    inputs_dir, labels_dir = root / part / INPUT_DIR, root / part / LABEL_DIR
    if not inputs_dir.is_dir():
        return []
    inputs = _keyed(_tifs(inputs_dir), "input")
    if not inputs:
        raise InvalidFile(f"{inputs_dir}: no .tif inputs")
    labels = _keyed(_tifs(labels_dir), "label") if labels_dir.is_dir() else {}
    if not labels:
        raise InvalidFile(
            f"{labels_dir}: no label .tif for the {len(inputs)} input(s) in {inputs_dir} "
            f"(expected {LABEL_DIR}/ beside {INPUT_DIR}/, one label per input)"
        )
    lonely = sorted(set(inputs) - set(labels))
    if lonely:
        raise InvalidFile(f"{inputs[lonely[0]]}: no label pairs with it (key '{lonely[0]}')")
    orphan = sorted(set(labels) - set(inputs))
    if orphan:
        raise InvalidFile(f"{labels[orphan[0]]}: no input pairs with it (key '{orphan[0]}')")
    ordered = sorted(labels.items(), key=lambda kv: kv[1].name)  # os.listdir + sort, as theirs
    return [(key, inputs[key], label) for key, label in ordered]


def paper_val_keys(keys: list[str]) -> set[str]:
    """The train_val keys the paper's code validates on: sklearn's train_test_split(0.8) under
    NumPy's global generator seeded 42 takes the first n - floor(0.8 n) of a permutation."""
    n = len(keys)
    n_val = n - math.floor(PAPER_TRAIN_FRACTION * n)
    order = np.random.RandomState(PAPER_SEED).permutation(n)
    return {keys[i] for i in order[:n_val]}


def _event_at(grid: Grid) -> PaperEvent | None:
    """The paper event whose point lies inside a georeferenced grid's footprint."""

    to_grid = Transformer.from_crs(4326, grid.crs, always_xy=True)
    left, bottom, right, top = grid.record()["bounds"]
    for event in PAPER_EVENTS:
        x, y = to_grid.transform(event.lon, event.lat)
        if left <= x <= right and bottom <= y <= top:
            return event
    return None


def _identify(key: str, path: Path) -> tuple[str, int | None]:
    if key.isdigit() and int(key) in EVENTS_BY_NUMBER:
        event = EVENTS_BY_NUMBER[int(key)]
        return event.event_id, event.number
    grid, geo = tif_grid(path)
    event = _event_at(grid) if geo else None
    if event is not None:
        return event.event_id, event.number
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", key).strip("-") or "event"
    return safe, None


def _check_pair(key: str, image: Path, label: Path) -> None:
    shape = tif_shape(image)
    check_channels(image, shape)
    size = label_shape(label)
    if size != (shape.height, shape.width):
        raise InvalidFile(
            f"{label}: {size[0]} x {size[1]} pixels but its input {image.name} has "
            f"{shape.height} x {shape.width}"
        )
    read_label_tif(label)  # values 0/1/255, checked before anything is written


def list_pairs(src: Path) -> list[PaperPair]:
    """Every pair of the dataset, checked, with ids and roles; nothing is written."""
    root = find_dataset(Path(src))
    pairs: list[PaperPair] = []
    for part, base_role in PARTS.items():
        found = _part_pairs(root, part)
        val = paper_val_keys([k for k, _, _ in found]) if base_role == "train" else set()
        for key, image, label in found:
            _check_pair(key, image, label)
            role = "val" if key in val else base_role
            event_id, number = _identify(key, image)
            pairs.append(PaperPair(event_id, key, part, image, label, role, number))
    if not pairs:
        raise InputNotFound(f"{root}: no input tifs under {TRAIN_VAL_DIR}/ or {TEST_DIR}/")
    seen: dict[str, PaperPair] = {}
    for p in pairs:
        if p.event_id in seen:
            raise InvalidFile(
                f"{p.input}: becomes event '{p.event_id}' like {seen[p.event_id].input}"
            )
        seen[p.event_id] = p
    return pairs


def _pick_grid(pair: PaperPair, grids: list[tuple[Grid, bool]]) -> tuple[Grid, bool]:
    (g_in, geo_in), (g_lab, geo_lab) = grids
    if geo_in and geo_lab and not g_in.same_as(g_lab):
        raise InvalidFile(f"{pair.label}: georeferenced differently from its input {pair.input}")
    return (g_in, True) if geo_in else (g_lab, geo_lab)


class PaperDatasetSource:
    """lsd.sources.DataSource over the paper's global_dataset folder; one event per input tif."""

    name = "paper"
    keep_going = False

    def __init__(self, src: Path | str) -> None:
        self.src = Path(src)
        self._pairs: list[PaperPair] | None = None
        self._conventions: dict[str, dict[str, Any]] = {}

    def items(self) -> list[PaperPair]:
        """Every pair, checked, and the conventions of every input read from its pixels: the
        dataset's inputs must agree before the first folder is written."""
        if self._pairs is None:
            pairs = list_pairs(self.src)
            seen = DatasetConventions()
            for pair in pairs:
                self._conventions[pair.event_id] = seen.add(str(pair.input), _conventions(pair))
            self._pairs = pairs
        return self._pairs

    def plan(self, item: PaperPair) -> dict[str, Any]:
        return {"event_id": item.event_id, "role": item.role, "input": str(item.input),
                "label": str(item.label)}  # fmt: skip

    def origin(self, item: PaperPair) -> dict[str, str]:
        return {"kind": self.name, "input": str(item.input.resolve()),
                "label": str(item.label.resolve())}  # fmt: skip

    def build(self, item: PaperPair, folder: Path) -> None:
        stack, g_in, geo_in, tag = read_input(item.input)
        label, g_lab, geo_lab = read_label_tif(item.label)
        grid, geo = _pick_grid(item, [(g_in, geo_in), (g_lab, geo_lab)])
        source = {
            "kind": self.name,
            "dataset": f"Ganerod et al. global landslide dataset (doi:{ZENODO_DOI})",
            "part": item.part,
            "key": item.key,
            "paper_event": item.paper_event,
            "input": str(item.input.resolve()),
            "label": str(item.label.resolve()),
            "role_rule": "test/ -> test; train_val/ -> val for the paper code's validation "
            "draw (train_test_split 0.8, NumPy seed 42), else train",
        }
        if tag is not None:
            source["nodata_tag"] = tag.record(PAPER_LAYERS)
            if tag.count and not math.isnan(tag.value):
                warn(
                    f"{item.input}: declares GDAL no-data {tag.value:g}, held by {tag.count} "
                    f"value(s); kept as values, as the paper's reader does (event.json "
                    f"source.nodata_tag of {item.event_id})"
                )
        extra: dict[str, Any] = {}
        if not geo:
            extra["georeferencing_note"] = (
                "the source tifs carry no georeferencing; the transform is a nominal 10 m grid "
                "at (0, 0), not a place on Earth"
            )
        conventions = self._conventions.get(item.event_id) or _conventions(item)
        record = event_record(
            item.event_id, layers=PAPER_LAYERS, grid=grid, source=source, role=item.role,
            georeferenced=geo, label={"source_codes": "0 not landslide, 1 landslide, 255 no data"},
            conventions=conventions, **extra,
        )  # fmt: skip
        write_event(folder, record, grid=grid, stack=stack, label=label)


# What the dataset's makers say, beside what the pixels show (docs/conventions.md).
KNOWN_CONVENTIONS = {
    cv.SOURCE: cv.recorded(
        f"Ganerod et al. global landslide dataset (doi:{ZENODO_DOI})", "lsd import paper"
    ),
    cv.SNOW_MASK: cv.recorded(
        "grow 300 m",
        "the dataset author's dNDVI script, maskSnow: SCL 11, not-snow focal_min 300 m (copy in "
        "Chong-Ruei/OpenScience Final.md)",
    ),
}


def _conventions(pair: PaperPair) -> dict[str, Any]:
    """The input's conventions: flattening sign, flag polarity and dB detected from its pixels
    (the dataset does not say them, nor the pass of each event), the rest as its makers say.

    The import keeps a declared no-data value as the paper's reader does, but for detection the
    tag is evidence of where VV/VH have no data, so those pixels are NaN here."""
    stack, grid, geo, tag = read_input(pair.input)
    if tag is not None and not np.isnan(tag.value):
        stack = np.where(stack == np.float32(tag.value), np.float32(np.nan), stack)
    arrays = dict(zip(PAPER_LAYERS, stack, strict=True))
    return detect_for_import(arrays, grid, georeferenced=geo, known=KNOWN_CONVENTIONS)
