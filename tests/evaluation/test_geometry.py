"""Geometry and stability metrics on constructed cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from behavior_stream.evaluation import geometry as G


def test_alignment_is_zero_for_identical_views_and_ignores_scale() -> None:
    x = np.random.default_rng(0).normal(size=(6, 4))
    assert G.alignment(x, x) == pytest.approx(0.0, abs=1e-12)
    assert G.alignment(x, 3.0 * x) == pytest.approx(0.0, abs=1e-12)  # normalised: only direction counts
    assert G.alignment(x, -x) == pytest.approx(4.0)  # antipodal views: the maximum
    per_pair = G.alignment_per_pair(np.eye(2), np.array([[1.0, 0.0], [1.0, 0.0]]))
    np.testing.assert_allclose(per_pair, [0.0, 2.0])  # orthogonal unit vectors: squared distance 2


def test_alignment_rejects_views_of_different_shapes() -> None:
    with pytest.raises(ValueError, match="equal shape"):
        G.alignment(np.ones((3, 2)), np.ones((2, 2)))


def test_uniformity_of_an_orthonormal_basis_and_of_a_collapsed_set() -> None:
    # Every pair of basis vectors is at squared distance 2: log exp(-2 * 2) = -4.
    assert G.uniformity(np.eye(5)) == pytest.approx(-4.0)
    assert G.uniformity(np.eye(5), t=1.0) == pytest.approx(-2.0)
    assert G.uniformity(np.ones((4, 3))) == pytest.approx(0.0, abs=1e-12)  # all users on one point
    # Two antipodal points, the most spread two vectors can be: -t * 4.
    assert G.uniformity(np.array([[1.0, 0.0], [-2.0, 0.0]])) == pytest.approx(-8.0)


def test_effective_rank_of_rank_one_identity_and_zero_matrices() -> None:
    rng = np.random.default_rng(1)
    rank_one = np.outer(rng.normal(size=8), rng.normal(size=5))
    assert G.effective_rank(rank_one) == pytest.approx(1.0)
    assert G.effective_rank(rank_one, center=False) == pytest.approx(1.0)
    assert G.effective_rank(np.eye(5), center=False) == pytest.approx(5.0)
    # Centring I_5 leaves 4 equal singular values (and one 0).
    assert G.effective_rank(np.eye(5)) == pytest.approx(4.0)
    # An offset shared by every user is not a direction once centred.
    assert G.effective_rank(np.ones((6, 3)) * 7.0) == 0.0
    # Unequal spectrum: singular values (3, 1) -> p = (0.75, 0.25).
    p = np.array([0.75, 0.25])
    expected = math.exp(-(p * np.log(p)).sum())
    assert G.effective_rank(np.diag([3.0, 1.0]), center=False) == pytest.approx(expected)


def test_jaccard_matrix() -> None:
    jac = G.jaccard_matrix([{"a", "b"}, {"b", "c"}, set(), {"a", "b"}])
    assert jac[0, 1] == pytest.approx(1 / 3)
    assert jac[0, 3] == pytest.approx(1.0)
    assert jac[2, 2] == 0.0 and jac[0, 2] == 0.0  # empty sets are similar to nothing


def grouped_users(groups: int, size: int) -> tuple[list[set[str]], np.ndarray]:
    """Users in groups sharing two items (plus one of their own); vectors = group one-hots."""
    sets = [{f"g{g}a", f"g{g}b", f"u{g}_{i}"} for g in range(groups) for i in range(size)]
    x = np.repeat(np.eye(groups), size, axis=0) + 0.01 * np.random.default_rng(0).normal(
        size=(groups * size, groups)
    )
    return sets, x


def test_knn_agreement_is_one_when_vectors_mirror_histories_and_zero_when_they_do_not() -> None:
    sets, x = grouped_users(3, 4)
    k = 3  # exactly the group mates
    np.testing.assert_allclose(G.knn_agreement_per_user(x, sets, k), 1.0)
    # Vectors that pair each user with one user of every other group: no neighbour shares an item.
    mixed = np.eye(4)[np.arange(12) % 4]
    np.testing.assert_allclose(G.knn_agreement_per_user(mixed, sets, 2), 0.0)
    # Random neighbours hit the 3 group mates among 11 other users at rate 3/11.
    assert G.knn_chance(sets, k) == pytest.approx(3 / 11)


def test_knn_agreement_ties_and_users_without_reference_neighbours() -> None:
    # User 0 shares one item with each of users 1..3 equally (a tie at k=1), user 4 shares nothing.
    sets = [{"a", "b", "c"}, {"a"}, {"b"}, {"c"}, {"z"}]
    x = np.array([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0], [1.0, 0.1], [1.0, 0.05]])
    scores = G.knn_agreement_per_user(x, sets, 1)
    # User 0's cosine neighbour is user 4 (no shared item) -> 0; user 4 has no reference -> NaN.
    assert scores[0] == 0.0 and math.isnan(scores[4])
    x[4] = [-1.0, -1.0]  # now user 0's nearest is user 3, one of the tied Jaccard neighbours
    assert G.knn_agreement_per_user(x, sets, 1)[0] == 1.0
    with pytest.raises(ValueError, match="1 <= k < n"):
        G.knn_agreement_per_user(x, sets, 5)


def test_stability_of_a_constant_sequence_is_zero_and_steps_split_by_boundary() -> None:
    constant = np.tile(np.array([0.3, -0.2, 0.5]), (6, 1))
    np.testing.assert_array_equal(G.step_norms(constant), np.zeros(5))
    summary = G.stability(G.step_norms(constant), np.array([False, True, False, False, True]))
    assert summary["within_session"]["p99"] == 0.0 and summary["session_boundary"]["p50"] == 0.0
    h = np.array([[0.0, 0.0], [3.0, 4.0], [3.0, 4.0], [3.0, 5.0]])
    norms = G.step_norms(h)
    np.testing.assert_allclose(norms, [5.0, 0.0, 1.0])
    summary = G.stability(norms, np.array([True, False, False]))
    assert summary["session_boundary"] == {"p50": 5.0, "p90": 5.0, "p99": 5.0, "n": 1}
    assert summary["within_session"]["p50"] == pytest.approx(0.5) and summary["within_session"]["n"] == 2


def test_quantile_summary_of_nothing_is_nan() -> None:
    empty = G.quantile_summary(np.zeros(0))
    assert empty["n"] == 0 and all(math.isnan(empty[k]) for k in ("p50", "p90", "p99"))
    with pytest.raises(ValueError, match="differ"):
        G.stability(np.zeros(3), np.zeros(2, dtype=bool))
