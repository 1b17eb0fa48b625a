"""The paper's model grid: every (architecture, loss, learning rate), one run folder each.

Everything a user can get wrong is checked in `prepare_grid` before the first run starts, because
a typo found after three hours of training wastes the three hours. A RUNS folder (lsd.runs)
records the split and the normalisation it was made with; preparing the grid again on it resumes
the grid, and a call with a different split or layers is refused rather than mixing incomparable
runs in one leaderboard. The plan is run by lsd.training.schedule (`run_grid`), which hands the
runs to an executor and keeps the leaderboard current as runs finish.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from lsd import landslide4sense as l4s
from lsd.conventions import STRICT, check_record, known, of_events
from lsd.errors import InvalidFile, InvalidValue, LayerMissing, UserError
from lsd.events import EventFolder, list_events
from lsd.files import PARTIAL_SUFFIX, check_writable
from lsd.layers import check_setting_name, resolve_setting
from lsd.limits import check_memory
from lsd.progress import warn
from lsd.rasters import layer_statistics
from lsd.runs import (
    DONE_FILE,
    GRID_FILE,
    SPLIT_FILE,
    create_grid_record,
    create_split,
    is_runs_folder,
    read_done,
    read_grid_record,
    read_metrics,
    read_split,
    run_dirs,
    run_folder,
    write_grid_record,
    write_split,
)
from lsd.spec import ROLES
from lsd.training.data import (
    check_event_layers,
    check_labels,
    check_training_size,
    compute_norm,
    split_events,
    step_bytes,
)
from lsd.training.device import resolve_device
from lsd.training.executors import DataRef, RunTask
from lsd.training.loop import stop_epoch
from lsd.training.losses import canonical_loss
from lsd.training.models import (
    INPUT_MULTIPLE,
    canonical_arch,
    check_encoder,
    min_input_size,
    read_encoder_state,
)
from lsd.training.options import (
    ARCHITECTURES,
    CROP_ANCHORS,
    DEFAULT_LRS,
    EVENT_ORDERS,
    LOSSES,
    LR_SCHEDULES,
    NORMALISATIONS,
    RunConfig,
    TrainOptions,
    check_precision,
)
from lsd.training.precision import Precision

# Options that change what a run learns; a RUNS folder refuses a resume that changes them.
FIXED_OPTIONS = (
    "encoder", "encoder_weights", "crop", "batch_size", "iters_per_epoch", "seed", "lr_schedule",
    "crop_anchor", "weight_decay", "augment", "event_order", "normalisation",
)  # fmt: skip
# Limits a resume may change, as long as every run is what the new limits would make.
LIMIT_OPTIONS = ("epochs", "patience")
POSITIVE_OPTIONS = ("epochs", "iters_per_epoch", "batch_size", "crop", "patience")
RESUME_HINT = "use a new RUNS folder, or repeat the options this folder was made with"


@dataclass(frozen=True, kw_only=True)
class GridOptions(TrainOptions):
    """What to train: the setting, the grid's axes, the split and the device; the per-run
    options (encoder, crop, epochs ...) and their defaults come from TrainOptions."""

    setting: str = "all"
    settings_file: str | None = None
    archs: tuple[str, ...] = ARCHITECTURES
    losses: tuple[str, ...] = LOSSES
    lrs: tuple[float, ...] = DEFAULT_LRS
    val: int | list[str] | None = None
    test: int | list[str] | None = None
    device: str = "auto"
    preset: str = "lsd"  # recorded: which named set of options filled the unset ones
    precision: str = "auto"  # PRECISIONS
    normalisation: str = "training"  # NORMALISATIONS

    def train_options(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in TrainOptions.__dataclass_fields__}


@dataclass
class GridPlan:
    """A checked grid, ready to run: its folder, events, split and normalisation."""

    out: Path
    options: GridOptions
    layers: list[str]
    events: list[EventFolder]
    split: dict[str, Any]
    mean: list[float]
    std: list[float]
    device: Any  # torch.device
    data_dir: Path = Path(".")
    pixel_m: float | None = None  # the training events' pixel size (None: not one, or nominal)
    conventions: dict[str, Any] = field(default_factory=dict)  # of the training events

    def configs(self) -> list[RunConfig]:
        """Runs in the paper's order: architectures, then losses, then learning rates."""
        o = self.options
        return [
            RunConfig(arch=a, loss=loss, lr=lr, **o.train_options())
            for a in o.archs
            for loss in o.losses
            for lr in o.lrs
        ]

    def data_ref(self) -> DataRef:
        return DataRef(
            data_dir=self.data_dir.resolve(), train=tuple(self.split["train"]),
            val=tuple(self.split["val"]), layers=tuple(self.layers), mean=tuple(self.mean),
            std=tuple(self.std), setting=self.options.setting,
            split=tuple((role, tuple(ids)) for role, ids in self.split.items()),
            pixel_m=self.pixel_m, conventions=json.dumps(self.conventions, sort_keys=True),
        )  # fmt: skip

    def tasks(self, configs: Sequence[RunConfig]) -> list[RunTask]:
        """Absolute paths throughout: a worker elsewhere has another working directory."""
        ref, out, precision = self.data_ref(), self.out.resolve(), self.options.precision
        return [
            RunTask(c, run_folder(out, c.run_id), ref, str(self.device), precision) for c in configs
        ]


