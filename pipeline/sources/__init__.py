"""Data sources and the one driver that runs them (lsd.sources.DataSource).

The driver owns what every source shares: items are listed (and checked) before anything is
written, the output folder is checked for writing, finished event folders are skipped, progress
is shown, and a failure either stops the run (a source whose failures are the user's files) or is
reported while the rest go on (a source behind a network service). A source only knows how to
build one folder.

Registered sources, by the name the CLI and docs use:

    earthengine      lsd.gee.source.EarthEngineSource      events.csv -> Earth Engine layers
    stac             lsd.stac.source.StacSource            events.csv -> STAC catalog layers
    landslide4sense  lsd.pipeline.sources.landslide4sense  Landslide4Sense HDF5 patches
    tiles            lsd.pipeline.sources.tiles            image/mask pairs (PNG, GeoTIFF)
    paper            lsd.pipeline.paper.dataset            the paper's dataset (Zenodo 13471162)
    synthetic        lsd.pipeline.sources.synthetic        generated events (lsd demo, tests)

To add one: write a module with a class that has `name`, `keep_going`, `items()`, `plan(item)`
and `build(item, folder)` (writing through lsd.events.write_event), add it to SOURCES, and give
it a command in pipeline/cmd_import.py (docs/architecture.md).
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsd.errors import InvalidValue, OutputExists, UserError
from lsd.events import EVENT_FILE, event_complete
from lsd.files import check_writable, read_json
from lsd.outputs import MARKER_FILE, check_reusable, mark
from lsd.progress import Progress
from lsd.sources import DataSource

Echo = Callable[[str], None]

SOURCES: dict[str, str] = {
    "earthengine": "lsd.gee.source:EarthEngineSource",
    "stac": "lsd.stac.source:StacSource",
    "landslide4sense": "lsd.pipeline.sources.landslide4sense:Landslide4SenseSource",
    "tiles": "lsd.pipeline.sources.tiles:TileSource",
    "paper": "lsd.pipeline.paper.dataset:PaperDatasetSource",
    "synthetic": "lsd.pipeline.sources.synthetic:SyntheticSource",
}


def source_class(name: str) -> type:
    """The class registered under `name`, imported only when asked for (ee, h5py ...)."""
    try:
        module, attr = SOURCES[name].split(":")
    except KeyError:
        raise InvalidValue(
            f"unknown data source '{name}'; choose from {', '.join(SOURCES)}", field="source"
        ) from None
    return getattr(importlib.import_module(module), attr)


@dataclass
class BuildSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # waiting on a step of the user's
    failed: dict[str, str] = field(default_factory=dict)
    planned: list[dict[str, Any]] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def plan_lines(plan: dict[str, Any]) -> str:
    """A source's plan for one event as indented 'key: value' lines under its id."""
    title = plan.get("event_id", "?")
    if plan.get("summary"):
        title += f" ({plan['summary']})"
    lines = [title]
    for key, value in plan.items():
        if key in ("event_id", "summary") or value is None:
            continue
        if isinstance(value, list):
            value = ", ".join(map(str, value))
        lines.append(f"  {key}: {value}")
    return "\n".join(lines)


def plan_events(source: DataSource, *, echo: Echo = print) -> BuildSummary:
    """What building every item would do; nothing is written."""
    summary = BuildSummary()
    for item in source.items():
        plan = source.plan(item)
        summary.planned.append(plan)
        echo(plan_lines(plan))
    return summary


def build_events(
    source: DataSource,
    dest: Path | str,
    *,
    need_label: bool = True,
    progress: bool = True,
    echo: Echo | None = None,
    desc: str | None = None,
    inputs: Sequence[Path | str] = (),
) -> BuildSummary:
    """Build every item of `source` into `dest/<event_id>/`, skipping finished folders.

    `dest` must be new, empty or a data folder lsd made, and neither the working folder nor one
    of the source's `inputs` (or inside one). A finished folder is skipped only when it came
    from the same input (`source.origin`); an id that another input already took is refused,
    like two items with one id, before anything is written.

    `echo`, when given, gets one line per event (done, skipped, failed); without it only the
    progress bar reports. With `source.keep_going` a failed event is collected in the summary
    and the others go on; otherwise the first failure is raised.
    """
    items = list(source.items())
    dest = Path(dest)
    check_reusable(dest, "data", inputs=inputs)  # never into a folder of the user's, or SRC
    check_writable(dest, create=False)
    check_ids(source, dest, items)
    created = not dest.exists()
    if created or not any(dest.iterdir()):
        mark(dest, "data")  # a data folder lsd made: lsd may add to it later (predict --aoi)
    summary = BuildSummary()
    bar = Progress(len(items), desc=desc or source.name, unit="events", enabled=progress)
    try:
        with bar:
            _build_all(source, dest, items, bar, summary, need_label, echo)
    finally:
        if created:
            _drop_if_unused(dest)
    return summary


def _origin_text(origin: dict[str, Any]) -> str:
    return ", ".join(str(v) for k, v in origin.items() if k != "kind") or str(origin)


