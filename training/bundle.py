"""Model bundles with torch: save a trained model's weights, and build models back from bundles.

The bundle format itself (bundle.json, checksums, ensembles) is the ground floor's
(`lsd.bundles`); this module adds only what needs torch. A damaged bundle is reported by file
name rather than with a torch traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from lsd.bundles import WEIGHTS_FILE, BundleMeta, ModelFiles, check_bundle, write_bundle
from lsd.errors import InvalidFile
from lsd.training.models import build_model

Member = tuple[nn.Module, BundleMeta]


def save_bundle(folder: Path | str, model: nn.Module, meta: BundleMeta) -> None:
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    write_bundle(folder, meta, lambda path: torch.save(state, path))


def load_bundle(
    folder: Path | str, device: str | torch.device = "cpu", *, checked: BundleMeta | None = None
) -> Member:
    """Rebuild the model in eval mode; any damage is an error naming the file.

    `checked` is the result of an earlier check_bundle on the same folder, to skip hashing again.
    """
    folder = Path(folder)
    meta = checked if checked is not None else check_bundle(folder)
    weights = folder / WEIGHTS_FILE
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a bad file
        raise InvalidFile(f"{weights}: not a readable model file ({exc})") from None
    model = build_model(meta.arch, len(meta.layers), meta.encoder)
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise InvalidFile(f"{weights}: weights do not fit {meta.arch}/{meta.encoder}") from None
    return model.to(device).eval(), meta


def load_members(
    files: ModelFiles, indices: Sequence[int], device: str | torch.device = "cpu"
) -> list[Member]:
    """The members at `indices` of a checked ensemble (or bundle), in eval mode on `device`."""
    return [load_bundle(files.folders[i], device, checked=files.metas[i]) for i in indices]
