"""Stream fixtures: the real embedded broker (once per session) and small model checkpoints."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from model.checkpoint import save_checkpoint
from model.config import ModelConfig
from model.data import load_events
from model.network import SequenceModel
from model.vocab import ItemVocab
from stream_app.broker import EmbeddedBroker


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


def make_checkpoint(path: Path, items: list[str], seed: int, cell: str = "gru") -> Path:
    """An untrained model over `items` (random weights from `seed`): enough for stream mechanics."""
    torch.manual_seed(seed)
    vocab = ItemVocab(tuple(items), n_oov_buckets=64)
    config = ModelConfig(cell=cell, hidden_size=32, item_dim=32, repeat_window=8)  # type: ignore[arg-type]
    model = SequenceModel(config, vocab.n_items, vocab.n_inputs)
    save_checkpoint(path, model, vocab, {"seed": seed, "note": "untrained test model"})
    return path


@pytest.fixture(scope="session")
def taobao_checkpoint(tmp_path_factory: pytest.TempPathFactory, taobao_events: list) -> Path:
    """A checkpoint whose catalog is the Taobao sample's items."""
    items = ItemVocab.build(e.item_id for e in taobao_events).items
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "taobao.pt", list(items), seed=1)
