"""The model against each baseline: paired differences by hand, and through `evaluate`."""

from __future__ import annotations

import math

import numpy as np
import pytest

from behavior_stream.evaluation.baselines import FirstOrderMarkov, MostPopular, item_counts
from behavior_stream.evaluation.protocol import EvalConfig, evaluate
from behavior_stream.evaluation.scoring import NextItemScorer
from behavior_stream.evaluation.versus import metric_names, versus_baselines
from tests.evaluation.test_protocol import Oracle, _small_split

# Three test sequences of two predictions each; the model ranks every target at least as well.
SEQ = np.array([0, 0, 1, 1, 2, 2])
MODEL = np.array([1, 2, 1, 3, 1, 2])
BASELINE = np.array([2, 6, 3, 8, 4, 7])


def _gain(rank: int, k: int) -> float:
    return 1 / math.log2(rank + 1) if rank <= k else 0.0


def test_a_model_better_on_every_sequence_beats_the_baseline_by_the_hand_computed_margin() -> None:
    versus = versus_baselines({"gru": MODEL, "pop": BASELINE}, SEQ, "gru", (1, 5), 500, seed=0)
    assert versus is not None and versus["reference"] == "gru" and list(versus["baselines"]) == ["pop"]
    figures = versus["baselines"]["pop"]
    assert list(figures) == metric_names((1, 5)) == [
        "recall@1", "mrr@1", "ndcg@1", "recall@5", "mrr@5", "ndcg@5",
    ]  # fmt: skip
    # By hand: @1 the model hits one target per sequence, the baseline none.
    for name in ("recall@1", "mrr@1", "ndcg@1"):
        assert figures[name]["difference"] == pytest.approx(0.5)
        # Each sequence differs by exactly 0.5: so does every resample, and the interval is a point.
        assert figures[name]["ci95"] == pytest.approx([0.5, 0.5])
    assert figures["recall@5"]["model"] == 1.0 and figures["recall@5"]["baseline"] == pytest.approx(0.5)
    mrr_model = (1 + 1 / 2 + 1 + 1 / 3 + 1 + 1 / 2) / 6
    mrr_base = (1 / 2 + 0 + 1 / 3 + 0 + 1 / 4 + 0) / 6
    assert figures["mrr@5"]["model"] == pytest.approx(mrr_model)
    assert figures["mrr@5"]["difference"] == pytest.approx(mrr_model - mrr_base)  # 3.25 / 6
    ndcg = np.mean([_gain(int(m), 5) - _gain(int(b), 5) for m, b in zip(MODEL, BASELINE, strict=True)])
    assert figures["ndcg@5"]["difference"] == pytest.approx(ndcg)
    # Per sequence the MRR@5 margin is 0.5, 0.5 and 0.625: every resample's mean lies between them.
    low, high = figures["mrr@5"]["ci95"]
    assert 0.5 - 1e-12 <= low <= figures["mrr@5"]["difference"] <= high <= 0.625 + 1e-12
    assert all(f["significant"] for f in figures.values())


def test_identical_scorers_differ_by_zero_and_are_not_significant() -> None:
    versus = versus_baselines({"gru": MODEL, "copy": MODEL.copy()}, SEQ, "gru", (5,), 200, seed=3)
    assert versus is not None
    for figures in versus["baselines"]["copy"].values():
        assert figures["difference"] == 0.0 and figures["ci95"] == [0.0, 0.0]
        assert figures["significant"] is False


def test_a_worse_model_is_not_significant_and_nothing_to_compare_is_none() -> None:
    versus = versus_baselines({"gru": BASELINE, "pop": MODEL}, SEQ, "gru", (5,), 200, seed=0)
    assert versus is not None
    recall = versus["baselines"]["pop"]["recall@5"]
    assert recall["difference"] == pytest.approx(-0.5) and recall["ci95"][1] < 0
    assert recall["significant"] is False  # significant only in the model's favour
    assert versus_baselines({"gru": MODEL}, SEQ, "gru", (5,), 200, seed=0) is None
    with pytest.raises(ValueError, match="'lstm'"):
        versus_baselines({"gru": MODEL, "pop": BASELINE}, SEQ, "lstm", (5,), 200, seed=0)
    # No predictions at all: undefined figures, never significant.
    empty = np.zeros(0, np.int64)
    none = versus_baselines({"gru": empty, "pop": empty}, empty, "gru", (5,), 50, seed=0)
    assert none is not None
    recall = none["baselines"]["pop"]["recall@5"]
    assert math.isnan(recall["difference"]) and recall["significant"] is False


class SecondPop(MostPopular):
    """The popularity baseline under another name: the same ranks as `pop`."""

    name = "pop-copy"


def test_evaluate_puts_the_reference_beside_every_other_scorer() -> None:
    history, seqs, vocab = _small_split()
    scorers: list[NextItemScorer] = [
        Oracle(vocab),
        MostPopular().fit(history, vocab),
        SecondPop().fit(history, vocab),
        FirstOrderMarkov().fit(history, vocab),
    ]
    counts = item_counts(history, vocab)
    config = EvalConfig(ks=(5, 10), n_bootstrap=100)
    metrics = evaluate(seqs, vocab, counts, scorers, config=config, reference="oracle")
    versus = metrics["versus"]
    assert versus["reference"] == "oracle" and list(versus["baselines"]) == ["pop", "pop-copy", "markov"]
    for name, figures in versus["baselines"].items():
        for metric, fig in figures.items():
            # The very figures of the next-item table, to the last bit.
            assert fig["model"] == metrics["next_item"]["oracle"][metric] == 1.0
            assert fig["baseline"] == metrics["next_item"][name][metric]
            assert fig["significant"] and fig["ci95"][0] > 0
    # Same ranks, same resamples: pop and its copy give the same intervals.
    assert versus["baselines"]["pop"] == versus["baselines"]["pop-copy"]
    # pop against its copy, with the model left out: zero, not significant.
    vs_copy = evaluate(seqs, vocab, counts, scorers[1:3], config=config, reference="pop")["versus"]
    assert all(
        f["difference"] == 0 and not f["significant"] for f in vs_copy["baselines"]["pop-copy"].values()
    )
    assert evaluate(seqs, vocab, counts, scorers[1:3], config=config)["versus"] is None
    assert evaluate(seqs, vocab, counts, scorers[:1], config=config, reference="oracle")["versus"] is None
    with pytest.raises(ValueError, match="not among"):
        evaluate(seqs, vocab, counts, scorers[1:2], config=config, reference="gru")
