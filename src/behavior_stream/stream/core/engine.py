"""The model as the stream uses it: batched steps over many users, feeds, and version changes.

Converts between the compact per-user `UserState` (NumPy) and the model's batched
`ModelState` (torch), so a micro-batch costs one tensor build, a few batched steps (one per
event "round": round r steps every user that has more than r events in the batch) and one
scoring pass.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from behavior_stream.evaluation.metrics import conservative_ranks
from behavior_stream.nn.checkpoint import LoadedModel, load_checkpoint
from behavior_stream.nn.features import encode_events, encode_sequences
from behavior_stream.nn.state import ModelState, SequenceOutput
from behavior_stream.schema.events import EVENT_TYPES, Event, EventType, make_event
from behavior_stream.schema.sessions import session_code
from behavior_stream.schema.vocab import ItemVocab
from behavior_stream.stream.core.cart import BoughtTogether
from behavior_stream.stream.core.item_index import EXACT_CHUNK, ItemIndex
from behavior_stream.stream.core.state import UserState
from behavior_stream.stream.core.trending import TrendingWindow
from behavior_stream.training.calibration import Platt

log = logging.getLogger(__name__)


class Ranking(NamedTuple):
    """A batch's model state with its representations and item-index top-k, row i for user i:
    what the stream's feed, intent, search and cart records all start from."""

    state: ModelState
    top: torch.Tensor  # (n, hidden) representations
    items: np.ndarray  # (n, k') catalog indices, best first (`ItemIndex.top_k`)
    scores: np.ndarray  # (n, k')
    extra: int  # the HNSW candidates asked beyond k (`ItemIndex.extra`): results depend on it


class UserFeed(NamedTuple):
    """What `recommend` gives for one user: the top-k feed and the representation it came from."""

    items: list[int]  # catalog indices, best first
    scores: list[float]
    vector: np.ndarray  # (hidden,) the user's representation


def version_tag(version: str) -> int:
    """The 32-bit tag stored in each user state to tell which model produced it."""
    return zlib.crc32(version.encode("utf-8"))


