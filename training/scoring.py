"""The one pass by which models are scored: validation in training, choosing K, `lsd evaluate`.

An event is scored exactly as `lsd predict` maps it: cut into the same overlapping tiles
(lsd.training.options.TileOptions defaults, the same tile starts and blending ramps), tiles
that hold no data skipped, a pixel with no data in any layer never a landslide, and a pixel a
landslide by the one threshold rule (lsd.bundles.is_landslide). Training used to validate on
whole images while ensemble scoring tiled them, so on a 700 x 900 event a member could rank
high on one pass and be scored on another (benchmarks/bench_scoring.py measures the gap).

The pass works on a normalised image already on the device: training keeps its validation
events there for every epoch, and scoring normalises each event once per member.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from lsd.bundles import DEFAULT_THRESHOLD, BundleMeta, is_landslide
from lsd.training.inference import blend_weight, default_batch_size, tile_starts
from lsd.training.metrics import Counts, confusion
from lsd.training.models import model_min_side, pad_to_multiple
from lsd.training.normalise import normalise_array_
from lsd.training.options import TileOptions
from lsd.training.precision import Precision

SCORING_TILES = TileOptions()


def no_data(image: np.ndarray) -> np.ndarray:
    """(H, W) True where no layer of a raw (C, H, W) image holds a finite value."""
    out = ~np.isfinite(image[0])
    for layer in image[1:]:
        out &= ~np.isfinite(layer)
    return out


@torch.no_grad()
def event_probability(
    model: nn.Module,
    image: torch.Tensor,
    nodata: torch.Tensor | None = None,
    *,
    precision: Precision | None = None,
    tiles: TileOptions = SCORING_TILES,
) -> torch.Tensor:
    """Landslide probability (H, W) float32 of one model on a normalised (C, H, W) image on the
    model's device; NaN where `nodata` (H, W) is True."""
    _, height, width = image.shape
    device = image.device
    precision = precision or Precision.for_device(device)
    tile, overlap = tiles.tile, tiles.overlap
    th, tw = min(tile, height), min(tile, width)
    weight = torch.from_numpy(blend_weight(th, tw, overlap)).to(device)
    acc = torch.zeros((height, width), dtype=torch.float32, device=device)
    wsum = torch.zeros((height, width), dtype=torch.float32, device=device)
    starts = [
        (y, x)
        for y in tile_starts(height, tile, overlap)
        for x in tile_starts(width, tile, overlap)
        if nodata is None or not bool(nodata[y : y + th, x : x + tw].all())
    ]
    batch = tiles.batch_size or default_batch_size(device)
    min_side = model_min_side(model)
    was_training = model.training
    model.eval()
    try:
        for b in range(0, len(starts), batch):
            chunk = starts[b : b + batch]
            x = torch.stack([image[:, y : y + th, x0 : x0 + tw] for y, x0 in chunk])
            x, _, _ = pad_to_multiple(x, min_side=min_side)
            with precision.autocast():
                logits = model(precision.prepare_input(x))
            prob = torch.sigmoid(logits[:, 0, :th, :tw].float())
            for i, (y, x0) in enumerate(chunk):
                acc[y : y + th, x0 : x0 + tw] += weight * prob[i]
                wsum[y : y + th, x0 : x0 + tw] += weight
    finally:
        model.train(was_training)
    out = acc / wsum
    if nodata is not None:
        out[nodata] = float("nan")
    return out


def score(prob: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor,
          threshold: float = DEFAULT_THRESHOLD) -> Counts:  # fmt: skip
    """Counts of a probability map against a label (255 ignored; NaN is never landslide)."""
    return confusion(is_landslide(prob, threshold), label)


def member_probability(
    model: nn.Module, meta: BundleMeta, raw: np.ndarray, device: str | torch.device = "cpu"
) -> np.ndarray:
    """A member's probability on a raw (C, H, W) event image, normalised with the member's own
    statistics, through `event_probability`; (H, W) float32, NaN where there is no data."""
    nodata = no_data(raw)
    image = normalise_array_(np.array(raw, dtype=np.float32, copy=True), meta.mean, meta.std)
    dev = torch.device(device)
    prob = event_probability(
        model,
        torch.from_numpy(image).to(dev),
        torch.from_numpy(nodata).to(dev),
        precision=Precision.for_device(dev),
    )
    return prob.cpu().numpy()


def validation_counts(
    model: nn.Module,
    events: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]],
    precision: Precision,
    threshold: float = DEFAULT_THRESHOLD,
) -> Counts:
    """Micro counts over normalised validation events (image, label, no-data mask) on device."""
    total = Counts()
    for image, label, nodata in events:
        prob = event_probability(model, image, nodata, precision=precision)
        total = total + score(prob, label, threshold)
    return total
