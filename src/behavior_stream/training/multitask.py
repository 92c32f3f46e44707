"""Labels and losses of the auxiliary heads (`nn.heads`) and of the multi-future objective.

Every label is read from the training window itself, at the positions the next-item loss counts:
a head at position p sees only what follows p, and only as far as its question reaches (the next
event, the rest of the next event's session, or the next `future_k` events). A session-level label
is known only when that session ends inside the window (a later event of the window opens a new
session); otherwise the session may go on past the window, or past the training period, and the
position is left out of that head's loss rather than given a guessed label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from behavior_stream.nn.categories import FIRST_CATEGORY
from behavior_stream.nn.features import SequenceBatch, gap_features
from behavior_stream.nn.network import SequenceModel
from behavior_stream.nn.state import ModelState
from behavior_stream.schema.events import TYPE_INDEX, EventType
from behavior_stream.training.config import TrainConfig

PURCHASE = TYPE_INDEX[EventType.PURCHASE]


@dataclass(frozen=True)
class AuxLabels:
    """Targets of the auxiliary heads; each `*_mask` is (batch, time) over positions, values are
    the masked positions' labels in row-major order."""

    counted: Tensor  # (batch, time) bool: positions with a next event whose loss counts
    next_type: Tensor  # (n_counted,) int64
    log_gap: Tensor  # (n_counted,) float: log(1 + seconds to the next event)
    session_mask: Tensor  # (batch, time) bool: counted, and the next event's session ends in the window
    session_purchase: Tensor  # (n_session,) float 0/1
    session_rest: Tensor  # (n_session,) float: log(1 + events of that session from the next event on)
    category_mask: Tensor  # (batch, time) bool: counted, and the next item has a known category
    next_category: Tensor  # (n_category,) int64 category rows
    future: Tensor  # (n_counted, future_k) int64 catalog index of event p+j, -1 when none


def _shift(x: Tensor, fill: int | float) -> Tensor:
    """x[:, p + 1] at position p (batch, time); the last position gets `fill`."""
    return torch.cat([x[:, 1:], torch.full_like(x[:, :1], fill)], 1)


def aux_labels(
    seqs: SequenceBatch, state: ModelState, counted: Tensor, model: SequenceModel, future_k: int
) -> AuxLabels:
    """Labels of the auxiliary heads for a training batch that starts from `state`."""
    b, t = seqs.ts.shape
    pos = torch.arange(t)[None, :].expand(b, t)  # (batch, time)
    valid = pos < seqs.lengths[:, None]
    prev_ts = torch.cat([state.last_ts[:, None], seqs.ts[:, :-1]], 1)
    prev_sessions = torch.cat([state.last_session[:, None], seqs.sessions[:, :-1]], 1)
    # The model's own session rule; padding repeats the last event, so it never opens a session.
    _, new = gap_features(seqs.ts, prev_ts, seqs.sessions, prev_sessions, model.config)
    seg = torch.cumsum(new.to(torch.int64), 1)  # (batch, time) session number, non-decreasing
    last_seg = seg.gather(1, (seqs.lengths - 1)[:, None])  # (batch, 1)
    next_seg = _shift(seg, -1)  # session of event p + 1
    # End (inclusive) of that session: one before the first position of a later session.
    end = torch.searchsorted(seg.contiguous(), next_seg.contiguous(), right=True) - 1
    bought = (seqs.types == PURCHASE) & valid
    first_buy = torch.where(bought, pos, torch.full_like(pos, t))
    # Earliest purchase at or after each position: a reversed running minimum.
    next_buy = torch.flip(torch.cummin(torch.flip(first_buy, [1]), 1).values, [1])
    session_mask = counted & (next_seg < last_seg)
    gap_s = (_shift(seqs.ts, 0) - seqs.ts).clamp(min=0).to(torch.float32) / 1000.0
    next_cat = _shift(seqs.categories, 0)
    category_mask = counted & (next_cat >= FIRST_CATEGORY)
    future = torch.full((b, t, future_k), -1, dtype=torch.int64)
    for j in range(1, future_k + 1):
        ahead = torch.cat([seqs.catalog[:, j:], torch.full((b, min(j, t)), -1)], 1)[:, :t]
        future[:, :, j - 1] = torch.where(pos + j < seqs.lengths[:, None], ahead, -1)
    return AuxLabels(
        counted=counted,
        next_type=_shift(seqs.types, 0)[counted],
        log_gap=torch.log1p(gap_s)[counted],
        session_mask=session_mask,
        session_purchase=(_shift(next_buy, t) <= end)[session_mask].to(torch.float32),
        session_rest=torch.log1p((end - pos).to(torch.float32))[session_mask],
        category_mask=category_mask,
        next_category=next_cat[category_mask],
        future=future[counted],
    )


