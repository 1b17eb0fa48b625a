"""Top-K ensembles of a model grid: score the members, choose K, write the ensemble folder.

The paper's ensemble is the mean of the sigmoid outputs of the K runs with the best validation F1,
thresholded at 0.5. Because the members are ranked once, the ensemble of size k is the running
mean of the first k members, so scoring every k = 1..N costs one prediction per member and event
rather than N(N+1)/2. Members are loaded one at a time, so memory does not grow with N. The
folder format (manifest, member copies, checksums) is the ground floor's (lsd.bundles).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lsd.bundles import (
    DEFAULT_THRESHOLD,
    BundleMeta,
    Member,
    check_bundle,
    check_threshold,
    common_layers,
    read_manifest,
    write_ensemble,
)
from lsd.errors import InvalidValue
from lsd.events import EventFolder, select_events
from lsd.outputs import check_output
from lsd.progress import Progress
from lsd.rasters import read_label, read_stack, require_layers
from lsd.runs import (
    GRID_FILE,
    LEADERBOARD_FILE,
    SPLIT_FILE,
    RunEntry,
    grid_data_dir,
    read_leaderboard,
    read_split,
)
from lsd.training.metrics import Counts

# Stacks of validation/test events are kept in memory between members only up to this size;
# beyond it they are re-read from disk for each member (slower, but memory stays flat).
CACHE_BYTES = 1 << 30


# --------------------------------------------------------------------------- scoring


@dataclass
class EvalEvent:
    """An event ready for scoring: its label in memory, its stack read on demand or cached."""

    event_id: str
    stack: Path
    label: np.ndarray
    layers: tuple[str, ...]
    image: np.ndarray | None = None

    def read(self) -> np.ndarray:
        if self.image is not None:
            return self.image
        return read_stack(self.stack, self.layers)[0]


def prepare_events(
    events: Sequence[EventFolder], layers: Sequence[str], cache_bytes: int = CACHE_BYTES
) -> list[EvalEvent]:
    """Check every event has the members' layers, read labels, cache stacks while they fit."""
    layers = tuple(layers)
    out: list[EvalEvent] = []
    for ev in events:
        require_layers(ev.stack, ev.layers, layers, "the models")
        label, _ = read_label(ev.label)
        out.append(EvalEvent(ev.event_id, ev.stack, label, layers))
    total = sum(e.label.size * len(layers) * 4 for e in out)
    if total <= cache_bytes:
        for e in out:
            e.image = read_stack(e.stack, layers)[0]
    return out


@dataclass
class Scores:
    """Counts for each single member (rank order) and each ensemble size k = 1..N."""

    names: list[str]
    single: list[Counts]
    ensemble: list[Counts]
    single_by_event: dict[str, list[Counts]]
    ensemble_by_event: dict[str, list[Counts]]


MemberLoader = Callable[[], tuple[Any, BundleMeta]]


def score_members(
    members: Sequence[tuple[str, MemberLoader]],
    events: Sequence[EvalEvent],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    device: str = "cpu",
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
) -> Scores:
    """Score each ranked member alone and every top-k ensemble, one member in memory at a time.

    The per-event sum of member probabilities is the only state kept between members, so the
    ensemble of size k (the mean of the first k) is scored right after member k is added. Each
    member sees each event through the one scoring pass (lsd.training.scoring), the pass its
    validation in training used; pixels with no data in any layer count as 'no landslide'.
    """
    from lsd.training.scoring import member_probability, score

    if not members:
        raise ValueError("no members to score")
    sums: dict[str, np.ndarray] = {}
    names = [name for name, _ in members]
    single: list[Counts] = []
    ensemble: list[Counts] = []
    single_by_event: dict[str, list[Counts]] = {e.event_id: [] for e in events}
    ensemble_by_event: dict[str, list[Counts]] = {e.event_id: [] for e in events}
    steps: Iterable[Any] = enumerate(members, start=1)
    if progress is not None:
        steps = progress(steps)
    for k, (_, load) in steps:
        model, meta = load()
        s_total, e_total = Counts(), Counts()
        for ev in events:
            prob = member_probability(model, meta, ev.read(), device)
            c_single = score(prob, ev.label, threshold)
            acc = sums.get(ev.event_id)
            if acc is None:
                acc = sums[ev.event_id] = np.zeros(prob.shape, dtype=np.float64)
            acc += prob
            c_ens = score(acc / k, ev.label, threshold)
            single_by_event[ev.event_id].append(c_single)
            ensemble_by_event[ev.event_id].append(c_ens)
            s_total, e_total = s_total + c_single, e_total + c_ens
        single.append(s_total)
        ensemble.append(e_total)
        del model
    return Scores(names, single, ensemble, single_by_event, ensemble_by_event)


