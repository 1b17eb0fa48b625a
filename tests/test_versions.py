"""The version floors: pyproject's are the ones lsd checks, and a package below its floor is one
line naming it, before the command does anything (and before torch is imported).

Older versions are simulated in two ways, neither of them a mock: through the check's inputs,
and, for the whole command line, by a real distribution record (a `torch-2.5.1.dist-info` folder
on PYTHONPATH) that importlib.metadata finds before the installed one, as it would in an
environment where that version is installed.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lsd.errors import DependencyTooOld, UserError
from lsd.versions import (
    EARTH_ENGINE_STACK,
    ONNX,
    RAY,
    TORCH_STACK,
    core_names,
    declared_floors,
    installed_version,
    message,
    release,
    require,
    too_old,
)

REPO = Path(__file__).resolve().parents[1]
FLOORS = {"torch": "2.6.0", "torchvision": "0.21.0", "rasterio": "1.3.3"}


def ci_floors():
    spec = importlib.util.spec_from_file_location("ci_floors", REPO / "ci" / "floors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_version_below_the_floor_is_one_line_with_the_pip_command() -> None:
    with pytest.raises(DependencyTooOld) as info:
        require("torch", found={"torch": "2.5.1+cu124"}, floors=FLOORS)
    assert str(info.value) == (
        "torch 2.5.1+cu124 (needs >=2.6.0) is too old for lsd: pip install --upgrade 'torch>=2.6.0'"
    )
    assert isinstance(info.value, UserError) and isinstance(info.value, ImportError)


def test_all_that_is_too_old_or_missing_goes_into_the_one_line() -> None:
    found = {"torch": "2.1.0", "torchvision": None, "rasterio": "1.3.2"}
    with pytest.raises(DependencyTooOld) as info:
        require("torch", "torchvision", "rasterio", found=found, floors=FLOORS)
    line = str(info.value)
    assert "\n" not in line
    assert line == (
        "torch 2.1.0 (needs >=2.6.0), torchvision (not installed, needs >=0.21.0), "
        "rasterio 1.3.2 (needs >=1.3.3) are too old or missing for lsd: "
        "pip install --upgrade 'torch>=2.6.0' 'torchvision>=0.21.0' 'rasterio>=1.3.3'"
    )


@pytest.mark.parametrize(
    "version",
    ["2.6.0", "2.6", "2.6.0+cpu", "2.6.1", "2.10.0", "3.0", "2.6.0a0+git1a2b3c", "2.6.0rc1"],
)
def test_the_floor_and_anything_newer_pass(version: str) -> None:
    """Builds of the floor itself (local labels, pre-releases, source builds) carry its API."""
    require("torch", found={"torch": version}, floors=FLOORS)


@pytest.mark.parametrize("version", ["2.5.1", "2.5.99", "1.13.1", "2.5.1+cu124", "2.6.0"])
def test_versions_are_compared_by_number_not_by_text(version: str) -> None:
    low = too_old(["torchvision"], {"torchvision": version}, {"torchvision": "0.21.0"})
    assert low == []  # 2.x > 0.21 although "2" < "0.2" is false and "1.13" < "0.21" as text
    assert too_old(["x"], {"x": "0.9.2"}, {"x": "0.10.0"}) == [("x", "0.9.2", "0.10.0")]


def test_unjudgeable_versions_and_undeclared_names_are_let_through() -> None:
    assert too_old(["torch"], {"torch": "not-a-version"}, FLOORS) == []
    assert too_old(["left-pad"], {"left-pad": "0.0.1"}, FLOORS) == []
    assert release("2.6.0+cu124") == (2, 6) and release("garbage") is None


def test_names_are_matched_in_any_spelling() -> None:
    floors = {"segmentation-models-pytorch": "0.3.4"}
    low = too_old(["Segmentation_Models_PyTorch"], {"segmentation-models-pytorch": "0.3.3"}, floors)
    assert low == [("segmentation-models-pytorch", "0.3.3", "0.3.4")]
    assert "segmentation-models-pytorch 0.3.3 (needs >=0.3.4)" in message(low)


def test_the_checked_floors_are_pyprojects() -> None:
    """lsd reads its floors from the installed metadata; a stale install (pyproject changed,
    `pip install -e .` not rerun) would check old floors, and this says so."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    written = ci_floors().floor_pins(pyproject)
    assert declared_floors() == written, "reinstall: pip install -e '.[dev]'"
    for name in (*TORCH_STACK, *EARTH_ENGINE_STACK, *RAY, *ONNX, "numpy", "rasterio"):
        assert name in declared_floors(), name
    assert "torch" not in core_names() and "earthengine-api" not in core_names()
    assert {"numpy", "rasterio", "packaging"} <= set(core_names())
    assert not {*RAY, *ONNX, "pytest"} & set(core_names())


