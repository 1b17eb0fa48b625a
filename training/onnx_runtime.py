"""ONNX Runtime for prediction on the CPU, member by member, checked against PyTorch.

ONNX Runtime (https://onnxruntime.ai) fuses a network's convolutions, normalisations and
activations into fewer, larger kernels than eager PyTorch runs; on the CPU that is faster at
fp32 for most of the paper's architectures (benchmarks/bench_predict.py measures it). It is an
optional extra (`pip install 'lsd[onnx]'`) and opt-in (`runtime="onnx"`).

Each member is exported once per machine (torch.onnx, opset 17, any batch size and tile shape)
into a cache keyed by its weights, and its first batch on a stack is run through both runtimes:
a member whose probabilities differ from PyTorch fp32 by more than TOLERANCE, or whose export
fails (PSPNet's adaptive pooling cannot be exported for variable tile sizes), stays on PyTorch,
with one warning naming it. So a map made with ONNX Runtime is the PyTorch fp32 map to 1e-4.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from lsd.errors import InvalidValue
from lsd.files import atomic_path
from lsd.versions import ONNX, require

INSTALL_HINT = "pip install 'lsd[onnx]'"
TOLERANCE = 1e-4  # largest |p_onnx - p_torch| a member may show on its first batch
OPSET = 17


def import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise InvalidValue(
            f"runtime onnx needs ONNX Runtime, which is not installed here: {INSTALL_HINT}",
            field="runtime",
        ) from None
    require(*ONNX)  # installed, but perhaps below lsd's floor for the extra
    return onnxruntime


def cache_dir() -> Path:
    """Where exported members are kept: $LSD_CACHE/onnx, else ~/.cache/lsd/onnx."""
    root = (
        os.environ.get("LSD_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lsd"
    )
    return Path(root) / "onnx"


def weights_key(model: torch.nn.Module, channels: int) -> str:
    """Names the exported file: the weights, the architecture and the exporter."""
    h = hashlib.sha256(f"{type(model).__name__}|{channels}|{OPSET}|{torch.__version__}".encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def export(model: torch.nn.Module, channels: int, side: int) -> Path:
    """The member as an .onnx file in the cache (exported now if it is not there yet)."""
    path = cache_dir() / f"{weights_key(model, channels)}.onnx"
    if path.exists():
        return path
    buf = io.BytesIO()
    x = torch.zeros(1, channels, side, side)
    axes = {0: "n", 2: "h", 3: "w"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's tracer warnings are not the user's
        torch.onnx.export(
            model.eval(), (x,), buf, input_names=["x"], output_names=["logits"],
            opset_version=OPSET, dynamic_axes={"x": axes, "logits": axes}, dynamo=False,
        )  # fmt: skip
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return path


class OrtNet:
    """An exported member, called like the PyTorch module: (N, C, H, W) -> logits (N, 1, H, W)."""

    def __init__(self, path: Path, threads: int) -> None:
        ort = import_ort()
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.checked = False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().float().cpu().numpy())
        return torch.from_numpy(self.session.run(None, {"x": arr})[0])


def warn(message: str) -> None:

    tqdm.write(f"Warning: {message}", file=sys.stderr)


def onnx_net(model: torch.nn.Module, channels: int, side: int, label: str) -> OrtNet | None:
    """The member on ONNX Runtime, or None (after a warning naming it) when it cannot be."""
    try:
        return OrtNet(export(model, channels, side), torch.get_num_threads())
    except Exception as exc:  # the exporter and the runtime raise many types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        warn(f"{label}: ONNX export failed ({type(exc).__name__}: {first}); it runs on PyTorch")
        return None


def agrees(p_onnx: torch.Tensor, p_torch: torch.Tensor, label: str) -> bool:
    """True when the member's ONNX probabilities are PyTorch's to TOLERANCE; else a warning."""
    diff = float((p_onnx - p_torch).abs().max()) if p_onnx.numel() else 0.0
    if diff <= TOLERANCE:
        return True
    warn(f"{label}: ONNX Runtime differs from PyTorch by {diff:.1e} (more than {TOLERANCE:g}); "
         "it runs on PyTorch")  # fmt: skip
    return False
