"""Top-K retrieval: HNSW candidates re-scored exactly agree with exact scoring; exclusions hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from behavior_stream.stream.core.engine import ModelEngine
from tests.streamkit import make_checkpoint


@pytest.fixture(scope="module", params=["items", "categories", "cosine", "rules"])
def checkpoint(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A model over 5,000 items; "categories": one that adds its 50 categories to the items' output
    vectors, which the HNSW index then holds; "cosine": one that scores by scaled cosine similarity
    (unit vectors in the index, the bias folded in as with dot products); "rules": one with a
    sequential-rules term strong enough to reorder the top 20 (its followers join the candidates)."""
    items = [f"item-{i}" for i in range(5000)]
    side = {item: f"c{i % 50}" for i, item in enumerate(items)} if request.param == "categories" else None
    scale = 8.0 if request.param == "cosine" else 0.0
    path = tmp_path_factory.mktemp("idx") / "m.pt"
    rules = 3.0 if request.param == "rules" else 0.0
    return make_checkpoint(path, items, seed=3, categories=side, cosine_scale=scale, rules_weight=rules)


def queries(engine: ModelEngine, n: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    top = torch.randn(n, engine.config.hidden_size, generator=gen)
    w = engine.config.repeat_window
    history = torch.randint(-1, engine.vocab.n_items, (n, w), generator=gen)
    types = torch.randint(0, 5, (n, w), generator=gen)
    return top, history, types


@torch.inference_mode()
def test_hnsw_agrees_with_exact_scoring(checkpoint: Path) -> None:
    exact = ModelEngine.from_checkpoint(checkpoint, ann_threshold=0)
    approx = ModelEngine.from_checkpoint(checkpoint, ann_threshold=1000)
    assert not exact.index.approximate and approx.index.approximate
    top, history, types = queries(exact)
    none: list[set[int]] = [set() for _ in range(len(top))]
    e_items, e_scores = exact.index.top_k(top, history, types, none, 20)
    a_items, a_scores = approx.index.top_k(top, history, types, none, 20)
    overlap = np.mean([len(set(e) & set(a)) / 20 for e, a in zip(e_items, a_items, strict=True)])
    assert overlap >= 0.95, overlap
    # Items both return carry the same exact score (the approximate path re-scores exactly).
    for e_i, e_s, a_i, a_s in zip(e_items, e_scores, a_items, a_scores, strict=True):
        common = dict(zip(e_i.tolist(), e_s.tolist(), strict=True))
        for item, score in zip(a_i.tolist(), a_s.tolist(), strict=True):
            if item in common:
                assert score == pytest.approx(common[item], abs=1e-4)


@torch.inference_mode()
@pytest.mark.parametrize("threshold", [0, 1000])
def test_excluded_items_never_returned(checkpoint: Path, threshold: int) -> None:
    engine = ModelEngine.from_checkpoint(checkpoint, ann_threshold=threshold)
    top, history, types = queries(engine, 16)
    none: list[set[int]] = [set() for _ in range(len(top))]
    first, _ = engine.index.top_k(top, history, types, none, 20)
    excluded = [set(row[:5].tolist()) for row in first]
    items, _ = engine.index.top_k(top, history, types, excluded, 20)
    for row, ex in zip(items, excluded, strict=True):
        assert not (set(row.tolist()) & ex)
        assert len(set(row.tolist())) == 20
