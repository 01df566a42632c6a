"""Tests for resonance.topology: persistence, summaries, diagram distances, RTD, Mapper."""

from __future__ import annotations

import itertools
import math

import matplotlib
import numpy as np
import pytest

from resonance import topology as T
from resonance.topology.distances import _wasserstein_q
from resonance.topology.persistence import ripser_distance_matrix, scaled_distances
from resonance.topology.rtd import rtd_matrix

matplotlib.use("Agg")


def circle(n, r=1.0, centre=(0.0, 0.0), noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 2 * np.pi, n)
    return np.c_[r * np.cos(t) + centre[0], r * np.sin(t) + centre[1]] + noise * rng.normal(size=(n, 2))


def lengths(dgm):
    return dgm[:, 1] - dgm[:, 0]


def rotation(d, seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q


# --------------------------------------------------------------------------- persistence


def test_noisy_circle_has_one_long_h1_bar_and_noise_has_none():
    dgms = T.persistence(circle(200))
    assert len(dgms) == 2
    long = lengths(dgms[1])
    assert np.sum(long > 0.8) == 1 and long.max() > 1.2  # death ~ sqrt(3) for the unit circle
    blob = np.random.default_rng(1).normal(scale=0.6, size=(200, 2))
    assert lengths(T.persistence(blob)[1]).max() < 0.3


def test_two_circles_have_two_long_bars():
    X = np.r_[circle(150, 1.0, (0, 0), seed=1), circle(150, 1.5, (6, 0), seed=2)]
    long = lengths(T.persistence(X)[1])
    assert np.sum(long > 0.8) == 2


@pytest.mark.parametrize("max_points", [1000, 60])
def test_h0_of_k_clusters_has_k_minus_1_long_deaths_and_no_infinite_bar(max_points):
    rng = np.random.default_rng(0)
    k = 4
    centres = 10 * np.eye(k)
    X = np.concatenate([c + 0.1 * rng.normal(size=(50, k)) for c in centres])
    h0 = T.persistence(X, maxdim=0, max_points=max_points)[0]
    assert np.isfinite(h0).all() and (h0[:, 0] == 0).all()
    assert len(h0) == min(len(X), max_points) - 1  # the infinite bar is dropped
    assert np.sum(h0[:, 1] > 5) == k - 1
    assert np.allclose(np.sort(h0[:, 1])[-(k - 1):], 10 * np.sqrt(2), atol=1.0)


def test_persistence_is_deterministic_and_bounded():
    X = np.random.default_rng(0).normal(size=(400, 10))
    a = T.persistence(X, max_points=100, seed=3)
    b = T.persistence(X, max_points=100, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert len(a[0]) == 99
    r = T.persistence(X, max_points=100, subsample_method="random", seed=3)
    assert len(r[0]) == 99


def test_landmarks_cover_and_are_deterministic():
    X = np.random.default_rng(0).uniform(size=(2000, 2))
    idx = T.subsample(X, 100, method="landmark", seed=5)
    assert len(np.unique(idx)) == 100
    assert np.array_equal(idx, T.subsample(X, 100, method="landmark", seed=5))
    assert not np.array_equal(idx, T.subsample(X, 100, method="landmark", seed=6))
    from scipy.spatial.distance import cdist
    L = X[idx]
    cover = cdist(X, L).min(axis=1).max()
    sep = cdist(L, L)[np.triu_indices(100, 1)].min()
    # maxmin property: the covering radius never exceeds the landmarks' separation
    assert cover <= sep + 1e-12
    assert cover < 0.15  # 100 well-spread points in the unit square
    rnd = X[T.subsample(X, 100, method="random", seed=5)]
    assert cover < cdist(X, rnd).min(axis=1).max()


def test_random_subsample_and_small_m():
    X = np.random.default_rng(0).normal(size=(50, 3))
    idx = T.subsample(X, 10, method="random", seed=1)
    assert len(np.unique(idx)) == 10 and np.all(np.diff(idx) > 0)
    assert np.array_equal(idx, T.subsample(X, 10, method="random", seed=1))
    assert np.array_equal(T.subsample(X, 80, method="landmark"), np.arange(50))


def test_betti_curve():
    d = np.array([[0.0, 1.0], [0.5, 2.0], [1.5, np.inf]])
    assert T.betti_curve(d, [0, 0.5, 0.99, 1.0, 1.6, 2.0, 10]).tolist() == [1, 2, 2, 1, 2, 1, 1]
    assert T.betti_curve(np.zeros((0, 2)), [0, 1]).tolist() == [0, 0]


# --------------------------------------------------------------------------- summaries


def test_total_persistence_and_entropy():
    equal = np.array([[0.0, 2.0]] * 5)
    assert T.persistent_entropy(equal) == pytest.approx(math.log(5))
    assert T.persistent_entropy(equal, normalize=True) == pytest.approx(1.0)
    assert T.persistent_entropy([[1.0, 3.0]]) == 0.0
    assert T.persistent_entropy(np.zeros((0, 2))) == 0.0
    d = np.array([[0.0, 1.0], [1.0, 4.0], [0.0, np.inf]])
    assert T.total_persistence(d) == pytest.approx(4.0)
    assert T.total_persistence(d, p=2) == pytest.approx(10.0)
    p = np.array([1, 3]) / 4
    assert T.persistent_entropy(d) == pytest.approx(-(p * np.log(p)).sum())


def test_persistence_summary_on_a_hand_made_diagram():
    h0 = np.array([[0, 1], [0, 2], [0, 3], [0, np.inf]], dtype=float)
    h1 = np.array([[1, 2], [1, 3], [2, 6]], dtype=float)
    s = T.persistence_summary([h0, h1])
    assert len(s) == 41 and tuple(s) == T.SUMMARY_FEATURES
    expected = {
        # H0 deaths 1, 2, 3 (the infinite bar is dropped)
        "h0_death_mean": 2, "h0_death_min": 1, "h0_death_q25": 1.5, "h0_death_q50": 2,
        "h0_death_q75": 2.5, "h0_death_max": 3, "h0_death_std": math.sqrt(2 / 3),
        # H1 births 1, 1, 2
        "h1_birth_mean": 4 / 3, "h1_birth_min": 1, "h1_birth_q25": 1, "h1_birth_q50": 1,
        "h1_birth_q75": 1.5, "h1_birth_max": 2, "h1_birth_std": math.sqrt(2) / 3,
        # H1 deaths 2, 3, 6
        "h1_death_mean": 11 / 3, "h1_death_min": 2, "h1_death_q25": 2.5, "h1_death_q50": 3,
        "h1_death_q75": 4.5, "h1_death_max": 6, "h1_death_std": math.sqrt(26) / 3,
        # H1 persistence 1, 2, 4
        "h1_persistence_mean": 7 / 3, "h1_persistence_min": 1, "h1_persistence_q25": 1.5,
        "h1_persistence_q50": 2, "h1_persistence_q75": 3, "h1_persistence_max": 4,
        "h1_persistence_std": math.sqrt(14) / 3,
        # H1 birth/death 1/2, 1/3, 1/3
        "h1_ratio_mean": 7 / 18, "h1_ratio_min": 1 / 3, "h1_ratio_q25": 1 / 3,
        "h1_ratio_q50": 1 / 3, "h1_ratio_q75": 5 / 12, "h1_ratio_max": 1 / 2,
        "h1_ratio_std": 1 / (9 * math.sqrt(2)),
        "h0_total_persistence": 6, "h0_bar_count": 3,
        "h0_entropy": -sum(p * math.log(p) for p in (1 / 6, 2 / 6, 3 / 6)),
        "h1_total_persistence": 7, "h1_bar_count": 3,
        "h1_entropy": -sum(p * math.log(p) for p in (1 / 7, 2 / 7, 4 / 7)),
    }
    assert set(expected) == set(s)
    for k, v in expected.items():
        assert s[k] == pytest.approx(v), k


def test_persistence_summary_empty_h1_is_zero():
    s = T.persistence_summary([np.array([[0, 1.0], [0, 2.0]]), np.zeros((0, 2))])
    assert all(s[k] == 0.0 for k in s if k.startswith("h1_"))
    assert s["h0_bar_count"] == 2
    with pytest.raises(ValueError, match="H1"):
        T.persistence_summary([np.array([[0, 1.0]])])


# --------------------------------------------------------------------------- distances


def test_diagram_distance_known_values():
    a = np.array([[1.0, 3.0]])
    empty = np.zeros((0, 2))
    assert T.diagram_distance(a, a) == 0.0 and T.diagram_distance(a, a, "bottleneck") == 0.0
    # one bar against the empty diagram: L2 distance to the diagonal (d-b)/sqrt2 under
    # wasserstein, L-inf distance (d-b)/2 under bottleneck
    assert T.diagram_distance(a, empty) == pytest.approx(math.sqrt(2))
    assert T.diagram_distance(a, empty, order=2) == pytest.approx(math.sqrt(2))
    assert T.diagram_distance(a, empty, "bottleneck") == pytest.approx(1.0)
    two = np.array([[0.0, 2.0], [0.0, 4.0]])
    assert T.diagram_distance(two, empty) == pytest.approx((2 + 4) / math.sqrt(2))
    assert T.diagram_distance(two, empty, order=2) == pytest.approx(math.sqrt(2 + 8))
    assert T.diagram_distance(two, empty, "bottleneck") == pytest.approx(2.0)
    # near points match each other; far apart ones go to the diagonal
    assert T.diagram_distance([[0, 4.0]], [[0, 3.8]]) == pytest.approx(0.2)
    assert T.diagram_distance([[0, 4.0]], [[3, 3.2]]) == pytest.approx(4.2 / math.sqrt(2))
    # infinite bars are ignored
    assert T.diagram_distance([[0, 1.0], [0, np.inf]], [[0, 1.0]]) == 0.0


def _brute(S, T_, kind):
    """Optimal matching by enumeration on diagrams augmented with diagonal points."""
    M, N = len(S), len(T_)
    to_diagonal = 2 if kind == "bottleneck" else math.sqrt(2)  # L-inf vs L2 distance
    C = np.zeros((M + N, M + N))
    for i, j in itertools.product(range(M + N), range(M + N)):
        if i < M and j < N:
            diff = np.abs(S[i] - T_[j])
            C[i, j] = diff.max() if kind == "bottleneck" else np.hypot(*diff)
        elif i < M:
            C[i, j] = (S[i, 1] - S[i, 0]) / to_diagonal if j - N == i else np.inf
        elif j < N:
            C[i, j] = (T_[j, 1] - T_[j, 0]) / to_diagonal if i - M == j else np.inf
    best = np.inf
    for perm in itertools.permutations(range(M + N)):
        c = C[np.arange(M + N), perm]
        best = min(best, c.max() if kind == "bottleneck" else c.sum())
    return best


def test_diagram_distances_match_brute_force_and_are_ordered():
    rng = np.random.default_rng(0)
    for _ in range(6):
        S = np.sort(rng.uniform(0, 3, size=(3, 2)), axis=1)
        T_ = np.sort(rng.uniform(0, 3, size=(2, 2)), axis=1)
        w1 = T.diagram_distance(S, T_)
        b = T.diagram_distance(S, T_, "bottleneck")
        assert w1 == pytest.approx(_brute(S, T_, "wasserstein"))
        assert b == pytest.approx(_brute(S, T_, "bottleneck"))
        assert w1 == pytest.approx(_wasserstein_q(S, T_, 1.0))  # our order-q path = persim at q=1
        assert T.diagram_distance(T_, S) == pytest.approx(w1)
        w2, w5 = T.diagram_distance(S, T_, order=2), T.diagram_distance(S, T_, order=5)
        # L-inf <= L2 pointwise, so bottleneck <= W_inf(L2) <= W_q(L2) <= W_1(L2)
        assert b <= w5 + 1e-12 <= w2 + 2e-12 <= w1 + 3e-12


# --------------------------------------------------------------------------- resonance


def _two_clouds(n=150, seed=0):
    rng = np.random.default_rng(seed)
    X = np.c_[circle(n, seed=seed), 0.1 * rng.normal(size=(n, 3))]
    Y = np.c_[X[:, :2] ** 2, 0.3 * rng.normal(size=(n, 3))]  # a related but different cloud
    return X, Y


@pytest.mark.parametrize("max_points", [300, 60])
def test_topological_resonance_is_invariant_to_similarity_transforms(max_points):
    X, Y = _two_clouds()
    moved = 7.5 * Y @ rotation(5, 1) + 3.0
    kw = dict(max_points=max_points, n_subsamples=3)
    base = T.topological_resonance(X, Y, **kw).value
    assert base > 0.05
    assert T.topological_resonance(X, moved, **kw).value == pytest.approx(base, rel=1e-3, abs=1e-4)
    assert T.topological_resonance(0.01 * X @ rotation(5, 2) - 4, Y, **kw).value == pytest.approx(
        base, rel=1e-3, abs=1e-4)
    assert T.topological_resonance(X, 2 * X @ rotation(5, 3) + 1, **kw).value < 1e-3


def test_topological_null_gives_a_reference():
    X, _ = _two_clouds(n=100)
    same = T.topological_resonance(X, 3 * X @ rotation(5), max_points=100, n_null=4)
    assert same.value < 1e-3 < same.null_ci[0] <= same.null_mean <= same.null_ci[1]
    assert same.p_value == pytest.approx(1 / 5)
    again = T.topological_resonance(X, 3 * X @ rotation(5), max_points=100, n_null=4)
    assert np.array_equal(same.null, again.null)
    null = T.topological_null(X, 3 * X @ rotation(5), max_points=100, n_null=4)
    assert np.allclose(null, same.null)
    assert set(same.as_dict()) >= {"value", "null_mean", "null_ci_low", "null_ci_high", "p_value"}


# --------------------------------------------------------------------------- RTD


def test_rtd_isometric_copy_is_zero_and_independent_cloud_is_not():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 8))
    iso = X @ rotation(8) + 5.0
    assert T.rtd(X, iso) < 1e-6
    assert T.rtd(X, 3 * iso) < 1e-6  # the quantile normalisation removes scale
    indep = T.rtd(X, rng.normal(size=(120, 8)))
    small = T.rtd(X, X + 0.1 * rng.normal(size=X.shape))
    assert indep > 1.0
    assert small < indep / 3
    assert T.rtd(X, indep_y := rng.normal(size=(120, 8))) == pytest.approx(T.rtd(indep_y, X))


