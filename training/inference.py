"""Tiled, streamed inference for one model or an ensemble on stacks of any size.

A stack is cut into overlapping tiles; each member's sigmoid output on a tile is weighted by a
separable ramp that falls towards the tile's edges, weighted sums and weights are accumulated, and
the result is their quotient. Every pixel is thus a convex blend of the tiles that see it, with the
tile centres (where the network has the most context) weighted most: no seams at tile borders.

Work proceeds one *row of tiles* at a time. Once a row of tiles has run, the image rows above the
next row of tiles are final and are handed to the caller, so only one strip (tile height x image
width) of accumulators is ever held: memory does not grow with the number of rows. `predict_array`
is the in-memory front end; `predict_rows` is the streamed core that `pipeline.predict` drives with
windowed raster reads and writes. Both share one code path so they give identical numbers.

`predict_rows` can also run a range of rows of tiles alone (`tile_rows`): it starts at the first
row of tiles that reaches the range, so every output pixel sums the same tiles in the same order
as a whole-image pass and the values are identical to the last bit. That is what lets blocks of
a large area be predicted on different workers (lsd.training.executor_ray) into one seamless map.

`ForwardOptions` say how each tile goes through a network: the precision mode
(lsd.training.precision) and test-time augmentation (the mean of the 8 flips and rotations).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lsd.errors import InvalidValue
from lsd.training.bundle import Member
from lsd.training.device import resolve_device
from lsd.training.models import model_min_side, pad_to_multiple
from lsd.training.normalise import norm_tensors, normalise
from lsd.training.onnx_runtime import agrees, import_ort, onnx_net
from lsd.training.options import ForwardOptions, TileOptions
from lsd.training.precision import Precision

# (quarter turns, mirrored) for the 8 symmetries of the square, identity first
DIHEDRAL: tuple[tuple[int, bool], ...] = tuple((k, f) for f in (False, True) for k in range(4))
ReadRows = Callable[[int, int], np.ndarray]  # (row0, row1) -> raw (C, row1-row0, W) float32
EmitRows = Callable[[int, np.ndarray], None]  # (row0, probs (M, rows, W)) for finished rows


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles along one axis: stride tile-overlap, the last flush with the end.

    Flushing the last tile to the end (instead of padding past it) keeps every tile the same size,
    so tiles batch together and no network sees a large artificial border.
    """
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def blend_ramp(n: int, overlap: int) -> np.ndarray:
    """1-D weight, 1 in the middle, falling linearly over `overlap` pixels to a small positive
    value at both ends. Positive everywhere, so a pixel seen by a single tile is still defined."""
    i = np.arange(n, dtype=np.float64)
    ramp = np.minimum(i + 1, n - i) / (overlap + 1)
    return np.minimum(ramp, 1.0).astype(np.float32)


def blend_weight(th: int, tw: int, overlap: int) -> np.ndarray:
    return np.outer(blend_ramp(th, overlap), blend_ramp(tw, overlap))


def default_batch_size(device: torch.device) -> int:
    """Tiles per forward pass when the user gives none. On a CPU a batch is no faster per tile
    than a single tile (measured: 0.89 s vs 0.99 s per 512 px tile for UnetPlusPlus/resnet34) but
    each extra tile costs about 300 MB of activations, so CPUs take one at a time."""
    return 8 if device.type == "cuda" else 1


def _member_layers(members: Sequence[Member]) -> list[str]:
    if not members:
        raise ValueError("no members to predict with")
    layers = list(members[0][1].layers)
    for _, meta in members[1:]:
        if list(meta.layers) != layers:
            raise ValueError("all members of an ensemble must use the same layers in one order")
    return layers


