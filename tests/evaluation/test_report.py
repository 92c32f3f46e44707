"""report.md and its plots, built from an evaluation's metrics document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from behavior_stream.data.splits import eval_sequences
from behavior_stream.evaluation.baselines import FirstOrderMarkov, MostPopular, PurchaseBaseRate, item_counts
from behavior_stream.evaluation.probe_report import probe_verdicts
from behavior_stream.evaluation.probes import ProbeConfig
from behavior_stream.evaluation.protocol import EvalConfig, evaluate
from behavior_stream.evaluation.report import (
    headline_k,
    next_item_table,
    versus_table,
    write_report,
)
from behavior_stream.evaluation.representations import probe_section
from behavior_stream.evaluation.scoring import NextItemScorer
from behavior_stream.nn.checkpoint import LoadedModel
from behavior_stream.schema.events import EventType, make_event
from behavior_stream.schema.vocab import ItemVocab
from tests import probekit
from tests.seqkit import small_model, tiny_vocab

T0 = 1_600_000_000_000


def small_metrics(fmt: str, reference: str | None = None) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    history = [
        make_event(f"u{u}", EventType.CLICK, T0 + m * 60_000, item_id=f"i{rng.integers(12)}")
        for u in range(10)
        for m in range(10)
    ]
    test = [
        make_event(f"u{u}", EventType.CLICK, T0 + (50 + m) * 60_000, item_id=f"i{rng.integers(12)}")
        for u in range(10)
        for m in range(5)
    ]
    vocab = ItemVocab.build(e.item_id for e in history)
    scorers: list[NextItemScorer] = [
        MostPopular().fit(history, vocab),
        FirstOrderMarkov().fit(history, vocab),
    ]
    return evaluate(
        eval_sequences(history, test),
        vocab,
        item_counts(history, vocab),
        scorers,
        [PurchaseBaseRate().fit(history, vocab)],
        EvalConfig(ks=(5, 10), n_bootstrap=50),
        {"format": fmt},
        reference=reference,
    )


def test_report_has_protocol_tables_and_plots(tmp_path: Path) -> None:
    metrics = small_metrics("jsonl")
    history = [
        {"epoch": e, "train_loss": 5.0 / e, "valid_recall": 0.1 * e, "seconds": 3.0} for e in (1, 2, 3)
    ]
    path = write_report(metrics, tmp_path, history)
    text = path.read_text()
    assert "conservative" in text and "ALL catalog items" in text
    assert "| pop |" in text and "| markov |" in text and "| base-rate |" in text
    assert "GRU4Rec compatibility" not in text
    for png in ("metric_at_k.png", "metric_by_length.png", "training_curves.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
        assert f"]({png})" in text


def test_report_without_history_and_gru4rec_note(tmp_path: Path) -> None:
    metrics = small_metrics("gru4rec")
    text = write_report(metrics, tmp_path).read_text()
    assert "GRU4Rec compatibility" in text
    assert not (tmp_path / "training_curves.png").exists()
    assert headline_k(metrics) == 10
    # One row per scorer, CI brackets at the headline K only.
    table = next_item_table(metrics).splitlines()
    assert len(table) == 2 + len(metrics["next_item"])
    assert table[2].count("[") == 3


def test_report_puts_each_probe_beside_its_baseline_and_says_when_it_is_at_chance(tmp_path: Path) -> None:
    vocab = tiny_vocab()
    model = small_model(vocab)
    history, test = probekit.history_and_test()
    section = probe_section(
        LoadedModel(model, vocab, model.config, {}, "test"), history, test, probekit.CATEGORIES,
        ProbeConfig(n_bootstrap=100), knn_k=5,
    )  # fmt: skip
    # One of each verdict, whatever the untrained model scored.
    verdicts = {"purchase": "at chance", "category": "better", "length": "worse"}
    for name, verdict in verdicts.items():
        section[name] = {
            **section[name],
            "versus_baseline": {**section[name]["versus_baseline"], "verdict": verdict},
        }
    text = write_report({**small_metrics("jsonl"), "probes": section}, tmp_path).read_text()
    assert "| probe | n | score [95% CI] | baseline [95% CI] | verdict |" in text
    assert (
        "| purchase in next session | 39 | roc_auc " in text
        and "constant score 0.5000 [0.5000, 0.5000]" in text
    )
    assert "**at chance**" in text and "better than baseline" in text and "worse than baseline" in text
    sentences = probe_verdicts(section)
    assert len(sentences) == 2 and all(line in text for line in sentences)
    assert sentences[0].startswith("The next-session purchase probe is at chance: its roc_auc interval")
    assert "next-session length probe does worse than the mean length baseline" in sentences[1]
    # Without users the comparison is undefined, and the report says it could not be scored.
    section["category"] = {
        **section["category"],
        "versus_baseline": {**section["category"]["versus_baseline"], "verdict": None},
    }
    assert any(
        "next-session category probe" in line and "could not be scored" in line
        for line in probe_verdicts(section)
    )


def test_report_puts_the_model_beside_each_baseline_with_the_paired_interval(tmp_path: Path) -> None:
    assert versus_table(small_metrics("jsonl")) == ""  # no reference: no section
    assert "Model vs baselines" not in write_report(small_metrics("jsonl"), tmp_path / "none").read_text()
    metrics = small_metrics("jsonl", reference="markov")
    text = write_report(metrics, tmp_path).read_text()
    assert "## Model vs baselines (paired 95% CI)" in text and "markov - baseline" in text
    table = versus_table(metrics)
    assert table in text
    lines = table.splitlines()
    assert lines[0] == "| baseline | metric | model | baseline | model - baseline [95% CI] | beats |"
    # pop only, at the headline K (10): recall, mrr, ndcg.
    assert [line.split(" | ")[1] for line in lines[2:]] == ["recall@10", "mrr@10", "ndcg@10"]
    fig = metrics["versus"]["baselines"]["pop"]["recall@10"]
    low, high = fig["ci95"]
    assert lines[2].startswith(
        f"| pop | recall@10 | {fig['model']:.4f} | {fig['baseline']:.4f} | "
        f"{fig['difference']:.4f} [{low:.4f}, {high:.4f}] | "
    )
    # The verdict follows the interval: above zero, holding zero, below zero.
    for ci, verdict in (([0.01, 0.02], "yes"), ([-0.01, 0.02], "no"), ([-0.02, -0.01], "worse")):
        fig["ci95"] = ci
        assert versus_table(metrics).splitlines()[2].endswith(f"| {verdict} |")