def test_this_environment_meets_the_floors() -> None:
    """Every runtime floor, and those of the extras installed here (the suite's dev set)."""
    present = [name for name in declared_floors() if installed_version(name) is not None]
    require(*core_names(), *TORCH_STACK, *EARTH_ENGINE_STACK, *present)


def test_the_floor_script_pins_every_floor_and_the_python(tmp_path: Path) -> None:
    floors = ci_floors()
    assert floors.parse("torch>=2.6.0") == ("torch", "2.6.0")
    assert floors.parse('Ray[default] >= 2.10, <3; extra == "ray"') == ("ray", "2.10")
    assert floors.parse("lsd[onnx,paper,ray]") == ("lsd", None)
    out = subprocess.run(
        [sys.executable, str(REPO / "ci" / "floors.py")], capture_output=True, text=True
    )
    pins = dict(line.split("==") for line in out.stdout.split())
    assert pins["torch"] == declared_floors()["torch"] and "lsd" not in pins
    python = subprocess.run(
        [sys.executable, str(REPO / "ci" / "floors.py"), "--python"], capture_output=True,
        text=True,
    ).stdout.strip()  # fmt: skip
    assert python == "3.11"


def fake_old(site: Path, name: str, version: str) -> None:
    """A distribution record saying `name` `version` is installed (metadata only, no code)."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def run_lsd(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`lsd args` in a fresh interpreter that sees the fake records first; prints, after the
    command, whether torch was imported."""
    code = (
        "import sys\n"
        "from lsd.pipeline.cli import main\n"
        "try:\n"
        f"    main({list(args)!r}, prog_name='lsd')\n"
        "finally:\n"
        "    print('torch imported:', 'torch' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_a_torch_command_refuses_an_old_torch_before_it_starts(tmp_path: Path) -> None:
    site = tmp_path / "site"
    fake_old(site, "torch", "2.5.1")
    out = tmp_path / "runs"
    result = run_lsd(
        site, "train", "--setting", "s1", "--data", str(tmp_path / "events"), "--out", str(out),
        cwd=tmp_path,
    )  # fmt: skip
    floor = declared_floors()["torch"]
    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        f"Error: torch 2.5.1 (needs >={floor}) is too old for lsd: "
        f"pip install --upgrade 'torch>={floor}'\n"
    )
    assert "torch imported: False" in result.stdout
    assert not out.exists()


def test_commands_without_torch_do_not_check_it(tmp_path: Path) -> None:
    """`lsd --help` and a command that needs no torch (inspect) work under an old torch; the
    error inspect gives is about its input, the only thing wrong."""
    site = tmp_path / "site"
    fake_old(site, "torch", "1.0.0")
    helped = run_lsd(site, "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "torch imported: False" in helped.stdout
    train_help = run_lsd(site, "train", "--help", cwd=tmp_path)
    assert train_help.returncode == 0 and "--setting" in train_help.stdout
    inspected = run_lsd(site, "inspect", str(tmp_path / "missing.tif"), cwd=tmp_path)
    assert inspected.returncode == 1
    assert inspected.stderr.endswith("missing.tif: stack not found\n")
    assert "1.0.0" not in inspected.stderr


def test_fetch_checks_the_earth_engine_client_and_every_command_checks_numpy(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    fake_old(site, "earthengine-api", "0.1.300")
    events, data = str(tmp_path / "e.csv"), str(tmp_path / "d")
    fetched = run_lsd(site, "fetch", "--event", events, "--out", data, cwd=tmp_path)
    assert fetched.returncode == 1
    assert "earthengine-api 0.1.300 (needs >=" in fetched.stderr
    site2 = tmp_path / "site2"
    fake_old(site2, "numpy", "1.0.0")
    inspected = run_lsd(site2, "inspect", str(tmp_path / "missing.tif"), cwd=tmp_path)
    assert inspected.returncode == 1
    assert inspected.stderr.startswith("Error: numpy 1.0.0 (needs >=")
