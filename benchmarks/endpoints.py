"""Latency of the scenario endpoints at 100k items: p50/p99 per endpoint over HTTP, sampled.

One worker with the primary model (GRU, the large catalog, HNSW) consumes a slice of the
workload on its own topic; then every endpoint is called in turn, round-robin over the users and
items of that slice, one request at a time (a fresh connection each, as a simple client makes),
and each request's wall time is a sample. Only 200 answers count; anything else is counted as an
error. The worker answers for every user itself here (one worker owns every partition): the
forward to another owner adds one local HTTP hop, not measured here.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from itertools import cycle

import numpy as np
import orjson

from behavior_stream.schema.events import EventType
from behavior_stream.stream.runtime.kafka import ensure_topics
from behavior_stream.testing.workerproc import WorkerProcess, wait_until
from benchmarks.config import PRIMARY
from benchmarks.report import Figures
from benchmarks.worker_runs import applied
from benchmarks.workload import Workload, drop_topics, produce

log = logging.getLogger(__name__)

ENDPOINT_EVENTS = 20_000  # events the worker holds state for (quick runs: 3,000)
SAMPLES = 300  # requests per endpoint (quick runs: 40)


def _request(url: str, body: bytes | None) -> int:
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as err:
        err.read()
        return int(err.code)


def _sample(url_of: Callable[[int], tuple[str, bytes | None]], n: int) -> tuple[np.ndarray, int]:
    """(milliseconds of the 200 answers, number of other answers) over n requests."""
    times, errors = [], 0
    for i in range(n):
        url, body = url_of(i)
        t0 = time.perf_counter()
        status = _request(url, body)
        elapsed = (time.perf_counter() - t0) * 1000
        if status == 200:
            times.append(elapsed)
        else:
            errors += 1
    return np.asarray(times), errors


def measure_endpoints(workload: Workload) -> Figures:
    """p50/p99 (ms) of each scenario endpoint, keyed `endpoint.<name>.{p50_ms,p99_ms,n,errors}`."""
    cfg = workload.config
    n_events = 3_000 if cfg.quick_mode else ENDPOINT_EVENTS
    n_samples = 40 if cfg.quick_mode else SAMPLES
    events = workload.events[:n_events]
    topic = f"endpoints-{workload.tag}"
    settings = workload.settings("endpoints", PRIMARY, input_topic=topic)
    asyncio.run(ensure_topics(settings))
    asyncio.run(produce(settings, topic, workload.records[:n_events]))
    users = list(dict.fromkeys(e.user_id for e in events))
    items = list(dict.fromkeys(e.item_id for e in events if e.item_id is not None))
    queries = [e.query for e in events if e.type is EventType.SEARCH and e.query] or ["shoes"]
    worker = WorkerProcess(settings, workload.log_path("endpoints")).start()
    try:
        worker.wait_ready(cfg.start_cap_s)
        wait_until(
            lambda: (applied(worker) or 0) >= n_events, 300, "endpoint worker did not apply its events"
        )
        base = worker.url
        cands = [orjson.dumps(items[i : i + 100]).decode() for i in range(0, max(len(items) - 100, 1), 100)]
        u, it, q, c = cycle(users), cycle(items), cycle(queries), cycle(cands)

        def search(_: int) -> tuple[str, bytes | None]:
            return f"{base}/users/{next(u)}/search", orjson.dumps({"query": next(q), "k": 20})

        def rerank(_: int) -> tuple[str, bytes | None]:
            body = f'{{"query": {orjson.dumps(next(q)).decode()}, "candidates": {next(c)}}}'.encode()
            return f"{base}/users/{next(u)}/search", body

        endpoints: dict[str, Callable[[int], tuple[str, bytes | None]]] = {
            "representation": lambda _: (f"{base}/users/{next(u)}/representation", None),
            "recommendations": lambda _: (f"{base}/users/{next(u)}/recommendations", None),
            "cart": lambda _: (f"{base}/users/{next(u)}/recommendations?scenario=cart", None),
            "explain": lambda _: (f"{base}/users/{next(u)}/recommendations?explain=true", None),
            "search": search,
            "search_rerank_100": rerank,
            "related": lambda _: (f"{base}/items/{next(it)}/related?k=20", None),
            "related_user": lambda _: (f"{base}/items/{next(it)}/related?k=20&user={next(u)}", None),
        }
        out: Figures = {
            "endpoint.catalog_items": workload.engine(PRIMARY).vocab.n_items,
            "endpoint.users": len(users),
        }
        for name, url_of in endpoints.items():
            _sample(url_of, 5)  # warm-up: first calls allocate
            ms, errors = _sample(url_of, n_samples)
            out[f"endpoint.{name}.n"] = len(ms)
            out[f"endpoint.{name}.errors"] = errors
            if len(ms):
                out[f"endpoint.{name}.p50_ms"] = round(float(np.percentile(ms, 50)), 2)
                out[f"endpoint.{name}.p99_ms"] = round(float(np.percentile(ms, 99)), 2)
            log.info(
                "endpoint %s: %s", name, {k: v for k, v in out.items() if k.startswith(f"endpoint.{name}.")}
            )
        return out
    finally:
        worker.stop()
        drop_topics(workload, topic)
