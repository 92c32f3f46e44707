"""report.md and its plots, built from an evaluation's metrics document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from behavior_stream.data.splits import eval_sequences
from behavior_stream.evaluation.baselines import FirstOrderMarkov, MostPopular, PurchaseBaseRate, item_counts
from behavior_stream.evaluation.protocol import EvalConfig, evaluate
from behavior_stream.evaluation.report import headline_k, next_item_table, write_report
from behavior_stream.evaluation.scoring import NextItemScorer
from behavior_stream.schema.events import EventType, make_event
from behavior_stream.schema.vocab import ItemVocab

T0 = 1_600_000_000_000


def small_metrics(fmt: str) -> dict[str, Any]:
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
