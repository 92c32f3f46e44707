"""The scenario evaluation (`evaluate --scenarios`): the model against each scenario's baseline.

Every scenario's predictions come from `scenarios.py`; the model scores them with the same
forward the next-item protocol uses (`ModelScorer`), and the difference model - baseline gets a
95% paired cluster bootstrap interval over test sequences (the same resamples for both sides).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal

import numpy as np

from behavior_stream.data.splits import EvalSequence, group_by_user
from behavior_stream.evaluation import scenarios as S
from behavior_stream.evaluation.baselines import item_counts, popularity_tiebreak
from behavior_stream.evaluation.metrics import classification_metrics
from behavior_stream.evaluation.model_scorer import ModelScorer
from behavior_stream.evaluation.paired import classification_stat, mean_stat, paired_bootstrap
from behavior_stream.evaluation.scenario_intent import intent_examples
from behavior_stream.nn.checkpoint import LoadedModel
from behavior_stream.schema.events import Event, EventType, make_event

log = logging.getLogger(__name__)
CartHorizon = Literal["session", "test"]


@dataclass(frozen=True)
class ScenarioConfig:
    """Cut-off, bootstrap and the cart blend of the scenario evaluation."""

    k: int = 20
    n_bootstrap: int = 500
    seed: int = 0
    cart_blend: float = 0.5
    # Which later basket items complete a cart: those of its session, or of the rest of the test
    # sequence (sparse logs such as the Taobao sample have too few of the former to judge).
    cart_horizon: CartHorizon = "session"
    # The checkpoint's purchase calibration (training/calibration.py: `Platt.apply`) and its
    # validation-chosen threshold; None: the raw probability at threshold 0.5.
    calibrate: Callable[[np.ndarray], np.ndarray] | None = None
    threshold: float = 0.5
    max_predictions: int = 20_000  # per scenario, the first ones (bounds the time on big logs)


def _clusters(seq_ids: Sequence[int]) -> tuple[np.ndarray, int]:
    _, inverse = np.unique(np.asarray(seq_ids, np.int64), return_inverse=True)
    return inverse, int(inverse.max(initial=-1)) + 1


def versus(
    model_ranks: np.ndarray,
    base_ranks: np.ndarray,
    seq_ids: Sequence[int],
    baseline: str,
    cfg: ScenarioConfig,
) -> dict[str, Any]:
    """Hit@k and MRR@k of model and baseline, and the paired 95% interval of model - baseline."""
    k = cfg.k
    a, b = S.hit_and_rr(base_ranks, k), S.hit_and_rr(model_ranks, k)
    cluster_of, n = _clusters(seq_ids)
    low, high = paired_bootstrap(
        n, mean_stat(a, cluster_of), mean_stat(b, cluster_of), cfg.n_bootstrap, cfg.seed
    )
    names = [f"hit@{k}", f"mrr@{k}"]
    out: dict[str, Any] = {"predictions": len(model_ranks), "sequences": n, "baseline": baseline}
    for m, name in enumerate(names):
        out[name] = {
            "model": float(b[:, m].mean()) if len(b) else None,
            "baseline": float(a[:, m].mean()) if len(a) else None,
            "difference": float(b[:, m].mean() - a[:, m].mean()) if len(a) else None,
            "ci95": [float(low[m]), float(high[m])],
        }
    out["beats_baseline"] = bool(low[0] > 0) if len(a) else None
    return out


def _scores_at(
    scorer: ModelScorer, seqs: Sequence[EvalSequence], preds: Sequence[S.Prediction]
) -> list[np.ndarray]:
    """Model score rows (n_items,) for each prediction, batched by sequence."""
    by_seq: dict[int, list[int]] = defaultdict(list)
    for j, p in enumerate(preds):
        by_seq[p.seq].append(j)
    order = sorted(by_seq)
    rows = scorer.score_sequences(
        [seqs[s] for s in order], [[preds[j].position for j in by_seq[s]] for s in order]
    )
    out: list[np.ndarray] = [np.empty(0)] * len(preds)
    for s, block in zip(order, rows, strict=True):
        for r, j in enumerate(by_seq[s]):
            out[j] = block[r]
    return out


def _dense(counts: Counter[int] | None, n_items: int) -> np.ndarray:
    """(n_items,) a baseline's counts per catalog item (zeros without any)."""
    row = np.zeros(n_items)
    for idx, c in (counts or {}).items():
        row[idx] = c
    return row


