"""What-if ranking from a user's live state: step a copy with hypothetical events, never commit.

Search ("this user typed this query"), related items ("this user looked at this item") and the
stream's scenario records all ask the same question of the model: what would it rank next if
these events happened now? The state is copied, stepped with the same batched `step_users` the
stream uses, scored through the engine's item index (exact, or HNSW on large catalogs), and
thrown away, so nothing a request asks ever reaches the stored state. The stream's own search
records step rows of the batch's state tensors instead (`stepped_rows`): the same state, with
no copy or re-encoding of user states.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from behavior_stream.nn.state import ModelState
from behavior_stream.schema.events import Event
from behavior_stream.schema.sessions import session_code
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.state import UserState

Ranked = tuple[list[int], list[float]]  # catalog indices best first, their scores


def clone_state(st: UserState) -> UserState:
    """A deep copy of a user state (arrays and lists copied), safe to step and discard."""
    return dataclasses.replace(
        st,
        session_counts=list(st.session_counts),
        recent_ids=list(st.recent_ids),
        carted=list(st.carted),
        purchased=list(st.purchased),
        history=st.history.copy(),
        history_types=st.history_types.copy(),
        hidden=st.hidden.copy(),
    )


def stepped_copies(
    engine: ModelEngine, states: Sequence[UserState], events: Sequence[Sequence[Event]]
) -> list[UserState]:
    """Copies of `states` with each one's hypothetical `events` applied (an empty list: none)."""
    copies = [clone_state(st) for st in states]
    for st in copies:
        engine.adopt(st)
    moving = [i for i, evs in enumerate(events) if evs]
    if moving:
        engine.step_users(
            [copies[i] for i in moving],
            [events[i] for i in moving],
            [copies[i].last_ts for i in moving],
            last_session=[copies[i].session_id for i in moving],
        )
        for i in moving:  # the time fields step_users leaves to the caller's bookkeeping
            copies[i].last_ts = max(copies[i].last_ts, events[i][-1].ts)
    return copies


def kept(items: np.ndarray, scores: np.ndarray) -> Ranked:
    """One `ItemIndex.top_k` row without its non-finite tail (as `rank_states` gives it)."""
    keep = np.isfinite(scores)  # an excluded item can only fill a short catalog
    return items[keep].tolist(), scores[keep].tolist()


@torch.inference_mode()
def rank_states(
    engine: ModelEngine,
    states: Sequence[UserState],
    excluded: Sequence[set[int]],
    k: int,
    candidates: Sequence[list[int] | None] | None = None,
) -> list[Ranked]:
    """Each state's top-k items: through the item index, or among its `candidates` (exact scores)."""
    if not states:
        return []
    ms = engine.model_state(states)
    top = engine.model.representation(ms)  # (n, hidden)
    out: list[Ranked] = [([], [])] * len(states)
    free = [i for i in range(len(states)) if candidates is None or candidates[i] is None]
    if free:
        sel = torch.tensor(free, dtype=torch.int64)
        items, scores = engine.index.top_k(
            top[sel], ms.history[sel], ms.history_types[sel], [excluded[i] for i in free], k
        )
        for row, i in enumerate(free):
            out[i] = kept(items[row], scores[row])
    for i in range(len(states)):
        cand = None if candidates is None else candidates[i]
        if cand is None:
            continue
        pool = [c for c in dict.fromkeys(cand) if c not in excluded[i]]
        if not pool:
            continue
        scores_all = engine.model.score_hidden(
            top[i : i + 1], ms.history[i : i + 1], ms.history_types[i : i + 1]
        )
        picked = scores_all[0, torch.tensor(pool, dtype=torch.int64)]  # (len(pool),)
        best = torch.topk(picked, min(k, len(pool)))
        out[i] = ([pool[j] for j in best.indices.tolist()], best.values.tolist())
    return out


def rank_after(
    engine: ModelEngine,
    states: Sequence[UserState],
    events: Sequence[Sequence[Event]],
    excluded: Sequence[set[int]],
    k: int,
    candidates: Sequence[list[int] | None] | None = None,
) -> list[Ranked]:
    """`rank_states` of copies of `states` stepped with the hypothetical `events`."""
    return rank_states(engine, stepped_copies(engine, states, events), excluded, k, candidates)


@torch.inference_mode()
def stepped_rows(
    engine: ModelEngine,
    ms: ModelState,
    rows: Sequence[int],
    states: Sequence[UserState],
    events: Sequence[Sequence[Event]],
) -> ModelState:
    """The batched state `stepped_copies` would give for rows `rows` of `ms` (the current state
    of `states`, aligned with `rows`, under `engine`) and their non-empty hypothetical `events`:
    stepped from the tensors themselves, with no copy or re-encoding of the states."""
    sel = torch.tensor(list(rows), dtype=torch.int64)
    # last_ts/last_session as `stepped_copies` steps from: the states' own fields.
    before = dataclasses.replace(
        ms.select(sel),
        last_ts=torch.tensor([st.last_ts for st in states], dtype=torch.int64),
        last_session=torch.tensor([session_code(st.session_id) for st in states], dtype=torch.int64),
    )
    return engine.advance(before, events)[0]
