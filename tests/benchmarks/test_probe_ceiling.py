"""The probe ceiling on a tiny generated set: an exact replay of `generate`, evaluate's probe examples,
and well-formed draws and scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from behavior_stream.cli.heldout import history_and_test
from behavior_stream.evaluation import metrics as M
from behavior_stream.evaluation.probes import ProbeExample, probe_examples
from behavior_stream.schema.sessions import SESSION_GAP_MS
from behavior_stream.simulate.generator import generate
from benchmarks.probe_ceiling import (
    Draws,
    ceiling,
    event_rows,
    record_simulation,
    scores,
    sim_rows,
    table,
    weighted_median,
)

TINY = (200, 300, 5_000, 3)  # users, items, events, seed


@pytest.fixture(scope="module")
def found() -> tuple[list[ProbeExample], Draws]:
    return ceiling(*TINY, test_frac=0.2, draws=20, mc_seed=1)


def test_the_replay_reproduces_generates_events_and_keeps_a_state_per_session() -> None:
    rec = record_simulation(*TINY)
    assert sim_rows(rec) == event_rows(generate(*TINY).events)
    sessions = {(int(u), int(s)) for u, s in zip(rec.sim.user, rec.sim.session, strict=True)}
    assert set(rec.states) == sessions
    first_budgets = [budget for (_, ordinal), (_, budget) in rec.states.items() if ordinal == 0]
    assert sum(first_budgets) == TINY[2]


def test_the_examples_are_those_evaluate_builds_from_the_generated_file(
    found: tuple[list[ProbeExample], Draws], tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl.gz"
    generate(*TINY, out=path)
    history, test, categories, _ = history_and_test(path, "jsonl", None, None, (0.1, 0.2, "event"))
    expected = probe_examples(history, test, categories, SESSION_GAP_MS)

    def key(e: ProbeExample) -> tuple[object, ...]:
        return e.user, len(e.prefix), e.purchase, e.category, e.length

    assert [key(e) for e in found[0]] == [key(e) for e in expected]
    assert len(expected) >= 20 and 0 < sum(e.purchase for e in expected) < len(expected)


def test_the_draws_are_well_formed(found: tuple[list[ProbeExample], Draws]) -> None:
    examples, draws = found
    assert draws.bought.shape == draws.length.shape == draws.weight.shape == (len(examples), 20)
    assert (draws.length >= 1).all() and (draws.length <= draws.length_uncut).all()
    assert not (draws.bought & ~draws.bought_uncut).any()  # cutting a session can only lose a purchase
    assert (draws.weight >= 0).all() and np.allclose(draws.weight.sum(axis=1), 1.0)
    p = (draws.bought * draws.weight).sum(axis=1)
    assert ((p >= 0) & (p <= 1)).all()


def test_the_ceiling_auc_is_the_usual_roc_auc(found: tuple[list[ProbeExample], Draws]) -> None:
    examples, draws = found
    labels = np.array([e.purchase for e in examples])
    p = (draws.bought * draws.weight).sum(axis=1)
    median = weighted_median(draws.length, draws.weight)
    figures = scores(examples, p, median, n_bootstrap=50)
    assert M.roc_auc(labels, p) == pytest.approx(roc_auc_score(labels, p))
    assert figures["purchase"]["versus_baseline"]["value"] == pytest.approx(roc_auc_score(labels, p))
    lengths = np.array([e.length for e in examples])
    assert figures["length"]["mae"] == pytest.approx(np.abs(median - lengths).mean())
    assert len(table(examples, draws, n_bootstrap=50)) == 7


def test_the_weighted_median_minimizes_the_weighted_absolute_error() -> None:
    rng = np.random.default_rng(0)
    values, weight = rng.integers(1, 30, size=(50, 9)), rng.random((50, 9))
    weight /= weight.sum(axis=1, keepdims=True)
    median = weighted_median(values, weight)
    for row, m in enumerate(median):
        cost = [(weight[row] * np.abs(values[row] - c)).sum() for c in values[row]]
        assert (weight[row] * np.abs(values[row] - m)).sum() == pytest.approx(min(cost))
