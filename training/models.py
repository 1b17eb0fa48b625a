"""The paper's nine segmentation-models-pytorch architectures, built without any download.

Encoders start from random weights unless the user names a local weights file: lsd must run on
machines with no internet, and ImageNet weights for 3-band RGB do not match a 2- to 15-layer stack
anyway (the first convolution is rebuilt for `in_channels`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lsd.errors import InputNotFound, InvalidFile, InvalidValue
from lsd.training.options import ARCHITECTURES

_ALIASES = {"unet++": "UnetPlusPlus", "deeplabv3+": "DeepLabV3Plus"}

# Input sizes must be multiples of the encoder's total stride for every architecture.
INPUT_MULTIPLE = 32
# PAN's feature pyramid attention pools the stride-32 map three more times, so each side needs
# at least 4 x 32 pixels; the others work from one stride-32 cell.
_MIN_SIDE = {"PAN": 128}


def min_input_size(arch: str) -> int:
    """Smallest side an input (crop or padded image) may have for this architecture."""
    return _MIN_SIDE.get(canonical_arch(arch), INPUT_MULTIPLE)


def canonical_arch(name: str) -> str:
    key = name.strip().lower()
    for arch in ARCHITECTURES:
        if arch.lower() == key:
            return arch
    if key in _ALIASES:
        return _ALIASES[key]
    raise InvalidValue(
        f"unknown architecture '{name}'; choose from {', '.join(ARCHITECTURES)}", field="archs"
    )


def check_encoder(name: str) -> str:
    import segmentation_models_pytorch as smp

    known = smp.encoders.get_encoder_names()
    if name not in known:
        close = [k for k in known if name.lower() in k.lower()][:5]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise InvalidValue(f"unknown encoder '{name}'{hint}", field="encoder")
    return name


def build_model(
    arch: str,
    in_channels: int,
    encoder: str = "resnet34",
    encoder_weights_file: Path | str | None = None,
) -> nn.Module:
    """One-logit model; `encoder_weights_file` is a local state dict for the encoder."""
    import segmentation_models_pytorch as smp

    arch = canonical_arch(arch)
    check_encoder(encoder)
    model = getattr(smp, arch)(
        encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=1
    )
    if encoder_weights_file is not None:
        path = Path(encoder_weights_file)
        state = read_encoder_state(path)
        own = model.encoder.state_dict()
        # keep tensors whose shapes fit; the stem convolution differs when in_channels != 3
        fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if not fitting:
            raise InvalidFile(f"{path}: no tensor matches encoder '{encoder}'")
        model.encoder.load_state_dict(fitting, strict=False)
    return model


def read_encoder_state(path: Path | str) -> dict[str, torch.Tensor]:
    """A local encoder state dict: names to tensors, read without running pickled code.

    Raises:
        InputNotFound: no such file.
        InvalidFile: not a torch file, or not a dict of names to tensors (naming what it holds).
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputNotFound(f"{path}: encoder weights file not found") from None
    except Exception as exc:  # torch raises several types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidFile(f"{path}: not a readable torch state dict ({first})") from None
    if not isinstance(state, dict):
        raise InvalidFile(
            f"{path}: holds a {type(state).__name__}, not a state dict (a dict of parameter "
            "names to tensors, as model.encoder.state_dict() gives)"
        )
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise InvalidFile(
                f"{path}: entry {key!r} holds a {type(value).__name__}, not a tensor; a state "
                "dict maps parameter names to tensors"
            )
    return state


def pad_to_multiple(
    x: torch.Tensor, multiple: int = INPUT_MULTIPLE, min_side: int = INPUT_MULTIPLE
) -> tuple[torch.Tensor, int, int]:
    """Pad (N, C, H, W) on the bottom/right so H and W divide by `multiple` and reach `min_side`.

    Reflection keeps texture continuous across the edge; when the pad is wider than the image
    (reflection is impossible) zeros are used, which is the layer mean after normalisation.
    """
    h, w = x.shape[-2:]
    th = max(h + (-h) % multiple, min_side)
    tw = max(w + (-w) % multiple, min_side)
    ph, pw = th - h, tw - w
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "constant"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, h, w


def model_min_side(model: nn.Module) -> int:
    """Smallest input side for a built model (see min_input_size)."""
    return _MIN_SIDE.get(type(model).__name__, INPUT_MULTIPLE)


def forward_whole(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits for images of any size: pad, run, crop back."""
    xp, h, w = pad_to_multiple(x, min_side=model_min_side(model))
    return model(xp)[..., :h, :w]
