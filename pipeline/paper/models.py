"""`lsd import paper-models`: the paper's 360 trained models as lsd RUNS folders.

Each multirun folder (one setting) becomes RUNS/<setting>/ with the files `lsd train` writes,
through lsd.runs and lsd.bundles only: split.json (the event roles of the imported dataset),
grid.json (layers and the paper's normalisation statistics), one run folder per checkpoint with
its bundle and done.json, and leaderboard.csv ranked by the run's val/f1_best. So `lsd
ensemble`, `lsd evaluate` and `lsd predict` use the paper's models unchanged.

The normalisation statistics are recomputed from the imported train_val events the way the
paper's code computed them (lsd.training.paper.paper_statistics), since the checkpoints do not
carry them. A run without tensorboard logs gets its validation F1 recomputed on the validation
events with the paper's scoring, and the import says so. Finished runs are skipped on a rerun.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsd.bundles import BundleMeta
from lsd.conventions import of_events
from lsd.errors import InvalidFile, InvalidValue
from lsd.events import EventFolder, list_events
from lsd.files import check_writable
from lsd.layers import PAPER_LAYERS
from lsd.pipeline.paper.facts import SETTING_FOLDERS, TRAIN_VAL_DIR, ZENODO_DOI
from lsd.pipeline.paper.runs import PaperRun, find_multiruns, list_runs
from lsd.rasters import read_label, read_stack
from lsd.runs import (
    BUNDLE_DIR,
    DONE_FILE,
    read_grid_record,
    run_folder,
    run_id,
    write_done,
    write_grid_record,
    write_leaderboard,
    write_split,
)
from lsd.spec import ROLES
from lsd.training.metrics import Counts

Echo = Callable[[str], None]
NORMALISATION_RULE = (
    "the paper's: per-layer mean and population std over every train_val event (validation "
    "included), float32 sums per file, NaN skipped; NaN -> 0 after normalising"
)


@dataclass
class PaperData:
    """The imported dataset as the paper's models need it: roles and the paper's statistics."""

    data_dir: Path
    events: list[EventFolder]
    split: dict[str, list[str]]
    mean: list[float]  # all 15 layers, PAPER_LAYERS order
    std: list[float]
    conventions: dict[str, Any] | None = None  # of the train and val events (lsd.conventions)

    def stats_for(self, layers: Sequence[str]) -> tuple[list[float], list[float]]:
        idx = [PAPER_LAYERS.index(name) for name in layers]
        return [self.mean[i] for i in idx], [self.std[i] for i in idx]


@dataclass
class SettingImport:
    setting: str
    out: Path
    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    recomputed: list[str] = field(default_factory=list)


def load_paper_data(data_dir: Path | str) -> PaperData:
    """The event folders `lsd import paper` wrote, with the paper's normalisation statistics."""
    from lsd.training.data import check_event_layers
    from lsd.training.paper import paper_statistics

    data_dir = Path(data_dir)
    events = list_events(data_dir)
    check_event_layers(events, PAPER_LAYERS, "the paper's models")
    split = {role: sorted(e.event_id for e in events if e.role == role) for role in ROLES}
    if not split["train"] or not split["val"]:
        raise InvalidValue(
            f"{data_dir}: needs events with roles train and val (as `lsd import paper` writes)",
            field="data",
        )
    train_val = [e for e in events if _part(e) == TRAIN_VAL_DIR]
    mean, std = paper_statistics(read_stack(e.stack, PAPER_LAYERS)[0] for e in train_val)
    return PaperData(data_dir, events, split, mean, std, _conventions(train_val))


def _conventions(events: Sequence[EventFolder]) -> dict[str, Any] | None:
    """What the paper's models learnt: the conventions `lsd import paper` found in its data
    (None for an import made before lsd recorded them)."""

    if not any("conventions" in e.meta for e in events):
        return None
    return of_events(events)


def _part(event: EventFolder) -> str:
    source = event.meta.get("source") if isinstance(event.meta, dict) else None
    part = source.get("part") if isinstance(source, dict) else None
    if part:
        return str(part)
    return TRAIN_VAL_DIR if event.role in ("train", "val") else "test"


def _setting_name(multirun: Path, runs: list[PaperRun]) -> str:
    channels = {r.channels for r in runs}
    if len(channels) != 1:
        raise InvalidFile(f"{multirun}: its runs read different layers; one setting per folder")
    setting = runs[0].setting
    return setting if setting != "custom" else SETTING_FOLDERS.get(multirun.name, multirun.name)


def _run_ids(runs: list[PaperRun]) -> list[str]:
    ids = [run_id(r.arch, r.loss, r.lr) for r in runs]
    return [
        i if ids.count(i) == 1 else f"{i}-run{r.number}" for i, r in zip(ids, runs, strict=True)
    ]


def _check_grid(out: Path, layers: list[str], mean: list[float]) -> None:
    old = read_grid_record(out)
    if old is None:
        return
    if list(old["layers"]) != layers or [round(m, 6) for m in old.get("mean", [])] != [
        round(m, 6) for m in mean
    ]:
        raise InvalidValue(
            f"{out}: already holds runs made with other layers or statistics; use a new folder"
        )


