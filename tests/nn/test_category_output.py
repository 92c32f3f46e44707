"""Category output vectors: items of one category share its term, the inference cache follows the
weights, and a model without side data scores with the plain item embeddings."""

from __future__ import annotations

import pytest
import torch

from behavior_stream.nn.categories import CategoryVocab
from behavior_stream.nn.features import encode_sequences
from behavior_stream.nn.network import SequenceModel
from tests.seqkit import CATALOG, sequences, small_config, tiny_vocab

SIDE = {item: ("shoes" if i % 2 else "hats") for i, item in enumerate(CATALOG)}


def category_model(seed: int = 0, **overrides: object) -> SequenceModel:
    vocab = tiny_vocab()
    torch.manual_seed(seed)
    cats = CategoryVocab.build(SIDE, vocab.items)
    return SequenceModel(small_config(**overrides), vocab.n_items, vocab.n_inputs, cats, vocab.items)


def test_items_of_one_category_share_its_term_and_rows_match_the_catalog() -> None:
    model = category_model().eval()
    assert model.category_out is not None
    with torch.no_grad():
        term = model.item_vectors() - model.item_emb.weight[: model.n_items]  # (n_items, item_dim)
        rows = torch.tensor([3, 0, 7])
        assert torch.allclose(model.item_vectors(rows), model.item_vectors()[rows])
    # item1 and item3 are shoes, item0 and item2 hats (SIDE): the term is the category's.
    assert torch.allclose(term[1], term[3]) and torch.allclose(term[0], term[2])
    assert not torch.allclose(term[0], term[1])


def test_the_inference_cache_equals_the_trained_path_and_follows_weight_updates() -> None:
    model = category_model()
    model.eval()
    with torch.no_grad():
        cached = model.item_vectors().clone()
    live = model.item_vectors()  # grad enabled: computed, not cached
    assert live.requires_grad and torch.allclose(cached, live.detach())
    # An optimiser step changes the weights in place; the next inference call must see it.
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    live.sum().backward()
    optimizer.step()
    with torch.no_grad():
        after = model.item_vectors()
        assert not torch.allclose(after, cached)
        assert model.category_out is not None and model.category_emb is not None
        term = model.category_out(model.category_emb(model.item_category))
        assert torch.allclose(after, model.item_emb.weight[: model.n_items] + term)
    # load_state_dict under inference mode (weights without version counters) clears the cache.
    other = category_model(seed=1).state_dict()
    with torch.inference_mode():
        fresh = category_model().eval()
        before = fresh.item_vectors().clone()
        fresh.load_state_dict(other)
        assert not torch.allclose(fresh.item_vectors(), before)


def test_scores_use_the_category_vectors_and_a_model_without_side_data_does_not() -> None:
    model = category_model().eval()
    vocab = tiny_vocab()
    with torch.no_grad():
        batch = encode_sequences(sequences(), vocab, model.config, model.categories)
        out = model(batch, return_state=True)
        assert out.state is not None
        top, hist = out.state.h[-1], out.state.history
        expected = model.item_query(top, hist) @ model.item_vectors().T + model.item_bias
        bonus = torch.zeros_like(expected).scatter_add_(
            1, hist.clamp(min=0), model.repeat_bonus(top, hist, out.state.history_types)
        )
        assert torch.allclose(model.scores(out.state), expected + bonus, atol=1e-5)
    plain = category_model(category_output=False)
    assert plain.category_out is None
    assert torch.equal(plain.item_vectors(), plain.item_emb.weight[: plain.n_items])


def test_category_output_needs_the_catalog() -> None:
    vocab = tiny_vocab()
    cats = CategoryVocab.build(SIDE, vocab.items)
    with pytest.raises(ValueError, match="catalog"):
        SequenceModel(small_config(), vocab.n_items, vocab.n_inputs, cats)
