"""What the file importers share: folder checks and the order files are listed in."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lsd.errors import InputNotFound, InvalidFile


def natural_key(path: Path) -> list[Any]:
    """image_2 before image_10: the order users expect in listings and progress."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def check_source_folder(src: Path) -> None:
    if not src.exists():
        raise InputNotFound(f"{src}: source folder not found")
    if not src.is_dir():
        raise InvalidFile(f"{src}: source is not a folder")
