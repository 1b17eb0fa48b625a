"""Issue 20 items 8 and 9: mistakes that were tracebacks are one line, and input that was
accepted in silence (complex pixels, an all-zero stack, nothing labelled, +inf layers, empty
archives, a full disk) is refused or warned about, each on real files through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml

from lsd.pipeline.sources import import_landslide4sense
from tests.bounds_inputs import tiny_model, write_h5_pair, write_stack
from tests.cli import lsd
from tests.paper_fixtures import write_paper_dataset, zip_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TRAIN = ["--setting", "B2,B3,B4,B8", "--archs", "Unet", "--losses", "BCE", "--lrs", "0.001",
         "--encoder", "resnet18", "--crop", "64", "--batch-size", "2", "--iters-per-epoch", "1",
         "--epochs", "1", "--val", "l4s_image_2", "--test", "l4s_image_3", "--device", "cpu",
         "--quiet"]  # fmt: skip


def error_line(code: int, text: str) -> str:
    errors = [line for line in text.splitlines() if line.startswith("Error")]
    assert code == 1 and len(errors) == 1 and "Traceback" not in text, text
    return errors[0]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five generated Landslide4Sense-like patches of 64 px with a landslide each."""
    root = tmp_path_factory.mktemp("l4s")
    for n in range(1, 6):
        rng = np.random.default_rng(n)
        label = np.zeros((64, 64), np.uint8)
        label[20 + n : 40 + n, 10:30] = 1
        image = rng.normal(size=(64, 64, 14)).astype(np.float32) + 2.0 * label[..., None]
        write_h5_pair(root / "src", n, image, label)
    import_landslide4sense(root / "src", root / "data", progress=False)
    return root / "data"


def relabel(events: Path, dest: Path, value: int) -> Path:
    """A copy of the event folders with every label pixel set to `value`."""
    import shutil

    shutil.copytree(events, dest)
    for label in dest.glob("*/label.tif"):
        with rasterio.open(label, "r+") as dst:
            dst.write(np.full((dst.height, dst.width), value, np.uint8), 1)
    return dest


# --------------------------------------------------------------------------- item 8


