"""Named sets of grid options: lsd's defaults, the paper's code, and a grid for a first try.

A preset fills only the options the user did not set, so `--preset paper --epochs 10` is the
paper's protocol with ten epochs. What each preset sets and why is in docs/train.md:

- `lsd`: TrainOptions' defaults, the paper's text (an epoch of 1000 iterations at batch 4, at
  most 500 epochs, a constant learning rate, the landslide pixel anywhere in the crop).
- `paper`: the paper's code where its text is vague (github franchg/global-landslide-mapping):
  samples_per_epoch 1000 at batch 4 = 250 iterations (configs/data/default.yaml), at most 1000
  epochs (configs/trainer/default.yaml), ReduceLROnPlateau factor 0.1, patience 10 on the
  validation loss (configs/model/default.yaml, landslide_module.py), early stopping on
  validation F1 with patience 50 (configs/callbacks/default.yaml), the crop centred on a
  landslide pixel and shifted to fit (AnchorCrop in src/data/landslides.py), seed 42
  (configs/experiment/*.yaml), fp32 arithmetic (configs/trainer/default.yaml leaves Lightning's
  default precision 32, where lsd's `auto` would train in bf16 on CUDA). The split comes from
  the events' roles (`lsd import paper`).
- `quick`: two small models on short epochs, so the README's first command trains, ensembles
  and maps on the paper's data in minutes on a laptop CPU; a first look, not a result.
"""

from __future__ import annotations

from typing import Any

from lsd.errors import InvalidValue

PRESETS: dict[str, dict[str, Any]] = {
    "lsd": {},
    "paper": {
        "iters_per_epoch": 250,
        "batch_size": 4,
        "crop": 256,
        "epochs": 1000,
        "patience": 50,
        "lr_schedule": "plateau",
        "crop_anchor": "centre",
        "seed": 42,
        "precision": "fp32",
    },
    "quick": {
        "archs": ("Unet", "Linknet"),
        "losses": ("Dice",),
        "lrs": (0.001,),
        "encoder": "resnet18",
        "crop": 128,
        "batch_size": 4,
        "iters_per_epoch": 24,
        "epochs": 12,
        "patience": 4,
        "crop_anchor": "centre",
    },
}
DEFAULT_PRESET = "lsd"


def preset_options(name: str) -> dict[str, Any]:
    """The options a preset sets (a copy), or one line naming the presets there are."""
    if name not in PRESETS:
        raise InvalidValue(
            f"unknown preset '{name}'; choose from {', '.join(PRESETS)}", field="preset"
        )
    return dict(PRESETS[name])
