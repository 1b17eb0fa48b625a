"""`lsd --help` and `lsd --version` stay fast: in a fresh interpreter, importing the CLI and
printing every command's help loads neither torch nor ee (nor the other heavy stacks), and the
version printed is the installed distribution's. benchmarks/bench_cli_startup.py has the times."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys

import lsd
from lsd.pipeline.cli import main

HEAVY = ("torch", "ee", "segmentation_models_pytorch", "ray", "onnxruntime", "torchvision")

PROBE = """
import json, sys
from lsd.pipeline.cli import main
loaded = {'import': sorted(m for m in sys.modules)}
for args in [['--help'], ['--version']] + [[*path.split(), '--help'] for path in PATHS]:
    try:
        main(args, prog_name='lsd')
    except SystemExit as stop:
        assert stop.code in (0, None), (args, stop.code)
loaded['help'] = sorted(m for m in sys.modules)
print(json.dumps(loaded))
"""


def command_paths(group=main, path=()):
    for name, cmd in sorted(group.commands.items()):
        yield " ".join((*path, name))
        if hasattr(cmd, "commands"):
            yield from command_paths(cmd, (*path, name))


def test_the_cli_and_every_help_page_load_neither_torch_nor_ee() -> None:
    paths = list(command_paths())
    assert len(paths) > 10  # every command and subcommand, not just the top
    code = f"PATHS = {paths!r}\n{PROBE}"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    for stage in ("import", "help"):
        heavy = sorted(m for m in loaded[stage] if m.split(".")[0] in HEAVY)
        assert heavy == [], (stage, heavy)
    assert "lsd.pipeline.cmd_train" in loaded["import"]  # the probe really loaded the commands


def test_version_is_the_installed_distribution_s() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from lsd.pipeline.cli import main; main(['--version'])"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    installed = importlib.metadata.version("lsd")
    assert result.stdout == f"lsd, version {installed}\n"
    assert installed == lsd.__version__  # one source: pyproject reads lsd.__version__
