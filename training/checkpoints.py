"""Reading PyTorch Lightning checkpoints without running the code they name.

A Lightning checkpoint is a pickle. Besides the weights (`state_dict`), the paper's hold the
objects its LightningModule was built with (`save_hyperparameters`): the whole network, the
loss, `functools.partial(torch.optim.Adam, lr=...)`, the scheduler, Hydra's omegaconf
containers. Unpickling those for real would import and run whatever class a file names, so a
checkpoint from the internet could run anything.

Here the file goes through torch's weights-only unpickler, which builds tensors and plain
containers itself and nothing else. Every other global the file names is first listed
(`torch.serialization.get_unsafe_globals_in_checkpoint`, which reads without executing) and
checked against an allow-list of the configuration libraries such checkpoints are made of;
each allowed name is bound to an inert stand-in (`Opaque`) that records its name, arguments and
state but never imports or calls the real class. Any other name refuses the file, in one line.
lsd needs only the weights; the stand-ins keep enough (class names, partial keywords) to tell
the architecture, loss and learning rate when no config file is at hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lsd.errors import InvalidFile
from lsd.training.models import build_model

# Libraries whose objects a Lightning/Hydra/SMP checkpoint pickles as configuration. A name under
# one of these prefixes is bound to an inert stand-in, never to the real thing.
ALLOWED_PREFIXES: tuple[str, ...] = (
    "torch.nn.modules.",
    "torch.nn.parameter.",
    "torch.optim.",
    "torchvision.models.",
    "torchvision.ops.",
    "segmentation_models_pytorch.",
    "timm.",
    "pretrainedmodels.",
    "efficientnet_pytorch.",
    "omegaconf.",
    "torchmetrics.",
    "pytorch_lightning.",
    "lightning.",
    "lightning_fabric.",
    "src.models.",
    "src.data.",
)
ALLOWED_NAMES: frozenset[str] = frozenset(
    {
        "functools.partial",
        "typing.Any",
        "builtins.dict",
        "builtins.list",
        "builtins.tuple",
        "builtins.int",
        "builtins.float",
        "builtins.str",
        "builtins.bool",
        "builtins.type",
        "builtins.object",
        "builtins.NoneType",
        "collections.defaultdict",
        "pathlib.PosixPath",
        "pathlib.WindowsPath",
        "numpy.dtype",
        "numpy.ndarray",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
    }
)


class Opaque:
    """An inert stand-in for a pickled object: its class name, arguments and state, no code."""

    fqn = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Opaque:
        obj = object.__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.fqn}>"

    @property
    def name(self) -> str:
        return self.fqn.rsplit(".", 1)[-1]


def is_allowed(fqn: str) -> bool:
    return fqn in ALLOWED_NAMES or fqn.startswith(ALLOWED_PREFIXES)


def _stand_in(fqn: str) -> type[Opaque]:
    return type(fqn.rsplit(".", 1)[-1], (Opaque,), {"fqn": fqn})


@dataclass
class LightningCheckpoint:
    """What lsd reads from a checkpoint: the weights and the recorded configuration."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    hyper_parameters: dict[str, Any] = field(default_factory=dict)
    datamodule_hyper_parameters: dict[str, Any] = field(default_factory=dict)
    epoch: int | None = None
    global_step: int | None = None
    lightning_version: str | None = None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def load_lightning_checkpoint(path: Path | str) -> LightningCheckpoint:
    """The checkpoint's weights and configuration; a file naming a global outside the allow-list,
    or one that is not a torch checkpoint at all, is refused in one line."""
    path = Path(path)
    if not path.is_file():
        raise InvalidFile(f"{path}: checkpoint not found")
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as exc:  # torch raises several types for a file that is not a checkpoint
        raise InvalidFile(f"{path}: not a readable torch checkpoint ({_reason(exc)})") from None
    refused = sorted(n for n in names if not is_allowed(n))
    if refused:
        more = f" and {len(refused) - 1} more" if len(refused) > 1 else ""
        raise InvalidFile(
            f"{path}: holds a pickled {refused[0]}{more}, outside the allow-list of "
            "configuration classes (torch.nn, torch.optim, segmentation_models_pytorch, "
            "omegaconf, Lightning ...); not loaded, since unpickling it could run code"
        )
    stand_ins = [(_stand_in(n), n) for n in names]
    try:
        with torch.serialization.safe_globals(stand_ins):
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights-only unpickling refuses with UnpicklingError and others
        raise InvalidFile(f"{path}: cannot be read safely ({_reason(exc)})") from None
    return _checked(path, raw)


