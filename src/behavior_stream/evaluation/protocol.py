"""The offline evaluation protocol: next-item ranking and purchase prediction on test sequences.

Next item: for every test sequence and every position t >= 1 whose event has an item, rank
the true item among ALL catalog items given context + events[:t]. Targets outside the catalog
are skipped and counted (or, GRU4Rec-style, their events are removed before evaluating).
Ranks are conservative: 1 + the number of OTHER items scoring >= the target.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import orjson

from behavior_stream.data.splits import EvalSequence
from behavior_stream.evaluation import metrics as M
from behavior_stream.evaluation.document import validate_metrics
from behavior_stream.evaluation.ranking import (
    Ranking,
    Targets,
    drop_unseen_items,
    next_item_targets,
    rank_targets,
)
from behavior_stream.evaluation.scoring import NextItemScorer
from behavior_stream.evaluation.versus import versus_baselines
from behavior_stream.schema.events import EventType
from behavior_stream.schema.sessions import SESSION_GAP_MS
from behavior_stream.schema.vocab import ItemVocab

log = logging.getLogger(__name__)

# Lower bounds of the session-prefix-length buckets; 0 = the target opens a new session.
LENGTH_BUCKETS: tuple[int, ...] = (0, 1, 2, 5, 10, 20)


class PurchaseScorer(Protocol):
    """Predicts whether the event at each position is a purchase, from the prefix before it."""

    name: str

    def purchase_probabilities(self, seq: EvalSequence, positions: Sequence[int]) -> np.ndarray:
        """Float32 (len(positions),) probabilities in [0, 1]."""
        ...


@runtime_checkable
class BatchPurchaseScorer(Protocol):
    """Optional batched form of `PurchaseScorer.purchase_probabilities`; results in input order."""

    def purchase_sequences(
        self, seqs: Sequence[EvalSequence], positions: Sequence[Sequence[int]]
    ) -> list[np.ndarray]:
        """Per sequence, float32 (len(positions[i]),) probabilities."""
        ...


@dataclass(frozen=True)
class EvalConfig:
    """Protocol knobs; `drop_unseen` switches to the GRU4Rec reference handling of unseen items."""

    ks: tuple[int, ...] = (5, 10, 20)
    n_bootstrap: int = 1000
    seed: int = 0
    drop_unseen: bool = False
    threshold: float = 0.5
    batch_size: int = 256  # positions per scorer call: bounds the (batch, n_items) score matrix
    max_rows: int = 256  # positions ranked together (and per batched-scorer call): bounds memory
    session_gap_ms: int = SESSION_GAP_MS  # of the breakdown's sessions: the evaluated model's


def ranking_metrics(
    ranking: Ranking, targets: Targets, ks: Sequence[int], counts: np.ndarray, config: EvalConfig
) -> dict[str, Any]:
    """Recall/MRR/NDCG/coverage/popularity at each K, cluster-bootstrap CIs, and timing."""
    out: dict[str, Any] = {}
    per_prediction: dict[str, np.ndarray] = {}
    for k in ks:
        per_prediction[f"recall@{k}"] = M.hits_at_k(ranking.ranks, k)
        per_prediction[f"mrr@{k}"] = M.reciprocal_ranks_at_k(ranking.ranks, k)
        per_prediction[f"ndcg@{k}"] = M.ndcg_gains_at_k(ranking.ranks, k)
        for name in (f"recall@{k}", f"mrr@{k}", f"ndcg@{k}"):
            values = per_prediction[name]
            out[name] = float(values.mean()) if values.size else float("nan")
        top = ranking.top_k[:, :k]
        out[f"coverage@{k}"] = M.coverage_at_k(top, len(counts))
        out[f"popularity@{k}"] = M.popularity_at_k(top, counts)
    # Clusters are test sequences; the same seed draws the same resamples for every scorer (paired CIs).
    clusters, cluster_of = np.unique(targets.seq_index, return_inverse=True)
    sums = np.zeros((len(clusters), len(per_prediction)))
    for j, values in enumerate(per_prediction.values()):
        np.add.at(sums[:, j], cluster_of, values)
    sizes = np.bincount(cluster_of, minlength=len(clusters))
    low, high = M.cluster_bootstrap_ci(sums, sizes, config.n_bootstrap, config.seed)
    out["ci95"] = {name: [float(low[j]), float(high[j])] for j, name in enumerate(per_prediction)}
    out["seconds"] = ranking.seconds
    n = len(ranking.ranks)
    out["seconds_per_10k_predictions"] = ranking.seconds * 10_000 / n if n else float("nan")
    return out


def bucket_label(low: int, high: int | None) -> str:
    """'0', '2-4', '20+' style label of the bucket [low, high)."""
    if high is None:
        return f"{low}+"
    return str(low) if high == low + 1 else f"{low}-{high - 1}"


def length_breakdown(ranks: np.ndarray, session_len: np.ndarray, ks: Sequence[int]) -> list[dict[str, Any]]:
    """Recall@K and MRR@K per bucket of session prefix length (events of the session before the target)."""
    rows = []
    for low, high in itertools.pairwise((*LENGTH_BUCKETS, None)):
        assert low is not None  # only the last upper bound is open
        mask = (session_len >= low) & (session_len < (high if high is not None else np.iinfo(np.int64).max))
        row: dict[str, Any] = {"bucket": bucket_label(low, high), "n": int(mask.sum())}
        for k in ks:
            row[f"recall@{k}"] = M.recall_at_k(ranks[mask], k)
            row[f"mrr@{k}"] = M.mrr_at_k(ranks[mask], k)
        rows.append(row)
    return rows


def purchase_evaluation(
    scorers: Sequence[PurchaseScorer], sequences: Sequence[EvalSequence], threshold: float
) -> tuple[dict[str, dict[str, Any]], int, int]:
    """Each scorer's classification metrics on 'is the event at t >= 1 a purchase'; plus (n, positives)."""
    labels = np.asarray(
        [e.type is EventType.PURCHASE for seq in sequences for e in seq.events[1:]], dtype=bool
    )
    results: dict[str, dict[str, Any]] = {}
    for scorer in scorers:
        start = time.perf_counter()
        seqs = [seq for seq in sequences if len(seq.events) > 1]
        positions = [list(range(1, len(seq.events))) for seq in seqs]
        if isinstance(scorer, BatchPurchaseScorer):
            parts = scorer.purchase_sequences(seqs, positions)
        else:
            parts = [scorer.purchase_probabilities(seq, p) for seq, p in zip(seqs, positions, strict=True)]
        probs = np.concatenate([np.asarray(p, np.float64) for p in parts]) if parts else np.zeros(0)
        if probs.shape != labels.shape:
            raise ValueError(f"{scorer.name}: {probs.size} purchase probabilities for {labels.size} events")
        results[scorer.name] = M.classification_metrics(labels, probs, threshold)
        results[scorer.name]["seconds"] = time.perf_counter() - start
    return results, int(labels.size), int(labels.sum())


