"""Each measure against a value computed here, straight from its paper's definition.

The reference formulas below are written from the published definitions (not from any
implementation): Kornblith et al. 2019 (linear and RBF CKA, the RBF bandwidth of their demo),
Song et al. 2012 (the unbiased HSIC as a U-statistic over distinct index tuples), Huh et al. 2024
(mutual k-NN), Raghu et al. 2017 (SVCCA), Morcos et al. 2018 (PWCCA), Williams et al. 2021
(Procrustes shape distances), Barannikov et al. 2022 (RTD). They favour the textbook route
(whitening matrices, explicit neighbour sets, an explicit Procrustes rotation, loops over
index tuples) over the library's faster algebra, so the two share no code path.
"""

from itertools import permutations

import numpy as np
import pytest
from ripser import ripser
from scipy.linalg import orthogonal_procrustes, svd
from scipy.spatial.distance import cdist

from resonance import similarity as S
from resonance import topology as T


def _inputs(n=40, d1=6, d2=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d1))
    Y = np.tanh(X @ rng.standard_normal((d1, d2))) + 0.5 * rng.standard_normal((n, d2))
    return X, Y


def _centre(X):
    return X - X.mean(axis=0)


def _inv_sqrt(C):
    w, V = np.linalg.eigh(C)
    return V @ np.diag(w ** -0.5) @ V.T


# ------------------------------------------------------------------ CKA (Kornblith et al. 2019)

def _hsic_biased(K, L):
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    return np.trace(K @ H @ L @ H) / (n - 1) ** 2


def _cka_from_grams(K, L, hsic=_hsic_biased):
    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


def _rbf(X, threshold):
    """Their demo's bandwidth: sigma² = threshold² · median of all n² squared distances."""
    sq = cdist(X, X, "sqeuclidean")
    return np.exp(-sq / (2 * threshold ** 2 * np.median(sq)))


def test_linear_cka_is_kornblith_eq():
    X, Y = _inputs()
    Xc, Yc = _centre(X), _centre(Y)
    expected = (np.linalg.norm(Yc.T @ Xc) ** 2
                / (np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc)))
    assert S.cka(X, Y) == pytest.approx(expected, rel=1e-12)
    assert S.similarity(X, Y, "cka_linear") == pytest.approx(
        _cka_from_grams(X @ X.T, Y @ Y.T), rel=1e-10)


@pytest.mark.parametrize("threshold", [0.5, 1.0])
def test_rbf_cka_uses_their_bandwidth(threshold):
    X, Y = _inputs(seed=1)
    expected = _cka_from_grams(_rbf(X, threshold), _rbf(Y, threshold))
    assert S.cka(X, Y, kernel="rbf", threshold=threshold) == pytest.approx(expected, rel=1e-10)
    # the old off-diagonal convention is a different number (by ~1e-3 at this n)
    old = S.cka(X, Y, kernel="rbf", threshold=threshold, median_over="pairs")
    assert old != pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------ unbiased HSIC (Song et al.)

def _hsic_u_statistic(K, L):
    """HSIC = E k(x,x')l(y,y') + E k(x,x') E l(y'',y''') - 2 E k(x,x')l(x,y''), every
    expectation estimated by the mean over tuples of *distinct* indices (a U-statistic)."""
    n = K.shape[0]
    pairs = [(i, j) for i, j in permutations(range(n), 2)]
    triples = list(permutations(range(n), 3))
    quads = list(permutations(range(n), 4))
    first = np.mean([K[i, j] * L[i, j] for i, j in pairs])
    second = np.mean([K[i, j] * L[q, r] for i, j, q, r in quads])
    third = np.mean([K[i, j] * L[i, q] for i, j, q in triples])
    return first + second - 2 * third


def test_debiased_hsic_is_the_u_statistic():
    X, Y = _inputs(n=8, seed=2)
    K, L = X @ X.T, _rbf(Y, 1.0)
    assert S.hsic(K, L, debiased=True) == pytest.approx(_hsic_u_statistic(K, L), rel=1e-10)


def test_debiased_linear_cka_from_the_u_statistic():
    X, Y = _inputs(n=9, seed=3)
    K, L = _centre(X) @ _centre(X).T, _centre(Y) @ _centre(Y).T
    expected = _cka_from_grams(K, L, _hsic_u_statistic)
    assert S.similarity(X, Y, "cka_linear_debiased") == pytest.approx(expected, rel=1e-9)


# ------------------------------------------------------------------ mutual k-NN (Huh et al.)

def test_mutual_knn_is_the_mean_neighbour_overlap():
    X, Y = _inputs(n=50, seed=4)
    k = 6

    def neighbour_sets(Z):
        U = Z / np.linalg.norm(Z, axis=1, keepdims=True)
        cosine = U @ U.T
        ranked = [[j for j in np.argsort(-cosine[i], kind="stable") if j != i]
                  for i in range(len(Z))]
        return [set(row[:k]) for row in ranked]

    nx, ny = neighbour_sets(X), neighbour_sets(Y)
    expected = np.mean([len(a & b) / k for a, b in zip(nx, ny)])
    assert S.mutual_knn(X, Y, k=k) == pytest.approx(expected, abs=1e-15)