class _Runner:
    """Holds per-call state (device tensors of mean/std, reusable batch buffer, timings) so the
    per-tile work is a few array copies and one forward per batch per member."""

    def __init__(
        self,
        members: Sequence[Member],
        channels: int,
        batch_size: int,
        device: torch.device,
        forward: ForwardOptions | None = None,
    ) -> None:
        self.device = device
        self.forward = forward or ForwardOptions()
        self.precision = Precision.for_device(device, mode=self.forward.precision)
        self.members: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []
        for model, meta in members:
            model.eval()
            model.to(device)
            self.precision.prepare_model(model)
            self.members.append((model, *norm_tensors(meta.mean, meta.std, device)))
        self.labels = [f"member {i + 1} ({meta.arch}/{meta.encoder})"
                       for i, (_, meta) in enumerate(members)]  # fmt: skip
        self.nets: list[Any] = [None] * len(members)  # ONNX Runtime sessions, where used
        if self.forward.runtime == "onnx":
            self._start_onnx(channels)
        self.batch_size = batch_size
        self.channels = channels
        self.buffer: np.ndarray | None = None
        self.forward_s = [0.0] * len(members)
        self.tiles = 0

    def batch_buffer(self, th: int, tw: int) -> np.ndarray:
        shape = (self.batch_size, self.channels, th, tw)
        if self.buffer is None or self.buffer.shape != shape:
            self.buffer = np.empty(shape, dtype=np.float32)
        return self.buffer

    @torch.inference_mode()
    def run(self, raw: np.ndarray) -> list[np.ndarray]:
        """Sigmoid probabilities of each member for a (N, C, th, tw) batch of raw tiles."""
        n, _, th, tw = raw.shape
        x_raw = torch.from_numpy(raw)
        if self.device.type == "cuda":
            x_raw = x_raw.pin_memory().to(self.device, non_blocking=True)
        outs: list[np.ndarray] = []
        for m, (_, mean, std) in enumerate(self.members):
            t0 = time.perf_counter()
            x = normalise(x_raw, mean, std)  # one batch copy
            views = DIHEDRAL if self.forward.tta else DIHEDRAL[:1]
            total = None
            for k, mirrored in views:
                p = self._view_prob(m, x, k, mirrored)
                total = p if total is None else total + p
            prob = (total / len(views) if len(views) > 1 else total)[:, :th, :tw].cpu().numpy()
            self.forward_s[m] += time.perf_counter() - t0
            outs.append(prob)
        self.tiles += n
        return outs

    def _start_onnx(self, channels: int) -> None:

        if self.device.type != "cpu":
            raise InvalidValue(f"runtime onnx runs on the CPU, not on {self.device}; "
                               "use runtime torch there", field="runtime")  # fmt: skip
        import_ort()
        for m, (model, _, _) in enumerate(self.members):
            side = max(model_min_side(model), 64)
            self.nets[m] = onnx_net(model, channels, side, self.labels[m])

    def _view_prob(self, m: int, x: torch.Tensor, k: int, mirrored: bool):
        """Sigmoid of member m on one symmetry of the batch, turned back: (N, H, W) fp32. A
        member on ONNX Runtime is checked against PyTorch on its first batch."""

        model = self.members[m][0]
        v = torch.flip(x, dims=(-1,)) if mirrored else x
        v = torch.rot90(v, k, dims=(-2, -1)) if k else v
        h, w = v.shape[-2:]
        v, _, _ = pad_to_multiple(v, min_side=model_min_side(model))
        net = self.nets[m]
        if net is None:
            p = self._torch_prob(model, v, h, w)
        else:
            p = torch.sigmoid(net(v)[:, 0, :h, :w].float())
            if not net.checked:
                net.checked = True
                ref = self._torch_prob(model, v, h, w)
                if not agrees(p, ref, self.labels[m]):
                    self.nets[m], p = None, ref
        p = torch.rot90(p, -k, dims=(-2, -1)) if k else p
        return torch.flip(p, dims=(-1,)) if mirrored else p

    def _torch_prob(self, model: nn.Module, v: torch.Tensor, h: int, w: int) -> torch.Tensor:
        v = self.precision.prepare_input(v)
        with self.precision.autocast():
            logits = model(v)
        return torch.sigmoid(logits[:, 0, :h, :w].float())


