"""Shared test configuration: quiet TensorFlow, find the real archive when present."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

REAL_ARCHIVE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "17flowers.tgz"


@pytest.fixture(scope="session")
def real_archive():
    """Path to ../shared/data/17flowers.tgz, or skip the test when it is absent."""
    if not REAL_ARCHIVE.is_file():
        pytest.skip(f"real archive not found at {REAL_ARCHIVE}")
    return REAL_ARCHIVE
