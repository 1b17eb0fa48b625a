"""The house rules, checked by reading the code: one namespace, and imports only go down a floor.

    lsd (ground floor)   imports nothing else of the project, and neither torch nor ee
    lsd.gee              the ground floor and itself; never torch or lsd.training
    lsd.stac             the ground floor and itself; never torch, ee, lsd.gee or lsd.training
    lsd.training         the ground floor and itself; never ee or lsd.gee
    lsd.pipeline         anything (the top floor)

The check walks every import statement, including those inside functions (lsd imports torch and
ee lazily, so a late import is where a violation would hide).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {
    "lsd": "lsd", "gee": "lsd.gee", "stac": "lsd.stac", "training": "lsd.training",
    "pipeline": "lsd.pipeline",
}  # fmt: skip
FLOORS = ("lsd.gee", "lsd.stac", "lsd.training", "lsd.pipeline")
ALLOWED = {
    "lsd": set(),
    "lsd.gee": {"lsd.gee"},
    "lsd.stac": {"lsd.stac"},
    "lsd.training": {"lsd.training"},
    "lsd.pipeline": {"lsd.gee", "lsd.stac", "lsd.training", "lsd.pipeline"},
}
FORBIDDEN_LIBS = {
    "lsd": {"torch", "ee"}, "lsd.gee": {"torch"}, "lsd.stac": {"torch", "ee"},
    "lsd.training": {"ee"},
}  # fmt: skip


def _package(module: str) -> str | None:
    """Which floor an absolute module name belongs to (None: not lsd)."""
    parts = module.split(".")
    if parts[0] != "lsd":
        return None
    name = ".".join(parts[:2])
    return name if name in FLOORS else "lsd"


def imported_modules(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                out.append((node.lineno, "." * node.level + (node.module or "")))
            elif node.module == "lsd":
                out += [(node.lineno, f"lsd.{alias.name}") for alias in node.names]
            elif node.module:
                out.append((node.lineno, node.module))
    return out


def violations(path: Path, package: str) -> list[str]:
    """Every import of `path` (a file of `package`) that breaks the rules, as 'file:line: why'."""
    found = []
    for line, module in imported_modules(path):
        where = f"{path}:{line}"
        top = module.split(".")[0]
        if module.startswith("."):
            found.append(f"{where}: relative import {module} (use lsd.*)")
        elif top in ("gee", "stac", "training", "pipeline"):
            found.append(f"{where}: top-level '{top}' does not exist; import lsd.{top}")
        elif top in FORBIDDEN_LIBS.get(package, set()):
            found.append(f"{where}: {package} must not import {top}")
        else:
            target = _package(module)
            if target and target != "lsd" and target not in ALLOWED[package]:
                found.append(f"{where}: {package} imports {module}, a floor it may not use")
    return found


def project_files() -> list[tuple[Path, str]]:
    return [
        (path, package)
        for folder, package in FOLDERS.items()
        for path in sorted((REPO / folder).rglob("*.py"))
    ]


def test_imports_only_go_down() -> None:
    files = project_files()
    assert len(files) > 40  # the walk really saw the project
    problems = [v for path, package in files for v in violations(path, package)]
    assert problems == []


def test_the_checker_catches_each_kind_of_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import torch\n"
        "from lsd.training import grid\n"
        "def late():\n"
        "    from lsd.pipeline.cli import main\n"
        "    import pipeline.cli\n"
        "from . import sibling\n"
    )
    found = violations(bad, "lsd.gee")
    assert len(found) == 5, found
    assert any("must not import torch" in v for v in found)
    assert any("imports lsd.training," in v for v in found) and any(
        "lsd.pipeline.cli" in v for v in found
    )
    top_floor = violations(bad, "lsd.pipeline")  # may import any floor, but not bare names
    assert len(top_floor) == 2 and all("top-level" in v or "relative" in v for v in top_floor)
    stac = tmp_path / "stac_bad.py"
    stac.write_text(
        "import ee\nimport torch\nfrom lsd.gee import config\nimport lsd.training.grid\n"
    )
    found = violations(stac, "lsd.stac")
    assert len(found) == 4 and any("must not import ee" in v for v in found)
    stac.write_text("from lsd.stac import s2\n")
    assert violations(stac, "lsd.gee") and violations(stac, "lsd.training")


def test_no_sys_path_edits_anywhere() -> None:
    offenders = []
    for path in sorted(REPO.rglob("*.py")):
        if ".venv" in path.parts or path.name == Path(__file__).name:
            continue
        if "sys.path" in path.read_text():
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(REPO)],
        check=True, capture_output=True,
    )  # fmt: skip
    (found,) = out.glob("lsd-*.whl")
    return found


@pytest.mark.slow
def test_the_distribution_installs_one_namespace(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        tops = {name.split("/")[0] for name in zf.namelist()}
        names = set(zf.namelist())
    assert {t for t in tops if not t.endswith(".dist-info")} == {"lsd"}
    subs = ("gee/source.py", "stac/source.py", "training/grid.py", "pipeline/cli.py", "runs.py",
            "pipeline/sources/synthetic.py")  # fmt: skip
    for sub in subs:
        assert f"lsd/{sub}" in names


@pytest.mark.slow
def test_installed_lsd_imports_and_generic_names_do_not(wheel: Path, tmp_path: Path) -> None:
    """Installed from the wheel and run from outside the checkout: lsd.* works, gee, training
    and pipeline are not importable."""
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
         str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    probe = (
        "import importlib.util, lsd, lsd.gee.source, lsd.stac.source, lsd.training.grid\n"
        "import lsd.pipeline.cli\n"
        f"assert lsd.__file__.startswith({str(site)!r}), lsd.__file__\n"
        "names = ('gee', 'stac', 'training', 'pipeline')\n"
        "print([importlib.util.find_spec(n) is None for n in names])\n"
    )
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[True, True, True, True]"


def test_the_wheel_holds_every_module_of_the_source_folders(wheel: Path) -> None:
    """setup.py finds the packages by walking the folders; a subpackage left out is missing from
    every non-editable install (pipeline/sources once was). ci/wheel_check.sh installs the wheel
    and runs the commands from it."""
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    expected = {
        "/".join([*package.split("."), *path.relative_to(REPO / folder).parts])
        for folder, package in FOLDERS.items()
        for path in (REPO / folder).rglob("*.py")
    }
    assert len(expected) > 100 and expected - names == set()
