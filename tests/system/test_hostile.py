"""Every hostile record kind gets its documented reason (no broker; the broker run is in test_bad_input)."""

from __future__ import annotations

import pytest

from behavior_stream.schema.events import Invalid, parse_event
from behavior_stream.testing.hostile import KINDS, hostile_records


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_is_rejected_with_its_reason(kind: str) -> None:
    for _, reason, raw in [r for r in hostile_records(len(KINDS) * 20, seed=3) if r[0] == kind]:
        result = parse_event(raw)
        assert isinstance(result, Invalid), raw[:80]
        assert result.reason is reason, (kind, result.detail)


def test_generation_is_deterministic() -> None:
    assert hostile_records(100, seed=1) == hostile_records(100, seed=1)
    assert hostile_records(100, seed=1) != hostile_records(100, seed=2)
