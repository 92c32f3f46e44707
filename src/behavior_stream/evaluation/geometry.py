"""Geometry and stability of user representations, as pure NumPy functions (no model, no data loading).

- alignment / uniformity (Wang & Isola 2020) on L2-normalised vectors: alignment = mean squared
  distance between the two views of each user, uniformity = log mean exp(-t * squared distance)
  over all pairs of distinct users (t = 2). Lower is better for both.
- effective rank (Roy & Vetterli 2007): exp of the Shannon entropy of the normalised singular values.
- k-NN agreement: do users with similar histories (item-set Jaccard) get similar vectors (cosine)?
- stability: quantiles of how far the vector moves per event, within a session and across a boundary.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.99)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def _check_matrix(x: np.ndarray, name: str, min_rows: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < min_rows:
        raise ValueError(f"{name} needs a (n >= {min_rows}, dim) matrix, got shape {x.shape}")
    return x


def alignment_per_pair(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Squared distance (n,) between normalised row i of `x` and of `y` (the two views of user i)."""
    x, y = _check_matrix(x, "alignment", 1), _check_matrix(y, "alignment", 1)
    if x.shape != y.shape:
        raise ValueError(f"alignment needs views of equal shape, got {x.shape} and {y.shape}")
    return np.asarray(((l2_normalize(x) - l2_normalize(y)) ** 2).sum(axis=1))


def alignment(x: np.ndarray, y: np.ndarray) -> float:
    """Mean squared distance between positive pairs (rows i of `x` and `y`), in [0, 4]; 0 = identical."""
    return float(alignment_per_pair(x, y).mean())


def uniformity(x: np.ndarray, t: float = 2.0) -> float:
    """log mean over pairs i < j of exp(-t ||x_i - x_j||^2), normalised rows; from -4t (spread) to 0."""
    z = l2_normalize(_check_matrix(x, "uniformity", 2))
    # On the unit sphere ||a - b||^2 = 2 - 2 a.b; clip the rounding below 0.
    sq = np.clip(2.0 - 2.0 * (z @ z.T), 0.0, None)  # (n, n)
    pairs = sq[np.triu_indices(len(z), k=1)]
    # log-mean-exp, shifted by the max for numerical safety
    logits = -t * pairs
    top = logits.max()
    return float(top + np.log(np.mean(np.exp(logits - top))))


def effective_rank(x: np.ndarray, center: bool = True) -> float:
    """exp(entropy of singular values / their sum), between 1 and min(n, dim).

    Centred by default, so an offset shared by every user does not count as a direction.
    A zero matrix has no spread at all: its effective rank is 0.
    """
    x = _check_matrix(x, "effective_rank", 1)
    if center:
        x = x - x.mean(axis=0, keepdims=True)
    s = np.linalg.svd(x, compute_uv=False)
    total = s.sum()
    if total <= 1e-12 * max(1.0, float(np.abs(x).max(initial=0.0))):
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def jaccard_matrix(item_sets: Sequence[set[str] | frozenset[str]]) -> np.ndarray:
    """(n, n) Jaccard similarity of item sets; two empty sets have similarity 0."""
    index: dict[str, int] = {}
    rows, cols = [], []
    for r, items in enumerate(item_sets):
        for item in items:
            rows.append(r)
            cols.append(index.setdefault(item, len(index)))
    n = len(item_sets)
    a = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, max(len(index), 1)))
    inter = (a @ a.T).toarray()  # (n, n) intersection sizes
    sizes = np.diag(inter)
    union = sizes[:, None] + sizes[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(union > 0, inter / union, 0.0))


def knn_agreement_per_user(
    x: np.ndarray, item_sets: Sequence[set[str] | frozenset[str]], k: int
) -> np.ndarray:
    """Per user, overlap@k of the k nearest users by representation cosine with those by history Jaccard.

    Tie-aware: a representation neighbour counts as a hit when its Jaccard is > 0 and at least the
    user's k-th largest Jaccard. The score is hits / min(k, users with Jaccard > 0), in [0, 1];
    NaN for a user who shares no item with anyone (no reference neighbours).
    """
    x = _check_matrix(x, "knn_agreement", 2)
    n = len(x)
    if len(item_sets) != n:
        raise ValueError(f"knn_agreement: {n} vectors but {len(item_sets)} item sets")
    if not 1 <= k < n:
        raise ValueError(f"knn_agreement needs 1 <= k < n users, got k={k}, n={n}")
    z = l2_normalize(x)
    cos = z @ z.T  # (n, n)
    np.fill_diagonal(cos, -np.inf)
    jac = jaccard_matrix(item_sets)
    np.fill_diagonal(jac, -1.0)
    rep_nn = np.argsort(-cos, axis=1, kind="stable")[:, :k]  # (n, k)
    kth = -np.sort(-jac, axis=1)[:, k - 1]  # (n,) k-th largest Jaccard of each user
    positives = (jac > 0).sum(axis=1)  # (n,)
    picked = np.take_along_axis(jac, rep_nn, axis=1)  # (n, k)
    hits = ((picked > 0) & (picked >= kth[:, None])).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(positives > 0, hits / np.minimum(k, positives), np.nan)


def knn_chance(item_sets: Sequence[set[str] | frozenset[str]], k: int) -> float:
    """Expected `knn_agreement` of random vectors: each user's k random neighbours hit
    the reference set (Jaccard > 0 and >= the k-th largest) at its share of the other users."""
    n = len(item_sets)
    jac = jaccard_matrix(item_sets)
    np.fill_diagonal(jac, -1.0)
    kth = -np.sort(-jac, axis=1)[:, k - 1]
    accepted = ((jac > 0) & (jac >= kth[:, None])).sum(axis=1)
    positives = (jac > 0).sum(axis=1)
    has = positives > 0
    if not has.any():
        return float("nan")
    expected = k * accepted[has] / (n - 1) / np.minimum(k, positives[has])
    return float(np.minimum(expected, 1.0).mean())


def step_norms(hidden: np.ndarray) -> np.ndarray:
    """||h_t - h_{t-1}|| for t = 1..T-1 of one user's states (T, dim); (T-1,)."""
    h = _check_matrix(hidden, "step_norms", 1)
    return np.asarray(np.linalg.norm(np.diff(h, axis=0), axis=1))


def quantile_summary(values: np.ndarray, quantiles: Sequence[float] = QUANTILES) -> dict[str, float]:
    """{'p50': ..., 'p90': ..., 'p99': ..., 'n': count}; NaN quantiles when there are no values."""
    v = np.asarray(values, dtype=np.float64)
    out: dict[str, float] = {}
    for q in quantiles:
        out[f"p{round(q * 100)}"] = float(np.quantile(v, q)) if v.size else float("nan")
    out["n"] = int(v.size)
    return out


def stability(norms: np.ndarray, boundary: np.ndarray) -> dict[str, dict[str, float]]:
    """Step-size quantiles split into within-session steps and session-boundary steps.

    `norms` (n,) are step sizes, `boundary` (n,) bool marks steps whose event opens a new session.
    """
    norms = np.asarray(norms, dtype=np.float64)
    boundary = np.asarray(boundary, dtype=bool)
    if norms.shape != boundary.shape:
        raise ValueError(f"stability: norms {norms.shape} and boundary flags {boundary.shape} differ")
    return {
        "within_session": quantile_summary(norms[~boundary]),
        "session_boundary": quantile_summary(norms[boundary]),
    }
