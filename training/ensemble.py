"""Top-K ensembles of a model grid: choose the members, score them, write and load the folder.

The paper's ensemble is the mean of the sigmoid outputs of the K runs with the best validation F1,
thresholded at 0.5. Because the members are ranked once, the ensemble of size k is the running
mean of the first k members, so scoring every k = 1..N costs one prediction per member and event
rather than N(N+1)/2. Members are loaded one at a time, so memory does not grow with N.

An ensemble folder is self-contained (manifest plus a copy of each member bundle) so it can be
moved to another machine; every damaged or missing piece is reported by file name.
"""

from __future__ import annotations

import csv
import math
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lsd import __version__
from lsd.contract import (
    EventFolder,
    atomic_path,
    read_json,
    read_label,
    read_stack,
    write_json,
)
from lsd.errors import UserError
from lsd.training.bundle import (
    META_FILE,
    WEIGHTS_FILE,
    BundleMeta,
    check_bundle,
    file_sha256,
    load_bundle,
    load_meta,
)
from lsd.training.metrics import Counts, confusion

ENSEMBLE_FORMAT = "lsd-ensemble/1"
MANIFEST_FILE = "manifest.json"
LEADERBOARD_FILE = "leaderboard.csv"
SPLIT_FILE = "split.json"
GRID_FILE = "grid.json"
DEFAULT_THRESHOLD = 0.5

# Stacks of validation/test events are kept in memory between members only up to this size;
# beyond it they are re-read from disk for each member (slower, but memory stays flat).
CACHE_BYTES = 1 << 30


# --------------------------------------------------------------------------- the grid's runs


@dataclass(frozen=True)
class RunEntry:
    """One finished run of the leaderboard, in rank order by validation F1."""

    run_id: str
    val_f1: float
    bundle: Path
    row: dict[str, str] = field(default_factory=dict, compare=False)

    def meta(self) -> BundleMeta:
        return load_meta(self.bundle)

    def load(self, device: str = "cpu") -> tuple[Any, BundleMeta]:
        return load_bundle(self.bundle, device=device)


def _float(text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        return None


def read_leaderboard(runs_dir: Path | str) -> list[RunEntry]:
    """Finished runs, best validation F1 first; a run without a bundle or score is unfinished.

    A row that names a bundle folder which is not there is damage, not an unfinished run: the
    user would otherwise get a silently smaller ensemble than the grid promised.
    """
    runs_dir = Path(runs_dir)
    path = runs_dir / LEADERBOARD_FILE
    if not runs_dir.is_dir():
        raise UserError(f"{runs_dir}: runs folder not found")
    if not path.exists():
        raise UserError(f"{path}: no leaderboard in this runs folder (written by lsd train)")
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in ("run_id", "val_f1", "bundle") if c not in header]
    if missing:
        raise UserError(f"{path}: lacks column(s) {', '.join(missing)}")
    entries: list[tuple[float, float, str, RunEntry]] = []
    seen: set[str] = set()
    for i, row in enumerate(rows, start=2):
        run_id = (row.get("run_id") or "").strip()
        score = _float(row.get("val_f1"))
        bundle = (row.get("bundle") or "").strip()
        if not run_id or score is None or not bundle:
            continue  # still running, or failed before it had a score
        if run_id in seen:
            raise UserError(f"{path}: row {i}: run_id '{run_id}' appears twice")
        seen.add(run_id)
        folder = (runs_dir / bundle).resolve()
        if not (folder / META_FILE).exists():
            raise UserError(f"{folder / META_FILE}: bundle of run '{run_id}' is missing")
        rank = _float(row.get("rank"))
        key = -score if math.isfinite(score) else math.inf
        entries.append(
            (
                key,
                rank if rank is not None else math.inf,
                run_id,
                RunEntry(run_id=run_id, val_f1=score, bundle=folder, row=dict(row)),
            )
        )
    if not entries:
        raise UserError(f"{path}: no finished run (every row lacks a val_f1 or a bundle)")
    entries.sort(key=lambda t: t[:3])
    return [e[3] for e in entries]


def read_split(runs_dir: Path | str) -> dict[str, list[str]]:
    """The train/val/test event ids the grid used; empty lists when split.json is absent."""
    path = Path(runs_dir) / SPLIT_FILE
    if not path.exists():
        return {"train": [], "val": [], "test": []}
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected an object with train, val and test lists")
    out: dict[str, list[str]] = {}
    for role in ("train", "val", "test"):
        ids = raw.get(role, [])
        if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
            raise UserError(f"{path}: '{role}' must be a list of event ids")
        out[role] = ids
    return out


def grid_data_dir(runs_dir: Path | str) -> Path | None:
    """The data folder the grid trained on, as recorded in grid.json options (if at all)."""
    path = Path(runs_dir) / GRID_FILE
    if not path.exists():
        return None
    raw = read_json(path)
    options = raw.get("options", {}) if isinstance(raw, dict) else {}
    if not isinstance(options, dict):
        return None
    for key in ("data", "data_dir"):
        if isinstance(options.get(key), str) and options[key]:
            return Path(options[key])
    return None


