"""Writing files so that a finished-looking output is always a finished one.

Every lsd writer goes through `atomic_path`: the data is written under a hidden temporary sibling
and renamed into place only when complete, so an interrupted run (Ctrl-C, a killed job, a full
disk) never leaves a half-written file under its final name, and readers that list folders skip
the temporaries. JSON records and writability checks live here too, because every format uses them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lsd.errors import InputNotFound, InvalidFile, OutputNotWritable

PARTIAL_SUFFIX = ".partial"


@contextlib.contextmanager
def atomic_path(final: Path | str, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `final`; rename it into place only if the block succeeds.

    The temporary name starts with '.' and ends with '.partial', so an interrupted write never
    looks like a finished output and readers that list folders skip it.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(
            tempfile.mkdtemp(prefix=f".{final.name}.", suffix=PARTIAL_SUFFIX, dir=final.parent)
        )
    else:
        fd, name = tempfile.mkstemp(
            prefix=f".{final.name}.", suffix=PARTIAL_SUFFIX, dir=final.parent
        )
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
        raise InputNotFound(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidFile(f"{path}: not readable JSON ({exc})") from None


def check_writable(out_dir: Path | str) -> Path:
    """Fail early, with one line, when an output folder cannot be created or written."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".lsd-write-test."):
            pass
    except OSError as exc:
        raise OutputNotWritable(
            f"{out_dir}: output folder cannot be written ({exc.strerror})"
        ) from None
    return out_dir


def file_sha256(path: Path) -> str:
    """Checksums catch bundles and archives damaged or half-copied after they were written."""
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
