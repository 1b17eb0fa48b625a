"""The paper's published artefacts, as facts: where they are, how they are laid out, what it found.

Ganerod, Franch, Lindsay & Calovi (arXiv 2310.05959) published their dataset and their 360
trained models as Zenodo record 13471162; their code (github franchg/global-landslide-mapping)
shows the layout:

    global_dataset/{train_val,test}/{input,label}/*.tif   inputs H x W x 15 float (Table 2 order,
                                                           NaN = no data), labels H x W of 0/1;
                                                           input and label pair by the file-name
                                                           part before the first "_"
    <setting>_ensemble/<n>/checkpoints/epoch_*.ckpt       one Hydra multirun per setting, one
    <setting>_ensemble/<n>/tensorboard/version_0/         numbered run each (Lightning checkpoint,
                      hparams.yaml, events.out.tfevents.*  Hydra config, val/f1_best in the logs)

The tables at the end are the paper's results (Tables 7 and 8), copied so that a report can stand
beside them without the anchors folder; the numbers are the paper's, the structure lsd's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lsd.layers import PAPER_LAYERS

ZENODO_RECORD = 13471162
ZENODO_DOI = f"10.5281/zenodo.{ZENODO_RECORD}"
DATA_ARCHIVE = "global_dataset.zip"
MODELS_ARCHIVE = "trained_models.zip"

TRAIN_VAL_DIR = "train_val"
TEST_DIR = "test"
INPUT_DIR = "input"
LABEL_DIR = "label"
N_CHANNELS = len(PAPER_LAYERS)

# The paper's code draws its validation files with sklearn's train_test_split(train_size=0.8)
# after Lightning's seed_everything(42): NumPy's global generator, seeded 42, permutes the sorted
# train_val files and the first fifth become validation (src/data/landslides.py split_dataset,
# configs/experiment/*.yaml seed: 42, configs/data/default.yaml train_val_split: 0.8).
PAPER_SEED = 42
PAPER_TRAIN_FRACTION = 0.8


@dataclass(frozen=True)
class PaperEvent:
    number: int
    location: str
    date: str
    lon: float
    lat: float

    @property
    def event_id(self) -> str:
        """The id examples/events.csv uses: two-digit number and location, e.g. 05-norway."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.location.lower()).strip("-")
        return f"{self.number:02d}-{slug}"


# Table 1 of the paper (event number, location, date, point); event 5 is the test event.
PAPER_EVENTS: tuple[PaperEvent, ...] = (
    PaperEvent(1, "Iceland", "2021-10-06", -17.5558, 65.8674),
    PaperEvent(2, "Ireland", "2021-07-04", -7.85187, 54.15745),
    PaperEvent(3, "New Zealand", "2022-03-27", 177.4694, -38.9681),
    PaperEvent(4, "Ecuador", "2021-02-12", -78.93655, -2.2895),
    PaperEvent(5, "Norway", "2019-07-30", 6.11699, 61.51734),
    PaperEvent(8, "Brazil", "2020-04-06", -49.60777, -27.0774),
    PaperEvent(9, "China", "2021-04-05", 103.15055, 29.66474),
    PaperEvent(10, "Philippines", "2022-04-10", 124.85286, 10.67658),
    PaperEvent(12, "USA", "2019-12-02", -135.41194, 59.22035),
    PaperEvent(14, "New Zealand", "2022-03-27", 170.17485, -43.57436),
    PaperEvent(15, "Iceland", "2022-02-02", -22.109811, 64.787941),
    PaperEvent(19, "India", "2020-08-06", 77.01188, 10.166),
    PaperEvent(20, "Peru", "2020-06-16", -71.685998, -15.660252),
    PaperEvent(21, "Kyrgyzstan", "2017-04-30", 73.290135, 40.587722),
    PaperEvent(22, "Italy", "2018-11-02", 11.972334, 46.34617),
    PaperEvent(23, "Indonesia", "2022-02-25", 99.99442, 0.11412),
    PaperEvent(24, "Brazil", "2022-05-26", -34.958299, -8.120723),
    PaperEvent(25, "Canada", "2021-11-14", -121.63403, 49.307154),
    PaperEvent(26, "USA", "2021-09-24", -121.38802, 39.86029),
    PaperEvent(28, "Australia", "2022-02-28", 153.39578, -28.51734),
    PaperEvent(29, "Indonesia", "2018-09-28", 119.91418, -0.93951),
)
PAPER_TEST_EVENT = 5
EVENTS_BY_NUMBER = {e.number: e for e in PAPER_EVENTS}

