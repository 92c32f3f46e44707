"""User representations of a checkpoint on the probe users, and the `probes` section of metrics.json.

The section gathers the linear probes (`model.probes`), the geometry of the end-of-prefix vectors
and their stability along each prefix (`model.geometry`). Positive pairs for alignment are two
views of one user: the representation after the first half of the prefix and after the second
half, each run from a fresh state, so they share no events, only the user.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from behavior_stream.evaluation import geometry as G
from behavior_stream.evaluation.probe_scores import probe_metrics
from behavior_stream.evaluation.probes import (
    PROTOCOL,
    ProbeConfig,
    ProbeExample,
    ProbePredictions,
    fit_probes,
    probe_examples,
)
from behavior_stream.nn.checkpoint import LoadedModel
from behavior_stream.nn.features import encode_sequences
from behavior_stream.schema.events import Event
from behavior_stream.schema.sessions import is_new_session

GEOMETRY_PROTOCOL = {
    "geometry": "on the end-of-prefix vectors; alignment/uniformity (t=2) on L2-normalised vectors, "
    "positives = representations of the first and second half of the prefix (each from a fresh state); "
    "effective rank of the centred matrix; k-NN agreement = tie-aware overlap@k of cosine neighbours with "
    "history item-set Jaccard neighbours (users sharing no item with anyone excluded); chance = random "
    "vectors",
    "stability": "||h_t - h_(t-1)|| of the top-layer state along each prefix, split by whether event t "
    "opens a new session; the step from the empty state is not counted",
}


@torch.inference_mode()
def hidden_states(
    loaded: LoadedModel, seqs: Sequence[Sequence[Event]], batch_size: int = 64
) -> list[np.ndarray]:
    """Top-layer states (len(seq), hidden) after each event of each non-empty sequence, from fresh states."""
    model = loaded.model
    if model.training:
        raise RuntimeError("hidden_states needs the model in eval mode (call model.eval())")
    out: list[np.ndarray] = [np.empty(0)] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))  # similar lengths batch with less padding
    for s in range(0, len(order), batch_size):
        group = order[s : s + batch_size]
        batch = encode_sequences([seqs[i] for i in group], loaded.vocab, model.config, model.categories)
        hidden = model(batch).hidden.numpy()  # (batch, time, hidden)
        for row, i in enumerate(group):
            out[i] = hidden[row, : len(seqs[i])].astype(np.float64)
    return out


@dataclass(frozen=True)
class UserStates:
    """What the geometry and stability metrics need from one model, per probe user."""

    final: np.ndarray  # (n, hidden) after each user's prefix
    view_a: np.ndarray  # (m, hidden) after the first half of the prefix
    view_b: np.ndarray  # (m, hidden) after the second half
    view_rows: np.ndarray  # (m,) int64 users with >= 2 prefix events
    steps: np.ndarray  # (s,) step sizes along all prefixes
    boundary: np.ndarray  # (s,) bool: the step's event opens a session
    step_user: np.ndarray  # (s,) int64 user of each step


def user_states(loaded: LoadedModel, examples: Sequence[ProbeExample], batch_size: int = 64) -> UserStates:
    """Run the model over every prefix (and its two halves) of the probe users."""
    gap = loaded.config.session_gap_ms
    prefixes = [e.prefix for e in examples]
    states = hidden_states(loaded, prefixes, batch_size)
    rows = np.array([i for i, p in enumerate(prefixes) if len(p) >= 2], dtype=np.int64)
    halves = [prefixes[i][: len(prefixes[i]) // 2] for i in rows] + [
        prefixes[i][len(prefixes[i]) // 2 :] for i in rows
    ]
    ends = [h[-1] for h in hidden_states(loaded, halves, batch_size)]
    hidden = states[0].shape[1] if states else loaded.config.hidden_size

    def stack(rows_: list[np.ndarray]) -> np.ndarray:
        return np.stack(rows_) if rows_ else np.zeros((0, hidden))

    steps = [G.step_norms(h) for h in states]
    flags = [
        np.array([is_new_session(p[t - 1], p[t], gap) for t in range(1, len(p))], dtype=bool)
        for p in prefixes
    ]
    return UserStates(
        final=stack([h[-1] for h in states]),
        view_a=stack(ends[: len(rows)]),
        view_b=stack(ends[len(rows) :]),
        view_rows=rows,
        steps=np.concatenate([np.zeros(0), *steps]),
        boundary=np.concatenate([np.zeros(0, dtype=bool), *flags]),
        step_user=np.repeat(np.arange(len(steps), dtype=np.int64), [len(s) for s in steps]),
    )


@dataclass(frozen=True)
class Assessment:
    """The `probes` section plus the per-user values behind it (for paired comparisons)."""

    section: dict[str, Any]
    probes: ProbePredictions
    states: UserStates
    alignment: np.ndarray  # (m,) squared distance of each user's two views
    knn: np.ndarray  # (n,) k-NN agreement per user, NaN where undefined


def assess(
    loaded: LoadedModel, examples: Sequence[ProbeExample], cfg: ProbeConfig | None = None, knn_k: int = 10
) -> Assessment:
    """Probes, geometry and stability of one model's representations of the probe users."""
    cfg = cfg or ProbeConfig()
    states = user_states(loaded, examples)
    probes = fit_probes(states.final, examples, cfg)
    aligned = G.alignment_per_pair(states.view_a, states.view_b) if len(states.view_rows) else np.zeros(0)
    rng = np.random.default_rng(cfg.seed)
    perm = rng.permutation(len(states.view_rows))
    item_sets = [frozenset(e.item_id for e in ex.prefix if e.item_id is not None) for ex in examples]
    k = min(knn_k, len(examples) - 1)
    knn = G.knn_agreement_per_user(states.final, item_sets, k)
    geometry: dict[str, Any] = {
        "users": len(examples),
        "alignment": float(aligned.mean()) if aligned.size else float("nan"),
        # The same distance between views of two different users: what "no alignment" looks like.
        "alignment_other_user": G.alignment(states.view_a[perm], states.view_b[np.roll(perm, -1)])
        if len(perm) >= 2
        else float("nan"),
        "alignment_users": len(states.view_rows),
        "uniformity": G.uniformity(states.final),
        "effective_rank": G.effective_rank(states.final),
        "hidden_size": int(states.final.shape[1]),
        f"knn_agreement@{k}": float(np.nanmean(knn)) if np.isfinite(knn).any() else float("nan"),
        f"knn_chance@{k}": G.knn_chance(item_sets, k),
        "knn_users": int(np.isfinite(knn).sum()),
    }
    stability: dict[str, Any] = {
        **G.stability(states.steps, states.boundary),
        "mean_norm": float(np.linalg.norm(states.final, axis=1).mean()),
    }
    section = {
        "protocol": {
            **PROTOCOL,
            **GEOMETRY_PROTOCOL,
            "seed": cfg.seed,
            "n_bootstrap": cfg.n_bootstrap,
            "min_class_count": cfg.min_class_count,
        },
        **probe_metrics(probes, cfg.top_k, cfg),
        "geometry": geometry,
        "stability": stability,
    }
    return Assessment(section, probes, states, aligned, knn)


def probe_section(
    loaded: LoadedModel,
    history: Sequence[Event],
    test: Sequence[Event],
    categories: dict[str, str],
    cfg: ProbeConfig | None = None,
    knn_k: int = 10,
) -> dict[str, Any]:
    """The `probes` section of metrics.json for one checkpoint on a history/test split."""
    examples = probe_examples(history, test, categories, loaded.config.session_gap_ms)
    if len(examples) < 4:
        return {
            "protocol": PROTOCOL,
            "skipped": f"only {len(examples)} users have history and a test session",
        }
    return assess(loaded, examples, cfg, knn_k).section
