"""`lsd inspect`: per-layer statistics of layer stacks, side by side.

Made to settle conventions with numbers: put a fetched stack beside the paper's published one
(or two fetches with different settings) and read, layer by layer, the share of valid pixels,
the range and mean, and for class or flag layers the values and their shares. A stack is read
block by block, so its size does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lsd.errors import InputNotFound
from lsd.events import STACK_FILE
from lsd.formats import open_raster
from lsd.layers import CATEGORICAL_LAYERS, PAPER_LAYERS
from lsd.limits import check_raster

MAX_VALUES = 32  # a layer with more distinct values is summarised by its range only
SHOWN_VALUES = 6


@dataclass
class LayerStats:
    name: str
    pixels: int = 0
    valid: int = 0
    total: float = 0.0
    low: float = float("inf")
    high: float = float("-inf")
    values: dict[float, int] | None = field(default_factory=dict)  # None: too many to list
    categorical: bool = False

    @property
    def valid_share(self) -> float:
        return self.valid / self.pixels if self.pixels else 0.0

    @property
    def mean(self) -> float | None:
        return self.total / self.valid if self.valid else None

    def add(self, block: np.ndarray) -> None:
        self.pixels += block.size
        good = block[np.isfinite(block)]
        if not good.size:
            return
        self.valid += good.size
        self.total += float(good.sum(dtype=np.float64))
        self.low = min(self.low, float(good.min()))
        self.high = max(self.high, float(good.max()))
        if self.values is None:
            return
        if not self.categorical and not np.all(good == np.round(good)):
            self.values = None  # continuous: no value table
            return
        keys, counts = np.unique(good, return_counts=True)
        for k, c in zip(keys.tolist(), counts.tolist(), strict=True):
            self.values[k] = self.values.get(k, 0) + c
        if len(self.values) > MAX_VALUES:
            self.values = None

    def summary(self) -> dict[str, Any]:
        out = {"valid_share": round(self.valid_share, 6), "pixels": self.pixels}
        if self.valid:
            out.update(min=self.low, mean=self.mean, max=self.high)
        if self.values is not None and (self.categorical or len(self.values) <= SHOWN_VALUES):
            out["values"] = {_num(k): v for k, v in sorted(self.values.items())}
        return out


@dataclass
class StackStats:
    path: Path
    layers: dict[str, LayerStats]
    names_assumed: bool = False  # band names taken from the paper's order, not the file

    def record(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "names_assumed": self.names_assumed,
            "layers": {n: s.summary() for n, s in self.layers.items()},
        }


def stack_path(path: Path | str) -> Path:
    """A stack file, or an event folder holding stack.tif."""
    path = Path(path)
    if path.is_dir():
        path = path / STACK_FILE
    if not path.is_file():
        raise InputNotFound(f"{path}: stack not found")
    return path


def band_names(descriptions: tuple[str | None, ...]) -> tuple[list[str], bool]:
    """Layer names from band descriptions; an unnamed 15-band stack (as the paper published
    them) gets the paper's order, anything else band1, band2 ..."""
    if all(descriptions):
        return [str(d) for d in descriptions], False
    if len(descriptions) == len(PAPER_LAYERS) and not any(descriptions):
        return list(PAPER_LAYERS), True
    return [d or f"band{i}" for i, d in enumerate(descriptions, start=1)], False


def stack_stats(path: Path | str) -> StackStats:

    path = stack_path(path)
    with open_raster(path) as src:
        check_raster(src, path)
        names, assumed = band_names(src.descriptions)
        stats = {n: LayerStats(n, categorical=n in CATEGORICAL_LAYERS) for n in names}
        nodata = src.nodata
        for _, window in src.block_windows(1):
            block = src.read(window=window, out_dtype="float64")
            if nodata is not None and not np.isnan(nodata):
                block[block == nodata] = np.nan
            for i, name in enumerate(names):
                stats[name].add(block[i])
    return StackStats(path, stats, assumed)


# --------------------------------------------------------------------------- the table


def cell(stats: LayerStats | None) -> str:
    """One stack's summary of one layer, in a table cell."""
    if stats is None:
        return "-"
    share = f"{100 * stats.valid_share:5.1f}%"
    if not stats.valid:
        return f"{share} no data"
    shown = stats.values is not None and (stats.categorical or len(stats.values) <= SHOWN_VALUES)
    if shown:
        assert stats.values is not None
        top = sorted(stats.values.items(), key=lambda kv: -kv[1])[:SHOWN_VALUES]
        parts = [f"{_num(k)}:{100 * c / stats.valid:.1f}%" for k, c in top]
        more = len(stats.values) - len(top)
        return f"{share} " + " ".join(parts) + (f" +{more} more" if more > 0 else "")
    return f"{share} {_num(stats.low)} / {_num(stats.mean)} / {_num(stats.high)}"


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.4g}"


def comparison_lines(stacks: list[StackStats]) -> list[str]:
    """Rows = layers (in the first stack's order, then any others), columns = stacks."""
    order: list[str] = []
    for s in stacks:
        order += [n for n in s.layers if n not in order]
    header = ["layer"] + [
        f"{s.path}" + (" (names assumed: paper order)" if s.names_assumed else "") for s in stacks
    ]
    rows = [[n] + [cell(s.layers.get(n)) for s in stacks] for n in order]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append("cells: valid share, then min / mean / max, or value:share for classes and flags")
    return lines


def records(stacks: list[StackStats]) -> list[dict[str, Any]]:
    return [s.record() for s in stacks]