def test_rtd_block_matrix_and_subsampling():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(40, 5)), rng.normal(size=(40, 3))
    r1, r2 = scaled_distances(X), scaled_distances(Y)
    m = rtd_matrix(r1, r2, fast=False)
    assert np.all(m[:40, :40] == 0) and np.array_equal(m[40:, :40], r1)
    assert np.array_equal(m[40:, 40:], np.minimum(r1, r2)) and np.allclose(m, m.T)
    assert np.quantile(r1, 0.9) == pytest.approx(1.0)  # full matrix, as the RTD authors do
    pairs = scaled_distances(X, quantile_over="pairs")
    assert np.quantile(pairs[np.triu_indices(40, 1)], 0.9) == pytest.approx(1.0)
    assert T.rtd(X, Y, quantile_over="pairs") != pytest.approx(T.rtd(X, Y), abs=1e-9)
    with pytest.raises(ValueError, match="quantile_over must be one of"):
        scaled_distances(X, quantile_over="upper")
    # w_+ (lower triangle of the cross block at +inf) gives the same barcode as full w
    full = ripser_distance_matrix(m, 1)[1]
    fast = ripser_distance_matrix(rtd_matrix(r1, r2), 1)[1]
    assert np.allclose(np.sort(lengths(full)), np.sort(lengths(fast)))
    one_way = lengths(T.rtd_barcode(X, Y)).sum()
    assert T.rtd(X, Y, symmetric=False) == pytest.approx(one_way)
    assert T.rtd(X, Y) == pytest.approx((one_way + lengths(T.rtd_barcode(Y, X)).sum()) / 2)
    big = rng.normal(size=(90, 4))
    a = T.rtd(big, big ** 2, subsample_size=30, n_subsamples=3, seed=2)
    assert a == T.rtd(big, big ** 2, subsample_size=30, n_subsamples=3, seed=2)
    assert a != T.rtd(big, big ** 2, subsample_size=30, n_subsamples=3, seed=3)