def check_options(opts: GridOptions) -> GridOptions:
    """Names canonicalised and numbers checked; each mistake is one line naming the value."""

    archs = tuple(dict.fromkeys(canonical_arch(a) for a in opts.archs))
    losses = tuple(dict.fromkeys(canonical_loss(x) for x in opts.losses))
    if not archs:
        raise InvalidValue("no architecture given; choose from " + ", ".join(ARCHITECTURES),
                           field="archs")  # fmt: skip
    if not losses:
        raise InvalidValue("no loss given", field="losses")
    if not opts.lrs:
        raise InvalidValue("no learning rate given", field="lrs")
    for lr in opts.lrs:
        if not (isinstance(lr, float) and math.isfinite(lr) and lr > 0):
            raise InvalidValue(f"learning rate '{lr}' is not a positive number", field="lrs")
    check_encoder(opts.encoder)
    if opts.encoder_weights is not None and not Path(opts.encoder_weights).is_file():
        raise InvalidValue(f"{opts.encoder_weights}: encoder weights file not found",
                           field="encoder_weights")  # fmt: skip
    if opts.encoder_weights is not None:
        try:  # a dict of tensors, found out before any run starts
            read_encoder_state(opts.encoder_weights)
        except UserError as exc:
            raise type(exc)(exc.message, field="encoder_weights") from None
    for name in POSITIVE_OPTIONS:
        value = getattr(opts, name)
        if not isinstance(value, int) or value <= 0:
            raise InvalidValue(
                f"{name.replace('_', ' ')} must be a positive whole number, got {value}",
                field=name,
            )
    if opts.crop % INPUT_MULTIPLE:
        raise InvalidValue(f"crop {opts.crop} must be a multiple of {INPUT_MULTIPLE}", field="crop")
    for arch in archs:
        if opts.crop < min_input_size(arch):
            raise InvalidValue(
                f"crop {opts.crop} is too small for {arch} (needs at least {min_input_size(arch)})",
                field="crop",
            )
    if opts.seed < 0:
        raise InvalidValue(f"seed must be zero or positive, got {opts.seed}", field="seed")
    check_memory(f"crop {opts.crop} with batch size {opts.batch_size}",
                 step_bytes(opts.crop, opts.batch_size, 1), field="crop")  # fmt: skip
    _check_choice(opts.lr_schedule, LR_SCHEDULES, "lr_schedule")
    _check_choice(opts.crop_anchor, CROP_ANCHORS, "crop_anchor")
    _check_choice(opts.event_order, EVENT_ORDERS, "event_order")
    _check_choice(opts.normalisation, NORMALISATIONS, "normalisation")
    wd = opts.weight_decay
    if isinstance(wd, bool) or not isinstance(wd, int | float) or not (0 <= wd < math.inf):
        raise InvalidValue(f"weight decay must be a number >= 0, got {wd!r}", field="weight_decay")
    return replace(opts, archs=archs, losses=losses, lrs=tuple(dict.fromkeys(opts.lrs)))


