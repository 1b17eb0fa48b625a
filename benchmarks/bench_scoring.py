"""Benchmark (accuracy, not speed): does a model get the same scores in training validation,
ensemble scoring and maps?

Issue 10 found that training validated on whole images while ensemble scoring tiled them, so on a
700 x 900 stack the probabilities differed by up to 0.72 and 546 mask pixels flipped. This script
builds a real 700 x 900 event from the Landslide4Sense patches in ../shared/data (a 6 x 8 mosaic
of 128 px patches, cropped), trains one small model for a few Adam steps, and compares, pixel by
pixel:

- `whole`: one pass over the whole image (how training validated before),
- `tiled`: `predict_array` with the default tiles (how ensembles were scored, how maps are made),
- `validation` and `ensemble`: the passes training validation and ensemble scoring use now
  (both lsd.training.scoring), on the same model and image.

    python benchmarks/bench_scoring.py [--steps 40] [--size 700 900]

Prints the figures and writes benchmarks/results/scoring.json (or --json PATH).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "landslide4sense-21"


def mosaic(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A (14, H, W) image and (H, W) label tiled from the real patches (wrapping around)."""
    import h5py

    files = sorted((DATA / "img").glob("image_*.h5"))
    rows, cols = -(-height // 128), -(-width // 128)
    image = np.zeros((14, rows * 128, cols * 128), np.float32)
    label = np.zeros((rows * 128, cols * 128), np.uint8)
    for k in range(rows * cols):
        f = files[k % len(files)]
        r, c = divmod(k, cols)
        with h5py.File(f) as h:
            image[:, r * 128 : (r + 1) * 128, c * 128 : (c + 1) * 128] = np.asarray(
                h["img"], np.float32
            ).transpose(2, 0, 1)
        with h5py.File(DATA / "mask" / f.name.replace("image", "mask")) as h:
            label[r * 128 : (r + 1) * 128, c * 128 : (c + 1) * 128] = np.asarray(h["mask"])
    return image[:, :height, :width], label[:height, :width]


def train(image: np.ndarray, label: np.ndarray, steps: int):
    import torch

    from lsd.bundles import BundleMeta
    from lsd.training.models import build_model
    from lsd.training.normalise import normalise_array_

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    mean = [float(x) for x in np.nanmean(image, axis=(1, 2))]
    std = [float(x) for x in np.nanstd(image, axis=(1, 2))]
    x = torch.from_numpy(normalise_array_(image.copy(), mean, std))
    y = torch.from_numpy((label == 1).astype(np.float32))
    model = build_model("Unet", 14, "resnet18")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(5.0))
    model.train()
    for _ in range(steps):
        r = rng.integers(0, image.shape[1] - 128, 4)
        c = rng.integers(0, image.shape[2] - 128, 4)
        xb = torch.stack([x[:, a : a + 128, b : b + 128] for a, b in zip(r, c, strict=True)])
        yb = torch.stack([y[a : a + 128, b : b + 128] for a, b in zip(r, c, strict=True)])
        loss = loss_fn(model(xb)[:, 0], yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model, BundleMeta("Unet", "resnet18", "BCE", 1e-3, [f"L{i}" for i in range(14)],
                             mean, std)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, nargs=2, default=(700, 900), metavar=("H", "W"))
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "scoring.json")
    args = ap.parse_args()

    import torch

    from lsd.bundles import is_landslide
    from lsd.training.inference import predict_array
    from lsd.training.models import forward_whole
    from lsd.training.normalise import normalise_array_
    from lsd.training.precision import Precision
    from lsd.training.scoring import event_probability, member_probability, no_data

    torch.set_num_threads(max(1, torch.get_num_threads()))
    image, label = mosaic(*args.size)
    model, meta = train(image, label, args.steps)
    normalised = torch.from_numpy(normalise_array_(image.copy(), meta.mean, meta.std))
    with torch.inference_mode():
        whole = torch.sigmoid(forward_whole(model, normalised[None]))[0, 0].numpy()
    tiled = predict_array([(model, meta)], image)[0]
    validation = event_probability(
        model, normalised, torch.from_numpy(no_data(image)), precision=Precision.for_device(
            torch.device("cpu"))
    ).numpy()  # fmt: skip
    ensemble = member_probability(model, meta, image)

    def compare(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
        return {
            "max_abs_prob_diff": float(np.nanmax(np.abs(a - b))),
            "mask_pixels_flipped": int((is_landslide(a) != is_landslide(b)).sum()),
        }

    result = {
        "size": list(args.size),
        "train_steps": args.steps,
        "before_whole_vs_tiled": compare(whole, tiled),
        "now_validation_vs_ensemble": compare(validation, ensemble),
        "now_validation_vs_map": compare(validation, tiled),
        "host": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "threads": torch.get_num_threads(),
        },  # fmt: skip
    }
    for key in ("before_whole_vs_tiled", "now_validation_vs_ensemble", "now_validation_vs_map"):
        r = result[key]
        print(f"{key:28s} max |dp| {r['max_abs_prob_diff']:.3g}, "
              f"mask pixels flipped {r['mask_pixels_flipped']}")  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
