"""Two checkpoints side by side on every metric, with paired bootstrap CIs of the difference B - A.

Next-item and purchase metrics are per prediction, clustered by test sequence; probe, alignment,
k-NN and stability values are per probe user (stability: per step, clustered by user). Each
resample draws clusters with replacement once and recomputes the metric for both models on the
same draw, so the interval is of the paired difference; a difference is significant when its
95% CI excludes 0. Uniformity, effective rank and coverage are set-level figures: no CI.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from behavior_stream.data.splits import EvalSequence, eval_sequences
from behavior_stream.evaluation import metrics as M
from behavior_stream.evaluation.baselines import item_counts
from behavior_stream.evaluation.geometry import QUANTILES
from behavior_stream.evaluation.model_scorer import ModelScorer
from behavior_stream.evaluation.paired import (
    Better,
    Stat,
    classification_stat,
    mean_stat,
    paired_rows,
    quantile_stat,
    row,
)
from behavior_stream.evaluation.probes import ProbeConfig, ProbeExample, probe_examples
from behavior_stream.evaluation.protocol import EvalConfig, ranking_metrics
from behavior_stream.evaluation.ranking import drop_unseen_items, next_item_targets, rank_targets
from behavior_stream.evaluation.representations import Assessment, assess
from behavior_stream.nn.checkpoint import LoadedModel
from behavior_stream.schema.events import Event, EventType

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompareConfig:
    """Evaluation settings shared by both checkpoints."""

    ks: tuple[int, ...] = (5, 10, 20)
    n_bootstrap: int = 1000
    seed: int = 0
    threshold: float = 0.5
    drop_unseen: bool = False
    knn_k: int = 10
    probe: ProbeConfig = field(default_factory=ProbeConfig)


@dataclass(frozen=True)
class Side:
    """One checkpoint's per-prediction values and summaries."""

    name: str
    next_item: dict[str, Any]
    item_values: np.ndarray  # (n, metrics) per-prediction recall/mrr/ndcg
    item_cluster: np.ndarray  # (n,) test sequence of each prediction
    purchase_labels: np.ndarray  # (p,) bool
    purchase_probs: np.ndarray  # (p,)
    purchase_cluster: np.ndarray  # (p,)
    assessment: Assessment | None


def _item_names(ks: Sequence[int]) -> list[str]:
    return [f"{m}@{k}" for k in ks for m in ("recall", "mrr", "ndcg")]


def evaluate_side(
    loaded: LoadedModel,
    sequences: Sequence[EvalSequence],
    history: Sequence[Event],
    examples: Sequence[ProbeExample],
    cfg: CompareConfig,
) -> Side:
    """Rank every target, predict every purchase, and assess the representations of one checkpoint."""
    seqs = drop_unseen_items(sequences, loaded.vocab)[0] if cfg.drop_unseen else list(sequences)
    scorer = ModelScorer(loaded)
    ks = tuple(sorted(set(cfg.ks)))
    targets = next_item_targets(seqs, loaded.vocab, loaded.config.session_gap_ms)
    ranking = rank_targets(scorer, seqs, targets, min(max(ks), loaded.vocab.n_items))
    eval_cfg = EvalConfig(ks=ks, n_bootstrap=cfg.n_bootstrap, seed=cfg.seed)
    summary = ranking_metrics(ranking, targets, ks, item_counts(history, loaded.vocab), eval_cfg)
    per_k = {
        "recall": M.hits_at_k,
        "mrr": M.reciprocal_ranks_at_k,
        "ndcg": M.ndcg_gains_at_k,
    }
    # (n, len(ks) * 3) in `_item_names` order
    values = np.stack([per_k[m](ranking.ranks, k) for k in ks for m in ("recall", "mrr", "ndcg")], axis=1)
    buy_rows = [i for i, s in enumerate(seqs) if len(s.events) > 1]
    probs = scorer.purchase_sequences(
        [seqs[i] for i in buy_rows], [range(1, len(seqs[i].events)) for i in buy_rows]
    )
    labels = [e.type is EventType.PURCHASE for i in buy_rows for e in seqs[i].events[1:]]
    assessment = assess(loaded, examples, cfg.probe, cfg.knn_k) if len(examples) >= 4 else None
    return Side(
        name=f"{loaded.config.cell} {loaded.model_version}",
        next_item=summary,
        item_values=values,
        item_cluster=targets.seq_index,
        purchase_labels=np.asarray(labels, dtype=bool),
        purchase_probs=np.concatenate([np.zeros(0), *probs]).astype(np.float64),
        purchase_cluster=np.repeat(
            np.asarray(buy_rows, np.int64), [len(seqs[i].events) - 1 for i in buy_rows]
        ),
        assessment=assessment,
    )


class _Rows:
    """Collects comparison rows; each metric group is a `Stat` built the same way for both sides."""

    def __init__(self, cfg: CompareConfig) -> None:
        self.cfg = cfg
        self.rows: list[dict[str, Any]] = []

    def paired(
        self, group: str, metrics: Sequence[tuple[str, Better]], stats: Sequence[Stat], n_clusters: int
    ) -> None:
        """Rows with paired bootstrap CIs; `stats` = (stat of A, stat of B) over the same clusters."""
        names, better = [m for m, _ in metrics], [b for _, b in metrics]
        self.rows += paired_rows(
            group, names, better, (stats[0], stats[1]), n_clusters, self.cfg.n_bootstrap, self.cfg.seed
        )

    def unpaired(self, group: str, metric: str, a: float, b: float, better: Better) -> None:
        """A row of a set-level figure (no CI)."""
        self.rows.append(row(group, metric, a, b, None, better))


