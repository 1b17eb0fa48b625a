"""Whether the installed dependencies are new enough for what lsd is asked to do.

pyproject.toml holds the floors, the lowest versions that ci/floors.sh installed and passed the
suite with. pip enforces them when lsd is installed, but an environment changes afterwards (a
torch build for another CUDA put in later, conda, `--no-deps`), and below a floor lsd fails deep
inside a library with a message that names neither the package nor a version: under torch 2.6
every checkpoint reads as "not a readable torch checkpoint (module 'torch.serialization' has no
attribute 'get_unsafe_globals_in_checkpoint')". So each command checks the packages it uses
before doing anything, and one too old is one line naming it, the version found, the floor and
the pip command.

The floors come from lsd's installed metadata (its Requires-Dist, written from pyproject.toml),
so they are written in one place; the versions found come from each package's metadata, without
importing it: the check costs milliseconds and never loads torch.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

from lsd.errors import DependencyTooOld

# The heavy stacks only some commands use; every other runtime dependency is checked by all.
TORCH_STACK: tuple[str, ...] = ("torch", "torchvision", "segmentation-models-pytorch")
EARTH_ENGINE_STACK: tuple[str, ...] = ("earthengine-api", "google-cloud-storage")
STAC_STACK: tuple[str, ...] = ("pystac-client", "planetary-computer", "scikit-learn")
RAY: tuple[str, ...] = ("ray",)
ONNX: tuple[str, ...] = ("onnxruntime", "onnx")


def canonical(name: str) -> str:
    """PEP 503's normal form: "Segmentation_Models_PyTorch" and "segmentation-models-pytorch"
    are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def declared() -> tuple[tuple[str, str | None, bool], ...]:
    """(canonical name, `>=` floor or None, whether only an extra needs it) for each requirement
    of lsd; empty where lsd runs without installed metadata (nothing to compare with)."""

    import importlib.metadata  # 20 ms of email and zipfile parsers that `lsd --help` never needs

    from packaging.requirements import InvalidRequirement, Requirement

    try:
        lines = importlib.metadata.requires("lsd") or []
    except importlib.metadata.PackageNotFoundError:
        return ()
    found = []
    for line in lines:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        floor = next((s.version for s in req.specifier if s.operator == ">="), None)
        extra = req.marker is not None and "extra" in str(req.marker)
        found.append((canonical(req.name), floor, extra))
    return tuple(found)


def declared_floors() -> dict[str, str]:
    """Canonical name -> the lowest version lsd allows, for the runtime needs and the extras."""
    return {name: floor for name, floor, _ in declared() if floor is not None}


def core_names() -> tuple[str, ...]:
    """The runtime dependencies outside the heavy stacks: every command checks them."""
    heavy = {*TORCH_STACK, *EARTH_ENGINE_STACK}
    return tuple(name for name, _, extra in declared() if not extra and name not in heavy)


@functools.cache  # what is installed does not change under a running process
def installed_version(name: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def release(version: str) -> tuple[int, ...] | None:
    """The release numbers of a version, trailing zeros dropped; None if it is not PEP 440.

    Only the release counts: a pre-release or source build of the floor ("2.6.0a0+git1a2b",
    what a torch built from its repository reports) has the floor's API, so it passes."""
    from packaging.version import InvalidVersion, Version

    try:
        parts = list(Version(version).release)
    except InvalidVersion:
        return None
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def too_old(
    names: Iterable[str], found: Mapping[str, str | None], floors: Mapping[str, str]
) -> list[tuple[str, str | None, str]]:
    """(name, version found or None when absent, floor) for each name below its floor. A name
    without a floor, or a version that cannot be read, is not judged."""
    low = []
    for name in dict.fromkeys(canonical(n) for n in names):
        floor = floors.get(name)
        if floor is None:
            continue
        version = found.get(name)
        if version is None:
            low.append((name, None, floor))
            continue
        have, need = release(version), release(floor)
        if have is not None and need is not None and have < need:
            low.append((name, version, floor))
    return low


def message(low: list[tuple[str, str | None, str]]) -> str:
    """One line: what is too old or missing, and the pip command that fixes all of it."""
    parts = [
        f"{name} {version} (needs >={floor})"
        if version
        else f"{name} (not installed, needs >={floor})"
        for name, version, floor in low
    ]
    verb = "is" if len(low) == 1 else "are"
    what = "too old or missing" if any(v is None for _, v, _ in low) else "too old"
    reqs = " ".join(f"'{name}>={floor}'" for name, _, floor in low)
    return f"{', '.join(parts)} {verb} {what} for lsd: pip install --upgrade {reqs}"


def require(
    *names: str,
    found: Mapping[str, str | None] | None = None,
    floors: Mapping[str, str] | None = None,
) -> None:
    """Raise DependencyTooOld, in one line, if a named package is below lsd's floor for it.

    `found` and `floors` default to what is installed and what lsd declares; passing them
    checks other versions without installing them."""
    floors = declared_floors() if floors is None else floors
    if found is None:
        found = {canonical(n): installed_version(n) for n in names}
    low = too_old(names, found, floors)
    if low:
        raise DependencyTooOld(message(low))


def require_for_command(*stacks: tuple[str, ...]) -> None:
    """The check a command makes before it starts: every runtime dependency outside the heavy
    stacks, and the stacks (TORCH_STACK, EARTH_ENGINE_STACK) it names."""
    require(*core_names(), *(name for stack in stacks for name in stack))
