"""Related items: what the model ranks next after a view of the item, optionally for one user.

The item's embedding enters as a hypothetical click (lookahead.py) from a fresh state (or a
copy of the user's live state, for `&user=`), and the query that step produces, which is the
projected state plus the last-item map of the item's embedding, is matched against the item
embeddings through the engine's item index (HNSW on large catalogs), the item itself left out.
This is the ranking a shopper who has just looked at the item is served next, so "related" means
what the model learned people go on to look at, not merely similar vectors.
"""

from __future__ import annotations

from behavior_stream.schema.events import EventType, make_event
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.lookahead import Ranked, rank_after
from behavior_stream.stream.core.state import UserState


def related_items(
    engine: ModelEngine, item: int, k: int, user: tuple[str, UserState] | None = None
) -> Ranked:
    """Top-k items related to catalog index `item`, personalised for `user` (id, state) when given."""
    user_id, st = user if user is not None else ("", engine.fresh_state())
    ts = st.last_ts if st.last_ts >= 0 else 0
    click = make_event(
        user_id or "anonymous",
        EventType.CLICK,
        ts,
        engine.vocab.items[item],
        session_id=st.session_id or None,
    )
    [ranked] = rank_after(engine, [st], [[click]], [{item}], k)
    return ranked
