"""The evaluated model against each baseline: paired cluster-bootstrap CIs of model - baseline.

Each scorer's own CI (`protocol.ranking_metrics`) says how precisely its metric is known; whether
the model beats a baseline is a question about the difference, whose paired interval is much
narrower, because both scorers rank the very same predictions and share each resample of test
sequences. `significant` is one-sided in the model's favour: the whole interval is above zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from behavior_stream.evaluation import metrics as M
from behavior_stream.evaluation.paired import mean_stat, paired_bootstrap

VERSUS_METRICS = ("recall", "mrr", "ndcg")  # the per-prediction metrics, each at every K


def metric_names(ks: Sequence[int]) -> list[str]:
    """`recall@K`, `mrr@K`, `ndcg@K` for each K, K-major (the order of the next-item table)."""
    return [f"{m}@{k}" for k in ks for m in VERSUS_METRICS]


def per_prediction(ranks: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """(n, 3 * len(ks)) per-prediction values of `metric_names(ks)` for 1-based `ranks` (n,)."""
    columns = []
    for k in ks:
        columns += [M.hits_at_k(ranks, k), M.reciprocal_ranks_at_k(ranks, k), M.ndcg_gains_at_k(ranks, k)]
    return np.stack(columns, axis=1) if columns else np.zeros((len(ranks), 0))


def _means(values: np.ndarray) -> np.ndarray:
    """Column means, each summed like the 1-D mean `protocol.ranking_metrics` takes (contiguous),
    so the figures equal those of `next_item` to the last bit; NaN without predictions."""
    if not len(values):
        return np.full(values.shape[1], np.nan)
    return np.ascontiguousarray(values.T).mean(axis=1)


def versus_baselines(
    ranks: Mapping[str, np.ndarray],
    seq_index: np.ndarray,
    reference: str,
    ks: Sequence[int],
    n_bootstrap: int,
    seed: int,
) -> dict[str, Any] | None:
    """The `versus` section: for every scorer in `ranks` other than `reference`, per metric of
    `metric_names(ks)`, `{model, baseline, difference, ci95, significant}` of reference - baseline.

    `ranks` maps scorer name -> conservative ranks of the same predictions (aligned with
    `seq_index`, the test sequence of each prediction: the bootstrap clusters). Every baseline
    is resampled with the same seed, so all comparisons share the same draws. None when there
    is no other scorer; a `reference` missing from `ranks` raises `ValueError`.
    """
    if reference not in ranks:
        raise ValueError(f"reference scorer {reference!r} is not among the scorers {sorted(ranks)}")
    others = [name for name in ranks if name != reference]
    if not others:
        return None
    names = metric_names(ks)
    clusters, cluster_of = np.unique(seq_index, return_inverse=True)
    model_values = per_prediction(ranks[reference], ks)
    model_stat = mean_stat(model_values, cluster_of)
    model_means = _means(model_values)
    baselines: dict[str, Any] = {}
    for name in others:
        values = per_prediction(ranks[name], ks)
        if values.shape != model_values.shape:
            raise ValueError(f"{name}: {len(values)} ranks, {reference} has {len(model_values)}")
        means = _means(values)
        # paired_bootstrap gives stat_b - stat_a: the baseline is A, the model B.
        low, high = paired_bootstrap(
            len(clusters), mean_stat(values, cluster_of), model_stat, n_bootstrap, seed
        )
        # Plain floats, not numpy scalars, in the document (NaN when undefined).
        baselines[name] = {
            metric: {
                "model": float(model_means[j]),
                "baseline": float(means[j]),
                "difference": float(model_means[j] - means[j]),
                "ci95": [float(low[j]), float(high[j])],
                "significant": bool(low[j] > 0),  # False for an undefined (NaN) interval too
            }
            for j, metric in enumerate(names)
        }
    return {"reference": reference, "baselines": baselines}
