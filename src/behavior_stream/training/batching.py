"""Training batches: user sequences cut into overlapping windows, bucketed by length, padded.

A user longer than `max_len` is cut into windows of `max_len` predictions. Each window re-reads
the `burn_in` events before it without counting their loss (a cheap stand-in for carrying the
hidden state across windows, which would serialize training), and starts from the real history
window, last timestamp and last session code of the events before it, so the repeat bonus and
the new-session flag see what they would see at serving time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from behavior_stream.nn.config import ModelConfig
from behavior_stream.nn.features import EncodedEvents, SequenceBatch, collate
from behavior_stream.nn.state import ModelState
from behavior_stream.schema.events import TYPE_INDEX, EventType
from behavior_stream.schema.sessions import NO_SESSION

PURCHASE = TYPE_INDEX[EventType.PURCHASE]


@dataclass(frozen=True)
class Window:
    """Events `start:stop` of sequence `seq`; predictions from position `loss_from` on count."""

    seq: int
    start: int
    stop: int
    loss_from: int


def make_windows(lengths: Sequence[int], max_len: int, burn_in: int) -> list[Window]:
    """Windows covering every next-event prediction of each sequence exactly once."""
    if max_len < 1 or burn_in < 0:
        raise ValueError(f"need max_len >= 1 and burn_in >= 0, got {max_len}, {burn_in}")
    windows = []
    for seq, n in enumerate(lengths):
        for s in range(0, n - 1, max_len):
            windows.append(Window(seq, max(0, s - burn_in), min(s + max_len + 1, n), s))
    return windows


@dataclass(frozen=True)
class TrainBatch:
    """A padded batch, its starting states, and the next-event targets of its counted positions."""

    sequences: SequenceBatch
    state: ModelState
    item_mask: Tensor  # (batch, time) bool: position predicts a catalog item
    item_targets: Tensor  # (n_item,) int64 catalog index of the next item
    purchase_mask: Tensor  # (batch, time) bool: position has a next event
    purchase_labels: Tensor  # (n_purchase,) float 1 = next event is a purchase

    @property
    def n_examples(self) -> int:
        """Next-item predictions in the batch."""
        return int(self.item_targets.shape[0])


def _start_state(
    enc: EncodedEvents, start: int, config: ModelConfig
) -> tuple[int, int, np.ndarray, np.ndarray]:
    """(last_ts, last session code, history, history_types) of a sequence just before event `start`."""
    w = config.repeat_window
    history = np.full(w, -1, np.int64)
    types = np.zeros(w, np.int64)
    lo = max(0, start - w)
    if start > lo:
        history[w - (start - lo) :] = enc.catalog[lo:start]
        types[w - (start - lo) :] = enc.types[lo:start]
    if start == 0:
        return -1, NO_SESSION, history, types
    return int(enc.ts[start - 1]), int(enc.sessions[start - 1]), history, types


def make_batch(
    encoded: Sequence[EncodedEvents], windows: Sequence[Window], config: ModelConfig
) -> TrainBatch:
    """Collate windows into one `TrainBatch`."""
    seqs = collate([(encoded[w.seq], w.start, w.stop) for w in windows])
    starts = [_start_state(encoded[w.seq], w.start, config) for w in windows]
    h = torch.zeros(config.num_layers, len(windows), config.hidden_size)
    state = ModelState(
        h=h,
        c=torch.zeros_like(h) if config.cell == "lstm" else None,
        last_ts=torch.tensor([s[0] for s in starts], dtype=torch.int64),
        last_session=torch.tensor([s[1] for s in starts], dtype=torch.int64),
        history=torch.from_numpy(np.stack([s[2] for s in starts])),
        history_types=torch.from_numpy(np.stack([s[3] for s in starts])),
    )
    b, t = seqs.ts.shape
    pos = torch.arange(t)[None, :]  # (1, time)
    loss_from = torch.tensor([w.loss_from - w.start for w in windows])[:, None]  # (batch, 1)
    counted = (pos < seqs.lengths[:, None] - 1) & (pos >= loss_from)  # (batch, time)
    next_catalog = torch.cat([seqs.catalog[:, 1:], torch.full((b, 1), -1)], 1)
    next_type = torch.cat([seqs.types[:, 1:], torch.zeros((b, 1), dtype=torch.int64)], 1)
    item_mask = counted & (next_catalog >= 0)
    return TrainBatch(
        sequences=seqs,
        state=state,
        item_mask=item_mask,
        item_targets=next_catalog[item_mask],
        purchase_mask=counted,
        purchase_labels=(next_type[counted] == PURCHASE).to(torch.float32),
    )


def iterate_batches(
    encoded: Sequence[EncodedEvents],
    windows: Sequence[Window],
    batch_size: int,
    config: ModelConfig,
    rng: np.random.Generator,
) -> Iterator[TrainBatch]:
    """One epoch of batches: windows of similar length together (little padding), random order."""
    lengths = np.array([w.stop - w.start for w in windows], dtype=np.float64)
    # +-10% jitter before sorting, so bucket membership changes between epochs.
    order = np.argsort(lengths * rng.uniform(0.9, 1.1, len(lengths)), kind="stable")
    groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for g in rng.permutation(len(groups)):
        yield make_batch(encoded, [windows[i] for i in groups[g]], config)


def target_counts(encoded: Sequence[EncodedEvents], n_items: int) -> np.ndarray:
    """(n_items,) int64: how often each catalog item is a next-item target (any event but a first)."""
    counts = np.zeros(n_items, np.int64)
    for enc in encoded:
        targets = enc.catalog[1:]
        counts += np.bincount(targets[targets >= 0], minlength=n_items)
    return counts
