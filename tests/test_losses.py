"""training/losses.py on crops of the generated events: 255 ignored everywhere, stable, correct."""

from __future__ import annotations

from pathlib import Path

import pytest
import segmentation_models_pytorch.losses as smp_losses
import torch
from torch import nn

from lsd.errors import UserError
from lsd.events import list_events
from lsd.rasters import LABEL_IGNORE
from lsd.training.crops import CropSampler
from lsd.training.data import compute_norm, load_events
from lsd.training.losses import LOSSES, build_loss, canonical_loss

LAYERS = ("B2", "B3", "B4", "B8", "B11", "B12", "slope", "elevation")


@pytest.fixture(scope="module")
def batch(gen_events: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded crops: 64 x 64 events in 160 x 160 windows, so some pixels are ignored."""
    torch.set_num_threads(1)
    events = [e for e in list_events(gen_events)]
    mean, std = compute_norm(events, LAYERS)
    arrays = load_events(events, LAYERS, mean, std)
    x, y = CropSampler(arrays, crop=160, batch_size=4, seed=0).batch()
    assert (y == 1).any() and (y == 0).any() and (y == LABEL_IGNORE).any()
    return x, y


def _logits(x: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(0)
    return nn.Conv2d(x.shape[1], 1, 3, padding=1)(x)


@pytest.mark.parametrize("name", LOSSES)
def test_loss_on_real_batch_is_finite_and_trains(batch, name):
    x, y = batch
    torch.manual_seed(0)
    net = nn.Conv2d(x.shape[1], 1, 3, padding=1)
    loss_fn = build_loss(name)
    loss = loss_fn(net(x), y)
    assert loss.dim() == 0 and loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in net.parameters()]
    assert all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    # a few plain SGD steps lower the loss on this batch
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    first = float(loss.detach())
    for _ in range(10):
        opt.zero_grad()
        step = loss_fn(net(x), y)
        step.backward()
        opt.step()
    assert float(loss_fn(net(x), y).detach()) < first


@pytest.mark.parametrize("name", LOSSES)
def test_ignored_pixels_change_nothing(batch, name):
    _, y = batch
    torch.manual_seed(1)
    base = torch.randn(y.shape[0], 1, *y.shape[1:]) * 3
    ignored = (y == LABEL_IGNORE).unsqueeze(1)
    other = torch.where(ignored, torch.randn_like(base) * 50, base)
    loss_fn = build_loss(name)
    results = []
    for logits in (base, other):
        logits = logits.clone().requires_grad_(True)
        loss = loss_fn(logits, y)
        loss.backward()
        results.append((loss.detach(), logits.grad))
    (l1, g1), (l2, g2) = results
    assert torch.equal(l1, l2)
    assert torch.equal(g1[~ignored], g2[~ignored])
    assert (g1[ignored] == 0).all() and (g2[ignored] == 0).all()
    assert g1[~ignored].abs().sum() > 0


@pytest.mark.parametrize("name", LOSSES)
def test_perfect_prediction_beats_wrong_one(batch, name):
    _, y = batch
    loss_fn = build_loss(name)
    perfect = torch.where(y == 1, 8.0, -8.0)
    assert float(loss_fn(perfect, y)) < float(loss_fn(-perfect, y))
    assert float(loss_fn(perfect, y)) < float(loss_fn(torch.zeros_like(perfect), y))
    # on a crop with no landslide pixel, predicting landslide must still cost something
    empty = torch.where(y == 1, 0, y)
    assert float(loss_fn(-8.0 * torch.ones_like(perfect), empty)) < float(
        loss_fn(8.0 * torch.ones_like(perfect), empty)
    )


@pytest.mark.parametrize("name", LOSSES)
def test_all_ignored_batch_gives_zero_with_a_graph(name):
    logits = torch.randn(2, 1, 16, 16, requires_grad=True)
    loss = build_loss(name)(logits, torch.full((2, 16, 16), LABEL_IGNORE, dtype=torch.uint8))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert logits.grad is not None and (logits.grad == 0).all()


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("BCE", smp_losses.SoftBCEWithLogitsLoss(ignore_index=LABEL_IGNORE)),
        ("Dice", smp_losses.DiceLoss("binary", ignore_index=LABEL_IGNORE)),
        ("Focal", smp_losses.FocalLoss("binary", ignore_index=LABEL_IGNORE)),
        # smp < 0.6 has no ignore_index here: the ignored pixels are left out before the call
        ("Jaccard", smp_losses.JaccardLoss("binary")),
        ("Lovasz", smp_losses.LovaszLoss("binary", ignore_index=LABEL_IGNORE)),
    ],
)
def test_values_agree_with_segmentation_models_pytorch(batch, name, reference):
    """On a batch with landslide pixels the definitions are the standard ones SMP implements."""
    x, y = batch
    logits = _logits(x).detach()
    ours = build_loss(name)(logits, y)
    valid = y != LABEL_IGNORE
    if name == "BCE":
        theirs = nn.functional.binary_cross_entropy_with_logits(
            logits[:, 0][valid], y[valid].float()
        )
    elif name == "Jaccard":  # binary mode sums over batch and pixels: the valid ones in a row
        theirs = reference(logits[:, 0][valid].view(1, 1, -1), y[valid].long().view(1, 1, -1))
    else:
        theirs = reference(logits, y.long().unsqueeze(1) if name != "Lovasz" else y.long())
    torch.testing.assert_close(ours, theirs.float(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", LOSSES)
def test_half_precision_logits_are_computed_in_float32(batch, name):
    x, y = batch
    logits = _logits(x).detach()
    loss_fn = build_loss(name)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = loss_fn(logits.bfloat16(), y)
    assert low.dtype == torch.float32 and torch.isfinite(low)
    torch.testing.assert_close(low, loss_fn(logits.bfloat16().float(), y))
    # (N, H, W) logits are accepted as well as (N, 1, H, W)
    torch.testing.assert_close(loss_fn(logits[:, 0], y), loss_fn(logits, y))


def test_loss_names():
    assert canonical_loss("lovasz") == "Lovasz" and canonical_loss(" bce ") == "BCE"
    with pytest.raises(UserError, match="BCE, Dice, Focal, Jaccard, Lovasz"):
        canonical_loss("hinge")
    with pytest.raises(UserError, match="'Tversky'"):
        build_loss("Tversky")
