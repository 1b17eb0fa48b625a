"""lsd against Landslide4Sense's own baseline code, on the real patches, where that code runs.

The baseline (github iarai/Landslide4Sense-2022; give its checkout with --reference) trains on
CUDA only, but its loader and its scoring run anywhere. This script runs them and lsd side by side
on the same patches and prints where they agree:

1. normalisation: every patch through the baseline's `LandslideDataSet` (set='labeled') and
   through `lsd import landslide4sense` + the normalisation `lsd train --preset landslide4sense`
   applies; the arrays must be equal to the bit, the labels equal;
2. sampling: the length of the baseline's repeated list for 5000 x 32 samples, and how often each
   patch appears in it, beside the passes lsd draws (`event_order shuffled`);
3. scoring: a model (lsd's Unet, random weights; seeded) predicts every patch; the baseline's
   `eval_image` counts, pooled and turned into precision, recall and F1 with its epsilon, must
   equal `lsd evaluate --protocol landslide4sense`'s counts and scores for the same model.

    python benchmarks/compare_l4s_reference.py --reference /path/to/Landslide4Sense-2022
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
from collections import Counter
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from lsd import landslide4sense as l4s
from lsd.events import list_events
from lsd.pipeline.sources import import_landslide4sense
from lsd.rasters import read_label, read_stack
from lsd.training.normalise import normalise_array_

REPO = Path(__file__).resolve().parents[1]


def _load(path: Path) -> ModuleType:
    """One module of the baseline's checkout, by its file (both it needs import only numpy,
    torch and h5py), without touching the import path."""
    spec = importlib.util.spec_from_file_location(f"l4s_reference_{path.stem}", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise SystemExit(f"{path}: not found; give a checkout of iarai/Landslide4Sense-2022")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, required=True, help="Landslide4Sense-2022 checkout")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared/data/landslide4sense-21")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/l4s_reference.json")
    args = ap.parse_args()
    LandslideDataSet = _load(args.reference / "dataset" / "landslide_dataset.py").LandslideDataSet
    eval_image = _load(args.reference / "utils" / "tools.py").eval_image

    from lsd.training.models import build_model
    from lsd.training.scoring import member_probability, score

    names = sorted(p.name for p in (args.data / "img").glob("image_*.h5"))
    report: dict = {"patches": len(names)}
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "list.txt"
        listing.write_text("\n".join(f"img/{n}" for n in names))
        theirs = LandslideDataSet(f"{args.data}/", str(listing), set="labeled")
        data = Path(tmp) / "events"
        import_landslide4sense(args.data, data, progress=False)
        events = {e.event_id: e for e in list_events(data)}

        equal_images = equal_labels = 0
        torch.manual_seed(0)
        model = build_model("Unet", len(l4s.LAYERS), "resnet34").eval()
        meta = type("Meta", (), {"mean": l4s.MEAN, "std": l4s.STD})()
        tp_fp_fn = np.zeros(3)
        ours_total = None
        for i, name in enumerate(names):
            image, label, _, _ = theirs[i]
            ev = events[f"l4s_{Path(name).stem}"]
            raw = read_stack(ev.stack)[0]
            ours = normalise_array_(raw.copy(), l4s.MEAN, l4s.STD)
            ours_label = read_label(ev.label)[0]
            equal_images += int(np.array_equal(image, ours))
            equal_labels += int(np.array_equal(label, ours_label))
            prob = member_probability(model, meta, raw)
            pred = (prob > l4s.THRESHOLD).astype(np.int64)
            tp, fp, _, fn, _ = eval_image(pred.reshape(-1), label.reshape(-1), 2)
            tp_fp_fn += [tp[1, 0], fp[1, 0], fn[1, 0]]
            c = score(prob, ours_label)
            ours_total = c if ours_total is None else ours_total + c
        report["normalisation"] = {"equal_images": equal_images, "equal_labels": equal_labels}
        eps = 1e-14
        tp, fp, fn = tp_fp_fn
        p, r = tp / (tp + fp + eps), tp / (tp + fn + eps)
        their_scores = [p, r, 2.0 * p * r / (p + r + eps)]
        assert ours_total is not None
        report["scoring"] = {
            "baseline_counts": [int(tp), int(fp), int(fn)],
            "lsd_counts": [ours_total.tp, ours_total.fp, ours_total.fn],
            "baseline_scores": their_scores,
            "lsd_scores": list(l4s.scores(ours_total.tp, ours_total.fp, ours_total.fn)),
        }
        repeated = LandslideDataSet(f"{args.data}/", str(listing), max_iters=5000 * 32)
        per_patch = Counter(repeated.img_ids[:160000])
        from lsd.training.crops import CropSampler
        from lsd.training.data import load_events

        arrays = load_events(list(events.values()), l4s.LAYERS, l4s.MEAN, l4s.STD)
        sampler = CropSampler(arrays, crop=128, batch_size=32, augment=False, order="shuffled")
        drawn = Counter(int(e) for _ in range(5000) for e in sampler._draw()[0])
        report["sampling"] = {
            "list_length": len(repeated.img_ids),
            "used": 160000,
            "appearances_min_max": [min(per_patch.values()), max(per_patch.values())],
            "lsd_appearances_min_max": [min(drawn.values()), max(drawn.values())],
        }
    n = len(names)
    print(f"{n} patches")
    print(f"normalised images equal to the bit: {equal_images}/{n}; labels equal: "
          f"{equal_labels}/{n}")  # fmt: skip
    s = report["scoring"]
    print(f"pooled TP, FP, FN: baseline {s['baseline_counts']}, lsd {s['lsd_counts']}")
    print("P, R, F1: baseline " + ", ".join(f"{x:.10f}" for x in s["baseline_scores"])
          + "; lsd " + ", ".join(f"{x:.10f}" for x in s["lsd_scores"]))  # fmt: skip
    m = report["sampling"]
    lo, hi = m["appearances_min_max"]
    print(f"baseline list for 5000 x 32 samples: {m['list_length']} entries, each patch "
          f"{lo}-{hi} times in the first 160000; lsd's shuffled passes: "
          f"{'-'.join(map(str, m['lsd_appearances_min_max']))} times")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
