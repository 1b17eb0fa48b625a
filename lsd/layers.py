"""The layer vocabulary every floor shares: the paper's layer names, band settings, class codes.

A stack's layers are identified by name (its band descriptions), never by position, so a setting
is just a list of names; these tables are the one place the names and the land-cover codes are
spelled out.

Settings may also name a *family*: a Sentinel-2 band (B2 ... B12), NDVI, or a polarisation (VV,
VH). Resolved against the stacks, a family is the layer of that name where a stack has it (a
single-date stack such as a Landslide4Sense patch: B2), else its dated layers (a fetched stack:
preB2, postB2; for VV: preVV, postVV, dVV). So the study's feature groups (rgbn, rgbn_swir, ...)
mean the same bands on fetched events and on imported patches.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lsd.errors import InvalidFile, InvalidValue
from lsd.files import read_toml_table
from lsd.landslide4sense import LAYERS as L4S_LAYERS

# The paper's stack (Ganerod et al., Table 2), in its order.
PAPER_LAYERS: tuple[str, ...] = (
    "preVV", "postVV", "dVV", "preVH", "postVH", "dVH", "layover", "shadow", "liaDeg",
    "elevation", "slope", "kgClimate", "canopyHeight", "landCover", "dNDVI",
)  # fmt: skip
S1_LAYERS: tuple[str, ...] = PAPER_LAYERS[:9]
S2_LAYERS: tuple[str, ...] = ("landCover", "dNDVI")

# What each value of a paper layer means, written into stack.tif as band metadata ("meaning"):
# the band description stays the bare layer name, which is how stacks are read.
LAYER_NOTES: dict[str, str] = {
    "preVV": "dB, terrain-flattened gamma0 VV, pre-event median; NoData in layover/shadow",
    "postVV": "dB, terrain-flattened gamma0 VV, post-event median; NoData in layover/shadow",
    "dVV": "dB, postVV - preVV; NoData in layover/shadow",
    "preVH": "dB, terrain-flattened gamma0 VH, pre-event median; NoData in layover/shadow",
    "postVH": "dB, terrain-flattened gamma0 VH, post-event median; NoData in layover/shadow",
    "dVH": "dB, postVH - preVH; NoData in layover/shadow",
    "layover": "1 = layover (distorted, VV/VH NoData), 0 = not",
    "shadow": "1 = radar shadow (distorted, VV/VH NoData), 0 = not",
    "liaDeg": "degrees, local incidence angle",
    "elevation": "m",
    "slope": "degrees",
    "kgClimate": "Koppen-Geiger class code of the configured map",
    "canopyHeight": "m, forest canopy height; water, snow/ice and no-data codes are NaN",
    "landCover": "class code 1-8 (urban, forest, grass, sparse, water, wetland, rock, snow)",
    "dNDVI": "post-event minus pre-event greenest-pixel NDVI",
}
# Layers whose values are classes or flags: summarised by their values, not a mean.
CATEGORICAL_LAYERS: frozenset[str] = frozenset({"layover", "shadow", "kgClimate", "landCover"})

# Sentinel-2 bands lsd fetches (`s2bands`), and the families a setting may name.
S2_BANDS: tuple[str, ...] = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
FAMILY_DATES: dict[str, tuple[str, ...]] = {
    **{band: ("pre", "post") for band in S2_BANDS},
    "NDVI": ("pre", "post"),
    "VV": ("pre", "post", "d"),
    "VH": ("pre", "post", "d"),
}
FAMILY_GROUP = {**{b: "s2bands" for b in S2_BANDS}, "NDVI": "ndvi", "VV": "paper", "VH": "paper"}

# The feature groups of Orynbaikyzy et al. (2025), as families (docs/layers.md). B8A is left out
# of the red edge so that rgbn_re means the same on Landslide4Sense, which has no B8A.
RGBN: tuple[str, ...] = ("B2", "B3", "B4", "B8")
RED_EDGE: tuple[str, ...] = ("B5", "B6", "B7")
SWIR: tuple[str, ...] = ("B11", "B12")
FEATURE_GROUP_SETTINGS: dict[str, tuple[str, ...]] = {
    "rgbn": RGBN,
    "rgbn_re": RGBN + RED_EDGE,
    "rgbn_swir": RGBN + SWIR,
    "rgbn_re_swir": RGBN + RED_EDGE + SWIR,
    "sar_all": ("VV", "VH", "layover", "shadow", "liaDeg"),
    "fusion": ("VV", "VH", "NDVI"),
}

ALL_SETTING = "all"
BUILTIN_SETTINGS: dict[str, tuple[str, ...]] = {
    "s1": S1_LAYERS,
    "s2": S2_LAYERS,
    "s1s2": S1_LAYERS + S2_LAYERS,
    "all": PAPER_LAYERS,
    **FEATURE_GROUP_SETTINGS,
}

# The paper's land-cover classes, as the integer codes of the landCover layer.
LANDCOVER_LAYER = "landCover"
LANDCOVER_CLASSES: dict[int, str] = {
    1: "urban/artificial",
    2: "forest, trees, scrub, herbaceous",
    3: "pasture, grass",
    4: "sparsely vegetated",
    5: "water",
    6: "wetland",
    7: "bare rock",
    8: "glacier and snow",
}
LANDCOVER_WATER = 5
LANDCOVER_SNOW = 8
LANDCOVER_BARE_ROCK = 7


def load_settings_file(path: Path | str) -> dict[str, tuple[str, ...]]:
    """Read user settings from a TOML file with a `[settings]` table of name = [layers]."""
    path = Path(path)
    table = read_toml_table(path, "settings", "settings", 'mine = ["dNDVI", "slope"]')
    out: dict[str, tuple[str, ...]] = {}
    for name, layers in table.items():
        if (
            not isinstance(layers, list)
            or not layers
            or not all(isinstance(x, str) and x for x in layers)
        ):
            raise InvalidFile(f"{path}: setting '{name}' must be a non-empty list of layer names")
        out[name] = tuple(layers)
    return out


def resolve_setting(
    spec: str,
    settings_file: Path | str | None = None,
    available: Iterable[str] | None = None,
) -> tuple[str, ...]:
    """Turn a setting into layer names: a user setting, a built-in one, or 'a,b,c' (whose items
    may themselves be settings, e.g. 'sar_all,coh'). With `available` (the layers every stack
    holds), family names become the stacks' layers (module docstring)."""
    spec = spec.strip()
    user = load_settings_file(settings_file) if settings_file else {}
    named = {**BUILTIN_SETTINGS, **user}
    if spec in named:
        layers = named[spec]
        if spec == ALL_SETTING and spec not in user and available is not None:
            layers = _all_layers(set(available))
    elif "," in spec:
        items = [p.strip() for p in spec.split(",") if p.strip()]
        layers = tuple(name for item in items for name in named.get(item, (item,)))
    elif spec:
        # a single layer name is a valid one-layer setting only if it is not a typo of a setting
        known = ", ".join(sorted(set(BUILTIN_SETTINGS) | set(user)))
        if spec.lower() in {k.lower() for k in BUILTIN_SETTINGS}:
            raise InvalidValue(
                f"unknown setting '{spec}' (settings are case-sensitive: {known})", field="setting"
            )
        layers = (spec,)
    else:
        layers = ()
    if not layers:
        raise InvalidValue(
            "the setting is empty: give s1, s2, s1s2, all, a user setting or 'a,b,c'",
            field="setting",
        )
    if available is not None:
        layers = expand_families(layers, set(available))
    dupes = sorted({x for x in layers if layers.count(x) > 1})
    if dupes:
        raise InvalidValue(
            f"setting '{spec}' names layer(s) twice: {', '.join(dupes)}", field="setting"
        )
    return layers


