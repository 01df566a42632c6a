"""The PRH protocol helpers (resonance.prh): grid of mutual k-NN and nulls for its maximum."""

import numpy as np
import pytest

from resonance import prh, similarity


def _layers(seed=0, n=120):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 12))
    A = [base @ rng.standard_normal((12, 20)) + 0.3 * rng.standard_normal((n, 20)) for _ in range(3)]
    B = [base[:, :8] @ rng.standard_normal((8, 10)) + s * rng.standard_normal((n, 10))
         for s in (0.2, 1.0, 5.0)]
    return A, B


def test_grid_matches_mutual_knn_with_clamping():
    A, B = _layers()
    grid = prh.knn_grid([prh.neighbours(x) for x in A], [prh.neighbours(y) for y in B])
    ref = [[similarity.mutual_knn(x, y, k=10, clamp_quantile=0.95) for y in B] for x in A]
    np.testing.assert_allclose(grid, ref)


def test_null_draw_equals_recomputing_on_permuted_rows():
    A, B = _layers(1)
    na, nb = [prh.neighbours(x) for x in A], [prh.neighbours(y) for y in B]
    perms = prh.shuffles(len(A[0]), 3, seed=4)
    out = prh.grid_alignment(na, nb, perms)
    for perm, value in zip(perms, out.null):
        assert value == pytest.approx(prh.knn_grid(na, [prh.neighbours(y[perm]) for y in B]).max())
    assert out.best == (int(np.argmax(out.grid) // 3), int(np.argmax(out.grid) % 3))
    assert out.value > out.null.max() and out.p_value == pytest.approx(1 / 4)


def test_unrelated_clouds_sit_at_chance():
    rng = np.random.default_rng(2)
    X, Y = rng.standard_normal((400, 16)), rng.standard_normal((400, 16))
    out = prh.grid_alignment([prh.neighbours(X)], [prh.neighbours(Y)], prh.shuffles(400, 99))
    assert abs(out.value - prh.chance(400)) < 0.02
    assert out.p_value > 0.05


def test_within_group_shuffles_keep_groups():
    groups = np.array(list("aabbbcccc"))
    for perm in prh.within_group_shuffles(groups, 5, seed=1):
        assert sorted(perm) == list(range(9))
        assert (groups[perm] == groups).all()


def test_bad_shapes_are_errors():
    A, B = _layers()
    with pytest.raises(ValueError, match="share one"):
        prh.knn_grid([prh.neighbours(A[0])], [prh.neighbours(B[0], k=5)])
    with pytest.raises(ValueError, match="permutation of 120"):
        prh.grid_alignment([prh.neighbours(A[0])], [prh.neighbours(B[0])], [np.arange(5)])
