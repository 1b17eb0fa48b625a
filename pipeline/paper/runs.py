"""Reading the paper's trained_models folder: one Hydra multirun per setting, one run per folder.

    <setting>_ensemble/<n>/checkpoints/epoch_NNN.ckpt       the best epoch (ModelCheckpoint on
                                                             val/f1); last.ckpt is ignored
    <setting>_ensemble/<n>/tensorboard/version_0/hparams.yaml  the Hydra config (model.net,
                                                             model.loss, model.optimizer.lr,
                                                             data.channels)
    <setting>_ensemble/<n>/tensorboard/version_0/events.*     val/f1_best, read with
                                                             tensorboard's EventAccumulator

A run's description comes from hparams.yaml, else the run's .hydra/config.yaml, else the
checkpoint's own pickled hyper-parameters (read through inert stand-ins, see
lsd.training.checkpoints). Everything a run needs is checked here, before any weights are read,
so an unknown architecture or channel list stops the import in its first second.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lsd.errors import InputNotFound, InvalidFile
from lsd.pipeline.paper.facts import (
    ARCH_CLASSES,
    DEFAULT_ENCODER,
    LOSS_CLASSES,
    N_CHANNELS,
    SETTING_FOLDERS,
    layers_of_channels,
    setting_of_channels,
)

CHECKPOINTS_DIR = "checkpoints"
CONFIG_FILES = ("tensorboard/version_0/hparams.yaml", ".hydra/config.yaml")
VAL_TAG = "val/f1_best"
# net options the paper's configs set (configs/model/default.yaml); any other option changes the
# architecture, which an lsd bundle (arch + encoder) cannot describe
NET_OPTIONS = {
    "_target_",
    "encoder_name",
    "encoder_weights",
    "in_channels",
    "classes",
    "activation",
}
SEARCH_DEPTH = 3


@dataclass
class PaperRun:
    """One run of a multirun folder, described and checked, not yet converted."""

    folder: Path
    number: str
    checkpoint: Path
    arch: str
    encoder: str
    loss: str
    lr: float
    channels: tuple[int, ...]
    config_source: str
    encoder_candidates: tuple[str, ...] = ()  # when no config names the encoder
    epoch: int | None = None
    val_f1: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def layers(self) -> tuple[str, ...]:
        return layers_of_channels(self.channels)

    @property
    def setting(self) -> str:
        return setting_of_channels(self.channels) or "custom"


def _is_run(folder: Path) -> bool:
    return (folder / CHECKPOINTS_DIR).is_dir()


def _number_key(folder: Path) -> tuple[int, int | str]:
    return (0, int(folder.name)) if folder.name.isdigit() else (1, folder.name)


def find_multiruns(models_dir: Path) -> list[Path]:
    """Folders holding numbered run folders: the four *_ensemble folders, wherever they sit."""
    if not models_dir.is_dir():
        raise InputNotFound(f"{models_dir}: models folder not found")
    found: list[Path] = []
    frontier = [models_dir]
    for _ in range(SEARCH_DEPTH + 1):
        nxt = []
        for folder in frontier:
            children = sorted(c for c in folder.iterdir() if c.is_dir() and c.name[0] not in "._")
            if any(_is_run(c) for c in children):
                found.append(folder)
            else:
                nxt += children
        frontier = nxt
    if not found:
        raise InvalidFile(
            f"{models_dir}: no run folders (<n>/{CHECKPOINTS_DIR}/epoch_*.ckpt) found; expected "
            f"trained_models.zip's layout: {', '.join(SETTING_FOLDERS)}"
        )
    return found


def best_checkpoint(run: Path) -> tuple[Path, int | None]:
    """The run's epoch_NNN.ckpt (the best epoch by val/f1); the highest epoch if there are more."""
    ckpts = []
    for path in (run / CHECKPOINTS_DIR).glob("*.ckpt"):
        match = re.search(r"epoch[_=]?(\d+)", path.stem)
        if match:
            ckpts.append((int(match.group(1)), path))
    if not ckpts:
        raise InvalidFile(
            f"{run / CHECKPOINTS_DIR}: no epoch_*.ckpt (last.ckpt is the last epoch, not the best)"
        )
    epoch, path = max(ckpts)
    return path, epoch