# The four multirun folders of trained_models.zip and the settings they trained
# (configs/experiment/*.yaml: data.channels are indices into the 15 layers; none = all).
SETTING_FOLDERS: dict[str, str] = {
    "sentinel1_ensemble": "s1",
    "sentinel2_ensemble": "s2",
    "sentinel1_and_2_ensemble": "s1s2",
    "all_ch_ensemble": "all",
}
SETTING_CHANNELS: dict[str, tuple[int, ...]] = {
    "s1": tuple(range(9)),
    "s2": (13, 14),
    "s1s2": (*range(9), 13, 14),
    "all": tuple(range(N_CHANNELS)),
}

# segmentation_models_pytorch class names in the Hydra configs (configs/model/net, loss) -> lsd.
ARCH_CLASSES: dict[str, str] = {
    "Unet": "Unet", "UnetPlusPlus": "UnetPlusPlus", "MAnet": "MAnet", "Linknet": "Linknet",
    "FPN": "FPN", "PSPNet": "PSPNet", "PAN": "PAN", "DeepLabV3": "DeepLabV3",
    "DeepLabV3Plus": "DeepLabV3Plus",
}  # fmt: skip
LOSS_CLASSES: dict[str, str] = {
    "SoftBCEWithLogitsLoss": "BCE", "DiceLoss": "Dice", "FocalLoss": "Focal",
    "JaccardLoss": "Jaccard", "LovaszLoss": "Lovasz",
}  # fmt: skip
DEFAULT_ENCODER = "resnet34"  # smp's default; the paper's net configs name no encoder


def setting_of_channels(channels: tuple[int, ...]) -> str | None:
    """The built-in setting whose layers these channel indices select, if any."""
    for name, chans in SETTING_CHANNELS.items():
        if tuple(channels) == chans:
            return name
    return None


def layers_of_channels(channels: tuple[int, ...]) -> tuple[str, ...]:
    return tuple(PAPER_LAYERS[i] for i in channels)


# Table 8: test F1 on the Norway event of the single model with the best validation F1 and of
# the top-10/20/40 ensembles, per setting (also ../shared/anchors/paper_table8_ensemble.csv).
TABLE8: dict[str, tuple[float, float, float, float]] = {
    "s1": (0.29, 0.44, 0.40, 0.43),
    "s2": (0.52, 0.57, 0.61, 0.60),
    "s1s2": (0.64, 0.68, 0.69, 0.69),
    "all": (0.65, 0.66, 0.66, 0.68),
}
TABLE8_KS = (10, 20, 40)