def _checked(path: Path, raw: Any) -> LightningCheckpoint:
    if not isinstance(raw, dict) or not isinstance(raw.get("state_dict"), dict):
        raise InvalidFile(f"{path}: not a Lightning checkpoint (no state_dict)")
    state = raw["state_dict"]
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise InvalidFile(f"{path}: state_dict entry {bad[0]!r} is not a tensor")
    hp = raw.get("hyper_parameters")
    dm = raw.get("datamodule_hyper_parameters")
    return LightningCheckpoint(
        path=path,
        state_dict=state,
        hyper_parameters=hp if isinstance(hp, dict) else {},
        datamodule_hyper_parameters=dm if isinstance(dm, dict) else {},
        epoch=raw.get("epoch") if isinstance(raw.get("epoch"), int) else None,
        global_step=raw.get("global_step") if isinstance(raw.get("global_step"), int) else None,
        lightning_version=str(raw.get("pytorch-lightning_version") or "") or None,
    )


def strip_prefix(state: dict[str, torch.Tensor], prefix: str = "net.") -> dict[str, torch.Tensor]:
    """The network's weights: LightningModule attributes prefix them ("net.encoder...")."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


# State-dict names that segmentation_models_pytorch changed since the paper's models were saved
# (smp 0.3.x, 2023): DeepLabV3's decoder became named modules in smp 0.4. Checked against
# smp 0.3.3: with these renames all nine architectures give bit-identical outputs in smp 0.6.
LEGACY_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "DeepLabV3": (("decoder.0.", "decoder.aspp."), ("decoder.1.", "decoder.conv."),
                  ("decoder.2.", "decoder.bn.")),
}  # fmt: skip


def modern_keys(arch: str, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weights with names from older smp versions renamed to today's (LEGACY_KEYS)."""
    renames = LEGACY_KEYS.get(arch, ())
    out = {}
    for key, value in weights.items():
        for old, new in renames:
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = value
    return out


def encoders_of_class(class_name: str) -> list[str]:
    """SMP encoder names built by an encoder class (ResNetEncoder: resnet18, resnet34, ...)."""
    import segmentation_models_pytorch as smp

    return [n for n, e in smp.encoders.encoders.items() if e["encoder"].__name__ == class_name]


def _fit_problem(ckpt: LightningCheckpoint, model, weights, what: str) -> str | None:
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    extra = [k for k in weights if k not in own]
    shape = [k for k in own if k in weights and own[k].shape != weights[k].shape]
    if not (missing or extra or shape):
        return None
    if shape:
        k = shape[0]
        first = f"{k} is {tuple(weights[k].shape)}, not {tuple(own[k].shape)}"
    else:
        first = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
    return (
        f"{ckpt.path}: weights do not fit {what} ({first}; {len(missing)} missing, "
        f"{len(extra)} unexpected, {len(shape)} of another shape)"
    )


def model_from_checkpoint(
    ckpt: LightningCheckpoint,
    arch: str,
    encoders: Sequence[str],
    n_channels: int,
    prefix: str = "net.",
) -> tuple[nn.Module, str]:
    """Build lsd's model and load the checkpoint's network into it; returns it with the encoder
    that fits (the first of `encoders` whose tensors match exactly). Keys or shapes that fit no
    candidate are named, in one line."""

    weights = strip_prefix(ckpt.state_dict, prefix)
    if not weights:
        raise InvalidFile(f"{ckpt.path}: no '{prefix}*' weights (not the paper's LightningModule)")
    first_problem = None
    for encoder in encoders:
        model = build_model(arch, n_channels, encoder)
        what = f"{arch}/{encoder} with {n_channels} input layer(s)"
        for candidate in (weights, modern_keys(arch, weights)):
            problem = _fit_problem(ckpt, model, candidate, what)
            if problem is None:
                model.load_state_dict(candidate)
                return model.eval(), encoder
        first_problem = first_problem or problem
    raise InvalidFile(first_problem or f"{ckpt.path}: no encoder to try")