def _bundle_meta(run: PaperRun, data: PaperData, val_source: str) -> BundleMeta:
    mean, std = data.stats_for(run.layers)
    return BundleMeta(
        arch=run.arch, encoder=run.encoder, loss=run.loss, lr=run.lr, layers=list(run.layers),
        mean=mean, std=std,
        scores={"val_f1": run.val_f1, "val_f1_source": val_source, "best_epoch": run.epoch},
        extra={
            "source": "paper", "doi": ZENODO_DOI, "checkpoint": str(run.checkpoint.resolve()),
            "paper_run": run.number, "config": run.config_source, "channels": list(run.channels),
            "normalisation": NORMALISATION_RULE, "split": data.split,
            **({"conventions": data.conventions} if data.conventions else {}),
        },
    )  # fmt: skip


def _convert(run: PaperRun, rid: str, out: Path, data: PaperData, val_source: str, device: str):
    """Checkpoint -> bundle + done.json; returns the model (in memory, for rescoring)."""
    from lsd.training.bundle import save_bundle
    from lsd.training.checkpoints import load_lightning_checkpoint, model_from_checkpoint

    ck = load_lightning_checkpoint(run.checkpoint)
    encoders = run.encoder_candidates or (run.encoder,)
    model, run.encoder = model_from_checkpoint(ck, run.arch, encoders, len(run.channels))
    if run.val_f1 is None:
        run.val_f1 = validation_f1(model, run, data, device)
    run_dir = run_folder(out, rid)
    save_bundle(run_dir / BUNDLE_DIR, model, _bundle_meta(run, data, val_source))
    write_done(run_dir, {
        "run_id": rid, "arch": run.arch, "encoder": run.encoder, "loss": run.loss, "lr": run.lr,
        "val_f1": run.val_f1, "val_f1_source": val_source, "best_epoch": run.epoch,
        "stop_reason": "imported", "bundle": BUNDLE_DIR,
    })  # fmt: skip


def validation_f1(model, run: PaperRun, data: PaperData, device: str) -> float:
    """F1 over the validation events, scored as the paper's validation step did (whole images
    centre-cropped to a multiple of 32, p > 0.5, counts summed over events)."""
    from lsd.training.paper import CroppedEvent, paper_counts, whole_image_probability

    mean, std = data.stats_for(run.layers)
    total = Counts()
    for ev in (e for e in data.events if e.event_id in set(data.split["val"])):
        image = read_stack(ev.stack, run.layers)[0]
        crop = CroppedEvent.crop(ev.event_id, image, read_label(ev.label)[0])
        prob = whole_image_probability(model, crop.image, mean, std, device)
        total = total + paper_counts(prob, crop.label)
    return total.f1


def import_setting(
    multirun: Path, runs_root: Path, data: PaperData, *, device: str
) -> SettingImport:
    runs = list_runs(multirun)  # every config checked before any weights are read
    setting = _setting_name(multirun, runs)
    out = check_writable(runs_root / setting)
    layers = list(runs[0].layers)
    mean, std = data.stats_for(layers)
    _check_grid(out, layers, mean)
    write_split(out, data.split, 0)
    write_grid_record(out, {
        "setting": setting, "layers": layers, "mean": mean, "std": std,
        "options": {"data": str(data.data_dir.resolve()), "source": "paper-models",
                    "models": str(multirun.resolve()), "normalisation": NORMALISATION_RULE,
                    "preset": "paper"},
        **({"conventions": data.conventions} if data.conventions else {}),
    })  # fmt: skip
    result = SettingImport(setting, out)
    for run, rid in zip(runs, _run_ids(runs), strict=True):
        if (run_folder(out, rid) / DONE_FILE).exists():
            result.skipped.append(rid)
            continue
        source = "tensorboard val/f1_best" if run.val_f1 is not None else "recomputed"
        if run.val_f1 is None:
            result.recomputed.append(rid)
        _convert(run, rid, out, data, source, device)
        result.imported.append(rid)
    write_leaderboard(out)
    return result


def import_paper_models(
    models_dir: Path | str, runs_root: Path | str, data_dir: Path | str, *, device: str = "cpu",
    echo: Echo = print,
) -> list[SettingImport]:  # fmt: skip
    """Every multirun folder under `models_dir` as runs_root/<setting>/ (see module doc)."""
    from lsd.training.device import resolve_device

    device = str(resolve_device(device))  # auto, cpu, cuda or cuda:N; unusable ones fail here
    multiruns = find_multiruns(Path(models_dir))
    data = load_paper_data(data_dir)
    results = []
    for multirun in multiruns:
        result = import_setting(multirun, Path(runs_root), data, device=device)
        if result.recomputed:
            echo(f"{multirun.name}: {len(result.recomputed)} run(s) have no tensorboard log; "
                 "their validation F1 was recomputed on the validation events "
                 f"({', '.join(data.split['val'])}) with the paper's scoring")  # fmt: skip
        echo(f"{result.setting}: {len(result.imported)} imported, {len(result.skipped)} already "
             f"there -> {result.out}")  # fmt: skip
        results.append(result)
    return results
