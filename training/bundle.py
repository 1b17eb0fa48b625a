"""Model bundles: everything `lsd predict` needs to use one trained model on a new stack.

A bundle is a folder with `model.pt` (the state dict) and `bundle.json` (architecture, encoder,
loss, learning rate, layer names in order, normalisation statistics, validation scores). It is
written to a temporary folder and renamed, so a bundle folder that exists is complete; a damaged
one is reported by file name rather than with a torch traceback.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lsd import __version__
from lsd.contract import atomic_path, read_json, write_json
from lsd.errors import UserError
from lsd.training.models import build_model

BUNDLE_FORMAT = "lsd-model/1"
WEIGHTS_FILE = "model.pt"
META_FILE = "bundle.json"


@dataclass
class BundleMeta:
    arch: str
    encoder: str
    loss: str
    lr: float
    layers: list[str]
    mean: list[float]
    std: list[float]
    scores: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    format: str = BUNDLE_FORMAT
    lsd_version: str = __version__
    weights_sha256: str = ""


def file_sha256(path: Path) -> str:
    """Checksums catch bundles damaged or half-copied after they were written."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_bundle(folder: Path | str, model: nn.Module, meta: BundleMeta) -> None:
    folder = Path(folder)
    with atomic_path(folder, directory=True) as tmp:
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        torch.save(state, tmp / WEIGHTS_FILE)
        meta.weights_sha256 = file_sha256(tmp / WEIGHTS_FILE)
        write_json(tmp / META_FILE, asdict(meta))


def load_meta(folder: Path | str) -> BundleMeta:
    folder = Path(folder)
    raw = read_json(folder / META_FILE)
    if not isinstance(raw, dict) or raw.get("format") != BUNDLE_FORMAT:
        raise UserError(f"{folder / META_FILE}: not an lsd model bundle ({BUNDLE_FORMAT})")
    try:
        meta = BundleMeta(**raw)
    except TypeError as exc:
        raise UserError(f"{folder / META_FILE}: malformed bundle description ({exc})") from None
    if not (len(meta.layers) == len(meta.mean) == len(meta.std)) or not meta.layers:
        raise UserError(f"{folder / META_FILE}: layers, mean and std do not line up")
    return meta


def check_bundle(folder: Path | str) -> BundleMeta:
    """Description, weights present, checksum right: what load_bundle checks short of building
    the model, so a long prediction can vet every member before it starts."""
    folder = Path(folder)
    meta = load_meta(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.exists():
        raise UserError(f"{weights}: model weights missing")
    if meta.weights_sha256 and file_sha256(weights) != meta.weights_sha256:
        raise UserError(f"{weights}: weights do not match their checksum (damaged or partial copy)")
    return meta


def load_bundle(
    folder: Path | str, device: str | torch.device = "cpu", *, checked: BundleMeta | None = None
) -> tuple[nn.Module, BundleMeta]:
    """Rebuild the model in eval mode; any damage is a UserError naming the file.

    `checked` is the result of an earlier check_bundle on the same folder, to skip hashing again.
    """
    folder = Path(folder)
    meta = checked if checked is not None else check_bundle(folder)
    weights = folder / WEIGHTS_FILE
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a bad file
        raise UserError(f"{weights}: not a readable model file ({exc})") from None
    model = build_model(meta.arch, len(meta.layers), meta.encoder)
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise UserError(f"{weights}: weights do not fit {meta.arch}/{meta.encoder}") from None
    return model.to(device).eval(), meta
