"""From event folders to training batches: split by event, normalise, crop as the paper did.

Everything here follows one rule from the paper's protocol: events, not pixels, are the unit of
splitting, so neighbouring pixels of one landslide never sit on both sides of a train/val/test
boundary. Normalisation statistics come from the training events only, so validation and test
scores are not flattered by statistics of their own pixels.

The crop sampler keeps every event in memory as tensors on the training device and cuts batches
with a few vectorised index operations, so a GPU is never starved by a Python data loader and a
CPU step spends its time in the model, not in augmentation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lsd.errors import InvalidValue, LayerMissing
from lsd.events import EventFolder
from lsd.limits import check_memory
from lsd.progress import warn
from lsd.rasters import LABEL_IGNORE, LABEL_LANDSLIDE, read_label, read_stack, require_layers
from lsd.training.normalise import normalise_array_

if TYPE_CHECKING:
    import torch

DEFAULT_HOLDOUT_FRACTION = 0.15
CROP_ANCHORS = ("random", "centre")
EVENT_ORDERS = ("random", "shuffled")
# Activation memory of one training step per pixel of a batch, for the architecture that needs
# least (benchmarks/bench_train_memory.py, min_bytes_per_pixel): the estimate of a step is a
# floor, so no grid is refused that could fit.
ACTIVATION_BYTES_PER_PIXEL = 600
# A crop may be at most this many times the side of the largest training event: beyond it every
# crop is mostly padding (75% at twice the side), which costs memory and teaches nothing.
MAX_CROP_PER_EVENT_SIDE = 2


@dataclass
class EventArrays:
    """One event in memory, ready for the model: normalised image and its label."""

    event_id: str
    image: np.ndarray  # (C, H, W) float32, normalised, NaN -> 0 after normalising
    label: np.ndarray  # (H, W) uint8: 0, 1, 255 (ignored)
    nodata: np.ndarray | None = None  # (H, W) bool: no layer held a finite value


# --------------------------------------------------------------------------- split


def _explicit(ids: list[str], chosen: list[str], what: str) -> list[str]:
    known = set(ids)
    out: list[str] = []
    for event_id in chosen:
        if event_id not in known:
            raise InvalidValue(
                f"{what} event '{event_id}' is not among the {len(ids)} events found"
            )
        if event_id not in out:
            out.append(event_id)
    return out


def _count(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidValue(f"number of {what} events must be a whole number >= 0, got {value!r}")
    return value


def split_events(
    events: list[EventFolder],
    *,
    val: int | list[str] | None = None,
    test: int | list[str] | None = None,
    seed: int = 0,
) -> dict[str, list[str]]:
    """-> {"train": [...], "val": [...], "test": [...]} event ids, sorted.

    Roles recorded in event.json (importers of benchmark data keep the benchmark's own split that
    way) decide every part that is not given: a part given as ids is exactly those events; a part
    given as a count takes the events of its role first and draws the rest with `seed` (the same
    seed and the same events always give the same split). An event whose role is test never
    trains or validates: a test part given explicitly must include every such event. Without any
    role, 15% of the events go to validation and 15% to test, at least one each.
    """
    ids = sorted(e.event_id for e in events)
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise InvalidValue(f"event id(s) appear twice: {', '.join(dupes)}")
    roles = {e.event_id: e.role for e in events}
    has_roles = any(r is not None for r in roles.values())
    if val is None and test is None and len(ids) < 3 and not has_roles:
        raise InvalidValue(
            f"only {len(ids)} event(s): a train/validation/test split by event needs at least 3 "
            "(or give the validation events explicitly)"
        )
    val, test = _as_part(val), _as_part(test)
    rng = np.random.default_rng(seed)
    default = max(1, round(DEFAULT_HOLDOUT_FRACTION * len(ids)))
    test_ids, n_test = _test_part(ids, roles, test, default if not has_roles else 0)
    val_ids, n_val = _val_part(ids, roles, val, test_ids, default, rng)
    taken = set(val_ids) | set(test_ids)
    pool = [i for i in ids if i not in taken and roles[i] != "test"]
    order = [pool[k] for k in rng.permutation(len(pool))] if pool else []
    if n_val + n_test >= len(pool) and n_val + n_test > 0:
        raise InvalidValue(
            f"{n_val} validation + {n_test} test events leave no training event "
            f"({len(pool)} events are not assigned by id or role)"
        )
    val_ids = val_ids + order[:n_val]
    test_ids = test_ids + order[n_val : n_val + n_test]
    taken = set(val_ids) | set(test_ids)
    parts = {
        "train": sorted(i for i in ids if i not in taken),
        "val": sorted(val_ids),
        "test": sorted(test_ids),
    }
    source = (
        "the roles in event.json" if has_roles and val is None and test is None else "the split"
    )
    return _checked(parts, source=source)


def _as_part(value: Any) -> int | list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, tuple):
        return list(value)
    return value


def _test_part(
    ids: list[str], roles: dict[str, str | None], test: int | list[str] | None, default: int
) -> tuple[list[str], int]:
    """The test events fixed so far and how many more to draw."""
    role_test = [i for i in ids if roles[i] == "test"]
    if test is None:
        return role_test, default if not role_test else 0
    if isinstance(test, list):
        chosen = _explicit(ids, test, "test")
        left_out = [i for i in role_test if i not in chosen]
        if left_out:
            raise InvalidValue(
                f"event '{left_out[0]}' has role test in its event.json but is not among the test "
                "events given; a test event never trains or validates, so name it as a test "
                "event (or leave the test events to the roles)",
                field="test",
            )
        return chosen, 0
    n = _count(test, "test")
    if n < len(role_test):
        raise InvalidValue(
            f"{n} test event(s) asked for, but {len(role_test)} event(s) have role test in their "
            f"event.json ({', '.join(role_test[:3])}); a test event never trains or validates, "
            "so ask for at least that many (or leave the test events to the roles)",
            field="test",
        )
    return role_test, n - len(role_test)


def _val_part(
    ids: list[str],
    roles: dict[str, str | None],
    val: int | list[str] | None,
    test_ids: list[str],
    default: int,
    rng: np.random.Generator,
) -> tuple[list[str], int]:
    """The validation events fixed so far and how many more to draw."""
    role_val = [i for i in ids if roles[i] == "val" and i not in test_ids]
    if isinstance(val, list):
        chosen = _explicit(ids, val, "validation")
        for event_id in chosen:
            if roles[event_id] == "test":
                raise InvalidValue(
                    f"validation event '{event_id}' has role test in its event.json; a test "
                    "event never trains or validates",
                    field="val",
                )
            if event_id in test_ids:
                raise InvalidValue(f"event '{event_id}' is listed both for validation and for test")
        return chosen, 0
    if val is None:
        return (role_val, 0) if role_val else ([], default)
    n = _count(val, "validation")
    if n <= len(role_val):
        return sorted(role_val[k] for k in rng.permutation(len(role_val))[:n]), 0
    return role_val, n - len(role_val)


def _checked(parts: dict[str, list[str]], *, source: str) -> dict[str, list[str]]:
    if not parts["train"]:
        raise InvalidValue(f"{source} leaves no training event")
    if not parts["val"]:
        raise InvalidValue(f"{source} leaves no validation event (give validation events)")
    return parts


# --------------------------------------------------------------------------- normalisation


def check_event_layers(
    events: Sequence[EventFolder], layers: Sequence[str], needed_by: str = ""
) -> None:
    """Fail before reading any pixels when a stack lacks a layer the setting needs."""
    if not layers:
        raise LayerMissing("no layers to train on: the setting is empty")
    for ev in events:
        require_layers(ev.stack, ev.layers, layers, needed_by)


def compute_norm(
    events: list[EventFolder], layers: Sequence[str]
) -> tuple[list[float], list[float]]:
    """Per-layer mean and population std over the given (training) events, ignoring no data
    (NaN, and +/-inf, which lsd reads as no data everywhere).

    Events are read one at a time and merged with the pairwise update of Chan et al., in float64,
    so memory stays at one stack and the result matches a single pass over all pixels without the
    cancellation of a naive sum of squares.
    """
    if not events:
        raise InvalidValue("no training events to compute normalisation statistics from")
    check_event_layers(events, layers)
    n_layers = len(layers)
    count = np.zeros(n_layers, dtype=np.float64)
    mean = np.zeros(n_layers, dtype=np.float64)
    m2 = np.zeros(n_layers, dtype=np.float64)
    for ev in events:
        data, _, _ = read_stack(ev.stack, layers)
        for i, name in enumerate(layers):
            band = data[i]
            valid = band[np.isfinite(band)].astype(np.float64)
            if valid.size == 0:
                raise InvalidValue(
                    f"event '{ev.event_id}': layer '{name}' has no data (all NaN or infinite); "
                    f"choose a setting without {name} or drop the event"
                )
            n_b = float(valid.size)
            mean_b = float(valid.mean())
            m2_b = float(np.square(valid - mean_b).sum())
            n_a = count[i]
            total = n_a + n_b
            delta = mean_b - mean[i]
            mean[i] += delta * n_b / total
            m2[i] += m2_b + delta * delta * n_a * n_b / total
            count[i] = total
    std = np.sqrt(m2 / count)
    std[~(std > 0)] = 1.0  # a constant layer carries no information but must not divide by 0
    return [float(x) for x in mean], [float(x) for x in std]


def load_events(
    events: list[EventFolder], layers: Sequence[str], mean: Sequence[float], std: Sequence[float]
) -> list[EventArrays]:
    """Read and normalise each event's layers (in the order given) and its label."""
    if len(mean) != len(layers) or len(std) != len(layers):
        raise ValueError(f"{len(layers)} layers but {len(mean)} means and {len(std)} stds")
    check_event_layers(events, layers)
    out: list[EventArrays] = []
    for ev in events:
        data, _, _ = read_stack(ev.stack, layers)
        nodata = ~np.isfinite(data).any(axis=0)
        normalise_array_(data, mean, std)
        label, _ = read_label(ev.label)
        out.append(EventArrays(event_id=ev.event_id, image=data, label=label, nodata=nodata))
    return out


