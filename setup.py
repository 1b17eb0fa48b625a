"""Which packages the distribution holds, found by walking the folders rather than listed.

One import namespace, `lsd`: the ground floor is the folder lsd/, and the top-level folders gee/,
stac/, training/ and pipeline/ are installed as its subpackages (editable installs too), so
nothing generic lands in site-packages. setuptools' automatic discovery cannot map a folder to
another name, and a hand-written list once left `lsd.pipeline.sources` out of every wheel; so
every package under each floor is found here, and ci/wheel_check.sh checks the built wheel against
the source tree. Everything else about the distribution is in pyproject.toml.
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
# package name -> folder; a subpackage lies in the matching subfolder (lsd.pipeline.sources in
# pipeline/sources), which setuptools derives from these entries
FLOORS = {
    "lsd": "lsd",
    "lsd.gee": "gee",
    "lsd.stac": "stac",
    "lsd.training": "training",
    "lsd.pipeline": "pipeline",
}


def packages() -> list[str]:
    """Every floor and every package below it (a folder with an __init__.py)."""
    return [
        name
        for package, folder in FLOORS.items()
        for name in (package, *(f"{package}.{sub}" for sub in find_packages(ROOT / folder)))
    ]


setup(packages=packages(), package_dir=FLOORS)
