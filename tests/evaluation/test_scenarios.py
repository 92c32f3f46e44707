"""The scenario metrics, targets and baselines on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from behavior_stream.data.splits import EvalSequence
from behavior_stream.evaluation import scenarios as S
from behavior_stream.evaluation.scenario_report import scenario_table
from behavior_stream.schema.events import EventType, make_event
from behavior_stream.schema.vocab import ItemVocab

T = 1_700_000_000_000
MIN = 60_000
VOCAB = ItemVocab(("a", "b", "c", "d", "e"))


def ev(kind: EventType, minute: int, item: str | None = None, query: str | None = None, user: str = "u"):  # type: ignore[no-untyped-def]
    return make_event(user, kind, T + minute * MIN, item, query)


C, S_, A, P = EventType.CLICK, EventType.SEARCH, EventType.ADD_TO_CART, EventType.PURCHASE


def test_set_rank_is_conservative_and_skips_excluded() -> None:
    scores = np.array([5.0, 3.0, 3.0, 1.0, 9.0])
    assert S.set_ranks(scores, [1]) == 4  # e (9), a (5) above; c ties and counts against
    assert S.set_ranks(scores, [1, 2]) == 3  # the other target does not count against
    assert S.set_ranks(scores, [1], excluded=[4]) == 3  # e left out
    assert S.set_ranks(scores, [3, 0]) == 2


def test_hit_and_reciprocal_rank() -> None:
    got = S.hit_and_rr(np.array([1, 4, 25]), 20)
    np.testing.assert_allclose(got, np.array([[1, 1], [1, 0.25], [0, 0]]))


def test_search_predictions_are_items_right_after_a_search() -> None:
    seq = EvalSequence(
        "u",
        (),
        (
            ev(C, 0, "a"),
            ev(S_, 1, query="Red  Shoes"),
            ev(C, 2, "b"),
            ev(C, 3, "c"),
            ev(S_, 4, query="x"),
            ev(C, 5, "zz"),
        ),
    )
    [p] = S.search_predictions([seq], VOCAB)
    assert (p.position, p.targets, p.query) == (2, (1,), "red shoes")  # "zz" is not in the catalog


def test_cart_predictions_are_later_basket_items_of_the_session() -> None:
    events = (
        ev(C, 0, "a"),
        ev(A, 1, "a"),
        ev(C, 2, "b"),
        ev(A, 3, "b"),
        ev(P, 4, "a"),
        ev(P, 5, "c"),
        ev(P, 90, "d"),
    )
    preds = S.cart_predictions([EvalSequence("u", (), events)], VOCAB)
    # After carting a: b (carted) and c (bought) complete it; a's own purchase is not a target,
    # d comes in a later session (85 minutes later).
    assert [(p.position, p.targets, p.excluded) for p in preds] == [(2, (1, 2), (0,)), (4, (2,), (0, 1))]


def test_related_pairs_are_consecutive_distinct_items_of_a_session() -> None:
    events = (ev(C, 0, "a"), ev(C, 1, "a"), ev(S_, 2, query="q"), ev(C, 3, "b"), ev(C, 60, "c"))
    assert S.related_predictions([EvalSequence("u", (), events)], VOCAB) == [(0, 0, 1)]


def test_session_purchase_labels() -> None:
    events = (ev(C, 0, "a"), ev(C, 1, "b"), ev(P, 2, "b"), ev(C, 3, "c"), ev(C, 80, "d"), ev(P, 81, "d"))
    seq = EvalSequence("u", (ev(C, -5, "e"),), events)
    # p = position: after events[:p]; the session of events[p - 1] still has a purchase at events[p:]?
    got = S.session_purchase_labels(seq, [1, 2, 3, 4, 5])
    assert got.tolist() == [True, True, False, False, True]


def test_bought_together_counts_sessions_with_both_in_the_basket() -> None:
    events = [
        ev(A, 0, "a", user="u1"), ev(P, 1, "b", user="u1"), ev(C, 2, "c", user="u1"),
        ev(A, 0, "a", user="u2"), ev(A, 1, "b", user="u2"), ev(A, 2, "c", user="u2"),
        ev(A, 100, "a", user="u2"),
    ]  # fmt: skip
    table = S.bought_together(events)
    assert table["a"] == [["b", 2], ["c", 1]]
    assert table["c"] == [["a", 1], ["b", 1]]
    np.testing.assert_allclose(S.table_scores(table, ["a", "c"], VOCAB), [1, 3, 1, 0, 0])


def test_cart_blend() -> None:
    model = np.log(np.array([[1.0, 1.0, 2.0, 0.0 + 1e-300], [1.0, 1.0, 1.0, 1.0]]))
    counts = np.array([[0.0, 3.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    got = S.cart_blend(model, counts, 0.5)
    np.testing.assert_allclose(got[0], [0.125, 0.125 + 0.375, 0.25, 0.125], atol=1e-12)
    np.testing.assert_allclose(got[1], [0.25] * 4)  # no counts: the model alone


def test_co_occurrence() -> None:
    events = [ev(C, 0, "a"), ev(C, 1, "b"), ev(C, 2, "a"), ev(C, 100, "a"), ev(C, 101, "c")]
    co = S.co_occurrence(events, VOCAB)
    assert co[0] == {1: 1, 2: 1} and co[1] == {0: 1}


def test_calibration_curve() -> None:
    curve = S.calibration_curve(np.array([0, 1, 1, 0]), np.array([0.05, 0.15, 0.95, 1.0]), bins=2)
    assert curve == [
        {"bin": "0.0-0.5", "n": 2, "predicted": pytest.approx(0.1), "observed": 0.5},
        {"bin": "0.5-1.0", "n": 2, "predicted": pytest.approx(0.975), "observed": 0.5},
    ]


def test_scenario_table_verdicts() -> None:
    row = {
        "predictions": 10,
        "baseline": "b",
        "hit@20": {"model": 0.5, "baseline": 0.3, "difference": 0.2, "ci95": [0.1, 0.3]},
    }
    worse = {
        "predictions": 5,
        "baseline": "b",
        "brier": {"model": 0.3, "baseline": 0.2, "difference": 0.1, "ci95": [0.05, 0.2]},
    }
    text = scenario_table({"search": row, "purchase_intent": worse, "cart": None})
    lines = text.splitlines()
    assert lines[2].endswith("| 10 | yes |") and lines[3].endswith("| 5 | worse |")
    assert "no predictions" in lines[4]