def _all_nan(strip: np.ndarray) -> np.ndarray:
    """Pixels where every layer is NaN, one layer at a time: np.isnan(strip).all(0) would build a
    boolean copy of the whole strip (56 MB for 11 layers x 512 x 10000)."""
    out = np.isnan(strip[0])
    for layer in strip[1:]:
        out &= np.isnan(layer)
    return out


def _add_strip(
    runner: _Runner,
    strip: np.ndarray,
    starts: Sequence[int],
    weight: np.ndarray,
    acc: np.ndarray,
    wsum: np.ndarray,
) -> None:
    """Run the tiles of one strip that start at `starts`, in batches, and add each member's
    blended probabilities into `acc` (M, th, W) and the blend weights into `wsum`."""
    th, tw = weight.shape
    for b in range(0, len(starts), runner.batch_size):
        chunk = starts[b : b + runner.batch_size]
        buf = runner.batch_buffer(th, tw)[: len(chunk)]
        for i, x in enumerate(chunk):
            buf[i] = strip[:, :, x : x + tw]
        probs = runner.run(buf)
        for i, x in enumerate(chunk):
            wsum[:, x : x + tw] += weight
            for m in range(len(probs)):
                acc[m, :, x : x + tw] += weight * probs[m][i]


def predict_rows(
    members: Sequence[Member],
    read_rows: ReadRows,
    height: int,
    width: int,
    emit: EmitRows,
    *,
    tiles: TileOptions | None = None,
    device: str | torch.device = "cpu",
    stats: dict[str, Any] | None = None,
    forward: ForwardOptions | None = None,
    tile_rows: tuple[int, int] | None = None,
) -> None:
    """Streamed core: read one strip of rows per row of tiles, emit rows as soon as they are final.

    `emit(row0, probs)` receives per-member probabilities (M, rows, width) float32 for consecutive
    row blocks that together cover the image exactly once, top to bottom; NaN where every layer of
    the input pixel is NaN. `stats`, when given, receives forward seconds per member and counts.
    With `tile_rows` = (k0, k1), only the rows that rows k0..k1-1 of tiles finish are emitted
    (`block_rows` gives them), with the values a whole-image pass gives them.

    One function, long, because the strip accumulators and the emit rule share every index; the
    per-strip tile work is `_add_strip`.
    """
    tiles = tiles or TileOptions()
    tile, overlap = tiles.tile, tiles.overlap
    dev = resolve_device(device)
    batch_size = tiles.batch_size or default_batch_size(dev)
    layers = _member_layers(members)
    runner = _Runner(members, len(layers), batch_size, dev, forward)
    th, tw = min(tile, height), min(tile, width)
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    k0, k1 = tile_rows or (0, len(ys))
    first = next(k for k in range(k0 + 1) if ys[k] + th > ys[k0])  # first row of tiles in reach
    weight = blend_weight(th, tw, overlap)
    acc = np.zeros((len(members), th, width), dtype=np.float32)
    wsum = np.zeros((th, width), dtype=np.float32)
    skipped = 0

    for k in range(first, k1):
        y = ys[k]
        strip = read_rows(y, y + th)
        if strip.shape != (len(layers), th, width):
            want = (len(layers), th, width)
            raise ValueError(f"read_rows returned {strip.shape}, expected {want}")
        nodata = _all_nan(strip)
        todo = [x for x in xs if not nodata[:, x : x + tw].all()]
        skipped += len(xs) - len(todo)
        _add_strip(runner, strip, todo, weight, acc, wsum)
        # the strip's tiles are copied: release it now, or it stays alive while the next strip
        # is read and the peak holds two strips (225 MB each for 11 layers x 512 x 10000)
        del strip
        last = k == len(ys) - 1
        done = th if last else ys[k + 1] - y
        if k >= k0:
            with np.errstate(invalid="ignore", divide="ignore"):
                out = acc[:, :done] / wsum[:done]
            out[:, nodata[:done]] = np.nan
            emit(y, out)
        if not last:
            # keep the rows the next row of tiles also covers; clear the rest
            acc[:, : th - done] = acc[:, done:]
            acc[:, th - done :] = 0.0
            wsum[: th - done] = wsum[done:]
            wsum[th - done :] = 0.0

    if stats is not None:
        stats["forward_s_per_member"] = [round(s, 4) for s in runner.forward_s]
        stats["forward_s"] = round(sum(runner.forward_s), 4)
        stats["tiles"] = runner.tiles
        stats["tiles_skipped_all_nan"] = skipped
        stats["device"] = str(dev)
        stats["batch_size"] = batch_size
        stats["tile_shape"] = [th, tw]


