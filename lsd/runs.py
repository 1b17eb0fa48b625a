"""The RUNS folder a model grid writes, read and written only here.

    RUNS/grid.json              setting, layers, normalisation, the options the runs were made with
    RUNS/split.json             train / val / test event ids and the seed that drew them
    RUNS/leaderboard.csv        finished runs ranked by validation F1
    RUNS/runs/<run_id>/         checkpoint.pt while training, metrics.csv, bundle/, done.json,
                                claim.json while a driver trains it, failed.txt after a failure

The grid (training), ensembles, evaluation, importers of published models and the tests all go
through these functions, so the folder has one definition. A run is finished once done.json
exists beside its bundle; done.json is written last.

Several drivers may work on one RUNS folder at once: the claims of runs (claim.json) and the
lock that leaderboard.csv is rewritten under are the protocol of lsd.claims.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsd.bundles import META_FILE, BundleMeta, load_meta
from lsd.claims import LOCK_STALE_S, exclusive
from lsd.errors import InputNotFound, InvalidFile
from lsd.files import atomic_path, create_json, read_json, write_json
from lsd.outputs import mark, marked_kind
from lsd.spec import ROLES

RUNS_DIR = "runs"
SPLIT_FILE = "split.json"
GRID_FILE = "grid.json"
LEADERBOARD_FILE = "leaderboard.csv"
LEADERBOARD_COLUMNS = (
    "rank", "run_id", "arch", "encoder", "loss", "lr", "val_f1", "val_precision", "val_recall",
    "val_iou", "best_epoch", "epochs_run", "seconds", "bundle",
)  # fmt: skip
CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.csv"
METRIC_COLUMNS = (
    "epoch", "train_loss", "val_precision", "val_recall", "val_f1", "val_iou", "seconds", "lr",
)  # fmt: skip
BUNDLE_DIR = "bundle"
DONE_FILE = "done.json"
FAILED_FILE = "failed.txt"
LEADERBOARD_LOCK = ".leaderboard.lock"


def run_id(arch: str, loss: str, lr: float) -> str:
    """Folder name of a run; `g` formatting keeps 0.001 as '0.001' rather than '1e-03'."""
    return f"{arch}-{loss}-lr{lr:g}"


def run_folder(runs_dir: Path | str, rid: str) -> Path:
    return Path(runs_dir) / RUNS_DIR / rid


# --------------------------------------------------------------------------- split and grid


def _split_record(split: dict[str, Sequence[str]], seed: int) -> dict[str, Any]:
    return {**{r: list(split[r]) for r in ROLES}, "seed": seed}


def write_split(runs_dir: Path | str, split: dict[str, Sequence[str]], seed: int) -> None:
    write_json(Path(runs_dir) / SPLIT_FILE, _split_record(split, seed))


def create_split(runs_dir: Path | str, split: dict[str, Sequence[str]], seed: int) -> bool:
    """split.json of a new RUNS folder, only if none is there yet (lsd.files.create_json);
    False when another grid call wrote one first."""
    return create_json(Path(runs_dir) / SPLIT_FILE, _split_record(split, seed))


def read_split(runs_dir: Path | str) -> dict[str, list[str]]:
    """The train/val/test event ids the grid used; empty lists when split.json is absent."""
    path = Path(runs_dir) / SPLIT_FILE
    if not path.exists():
        return {role: [] for role in ROLES}
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise InvalidFile(f"{path}: expected an object with train, val and test lists")
    out: dict[str, list[str]] = {}
    for role in ROLES:
        ids = raw.get(role, [])
        if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
            raise InvalidFile(f"{path}: '{role}' must be a list of event ids")
        out[role] = ids
    return out


def write_grid_record(runs_dir: Path | str, record: dict[str, Any]) -> None:
    """Rewrite the grid.json of a RUNS folder that has one (a resume with new limits)."""
    write_json(Path(runs_dir) / GRID_FILE, record)
    if marked_kind(runs_dir) != "runs":
        mark(runs_dir, "runs")


def create_grid_record(runs_dir: Path | str, record: dict[str, Any]) -> bool:
    """grid.json of a new RUNS folder, created atomically and only if none is there: of two
    grid calls started together on one folder exactly one creates it; False for the other,
    which must then check its options against the winner's record."""
    if marked_kind(runs_dir) != "runs":
        mark(runs_dir, "runs")
    return create_json(Path(runs_dir) / GRID_FILE, record)


def is_runs_folder(folder: Path | str) -> bool:
    """A folder lsd train made (marked, or with the grid.json of an older lsd)."""
    folder = Path(folder)
    return marked_kind(folder) == "runs" or (folder / GRID_FILE).is_file()


def read_grid_record(runs_dir: Path | str) -> dict[str, Any] | None:
    """grid.json as written by the grid, or None when the folder has none yet."""
    path = Path(runs_dir) / GRID_FILE
    if not path.exists():
        return None
    raw = read_json(path)
    if not isinstance(raw, dict) or "layers" not in raw:
        raise InvalidFile(f"{path}: not an lsd grid description")
    return raw


def grid_data_dir(runs_dir: Path | str) -> Path | None:
    """The data folder the grid trained on, as recorded in grid.json options (if at all)."""
    raw = read_grid_record(runs_dir)
    options = raw.get("options", {}) if raw else {}
    data = options.get("data") if isinstance(options, dict) else None
    return Path(data) if isinstance(data, str) and data else None


