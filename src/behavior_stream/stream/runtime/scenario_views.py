"""The shopping-scenario endpoints: personalised search and related items.

`POST /users/{id}/search` is answered where the user's state lives: Faust's `table_route`
forwards a request without its body, so this module forwards POSTs itself (body and headers,
to the owner of the user's partition). `GET /items/{id}/related?user=ID` is routed the same way
by the `user` parameter; without it any worker answers from the model alone.
"""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response, View
from yarl import URL

from behavior_stream.stream.core.explain import explain
from behavior_stream.stream.core.outputs import excluded_items, feed_entries
from behavior_stream.stream.core.related import related_items
from behavior_stream.stream.core.search import search_rankings
from behavior_stream.stream.runtime.api import check_token, load_user
from behavior_stream.stream.runtime.requests import BadRequest, parse_search, query_bool, query_k
from behavior_stream.stream.runtime.runtime import Runtime


def bad_request(view: View, exc: BadRequest) -> Response:
    """400 with the rule broken and the field that broke it."""
    return view.error(400, exc.message, field=exc.field)


async def forward_to_owner(rt: Runtime, view: View, request: Request, user_id: str) -> Response | None:
    """The owner's answer when another worker owns `user_id`'s partition (body forwarded too);
    None when this worker owns it (or there is a single worker)."""
    app = rt.app
    try:
        dest: URL = app.router.key_store(rt.table.name, user_id)
    except KeyError:
        return view.error(503, "the user's partition has no owner yet (rebalancing)")
    here = URL(str(app.conf.canonical_url))
    if (dest.host, dest.port) == (here.host, here.port):
        return None
    body = await request.read()
    target = request.url.with_host(dest.host or "127.0.0.1").with_port(dest.port)
    headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
    async with app.http_client.request(method=request.method, url=target, headers=headers, data=body) as resp:
        return view.text(await resp.text(), content_type=resp.content_type, status=resp.status)


def register(rt: Runtime) -> None:
    """Attach the search and related-items views to the runtime's app."""
    app = rt.app

    @app.page("/users/{user_id}/search")
    class Search(View):
        async def post(self, request: Request, user_id: str) -> Response:
            forwarded = await forward_to_owner(rt, self, request, user_id)
            if forwarded is not None:
                return forwarded
            refused = check_token(rt, request, f"POST /users/{user_id}/search", read=True)
            if refused is not None:
                return self.error(401, refused)
            try:
                req = parse_search(await request.read(), rt.settings.top_k)
                explained = req.explain or query_bool(request.query, "explain")
            except BadRequest as exc:
                return bad_request(self, exc)
            found = load_user(rt, user_id)
            if found is None:
                return self.error(404, f"unknown user {user_id!r}", user_id=user_id)
            variant, engine, st = found
            candidates: list[int] | None = None
            if req.candidates is not None:
                indices = [engine.vocab.index(c) for c in req.candidates]
                missing = [c for c, i in zip(req.candidates, indices, strict=True) if i is None]
                if missing:
                    return self.error(
                        404, f"unknown item {missing[0]!r}", field="candidates", item_id=missing[0]
                    )
                candidates = [i for i in indices if i is not None]
            excluded = excluded_items(rt.settings.exclude, st)
            [(items, scores)] = search_rankings(
                engine, [user_id], [st], [req.query], [excluded], req.k, [candidates]
            )
            because = explain(engine, st, items) if explained else None
            body: dict[str, Any] = {
                "user_id": user_id,
                "query": req.query,
                "model_version": engine.version,
                "variant": variant,
                "items": feed_entries(engine.vocab.lookup(items), scores, because=because),
            }
            return self.json(body)

    @app.page("/items/{item_id}/related")
    class Related(View):
        async def get(self, request: Request, item_id: str) -> Response:
            user_id = request.query.get("user")
            if user_id is not None:
                forwarded = await forward_to_owner(rt, self, request, user_id)
                if forwarded is not None:
                    return forwarded
            refused = check_token(rt, request, f"GET /items/{item_id}/related", read=True)
            if refused is not None:
                return self.error(401, refused)
            try:
                k = query_k(request.query, rt.settings.top_k)
                explained = query_bool(request.query, "explain")
                if user_id is not None and not user_id:
                    raise BadRequest("user", "user must be a non-empty user id")
                if explained and user_id is None:
                    raise BadRequest("explain", "explain needs user=ID (the reasons are that user's events)")
            except BadRequest as exc:
                return bad_request(self, exc)
            user = load_user(rt, user_id) if user_id is not None else None
            if user_id is not None and user is None:
                return self.error(404, f"unknown user {user_id!r}", user_id=user_id)
            engine = user[1] if user is not None else rt.engine
            idx = engine.vocab.index(item_id)
            if idx is None:
                return self.error(404, f"unknown item {item_id!r}", item_id=item_id)
            personal = (user_id, user[2]) if user is not None and user_id is not None else None
            items, scores = related_items(engine, idx, k, personal)
            because = explain(engine, user[2], items) if user is not None and explained else None
            body: dict[str, Any] = {
                "item_id": item_id,
                "user_id": user_id,
                "model_version": engine.version,
                "items": feed_entries(engine.vocab.lookup(items), scores, because=because),
            }
            return self.json(body)
