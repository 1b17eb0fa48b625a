"""Confusion counts and scores, numpy and torch alike, with 255 ignored."""

from __future__ import annotations

import math

import numpy as np
import torch

from lsd.training.metrics import Counts, confusion


def test_confusion_ignores_255_and_scores_are_exact():
    label = np.array([[1, 1, 0, 0], [255, 255, 1, 0]], np.uint8)
    pred = np.array([[1, 0, 1, 0], [1, 0, 0, 0]], bool)
    c = confusion(pred, label)
    assert (c.tp, c.fp, c.fn, c.tn) == (1, 1, 2, 2)
    assert c.precision == 0.5
    assert c.recall == 1 / 3
    assert math.isclose(c.f1, 2 * 1 / (2 * 1 + 1 + 2))
    assert c.iou == 1 / 4
    assert c.bias == 2 / 3


def test_torch_and_numpy_agree():
    rng = np.random.default_rng(1)
    label = rng.choice([0, 1, 255], size=(3, 17, 19)).astype(np.uint8)
    pred = rng.random((3, 17, 19)) > 0.5
    a = confusion(pred, label)
    b = confusion(torch.from_numpy(pred), torch.from_numpy(label))
    assert a == b


def test_micro_is_sum_of_counts_not_mean_of_ratios():
    a, b = Counts(tp=1, fp=0, fn=0, tn=5), Counts(tp=0, fp=9, fn=1, tn=0)
    total = a + b
    assert total == Counts(1, 9, 1, 5)
    assert total.f1 == 2 / (2 + 9 + 1)
    assert total.f1 != (a.f1 + b.f1) / 2


def test_empty_cases():
    nothing = Counts(tn=10)
    assert nothing.f1 == 0.0 and nothing.iou == 0.0
    assert math.isnan(nothing.precision) and math.isnan(nothing.recall)
    assert set(nothing.scores()) >= {"precision", "recall", "f1", "iou", "bias", "tp"}
