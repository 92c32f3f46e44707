"""Shared fixtures: the public data samples beside the repo, and (in stream tests) the real broker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """`../shared/data` beside the repo, or the path in BEHAVIOR_STREAM_SHARED_DATA."""
    return Path(os.environ.get("BEHAVIOR_STREAM_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared public samples; their absence is an error, not a skip (CI always has them)."""
    path = shared_data_dir()
    assert (path / "taobao").is_dir(), f"shared data not found at {path} (set BEHAVIOR_STREAM_SHARED_DATA)"
    return path
