"""The paper's five losses for one-logit landslide segmentation, with label 255 ignored.

Written here rather than taken from segmentation_models_pytorch because the ignore value has to
drop out completely: SMP's binary Dice/Jaccard zero ignored pixels but also return 0 for a batch
without landslide pixels (so false alarms on landslide-free crops cost nothing), and padding or
unlabelled pixels must never reach a mean, a denominator or the Lovasz sort. The formulas are the
standard ones: binary cross-entropy; focal loss (Lin et al., gamma 2); soft Dice and soft Jaccard
over the whole batch; Lovasz hinge (Berman et al.) over the whole batch.

Every loss computes in float32 with autocast off, so bf16/fp16 training does not lose the small
differences a Dice or Lovasz term is made of.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from lsd.errors import InvalidValue
from lsd.rasters import LABEL_IGNORE, LABEL_LANDSLIDE
from lsd.training.options import LOSSES

FOCAL_GAMMA = 2.0
EPS = 1e-7

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_Impl = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def canonical_loss(name: str) -> str:
    key = name.strip().lower()
    for loss in LOSSES:
        if loss.lower() == key:
            return loss
    raise InvalidValue(f"unknown loss '{name}'; choose from {', '.join(LOSSES)}", field="losses")


# Each implementation gets flat float32 logits, flat 0/1 targets (0 where ignored) and flat 0/1
# weights (0 where ignored). Masking by weight rather than by boolean selection keeps shapes fixed,
# so a GPU step never waits for the device to report how many pixels are valid.


def _mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return torch.where(weight > 0, values, 0.0).sum() / weight.sum().clamp_min(1.0)


def _bce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return _mean(F.binary_cross_entropy_with_logits(logits, target, reduction="none"), weight)


def _focal(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    nll = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    # 1 - p_t written as -expm1(-nll): exact for confident pixels, where 1 - exp(.) cancels
    return _mean((-torch.expm1(-nll)) ** FOCAL_GAMMA * nll, weight)


def _soft_overlap(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, jaccard: bool
) -> torch.Tensor:
    prob = torch.sigmoid(logits) * weight
    inter = (prob * target).sum()
    p_sum, t_sum = prob.sum(), target.sum()
    if jaccard:
        score = inter / (p_sum + t_sum - inter).clamp_min(EPS)
    else:
        score = 2.0 * inter / (p_sum + t_sum).clamp_min(EPS)
    # With no landslide pixel there is nothing to overlap with: penalise predicted landslide
    # (mean probability) instead of returning a constant that teaches nothing.
    return torch.where(t_sum > 0, 1.0 - score, p_sum / weight.sum().clamp_min(1.0))


def _dice(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return _soft_overlap(logits, target, weight, jaccard=False)


def _jaccard(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return _soft_overlap(logits, target, weight, jaccard=True)


def _lovasz(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Lovasz hinge: hinge errors sorted in decreasing order, weighted by the Jaccard gradient.

    Ignored pixels get error -1. Only pixels with a positive error contribute, and each one's
    weight depends only on the pixels sorted before it (errors at least as large, so never an
    ignored one): the ignored pixels change neither the loss nor any gradient.
    """
    errors = 1.0 - logits * (2.0 * target - 1.0)
    errors = torch.where(weight > 0, errors, -1.0)
    errors_sorted, order = torch.sort(errors, descending=True)
    gt = target[order]
    positives = gt.sum()
    intersection = positives - gt.cumsum(0)
    union = positives + (1.0 - gt).cumsum(0)
    jaccard = 1.0 - intersection / union  # union >= 1 from the first element on
    grad = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
    return (F.relu(errors_sorted) * grad).sum()


_IMPL: dict[str, _Impl] = {
    "BCE": _bce,
    "Dice": _dice,
    "Focal": _focal,
    "Jaccard": _jaccard,
    "Lovasz": _lovasz,
}


def build_loss(name: str) -> LossFn:
    """loss(logits (N,1,H,W) or (N,H,W), target (N,H,W) uint8, 255 ignored) -> float32 scalar.

    Ignored pixels are weighted out before any loss sees them, so they contribute to no mean,
    denominator or sort and receive exactly zero gradient. A batch with no valid pixel gives 0,
    still attached to the graph so `backward()` works unchanged.
    """
    impl = _IMPL[canonical_loss(name)]

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.dim() == target.dim() + 1 and logits.shape[1] == 1:
            logits = logits.squeeze(1)
        if logits.shape != target.shape:
            raise ValueError(f"logits {tuple(logits.shape)} do not match target {target.shape}")
        with torch.autocast(device_type=logits.device.type, enabled=False):
            flat = logits.float().reshape(-1)
            labels = target.reshape(-1)
            weight = (labels != LABEL_IGNORE).float()
            truth = (labels == LABEL_LANDSLIDE).float()
            return impl(flat, truth, weight)

    loss.__name__ = f"{canonical_loss(name)}_loss"
    return loss
