"""Conventions where the commands meet them: a stack's own (recorded, or detected when it has
none), checked against a model's before predict and evaluate, set for a fetch that must match
a dataset or a model, and detected on import (lsd.conventions, lsd.conventions_detect).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lsd import conventions as cv
from lsd.conventions_detect import WINDOW, detect, detect_stack, geometry_of
from lsd.errors import ConventionMismatch, InvalidValue
from lsd.gee.config import CONVENTION_FIELDS, config_for_conventions
from lsd.pipeline.layer_stats import stack_path

NO_METADATA = "no metadata"


@dataclass
class StackConventions:
    """A stack's conventions and where they came from: its event.json, its tags, or (neither)
    the pixels."""

    record: cv.Conventions
    where: str
    from_pixels: bool = False


def of_stack(stack: Path | str, passes: Sequence[str] | None = None) -> StackConventions:
    """The recorded conventions of a stack; without any, what its pixels show (the rest
    unknown)."""

    record, where = cv.of_stack(stack)
    if record is not None:
        return StackConventions(record, where)
    found = detect_stack(stack, passes)
    reason = f"{NO_METADATA}: not recorded with the stack, and not detectable from pixels"
    return StackConventions(cv.complete(found, reason), where, from_pixels=True)


# ----------------------------------------------------------------------------- models


@dataclass
class ModelCheck:
    """What comparing a stack with a model found: warnings to show once, and the record for
    run.json."""

    warnings: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)


def check_against_model(
    stack: Path,
    model: cv.Conventions | None,
    layers: Sequence[str],
    *,
    model_where: str,
    ignore: bool = False,
    stack_conv: StackConventions | None = None,
) -> ModelCheck:
    """Refuse a stack whose conventions differ from the model's in a convention that changes
    its layers (unless `ignore`); say once what could not be checked.

    Raises:
        ConventionMismatch: one line naming the layer(s), both conventions and the fetch setting
            that makes a matching stack.
    """
    out = ModelCheck()
    if not any(cv.affected_layers(n, layers) for n in cv.STRICT):
        out.record = {"checked": "the model reads no layer a strict convention changes"}
        return out
    if model is None:
        out.warnings.append(
            f"{model_where} was trained before lsd recorded conventions; the stack's flattening "
            "sign, flag polarity and dB scale cannot be checked against it"
        )
        out.record = {"model": None}
        return out
    sc = stack_conv or of_stack(stack)
    comp = cv.compare(model, sc.record, layers)
    out.record = {
        "model": model,
        "stack": sc.record,
        "stack_from": sc.where,
        "detected_from_pixels": sc.from_pixels,
        **comp.record(),
    }
    refusals = comp.refusals
    if refusals and not ignore:
        first = refusals[0]
        more = f" (and {', '.join(d.name for d in refusals[1:])})" if len(refusals) > 1 else ""
        raise ConventionMismatch(
            f"{first.line(str(stack), model_where)}{more}; {fetch_hint(first)}"
        )
    for d in refusals:
        out.warnings.append(f"{d.line(str(stack), model_where)}; mapped anyway as asked")
    for d in comp.cautions:
        out.warnings.append(f"{d.line(str(stack), model_where)}; its values may differ")
    if comp.unknown_in_stack:
        names = ", ".join(comp.unknown_in_stack)
        why = sc.where + (" and the pixels do not show them" if sc.from_pixels else "")
        out.warnings.append(
            f"{stack}: conventions {names} unknown: {why}; cannot check them against "
            f"{model_where} ({cv.summary(model, comp.unknown_in_stack)})"
        )
    if comp.unknown_in_model:
        out.warnings.append(
            f"{model_where}: its training data did not record {', '.join(comp.unknown_in_model)}"
            "; cannot check the stack's"
        )
    return out


def fetch_hint(d: cv.Difference) -> str:
    """How to make a stack that matches, in settings (the CLI adds the flag)."""

    fld = CONVENTION_FIELDS.get(d.name)
    if fld:
        return f'a stack fetched with the fetch setting {fld} = "{d.model["value"]}" matches'
    return f"a stack with {d.name} {d.model['value']} matches"


def model_conventions(model: Any) -> cv.Conventions | None:
    """The conventions of an opened ensemble or bundle (lsd.bundles.ModelFiles)."""
    return cv.of_models(model.metas, model.folders)


def check_events_against_model(
    events: Sequence[Any],
    model: cv.Conventions | None,
    layers: Sequence[str],
    *,
    model_where: str,
    ignore: bool = False,
) -> ModelCheck:
    """check_against_model for event folders (evaluate): the events' combined record (from
    event.json; detected from pixels for folders without one)."""
    recs: list[tuple[str, cv.Conventions | None]] = []
    from_pixels = False
    for ev in events:
        rec = cv.of_event_meta(ev.meta, str(ev.path / "event.json"))
        if rec is None:
            rec, from_pixels = of_stack(ev.stack).record, True
        recs.append((f"event {ev.event_id}", rec))
    combined = cv.combine(recs)
    where = f"the {len(events)} test event(s)"
    sc = StackConventions(combined, where, from_pixels)
    return check_against_model(
        Path(where), model, layers, model_where=model_where, ignore=ignore, stack_conv=sc
    )


# ----------------------------------------------------------------------------- fetch


def matching_fetch_config(
    cfg: Any,
    source: Path,
    file_values: Mapping[str, Any] | None = None,
    settings_file: Path | None = None,
) -> tuple[Any, list[str]]:
    """`cfg` (a FetchConfig) changed so that the stacks it fetches match the conventions of
    `source` (an event or data folder, RUNS folder, ensemble or bundle); and lines saying what
    was set and what could not be.

    Raises:
        InvalidValue: a fetch settings file sets one of those settings to another value.
    """

    record, what = cv.of_source(source)
    where = f"{source} ({what})"
    values, notes = config_for_conventions(record, where)
    for key, value in values.items():
        if file_values and key in file_values and file_values[key] != value:
            raise InvalidValue(
                f"{settings_file or 'the fetch settings'} sets {key} = {file_values[key]!r} but "
                f"{where} needs "
                f"{value!r}; drop one of the two",
                field="conventions_from",
            )
    shown = ", ".join(f"{k} = {v!r}" for k, v in values.items()) or "nothing"
    lines = [f"conventions of {where}: {shown}", *notes]
    return dataclasses.replace(cfg, **values), lines


# ----------------------------------------------------------------------------- import


def detect_for_import(
    arrays: Mapping[str, np.ndarray],
    grid: Any,
    *,
    georeferenced: bool,
    known: Mapping[str, dict[str, str]] | None = None,
    passes: Sequence[str] | None = None,
) -> cv.Conventions:
    """An imported stack's record: what its source knows (`known`), the rest detected from the
    pixels or unknown, each with its evidence."""

    needed = {n: _middle(a, WINDOW) for n, a in arrays.items()
              if n in ("liaDeg", "elevation", *cv.FLAG_LAYERS) or cv.is_radar(n)}  # fmt: skip
    found = detect(needed, geometry_of(grid, georeferenced), passes) if needed else {}
    record = cv.complete({**found, **(known or {})}, "the source does not say")
    for name, item in record.items():
        if item["how"] == "unknown" and not cv.affected_layers(name, arrays):
            record[name] = cv.unknown("the stack has no layer it changes")
    return record


def _middle(a: np.ndarray, side: int) -> np.ndarray:
    """The middle side x side pixels (detection reads no more of a stack on disk either)."""
    h, w = a.shape
    r, c = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return a[r : r + side, c : c + side]


class DatasetConventions:
    """The conventions of an import's stacks so far; a stack that disagrees with an earlier one
    on a strict convention is refused, naming both."""

    def __init__(self) -> None:
        self.records: list[tuple[str, cv.Conventions]] = []

    def add(self, where: str, record: cv.Conventions) -> cv.Conventions:
        cv.combine([*self.records, (where, record)])
        self.records.append((where, record))
        return record


# ----------------------------------------------------------------------------- inspect


def inspect_found(stacks: Sequence[Path]) -> list[tuple[Path, StackConventions]]:
    """Each stack (a stack.tif or an event folder) with its conventions."""

    return [(Path(s), of_stack(stack_path(s))) for s in stacks]


def inspect_lines(found: Sequence[tuple[Path, StackConventions]]) -> list[str]:
    """The conventions of each stack side by side, each with how it is known, then the
    evidence."""
    header = ["convention"] + [str(s) for s, _ in found]
    names = list(cv.NAMES) + sorted({n for _, sc in found for n in sc.record} - set(cv.NAMES))
    missing = cv.unknown("")
    rows = [
        [name]
        + [
            f"{sc.record.get(name, missing)['value']} ({sc.record.get(name, missing)['how']})"
            for _, sc in found
        ]  # fmt: skip
        for name in names
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    for s, sc in found:
        source = f"{sc.where}; detected from the pixels" if sc.from_pixels else f"from {sc.where}"
        lines.append(f"{s}: {source}")
        for name in names:
            evidence = sc.record.get(name, {}).get("evidence")
            if evidence:
                lines.append(f"  {name}: {evidence}")
    return lines


def inspect_records(found: Sequence[tuple[Path, StackConventions]]) -> list[dict[str, Any]]:
    return [
        {"path": str(s), "from": sc.where, "detected_from_pixels": sc.from_pixels,
         "conventions": sc.record}
        for s, sc in found
    ]  # fmt: skip
