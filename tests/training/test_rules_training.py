"""`train_model` with sequential rules: the saved table is the one of train + validation (the
history at test time), not the train-only table validation ranked with."""

from __future__ import annotations

from dataclasses import replace

import torch

from behavior_stream.data.splits import group_by_user, time_split
from behavior_stream.nn.config import ModelConfig
from behavior_stream.nn.features import encode_arrays
from behavior_stream.nn.rules import fit_rules
from behavior_stream.schema.events import Event
from behavior_stream.training.loop import train_model
from tests.training.test_tune import FAST, events


def test_the_saved_table_is_refitted_on_train_and_validation() -> None:
    config = ModelConfig(hidden_size=16, item_dim=8, rules_weight=0.5)
    cfg = replace(FAST, epochs=1)
    result = train_model(events(), config, cfg)
    split = time_split(events(), cfg.valid_frac, cfg.test_frac, cfg.split_unit)

    def table(parts: list[Event]) -> tuple[torch.Tensor, torch.Tensor]:
        seqs = group_by_user(parts).values()
        catalog = [encode_arrays(s, result.vocab, config, result.model.categories).catalog for s in seqs]
        return fit_rules(catalog, result.vocab.n_items, config.rules_window, config.rules_neighbours)

    both, train_only = table([*split.train, *split.valid]), table(list(split.train))
    assert (result.model.rule_followers >= 0).any()
    assert torch.equal(result.model.rule_followers, both[0])
    assert torch.equal(result.model.rule_weights, both[1])
    assert not torch.equal(both[1], train_only[1])  # the refit is not a no-op here
