"""Scoring against the catalog (nn/scoring.py): the repeat bonus touches only the history's items."""

from __future__ import annotations

import torch

from tests.nn.test_network import step_all
from tests.seqkit import sequences, small_model, tiny_vocab


def test_repeat_bonus_only_moves_history_items() -> None:
    vocab = tiny_vocab()
    model = small_model(vocab)
    state, _ = step_all(model, vocab, sequences((10,)))
    with torch.no_grad():
        query = model.item_query(state.h[-1], state.history)
        base = query @ model.item_emb.weight[: model.n_items].T + model.item_bias
        diff = (model.scores(state) - base)[0]
    in_history = torch.zeros(vocab.n_items, dtype=torch.bool)
    in_history[state.history[state.history >= 0]] = True
    assert bool(in_history.any())
    assert torch.equal(diff[~in_history], torch.zeros_like(diff[~in_history]))
    assert bool((diff[in_history] != 0).all())
