"""Event folders: the one format every data source writes and training reads.

    <data>/<event_id>/stack.tif    float32 layers, band descriptions = layer names, NaN = no data
    <data>/<event_id>/label.tif    uint8 on the same grid: 1 landslide, 0 not, 255 ignored
    <data>/<event_id>/event.json   the record below, written last

`write_event` is the only writer (Earth Engine fetches, every importer, `lsd predict --aoi`), and
`read_event`/`list_events` the only readers, so a folder means the same thing whoever made it.
event.json is written last: its presence beside the rasters marks a finished folder, and reruns
skip such folders. Its common keys (schema `lsd-event/1`, docs/architecture.md):

    format, event_id, role, layers, grid, georeferenced, label, source, written_by, written_at

and `conventions` (lsd.conventions: what the values mean, recorded or detected), which
`write_event` also puts into the stack's tags.

`source` holds what the data source knows (its kind, inputs, windows, image ids, provenance);
`label` says whether a label was written and what its codes mean. Folders written before the
schema had a version (keys `id`/`imported_by`) are still read; only `role` is used from them.

`append_layers` is the one way to add layers to a finished folder (`lsd add-layer`): the stack
is rewritten with the new bands at its end and event.json gains their names in `layers` and
their sources in `added_layers`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lsd import __version__
from lsd.errors import InputNotFound, InvalidFile, InvalidValue, OutputNotWritable
from lsd.files import PARTIAL_SUFFIX, atomic_path, read_json, write_json
from lsd.rasters import (
    LABEL_CODES,
    Grid,
    read_grid,
    read_layer_names,
    write_label,
    write_stack,
    write_stack_with_layers,
)
from lsd.spec import ROLES

STACK_FILE = "stack.tif"
LABEL_FILE = "label.tif"
EVENT_FILE = "event.json"
EVENT_FORMAT = "lsd-event/1"

StackWriter = Callable[[Path], None]  # writes stack.tif at the path given (atomically itself)


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
        """The split role recorded when the folder was made: train, val or test (or None)."""
        role = self.meta.get("role")
        return role if role in ROLES else None


# --------------------------------------------------------------------------- writing


def event_record(
    event_id: str,
    *,
    layers: Sequence[str],
    grid: Grid,
    source: dict[str, Any],
    role: str | None = None,
    label: dict[str, Any] | None = None,
    georeferenced: bool | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The common keys of event.json; `source` must name its kind (e.g. "earthengine")."""

    if "kind" not in source:
        raise ValueError("an event's source record must say its kind")
    geo = grid.crs is not None if georeferenced is None else georeferenced
    record: dict[str, Any] = {
        "format": EVENT_FORMAT,
        "event_id": event_id,
        "role": role,
        "layers": list(layers),
        "grid": grid.record(),
        "georeferenced": geo,
        "label": {"written": label is not None, "codes": LABEL_CODES, **(label or {})},
        "source": source,
        **extra,
        "written_by": f"lsd {__version__}",
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    return record


def write_event(
    folder: Path | str,
    record: dict[str, Any],
    *,
    grid: Grid,
    stack: np.ndarray | StackWriter,
    label: np.ndarray | None = None,
) -> Path:
    """Write stack, label, then event.json; leftovers of an interrupted write are cleared first.

    `stack` is a (C, H, W) array in `record["layers"]` order, or a function that writes
    stack.tif itself (a streamed download). Each file appears under its final name only when
    complete, and event.json only after both rasters, so a folder is finished or visibly not.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(f".*{PARTIAL_SUFFIX}"):
            if stale.is_file():
                stale.unlink()
        if callable(stack):
            stack(folder / STACK_FILE)
        else:
            write_stack(folder / STACK_FILE, stack, record["layers"], grid,
                        record.get("conventions"))  # fmt: skip
        if label is not None:
            write_label(folder / LABEL_FILE, label, grid)
        write_json(folder / EVENT_FILE, record)
    except OutputNotWritable:
        raise  # already one line naming the file and the cause
    except OSError as exc:
        raise OutputNotWritable(
            f"{folder}: cannot write event folder ({exc.strerror or exc})"
        ) from None
    return folder


def append_layers(
    folder: Path | str, names: Sequence[str], data: np.ndarray, added: Sequence[dict[str, Any]]
) -> EventFolder:
    """Append (k, H, W) `data` as layers `names` to the event's stack; `added` holds one record
    per layer (where it came from, how it was placed) for event.json's `added_layers`.

    Both files are written under temporary names; stack.tif is renamed into place first, then
    event.json, so an interruption leaves the old folder, or a stack whose band names (which
    readers trust) already hold the new layers.
    """

    ev = read_event(folder, need_label=False)
    taken = [n for n in names if n in ev.layers]
    if taken or len(set(names)) != len(names):
        raise InvalidValue(f"event {ev.event_id} already has a layer '{(taken or names)[0]}'")
    if len(added) != len(names):
        raise ValueError("append_layers needs one record per new layer")
    meta_path = ev.path / EVENT_FILE
    meta = dict(ev.meta) or {"event_id": ev.event_id}
    meta["layers"] = [*ev.layers, *names]
    meta["added_layers"] = [*meta.get("added_layers", []), *added]
    try:
        with atomic_path(meta_path) as tmp_meta, atomic_path(ev.stack) as tmp_stack:
            write_stack_with_layers(ev.stack, tmp_stack, data, names)
            tmp_meta.write_text(json.dumps(meta, indent=2, default=str) + "\n")
    except OSError as exc:
        raise OutputNotWritable(
            f"{ev.path}: cannot rewrite the event folder ({exc.strerror or exc})"
        ) from None
    return read_event(ev.path, need_label=False)


# --------------------------------------------------------------------------- reading


def event_complete(folder: Path | str, *, need_label: bool = True) -> bool:
    """A folder is finished once event.json sits beside the rasters (it is written last)."""
    folder = Path(folder)
    needed = (STACK_FILE, EVENT_FILE) + ((LABEL_FILE,) if need_label else ())
    return all((folder / name).is_file() for name in needed)


def read_event(path: Path | str, *, need_label: bool = True) -> EventFolder:
    """One event folder, checked: layers named, label on the stack's grid, record readable."""
    path = Path(path)
    stack = path / STACK_FILE
    if not stack.exists():
        raise InputNotFound(f"{path}: no {STACK_FILE} in this event folder")
    layers = read_layer_names(stack)
    grid = read_grid(stack)
    label = path / LABEL_FILE
    if need_label:
        if not label.exists():
            raise InputNotFound(f"{path}: event has no {LABEL_FILE}")
        lgrid = read_grid(label)
        if not lgrid.same_as(grid):
            raise InvalidFile(
                f"{label}: label grid ({lgrid.width}x{lgrid.height}, {lgrid.crs}) differs from "
                f"its stack ({grid.width}x{grid.height}, {grid.crs})"
            )
    meta_path = path / EVENT_FILE
    meta = read_json(meta_path) if meta_path.exists() else {}
    if not isinstance(meta, dict):
        raise InvalidFile(f"{meta_path}: not an lsd event record (expected a JSON object)")
    fmt = meta.get("format")
    if fmt is not None and fmt != EVENT_FORMAT:
        raise InvalidFile(
            f"{meta_path}: event record format {fmt!r}; this lsd reads {EVENT_FORMAT}"
        )
    return EventFolder(path=path, layers=layers, grid=grid, meta=meta)


def list_events(data_dir: Path | str, *, need_label: bool = True) -> list[EventFolder]:
    """Every event folder under `data_dir`, sorted by id; errors name the folder at fault."""
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise InputNotFound(f"{data_dir}: data folder not found")
    if not data_dir.is_dir():
        raise InvalidFile(f"{data_dir}: not a folder")
    try:
        children = sorted(
            p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
    except PermissionError:
        raise InvalidFile(f"{data_dir}: data folder is not readable") from None
    events = [read_event(p, need_label=need_label) for p in children if (p / STACK_FILE).exists()]
    if not events:
        raise InputNotFound(f"{data_dir}: no event folders (sub-folders with {STACK_FILE}) found")
    return events


def select_events(
    data_dir: Path | str, ids: Sequence[str], *, source: str, field: str | None = None
) -> list[EventFolder]:
    """The event folders named by `ids`; an id missing from the data folder is named.

    `source` says where the ids came from (a split record, a list the user gave ...) so the
    message tells the user which of their inputs disagrees with the data folder.
    """
    by_id = {e.event_id: e for e in list_events(data_dir)}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise InputNotFound(f"{source} names event(s) not in {data_dir}: {shown}", field=field)
    return [by_id[i] for i in dict.fromkeys(ids)]
