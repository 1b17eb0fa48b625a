"""Writing files so that a finished-looking output is always a finished one.

Every lsd writer goes through `atomic_path`: the data is written under a hidden temporary sibling
and renamed into place only when complete, so an interrupted run (Ctrl-C, a killed job, a full
disk) never leaves a half-written file under its final name, and readers that list folders skip
the temporaries. A folder that replaces an older one moves the old one aside first and deletes it
only once the new one is in place, so at every instant one complete version exists.

Temporary names carry the writer's process id: the next write of the same output removes the
leftovers of writers that are no longer running (a killed job's half folder, or puts back an old
folder a kill caught mid-replacement), and leaves those of a writer still at work alone.

A write that fails for a reason outside lsd (no space, a read-only or full quota, a file-size
limit) becomes one `OutputNotWritable` line naming the output and the cause, whatever library
was writing (GDAL, torch, SQLite report such failures in their own words or not at all).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import resource
import shutil
import tempfile
import tomllib
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from lsd.errors import InputNotFound, InvalidFile, InvalidValue, OutputNotWritable, UserError

PARTIAL_SUFFIX = ".partial"  # a temporary being written
REPLACED_SUFFIX = ".replaced"  # an old folder moved aside while its replacement goes in
# errno values that only a write can cause; EACCES/EPERM count when they concern the output
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
ACCESS_ERRNOS = {errno.EACCES, errno.EPERM}
PROBE_BYTES = 1 << 16  # 64 KiB: a full disk refuses it, a size limit below it too


def _temp_pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"^\.{re.escape(name)}\.(\d+)-[^./]*({re.escape(PARTIAL_SUFFIX)}|{re.escape(REPLACED_SUFFIX)})$"
    )


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_stale(final: Path | str) -> list[Path]:
    """Remove what killed writers of `final` left beside it; returns the paths removed.

    An old folder moved aside by a writer killed before its replacement went in is put back
    under its name instead, so a kill at any instant loses nothing.
    """
    final = Path(final)
    pattern = _temp_pattern(final.name)
    removed: list[Path] = []
    try:
        entries = list(final.parent.iterdir())
    except OSError:
        return removed
    for entry in sorted(entries, key=lambda p: not p.name.endswith(REPLACED_SUFFIX)):
        match = pattern.match(entry.name)
        if not match or _alive(int(match.group(1))):
            continue
        if match.group(2) == REPLACED_SUFFIX and not final.exists():
            os.rename(entry, final)
            continue
        _remove(entry)
        removed.append(entry)
    return removed


def _make_temp(final: Path, directory: bool, suffix: str = PARTIAL_SUFFIX) -> Path:
    """The writer's temporary beside `final`. The folder is made again if it vanished after the
    writer made it: another lsd process's check_writable(create=False) removes the empty folder
    it probed, and two drivers starting on one new RUNS folder hit that window."""
    prefix = f".{final.name}.{os.getpid()}-"

    def make() -> Path:
        if directory:
            return Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=final.parent))
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=final.parent)
        os.close(fd)
        return Path(name)

    for _ in range(2):
        try:
            return make()
        except FileNotFoundError:
            final.parent.mkdir(parents=True, exist_ok=True)
    return make()


def _put_in_place(tmp: Path, final: Path, directory: bool) -> None:
    """Rename `tmp` to `final`; an existing folder is moved aside first and removed last."""
    if not (directory and final.is_dir()):
        os.replace(tmp, final)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{final.name}.{os.getpid()}-",
                                suffix=REPLACED_SUFFIX, dir=final.parent))  # fmt: skip
    os.rmdir(old)
    os.rename(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        os.rename(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(final: Path | str, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `final`; rename it into place only if the block succeeds.

    The temporary name starts with '.' and ends with '.partial', so an interrupted write never
    looks like a finished output and readers that list folders skip it. A failure to write
    (disk full, read-only, too large) is raised as one OutputNotWritable line.

    A folder `final` that is a symbolic link stays one: the folder it points to is replaced
    (its temporary sits beside that folder), so an output kept on another disk stays there.
    A file that is a link is replaced by the new file, leaving what it pointed to alone.
    """
    final = Path(final)
    if directory and final.is_symlink():
        final = Path(os.path.realpath(final))
    tmp: Path | None = None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(final)
        tmp = _make_temp(final, directory)
        # mkstemp/mkdtemp create private (0600/0700) entries; outputs should follow the umask
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod((0o777 if directory else 0o666) & ~umask)
        yield tmp
        _put_in_place(tmp, final, directory)
    except BaseException as exc:
        failure = write_failure(exc, final, tmp)
        if tmp is not None:
            _remove(tmp)
        if failure is not None:
            raise failure from None
        raise


