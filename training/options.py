"""The values a training run and a prediction are made of, without torch.

The command line offers these choices and defaults (`lsd --help` must not load torch, so it
cannot read them from the modules that train and predict), pipeline code types its fields with
these classes, and the torch modules of this package import them from here: one list of each, so
the CLI's choices and the library's checks cannot drift apart. The named sets of these options
(`--preset`) are in lsd.training.presets, also torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

from lsd.errors import InvalidValue

# The grid's axes: the paper's nine segmentation-models-pytorch architectures (lsd.training.models
# builds them; "unet++" and "deeplabv3+" are accepted as aliases) and five losses
# (lsd.training.losses), and the learning rates tried when none are given.
ARCHITECTURES: tuple[str, ...] = (
    "Unet", "UnetPlusPlus", "MAnet", "Linknet", "FPN", "PSPNet", "PAN", "DeepLabV3",
    "DeepLabV3Plus",
)  # fmt: skip
LOSSES: tuple[str, ...] = ("BCE", "Dice", "Focal", "Jaccard", "Lovasz")
DEFAULT_LRS: tuple[float, ...] = (0.01, 0.001)

# "plateau": ReduceLROnPlateau on the validation loss, as the paper's code (lsd.training.loop);
# "none": a constant learning rate
LR_SCHEDULES = ("none", "plateau")
# where the anchoring landslide pixel sits in a training crop (lsd.training.data.CropSampler)
CROP_ANCHORS = ("random", "centre")
# how crops pick their event: uniformly at random, or every event once per pass, shuffled
EVENT_ORDERS = ("random", "shuffled")
# where the normalisation statistics come from: the training events, or a benchmark's fixed
# per-layer values (lsd.landslide4sense: its baseline loader's mean and std)
NORMALISATIONS = ("training", "landslide4sense")
# how a forward pass runs (lsd.training.precision says what each mode does on which device)
PRECISIONS = ("auto", "fp32", "bf16")
# what runs the members at prediction: PyTorch, or ONNX Runtime on the CPU
# (lsd.training.onnx_runtime)
RUNTIMES = ("torch", "onnx")
# where the runs of a grid and the blocks of a map run: this machine, or a Ray cluster; the
# registry of their factories is lsd.training.executors.EXECUTORS, in this order
EXECUTORS = ("inprocess", "ray")

MIN_TILE = 32


def check_precision(mode: str) -> str:
    if mode not in PRECISIONS:
        raise InvalidValue(
            f"precision '{mode}' is not one of {', '.join(PRECISIONS)}", field="precision"
        )
    return mode


@dataclass(frozen=True)
class TrainOptions:
    """How every run of a grid trains; the defaults are the paper's protocol (docs/train.md)."""

    encoder: str = "resnet34"
    encoder_weights: str | None = None
    crop: int = 256
    batch_size: int = 4
    iters_per_epoch: int = 1000
    epochs: int = 500
    patience: int = 50
    seed: int = 0
    # "plateau": ReduceLROnPlateau on the validation loss (factor 0.1, patience 10), as the
    # paper's code; "none": a constant learning rate (lsd's default, the paper's text)
    lr_schedule: str = "none"
    # "centre": the landslide pixel at the crop's centre, shifted to fit (the paper's
    # AnchorCrop); "random": at a random position inside the crop (lsd's default)
    crop_anchor: str = "random"
    # Adam's L2 penalty (torch's weight_decay); 0 unless a preset follows a benchmark's optimiser
    weight_decay: float = 0.0
    # random 90-degree rotations and flips of every crop; off where a benchmark trained without
    augment: bool = True
    # "random": each crop's event drawn uniformly; "shuffled": every event once per pass, in a
    # new random order each pass (a data loader with shuffle=True)
    event_order: str = "random"


@dataclass(frozen=True, kw_only=True)
class RunConfig(TrainOptions):
    """Everything that decides what one run learns."""

    arch: str
    loss: str
    lr: float

    @property
    def run_id(self) -> str:
        from lsd.runs import run_id  # lsd.runs loads numpy (lsd.rasters); --help must not

        return run_id(self.arch, self.loss, self.lr)


@dataclass(frozen=True)
class TileOptions:
    """How a stack is cut for inference; checked once, when made."""

    tile: int = 512
    overlap: int = 64
    batch_size: int | None = None  # tiles per forward pass; None: default_batch_size(device)

    def __post_init__(self) -> None:
        if self.tile < MIN_TILE:
            raise InvalidValue(
                f"tile {self.tile} is too small; use at least {MIN_TILE} (e.g. 512)", field="tile"
            )
        if self.overlap < 0 or self.overlap >= self.tile // 2:
            raise InvalidValue(
                f"overlap {self.overlap} must be >= 0 and less than half of the tile {self.tile}",
                field="overlap",
            )
        if self.batch_size is not None and self.batch_size < 1:
            raise InvalidValue(
                f"batch size {self.batch_size} must be at least 1", field="batch_size"
            )


@dataclass(frozen=True)
class ForwardOptions:
    """How a tile goes through each network."""

    precision: str = "auto"  # PRECISIONS
    tta: bool = False  # average the 8 flips/rotations (8x the forward passes)
    runtime: str = "torch"  # RUNTIMES; "onnx": ONNX Runtime on the CPU

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if self.runtime not in RUNTIMES:
            raise InvalidValue(
                f"runtime '{self.runtime}' is not one of {', '.join(RUNTIMES)}", field="runtime"
            )
        if self.runtime == "onnx" and self.precision == "bf16":
            raise InvalidValue("runtime onnx runs in fp32; use precision auto or fp32 with it",
                               field="runtime")  # fmt: skip
