"""Next-item and purchase baselines, evaluated through the same `NextItemScorer` code path as the model.

- `MostPopular`: training counts of catalog items.
- `FirstOrderMarkov`: item-to-item transition counts between consecutive item events of each
  user's training sequence (search events skipped), from the prefix's most recent catalog item.
- `SessionKNN`: SKNN (Ludewig & Jannach 2018): the current session's item set against training
  sessions, cosine similarity of item sets, the k nearest among the `sample_size` most recent
  sessions sharing an item, items scored by summed neighbor similarity.

Markov and SKNN add a popularity tie-breaker below the differences of their own score (count /
(max count + 1) < 1 on integer transition counts; 1e-6 x that on similarity sums), so items
with equal primary scores are ordered by popularity instead of tying against the baseline
(conservative ranks count ties as losses). Scores are float32, so the SKNN bonus only survives
where float32 resolution allows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from behavior_stream.data.splits import EvalSequence, group_by_user
from behavior_stream.evaluation.scoring import NextItemScorer
from behavior_stream.schema.events import Event, EventType
from behavior_stream.schema.sessions import SESSION_GAP_MS, session_offsets
from behavior_stream.schema.vocab import ItemVocab

BASELINE_NAMES: tuple[str, ...] = ("pop", "markov", "sknn")


def item_counts(events: Iterable[Event], vocab: ItemVocab) -> np.ndarray:
    """Training count of each catalog item, (n_items,) int64; events outside the catalog are ignored."""
    idx = [i for i in (vocab.index(e.item_id) for e in events) if i is not None]
    return np.bincount(np.asarray(idx, dtype=np.int64), minlength=vocab.n_items)


def popularity_tiebreak(counts: np.ndarray) -> np.ndarray:
    """Counts scaled into [0, 1) (count / (max + 1)), float64: adds below any integer score difference."""
    return counts / (float(counts.max(initial=0)) + 1.0)


class FittableScorer(NextItemScorer, Protocol):
    """A baseline: a `NextItemScorer` fitted on training events over a fixed catalog."""

    def fit(self, train: Sequence[Event], vocab: ItemVocab) -> FittableScorer:
        """Learn from training events; returns self."""
        ...


class MostPopular:
    """Scores every item by its training count, whatever the prefix."""

    name = "pop"

    def __init__(self) -> None:
        self._scores = np.zeros(0, dtype=np.float32)

    def fit(self, train: Sequence[Event], vocab: ItemVocab) -> MostPopular:
        """Count catalog items in the training events."""
        self._scores = item_counts(train, vocab).astype(np.float32)
        return self

    def score_sequence(self, seq: EvalSequence, positions: Sequence[int]) -> np.ndarray:
        """The popularity row, repeated: (len(positions), n_items)."""
        return np.tile(self._scores, (len(positions), 1))


def _last_catalog_items(seq: EvalSequence, vocab: ItemVocab) -> list[int | None]:
    """Entry t: the most recent catalog item index in context + events[:t], for t in 0..len(events)."""
    last: int | None = None
    for e in seq.context:
        last = idx if (idx := vocab.index(e.item_id)) is not None else last
    before = [last]
    for e in seq.events:
        last = idx if (idx := vocab.index(e.item_id)) is not None else last
        before.append(last)
    return before


class FirstOrderMarkov:
    """Transition counts from the previous catalog item; popularity breaks ties and covers cold starts."""

    name = "markov"

    def __init__(self) -> None:
        self._vocab = ItemVocab(())
        self._transitions = sp.csr_matrix((0, 0), dtype=np.float64)
        self._prior = np.zeros(0)

    def fit(self, train: Sequence[Event], vocab: ItemVocab) -> FirstOrderMarkov:
        """Count transitions between consecutive catalog items of each user's time-ordered sequence."""
        src: list[int] = []
        dst: list[int] = []
        for user_events in group_by_user(train).values():
            items = [i for i in (vocab.index(e.item_id) for e in user_events) if i is not None]
            src.extend(items[:-1])
            dst.extend(items[1:])
        n = vocab.n_items
        data = np.ones(len(src), dtype=np.float64)
        # Duplicate (src, dst) pairs are summed by the COO -> CSR conversion.
        self._transitions = sp.coo_matrix((data, (src, dst)), shape=(n, n)).tocsr()
        self._prior = popularity_tiebreak(item_counts(train, vocab))
        self._vocab = vocab
        return self

    def score_sequence(self, seq: EvalSequence, positions: Sequence[int]) -> np.ndarray:
        """Row j: transition counts out of the last catalog item before positions[j], plus the tie-breaker."""
        last = _last_catalog_items(seq, self._vocab)
        out = np.tile(self._prior, (len(positions), 1))  # (len(positions), n_items) float64
        ptr, cols, counts = self._transitions.indptr, self._transitions.indices, self._transitions.data
        for j, t in enumerate(positions):
            prev = last[t]
            if prev is not None:
                out[j, cols[ptr[prev] : ptr[prev + 1]]] += counts[ptr[prev] : ptr[prev + 1]]
        return out.astype(np.float32)