# --------------------------------------------------------------------------- runs


def write_done(run_dir: Path | str, done: dict[str, Any]) -> None:
    write_json(Path(run_dir) / DONE_FILE, done)


def read_done(run_dir: Path | str) -> dict[str, Any]:
    """A finished run's record; an error naming the file when it is missing or damaged."""
    path = Path(run_dir) / DONE_FILE
    rec = read_json(path)
    if not isinstance(rec, dict) or "val_f1" not in rec:
        raise InvalidFile(f"{path}: not an lsd run record (no val_f1)")
    return rec


def write_failure(run_dir: Path | str, text: str) -> None:
    """Why a run failed (the worker's traceback), for the user to read; training it again
    later removes it."""
    with atomic_path(Path(run_dir) / FAILED_FILE) as tmp:
        tmp.write_text(text.rstrip() + "\n")


def clear_failure(run_dir: Path | str) -> None:
    (Path(run_dir) / FAILED_FILE).unlink(missing_ok=True)


def read_metrics(run_dir: Path | str) -> list[dict[str, str]]:
    """metrics.csv of a run as written so far (empty when there is none or it is being
    replaced); drivers poll it to follow runs that train elsewhere."""
    try:
        with (Path(run_dir) / METRICS_FILE).open(newline="") as f:
            return list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def write_metrics(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in METRIC_COLUMNS})


def run_dirs(runs_dir: Path | str) -> list[Path]:
    """Every run folder under RUNS/runs (finished or not), sorted by run id."""
    runs = Path(runs_dir) / RUNS_DIR
    if not runs.is_dir():
        return []
    return sorted(p for p in runs.iterdir() if p.is_dir() and not p.name.startswith("."))


def finished_runs(runs_dir: Path | str) -> list[dict[str, Any]]:
    """done.json of every finished run under RUNS/runs, whatever grid call produced it."""
    rows = []
    runs = Path(runs_dir) / RUNS_DIR
    if not runs.is_dir():
        return rows
    for done in sorted(runs.glob(f"*/{DONE_FILE}")):
        try:
            rec = read_done(done.parent)
        except (InputNotFound, InvalidFile):
            continue
        rec["bundle"] = f"{RUNS_DIR}/{done.parent.name}/{rec.get('bundle', BUNDLE_DIR)}"
        rec["run_id"] = done.parent.name
        rows.append(rec)
    return rows


# --------------------------------------------------------------------------- the leaderboard


def write_leaderboard(runs_dir: Path | str) -> list[dict[str, Any]]:
    """Rank finished runs by validation F1 (descending; ties by run id) into leaderboard.csv.

    Under the leaderboard lock: the rows are read and written by one driver at a time, so the
    last rewrite always holds every run finished before it began."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(runs_dir / LEADERBOARD_LOCK, LOCK_STALE_S):
        return _write_leaderboard(runs_dir)


def _write_leaderboard(runs_dir: Path) -> list[dict[str, Any]]:

    def key(rec: dict[str, Any]) -> tuple[float, str]:
        f1 = float(rec.get("val_f1", float("nan")))
        return (-f1 if math.isfinite(f1) else math.inf, rec["run_id"])

    rows = sorted(finished_runs(runs_dir), key=key)
    with atomic_path(runs_dir / LEADERBOARD_FILE) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LEADERBOARD_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for rank, rec in enumerate(rows, start=1):
            rec["rank"] = rank
            writer.writerow(rec)
    return rows


@dataclass(frozen=True)
class RunEntry:
    """One finished run of the leaderboard, in rank order by validation F1."""

    run_id: str
    val_f1: float
    bundle: Path
    row: dict[str, str] = field(default_factory=dict, compare=False)

    def meta(self) -> BundleMeta:
        return load_meta(self.bundle)


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
        raise InputNotFound(f"{runs_dir}: runs folder not found")
    if not path.exists():
        raise InputNotFound(f"{path}: no leaderboard in this runs folder (written by lsd train)")
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidFile(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in ("run_id", "val_f1", "bundle") if c not in header]
    if missing:
        raise InvalidFile(f"{path}: lacks column(s) {', '.join(missing)}")
    entries: list[tuple[float, float, str, RunEntry]] = []
    seen: set[str] = set()
    for i, row in enumerate(rows, start=2):
        rid = (row.get("run_id") or "").strip()
        score = _float(row.get("val_f1"))
        bundle = (row.get("bundle") or "").strip()
        if not rid or score is None or not bundle:
            continue  # still running, or failed before it had a score
        if rid in seen:
            raise InvalidFile(f"{path}: row {i}: run_id '{rid}' appears twice")
        seen.add(rid)
        folder = (runs_dir / bundle).resolve()
        if not (folder / META_FILE).exists():
            raise InputNotFound(f"{folder / META_FILE}: bundle of run '{rid}' is missing")
        rank = _float(row.get("rank"))
        key = -score if math.isfinite(score) else math.inf
        entry = RunEntry(run_id=rid, val_f1=score, bundle=folder, row=dict(row))
        entries.append((key, rank if rank is not None else math.inf, rid, entry))
    if not entries:
        raise InvalidFile(f"{path}: no finished run (every row lacks a val_f1 or a bundle)")
    entries.sort(key=lambda t: t[:3])
    return [e[3] for e in entries]
