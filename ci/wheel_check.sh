#!/usr/bin/env bash
# CI: lsd as a user installs it. Builds the wheel from a clean copy of the working tree, checks that
# it holds every module of the source folders, installs it (not editable) into a fresh virtual
# environment outside the checkout, and from a folder outside the checkout imports every module,
# runs `lsd --version`, every command's and subcommand's `--help`, and the whole chain on
# generated events (`lsd demo` at a small size, then `lsd inspect` on one of its stacks).
#
# The fresh environment borrows the dependencies of the Python that runs this script (the CI
# venv): a .pth file lists its site-packages folders. A path line in a .pth file only extends
# sys.path (the .pth files inside those folders, such as an editable install's finder, are not
# run), and folders that hold an `lsd` package are left out, so lsd itself can only come from the
# wheel; the script checks that it does. Nothing is downloaded.
#
#   ci/wheel_check.sh                      # with the python on PATH (the CI venv)
#   PYTHON=.venv/bin/python ci/wheel_check.sh
#   WHEEL_CHECK_KEEP=1 ci/wheel_check.sh   # keep the work folder (printed) for a look afterwards
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python}"
WORK="$(mktemp -d)"
if [[ -z "${WHEEL_CHECK_KEEP:-}" ]]; then trap 'rm -rf "$WORK"' EXIT; fi
step() { echo "wheel check: $*" >&2; }

# 1. A clean copy of the working tree (tracked files and new ones git does not ignore): a stale
#    build/ folder in the checkout must not leak into the wheel.
step "copying the working tree to $WORK/src"
mkdir "$WORK/src"
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard) |
    while IFS= read -r -d '' f; do
        if [[ -f "$REPO/$f" ]]; then mkdir -p "$WORK/src/$(dirname "$f")" && cp -p "$REPO/$f" "$WORK/src/$f"; fi
    done

# 2. The wheel, and every module of the source folders in it (the mapping is setup.py's).
step "building the wheel"
"$PY" -m pip wheel --no-deps --no-build-isolation -q -w "$WORK/dist" "$WORK/src"
WHEEL="$(ls "$WORK"/dist/lsd-*.whl)"
"$PY" - "$WORK/src" "$WHEEL" <<'EOF'
import ast, sys, zipfile
from pathlib import Path

src, wheel = Path(sys.argv[1]), sys.argv[2]
tree = ast.parse((src / "setup.py").read_text())
floors = next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
              and getattr(node.targets[0], "id", "") == "FLOORS")
expected = {
    "/".join([*package.split("."), *path.relative_to(src / folder).parts])
    for package, folder in floors.items()
    for path in (src / folder).rglob("*.py")
}
names = set(zipfile.ZipFile(wheel).namelist())
missing = sorted(expected - names)
extra = sorted(n for n in names - expected if not n.split("/")[0].endswith(".dist-info"))
if missing or extra:
    sys.exit(f"{wheel}: missing {missing}, unexpected {extra}")
print(f"wheel check: {Path(wheel).name} holds all {len(expected)} modules and nothing else",
      file=sys.stderr)
EOF

# 3. A fresh venv outside the checkout: the dependencies by .pth, lsd from the wheel alone.
step "installing it into a fresh venv in $WORK/venv"
"$PY" -m venv --without-pip "$WORK/venv"
VPY="$WORK/venv/bin/python"
SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$PY" - > "$SITE/lsd-ci-dependencies.pth" <<'EOF'
import sys
from pathlib import Path

for entry in sys.path:  # the site folders, not the checkout or anything else holding an lsd/
    path = Path(entry or ".").resolve()
    borrowed = ("site-packages" in path.parts or "dist-packages" in path.parts) and path.is_dir()
    if borrowed and not (path / "lsd").exists():
        print(path)
EOF
"$VPY" -m pip install -q --no-deps --no-index --ignore-installed "$WHEEL"

# 4. From a folder outside the checkout, with nothing of the checkout on any path.
mkdir "$WORK/run" && cd "$WORK/run"
export PATH="$WORK/venv/bin:$PATH" VIRTUAL_ENV="$WORK/venv"
unset PYTHONPATH PYTHONHOME || true
[[ "$(command -v lsd)" == "$WORK/venv/bin/lsd" ]] || { echo "lsd is $(command -v lsd)" >&2; exit 1; }

step "importing every module of the installed lsd"
"$VPY" - "$SITE" <<'EOF'
import importlib, importlib.metadata, pkgutil, sys
from pathlib import Path

site = Path(sys.argv[1]).resolve()
import lsd

where = Path(lsd.__file__).resolve()
assert site in where.parents, f"lsd comes from {where}, not from the wheel in {site}"
dist = importlib.metadata.distribution("lsd")
assert Path(dist.locate_file("")).resolve() == site, f"lsd's metadata is {dist.locate_file('')}"
names = [m.name for m in pkgutil.walk_packages(lsd.__path__, "lsd.")]
for name in names:
    module = importlib.import_module(name)
    assert site in Path(module.__file__).resolve().parents, f"{name} is {module.__file__}"
print(f"wheel check: {len(names) + 1} modules imported from {site}", file=sys.stderr)
EOF

VERSION="$(basename "$WHEEL" | cut -d- -f2)"
step "lsd --version"
[[ "$(lsd --version)" == "lsd, version $VERSION" ]] || { lsd --version; exit 1; }

step "--help of every command"
"$VPY" -c '
import click
from lsd.pipeline.cli import main
def walk(group, path):
    for name, cmd in sorted(group.commands.items()):
        print(" ".join((*path, name)))
        if isinstance(cmd, click.Group):
            walk(cmd, (*path, name))
walk(main, ())' > commands.txt
lsd --help > /dev/null
while read -r -a command; do
    lsd "${command[@]}" --help > /dev/null || { echo "lsd ${command[*]} --help failed" >&2; exit 1; }
done < commands.txt
step "$(($(wc -l < commands.txt) + 1)) --help pages"

step "the chain on generated events: lsd demo"
lsd demo --out demo --events 5 --size 128 --epochs 1 --device cpu
for f in demo/demo.json demo/runs/leaderboard.csv demo/ensemble/manifest.json \
    demo/evaluation/report.md demo/map/mask.tif demo/map/landslides.gpkg; do
    [[ -s "$f" ]] || { echo "lsd demo did not write $f" >&2; exit 1; }
done
lsd inspect demo/events/demo-05/stack.tif > /dev/null
step "passed ($WHEEL installed in $WORK/venv)"
