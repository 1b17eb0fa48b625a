"""Shared fixtures: where the real data lives, and small helpers to build event folders."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


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
