"""HTTP API on the worker's web port: metrics, health, per-user lookups and erasure.

User lookups are routed by Faust to the worker that owns the user's partition, so any worker
answers for any user. Writes need `api_token` when it is set; reads of users, experiments and
trending need `api_read_token` (or the write token) when that is set; `/metrics` and `/health`
stay open for Prometheus and probes.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Iterable
from typing import Any, cast

from faust.web import Request, Response, View
from pydantic import SecretStr

from behavior_stream.stream.commit.partitioning import partition_for
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.experiment import VARIANTS, Variant, summary
from behavior_stream.stream.core.explain import explain
from behavior_stream.stream.core.intent import purchase_intents
from behavior_stream.stream.core.outputs import excluded_items, feed_entries
from behavior_stream.stream.core.scenarios import cart_feeds
from behavior_stream.stream.core.state import UserState, decode_state, session_label, user_key
from behavior_stream.stream.runtime.control import new_command
from behavior_stream.stream.runtime.requests import (
    BadRequest,
    FeedScenario,
    query_bool,
    query_k,
    query_scenario,
)
from behavior_stream.stream.runtime.runtime import Runtime
from behavior_stream.stream.runtime.settings import Settings

log = logging.getLogger(__name__)
audit = logging.getLogger("behavior_stream.audit")


def load_user(rt: Runtime, user_id: str) -> tuple[Variant, ModelEngine, UserState] | None:
    """The user's serving variant, model and current state (adopted by that model); None if unknown."""
    raw = rt.store.get(user_key(user_id))
    if raw is None:
        return None
    variant, engine = rt.ctx.engine_for(user_id)
    st = decode_state(raw)
    engine.adopt(st)
    return variant, engine, st


def user_view(
    rt: Runtime, user_id: str, k: int | None = None, scenario: FeedScenario = "next", explained: bool = False
) -> dict[str, Any] | None:
    """The user's current state as served by the API: feed (the next-item feed, or the cart
    feed), vector, session, purchase intent; None if unknown. `k` defaults to `top_k`."""
    found = load_user(rt, user_id)
    if found is None:
        return None
    variant, engine, st = found
    k = rt.settings.top_k if k is None else k
    excluded = excluded_items(rt.settings.exclude, st)  # the same feed policy the stream applies
    [(items, scores, vector)] = engine.recommend([st], [excluded], k, rt.ctx.trending)
    fresh: list[tuple[str, float]] = []
    if scenario == "cart":
        [(items, scores)] = cart_feeds(engine, [st], [excluded], k, rt.ctx.scenarios.cart_blend)
    else:
        # Fresh items as the stream adds them; no batch here, so the policy sees no fresh-item events.
        items, scores, fresh = rt.ctx.fresh.place(
            engine.vocab, st.history, set(), rt.ctx.fresh_slots, rt.ctx.trending, (items, scores), k
        )
    [intent] = purchase_intents(engine, [st])
    rt.metrics.purchase_probability.observe(intent.probability)
    because = explain(engine, st, items) if explained else None
    return {
        "user_id": user_id,
        "ts": st.last_ts,
        "session_id": session_label(user_id, st),
        "session_start": st.session_start,
        "events_seen": st.events_seen,
        "model_version": engine.version,
        "variant": variant,
        "vector": vector.tolist(),
        "purchase_probability": intent.probability,
        "purchase_calibration": intent.calibration,
        "scenario": scenario,
        "items": feed_entries(engine.vocab.lookup(items), scores, fresh, because),
    }


def bearer_matches(header: str, tokens: Iterable[SecretStr | None]) -> bool:
    """True if an Authorization header is `Bearer <t>` for one of the configured tokens
    (compared in constant time, every token, so the timing says nothing about which)."""
    given = header.encode()
    hits = [hmac.compare_digest(given, f"Bearer {t.get_secret_value()}".encode()) for t in tokens if t]
    return any(hits)


def write_allowed(settings: Settings, header: str) -> bool:
    """Whether a request may change state (DELETE, promotion): `api_token`, when one is set."""
    return settings.api_token is None or bearer_matches(header, [settings.api_token])