def _check_choice(value: str, choices: Sequence[str], name: str) -> None:
    if value not in choices:
        raise InvalidValue(
            f"{name.replace('_', ' ')} '{value}' is not one of {', '.join(choices)}", field=name
        )


def _check_layers(
    events: Sequence[EventFolder], layers: Sequence[str], setting: str
) -> dict[str, dict[str, int]]:
    """Every event must hold every layer of the setting with some data; returns the +/-inf
    values found per event and layer (no data, like NaN, but worth a warning)."""

    check_event_layers(events, layers, needed_by=f"setting '{setting}'")
    infinite: dict[str, dict[str, int]] = {}
    for ev in events:
        for name, st in layer_statistics(ev.stack, layers).items():
            if st.finite == 0:
                raise LayerMissing(
                    f"{ev.stack}: layer '{name}' of event '{ev.event_id}' holds no data "
                    "(every value NaN or infinite)"
                )
            if st.inf:
                infinite.setdefault(ev.event_id, {})[name] = st.inf
    for event_id, per_layer in infinite.items():
        counts = ", ".join(f"{name} ({n})" for name, n in per_layer.items())
        warn(f"event '{event_id}': +/-inf values in {counts}, treated as no data")
    return infinite


def _pixel_size(events: Sequence[EventFolder]) -> float | None:
    """The training events' pixel size in metres when they share one (within 1%), else None."""
    sizes = [ev.grid.pixel_size_m() for ev in events]
    if not sizes or any(s is None for s in sizes):
        return None
    lo, hi = min(sizes), max(sizes)
    return round((lo + hi) / 2, 6) if hi - lo <= 0.01 * hi else None


def _split_arg(value: int | list[str] | None, role: str, ids: set[str]) -> Any:
    if isinstance(value, list):
        unknown = [v for v in value if v not in ids]
        if unknown:
            raise InvalidValue(f"no event named '{unknown[0]}' in the data folder", field=role)
    return value


def _options_record(opts: GridOptions) -> dict[str, Any]:
    rec = asdict(opts)
    for key in ("archs", "losses", "lrs"):
        rec[key] = list(rec[key])
    return rec


def _check_resume(out: Path, layers: list[str], split: dict[str, Any], opts: GridOptions) -> Any:
    """Refuse to mix runs made with other layers, split or fixed options in one RUNS folder."""
    if (out / SPLIT_FILE).exists():
        old_split = read_split(out)
        for role, word in (("val", "validation"), ("test", "test"), ("train", "training")):
            was, now = sorted(old_split[role]), sorted(split[role])
            if was != now:
                gone = [i for i in was if i not in now] or ["(none)"]
                new = [i for i in now if i not in was] or ["(none)"]
                raise InvalidValue(
                    f"{out / SPLIT_FILE}: this RUNS folder was made with other {word} events "
                    f"(it has {', '.join(gone[:3])}; this call gives {', '.join(new[:3])}); "
                    f"{RESUME_HINT}",
                )
    old = read_grid_record(out)
    if old is None:
        return None
    grid_path = out / GRID_FILE
    if list(old["layers"]) != layers:
        raise InvalidValue(
            f"{grid_path}: this RUNS folder was made with layers {', '.join(old['layers'])}, "
            f"not {', '.join(layers)}; {RESUME_HINT}",
            field="setting",
        )
    old_opts = old.get("options", {})
    for key in FIXED_OPTIONS:
        if key in old_opts and old_opts[key] != getattr(opts, key):
            raise InvalidValue(
                f"{grid_path}: this RUNS folder was made with {key.replace('_', ' ')} "
                f"{old_opts[key]}, not {getattr(opts, key)}; {RESUME_HINT}",
                field=key,
            )
    stats = [*old.get("mean", []), *old.get("std", [])]
    if not all(isinstance(x, int | float) and math.isfinite(x) for x in stats):
        raise InvalidFile(
            f"{grid_path}: its normalisation statistics are not all finite numbers (an older "
            "lsd read +/-inf values as data), so its runs learnt from broken inputs; use a new "
            "RUNS folder"
        )
    if any(key in old_opts and old_opts[key] != getattr(opts, key) for key in LIMIT_OPTIONS):
        _check_limits(out, opts, old_opts)
    return old


