"""Layer groups: the names `lsd fetch` can make beyond the paper's 15, and how to read them.

A fetch asks for groups (`paper`, `s2bands`, `ndvi`, `s1scenes`); each group stands for a fixed
list of layer names, and a layer name alone says how Earth Engine makes it (`preB8A` is band B8A
of the pre-event composite, `postVH_2` the VH backscatter of the second acquisition after the
event). Every floor reads the same names: the CSV parser and the CLI check groups, the Earth
Engine side dispatches on names, training and prediction find layers by name. Kept free of ee and
torch like the rest of the ground floor.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lsd.errors import InvalidValue
from lsd.layers import LAYER_NOTES, PAPER_LAYERS, S2_BANDS

WINDOWS: tuple[str, ...] = ("pre", "post")

# Sentinel-2 bands of the `s2bands` group: four at 10 m, six at 20 m (resampled to 10 m).
S2_BANDS_10M: tuple[str, ...] = ("B2", "B3", "B4", "B8")
S2_BANDS_20M: tuple[str, ...] = ("B5", "B6", "B7", "B8A", "B11", "B12")
S1_POLARISATIONS: tuple[str, ...] = ("VV", "VH")

# Scenes before + after the event for `s1scenes`: the study compared 1 and 3 on each side.
S1_SCENE_CHOICES: tuple[str, ...] = ("1+1", "3+1", "1+3", "3+3")
DEFAULT_S1_SCENES = "1+1"

LAYER_GROUPS: tuple[str, ...] = ("paper", "s2bands", "ndvi", "s1scenes")
DEFAULT_GROUPS: tuple[str, ...] = ("paper",)

_S2_BAND_RE = re.compile(r"^(pre|post)(B(?:2|3|4|5|6|7|8|8A|11|12))$")
_NDVI_RE = re.compile(r"^(pre|post)NDVI$")
_S1_SCENE_RE = re.compile(r"^(pre|post)(VV|VH)_([1-9])$")


@dataclass(frozen=True)
class S1Scenes:
    """How many Sentinel-1 acquisitions the `s1scenes` group takes before and after the event."""

    pre: int = 1
    post: int = 1

    def __str__(self) -> str:
        return f"{self.pre}+{self.post}"


def parse_s1_scenes(text: str | S1Scenes | None, *, field: str = "s1_scenes") -> S1Scenes:
    """'3+1' -> S1Scenes(3, 1); only the study's four combinations are offered."""
    if isinstance(text, S1Scenes):
        return text
    value = (text or DEFAULT_S1_SCENES).strip().replace(" ", "")
    if value not in S1_SCENE_CHOICES:
        raise InvalidValue(
            f"s1 scenes '{text}' is not one of {', '.join(S1_SCENE_CHOICES)} "
            "(acquisitions before + after the event)",
            field=field,
        )
    pre, post = value.split("+")
    return S1Scenes(int(pre), int(post))


def parse_groups(text: str | Sequence[str], *, field: str = "layers") -> tuple[str, ...]:
    """'paper, s2bands' -> ('paper', 's2bands'); an unknown group is named with the known ones.

    Commas, semicolons or spaces separate groups, so an events.csv cell needs no quoting.
    """
    items = re.split(r"[,;\s]+", text) if isinstance(text, str) else list(text)
    groups = [g.strip() for g in items if g.strip()]
    if not groups:
        raise InvalidValue(f"no layer group given; groups: {', '.join(LAYER_GROUPS)}", field=field)
    for group in groups:
        if group not in LAYER_GROUPS:
            raise InvalidValue(
                f"unknown layer group '{group}'; groups: {', '.join(LAYER_GROUPS)}", field=field
            )
    return tuple(dict.fromkeys(groups))


def s2_band_layers() -> tuple[str, ...]:
    return tuple(f"{w}{b}" for w in WINDOWS for b in S2_BANDS)


def ndvi_layers() -> tuple[str, ...]:
    return tuple(f"{w}NDVI" for w in WINDOWS)


def s1_scene_layers(scenes: S1Scenes) -> tuple[str, ...]:
    """preVV_1 .. preVV_n, preVH_1 .. preVH_n, then the same after; _1 is nearest the event."""
    counts = {"pre": scenes.pre, "post": scenes.post}
    return tuple(
        f"{w}{pol}_{i}"
        for w in WINDOWS
        for pol in S1_POLARISATIONS
        for i in range(1, counts[w] + 1)
    )


