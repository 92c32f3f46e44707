"""The scenario endpoints and records against the real broker: one worker for the whole module.

Search, cart, related items, explanations and purchase intent over HTTP, the scenario records
on the recommendations topic, and input validation (404 / 400 with a JSON body naming the field).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from behavior_stream.schema.events import Event, EventType, make_event
from behavior_stream.stream.runtime.kafka import ensure_topics
from behavior_stream.stream.runtime.settings import Settings
from behavior_stream.testing.broker import EmbeddedBroker
from behavior_stream.testing.replay import Producer
from tests.scenariokit import random_checkpoint
from tests.streamkit import WorkerProcess, read_topic, stream_settings, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.timeout(300)]

T = 1_700_000_000_000
TABLE = {"top_n": 20, "pairs": {"i1": [["i2", 5], ["i9", 1]], "i2": [["i1", 5]]}}
CALIBRATION = {"method": "platt", "a": 0.5, "b": -1.0, "n": 100, "positives": 20, "threshold": 0.3}
EVENTS = [
    make_event("searcher", EventType.CLICK, T, "i3"),
    make_event("searcher", EventType.CLICK, T + 1000, "i4"),
    make_event("searcher", EventType.SEARCH, T + 2000, query="desk lamp"),
    make_event("carter", EventType.CLICK, T, "i7"),
    make_event("carter", EventType.ADD_TO_CART, T + 1000, "i1"),
    make_event("viewer", EventType.CLICK, T, "i11"),
    make_event("viewer", EventType.CLICK, T + 1000, "i12"),
]


@dataclass
class Served:
    worker: WorkerProcess
    settings: Settings

    def call(self, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        method = "POST" if data is not None else "GET"
        status, answer = self.worker.get(path, method, data=data, timeout=20)
        return status, orjson.loads(answer)


@pytest.fixture(scope="module")
def served(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("api-scenarios")
    checkpoint = random_checkpoint(
        tmp / "model.pt", {"bought_together": TABLE, "purchase_calibration": CALIBRATION}
    )
    settings = stream_settings(broker, tmp, checkpoint, ann_threshold=0, top_k=10)
    asyncio.run(ensure_topics(settings))
    worker = WorkerProcess(settings, tmp / "worker.log").start()
    try:
        worker.wait_ready()

        async def produce(events: list[Event]) -> None:
            async with Producer(settings) as producer:
                await producer.send_keyed(
                    settings.input_topic, [(e.user_id.encode(), e.to_json()) for e in events]
                )

        asyncio.run(produce(EVENTS))
        wait_until(
            lambda: (
                sum(v for k, v in worker.metrics().items() if k.startswith("behavior_stream_events_total"))
                >= len(EVENTS)
            ),
            120,
            "the worker did not apply the events",
        )
        yield Served(worker, settings)
    finally:
        worker.stop()


def test_scenario_records_on_the_recommendations_topic(served: Served) -> None:
    recs = [orjson.loads(r.value) for r in read_topic(served.settings, served.settings.recommendations_topic)]
    search = [r for r in recs if r.get("scenario") == "search"]
    cart = [r for r in recs if r.get("scenario") == "cart"]
    assert [(r["user_id"], r["query"], r["event_id"]) for r in search] == [
        ("searcher", "desk lamp", EVENTS[2].event_id)
    ]
    assert len(search[0]["items"]) == 10
    assert [(r["user_id"], r["event_id"], r["query"]) for r in cart] == [("carter", EVENTS[4].event_id, None)]
    carted = [i["item_id"] for i in cart[0]["items"]]
    assert carted[:2] == ["i2", "i9"] and "i1" not in carted  # bought together, never the carted item
    # Plain feeds stay as they were: no scenario key, one per user at least.
    assert {r["user_id"] for r in recs if "scenario" not in r} == {"searcher", "carter", "viewer"}
    reps = [
        orjson.loads(r.value)
        for r in read_topic(served.settings, served.settings.representations_topic, idle_s=1.0)
    ]
    assert reps and all(
        r["purchase_calibration"] == "platt" and 0 < r["purchase_probability"] < 1 for r in reps
    )


def test_search_endpoint(served: Served) -> None:
    status, body = served.call("/users/viewer/search", {"query": "desk lamp", "k": 5})
    assert status == 200, body
    assert body["user_id"] == "viewer" and body["query"] == "desk lamp" and len(body["items"]) == 5
    assert "because" not in body["items"][0]
    status, other = served.call("/users/viewer/search", {"query": "garden hose", "k": 5})
    assert status == 200 and other["items"] != body["items"]  # the query matters
    status, ranked = served.call(
        "/users/viewer/search", {"query": "lamp", "candidates": ["i5", "i6", "i30"], "explain": True}
    )
    assert status == 200 and sorted(i["item_id"] for i in ranked["items"]) == ["i30", "i5", "i6"]
    assert all(isinstance(i["because"], list) for i in ranked["items"])
    assert {r["item_id"] for i in ranked["items"] for r in i["because"]} <= {"i11", "i12"}
    # A search request changes nothing: the representation is the one the stream left.
    assert served.call("/users/viewer/representation")[1]["events_seen"] == 2


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"query": "x", "k": 0}, 400, "k"),
        ({"query": "x", "k": 201}, 400, "k"),
        ({"query": "x", "k": "5"}, 400, "k"),
        ({"query": ""}, 400, "query"),
        ({"k": 5}, 400, "query"),
        ({"query": "x", "candidates": "i1"}, 400, "candidates"),
        ({"query": "x", "colour": "red"}, 400, "colour"),
        ({"query": "x", "explain": "yes"}, 400, "explain"),
        ({"query": "x", "candidates": ["i1", "nope"]}, 404, "candidates"),
    ],
)
def test_search_rejects_bad_input_naming_the_field(
    served: Served, body: dict, status: int, field: str
) -> None:
    got, answer = served.call("/users/viewer/search", body)
    assert (got, answer.get("field")) == (status, field), answer
    assert isinstance(answer["error"], str) and answer["error"]


def test_search_unknown_user_and_malformed_json(served: Served) -> None:
    status, body = served.call("/users/nobody/search", {"query": "lamp"})
    assert status == 404 and body["error"] == "unknown user 'nobody'"
    status, body = served.call("/users/viewer/search", raw=b'{"query": "lamp"')
    assert status == 400 and body["field"] == "body"
    status, body = served.call("/users/viewer/search", raw=b"[1, 2]")
    assert status == 400 and body["field"] == "body"


def test_cart_recommendations_and_explanations(served: Served) -> None:
    status, body = served.call("/users/carter/recommendations?scenario=cart&k=5")
    assert status == 200 and body["scenario"] == "cart" and len(body["items"]) == 5
    names = [i["item_id"] for i in body["items"]]
    assert names[:2] == ["i2", "i9"] and "i1" not in names
    status, plain = served.call("/users/carter/recommendations?explain=true&k=3")
    assert status == 200 and plain["scenario"] == "next" and len(plain["items"]) == 3
    assert all({r["item_id"] for r in i["because"]} <= {"i7", "i1"} for i in plain["items"])
    for query, field in (
        ("scenario=basket", "scenario"),
        ("k=0", "k"),
        ("k=500", "k"),
        ("k=ten", "k"),
        ("explain=maybe", "explain"),
    ):
        status, body = served.call(f"/users/carter/recommendations?{query}")
        assert (status, body["field"]) == (400, field), query
    assert served.call("/users/nobody/recommendations?scenario=cart")[0] == 404


def test_related_items(served: Served) -> None:
    status, body = served.call("/items/i6/related?k=7")
    assert status == 200 and body["item_id"] == "i6" and body["user_id"] is None
    names = [i["item_id"] for i in body["items"]]
    assert len(names) == 7 and "i6" not in names
    status, personal = served.call("/items/i6/related?k=7&user=searcher&explain=true")
    assert status == 200 and personal["user_id"] == "searcher" and len(personal["items"]) == 7
    assert "i6" not in [i["item_id"] for i in personal["items"]] and all(
        "because" in i for i in personal["items"]
    )
    assert served.call("/items/nope/related")[0] == 404
    assert served.call("/items/i6/related?user=nobody")[0] == 404
    for query, field in (("k=0", "k"), ("k=201", "k"), ("explain=true", "explain")):
        status, body = served.call(f"/items/i6/related?{query}")
        assert (status, body["field"]) == (400, field), query


def test_purchase_intent_in_the_representation_and_its_histogram(served: Served) -> None:
    status, body = served.call("/users/carter/representation")
    assert status == 200 and body["purchase_calibration"] == "platt" and 0 < body["purchase_probability"] < 1
    metrics = served.worker.metrics()
    assert metrics["behavior_stream_purchase_probability_count"] >= 4  # three stream users + this lookup
