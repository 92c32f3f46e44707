"""The core's context comes from the settings in one place (`stream_context`), for the worker and
the benchmark's core-alone runs alike, so the two do the same work per event (issue 14)."""

from __future__ import annotations

from pathlib import Path

from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.runtime.app import stream_context
from behavior_stream.stream.runtime.settings import Settings
from tests.streamkit import make_checkpoint


def engine(tmp_path: Path) -> ModelEngine:
    path = make_checkpoint(tmp_path / "m.pt", [f"i{n}" for n in range(50)], seed=3)
    return ModelEngine.from_checkpoint(path, 0)


def test_the_settings_processing_options_reach_the_core(tmp_path: Path) -> None:
    settings = Settings(
        input_topic="in",
        repartition_topic="re",
        representations_topic="reps",
        recommendations_topic="recs",
        dlq_topic="dead",
        top_k=7,
        exclude=("carted",),
        fresh_slots=3,
        scenario_records=("cart",),
        explain_records=True,
        cart_blend=0.25,
        late_grace_ms=5,
        recent_ids=4,
    )
    store: dict[bytes, bytes] = {}
    ctx = stream_context(settings, engine(tmp_path), store)
    assert ctx.store is store
    assert (ctx.input_topic, ctx.repartition_topic, ctx.dlq_topic) == ("in", "re", "dead")
    assert (ctx.representations_topic, ctx.recommendations_topic) == ("reps", "recs")
    assert (ctx.top_k, ctx.exclude, ctx.fresh_slots) == (7, ("carted",), 3)
    assert (ctx.late_grace_ms, ctx.recent_ids) == (5, 4)
    assert (ctx.scenarios.search, ctx.scenarios.cart, ctx.scenarios.explain) == (False, True, True)
    assert ctx.scenarios.cart_blend == 0.25
    assert ctx.treatment is None and ctx.split == 0.0  # no experiment without a treatment


def test_defaults_are_the_workers_not_the_bare_cores(tmp_path: Path) -> None:
    # The core's own defaults leave scenario records and fresh slots off; a worker's turn them on.
    ctx = stream_context(Settings(), engine(tmp_path), {})
    assert ctx.fresh_slots == Settings().fresh_slots > 0
    assert ctx.scenarios.search and ctx.scenarios.cart
