#!/usr/bin/env bash
# Install lsd with every dependency at its floor (the lowest version pyproject.toml allows, see
# ci/floors.py) on the floor Python, in a fresh virtual environment outside the checkout, and run
# the suite there. A floor that fails here is not a floor.
#
#   ci/floors.sh [-k EXPR ...]      pytest arguments pass through; the venv is removed afterwards
#   FLOORS_VENV=DIR ci/floors.sh    build (or reuse) the venv in DIR and keep it
#   PYTHON=python3.12 ci/floors.sh  another interpreter than the floor Python
#
# torch comes from the index pip is configured with: from PyPI that is the CUDA build (about
# 5 GB with its libraries); PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu gives the
# CPU build of the same versions.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python$(python3 ci/floors.py --python)}
if [[ -n "${FLOORS_VENV:-}" ]]; then
    venv=$FLOORS_VENV
else
    venv=$(mktemp -d "${TMPDIR:-/tmp}/lsd-floors.XXXXXX")
    trap 'rm -rf "$venv"' EXIT
fi
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
. "$venv/bin/activate"
python3 ci/floors.py > "$venv/floors.txt"
pip install -q -c "$venv/floors.txt" -e '.[dev]'
echo "floor set on Python $(python -c 'import platform; print(platform.python_version())'):"
python ci/floors.py --installed
pytest "$@"
