"""HNSW build and search widths on the core's own queries: cost per query and share of the exact top 20.

`python -m benchmarks.hnsw_width CHECKPOINT DATA --format F` runs `process_batch` (the worker's
stream context, one thread) over the last `--events` events of DATA, recording every HNSW search
the core asks for, then replays those searches, with the same query batches and candidate
counts, against indexes built at each `--builds` width and searched at each `--searches` width.
A search's quality is the share of the exact inner-product top 20 (faiss `IndexFlatIP` over the
same vectors) among the candidates it returns; the core re-scores those candidates exactly, so
what the graph misses is what the served top 20 misses.

The benchmark's own model is untrained: random vectors, the graph's worst case for cost. A
trained model's vectors cluster (by category, by popularity), which changes both figures, so
measure both (README, "HNSW build width").
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast, get_args

import faiss
import numpy as np
import torch

from behavior_stream.data.loaders import Format, load_events
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.item_index import HNSW_M
from behavior_stream.stream.core.process import process_batch
from benchmarks.worker_runs import engine_context, partitioned
from benchmarks.workload import keyed_records

log = logging.getLogger(__name__)
TOP = 20


class SearchLog:
    """Stands in for the engine's faiss index: answers every search and keeps its query batch."""

    def __init__(self, index: faiss.IndexHNSWFlat) -> None:
        self.index = index
        self.calls: list[tuple[np.ndarray, int]] = []  # (queries (n, dim), candidates asked)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The wrapped index's answer, after keeping a copy of the call."""
        self.calls.append((queries.copy(), k))
        return self.index.search(queries, k)


def core_searches(engine: ModelEngine, records: Sequence[tuple[bytes, bytes]], batch: int) -> SearchLog:
    """Every HNSW search `process_batch` makes over `records` (key, value), in batches of `batch`."""
    assert engine.index._hnsw is not None, "the engine scores exactly: build it with a lower ann_threshold"
    searches = SearchLog(engine.index._hnsw)
    engine.index._hnsw = searches  # type: ignore[assignment]  # duck-typed: only .search is used
    ctx = engine_context(engine, "in", batch)
    inputs = partitioned("in", 4, records)
    for start in range(0, len(inputs), batch):
        process_batch(inputs[start : start + batch], ctx)
    engine.index._hnsw = searches.index
    return searches


@dataclass(frozen=True)
class Width:
    """One (build, search) setting's figures over the logged searches."""

    build: int
    search: int
    build_s: float
    us_per_query: float
    found: float  # share of the exact top 20 among the candidates returned


def measure(vectors: np.ndarray, calls: list[tuple[np.ndarray, int]], builds: Sequence[int],
            searches: Sequence[int]) -> list[Width]:  # fmt: skip
    """Each build width x search width over the same calls, against exact inner-product search."""
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    queries = np.concatenate([q for q, _ in calls])
    _, truth = exact.search(queries, TOP)  # (n_queries, 20)
    out = []
    for build in builds:
        start = time.perf_counter()
        index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = build
        index.add(vectors)
        build_s = time.perf_counter() - start
        for width in searches:
            index.hnsw.efSearch = width
            start = time.perf_counter()
            rows = [row for q, k in calls for row in index.search(q, k)[1]]
            seconds = time.perf_counter() - start
            found = np.mean([len(set(t) & set(r)) / TOP for t, r in zip(truth, rows, strict=True)])
            out.append(Width(build, width, build_s, seconds / len(queries) * 1e6, float(found)))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Print cost per query and share of the exact top 20 for each width, then one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--format", default="jsonl", choices=get_args(Format))
    parser.add_argument("--events", type=int, default=20_000, help="the last N events of DATA")
    parser.add_argument("--builds", default="64,128,200")
    parser.add_argument("--searches", default="128,96,64")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    events = load_events(args.data, cast(Format, args.format)).events[-args.events :]
    engine = ModelEngine.from_checkpoint(args.checkpoint, ann_threshold=1)  # HNSW at any size
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)  # as the worker searches
    log_ = core_searches(engine, keyed_records(events), 1000)
    index = log_.index
    vectors = index.reconstruct_n(0, index.ntotal)  # the engine's [e_i, b_i] rows
    n_queries = sum(len(q) for q, _ in log_.calls)
    widths = measure(vectors, log_.calls, [int(b) for b in args.builds.split(",")],
                     [int(s) for s in args.searches.split(",")])  # fmt: skip
    print(f"{args.checkpoint.name}: {index.ntotal:,} items, {n_queries:,} queries of {len(events):,} events")
    print("| build | search | build s | us/query | share of exact top 20 |")
    print("|---|---|---|---|---|")
    for w in widths:
        print(f"| {w.build} | {w.search} | {w.build_s:.1f} | {w.us_per_query:.0f} | {w.found:.3f} |")
    print(json.dumps([w.__dict__ for w in widths]))


if __name__ == "__main__":
    main()
