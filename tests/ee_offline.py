"""Earth Engine without a server: the ee client initialised from the algorithm signatures that
ship in its wheel (ee/tests/algorithms.json), as the client's own ApiTestCase does.

Any attempt to compute a value (getInfo and friends) fails the test, so graph builders that
quietly talk to the server are caught. Also: helpers that turn a serialised graph back into a
tree of function calls, so tests assert on calls and arguments rather than on substrings.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest


class ServerContacted(AssertionError):
    """Raised when code under test asks the (absent) Earth Engine server for a value."""


@contextlib.contextmanager
def offline_ee() -> Iterator[Any]:
    import ee
    from ee import apitestcase

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise ServerContacted("code under test contacted the Earth Engine server")

    saved = {
        "_install_cloud_api_resource": ee.data._install_cloud_api_resource,
        "getAlgorithms": ee.data.getAlgorithms,
        "computeValue": ee.data.computeValue,
        "getInfo": ee.data.getInfo,
        "getMapId": ee.data.getMapId,
        "getDownloadId": ee.data.getDownloadId,
    }
    saved_stac = ee.deprecation._FetchDataCatalogStac
    ee.Reset()
    ee.data._install_cloud_api_resource = lambda: None
    ee.data.getAlgorithms = apitestcase.GetAlgorithms
    for name in ("computeValue", "getInfo", "getMapId", "getDownloadId"):
        setattr(ee.data, name, refuse)
    ee.deprecation._FetchDataCatalogStac = lambda: {}
    ee.Initialize(None, "", project="lsd-offline-tests")
    try:
        yield ee
    finally:
        ee.Reset()
        for name, value in saved.items():
            setattr(ee.data, name, value)
        ee.deprecation._FetchDataCatalogStac = saved_stac


@pytest.fixture(scope="module")
def ee_offline() -> Iterator[Any]:
    """The ee module, initialised offline for the duration of a test module."""
    with offline_ee() as ee:
        yield ee


# ----------------------------------------------------------------------------- graph walking


@dataclass(eq=False)
class Call:
    """One function invocation of a serialised graph, with its arguments resolved."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Call({self.name}, {sorted(self.args)})"


@dataclass(eq=False)
class Lambda:
    params: list[str]
    body: Any


@dataclass(frozen=True)
class ArgRef:
    name: str


def decode(encoded: dict[str, Any]) -> Any:
    """The cloud-API serialisation ({"result", "values"}) as a DAG of Call/Lambda/values.

    Shared sub-graphs (valueReference) become shared Python objects, so walks stay linear.
    """
    values = encoded["values"]
    memo: dict[str, Any] = {}

    def ref(key: str) -> Any:
        if key not in memo:
            memo[key] = node(values[key])
        return memo[key]

    def node(v: dict[str, Any]) -> Any:
        if "constantValue" in v:
            return v["constantValue"]
        if "valueReference" in v:
            return ref(v["valueReference"])
        if "arrayValue" in v:
            return [node(x) for x in v["arrayValue"]["values"]]
        if "dictionaryValue" in v:
            return {k: node(x) for k, x in v["dictionaryValue"]["values"].items()}
        if "functionInvocationValue" in v:
            inv = v["functionInvocationValue"]
            name = inv.get("functionName") or f"<ref {inv.get('functionReference')}>"
            return Call(name, {k: node(x) for k, x in inv.get("arguments", {}).items()})
        if "functionDefinitionValue" in v:
            fdef = v["functionDefinitionValue"]
            return Lambda(list(fdef["argumentNames"]), ref(fdef["body"]))
        if "argumentReference" in v:
            return ArgRef(v["argumentReference"])
        if "integerValue" in v:
            return int(v["integerValue"])
        if "bytesValue" in v:
            return v["bytesValue"]
        raise ValueError(f"unknown serialised value {sorted(v)}")

    return ref(encoded["result"])


def walk(root: Any) -> Iterator[Any]:
    """Every node reachable from root, each once."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        yield n
        if isinstance(n, Call):
            stack.extend(n.args.values())
        elif isinstance(n, Lambda):
            stack.append(n.body)
        elif isinstance(n, list):
            stack.extend(n)
        elif isinstance(n, dict):
            stack.extend(n.values())


def calls(root: Any, name: str | None = None) -> list[Call]:
    """All calls (of function `name`, if given) reachable from root."""
    return [n for n in walk(root) if isinstance(n, Call) and (name is None or n.name == name)]


def constants(root: Any) -> list[Any]:
    """All scalar constants reachable from root."""
    return [n for n in walk(root) if isinstance(n, (int, float, str, bool))]


def graph_of(obj: Any) -> Any:
    """Serialise an ee object as the client sends it and decode it back into a Call tree."""
    import ee

    return decode(ee.serializer.encode(obj, for_cloud_api=True))


def base_collection(col: Any) -> Any:
    """Follow a chain of Collection.filter/map calls down to the collection it started from."""
    while isinstance(col, Call) and col.name in ("Collection.filter", "Collection.map"):
        col = col.args["collection"]
    return col


def filters_by_collection(root: Any) -> dict[str, list[Call]]:
    """For each ImageCollection.load id, the filters applied to it anywhere in the graph."""
    out: dict[str, list[Call]] = {}
    for c in calls(root, "Collection.filter"):
        base = base_collection(c)
        if isinstance(base, Call) and base.name == "ImageCollection.load":
            lst = out.setdefault(base.args["id"], [])
            if all(f is not c.args["filter"] for f in lst):
                lst.append(c.args["filter"])
    return out
