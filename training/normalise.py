"""Per-layer normalisation: the one implementation used for training, validation and prediction.

x -> (x - mean) / std per layer, then every non-finite value (NaN no-data, and +/-inf from a
damaged source) becomes 0, the layer mean. Training arrays and inference tiles go through the
same torch operations (numpy arrays as views, in place), so a model sees identical numbers when
it is trained and when it maps, to the last bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def norm_tensors(
    mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, 1, 1) float32 tensors that broadcast over (C, H, W) and (N, C, H, W); a zero or
    undefined std becomes 1 (a constant layer carries nothing but must not divide by 0)."""
    m = torch.tensor(list(mean), dtype=torch.float32, device=device).view(-1, 1, 1)
    s = torch.tensor(list(std), dtype=torch.float32, device=device).view(-1, 1, 1)
    return m, torch.where(s > 0, s, torch.ones_like(s))


def normalise(
    x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, *, inplace: bool = False
) -> torch.Tensor:
    """Normalised copy of `x` (or `x` itself, changed, with inplace=True)."""
    out = x.sub_(mean) if inplace else torch.sub(x, mean)
    return out.div_(std).nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)


def normalise_array_(data: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalise a (C, H, W) float32 array in place through `normalise`; returns it."""
    m, s = norm_tensors(mean, std)
    normalise(torch.from_numpy(data), m, s, inplace=True)
    return data
