"""How much lsd agrees to hold, read, write and fetch, checked before anything is allocated.

A file can claim any size in a few bytes of header (an HDF5 dataset that was never written, a
sparse GeoTIFF), and an option can ask for any crop. Reading first and failing later means a
machine that swaps for minutes, or a process the kernel kills without a word. So each command
works out what it is about to allocate from the sizes it already knows (raster dimensions, crop,
batch size, members) and asks here first; a refusal is one line that names the limit hit and,
where a user may legitimately need more, how to raise it.

    memory      what one command may allocate for its arrays: the machine's memory (the lowest of
                the physical memory, a cgroup limit and `ulimit -v`), or LSD_MEMORY_GB
    pixels      a raster lsd reads holds at most DEFAULT_MAX_PIXELS (31623 x 31623, 100000 km2 at
                10 m); LSD_MAX_PIXELS raises it. It bounds time as well as memory: a stack that
                large takes hours to map on a CPU, and lsd then shows progress all the way
    disk        what a command is about to write (an archive unpacked) must fit the free space
    event area  an event's AOI covers more than nothing and at most MAX_AOI_KM2; fetch and
                predict --aoi share the rule
    event date  an event lies in the past: no imagery after a future date exists yet

Values here are about data; the command line adds its flags to the messages (lsd.errors).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import resource
import shutil
from pathlib import Path
from typing import Any

from pyproj import Geod

from lsd.errors import InvalidFile, InvalidValue, OutputNotWritable, TooLarge

MEMORY_ENV = "LSD_MEMORY_GB"
PIXELS_ENV = "LSD_MAX_PIXELS"
DEFAULT_MAX_PIXELS = 1_000_000_000
MAX_AOI_KM2 = 100_000.0  # the area DEFAULT_MAX_PIXELS covers at 10 m
DISK_MARGIN_BYTES = 64 * 2**20  # room left for the records written after the bulk
_UNLIMITED = 1 << 62  # what cgroup v1 and rlimits report for "no limit"


def human_bytes(n: float) -> str:
    """Bytes in the largest unit that keeps the figure at or above 1 (binary units)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover - the loop returns


def _env_number(name: str, what: str) -> float | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InvalidValue(f"{name}={text!r} is not a positive number of {what}")
    return value


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < _UNLIMITED:
            return int(text)
    return None


def machine_memory() -> tuple[int, str]:
    """The memory this process can have at most, and what sets it."""

    found = [(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine has")]
    cgroup = _cgroup_limit()
    if cgroup is not None:
        found.append((cgroup, "this container may use"))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft not in (resource.RLIM_INFINITY, -1) and soft < _UNLIMITED:
        found.append((soft, "ulimit -v allows"))
    return min(found)


def memory_limit() -> tuple[int, str]:
    """(bytes, why): LSD_MEMORY_GB when set, else the machine's memory."""
    gb = _env_number(MEMORY_ENV, "gigabytes")
    if gb is not None:
        return int(gb * 2**30), f"{MEMORY_ENV}={gb:g} allows"
    return machine_memory()


def check_memory(what: str, nbytes: float, *, field: str | None = None) -> None:
    """Refuse `what` (e.g. "crop 100000 (index tables and one batch)") when it needs more memory
    than the limit; `field` names the option it came from, if one did.

    Raises:
        TooLarge: naming the bytes needed, the limit and where it comes from.
    """
    limit, why = memory_limit()
    if nbytes <= limit:
        return
    raise TooLarge(
        f"{what} needs {human_bytes(nbytes)} of memory, more than the {human_bytes(limit)} "
        f"{why} (set {MEMORY_ENV} to change the limit)",
        field=field,
    )


def max_pixels() -> int:
    value = _env_number(PIXELS_ENV, "pixels")
    return int(value) if value is not None else DEFAULT_MAX_PIXELS


def check_pixels(where: str, width: int, height: int) -> None:
    """Refuse a raster larger than lsd reads (its header can claim any size).

    Raises:
        TooLarge: naming the raster, its size and the limit.
    """
    limit = max_pixels()
    if width * height <= limit:
        return
    side = int(math.isqrt(limit))
    raise TooLarge(
        f"{where}: {width} x {height} pixels ({width * height:.3g}) is more than the "
        f"{limit:.3g} pixels lsd reads from one raster (about {side} x {side}); if it really "
        f"is that large, cut it into tiles, or set {PIXELS_ENV} to raise the limit"
    )


def check_raster(src: Any, path: Path | str) -> None:
    """What every raster lsd reads whole or maps must be: within the pixel limit, and real.

    Raises:
        TooLarge: more pixels than the limit.
        InvalidFile: complex values.
    """
    check_pixels(str(path), int(src.width), int(src.height))
    check_real(src, path)


def check_real(src: Any, path: Path | str) -> None:
    """Refuse complex bands: GDAL would read them as their real part (the imaginary part dropped
    without a word when asked for float32), which is never what a layer means.

    Raises:
        InvalidFile: naming the bands and their type.
    """
    complex_bands = [i + 1 for i, d in enumerate(src.dtypes) if str(d).startswith("complex")]
    if complex_bands:
        raise InvalidFile(
            f"{path}: band(s) {', '.join(map(str, complex_bands[:5]))} hold complex values "
            f"({src.dtypes[complex_bands[0] - 1]}); lsd reads real numbers only, so convert them "
            "first (e.g. to amplitude in dB)"
        )


def check_disk(folder: Path | str, nbytes: float, what: str) -> None:
    """Refuse to start writing `nbytes` into `folder` when its file system has not that much free.

    Raises:
        OutputNotWritable: naming the folder, the bytes needed and the bytes free.
    """
    folder = Path(folder)
    probe = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if probe is None:
        return
    free = shutil.disk_usage(probe).free
    if nbytes + DISK_MARGIN_BYTES <= free:
        return
    raise OutputNotWritable(
        f"{folder}: cannot write ({what} needs {human_bytes(nbytes)}, the disk has "
        f"{human_bytes(free)} free)"
    )


def geodesic_km2(geom: Any) -> float:
    """Area of a lon/lat geometry on the WGS 84 ellipsoid, in km2 (0 for an empty one): the
    same figure whatever the UTM zone, so one rule holds for every AOI."""

    if geom is None or geom.is_empty:
        return 0.0
    area, _ = Geod(ellps="WGS84").geometry_area_perimeter(geom)
    return abs(area) / 1e6


def check_aoi_km2(km2: float, where: str, *, field: str | None = None) -> None:
    """The one rule for the area of an event, whether fetched for training or for a map.

    Raises:
        InvalidFile: an area of zero (a degenerate polygon).
        TooLarge: more than MAX_AOI_KM2.
    """
    if not km2 > 0:
        raise InvalidFile(f"{where}: has zero area", field=field)
    if km2 > MAX_AOI_KM2:
        raise TooLarge(
            f"{where}: covers {km2:,.0f} km2, more than the {MAX_AOI_KM2:,.0f} km2 one event may "
            "cover (a stack of that many 10 m pixels is the most lsd reads); split it into "
            "several events",
            field=field,
        )


def check_event_date(
    date: dt.date, *, today: dt.date | None = None, field: str | None = None
) -> None:
    """An event date must not lie in the future: no imagery after it exists yet.

    Raises:
        InvalidValue: naming the date and today.
    """
    today = today or dt.date.today()
    if date > today:
        raise InvalidValue(
            f"{date} is in the future (today is {today}); no imagery exists yet", field=field
        )
