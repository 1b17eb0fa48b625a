"""Which output folders lsd may replace, and the marker that says what lsd wrote.

Every output folder lsd creates (an ensemble, an evaluation, a map, a RUNS folder, a data folder
of event folders) carries a small hidden marker naming its kind. `--overwrite` replaces a folder
only when it carries the marker of the same kind, holds none of the command's inputs, and is not
(and does not hold) the working folder; the replacement is written beside it and swapped in only
when complete (lsd.files.atomic_path). Anything else is refused in one line that says why, since
a folder lsd did not write may hold work that exists nowhere else.

The marker of a folder that `--overwrite` replaces whole (an ensemble, an evaluation, a map) also
lists every file lsd wrote there, with its size, so a file a user added later (notes.txt beside a
map) or changed is found and named, and the folder is not replaced. A symbolic link given as the
output stays a link: the folder it points to is replaced (lsd.files.atomic_path).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

from lsd import __version__
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
    "demo": "a demo folder",
}


# kinds that --overwrite replaces whole; their marker lists the files lsd wrote
REPLACED_WHOLE = ("ensemble", "evaluation", "map")
# caches that viewers leave beside lsd's files (QGIS/GDAL statistics and pyramids, desktop
# folder metadata): derived, not a user's work, so they do not block --overwrite
VIEWER_CACHES = (".aux.xml", ".ovr")
FOLDER_METADATA = (".DS_Store", "Thumbs.db")


def _plural(label: str) -> str:
    return label.split(" ", 1)[1] + "s"


def mark(folder: Path | str, kind: str) -> None:
    """Record in `folder` that lsd wrote it, and as what."""

    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    record = {
        "format": MARKER_FORMAT,
        "kind": kind,
        "written_by": f"lsd {__version__}",
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    if kind in REPLACED_WHOLE:  # marked last, once everything is written
        record["files"] = _listing(Path(folder))
    write_json(Path(folder) / MARKER_FILE, record)


def _listing(folder: Path) -> dict[str, int | None]:
    """Every entry below `folder` (but the marker): relative path -> size (None: a folder)."""
    out: dict[str, int | None] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if rel != MARKER_FILE:
            out[rel] = None if path.is_dir() and not path.is_symlink() else path.lstat().st_size
    return out


def _viewer_cache(path: str, files: dict[str, int | None]) -> bool:
    if path.rsplit("/", 1)[-1] in FOLDER_METADATA:
        return True
    return any(path.endswith(ext) and path[: -len(ext)] in files for ext in VIEWER_CACHES)


def _not_written_by_lsd(folder: Path) -> str | None:
    """What in a marked folder lsd did not write (or that changed since), as a phrase naming
    it; None when the folder is all lsd's."""
    raw = read_json(folder / MARKER_FILE)
    files = raw.get("files") if isinstance(raw, dict) else None
    if not isinstance(files, dict):
        return ("files lsd cannot tell from yours (its marker, from an older lsd, does not list "
                "what lsd wrote)")  # fmt: skip
    now = {p: size for p, size in _listing(folder).items() if not _viewer_cache(p, files)}
    added = [p for p in now if p not in files and not any(p.startswith(f"{q}/") for q in
             now if q not in files)]  # fmt: skip
    changed = [p for p in now if p in files and now[p] != files[p]]
    found = [*(f"{p} (not written by lsd)" for p in added),
             *(f"{p} (changed since lsd wrote it)" for p in changed)]  # fmt: skip
    if not found:
        return None
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    return ", ".join(found[:3]) + more


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
        if kind in REPLACED_WHOLE:
            foreign = _not_written_by_lsd(out)
            if foreign is not None:
                raise InvalidValue(
                    f"{out}: holds {foreign}; lsd replaces a folder only when everything in it "
                    "is its own: move those out, or choose another folder",
                    field="out",
                )
    check_writable(out.parent, create=False)
    return out


def check_reusable(
    folder: Path | str, kind: str, *, inputs: Iterable[Path | str | None] = ()
) -> Path:
    """A folder lsd adds to across runs (event folders from imports and fetches, the stacks
    fetched for a map): it must be new, empty, or marked as that kind, so lsd never writes into
    a folder it did not make (where a user's DEST/<id>/stack.tif would be replaced); and it is
    not the working folder, an input, or inside one."""
    folder = Path(folder)
    label = KINDS[kind]
    if folder.exists() and not folder.is_dir():
        raise InvalidValue(f"{folder}: exists and is not a folder", field="out")
    if _holds(folder, Path.cwd()):
        raise InvalidValue(
            f"{folder}: is the working folder or holds it; give a new folder instead",
            field="out",
        )
    for given in inputs:
        if given is None:
            continue
        given = Path(given)
        if _holds(given, folder) or _holds(folder, given):
            how = f"lies inside {given}," if _holds(given, folder) else f"holds {given},"
            if given.resolve() == folder.resolve():
                how = "is"
            raise InvalidValue(
                f"{folder}: {how} an input of this command; give a folder outside it",
                field="out",
            )
    if folder.is_dir() and not _is_empty(folder) and marked_kind(folder) != kind:
        raise InvalidValue(
            f"{folder}: exists and is not {label} of lsd (it has no lsd marker); lsd adds only "
            f"to new, empty or its own {_plural(label)}, so that nothing of yours is replaced: "
            "choose another folder",
            field="out",
        )
    check_writable(folder.parent, create=False)
    return folder
