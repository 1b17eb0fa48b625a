"""The floor set: every dependency of lsd pinned to the lowest version pyproject.toml allows.

`ci/floors.sh` installs this set into a fresh virtual environment and runs the suite, so a floor
written in pyproject.toml is one that has been installed and tested, not a guess. Prints pip
constraints (`name==version`, one a line) for the runtime dependencies, every extra and the build
backend; `--python` prints the floor of Python instead (from requires-python), and `--installed`
lists what the running interpreter has of each, failing where that is not the floor.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

# name, optional [extras], then the specifiers up to an environment marker. A plain parser, so that
# the script runs on a bare Python before anything is installed.
_SPEC = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*)")


def canonical(name: str) -> str:
    """PEP 503's normal form: pip and importlib.metadata treat the spellings as one name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse(spec: str) -> tuple[str, str | None]:
    """(name, floor) of a requirement; the floor is what `>=` or `==` names, None without one."""
    match = _SPEC.match(spec)
    if match is None:
        sys.exit(f"{PYPROJECT}: cannot read the requirement {spec!r}")
    name, specifiers = match.groups()
    for part in specifiers.split(","):
        bound = re.fullmatch(r"\s*(>=|==|~=)\s*(\S+)\s*", part)
        if bound:
            return canonical(name), bound.group(2)
    return canonical(name), None


def floor_pins(pyproject: dict) -> dict[str, str]:
    """name -> floor for the dependencies, the optional extras and the build requirements."""
    project = pyproject["project"]
    specs = list(project["dependencies"]) + list(pyproject["build-system"]["requires"])
    for extra in project.get("optional-dependencies", {}).values():
        specs += extra
    pins: dict[str, str] = {}
    for spec in specs:
        name, version = parse(spec)
        if name == canonical(project["name"]) or version is None:
            continue
        if pins.get(name, version) != version:
            sys.exit(f"{PYPROJECT}: {name} has two floors, {pins[name]} and {version}")
        pins[name] = version
    return pins


def python_floor(pyproject: dict) -> str:
    version = parse(f"python{pyproject['project']['requires-python']}")[1]
    if version is None:
        sys.exit(f"{PYPROJECT}: requires-python has no lower bound")
    return version


def release(version: str) -> tuple[int, ...]:
    """2.6.0+cu124 -> (2, 6): trailing zeros and local or post labels do not make a new release."""
    parts = [int(p) for p in re.findall(r"\d+", re.split(r"[+a-z]", version.lower())[0])]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def report_installed(pins: dict[str, str]) -> int:
    """One line per pinned name present here; the number of names not at their floor."""
    off = 0
    for name, floor in sorted(pins.items()):
        try:
            found = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an extra that the dev install does not pull in (maps)
        same = release(found) == release(floor)
        off += not same
        print(f"  {name:30} {found:16} {'' if same else f'NOT THE FLOOR {floor}'}")
    return off


def main(argv: list[str]) -> None:
    pyproject = tomllib.loads(PYPROJECT.read_text())
    if argv[1:] == ["--python"]:
        print(python_floor(pyproject))
        return
    if argv[1:] == ["--installed"]:
        sys.exit(1 if report_installed(floor_pins(pyproject)) else 0)
    for name, version in sorted(floor_pins(pyproject).items()):
        print(f"{name}=={version}")


if __name__ == "__main__":
    main(sys.argv)