def read_config(run: Path) -> tuple[dict[str, Any] | None, str]:

    for rel in CONFIG_FILES:
        path = run / rel
        if path.is_file():
            try:
                cfg = yaml.safe_load(path.read_text())
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise InvalidFile(f"{path}: not readable YAML ({first})") from None
            if isinstance(cfg, dict) and isinstance(cfg.get("model"), dict):
                return cfg, str(path)
    return None, ""


def _class_name(target: Any, where: str) -> str:
    if not isinstance(target, str) or not target:
        raise InvalidFile(f"{where}: no _target_ class")
    return target.rsplit(".", 1)[-1]


def _arch(name: str, where: str) -> str:
    if name not in ARCH_CLASSES:
        raise InvalidFile(
            f"{where}: architecture {name} is not one lsd builds ({', '.join(ARCH_CLASSES)})"
        )
    return ARCH_CLASSES[name]


def _loss(name: str, where: str) -> str:
    if name not in LOSS_CLASSES:
        raise InvalidFile(f"{where}: loss {name} is not one of {', '.join(LOSS_CLASSES)}")
    return LOSS_CLASSES[name]


def _channels(raw: Any, in_channels: Any, where: str) -> tuple[int, ...]:
    """Channel indices into the 15 layers; none given means all 15 (configs/experiment)."""
    if raw is None:
        if in_channels not in (None, N_CHANNELS):
            raise InvalidFile(
                f"{where}: in_channels {in_channels} but no data.channels: cannot tell which "
                f"{in_channels} of the {N_CHANNELS} layers the model reads"
            )
        return tuple(range(N_CHANNELS))
    if not isinstance(raw, list | tuple) or not all(
        isinstance(c, int) and not isinstance(c, bool) for c in raw
    ):
        raise InvalidFile(f"{where}: data.channels {raw!r} is not a list of layer indices")
    bad = [c for c in raw if not 0 <= c < N_CHANNELS] or sorted(
        {c for c in raw if raw.count(c) > 1}
    )
    if bad or not raw:
        raise InvalidFile(f"{where}: data.channels {list(raw)} must be distinct indices 0..14")
    if in_channels is not None and in_channels != len(raw):
        raise InvalidFile(
            f"{where}: in_channels {in_channels} but data.channels lists {len(raw)} layers"
        )
    return tuple(raw)


def _table(parent: dict[str, Any], key: str, path: str, where: str) -> dict[str, Any]:
    """The option table `parent[key]` of a config (empty when absent); anything else (a string,
    a list, a number) is one line naming the key and what it holds."""
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidFile(
            f"{where}: {path} is {type(value).__name__} {value!r:.60}, not a table of options"
        )
    return value


def describe_config(cfg: dict[str, Any], where: str) -> dict[str, Any]:
    """arch, encoder, loss, lr and channels from a Hydra config, each checked."""
    model = _table(cfg, "model", "model", where)
    net = _table(model, "net", "model.net", where)
    odd = sorted(set(net) - NET_OPTIONS, key=str)
    if odd:
        raise InvalidFile(f"{where}: net option {odd[0]}={net[odd[0]]!r} makes an architecture "
                          "an lsd bundle cannot describe (arch and encoder only)")  # fmt: skip
    if net.get("classes", 1) != 1 or net.get("activation") is not None:
        raise InvalidFile(f"{where}: expected one output logit (classes 1, no activation)")
    lr = _table(model, "optimizer", "model.optimizer", where).get("lr")
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr < math.inf:
        raise InvalidFile(f"{where}: model.optimizer.lr {lr!r} is not a learning rate")
    data = _table(cfg, "data", "data", where)
    loss = _table(model, "loss", "model.loss", where)
    encoder = net.get("encoder_name") or DEFAULT_ENCODER
    if not isinstance(encoder, str):
        raise InvalidFile(f"{where}: model.net.encoder_name {encoder!r} is not an encoder name")
    return {
        "arch": _arch(_class_name(net.get("_target_"), where), where),
        "encoder": encoder,
        "loss": _loss(_class_name(loss.get("_target_"), where), where),
        "lr": float(lr),
        "channels": _channels(data.get("channels"), net.get("in_channels"), where),
    }


