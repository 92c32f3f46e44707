"""Training losses: next-item softmax (full in chunks, or sampled) with the repeat bonus, and purchase BCE.

Both next-item losses score exactly what `SequenceModel.score_hidden` ranks at inference:
item query . item embedding + item bias + the summed repeat bonus of the item's history slots.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from behavior_stream.nn.network import SequenceModel


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
        logits = model.score_hidden(top_c, history_c, types_c)  # (chunk, n_items)
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
) -> Tensor:
    """Mean cross-entropy over {target, distinct history items, shared uniform negatives}.

    History items are always candidates, so the repeat bonus is trained against exactly the
    items it boosts. Negatives are sampled without replacement and their logits shifted by
    log(n_items / n_negatives), the sampled-softmax correction for a uniform proposal; a
    negative that is the target or a history item is dropped. With n_negatives >= n_items this
    is exactly the full softmax.
    """
    n_items = model.n_items
    k = min(n_negatives, n_items)
    emb, bias = model.item_emb.weight, model.item_bias
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

    negatives = torch.randperm(n_items, generator=generator)[:k].sort().values.to(top.device)  # (k,)
    neg_logit = torch.addmm(bias[negatives], query, emb[negatives].T) + math.log(n_items / k)  # (n, k)
    taken = torch.cat([targets[:, None], history], 1)  # (n, 1 + window)
    neg_logit = neg_logit.masked_fill(_member_mask(negatives, taken), float("-inf"))

    logits = torch.cat([target_logit[:, None], hist_logit, neg_logit], 1)
    return (torch.logsumexp(logits, 1) - target_logit).mean()


def purchase_loss(model: SequenceModel, top: Tensor, labels: Tensor) -> Tensor:
    """Mean BCE of P(next event is a purchase) for (n,) 0/1 labels."""
    return F.binary_cross_entropy_with_logits(model.purchase_logit(top), labels.to(top.dtype))
