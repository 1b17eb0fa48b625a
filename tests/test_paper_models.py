"""`lsd import paper-models`: real Lightning checkpoints and tensorboard logs (written by the
real writers, tests/paper_models_fixture.py) become lsd RUNS folders whose bundles compute
exactly what the paper's networks compute, normalised as the paper normalised; bad checkpoints
get one line, and a pickled object outside the allow-list is never run."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml
from click.testing import CliRunner

from lsd.pipeline.cli import main
from lsd.runs import read_leaderboard
from lsd.training.bundle import load_bundle
from tests.paper_fixtures import write_paper_dataset
from tests.paper_models_fixture import PAPER_RUNS, write_trained_models

SENTINEL = "pickle-ran.txt"


def _trusted_load(path: Path) -> dict:
    """The test's own files, loaded the unsafe way on purpose to get an independent answer."""
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def paper(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("paper")
    src = write_paper_dataset(root, size=(64, 64))
    events = root / "events"
    assert CliRunner().invoke(main, ["import", "paper", str(src), str(events),
                                     "--no-progress"]).exit_code == 0  # fmt: skip
    models = write_trained_models(root)
    runs = root / "runs"
    result = CliRunner().invoke(
        main, ["import", "paper-models", str(models), str(runs), "--data", str(events),
               "--device", "cpu"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return {"src": src, "events": events, "models": models, "runs": runs}


def _import(models: Path, runs: Path, events: Path):
    return CliRunner().invoke(
        main, ["import", "paper-models", str(models), str(runs), "--data", str(events)]
    )


def _one_line_error(result) -> str:
    assert result.exit_code != 0
    lines = [x for x in result.output.strip().splitlines() if x.startswith("Error: ")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_leaderboard_is_val_f1_best_from_the_logs(paper: dict[str, Path]) -> None:
    for folder, setting in (("sentinel2_ensemble", "s2"), ("all_ch_ensemble", "all")):
        entries = read_leaderboard(paper["runs"] / setting)
        assert len(entries) == len(PAPER_RUNS[folder])
        for entry in entries:
            meta = entry.meta()
            run = paper["models"] / folder / meta.extra["paper_run"]
            ckpt = _trusted_load(Path(meta.extra["checkpoint"]))
            best = next(v["best_model_score"] for k, v in ckpt["callbacks"].items()
                        if k.startswith("ModelCheckpoint"))  # fmt: skip
            assert entry.val_f1 == pytest.approx(float(best), abs=1e-6)
            assert meta.scores["val_f1_source"] == "tensorboard val/f1_best"
            cfg = yaml.safe_load((run / "tensorboard/version_0/hparams.yaml").read_text())
            assert meta.lr == cfg["model"]["optimizer"]["lr"] and meta.encoder == "mobilenet_v2"
            assert meta.layers == (["landCover", "dNDVI"] if setting == "s2" else meta.layers)
        assert [e.val_f1 for e in entries] == sorted((e.val_f1 for e in entries), reverse=True)


def test_bundles_compute_what_the_paper_networks_compute(paper: dict[str, Path]) -> None:
    entry = read_leaderboard(paper["runs"] / "s2")[0]
    model, meta = load_bundle(entry.bundle)
    ckpt = _trusted_load(Path(meta.extra["checkpoint"]))
    net = ckpt["hyper_parameters"]["net"]  # the pickled SMP network itself
    net.load_state_dict({k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")})
    x = torch.randn(1, 2, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net.eval()(x))


def test_normalisation_is_the_papers_over_all_train_val_files(paper: dict[str, Path]) -> None:
    """compute_metadata of src/data/landslides.py, re-done here on the source tifs."""
    psum, psum_sq, pvalid = np.zeros(15), np.zeros(15), np.zeros(15)
    for path in sorted((paper["src"] / "train_val" / "input").glob("*.tif")):
        arr = tifffile.TiffFile(path).pages[0].asarray()
        psum += np.nansum(arr, axis=(0, 1))
        psum_sq += np.nansum(arr**2, axis=(0, 1))
        pvalid += (~np.isnan(arr)).sum(axis=(0, 1))
    mean = psum / pvalid
    std = np.sqrt(psum_sq / pvalid - mean**2)
    grid = json.loads((paper["runs"] / "all" / "grid.json").read_text())
    np.testing.assert_allclose(grid["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(grid["std"], std, rtol=1e-12)
    s2 = json.loads((paper["runs"] / "s2" / "grid.json").read_text())
    np.testing.assert_allclose(s2["mean"], mean[[13, 14]], rtol=1e-12)
    split = json.loads((paper["runs"] / "s2" / "split.json").read_text())
    assert split["test"] == ["05-norway"] and len(split["val"]) == 4 and len(split["train"]) == 16


def test_ensemble_evaluate_predict_use_them_unchanged(paper: dict[str, Path], tmp_path: Path):
    runs, events = paper["runs"] / "s2", paper["events"]
    steps = [
        ["ensemble", str(runs), "--k", "2", "--out", str(tmp_path / "ens")],
        ["evaluate", str(runs), "--data", str(events), "--out", str(tmp_path / "eval")],
        ["predict", "--stack", str(events / "05-norway" / "stack.tif"), "--model",
         str(tmp_path / "ens"), "--out", str(tmp_path / "map")],
    ]  # fmt: skip
    for args in steps:
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, (args[0], result.output)
    assert (tmp_path / "map" / "probability.tif").is_file()
    assert "05-norway" in (tmp_path / "eval" / "report.md").read_text()
    # the models carry the conventions lsd import paper found in their data
    data_conv = json.loads((events / "01-iceland" / "event.json").read_text())["conventions"]
    meta = json.loads((runs / "runs" / first_run(runs) / "bundle" / "bundle.json").read_text())
    model_conv = meta["extra"]["conventions"]
    assert model_conv["source"]["value"] == data_conv["source"]["value"]
    assert model_conv["distortion_flags"]["value"] == data_conv["distortion_flags"]["value"]
    assert json.loads((runs / "grid.json").read_text())["conventions"] == model_conv


def first_run(runs: Path) -> str:
    return sorted(p.name for p in (runs / "runs").iterdir())[0]


def test_rerun_skips_finished_runs(paper: dict[str, Path]) -> None:
    result = _import(paper["models"], paper["runs"], paper["events"])
    assert result.exit_code == 0 and "0 imported, 2 already there" in result.output


def _copy_run(paper: dict[str, Path], tmp_path: Path, folder: str = "sentinel2_ensemble") -> Path:
    dest = tmp_path / "models" / folder / "0"
    shutil.copytree(paper["models"] / folder / "0", dest)
    return dest


def _edit_config(run: Path, edit) -> None:
    path = run / "tensorboard/version_0/hparams.yaml"
    cfg = yaml.safe_load(path.read_text())
    edit(cfg)
    path.write_text(yaml.safe_dump(cfg))


def test_no_tensorboard_at_all_recomputes_val_f1_and_says_so(paper, tmp_path: Path) -> None:
    run = _copy_run(paper, tmp_path)
    shutil.rmtree(run / "tensorboard")  # no logs and no hparams.yaml: the checkpoint describes it
    result = _import(tmp_path / "models", tmp_path / "runs", paper["events"])
    assert result.exit_code == 0, result.output
    assert "have no tensorboard log; their validation F1 was recomputed" in result.output
    (entry,) = read_leaderboard(tmp_path / "runs" / "s2")
    meta = entry.meta()
    assert meta.scores["val_f1_source"] == "recomputed"
    assert (meta.arch, meta.loss, meta.lr, meta.encoder) == ("Linknet", "Dice", 0.001,
                                                             "mobilenet_v2")  # fmt: skip
    assert meta.layers == ["landCover", "dNDVI"] and 0.0 <= entry.val_f1 <= 1.0


def test_unknown_architecture_or_channels_is_one_line(paper, tmp_path: Path) -> None:
    run = _copy_run(paper, tmp_path)
    _edit_config(run, lambda c: c["model"]["net"].update(_target_="smp.UPerNet"))
    line = _one_line_error(_import(tmp_path / "models", tmp_path / "runs", paper["events"]))
    assert "architecture UPerNet is not one lsd builds" in line
    _edit_config(run, lambda c: (c["model"]["net"].update(_target_="smp.Linknet", in_channels=7),
                                 c["data"].pop("channels")))  # fmt: skip
    line = _one_line_error(_import(tmp_path / "models", tmp_path / "runs", paper["events"]))
    assert "in_channels 7 but no data.channels" in line
    _edit_config(run, lambda c: c["data"].update(channels=[1, 2]))
    line = _one_line_error(_import(tmp_path / "models", tmp_path / "runs", paper["events"]))
    assert "in_channels 7 but data.channels lists 2 layers" in line
    _edit_config(run, lambda c: (c["model"]["net"].update(in_channels=3),
                                 c["data"].update(channels=[1, 2, 3])))  # fmt: skip
    line = _one_line_error(_import(tmp_path / "models", tmp_path / "runs", paper["events"]))
    assert "weights do not fit Linknet/mobilenet_v2 with 3 input layer(s)" in line
    assert not (tmp_path / "runs" / "s2" / "leaderboard.csv").exists()


def _touch(path: str) -> None:
    Path(path).write_text("the pickle ran code")


class _Evil:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (_touch, (self.path,))


def test_pickled_object_outside_the_allow_list_is_refused_unrun(paper, tmp_path: Path) -> None:
    run = _copy_run(paper, tmp_path)
    ckpt_path = next((run / "checkpoints").glob("epoch_*.ckpt"))
    ckpt = _trusted_load(ckpt_path)
    ckpt["hyper_parameters"]["note"] = _Evil(tmp_path / SENTINEL)
    torch.save(ckpt, ckpt_path)
    line = _one_line_error(_import(tmp_path / "models", tmp_path / "runs", paper["events"]))
    assert f"holds a pickled {__name__}._touch" in line and "not loaded" in line
    assert not (tmp_path / SENTINEL).exists()


def _notebook_scores(paper: dict[str, Path], setting: str) -> list[tuple[float, float]]:
    """The notebook's procedure, re-done with the paper's own pieces: the source tif read as its
    reader reads it, torchvision's Normalize and CenterCrop, the pickled networks, .round()."""
    import torchvision.transforms as T

    grid = json.loads((paper["runs"] / "all" / "grid.json").read_text())  # all 15 statistics
    arr = tifffile.TiffFile(paper["src"] / "test" / "input" / "5_input.tif").pages[0].asarray()
    label = tifffile.imread(paper["src"] / "test" / "label" / "5_label.tif")
    inpt = T.ToTensor()(np.concatenate([arr, label[..., None].astype(np.float32)], axis=2))
    h, w = inpt.shape[1:]
    inpt = T.CenterCrop((h - h % 32, w - w % 32))(inpt)
    y, x = inpt[-1:], inpt[:-1]
    x = torch.nan_to_num(T.Normalize(mean=grid["mean"], std=grid["std"])(x), nan=0.0)
    entries = read_leaderboard(paper["runs"] / setting)
    channels = entries[0].meta().extra["channels"]
    x = x[channels][None]
    truth = y.round().flatten().numpy().astype(bool)
    out, probs = [], []
    for entry in entries:
        ckpt = _trusted_load(Path(entry.meta().extra["checkpoint"]))
        net = ckpt["hyper_parameters"]["net"]
        net.load_state_dict({k[4:]: v for k, v in ckpt["state_dict"].items() if k[:4] == "net."})
        with torch.no_grad():
            probs.append(torch.sigmoid(net.eval()(x)))
        single = probs[-1].round().flatten().numpy().astype(bool)
        ens = torch.stack(probs).mean(0).round().flatten().numpy().astype(bool)
        f1 = [2 * (p & truth).sum() / max(p.sum() + truth.sum(), 1) for p in (single, ens)]
        out.append((float(f1[0]), float(f1[1])))
    return out


def test_paper_protocol_scores_as_the_notebook(paper: dict[str, Path], tmp_path: Path) -> None:
    anchors = tmp_path / "table8.csv"
    anchors.write_text("setting,bands,f1_single_best_val,f1_ens10,f1_ens20,f1_ens40\n"
                       's2,"CART_LC dNDVI",0.52,0.57,0.61,0.60\n')  # fmt: skip
    result = CliRunner().invoke(main, [
        "evaluate", str(paper["runs"]), "--data", str(paper["events"]), "--protocol", "paper",
        "--anchors", str(anchors), "--out", str(tmp_path / "eval"), "--device", "cpu",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "s2: 2 models; single best" in result.output and "(paper: single best 0.52" in result.output
    )
    with (tmp_path / "eval" / "paper_protocol.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["setting"] == "s2"]
    expected = _notebook_scores(paper, "s2")
    assert [int(r["k"]) for r in rows] == [1, 2]
    for row, (single, ens) in zip(rows, expected, strict=True):
        assert float(row["f1"]) == pytest.approx(single, abs=1e-5)
        assert float(row["ens_f1"]) == pytest.approx(ens, abs=1e-5)
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "| s2 |" in report and "(0.52)" in report and "Ensemble test F1 for every K" in report


def test_paper_protocol_overwrites_only_its_own_evaluation(paper: dict[str, Path], tmp_path: Path):
    """--overwrite replaces an evaluation lsd wrote, never a user's folder or an input."""
    base = ["evaluate", str(paper["runs"]), "--data", str(paper["events"]), "--protocol", "paper",
            "--device", "cpu", "--overwrite", "--out"]  # fmt: skip
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(main, [*base, str(mine)])
    assert result.exit_code == 1 and "was not written by lsd" in result.output, result.output
    assert (mine / "notes.txt").read_text() == "keep me"
    runs_before = sorted(p.name for p in paper["runs"].iterdir())
    result = CliRunner().invoke(main, [*base, str(paper["runs"])])
    assert result.exit_code == 1 and "an input of this command" in result.output, result.output
    assert sorted(p.name for p in paper["runs"].iterdir()) == runs_before
    for _ in range(2):  # its own evaluation is replaced
        result = CliRunner().invoke(main, [*base, str(tmp_path / "eval")])
        assert result.exit_code == 0, result.output
    assert (tmp_path / "eval" / "report.md").is_file()


def test_deeplabv3_checkpoints_of_older_smp_load(tmp_path: Path) -> None:
    """smp 0.3 (the paper's) named DeepLabV3's decoder modules 0, 1, 2; today's smp names them
    aspp, conv, bn. Such weights load and compute what they computed."""
    from lsd.training.checkpoints import LightningCheckpoint, model_from_checkpoint
    from lsd.training.models import build_model

    torch.manual_seed(0)
    ref = build_model("DeepLabV3", 2, "mobilenet_v2").eval()
    old_names = {"decoder.aspp.": "decoder.0.", "decoder.conv.": "decoder.1.",
                 "decoder.bn.": "decoder.2."}  # fmt: skip
    state = {}
    for key, value in ref.state_dict().items():
        for new, old in old_names.items():
            if key.startswith(new):
                key = old + key[len(new) :]
        state["net." + key] = value
    assert "net.decoder.0.convs.0.0.weight" in state
    ckpt = LightningCheckpoint(path=tmp_path / "epoch_001.ckpt", state_dict=state)
    model, encoder = model_from_checkpoint(ckpt, "DeepLabV3", ["mobilenet_v2"], 2)
    x = torch.randn(1, 2, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x))
    assert encoder == "mobilenet_v2"
