"""Model bundles and ensemble folders: what `lsd predict` needs to use trained models anywhere.

    <bundle>/model.pt        the state dict (written and loaded by lsd.training.bundle, with torch)
    <bundle>/bundle.json     architecture, encoder, loss, learning rate, layer names in order,
                             normalisation statistics, validation scores, weights checksum
    <ensemble>/manifest.json K, threshold, layers, members (name, path, checksum), how K was chosen
    <ensemble>/members/<run_id>/   a copy of each member bundle

Everything here is plain files and JSON, no torch: the checks (format, checksums, layers that
line up) run before any model is built, so a long prediction or evaluation refuses a damaged
folder in its first second, naming the file.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lsd import __version__
from lsd.errors import InputNotFound, InvalidFile, InvalidValue
from lsd.files import atomic_path, file_sha256, read_json, write_json
from lsd.outputs import mark

BUNDLE_FORMAT = "lsd-model/1"
WEIGHTS_FILE = "model.pt"
META_FILE = "bundle.json"
ENSEMBLE_FORMAT = "lsd-ensemble/1"
MANIFEST_FILE = "manifest.json"
MEMBERS_DIR = "members"
# A pixel is landslide where the (mean) probability is strictly above the threshold
# (`is_landslide`): the one rule for validation during training, ensemble scoring, evaluation and
# maps. Strictly above, because the paper's code scored with torchmetrics' binary F1, which counts
# `preds > threshold` as positive; a probability of exactly 0.5 is undecided and stays background.
DEFAULT_THRESHOLD = 0.5


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


def is_landslide(prob: Any, threshold: float = DEFAULT_THRESHOLD) -> Any:
    """The landslide mask of probabilities (numpy arrays or torch tensors): prob > threshold.

    NaN (no data) is never landslide."""
    return prob > threshold


def check_threshold(threshold: float) -> float:
    if not 0.0 < threshold < 1.0:
        raise InvalidValue(
            f"threshold {threshold} must be between 0 and 1 (exclusive)", field="threshold"
        )
    return float(threshold)


# --------------------------------------------------------------------------- bundles


def write_bundle(
    folder: Path | str, meta: BundleMeta, write_weights: Callable[[Path], None]
) -> None:
    """Write weights (by the caller's function) and bundle.json with their checksum, atomically."""
    folder = Path(folder)
    with atomic_path(folder, directory=True) as tmp:
        write_weights(tmp / WEIGHTS_FILE)
        meta.weights_sha256 = file_sha256(tmp / WEIGHTS_FILE)
        write_json(tmp / META_FILE, asdict(meta))


def load_meta(folder: Path | str) -> BundleMeta:
    folder = Path(folder)
    raw = read_json(folder / META_FILE)
    if not isinstance(raw, dict) or raw.get("format") != BUNDLE_FORMAT:
        raise InvalidFile(f"{folder / META_FILE}: not an lsd model bundle ({BUNDLE_FORMAT})")
    try:
        meta = BundleMeta(**raw)
    except TypeError as exc:
        raise InvalidFile(f"{folder / META_FILE}: malformed bundle description ({exc})") from None
    if not (len(meta.layers) == len(meta.mean) == len(meta.std)) or not meta.layers:
        raise InvalidFile(f"{folder / META_FILE}: layers, mean and std do not line up")
    bad = [n for n, m, s in zip(meta.layers, meta.mean, meta.std, strict=True)
           if not (isinstance(m, int | float) and isinstance(s, int | float)
                   and math.isfinite(m) and math.isfinite(s))]  # fmt: skip
    if bad:
        raise InvalidFile(
            f"{folder / META_FILE}: normalisation statistics of layer(s) {', '.join(bad[:5])} are "
            "not finite numbers (training data with inf values, read by an older lsd); retrain"
        )
    return meta


def training_pixel_m(meta: BundleMeta) -> float | None:
    """Pixel size in metres of the events the model was trained on; None when not recorded
    (older bundles, or training events without georeferencing)."""
    value = meta.extra.get("pixel_m")
    return float(value) if isinstance(value, int | float) and value > 0 else None


def check_bundle(folder: Path | str) -> BundleMeta:
    """Description, weights present, checksum right: everything short of building the model."""
    folder = Path(folder)
    meta = load_meta(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.exists():
        raise InputNotFound(f"{weights}: model weights missing")
    if meta.weights_sha256 and file_sha256(weights) != meta.weights_sha256:
        raise InvalidFile(
            f"{weights}: weights do not match their checksum (damaged or partial copy)"
        )
    return meta


def common_layers(metas: Sequence[tuple[str, BundleMeta]]) -> tuple[str, ...]:
    """Members must read the same layers in the same order, since they share one input image."""
    first_name, first = metas[0]
    for name, meta in metas[1:]:
        if list(meta.layers) != list(first.layers):
            raise InvalidFile(
                f"{name}: uses layers {','.join(meta.layers)} but {first_name} uses "
                f"{','.join(first.layers)}; an ensemble needs one layer list"
            )
    return tuple(first.layers)


# --------------------------------------------------------------------------- ensembles


@dataclass(frozen=True)
class Member:
    """A bundle chosen for an ensemble: its name, its folder and its validation F1."""

    name: str
    bundle: Path
    val_f1: float


def write_ensemble(
    out: Path | str,
    members: Sequence[Member],
    *,
    threshold: float,
    layers: Sequence[str],
    k_selection: dict[str, Any],
    source: Path | str | None = None,
) -> Path:
    """Copy the chosen bundles and the manifest into `out`, all or nothing.

    Each bundle's weights are checked against their checksum before the copy: the manifest
    records a fresh checksum of each copy, so a damaged member copied unchecked would look sound.
    """
    out = Path(out)
    listed = []
    for member in members:
        check_bundle(member.bundle)
    with atomic_path(out, directory=True) as tmp:
        (tmp / MEMBERS_DIR).mkdir()
        for member in members:
            dest = tmp / MEMBERS_DIR / member.name
            shutil.copytree(member.bundle, dest)
            listed.append(
                {
                    "name": member.name,
                    "path": f"{MEMBERS_DIR}/{member.name}",
                    "val_f1": member.val_f1,
                    "bundle_sha256": file_sha256(dest / META_FILE),
                }
            )
        manifest = {
            "format": ENSEMBLE_FORMAT,
            "k": len(members),
            "threshold": threshold,
            "layers": list(layers),
            "members": listed,
            "k_selection": k_selection,
            "source": str(source) if source is not None else None,
            "lsd_version": __version__,
        }
        write_json(tmp / MANIFEST_FILE, manifest)
        mark(tmp, "ensemble")
    return out


def read_manifest(folder: Path | str) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not folder.is_dir():
        raise InputNotFound(f"{folder}: ensemble folder not found")
    if not path.exists():
        raise InputNotFound(f"{path}: missing; not an lsd ensemble folder (or an incomplete copy)")
    raw = read_json(path)
    if not isinstance(raw, dict) or raw.get("format") != ENSEMBLE_FORMAT:
        raise InvalidFile(f"{path}: not an lsd ensemble manifest ({ENSEMBLE_FORMAT})")
    members = raw.get("members")
    if not isinstance(members, list) or not members:
        raise InvalidFile(f"{path}: names no members")
    for m in members:
        rel = m.get("path") if isinstance(m, dict) else None
        if not isinstance(rel, str) or Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise InvalidFile(f"{path}: member path {rel!r} must be a folder inside the ensemble")
    if raw.get("k") != len(members):
        raise InvalidFile(f"{path}: k is {raw.get('k')} but {len(members)} members are listed")
    thr = raw.get("threshold", DEFAULT_THRESHOLD)
    if not isinstance(thr, int | float) or not 0.0 < thr < 1.0:
        raise InvalidFile(f"{path}: threshold {thr!r} must be between 0 and 1")
    return raw


def member_folders(folder: Path | str, manifest: dict[str, Any]) -> list[Path]:
    """Member bundle folders, checked against the manifest's record of each bundle.json."""
    folder = Path(folder)
    out = []
    for m in manifest["members"]:
        member = folder / m["path"]
        meta = member / META_FILE
        if not meta.exists():
            raise InputNotFound(f"{meta}: member '{m.get('name')}' is missing from the ensemble")
        want = m.get("bundle_sha256")
        if want and file_sha256(meta) != want:
            raise InvalidFile(f"{meta}: does not match the manifest's checksum (damaged or edited)")
        if not (member / WEIGHTS_FILE).exists():
            raise InputNotFound(f"{member / WEIGHTS_FILE}: model weights missing")
        out.append(member)
    return out


@dataclass
class ModelFiles:
    """An ensemble or a single bundle, checked but not loaded: members come into memory only as
    a caller needs them (a CPU prediction holds as few at once as it must)."""

    folders: list[Path]
    metas: list[BundleMeta]  # in rank order
    layers: tuple[str, ...]
    threshold: float
    path: Path
    manifest: dict[str, Any]

    def weight_bytes(self) -> list[int]:
        return [(f / WEIGHTS_FILE).stat().st_size for f in self.folders]


def open_ensemble(folder: Path | str) -> ModelFiles:
    """Manifest, member descriptions and weight checksums checked; errors name the file."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    folders = member_folders(folder, manifest)
    metas = [check_bundle(p) for p in folders]
    layers = common_layers([(str(p), meta) for p, meta in zip(folders, metas, strict=True)])
    if list(manifest.get("layers", layers)) != list(layers):
        raise InvalidFile(f"{folder / MANIFEST_FILE}: layers differ from its members' layers")
    threshold = float(manifest.get("threshold", DEFAULT_THRESHOLD))
    return ModelFiles(folders, metas, layers, threshold, folder, manifest)


def open_models(folder: Path | str) -> ModelFiles:
    """An ensemble folder (manifest.json) or a single model bundle (bundle.json), fully checked
    (checksums included) before any work starts; errors name the file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputNotFound(f"{folder}: model folder not found")
    if (folder / MANIFEST_FILE).exists() or not (folder / META_FILE).exists():
        return open_ensemble(folder)
    meta = check_bundle(folder)
    manifest = {"single_bundle": str(folder), "arch": meta.arch, "encoder": meta.encoder}
    return ModelFiles([folder], [meta], tuple(meta.layers), DEFAULT_THRESHOLD, folder, manifest)
