"""Shared fixtures: the public data samples beside the repo, the real broker, small checkpoints."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from behavior_stream.data.loaders import load_events
from behavior_stream.schema.vocab import ItemVocab
from behavior_stream.testing.broker import EmbeddedBroker
from tests.streamkit import make_checkpoint

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


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A Tansu broker on a free port, for the whole test session."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as b:
        yield b


@pytest.fixture(scope="session")
def taobao_events(shared_data: Path) -> list:
    """The shared Taobao sample as events, in time order."""
    return load_events(shared_data / "taobao" / "UserBehavior_prefix.csv", "taobao").events


@pytest.fixture(scope="session")
def taobao_checkpoint(tmp_path_factory: pytest.TempPathFactory, taobao_events: list) -> Path:
    """A checkpoint whose catalog is the Taobao sample's items."""
    items = ItemVocab.build(e.item_id for e in taobao_events).items
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "taobao.pt", list(items), seed=1)
