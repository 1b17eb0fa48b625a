"""The paper's own procedures where they differ from lsd's, so its models are used as it used them.

- Normalisation statistics (src/data/landslides.py compute_metadata): per band, over every
  train_val file (validation files included), the sum and sum of squares of the non-NaN values
  of each file as float32 `np.nansum` over the H x W x 15 array, accumulated in float64;
  mean = sum / n, std = sqrt(sum_sq / n - mean^2). lsd's own statistics use the training events
  only and a numerically stable merge.
- Scoring (notebooks/test_enseble_classification.ipynb): one whole-image pass over each image
  centre-cropped to a multiple of 32 (torchvision CenterCrop: offset round((H - h) / 2), Python
  rounding), sigmoid, mean over members, then `.round()`: landslide where p > 0.5, ties at
  exactly 0.5 going to "not landslide" (round half to even). lsd's own maps pad instead of
  cropping and use the same strict rule, p > 0.5 (lsd.bundles.is_landslide).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lsd.training.metrics import Counts, confusion
from lsd.training.normalise import norm_tensors, normalise

CROP_MULTIPLE = 32
PAPER_THRESHOLD = 0.5  # strict: p > 0.5 (torch.round of the probability)


def centre_crop_box(height: int, width: int, multiple: int = CROP_MULTIPLE) -> tuple[slice, slice]:
    """Rows and columns torchvision's CenterCrop keeps for a crop to a multiple of `multiple`."""
    ch, cw = height - height % multiple, width - width % multiple
    top = int(round((height - ch) / 2.0))
    left = int(round((width - cw) / 2.0))
    return slice(top, top + ch), slice(left, left + cw)


def paper_statistics(stacks: Iterable[np.ndarray]) -> tuple[list[float], list[float]]:
    """Per-band mean and std as the paper's code computes them, from (C, H, W) float32 stacks.

    Each stack is laid out H x W x C as the paper's reader holds it, so the float32 sums are
    taken in the same shape and order.
    """
    psum = psum_sq = pvalid = None
    for data in stacks:
        hwc = np.ascontiguousarray(np.moveaxis(np.asarray(data, dtype=np.float32), 0, -1))
        s = np.nansum(hwc, axis=(0, 1)).astype(np.float64)
        s2 = np.nansum(hwc**2, axis=(0, 1)).astype(np.float64)
        n = (~np.isnan(hwc)).sum(axis=(0, 1)).astype(np.float64)
        psum = s if psum is None else psum + s
        psum_sq = s2 if psum_sq is None else psum_sq + s2
        pvalid = n if pvalid is None else pvalid + n
    if psum is None:
        raise ValueError("no stacks to compute the paper's statistics from")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = psum / pvalid
        std = np.sqrt(psum_sq / pvalid - mean**2)
    return [float(m) for m in mean], [float(s) for s in std]


@dataclass
class CroppedEvent:
    """A test or validation event as the paper scored it: cropped image (raw) and label."""

    event_id: str
    image: np.ndarray  # (C, h, w) float32, raw values, NaN = no data
    label: np.ndarray  # (h, w) uint8 0/1/255

    @classmethod
    def crop(cls, event_id: str, image: np.ndarray, label: np.ndarray) -> CroppedEvent:
        rows, cols = centre_crop_box(*label.shape)
        return cls(event_id, np.ascontiguousarray(image[:, rows, cols]), label[rows, cols])


@torch.no_grad()
def whole_image_probability(
    model: nn.Module, image: np.ndarray, mean: Sequence[float], std: Sequence[float],
    device: str | torch.device = "cpu",
) -> np.ndarray:  # fmt: skip
    """One forward pass over the whole (already cropped) image, normalised as in training."""
    m, s = norm_tensors(mean, std, device)
    x = normalise(torch.from_numpy(image).to(device), m, s).unsqueeze(0)
    return torch.sigmoid(model.to(device).eval()(x))[0, 0].float().cpu().numpy()


def paper_counts(probability: np.ndarray, label: np.ndarray) -> Counts:
    """Confusion counts at the notebook's rule (p > 0.5); label 255 ignored."""
    return confusion(probability > PAPER_THRESHOLD, label)
