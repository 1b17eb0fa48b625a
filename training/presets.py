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
- `landslide4sense`: the benchmark's baseline (github iarai/Landslide4Sense-2022, Train.py and
  dataset/landslide_dataset.py), each value with its source line below; the grid is the usual
  one over architectures (a U-Net with a ResNet encoder stands for Table I's ResU-Net), with the
  one loss and learning rate the baseline trains with. The split comes from the patches' roles
  (`lsd import landslide4sense`), and with `--setting all` the stacks' 14 bands are the layers.
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
    "landslide4sense": {
        "losses": ("BCE",),  # Train.py 100: CrossEntropyLoss over 2 classes = BCE on one logit
        "lrs": (0.001,),  # Train.py 48: --learning_rate 1e-3, Adam (93-94)
        "weight_decay": 5e-4,  # Train.py 54: --weight_decay 5e-4, passed to Adam (94)
        "batch_size": 32,  # Train.py 44: --batch_size 32
        "iters_per_epoch": 500,  # Train.py 135-136: evaluation every 500 iterations
        "epochs": 10,  # Train.py 50-53, 103: 5000 steps (num_steps_stop) = 10 x 500
        "patience": 10,  # no early stop: the baseline trains all 5000 steps
        "crop": 128,  # Train.py 40: --input_size 128,128, the whole patch
        "augment": False,  # landslide_dataset.py 42-61: patches as read, no rotation or flip
        "event_order": "shuffled",  # Train.py 83-85: DataLoader(shuffle=True) over the list
        "normalisation": "landslide4sense",  # landslide_dataset.py 10-11, 57-59: fixed stats
        "precision": "fp32",  # Train.py trains in fp32 (no autocast); lsd's auto is bf16 on CUDA
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