def read_allowed(settings: Settings, header: str) -> bool:
    """Whether a request may read users, experiments or trending: `api_read_token`, when one is
    set, or the write token (whoever may erase a user may also look at it)."""
    token = settings.api_read_token
    return token is None or bearer_matches(header, [token, settings.api_token])


def check_token(rt: Runtime, request: Request, action: str, read: bool = False) -> str | None:
    """None when the request may go on; else why not (logged to the audit log)."""
    allowed = read_allowed if read else write_allowed
    if allowed(rt.settings, request.headers.get("Authorization", "")):
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
            refused = check_token(rt, request, "GET /trending", read=True)
            if refused is not None:
                return self.error(401, refused)
            items = rt.ctx.trending.top(rt.settings.top_k)
            return self.json({"items": [{"item_id": i, "count": c} for i, c in items]})

    @app.page("/experiments")
    class Experiments(View):
        async def get(self, request: Request) -> Response:
            refused = check_token(rt, request, "GET /experiments", read=True)
            if refused is not None:
                return self.error(401, refused)
            # Every worker's latest figures (the stats topic), this worker's own live ones.
            versions = {v: e.version for v, e in rt.ctx.engines().items()}
            group = rt.control.group({v: c.stats() for v, c in rt.metrics.counts.items()})
            return self.json(summary(group, versions, rt.ctx.split))

    @app.page("/experiments/promote/{variant}")
    class Promote(View):
        async def post(self, request: Request, variant: str) -> Response:
            refused = check_token(rt, request, f"POST /experiments/promote/{variant}")
            if refused is not None:
                return self.error(401, refused)
            if variant not in VARIANTS:
                return self.error(400, f"unknown variant {variant!r}")
            if variant == "B" and rt.ctx.treatment is None:
                return self.error(400, "no treatment model (ab_checkpoint) is being served")
            # Through the control topic, so every worker (and a restarted one) applies it.
            cmd = new_command("promote", cast(Variant, variant))
            await rt.control.send(cmd)
            applied = await rt.control.wait_applied(cmd.id)
            audit.warning("POST /experiments/promote/%s: id=%s split_b=%.2f", variant, cmd.id, rt.ctx.split)
            return self.json({"promoted": variant, "id": cmd.id, "applied": applied, "split_b": rt.ctx.split})

    def user_lookup(view: View, request: Request, user_id: str, what: str, keys: tuple[str, ...]) -> Response:
        """`keys` of the user's current view, answered where the user lives (Faust forwards the
        request with its headers, so the token is checked there); 401, 400 or 404 otherwise.
        Recommendations take `?k=`, `?scenario=next|cart` and `?explain=true`."""
        refused = check_token(rt, request, f"GET /users/{user_id}/{what}", read=True)
        if refused is not None:
            return view.error(401, refused)
        try:
            k = query_k(request.query, rt.settings.top_k) if what == "recommendations" else None
            scenario = query_scenario(request.query) if what == "recommendations" else "next"
            explained = query_bool(request.query, "explain") if what == "recommendations" else False
        except BadRequest as exc:
            return view.error(400, exc.message, field=exc.field)
        found = user_view(rt, user_id, k, scenario, explained)
        if found is None:
            return view.error(404, f"unknown user {user_id!r}", user_id=user_id)
        return view.json({k: found[k] for k in keys})

    @app.page("/users/{user_id}/recommendations")
    class Recommendations(View):
        @app.table_route(table=table, match_info="user_id")  # type: ignore[arg-type]
        async def get(self, request: Request, user_id: str) -> Response:
            keys = ("user_id", "ts", "model_version", "variant", "scenario", "items")
            return user_lookup(self, request, user_id, "recommendations", keys)

    @app.page("/users/{user_id}/representation")
    class Representation(View):
        @app.table_route(table=table, match_info="user_id")  # type: ignore[arg-type]
        async def get(self, request: Request, user_id: str) -> Response:
            keys = ("user_id", "ts", "session_id", "vector", "model_version", "variant", "events_seen",
                    "purchase_probability", "purchase_calibration")  # fmt: skip
            return user_lookup(self, request, user_id, "representation", keys)

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