def group_layers(groups: Iterable[str], scenes: S1Scenes | str | None = None) -> tuple[str, ...]:
    """The layer names of the groups, in group order, each once: the stack's band order."""
    s1 = parse_s1_scenes(scenes)
    names: list[str] = []
    for group in parse_groups(list(groups)):
        if group == "paper":
            names += PAPER_LAYERS
        elif group == "s2bands":
            names += s2_band_layers()
        elif group == "ndvi":
            names += ndvi_layers()
        else:
            names += s1_scene_layers(s1)
    return tuple(dict.fromkeys(names))


# --------------------------------------------------------------------------- reading names


def s2_band_of(name: str) -> tuple[str, str] | None:
    """('pre', 'B8A') for 'preB8A'; None for any other name."""
    m = _S2_BAND_RE.match(name)
    return (m.group(1), m.group(2)) if m else None


def ndvi_of(name: str) -> str | None:
    """'pre' for 'preNDVI'; None for any other name."""
    m = _NDVI_RE.match(name)
    return m.group(1) if m else None


def s1_scene_of(name: str) -> tuple[str, str, int] | None:
    """('post', 'VH', 2) for 'postVH_2' (1 = nearest the event); None for any other name."""
    m = _S1_SCENE_RE.match(name)
    return (m.group(1), m.group(2), int(m.group(3))) if m else None


def is_fetchable(name: str) -> bool:
    """True for every layer name some group makes (and so Earth Engine can compute)."""
    return (
        name in PAPER_LAYERS
        or s2_band_of(name) is not None
        or ndvi_of(name) is not None
        or s1_scene_of(name) is not None
    )


def scenes_needed(layers: Iterable[str]) -> dict[str, int]:
    """Sentinel-1 acquisitions each window must hold for the scene layers among `layers`."""
    need = {"pre": 0, "post": 0}
    for name in layers:
        scene = s1_scene_of(name)
        if scene is not None:
            need[scene[0]] = max(need[scene[0]], scene[2])
    return need


def windows_needed(layers: Iterable[str]) -> set[str]:
    """Sensor windows ('s1_pre', 's2_post', ...) whose images the layers are made from.

    landCover is trained on the pre-event radar and optical composites; dNDVI uses both optical
    windows; the paper's radar layers both radar windows (layover, shadow and liaDeg come from
    the post window, but they ship with the composites, as in the paper).
    """
    names = set(layers)
    needs: set[str] = set()
    if names & set(PAPER_LAYERS[:9]):
        needs |= {"s1_pre", "s1_post"}
    if "landCover" in names:
        needs |= {"s1_pre", "s2_pre"}
    if "dNDVI" in names:
        needs |= {"s2_pre", "s2_post"}
    for name in names:
        band, ndvi, scene = s2_band_of(name), ndvi_of(name), s1_scene_of(name)
        if band is not None:
            needs.add(f"s2_{band[0]}")
        if ndvi is not None:
            needs.add(f"s2_{ndvi}")
        if scene is not None:
            needs.add(f"s1_{scene[0]}")
    return needs


def layer_note(name: str) -> str | None:
    """What a layer's values mean, for the 'meaning' band metadata of stack.tif; None for a
    name no group makes."""
    if name in LAYER_NOTES:
        return LAYER_NOTES[name]
    if (band := s2_band_of(name)) is not None:
        window, b = band
        how = "20 m band resampled bilinearly to 10 m" if b in S2_BANDS_20M else "10 m band"
        return (
            f"reflectance 0-1 (DN x 1e-4; level in event.json s2_level), {b} of the "
            f"{window}-event greenest-pixel composite; {how}"
        )
    if (window := ndvi_of(name)) is not None:
        return f"NDVI of the {window}-event greenest-pixel composite (the one dNDVI uses)"
    if (scene := s1_scene_of(name)) is not None:
        window, pol, i = scene
        side = "before" if window == "pre" else "after"
        return (
            f"dB, terrain-flattened gamma0 {pol} of acquisition {i} {side} the event (1 = "
            "nearest; event.json s1_scenes); NoData in layover/shadow"
        )
    return None