# --------------------------------------------------------------------------- sizes


def step_bytes(crop: int, batch_size: int, channels: int) -> float:
    """Memory of the crop sampler (its 16 augmentation index tables and canvases) and of one
    training step (a batch, its labels and the activations), before any event is loaded."""
    pixels = float(crop) * crop
    index = 4 if pixels < 2**31 else 8
    tables = 16 * pixels * index + 3 * pixels * 8  # + the int64 grids they are built from
    canvases = pixels * (4 * channels + 1)
    batch = batch_size * pixels * (4 * channels + 1 + ACTIVATION_BYTES_PER_PIXEL)
    return tables + canvases + batch


def check_training_size(
    train: Sequence[EventFolder],
    val: Sequence[EventFolder],
    n_layers: int,
    crop: int,
    batch_size: int,
) -> None:
    """What training will hold, checked before any event is read (lsd.limits): the crop against
    the training events (a crop far larger than all of them is padding), then the events in
    memory (normalised layers, label, no-data mask) with the sampler and one step.

    Raises:
        InvalidValue: the crop is more than MAX_CROP_PER_EVENT_SIDE times the largest event.
        TooLarge: more memory than the limit.
    """

    largest = max(train, key=lambda e: max(e.grid.width, e.grid.height))
    side = max(largest.grid.width, largest.grid.height)
    most = MAX_CROP_PER_EVENT_SIDE * (side + (-side) % 32)
    if crop > most:
        raise InvalidValue(
            f"crop {crop} is more than {MAX_CROP_PER_EVENT_SIDE} times the side of the largest "
            f"training event ('{largest.event_id}', {largest.grid.width} x "
            f"{largest.grid.height}): every crop would be mostly padding; use a crop of at "
            f"most {most}",
            field="crop",
        )
    events = sum(e.grid.width * e.grid.height * (4.0 * n_layers + 2) for e in (*train, *val))
    check_memory(
        f"training on {len(train) + len(val)} events of {n_layers} layers with crop {crop} and "
        f"batch size {batch_size}", events + step_bytes(crop, batch_size, n_layers),
    )  # fmt: skip


