"""Top-K retrieval over the catalog: exact matrix scoring, or HNSW (faiss) for large catalogs.

The model's score is `q . e_i + b_i` plus a repeat bonus on the user's recent items. The
approximate path folds the bias into the vectors (`[q, 1] . [e_i, b_i]`), asks HNSW for a few
more candidates than K, adds the user's history items (and, with sequential rules, the followers
the rules' term lifts), and re-scores that small set exactly, so only the catalog part is
approximate.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import faiss
import numpy as np
import torch
from torch import Tensor

from behavior_stream.nn.network import SequenceModel

log = logging.getLogger(__name__)

EXACT_CHUNK = 256  # users scored per matrix product; bounds memory at 256 x n_items floats
# The graph's shape. A wider build finds more of the exact top 20 at a narrower search: on the
# core's own queries (README, "A seventh run"), build 200 / search 96 found 0.973 of a trained
# 81k-item model's exact top 20 at the cost (60 us) that build 64 / search 128 paid for 0.936,
# and 0.981 against 0.980 on the benchmark's random vectors at 0.78x the cost; building takes ~3x.
HNSW_M = 32
EF_CONSTRUCTION = 200
EF_SEARCH = 96


class ItemIndex:
    """Retrieves each user's top-K catalog items; exact below `ann_threshold` items."""

    def __init__(
        self,
        model: SequenceModel,
        ann_threshold: int,
        hnsw_m: int = HNSW_M,
        ef_search: int = EF_SEARCH,
        ef_construction: int = EF_CONSTRUCTION,
    ):
        self.model = model
        self.n_items = model.n_items
        self.approximate = 0 < ann_threshold < self.n_items
        self._hnsw: faiss.IndexHNSWFlat | None = None
        self.ef_search = ef_search
        if self.approximate:
            with torch.no_grad():
                emb = model.item_vectors()
                vecs = torch.cat([emb, model.item_bias[:, None]], 1).numpy().astype(np.float32)
            index = faiss.IndexHNSWFlat(vecs.shape[1], hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
            index.add(np.ascontiguousarray(vecs))
            index.hnsw.efSearch = ef_search
            self._hnsw = index
            log.info("built HNSW index over %d items", self.n_items)

    @staticmethod
    def extra(excluded: Sequence[set[int]]) -> int:
        """The HNSW candidates `top_k` asks beyond k by default: the most exclusions of a row, so
        every row still has k after dropping its own."""
        return max((len(e) for e in excluded), default=0)

    def top_k(
        self,
        top: Tensor,
        history: Tensor,
        types: Tensor,
        excluded: list[set[int]],
        k: int,
        extra: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Item indices and scores (n, k') of each row's best items, k' = min(k, n_items).

        `extra` (default `extra(excluded)`): HNSW candidates asked beyond k. Each row's result
        depends only on its own inputs and on `extra`, so a subset of a batch ranked with the
        batch's `extra` gets the rows the whole batch would (the stream reuses rows that way).
        """
        k = min(k, self.n_items)
        if self._hnsw is None:
            return self._exact(top, history, types, excluded, k)
        extra = self.extra(excluded) if extra is None else extra
        return self._approx(top, history, types, excluded, k, extra)

    def _exact(
        self, top: Tensor, history: Tensor, types: Tensor, excluded: list[set[int]], k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        items, scores = [], []
        for start in range(0, top.shape[0], EXACT_CHUNK):
            sl = slice(start, start + EXACT_CHUNK)
            s = self.model.score_hidden(top[sl], history[sl], types[sl])  # (chunk, n_items)
            for row, ex in enumerate(excluded[sl]):
                if ex:
                    s[row, list(ex)] = -torch.inf
            best = torch.topk(s, k, dim=1)
            items.append(best.indices.numpy())
            scores.append(best.values.numpy())
        return np.concatenate(items), np.concatenate(scores)

    def _approx(
        self, top: Tensor, history: Tensor, types: Tensor, excluded: list[set[int]], k: int, extra: int
    ) -> tuple[np.ndarray, np.ndarray]:
        assert self._hnsw is not None
        model = self.model
        q = model.item_query(top, history)  # (n, item_dim)
        want = min(self.n_items, k + extra)
        n, dim = q.shape
        q_aug = np.empty((n, dim + 1), np.float32)  # [q, 1] against [e_i, b_i]
        q_aug[:, :dim] = q.numpy()
        q_aug[:, dim] = 1.0
        _, found = self._hnsw.search(q_aug, want)  # (n, want) int64, -1 if short
        # With rules, their items come first: each is unique in its row, so the copy kept below
        # is the one whose term is known by position.
        rules = model.rules(history)
        parts = ([rules[0].numpy()] if rules is not None else []) + [found, history.numpy()]
        # Candidate bookkeeping in NumPy (integer masks, exact): cheaper than tiny torch ops.
        cand_np = np.concatenate(parts, 1)  # (n, c), c = (rules' L +) want + window
        # A candidate can appear twice (found by HNSW and in the history): keep the first copy
        # (a stable sort keeps equal items in their order; each but the first is dropped).
        order = np.argsort(cand_np, axis=1, kind="stable")
        ordered = np.take_along_axis(cand_np, order, 1)
        repeated = np.zeros(cand_np.shape, dtype=bool)
        repeated[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
        drop = np.empty_like(repeated)
        np.put_along_axis(drop, order, repeated, 1)  # back to candidate order
        drop |= cand_np < 0
        widest = self.extra(excluded)  # these rows' most exclusions: the pad width
        if widest:  # one comparison for all rows' exclusions (-2 pads: never a candidate)
            ex = np.full((n, widest), -2, np.int64)
            for row, e in enumerate(excluded):
                ex[row, : len(e)] = list(e)
            drop |= (cand_np[:, :, None] == ex[:, None, :]).any(-1)
        cand = torch.from_numpy(cand_np)
        safe = torch.from_numpy(np.maximum(cand_np, 0))
        # Without autograd this is a gather of the model's cached catalog vectors.
        emb = model.item_vectors(safe)  # (n, c, dim)
        base = torch.einsum("nd,ncd->nc", q, emb) + model.item_bias[safe]
        bonus = model.repeat_bonus(top, history, types)  # (n, window)
        base = base + ((cand[:, :, None] == history[:, None, :]) * bonus[:, None, :]).sum(-1)
        if rules is not None:
            term = np.zeros(cand_np.shape, np.float32)
            term[:, : rules[1].shape[1]] = rules[1].numpy()
            base = base + torch.from_numpy(term)
        base = base.masked_fill(torch.from_numpy(drop), -torch.inf)
        best = torch.topk(base, min(k, base.shape[1]), dim=1)
        return cand.gather(1, best.indices).numpy(), best.values.numpy()
