"""The item vocabulary's round trip, and its refusal of a dict of another shape."""

from __future__ import annotations

import pytest

from behavior_stream.schema.vocab import ItemVocab


def test_round_trip() -> None:
    vocab = ItemVocab(("a", "b", "c"), 4)
    again = ItemVocab.from_dict(vocab.to_dict())
    assert again.items == ("a", "b", "c")
    assert again.n_items == vocab.n_items and again.n_inputs == vocab.n_inputs


@pytest.mark.parametrize(
    "data",
    [
        {"n_oov_buckets": 4},
        {"items": "abc", "n_oov_buckets": 4},
        {"items": ["a"], "n_oov_buckets": "4"},
        {"items": ["a"], "n_oov_buckets": True},
    ],
)
def test_from_dict_refuses_other_shapes(data: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="a vocabulary needs a list of items"):
        ItemVocab.from_dict(data)