class SessionKNN:
    """SKNN over training sessions (split by the rule of `schema.sessions` with `gap_ms`)."""

    name = "sknn"

    def __init__(self, k: int = 100, sample_size: int = 500, gap_ms: int = SESSION_GAP_MS) -> None:
        if k < 1 or sample_size < k:
            raise ValueError(f"need 1 <= k <= sample_size, got k={k}, sample_size={sample_size}")
        self.k, self.sample_size, self.gap_ms = k, sample_size, gap_ms
        self._vocab = ItemVocab(())
        self._sessions = sp.csr_matrix((0, 0), dtype=np.float64)  # (n_sessions, n_items), 0/1
        self._item_sessions = sp.csr_matrix((0, 0), dtype=np.float64)  # (n_items, n_sessions)
        self._sizes = np.zeros(0)
        self._prior = np.zeros(0)

    def fit(self, train: Sequence[Event], vocab: ItemVocab) -> SessionKNN:
        """Index training sessions as item sets, ordered by their last event time (most recent last)."""
        sessions: list[tuple[int, list[int]]] = []  # (last ts, item indices)
        for user_events in group_by_user(train).values():
            offsets = session_offsets(user_events, self.gap_ms)
            starts = [i for i, o in enumerate(offsets) if o == 0]
            for a, b in zip(starts, [*starts[1:], len(user_events)], strict=True):
                items = {i for i in (vocab.index(e.item_id) for e in user_events[a:b]) if i is not None}
                if items:
                    sessions.append((user_events[b - 1].ts, sorted(items)))
        sessions.sort(key=lambda s: s[0])
        rows = np.repeat(np.arange(len(sessions)), [len(s[1]) for s in sessions])
        cols = np.asarray([i for s in sessions for i in s[1]], dtype=np.int64)
        matrix = sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(sessions), vocab.n_items))
        self._sessions = matrix
        self._item_sessions = matrix.T.tocsr()
        self._sizes = np.diff(matrix.indptr).astype(np.float64)
        self._prior = popularity_tiebreak(item_counts(train, vocab)) * 1e-6
        self._vocab = vocab
        return self

    def _score(self, current: np.ndarray) -> np.ndarray:
        out = self._prior.copy()  # (n_items,)
        if current.size == 0:
            return out
        ptr, ind = self._item_sessions.indptr, self._item_sessions.indices
        hits = np.concatenate([ind[ptr[i] : ptr[i + 1]] for i in current])
        candidates, overlap = np.unique(hits, return_counts=True)  # ascending = oldest first
        candidates, overlap = candidates[-self.sample_size :], overlap[-self.sample_size :]
        sims = overlap / np.sqrt(current.size * self._sizes[candidates])
        if sims.size > self.k:
            keep = np.argpartition(-sims, self.k - 1)[: self.k]
            candidates, sims = candidates[keep], sims[keep]
        out += self._sessions[candidates].T @ sims
        return out

    def score_sequence(self, seq: EvalSequence, positions: Sequence[int]) -> np.ndarray:
        """Row j: summed similarity of the k nearest sessions holding each item, plus the tie-breaker."""
        prefix = (*seq.context, *seq.events)
        offsets = session_offsets(prefix, self.gap_ms)
        catalog = [self._vocab.index(e.item_id) for e in prefix]
        out = np.empty((len(positions), self._vocab.n_items), dtype=np.float32)
        for j, t in enumerate(positions):
            end = len(seq.context) + t  # the prefix is prefix[:end]; its session is that of prefix[end - 1]
            start = end - 1 - offsets[end - 1] if end else 0
            current = {i for i in catalog[start:end] if i is not None}
            out[j] = self._score(np.fromiter(current, dtype=np.int64, count=len(current)))
        return out


def make_baseline(name: str) -> FittableScorer:
    """An unfitted baseline by name (one of `BASELINE_NAMES`)."""
    if name == "pop":
        return MostPopular()
    if name == "markov":
        return FirstOrderMarkov()
    if name == "sknn":
        return SessionKNN()
    raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINE_NAMES)}")


class PurchaseBaseRate:
    """Trivial purchase predictor: the training share of purchases among events at positions >= 1."""

    name = "base-rate"

    def __init__(self) -> None:
        self.rate = 0.0

    def fit(self, train: Sequence[Event], vocab: ItemVocab) -> PurchaseBaseRate:
        """Estimate the base rate from each user's training sequence."""
        users = group_by_user(train).values()
        labels = [e.type is EventType.PURCHASE for events in users for e in events[1:]]
        self.rate = float(np.mean(labels)) if labels else 0.0
        return self

    def purchase_probabilities(self, seq: EvalSequence, positions: Sequence[int]) -> np.ndarray:
        """The base rate at every position, float32 (len(positions),)."""
        return np.full(len(positions), self.rate, dtype=np.float32)
