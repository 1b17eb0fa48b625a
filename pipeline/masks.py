"""False-positive controls applied to a landslide mask after prediction.

The paper names water bodies and snow as the main sources of false detections (both change
strongly between pre- and post-event images), and landslides do not happen on flat ground. Each
control removes detections (sets them to 0, "not landslide"), never adds them, and uses a layer of
the stack itself so it sits exactly on the prediction grid:

- water: a `water` layer (non-zero = water) if the stack has one, else landCover class 5
- snow:  a `snow` layer (non-zero = snow/ice) if the stack has one, else landCover class 8
- slope: the `slope` layer (degrees); pixels flatter than the threshold are removed
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from lsd.errors import InvalidValue, LayerMissing
from lsd.layers import LANDCOVER_LAYER, LANDCOVER_SNOW, LANDCOVER_WATER


@dataclass(frozen=True)
class MaskOptions:
    water: bool = False
    snow: bool = False
    min_slope: float | None = None

    @property
    def any(self) -> bool:
        return self.water or self.snow or self.min_slope is not None


def _class_source(kind: str, own_layer: str, code: int, stack_layers: tuple[str, ...]) -> str:
    if own_layer in stack_layers:
        return own_layer
    if LANDCOVER_LAYER in stack_layers:
        return LANDCOVER_LAYER
    raise LayerMissing(
        f"the {kind} mask needs a '{own_layer}' layer or a '{LANDCOVER_LAYER}' layer "
        f"(class {code}) in the stack; the stack has neither",
        field=f"mask_{kind}",
    )


def plan_masks(opts: MaskOptions, stack_layers: tuple[str, ...]) -> dict[str, str]:
    """Which stack layer each requested control reads, checked before any prediction runs.

    Returns {control: layer}; a control asked for whose layer the stack lacks is a UserError that
    names the layer, raised before hours of inference rather than after.
    """
    plan: dict[str, str] = {}
    if opts.water:
        plan["water"] = _class_source("water", "water", LANDCOVER_WATER, stack_layers)
    if opts.snow:
        plan["snow"] = _class_source("snow", "snow", LANDCOVER_SNOW, stack_layers)
    if opts.min_slope is not None:
        if not 0.0 <= opts.min_slope < 90.0:
            raise InvalidValue(
                f"minimum slope {opts.min_slope} must be between 0 and 90 degrees",
                field="min_slope",
            )
        if "slope" not in stack_layers:
            raise LayerMissing(
                "the slope mask needs a 'slope' layer (degrees) in the stack; it has none",
                field="min_slope",
            )
        plan["slope"] = "slope"
    return plan


def control_pixels(
    plan: Mapping[str, str], opts: MaskOptions, layers: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Boolean arrays of pixels each control removes, from that control's layer rows."""
    out: dict[str, np.ndarray] = {}
    for control, layer in plan.items():
        values = layers[layer]
        if control == "slope":
            with np.errstate(invalid="ignore"):
                out[control] = values < float(opts.min_slope)  # NaN slope removes nothing
        elif layer == LANDCOVER_LAYER:
            code = LANDCOVER_WATER if control == "water" else LANDCOVER_SNOW
            out[control] = np.rint(np.nan_to_num(values, nan=-1.0)) == code
        else:
            out[control] = np.nan_to_num(values, nan=0.0) != 0
    return out


def apply_masks(
    mask: np.ndarray,
    plan: Mapping[str, str],
    opts: MaskOptions,
    layers: Mapping[str, np.ndarray],
    counts: dict[str, Any],
) -> None:
    """Set detections (mask == 1) hit by any control to 0, in place; count removed pixels."""
    for control, hit in control_pixels(plan, opts, layers).items():
        removed = hit & (mask == 1)
        counts[control] = int(counts.get(control, 0)) + int(removed.sum())
        mask[removed] = 0
