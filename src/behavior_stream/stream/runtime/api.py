"""HTTP API on the worker's web port: metrics, health, per-user lookups and erasure.

User lookups are routed by Faust to the worker that owns the user's partition, so any worker
answers for any user.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

from faust.web import Request, Response, View

from behavior_stream.stream.commit.partitioning import partition_for
from behavior_stream.stream.core.experiment import summary
from behavior_stream.stream.core.outputs import excluded_items
from behavior_stream.stream.core.state import decode_state, session_label, user_key
from behavior_stream.stream.runtime.runtime import Runtime

log = logging.getLogger(__name__)
audit = logging.getLogger("behavior_stream.audit")
EXPERIMENT_K = 20


def user_view(rt: Runtime, user_id: str) -> dict[str, Any] | None:
    """The user's current state as served by the API: feed, vector, session; None if unknown."""
    raw = rt.store.get(user_key(user_id))
    if raw is None:
        return None
    variant, engine = rt.ctx.engine_for(user_id)
    st = decode_state(raw)
    engine.adopt(st)
    excluded = excluded_items(rt.settings.exclude, st)  # the same feed policy the stream applies
    [(items, scores, vector)] = engine.recommend([st], [excluded], rt.settings.top_k, rt.ctx.trending)
    return {
        "user_id": user_id,
        "ts": st.last_ts,
        "session_id": session_label(user_id, st),
        "session_start": st.session_start,
        "events_seen": st.events_seen,
        "model_version": engine.version,
        "variant": variant,
        "vector": vector.tolist(),
        "items": [
            {"item_id": i, "score": round(s, 5)}
            for i, s in zip(engine.vocab.lookup(items), scores, strict=True)
        ],
    }


def check_token(rt: Runtime, request: Request, action: str) -> str | None:
    """None when the request may change state; else why not (logged to the audit log)."""
    token = rt.settings.api_token
    if token is None:
        return None
    given = request.headers.get("Authorization", "")
    if hmac.compare_digest(given.encode(), f"Bearer {token.get_secret_value()}".encode()):
        return None
    audit.warning("%s refused: bad or missing bearer token", action)
    return "bearer token required"


def register(rt: Runtime) -> None:
    """Attach the web views to the runtime's app."""
    app, table = rt.app, rt.table

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(rt.metrics.exposition(), content_type="text/plain; version=0.0.4")

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json(
                {
                    "status": "ok",
                    "model_version": rt.engine.version,
                    "users": rt.store.user_count(),
                    "uptime_seconds": round(time.time() - rt.started_at, 1),
                }
            )

    @app.page("/trending")
    class Trending(View):
        async def get(self, request: Request) -> Response:
            items = rt.ctx.trending.top(rt.settings.top_k)
            return self.json({"items": [{"item_id": i, "count": c} for i, c in items]})

    @app.page("/experiments")
    class Experiments(View):
        async def get(self, request: Request) -> Response:
            versions = {v: e.version for v, e in rt.ctx.engines().items()}
            return self.json(summary(rt.metrics.counts, versions, rt.ctx.split, EXPERIMENT_K))

    @app.page("/experiments/promote/{variant}")
    class Promote(View):
        async def post(self, request: Request, variant: str) -> Response:
            refused = check_token(rt, request, f"POST /experiments/promote/{variant}")
            if refused is not None:
                return self.error(401, refused)
            try:
                await rt.promote(variant)
            except ValueError as exc:
                return self.error(400, str(exc))
            audit.warning("POST /experiments/promote/%s: split_b=%.2f", variant, rt.ctx.split)
            return self.json({"promoted": variant, "split_b": rt.ctx.split})

    @app.page("/users/{user_id}/recommendations")
    class Recommendations(View):
        @app.table_route(table=table, match_info="user_id")  # type: ignore[arg-type]
        async def get(self, request: Request, user_id: str) -> Response:
            view = user_view(rt, user_id)
            if view is None:
                return self.error(404, f"unknown user {user_id!r}")
            keys = ("user_id", "ts", "model_version", "variant", "items")
            return self.json({k: view[k] for k in keys})

    @app.page("/users/{user_id}/representation")
    class Representation(View):
        @app.table_route(table=table, match_info="user_id")  # type: ignore[arg-type]
        async def get(self, request: Request, user_id: str) -> Response:
            view = user_view(rt, user_id)
            if view is None:
                return self.error(404, f"unknown user {user_id!r}")
            keys = ("user_id", "ts", "session_id", "vector", "model_version", "variant", "events_seen")
            return self.json({k: view[k] for k in keys})

    @app.page("/users/{user_id}")
    class User(View):
        @app.table_route(table=table, match_info="user_id")  # type: ignore[arg-type]
        async def delete(self, request: Request, user_id: str) -> Response:
            refused = check_token(rt, request, f"DELETE /users/{user_id}")
            if refused is not None:
                return self.error(401, refused)
            partition = partition_for(user_id.encode("utf-8"), rt.settings.partitions)
            existed = await rt.delete_user(user_id, partition)
            audit.warning("DELETE /users/%s: erased=%s partition=%d", user_id, existed, partition)
            if not existed:
                return self.error(404, f"unknown user {user_id!r}")
            rt.metrics.evicted.inc()
            return self.json({"user_id": user_id, "deleted": True})
