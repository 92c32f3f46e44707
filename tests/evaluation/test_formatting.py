"""The reports' one way of writing a figure, an interval and a verdict."""

from __future__ import annotations

import math

import pytest

from behavior_stream.evaluation.formatting import beats, fmt, interval
from behavior_stream.evaluation.scenario_report import scenario_table


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "n/a"),
        (math.nan, "n/a"),
        (math.inf, "n/a"),
        (-math.inf, "n/a"),
        (0.12345, "0.1235"),
        (5, "5"),
        ("gru", "gru"),
    ],
)
def test_fmt(value: object, text: str) -> None:
    assert fmt(value) == text


def test_fmt_digits() -> None:
    assert fmt(2 / 3, digits=2) == "0.67"


def test_interval() -> None:
    assert interval([0.1, 0.25]) == "[0.1000, 0.2500]"
    assert interval([None, 0.2]) == "n/a"
    assert interval([0.1, math.nan]) == "n/a"


@pytest.mark.parametrize(
    ("ci", "lower_is_better", "verdict"),
    [
        ([0.01, 0.05], False, "yes"),
        ([-0.05, -0.01], False, "worse"),
        ([-0.01, 0.01], False, "no"),
        ([0.0, 0.02], False, "no"),  # touching zero is not above it
        ([-0.05, -0.01], True, "yes"),  # a Brier score that fell
        ([0.01, 0.05], True, "worse"),
        ([-0.01, 0.01], True, "no"),
        ([math.nan, 0.1], False, "n/a"),
        ([None, None], True, "n/a"),
    ],
)
def test_beats(ci: list[float | None], lower_is_better: bool, verdict: str) -> None:
    assert beats(ci, lower_is_better) == verdict


def test_scenario_table_brier_and_undefined_rows() -> None:
    """Brier is judged lower-is-better; an interval the data could not give reads n/a, not nan."""
    section = {
        "purchase_intent": {
            "predictions": 1200,
            "brier": {"model": 0.08, "baseline": 0.1, "difference": -0.02, "ci95": [-0.03, -0.01]},
            "roc_auc": {"model": 0.7, "baseline": 0.5, "difference": 0.2, "ci95": [math.nan, math.nan]},
        },
        "search": None,
    }
    lines = scenario_table(section).splitlines()
    assert (
        lines[2] == "| purchase_intent | brier | 0.0800 | 0.1000 | -0.0200 [-0.0300, -0.0100] | 1,200 | yes |"
    )
    assert lines[3] == "| purchase_intent | roc_auc | 0.7000 | 0.5000 | 0.2000 n/a | 1,200 | n/a |"
    assert lines[4] == "| search | - | - | - | no predictions in this data | 0 | - |"
