"""Purchase intent offline: the model's purchase probability at every test position, and its label.

The label is `scenarios.session_purchase_labels` (a purchase still to come in the current
session); the probability is `SequenceModel.purchase_probability` of the state after the prefix,
as the stream serves it before calibration. Used by the scenario evaluation and by training,
which fits the calibration on the validation part (training/calibration.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from behavior_stream.data.splits import EvalSequence
from behavior_stream.evaluation import scenarios as S
from behavior_stream.evaluation.model_scorer import ModelScorer
from behavior_stream.nn.state import ModelState


@torch.inference_mode()
def intent_probabilities(
    scorer: ModelScorer, seqs: Sequence[EvalSequence], positions: Sequence[Sequence[int]]
) -> np.ndarray:
    """The model's `purchase_probability` after context + events[:p] for every position, concatenated.

    The state is rebuilt from the forward's top layer and history window (what the model's
    purchase head reads), batched like the next-item scoring.
    """
    parts = []
    for start in range(0, len(seqs), scorer.batch_size):
        sl = slice(start, start + scorer.batch_size)
        top, hist, types = scorer._prefix_states(seqs[sl], positions[sl])
        n = top.shape[0]
        state = ModelState(
            h=top[None].expand(scorer.model.config.num_layers, n, -1).contiguous(),
            c=torch.zeros(scorer.model.config.num_layers, n, top.shape[1])
            if scorer.model.config.cell == "lstm"
            else None,
            last_ts=torch.zeros(n, dtype=torch.int64),
            last_session=torch.zeros(n, dtype=torch.int64),
            history=hist,
            history_types=types,
        )
        parts.append(scorer.model.purchase_probability(state).numpy().astype(np.float64))
    return np.concatenate(parts) if parts else np.zeros(0)


def intent_examples(
    scorer: ModelScorer, seqs: Sequence[EvalSequence]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(raw probabilities, session-purchase labels, sequence ids) at every position t >= 1."""
    kept = [i for i, s in enumerate(seqs) if len(s.events) > 1]
    positions = [list(range(1, len(seqs[i].events))) for i in kept]
    probs = intent_probabilities(scorer, [seqs[i] for i in kept], positions)
    labels = np.concatenate(
        [S.session_purchase_labels(seqs[i], p) for i, p in zip(kept, positions, strict=True)]
        or [np.zeros(0, bool)]
    )
    ids = np.concatenate(
        [np.full(len(p), i) for i, p in zip(kept, positions, strict=True)] or [np.zeros(0, np.int64)]
    )
    return probs, labels, ids