UNSEEN_SKIPPED = "targets not in the catalog are skipped and counted; their events stay in the prefix"
UNSEEN_DROPPED = "events whose item is not in the catalog are removed before evaluating (GRU4Rec reference)"
PROTOCOL = {
    "task": "next item: for each test sequence and each position t >= 1 whose event has an item, rank the "
    "true item among ALL catalog items given context + events[:t] (search events are context only)",
    "ranking": "all catalog items (the training vocabulary); no sampled negatives",
    "ties": "conservative: rank = 1 + number of OTHER items with score >= the target's score",
    "metrics": "Recall@K (= HR@K), MRR@K, NDCG@K, catalog coverage@K, mean normalized training "
    "popularity (count / max count) of top-K items; micro-averaged over predictions",
    "bootstrap": "95% percentile CI, cluster bootstrap over test sequences (paired: same resamples for all "
    "scorers); versus: the same bootstrap of the paired difference model - baseline",
    "breakdown": "by session prefix length: events of the current session before the target; 0 = the "
    "target opens a new session (a session starts at the user's first event, after a gap over "
    "session_gap_ms, or when both events carry session ids that differ)",
    "baselines": "fitted on every event before the test period; markov and sknn break ties by training "
    "popularity (a bonus smaller than any difference in their own score)",
    "purchase": "label = the event at position t >= 1 is a purchase; probability from context + events[:t]; "
    "predicted positive iff probability >= threshold",
}


