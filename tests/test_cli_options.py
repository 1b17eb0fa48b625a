"""The command line's shared parsing: one comma-list type for every comma-separated option, the
device resolved by the library (not by each command), and the defaults the options show are the
library's."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from lsd.bundles import DEFAULT_THRESHOLD
from lsd.errors import InvalidValue
from lsd.pipeline.cli import main
from lsd.pipeline.options import CommaList, count, positive_number
from lsd.training.options import TileOptions, TrainOptions


def all_options():
    def walk(group, path):
        for name, cmd in sorted(group.commands.items()):
            if isinstance(cmd, click.Group):
                yield from walk(cmd, (*path, name))
            else:
                for param in cmd.params:
                    if isinstance(param, click.Option):
                        yield (*path, name), param

    yield from walk(main, ())


def convert(kind: CommaList, text: str):
    return kind.convert(text, None, None)


def test_comma_lists_are_stripped_converted_and_refused_when_empty() -> None:
    assert convert(CommaList(), " Unet , FPN ") == ("Unet", "FPN")
    assert convert(CommaList(item=positive_number), "0.01,1e-3") == (0.01, 0.001)
    assert convert(CommaList(item=count), "10,20") == (10, 20)
    for kind, text, words in [
        (CommaList(), " ", "is empty"),
        (CommaList(), "a,,b", "'a,,b' has an empty item"),
        (CommaList(), "a,", "empty item"),
        (CommaList(item=positive_number), "0.01,fast", "'fast' is not a positive number"),
        (CommaList(item=positive_number), "0", "'0' is not a positive number"),
        (CommaList(item=positive_number), "inf", "'inf' is not a positive number"),
        (CommaList(item=count), "10,0", "'0' is not a whole number of at least 1"),
        (CommaList(item=count), "2.5", "'2.5' is not a whole number"),
    ]:
        with pytest.raises(click.BadParameter, match=words):
            convert(kind, text)


def test_every_comma_separated_option_parses_with_the_one_type() -> None:
    listed = [
        (" ".join(path), param.opts[0], type(param.type).__name__)
        for path, param in all_options()
        if "omma-separated" in (param.help or "") or isinstance(param.type, CommaList)
    ]
    assert len(listed) >= 9, listed  # train 5, evaluate 1 (+ --ks), fetch, add-layer 3, import 1
    assert [x for x in listed if x[2] != "CommaList"] == []


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["train", "--lrs", "0.01,,0.1"], "'0.01,,0.1' has an empty item"),
        (["train", "--lrs", "0.01,fast"], "'fast' is not a positive number"),
        (["evaluate", "runs", "--ks", "10,0"], "'0' is not a whole number of at least 1"),
        (["add-layer", "d", "r.tif", "--name", "coh", "--band", "0"], "'0' is not a whole"),
    ],
)
def test_a_bad_comma_list_is_one_line_naming_the_option(
    tmp_path: Path, args: list[str], words: str
) -> None:
    base = {"train": ["--setting", "s1", "--data", str(tmp_path), "--out", str(tmp_path / "o")],
            "evaluate": ["--data", str(tmp_path)]}.get(args[0], [])  # fmt: skip
    result = CliRunner().invoke(main, [*args, *base])
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: Invalid value for '--") and words in line, line
    assert list(tmp_path.iterdir()) == []  # nothing made


def test_the_defaults_shown_are_the_library_s() -> None:
    defaults = {(" ".join(path), p.opts[0]): p.default for path, p in all_options()}
    run, tiles = TrainOptions(), TileOptions()
    for flag in ("encoder", "crop", "batch_size", "iters_per_epoch", "epochs", "patience",
                 "seed", "lr_schedule", "crop_anchor"):  # fmt: skip
        assert defaults[("train", "--" + flag.replace("_", "-"))] == getattr(run, flag), flag
    assert defaults[("predict", "--tile")] == tiles.tile
    assert defaults[("predict", "--overlap")] == tiles.overlap
    assert defaults[("ensemble", "--threshold")] == DEFAULT_THRESHOLD
    assert defaults[("evaluate", "--threshold")] == DEFAULT_THRESHOLD


def library_entry_points():
    from lsd.pipeline.evaluate import evaluate_runs
    from lsd.pipeline.landslide4sense_protocol import evaluate_landslide4sense
    from lsd.pipeline.paper.models import import_paper_models
    from lsd.pipeline.paper.protocol import evaluate_paper
    from lsd.training.ensemble import make_ensemble

    return {
        "make_ensemble": lambda d, dev: make_ensemble(d / "runs", d / "out", k=1, device=dev),
        "evaluate_runs": lambda d, dev: evaluate_runs(d / "runs", d / "data", device=dev),
        "evaluate_paper": lambda d, dev: evaluate_paper(d / "runs", d / "data", device=dev),
        "evaluate_landslide4sense":
            lambda d, dev: evaluate_landslide4sense(d / "runs", d / "data", device=dev),
        "import_paper_models":
            lambda d, dev: import_paper_models(d / "models", d / "runs", d / "data", device=dev),
    }  # fmt: skip


@pytest.mark.parametrize("entry", sorted(library_entry_points()))
def test_the_library_resolves_the_device_before_anything_else(tmp_path: Path, entry: str) -> None:
    """Each entry point the commands call takes the user's device (auto, cpu, cuda:N) and checks
    it first: a device that is not one fails before the (absent) inputs are looked at."""
    call = library_entry_points()[entry]
    with pytest.raises(InvalidValue, match="'gpu' is not a device") as err:
        call(tmp_path, "gpu")
    assert err.value.field == "device"
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(Exception) as err:  # noqa: B017 - auto resolves; then the inputs fail
        call(tmp_path, "auto")
    assert "device" not in str(err.value)
