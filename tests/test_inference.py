"""Tiled inference: blending equals whole-image inference where the network is local, no seams,
NaN windows stay NaN, rows are streamed once each."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from lsd.bundles import BundleMeta
from lsd.errors import UserError
from lsd.training.inference import (
    TileOptions,
    blend_ramp,
    predict_array,
    predict_rows,
    tile_starts,
)
from lsd.training.models import build_model


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _meta(layers: list[str], mean: list[float], std: list[float]) -> BundleMeta:
    return BundleMeta("Unet", "resnet18", "Dice", 1e-3, layers, mean, std)


@pytest.fixture(scope="module")
def l4s_big(l4s_generated) -> tuple[np.ndarray, list[str]]:
    """A 300 x 300 x 14 raw image assembled from nine generated Landslide4Sense patches."""
    files = sorted((l4s_generated / "img").glob("image_*.h5"))[:9]
    rows = []
    for r in range(3):
        row = []
        for c in range(3):
            with h5py.File(files[r * 3 + c]) as f:
                row.append(np.asarray(f["img"], dtype=np.float32).transpose(2, 0, 1))
        rows.append(np.concatenate(row, axis=2))
    image = np.concatenate(rows, axis=1)[:, :300, :300]
    return np.ascontiguousarray(image), [f"L{i}" for i in range(14)]


def test_tile_starts_cover_and_flush() -> None:
    assert tile_starts(100, 128, 32) == [0]
    starts = tile_starts(300, 128, 32)
    assert starts[0] == 0 and starts[-1] == 300 - 128
    assert all(b - a <= 96 for a, b in zip(starts, starts[1:], strict=False))
    ramp = blend_ramp(128, 32)
    assert ramp.min() > 0 and ramp.max() == 1.0 and ramp[0] == ramp[-1]


def test_tiled_equals_whole_for_a_local_network(l4s_big) -> None:
    """A per-pixel network has no context, so tiled and whole inference must agree exactly:
    this checks the blending arithmetic itself (weights sum, offsets, flush-to-edge tiles)."""
    image, layers = l4s_big
    torch.manual_seed(0)
    members = []
    for seed in range(2):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Conv2d(14, 8, 1), nn.ReLU(), nn.Conv2d(8, 1, 1))
        members.append((net, _meta(layers, [0.5 * seed] * 14, [1.0 + seed] * 14)))
    tiled = predict_array(members, image, tiles=TileOptions(128, 32, 3))
    whole = predict_array(members, image, tiles=TileOptions(512))
    assert tiled.shape == (2, 300, 300) and tiled.dtype == np.float32
    np.testing.assert_allclose(tiled, whole, atol=1e-6)
    assert not np.allclose(tiled[0], tiled[1])  # each member used its own normalisation


def test_tiled_equals_whole_where_the_receptive_field_allows(l4s_big) -> None:
    """Three 3x3 convolutions see 3 pixels around each pixel. Away from the tiles' inner edges
    every tile that covers a pixel gives it its whole-image value, so the blend must too."""
    image, layers = l4s_big
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(14, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 1, 3, padding=1),
    ).eval()  # fmt: skip
    members = [(net, _meta(layers, [0.0] * 14, [1.0] * 14))]
    tiled = predict_array(members, image, tiles=TileOptions(128, 32))[0]
    whole = predict_array(members, image, tiles=TileOptions(512))[0]
    starts = tile_starts(300, 128, 32)
    # inner tile edges, plus the image's bottom/right edge where whole-image inference pads
    # 300 -> 320 by reflection while the flush 128-pixel tiles need no padding
    edges = [*starts[1:], *(s + 128 for s in starts[:-1]), 300]
    near = np.zeros(300, bool)
    for e in edges:
        near[max(0, e - 3) : e + 3] = True
    far = ~near[:, None] & ~near[None, :]
    assert far.mean() > 0.8
    np.testing.assert_allclose(tiled[far], whole[far], atol=1e-6)


def test_tiled_unet_is_seamless(l4s_big) -> None:
    """A real U-Net sees beyond its tile, so tiled != whole; blending must keep it close and
    leave no step at tile borders (border rows change no more than any other rows)."""
    image, layers = l4s_big
    torch.manual_seed(3)
    model = build_model("Unet", 14, "resnet18").eval()
    members = [(model, _meta(layers, [0.0] * 14, [1.0] * 14))]
    tiled = predict_array(members, image, tiles=TileOptions(128, 32))[0]
    whole = predict_array(members, image, tiles=TileOptions(512))[0]
    assert np.isfinite(tiled).all()

    def row_steps(p: np.ndarray) -> np.ndarray:
        return np.abs(np.diff(p, axis=0)).mean(axis=1)

    steps = row_steps(tiled)
    borders = [s + d for s in tile_starts(300, 128, 32)[1:] for d in (-1, 0)]
    borders += [s + 127 for s in tile_starts(300, 128, 32)[:-1]]
    typical = np.median(steps)
    assert max(steps[b] for b in borders) < 3 * typical
    # without blending (hard cut at tile edges) the same network would show steps there
    hard = whole.copy()
    hard[:128] = predict_array(members, image[:, :128], tiles=TileOptions(512))[0]
    assert row_steps(hard)[127] > steps[127]


def test_all_nan_window_gives_nan(l4s_big) -> None:
    image, layers = l4s_big
    image = image.copy()
    image[:, :160, :160] = np.nan  # covers whole tiles at tile 128
    image[:5, 200, 200] = np.nan  # some layers NaN: still predicted
    torch.manual_seed(0)
    members = [(build_model("Unet", 14, "resnet18").eval(), _meta(layers, [0.0] * 14, [1.0] * 14))]
    stats: dict = {}
    out = predict_array(members, image, tiles=TileOptions(128, 32), stats=stats)[0]
    assert np.isnan(out[:160, :160]).all()
    assert np.isfinite(out[160:]).all() and np.isfinite(out[:, 160:]).all()
    assert stats["tiles_skipped_all_nan"] >= 1
    assert stats["forward_s"] > 0


def test_rows_are_streamed_once_in_order(l4s_big) -> None:
    image, layers = l4s_big
    net = nn.Conv2d(14, 1, 1)
    members = [(net, _meta(layers, [0.0] * 14, [1.0] * 14))]
    reads: list[tuple[int, int]] = []
    blocks: list[tuple[int, int]] = []

    def read_rows(r0: int, r1: int) -> np.ndarray:
        reads.append((r0, r1))
        return image[:, r0:r1]

    def emit(r0: int, probs: np.ndarray) -> None:
        blocks.append((r0, probs.shape[1]))

    predict_rows(members, read_rows, 300, 300, emit, tiles=TileOptions(128, 32))
    assert all(r1 - r0 == 128 for r0, r1 in reads)  # only a strip is read at a time
    covered = 0
    for r0, n in blocks:
        assert r0 == covered and n <= 128
        covered += n
    assert covered == 300


@pytest.mark.parametrize(
    ("tile", "overlap", "batch", "word"),
    [(16, 0, 8, "--tile"), (128, 64, 8, "--overlap"), (128, 32, 0, "--batch-size")],
)
def test_bad_tiling_is_one_line(tile: int, overlap: int, batch: int, word: str) -> None:
    """Tiling is checked once, when the options are made; the CLI names the flag at fault."""
    from lsd.pipeline.cmd_predict import predict
    from lsd.pipeline.options import error_line

    with pytest.raises(UserError) as err:
        TileOptions(tile, overlap, batch)
    assert err.value.field == word.lstrip("-").replace("-", "_")
    line = error_line(err.value, predict)
    assert line.startswith(word) and "\n" not in line
