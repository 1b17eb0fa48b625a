#!/usr/bin/env bash
# Install lsd with every dependency at its floor (the lowest version pyproject.toml allows, see
# ci/floors.py) on the floor Python, in a fresh virtual environment outside the checkout, and run
# the suite there. A floor that fails here is not a floor.
#
#   ci/floors.sh [-k EXPR ...]      pytest arguments pass through; the venv is removed afterwards
#   FLOORS_VENV=DIR ci/floors.sh    build (or reuse) the venv in DIR and keep it
#   PYTHON=python3.12 ci/floors.sh  another interpreter than the floor Python
#
# torch comes from PyPI, the CUDA build (about 5 GB with its libraries); with
# UV_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu UV_INDEX_STRATEGY=unsafe-best-match
# the CPU build of the same versions.
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
# uv, because pip's resolver gives up on this set: it backtracks through the Google client
# libraries for minutes, then reports a conflict that is not there. uv resolves it in seconds.
pip install -q uv
uv pip install -q -c "$venv/floors.txt" -e '.[dev]'
echo "floor set on Python $(python -c 'import platform; print(platform.python_version())'):"
python ci/floors.py --installed
pytest "$@"
