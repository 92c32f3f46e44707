"""Training losses: next-item softmax (full in chunks, or sampled) with the repeat bonus, and purchase BCE.

Both next-item losses score exactly what `SequenceModel.score_hidden` ranks at inference:
item query . item embedding + item bias + the summed repeat bonus of the item's history slots,
without the fixed sequential-rules term (`nn.rules`: fitted on these very transitions, so the
network would learn to lean on rules that count its own targets).
The sampled one draws its negatives uniformly or by popularity (count ** alpha, as GRU4Rec's
`sample_alpha`) and corrects their logits by log(expected draws) (logQ), so with many samples it
approaches the exact softmax (tests/training/test_objective.py measures how close).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from behavior_stream.nn.network import SequenceModel
from behavior_stream.training.config import TrainConfig


def full_softmax_loss(
    model: SequenceModel,
    top: Tensor,
    history: Tensor,
    types: Tensor,
    targets: Tensor,
    chunk: int,
    max_elements: int = 1 << 24,
) -> Tensor:
    """Mean cross-entropy over the whole catalog for (n,) targets, computed `chunk` rows at a time.

    Chunks keep the (chunk, n_items) logits in cache. When all chunks' logits together would
    exceed `max_elements`, each chunk is also checkpointed (recomputed in the backward pass), so
    only one chunk's logits are alive at a time.
    """

    def chunk_loss(top_c: Tensor, history_c: Tensor, types_c: Tensor, targets_c: Tensor) -> Tensor:
        logits = model.score_hidden(top_c, history_c, types_c, with_rules=False)  # (chunk, n_items)
        return F.cross_entropy(logits, targets_c, reduction="sum")

    recompute = torch.is_grad_enabled() and len(targets) * model.n_items > max_elements
    total = top.new_zeros(())
    for s in range(0, len(targets), chunk):
        part = slice(s, s + chunk)
        args = (top[part], history[part], types[part], targets[part])
        if recompute:
            total = total + checkpoint(chunk_loss, *args, use_reentrant=False)
        else:
            total = total + chunk_loss(*args)
    return total / max(len(targets), 1)


def _member_mask(sorted_ids: Tensor, values: Tensor) -> Tensor:
    """(n, k) bool: sorted_ids[j] occurs in row i of values (n, m); negative values never match."""
    k = sorted_ids.shape[0]
    pos = torch.searchsorted(sorted_ids, values).clamp(max=k - 1)  # (n, m)
    found = (sorted_ids[pos] == values).to(torch.float32)
    # scatter_add, not scatter: two values can share an insertion point and only one may match.
    hits = torch.zeros(values.shape[0], k, device=values.device).scatter_add_(1, pos, found)
    return hits > 0


def sampled_softmax_loss(
    model: SequenceModel,
    top: Tensor,
    history: Tensor,
    types: Tensor,
    targets: Tensor,
    n_negatives: int,
    generator: torch.Generator,
    log_q: Tensor | None = None,
) -> Tensor:
    """Mean cross-entropy over {target, distinct history items, shared sampled negatives}.

    History items are always candidates, so the repeat bonus is trained against exactly the
    items it boosts; a negative that is the target or a history item is dropped, so the
    negatives estimate the softmax mass of the other items. Without `log_q`, negatives are
    drawn uniformly without replacement and their logits shifted by -log(n_negatives / n_items);
    with n_negatives >= n_items this is exactly the full softmax. With `log_q` (n_items,) the
    log-probabilities of a proposal (`popularity_log_q`), `n_negatives` draws are made with
    replacement and a negative drawn c times gets logit + log(c) - log(n_negatives * q): the
    importance-sampling (logQ) correction, which makes the sum of exp(logits) an unbiased
    estimate of the full softmax's denominator.
    """
    n_items = model.n_items
    k = min(n_negatives, n_items)
    emb, bias = model.item_vectors(), model.item_bias
    query = model.item_query(top, history)  # (n, item_dim)
    bonus = model.repeat_bonus(top, history, types)  # (n, window)

    target_logit = (query * emb[targets]).sum(-1) + bias[targets]
    target_logit = target_logit + (bonus * (history == targets[:, None])).sum(-1)  # (n,)

    w = history.shape[1]
    same = history[:, :, None] == history[:, None, :]  # (n, window, window)
    item_bonus = (same.to(bonus.dtype) @ bonus[..., None]).squeeze(-1)  # (n, window) total per item
    later = torch.ones(w, w, dtype=torch.bool, device=history.device).triu(1)
    # Keep one slot per distinct item (its most recent), drop empty slots and the target.
    keep = (history >= 0) & ~(same & later).any(-1) & (history != targets[:, None])
    hist_idx = history.clamp(min=0)
    hist_logit = (query[:, None, :] * emb[hist_idx]).sum(-1) + bias[hist_idx] + item_bonus
    hist_logit = hist_logit.masked_fill(~keep, float("-inf"))  # (n, window)

    if log_q is None:
        negatives = torch.randperm(n_items, generator=generator)[:k].sort().values.to(top.device)  # (k,)
        shift: Tensor | float = math.log(n_items / k)
    else:
        draws = torch.multinomial(log_q.exp(), n_negatives, replacement=True, generator=generator)
        # Sorted distinct items with their draw counts: _member_mask needs unique sorted ids.
        negatives, times = torch.unique(draws, sorted=True, return_counts=True)
        shift = (times.to(log_q.dtype).log() - math.log(n_negatives) - log_q[negatives]).to(top.device)
        negatives = negatives.to(top.device)
    neg_logit = torch.addmm(bias[negatives], query, emb[negatives].T) + shift  # (n, k distinct)
    taken = torch.cat([targets[:, None], history], 1)  # (n, 1 + window)
    neg_logit = neg_logit.masked_fill(_member_mask(negatives, taken), float("-inf"))

    logits = torch.cat([target_logit[:, None], hist_logit, neg_logit], 1)
    return (torch.logsumexp(logits, 1) - target_logit).mean()


def purchase_loss(model: SequenceModel, top: Tensor, labels: Tensor) -> Tensor:
    """Mean BCE of P(next event is a purchase) for (n,) 0/1 labels."""
    return F.binary_cross_entropy_with_logits(model.purchase_logit(top), labels.to(top.dtype))


def popularity_log_q(counts: Sequence[int] | np.ndarray, alpha: float) -> Tensor:
    """Log-probabilities (n_items,) of drawing each item: (count + 1) ** alpha, normalised.

    The +1 keeps every catalog item drawable (an item the estimator can never draw would be
    missing from the softmax's denominator); alpha 0 is uniform, 1 proportional to popularity.
    """
    weights = np.power(np.asarray(counts, dtype=np.float64) + 1.0, alpha)
    return torch.from_numpy(np.log(weights / weights.sum())).to(torch.float32)


@dataclass(frozen=True, eq=False)
class NextItemLoss:
    """The next-item loss `TrainConfig` asks for: exact softmax, or sampled (uniform or by popularity)."""

    sampled: bool
    n_negatives: int
    chunk: int
    log_q: Tensor | None  # (n_items,) proposal of popularity sampling, None = uniform

    @classmethod
    def build(cls, cfg: TrainConfig, target_counts: np.ndarray) -> NextItemLoss:
        """From `cfg` and how often each catalog item (n_items,) is a training target."""
        n_items = len(target_counts)
        auto = "full" if n_items <= cfg.full_softmax_max_items else "sampled"
        sampled = (auto if cfg.item_softmax == "auto" else cfg.item_softmax) == "sampled"
        log_q = popularity_log_q(target_counts, cfg.sample_alpha) if cfg.negatives == "popularity" else None
        return cls(sampled, cfg.n_negatives, cfg.softmax_chunk, log_q)

    def __call__(
        self,
        model: SequenceModel,
        top: Tensor,
        history: Tensor,
        types: Tensor,
        targets: Tensor,
        generator: torch.Generator,
    ) -> Tensor:
        """Mean next-item cross-entropy of (n,) targets from top states (n, hidden)."""
        if not self.sampled:
            return full_softmax_loss(model, top, history, types, targets, self.chunk)
        return sampled_softmax_loss(
            model, top, history, types, targets, self.n_negatives, generator, self.log_q
        )
