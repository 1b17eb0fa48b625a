"""Pixel metrics for binary landslide maps, ignoring label 255.

Counts are kept as integers and combined by addition, so micro scores over many events are
exact (sum the counts, then divide) rather than an average of per-event ratios. Works on numpy
arrays and on torch tensors alike (the training loop counts on the GPU and moves four integers).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from lsd.rasters import LABEL_IGNORE, LABEL_LANDSLIDE


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )

    @property
    def precision(self) -> float:
        """Also called success ratio; NaN when nothing was predicted as landslide."""
        d = self.tp + self.fp
        return self.tp / d if d else float("nan")

    @property
    def recall(self) -> float:
        """Probability of detection; NaN when there is no landslide pixel to find."""
        d = self.tp + self.fn
        return self.tp / d if d else float("nan")

    @property
    def f1(self) -> float:
        """2TP / (2TP + FP + FN). Defined as 0 when nothing is predicted and nothing is there,
        so an empty validation event cannot make a model look perfect."""
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else 0.0

    @property
    def iou(self) -> float:
        d = self.tp + self.fp + self.fn
        return self.tp / d if d else 0.0

    @property
    def bias(self) -> float:
        """Frequency bias: predicted landslide pixels over true ones (1 = unbiased)."""
        d = self.tp + self.fn
        return (self.tp + self.fp) / d if d else float("nan")

    def scores(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "iou": self.iou,
            "bias": self.bias,
        }


def confusion(pred: Any, label: Any) -> Counts:
    """Count a boolean (or 0/1) prediction against a label with 0, 1 and 255 (ignored)."""
    valid = label != LABEL_IGNORE
    truth = label == LABEL_LANDSLIDE
    pred = pred.bool() if hasattr(pred, "bool") else pred.astype(bool)
    tp = int((pred & truth & valid).sum())
    fp = int((pred & ~truth & valid).sum())
    fn = int((~pred & truth & valid).sum())
    tn = int(valid.sum()) - tp - fp - fn
    return Counts(tp, fp, fn, tn)
