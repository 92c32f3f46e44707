"""Tests for ModelScorer: shapes, equality with step-by-step scoring, batching, purchase probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from behavior_stream.data.splits import EvalSequence
from behavior_stream.evaluation.model_scorer import ModelScorer
from behavior_stream.evaluation.scoring import NextItemScorer
from behavior_stream.nn.checkpoint import LoadedModel
from behavior_stream.nn.features import encode_events
from behavior_stream.nn.network import SequenceModel
from behavior_stream.schema.vocab import ItemVocab
from tests.seqkit import sequences, small_model, tiny_vocab


def scorer_for(model: SequenceModel, vocab: ItemVocab, **kwargs: int) -> ModelScorer:
    return ModelScorer(LoadedModel(model, vocab, model.config, {}, "test"), **kwargs)


def stepped(
    model: SequenceModel, vocab: ItemVocab, seq: EvalSequence, positions: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and purchase probabilities after each prefix, by stepping one event at a time."""
    events = [*seq.context, *seq.events]
    state = model.initial_state(1)
    after = [state]
    with torch.inference_mode():
        for e in events:
            state = model.step(state, encode_events([e], vocab, model.config))
            after.append(state)
        picked = [after[len(seq.context) + p] for p in positions]
        scores = np.concatenate([model.scores(s).numpy() for s in picked])
        probs = np.concatenate([model.purchase_probability(s).numpy() for s in picked])
    return scores, probs


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_scores_equal_step_by_step_scoring(cell: str) -> None:
    vocab = tiny_vocab()
    model = small_model(vocab, cell=cell, num_layers=2)
    scorer: NextItemScorer = scorer_for(model, vocab)  # mypy checks the protocol
    assert scorer.name == cell
    assert isinstance(scorer, ModelScorer)
    (seq,) = sequences((16,))
    cases = [EvalSequence("a", tuple(seq[:6]), tuple(seq[6:])), EvalSequence("b", (), tuple(seq))]
    for case in cases:
        positions = [len(case.events) - 1, 0, 3, 1]
        scores = scorer.score_sequence(case, positions)
        assert scores.dtype == np.float32 and scores.shape == (len(positions), vocab.n_items)
        expected_scores, expected_probs = stepped(model, vocab, case, positions)
        assert np.abs(scores - expected_scores).max() <= 1e-5
        probs = scorer.purchase_probabilities(case, positions)
        assert probs.dtype == np.float32 and probs.shape == (len(positions),)
        assert np.abs(probs - expected_probs).max() <= 1e-5


def test_batched_scoring_equals_one_at_a_time() -> None:
    vocab = tiny_vocab()
    model = small_model(vocab)
    seqs = [
        EvalSequence(f"s{i}", tuple(s[:2]), tuple(s[2:])) for i, s in enumerate(sequences((9, 4, 3, 12, 5)))
    ]
    positions = [list(range(len(s.events))) for s in seqs]
    positions[2] = []
    batched = scorer_for(model, vocab, batch_size=2, max_rows=3).score_sequences(seqs, positions)
    single = scorer_for(model, vocab)
    for seq, pos, got in zip(seqs, positions, batched, strict=True):
        assert got.shape == (len(pos), vocab.n_items)
        np.testing.assert_allclose(got, single.score_sequence(seq, pos), atol=1e-5)
    probs = single.purchase_sequences(seqs, positions)
    assert [len(p) for p in probs] == [len(p) for p in positions]


def test_rejects_bad_positions_and_training_mode() -> None:
    vocab = tiny_vocab()
    model = small_model(vocab)
    (seq,) = sequences((5,))
    case = EvalSequence("a", (), tuple(seq))
    with pytest.raises(ValueError, match="positions outside"):
        scorer_for(model, vocab).score_sequence(case, [5])
    model.train()
    with pytest.raises(RuntimeError, match="eval mode"):
        scorer_for(model, vocab).score_sequence(case, [1])