def _models(tmp_path: Path, cfg: dict) -> Path:
    """trained_models/sentinel2_ensemble/0 with a checkpoint name and the given hparams.yaml:
    configs are checked before any checkpoint is read."""
    run = tmp_path / "trained_models" / "sentinel2_ensemble" / "0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "epoch_001.ckpt").write_bytes(b"never read")
    (run / "tensorboard" / "version_0").mkdir(parents=True)
    (run / "tensorboard" / "version_0" / "hparams.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "trained_models"


@pytest.fixture(scope="module")
def paper_events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("paper")
    src = write_paper_dataset(root, size=(32, 32))
    assert lsd("import", "paper", src, root / "events", "--no-progress")[0] == 0
    return root / "events"


GOOD = {"model": {"net": {"_target_": "segmentation_models_pytorch.Linknet",
                          "encoder_name": "mobilenet_v2", "in_channels": 2, "classes": 1},
                  "loss": {"_target_": "segmentation_models_pytorch.losses.DiceLoss"},
                  "optimizer": {"lr": 0.001}},
        "data": {"channels": [13, 14]}}  # fmt: skip


@pytest.mark.parametrize(("edit", "words"), [
    (lambda c: c["model"].update(net="Unet"), "model.net is str 'Unet', not a table"),
    (lambda c: c["model"].update(loss="Dice"), "model.loss is str 'Dice', not a table"),
    (lambda c: c["model"].update(optimizer=[0.001]), "model.optimizer is list [0.001], not a"),
    (lambda c: c.update(data=[13, 14]), "data is list [13, 14], not a table of options"),
    (lambda c: c["model"]["optimizer"].update(lr=True), "model.optimizer.lr True is not a"),
    (lambda c: c["model"]["net"].update(encoder_name=[1]), "net.encoder_name [1] is not an"),
])  # fmt: skip
def test_hparams_of_the_wrong_type_are_one_line(paper_events, tmp_path: Path, edit, words) -> None:
    cfg = json.loads(json.dumps(GOOD))
    edit(cfg)
    models = _models(tmp_path, cfg)
    line = error_line(*lsd("import", "paper-models", models, tmp_path / "runs", "--data",
                           paper_events))  # fmt: skip
    assert "hparams.yaml: " in line and words in line


@pytest.mark.parametrize(("content", "words"), [
    ([torch.zeros(3)], "holds a list, not a state dict"),
    (torch.zeros(3), "holds a Tensor, not a state dict"),
    ({"conv1.weight": "not a tensor"}, "entry 'conv1.weight' holds a str, not a tensor"),
])  # fmt: skip
def test_encoder_weights_that_are_not_a_state_dict(events, tmp_path, content, words) -> None:
    weights = tmp_path / "w.pt"
    torch.save(content, weights)
    line = error_line(*lsd("train", *TRAIN, "--data", events, "--out", tmp_path / "runs",
                           "--encoder-weights", weights))  # fmt: skip
    assert line.startswith(f"Error: --encoder-weights: {weights}: {words}")
    assert not (tmp_path / "runs").exists()


def test_predict_out_with_a_newline(model: Path, tmp_path: Path) -> None:
    stack = write_stack(tmp_path / "s.tif", np.ones((2, 64, 64)))
    line = error_line(*lsd("predict", "--stack", stack, "--model", model, "--out",
                           tmp_path / "a\nb", "--device", "cpu"))  # fmt: skip
    assert line.startswith("Error: --out: ") and "a\\nb': holds a newline" in line
    assert [p.name for p in tmp_path.iterdir()] == ["s.tif"]


@pytest.mark.parametrize(("crop", "words"), [
    (100_000, "--crop 100000 with batch size 2 needs"),
    (2048, "--crop 2048 is more than 2 times the side of the largest training event"),
])  # fmt: skip
def test_crops_too_large_are_one_line(events: Path, tmp_path: Path, crop: int, words) -> None:
    """--crop 100000 was a traceback; --crop 2048 on 128 px patches passed 8 GB."""
    args = [*TRAIN, "--crop", str(crop)]
    line = error_line(*lsd("train", *args, "--data", events, "--out", tmp_path / "runs"))
    assert words in line
    assert not (tmp_path / "runs").exists()


def test_a_crop_of_twice_the_events_still_trains_on_padding(events: Path, tmp_path: Path) -> None:
    code, out = lsd("train", *TRAIN, "--crop", "128", "--data", events, "--out", tmp_path / "r")
    assert code == 0, out


# --------------------------------------------------------------------------- item 9


def test_complex_rasters_are_refused(model: Path, tmp_path: Path) -> None:
    """GDAL dropped the imaginary part when asked for float32."""
    stack = write_stack(tmp_path / "c.tif", np.ones((2, 32, 32)) + 1j, dtype="complex64")
    mapping = ["predict", "--stack", stack, "--model", model, "--out", tmp_path / "m"]
    for args in (["inspect", stack], mapping):
        line = error_line(*lsd(*args))
        assert f"{stack}: band(s) 1, 2 hold complex values (complex64)" in line
    images, masks = tmp_path / "tiles" / "images", tmp_path / "tiles" / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    write_stack(images / "t.tif", np.ones((2, 32, 32)) + 1j, dtype="complex64")
    write_stack(masks / "t.tif", np.zeros((1, 32, 32)), dtype="uint8")
    line = error_line(*lsd("import", "tiles", tmp_path / "tiles", tmp_path / "ev", "--mapping",
                           "0:0,1:1", "--no-progress"))  # fmt: skip
    assert "hold complex values" in line


def test_add_layer_refuses_a_complex_raster(tmp_path: Path) -> None:
    from rasterio.transform import from_origin

    from tests.test_add_layer import ORIGINS, UTM, make_events, snapshot, write_raster

    data = make_events(tmp_path, ids=("ev-a",))
    before = snapshot(data)
    pixels = (np.ones((30, 40)) + 1j).astype("complex64")
    raster = write_raster(tmp_path / "c.tif", pixels, from_origin(*ORIGINS["ev-a"], 10, 10), UTM)
    line = error_line(*lsd("add-layer", data, raster, "--name", "x", "--no-progress"))
    assert f"{raster}: band(s) 1 hold complex values (complex64)" in line
    assert snapshot(data) == before


def test_an_all_zero_stack_is_mapped_with_a_warning(model: Path, tmp_path: Path) -> None:
    stack = write_stack(tmp_path / "zeros.tif", np.zeros((2, 64, 64)))
    code, out = lsd("predict", "--stack", stack, "--model", model, "--out", tmp_path / "m",
                    "--device", "cpu")  # fmt: skip
    assert code == 0, out
    words = "every layer the model needs holds a single value everywhere (B2 0, B3 0)"
    assert words in out
    record = json.loads((tmp_path / "m" / "run.json").read_text())
    assert record["input_checks"]["single_value_layers"] == {"B2": 0.0, "B3": 0.0}
    assert words in (tmp_path / "m" / "README.txt").read_text()


def test_an_infinite_layer_is_not_called_nan(model: Path, tmp_path: Path) -> None:
    data = np.random.default_rng(0).normal(size=(2, 64, 64))
    data[1] = np.inf
    stack = write_stack(tmp_path / "inf.tif", data)
    line = error_line(*lsd("predict", "--stack", stack, "--model", model, "--out", tmp_path / "m"))
    assert "no data in layer(s) B3 the model needs (every pixel is +/-inf)" in line


@pytest.mark.parametrize(("value", "words"), [
    (255, "nothing is labelled: every label pixel of the training events"),
    (0, "hold no landslide pixel (label 1) among"),
])  # fmt: skip
def test_training_refuses_labels_with_nothing_to_learn(events, tmp_path, value, words) -> None:
    """All-255 labels trained a grid to F1 0 without a word."""
    data = relabel(events, tmp_path / "data", value)
    line = error_line(*lsd("train", *TRAIN, "--data", data, "--out", tmp_path / "runs"))
    assert words in line and not (tmp_path / "runs").exists()


def test_validation_without_landslides_is_a_warning(events: Path, tmp_path: Path, capsys) -> None:
    from lsd.events import list_events
    from lsd.training.data import check_labels

    data = relabel(events, tmp_path / "data", 1)
    with rasterio.open(data / "l4s_image_2" / "label.tif", "r+") as dst:
        dst.write(np.zeros((64, 64), np.uint8), 1)
    found = {e.event_id: e for e in list_events(data)}
    check_labels([found["l4s_image_1"], found["l4s_image_4"]], [found["l4s_image_2"]])
    assert "validation events (l4s_image_2) hold no landslide pixel" in capsys.readouterr().err


def test_an_empty_zip_is_refused_and_blocks_nothing(tmp_path: Path) -> None:
    """An empty zip was recorded as complete, and then blocked the real archive."""
    (tmp_path / "empty").mkdir()
    zipfile.ZipFile(tmp_path / "empty" / "global_dataset.zip", "w").close()
    to = tmp_path / "paper"
    line = error_line(*lsd("download", "paper", "--from-archive",
                           tmp_path / "empty" / "global_dataset.zip", "--to", to))  # fmt: skip
    assert "holds no files (an empty or unfinished archive); nothing was unpacked" in line
    assert not (to / "download.json").exists() and not (to / "global_dataset").exists()
    real = zip_folder(write_paper_dataset(tmp_path / "src"), tmp_path / "global_dataset.zip")
    code, out = lsd("download", "paper", "--from-archive", real, "--to", to)
    assert code == 0, out
    assert any((to / "global_dataset" / "train_val").iterdir())


def test_an_old_empty_record_does_not_block_the_real_archive(tmp_path: Path) -> None:
    """What an older lsd left: an empty folder recorded as unpacked."""
    to = tmp_path / "paper"
    (to / "global_dataset").mkdir(parents=True)
    (to / "download.json").write_text(json.dumps({"global_dataset.zip": {"folder": "x"}}))
    real = zip_folder(write_paper_dataset(tmp_path / "src"), tmp_path / "global_dataset.zip")
    code, out = lsd("download", "paper", "--from-archive", real, "--to", to)
    assert code == 0 and "already complete" not in out, out
    assert any((to / "global_dataset").iterdir())


UNPACK = """
import resource, sys
from pathlib import Path
from lsd.errors import UserError
from lsd.pipeline.zenodo import unpack
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), resource.RLIM_INFINITY))
try:
    unpack(Path(sys.argv[1]), Path(sys.argv[2]))
except UserError as exc:
    print(type(exc).__name__, exc)
"""


def test_a_full_disk_while_unpacking_is_not_a_damaged_archive(tmp_path: Path) -> None:
    """A write refused mid-way (here by a file-size limit: the same EFBIG/ENOSPC family a full
    disk gives) names the output and the cause, and leaves nothing half unpacked."""
    archive = zip_folder(write_paper_dataset(tmp_path / "src"), tmp_path / "global_dataset.zip")
    biggest = max(i.file_size for i in zipfile.ZipFile(archive).infolist())
    dest = tmp_path / "out" / "global_dataset"
    dest.parent.mkdir()
    res = subprocess.run([sys.executable, "-c", UNPACK, str(archive), str(dest),
                          str(biggest // 2)], capture_output=True, text=True)  # fmt: skip
    assert res.stdout.startswith(f"OutputNotWritable {dest}: cannot write (File too large"), res
    assert "while unpacking" in res.stdout and "damaged" not in res.stdout
    assert list(dest.parent.iterdir()) == []
