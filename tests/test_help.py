"""What a newcomer reads first: --help. Choices are shown as choices, every option says what it
is for, every command shows an example that parses, and the lists of choices are the library's."""

from __future__ import annotations

import re
import shlex

import click
import pytest
from click.testing import CliRunner

from lsd.layers import BUILTIN_SETTINGS
from lsd.pipeline import options
from lsd.pipeline.cli import main


def commands(group: click.Group = main, path: tuple[str, ...] = ()):
    """Every command of the CLI with its path, groups included."""
    for name, cmd in sorted(group.commands.items()):
        yield (*path, name), cmd
        if isinstance(cmd, click.Group):
            yield from commands(cmd, (*path, name))


def help_of(*path: str) -> str:
    result = CliRunner().invoke(main, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("train", "--device [auto|cpu|cuda|cuda:N]"),
        ("train", "--precision [auto|fp32|bf16]"),
        ("train", "--executor [inprocess|ray]"),
        ("predict", "--device [auto|cpu|cuda|cuda:N]"),
        ("predict", "--precision [auto|fp32|bf16]"),
        ("predict", "--runtime [torch|onnx]"),
        ("predict", "--executor [inprocess|ray]"),
        ("ensemble", "--k [auto|N]"),
        ("ensemble", "--device [auto|cpu|cuda|cuda:N]"),
        ("evaluate", "--device [auto|cpu|cuda|cuda:N]"),
        ("demo", "--device [auto|cpu|cuda|cuda:N]"),
    ],
)
def test_choice_options_show_their_choices(command: str, shown: str) -> None:
    assert shown in help_of(command)


def test_the_cli_s_choices_are_the_library_s() -> None:
    """The CLI reads its choices from the torch-free lsd.training.options, the lists the library
    checks with; the executors' registry must offer exactly those executors."""
    from lsd.training import options as lib
    from lsd.training.executor_registry import EXECUTORS
    from lsd.training.presets import PRESETS

    def choices(path: tuple[str, ...], flag: str) -> tuple[str, ...]:
        cmd = dict(commands())[path]
        (param,) = [p for p in cmd.params if flag in p.opts]
        return tuple(param.type.choices)

    assert tuple(EXECUTORS) == lib.EXECUTORS
    assert choices(("train",), "--preset") == tuple(PRESETS)
    assert choices(("train",), "--lr-schedule") == lib.LR_SCHEDULES
    assert choices(("train",), "--crop-anchor") == lib.CROP_ANCHORS
    for command in ("train", "predict"):
        assert choices((command,), "--precision") == lib.PRECISIONS
        assert choices((command,), "--executor") == lib.EXECUTORS
    assert choices(("predict",), "--runtime") == lib.RUNTIMES


def test_every_option_says_what_it_is_for() -> None:
    missing = [
        f"{' '.join(path)} {param.opts[0]}"
        for path, cmd in commands()
        for param in cmd.params
        if isinstance(param, click.Option) and not (param.help or "").strip()
    ]
    assert missing == []


def test_setting_help_names_every_built_in_setting() -> None:
    text = " ".join(help_of("train").split())
    for name in BUILTIN_SETTINGS:
        assert re.search(rf"\b{name}\b", text), name


@pytest.mark.parametrize("path", [p for p, _ in commands()], ids=" ".join)
def test_every_command_shows_an_example_that_parses(path: tuple[str, ...]) -> None:
    text = help_of(*path)
    assert "Example:" in text
    line = text[text.index("Example:") :].splitlines()[2].strip()
    words = shlex.split(line)
    assert words[0] == "lsd"
    if not isinstance(dict(commands())[path], click.Group):
        assert words[1 : 1 + len(path)] == list(path), line  # the example is of this command
    group, args = main, words[1:]
    while isinstance(group, click.Group):  # walk down to the command the example runs
        group, args = group.commands[args[0]], args[1:]
    with group.make_context(" ".join(words[:2]), list(args)) as ctx:  # options, types, choices
        assert ctx.params


def test_lsd_help_points_a_newcomer_to_the_demo() -> None:
    assert "lsd demo" in help_of()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--device", "gpu"], "'gpu' is not auto, cpu, cuda or cuda:N"),
        (["--device", "cuda:x"], "'cuda:x' is not auto, cpu, cuda or cuda:N"),
        (["--k", "0"], "'0' is neither auto nor a whole number of at least 1"),
        (["--k", "two"], "'two' is neither auto nor a whole number of at least 1"),
    ],
)
def test_a_bad_choice_is_one_usage_line(tmp_path, args, needle) -> None:
    args = ["ensemble", str(tmp_path), "--out", str(tmp_path / "e"), *args]
    result = CliRunner().invoke(main, args, prog_name="lsd")
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert needle in line and "(see 'lsd ensemble --help')" in line


def test_device_and_k_values_that_are_accepted() -> None:
    device, k = options.DeviceType(), options.EnsembleSizeType()
    assert [device.convert(v, None, None) for v in ("auto", "cpu", "cuda", "cuda:3")] == [
        "auto", "cpu", "cuda", "cuda:3"]  # fmt: skip
    assert [k.convert(v, None, None) for v in ("auto", "AUTO", "3", 7)] == [None, None, 3, 7]
