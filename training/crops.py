"""Training batches cut from events in memory, as the paper drew them (`CropSampler`).

The crop sampler keeps every event in memory as tensors on the training device and cuts batches
with a few vectorised index operations, so a GPU is never starved by a Python data loader and a
CPU step spends its time in the model, not in augmentation. The events come from
lsd.training.data (split, normalisation, `EventArrays`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lsd.errors import InvalidValue
from lsd.rasters import LABEL_IGNORE, LABEL_LANDSLIDE
from lsd.training.data import EventArrays
from lsd.training.options import CROP_ANCHORS, EVENT_ORDERS


class CropSampler:
    """Random training batches as the paper drew them, cut on the training device.

    Each sample picks an event uniformly (or, with order "shuffled", the next event of a random
    permutation of all events, a new one each pass, as a shuffling data loader does), then a
    landslide pixel of that event uniformly, and places the crop so that pixel lies at a random
    position inside it (a landslide-free event gets a uniform random window). Images smaller
    than the crop are padded (image 0, label 255, so padding is ignored by losses and metrics).
    A random rotation by k * 90 degrees and random flips follow, identical for image and label
    (unless `augment` is off: then every crop is as cut).

    All randomness comes from one seeded CPU torch.Generator: the draws are a handful of scalars
    per batch, and keeping them on the CPU means the device never has to report back to decide
    where to cut. The cutting itself is one slice copy and one gather per sample, with the
    augmentation's index maps built once.
    """

    def __init__(
        self,
        events: list[EventArrays],
        *,
        crop: int = 256,
        batch_size: int = 4,
        seed: int = 0,
        device: str | torch.device = "cpu",
        anchor: str = "random",
        augment: bool = True,
        order: str = "random",
    ) -> None:
        """Check the events, move them to the device once and build every index table a batch
        needs (landslide pixels, augmentation maps, canvases); long because batches then only
        look things up."""

        if not events:
            raise InvalidValue("no training events to sample crops from")
        if crop < 1 or batch_size < 1:
            raise ValueError(f"crop ({crop}) and batch_size ({batch_size}) must be >= 1")
        channels = {ev.image.shape[0] for ev in events}
        if len(channels) != 1:
            raise ValueError(f"events have different layer counts: {sorted(channels)}")
        for ev in events:
            if ev.image.shape[1:] != ev.label.shape:
                raise ValueError(
                    f"event '{ev.event_id}': image {ev.image.shape} and label {ev.label.shape} "
                    "differ in size"
                )
        if anchor not in CROP_ANCHORS:
            raise ValueError(f"crop anchor {anchor!r} is not one of {', '.join(CROP_ANCHORS)}")
        if order not in EVENT_ORDERS:
            raise ValueError(f"event order {order!r} is not one of {', '.join(EVENT_ORDERS)}")
        self.crop = crop
        self.anchor = anchor
        self.augment = augment
        self.order = order
        self._pass = torch.empty(0, dtype=torch.int64)  # "shuffled": the current permutation
        self._pass_at = 0  # and how much of it has been drawn
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.channels = channels.pop()
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(seed)

        self._images = [
            torch.from_numpy(np.ascontiguousarray(ev.image, dtype=np.float32)).to(self.device)
            for ev in events
        ]
        self._labels = [
            torch.from_numpy(np.ascontiguousarray(ev.label, dtype=np.uint8)).to(self.device)
            for ev in events
        ]
        self._heights = torch.tensor([ev.label.shape[0] for ev in events], dtype=torch.int64)
        self._widths = torch.tensor([ev.label.shape[1] for ev in events], dtype=torch.int64)
        # Landslide pixels of all events, concatenated on the CPU, with per-event offsets; a
        # trailing 0 keeps the lookup valid when no event has a landslide pixel.
        positives = [np.flatnonzero(ev.label.reshape(-1) == LABEL_LANDSLIDE) for ev in events]
        self._pos_counts = torch.tensor([p.size for p in positives], dtype=torch.int64)
        self._pos_offsets = torch.cumsum(self._pos_counts, 0) - self._pos_counts
        self._positives = torch.from_numpy(np.concatenate([*positives, [0]]).astype(np.int64))
        # For each of the 16 (rotation, h-flip, v-flip) draws, the source of every output pixel
        # inside the crop window: the very same torch ops applied to a grid of pixel numbers, so
        # image and label can only ever move together, and one gather applies the augmentation.
        grid = torch.arange(crop * crop, dtype=torch.int64).view(crop, crop)
        index_dtype = torch.int32 if crop * crop < 2**31 else torch.int64
        self._maps = [
            _augment(grid, k, hflip, vflip).reshape(-1).to(self.device, index_dtype)
            for k in range(4)
            for hflip in (False, True)
            for vflip in (False, True)
        ]
        # the crop window is first copied here (padding where it leaves the image), then gathered
        self._canvas = torch.empty((self.channels, crop, crop), device=self.device)
        self._label_canvas = torch.empty((crop, crop), dtype=torch.uint8, device=self.device)

    # ---------------------------------------------------------------- randomness

    def _draw(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Events, window corners and augmentation codes for one batch, on the CPU."""

        g, n, crop = self.generator, self.batch_size, self.crop
        if self.order == "shuffled":
            ev = self._next_in_pass(n)
        else:
            ev = torch.randint(len(self._images), (n,), generator=g)
        u = torch.rand((n, 4), generator=g, dtype=torch.float64)
        aug = torch.randint(16, (n,), generator=g)
        if not self.augment:
            aug.zero_()  # index 0 of the maps: no rotation, no flip
        h, w = self._heights[ev], self._widths[ev]
        counts = self._pos_counts[ev]
        has_pos = counts > 0
        pick = torch.minimum((u[:, 0] * counts).long(), (counts - 1).clamp_min(0))
        flat = self._positives[self._pos_offsets[ev] + pick]  # meaningless where not has_pos
        r, c = flat // w, flat % w

        def corner(size: torch.Tensor, at: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            # window start so that `at` lies inside, the window stays on the image where the
            # image is large enough, and the image sits inside the window where it is not
            lo_any = torch.clamp(size - crop, max=0)
            hi_any = torch.clamp(size - crop, min=0)
            lo = torch.where(has_pos, torch.maximum(at - crop + 1, lo_any), lo_any)
            hi = torch.where(has_pos, torch.minimum(at, hi_any), hi_any)
            return lo + (v * (hi - lo + 1).double()).long().clamp_max(hi - lo)

        if self.anchor == "centre":
            return ev, *self._centred(has_pos, r, c, h, w, u), aug
        top = corner(h, r, u[:, 1])
        left = corner(w, c, u[:, 2])
        return ev, top, left, aug

    def _centred(self, has_pos, r, c, h, w, u) -> tuple[torch.Tensor, torch.Tensor]:
        """The paper's AnchorCrop: the anchor (a landslide pixel, or a uniformly drawn pixel of a
        landslide-free event) at the window's centre, the window shifted to fit the image; an
        image smaller than the crop sits inside the window (padded) instead."""

        crop = self.crop
        r = torch.where(has_pos, r, (u[:, 1] * h.double()).long().clamp_max(h - 1))
        c = torch.where(has_pos, c, (u[:, 2] * w.double()).long().clamp_max(w - 1))

        def start(size: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
            lo = torch.clamp(size - crop, max=0)
            hi = torch.clamp(size - crop, min=0)
            return torch.minimum(torch.maximum(at - crop // 2, lo), hi)

        return start(h, r), start(w, c)

    def _next_in_pass(self, n: int) -> torch.Tensor:
        """The next `n` events of the shuffled passes, a new permutation whenever one is used up
        (a batch may span two passes, as a data loader's last short batch does not)."""

        out = []
        while n:
            if self._pass_at >= len(self._pass):
                self._pass = torch.randperm(len(self._images), generator=self.generator)
                self._pass_at = 0
            take = self._pass[self._pass_at : self._pass_at + n]
            self._pass_at += len(take)
            n -= len(take)
            out.append(take)
        return torch.cat(out)

    def state_dict(self) -> dict[str, Any]:
        """The random stream's position, so a resumed run draws the batches it would have."""
        return {
            "generator": self.generator.get_state().clone(),
            "pass": self._pass.clone(),
            "pass_at": self._pass_at,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        if "pass" in state:
            self._pass, self._pass_at = state["pass"].clone(), int(state["pass_at"])

    # ---------------------------------------------------------------- batches

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N, C, crop, crop) float32, y: (N, crop, crop) uint8 (0/1/255), on `device`."""

        ev, top, left, aug = self._draw()
        n, c, crop, dev = self.batch_size, self.channels, self.crop, self.device
        x = torch.empty((n, c, crop, crop), dtype=torch.float32, device=dev)
        y = torch.empty((n, crop, crop), dtype=torch.uint8, device=dev)
        canvas, label_canvas = self._canvas, self._label_canvas
        draws = zip(ev.tolist(), top.tolist(), left.tolist(), aug.tolist(), strict=True)
        for i, (e, t, lft, a) in enumerate(draws):
            image, label = self._images[e], self._labels[e]
            h, w = label.shape
            r0, r1, c0, c1 = max(t, 0), min(t + crop, h), max(lft, 0), min(lft + crop, w)
            if r1 - r0 < crop or c1 - c0 < crop:
                canvas.zero_()
                label_canvas.fill_(LABEL_IGNORE)
            canvas[:, r0 - t : r1 - t, c0 - lft : c1 - lft] = image[:, r0:r1, c0:c1]
            label_canvas[r0 - t : r1 - t, c0 - lft : c1 - lft] = label[r0:r1, c0:c1]
            index = self._maps[a]
            torch.index_select(canvas.view(c, -1), 1, index, out=x[i].view(c, -1))
            torch.index_select(label_canvas.view(-1), 0, index, out=y[i].view(-1))
        return x, y


def _augment(t: torch.Tensor, k: int, hflip: bool, vflip: bool) -> torch.Tensor:
    """The augmentation as applied to any (..., H, W) tensor: rotate by k*90 deg, then flip."""

    t = torch.rot90(t, k, dims=(-2, -1))
    if hflip:
        t = torch.flip(t, dims=(-1,))
    if vflip:
        t = torch.flip(t, dims=(-2,))
    return t
