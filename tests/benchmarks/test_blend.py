"""The model / sknn blend: two distributions mixed by a share, on hand-computed cases."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from behavior_stream.data.splits import EvalSequence
from benchmarks.blend import Blend, blend_scores


def test_blend_mixes_the_model_softmax_with_the_neighbours_share() -> None:
    model = np.array([[0.0, np.log(3.0)], [5.0, 5.0]])  # softmax rows: [1/4, 3/4], [1/2, 1/2]
    knn = np.array([[2.0, 6.0], [0.0, 0.0]])  # shares: [1/4, 3/4]; the second row has no neighbours
    out = blend_scores(model, knn, 0.5)
    assert out == pytest.approx(np.array([[0.25, 0.75], [0.25, 0.25]]))
    assert blend_scores(model, knn, 1.0) == pytest.approx(np.array([[0.25, 0.75], [0.5, 0.5]]))
    # The row of large logits stays finite (the softmax is shifted by the row maximum).
    assert np.isfinite(blend_scores(np.array([[1000.0, 0.0]]), np.array([[0.0, 1.0]]), 0.8)).all()


class Fixed:
    """A scorer that returns the same scores for every position."""

    def __init__(self, name: str, row: list[float]) -> None:
        self.name, self.row = name, np.array(row)

    def score_sequence(self, seq: EvalSequence, positions: Sequence[int]) -> np.ndarray:
        return np.tile(self.row, (len(positions), 1))


def test_blend_scorer_ranks_by_the_mix_and_checks_alpha() -> None:
    model, knn = Fixed("m", [np.log(3.0), 0.0, 0.0]), Fixed("k", [0.0, 0.0, 4.0])
    seq = EvalSequence(key="u", context=(), events=())
    # model: [3/5, 1/5, 1/5]; sknn: [0, 0, 1]. alpha 0.5: [0.3, 0.1, 0.6], so item 2 leads.
    scores = Blend(model, knn, 0.5).score_sequence(seq, [0, 1])
    assert scores.shape == (2, 3) and scores[0] == pytest.approx([0.3, 0.1, 0.6])
    assert Blend(model, knn, 0.9).score_sequence(seq, [0]).argmax() == 0
    with pytest.raises(ValueError, match="alpha"):
        Blend(model, knn, 1.5)