def check_ids(source: DataSource, dest: Path, items: Sequence[Any]) -> None:
    """Refuse, before anything is written, two items with one event id, and an id whose finished
    folder in `dest` came from another input than this item (a second dataset imported into the
    same folder): skipping it would drop this item silently, replacing it would lose the first.
    A folder from the same input is a rerun's finished work and is skipped as before."""
    origin = getattr(source, "origin", None)
    seen: dict[str, Any] = {}
    for item in items:
        if item.event_id in seen:
            first = seen[item.event_id]
            what = (f" ({_origin_text(origin(first))} and {_origin_text(origin(item))})"
                    if origin else "")  # fmt: skip
            raise InvalidValue(f"{dest / item.event_id}: two inputs would become event "
                               f"{item.event_id}{what}; give them different names")  # fmt: skip
        seen[item.event_id] = item
    if origin is None:
        return
    clashes: list[tuple[Any, dict[str, Any]]] = []
    for item in items:
        folder = dest / item.event_id
        if not event_complete(folder, need_label=False):
            continue
        try:
            record = read_json(folder / EVENT_FILE)
        except UserError:
            continue  # a damaged record: treated as before (a finished folder, kept)
        had = record.get("source") if isinstance(record, dict) else None
        want = origin(item)
        if not isinstance(had, dict) or any(had.get(k) != v for k, v in want.items()):
            clashes.append((item, had if isinstance(had, dict) else {}))
    if clashes:
        item, had = clashes[0]
        others = [i.event_id for i, _ in clashes[1:]]
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        more = f"; {len(others)} more id(s) collide ({shown})" if others else ""
        want = origin(item)
        was = {k: had[k] for k in want if had.get(k) is not None}
        raise OutputExists(
            f"{dest / item.event_id}: already holds event {item.event_id} from "
            f"{_origin_text(was) if was else 'another source'}, not from "
            f"{_origin_text(want)}{more}; lsd does not replace an event that came from "
            "elsewhere: import into another folder, or give these events other ids"
        )


def _drop_if_unused(dest: Path) -> None:
    """A data folder this call made and filled with nothing is removed again."""
    if dest.is_dir() and [p.name for p in dest.iterdir()] == [MARKER_FILE]:
        (dest / MARKER_FILE).unlink()
        dest.rmdir()


def _build_one(source: DataSource, item: Any, folder: Path) -> None:
    """Build one folder; one this attempt created is removed again if the attempt fails, so a
    failed or interrupted event leaves no half-made folder (a rerun builds it afresh)."""
    existed = folder.exists()
    try:
        source.build(item, folder)
    except BaseException:
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _build_all(
    source: DataSource,
    dest: Path,
    items: list[Any],
    bar: Progress,
    summary: BuildSummary,
    need_label: bool,
    echo: Echo | None,
) -> None:
    say = echo or (lambda _msg: None)
    for item in bar.iterate(items):
        folder = dest / item.event_id
        summary.folders.append(folder)
        bar.set_postfix_str(item.event_id)
        if event_complete(folder, need_label=need_label):
            summary.skipped.append(item.event_id)
            say(f"{item.event_id}: already complete, skipped")
            continue
        try:
            _build_one(source, item, folder)
        except Exception as exc:  # one broken event must not stop the rest, if it may not
            if not source.keep_going:
                raise
            msg = (
                str(exc)
                if isinstance(exc, UserError)
                else (f"event {item.event_id}: {type(exc).__name__}: {_first_line(exc)}")
            )
            summary.failed[item.event_id] = msg
            say(f"FAILED {msg}")
            continue
        if event_complete(folder, need_label=need_label):
            summary.done.append(item.event_id)
            say(f"{item.event_id}: done -> {folder}")
        else:
            summary.pending.append(item.event_id)


def import_landslide4sense(src: Path | str, dest: Path | str, progress: bool = True) -> list[Path]:
    """Every Landslide4Sense patch under `src` as an event folder in `dest` (l4s_image_N from
    one folder of patches, l4s_<role>_image_N from the benchmark's split folders, each with its
    role); returns the folders."""
    source = source_class("landslide4sense")(src)
    return build_events(source, dest, progress=progress, desc="import landslide4sense",
                        inputs=(src,)).folders  # fmt: skip


def import_tiles(
    src: Path | str, dest: Path | str, mapping: dict[int, int], *, progress: bool = True, **kw: Any
) -> list[Path]:
    """Image/mask pairs under `src` as `dest/<prefix><image stem>/` (see TileSource)."""
    source = source_class("tiles")(src, mapping, **kw)
    return build_events(source, dest, progress=progress, desc="import tiles",
                        inputs=(src,)).folders  # fmt: skip


def import_paper(src: Path | str, dest: Path | str, *, progress: bool = True) -> BuildSummary:
    """The paper's global_dataset under `src` as `dest/<event id>/` (see PaperDatasetSource)."""
    return build_events(source_class("paper")(src), dest, progress=progress, desc="import paper",
                        inputs=(src,))  # fmt: skip
