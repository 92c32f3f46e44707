"""How the evaluation reports write a figure and an interval (report.md and the terminal)."""

from __future__ import annotations

import math
from typing import Any


def fmt(value: Any, digits: int = 4) -> str:
    """A figure for a table: n/a when missing or NaN, floats to `digits` places."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def interval(ci: list[Any]) -> str:
    """A 95% interval as [low, high], n/a when either end is undefined."""
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in ci):
        return "n/a"
    return f"[{ci[0]:.4f}, {ci[1]:.4f}]"