def check_labels(train: Sequence[EventFolder], val: Sequence[EventFolder]) -> None:
    """Refuse a split that has nothing to learn or to score: training events without a single
    landslide pixel (or without any labelled pixel at all), validation events without any
    labelled pixel; warn when the validation events hold no landslide (every run's F1 is 0).

    Raises:
        InvalidValue: naming the events and what their labels hold.
    """

    def counts(events: Sequence[EventFolder]) -> tuple[int, int]:
        labelled = landslide = 0
        for ev in events:
            label, _ = read_label(ev.label)
            labelled += int((label != LABEL_IGNORE).sum())
            landslide += int((label == LABEL_LANDSLIDE).sum())
        return labelled, landslide

    def names(events: Sequence[EventFolder]) -> str:
        ids = [e.event_id for e in events]
        return ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")

    labelled, landslide = counts(train)
    if not labelled:
        raise InvalidValue(
            f"nothing is labelled: every label pixel of the training events ({names(train)}) is "
            f"{LABEL_IGNORE} (ignored), so there is nothing to learn; check the label files or "
            "the mask mapping of the import"
        )
    if not landslide:
        raise InvalidValue(
            f"the training events ({names(train)}) hold no landslide pixel (label "
            f"{LABEL_LANDSLIDE}) among {labelled} labelled pixels, so a model cannot learn "
            "landslides from them"
        )
    labelled, landslide = counts(val)
    if not labelled:
        raise InvalidValue(
            f"nothing is labelled in the validation events ({names(val)}): every label pixel is "
            f"{LABEL_IGNORE} (ignored), so no run could be scored or ranked",
            field="val",
        )
    if not landslide:
        warn(
            f"the validation events ({names(val)}) hold no landslide pixel, so every run's "
            "validation F1 is 0 and the ranking says nothing; give validation events with "
            "landslides"
        )


# --------------------------------------------------------------------------- crops


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
