"""A tiny but real model grid on the generated events (tests/data/events, the 14 layers of
Landslide4Sense), for the ensemble, evaluate, predict, checks and fault tests.

`tiny_runs` trains four small members (two architectures, two learning rates) for a few Adam
steps each and lays them out through lsd.runs, exactly as `lsd train` does (leaderboard.csv,
split.json, grid.json, runs/<run_id>/bundle). The members are weak, but they are real models on
real rasters, which is what the ensemble and evaluation code has to handle. Session-scoped:
train once, share read-only; tests that damage files copy the folder first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

# (run_id, arch, lr, seed): two architectures x two learning rates, small mobile encoder.
MEMBERS = (
    ("FPN-BCE-lr0.01", "FPN", 0.01, 1),
    ("FPN-BCE-lr0.001", "FPN", 0.001, 2),
    ("Linknet-BCE-lr0.01", "Linknet", 0.01, 3),
    ("Linknet-BCE-lr0.001", "Linknet", 0.001, 4),
)
ENCODER = "mobilenet_v2"
STEPS = 20
CROP = 64


@dataclass(frozen=True)
class TinyRuns:
    runs: Path
    data: Path
    split: dict[str, list[str]]
    layers: tuple[str, ...]


def _pick_split(labels: dict[str, np.ndarray]) -> dict[str, list[str]]:
    """Deterministic: alternate the events with landslides between val and test (3 each)."""
    with_slides = sorted((k for k, v in labels.items() if (v == 1).any()), key=lambda k: k)
    val, test = with_slides[0:6:2], with_slides[1:6:2]
    train = sorted(k for k in labels if k not in val and k not in test)
    return {"train": train, "val": val, "test": test}


def _val_f1(model, mean, std, images, labels) -> float:
    """Validation F1 computed by hand (not through training.inference) so tests can compare."""
    import torch

    from lsd.training.metrics import Counts, confusion
    from lsd.training.models import forward_whole

    total = Counts()
    with torch.inference_mode():
        for img, lab in zip(images, labels, strict=True):
            x = torch.nan_to_num((torch.from_numpy(img) - mean) / std, nan=0.0)[None]
            prob = torch.sigmoid(forward_whole(model, x))[0, 0].numpy()
            total = total + confusion(prob >= 0.5, lab)
    return total.f1


def build_tiny_runs(data: Path, runs: Path) -> TinyRuns:
    import torch

    from lsd.bundles import BundleMeta
    from lsd.events import list_events
    from lsd.rasters import read_label, read_stack
    from lsd.runs import (
        BUNDLE_DIR,
        run_folder,
        write_done,
        write_grid_record,
        write_leaderboard,
        write_split,
    )
    from lsd.training.bundle import save_bundle
    from lsd.training.models import build_model

    torch.set_num_threads(1)
    events = {e.event_id: e for e in list_events(data)}
    layers = next(iter(events.values())).layers
    labels = {k: read_label(e.label)[0] for k, e in events.items()}
    split = _pick_split(labels)
    stacks = {k: read_stack(events[k].stack, layers)[0] for k in split["train"] + split["val"]}
    train = np.stack([stacks[k] for k in split["train"]])
    mean = np.nanmean(train, axis=(0, 2, 3)).astype(np.float32)
    std = np.nanstd(train, axis=(0, 2, 3)).astype(np.float32)
    t_mean = torch.from_numpy(mean).view(-1, 1, 1)
    t_std = torch.from_numpy(np.where(std > 0, std, 1)).view(-1, 1, 1)
    x_all = torch.nan_to_num((torch.from_numpy(train) - t_mean) / t_std, nan=0.0)
    y_all = torch.from_numpy(np.stack([labels[k] for k in split["train"]]) == 1).float()

    rows = []
    for run_id, arch, lr, seed in MEMBERS:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        model = build_model(arch, len(layers), ENCODER)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(5.0))
        model.train()
        for _ in range(STEPS):
            idx = rng.integers(0, len(x_all), 4)
            r, c = rng.integers(0, x_all.shape[-1] - CROP + 1, 2)
            xb = x_all[idx, :, r : r + CROP, c : c + CROP]
            yb = y_all[idx, None, r : r + CROP, c : c + CROP]
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        f1 = _val_f1(
            model,
            t_mean,
            t_std,
            [stacks[k] for k in split["val"]],
            [labels[k] for k in split["val"]],
        )
        meta = BundleMeta(
            arch=arch,
            encoder=ENCODER,
            loss="BCE",
            lr=lr,
            layers=list(layers),
            mean=mean.tolist(),
            std=std.tolist(),
            scores={"val_f1": f1},
        )
        save_bundle(run_folder(runs, run_id) / BUNDLE_DIR, model, meta)
        rows.append((run_id, arch, lr, f1))

    # the RUNS records through the one module that owns them, as the grid writes them
    for run_id, arch, lr, f1 in rows:
        done = {
            "run_id": run_id,
            "arch": arch,
            "encoder": ENCODER,
            "loss": "BCE",
            "lr": lr,
            "val_f1": f1,
            "best_epoch": 1,
            "epochs_run": 1,
            "seconds": 0,
            "bundle": "bundle",
        }
        write_done(run_folder(runs, run_id), done)  # fmt: skip
    write_leaderboard(runs)
    write_split(runs, split, seed=0)
    write_grid_record(
        runs,
        {
            "setting": "l4s",
            "layers": list(layers),
            "mean": mean.tolist(),
            "std": std.tolist(),
            "options": {"data": str(data)},
        },
    )
    return TinyRuns(runs=runs, data=data, split=split, layers=tuple(layers))


@pytest.fixture(scope="session")
def tiny_runs(gen_events: Path, tmp_path_factory: pytest.TempPathFactory) -> TinyRuns:
    """Trained once per session on the generated events; shared read-only."""
    return build_tiny_runs(gen_events, tmp_path_factory.mktemp("tiny-runs"))
