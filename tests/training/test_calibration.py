"""Platt calibration of the purchase probability: fitting, the F1 threshold, the metadata round trip."""

from __future__ import annotations

import numpy as np
import pytest

from behavior_stream.training.calibration import Platt, best_f1_threshold, fit_platt, logit, sigmoid


def test_fit_recovers_a_known_mapping_from_a_badly_scaled_start() -> None:
    rng = np.random.default_rng(0)
    raw = sigmoid(rng.normal(-4.0, 1.5, 20_000))  # raw probabilities far below the true rate
    true = sigmoid(0.4 * logit(raw) + 1.5)
    labels = rng.random(raw.size) < true
    platt = fit_platt(raw, labels)
    assert platt.a == pytest.approx(0.4, abs=0.05) and platt.b == pytest.approx(1.5, abs=0.25)
    assert platt.apply(raw).mean() == pytest.approx(labels.mean(), abs=0.005)
    assert (platt.n, platt.positives) == (20_000, int(labels.sum()))


def test_fit_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both classes"):
        fit_platt(np.array([0.2, 0.3]), np.array([True, True]))


def test_best_f1_threshold_on_a_hand_case() -> None:
    probs = np.array([0.9, 0.8, 0.4, 0.3, 0.1])
    labels = np.array([True, False, True, False, False])
    # Top 1: F1 2/3; top 2: 0.5; top 3: 0.8; top 4: 2/3 -> cut at 0.4.
    assert best_f1_threshold(probs, labels) == 0.4


def test_metadata_round_trip_and_old_checkpoints() -> None:
    platt = Platt(0.5, -1.0, 100, 20, 0.3)
    assert Platt.from_metadata({"purchase_calibration": platt.to_metadata()}) == platt
    assert Platt.from_metadata({}) is None
    assert Platt.from_metadata({"purchase_calibration": None}) is None
