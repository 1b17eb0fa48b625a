"""Which torch device a command runs on: one rule for training, evaluation and prediction."""

from __future__ import annotations

import torch

from lsd.errors import DeviceUnavailable, InvalidValue


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' means CUDA when present; an explicit CUDA request on a machine without one is an
    input mistake, not a crash."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        msg = f"'{name}' is not a device (use auto, cpu, cuda or cuda:N)"
        raise InvalidValue(msg, field="device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(
            f"device {name}: no CUDA device is available here (use cpu or auto)", field="device"
        )
    return dev