# Table 7: the ten models with the best validation F1 per setting, with their test scores:
# (setting, val F1, loss, lr, arch, test precision, test recall, test F1).
TABLE7: tuple[tuple[str, float, str, float, str, float, float, float], ...] = (
    ("s1", 0.488, "BCE", 0.001, "PAN", 0.865, 0.172, 0.287),
    ("s1", 0.479, "Jaccard", 0.001, "FPN", 0.148, 0.399, 0.216),
    ("s1", 0.474, "BCE", 0.01, "UnetPlusPlus", 0.685, 0.175, 0.278),
    ("s1", 0.455, "Dice", 0.001, "Unet", 0.703, 0.496, 0.582),
    ("s1", 0.453, "Dice", 0.001, "DeepLabV3", 0.734, 0.273, 0.398),
    ("s1", 0.449, "Dice", 0.01, "Linknet", 0.664, 0.316, 0.428),
    ("s1", 0.443, "BCE", 0.01, "MAnet", 0.718, 0.383, 0.500),
    ("s1", 0.438, "Focal", 0.01, "Linknet", 0.690, 0.324, 0.441),
    ("s1", 0.436, "Jaccard", 0.001, "PAN", 0.635, 0.241, 0.350),
    ("s1", 0.428, "Jaccard", 0.001, "Unet", 0.759, 0.351, 0.480),
    ("s2", 0.694, "Focal", 0.01, "Linknet", 0.516, 0.534, 0.525),
    ("s2", 0.691, "BCE", 0.01, "UnetPlusPlus", 0.322, 0.673, 0.435),
    ("s2", 0.687, "Jaccard", 0.001, "PAN", 0.553, 0.510, 0.531),
    ("s2", 0.682, "BCE", 0.01, "Linknet", 0.355, 0.514, 0.420),
    ("s2", 0.668, "Dice", 0.01, "UnetPlusPlus", 0.297, 0.747, 0.425),
    ("s2", 0.645, "Jaccard", 0.01, "DeepLabV3", 0.516, 0.490, 0.503),
    ("s2", 0.643, "Lovasz", 0.001, "DeepLabV3Plus", 0.495, 0.646, 0.560),
    ("s2", 0.641, "Jaccard", 0.001, "Unet", 0.342, 0.679, 0.455),
    ("s2", 0.640, "Focal", 0.01, "MAnet", 0.375, 0.730, 0.496),
    ("s2", 0.637, "BCE", 0.01, "Unet", 0.352, 0.690, 0.467),
    ("s1s2", 0.751, "Focal", 0.01, "UnetPlusPlus", 0.708, 0.589, 0.643),
    ("s1s2", 0.750, "Focal", 0.001, "UnetPlusPlus", 0.647, 0.598, 0.621),
    ("s1s2", 0.748, "Jaccard", 0.01, "UnetPlusPlus", 0.791, 0.620, 0.695),
    ("s1s2", 0.747, "Dice", 0.001, "Linknet", 0.806, 0.589, 0.681),
    ("s1s2", 0.746, "Jaccard", 0.001, "FPN", 0.709, 0.492, 0.581),
    ("s1s2", 0.746, "Dice", 0.001, "UnetPlusPlus", 0.636, 0.616, 0.626),
    ("s1s2", 0.745, "Jaccard", 0.001, "UnetPlusPlus", 0.678, 0.624, 0.650),
    ("s1s2", 0.744, "BCE", 0.01, "UnetPlusPlus", 0.716, 0.546, 0.619),
    ("s1s2", 0.742, "Dice", 0.01, "UnetPlusPlus", 0.648, 0.661, 0.655),
    ("s1s2", 0.741, "BCE", 0.01, "Unet", 0.584, 0.612, 0.597),
    ("all", 0.727, "Dice", 0.001, "Unet", 0.710, 0.599, 0.650),
    ("all", 0.725, "Dice", 0.001, "UnetPlusPlus", 0.742, 0.639, 0.687),
    ("all", 0.720, "Jaccard", 0.001, "PAN", 0.657, 0.575, 0.613),
    ("all", 0.719, "Jaccard", 0.01, "FPN", 0.684, 0.620, 0.650),
    ("all", 0.719, "Jaccard", 0.001, "Unet", 0.847, 0.550, 0.667),
    ("all", 0.715, "Jaccard", 0.001, "Linknet", 0.812, 0.556, 0.660),
    ("all", 0.713, "Dice", 0.001, "FPN", 0.629, 0.556, 0.591),
    ("all", 0.712, "Dice", 0.01, "Unet", 0.788, 0.568, 0.660),
    ("all", 0.708, "Focal", 0.001, "Unet", 0.731, 0.582, 0.648),
    ("all", 0.706, "Jaccard", 0.01, "UnetPlusPlus", 0.770, 0.565, 0.652),
)
