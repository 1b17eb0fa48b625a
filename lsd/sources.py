"""The data-source seam: anything that turns event specifications into finished event folders.

Earth Engine (`lsd.gee.source`), the importers of published datasets (`lsd.pipeline.sources`)
and, later, a STAC catalog all implement this one protocol. The driver that runs a source
(`lsd.pipeline.sources.build_events`) owns what they share: skipping finished folders, progress,
failure isolation and the summary. So a new source is one module with a class like the one below
plus one line in the registry (docs/architecture.md, "Adding a data source").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from lsd.errors import UserError


class EventFailed(UserError, RuntimeError):
    """One event could not be built; the message is one line that starts with the event id."""


class SourceItem(Protocol):
    """What a source builds one folder from: an EventSpec, a file pair ... with an id."""

    @property
    def event_id(self) -> str: ...


Item = TypeVar("Item", bound=SourceItem)


@runtime_checkable
class DataSource(Protocol[Item]):
    """Builds event folders (lsd.events.write_event) from the items it lists.

    `keep_going`: True where one event can fail for reasons outside the user's files (a remote
    service); the driver then reports it and builds the rest. False where a failure means the
    user's input is wrong; the driver stops at the first one.
    """

    name: str
    keep_going: bool

    def items(self) -> Sequence[Item]:
        """Every item this source would build, checked before anything is written."""
        ...

    def plan(self, item: Item) -> dict[str, Any]:
        """What building the item would do, computed without writing anything (a dry run)."""
        ...

    # Optional: `origin(item) -> dict` names where the item comes from with keys and values
    # that `build` writes into event.json's "source" (e.g. kind, image and mask paths). The
    # driver then skips a finished folder only when it came from the same input, and refuses
    # an id another input already took (two datasets imported into one folder).

    def build(self, item: Item, folder: Path) -> None:
        """Write the item's finished event folder at `folder`, or raise a UserError.

        A source may return without writing event.json when the user has a step to take
        (a Drive export to download); the driver reports such an event as pending.
        """
        ...
