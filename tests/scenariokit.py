"""Models with known answers for the scenario tests: hand-set weights, side data in the metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from behavior_stream.nn.checkpoint import LoadedModel, save_checkpoint
from behavior_stream.nn.config import ModelConfig
from behavior_stream.nn.network import SequenceModel
from behavior_stream.schema.vocab import ItemVocab
from behavior_stream.stream.core.engine import ModelEngine

ITEMS = [f"i{i}" for i in range(40)]


def repeat_only_model(items: list[str] = ITEMS) -> LoadedModel:
    """A model whose only score is a repeat bonus of exactly 1 per history event of the item:
    the recurrent path, the last-item shortcut and the item bias are zeroed, the bonus is constant.
    An item's score is how often it occurs in the window, and only those events drive it."""
    torch.manual_seed(0)
    vocab = ItemVocab(tuple(items), n_oov_buckets=8)
    config = ModelConfig(hidden_size=8, item_dim=8, repeat_window=8)
    model = SequenceModel(config, vocab.n_items, vocab.n_inputs)
    with torch.no_grad():
        model.out_proj.weight.zero_()
        model.out_proj.bias.zero_()
        model.last_item.weight.zero_()
        model.item_bias.zero_()
        model.repeat.out.weight.zero_()
        model.repeat.out.bias.fill_(1.0)
    model.eval()
    return LoadedModel(model, vocab, config, {}, "repeat-only")


def random_checkpoint(path: Path, metadata: dict[str, Any], items: list[str] = ITEMS, seed: int = 3) -> Path:
    """An untrained model over `items` saved with `metadata` (e.g. a cart table, a calibration)."""
    torch.manual_seed(seed)
    vocab = ItemVocab(tuple(items), n_oov_buckets=16)
    config = ModelConfig(hidden_size=16, item_dim=16, repeat_window=8)
    model = SequenceModel(config, vocab.n_items, vocab.n_inputs)
    save_checkpoint(path, model, vocab, {"seed": seed, **metadata})
    return path


def engine_of(loaded: LoadedModel, ann_threshold: int = 0) -> ModelEngine:
    """An engine over an in-memory model (no checkpoint file)."""
    return ModelEngine(loaded, ann_threshold)
