"""Purchase intent as served: the model's purchase probability for the current session, calibrated.

The probability comes from `SequenceModel.purchase_probability_of(representation)` (whatever
head the model has behind it; it reads only the representation, so a batch reuses the vectors its
feeds came from) and is mapped through the checkpoint's Platt calibration (training/calibration.py)
when the checkpoint has one; otherwise it is served raw, marked `"none"`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.messages import Calibration
from behavior_stream.stream.core.state import UserState


class PurchaseIntent(NamedTuple):
    """One user's purchase probability and how it was calibrated."""

    probability: float  # rounded to 5 decimals
    calibration: Calibration


@torch.inference_mode()
def purchase_intents(engine: ModelEngine, states: Sequence[UserState]) -> list[PurchaseIntent]:
    """The served purchase intent of each user (states under `engine`'s model)."""
    if not states:
        return []
    return intents_of(engine, engine.model.representation(engine.model_state(states)).numpy())


@torch.inference_mode()
def intents_of(engine: ModelEngine, vectors: Sequence[np.ndarray] | np.ndarray) -> list[PurchaseIntent]:
    """The served purchase intent from users' representations, (hidden,) each: e.g. the vectors
    `ModelEngine.recommend` already gave, so a batch builds its model state once."""
    if len(vectors) == 0:
        return []
    stacked = vectors if isinstance(vectors, np.ndarray) else np.stack(list(vectors))
    top = torch.from_numpy(np.ascontiguousarray(stacked))  # (n, hidden)
    raw = engine.model.purchase_probability_of(top).numpy()  # (n,)
    if engine.calibration is None:
        return [PurchaseIntent(round(float(p), 5), "none") for p in raw]
    calibrated = engine.calibration.apply(raw)
    return [PurchaseIntent(round(float(p), 5), "platt") for p in np.atleast_1d(calibrated)]