def common_layers(metas: Sequence[tuple[str, BundleMeta]]) -> tuple[str, ...]:
    """Members must read the same layers in the same order, since they share one input image."""
    first_name, first = metas[0]
    for name, meta in metas[1:]:
        if list(meta.layers) != list(first.layers):
            raise UserError(
                f"{name}: uses layers {','.join(meta.layers)} but {first_name} uses "
                f"{','.join(first.layers)}; an ensemble needs one layer list"
            )
    return tuple(first.layers)


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
        absent = [n for n in layers if n not in ev.layers]
        if absent:
            raise UserError(f"{ev.stack}: lacks layer(s) {', '.join(absent)} that the models need")
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
    ensemble of size k (the mean of the first k) is scored right after member k is added.
    Pixels with no data in any layer (NaN probability) count as predicted 'no landslide'.
    """
    from lsd.training.inference import predict_array

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
            prob = predict_array([(model, meta)], ev.read(), device=device)[0]
            c_single = confusion(prob >= threshold, ev.label)
            acc = sums.get(ev.event_id)
            if acc is None:
                acc = sums[ev.event_id] = np.zeros(prob.shape, dtype=np.float64)
            acc += prob
            c_ens = confusion(acc / k >= threshold, ev.label)
            single_by_event[ev.event_id].append(c_single)
            ensemble_by_event[ev.event_id].append(c_ens)
            s_total, e_total = s_total + c_single, e_total + c_ens
        single.append(s_total)
        ensemble.append(e_total)
        del model
    return Scores(names, single, ensemble, single_by_event, ensemble_by_event)


def finite_or_none(x: float) -> float | None:
    """JSON has no NaN: an undefined score (e.g. precision with nothing predicted) is null."""
    return x if math.isfinite(x) else None


def best_k(curve: Sequence[float]) -> int:
    """The smallest k with the highest F1: fewer members predict faster for the same score."""
    best = max(range(len(curve)), key=lambda i: (curve[i], -i))
    return best + 1


def select_events(data_dir: Path | str, ids: Sequence[str], *, source: str) -> list[EventFolder]:
    """The event folders named by `ids`; an id missing from the data folder is named.

    `source` says where the ids came from (--events, split.json ...) so the message tells the
    user which of their inputs disagrees with the data folder.
    """
    from lsd.contract import list_events

    by_id = {e.event_id: e for e in list_events(data_dir)}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise UserError(f"{source} names event(s) not in {data_dir}: {shown}")
    return [by_id[i] for i in dict.fromkeys(ids)]


def tqdm_progress(desc: str) -> Callable[[Iterable[Any]], Iterable[Any]]:
    """Progress over members on stderr; members are the slow unit (one load + all events)."""

    def wrap(items: Iterable[Any]) -> Iterable[Any]:
        from tqdm import tqdm

        items = list(items)
        return tqdm(items, desc=desc, unit="member", leave=False, disable=None)

    return wrap


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
    """Pick the top-K runs (K given, or the size with the best validation F1) and write them.

    Returns the manifest. With k=None every finished run is scored on the validation events
    once; the curve of ensemble F1 against size is kept in the manifest so the choice can be
    checked later.
    """
    runs_dir, out = Path(runs_dir), Path(out)
    if not 0.0 < threshold < 1.0:
        raise UserError(f"--threshold {threshold} must be between 0 and 1")
    entries = read_leaderboard(runs_dir)
    if k is not None and k < 1:
        raise UserError(f"--k {k} must be at least 1 (or 'auto')")
    if k is not None and k > len(entries):
        raise UserError(
            f"--k {k} is more than the {len(entries)} finished run(s) in "
            f"{runs_dir / LEADERBOARD_FILE}"
        )
    if out.exists() and not overwrite:
        raise UserError(f"{out}: already exists (use --overwrite to replace it)")
    layers = common_layers([(str(e.bundle), e.meta()) for e in entries])
    if k is not None:
        selection: dict[str, Any] = {"mode": "fixed", "k": k}
    else:
        data = Path(data_dir) if data_dir is not None else grid_data_dir(runs_dir)
        if data is None:
            raise UserError(
                f"--k auto scores the validation events, but {runs_dir / GRID_FILE} records no "
                "data folder: give --data DIR"
            )
        val_ids = read_split(runs_dir)["val"]
        if not val_ids:
            raise UserError(f"{runs_dir / SPLIT_FILE}: lists no validation events for --k auto")
        events = prepare_events(
            select_events(data, val_ids, source=str(runs_dir / SPLIT_FILE)), layers
        )
        scores = score_members(
            [(e.run_id, (lambda e=e: e.load(device))) for e in entries],
            events,
            threshold=threshold,
            device=device,
            progress=tqdm_progress("validation") if progress else None,
        )
        curve = [c.f1 for c in scores.ensemble]
        k = best_k(curve)
        selection = {
            "mode": "auto",
            "k": k,
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
    write_ensemble(
        out,
        entries[:k],
        threshold=threshold,
        layers=layers,
        k_selection=selection,
        source=runs_dir,
    )
    return read_manifest(out)


# --------------------------------------------------------------------------- the folder


def write_ensemble(
    out: Path | str,
    chosen: Sequence[RunEntry],
    *,
    threshold: float,
    layers: Sequence[str],
    k_selection: dict[str, Any],
    source: Path | str | None = None,
) -> Path:
    """Copy the chosen bundles and the manifest into `out`, all or nothing."""
    out = Path(out)
    members = []
    with atomic_path(out, directory=True) as tmp:
        (tmp / "members").mkdir()
        for entry in chosen:
            dest = tmp / "members" / entry.run_id
            shutil.copytree(entry.bundle, dest)
            members.append(
                {
                    "name": entry.run_id,
                    "path": f"members/{entry.run_id}",
                    "val_f1": entry.val_f1,
                    "bundle_sha256": file_sha256(dest / META_FILE),
                }
            )
        manifest = {
            "format": ENSEMBLE_FORMAT,
            "k": len(chosen),
            "threshold": threshold,
            "layers": list(layers),
            "members": members,
            "k_selection": k_selection,
            "source": str(source) if source is not None else None,
            "lsd_version": __version__,
        }
        write_json(tmp / MANIFEST_FILE, manifest)
    return out


@dataclass
class Ensemble:
    """A loaded ensemble: models in eval mode, in rank order, with what is needed to predict."""

    members: list[tuple[Any, BundleMeta]]
    layers: tuple[str, ...]
    threshold: float
    k: int
    path: Path
    manifest: dict[str, Any]


def read_manifest(folder: Path | str) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not folder.is_dir():
        raise UserError(f"{folder}: ensemble folder not found")
    if not path.exists():
        raise UserError(f"{path}: missing; not an lsd ensemble folder (or an incomplete copy)")
    raw = read_json(path)
    if not isinstance(raw, dict) or raw.get("format") != ENSEMBLE_FORMAT:
        raise UserError(f"{path}: not an lsd ensemble manifest ({ENSEMBLE_FORMAT})")
    members = raw.get("members")
    if not isinstance(members, list) or not members:
        raise UserError(f"{path}: names no members")
    for m in members:
        rel = m.get("path") if isinstance(m, dict) else None
        if not isinstance(rel, str) or Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise UserError(f"{path}: member path {rel!r} must be a folder inside the ensemble")
    if raw.get("k") != len(members):
        raise UserError(f"{path}: k is {raw.get('k')} but {len(members)} members are listed")
    thr = raw.get("threshold", DEFAULT_THRESHOLD)
    if not isinstance(thr, int | float) or not 0.0 < thr < 1.0:
        raise UserError(f"{path}: threshold {thr!r} must be between 0 and 1")
    return raw


def member_folders(folder: Path | str, manifest: dict[str, Any]) -> list[Path]:
    """Member bundle folders, checked against the manifest's record of each bundle.json."""
    folder = Path(folder)
    out = []
    for m in manifest["members"]:
        member = folder / m["path"]
        meta = member / META_FILE
        if not meta.exists():
            raise UserError(f"{meta}: member '{m.get('name')}' is missing from the ensemble")
        want = m.get("bundle_sha256")
        if want and file_sha256(meta) != want:
            raise UserError(f"{meta}: does not match the manifest's checksum (damaged or edited)")
        if not (member / WEIGHTS_FILE).exists():
            raise UserError(f"{member / WEIGHTS_FILE}: model weights missing")
        out.append(member)
    return out


