"""The committed event folders of tests/data are what their generator writes, and what the core
tests take them for (an event-folder format change must regenerate them, not leave them stale)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lsd.events import list_events
from lsd.rasters import read_label, read_stack
from tests.conftest import GENERATED_EVENTS
from tests.data import make_events

STAMPS = ("written_at", "written_by")  # when and by which release: not part of the content


def test_committed_events_are_what_the_generator_writes(tmp_path: Path) -> None:
    fresh = make_events.write_events(tmp_path / "events")
    assert [p.name for p in fresh] == sorted(p.name for p in GENERATED_EVENTS.iterdir())
    for folder in fresh:
        committed = GENERATED_EVENTS / folder.name
        a, layers_a, grid_a = read_stack(committed / "stack.tif")
        b, layers_b, grid_b = read_stack(folder / "stack.tif")
        assert layers_a == layers_b == make_events.LAYERS and grid_a.same_as(grid_b)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(read_label(committed / "label.tif")[0],
                                      read_label(folder / "label.tif")[0])  # fmt: skip
        old, new = (json.loads((f / "event.json").read_text()) for f in (committed, folder))
        assert {k: v for k, v in old.items() if k not in STAMPS} == {
            k: v for k, v in new.items() if k not in STAMPS
        }


def test_the_events_hold_what_the_tests_rely_on() -> None:
    events = list_events(GENERATED_EVENTS)
    assert len(events) == make_events.EVENTS == 12
    slides = {e.event_id: int((read_label(e.label)[0] == 1).sum()) for e in events}
    empty = {f"gen-{n:02d}" for n in make_events.WITHOUT_LANDSLIDES}
    assert {k for k, v in slides.items() if v == 0} == empty
    assert all(v >= 50 for k, v in slides.items() if k not in empty)
    for event in events:
        stack, _, grid = read_stack(event.stack)
        assert stack.shape == (14, 64, 64) and np.isfinite(stack).all()
        assert grid.crs.to_epsg() == 32633 and grid.transform.a == 10.0
        assert stack.min() >= 0 and stack.max() <= 15
        # a scar is bare soil: red up and near infrared down against the rest of the event
        label = read_label(event.label)[0] == 1
        if label.any():
            red, nir = stack[3], stack[7]
            assert red[label].mean() > red[~label].mean() + 0.5
            assert nir[label].mean() < nir[~label].mean() - 0.5
