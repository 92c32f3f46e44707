"""The model's explicit state (nn/state.py): rows selected and concatenated back, the empty state."""

from __future__ import annotations

import pytest
import torch

from behavior_stream.nn.state import ModelState
from tests.nn.test_network import step_all
from tests.seqkit import sequences, small_model, tiny_vocab


def test_state_select_and_cat_round_trip() -> None:
    vocab = tiny_vocab()
    model = small_model(vocab, cell="lstm")
    state, _ = step_all(model, vocab, sequences())
    parts = [state.select(torch.tensor([i])) for i in range(len(state))]
    joined = ModelState.cat(parts)
    assert torch.equal(joined.h, state.h) and joined.c is not None and state.c is not None
    assert torch.equal(joined.c, state.c) and torch.equal(joined.history, state.history)
    with pytest.raises(ValueError, match="GRU"):
        ModelState.cat([parts[0], small_model(vocab, cell="gru").initial_state(1)])


def test_initial_state_is_empty() -> None:
    model = small_model(tiny_vocab(), cell="gru", num_layers=2)
    state = model.initial_state(3)
    assert state.h.shape == (2, 3, model.config.hidden_size) and state.c is None
    assert bool((state.last_ts == -1).all()) and bool((state.history == -1).all())
