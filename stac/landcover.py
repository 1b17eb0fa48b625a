"""The landCover layer: CART trained per event with scikit-learn, as the Earth Engine path
trains smileCart.

Same features (B2, B3, B4, B8, B11, B12 of the least-cloudy pre-event image, clouds and shadows
masked, snow kept: lsd.stac.s2.GapFilled; elevation; pre-event VV and VH in dB, unmasked), same
training points (ESA WorldCover v200 remapped to the paper's eight classes, WorldCover 60 split
by that image's NDVI, points on its snow class 8, up to 100 points per class at 10 m from the
AOI buffered by 2 km, 30 % held out) or the user's points file. Both are CART (Gini,
grown until pure); the samples differ, since Earth Engine's stratified sampler cannot be
replayed, so the trees of the two sources differ for the same event.

Sampling streams: each candidate pixel gets a pseudo-random key from its global pixel index and
the seed, and each class keeps its `n` smallest keys over all windows, so the sample neither
depends on the window size nor needs the region in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lsd.layers import LANDCOVER_BARE_ROCK, LANDCOVER_CLASSES, LANDCOVER_SNOW

FEATURES: tuple[str, ...] = ("B2", "B3", "B4", "B8", "B11", "B12", "elevation", "preVV", "preVH")
# ESA WorldCover v200 -> the paper's classes (the Earth Engine path's table, docs/layers.md)
WORLDCOVER_REMAP: dict[int, int] = {
    10: 2,
    20: 2,
    30: 3,
    40: 3,
    50: 1,
    60: 4,
    70: 8,
    80: 5,
    90: 6,
    95: 6,
    100: 4,
}
WORLDCOVER_BARE = 60


def paper_classes(
    worldcover: np.ndarray,
    pre_ndvi: np.ndarray,
    bare_rock_ndvi: float,
    snow: np.ndarray | None = None,
) -> np.ndarray:
    """WorldCover codes as paper classes (0 = none), bare/sparse split by the NDVI of CART's
    image; where that image shows snow (`snow` true) a point is glacier and snow (8) whatever
    WorldCover says, as in the Earth Engine path: its features are snow's, and the paper's
    class 8 holds seasonal snow as well as glaciers."""
    codes = np.where(np.isfinite(worldcover), worldcover, 0).astype(np.int32)
    lut = np.zeros(max(WORLDCOVER_REMAP) + 1, dtype=np.uint8)
    for src, dst in WORLDCOVER_REMAP.items():
        lut[src] = dst
    classes = lut[np.clip(codes, 0, len(lut) - 1)]
    with np.errstate(invalid="ignore"):
        rock = (codes == WORLDCOVER_BARE) & (pre_ndvi < bare_rock_ndvi)
    classes[rock] = LANDCOVER_BARE_ROCK
    if snow is not None:
        classes[snow & (classes > 0)] = LANDCOVER_SNOW
    return classes


def _keys(index: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of (seed, pixel index): a reproducible random key per pixel."""
    with np.errstate(over="ignore"):
        z = index.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


@dataclass
class StratifiedSample:
    """Up to `per_class` pixels of each class, the same whichever windows they come in."""

    per_class: int
    seed: int
    keys: dict[int, np.ndarray] = field(default_factory=dict)
    rows: dict[int, np.ndarray] = field(default_factory=dict)

    def add(self, classes: np.ndarray, features: np.ndarray, index: np.ndarray) -> None:
        """`classes` (n,), `features` (n, k), `index` (n,) global pixel indices."""
        ok = (classes > 0) & np.isfinite(features).all(axis=1)
        keys = _keys(index[ok], self.seed)
        for cls in np.unique(classes[ok]):
            sel = classes[ok] == cls
            k = np.concatenate([self.keys.get(int(cls), np.empty(0, np.uint64)), keys[sel]])
            f = np.concatenate(
                [
                    self.rows.get(int(cls), np.empty((0, features.shape[1]), np.float32)),
                    features[ok][sel],
                ]
            )
            order = np.argsort(k, kind="stable")[: self.per_class]
            self.keys[int(cls)], self.rows[int(cls)] = k[order], f[order]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        classes = sorted(self.rows)
        if not classes:
            return np.empty((0, len(FEATURES)), np.float32), np.empty(0, np.int32)
        x = np.concatenate([self.rows[c] for c in classes])
        y = np.concatenate([np.full(len(self.rows[c]), c, np.int32) for c in classes])
        return x, y


@dataclass
class Cart:
    """A trained tree and its holdout scores (for event.json)."""

    model: Any
    accuracy: float | None
    kappa: float | None
    n_train: int
    n_test: int
    classes_seen: list[int]

    def classify(self, features: np.ndarray) -> np.ndarray:
        """(n, k) features -> class codes as float32, NaN where a feature is missing."""
        out = np.full(len(features), np.nan, dtype=np.float32)
        ok = np.isfinite(features).all(axis=1)
        if ok.any():
            out[ok] = self.model.predict(features[ok]).astype(np.float32)
        return out

    def record(self) -> dict[str, Any]:
        return {
            "classifier": "scikit-learn DecisionTreeClassifier (CART, gini)",
            "accuracy": self.accuracy,
            "kappa": self.kappa,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "classes_in_training": self.classes_seen,
            "classes": {str(k): v for k, v in LANDCOVER_CLASSES.items()},
        }


def train_cart(
    x: np.ndarray, y: np.ndarray, *, holdout: float, seed: int, max_nodes: int | None
) -> Cart | None:
    """CART on a random (1 - holdout) share of the points, scored on the rest; None without
    points."""
    from sklearn.metrics import accuracy_score, cohen_kappa_score
    from sklearn.tree import DecisionTreeClassifier

    if len(y) == 0:
        return None
    test = np.random.default_rng(seed).random(len(y)) >= 1 - holdout
    train = ~test
    if not train.any():
        train, test = test, np.zeros_like(test)
    model = DecisionTreeClassifier(random_state=seed, max_leaf_nodes=max_nodes)
    model.fit(x[train], y[train])
    accuracy = kappa = None
    if test.any():
        pred = model.predict(x[test])
        accuracy = float(accuracy_score(y[test], pred))
        kappa = (
            float(cohen_kappa_score(y[test], pred)) if len(set(y[test]) | set(pred)) > 1 else 1.0
        )
    return Cart(
        model, accuracy, kappa, int(train.sum()), int(test.sum()), sorted(map(int, set(y[train])))
    )
