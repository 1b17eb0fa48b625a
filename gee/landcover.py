"""The landCover layer: a CART classifier trained per event, as the paper did.

A per-event classifier adapts to the local look of each class (a 'forest' in Iceland and one in
Indonesia share little), which a global product cannot. Training points come from ESA
WorldCover remapped to the paper's eight classes, or from the user's own point file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import ee

from lsd.gee.config import CART_S2_BANDS, WORLDCOVER_BARE, WORLDCOVER_REMAP, FetchConfig
from lsd.layers import LANDCOVER_BARE_ROCK, LANDCOVER_CLASSES
from lsd.vectors import CLASS_COLUMN, read_class_points

CLASS_PROPERTY = CLASS_COLUMN
FEATURE_BANDS: tuple[str, ...] = (*CART_S2_BANDS, "elevation", "preVV", "preVH")
SPLIT_COLUMN = "split"


def worldcover_image(cfg: FetchConfig) -> ee.Image:
    """ESA WorldCover class map ('Map' band) as one image."""
    return ee.ImageCollection(cfg.worldcover_asset).mosaic().select([0]).rename("worldcover")


def paper_classes(worldcover: ee.Image, pre_ndvi: ee.Image, cfg: FetchConfig) -> ee.Image:
    """WorldCover remapped to the paper's classes, band 'class'; WorldCover's bare/sparse class
    is split by pre-event NDVI into sparsely vegetated (4) and bare rock (7)."""
    src = list(WORLDCOVER_REMAP)
    dst = [WORLDCOVER_REMAP[k] for k in src]
    classes = worldcover.remap(src, dst)
    bare_rock = worldcover.eq(WORLDCOVER_BARE).And(pre_ndvi.lt(cfg.bare_rock_ndvi))
    return classes.where(bare_rock, LANDCOVER_BARE_ROCK).rename(CLASS_PROPERTY).toInt()


def features_image(
    s2_pre: ee.Image, elevation: ee.Image, pre_vv: ee.Image, pre_vh: ee.Image
) -> ee.Image:
    """What CART sees: pre-event S2 bands, elevation and pre-event VV, VH (dB)."""
    return (
        s2_pre.select(list(CART_S2_BANDS))
        .addBands(elevation.rename("elevation"))
        .addBands(pre_vv.rename("preVV"))
        .addBands(pre_vh.rename("preVH"))
        .toFloat()
    )


def worldcover_points(
    features: ee.Image, classes: ee.Image, region: ee.Geometry, cfg: FetchConfig
) -> ee.FeatureCollection:
    """Up to cart_points_per_class points per paper class inside the region, with features."""
    return features.addBands(classes).stratifiedSample(
        numPoints=cfg.cart_points_per_class,
        classBand=CLASS_PROPERTY,
        region=region,
        scale=cfg.scale,
        seed=cfg.seed,
        geometries=True,
    )


def user_points(features: ee.Image, path: Path, cfg: FetchConfig) -> ee.FeatureCollection:
    """The user's points, each with its class and the feature values under it."""
    points = ee.FeatureCollection(
        [ee.Feature(ee.Geometry.Point([x, y]), {CLASS_PROPERTY: c}) for x, y, c in
         read_class_points(path)]
    )  # fmt: skip
    return features.sampleRegions(
        collection=points, properties=[CLASS_PROPERTY], scale=cfg.scale, geometries=True
    )


@dataclass(frozen=True)
class CartResult:
    classified: ee.Image  # band 'landCover'
    accuracy: ee.ComputedObject  # holdout overall accuracy, or null without holdout points
    kappa: ee.ComputedObject
    n_train: ee.Number
    n_test: ee.Number


def train_cart(features: ee.Image, points: ee.FeatureCollection, cfg: FetchConfig) -> CartResult:
    """Split the points at random, train smileCart on the larger part, score on the holdout."""
    split = points.randomColumn(SPLIT_COLUMN, cfg.seed)
    train = split.filter(ee.Filter.lt(SPLIT_COLUMN, 1 - cfg.cart_holdout))
    test = split.filter(ee.Filter.gte(SPLIT_COLUMN, 1 - cfg.cart_holdout))
    cart = (
        ee.Classifier.smileCart(cfg.cart_max_nodes)
        if cfg.cart_max_nodes
        else ee.Classifier.smileCart()
    )
    classifier = cart.train(
        features=train, classProperty=CLASS_PROPERTY, inputProperties=list(FEATURE_BANDS)
    )
    classified = features.classify(classifier).rename("landCover")
    matrix = test.classify(classifier).errorMatrix(
        CLASS_PROPERTY, "classification", sorted(LANDCOVER_CLASSES)
    )
    has_test = test.size().gt(0)
    return CartResult(
        classified=classified,
        accuracy=ee.Algorithms.If(has_test, matrix.accuracy(), None),
        kappa=ee.Algorithms.If(has_test, matrix.kappa(), None),
        n_train=train.size(),
        n_test=test.size(),
    )


def class_table() -> dict[str, str]:
    """Class codes and names for event.json (JSON keys are strings)."""
    return {str(k): v for k, v in LANDCOVER_CLASSES.items()}