def check_setting_name(
    spec: str, settings_file: Path | str | None, layers_seen: Iterable[str]
) -> None:
    """A single name that is no setting and no layer of any stack is most often a setting of a
    settings file that was not given: say so, instead of calling it a missing layer."""
    spec = spec.strip()
    if not spec or "," in spec or spec in BUILTIN_SETTINGS or spec in FAMILY_DATES:
        return  # a family the stacks lack gets its own hint from the layer check
    seen = set(layers_seen)
    user = load_settings_file(settings_file) if settings_file else {}
    if spec in user or spec in seen:
        return
    if settings_file is None:
        raise InvalidValue(
            f"settings file not given: '{spec}' is neither a built-in setting "
            f"({', '.join(BUILTIN_SETTINGS)}) nor a layer of the stacks; a setting of your own "
            "needs the settings file that defines it",
            field="settings_file",
        )
    raise InvalidValue(
        f"'{spec}' is not a setting of {settings_file} ({', '.join(user) or 'none'}), not "
        "built in, and not a layer of the stacks",
        field="setting",
    )


def _all_layers(available: set[str]) -> tuple[str, ...]:
    """'all' is the paper's 15 layers; on stacks that lack them but hold Landslide4Sense's 14
    (its imported patches), those 14, so `--setting all` trains on all of a benchmark's bands."""

    if not set(PAPER_LAYERS) <= available and set(L4S_LAYERS) <= available:
        return L4S_LAYERS
    return PAPER_LAYERS


def expand_families(layers: Iterable[str], available: set[str]) -> tuple[str, ...]:
    """Family names as the stacks hold them: the name itself, else every dated layer of it. A
    family the stacks hold in neither form stays as it is, for the layer check to name."""
    out: list[str] = []
    for name in layers:
        dated = [f"{d}{name}" for d in FAMILY_DATES.get(name, ())]
        if name not in available and dated and all(d in available for d in dated):
            out += dated
        else:
            out.append(name)
    return tuple(out)


def family_hint(name: str) -> str:
    """For a missing layer that is a family: what else would have stood for it."""
    if name not in FAMILY_DATES:
        return ""
    dated = ", ".join(f"{d}{name}" for d in FAMILY_DATES[name])
    return f"{name} is a single-date layer {name} or {dated} (layer group {FAMILY_GROUP[name]})"
