"""How the evaluation reports write a figure, an interval and a verdict (report.md, the terminal)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def _missing(value: Any) -> bool:
    """None, NaN or an infinity: a figure the data could not give."""
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def fmt(value: Any, digits: int = 4) -> str:
    """A figure for a table: n/a when missing or not finite, floats to `digits` places."""
    if _missing(value):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def interval(ci: Sequence[Any]) -> str:
    """A 95% interval as [low, high], n/a when either end is undefined."""
    if any(_missing(v) for v in ci):
        return "n/a"
    return f"[{ci[0]:.4f}, {ci[1]:.4f}]"


def beats(ci: Sequence[Any], lower_is_better: bool = False) -> str:
    """The verdict on an interval of model - baseline: yes when it lies on the better side of zero
    (above it, or below it for a metric where lower is better), worse on the other side, no when it
    holds zero, n/a when undefined."""
    if any(_missing(v) for v in ci):
        return "n/a"
    low, high = (-ci[1], -ci[0]) if lower_is_better else (ci[0], ci[1])
    return "yes" if low > 0 else ("worse" if high < 0 else "no")