def _check_limits(out: Path, opts: GridOptions, old_opts: dict[str, Any]) -> None:
    """New epoch or patience limits on a RUNS folder: unfinished runs go on to the new limits,
    but every run must be what these limits would make, so that grid.json describes what ran.
    A finished run cannot train on (its optimiser state is dropped when it finishes) and one
    that trained past the new limits cannot be undone: either is refused."""

    was = " and ".join(f"{k} {old_opts.get(k)}" for k in LIMIT_OPTIONS)
    field_name = next(k for k in LIMIT_OPTIONS if old_opts.get(k) != getattr(opts, k))
    for run_dir in run_dirs(out):
        f1 = [float(r["val_f1"]) for r in read_metrics(run_dir) if r.get("val_f1")]
        if not f1:
            continue
        stop = stop_epoch(f1, opts.epochs, opts.patience)
        finished = (run_dir / DONE_FILE).is_file()
        try:
            reason = read_done(run_dir).get("stop_reason") if finished else None
        except UserError:  # a damaged record: the run is trained again anyway
            finished, reason = False, None
        may_stop_early = not finished or reason == "diverged"
        if (stop is None or stop >= len(f1)) if may_stop_early else stop == len(f1):
            continue
        if stop is None or stop > len(f1):
            would = "train on, which a finished run cannot (its training state is dropped)"
        else:
            would = f"have stopped at epoch {stop}, which cannot be undone"
        state = "finished after" if finished else "has run"
        raise InvalidValue(
            f"{run_dir.name} {state} {len(f1)} epoch(s) under {was}; with epochs {opts.epochs} "
            f"and patience {opts.patience} it would {would}; use a new RUNS folder, or repeat "
            f"{was}",
            field=field_name,
        )


def _landslide4sense_norm(layers: Sequence[str], setting: str) -> tuple[list[float], list[float]]:
    """The benchmark loader's fixed statistics of these layers, or one line naming a layer it
    has none for."""

    stats = l4s.statistics(list(layers))
    if stats is None:
        other = next(name for name in layers if name not in l4s.LAYERS)
        raise InvalidValue(
            f"setting '{setting}' has layer '{other}', which the Landslide4Sense normalisation "
            f"has no statistics for (it covers {', '.join(l4s.LAYERS)})",
            field="setting",
        )
    return stats


def _check_out(out: Path) -> None:
    """A RUNS folder is new, empty, or one lsd train made: runs never land among other files."""
    if out.exists() and not out.is_dir():
        raise InvalidValue(f"{out}: exists and is not a folder", field="out")
    if (
        out.is_dir()
        and not is_runs_folder(out)
        and any(
            not p.name.endswith(PARTIAL_SUFFIX)
            for p in out.iterdir()  # a writer's temporary
        )
    ):
        raise InvalidValue(
            f"{out}: is not a RUNS folder (it has no {GRID_FILE}); lsd train writes a new or "
            "empty folder, or resumes one it made",
            field="out",
        )


