"""Shared fixtures: the generated event folders the core tests use, and where the real data
lives for the tests that check what only real imagery shows (marked `real_data`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.ee_offline import ee_offline  # noqa: F401  (offline Earth Engine fixture)

REPO = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout, or the folder LSD_SHARED_DATA names (a git worktree elsewhere)
SHARED_DATA = Path(os.environ.get("LSD_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module (`pytestmark = pytest.mark.usefixtures(...)`): results that
    are compared bit for bit depend on the thread count, and two cores are shared with workers."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# twelve small event folders (14 Landslide4Sense layers, 64 px, UTM), written by the script
# beside them; tests/test_generated_data.py checks that they are what it writes
GENERATED_EVENTS = REPO / "tests" / "data" / "events"


@pytest.fixture(scope="session")
def gen_events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of tests/data/events for the session, so no test can change the committed
    folders; tests that damage events copy this folder first."""
    dest = tmp_path_factory.mktemp("gen") / "events"
    shutil.copytree(GENERATED_EVENTS, dest)
    return dest


@pytest.fixture(scope="session")
def l4s_generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """21 generated patches in the Landslide4Sense form of ../shared/data/landslide4sense-21
    (img/image_N.h5, mask/mask_N.h5, 128 x 128 x 14; every third without a landslide), written
    by tests/l4s_fixtures.py: for the importer, inference, predict and fault tests."""
    from tests.l4s_fixtures import write_split

    return write_split(tmp_path_factory.mktemp("l4s_generated"), list(range(1, 22)))


def shared_dataset(name: str) -> Path:
    """Path to a dataset in ../shared/data, or skip the test saying what is missing."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(
            f"real data {path} is absent (it sits beside the checkout on dev machines and CI)"
        )
    return path


@pytest.fixture(scope="session")
def l4s_dir() -> Path:
    return shared_dataset("landslide4sense-21")


@pytest.fixture(scope="session")
def chittagong_dir() -> Path:
    return shared_dataset("chittagong-s2-chips")


@pytest.fixture(scope="session")
def bijie_dir() -> Path:
    return shared_dataset("bijie-mini")


# Imported once per test session (by pipeline.importers) so every test that needs real event
# folders shares one copy instead of converting the data again.
CHITTAGONG_MAPPING = {0: 255, 1: 0, 2: 1}  # 0 unlabelled -> ignored, 1 not landslide, 2 landslide
CHITTAGONG_LAYERS = ["R", "G", "B", "NIR"]


@pytest.fixture(scope="session")
def l4s_events(l4s_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All 21 Landslide4Sense patches as event folders (l4s_image_N); returns the data folder."""
    from lsd.pipeline.sources import import_landslide4sense

    dest = tmp_path_factory.mktemp("l4s_events")
    import_landslide4sense(l4s_dir, dest, progress=False)
    return dest


@pytest.fixture(scope="session")
def chittagong_events(chittagong_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All 100 Chittagong chips as event folders (EPSG:4326, layers R,G,B,NIR, 0 -> 255)."""
    from lsd.pipeline.sources import import_tiles

    dest = tmp_path_factory.mktemp("chittagong_events")
    import_tiles(
        chittagong_dir,
        dest,
        CHITTAGONG_MAPPING,
        pairs=chittagong_dir / "map.txt",
        layers=CHITTAGONG_LAYERS,
        progress=False,
    )
    return dest


from tests.fixtures_ensemble import tiny_runs  # noqa: E402, F401
