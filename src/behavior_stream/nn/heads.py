"""Auxiliary heads: small linear read-outs of the top hidden state that make it carry more than the
next item.

Each head answers one question about what follows the state's last event (labels and losses in
`training/multitask.py`):

- `session_purchase`: is there a purchase among the events of the next event's session, from the
  next event on? Mid-session that is "the rest of this session"; at a session's last event it is
  "the next session", which is what the next-session purchase probe asks of the state.
- `next_type`: the next event's type (logits over `EVENT_TYPES`).
- `log_gap`: log(1 + seconds) until the next event.
- `session_rest`: log(1 + events) of the next event's session from the next event on (at a
  session's end: the next session's length).
- `next_category`: the next item's category row (`nn.features.CategoryVocab`), only for a model
  with item side data.
- `future`: a query vector (item_dim) for the items of the next `future_k` events (a dense
  multi-future objective, as PinnerFormer's), only when `ModelConfig.future_k > 0`.

Linear on purpose: the probes that judge the representation are linear, and linear heads keep the
state itself (not a head's hidden layer) holding the answer. Heads never run in `step`: they cost
nothing per event unless asked.
"""

from __future__ import annotations

from torch import Tensor, nn

from behavior_stream.schema.events import EVENT_TYPES


class AuxHeads(nn.Module):
    """The auxiliary heads over top states (n, hidden); see the module docstring."""

    def __init__(self, hidden_size: int, n_category_rows: int, future_dim: int) -> None:
        super().__init__()
        self.session_purchase_out = nn.Linear(hidden_size, 1)
        self.next_type_out = nn.Linear(hidden_size, len(EVENT_TYPES))
        self.log_gap_out = nn.Linear(hidden_size, 1)
        self.session_rest_out = nn.Linear(hidden_size, 1)
        self.next_category_out = nn.Linear(hidden_size, n_category_rows) if n_category_rows > 0 else None
        self.future_out = nn.Linear(hidden_size, future_dim) if future_dim > 0 else None

    @property
    def has_category(self) -> bool:
        """Whether the next-category head exists (the model has item side data)."""
        return self.next_category_out is not None

    @property
    def has_future(self) -> bool:
        """Whether the multi-future head exists (`ModelConfig.future_k > 0`)."""
        return self.future_out is not None

    def session_purchase(self, top: Tensor) -> Tensor:
        """Logit (n,) of a purchase in the next event's session, from the next event on."""
        return self.session_purchase_out(top).squeeze(-1)

    def next_type(self, top: Tensor) -> Tensor:
        """Logits (n, len(EVENT_TYPES)) of the next event's type."""
        return self.next_type_out(top)

    def log_gap(self, top: Tensor) -> Tensor:
        """Estimate (n,) of log(1 + seconds to the next event)."""
        return self.log_gap_out(top).squeeze(-1)

    def session_rest(self, top: Tensor) -> Tensor:
        """Estimate (n,) of log(1 + events of the next event's session from it on)."""
        return self.session_rest_out(top).squeeze(-1)

    def next_category(self, top: Tensor) -> Tensor:
        """Logits (n, category rows) of the next item's category."""
        if self.next_category_out is None:
            raise RuntimeError("this model has no item side data, so no next-category head")
        return self.next_category_out(top)

    def future(self, top: Tensor) -> Tensor:
        """Query vectors (n, item_dim) for the items of the next `future_k` events."""
        if self.future_out is None:
            raise RuntimeError("this model has no multi-future head (ModelConfig.future_k is 0)")
        return self.future_out(top)
