"""training/data.py on the generated events (Landslide4Sense layers): split, normalisation, crop
sampling."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lsd.errors import UserError
from lsd.events import EVENT_FILE, list_events
from lsd.files import read_json, write_json
from lsd.rasters import LABEL_IGNORE, read_label, read_stack, write_stack
from lsd.training.crops import CropSampler
from lsd.training.data import EventArrays, compute_norm, load_events, split_events

LAYERS = ("B2", "B3", "B4", "B8", "B11", "B12", "slope", "elevation")
SIDE = 64  # the generated events are SIDE x SIDE pixels


@pytest.fixture(scope="module")
def events(gen_events: Path):
    return list_events(gen_events)


@pytest.fixture(scope="module")
def arrays(events) -> list[EventArrays]:
    torch.set_num_threads(1)
    mean, std = compute_norm(events, LAYERS)
    return load_events(events, LAYERS, mean, std)


def _ids(events) -> list[str]:
    return [e.event_id for e in events]


# --------------------------------------------------------------------------- split


def test_split_is_reproducible_disjoint_and_complete(events):
    a = split_events(events, seed=7)
    assert a == split_events(events, seed=7)
    assert sorted(a["train"] + a["val"] + a["test"]) == sorted(_ids(events))
    assert not set(a["train"]) & set(a["val"]) and not set(a["val"]) & set(a["test"])
    assert not set(a["train"]) & set(a["test"])
    n_hold = round(0.15 * len(events))  # 2 of 12 (3 of 21)
    assert (len(a["val"]), len(a["test"]), len(a["train"])) == (
        n_hold, n_hold, len(events) - 2 * n_hold
    )  # fmt: skip
    assert all(part == sorted(part) for part in a.values())
    others = [split_events(events, seed=s) for s in range(8, 12)]
    assert any(o["val"] != a["val"] for o in others), "the seed must change the draw"


def test_split_counts_and_explicit_lists(events):
    ids = _ids(events)
    s = split_events(events, val=[ids[4], ids[0]], test=[ids[9]])
    assert s["val"] == sorted([ids[0], ids[4]]) and s["test"] == [ids[9]]
    assert len(s["train"]) == len(ids) - 3
    s = split_events(events, val=[ids[2]], test=5, seed=1)
    assert s["val"] == [ids[2]] and len(s["test"]) == 5 and ids[2] not in s["test"]
    assert split_events(events, val=ids[1], test=(ids[2],))["val"] == [ids[1]]
    s = split_events(events, val=2, test=0)
    assert len(s["val"]) == 2 and s["test"] == [] and len(s["train"]) == len(ids) - 2


def test_split_uses_roles_from_event_json(events, tmp_path):
    for ev in events[:6]:
        shutil.copytree(ev.path, tmp_path / ev.event_id)
    ids = sorted(p.name for p in tmp_path.iterdir())
    roles = {ids[0]: "val", ids[1]: "test", ids[2]: "test", ids[3]: "train"}
    for event_id, role in roles.items():
        meta = read_json(tmp_path / event_id / EVENT_FILE)
        write_json(tmp_path / event_id / EVENT_FILE, {**meta, "role": role})
    evs = list_events(tmp_path)
    s = split_events(evs, seed=123)
    assert s == {"train": [ids[3], ids[4], ids[5]], "val": [ids[0]], "test": [ids[1], ids[2]]}
    # a part given explicitly replaces its roles; the other parts keep theirs
    s = split_events(evs, val=[ids[5]])
    assert s["val"] == [ids[5]] and s["test"] == [ids[1], ids[2]] and ids[0] in s["train"]
    s = split_events(evs, val=2, seed=5)  # the val-role event first, one more drawn
    assert ids[0] in s["val"] and len(s["val"]) == 2 and s["test"] == [ids[1], ids[2]]
    s = split_events(evs, test=3, seed=5)  # the test-role events first, one more drawn
    assert {ids[1], ids[2]} < set(s["test"]) and len(s["test"]) == 3 and s["val"] == [ids[0]]
    # a test-role event never trains or validates: leaving it out of the test part is refused
    for kwargs in ({"val": 2, "test": 0}, {"test": [ids[1]]}, {"val": [ids[2]]}):
        with pytest.raises(UserError, match="role test") as info:
            split_events(evs, **kwargs)
        assert info.value.field in ("val", "test")
    # without a val role, validation events are drawn from the others, never from test
    write_json(tmp_path / ids[0] / EVENT_FILE, {**read_json(tmp_path / ids[0] / EVENT_FILE),
                                                "role": "train"})  # fmt: skip
    s = split_events(list_events(tmp_path), seed=1)
    assert len(s["val"]) == 1 and not set(s["val"]) & {ids[1], ids[2]}


def test_split_errors_name_the_problem(events):
    ids = _ids(events)
    with pytest.raises(UserError, match="'nope'"):
        split_events(events, val=["nope"])
    with pytest.raises(UserError, match=f"'{ids[3]}'.*both"):
        split_events(events, val=[ids[3]], test=[ids[3], ids[4]])
    with pytest.raises(UserError, match="at least 3"):
        split_events(events[:2])
    with pytest.raises(UserError, match="no validation event"):
        split_events(events, val=0)
    with pytest.raises(UserError, match="no training event"):
        split_events(events, val=len(events) - 4, test=4)
    with pytest.raises(UserError, match="whole number"):
        split_events(events, val=-1)


# --------------------------------------------------------------------------- normalisation


def test_compute_norm_matches_numpy_over_training_pixels(events):
    train = events[:12]
    mean, std = compute_norm(train, LAYERS)
    stacked = np.concatenate(
        [read_stack(e.stack, LAYERS)[0].reshape(len(LAYERS), -1) for e in train], axis=1
    ).astype(np.float64)
    np.testing.assert_allclose(mean, np.nanmean(stacked, axis=1), rtol=1e-6)
    np.testing.assert_allclose(std, np.nanstd(stacked, axis=1), rtol=1e-6)


def test_compute_norm_ignores_nan_and_rejects_an_all_nan_layer(events, tmp_path):
    src = events[0]
    data, names, grid = read_stack(src.stack)
    holes = data.copy()
    holes[:, :40, :70] = np.nan  # no-data corner in every layer
    holes[names.index("slope")] = 1.5  # a constant layer
    shutil.copytree(src.path, tmp_path / "holes")
    write_stack(tmp_path / "holes" / "stack.tif", holes, names, grid)
    evs = list_events(tmp_path)
    mean, std = compute_norm(evs, LAYERS)
    flat = holes[[names.index(n) for n in LAYERS]].reshape(len(LAYERS), -1).astype(np.float64)
    np.testing.assert_allclose(mean, np.nanmean(flat, axis=1), rtol=1e-6)
    assert std[LAYERS.index("slope")] == 1.0  # constant layer: divide by 1, not by 0

    arrays = load_events(evs, LAYERS, mean, std)
    assert np.isfinite(arrays[0].image).all()
    assert (arrays[0].image[:, :40, :70] == 0).all(), "NaN becomes 0 after normalising"

    holes[names.index("B11")] = np.nan
    write_stack(tmp_path / "holes" / "stack.tif", holes, names, grid)
    with pytest.raises(UserError) as err:
        compute_norm(list_events(tmp_path), LAYERS)
    msg = str(err.value)
    assert "'holes'" in msg and "'B11'" in msg and "\n" not in msg and "setting" in msg


def test_load_events_normalises_in_setting_order(events):
    layers = ("elevation", "B4")
    mean, std = [10.0, 0.5], [2.0, 4.0]
    (arr,) = load_events(events[:1], layers, mean, std)
    raw = read_stack(events[0].stack, layers)[0]
    expected = (raw - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(arr.image, expected, rtol=1e-6)
    assert arr.image.dtype == np.float32 and arr.label.dtype == np.uint8
    np.testing.assert_array_equal(arr.label, read_label(events[0].label)[0])
    assert arr.event_id == events[0].event_id


def test_missing_layer_is_one_line_naming_layer_and_stack(events):
    with pytest.raises(UserError, match=r"stack\.tif: lacks layer\(s\) dNDVI"):
        load_events(events[:2], ("B2", "dNDVI"), [0, 0], [1, 1])
    with pytest.raises(UserError, match="dNDVI"):
        compute_norm(events[:2], ("dNDVI",))


# --------------------------------------------------------------------------- crop sampler


def test_batch_shapes_dtypes_and_padding(arrays):
    window = 2 * SIDE
    sampler = CropSampler(arrays, crop=window, batch_size=4, seed=0)
    for _ in range(5):
        x, y = sampler.batch()
        assert x.shape == (4, len(LAYERS), window, window) and x.dtype == torch.float32
        assert y.shape == (4, window, window) and y.dtype == torch.uint8
        assert set(torch.unique(y).tolist()) <= {0, 1, LABEL_IGNORE}
        pad = y == LABEL_IGNORE
        # a SIDE x SIDE patch inside a window twice as wide: exactly 3/4 of it is padding
        assert (pad.sum(dim=(1, 2)) == window * window - SIDE * SIDE).all()
        assert (x.masked_select(pad.unsqueeze(1).expand_as(x)) == 0).all()
        assert (x.abs().sum(dim=1)[~pad] > 0).float().mean() > 0.99, "real data off the padding"


def test_landslide_crops_contain_landslide_and_empty_events_still_sample(arrays):
    with_slides = [a for a in arrays if (a.label == 1).any()]
    without = [a for a in arrays if not (a.label == 1).any()]
    assert len(with_slides) == 10 and len(without) == 2  # as make_events.py writes them
    for crop in (16, 2 * SIDE):
        for arr in with_slides:
            _, y = CropSampler([arr], crop=crop, batch_size=6, seed=1).batch()
            assert ((y == 1).flatten(1).any(dim=1)).all(), arr.event_id
    x, y = CropSampler(without, crop=64, batch_size=8, seed=2).batch()
    assert x.shape == (8, len(LAYERS), 64, 64) and not (y == 1).any() and (y == 0).all()


def _pixel_ids(arr: EventArrays) -> EventArrays:
    """An event whose channel 0 equals the label and channel 1 numbers the pixels (from 1)."""
    h, w = arr.label.shape
    ids = np.arange(1, h * w + 1, dtype=np.float32).reshape(h, w)
    return EventArrays(arr.event_id, np.stack([arr.label.astype(np.float32), ids]), arr.label)


def _untransform(ids: np.ndarray) -> np.ndarray | None:
    """The dihedral transform of `ids` that is an upright window of the image, if any."""
    for k in range(4):
        for flip in (False, True):
            t = np.rot90(ids, k)
            t = t[:, ::-1] if flip else t
            valid = t > 0
            rows = np.where(valid.any(axis=1))[0]
            cols = np.where(valid.any(axis=0))[0]
            block = t[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
            if (np.diff(block, axis=1) == 1).all() and (np.diff(block[:, 0]) == SIDE).all():
                return t
    return None


@pytest.mark.parametrize("crop", [24, 2 * SIDE])
def test_rotations_and_flips_keep_image_and_label_aligned(arrays, crop):
    event = _pixel_ids(next(a for a in arrays if (a.label == 1).sum() > 150))
    sampler = CropSampler([event], crop=crop, batch_size=8, seed=3)
    corners = set()
    for _ in range(8):
        x, y = sampler.batch()
        valid = y != LABEL_IGNORE
        assert valid.all() or crop > SIDE, "a window that fits stays on the image"
        assert torch.equal(x[:, 0][valid], y[valid].float()), "image channel 0 is the label"
        assert (x[:, 1][~valid] == 0).all()
        for i in range(x.shape[0]):
            ids = x[i, 1].numpy()
            assert _untransform(ids) is not None, "each crop is a rotated/flipped image window"
            first = int(ids[ids > 0].min())  # the window's top-left image pixel
            corners.add((first, int(np.argmax(ids.reshape(-1) == first))))
        # the label follows the pixel ids exactly
        pix = x[:, 1][valid].long() - 1
        assert torch.equal(y[valid], torch.from_numpy(event.label.reshape(-1))[pix])
    assert len(corners) > 10, "the landslide pixel is not always at the same window position"


def test_all_eight_orientations_occur(arrays):
    event = _pixel_ids(arrays[0])
    sampler = CropSampler([event], crop=8, batch_size=16, seed=4)
    seen = set()
    for _ in range(8):
        x, _ = sampler.batch()
        for ids in x[:, 1]:
            # first row's step and first column's step identify one of the 8 orientations
            seen.add((int(ids[0, 1] - ids[0, 0]), int(ids[1, 0] - ids[0, 0])))
    n = SIDE
    assert seen == {(1, n), (1, -n), (-1, n), (-1, -n), (n, 1), (n, -1), (-n, 1), (-n, -1)}


def test_same_seed_same_batches_and_state_round_trip(arrays):
    a = CropSampler(arrays, crop=64, batch_size=4, seed=11)
    b = CropSampler(arrays, crop=64, batch_size=4, seed=11)
    for _ in range(3):
        (xa, ya), (xb, yb) = a.batch(), b.batch()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    other = CropSampler(arrays, crop=64, batch_size=4, seed=12).batch()[0]
    assert not torch.equal(other, a.batch()[0])

    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)  # as a checkpoint would store it
    expected = [a.batch() for _ in range(3)]
    resumed = CropSampler(arrays, crop=64, batch_size=4, seed=999)
    buf.seek(0)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    for x, y in expected:
        xr, yr = resumed.batch()
        assert torch.equal(x, xr) and torch.equal(y, yr)


def test_sampler_rejects_bad_input(arrays):
    with pytest.raises(UserError, match="no training events"):
        CropSampler([])
    odd = EventArrays("odd", np.zeros((3, 10, 10), np.float32), np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="layer counts"):
        CropSampler([arrays[0], odd])


@pytest.mark.gpu
def test_cuda_batches_equal_cpu_batches(arrays):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cpu = CropSampler(arrays, crop=256, batch_size=4, seed=5)
    gpu = CropSampler(arrays, crop=256, batch_size=4, seed=5, device="cuda")
    assert gpu._images[0].is_cuda
    for _ in range(4):
        (xc, yc), (xg, yg) = cpu.batch(), gpu.batch()
        assert xg.is_cuda and yg.is_cuda
        assert torch.equal(xc, xg.cpu()) and torch.equal(yc, yg.cpu())
