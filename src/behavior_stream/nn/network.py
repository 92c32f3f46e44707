"""The GRU/LSTM user-sequence model with an incremental `step` that matches its full forward.

Each event is embedded as [item | event type | search query bag | time-gap bucket | new-session
flag | item category (with side data: `nn.features.CategoryVocab`, so an item outside the item
vocabulary still brings its category)] and fed to a recurrent cell. Auxiliary heads
(`nn.heads`) shape the state during training; they never run in `step`.

Session handling: the hidden state is never reset, so it is a long-term representation of the user
across sessions; the log-scaled gap since the previous event and the new-session flag
(`schema.sessions`' rule with `session_gap_ms`: a gap, or a session id change) are inputs, so the
network itself learns how much of the state to forget after a pause. The state keeps the last
event's time and session code, so `step` computes the same flag as `forward`.

Next-item scores (nn/scoring.py) are a query from the top-layer state against the items'
output vectors, plus an item bias, a repeat bonus over the user's recent items and, with
`rules_weight`, a sequential-rules term. The history window they read is part of the
`ModelState` (nn/state.py), so the streaming step and the batch forward score identically.

`step` runs the recurrent cell through the fused one-step ops (`_cell_step`), `forward` through
the module over whole sequences; both read the same weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from behavior_stream.nn.categories import CategoryVocab
from behavior_stream.nn.config import ModelConfig
from behavior_stream.nn.features import EventBatch, SequenceBatch, gap_features
from behavior_stream.nn.heads import AuxHeads
from behavior_stream.nn.scoring import CatalogScoring, RepeatBonus
from behavior_stream.nn.state import ModelState, SequenceOutput
from behavior_stream.schema.events import EVENT_TYPES


class SequenceModel(CatalogScoring, nn.Module):
    """Recurrent next-item model over behavior events; see the module docstring. Its scoring
    methods (`score_hidden`, `item_query`, `item_vectors`, `rules`, ...) are in nn/scoring.py."""

    def __init__(
        self,
        config: ModelConfig,
        n_items: int,
        n_inputs: int,
        categories: CategoryVocab | None = None,
        catalog: Sequence[str] | None = None,
    ) -> None:
        """`catalog`: the item ids in catalog order (`ItemVocab.items`); needed with `categories`
        when `config.category_output` is on, to know each catalog item's category."""
        super().__init__()
        if n_items < 1 or n_inputs <= n_items:
            raise ValueError(f"need n_items >= 1 and n_inputs > n_items, got {n_items}, {n_inputs}")
        self.config, self.n_items, self.n_inputs = config, n_items, n_inputs
        # Item side data: encode batches for this model with `categories=model.categories`.
        self.categories = categories if config.category_dim > 0 else None
        self.item_emb = nn.Embedding(n_inputs, config.item_dim)
        nn.init.normal_(self.item_emb.weight, std=0.05)
        self.type_emb = nn.Embedding(len(EVENT_TYPES), config.type_dim)
        self.query_emb = nn.EmbeddingBag(config.query_buckets, config.query_dim, mode="mean")
        self.gap_emb = nn.Embedding(config.n_gap_buckets, config.gap_dim)
        self.dropout = nn.Dropout(config.dropout)
        in_dim = config.item_dim + config.type_dim + config.query_dim + config.gap_dim + 1
        in_dim += config.category_dim if self.categories is not None else 0
        rnn_cls = nn.GRU if config.cell == "gru" else nn.LSTM
        self.rnn = rnn_cls(
            in_dim,
            config.hidden_size,
            config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.out_proj = nn.Linear(config.hidden_size, config.item_dim)
        # Last-item shortcut, identity at start: "items like the one just seen" from the first
        # step, so the recurrent path only has to learn the rest (it speeds up training ~1.5x).
        self.last_item = nn.Linear(config.item_dim, config.item_dim, bias=False)
        nn.init.eye_(self.last_item.weight)
        self.item_bias = nn.Parameter(torch.zeros(n_items))
        self.repeat = RepeatBonus(config)
        self.purchase_head = nn.Sequential(
            nn.Linear(config.hidden_size, config.hidden_size), nn.ReLU(), nn.Linear(config.hidden_size, 1)
        )
        # Created last: with category_dim 0 and no heads, a model initialises exactly as before them.
        n_rows = self.categories.n_rows if self.categories is not None else 0
        self.category_emb = nn.Embedding(n_rows, config.category_dim, padding_idx=0) if n_rows else None
        self.heads = (
            AuxHeads(config.hidden_size, n_rows, config.item_dim if config.future_k else 0)
            if config.aux_heads
            else None
        )
        self.category_out: nn.Linear | None = None
        self._vectors: Tensor | None = None
        self._vectors_key: tuple[tuple[int, int], ...] | None = None
        if self.categories is not None and config.category_output:
            if catalog is None or len(catalog) != n_items:
                raise ValueError("category_output needs the catalog's item ids (catalog=vocab.items)")
            # Small at start, so item identity leads and the category term grows as it earns its place.
            self.category_out = nn.Linear(config.category_dim, config.item_dim, bias=False)
            nn.init.normal_(self.category_out.weight, std=0.02)
            rows = [self.categories.index(item) for item in catalog]
            # Derived from the categories and the catalog, both in the checkpoint: not a weight.
            self.register_buffer("item_category", torch.tensor(rows, dtype=torch.int64), persistent=False)
        if config.rules_weight > 0:
            # Fitted on the training split (`set_rules`), saved with the weights: not learned.
            shape = (n_items, config.rules_neighbours)
            self.register_buffer("rule_followers", torch.full(shape, -1, dtype=torch.int64))
            self.register_buffer("rule_weights", torch.zeros(shape, dtype=torch.float32))

    # -- state ---------------------------------------------------------------------------------
    def initial_state(self, n: int) -> ModelState:
        """The state of `n` users with no events yet."""
        cfg = self.config
        device = self.item_bias.device
        h = torch.zeros(cfg.num_layers, n, cfg.hidden_size, device=device)
        return ModelState(
            h=h,
            c=torch.zeros_like(h) if cfg.cell == "lstm" else None,
            last_ts=torch.full((n,), -1, dtype=torch.int64, device=device),
            last_session=torch.zeros((n,), dtype=torch.int64, device=device),
            history=torch.full((n, cfg.repeat_window), -1, dtype=torch.int64, device=device),
            history_types=torch.zeros((n, cfg.repeat_window), dtype=torch.int64, device=device),
        )

    def _embed(
        self,
        items: Tensor,
        types: Tensor,
        query_ids: Tensor,
        query_offsets: Tensor,
        ts: Tensor,
        prev_ts: Tensor,
        sessions: Tensor,
        prev_sessions: Tensor,
        categories: Tensor,
    ) -> Tensor:
        """RNN inputs (batch, time, in_dim) for (batch, time) event fields."""
        b, t = ts.shape
        bucket, new_session = gap_features(ts, prev_ts, sessions, prev_sessions, self.config)
        if query_ids.numel():
            query = self.query_emb(query_ids, query_offsets).view(b, t, -1)  # (batch, time, query_dim)
        else:
            # No search in the batch: every bag is empty and embeds as zeros; EmbeddingBag's
            # fixed cost (~0.15 ms on CPU) is most of a one-event step's embedding time.
            query = self.item_emb.weight.new_zeros(b, t, self.config.query_dim)
        parts = [self.item_emb(items), self.type_emb(types), query, self.gap_emb(bucket)]
        parts.append(new_session[..., None])
        if self.category_emb is not None:
            parts.append(self.category_emb(categories))  # (batch, time, category_dim)
        return self.dropout(torch.cat(parts, -1))

    def _run(self, x: Tensor | PackedSequence, state: ModelState) -> tuple[Any, Tensor, Tensor | None]:
        """Run the cell from `state`; returns (outputs, h_n, c_n)."""
        if isinstance(self.rnn, nn.LSTM):
            assert state.c is not None, "an LSTM model needs a state with c"
            out, (h, c) = self.rnn(x, (state.h, state.c))
            return out, h, c
        out, h = self.rnn(x, state.h)
        return out, h, None

    def _cell_step(self, x: Tensor, state: ModelState) -> tuple[None, Tensor, Tensor | None]:
        """One time step of the recurrent stack through the fused cell ops (`torch.gru_cell`,
        `torch.lstm_cell`) on the module's own weights: for GRU bit for bit what `self.rnn`
        returns for a one-step sequence (LSTM within 1e-7), at about half the fixed cost, which
        dominates the stream's small batches. Eval only (no dropout between layers). x: (batch, in_dim)."""
        weights = self.rnn.all_weights  # per layer: [w_ih, w_hh, b_ih, b_hh]
        hs: list[Tensor] = []
        cs: list[Tensor] = []
        for layer in range(self.config.num_layers):
            w_ih, w_hh, b_ih, b_hh = weights[layer]
            if self.config.cell == "gru":
                x = torch.gru_cell(x, state.h[layer], w_ih, w_hh, b_ih, b_hh)
            else:
                assert state.c is not None, "an LSTM model needs a state with c"
                x, c = torch.lstm_cell(x, (state.h[layer], state.c[layer]), w_ih, w_hh, b_ih, b_hh)
                cs.append(c)
            hs.append(x)
        return None, torch.stack(hs), torch.stack(cs) if cs else None

    def step(self, state: ModelState, batch: EventBatch) -> ModelState:
        """Advance each row by one event. Pure: returns a new state and never mutates `state`."""
        x = self._embed(
            batch.item_inputs[:, None],
            batch.types[:, None],
            batch.query_ids,
            batch.query_offsets,
            batch.ts[:, None],
            state.last_ts[:, None],
            batch.sessions[:, None],
            state.last_session[:, None],
            batch.categories[:, None],
        )
        _, h, c = self._run(x, state) if self.training else self._cell_step(x[:, 0], state)
        return ModelState(
            h=h,
            c=c,
            last_ts=batch.ts.clone(),
            last_session=batch.sessions.clone(),
            history=torch.cat([state.history[:, 1:], batch.catalog[:, None]], 1),
            history_types=torch.cat([state.history_types[:, 1:], batch.types[:, None]], 1),
        )

    def forward(
        self, batch: SequenceBatch, state: ModelState | None = None, return_state: bool = False
    ) -> SequenceOutput:
        """Run whole right-padded sequences from `state` (default: fresh users)."""
        b, t = batch.ts.shape
        if state is None:
            state = self.initial_state(b)
        prev_ts = torch.cat([state.last_ts[:, None], batch.ts[:, :-1]], 1)  # (batch, time)
        prev_sessions = torch.cat([state.last_session[:, None], batch.sessions[:, :-1]], 1)
        x = self._embed(
            batch.item_inputs,
            batch.types,
            batch.query_ids,
            batch.query_offsets,
            batch.ts,
            prev_ts,
            batch.sessions,
            prev_sessions,
            batch.categories,
        )
        ragged = bool((batch.lengths != t).any())
        if return_state and ragged:
            # Packing makes h_n/c_n the state after each row's own last event.
            packed = pack_padded_sequence(x, batch.lengths.cpu(), batch_first=True, enforce_sorted=False)
            out_packed, h, c = self._run(packed, state)
            out, _ = pad_packed_sequence(out_packed, batch_first=True, total_length=t)
        else:
            out, h, c = self._run(x, state)
        w = self.config.repeat_window
        history = torch.cat([state.history, batch.catalog], 1).unfold(1, w, 1)[:, 1:]  # (batch, time, window)
        types = torch.cat([state.history_types, batch.types], 1).unfold(1, w, 1)[:, 1:]
        final = None
        if return_state:
            rows, last = torch.arange(b, device=out.device), batch.lengths - 1
            final = ModelState(
                h=h,
                c=c,
                last_ts=batch.ts[rows, last],
                last_session=batch.sessions[rows, last],
                history=history[rows, last],
                history_types=types[rows, last],
            )
        return SequenceOutput(hidden=out, history=history, history_types=types, state=final)

    # -- heads ---------------------------------------------------------------------------------
    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """`nn.Module.load_state_dict`, dropping the cached output vectors."""
        self._vectors, self._vectors_key = None, None
        return super().load_state_dict(state_dict, strict, assign)

    def purchase_logit(self, top: Tensor) -> Tensor:
        """Logit (n,) that the next event is a purchase."""
        return self.purchase_head(top).squeeze(-1)

    def purchase_probability(self, state: ModelState) -> Tensor:
        """P(next event is a purchase), (batch,)."""
        return self.purchase_probability_of(self.representation(state))

    def purchase_probability_of(self, top: Tensor) -> Tensor:
        """P(next event is a purchase), (n,), from top states / representations (n, hidden)."""
        return torch.sigmoid(self.purchase_logit(top))

    def session_purchase_probability(self, state: ModelState) -> Tensor:
        """P(a purchase in the next event's session, from the next event on), (batch,): at a session's
        end, the next session's. Runs only when asked (`nn.heads`); needs `config.aux_heads`."""
        if self.heads is None:
            raise RuntimeError("this model has no auxiliary heads (ModelConfig.aux_heads is off)")
        return torch.sigmoid(self.heads.session_purchase(state.h[-1]))

    def representation(self, state: ModelState) -> Tensor:
        """The user representation: the top-layer hidden state (batch, hidden)."""
        return state.h[-1]
