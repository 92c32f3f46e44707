"""How a user's state is scored against the catalog: output vectors, query, bias, repeat bonus, rules.

A score is `query . v_i + b_i`, plus a learned repeat bonus for every item in the user's last
`repeat_window` events (a function of the state, the history event's type and its recency,
added with `scatter_add`: an item seen several times collects several bonuses), plus, with
`rules_weight`, the sequential rules' term (`nn.rules`) on the followers of the latest items.
The query is the projected top-layer state plus a linear map of the latest item's output
vector. An item's output vector is its (tied) input embedding, plus a projection of its
category's embedding with `category_output`, unit length with `cosine_scale` (a scaled cosine).

`CatalogScoring` holds these methods for `SequenceModel` (nn/network.py), which owns the
weights; ItemIndex (stream/core/item_index.py) re-scores HNSW candidates with the same parts.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from behavior_stream.nn.config import ModelConfig
from behavior_stream.nn.rules import rules_term
from behavior_stream.nn.state import ModelState
from behavior_stream.schema.events import EVENT_TYPES


class RepeatBonus(nn.Module):
    """Additive-attention score of each history slot: how likely the user returns to that item.

    Deliberately item-agnostic (state, event type, recency only): on sparse catalogs most
    history items were seen once in training, and an item term measured no gain on either data set.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        r = config.repeat_dim
        self.query = nn.Linear(config.hidden_size, r)
        self.type_emb = nn.Embedding(len(EVENT_TYPES), r)
        self.recency_emb = nn.Embedding(config.repeat_window, r)
        self.out = nn.Linear(r, 1)

    def forward(self, top: Tensor, history: Tensor, types: Tensor) -> Tensor:
        """Bonus (n, window), zero at empty slots, for top states (n, hidden)."""
        z = (
            self.query(top)[:, None, :] + self.type_emb(types) + self.recency_emb.weight[None]
        )  # (n, window, r)
        bonus = self.out(torch.tanh(z)).squeeze(-1)  # (n, window)
        return bonus.masked_fill(history < 0, 0.0)