@dataclass
class EnsembleFiles:
    """A checked ensemble folder whose members are not loaded yet: lets a caller that cannot hold
    every member in memory at once load them in groups."""

    folders: list[Path]
    metas: list[BundleMeta]
    layers: tuple[str, ...]
    threshold: float
    path: Path
    manifest: dict[str, Any]


def open_ensemble(folder: Path | str) -> EnsembleFiles:
    """Manifest, member descriptions and weight checksums checked; errors name the file."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    folders = member_folders(folder, manifest)
    metas = [check_bundle(p) for p in folders]
    layers = common_layers([(str(p), meta) for p, meta in zip(folders, metas, strict=True)])
    if list(manifest.get("layers", layers)) != list(layers):
        raise UserError(f"{folder / MANIFEST_FILE}: layers differ from its members' layers")
    threshold = float(manifest.get("threshold", DEFAULT_THRESHOLD))
    return EnsembleFiles(folders, metas, layers, threshold, folder, manifest)


def load_ensemble(folder: Path | str, device: str = "cpu") -> Ensemble:
    """Load every member (weights checked against their checksums); errors name the file."""
    files = open_ensemble(folder)
    members = [
        load_bundle(p, device=device, checked=m)
        for p, m in zip(files.folders, files.metas, strict=True)
    ]
    return Ensemble(
        members=members,
        layers=files.layers,
        threshold=files.threshold,
        k=len(members),
        path=files.path,
        manifest=files.manifest,
    )


def ensemble_probability(ens: Ensemble, image: np.ndarray, **predict_kw: Any) -> np.ndarray:
    """Landslide probability of the ensemble: the mean of its members' sigmoid outputs."""
    from lsd.training.inference import predict_array

    return predict_array(ens.members, image, **predict_kw).mean(axis=0)
