"""The one door through which lsd opens rasters and HDF5 files that users and archives bring.

A file's name promises a format, but GDAL picks its driver from the bytes: a `.tif` holding GDAL
VRT XML is opened as a VRT, and a VRT reads whatever files it names (a private key, another
user's raster), so a crafted archive or shared folder would copy those bytes into stacks,
statistics and maps. Here a raster is opened only with the GDAL driver its suffix names (GeoTIFF
for .tif and .tiff, PNG for .png, ...), and only for the suffixes the caller reads; GDAL is first
asked which driver the bytes really are (GDALIdentifyDriverEx, which reads the header only), and
anything else is refused in one line naming the file and its real driver.

GDAL also reads files beside a raster on its own: overviews (.ovr), masks (.msk), metadata and
georeferencing (.aux.xml, world files), and an overview or a mask may itself be a VRT. Rasters
are therefore opened with GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR (GDAL sees no sibling files)
and GDAL_PAM_ENABLED=NO (no .aux.xml read or written beside the user's files). A GeoTIFF or PNG
read so uses its own bytes only: neither format can name another file. A raster whose
georeferencing lives only in a sidecar is refused, saying so, rather than read as if it had none.
Formats that are references by design (a `.vrt` given to `lsd add-layer`) are opened only where
the caller lists their suffix, i.e. where the user named such a file on purpose.

HDF5 has its own ways to point elsewhere: external links, datasets stored in other files, and
virtual datasets. `read_h5_dataset` refuses all three before reading a byte.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import glob
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import rasterio

from lsd.errors import InputNotFound, InvalidFile
from lsd.limits import check_memory, check_pixels

# suffix -> the one GDAL driver that may open it
SUFFIX_DRIVERS: dict[str, str] = {
    ".tif": "GTiff", ".tiff": "GTiff", ".png": "PNG", ".vrt": "VRT", ".img": "HFA",
    ".jp2": "JP2OpenJPEG", ".nc": "netCDF", ".dem": "USGSDEM", ".asc": "AAIGrid",
}  # fmt: skip
FORMAT_NAMES: dict[str, str] = {
    "GTiff": "GeoTIFF", "PNG": "PNG", "VRT": "GDAL VRT file",
    "HFA": "ERDAS Imagine file", "JP2OpenJPEG": "JPEG 2000", "netCDF": "netCDF file",
    "USGSDEM": "USGS DEM", "AAIGrid": "ASCII grid", "HDF5": "HDF5 file",
}  # fmt: skip
GEOTIFF: tuple[str, ...] = (".tif", ".tiff")
# What GDAL may do while a user's raster is open: no sibling files, no .aux.xml, no Python in VRTs
SAFE_GDAL: dict[str, str] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_PAM_ENABLED": "NO",
    "GDAL_VRT_ENABLE_PYTHON": "NO",
}
# files that only georeference a raster beside them (world files), by the raster's suffix
WORLD_FILES: dict[str, tuple[str, ...]] = {
    ".tif": (".tfw", ".tifw", ".wld"), ".tiff": (".tfw", ".tiffw", ".wld"),
    ".png": (".pgw", ".pngw", ".wld"),
}  # fmt: skip
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", "GTiff"), (b"MM\x00*", "GTiff"), (b"II+\x00", "GTiff"), (b"MM\x00+", "GTiff"),
    (b"\x89PNG\r\n\x1a\n", "PNG"), (b"\x89HDF\r\n\x1a\n", "HDF5"), (b"CDF\x01", "netCDF"),
    (b"CDF\x02", "netCDF"),
)  # fmt: skip


def format_name(driver: str) -> str:
    return FORMAT_NAMES.get(driver, f"{driver} file")


@functools.lru_cache(maxsize=1)
def _libgdal() -> Any:
    """The GDAL library rasterio runs on (bundled in its wheels, or the system's), or None."""

    here = os.path.dirname(rasterio.__file__)
    found = [p for pattern in ("../rasterio.libs/libgdal*", ".dylibs/libgdal*")
             for p in sorted(glob.glob(os.path.join(here, pattern)))]  # fmt: skip
    name = found[0] if found else ctypes.util.find_library("gdal")
    if not name:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.GDALIdentifyDriverEx.restype = ctypes.c_void_p
        lib.GDALIdentifyDriverEx.argtypes = [ctypes.c_char_p, ctypes.c_uint, ctypes.c_void_p,
                                             ctypes.c_void_p]  # fmt: skip
        lib.GDALGetDriverShortName.restype = ctypes.c_char_p
        lib.GDALGetDriverShortName.argtypes = [ctypes.c_void_p]
    except (OSError, AttributeError):
        return None
    return lib


def _sniff(path: Path) -> str | None:
    """The driver of a few formats from their first bytes: the fallback where GDAL's own
    identification cannot be called or has no answer (GDAL's OGR VRT driver cannot identify)."""
    try:
        with path.open("rb") as f:
            head = f.read(1024)
    except OSError:
        return None
    for magic, driver in _MAGIC:
        if head.startswith(magic):
            return driver
    if b"<VRTDataset" in head:
        return "VRT"
    if b"<OGRVRTDataSource" in head:
        return "OGR_VRT"
    return None


def real_driver(path: Path | str) -> str | None:
    """The GDAL driver the bytes of `path` belong to (from its header, nothing opened), or None
    when GDAL recognises none."""

    path = Path(path)
    lib = _libgdal()
    if lib is None:
        return _sniff(path)
    with rasterio.Env(**SAFE_GDAL):  # drivers registered, no sibling files looked at
        handle = lib.GDALIdentifyDriverEx(os.fsencode(path), 0, None, None)
        return lib.GDALGetDriverShortName(handle).decode() if handle else _sniff(path)


def _check_name(path: Path, suffixes: Sequence[str]) -> str:
    """The driver the file's name asks for, when the caller reads such files."""
    if not path.exists():
        raise InputNotFound(f"{path}: file not found")
    if path.is_dir():
        raise InvalidFile(f"{path}: is a folder, not a raster file")
    suffix = path.suffix.lower()
    if suffix not in suffixes or suffix not in SUFFIX_DRIVERS:
        kinds = ", ".join(sorted(set(suffixes)))
        raise InvalidFile(
            f"{path}: lsd reads only {kinds} rasters here, not '{suffix or path.name}' files"
        )
    return SUFFIX_DRIVERS[suffix]


def check_driver(path: Path | str, suffixes: Sequence[str] = GEOTIFF) -> str:
    """The driver that may open `path`; refused in one line when its name is not one the caller
    reads or its bytes are another format than its name says."""
    path = Path(path)
    expected = _check_name(path, suffixes)
    real = real_driver(path)
    if real is not None and real != expected:
        why = ", since a VRT reads whatever files it names" if real == "VRT" else ""
        raise InvalidFile(
            f"{path}: is really a {format_name(real)} (GDAL driver {real}), not a "
            f"{format_name(expected)}; lsd opens {path.suffix.lower()} files only as "
            f"{format_name(expected)}s{why}"
        )
    return expected


def check_vector_file(path: Path | str) -> None:
    """Vector files (AOIs, inventories, points) are read by OGR, which picks its driver from the
    bytes too: an OGR VRT under another name (`aoi.geojson`) would read the files it names.
    Such a file is refused unless its name says it is one (`.vrt`). Sibling files stay
    readable here: a shapefile is its .shp, .shx, .dbf and .prj together."""
    path = Path(path)
    if path.suffix.lower() == ".vrt" or not path.is_file():
        return
    real = real_driver(path)
    if real in ("VRT", "OGR_VRT"):
        raise InvalidFile(
            f"{path}: is really a GDAL VRT file (driver {real}), not a "
            f"{path.suffix.lower() or 'vector'} file; lsd reads a VRT, which reads whatever "
            "files it names, only from a file named .vrt"
        )


def _sidecar_georeferencing(path: Path) -> Path | None:
    """A world file or .aux.xml beside `path` that would have georeferenced it."""
    stem = path.with_suffix("")
    for ext in WORLD_FILES.get(path.suffix.lower(), ()):
        for candidate in (stem.with_name(stem.name + ext), stem.with_name(stem.name + ext.upper())):
            if candidate.is_file():
                return candidate
    aux = path.with_name(path.name + ".aux.xml")
    if aux.is_file():
        with contextlib.suppress(OSError), aux.open("rb") as f:
            text = f.read(1 << 16)
            if b"<GeoTransform" in text or b"<SRS" in text:
                return aux
    return None


def _not_georeferenced(ds: Any) -> bool:
    return ds.crs is None and ds.transform.is_identity and not ds.gcps[0]


def open_raster(path: Path | str, suffixes: Sequence[str] = GEOTIFF) -> Any:
    """Open a raster from a user or an archive for reading (a rasterio dataset; close it).

    Only files named with one of `suffixes`, only with the driver that suffix names, and never
    with files beside it (see the module's docstring).

    Raises:
        InputNotFound: the file is not there.
        InvalidFile: a name lsd does not read here, bytes of another format than the name says,
            georeferencing only in a sidecar file, or a file the driver cannot read.
    """

    path = Path(path)
    driver = check_driver(path, suffixes)
    try:
        with rasterio.Env(**SAFE_GDAL):
            ds = rasterio.open(path, driver=driver)
    except rasterio.errors.RasterioIOError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        reason = reason.replace(f"'{path}' ", "").replace(f"{path}: ", "")  # named once, first
        raise InvalidFile(f"{path}: not a readable {format_name(driver)} ({reason})") from None
    if _not_georeferenced(ds):
        sidecar = _sidecar_georeferencing(path)
        if sidecar is not None:
            ds.close()
            raise InvalidFile(
                f"{path}: its georeferencing is only in {sidecar.name}, a file beside it that "
                "lsd does not read (files beside a raster can point at others); write it into "
                "the raster itself, e.g. gdal_translate -of GTiff"
            )
    return ds


def open_tiff_page(path: Path | str, page: int) -> Any:
    """Page `page` (1-based, as GDAL counts the pages after the first) of a GeoTIFF that has
    passed `open_raster`, opened the same safe way."""

    with rasterio.Env(**SAFE_GDAL):
        return rasterio.open(f"GTIFF_DIR:{int(page)}:{os.fspath(path)}", driver="GTiff")


@contextlib.contextmanager
def opened(path: Path | str, suffixes: Sequence[str] = GEOTIFF) -> Iterator[Any]:
    """`open_raster` as a context manager."""
    ds = open_raster(path, suffixes)
    with ds:
        yield ds


def _h5_contents(f: Any) -> str:
    """What an HDF5 file holds at its top, with shapes, without following any link out of it."""

    parts = []
    for name in sorted(f.keys()):
        link = f.get(name, getlink=True)
        obj = f[name] if isinstance(link, h5py.HardLink) else None
        what = getattr(obj, "shape", "(a group)") if obj is not None else "(a link)"
        parts.append(f"'{name}' {what}")
    return ", ".join(parts) or "none"


def _check_h5_size(path: Path, key: str, dset: Any, copy_bytes: int) -> None:

    where = f"{path}: dataset '{key}'"
    shape = " x ".join(map(str, dset.shape))
    if dset.ndim >= 2:
        check_pixels(where, int(dset.shape[1]), int(dset.shape[0]))
    if dset.size and dset.id.get_storage_size() == 0:
        raise InvalidFile(
            f"{where} declares {shape} values but stores none (the file has "
            f"{path.stat().st_size} bytes): nothing to import"
        )
    check_memory(f"reading {where} ({shape} values)",
                 float(dset.size) * (dset.dtype.itemsize + copy_bytes))  # fmt: skip


def read_h5_dataset(path: Path | str, key: str, copy_bytes: int = 0) -> Any:
    """The dataset `key` of an HDF5 file as a numpy array, read only from the file itself.

    A header can claim any shape in a few bytes, so the size is checked against lsd.limits
    before reading (`copy_bytes` per value is what the caller adds, e.g. a float32 copy), and a
    dataset that stores nothing at all is refused (every value would be the fill value).

    Raises:
        InvalidFile: not an HDF5 file, no such dataset, or one whose data lives elsewhere (an
            external link, external storage, a virtual dataset), or that stores no values.
        TooLarge: more pixels or memory than lsd.limits allows.
    """

    path = Path(path)
    if not path.exists():
        raise InputNotFound(f"{path}: file not found")
    try:
        with h5py.File(path, "r") as f:
            link = f.get(key, getlink=True)
            if link is None:
                raise InvalidFile(f"{path}: no dataset '{key}' (found: {_h5_contents(f)})")
            if not isinstance(link, h5py.HardLink):
                where = getattr(link, "filename", None) or getattr(link, "path", "")
                raise InvalidFile(
                    f"{path}: '{key}' is a link to {where}, not data in this file; lsd reads "
                    "only data stored inside the .h5 file"
                )
            obj = f[key]
            if not isinstance(obj, h5py.Dataset):
                raise InvalidFile(f"{path}: '{key}' is a group, not a dataset")
            if obj.external:
                raise InvalidFile(
                    f"{path}: dataset '{key}' is stored in another file "
                    f"({os.fsdecode(obj.external[0][0])}); lsd reads only data stored inside "
                    "the .h5 file"
                )
            if obj.is_virtual:
                sources = obj.virtual_sources()
                where = sources[0].file_name if sources else "other files"
                raise InvalidFile(
                    f"{path}: dataset '{key}' is a virtual dataset reading {where}; lsd reads "
                    "only data stored inside the .h5 file"
                )
            _check_h5_size(path, key, obj, copy_bytes)
            return np.asarray(obj[()])
    except OSError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidFile(f"{path}: not a readable HDF5 file ({reason})") from None