class CatalogScoring:
    """The scoring half of `SequenceModel`: every method reads the model's own weights."""

    # Set by SequenceModel.__init__ (its weights, submodules and buffers).
    config: ModelConfig
    n_items: int
    training: bool
    item_emb: nn.Embedding
    item_bias: nn.Parameter
    category_emb: nn.Embedding | None
    category_out: nn.Linear | None
    item_category: Tensor  # (n_items,) category rows of the catalog; only with `category_out`
    rule_followers: Tensor  # (n_items, rules_neighbours) int64, -1 padded; only with `rules_weight`
    rule_weights: Tensor  # (n_items, rules_neighbours) float32
    out_proj: nn.Linear
    last_item: nn.Linear
    dropout: nn.Dropout
    repeat: RepeatBonus
    _vectors: Tensor | None
    _vectors_key: tuple[tuple[int, int], ...] | None

    def repeat_bonus(self, top: Tensor, history: Tensor, history_types: Tensor) -> Tensor:
        """Repeat bonus (n, window) of each history slot for top states (n, hidden)."""
        return self.repeat(top, history, history_types)

    def item_vectors(self, rows: Tensor | None = None) -> Tensor:
        """Output vectors of catalog items (len(rows) or n_items, item_dim), what queries are scored
        against: the item embedding, plus its category's projected embedding with `category_output`,
        unit length with `cosine_scale`."""
        derived = self.category_out is not None or bool(self.config.cosine_scale)
        if derived and not (self.training or torch.is_grad_enabled()):
            # Inference: the cached catalog vectors, gathered (no projection per row).
            vectors = self._cached_vectors()
            return vectors if rows is None else vectors[rows]
        if rows is None:
            return self._catalog_vectors()
        emb = self.item_emb(rows)
        if self.category_out is not None and self.category_emb is not None:
            emb = emb + self.category_out(self.category_emb(self.item_category[rows]))
        return F.normalize(emb, dim=-1) if self.config.cosine_scale else emb

    def _catalog_vectors(self) -> Tensor:
        """(n_items, item_dim) item embeddings plus their categories' projected embeddings (with
        `category_output`), normalised (with `cosine_scale`)."""
        emb = self.item_emb.weight[: self.n_items]
        if self.category_out is not None and self.category_emb is not None:
            emb = emb + self.category_out(self.category_emb(self.item_category))
        return F.normalize(emb, dim=-1) if self.config.cosine_scale else emb

    def _cached_vectors(self) -> Tensor:
        """The full catalog's output vectors for inference, recomputed only when a weight they
        depend on changed (in-place updates and `load_state_dict` bump a tensor's `_version`), so
        the stream does not pay the category projection or the normalisation per batch."""
        weights = [self.item_emb.weight]
        if self.category_out is not None and self.category_emb is not None:
            weights += [self.category_emb.weight, self.category_out.weight]
        # Weights made under inference mode keep no version counter; `load_state_dict` (the way
        # such weights change) clears the key itself.
        key = tuple((id(w), -1 if w.is_inference() else w._version) for w in weights)
        if self._vectors_key != key:
            with torch.no_grad():
                self._vectors = self._catalog_vectors()
            self._vectors_key = key
        assert self._vectors is not None
        return self._vectors

    def item_query(self, top: Tensor, history: Tensor) -> Tensor:
        """Query vectors (n, item_dim) matched against `item_vectors`, from top states
        (n, hidden) and history windows (n, window) whose last slot is the latest event."""
        last = history[:, -1]  # (n,) -1 after a search or an OOV item: no shortcut then
        shortcut = self.last_item(self.item_vectors(last.clamp(min=0))) * (last >= 0)[:, None]
        query = self.out_proj(self.dropout(top)) + shortcut
        if self.config.cosine_scale:
            # Cosine similarity times a fixed scale (NISER): popular items cannot win on vector length
            # alone; popularity stays in the item bias.
            return self.config.cosine_scale * F.normalize(query, dim=-1)
        return query

    def set_rules(self, followers: Tensor, weights: Tensor) -> None:
        """Install a fitted rule table (`nn.rules.fit_rules`, (n_items, rules_neighbours) each)."""
        if self.config.rules_weight <= 0:
            raise RuntimeError("this model has no rules (ModelConfig.rules_weight is 0)")
        with torch.no_grad():
            self.rule_followers.copy_(followers)
            self.rule_weights.copy_(weights)

    def rules(self, history: Tensor) -> tuple[Tensor, Tensor] | None:
        """The sequential rules' term (`nn.rules.rules_term`): items (n, L) and values (n, L) to add
        to their scores, from history windows (n, window); None for a model without rules."""
        cfg = self.config
        if cfg.rules_weight <= 0:
            return None
        return rules_term(
            self.rule_followers, self.rule_weights, history, cfg.rules_recent, cfg.rules_weight,
            cfg.rules_sharpness,
        )  # fmt: skip

    def score_hidden(
        self, top: Tensor, history: Tensor, history_types: Tensor, with_rules: bool = True
    ) -> Tensor:
        """Catalog scores (n, n_items) from top states (n, hidden) and their history windows; the
        rules' term included unless `with_rules` is off (the training loss)."""
        base = torch.addmm(self.item_bias, self.item_query(top, history), self.item_vectors().T)
        bonus = self.repeat_bonus(top, history, history_types)  # (n, window)
        # In place: addmm's backward does not need its output, so no (n, n_items) copy is made.
        base = base.scatter_add_(1, history.clamp(min=0), bonus)
        term = self.rules(history) if with_rules else None
        if term is not None:
            items, values = term  # -1 items carry 0: adding at column 0 changes nothing
            base = base.scatter_add_(1, items.clamp(min=0), values)
        return base

    def scores(self, state: ModelState) -> Tensor:
        """Next-item scores (batch, n_items), repeat bonus included."""
        return self.score_hidden(state.h[-1], state.history, state.history_types)