def _errno_of(exc: BaseException, folder: Path) -> int | None:
    """The errno of a plain OSError in the exception's chain that concerns a write."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        # only the built-in OSError family carries real errno values (GDAL's errors reuse the
        # attribute for their own error classes)
        if isinstance(cur, OSError) and type(cur).__module__ == "builtins" and cur.errno:
            name = cur.filename
            if cur.errno in WRITE_ERRNOS or (name is not None and _inside(Path(name), folder)):
                return cur.errno
            if cur.errno in ACCESS_ERRNOS and name is None:
                return cur.errno
        cur = cur.__cause__ or cur.__context__
    return None


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError):
        return False


def probe_write(folder: Path) -> str | None:
    """Why `folder` cannot take another 64 KiB now (e.g. 'No space left on device'), or None."""
    fd, name = -1, ""
    try:
        fd, name = tempfile.mkstemp(prefix=".lsd-write-test.", dir=folder)
        block = memoryview(bytes(PROBE_BYTES))
        while block:
            block = block[os.write(fd, block) :]
        os.close(fd)
        fd = -1
        return None
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
        if name:
            with contextlib.suppress(OSError):
                os.unlink(name)


def _size_limit_hit(tmp: Path | None) -> str | None:
    """The cause when a file being written has reached the process's file-size limit (ulimit
    -f): the write failed with EFBIG inside a library that does not pass the errno on."""

    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft == resource.RLIM_INFINITY or tmp is None or not tmp.exists():
        return None
    files = [tmp] if tmp.is_file() else [p for p in tmp.rglob("*") if p.is_file()]
    largest = max((p.stat().st_size for p in files), default=0)
    if largest + PROBE_BYTES < soft:
        return None
    return f"{os.strerror(errno.EFBIG)}: files may not exceed {soft} bytes here (ulimit -f)"


def write_failure(
    exc: BaseException, final: Path, tmp: Path | None = None
) -> OutputNotWritable | None:
    """The one-line error for an exception raised while writing `final` (into `tmp`), when the
    cause is the file system (not lsd, not the input); None for anything else (a bug keeps its
    traceback)."""
    if isinstance(exc, UserError) or not isinstance(exc, Exception):
        return None
    folder = final.parent
    code = _errno_of(exc, folder)
    if code is not None:
        cause = os.strerror(code)
    elif isinstance(exc, OSError | RuntimeError):
        # libraries that write through C (GDAL, torch, SQLite) say "write failed" or less:
        # the folder itself tells whether the file system was the reason
        cause = (probe_write(folder) if folder.is_dir() else None) or _size_limit_hit(tmp)
    else:
        cause = None
    return OutputNotWritable(f"{final}: cannot write ({cause})") if cause else None


@contextlib.contextmanager
def writing(target: Path | str) -> Iterator[None]:
    """For writes that cannot go through atomic_path (appends, folders made in place): a
    file-system failure becomes one OutputNotWritable line naming `target`."""
    try:
        yield
    except Exception as exc:
        failure = write_failure(exc, Path(target))
        if failure is not None:
            raise failure from None
        raise


def _json_text(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"


def write_json(path: Path | str, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(_json_text(obj))


NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}


def create_json(path: Path | str, obj: Any) -> bool:
    """Write `obj` to `path` only if nothing is there yet; False when something was.

    Atomic and exclusive at once, for records that two processes started together may both try
    to create (grid.json): the complete text goes to a temporary sibling that is then hard-linked
    under the final name, and linking fails when the name exists, so exactly one writer wins and
    no reader sees half a file. Where the file system has no hard links, O_CREAT | O_EXCL makes
    the name exclusive instead (shared file systems honour it too).
    """
    final = Path(path)
    tmp: Path | None = None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(final)
        tmp = _make_temp(final, directory=False)
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)
        tmp.write_text(_json_text(obj))
        try:
            os.link(tmp, final)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in NO_HARD_LINKS:
                raise
        try:
            fd = os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(_json_text(obj))
        return True
    except BaseException as exc:
        failure = write_failure(exc, final, tmp)
        if failure is not None:
            raise failure from None
        raise
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def read_toml_table(path: Path | str, table: str, what: str, example: str) -> dict[str, Any]:
    """The `[table]` of a TOML file the user wrote (`what` names the file's purpose in
    messages, `example` shows a line of the table), or one line saying what is wrong."""

    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputNotFound(f"{path}: {what} file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidFile(f"{path}: not a readable TOML {what} file ({exc})") from None
    found = doc.get(table)
    if not isinstance(found, dict) or not found:
        raise InvalidFile(f"{path}: needs a [{table}] table, e.g. {example}")
    return found


def check_setting(key: str, value: Any, hint: Any, where: str, *, table: str) -> Any:
    """`value` of a setting in the `[table]` of a TOML file if it fits the field's type hint (int
    accepted for float fields), else one error naming `where`, the setting and what it must be."""
    options = _hint_options((hint,))
    if type(None) in options and value in (None, ""):
        return None  # TOML has no null: an empty string switches an optional setting off
    for option in options:
        if typing.get_origin(option) is Literal and value in typing.get_args(option):
            return value
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if option is str and isinstance(value, str):
            return value
    allowed = [
        " or ".join(repr(a) for a in typing.get_args(o))
        if typing.get_origin(o) is Literal
        else getattr(o, "__name__", str(o))
        for o in options
    ]
    raise InvalidFile(
        f"{where}: {table} setting '{key}' = {value!r} must be {' or '.join(allowed)}"
    )


def _hint_options(options: tuple[Any, ...]) -> list[Any]:
    """The alternatives of a type hint (`float | None` -> float, None)."""
    out: list[Any] = []
    for o in options:
        if typing.get_origin(o) in (typing.Union, types.UnionType):
            out.extend(_hint_options(typing.get_args(o)))
        else:
            out.append(o)
    return out


def read_json(path: Path | str) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputNotFound(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidFile(f"{path}: not readable JSON ({exc})") from None


def check_name(path: Path | str, field: str | None = None) -> None:
    """Refuse an output name holding a newline or another control character: SQLite (hence
    GeoPackages), shells and every tool that reads paths as lines break on them.

    Raises:
        InvalidValue: naming the path with its control characters escaped.
    """
    text = str(path)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise InvalidValue(
            f"{text!r}: holds a newline or another control character; choose a name without",
            field=field,
        )


def check_writable(out_dir: Path | str, *, create: bool = True) -> Path:
    """Fail early, with one line, when an output folder cannot be created or written.

    With create=False the folders made for the check are removed again, so a command that
    fails later (a bad input found after this check) leaves no empty output folder behind.
    """
    out_dir = Path(out_dir)
    check_name(out_dir)
    missing = [p for p in (out_dir, *out_dir.parents) if not p.exists()]
    try:
        for _ in range(3):  # another lsd process's check may remove the folder while it is empty
            out_dir.mkdir(parents=True, exist_ok=True)
            cause = probe_write(out_dir)
            if cause is None or out_dir.is_dir():
                break
    except OSError as exc:
        cause = exc.strerror or str(exc)
    finally:
        if not create:
            for folder in missing:  # deepest first
                with contextlib.suppress(OSError):
                    folder.rmdir()
    if cause:
        raise OutputNotWritable(f"{out_dir}: output folder cannot be written ({cause})")
    return out_dir


def file_sha256(path: Path) -> str:
    """Checksums catch bundles and archives damaged or half-copied after they were written."""

    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