def _representation_rows(out: _Rows, a: Assessment, b: Assessment) -> None:
    """Probe, geometry and stability rows (clusters = probe users)."""
    n = len(a.probes.purchase_label)
    users = np.arange(n)
    sides = (a, b)
    out.paired(
        "probe purchase",
        [("roc_auc", "higher"), ("f1", "higher"), ("brier", "lower")],
        [classification_stat(s.probes.purchase_label, s.probes.purchase_prob, users, 0.5) for s in sides],
        n,
    )
    out.paired(
        "probe category",
        [("accuracy", "higher"), (f"top{out.cfg.probe.top_k}_accuracy", "higher")],
        [
            mean_stat(np.stack([s.probes.category_hit, s.probes.category_top_k], 1), s.probes.category_rows)
            for s in sides
        ],
        n,
    )
    errors = [s.probes.length_pred - s.probes.length_label for s in sides]
    out.paired(
        "probe length",
        [("mae", "lower"), ("mse", "lower")],
        [mean_stat(np.stack([np.abs(e), e**2], 1), users) for e in errors],
        n,
    )
    out.paired(
        "geometry",
        [("alignment", "lower")],
        [mean_stat(s.alignment[:, None], s.states.view_rows) for s in sides],
        n,
    )
    known = np.flatnonzero(np.isfinite(a.knn) & np.isfinite(b.knn))
    knn_name = next(key for key in a.section["geometry"] if key.startswith("knn_agreement@"))
    out.paired("geometry", [(knn_name, "higher")], [mean_stat(s.knn[known, None], known) for s in sides], n)
    ga, gb = a.section["geometry"], b.section["geometry"]
    out.unpaired("geometry", "uniformity", ga["uniformity"], gb["uniformity"], "lower")
    out.unpaired("geometry", "effective_rank", ga["effective_rank"], gb["effective_rank"], "neither")
    for label, pick in (("within_session", False), ("session_boundary", True)):
        stats = [
            quantile_stat(
                s.states.steps[s.states.boundary == pick],
                s.states.step_user[s.states.boundary == pick],
                QUANTILES,
            )
            for s in sides
        ]
        out.paired(
            f"stability {label}", [("p50", "neither"), ("p90", "neither"), ("p99", "neither")], stats, n
        )


def compare_sides(a: Side, b: Side, n_sequences: int, cfg: CompareConfig) -> list[dict[str, Any]]:
    """Every comparison row of two evaluated checkpoints."""
    out = _Rows(cfg)
    ks = tuple(sorted(set(cfg.ks)))
    sides = (a, b)
    out.paired(
        "next item",
        [(name, "higher") for name in _item_names(ks)],
        [mean_stat(s.item_values, s.item_cluster) for s in sides],
        n_sequences,
    )
    head = 20 if 20 in ks else ks[-1]
    out.unpaired(
        "next item",
        f"coverage@{head}",
        a.next_item[f"coverage@{head}"],
        b.next_item[f"coverage@{head}"],
        "higher",
    )
    out.unpaired(
        "next item",
        f"popularity@{head}",
        a.next_item[f"popularity@{head}"],
        b.next_item[f"popularity@{head}"],
        "neither",
    )
    if a.purchase_labels.size:
        out.paired(
            "purchase",
            [("roc_auc", "higher"), ("f1", "higher"), ("brier", "lower")],
            [
                classification_stat(s.purchase_labels, s.purchase_probs, s.purchase_cluster, cfg.threshold)
                for s in sides
            ],
            n_sequences,
        )
    if a.assessment is not None and b.assessment is not None:
        _representation_rows(out, a.assessment, b.assessment)
    return out.rows


def compare_checkpoints(
    a: LoadedModel,
    b: LoadedModel,
    history: Sequence[Event],
    test: Sequence[Event],
    categories: dict[str, str],
    cfg: CompareConfig | None = None,
    dataset: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The compare.json document: both models on the same test sequences and probe users."""
    cfg = cfg or CompareConfig()
    if a.config.session_gap_ms != b.config.session_gap_ms:
        gaps = (a.config.session_gap_ms, b.config.session_gap_ms)
        log.warning("session gaps differ (%d vs %d ms); probe sessions use A's", *gaps)
    sequences = eval_sequences(history, test)
    examples = probe_examples(history, test, categories, a.config.session_gap_ms)
    sides = [evaluate_side(m, sequences, history, examples, cfg) for m in (a, b)]
    rows = compare_sides(sides[0], sides[1], len(sequences), cfg)

    def summary(side: Side, loaded: LoadedModel) -> dict[str, Any]:
        return {
            "name": side.name,
            "model_version": loaded.model_version,
            "cell": loaded.config.cell,
            "next_item": side.next_item,
            "probes": side.assessment.section if side.assessment is not None else None,
        }

    return {
        "dataset": dataset or {},
        "protocol": {
            "difference": "B - A",
            "bootstrap": f"{cfg.n_bootstrap} paired cluster resamples (test sequences; probe users), seed "
            f"{cfg.seed}; significant = 95% percentile CI of the difference excludes 0",
            "ks": sorted(set(cfg.ks)),
            "drop_unseen": cfg.drop_unseen,
        },
        "counts": {"sequences": len(sequences), "probe_users": len(examples)},
        "a": summary(sides[0], a),
        "b": summary(sides[1], b),
        "rows": rows,
    }


def write_compare(result: dict[str, Any], out_dir: Path) -> Path:
    """Write `out_dir/compare.json` (NaN becomes null) and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "compare.json"
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return path
