"""Purchase-intent calibration: Platt scaling of the model's purchase probability, fitted on validation.

The model's purchase head is trained for its own label (see `purchase_probability`); what the
stream serves is "will this session still end in a purchase", so the head's probability p is
mapped through sigmoid(a * logit(p) + b), with a and b fitted by logistic regression (Newton's
method, a little L2 on a and b) on the validation part of the training run. The two numbers are
stored in the checkpoint's metadata as plain floats; a checkpoint without them serves the raw
probability and says so (`purchase_calibration: "none"`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from behavior_stream.data.splits import EvalSequence
    from behavior_stream.evaluation.model_scorer import ModelScorer

log = logging.getLogger(__name__)

METADATA_KEY = "purchase_calibration"
_EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) with p clipped to [1e-6, 1 - 1e-6]."""
    q = np.clip(np.asarray(p, np.float64), _EPS, 1.0 - _EPS)
    return np.log(q / (1.0 - q))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), computed without overflow."""
    x = np.asarray(x, np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


@dataclass(frozen=True)
class Platt:
    """sigmoid(a * logit(p) + b), fitted on `n` validation positions with `positives` purchases."""

    a: float
    b: float
    n: int
    positives: int
    threshold: float = 0.5  # the F1-best threshold on validation (of the calibrated probability)

    def apply(self, p: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of raw ones (any shape)."""
        return sigmoid(self.a * logit(p) + self.b)

    def to_metadata(self) -> dict[str, Any]:
        """Plain numbers for the checkpoint's metadata."""
        return {"method": "platt", **asdict(self)}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> Platt | None:
        """The calibration stored in a checkpoint's metadata; None for older checkpoints."""
        raw = metadata.get(METADATA_KEY)
        if not isinstance(raw, dict) or raw.get("method") != "platt":
            return None
        return cls(
            float(raw["a"]),
            float(raw["b"]),
            int(raw["n"]),
            int(raw["positives"]),
            float(raw.get("threshold", 0.5)),
        )


def fit_platt(probs: np.ndarray, labels: np.ndarray, l2: float = 1e-3, iterations: int = 50) -> Platt:
    """Logistic regression of `labels` (bool, n) on logit(`probs`) (n,) by Newton's method.

    Raises ValueError when there is nothing to fit (no examples, or a single class).
    """
    y = np.asarray(labels, np.float64)
    if y.size == 0 or y.min() == y.max():
        raise ValueError(f"calibration needs both classes, got {int(y.sum())} positives of {y.size}")
    x = np.stack([logit(probs), np.ones_like(y)], 1)  # (n, 2)

    def loss(w: np.ndarray) -> float:
        z = x @ w
        return float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * w @ w)

    # Start at the identity shifted to the base rate; Newton steps, halved until the loss falls
    # (a full step from a far start overshoots when the raw probabilities are off in scale).
    w = np.array([1.0, float(logit(np.array([y.mean()]))[0] - logit(probs).mean())])
    current = loss(w)
    for _ in range(iterations):
        p = sigmoid(x @ w)
        grad = x.T @ (p - y) + l2 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        for _ in range(30):
            if loss(w - step) <= current:
                break
            step = step / 2
        w = w - step
        previous, current = current, loss(w)
        if previous - current < 1e-10 * max(1.0, abs(previous)):
            break
    platt = Platt(float(w[0]), float(w[1]), int(y.size), int(y.sum()))
    return Platt(platt.a, platt.b, platt.n, platt.positives, best_f1_threshold(platt.apply(probs), y > 0.5))


def best_f1_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    """The probability threshold (predict positive iff p >= it) with the highest F1 on these examples."""
    p = np.asarray(probs, np.float64)
    y = np.asarray(labels, bool)
    order = np.argsort(-p, kind="stable")
    tp = np.cumsum(y[order])
    k = np.arange(1, len(p) + 1)
    f1 = 2 * tp / (k + y.sum())  # precision tp/k, recall tp/P: F1 = 2tp / (k + P)
    # Only cut between distinct values: predicting the first k means threshold p[order][k-1].
    last_of_value = np.append(p[order][1:] != p[order][:-1], True)
    f1 = np.where(last_of_value, f1, -1.0)
    return float(p[order][int(np.argmax(f1))]) if len(p) else 0.5


def calibration_metadata(scorer: ModelScorer, valid: Sequence[EvalSequence]) -> dict[str, Any] | None:
    """The Platt calibration fitted on the validation sequences, as checkpoint metadata; None
    (logged) when validation has no purchase in some session or no session without one."""
    # Imported here: the rest of this module is NumPy only, and the stream's wire types read it.
    from behavior_stream.evaluation.scenario_intent import intent_examples

    raw, labels, _ = intent_examples(scorer, valid)
    try:
        platt = fit_platt(raw, labels)
    except ValueError as exc:
        log.warning("purchase intent left uncalibrated: %s", exc)
        return None
    log.info("purchase intent calibrated on %d validation positions (%d positive): a=%.3f b=%.3f",
             platt.n, platt.positives, platt.a, platt.b)  # fmt: skip
    return platt.to_metadata()
