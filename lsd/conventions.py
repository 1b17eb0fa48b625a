"""Conventions of a stack: the choices that change what a layer's values mean, not its name.

A model learns the values of its training stacks. Two stacks can carry the same layer names and
still disagree on what the values are: `liaDeg` and the backscatter of east- and west-facing
slopes are mirrored between the Vollrath and the gee_s1_ard flattening sign, `layover` = 1 means
"distorted" in one stack and "valid" in another, VV is in dB or linear power. Nothing fails when
such a stack meets a model trained on the other kind; the map is simply wrong. So every stack
says its conventions, and predict and evaluate compare them with the model's.

The vocabulary (`NAMES`) and the record, one entry per name in event.json's `conventions`:

    {"flattening": {"value": "vollrath", "how": "recorded", "evidence": "..."}, ...}

`how` is `recorded` (the maker of the stack knew: `lsd fetch`), `detected` (read from the pixels
by lsd.conventions_detect, the evidence says how) or `unknown` (value `unknown`, the evidence
says why). A difference in a *strict* convention (flattening, distortion_flags, radar_scale)
makes predict and evaluate refuse; one in snow_mask or land_cover is a warning; dem and source
differ between perfectly compatible stacks (every fetch differs from an import in its source)
and are only reported.

The record also travels in stack.tif: the dataset tag `LSD_CONVENTIONS` holds it as JSON and
each band's `conventions` tag names the conventions its values depend on, so a stack copied out
of its event folder still says what it is. Bundles and RUNS folders keep the combined record of
their training events (`combine`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsd.bundles import MANIFEST_FILE, META_FILE, open_models
from lsd.errors import ConventionMismatch, InputNotFound, InvalidFile
from lsd.events import EVENT_FILE, STACK_FILE, list_events, read_event
from lsd.files import read_json
from lsd.formats import opened
from lsd.layergroups import layer_note
from lsd.runs import GRID_FILE, read_grid_record, read_leaderboard

FLATTENING = "flattening"
DISTORTION_FLAGS = "distortion_flags"
RADAR_SCALE = "radar_scale"
SNOW_MASK = "snow_mask"
DEM = "dem"
LAND_COVER = "land_cover"
SOURCE = "source"
# Whether VV/VH were set to no data in layover and shadow (the Earth Engine fetch records
# per_scene or none): values in distorted areas exist in one stack and not in the other.
DISTORTION_MASKING = "distortion_masking"
# What per_scene masking does, in the words both sources record (conventions and provenance).
PER_SCENE_MASKING = (
    "each scene's VV, VH masked on its own layover/shadow before the median; no data where every "
    "scene of a window is distorted"
)


def distortion_flag_rule(passes: int) -> str:
    """Where the layover and shadow flags of a per-scene-masked stack are 1 (both sources)."""
    two = "; with two passes, where both are distorted" if passes > 1 else ""
    return (
        "where every scene of the pre or the post window is distorted, by the kind of "
        "distortion those scenes show" + two
    )


NAMES: tuple[str, ...] = (
    FLATTENING, DISTORTION_FLAGS, RADAR_SCALE, DISTORTION_MASKING, SNOW_MASK, DEM, LAND_COVER,
    SOURCE,
)  # fmt: skip

UNKNOWN = "unknown"
HOWS: tuple[str, ...] = ("recorded", "detected", "unknown")

# The flattening signs lsd fetch can make; a catalog's own model (e.g. rtc-gamma0) is also a value.
FLATTENING_SIGNS: tuple[str, ...] = ("vollrath", "gee_s1_ard")
FLAGS_DISTORTED = "1=distorted"
FLAGS_VALID = "1=valid"
# Conventions whose values are a closed set.
CLOSED: dict[str, tuple[str, ...]] = {
    DISTORTION_FLAGS: (FLAGS_DISTORTED, FLAGS_VALID),
    RADAR_SCALE: ("db", "linear"),
}
STRICT: frozenset[str] = frozenset({FLATTENING, DISTORTION_FLAGS, RADAR_SCALE})
CAUTION: frozenset[str] = frozenset({DISTORTION_MASKING, SNOW_MASK, LAND_COVER})

STACK_TAG = "LSD_CONVENTIONS"  # dataset tag of stack.tif: the record as JSON
BAND_TAG = "conventions"  # band tag: the conventions that band's values depend on

Conventions = dict[str, dict[str, str]]

# ----------------------------------------------------------------------------- entries


def entry(value: str, how: str, evidence: str = "") -> dict[str, str]:
    if how not in HOWS:
        raise ValueError(f"how must be one of {HOWS}, not {how!r}")
    return {"value": value if how != "unknown" else UNKNOWN, "how": how, "evidence": evidence}


def recorded(value: str, evidence: str = "") -> dict[str, str]:
    return entry(value, "recorded", evidence)


def detected(value: str, evidence: str) -> dict[str, str]:
    return entry(value, "detected", evidence)


def unknown(reason: str) -> dict[str, str]:
    return entry(UNKNOWN, "unknown", reason)


def complete(
    record: Mapping[str, Mapping[str, str]] | None, reason: str = "not recorded"
) -> Conventions:
    """Every name of the vocabulary present: missing ones become `unknown` with `reason`."""
    record = record or {}
    return {n: dict(record[n]) if n in record else unknown(reason) for n in NAMES}


def canonical(name: str, value: str) -> str:
    """The value two records are compared by: the snow mask as '<grow|erode> <metres> m'
    whatever words a source used ('SCL 11 grown 300 m' is 'grow 300 m')."""
    if name == SNOW_MASK:
        found = re.search(r"\b(grow|erode)n?d?\s+(\d+(?:\.\d+)?)\s*m\b", value)
        if found:
            return f"{found.group(1)} {float(found.group(2)):g} m"
    return value


def known(record: Mapping[str, Mapping[str, str]], name: str) -> str | None:
    """The value of a convention, or None when it is unknown (or absent)."""
    item = record.get(name)
    if not item or item.get("how") == "unknown" or item.get("value") in (None, UNKNOWN):
        return None
    return str(item["value"])


def check_record(raw: Any, where: str) -> Conventions:
    """A `conventions` record as read from a file, checked; missing names become unknown.
    Names outside the vocabulary (a newer lsd's) are kept, in the same shape, but never compared.

    Raises:
        InvalidFile: not an object of entries, an entry without a value, or a value out of its
            set.
    """
    if not isinstance(raw, dict):
        raise InvalidFile(f"{where}: 'conventions' must be an object of name -> entry")
    for name, item in raw.items():
        if not isinstance(item, dict) or not isinstance(item.get("value"), str):
            raise InvalidFile(f"{where}: convention '{name}' needs a 'value' text")
        how = item.get("how", "recorded")
        if how not in HOWS:
            raise InvalidFile(
                f"{where}: convention '{name}' has how {how!r}; expected {' or '.join(HOWS)}"
            )
        value = item["value"]
        allowed = CLOSED.get(name)
        if how != "unknown" and allowed and value not in allowed:
            raise InvalidFile(
                f"{where}: convention '{name}' = {value!r} must be {' or '.join(allowed)} "
                "(or unknown)"
            )
    checked = {
        n: entry(i["value"], i.get("how", "recorded"), str(i.get("evidence", "")))
        for n, i in raw.items()
    }
    return {**complete(checked), **{n: e for n, e in checked.items() if n not in NAMES}}


def summary(record: Mapping[str, Mapping[str, str]], names: Iterable[str] = NAMES) -> str:
    """'flattening vollrath, distortion_flags 1=distorted, ...' (unknown ones included)."""
    return ", ".join(f"{n} {record.get(n, {}).get('value', UNKNOWN)}" for n in names)


# ----------------------------------------------------------------------------- layers

_RADAR = re.compile(r"^(pre|post|d)?(VV|VH)(_[1-9])?$")
_OPTICAL = re.compile(r"^(pre|post)(B(?:2|3|4|5|6|7|8|8A|11|12)|NDVI)$")
FLAG_LAYERS: tuple[str, ...] = ("layover", "shadow")


def is_radar(layer: str) -> bool:
    """Backscatter layers: preVV, postVH, dVV, the scene layers preVV_2, a plain VV."""
    return _RADAR.match(layer) is not None


def affects(name: str, layer: str) -> bool:
    """Whether the values of `layer` depend on the convention `name`."""
    radar = is_radar(layer)
    if name == FLATTENING:
        return radar or layer in (*FLAG_LAYERS, "liaDeg")
    if name == DISTORTION_MASKING:
        return radar
    if name == DISTORTION_FLAGS:
        return layer in FLAG_LAYERS
    if name == RADAR_SCALE:
        return radar
    if name == SNOW_MASK:
        return layer in ("dNDVI", "landCover") or _OPTICAL.match(layer) is not None
    if name == DEM:
        return radar or layer in (*FLAG_LAYERS, "liaDeg", "elevation", "slope")
    if name == LAND_COVER:
        return layer == "landCover"
    return name == SOURCE


def affected_layers(name: str, layers: Iterable[str]) -> list[str]:
    return [layer for layer in layers if affects(name, layer)]


def relevant(layers: Iterable[str]) -> list[str]:
    """The conventions that change at least one of `layers`, in vocabulary order."""
    layers = list(layers)
    return [n for n in NAMES if affected_layers(n, layers)]


# ----------------------------------------------------------------------------- stack tags


def stack_tags(record: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """The dataset tags of a stack.tif that carries `record`."""
    return {STACK_TAG: json.dumps(dict(record), separators=(",", ":"), sort_keys=True)}


def band_tag(record: Mapping[str, Mapping[str, str]], layer: str) -> str | None:
    """'distortion_flags 1=valid; flattening gee_s1_ard' for a band, or None when no known
    convention changes its values (free-text conventions stay in the dataset tag)."""
    parts = [
        f"{name} {known(record, name)}"
        for name in (DISTORTION_FLAGS, FLATTENING, RADAR_SCALE)
        if affects(name, layer) and known(record, name)
    ]
    return "; ".join(parts) or None


def flag_meaning(layer: str, polarity: str) -> str:
    """The `meaning` band tag of layover or shadow under a polarity."""
    what = "layover" if layer == "layover" else "radar shadow"
    if polarity == FLAGS_VALID:
        return f"1 = valid (no {what}), 0 = {what} (distorted, VV/VH NoData)"
    return f"1 = {what} (distorted, VV/VH NoData), 0 = not"


def layer_meaning(layer: str, record: Mapping[str, Mapping[str, str]] | None) -> str | None:
    """What a layer's values mean (the `meaning` band tag), under the stack's conventions."""

    polarity = known(record or {}, DISTORTION_FLAGS)
    if layer in FLAG_LAYERS and polarity:
        return flag_meaning(layer, polarity)
    return layer_note(layer)


def read_stack_tags(stack: Path | str) -> Conventions | None:
    """The record in a stack.tif's dataset tag, or None when it has none."""

    stack = Path(stack)
    with opened(stack) as src:  # a user's stack: through the gate, never its neighbours
        text = src.tags().get(STACK_TAG)
    if not text:
        return None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError:
        raise InvalidFile(f"{stack}: its {STACK_TAG} tag is not JSON") from None
    return check_record(raw, f"{stack} ({STACK_TAG} tag)")


# ----------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class Difference:
    """One convention on which a model and a stack disagree, and the layers it changes."""

    name: str
    layers: tuple[str, ...]
    model: dict[str, str]
    stack: dict[str, str]

    @property
    def strict(self) -> bool:
        return self.name in STRICT

    def line(self, stack_where: str, model_where: str) -> str:
        shown = ", ".join(self.layers[:4]) + (" ..." if len(self.layers) > 4 else "")
        return (
            f"{stack_where}: layer(s) {shown}: {self.name} is {self.stack['value']} "
            f"({self.stack['how']}) but the training data of {model_where} had "
            f"{self.model['value']} ({self.model['how']})"
        )


@dataclass(frozen=True)
class Comparison:
    """What a model and a stack share: differences, and the relevant conventions that one of
    them does not know (nothing can be checked there)."""

    differences: tuple[Difference, ...]
    unknown_in_stack: tuple[str, ...]
    unknown_in_model: tuple[str, ...]

    @property
    def refusals(self) -> list[Difference]:
        return [d for d in self.differences if d.strict]

    @property
    def cautions(self) -> list[Difference]:
        return [d for d in self.differences if d.name in CAUTION]

    @property
    def notes(self) -> list[Difference]:
        return [d for d in self.differences if not d.strict and d.name not in CAUTION]

    def record(self) -> dict[str, Any]:
        return {
            "differences": [
                {"convention": d.name, "layers": list(d.layers), "model": d.model,
                 "stack": d.stack}
                for d in self.differences
            ],
            "unknown_in_stack": list(self.unknown_in_stack),
            "unknown_in_model": list(self.unknown_in_model),
        }  # fmt: skip


def compare(
    model: Mapping[str, Mapping[str, str]],
    stack: Mapping[str, Mapping[str, str]],
    layers: Sequence[str],
) -> Comparison:
    """Compare the conventions that change `layers` (the model's inputs); an unknown on either
    side is no difference, but is reported for the strict conventions."""
    diffs, no_stack, no_model = [], [], []
    for name in relevant(layers):
        m, s = known(model, name), known(stack, name)
        if m is None or s is None:
            if name in STRICT:
                (no_model if m is None else no_stack).append(name)
            continue
        if canonical(name, m) != canonical(name, s):
            diffs.append(
                Difference(
                    name, tuple(affected_layers(name, layers)), dict(model[name]), dict(stack[name])
                )  # fmt: skip
            )
    return Comparison(tuple(diffs), tuple(no_stack), tuple(no_model))


# ----------------------------------------------------------------------------- combination


def combine(records: Sequence[tuple[str, Mapping[str, Mapping[str, str]] | None]]) -> Conventions:
    """One record for several stacks (a dataset, a model's training events).

    `records` holds (name, record or None) per stack, the name as messages should show it. A
    strict convention with two known values is refused, naming a stack of each; a free-text one
    becomes 'mixed: a (n), b (m)'; stacks that do not know a convention are left out of it.

    Raises:
        ConventionMismatch: two stacks disagree on a strict convention.
    """
    out: Conventions = {}
    total = len(records)
    for name in NAMES:
        seen: dict[str, list[tuple[str, dict[str, str]]]] = {}
        for where, rec in records:
            value = known(rec or {}, name)
            if value is not None:
                seen.setdefault(value, []).append((where, dict((rec or {})[name])))
        if not seen:
            out[name] = unknown(f"none of the {total} stack(s) records or shows it")
            continue
        if len(seen) > 1 and name in STRICT:
            (a, [(wa, ea), *_]), (b, [(wb, eb), *_]) = list(seen.items())[:2]
            raise ConventionMismatch(
                f"{name} differs within one dataset: {wa} has {a} ({ea['how']}: "
                f"{_short(ea['evidence'])}) but {wb} has {b} ({eb['how']}: "
                f"{_short(eb['evidence'])}); keep stacks of each convention in their own data "
                "folder"
            )
        entries = [e for group in seen.values() for _, e in group]
        how = "recorded" if all(e["how"] == "recorded" for e in entries) else "detected"
        count = sum(len(g) for g in seen.values())
        if len(seen) == 1:
            value = next(iter(seen))
            first = entries[0]["evidence"]
            evidence = f"{count} of {total} stack(s)" + (f"; e.g. {_short(first)}" if first else "")
        else:
            value = "mixed: " + ", ".join(f"{v} ({len(g)})" for v, g in seen.items())
            evidence = f"{count} of {total} stack(s) record it"
        out[name] = entry(value, how, evidence)
    return out


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------- reading


def of_event_meta(meta: Mapping[str, Any], where: str) -> Conventions | None:
    """The record of an event.json (as read); for a folder fetched before conventions were
    recorded, what its fetch settings say; None when nothing says anything."""
    raw = meta.get("conventions")
    if raw is None:
        return _older_fetch(meta)
    return check_record(raw, where)


def _older_fetch(meta: Mapping[str, Any]) -> Conventions | None:
    """An Earth Engine fetch recorded its settings in event.json `source.config` before it
    recorded conventions: the flattening sign and snow mask were settings, the flags 1 =
    distorted and the backscatter dB (the only ones that fetch could make)."""
    source = meta.get("source")
    if not isinstance(source, dict) or source.get("kind") != "earthengine":
        return None
    config = source.get("config")
    if not isinstance(config, dict):
        return None
    why = "event.json source.config of a fetch made before lsd recorded conventions"
    rec: dict[str, dict[str, str]] = {
        DISTORTION_FLAGS: recorded(FLAGS_DISTORTED, f"{why}: that fetch wrote 1 = distorted"),
        RADAR_SCALE: recorded("db", f"{why}: that fetch wrote dB"),
        SOURCE: recorded("earthengine", why),
    }
    if isinstance(config.get("mask_distortions"), bool):
        rec[DISTORTION_MASKING] = recorded(
            "post_window_union" if config["mask_distortions"] else "none",
            f"{why}: mask_distortions",
        )
    sign = config.get("look_convention")
    if sign in FLATTENING_SIGNS:
        rec[FLATTENING] = recorded(sign, f"{why}: look_convention")
    mode, metres = config.get("snow_mode"), config.get("snow_buffer_m")
    if mode in ("grow", "erode") and isinstance(metres, int | float):
        rec[SNOW_MASK] = recorded(f"{mode} {metres:g} m", f"{why}: snow_mode, snow_buffer_m")
    provenance = source.get("provenance")
    dem = provenance.get("dem_asset") if isinstance(provenance, dict) else None
    if isinstance(dem, str):
        rec[DEM] = recorded(dem, f"{why}: provenance dem_asset")
    return complete(rec, f"{why} does not say")


def of_stack(stack: Path | str) -> tuple[Conventions | None, str]:
    """A stack's record and where it came from: the event.json beside a stack.tif, else the
    stack's own tag; (None, reason) when neither says anything."""

    stack = Path(stack)
    meta_path = stack.parent / EVENT_FILE
    if stack.name == STACK_FILE and meta_path.is_file():
        meta = read_json(meta_path)
        found = of_event_meta(meta, str(meta_path)) if isinstance(meta, dict) else None
        if found is not None:
            return found, str(meta_path)
    tagged = read_stack_tags(stack)
    if tagged is not None:
        return tagged, f"{stack} ({STACK_TAG} tag)"
    return None, f"nothing recorded with the stack (no event.json beside it, no {STACK_TAG} tag)"


def of_events(events: Sequence[Any]) -> Conventions:
    """The combined record of event folders (lsd.events.EventFolder); folders written before
    conventions were recorded count as unknown."""
    recs = [
        (f"event {ev.event_id}", of_event_meta(ev.meta, str(ev.path / "event.json")))
        for ev in events
    ]
    return combine(recs)


def of_bundle_extra(extra: Mapping[str, Any], where: str) -> Conventions | None:
    """The record a bundle keeps in bundle.json `extra`; None for a bundle trained before lsd
    recorded conventions."""
    raw = extra.get("conventions")
    return None if raw is None else check_record(raw, where)


def of_models(metas: Sequence[Any], folders: Sequence[Path]) -> Conventions | None:
    """The conventions of an ensemble's members (lsd.bundles.BundleMeta); None when they predate
    conventions. Members trained on data of other conventions cannot share one input stack.

    Raises:
        ConventionMismatch: two members were trained on data of different strict conventions.
    """
    recs = [
        (str(folder), of_bundle_extra(meta.extra, str(folder / "bundle.json")))
        for meta, folder in zip(metas, folders, strict=True)
    ]
    if all(rec is None for _, rec in recs):
        return None
    present = [(w, r) for w, r in recs if r is not None]
    return combine(present) if len(present) > 1 else present[0][1]


def of_source(path: Path | str) -> tuple[Conventions, str]:
    """The conventions to match, from an event folder, a data folder, a RUNS folder, an
    ensemble or a model bundle; also a few words on what the path was.

    Raises:
        InputNotFound: the path is not there.
        InvalidFile: it is none of those, or holds no conventions.
    """

    path = Path(path)
    if not path.exists():
        raise InputNotFound(f"{path}: not found")
    if path.is_file() and path.name == STACK_FILE:
        path = path.parent
    if not path.is_dir():
        raise InvalidFile(f"{path}: give an event or data folder, a RUNS folder or a model")
    if (path / MANIFEST_FILE).is_file() or (path / META_FILE).is_file():
        models = open_models(path)
        rec = of_models(models.metas, models.folders)
        what = "model"
    elif (path / GRID_FILE).is_file():
        grid = read_grid_record(path) or {}
        raw = grid.get("conventions")
        if raw is not None:
            rec = check_record(raw, str(path / GRID_FILE))
        else:
            entries = read_leaderboard(path)
            rec = of_bundle_extra(entries[0].meta().extra, str(entries[0].bundle))
        what = "RUNS folder"
    elif (path / STACK_FILE).is_file() and (path / EVENT_FILE).is_file():
        ev = read_event(path, need_label=False)
        rec = of_event_meta(ev.meta, str(path / EVENT_FILE))
        what = "event folder"
    else:
        rec = of_events(list_events(path, need_label=False))
        what = "data folder"
    if rec is None or all(known(rec, n) is None for n in STRICT):
        raise InvalidFile(
            f"{path}: this {what} records no conventions (made before lsd recorded them, or "
            "none could be detected); nothing to match"
        )
    return rec, what