def prepare_grid(
    data_dir: Path | str,
    out_dir: Path | str,
    opts: GridOptions,
    *,
    device_on_workers: bool = False,
) -> GridPlan:
    """Check everything, then record split.json and grid.json; nothing is trained here.

    With `device_on_workers` (a cluster), the device is chosen where each run lands, so this
    machine need not have it; the plan keeps the request ("auto", "cpu", "cuda")."""

    opts = check_options(opts)
    check_precision(opts.precision)
    if device_on_workers:
        device: Any = opts.device
    else:
        device = resolve_device(opts.device)
        Precision.for_device(device, training=True, mode=opts.precision)  # bf16 where possible
    resolve_setting(opts.setting, opts.settings_file)  # a malformed setting fails first
    events = list_events(data_dir)
    check_setting_name(opts.setting, opts.settings_file, {n for e in events for n in e.layers})
    common = set.intersection(*(set(e.layers) for e in events))
    layers = list(resolve_setting(opts.setting, opts.settings_file, available=common))
    out = Path(out_dir)
    _check_out(out)
    check_writable(out, create=False)
    infinite = _check_layers(events, layers, opts.setting)

    ids = {e.event_id for e in events}
    val = _split_arg(opts.val, "val", ids)
    test = _split_arg(opts.test, "test", ids)
    split = split_events(events, val=val, test=test, seed=opts.seed)
    split = {role: sorted(split.get(role, [])) for role in ROLES}
    old = _check_resume(out, layers, split, opts)
    train_events = [e for e in events if e.event_id in set(split["train"])]
    val_events = [e for e in events if e.event_id in set(split["val"])]
    check_training_size(train_events, val_events, len(layers), opts.crop, opts.batch_size)
    check_labels(train_events, val_events)
    if old is not None and "mean" in old and "std" in old:
        mean, std = [float(m) for m in old["mean"]], [float(s) for s in old["std"]]
    elif opts.normalisation == "landslide4sense":
        mean, std = _landslide4sense_norm(layers, opts.setting)
    else:
        mean, std = compute_norm(train_events, layers)
        mean, std = [float(m) for m in mean], [float(s) for s in std]
    pixel_m = _pixel_size(train_events)
    conventions = _conventions(events, split, old, out)

    record = {
        "setting": opts.setting,
        "layers": layers,
        "mean": mean,
        "std": std,
        "pixel_m": pixel_m,
        "conventions": conventions,  # of the training and validation events
        "infinite_values": infinite,  # per event and layer, read as no data
        # the data folder lets an ensemble with K chosen on validation find the events unaided
        "options": {**_options_record(opts), "data": str(Path(data_dir).resolve())},
    }
    if old is not None:
        write_split(out, split, opts.seed)
        write_grid_record(out, record)
    else:
        # A new RUNS folder: two grid calls started together both get here. Each file is
        # created by exactly one of them (atomically, exclusively); the other goes on only if
        # what the winner recorded is what it would have, else it is refused naming the
        # difference, so one grid.json never describes runs on different layers.
        if not create_split(out, split, opts.seed):
            _check_resume(out, layers, split, opts)
        if not create_grid_record(out, record):
            old = _check_resume(out, layers, split, opts)
            mean, std = [float(m) for m in old["mean"]], [float(s) for s in old["std"]]
    return GridPlan(
        out, opts, layers, events, split, mean, std, device, Path(data_dir), pixel_m, conventions
    )


def _conventions(
    events: Sequence[EventFolder], split: dict[str, Any], old: dict[str, Any] | None, out: Path
) -> dict[str, Any]:
    """The conventions of the events the models learn from (training and validation); they
    must agree, and agree with those a resumed RUNS folder was made with (lsd.conventions)."""

    used = set(split["train"]) | set(split["val"])
    record = of_events([e for e in events if e.event_id in used])
    if old and old.get("conventions"):
        was = check_record(old["conventions"], str(out / GRID_FILE))
        for name in sorted(STRICT):
            if known(was, name) and known(record, name) and known(was, name) != known(record, name):
                raise InvalidValue(
                    f"{out / GRID_FILE}: this RUNS folder was made with events of {name} "
                    f"{known(was, name)}, these have {known(record, name)}; {RESUME_HINT}"
                )
    return record