def tile_row_count(height: int, tiles: TileOptions) -> int:
    return len(tile_starts(height, tiles.tile, tiles.overlap))


def block_rows(height: int, tiles: TileOptions, k0: int, k1: int) -> tuple[int, int]:
    """The image rows [r0, r1) that rows k0..k1-1 of tiles emit."""
    ys = tile_starts(height, tiles.tile, tiles.overlap)
    return ys[k0], (ys[k1] if k1 < len(ys) else height)


def row_blocks(height: int, tiles: TileOptions, rows_per_block: int) -> list[tuple[int, int]]:
    """Rows of tiles grouped into blocks of about `rows_per_block` image rows (at least one row
    of tiles each), as (k0, k1) ranges that cover the image once, top to bottom."""
    n = tile_row_count(height, tiles)
    stride = max(1, tiles.tile - tiles.overlap)
    per = max(1, rows_per_block // stride)
    return [(k, min(k + per, n)) for k in range(0, n, per)]


def predict_array(
    members: Sequence[Member],
    image: np.ndarray,
    *,
    tiles: TileOptions | None = None,
    device: str | torch.device = "cpu",
    stats: dict[str, Any] | None = None,
    forward: ForwardOptions | None = None,
) -> np.ndarray:
    """Per-member sigmoid probabilities (M, H, W) float32 for a RAW (C, H, W) image.

    The image is in the members' layer order, NaN = no data; each member normalises with its own
    mean/std and NaN becomes 0 after normalising (as in training). Output is NaN where every layer
    of the pixel is NaN. Images no larger than `tile` run whole (padded to a multiple of 32).
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3:
        raise ValueError(f"image must be (C, H, W), got shape {image.shape}")
    _, height, width = image.shape
    out = np.empty((len(members), height, width), dtype=np.float32)

    def read_rows(r0: int, r1: int) -> np.ndarray:
        return image[:, r0:r1]

    def emit(r0: int, probs: np.ndarray) -> None:
        out[:, r0 : r0 + probs.shape[1]] = probs

    predict_rows(
        members,
        read_rows,
        height,
        width,
        emit,
        tiles=tiles,
        device=device,
        stats=stats,
        forward=forward,
    )
    return out


# --------------------------------------------------------------------------- ensembles in groups

EmitMeanStd = Callable[[int, np.ndarray, np.ndarray], None]  # (row0, mean, std), each (rows, W)


def member_groups(weight_bytes: Sequence[int], budget_bytes: float) -> list[list[int]]:
    """Consecutive members whose weights together fit the budget (at least one per group)."""
    groups: list[list[int]] = []
    used = 0.0
    for i, size in enumerate(weight_bytes):
        if groups and used + size <= budget_bytes:
            groups[-1].append(i)
            used += size
        else:
            groups.append([i])
            used = size
    return groups


def predict_mean_std(
    load_group: Callable[[Sequence[int]], Sequence[Member]],
    groups: Sequence[Sequence[int]],
    read_rows: ReadRows,
    height: int,
    width: int,
    emit: EmitMeanStd,
    *,
    scratch: Path,
    tiles: TileOptions | None = None,
    device: str | torch.device = "cpu",
    stats: dict[str, Any] | None = None,
    forward: ForwardOptions | None = None,
    tile_rows: tuple[int, int] | None = None,
) -> None:
    """Mean and (population) std across all members, streamed, holding one group of members.

    A 20-member ensemble of UnetPlusPlus/resnet34 holds 2 GB of weights, more than a whole CPU
    prediction may use; so members are loaded group by group, each group makes one pass over the
    stack, and the per-pixel sums of p and p^2 (float64, exact enough for the std) wait between
    passes in two scratch files rather than in memory. With one group there is a single pass and
    no scratch file. Every member is loaded exactly once. `tile_rows` limits the pass to a block
    of rows, as in predict_rows.
    """
    n = sum(len(g) for g in groups)
    per_group: list[dict[str, Any]] = []

    def run(members: Sequence[Member], sink: EmitRows) -> None:
        st: dict[str, Any] = {}
        predict_rows(
            members, read_rows, height, width, sink, tiles=tiles, device=device, stats=st,
            forward=forward, tile_rows=tile_rows,
        )  # fmt: skip
        per_group.append(st)

    if len(groups) == 1:
        run(load_group(groups[0]), lambda r0, p: emit(r0, p.mean(axis=0), p.std(axis=0)))
    else:
        r0, r1 = (0, height) if tile_rows is None else block_rows(height, tiles or TileOptions(),
                                                                  *tile_rows)  # fmt: skip
        sums = _PixelSums(scratch, r1 - r0, width, row0=r0)
        try:
            for g in groups:
                members = load_group(g)
                run(members, sums.add)
                del members
            for r0, mean, std in sums.mean_std(n):
                emit(r0, mean, std)
        finally:
            sums.close()
    if stats is not None:
        stats.update({k: v for k, v in per_group[0].items() if k != "forward_s_per_member"})
        stats["forward_s_per_member"] = [x for st in per_group for x in st["forward_s_per_member"]]
        stats["forward_s"] = round(sum(stats["forward_s_per_member"]), 4)
        stats["member_groups"] = [list(g) for g in groups]


class _PixelSums:
    """Sum of p and of p^2 per pixel in two raw float64 files, read and written by row blocks."""

    BLOCK_ROWS = 256

    def __init__(self, folder: Path, height: int, width: int, row0: int = 0) -> None:
        self.height, self.width, self.row0 = height, width, row0
        self.row_bytes = width * 8
        self.files = []
        for name in (".sum_p.f64", ".sum_p2.f64"):
            f = open(folder / name, "w+b")  # noqa: SIM115 - closed in close()
            f.truncate(height * self.row_bytes)  # sparse zeros
            self.files.append(f)

    def _read(self, f, r0: int, rows: int) -> np.ndarray:
        f.seek(r0 * self.row_bytes)
        return np.fromfile(f, dtype=np.float64, count=rows * self.width).reshape(rows, self.width)

    def _write(self, f, r0: int, block: np.ndarray) -> None:
        f.seek(r0 * self.row_bytes)
        block.tofile(f)

    def add(self, r0: int, probs: np.ndarray) -> None:
        rows, r0 = probs.shape[1], r0 - self.row0
        p = probs.astype(np.float64)
        for f, term in zip(self.files, (p.sum(axis=0), (p * p).sum(axis=0)), strict=True):
            self._write(f, r0, self._read(f, r0, rows) + term)

    def mean_std(self, n: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        for r0 in range(0, self.height, self.BLOCK_ROWS):
            rows = min(self.BLOCK_ROWS, self.height - r0)
            s1, s2 = (self._read(f, r0, rows) for f in self.files)
            mean = s1 / n
            std = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
            yield self.row0 + r0, mean.astype(np.float32), std.astype(np.float32)

    def close(self) -> None:
        for f in self.files:
            f.close()
            Path(f.name).unlink(missing_ok=True)