def future_loss(
    model: SequenceModel, top: Tensor, targets: Tensor, cfg: TrainConfig, gen: torch.Generator
) -> Tensor:
    """Mean cross-entropy of each of the next `future_k` items (targets (n, k), -1 = none) under one
    softmax per position over the catalog (or, above `full_softmax_max_items`, over the batch's
    targets plus shared uniform negatives): a dense all-action objective."""
    assert model.heads is not None
    ok = targets >= 0
    if not bool(ok.any()):
        return top.new_zeros(())
    query = model.heads.future(top)  # (n, item_dim)
    emb, bias = model.item_vectors(), model.item_bias
    if model.n_items <= cfg.full_softmax_max_items:
        total = top.new_zeros(())
        for s in range(0, len(top), cfg.softmax_chunk):
            part = slice(s, s + cfg.softmax_chunk)
            logp = torch.log_softmax(torch.addmm(bias, query[part], emb.T), 1)  # (chunk, n_items)
            picked = logp.gather(1, targets[part].clamp(min=0))  # (chunk, k)
            total = total - (picked * ok[part]).sum()
        return total / ok.sum()
    k = min(cfg.n_negatives, model.n_items)
    negatives = torch.randperm(model.n_items, generator=gen)[:k]
    cand = torch.unique(torch.cat([targets[ok], negatives]))  # (m,) sorted
    logits = torch.addmm(bias[cand], query, emb[cand].T)  # (n, m)
    # Sampled candidates stand for the whole catalog: shift by the log of the share left out.
    logits = logits + math.log(model.n_items / len(cand))
    where = torch.searchsorted(cand, targets.clamp(min=0))  # (n, k) column of each target
    picked = torch.log_softmax(logits, 1).gather(1, where)
    return -(picked * ok).sum() / ok.sum()


def aux_losses(
    model: SequenceModel, hidden: Tensor, labels: AuxLabels, cfg: TrainConfig, gen: torch.Generator
) -> dict[str, Tensor]:
    """Each auxiliary head's mean loss on `hidden` (batch, time, hidden); {} for a model without heads."""
    heads = model.heads
    if heads is None:
        return {}
    zero = hidden.new_zeros(())
    top = hidden[labels.counted]  # (n_counted, hidden)
    out = {
        "next_type": F.cross_entropy(heads.next_type(top), labels.next_type) if len(top) else zero,
        "log_gap": F.smooth_l1_loss(heads.log_gap(top), labels.log_gap) if len(top) else zero,
    }
    session_top = hidden[labels.session_mask]
    if len(session_top):
        out["session_purchase"] = F.binary_cross_entropy_with_logits(
            heads.session_purchase(session_top), labels.session_purchase
        )
        out["session_rest"] = F.smooth_l1_loss(heads.session_rest(session_top), labels.session_rest)
    else:
        out["session_purchase"] = out["session_rest"] = zero
    if heads.has_category:
        cat_top = hidden[labels.category_mask]
        out["next_category"] = (
            F.cross_entropy(heads.next_category(cat_top), labels.next_category) if len(cat_top) else zero
        )
    if heads.has_future:
        out["future"] = future_loss(model, top, labels.future, cfg, gen)
    return out


def weighted_aux_loss(losses: dict[str, Tensor], cfg: TrainConfig) -> Tensor | None:
    """The auxiliary losses' weighted sum (`TrainConfig.<name>_weight`), None when there are none."""
    if not losses:
        return None
    weights = {
        "session_purchase": cfg.session_purchase_weight,
        "next_type": cfg.next_type_weight,
        "log_gap": cfg.log_gap_weight,
        "session_rest": cfg.session_rest_weight,
        "next_category": cfg.next_category_weight,
        "future": cfg.future_weight,
    }
    return torch.stack([weights[name] * loss for name, loss in losses.items()]).sum()
