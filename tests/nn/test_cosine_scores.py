"""Scaled cosine scoring (`ModelConfig.cosine_scale`): unit item vectors, a query of length
`scale`, the bias and repeat bonus added as before, and `step` still equal to `forward`."""

from __future__ import annotations

import pytest
import torch

from behavior_stream.nn.categories import CategoryVocab
from behavior_stream.nn.config import ModelConfig
from behavior_stream.nn.features import encode_sequences
from behavior_stream.nn.network import SequenceModel
from tests.nn.test_network import check_step_matches_forward
from tests.seqkit import CATALOG, sequences, small_config, small_model, tiny_vocab

SCALE = 8.0


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_step_matches_forward_with_cosine_scores(cell: str) -> None:
    vocab = tiny_vocab()
    check_step_matches_forward(small_model(vocab, cell=cell, cosine_scale=SCALE), vocab, sequences())


@pytest.mark.parametrize("side", [False, True])
def test_scores_are_scaled_cosines_plus_bias_and_bonus(side: bool) -> None:
    vocab = tiny_vocab()
    torch.manual_seed(0)
    cats = (
        CategoryVocab.build({item: f"c{i % 2}" for i, item in enumerate(CATALOG)}, vocab.items)
        if side
        else None
    )
    model = SequenceModel(
        small_config(cosine_scale=SCALE), vocab.n_items, vocab.n_inputs, cats, vocab.items
    ).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.item_bias)  # untrained biases are zero: make them count
        out = model(encode_sequences(sequences(), vocab, model.config, model.categories), return_state=True)
        assert out.state is not None
        top, hist, types = out.state.h[-1], out.state.history, out.state.history_types
        vectors = model.item_vectors()  # (n_items, item_dim)
        query = model.item_query(top, hist)  # (n, item_dim)
        assert torch.allclose(vectors.norm(dim=-1), torch.ones(model.n_items), atol=1e-5)
        assert torch.allclose(query.norm(dim=-1), torch.full((len(top),), SCALE), atol=1e-4)
        # By hand: the unnormalised vectors of the dot-product rule, their cosine, times the scale.
        raw = model.item_emb.weight[: model.n_items]
        if model.category_out is not None and model.category_emb is not None:
            raw = raw + model.category_out(model.category_emb(model.item_category))
        cosine = torch.nn.functional.cosine_similarity(query[:, None, :], raw[None], dim=-1)  # (n, n_items)
        bonus = torch.zeros_like(cosine).scatter_add_(
            1, hist.clamp(min=0), model.repeat_bonus(top, hist, types)
        )
        expected = SCALE * cosine + model.item_bias + bonus
        assert torch.allclose(model.scores(out.state), expected, atol=1e-4)
        rows = torch.tensor([2, 0, 5])
        assert torch.allclose(model.item_vectors(rows), vectors[rows], atol=1e-6)


def test_cosine_scale_off_by_default_and_never_negative() -> None:
    assert ModelConfig().cosine_scale == 0.0
    with pytest.raises(ValueError, match="cosine_scale"):
        ModelConfig(cosine_scale=-1.0)