def evaluate(
    sequences: Sequence[EvalSequence],
    vocab: ItemVocab,
    train_counts: np.ndarray,
    scorers: Sequence[NextItemScorer],
    purchase_scorers: Sequence[PurchaseScorer] = (),
    config: EvalConfig | None = None,
    dataset: dict[str, Any] | None = None,
    *,
    reference: str | None = None,
) -> dict[str, Any]:
    """Run the protocol for every scorer on the same predictions; returns the metrics.json document
    (schema: `document.MetricsDocument`). `reference` names the evaluated model's scorer: its
    paired differences from every other scorer go to `versus` (None without a reference)."""
    config = config or EvalConfig()
    ks = tuple(sorted(set(config.ks)))
    if reference is not None and reference not in {s.name for s in scorers}:
        raise ValueError(f"reference scorer {reference!r} is not among {[s.name for s in scorers]}")
    dropped = 0
    if config.drop_unseen:
        sequences, dropped = drop_unseen_items(sequences, vocab)
    targets = next_item_targets(sequences, vocab, config.session_gap_ms)
    log.info(
        "evaluating %d predictions in %d sequences (%d unseen targets skipped, %d events dropped)",
        len(targets.items),
        len(sequences),
        targets.skipped_unseen,
        dropped,
    )
    next_item: dict[str, Any] = {}
    breakdown: dict[str, Any] = {}
    ranks: dict[str, np.ndarray] = {}  # per scorer, aligned with `targets`: for the paired differences
    for scorer in scorers:
        k_max = min(max(ks), vocab.n_items)
        ranking = rank_targets(scorer, sequences, targets, k_max, config.batch_size, config.max_rows)
        next_item[scorer.name] = ranking_metrics(ranking, targets, ks, train_counts, config)
        breakdown[scorer.name] = length_breakdown(ranking.ranks, targets.session_len, ks)
        ranks[scorer.name] = ranking.ranks
        headline = next_item[scorer.name][f"recall@{ks[-1]}"]
        log.info("%s: recall@%d %.4f in %.2fs", scorer.name, ks[-1], headline, ranking.seconds)
    versus = None
    if reference is not None:
        versus = versus_baselines(ranks, targets.seq_index, reference, ks, config.n_bootstrap, config.seed)
    purchase, n_purchase, n_positive = purchase_evaluation(purchase_scorers, sequences, config.threshold)
    protocol = {
        **PROTOCOL,
        "unseen_items": UNSEEN_DROPPED if config.drop_unseen else UNSEEN_SKIPPED,
        "ks": list(ks),
        "threshold": config.threshold,
        "n_bootstrap": config.n_bootstrap,
        "seed": config.seed,
        "catalog_items": vocab.n_items,
        "session_gap_ms": config.session_gap_ms,
    }
    return {
        "dataset": dataset or {},
        "protocol": protocol,
        "counts": {
            "sequences": len(sequences),
            "sequences_with_predictions": int(np.unique(targets.seq_index).size),
            "predictions": len(targets.items),
            "skipped_unseen_targets": targets.skipped_unseen,
            "dropped_unseen_events": dropped,
            "purchase_predictions": n_purchase,
            "purchase_positives": n_positive,
        },
        "next_item": next_item,
        "purchase": purchase,
        "breakdown": breakdown,
        "versus": versus,
    }


def write_metrics(metrics: dict[str, Any], out_dir: Path) -> Path:
    """Check `metrics` against the schema (`document.MetricsDocument`), write `out_dir/metrics.json`
    (NaN becomes null) and return its path; a malformed document raises before anything is written.
    """
    # The dict is written, not the model's dump, so the file is exactly what `evaluate` produced.
    validate_metrics(metrics)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "metrics.json"
    path.write_bytes(orjson.dumps(metrics, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return path
