"""From event folders to training arrays: split by event, normalise, check sizes.

Everything here follows one rule from the paper's protocol: events, not pixels, are the unit of
splitting, so neighbouring pixels of one landslide never sit on both sides of a train/val/test
boundary. Normalisation statistics come from the training events only, so validation and test
scores are not flattered by statistics of their own pixels.

The batches cut from these arrays are lsd.training.crops' (`CropSampler`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lsd.errors import InvalidValue, LayerMissing
from lsd.events import EventFolder
from lsd.limits import check_memory
from lsd.progress import warn
from lsd.rasters import LABEL_IGNORE, LABEL_LANDSLIDE, read_label, read_stack, require_layers
from lsd.training.normalise import normalise_array_

DEFAULT_HOLDOUT_FRACTION = 0.15
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