def _query_counts(train: Sequence[Event], loaded: LoadedModel) -> dict[str, Counter[int]]:
    """Per normalised query, the catalog items clicked right after it in training."""
    out: dict[str, Counter[int]] = defaultdict(Counter)
    for evs in group_by_user(train).values():
        for prev, ev in pairwise(evs):
            idx = loaded.vocab.index(ev.item_id)
            if prev.type is EventType.SEARCH and idx is not None:
                out[S.normalise_query(prev.query)][idx] += 1
    return out


def search_scenario(
    loaded: LoadedModel,
    scorer: ModelScorer,
    train: Sequence[Event],
    seqs: Sequence[EvalSequence],
    cfg: ScenarioConfig,
) -> dict[str, Any] | None:
    """The item clicked after a search, ranked given the query: model vs query-only counts."""
    preds = S.search_predictions(seqs, loaded.vocab)[: cfg.max_predictions]
    if not preds:
        return None
    pop = popularity_tiebreak(item_counts(train, loaded.vocab))
    queries = _query_counts(train, loaded)
    model, base = [], []
    for p, row in zip(preds, _scores_at(scorer, seqs, preds), strict=True):
        counts = _dense(queries.get(p.query), loaded.vocab.n_items)
        model.append(S.set_ranks(row, p.targets))
        base.append(S.set_ranks(counts + pop, p.targets))
    return versus(
        np.array(model),
        np.array(base),
        [p.seq for p in preds],
        "query-only (clicks after the query in training)",
        cfg,
    )


def cart_scenario(
    loaded: LoadedModel,
    scorer: ModelScorer,
    train: Sequence[Event],
    seqs: Sequence[EvalSequence],
    cfg: ScenarioConfig,
) -> dict[str, Any] | None:
    """Items bought after a cart event (not carted so far): model blended with the table vs the table."""
    gap_ms = loaded.config.session_gap_ms if cfg.cart_horizon == "session" else None
    preds = S.cart_predictions(seqs, loaded.vocab, gap_ms)[: cfg.max_predictions]
    if not preds:
        return None
    table = S.bought_together(train)
    pop = popularity_tiebreak(item_counts(train, loaded.vocab))
    vocab = loaded.vocab
    model, base = [], []
    for p, row in zip(preds, _scores_at(scorer, seqs, preds), strict=True):
        basket = [vocab.items[i] for i in p.excluded]
        counts = S.table_scores(table, basket, vocab)
        blended = S.cart_blend(row[None].astype(np.float64), counts[None], cfg.cart_blend)[0]
        model.append(S.set_ranks(blended, p.targets, p.excluded))
        base.append(S.set_ranks(counts + pop, p.targets, p.excluded))
    out = versus(
        np.array(model),
        np.array(base),
        [p.seq for p in preds],
        "bought-together counts of the carted items",
        cfg,
    )
    out["blend"] = cfg.cart_blend
    out["horizon"] = cfg.cart_horizon
    return out


