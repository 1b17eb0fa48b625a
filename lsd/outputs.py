"""Which output folders lsd may replace, and the marker that says what lsd wrote.

Every output folder lsd creates (an ensemble, an evaluation, a map, a RUNS folder, a data folder
of event folders) carries a small hidden marker naming its kind. `--overwrite` replaces a folder
only when it carries the marker of the same kind, holds none of the command's inputs, and is not
(and does not hold) the working folder; the replacement is written beside it and swapped in only
when complete (lsd.files.atomic_path). Anything else is refused in one line that says why, since
a folder lsd did not write may hold work that exists nowhere else.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

from lsd.errors import InvalidFile, InvalidValue, OutputExists
from lsd.files import check_name, check_writable, read_json, write_json

MARKER_FILE = ".lsd-output.json"
MARKER_FORMAT = "lsd-output/1"
KINDS: dict[str, str] = {  # kind -> what it is, with its article
    "ensemble": "an ensemble folder",
    "evaluation": "an evaluation folder",
    "map": "a map folder",
    "runs": "a RUNS folder",
    "data": "a data folder",
}


def _plural(label: str) -> str:
    return label.split(" ", 1)[1] + "s"


def mark(folder: Path | str, kind: str) -> None:
    """Record in `folder` that lsd wrote it, and as what."""
    from lsd import __version__

    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    write_json(
        Path(folder) / MARKER_FILE,
        {
            "format": MARKER_FORMAT,
            "kind": kind,
            "written_by": f"lsd {__version__}",
            "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    )


def marked_kind(folder: Path | str) -> str | None:
    """The kind of lsd output `folder` is marked as, or None (no marker, or not lsd's)."""
    path = Path(folder) / MARKER_FILE
    if not path.is_file():
        return None
    try:
        raw = read_json(path)
    except InvalidFile:
        return None
    if not isinstance(raw, dict) or raw.get("format") != MARKER_FORMAT:
        return None
    kind = raw.get("kind")
    return kind if isinstance(kind, str) else None


def _holds(folder: Path, path: Path) -> bool:
    """True when `path` is `folder` or lies inside it (symbolic links resolved)."""
    folder, path = folder.resolve(), path.resolve()
    return path == folder or folder in path.parents


def _is_empty(folder: Path) -> bool:
    return not any(folder.iterdir())


def check_output(
    out: Path | str,
    kind: str,
    *,
    overwrite: bool,
    inputs: Iterable[Path | str | None] = (),
) -> Path:
    """Refuse, in one line saying why, an `out` that writing a `kind` output there would harm;
    then check that its parent folder can be written. Nothing is created or removed here."""
    out = Path(out)
    check_name(out, field="out")
    label = KINDS[kind]
    if out.exists() and not out.is_dir():
        raise InvalidValue(f"{out}: exists and is not a folder", field="out")
    if _holds(out, Path.cwd()):
        raise InvalidValue(
            f"{out}: is the working folder or holds it; write {label} to a new folder",
            field="out",
        )
    if out.is_dir() and not _is_empty(out):
        for given in inputs:
            if given is not None and _holds(out, Path(given)):
                what = "is" if Path(given).resolve() == out.resolve() else f"holds {given},"
                raise InvalidValue(
                    f"{out}: {what} an input of this command; write {label} to another folder",
                    field="out",
                )
        found = marked_kind(out)
        if found != kind:
            what = (
                f"is {KINDS.get(found, found)} of lsd, not {label}"
                if found
                else f"was not written by lsd as {label} (it has no lsd marker)"
            )
            raise InvalidValue(
                f"{out}: {what}; lsd replaces only its own {_plural(label)}: choose another folder",
                field="out",
            )
        if not overwrite:
            raise OutputExists(f"{out}: {label} already exists")
    check_writable(out.parent, create=False)
    return out


def check_reusable(folder: Path | str, kind: str) -> Path:
    """A folder lsd adds to across runs (e.g. the stacks fetched for a map): it must be new,
    empty, or marked as that kind, so lsd never writes into a folder it did not make."""
    folder = Path(folder)
    label = KINDS[kind]
    if folder.exists() and not folder.is_dir():
        raise InvalidValue(f"{folder}: exists and is not a folder", field="out")
    if folder.is_dir() and not _is_empty(folder) and marked_kind(folder) != kind:
        raise InvalidValue(
            f"{folder}: exists and is not {label} of lsd; lsd keeps its fetched stacks there, "
            "so move that folder or choose another output name",
            field="out",
        )
    check_writable(folder.parent, create=False)
    return folder