def read_val_f1(run: Path) -> float | None:
    """The best val/f1_best in the run's tensorboard logs (the notebook's ranking), or None."""
    files = sorted(run.glob("tensorboard/**/events.out.tfevents.*"))
    if not files:
        return None
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        raise InvalidFile(
            f"{files[0]}: reading tensorboard logs needs the tensorboard package (the 'paper' "
            "extra of lsd)"
        ) from None
    values = []
    for path in files:
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        acc.Reload()
        if VAL_TAG in acc.Tags().get("scalars", []):
            values += [e.value for e in acc.Scalars(VAL_TAG)]
    return max(values) if values else None


def describe_run(folder: Path) -> PaperRun:
    """A run folder's description from its config (the checkpoint is not read here)."""
    checkpoint, epoch = best_checkpoint(folder)
    cfg, source = read_config(folder)
    if cfg is None:
        return describe_from_checkpoint(folder, checkpoint, epoch)
    desc = describe_config(cfg, source)
    return PaperRun(folder, folder.name, checkpoint, config_source=source, epoch=epoch,
                    val_f1=read_val_f1(folder), **desc)  # fmt: skip


def list_runs(multirun: Path) -> list[PaperRun]:
    runs = sorted((c for c in multirun.iterdir() if c.is_dir() and _is_run(c)), key=_number_key)
    return [describe_run(r) for r in runs]


# --------------------------------------------------------------------------- no config at all


def _opaque_list(value: Any) -> Any:
    """A plain list out of an omegaconf ListConfig stand-in (its nodes hold `_val`)."""
    if isinstance(value, list | tuple) or value is None:
        return value
    state = getattr(value, "state", None)
    content = state.get("_content") if isinstance(state, dict) else None
    if isinstance(content, list):
        out = []
        for node in content:
            node_state = getattr(node, "state", None)
            out.append(node_state.get("_val") if isinstance(node_state, dict) else node)
        return out
    return value


def describe_from_checkpoint(folder: Path, checkpoint: Path, epoch: int | None) -> PaperRun:
    """Without a config file: class names and the learning rate from the pickled
    hyper-parameters, the channel count from the first convolution."""
    from lsd.training.checkpoints import load_lightning_checkpoint

    ck = load_lightning_checkpoint(checkpoint)
    hp, where = ck.hyper_parameters, f"{checkpoint} (hyper_parameters)"
    net, loss, opt = hp.get("net"), hp.get("loss"), hp.get("optimizer")
    state = getattr(opt, "state", None)  # functools.partial: (func, args, keywords, dict)
    keywords = state[2] if isinstance(state, tuple) and len(state) > 2 else None
    lr = keywords.get("lr") if isinstance(keywords, dict) else None
    cfg = {
        "model": {
            "net": {"_target_": getattr(net, "fqn", None)},
            "loss": {"_target_": getattr(loss, "fqn", None)},
            "optimizer": {"lr": lr},
        },
        "data": {"channels": _opaque_list(ck.datamodule_hyper_parameters.get("channels"))},
    }
    desc = describe_config(cfg, where)
    return PaperRun(
        folder, folder.name, checkpoint, config_source=where, epoch=epoch,
        val_f1=read_val_f1(folder), encoder_candidates=_encoders(net), **desc,
    )  # fmt: skip


def _encoders(net: Any) -> tuple[str, ...]:
    """Encoder names the pickled network's encoder class can be, the paper's default first."""
    from lsd.training.checkpoints import encoders_of_class

    state = getattr(net, "state", None)
    modules = state.get("_modules") if isinstance(state, dict) else None
    encoder = modules.get("encoder") if isinstance(modules, dict) else None
    names = encoders_of_class(getattr(encoder, "name", "")) if encoder is not None else []
    return tuple(sorted(names, key=lambda n: n != DEFAULT_ENCODER)) or (DEFAULT_ENCODER,)
