"""Cart completion: items bought together with what the user carted, personalised by the model.

The bought-together table is computed from the training part when a checkpoint is trained
(`evaluation.scenarios.bought_together`: per item, its top-N partners by how many sessions had
both in the basket, i.e. carted or bought) and stored in the checkpoint's metadata as plain
lists. A cart feed blends two distributions over the catalog: the model's softmax from the
state after the cart event, and the partners' counts of the carted items (normalised);
`blend` is the table's share. The carted items themselves are never in the feed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from behavior_stream.schema.vocab import ItemVocab
from behavior_stream.stream.core.item_index import EXACT_CHUNK

METADATA_KEY = "bought_together"


@dataclass(frozen=True)
class BoughtTogether:
    """Per catalog index, its bought-together partners and counts (empty without a table)."""

    partners: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # idx -> (items, counts)

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any], vocab: ItemVocab) -> BoughtTogether:
        """The table of a checkpoint's metadata, items mapped to `vocab` (unknown ones dropped)."""
        raw = metadata.get(METADATA_KEY) or {}
        partners: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for item_id, pairs in (raw.get("pairs") or {}).items():
            idx = vocab.index(item_id)
            if idx is None:
                continue
            mapped = [(vocab.index(other), float(count)) for other, count in pairs]
            kept = [(j, c) for j, c in mapped if j is not None and j != idx]
            if kept:
                partners[idx] = (np.array([j for j, _ in kept], np.int64), np.array([c for _, c in kept]))
        return cls(partners)

    def __len__(self) -> int:
        return len(self.partners)

    def scores(self, basket: Sequence[int], n_items: int) -> np.ndarray:
        """(n_items,) summed partner counts of the basket's items (the co-purchase baseline)."""
        out = np.zeros(n_items)
        for idx in basket:
            found = self.partners.get(idx)
            if found is not None:
                np.add.at(out, found[0], found[1])
        return out


@torch.inference_mode()
def cart_scores(
    model_scores: torch.Tensor, table: BoughtTogether, baskets: Sequence[Sequence[int]], blend: float
) -> torch.Tensor:
    """(n, n_items) blended probabilities: (1 - blend) * softmax(model) + blend * table share.

    `model_scores` (n, n_items) are the model's catalog scores after the cart event; a basket
    without partners in the table keeps the model's distribution alone.
    """
    probs = torch.softmax(model_scores, dim=1)  # (n, n_items)
    if blend <= 0 or not table.partners:  # no basket can have partners: spare a catalog-wide sum per row
        return probs
    n_items = probs.shape[1]
    for row, basket in enumerate(baskets):
        counts = table.scores(basket, n_items)
        total = counts.sum()
        if total > 0 and blend > 0:
            share = torch.from_numpy(counts / total).to(probs.dtype)
            probs[row] = (1.0 - blend) * probs[row] + blend * share
    return probs


@torch.inference_mode()
def cart_rankings(
    model: Any,
    top: torch.Tensor,
    history: torch.Tensor,
    types: torch.Tensor,
    table: BoughtTogether,
    baskets: Sequence[Sequence[int]],
    excluded: Sequence[set[int]],
    k: int,
    blend: float,
) -> list[tuple[list[int], list[float]]]:
    """Top-k cart completions per user from top states (n, hidden) and history windows (n, window);
    the basket (carted items) and `excluded` are left out."""
    out: list[tuple[list[int], list[float]]] = []
    for start in range(0, top.shape[0], EXACT_CHUNK):
        sl = slice(start, start + EXACT_CHUNK)
        raw = model.score_hidden(top[sl], history[sl], types[sl])  # (chunk, n_items)
        probs = cart_scores(raw, table, baskets[sl], blend)
        for row, (basket, ex) in enumerate(zip(baskets[sl], excluded[sl], strict=True)):
            drop = sorted({*basket, *ex})
            if drop:
                probs[row, drop] = -1.0
        # One top-k over the chunk's rows (each row's is the one it would get alone).
        best = torch.topk(probs, min(k, probs.shape[1]), dim=1)
        values, indices = best.values.numpy(), best.indices.numpy()  # (chunk, k)
        for row in range(values.shape[0]):
            keep = values[row] >= 0  # dropped items (-1) only fill a short catalog
            out.append((indices[row][keep].tolist(), values[row][keep].tolist()))
    return out
