"""The model's explicit per-user state, and what a full-sequence forward returns.

The state is everything `SequenceModel.step` needs to continue a user's sequence exactly as
`forward` would have: the recurrent state, the last event's time and session code (for the gap
and new-session inputs) and the history window (for the repeat bonus and the rules). The stream
stores it per user (stream/core/state.py encodes it), so it is kept small and explicit, as in
GRU4Rec, rather than hidden inside the module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class ModelState:
    """Per-user recurrent state, batch-first where it applies."""

    h: Tensor  # (layers, batch, hidden)
    c: Tensor | None  # (layers, batch, hidden) for LSTM, None for GRU
    last_ts: Tensor  # (batch,) int64 ms of the last event, -1 = no event yet
    last_session: Tensor  # (batch,) int64 session code of the last event, 0 = no id (or no event)
    history: Tensor  # (batch, repeat_window) int64 catalog indices, -1 = empty; most recent last
    history_types: Tensor  # (batch, repeat_window) int64 type index of those events

    def __len__(self) -> int:
        return int(self.last_ts.shape[0])

    def select(self, idx: Tensor) -> ModelState:
        """The rows `idx` (an index or boolean tensor over the batch)."""
        return ModelState(
            h=self.h[:, idx],
            c=None if self.c is None else self.c[:, idx],
            last_ts=self.last_ts[idx],
            last_session=self.last_session[idx],
            history=self.history[idx],
            history_types=self.history_types[idx],
        )

    @staticmethod
    def cat(states: Sequence[ModelState]) -> ModelState:
        """Concatenate states along the batch."""
        if not states:
            raise ValueError("ModelState.cat needs at least one state")
        cs = [s.c for s in states]
        if any(c is None for c in cs) and not all(c is None for c in cs):
            raise ValueError("cannot concatenate GRU (c=None) and LSTM states")
        return ModelState(
            h=torch.cat([s.h for s in states], 1),
            c=None if cs[0] is None else torch.cat([c for c in cs if c is not None], 1),
            last_ts=torch.cat([s.last_ts for s in states]),
            last_session=torch.cat([s.last_session for s in states]),
            history=torch.cat([s.history for s in states]),
            history_types=torch.cat([s.history_types for s in states]),
        )


@dataclass(frozen=True)
class SequenceOutput:
    """Result of a full-sequence forward; position t is the state after event t."""

    hidden: Tensor  # (batch, time, hidden) top-layer states
    history: Tensor  # (batch, time, repeat_window) history window after event t
    history_types: Tensor  # (batch, time, repeat_window)
    state: ModelState | None  # state after each row's last real event, when requested
