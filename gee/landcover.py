"""The landCover layer: a CART classifier trained per event, as the paper did.

A per-event classifier adapts to the local look of each class (a 'forest' in Iceland and one in
Indonesia share little), which a global product cannot. Training points come from ESA
WorldCover remapped to the paper's eight classes, or from the user's own point file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ee

from lsd.gee.config import CART_S2_BANDS, WORLDCOVER_BARE, WORLDCOVER_REMAP, FetchConfig
from lsd.layers import LANDCOVER_BARE_ROCK, LANDCOVER_CLASSES, LANDCOVER_SNOW
from lsd.vectors import CLASS_COLUMN, read_class_points

CLASS_PROPERTY = CLASS_COLUMN
FEATURE_BANDS: tuple[str, ...] = (*CART_S2_BANDS, "elevation", "preVV", "preVH")
SPLIT_COLUMN = "split"


def worldcover_image(cfg: FetchConfig) -> ee.Image:
    """ESA WorldCover class map ('Map' band) as one image."""
    return ee.ImageCollection(cfg.worldcover_asset).mosaic().select([0]).rename("worldcover")


def paper_classes(
    worldcover: ee.Image, pre_ndvi: ee.Image, cfg: FetchConfig, snow: ee.Image | None = None
) -> ee.Image:
    """WorldCover remapped to the paper's classes, band 'class'; WorldCover's bare/sparse class
    is split by pre-event NDVI into sparsely vegetated (4) and bare rock (7); and where CART's
    image shows snow (`snow` = 1) the point is glacier and snow (8), whatever WorldCover says:
    its features are snow's, and the paper's class 8 is seasonal snow as well as glaciers."""
    src = list(WORLDCOVER_REMAP)
    dst = [WORLDCOVER_REMAP[k] for k in src]
    classes = worldcover.remap(src, dst)
    bare_rock = worldcover.eq(WORLDCOVER_BARE).And(pre_ndvi.lt(cfg.bare_rock_ndvi))
    classes = classes.where(bare_rock, LANDCOVER_BARE_ROCK)
    if snow is not None:
        classes = classes.where(snow, LANDCOVER_SNOW)
    return classes.rename(CLASS_PROPERTY).toInt()


def features_image(
    s2_pre: ee.Image, elevation: ee.Image, pre_vv: ee.Image, pre_vh: ee.Image
) -> ee.Image:
    """What CART sees: the bands of the least-cloudy pre-event S2 image (cloud-masked, snow
    kept; lsd.gee.s2.clearest_mosaic), elevation and pre-event VV, VH (dB, never masked)."""
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
        geometries=False,
    )


def user_points(features: ee.Image, path: Path, cfg: FetchConfig) -> ee.FeatureCollection:
    """The user's points, each with its class and the feature values under it."""
    points = ee.FeatureCollection(
        [ee.Feature(ee.Geometry.Point([x, y]), {CLASS_PROPERTY: c}) for x, y, c in
         read_class_points(path)]
    )  # fmt: skip
    return features.sampleRegions(
        collection=points, properties=[CLASS_PROPERTY], scale=cfg.scale, geometries=False
    )


@dataclass(frozen=True)
class CartResult:
    classified: ee.Image  # band 'landCover'
    accuracy: ee.ComputedObject  # holdout overall accuracy, or null without holdout points
    kappa: ee.ComputedObject
    n_train: ee.Number
    n_test: ee.Number
    tree: ee.ComputedObject  # the trained tree as text (Classifier.explain)
    train: ee.FeatureCollection  # the training points, properties only
    s2_scenes: ee.ComputedObject | None = None  # {scene id: clear share} of CART's S2 image
    class_counts: ee.ComputedObject | None = None  # training points per class


def cart_classifier(cfg: FetchConfig) -> ee.Classifier:
    if cfg.cart_max_nodes:
        return ee.Classifier.smileCart(cfg.cart_max_nodes)
    return ee.Classifier.smileCart()


def train_cart(features: ee.Image, points: ee.FeatureCollection, cfg: FetchConfig) -> CartResult:
    """Split the points at random, train smileCart on the larger part, score on the holdout."""
    split = points.randomColumn(SPLIT_COLUMN, cfg.seed)
    train = split.filter(ee.Filter.lt(SPLIT_COLUMN, 1 - cfg.cart_holdout))
    test = split.filter(ee.Filter.gte(SPLIT_COLUMN, 1 - cfg.cart_holdout))
    classifier = cart_classifier(cfg).train(
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
        tree=ee.Dictionary(classifier.explain()).get("tree"),
        train=train.select([*FEATURE_BANDS, CLASS_PROPERTY], None, False),
        class_counts=points.aggregate_histogram(CLASS_PROPERTY),
    )


def cart_constants(result: CartResult) -> ee.Dictionary:
    """What the per-event request returns about CART: the training points (so each tile can
    retrain on exactly them), the tree they give, and the holdout scores for event.json."""
    out = {
        "train": result.train,
        "tree": result.tree,
        "accuracy": result.accuracy,
        "kappa": result.kappa,
        "n_train": result.n_train,
        "n_test": result.n_test,
    }
    if result.class_counts is not None:
        out["class_counts"] = result.class_counts
    if result.s2_scenes is not None:
        out["s2_scenes"] = result.s2_scenes
    return ee.Dictionary(out)


def classify_from_constants(
    features: ee.Image, constants: dict[str, Any], cfg: FetchConfig
) -> ee.Image:
    """landCover for one tile from the per-event CART constants, with no sampling: the tree
    itself (cart_tile_input 'tree'), or smileCart retrained on the constant training points."""
    if cfg.cart_tile_input == "tree":
        classifier = ee.Classifier.decisionTree(constants["tree"])
    else:
        points = ee.FeatureCollection(
            [ee.Feature(None, f["properties"]) for f in constants["train"]["features"]]
        )
        classifier = cart_classifier(cfg).train(
            features=points, classProperty=CLASS_PROPERTY, inputProperties=list(FEATURE_BANDS)
        )
    return features.classify(classifier).rename("landCover")


def class_table() -> dict[str, str]:
    """Class codes and names for event.json (JSON keys are strings)."""
    return {str(k): v for k, v in LANDCOVER_CLASSES.items()}
