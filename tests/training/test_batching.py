"""Tests for training windows and batches: coverage, burn-in, start states and targets."""

from __future__ import annotations

import numpy as np
import pytest

from behavior_stream.nn.features import encode_arrays
from behavior_stream.training.batching import (
    PURCHASE,
    iterate_batches,
    make_batch,
    make_windows,
    target_counts,
)
from tests.seqkit import sequences, small_config, tiny_vocab


def test_windows_cover_each_prediction_once() -> None:
    lengths = [1, 2, 7, 23]
    windows = make_windows(lengths, max_len=5, burn_in=3)
    counted: dict[int, list[int]] = {}
    for w in windows:
        assert 0 <= w.start <= w.loss_from and w.loss_from - w.start <= 3 and w.stop <= lengths[w.seq]
        assert w.stop - 1 - w.loss_from <= 5
        counted.setdefault(w.seq, []).extend(range(w.loss_from, w.stop - 1))
    for seq, n in enumerate(lengths):
        assert sorted(counted.get(seq, [])) == list(range(n - 1))


def test_batch_targets_and_start_states() -> None:
    vocab, config = tiny_vocab(), small_config(repeat_window=4)
    seqs = sequences((14, 9))
    encoded = [encode_arrays(s, vocab, config) for s in seqs]
    windows = make_windows([len(e) for e in encoded], max_len=6, burn_in=2)
    batch = make_batch(encoded, windows, config)
    expected_targets, expected_labels = [], []
    for row, w in enumerate(windows):
        enc = encoded[w.seq]
        # The window starts from the real history before it.
        hist = batch.state.history[row].tolist()
        before = enc.catalog[max(0, w.start - 4) : w.start].tolist()
        assert hist == [-1] * (4 - len(before)) + before
        assert int(batch.state.last_ts[row]) == (int(enc.ts[w.start - 1]) if w.start else -1)
        for t in range(w.loss_from, w.stop - 1):
            assert bool(batch.purchase_mask[row, t - w.start])
            expected_labels.append(float(enc.types[t + 1] == PURCHASE))
            if enc.catalog[t + 1] >= 0:
                expected_targets.append(int(enc.catalog[t + 1]))
        assert int(batch.purchase_mask[row].sum()) == w.stop - 1 - w.loss_from
    assert batch.item_targets.tolist() == expected_targets
    assert batch.purchase_labels.tolist() == expected_labels
    assert batch.n_examples == len(expected_targets)


def test_epoch_visits_every_window_once() -> None:
    vocab, config = tiny_vocab(), small_config()
    encoded = [encode_arrays(s, vocab, config) for s in sequences((14, 9, 1, 5, 3, 12))]
    windows = make_windows([len(e) for e in encoded], max_len=4, burn_in=1)
    batches = list(iterate_batches(encoded, windows, 3, config, np.random.default_rng(0)))
    assert sum(int(b.purchase_mask.sum()) for b in batches) == sum(len(e) - 1 for e in encoded)
    assert all(len(b.sequences.lengths) <= 3 for b in batches)


def test_target_counts_are_the_next_item_targets_of_an_epoch() -> None:
    """The popularity the sampled softmax draws by: every catalog target of the batches, counted."""
    vocab, config = tiny_vocab(), small_config()
    encoded = [encode_arrays(s, vocab, config) for s in sequences((14, 9, 1, 5, 3, 12))]
    windows = make_windows([len(e) for e in encoded], max_len=4, burn_in=1)
    batches = iterate_batches(encoded, windows, 3, config, np.random.default_rng(0))
    targets = np.concatenate([b.item_targets.numpy() for b in batches])
    counts = target_counts(encoded, vocab.n_items)
    assert counts.shape == (vocab.n_items,) and counts.sum() == len(targets) > 0
    assert counts.tolist() == np.bincount(targets, minlength=vocab.n_items).tolist()


def test_rejects_bad_window_settings() -> None:
    with pytest.raises(ValueError, match="max_len"):
        make_windows([3], max_len=0, burn_in=0)
