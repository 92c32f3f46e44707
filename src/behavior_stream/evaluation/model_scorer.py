"""The trained sequence model as a `NextItemScorer` and purchase scorer for offline evaluation.

One full forward runs over context + events per sequence (batched over sequences), and the
states after each requested prefix are read off it, instead of one forward per position.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from behavior_stream.data.splits import EvalSequence
from behavior_stream.nn.checkpoint import LoadedModel
from behavior_stream.nn.features import encode_sequences


class ModelScorer:
    """Scores catalog items (and purchase probability) for prefixes of evaluation sequences."""

    def __init__(self, loaded: LoadedModel, batch_size: int = 64, max_rows: int = 512) -> None:
        if batch_size < 1 or max_rows < 1:
            raise ValueError(f"batch_size and max_rows must be >= 1, got {batch_size}, {max_rows}")
        self.model = loaded.model
        self.vocab = loaded.vocab
        self.name: str = loaded.config.cell
        self.model_version = loaded.model_version
        self.batch_size = batch_size
        self.max_rows = max_rows  # positions scored at once: bounds the (rows, n_items) matrix

    def _prefix_states(
        self, seqs: Sequence[EvalSequence], positions: Sequence[Sequence[int]]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(top (n, hidden), history (n, window), history_types (n, window)) after each prefix,
        one row per requested position, sequences in order."""
        model = self.model
        if model.training:
            raise RuntimeError("ModelScorer needs the model in eval mode (call model.eval())")
        prefix = [[len(s.context) + p for p in pos] for s, pos in zip(seqs, positions, strict=True)]
        for s, lens in zip(seqs, prefix, strict=True):
            bad = [p for p in lens if not len(s.context) <= p < len(s.context) + len(s.events)]
            if bad:
                raise ValueError(f"sequence {s.key!r}: positions outside 0..{len(s.events) - 1}")
        # Feed only the events any requested prefix needs (at least one, so the batch is not empty).
        feeds = [
            (*s.context, *s.events)[: max(max(lens, default=0), 1)]
            for s, lens in zip(seqs, prefix, strict=True)
        ]
        keep = [i for i, f in enumerate(feeds) if f]
        init = model.initial_state(1)
        h0, hist0, types0 = init.h[-1], init.history, init.history_types  # (1, hidden), (1, window) x2
        if not keep:
            n = sum(len(lens) for lens in prefix)
            return h0.expand(n, -1), hist0.expand(n, -1), types0.expand(n, -1)
        out = model(encode_sequences([feeds[i] for i in keep], self.vocab, model.config, model.categories))
        b = len(keep)
        # Index 0 is the state before any event, index L the state after L events.
        top = torch.cat([h0.expand(b, -1)[:, None], out.hidden], 1)
        hist = torch.cat([hist0.expand(b, -1)[:, None], out.history], 1)
        types = torch.cat([types0.expand(b, -1)[:, None], out.history_types], 1)
        row_of = {i: r for r, i in enumerate(keep)}
        rows = torch.tensor([row_of[i] for i, lens in enumerate(prefix) for _ in lens], dtype=torch.int64)
        steps = torch.tensor([p for lens in prefix for p in lens], dtype=torch.int64)
        return top[rows, steps], hist[rows, steps], types[rows, steps]

    def _groups(self, seqs: Sequence[EvalSequence]) -> Iterator[list[int]]:
        """Sequence indices in batches of similar length (less padding)."""
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i].context) + len(seqs[i].events))
        for s in range(0, len(order), self.batch_size):
            yield order[s : s + self.batch_size]

    @torch.inference_mode()
    def iter_scores(
        self, seqs: Sequence[EvalSequence], positions: Sequence[Sequence[int]]
    ) -> Iterator[tuple[int, np.ndarray]]:
        """(sequence index, float32 scores (len(positions[i]), n_items)) for every sequence, in
        an unspecified order; memory stays bounded by one batch."""
        for group in self._groups(seqs):
            top, hist, types = self._prefix_states([seqs[i] for i in group], [positions[i] for i in group])
            scores = np.empty((len(top), self.model.n_items), dtype=np.float32)
            for s in range(0, len(top), self.max_rows):
                part = slice(s, s + self.max_rows)
                scores[part] = self.model.score_hidden(top[part], hist[part], types[part]).numpy()
            cursor = 0
            for i in group:
                n = len(positions[i])
                yield i, scores[cursor : cursor + n]
                cursor += n

    def score_sequences(
        self, seqs: Sequence[EvalSequence], positions: Sequence[Sequence[int]]
    ) -> list[np.ndarray]:
        """Batched `score_sequence` over many sequences; results in input order."""
        out: list[np.ndarray] = [np.empty((0, self.model.n_items), np.float32)] * len(seqs)
        for i, scores in self.iter_scores(seqs, positions):
            out[i] = scores
        return out

    def score_sequence(self, seq: EvalSequence, positions: Sequence[int]) -> np.ndarray:
        """Float32 (len(positions), n_items): row j scores the item after context + events[:positions[j]]."""
        return self.score_sequences([seq], [positions])[0]

    @torch.inference_mode()
    def purchase_sequences(
        self, seqs: Sequence[EvalSequence], positions: Sequence[Sequence[int]]
    ) -> list[np.ndarray]:
        """Batched `purchase_probabilities`; results in input order."""
        out: list[np.ndarray] = [np.empty(0, np.float32)] * len(seqs)
        for group in self._groups(seqs):
            top, _, _ = self._prefix_states([seqs[i] for i in group], [positions[i] for i in group])
            probs = torch.sigmoid(self.model.purchase_logit(top)).numpy().astype(np.float32)
            cursor = 0
            for i in group:
                out[i] = probs[cursor : cursor + len(positions[i])]
                cursor += len(positions[i])
        return out

    def purchase_probabilities(self, seq: EvalSequence, positions: Sequence[int]) -> np.ndarray:
        """Float32 (len(positions),): P(events[p] is a purchase | context + events[:p]), p = positions[j]."""
        return self.purchase_sequences([seq], [positions])[0]