def member_loaders(entries: Sequence[RunEntry], device: str) -> list[tuple[str, MemberLoader]]:
    """Every run's bundle checked now (checksums included), so a damaged one stops the command
    in its first seconds rather than after the members ranked above it were scored; each is
    loaded later, when its turn comes, without hashing it again."""
    from lsd.training.bundle import load_bundle

    metas = [check_bundle(e.bundle) for e in entries]
    return [
        (e.run_id, (lambda e=e, m=m: load_bundle(e.bundle, device, checked=m)))
        for e, m in zip(entries, metas, strict=True)
    ]


def finite_or_none(x: float) -> float | None:
    """JSON has no NaN: an undefined score (e.g. precision with nothing predicted) is null."""
    return x if math.isfinite(x) else None


def best_k(curve: Sequence[float]) -> int:
    """The smallest k with the highest F1: fewer members predict faster for the same score.
    An undefined F1 (NaN: nothing to find and nothing found) never wins. `lsd ensemble --k auto`
    and the report of `lsd evaluate` both choose with this, so they name the same K."""
    scores = [f if math.isfinite(f) else -math.inf for f in curve]
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return best + 1


def member_progress(desc: str) -> Callable[[Iterable[Any]], Iterable[Any]]:
    """Progress over members on stderr; members are the slow unit (one load + all events)."""

    def wrap(items: Iterable[Any]) -> Iterable[Any]:
        items = list(items)
        return Progress(len(items), desc=desc, unit="members", leave=False).iterate(items)

    return wrap


def _k_on_validation(
    runs_dir: Path,
    entries: Sequence[RunEntry],
    layers: Sequence[str],
    data_dir: Path | str | None,
    *,
    threshold: float,
    device: str,
    progress: bool,
) -> dict[str, Any]:
    """Score every top-k ensemble on the grid's validation events; the smallest k with the best
    F1 wins, and the whole curve is kept in the manifest so the choice can be checked later."""

    data = Path(data_dir) if data_dir is not None else grid_data_dir(runs_dir)
    if data is None:
        raise InvalidValue(
            f"choosing K scores the validation events, but {runs_dir / GRID_FILE} records no "
            "data folder: give the data folder",
            field="data",
        )
    val_ids = read_split(runs_dir)["val"]
    if not val_ids:
        raise InvalidValue(f"{runs_dir / SPLIT_FILE}: lists no validation events to choose K on")
    events = prepare_events(select_events(data, val_ids, source=str(runs_dir / SPLIT_FILE)), layers)
    scores = score_members(
        member_loaders(entries, device),
        events,
        threshold=threshold,
        device=device,
        progress=member_progress("validation") if progress else None,
    )
    return {
        "mode": "auto",
        "k": best_k([c.f1 for c in scores.ensemble]),
        "data": str(data),
        "val_events": [e.event_id for e in events],
        "curve": [
            {
                "k": i,
                "val_f1": finite_or_none(c.f1),
                "val_precision": finite_or_none(c.precision),
                "val_recall": finite_or_none(c.recall),
            }
            for i, c in enumerate(scores.ensemble, start=1)
        ],
    }


def make_ensemble(
    runs_dir: Path | str,
    out: Path | str,
    *,
    k: int | None,
    threshold: float = DEFAULT_THRESHOLD,
    data_dir: Path | str | None = None,
    overwrite: bool = False,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Pick the top-K runs (K given, or None: the size with the best validation F1), copy them
    into a self-contained ensemble folder and return its manifest."""
    from lsd.training.device import resolve_device

    device = str(resolve_device(device))  # auto, cpu, cuda or cuda:N; unusable ones fail here
    runs_dir, out = Path(runs_dir), Path(out)
    threshold = check_threshold(threshold)
    entries = read_leaderboard(runs_dir)
    if k is not None and k < 1:
        raise InvalidValue(f"K {k} must be at least 1 (the ensemble size)", field="k")
    if k is not None and k > len(entries):
        raise InvalidValue(
            f"K {k} is more than the {len(entries)} finished run(s) in "
            f"{runs_dir / LEADERBOARD_FILE}",
            field="k",
        )
    check_output(out, "ensemble", overwrite=overwrite, inputs=(runs_dir, data_dir))
    layers = common_layers([(str(e.bundle), e.meta()) for e in entries])
    if k is None:
        selection = _k_on_validation(
            runs_dir, entries, layers, data_dir, threshold=threshold, device=device,
            progress=progress,
        )  # fmt: skip
    else:
        selection = {"mode": "fixed", "k": k}
    chosen = [Member(e.run_id, e.bundle, e.val_f1) for e in entries[: selection["k"]]]
    write_ensemble(
        out, chosen, threshold=threshold, layers=layers, k_selection=selection, source=runs_dir
    )
    return read_manifest(out)