# --------------------------------------------------------------------------- Mapper


def _blobs(seed=0):
    rng = np.random.default_rng(seed)
    X = np.r_[rng.normal(size=(100, 5)), rng.normal(size=(100, 5)) + 20]
    return X, np.repeat([0, 1], 100)


def test_mapper_separates_blobs_and_compares(tmp_path):
    X, labels = _blobs()
    g = T.mapper_graph(X)
    stats = T.mapper_stats(g)
    assert stats["components"] >= 2 and stats["nodes"] >= 2
    assert stats["coverage"] > 0.9
    for members in g["nodes"].values():  # no node mixes the blobs
        assert len(set(labels[members])) == 1
    import networkx as nx
    from kmapper.adapter import to_networkx
    assert stats["betti1"] == len(nx.cycle_basis(to_networkx(g)))
    assert g == T.mapper_graph(X)  # deterministic
    same = T.compare_mapper(g, g)
    assert same["comembership_jaccard"] == 1.0 and same["component_ari"] == 1.0
    assert all(v == 0 for k, v in same.items() if k.startswith("delta_"))
    other = T.mapper_graph(X, lens="l2norm", n_cubes=4, clusterer="agglomerative")
    diff = T.compare_mapper(g, other, n=len(X))
    assert 0 <= diff["comembership_jaccard"] < 1
    path = T.mapper_html(g, X, tmp_path / "sub" / "mapper.html", labels=labels)
    assert path.exists() and "<html" in path.read_text()[:2000].lower()
    ax = T.draw_mapper(g, labels=np.where(labels == 0, "a", "b"))
    assert ax.collections


