"""The metrics.json schema: it accepts what `evaluate` writes and rejects malformed documents."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from behavior_stream.evaluation.baselines import FirstOrderMarkov, MostPopular, PurchaseBaseRate, item_counts
from behavior_stream.evaluation.document import MetricsDocument, validate_metrics
from behavior_stream.evaluation.probes import ProbeConfig
from behavior_stream.evaluation.protocol import EvalConfig, evaluate, write_metrics
from behavior_stream.evaluation.representations import probe_section
from behavior_stream.evaluation.scoring import NextItemScorer
from behavior_stream.nn.checkpoint import LoadedModel
from tests import probekit
from tests.evaluation.test_protocol import _small_split
from tests.seqkit import small_model, tiny_vocab


@pytest.fixture(scope="module")
def metrics() -> dict[str, Any]:
    history, seqs, vocab = _small_split()
    scorers: list[NextItemScorer] = [
        MostPopular().fit(history, vocab),
        FirstOrderMarkov().fit(history, vocab),
    ]
    return evaluate(
        seqs,
        vocab,
        item_counts(history, vocab),
        scorers,
        [PurchaseBaseRate().fit(history, vocab)],
        EvalConfig(ks=(5, 10), n_bootstrap=50),
        {"name": "tiny"},
    )


def test_accepts_what_evaluate_writes(metrics: dict[str, Any], tmp_path: Path) -> None:
    doc = validate_metrics(metrics)
    assert doc.protocol.ks == [5, 10] and set(doc.next_item) == {"pop", "markov"}
    assert doc.next_item["pop"].at_k().keys() == {
        f"{m}@{k}" for m in ("recall", "mrr", "ndcg", "coverage", "popularity") for k in (5, 10)
    }
    # The written file (NaN as null) validates too, and is exactly the dict: validation adds nothing.
    written = orjson.loads(write_metrics(metrics, tmp_path).read_bytes())
    validate_metrics(written)
    assert written == orjson.loads(orjson.dumps(metrics))
    assert list(written) == ["dataset", "protocol", "counts", "next_item", "purchase", "breakdown", "versus"]
    assert written["versus"] is None  # no reference: nothing to compare
    probes = {"protocol": {}, "skipped": "only 2 users have history and a test session"}
    doc_probes = validate_metrics({**metrics, "probes": probes}).probes
    assert doc_probes is not None and doc_probes.skipped == probes["skipped"] and doc_probes.purchase is None


@pytest.fixture(scope="module")
def with_versus() -> dict[str, Any]:
    """`evaluate` with markov as the evaluated model: a `versus` section against pop."""
    history, seqs, vocab = _small_split()
    scorers: list[NextItemScorer] = [
        FirstOrderMarkov().fit(history, vocab),
        MostPopular().fit(history, vocab),
    ]
    config = EvalConfig(ks=(5, 10), n_bootstrap=50)
    return evaluate(seqs, vocab, item_counts(history, vocab), scorers, config=config, reference="markov")


def test_round_trips_with_and_without_versus(
    metrics: dict[str, Any], with_versus: dict[str, Any], tmp_path: Path
) -> None:
    written = orjson.loads(write_metrics(with_versus, tmp_path / "versus").read_bytes())
    doc = validate_metrics(written)
    assert doc.versus is not None and doc.versus.reference == "markov"
    recall = doc.versus.baselines["pop"]["recall@10"]
    assert recall.model is not None and recall.baseline is not None
    assert recall.difference == pytest.approx(recall.model - recall.baseline)
    assert recall.ci95 == with_versus["versus"]["baselines"]["pop"]["recall@10"]["ci95"]
    assert written == orjson.loads(orjson.dumps(with_versus))
    # A metrics.json written before `versus` existed (no key at all) still loads.
    old = {key: value for key, value in metrics.items() if key != "versus"}
    assert validate_metrics(orjson.loads(orjson.dumps(old))).versus is None


@pytest.mark.parametrize(
    ("path", "value", "delete"),
    [
        (("versus", "reference"), "lstm", False),  # not a scorer of next_item
        (("versus", "baselines", "sknn"), {}, False),  # a baseline that was not evaluated
        (("versus", "baselines", "pop", "ndcg@5"), None, True),  # a metric missing at one K
        (("versus", "baselines", "pop", "recall@20"), None, False),  # a K that was not evaluated
        (("versus", "baselines", "pop", "mrr@10", "ci95"), [0.1], False),  # an interval of one bound
        (("versus", "baselines", "pop", "mrr@10", "significant"), "yes", False),  # not a boolean
        (("versus", "baselines"), {}, False),  # a section with nothing compared is null instead
    ],
)
def test_rejects_a_malformed_versus_section(
    with_versus: dict[str, Any], path: tuple[str, ...], value: Any, delete: bool
) -> None:
    with pytest.raises(ValidationError):
        validate_metrics(_broken(with_versus, *path, value=value, delete=delete))


@pytest.mark.parametrize(("ci95", "significant"), [([-0.1, 0.2], True), ([0.01, 0.2], False)])
def test_significance_must_agree_with_the_interval(
    with_versus: dict[str, Any], ci95: list[float], significant: bool
) -> None:
    doc = _broken(with_versus, "versus", "baselines", "pop", "mrr@10", "ci95", value=ci95)
    doc["versus"]["baselines"]["pop"]["mrr@10"]["significant"] = significant
    with pytest.raises(ValidationError, match="significant"):
        validate_metrics(doc)
    doc["versus"]["baselines"]["pop"]["mrr@10"]["significant"] = not significant
    validate_metrics(doc)


@pytest.fixture(scope="module")
def probes() -> dict[str, Any]:
    """A real `probes` section: an untrained model's representations of the probe kit's users."""
    vocab = tiny_vocab()
    model = small_model(vocab)
    history, test = probekit.history_and_test()
    loaded = LoadedModel(model, vocab, model.config, {}, "test")
    return probe_section(loaded, history, test, probekit.CATEGORIES, ProbeConfig(n_bootstrap=50), knn_k=5)


def test_accepts_a_probes_section_and_types_its_baselines(
    metrics: dict[str, Any], probes: dict[str, Any]
) -> None:
    doc = validate_metrics({**metrics, "probes": probes})
    assert doc.probes is not None and doc.probes.category is not None
    assert doc.probes.category.versus_baseline.baseline == "majority class"
    # As read back from the file (NaN as null), too.
    validate_metrics(orjson.loads(orjson.dumps({**metrics, "probes": probes})))


@pytest.mark.parametrize(
    ("path", "value", "delete"),
    [
        (("purchase", "versus_baseline"), None, True),  # a probe without its baseline
        (("category", "versus_baseline", "verdict"), "lucky", False),  # an unknown verdict
        (("length", "versus_baseline", "ci95"), [1.0], False),  # an interval of one bound
        (("length", "versus_baseline", "at_chance"), "no", False),  # not a boolean
        (("geometry",), None, True),  # an incomplete section
        (("skipped",), "too few users", False),  # skipped, yet with scores
    ],
)
def test_rejects_a_malformed_probes_section(
    metrics: dict[str, Any], probes: dict[str, Any], path: tuple[str, ...], value: Any, delete: bool
) -> None:
    with pytest.raises(ValidationError):
        validate_metrics({**metrics, "probes": _broken(probes, *path, value=value, delete=delete)})


def _broken(metrics: dict[str, Any], *path: str, value: Any = None, delete: bool = False) -> dict[str, Any]:
    doc = copy.deepcopy(metrics)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "delete"),
    [
        (("counts",), None, True),  # a missing section
        (("counts", "predictions"), "141", False),  # a number as a string
        (("protocol", "ks"), [], False),  # no cut-offs
        (("protocol", "extra"), 1, False),  # an unknown key
        (("next_item", "pop", "mrr@10"), None, True),  # a metric missing at one K
        (("next_item", "pop", "recall@20"), 0.5, False),  # a K that was not evaluated
        (("next_item", "pop", "recall@5"), "high", False),  # a figure that is not a number
        (("next_item", "pop", "ci95", "recall@5"), [0.1], False),  # an interval of one bound
        (("purchase", "base-rate", "roc_auc"), None, True),
        (("breakdown", "pop"), [{"bucket": "0", "n": 0}], False),  # a bucket without figures
        (("unexpected",), {}, False),
    ],
)
def test_rejects_malformed(metrics: dict[str, Any], path: tuple[str, ...], value: Any, delete: bool) -> None:
    with pytest.raises(ValidationError):
        MetricsDocument.model_validate(_broken(metrics, *path, value=value, delete=delete))


def test_write_metrics_refuses_a_malformed_document(metrics: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        write_metrics(_broken(metrics, "counts", delete=True), tmp_path / "out")
    assert not (tmp_path / "out").exists()
