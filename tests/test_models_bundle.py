"""The nine architectures build offline for any layer count; bundles round-trip and fail clearly."""

from __future__ import annotations

import json

import pytest
import torch

from lsd.bundles import META_FILE, WEIGHTS_FILE, BundleMeta
from lsd.errors import UserError
from lsd.training.bundle import load_bundle, save_bundle
from lsd.training.models import ARCHITECTURES, build_model, canonical_arch, forward_whole


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_builds_and_keeps_shape(arch):
    torch.manual_seed(0)
    model = build_model(arch, in_channels=11, encoder="resnet18").eval()
    with torch.inference_mode():
        out = forward_whole(model, torch.randn(1, 11, 70, 45))
    assert out.shape == (1, 1, 70, 45)
    assert torch.isfinite(out).all()


def test_names_are_checked():
    assert canonical_arch("unet++") == "UnetPlusPlus"
    assert canonical_arch("deeplabv3plus") == "DeepLabV3Plus"
    with pytest.raises(UserError, match="unknown architecture 'SegFormerX'"):
        canonical_arch("SegFormerX")
    with pytest.raises(UserError, match="unknown encoder 'resnet35'"):
        build_model("Unet", 3, encoder="resnet35")


def test_local_encoder_weights_are_loaded(tmp_path):
    torch.manual_seed(1)
    donor = build_model("Unet", 3, encoder="resnet18")
    path = tmp_path / "enc.pt"
    torch.save(donor.encoder.state_dict(), path)
    model = build_model("FPN", 5, encoder="resnet18", encoder_weights_file=path)
    # the stem differs (5 bands), the rest of the encoder comes from the file
    assert torch.equal(model.encoder.layer4[0].conv1.weight, donor.encoder.layer4[0].conv1.weight)
    assert model.encoder.conv1.weight.shape[1] == 5
    with pytest.raises(UserError, match="enc2.pt: encoder weights file not found"):
        build_model("FPN", 5, encoder="resnet18", encoder_weights_file=tmp_path / "enc2.pt")


def _meta() -> BundleMeta:
    return BundleMeta(
        arch="Linknet", encoder="resnet18", loss="Dice", lr=0.001, layers=["a", "b"],
        mean=[0.5, 1.0], std=[2.0, 3.0], scores={"f1": 0.4},
    )  # fmt: skip


def test_bundle_round_trip(tmp_path):
    torch.manual_seed(2)
    model = build_model("Linknet", 2, encoder="resnet18").eval()
    save_bundle(tmp_path / "b", model, _meta())
    loaded, meta = load_bundle(tmp_path / "b")
    assert meta.layers == ["a", "b"] and meta.scores == {"f1": 0.4} and meta.weights_sha256
    x = torch.randn(1, 2, 64, 64)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))
    assert not loaded.training


def test_damaged_bundles_name_the_file(tmp_path):
    model = build_model("Linknet", 2, encoder="resnet18")
    save_bundle(tmp_path / "b", model, _meta())
    weights = tmp_path / "b" / WEIGHTS_FILE
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="model.pt: weights do not match their checksum"):
        load_bundle(tmp_path / "b")
    meta_path = tmp_path / "b" / META_FILE
    raw = json.loads(meta_path.read_text())
    raw["weights_sha256"] = ""
    meta_path.write_text(json.dumps(raw))
    with pytest.raises(UserError, match="model.pt: not a readable model file"):
        load_bundle(tmp_path / "b")
    meta_path.write_text("{")
    with pytest.raises(UserError, match="bundle.json: not readable JSON"):
        load_bundle(tmp_path / "b")
    meta_path.unlink()
    with pytest.raises(UserError, match="bundle.json: file not found"):
        load_bundle(tmp_path / "b")
