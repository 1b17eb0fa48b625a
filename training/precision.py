"""How a forward pass runs on a device: one policy for training, validation and prediction.

Three modes (`lsd.training.options.PRECISIONS`):

- `auto` (the default). On CUDA, bf16 autocast where the GPU supports it (no loss scaling
  needed), else fp16 autocast, which in training also needs a GradScaler so small gradients do
  not underflow. On the CPU, fp32.
- `fp32`: no autocast anywhere.
- `bf16`: bf16 autocast, on CUDA or on a CPU with native bfloat16 arithmetic (AVX512-BF16 or
  AMX, detected from the CPU's flags, never assumed: without them bf16 is emulated and slower
  than fp32). Opt-in on the CPU because it moves probabilities (docs/train.md has the figures).

Tensors fed to convolutions go channels_last on CUDA, where cuDNN is faster with it, and on the
CPU, where oneDNN is (1.6x for a 512 px UnetPlusPlus/resnet34 forward): the arithmetic stays
fp32, only the order of the sums inside a convolution changes (outputs agree to fp32 rounding).
Training and inference share this choice, so a model is scored and mapped at the precision it
was validated at.
"""

from __future__ import annotations

import contextlib
import functools
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lsd.errors import DeviceUnavailable
from lsd.training.options import check_precision

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_bf16() -> bool:
    """Native bfloat16 on this CPU: oneDNN's bf16 kernels and an instruction set that runs them
    without emulation."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    if not torch.backends.mkldnn.is_available():
        return False
    return bool(cpu_flags() & set(CPU_BF16_FLAGS))


@dataclass
class Precision:
    device: torch.device
    dtype: torch.dtype | None  # None: fp32, no autocast
    scaler: Any  # torch.amp.GradScaler for fp16 training, else None
    channels_last: bool = True

    @classmethod
    def for_device(
        cls, device: torch.device, *, training: bool = False, mode: str = "auto"
    ) -> Precision:
        check_precision(mode)
        device = torch.device(device)
        if device.type not in ("cuda", "cpu"):
            return cls(device, None, None, channels_last=False)
        if mode == "fp32":
            return cls(device, None, None)
        if device.type == "cpu":
            if mode == "auto":
                return cls(device, None, None)
            if not cpu_has_bf16():
                raise DeviceUnavailable(
                    "precision bf16: this CPU has no native bfloat16 arithmetic "
                    f"({' or '.join(CPU_BF16_FLAGS)}); use fp32 or auto",
                    field="precision",
                )
            return cls(device, torch.bfloat16, None)
        if torch.cuda.is_bf16_supported():
            return cls(device, torch.bfloat16, None)
        if mode == "bf16":
            raise DeviceUnavailable(
                f"precision bf16: {device} does not support bfloat16; use fp32 or auto",
                field="precision",
            )
        scaler = torch.amp.GradScaler("cuda") if training else None
        return cls(device, torch.float16, scaler)

    @property
    def name(self) -> str:
        """What was used, for records: fp32, bf16 or fp16."""
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(memory_format=torch.channels_last) if self.channels_last else model
