"""User states from a model (equal to stepping it), views, step flags, and the assembled probes section."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from behavior_stream.evaluation.document import ProbesSection
from behavior_stream.evaluation.probes import ProbeConfig, probe_examples
from behavior_stream.evaluation.representations import assess, hidden_states, probe_section, user_states
from behavior_stream.nn.checkpoint import LoadedModel
from behavior_stream.nn.features import encode_events
from behavior_stream.nn.network import SequenceModel
from behavior_stream.schema.sessions import is_new_session
from behavior_stream.schema.vocab import ItemVocab
from tests.probekit import CATEGORIES, history_and_test
from tests.seqkit import sequences, small_model, tiny_vocab

GAP = 30 * 60_000


def loaded(model: SequenceModel, vocab: ItemVocab) -> LoadedModel:
    return LoadedModel(model, vocab, model.config, {}, "test")


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_hidden_states_equal_the_representation_after_each_step(cell: str) -> None:
    vocab = tiny_vocab()
    model = small_model(vocab, cell=cell, num_layers=2)
    seqs = sequences((7, 1, 12))
    states = hidden_states(loaded(model, vocab), seqs, batch_size=2)
    for seq, got in zip(seqs, states, strict=True):
        state = model.initial_state(1)
        expected = []
        with torch.inference_mode():
            for event in seq:
                state = model.step(state, encode_events([event], vocab, model.config))
                expected.append(model.representation(state)[0].numpy())
        np.testing.assert_allclose(got, np.stack(expected), atol=1e-5)


def test_hidden_states_refuses_a_training_mode_model() -> None:
    vocab = tiny_vocab()
    with pytest.raises(RuntimeError, match="eval mode"):
        hidden_states(loaded(small_model(vocab).train(), vocab), sequences((3,)))


def test_user_states_views_and_step_flags() -> None:
    vocab = tiny_vocab()
    model = small_model(vocab)
    history, test = history_and_test(n_users=6)
    examples = probe_examples(history, test, CATEGORIES, GAP)
    states = user_states(loaded(model, vocab), examples)
    lengths = [len(e.prefix) for e in examples]
    assert states.final.shape == (len(examples), model.config.hidden_size)
    assert len(states.steps) == sum(n - 1 for n in lengths) == len(states.boundary)
    np.testing.assert_array_equal(np.bincount(states.step_user), [n - 1 for n in lengths])
    first = examples[0].prefix
    expected_flags = [is_new_session(first[t - 1], first[t], GAP) for t in range(1, len(first))]
    np.testing.assert_array_equal(states.boundary[: len(first) - 1], expected_flags)
    # The second view is the second half of the prefix run on its own (batched vs alone: float32
    # kernels may round differently, hence a tolerance of a few ulps).
    (second_half,) = hidden_states(loaded(model, vocab), [first[len(first) // 2 :]])
    np.testing.assert_allclose(states.view_b[0], second_half[-1], rtol=1e-5, atol=1e-6)


def test_a_frozen_representation_is_perfectly_stable_and_has_no_spread() -> None:
    vocab = tiny_vocab()
    model = small_model(vocab)
    with torch.no_grad():
        for p in model.rnn.parameters():
            p.zero_()  # GRU with zero weights: h_t = h_(t-1) / 2 from h_0 = 0, so always 0
    history, test = history_and_test(n_users=12)
    examples = probe_examples(history, test, CATEGORIES, GAP)
    result = assess(loaded(model, vocab), examples)
    stability = result.section["stability"]
    assert stability["within_session"]["p99"] == 0.0 and stability["session_boundary"]["p99"] == 0.0
    assert result.section["geometry"]["effective_rank"] == 0.0
    assert result.section["purchase"]["roc_auc"] == 0.5  # nothing to separate the users by


def test_probe_section_has_probes_geometry_and_stability() -> None:
    vocab = tiny_vocab()
    history, test = history_and_test()
    section = probe_section(loaded(small_model(vocab), vocab), history, test, CATEGORIES, knn_k=5)
    assert section["purchase"]["n"] == 39 and 0.0 <= section["purchase"]["roc_auc"] <= 1.0
    assert section["category"]["classes"] == 3 and 0.0 <= section["category"]["accuracy"] <= 1.0
    assert section["length"]["mae"] >= 0.0
    geometry = section["geometry"]
    assert 0.0 <= geometry["alignment"] <= 4.0 and -8.0 <= geometry["uniformity"] <= 0.0
    assert 1.0 <= geometry["effective_rank"] <= geometry["hidden_size"]
    assert 0.0 <= geometry["knn_agreement@5"] <= 1.0 and 0.0 <= geometry["knn_chance@5"] <= 1.0
    boundary = section["stability"]["session_boundary"]
    assert boundary["n"] > 0 and 0.0 <= boundary["p50"] <= boundary["p90"] <= boundary["p99"]
    assert "examples" in section["protocol"] and "stability" in section["protocol"]


def test_probe_section_reports_why_it_was_skipped() -> None:
    vocab = tiny_vocab()
    history, test = history_and_test(n_users=2)
    section = probe_section(loaded(small_model(vocab), vocab), history, test, CATEGORIES)
    n = len(probe_examples(history, test, CATEGORIES, GAP))
    assert n < 4 and section["skipped"] == f"only {n} users have history and a test session"


def test_every_probe_has_its_baseline_and_intervals_and_the_section_fits_the_schema() -> None:
    vocab = tiny_vocab()
    history, test = history_and_test()
    cfg = ProbeConfig(n_bootstrap=100)
    section = probe_section(loaded(small_model(vocab), vocab), history, test, CATEGORIES, cfg, knn_k=5)
    assert "intervals" in section["protocol"] and section["protocol"]["n_bootstrap"] == 100
    for name, baseline in (
        ("purchase", "constant score"),
        ("category", "majority class"),
        ("length", "mean length"),
    ):
        vs = section[name]["versus_baseline"]
        assert vs["baseline"] == baseline and vs["n"] == section[name]["n"] > 0
        assert vs["ci95"][0] <= vs["ci95"][1] and vs["baseline_ci95"][0] <= vs["baseline_ci95"][1]
        assert vs["verdict"] in ("better", "worse", "at chance") and isinstance(vs["at_chance"], bool)
    ProbesSection.model_validate(section)
    ProbesSection.model_validate(
        probe_section(loaded(small_model(vocab), vocab), *history_and_test(n_users=2), {})
    )
