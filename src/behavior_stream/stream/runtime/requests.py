"""Input validation of the scenario endpoints: every bad field is a 400 that names it.

Pure functions over already-read request parts (query-string values, the JSON body), so the
rules are tested without a server: `k` in [1, 200], booleans spelled true/false/1/0, a search
body with exactly the known fields of the right types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from behavior_stream.stream.core.search import MAX_CANDIDATES, MAX_QUERY_CHARS

K_MIN, K_MAX = 1, 200
FeedScenario = Literal["next", "cart"]
FEED_SCENARIOS: tuple[FeedScenario, ...] = ("next", "cart")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


class BadRequest(ValueError):
    """A request field that breaks its rule; answered 400 with {"error", "field"}."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def check_k(value: Any, field: str = "k") -> int:
    """An integer in [1, 200] (bools and floats are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(field, f"{field} must be an integer in [{K_MIN}, {K_MAX}], got {value!r}")
    if not K_MIN <= value <= K_MAX:
        raise BadRequest(field, f"{field} must be in [{K_MIN}, {K_MAX}], got {value}")
    return value


def query_k(query: Mapping[str, str], default: int) -> int:
    """`?k=` of a query string, or `default` when absent."""
    raw = query.get("k")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest("k", f"k must be an integer in [{K_MIN}, {K_MAX}], got {raw!r}") from None
    return check_k(value)


def query_bool(query: Mapping[str, str], name: str) -> bool:
    """`?<name>=true|false` (also 1/0, yes/no); false when absent."""
    raw = query.get(name)
    if raw is None:
        return False
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise BadRequest(name, f"{name} must be true or false, got {raw!r}")


def query_scenario(query: Mapping[str, str]) -> FeedScenario:
    """`?scenario=` of the recommendations lookup: next (default) or cart."""
    raw = query.get("scenario", "next")
    for s in FEED_SCENARIOS:
        if raw == s:
            return s
    raise BadRequest("scenario", f"scenario must be one of {', '.join(FEED_SCENARIOS)}, got {raw!r}")


@dataclass(frozen=True)
class SearchRequest:
    """The body of `POST /users/{id}/search`."""

    query: str
    candidates: tuple[str, ...] | None = None
    k: int = 20
    explain: bool = False


_SEARCH_FIELDS = ("query", "candidates", "k", "explain")


def parse_search(body: bytes, default_k: int = 20) -> SearchRequest:
    """A search request from its JSON body; BadRequest naming the field (or "body") otherwise."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("body", f"body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BadRequest("body", f"body must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(_SEARCH_FIELDS))
    if unknown:
        raise BadRequest(unknown[0], f"unknown field {unknown[0]!r}; expected {', '.join(_SEARCH_FIELDS)}")
    query = data.get("query")
    if not isinstance(query, str) or not query.strip():
        raise BadRequest("query", "query must be a non-empty string")
    if len(query) > MAX_QUERY_CHARS:
        raise BadRequest("query", f"query must be at most {MAX_QUERY_CHARS} characters, got {len(query)}")
    candidates = data.get("candidates")
    if candidates is not None:
        if not isinstance(candidates, list) or not all(isinstance(c, str) for c in candidates):
            raise BadRequest("candidates", "candidates must be a list of item id strings")
        if not 1 <= len(candidates) <= MAX_CANDIDATES:
            raise BadRequest(
                "candidates", f"candidates must hold 1 to {MAX_CANDIDATES} items, got {len(candidates)}"
            )
    k = check_k(data.get("k", default_k))
    explain = data.get("explain", False)
    if not isinstance(explain, bool):
        raise BadRequest("explain", f"explain must be true or false, got {explain!r}")
    return SearchRequest(query, tuple(candidates) if candidates is not None else None, k, explain)
