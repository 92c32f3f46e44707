"""Sequential rules (`nn.rules`, `ModelConfig.rules_weight`): the table and the term on hand-computed
cases, the term in `score_hidden` only, `step` still equal to `forward`, and the table saved."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from behavior_stream.nn.checkpoint import load_checkpoint, save_checkpoint
from behavior_stream.nn.config import ModelConfig
from behavior_stream.nn.features import encode_sequences
from behavior_stream.nn.network import SequenceModel
from behavior_stream.nn.rules import fit_rules, rules_term, term_at
from tests.nn.test_network import check_step_matches_forward
from tests.seqkit import sequences, small_model, tiny_vocab


def hand_table() -> tuple[torch.Tensor, torch.Tensor]:
    # [0, search, 1, 2] and [0, 1], window 2: 0->1 at distance 1 twice (the search is skipped),
    # 1->2 at 1, 0->2 at 2 (weight 1/2); item 2 has no follower.
    seqs = [np.array([0, -1, 1, 2]), np.array([0, 1])]
    return fit_rules(seqs, n_items=3, window=2, neighbours=2)


def test_fit_counts_followers_by_inverse_distance_strongest_first() -> None:
    followers, weights = hand_table()
    assert followers.tolist() == [[1, 2], [2, -1], [-1, -1]]
    assert weights.tolist() == [[2.0, 0.5], [1.0, 0.0], [0.0, 0.0]]
    capped, capped_w = fit_rules([np.array([0, -1, 1, 2]), np.array([0, 1])], 3, window=2, neighbours=1)
    assert capped.tolist() == [[1], [2], [-1]] and capped_w.tolist() == [[2.0], [1.0], [0.0]]
    empty, empty_w = fit_rules([np.array([1]), np.array([-1, -1])], 3, window=2, neighbours=2)
    assert (empty == -1).all() and (empty_w == 0).all()


def test_term_sums_the_recent_slots_then_takes_the_log_share() -> None:
    followers, weights = hand_table()
    # Slots most recent last: item 1 (weight 1), item 0 one event before (weight 1/2); the oldest
    # slot is outside `recent`. Item 1: 2.0 / 2 = 1.0 (from item 0); item 2: 0.5 / 2 + 1.0 = 1.25.
    history = torch.tensor([[2, 0, 1], [-1, -1, -1]])
    items, values = rules_term(followers, weights, history, recent=2, weight=0.5, sharpness=10.0)
    row = dict(zip(items[0].tolist(), values[0].tolist(), strict=True))
    row.pop(-1)
    assert row == pytest.approx({1: 0.5 * math.log1p(10 / 2.25), 2: 0.5 * math.log1p(12.5 / 2.25)})
    assert (items[1] == -1).all() and (values[1] == 0).all()  # no history: no term
    at = term_at(items, values, torch.tensor([[2, 0, 1], [2, 0, 1]]))
    assert at[0].tolist() == pytest.approx([row[2], 0.0, row[1]]) and at[1].tolist() == [0, 0, 0]


def rules_model(cell: str = "gru") -> SequenceModel:
    vocab = tiny_vocab()
    model = small_model(vocab, cell=cell, rules_weight=0.75, rules_recent=2, rules_neighbours=3)
    catalog = [np.array([vocab.index(e.item_id) if vocab.index(e.item_id) is not None else -1 for e in s])
               for s in sequences(seed=5)]  # fmt: skip
    model.set_rules(*fit_rules(catalog, vocab.n_items, window=3, neighbours=3))
    assert (model.rule_followers >= 0).any()
    return model


def test_score_hidden_adds_the_term_and_the_loss_can_leave_it_out() -> None:
    model, vocab = rules_model(), tiny_vocab()
    with torch.no_grad():
        out = model(encode_sequences(sequences(), vocab, model.config), return_state=True)
        assert out.state is not None
        top, hist, types = out.state.h[-1], out.state.history, out.state.history_types
        with_rules = model.score_hidden(top, hist, types)
        without = model.score_hidden(top, hist, types, with_rules=False)
        term = model.rules(hist)
    assert term is not None
    dense = torch.zeros_like(without)
    for r, (items, values) in enumerate(zip(*term, strict=True)):
        for item, value in zip(items.tolist(), values.tolist(), strict=True):
            if item >= 0:
                dense[r, item] += value
    assert dense.abs().sum() > 0  # the term is not vacuous here
    assert torch.allclose(with_rules, without + dense, atol=1e-6)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_step_matches_forward_with_rules(cell: str) -> None:
    check_step_matches_forward(rules_model(cell), tiny_vocab(), sequences())


def test_the_table_is_saved_with_the_weights(tmp_path: Path) -> None:
    model, vocab = rules_model(), tiny_vocab()
    save_checkpoint(tmp_path / "m.pt", model, vocab, {"seed": 0})
    loaded = load_checkpoint(tmp_path / "m.pt").model
    assert torch.equal(loaded.rule_followers, model.rule_followers)
    assert torch.equal(loaded.rule_weights, model.rule_weights)
    with pytest.raises(RuntimeError, match="no rules"):
        small_model(vocab).set_rules(model.rule_followers, model.rule_weights)


def test_config_rejects_bad_rules() -> None:
    with pytest.raises(ValueError, match="rules_weight"):
        ModelConfig(rules_weight=-1.0)
    with pytest.raises(ValueError, match="rules_recent"):
        ModelConfig(rules_recent=40, repeat_window=32)
    with pytest.raises(ValueError, match="rules_sharpness"):
        ModelConfig(rules_sharpness=0.0)