class ModelEngine:
    """A loaded checkpoint plus its retrieval index; immutable once built (reload = new engine)."""

    def __init__(self, loaded: LoadedModel, ann_threshold: int = 50_000, previous: ModelEngine | None = None):
        self.model = loaded.model.eval()
        self.vocab: ItemVocab = loaded.vocab
        self.config = loaded.config
        self.version: str = loaded.model_version
        self.tag = version_tag(self.version)
        self.index = ItemIndex(self.model, ann_threshold)
        # Scenario side data trained with the checkpoint (absent in older ones: then empty/None).
        self.bought_together = BoughtTogether.from_metadata(loaded.metadata, self.vocab)
        self.calibration = Platt.from_metadata(loaded.metadata)
        self._layers = self.config.num_layers
        self._hidden = self.config.hidden_size
        self._window = self.config.repeat_window
        # Vocabularies of earlier versions, to translate stored histories after a hot reload.
        self._vocabs: dict[int, ItemVocab] = dict(previous._vocabs) if previous else {}
        self._vocabs[self.tag] = self.vocab

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, ann_threshold: int = 50_000, previous: ModelEngine | None = None
    ) -> ModelEngine:
        """Load a checkpoint (weights_only, checksum-verified) into an engine."""
        return cls(load_checkpoint(path), ann_threshold, previous)

    def fresh_state(self) -> UserState:
        """The state of a user with no events under this model."""
        width = self._layers * self._hidden * (2 if self.config.cell == "lstm" else 1)
        return UserState(
            model_tag=self.tag,
            history=np.full(self._window, -1, np.int32),
            history_types=np.zeros(self._window, np.uint8),
            hidden=np.zeros(width, np.float32),
        )

    # -- conversion ------------------------------------------------------------------------------
    def _to_model(
        self, states: Sequence[UserState], last_ts: Sequence[int], last_session: Sequence[str]
    ) -> ModelState:
        n, lh = len(states), self._layers * self._hidden
        flat = torch.from_numpy(np.stack([s.hidden for s in states]))  # (n, width)
        h = flat[:, :lh].reshape(n, self._layers, self._hidden).transpose(0, 1).contiguous()
        c = None
        if self.config.cell == "lstm":
            c = flat[:, lh:].reshape(n, self._layers, self._hidden).transpose(0, 1).contiguous()
        return ModelState(
            h=h,
            c=c,
            last_ts=torch.tensor(last_ts, dtype=torch.int64),
            last_session=torch.tensor([session_code(s) for s in last_session], dtype=torch.int64),
            history=torch.from_numpy(np.stack([s.history for s in states]).astype(np.int64)),
            history_types=torch.from_numpy(np.stack([s.history_types for s in states]).astype(np.int64)),
        )

    def _from_model(self, ms: ModelState, states: Sequence[UserState]) -> None:
        parts = [ms.h] if ms.c is None else [ms.h, ms.c]
        flat = torch.cat([p.transpose(0, 1).reshape(len(states), -1) for p in parts], 1).numpy()
        hist = ms.history.numpy().astype(np.int32)
        types = ms.history_types.numpy().astype(np.uint8)
        for i, st in enumerate(states):
            st.hidden, st.history, st.history_types = flat[i].copy(), hist[i].copy(), types[i].copy()

    def model_state(self, states: Sequence[UserState]) -> ModelState:
        """The batched model state of users whose states are under this model (see `adopt`)."""
        return self._to_model(states, [s.last_ts for s in states], [s.session_id for s in states])

    # -- stepping --------------------------------------------------------------------------------
    def adopt(self, st: UserState) -> None:
        """Bring a state produced by another model version under this one (see README).

        The recurrent state of another model means nothing to this one, so it is rebuilt by
        stepping this model over the remembered history window (translated through the old
        vocabulary when it is known); otherwise the user restarts from a fresh state.
        """
        if st.model_tag == self.tag:
            return
        old_vocab = self._vocabs.get(st.model_tag)
        fresh = self.fresh_state()
        replay: list[Event] = []
        if old_vocab is not None and st.last_ts >= 0:
            for idx, t in zip(st.history.tolist(), st.history_types.tolist(), strict=True):
                if idx >= 0 and EVENT_TYPES[t] is not EventType.SEARCH:
                    item = old_vocab.items[idx]
                    replay.append(make_event(st.session_id or "u", EVENT_TYPES[t], st.last_ts, item))
        st.model_tag, st.hidden = self.tag, fresh.hidden
        st.history, st.history_types = fresh.history, fresh.history_types
        st.carted = self._translate(st.carted, old_vocab)
        st.purchased = self._translate(st.purchased, old_vocab)
        if replay:
            self.step_users([st], [replay], [-1])

    def _translate(self, indices: list[int], old_vocab: ItemVocab | None) -> list[int]:
        """Catalog indices of another vocabulary mapped to this one (unknown ones dropped)."""
        if old_vocab is None:
            return []
        out = [self.vocab.index(old_vocab.items[i]) for i in indices if 0 <= i < old_vocab.n_items]
        return [i for i in out if i is not None]

    def share_vocabularies(self, other: ModelEngine) -> None:
        """Let two engines served side by side (A/B) adopt each other's user states."""
        merged = {**self._vocabs, **other._vocabs}
        self._vocabs.update(merged)
        other._vocabs.update(merged)

    @torch.inference_mode()
    def step_users(
        self,
        states: Sequence[UserState],
        events: Sequence[Sequence[Event]],
        last_ts: Sequence[int],
        ranks: list[int] | None = None,
        last_session: Sequence[str] | None = None,
    ) -> int:
        """Apply each user's events in order, in one batched call; returns the number of events.

        `last_ts[i]` is the event time of user i's last event before this batch (-1: none), and
        `last_session[i]` that event's session id ("": none; default: the states' `session_id`,
        right while they still describe the previous event), for the new-session flag.
        One event per user uses `step`; when some user has several, the whole batch runs the
        model's full-sequence forward from the current states (equal to stepping event by
        event, see tests/nn/test_network.py) so a heavy user costs one call, not one per event.
        With `ranks`, the conservative catalog rank of every event's item given the state just
        before it (the offline protocol, positions t >= 1) is appended to it.
        """
        self.step_states(states, events, last_ts, ranks, last_session)
        return sum(len(e) for e in events)

    @torch.inference_mode()
    def step_states(
        self,
        states: Sequence[UserState],
        events: Sequence[Sequence[Event]],
        last_ts: Sequence[int],
        ranks: list[int] | None = None,
        last_session: Sequence[str] | None = None,
    ) -> ModelState:
        """`step_users`, also giving the batched state after the step (the rows of `states`).

        The states are written back as well; the returned tensors hold the same values, so the
        stream ranks from them (`rank`) instead of building them again from the NumPy states.
        """
        for st in states:
            self.adopt(st)
        if last_session is None:
            last_session = [st.session_id for st in states]
        before = self._to_model(states, last_ts, last_session)
        ms, out = self.advance(before, events)
        if ranks is not None:
            ranks.extend(self._next_item_ranks(before, out, events))
        self._from_model(ms, states)
        return ms

    @torch.inference_mode()
    def advance(
        self, before: ModelState, events: Sequence[Sequence[Event]]
    ) -> tuple[ModelState, SequenceOutput | None]:
        """The batched state after each row's events (each non-empty), and the full-sequence
        output when the batch needed it (some row with several events); pure, like `step`."""
        if all(len(e) == 1 for e in events):
            # The catalog map gives each event's item its category (unknown item: unknown category).
            step_batch = encode_events([e[0] for e in events], self.vocab, self.config, self.model.categories)
            return self.model.step(before, step_batch), None
        batch = encode_sequences(events, self.vocab, self.config, self.model.categories)
        out = self.model.forward(batch, state=before, return_state=True)
        assert out.state is not None
        return out.state, out

    def _next_item_ranks(
        self, before: ModelState, out: SequenceOutput | None, events: Sequence[Sequence[Event]]
    ) -> list[int]:
        """Conservative rank of each event's catalog item from the state before that event."""
        tops, hists, types, targets = [], [], [], []
        for b, evs in enumerate(events):
            for j, ev in enumerate(evs):
                target = self.vocab.index(ev.item_id)
                if target is None or (j == 0 and int(before.last_ts[b]) < 0):
                    continue  # not rankable, or the user's very first event (no prefix)
                if j == 0:
                    tops.append(before.h[-1][b])
                    hists.append(before.history[b])
                    types.append(before.history_types[b])
                else:
                    assert out is not None
                    tops.append(out.hidden[b, j - 1])
                    hists.append(out.history[b, j - 1])
                    types.append(out.history_types[b, j - 1])
                targets.append(target)
        ranks: list[int] = []
        for start in range(0, len(targets), EXACT_CHUNK):
            sl = slice(start, start + EXACT_CHUNK)
            scores = self.model.score_hidden(
                torch.stack(tops[sl]), torch.stack(hists[sl]), torch.stack(types[sl])
            )
            # The evaluation's rank rule (ties against the model, NaN last), so online and
            # offline figures count the same way.
            ranks.extend(conservative_ranks(scores.numpy(), np.asarray(targets[sl])).tolist())
        return ranks

    @torch.inference_mode()
    def rank(self, ms: ModelState, excluded: Sequence[set[int]], k: int) -> Ranking:
        """The item index's top-k of each row of a batched state (see `Ranking`)."""
        top = self.model.representation(ms)  # (n, hidden)
        items, scores = self.index.top_k(top, ms.history, ms.history_types, list(excluded), k)
        return Ranking(ms, top, items, scores, self.index.extra(excluded))

    @torch.inference_mode()
    def recommend(
        self,
        states: Sequence[UserState],
        excluded: Sequence[set[int]],
        k: int,
        trending: TrendingWindow,
        ranking: Ranking | None = None,
    ) -> list[UserFeed]:
        """Top-k feed and representation of each user; cold users (no catalog item yet) get trending.

        `ranking`: `rank` of these users' current state with the same `excluded` and `k` (e.g.
        of the state `step_states` gave), so the state is not built again.
        """
        if ranking is None:
            ranking = self.rank(self.model_state(states), excluded, k)
        vectors = ranking.top.numpy()
        feeds: list[UserFeed] = []
        for i, st in enumerate(states):
            if (st.history < 0).all():
                feeds.append(UserFeed(*self.trending_feed(trending, k, excluded[i]), vectors[i]))
            else:
                feeds.append(UserFeed(ranking.items[i].tolist(), ranking.scores[i].tolist(), vectors[i]))
        return feeds

    def trending_feed(
        self, trending: TrendingWindow, k: int, excluded: set[int] | None = None
    ) -> tuple[list[int], list[float]]:
        """The trending items that are in the catalog, scored by their window counts."""
        excluded = excluded or set()
        items: list[int] = []
        scores: list[float] = []
        for item_id, count in trending.top(4 * k):
            idx = self.vocab.index(item_id)
            if idx is not None and idx not in excluded:
                items.append(idx)
                scores.append(float(count))
            if len(items) == k:
                break
        return items, scores
