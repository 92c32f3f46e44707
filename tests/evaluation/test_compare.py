"""Comparing two checkpoints: a model against itself, agreement with `evaluate`, and the row set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from behavior_stream.data.splits import eval_sequences
from behavior_stream.evaluation.baselines import item_counts
from behavior_stream.evaluation.compare import CompareConfig, compare_checkpoints, write_compare
from behavior_stream.evaluation.model_scorer import ModelScorer
from behavior_stream.evaluation.protocol import EvalConfig, evaluate
from behavior_stream.nn.checkpoint import LoadedModel
from behavior_stream.nn.network import SequenceModel
from behavior_stream.schema.vocab import ItemVocab
from tests.probekit import CATEGORIES, history_and_test
from tests.seqkit import small_model, tiny_vocab

CONFIG = CompareConfig(ks=(5, 10), n_bootstrap=100, knn_k=5)


def loaded(model: SequenceModel, vocab: ItemVocab, version: str) -> LoadedModel:
    return LoadedModel(model, vocab, model.config, {}, version)


@pytest.fixture(scope="module")
def data() -> tuple[list, list]:
    return history_and_test()


def test_a_model_compared_with_itself_differs_by_zero_everywhere(data: tuple[list, list]) -> None:
    vocab = tiny_vocab()
    model = loaded(small_model(vocab), vocab, "same")
    result = compare_checkpoints(model, model, *data, CATEGORIES, CONFIG)
    groups = {r["group"] for r in result["rows"]}
    assert groups == {
        "next item",
        "purchase",
        "probe purchase",
        "probe category",
        "probe length",
        "geometry",
        "stability within_session",
        "stability session_boundary",
    }
    for r in result["rows"]:
        assert r["diff"] == 0.0 or np.isnan(r["diff"]), r
        assert r["significant"] in (False, None) and r["winner"] is None, r
        if r["ci95"] is not None:
            assert r["ci95"] == [0.0, 0.0], r


def test_point_values_agree_with_the_evaluate_protocol(data: tuple[list, list]) -> None:
    history, test = data
    vocab = tiny_vocab()
    a = loaded(small_model(vocab, seed=0), vocab, "a")
    b = loaded(small_model(vocab, seed=1, cell="lstm"), vocab, "b")
    result = compare_checkpoints(a, b, history, test, CATEGORIES, CONFIG)
    rows = {(r["group"], r["metric"]): r for r in result["rows"]}
    for side, model in (("a", a), ("b", b)):
        scorer = ModelScorer(model)
        reference = evaluate(
            eval_sequences(history, test),
            vocab,
            item_counts(history, vocab),
            [scorer],
            [scorer],
            EvalConfig(ks=(5, 10), n_bootstrap=10),
        )
        for metric in ("recall@5", "mrr@10", "ndcg@10"):
            assert rows[("next item", metric)][side] == pytest.approx(
                reference["next_item"][model.config.cell][metric]
            )
        purchase = reference["purchase"][model.config.cell]
        assert rows[("purchase", "roc_auc")][side] == pytest.approx(purchase["roc_auc"])
        probes = result[side]["probes"]
        assert rows[("probe purchase", "roc_auc")][side] == pytest.approx(probes["purchase"]["roc_auc"])
        assert rows[("probe length", "mae")][side] == pytest.approx(probes["length"]["mae"])
        assert rows[("geometry", "alignment")][side] == pytest.approx(probes["geometry"]["alignment"])
        assert rows[("stability within_session", "p90")][side] == pytest.approx(
            probes["stability"]["within_session"]["p90"]
        )
    assert result["counts"] == {"sequences": 40, "probe_users": 39}
    assert result["a"]["cell"] == "gru" and result["b"]["cell"] == "lstm"
    for r in result["rows"]:
        assert r["diff"] == pytest.approx(r["b"] - r["a"], nan_ok=True)
        if r["ci95"] is not None:
            assert r["significant"] == (r["ci95"][0] > 0 or r["ci95"][1] < 0)


def test_compare_json_is_written_with_nan_as_null(tmp_path: Path, data: tuple[list, list]) -> None:
    vocab = tiny_vocab()
    model = loaded(small_model(vocab), vocab, "same")
    history, test = data
    result = compare_checkpoints(model, model, history, test, {}, CONFIG)  # no categories: NaN accuracy
    path = write_compare(result, tmp_path / "out")
    text = path.read_text()
    assert '"rows"' in text and "NaN" not in text and "null" in text
