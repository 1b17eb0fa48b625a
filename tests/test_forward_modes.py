"""How tiles go through the networks on a CPU: channels_last, opt-in bf16 where the CPU has it,
and test-time augmentation, on real trained members and the generated events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lsd.errors import DeviceUnavailable, InvalidValue
from lsd.events import list_events
from lsd.rasters import read_stack
from lsd.training import precision as precision_mod
from lsd.training.bundle import load_bundle
from lsd.training.inference import DIHEDRAL, ForwardOptions, TileOptions, predict_array
from lsd.training.models import forward_whole
from lsd.training.normalise import norm_tensors, normalise
from lsd.training.precision import Precision, cpu_flags, cpu_has_bf16


@pytest.fixture(scope="module")
def member_and_image(tiny_runs):
    model, meta = load_bundle(tiny_runs.runs / "runs" / "FPN-BCE-lr0.01" / "bundle")
    event = next(e for e in list_events(tiny_runs.data) if e.event_id in tiny_runs.split["val"])
    image, _, _ = read_stack(event.stack, meta.layers)
    return (model, meta), image


def by_hand(model, meta, image: np.ndarray) -> np.ndarray:
    """fp32, contiguous tensors, no lsd precision policy: the reference probabilities."""
    mean, std = norm_tensors(meta.mean, meta.std, torch.device("cpu"))
    x = normalise(torch.from_numpy(image[None].copy()), mean, std)
    with torch.inference_mode():
        return torch.sigmoid(forward_whole(model.eval(), x))[0, 0].numpy()


def test_cpu_default_is_fp32_channels_last_and_agrees_with_plain_fp32(member_and_image):
    (model, meta), image = member_and_image
    p = Precision.for_device(torch.device("cpu"))
    assert p.dtype is None and p.channels_last and p.name == "fp32"
    got = predict_array([(model, meta)], image, tiles=TileOptions(tile=128, overlap=0))[0]
    np.testing.assert_allclose(got, by_hand(model, meta, image), atol=1e-5)


def test_tta_is_the_mean_of_the_eight_symmetries(member_and_image):
    (model, meta), image = member_and_image
    tiles = TileOptions(tile=128, overlap=0)  # one whole-image tile
    tta = predict_array([(model, meta)], image, tiles=tiles, forward=ForwardOptions(tta=True))[0]
    views = []
    for k, mirrored in DIHEDRAL:
        v = image[:, :, ::-1] if mirrored else image
        v = np.rot90(v, k, axes=(1, 2)).copy()
        p = predict_array([(model, meta)], v, tiles=tiles)[0]
        p = np.rot90(p, -k)
        views.append(p[:, ::-1] if mirrored else p)
    np.testing.assert_allclose(tta, np.mean(views, axis=0), atol=1e-6)
    assert np.abs(tta - views[0]).max() > 1e-4  # the symmetries do change the answer
    plain = predict_array([(model, meta)], image, tiles=tiles)[0]
    np.testing.assert_array_equal(plain, views[0])  # TTA is off unless asked for


def test_bf16_is_offered_only_where_the_cpu_has_it(member_and_image, monkeypatch):
    flags = cpu_flags()
    assert cpu_has_bf16() == bool(flags & {"avx512_bf16", "amx_bf16"})
    (model, meta), image = member_and_image
    if cpu_has_bf16():
        p = Precision.for_device(torch.device("cpu"), mode="bf16")
        assert p.dtype is torch.bfloat16 and p.name == "bf16"
        got = predict_array([(model, meta)], image, tiles=TileOptions(tile=128, overlap=0),
                            forward=ForwardOptions(precision="bf16"))[0]  # fmt: skip
        ref = by_hand(model, meta, image)
        assert 0 < np.abs(got - ref).max() < 0.1  # bf16 moves probabilities, a little
    monkeypatch.setattr(precision_mod, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    with pytest.raises(DeviceUnavailable, match="no native bfloat16") as err:
        Precision.for_device(torch.device("cpu"), mode="bf16")
    assert err.value.field == "precision"
    with pytest.raises(InvalidValue, match="precision 'fp8'"):
        ForwardOptions(precision="fp8")


def test_predict_precision_mistakes_are_one_line(member_and_image, tiny_runs, tmp_path: Path,
                                                 monkeypatch):  # fmt: skip
    from click.testing import CliRunner

    from lsd.pipeline.cli import main

    event = list_events(tiny_runs.data)[0]
    bundle = tiny_runs.runs / "runs" / "FPN-BCE-lr0.01" / "bundle"
    base = ["predict", "--stack", str(event.stack), "--model", str(bundle), "--out",
            str(tmp_path / "out"), "--device", "cpu"]  # fmt: skip
    res = CliRunner().invoke(main, [*base, "--precision", "fp8"])
    [line] = res.output.strip().splitlines()  # not a choice: a usage mistake, exit 2
    assert res.exit_code == 2 and line.startswith("Error: Invalid value for '--precision': 'fp8'")
    monkeypatch.setattr(precision_mod, "cpu_flags", lambda: frozenset())
    res = CliRunner().invoke(main, [*base, "--precision", "bf16"])
    [line] = res.output.strip().splitlines()
    assert res.exit_code == 1 and line.startswith("Error: --precision bf16: this CPU has no")
    assert not (tmp_path / "out").exists()


def test_onnx_runtime_agrees_with_pytorch_and_falls_back_per_member(
    tiny_runs, member_and_image, tmp_path: Path, monkeypatch, capsys
):
    from lsd.bundles import BundleMeta
    from lsd.training import onnx_runtime
    from lsd.training.models import build_model

    monkeypatch.setenv("LSD_CACHE", str(tmp_path / "cache"))
    (model, meta), image = member_and_image
    linknet = load_bundle(tiny_runs.runs / "runs" / "Linknet-BCE-lr0.001" / "bundle")
    torch.manual_seed(0)
    psp = build_model("PSPNet", len(meta.layers), "mobilenet_v2").eval()  # cannot be exported
    psp_meta = BundleMeta("PSPNet", "mobilenet_v2", "BCE", 1e-3, meta.layers, meta.mean, meta.std)
    members = [(model, meta), linknet, (psp, psp_meta)]
    tiles = TileOptions(tile=64, overlap=16)
    ref = predict_array(members, image, tiles=tiles)
    got = predict_array(members, image, tiles=tiles, forward=ForwardOptions(runtime="onnx"))
    assert np.abs(got - ref).max() <= onnx_runtime.TOLERANCE
    assert np.array_equal(got[2], ref[2])  # PSPNet stayed on PyTorch
    warnings = [w for w in capsys.readouterr().err.splitlines() if w.startswith("Warning:")]
    [w] = warnings
    assert "member 3 (PSPNet/mobilenet_v2): ONNX export failed" in w
    assert len(list((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 2  # exported once each

    monkeypatch.setattr(onnx_runtime, "TOLERANCE", 0.0)  # any difference now fails the check
    got = predict_array(members[:1], image, tiles=tiles, forward=ForwardOptions(runtime="onnx"))
    assert np.array_equal(got, ref[:1])  # the member went back to PyTorch from the first batch
    [w] = [x for x in capsys.readouterr().err.splitlines() if x.startswith("Warning:")]
    assert "member 1 (FPN/mobilenet_v2): ONNX Runtime differs from PyTorch" in w
    with pytest.raises(InvalidValue, match="runtime onnx runs in fp32"):
        ForwardOptions(runtime="onnx", precision="bf16")
