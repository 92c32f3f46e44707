"""Running a next-item scorer over evaluation targets: which predictions to make, batched scoring, ranks.

A target is position t >= 1 of a test sequence whose event has a catalog item; the scorer
sees context + events[:t]. Ranks are conservative (ties count against the scorer).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from behavior_stream.data.splits import EvalSequence
from behavior_stream.evaluation.metrics import conservative_ranks
from behavior_stream.evaluation.scoring import NextItemScorer
from behavior_stream.schema.sessions import SESSION_GAP_MS, session_offsets
from behavior_stream.schema.vocab import ItemVocab


@runtime_checkable
class BatchScorer(Protocol):
    """Optional batched form of `NextItemScorer.score_sequence` (the model runs one forward per batch)."""

    def iter_scores(
        self, seqs: Sequence[EvalSequence], positions: Sequence[Sequence[int]]
    ) -> Iterator[tuple[int, np.ndarray]]:
        """(index into seqs, scores (len(positions[i]), n_items)) for every sequence, any order."""
        ...


@dataclass(frozen=True)
class Targets:
    """The next-item predictions to make, independent of any scorer."""

    positions: list[list[int]]  # per sequence: positions t with a catalog target
    items: np.ndarray  # (n,) catalog index of each target, sequences concatenated
    seq_index: np.ndarray  # (n,) which sequence each prediction belongs to
    session_len: np.ndarray  # (n,) events of the current session before the target
    skipped_unseen: int


def drop_unseen_items(sequences: Sequence[EvalSequence], vocab: ItemVocab) -> tuple[list[EvalSequence], int]:
    """Remove events whose item is not in the catalog from context and test events (GRU4Rec reference)."""
    dropped = 0
    out = []
    for seq in sequences:
        parts = []
        for events in (seq.context, seq.events):
            kept = tuple(e for e in events if e.item_id is None or vocab.index(e.item_id) is not None)
            dropped += len(events) - len(kept)
            parts.append(kept)
        out.append(replace(seq, context=parts[0], events=parts[1]))
    return out, dropped


def next_item_targets(
    sequences: Sequence[EvalSequence], vocab: ItemVocab, session_gap_ms: int = SESSION_GAP_MS
) -> Targets:
    """Positions t >= 1 with an item event; catalog targets kept, others counted as skipped.

    Session positions follow `schema.sessions` with `session_gap_ms`: pass the evaluated
    model's `ModelConfig.session_gap_ms`, so the breakdown splits sessions where the model does.
    """
    positions: list[list[int]] = []
    items: list[int] = []
    seq_index: list[int] = []
    session_len: list[int] = []
    skipped = 0
    for s, seq in enumerate(sequences):
        offsets = session_offsets((*seq.context, *seq.events), session_gap_ms)
        kept = []
        for t in range(1, len(seq.events)):
            item_id = seq.events[t].item_id
            if item_id is None:
                continue
            idx = vocab.index(item_id)
            if idx is None:
                skipped += 1
                continue
            kept.append(t)
            items.append(idx)
            seq_index.append(s)
            session_len.append(offsets[len(seq.context) + t])
        positions.append(kept)
    return Targets(
        positions,
        np.asarray(items, np.int64),
        np.asarray(seq_index, np.int64),
        np.asarray(session_len, np.int64),
        skipped,
    )


@dataclass(frozen=True)
class Ranking:
    """One scorer's conservative ranks and top-K lists for all targets, and how long it took."""

    ranks: np.ndarray  # (n,) int64
    top_k: np.ndarray  # (n, max K) int64 catalog indices
    seconds: float


_Unit = tuple[int, list[int], int]  # (sequence index, positions, offset of its first target)


def _units(targets: Targets, max_positions: int) -> list[_Unit]:
    """(sequence index, positions, offset of its first target) chunks of at most `max_positions`."""
    units = []
    offset = 0
    for s, positions in enumerate(targets.positions):
        for b in range(0, len(positions), max_positions):
            units.append((s, positions[b : b + max_positions], offset + b))
        offset += len(positions)
    return units


def _unit_scores(
    scorer: NextItemScorer, sequences: Sequence[EvalSequence], units: list[_Unit]
) -> Iterator[tuple[int, np.ndarray]]:
    """(unit index, scores) pairs; through the scorer's batched `iter_scores` when it has one."""
    if isinstance(scorer, BatchScorer):
        return scorer.iter_scores([sequences[s] for s, _, _ in units], [p for _, p, _ in units])
    return ((u, scorer.score_sequence(sequences[s], p)) for u, (s, p, _) in enumerate(units))


def _groups(units: list[_Unit], max_rows: int) -> Iterator[list[_Unit]]:
    """Consecutive units with at most `max_rows` positions in total (a single larger unit stays whole)."""
    group: list[_Unit] = []
    rows = 0
    for unit in units:
        if group and rows + len(unit[1]) > max_rows:
            yield group
            group, rows = [], 0
        group.append(unit)
        rows += len(unit[1])
    if group:
        yield group


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """(n, k) int64 indices of each row's k highest scores, best first; ties at the cut broken arbitrarily."""
    # torch.topk stays fast on heavily tied rows (popularity counts), where np.argpartition degrades 10x.
    return torch.topk(torch.from_numpy(np.ascontiguousarray(scores)), k, dim=1).indices.numpy()


def rank_targets(
    scorer: NextItemScorer,
    sequences: Sequence[EvalSequence],
    targets: Targets,
    k: int,
    batch_size: int = 256,
    max_rows: int = 256,
) -> Ranking:
    """Conservative ranks and top-`k` lists (k <= n_items) of every target.

    A scorer call gets at most `batch_size` positions of one sequence; scores are gathered into
    groups of about `max_rows` positions (one batched-scorer call each) and ranked per group, so
    ranking runs on large matrices while memory stays bounded by (max_rows, n_items).
    """
    n = len(targets.items)
    ranks = np.zeros(n, np.int64)
    top_k = np.zeros((n, k), np.int64)
    start = time.perf_counter()
    for group in _groups(_units(targets, batch_size), max_rows):
        first = group[0][2]  # units of a group cover consecutive targets
        rows = slice(first, group[-1][2] + len(group[-1][1]))
        block: np.ndarray | None = None  # (rows in group, n_items)
        for u, raw in _unit_scores(scorer, sequences, group):
            _, positions, offset = group[u]
            scores = np.asarray(raw, dtype=np.float32)  # (len(positions), n_items)
            if scores.ndim != 2 or scores.shape[0] != len(positions):
                raise ValueError(f"{scorer.name}: score shape {scores.shape} for {len(positions)} positions")
            if block is None:
                block = np.empty((rows.stop - rows.start, scores.shape[1]), np.float32)
            block[offset - first : offset - first + len(positions)] = scores
        assert block is not None  # every group has at least one unit
        ranks[rows] = conservative_ranks(block, targets.items[rows])
        top_k[rows] = top_k_indices(block, k)
    return Ranking(ranks, top_k, time.perf_counter() - start)
