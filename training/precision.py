"""How a forward pass runs on a device: one policy for training, validation and prediction.

fp32 on the CPU. On CUDA, bf16 autocast where the GPU supports it (no loss scaling needed), else
fp16 autocast, which in training also needs a GradScaler so small gradients do not underflow.
Training and inference share this choice, so a model is scored and mapped at the precision it
was validated at. Tensors fed to convolutions go channels_last on CUDA, where cuDNN is faster
with it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Precision:
    device: torch.device
    dtype: torch.dtype | None  # None: fp32, no autocast
    scaler: Any  # torch.amp.GradScaler for fp16 training, else None

    @classmethod
    def for_device(cls, device: torch.device, *, training: bool = False) -> Precision:
        if device.type != "cuda":
            return cls(device, None, None)
        if torch.cuda.is_bf16_supported():
            return cls(device, torch.bfloat16, None)
        scaler = torch.amp.GradScaler("cuda") if training else None
        return cls(device, torch.float16, scaler)

    @property
    def channels_last(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(memory_format=torch.channels_last) if self.channels_last else model
