"""Landslide4Sense's published artefacts, as facts: where the data is, how it is laid out, how its
baseline trained and scored, and what its Table I reports.

Ghorbanzadeh et al., "Landslide4Sense: Reference Benchmark Data and Deep Learning Models for
Landslide Detection" (IEEE TGRS 60, 2022). The data is Zenodo record 10463239, three archives,
one per split; its baseline code is github iarai/Landslide4Sense-2022, whose list files
(dataset/train.txt, valid.txt, test.txt) name the patches as

    TrainData/img/image_1.h5 ... image_3799.h5    HDF5 dataset "img": 128 x 128 x 14 float64
    TrainData/mask/mask_1.h5 ... mask_3799.h5     HDF5 dataset "mask": 128 x 128 uint8, 0 / 1
    ValidData/img/image_1.h5 ... image_245.h5
    TestData/img/image_1.h5 ... image_800.h5

The Hugging Face mirror ibm-nasa-geospatial/Landslide4sense holds the same patches as
images/{train,validation,test}/image_N.h5 and annotations/{train,validation,test}/mask_N.h5,
with masks for all three splits (the record's own page says masks were released for the training
split; which of its archives hold mask/ folders is read from the archives themselves).

The numbers at the end are the benchmark's (its loader's normalisation, its Table I), copied so
that training and reports need neither the baseline code nor the anchors folder.
"""

from __future__ import annotations

ZENODO_RECORD = 10463239
ZENODO_DOI = f"10.5281/zenodo.{ZENODO_RECORD}"
HF_MIRROR = "ibm-nasa-geospatial/Landslide4sense"

# One archive per split, each unpacking into the split folder the baseline's list files name.
ARCHIVES: dict[str, str] = {"train": "TrainData.zip", "val": "ValidData.zip",
                            "test": "TestData.zip"}  # fmt: skip
SPLIT_COUNTS: dict[str, int] = {"train": 3799, "val": 245, "test": 800}

# Folder names a split goes by: the competition's (first) and those mirrors use.
SPLIT_FOLDERS: dict[str, tuple[str, ...]] = {
    "train": ("TrainData", "train", "training"),
    "val": ("ValidData", "validation", "val", "valid"),
    "test": ("TestData", "test"),
}
IMAGE_DIR, MASK_DIR = "img", "mask"  # inside a split folder (the competition's layout)
MIRROR_IMAGES, MIRROR_MASKS = "images", "annotations"  # <root>/<these>/<split> (the HF mirror)
IMAGE_KEY, MASK_KEY = "img", "mask"  # HDF5 dataset names
PATCH_SIZE = 128

# The dataset's channel order: Sentinel-2 B1-B12 without B8A, then ALOS PALSAR slope and DEM.
LAYERS: tuple[str, ...] = (
    "B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11", "B12",
    "slope", "elevation",
)  # fmt: skip

# The baseline loader's fixed per-band statistics (dataset/landslide_dataset.py, lines 10-11),
# applied as (x - mean) / std in float32 to every patch of every split (lines 52-59).
MEAN: tuple[float, ...] = (
    -0.4914, -0.3074, -0.1277, -0.0625, 0.0439, 0.0803, 0.0644, 0.0802, 0.3000, 0.4082, 0.0823,
    0.0516, 0.3338, 0.7819,
)  # fmt: skip
STD: tuple[float, ...] = (
    0.9325, 0.8775, 0.8860, 0.8869, 0.8857, 0.8418, 0.8354, 0.8491, 0.9061, 1.6072, 0.8848,
    0.9232, 0.9018, 1.2913,
)  # fmt: skip

# Scores of the landslide class (Train.py lines 164-172): counts pooled over every patch, then
# P = TP / (TP + FP + eps), R = TP / (TP + FN + eps), F1 = 2PR / (P + R + eps).
SCORE_EPS = 1e-14
THRESHOLD = 0.5  # argmax of two softmax classes = landslide where p > 0.5

# Table I: 11 models trained from scratch; (precision, recall, F1) of the landslide class, in %.
TABLE1: dict[str, tuple[float, float, float]] = {
    "PSPNet": (61.55, 52.03, 56.39),
    "ContextNet": (70.77, 49.29, 58.11),
    "DeepLab-v2": (60.80, 63.68, 62.21),
    "DeepLab-v3+": (69.91, 62.11, 65.78),
    "FCN-8s": (68.66, 63.05, 65.73),
    "LinkNet": (66.76, 67.02, 66.89),
    "FRRN-A": (76.57, 64.40, 69.96),
    "FRRN-B": (64.93, 76.16, 70.10),
    "SQNet": (74.20, 66.69, 70.24),
    "U-Net": (79.91, 62.17, 69.94),
    "ResU-Net": (76.08, 67.71, 71.65),
}
# lsd's architectures that are a Table I model (a U-Net with a ResNet encoder is the ResU-Net);
# the others (UnetPlusPlus, MAnet, FPN, PAN, DeepLabV3) have no row, and Table I's U-Net,
# ContextNet, DeepLab-v2, FCN-8s, FRRN-A/B and SQNet no lsd counterpart.
TABLE1_ROW: dict[str, str] = {
    "Unet": "ResU-Net",
    "Linknet": "LinkNet",
    "PSPNet": "PSPNet",
    "DeepLabV3Plus": "DeepLab-v3+",
}


def scores(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1 of the landslide class exactly as the baseline computes them."""
    p = tp / (tp + fp + SCORE_EPS)
    r = tp / (tp + fn + SCORE_EPS)
    return p, r, 2.0 * p * r / (p + r + SCORE_EPS)


def statistics(layers: tuple[str, ...] | list[str]) -> tuple[list[float], list[float]] | None:
    """The fixed mean and std of these layers (by name), or None if one is not a benchmark band."""
    if any(name not in LAYERS for name in layers):
        return None
    idx = [LAYERS.index(name) for name in layers]
    return [MEAN[i] for i in idx], [STD[i] for i in idx]