def test_exact_clamp_is_the_order_statistic_of_all_entries():
    X, _ = _inputs(n=30, d1=20, seed=5)
    values = np.sort(np.abs(X).ravel())
    t = values[int(0.9 * values.size)]
    np.testing.assert_array_equal(S.clamp_outliers(X, 0.9, exact=True), np.clip(X, -t, t))
    t_rows = np.mean([np.quantile(np.abs(row), 0.9) for row in X])
    np.testing.assert_allclose(S.clamp_outliers(X, 0.9), np.clip(X, -t_rows, t_rows))


# ------------------------------------------------------------------ CCA family (Raghu, Morcos)

def _canonical(Xc, Yc):
    """Canonical correlations and X-side canonical variates (unit norm, in sample space) from
    the whitened cross-covariance ``Cxx^-1/2 Cxy Cyy^-1/2``."""
    n = Xc.shape[0]
    Cxx, Cyy, Cxy = Xc.T @ Xc / (n - 1), Yc.T @ Yc / (n - 1), Xc.T @ Yc / (n - 1)
    Wx, Wy = _inv_sqrt(Cxx), _inv_sqrt(Cyy)
    U, rho, _ = svd(Wx @ Cxy @ Wy, full_matrices=False)
    variates = Xc @ Wx @ U
    return rho, variates / np.linalg.norm(variates, axis=0)


def _principal(Xc, keep):
    U, s, _ = svd(Xc, full_matrices=False)
    if isinstance(keep, float):  # fewest directions whose variance share reaches keep
        share = np.cumsum(s ** 2) / np.sum(s ** 2)
        keep = int(np.argmax(share >= keep)) + 1
    return U[:, :keep] * s[:keep]


@pytest.mark.parametrize("keep", [3, 0.9])
def test_svcca_is_mean_cca_of_the_principal_subspaces(keep):
    X, Y = _inputs(n=60, d1=10, d2=8, seed=6)
    rho, _ = _canonical(_principal(_centre(X), keep), _principal(_centre(Y), keep))
    assert S.svcca(X, Y, keep=keep) == pytest.approx(rho.mean(), rel=1e-10)


def test_pwcca_weights_by_projection_on_the_centred_neurons():
    X, Y = _inputs(n=60, d1=4, d2=7, seed=7)  # X has fewer neurons: its variates weigh
    Xc = _centre(X)
    rho, variates = _canonical(Xc, _centre(Y))
    weights = np.abs(variates.T @ Xc).sum(axis=1)
    assert S.pwcca(X, Y) == pytest.approx(weights @ rho / weights.sum(), rel=1e-10)


# ------------------------------------------------------------------ Procrustes (Williams et al.)

def _padded(A, d):
    return np.hstack([A, np.zeros((A.shape[0], d - A.shape[1]))])


def test_procrustes_forms_from_the_optimal_rotation():
    X, Y = _inputs(n=40, d1=6, d2=4, seed=8)
    Xc, Yc = _centre(X), _padded(_centre(Y), 6)
    Q, _ = orthogonal_procrustes(Yc, Xc)  # argmin_Q |Yc Q - Xc|
    Xu, Yu = Xc / np.linalg.norm(Xc), Yc / np.linalg.norm(Yc)
    assert S.procrustes_distance(X, Y) == pytest.approx(
        np.arccos(np.sum(Xu * (Yu @ Q))), rel=1e-10)
    assert S.procrustes_distance(X, Y, "euclidean") == pytest.approx(
        np.linalg.norm(Xu - Yu @ Q), rel=1e-10)
    assert S.procrustes_distance(X, Y, "euclidean_unscaled") == pytest.approx(
        np.linalg.norm(Xc - Yc @ Q), rel=1e-10)


# ------------------------------------------------------------------ RTD (Barannikov et al.)

def _rtd_one_way(X, Y):
    """Sum of H1 bar lengths of the Rips barcode of [[0, wᵀ], [w, min(w, w~)]], each distance
    matrix divided by the 0.9-quantile of all its n² entries."""
    w, w2 = cdist(X, X), cdist(Y, Y)
    w, w2 = w / np.quantile(w, 0.9), w2 / np.quantile(w2, 0.9)
    n = len(X)
    m = np.block([[np.zeros((n, n)), w.T], [w, np.minimum(w, w2)]])
    bars = ripser(m, maxdim=1, distance_matrix=True)["dgms"][1]
    return float(np.sum(bars[:, 1] - bars[:, 0]))


def test_rtd_is_the_summed_h1_cross_barcode():
    X, Y = _inputs(n=30, d1=3, d2=3, seed=9)
    expected = (_rtd_one_way(X, Y) + _rtd_one_way(Y, X)) / 2
    assert T.rtd(X, Y) == pytest.approx(expected, rel=1e-6)  # ripser works in float32
    assert T.rtd(X, Y, symmetric=False) == pytest.approx(_rtd_one_way(X, Y), rel=1e-6)
