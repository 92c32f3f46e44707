"""The contract every next-item scorer (the sequence model and each baseline) implements.

Evaluation walks test sequences and asks a scorer for catalog scores at chosen positions, so
the model and the baselines are judged by the same code on the same predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from behavior_stream.data.splits import EvalSequence


class NextItemScorer(Protocol):
    """Scores all catalog items for the next item at given positions of a sequence."""

    name: str

    def score_sequence(self, seq: EvalSequence, positions: Sequence[int]) -> np.ndarray:
        """Float32 array (len(positions), n_items): row j scores the catalog for predicting
        `seq.events[positions[j]].item_id` from `seq.context + seq.events[:positions[j]]`.
        Higher is better; equal scores are ties (counted against the scorer)."""
        ...
