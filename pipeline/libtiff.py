"""libtiff's own error printer, turned off while an lsd command runs.

When a GeoTIFF write fails (full disk, file-size limit), the libtiff that rasterio's wheels bundle
prints "_tiffWriteProc: No space left on device." straight to the C stderr, through its built-in
default handler, and GDAL then raises the same failure as an exception, which lsd turns into one
line naming the output and the cause (lsd.files). The C line would be a second, rawer copy of that
one, so the CLI replaces libtiff's default handler with none. A handler that GDAL (or anything
else) installed is left in place: only libtiff's built-in printer is removed.
"""

from __future__ import annotations

import ctypes
import glob
import os

import rasterio

_done = False


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]  # fmt: skip


def _bundled_libtiff() -> str | None:

    here = os.path.dirname(rasterio.__file__)
    for pattern in ("../rasterio.libs/libtiff*", ".dylibs/libtiff*"):
        found = sorted(glob.glob(os.path.join(here, pattern)))
        if found:
            return found[0]
    return None


def _library_of(address: int) -> str:
    libc = ctypes.CDLL(None)
    info = _DlInfo()
    if not libc.dladdr(ctypes.c_void_p(address), ctypes.byref(info)) or not info.dli_fname:
        return ""
    return info.dli_fname.decode(errors="replace")


def silence_default_printer() -> None:
    """Remove libtiff's built-in stderr printer (once per process; a no-op where the bundled
    libtiff or dladdr cannot be found, e.g. on Windows)."""
    global _done
    if _done:
        return
    _done = True
    try:
        path = _bundled_libtiff()
        if path is None:
            return
        lib = ctypes.CDLL(path)
        lib.TIFFSetErrorHandler.restype = ctypes.c_void_p
        lib.TIFFSetErrorHandler.argtypes = [ctypes.c_void_p]
        old = lib.TIFFSetErrorHandler(None)
        if old and "libtiff" not in os.path.basename(_library_of(old)):
            lib.TIFFSetErrorHandler(old)  # someone else's handler: keep it
    except (OSError, AttributeError, ImportError):
        return