def related_scenario(
    loaded: LoadedModel,
    scorer: ModelScorer,
    train: Sequence[Event],
    seqs: Sequence[EvalSequence],
    cfg: ScenarioConfig,
) -> dict[str, Any] | None:
    """The next distinct item of a test session given only the previous one: model vs co-occurrence."""
    pairs = S.related_predictions(seqs, loaded.vocab)[: cfg.max_predictions]
    if not pairs:
        return None
    vocab = loaded.vocab
    anchors = sorted({i for _, i, _ in pairs})
    probes = [
        EvalSequence(f"item-{i}", (), (make_event("related", EventType.CLICK, 1, vocab.items[i]),) * 2)
        for i in anchors
    ]
    rows = dict(
        zip(anchors, (r[0] for r in scorer.score_sequences(probes, [[1]] * len(probes))), strict=True)
    )
    co = S.co_occurrence(train, vocab)
    pop = popularity_tiebreak(item_counts(train, vocab))
    model, base = [], []
    for _, i, j in pairs:
        counts = _dense(co.get(i), vocab.n_items)
        model.append(S.set_ranks(rows[i], (j,), (i,)))
        base.append(S.set_ranks(counts + pop, (j,), (i,)))
    return versus(
        np.array(model), np.array(base), [s for s, _, _ in pairs], "session co-occurrence counts", cfg
    )


def intent_scenario(
    loaded: LoadedModel,
    scorer: ModelScorer,
    train: Sequence[Event],
    seqs: Sequence[EvalSequence],
    cfg: ScenarioConfig,
) -> dict[str, Any] | None:
    """Purchase in the current session: ROC-AUC, F1 at the validation threshold, Brier, calibration curve."""
    raw, labels, ids = intent_examples(scorer, seqs)
    if labels.size == 0 or labels.min() == labels.max():
        return None
    probs = cfg.calibrate(raw) if cfg.calibrate is not None else raw
    threshold = cfg.threshold
    train_seqs = [EvalSequence(u, (), tuple(evs)) for u, evs in group_by_user(train).items() if len(evs) > 1]
    train_labels = np.concatenate(
        [S.session_purchase_labels(s, range(1, len(s.events))) for s in train_seqs] or [np.zeros(0, bool)]
    )
    base_rate = float(train_labels.mean()) if train_labels.size else float(labels.mean())
    constant = np.full(labels.shape, base_rate)
    cluster_of, n = _clusters(ids.tolist())
    stat_model = classification_stat(labels, probs, cluster_of, threshold)
    stat_base = classification_stat(labels, constant, cluster_of, base_rate)  # its best F1: all positive
    low, high = paired_bootstrap(n, stat_base, stat_model, cfg.n_bootstrap, cfg.seed)
    m, b = (
        classification_metrics(labels, probs, threshold),
        classification_metrics(labels, constant, base_rate),
    )
    out: dict[str, Any] = {
        "predictions": int(labels.size),
        "positives": int(labels.sum()),
        "sequences": n,
        "baseline": f"training base rate {base_rate:.4f}",
        "calibration": "platt" if cfg.calibrate is not None else "none",
        "threshold": threshold,
    }
    for i, name in enumerate(("roc_auc", "f1", "brier")):
        out[name] = {
            "model": m[name],
            "baseline": b[name],
            "difference": m[name] - b[name],
            "ci95": [float(low[i]), float(high[i])],
        }
    out["beats_baseline"] = bool(low[0] > 0)
    out["calibration_curve"] = S.calibration_curve(labels, probs)
    return out


def evaluate_scenarios(
    loaded: LoadedModel,
    train: Sequence[Event],
    seqs: Sequence[EvalSequence],
    cfg: ScenarioConfig | None = None,
) -> dict[str, Any]:
    """Every scenario the data supports (None where it has no predictions), keyed by name."""
    cfg = cfg or ScenarioConfig()
    scorer = ModelScorer(loaded)
    out: dict[str, Any] = {}
    for name, run in (
        ("search", search_scenario),
        ("cart", cart_scenario),
        ("related", related_scenario),
        ("purchase_intent", intent_scenario),
    ):
        out[name] = run(loaded, scorer, train, seqs, cfg)
        log.info(
            "scenario %s: %s",
            name,
            "no predictions" if out[name] is None else f"{out[name].get('predictions')} predictions",
        )
    return out
