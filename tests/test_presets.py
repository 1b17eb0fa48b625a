"""`--preset paper` and its parts: crops centred as the paper's AnchorCrop, ReduceLROnPlateau on
the validation loss, options recorded in grid.json and bundles, explicit flags winning."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lsd.pipeline.cli import main
from lsd.training.crops import CropSampler
from lsd.training.data import EventArrays
from lsd.training.loop import RunConfig, RunData, train_run
from lsd.training.presets import PRESETS
from tests.paper_fixtures import write_paper_dataset


def _event(h: int, w: int, pixels: list[tuple[int, int]], event_id: str = "e") -> EventArrays:
    label = np.zeros((h, w), np.uint8)
    for r, c in pixels:
        label[r, c] = 1
    return EventArrays(event_id, np.zeros((1, h, w), np.float32), label)


def _draws(sampler: CropSampler, n: int = 20) -> list[tuple[int, int, int]]:
    out = []
    for _ in range(n):
        ev, top, left, _ = sampler._draw()
        out += list(zip(ev.tolist(), top.tolist(), left.tolist(), strict=True))
    return out


def test_centre_anchor_puts_the_landslide_pixel_at_the_centre_shifted_to_fit() -> None:
    """AnchorCrop: top = max(0, r - crop // 2), then moved up so the crop ends on the image."""
    events = [_event(100, 120, [(50, 60)], "mid"), _event(100, 120, [(3, 118)], "corner")]
    sampler = CropSampler(events, crop=32, batch_size=8, seed=1, anchor="centre")
    expected = {0: (34, 44), 1: (0, 88)}
    for ev, top, left in _draws(sampler):
        assert (top, left) == expected[ev]


def test_centre_anchor_without_landslides_and_on_small_images() -> None:
    sampler = CropSampler([_event(60, 50, [])], crop=32, batch_size=16, seed=2, anchor="centre")
    draws = _draws(sampler, 30)
    assert all(0 <= t <= 28 and 0 <= lf <= 18 for _, t, lf in draws)
    assert {t for _, t, _ in draws} >= {0, 28}  # anchors near an edge clamp to it
    small = CropSampler([_event(20, 24, [(10, 10)])], crop=32, batch_size=4, seed=3,
                        anchor="centre")  # fmt: skip
    for _, t, lf in _draws(small, 5):
        assert t <= 0 <= t + 32 - 20 and lf <= 0 <= lf + 32 - 24  # the image inside the window
    x, y = small.batch()
    assert int((y == 1).sum()) == 4 and int((y == 255).sum()) == 4 * (32 * 32 - 20 * 24)


def test_random_anchor_is_unchanged_by_the_new_option() -> None:
    events = [_event(100, 120, [(50, 60)])]
    a = _draws(CropSampler(events, crop=32, batch_size=8, seed=5), 5)
    b = _draws(CropSampler(events, crop=32, batch_size=8, seed=5, anchor="random"), 5)
    assert a == b and len({(t, lf) for _, t, lf in a}) > 5


def test_plateau_divides_the_rate_by_ten_after_ten_epochs_without_a_lower_val_loss(tmp_path):
    """A validation event with no labelled pixel has a loss of 0 every epoch: never lower."""
    rng = np.random.default_rng(0)
    label = (rng.random((48, 48)) > 0.9).astype(np.uint8)
    train = [EventArrays("t", rng.normal(size=(2, 48, 48)).astype(np.float32), label)]
    val = [EventArrays("v", rng.normal(size=(2, 32, 32)).astype(np.float32),
                       np.full((32, 32), 255, np.uint8))]  # fmt: skip
    data = RunData(train=train, val=val, layers=["a", "b"], mean=[0, 0], std=[1, 1])
    cfg = RunConfig(arch="Linknet", loss="BCE", lr=0.01, encoder="resnet18", crop=32,
                    batch_size=2, iters_per_epoch=1, epochs=13, patience=50,
                    lr_schedule="plateau", crop_anchor="centre")  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        done = train_run(cfg, data, tmp_path / "run", progress=False)
    finally:
        torch.set_num_threads(threads)
    with (tmp_path / "run" / "metrics.csv").open() as f:
        lrs = [float(r["lr"]) for r in csv.DictReader(f)]
    assert lrs[:12] == [0.01] * 12 and lrs[12] == pytest.approx(0.001)
    meta = json.loads((tmp_path / "run" / "bundle" / "bundle.json").read_text())
    assert meta["extra"]["lr_schedule"] == "plateau" and meta["extra"]["crop_anchor"] == "centre"
    assert done["stop_reason"] == "epochs"


def test_plateau_loss_is_the_papers_centre_crop_loss() -> None:
    """The validation loss ReduceLROnPlateau watches: each event centre-cropped to a multiple of
    32 as the paper's validation set was, one loss per event, averaged. A 40 x 40 event whose
    landslide rows lie in the 4-row border the crop leaves out scores as if it had none."""
    import math

    from lsd.training.loop import evaluate_with_loss
    from lsd.training.losses import build_loss
    from lsd.training.precision import Precision

    model = torch.nn.Conv2d(1, 1, kernel_size=1)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.fill_(2.0)  # logit 2 everywhere: p = 0.88
    label = np.zeros((40, 40), np.uint8)
    label[:4] = 1  # top border: outside rows 4..35 that CenterCrop(32) keeps
    small = np.zeros((20, 24), np.uint8)  # narrower than 32: taken whole
    val = [(torch.zeros(1, 40, 40), torch.from_numpy(label), None),
           (torch.zeros(1, 20, 24), torch.from_numpy(small), None)]  # fmt: skip
    precision = Precision.for_device(torch.device("cpu"), mode="fp32")
    _, loss = evaluate_with_loss(model, val, precision, build_loss("BCE"))
    bce_negative = math.log1p(math.exp(2.0))  # -log(1 - sigmoid(2)), every pixel label 0
    assert loss == pytest.approx(bce_negative, rel=1e-6)
    whole = (160 * math.log1p(math.exp(-2.0)) + 1440 * bce_negative) / 1600
    assert abs(loss - (whole + bce_negative) / 2) > 0.05  # the padded whole event would differ


@pytest.fixture(scope="module")
def paper_events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("preset")
    src = write_paper_dataset(root, size=(40, 40), train_val=[1, 2, 3, 4, 8])
    dest = root / "events"
    assert CliRunner().invoke(main, ["import", "paper", str(src), str(dest),
                                     "--no-progress"]).exit_code == 0  # fmt: skip
    return dest


def _train(data: Path, out: Path, *args: str):
    return CliRunner().invoke(main, [
        "train", "--setting", "s2", "--data", str(data), "--out", str(out), "--archs", "Linknet",
        "--losses", "Dice", "--lrs", "0.01", "--encoder", "resnet18", "--crop", "32",
        "--device", "cpu", "--quiet", *args,
    ])  # fmt: skip


def test_paper_preset_recorded_and_explicit_flags_win(paper_events: Path, tmp_path: Path):
    result = _train(paper_events, tmp_path / "runs", "--preset", "paper", "--epochs", "2",
                    "--iters-per-epoch", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "preset paper:" in result.output
    options = json.loads((tmp_path / "runs" / "grid.json").read_text())["options"]
    paper = PRESETS["paper"]
    assert (options["preset"], options["lr_schedule"], options["crop_anchor"]) == (
        "paper", "plateau", "centre")  # fmt: skip
    assert (options["patience"], options["seed"], options["batch_size"]) == (
        paper["patience"], paper["seed"], paper["batch_size"])  # fmt: skip
    assert (options["epochs"], options["iters_per_epoch"], options["crop"]) == (2, 1, 32)
    assert options["precision"] == "fp32"  # the paper trained fp32 (Lightning's default)
    split = json.loads((tmp_path / "runs" / "split.json").read_text())
    assert split["test"] == ["05-norway"] and len(split["val"]) == 1  # the imported roles
    # a RUNS folder made with lsd's defaults refuses to continue under the paper's schedule
    assert _train(paper_events, tmp_path / "lsd", "--epochs", "1", "--iters-per-epoch", "1",
                  "--seed", "42").exit_code == 0  # fmt: skip
    again = _train(paper_events, tmp_path / "lsd", "--preset", "paper", "--epochs", "1",
                   "--iters-per-epoch", "1")  # fmt: skip
    assert again.exit_code != 0 and "lr schedule none, not plateau" in again.output
    # an explicit --precision wins over the preset's fp32
    mine = _train(paper_events, tmp_path / "auto", "--preset", "paper", "--epochs", "1",
                  "--iters-per-epoch", "1", "--precision", "auto")  # fmt: skip
    assert mine.exit_code == 0, mine.output
    assert json.loads((tmp_path / "auto" / "grid.json").read_text())["options"]["precision"] == (
        "auto")  # fmt: skip
