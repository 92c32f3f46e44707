"""The HNSW width probe: it logs the core's own searches and scores widths against exact search."""

from __future__ import annotations

from pathlib import Path

from behavior_stream.simulate.generator import generate
from behavior_stream.stream.core.engine import ModelEngine
from benchmarks.hnsw_width import core_searches, measure
from benchmarks.workload import keyed_records, make_checkpoint


def test_core_searches_are_logged_and_an_exhaustive_search_finds_the_exact_top(tmp_path: Path) -> None:
    data = generate(users=60, items=1_500, events=3_000, seed=3)
    path = make_checkpoint(tmp_path / "m.pt", sorted(data.item_categories), "gru", 3)
    engine = ModelEngine.from_checkpoint(path, ann_threshold=1)
    graph = engine.index._hnsw
    searches = core_searches(engine, keyed_records(data.events), batch=200)
    assert engine.index._hnsw is graph  # the engine gets its own index back
    n_queries = sum(len(q) for q, _ in searches.calls)
    assert n_queries >= 60 and all(k >= 20 for _, k in searches.calls)
    assert graph is not None
    vectors = graph.reconstruct_n(0, graph.ntotal)
    widths = measure(vectors, searches.calls, builds=[8, 64], searches=[graph.ntotal, 8])
    by = {(w.build, w.search): w.found for w in widths}
    # Searching as wide as the catalog visits every reachable item: the exact top 20, but for
    # float ties between equal scores.
    assert by[(64, graph.ntotal)] > 0.99
    assert by[(8, 8)] < by[(64, graph.ntotal)]
    assert all(0.0 <= w.found <= 1.0 and w.us_per_query > 0 for w in widths)