def test_mapper_graph_on_a_circle_has_a_cycle():
    t = np.linspace(0, 2 * np.pi, 300, endpoint=False)
    X = np.c_[np.cos(t), np.sin(t)] + 0.01 * np.random.default_rng(0).normal(size=(300, 2))
    for clusterer in (None, "agglomerative"):
        stats = T.mapper_stats(T.mapper_graph(X, lens=X[:, 0], clusterer=clusterer))
        assert stats["betti1"] == 1 and stats["components"] == 1


# --------------------------------------------------------------------------- bad input


def test_bad_input_raises_value_error():
    X = np.random.default_rng(0).normal(size=(30, 3))
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        T.persistence(bad)
    with pytest.raises(ValueError, match="inf"):
        T.rtd(X, np.where(X > 2, np.inf, X))
    with pytest.raises(ValueError, match="rows"):
        T.persistence(X[:1])
    with pytest.raises(ValueError, match="at least 4"):
        T.persistence(X[:3], maxdim=1)
    with pytest.raises(ValueError, match="same stimuli"):
        T.topological_resonance(X, X[:20])
    with pytest.raises(ValueError, match="same stimuli"):
        T.rtd(X, X[:20])
    with pytest.raises(ValueError, match="constant"):
        T.persistence(np.ones((20, 3)))
    with pytest.raises(ValueError, match="constant"):
        T.rtd(X, np.ones((30, 2)))
    with pytest.raises(ValueError, match="constant"):
        T.mapper_graph(np.ones((20, 3)))
    with pytest.raises(ValueError, match="method"):
        T.subsample(X, 5, method="kmeans")
    with pytest.raises(ValueError, match="metric"):
        T.diagram_distance([[0, 1]], [[0, 1]], metric="sliced")
    with pytest.raises(ValueError, match="die before"):
        T.diagram_distance([[2, 1]], [[0, 1]])
    with pytest.raises(ValueError, match="lens"):
        T.mapper_graph(X, lens=np.arange(10))
    with pytest.raises(ValueError, match="max_points"):
        T.persistence(X, max_points=2)
