"""Tests for resonance.similarity: formulas against literal references, invariances, known values,
the layer-by-layer matrix and its per-layer caching, and input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist, squareform
from scipy.stats import ortho_group, pearsonr, spearmanr

from resonance import similarity as S

N, D1, D2 = 120, 12, 10


def gaussian(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


@pytest.fixture(scope="module")
def related() -> tuple[np.ndarray, np.ndarray]:
    """Y is a noisy nonlinear readout of X: related, but not a linear copy."""
    X = gaussian(N, D1, 0)
    W = np.random.default_rng(1).standard_normal((D1, D2))
    return X, np.tanh(X @ W / 2) + 0.3 * gaussian(N, D2, 2)


def orthogonal(Y: np.ndarray) -> np.ndarray:
    return Y @ ortho_group.rvs(Y.shape[1], random_state=3)


def scaled(Y: np.ndarray) -> np.ndarray:
    return 3.7 * Y


def translated(Y: np.ndarray) -> np.ndarray:
    return Y + np.random.default_rng(4).normal(5.0, 1.0, Y.shape[1])


def permuted(Y: np.ndarray) -> np.ndarray:
    return Y[:, np.random.default_rng(5).permutation(Y.shape[1])]


def invertible_linear(Y: np.ndarray) -> np.ndarray:
    A = np.random.default_rng(6).standard_normal((Y.shape[1], Y.shape[1]))
    return Y @ (A + 0.5 * np.eye(Y.shape[1]))


TRANSFORMS = {"orthogonal": orthogonal, "scaling": scaled, "translation": translated,
              "permutation": permuted, "invertible_linear": invertible_linear}

FAST_OPTIONS = {"linear_predictivity": {"alpha": 1e-3}, "svcca": {"keep": 1.0}}

# measure -> the transforms of Y it claims invariance to (module docstring table)
INVARIANT = {
    "cka_linear": {"orthogonal", "scaling", "translation", "permutation"},
    "cka_linear_debiased": {"orthogonal", "scaling", "translation", "permutation"},
    "cka_rbf": {"orthogonal", "scaling", "translation", "permutation"},
    "mutual_knn": {"orthogonal", "scaling", "permutation"},
    "cknna": {"orthogonal", "scaling", "permutation"},
    "svcca": {"orthogonal", "scaling", "translation", "permutation", "invertible_linear"},
    "pwcca": {"scaling", "translation", "permutation"},
    "procrustes": {"orthogonal", "scaling", "translation", "permutation"},
    "rsa": {"scaling", "permutation"},
    "linear_predictivity": {"orthogonal", "scaling", "translation", "permutation"},
}


def score(X, Y, measure: str) -> float:
    return S.similarity(X, Y, measure, **FAST_OPTIONS.get(measure, {}))


# ------------------------------------------------------------------ literal references

def hsic_biased_literal(K: np.ndarray, L: np.ndarray) -> float:
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    return np.trace(K @ H @ L @ H) / (n - 1) ** 2


def hsic_unbiased_literal(K: np.ndarray, L: np.ndarray) -> float:
    """Song et al. 2012, eq. 5, term by term."""
    n = K.shape[0]
    Kt, Lt = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
    one = np.ones(n)
    return (np.trace(Kt @ Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * one @ Kt @ Lt @ one) / (n * (n - 3))


def platonic_mutual_knn(A: np.ndarray, B: np.ndarray, topk: int) -> float:
    """platonic-rep metrics.py: normalise, fill diagonal, argsort, mask product."""
    def knn(F):
        F = torch.nn.functional.normalize(torch.from_numpy(F), dim=-1)
        return (F @ F.T).fill_diagonal_(-1e8).argsort(dim=1, descending=True)[:, :topk]
    knn_a, knn_b = knn(A), knn(B)
    n = knn_a.shape[0]
    rows = torch.arange(n).unsqueeze(1)
    mask_a, mask_b = torch.zeros(n, n, dtype=torch.float64), torch.zeros(n, n, dtype=torch.float64)
    mask_a[rows, knn_a] = 1.0
    mask_b[rows, knn_b] = 1.0
    return ((mask_a * mask_b).sum(dim=1) / topk).mean().item()


def platonic_cknna(A: np.ndarray, B: np.ndarray, topk: int) -> float:
    """platonic-rep metrics.py cknna(unbiased=True) on normalised features, without the 1e-6."""
    def hsic_unbiased(K, L):
        m = K.shape[0]
        Kt, Lt = K.clone().fill_diagonal_(0), L.clone().fill_diagonal_(0)
        value = (torch.sum(Kt * Lt.T) + torch.sum(Kt) * torch.sum(Lt) / ((m - 1) * (m - 2))
                 - 2 * torch.sum(torch.mm(Kt, Lt)) / (m - 2))
        return value / (m * (m - 3))

    def similarity(K, L):
        n = K.shape[0]
        _, idx_k = torch.topk(K.clone().fill_diagonal_(float("-inf")), topk, dim=1)
        _, idx_l = torch.topk(L.clone().fill_diagonal_(float("-inf")), topk, dim=1)
        mask = (torch.zeros(n, n, dtype=K.dtype).scatter_(1, idx_k, 1)
                * torch.zeros(n, n, dtype=K.dtype).scatter_(1, idx_l, 1))
        return hsic_unbiased(mask * K, mask * L)

    Fa = torch.nn.functional.normalize(torch.from_numpy(A), dim=-1)
    Fb = torch.nn.functional.normalize(torch.from_numpy(B), dim=-1)
    K, L = Fa @ Fa.T, Fb @ Fb.T
    return (similarity(K, L) / torch.sqrt(similarity(K, K) * similarity(L, L))).item()


# ------------------------------------------------------------------ formulas

@pytest.mark.parametrize("debiased", [False, True])
def test_hsic_matches_literal_formula(debiased):
    K = S.linear_gram(gaussian(20, 5, 7))
    L = S.rbf_gram(gaussian(20, 3, 8))
    literal = hsic_unbiased_literal if debiased else hsic_biased_literal
    assert S.hsic(K, L, debiased) == pytest.approx(literal(K, L), rel=1e-10)


def test_hsic_handles_asymmetric_matrices():
    K, L = gaussian(15, 15, 9), gaussian(15, 15, 10)
    assert S.hsic(K, L, debiased=True) == pytest.approx(hsic_unbiased_literal(K, L), rel=1e-10)
    assert S.hsic(K, L) == pytest.approx(hsic_biased_literal(K, L), rel=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka_feature_form_equals_gram_form(related, debiased):
    X, Y = related
    K, L = S.linear_gram(S.center_gram(np.eye(N)) @ X), S.linear_gram(Y)
    from_grams = S.hsic(K, L, debiased) / np.sqrt(S.hsic(K, K, debiased) * S.hsic(L, L, debiased))
    assert S.cka(X, Y, debiased=debiased) == pytest.approx(from_grams, rel=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
def test_wide_inputs_use_gram_form_with_same_value(debiased):
    X, Y = gaussian(30, 50, 11), gaussian(30, 8, 12)  # d1 > n switches to the Gram path
    K, L = S.linear_gram(X), S.linear_gram(Y)
    literal = hsic_unbiased_literal if debiased else hsic_biased_literal
    expected = literal(K, L) / np.sqrt(literal(K, K) * literal(L, L))
    assert S.cka(X, Y, debiased=debiased) == pytest.approx(expected, rel=1e-9)


def test_rbf_gram_bandwidth_is_kornblith_full_matrix_median_by_default():
    X = gaussian(25, 4, 26)
    sq = squareform(pdist(X, "sqeuclidean"))  # n x n, zero diagonal included
    expected = np.exp(-sq / (2 * 0.7 ** 2 * np.median(sq)))
    np.testing.assert_allclose(S.rbf_gram(X, threshold=0.7), expected, rtol=1e-10, atol=1e-12)


def test_rbf_gram_pairs_median_is_the_old_option():
    X = gaussian(25, 4, 26)
    distances = pdist(X)
    sigma = 0.7 * np.median(distances)
    expected = np.exp(-squareform(distances) ** 2 / (2 * sigma ** 2))
    np.testing.assert_allclose(S.rbf_gram(X, threshold=0.7, median_over="pairs"), expected,
                               rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="unknown median_over 'diag'"):
        S.rbf_gram(X, median_over="diag")


def test_rbf_cka_with_a_degenerate_bandwidth_raises_instead_of_returning_one():
    X, Y = gaussian(50, 10, 1), gaussian(50, 10, 2)  # independent
    for threshold in (1e-6, 0.05):
        with pytest.raises(ValueError, match="numerically the identity"):
            S.cka(X, Y, kernel="rbf", threshold=threshold)
    assert S.cka(X, Y, kernel="rbf", threshold=1.0) < 0.8


def test_rsa_matches_scipy_on_rdms(related):
    X, Y = related
    rdm_x, rdm_y = pdist(X, "correlation"), pdist(Y, "correlation")
    assert S.rsa(X, Y) == pytest.approx(spearmanr(rdm_x, rdm_y).statistic, rel=1e-10)
    assert S.rsa(X, Y, method="pearson") == pytest.approx(pearsonr(rdm_x, rdm_y).statistic,
                                                          rel=1e-10)


def test_mutual_knn_matches_platonic_reference(related):
    X, Y = related
    assert S.mutual_knn(X, Y, k=7) == pytest.approx(platonic_mutual_knn(X, Y, 7), abs=1e-12)


def test_cknna_matches_platonic_reference(related):
    X, Y = related
    assert S.cknna(X, Y, k=10) == pytest.approx(platonic_cknna(X, Y, 10), rel=1e-9)


def test_clamp_uses_mean_of_per_row_quantiles():
    X = gaussian(80, 20, 13)
    Y = X + 0.8 * gaussian(80, 20, 14)

    def clamped(F):
        threshold = np.quantile(np.abs(F), 0.9, axis=1).mean()
        return np.clip(F, -threshold, threshold)

    expected = S.mutual_knn(clamped(X), clamped(Y), k=5)
    assert S.mutual_knn(X, Y, k=5, clamp_quantile=0.9) == expected
    assert expected != S.mutual_knn(X, Y, k=5)


# ------------------------------------------------------------------ identity and invariances

@pytest.mark.parametrize("measure", sorted(S.MEASURES))
def test_identity(related, measure):
    X, _ = related
    expected = 0.0 if measure == "procrustes" else 1.0
    assert score(X, X, measure) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
@pytest.mark.parametrize("measure", sorted(S.MEASURES))
def test_claimed_invariances_hold_and_others_do_not(related, measure, transform):
    X, Y = related
    before, after = score(X, Y, measure), score(X, TRANSFORMS[transform](Y), measure)
    if transform in INVARIANT[measure]:
        assert after == pytest.approx(before, abs=1e-8)
    else:
        assert abs(after - before) > 1e-4


def test_cca_invariant_to_invertible_linear_map_of_x_side_too(related):
    X, Y = related
    assert S.svcca(invertible_linear(X), Y, keep=1.0) == pytest.approx(S.svcca(X, Y, keep=1.0))


def test_truncated_svcca_is_not_invariant_to_invertible_linear(related):
    X, Y = related
    assert abs(S.svcca(X, invertible_linear(Y), keep=0.9) - S.svcca(X, Y, keep=0.9)) > 1e-3


def test_predictivity_depends_on_scale_of_x(related):
    X, Y = related
    assert S.linear_predictivity(100 * X, Y, alpha=100.0) != pytest.approx(
        S.linear_predictivity(X, Y, alpha=100.0), abs=1e-3)


def test_euclidean_rsa_is_rotation_and_translation_invariant(related):
    X, Y = related
    base = S.rsa(X, Y, metric="euclidean")
    assert S.rsa(X, translated(orthogonal(Y)), metric="euclidean") == pytest.approx(base)


# ------------------------------------------------------------------ known behaviour

def test_debiased_cka_near_zero_where_biased_is_inflated():
    debiased, biased = [], []
    for seed in range(10):
        X, Y = gaussian(32, 64, 100 + seed), gaussian(32, 64, 200 + seed)
        debiased.append(S.cka(X, Y, debiased=True))
        biased.append(S.cka(X, Y))
    assert abs(np.mean(debiased)) < 0.05 and max(map(abs, debiased)) < 0.15
    assert min(biased) > 0.4
    assert np.mean(biased) == pytest.approx(0.67, abs=0.05)


def test_mutual_knn_chance_level_for_independent_clouds():
    n, k = 600, 10
    value = S.mutual_knn(gaussian(n, 32, 14), gaussian(n, 32, 15), k=k)
    assert value == pytest.approx(k / (n - 1), abs=0.01)


def test_knn_measures_decrease_with_noise(related):
    X, _ = related
    noisy = [X + s * gaussian(N, D1, 16) for s in (0.1, 0.5, 2.0)]
    for measure in ("mutual_knn", "cka_linear", "cka_linear_debiased", "cknna"):
        values = [score(X, Y, measure) for Y in noisy]
        assert values[0] > values[1] > values[2], measure


def test_cka_of_duplicated_features_is_one(related):
    X, _ = related
    assert S.cka(X, np.hstack([X, X])) == pytest.approx(1.0)
    assert S.cka(X, np.hstack([X, X]), kernel="rbf") == pytest.approx(1.0)


def test_rbf_cka_with_wide_bandwidth_approaches_linear(related):
    X, Y = related
    linear = S.cka(X, Y)
    assert S.cka(X, Y, kernel="rbf", threshold=100.0) == pytest.approx(linear, abs=1e-4)
    assert abs(S.cka(X, Y, kernel="rbf", threshold=0.5) - linear) > 1e-3


def test_minibatch_cka_single_batch_equals_full_debiased(related):
    X, Y = related
    assert S.MinibatchCKA().update(X, Y).value() == pytest.approx(S.cka(X, Y, debiased=True))


def test_minibatch_cka_agrees_with_full_debiased_cka():
    rng = np.random.default_rng(17)
    X = rng.standard_normal((3000, 20))
    Y = np.tanh(X @ rng.standard_normal((20, 15)) / 3) + 0.5 * rng.standard_normal((3000, 15))
    accumulator = S.MinibatchCKA()
    for batch in np.array_split(rng.permutation(3000), 12):
        accumulator.update(X[batch], Y[batch])
    assert accumulator.value() == pytest.approx(S.cka(X, Y, debiased=True), abs=0.02)


def test_procrustes_reflection_is_zero_and_forms_agree(related):
    X, Y = related
    assert S.procrustes_distance(X, -X) == pytest.approx(0.0, abs=1e-6)
    angle = S.procrustes_distance(X, Y)
    assert 0 < angle < np.pi / 2
    assert S.procrustes_distance(X, Y, form="euclidean") == pytest.approx(
        np.sqrt(2 - 2 * np.cos(angle)))


def test_svcca_keep_count_and_fraction(related):
    X, Y = related
    assert S.svcca(X[:, :D2], Y, keep=D2) == pytest.approx(S.svcca(X[:, :D2], Y, keep=1.0))
    assert S.svcca(X, Y, keep=3) != pytest.approx(S.svcca(X, Y, keep=1.0))
    assert S.svcca(X[:, :3], X, keep=1.0) == pytest.approx(1.0)  # a subspace of X


def test_linear_predictivity_is_asymmetric():
    X = gaussian(200, 10, 18)
    Y = X[:, :2]
    assert S.linear_predictivity(X, Y, alpha=1e-3) == pytest.approx(1.0, abs=1e-4)
    assert S.linear_predictivity(Y, X, alpha=1e-3) < 0.3
    assert S.linear_predictivity(X, gaussian(200, 5, 19)) < 0.05


# ------------------------------------------------------------------ similarity_matrix

@pytest.fixture(scope="module")
def model_layers() -> tuple[list[np.ndarray], list[np.ndarray]]:
    base = gaussian(60, 8, 20)
    a = [base @ gaussian(8, d, 21 + i) + 0.3 * i * gaussian(60, d, 30 + i)
         for i, d in enumerate((6, 9, 7))]
    b = [np.tanh(base @ gaussian(8, d, 40 + j)) for j, d in enumerate((5, 11))]
    return a, b


@pytest.mark.parametrize("measure", sorted(S.MEASURES))
def test_similarity_matrix_equals_pairwise_calls(model_layers, measure):
    a, b = model_layers
    kw = FAST_OPTIONS.get(measure, {})
    table = S.similarity_matrix(a, b, measure, **kw)
    assert list(table.columns) == ["layer_a", "layer_b", "depth_a", "depth_b", "measure", "value"]
    assert len(table) == 6 and (table["measure"] == measure).all()
    for row in table.itertuples():
        expected = S.similarity(a[row.layer_a], b[row.layer_b], measure, **kw)
        assert row.value == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert table["depth_a"].tolist() == [0, 0, 0.5, 0.5, 1, 1]


@pytest.mark.parametrize("measure", sorted(S.MEASURES))
def test_similarity_matrix_of_a_model_with_itself(model_layers, measure):
    a, _ = model_layers
    kw = FAST_OPTIONS.get(measure, {})
    table = S.similarity_matrix(a, a, measure, **kw)
    values = table.pivot(index="layer_a", columns="layer_b", values="value").to_numpy()
    expected = 0.0 if measure == "procrustes" else 1.0
    np.testing.assert_allclose(np.diag(values), expected, atol=1e-6)
    np.testing.assert_allclose(values[0, 2], S.similarity(a[0], a[2], measure, **kw), rtol=1e-9)
    np.testing.assert_allclose(values[2, 0], S.similarity(a[2], a[0], measure, **kw), rtol=1e-9)


@pytest.mark.parametrize("measure", ["cka_rbf", "mutual_knn", "cknna"])
def test_similarity_matrix_computes_each_gram_once(model_layers, monkeypatch, measure):
    a, b = model_layers
    calls = []

    def counting_gram(X):
        calls.append(X.shape)
        return X @ X.T

    monkeypatch.setattr(S, "linear_gram", counting_gram)
    S.similarity_matrix(a, b, measure)
    assert len(calls) == len(a) + len(b)
    calls.clear()
    S.similarity_matrix(a, a, measure)
    assert len(calls) == len(a)


@pytest.mark.parametrize("measure", ["cka_linear", "cka_linear_debiased"])
def test_banded_linear_cka_builds_each_gram_band_once_and_matches_pairwise(monkeypatch, measure):
    n, bands = 300, 3
    monkeypatch.setattr(S, "_BAND_ELEMENTS", 128 * n)  # 128-row bands, the last one short
    a = [gaussian(n, d, 50 + d) for d in (20, 7)]
    b = [a[0][:, :5] + 0.5 * gaussian(n, 5, 60), gaussian(n, 400, 61), a[1] @ gaussian(7, 9, 62)]
    band_calls = []
    original = S._gram_band

    def counting_band(X, start, stop, out):
        band_calls.append((X.shape, start))
        return original(X, start, stop, out)

    monkeypatch.setattr(S, "_gram_band", counting_band)
    table = S.similarity_matrix(a, b, measure)
    assert len(band_calls) == (len(a) + len(b)) * bands
    expected = [S.similarity(X, Y, measure) for X in a for Y in b]
    np.testing.assert_allclose(table["value"], expected, rtol=1e-10)
    band_calls.clear()
    S.similarity_matrix(b, b, measure)
    assert len(band_calls) == len(b) * bands


def test_similarity_matrix_accepts_named_layers(model_layers):
    a, _ = model_layers
    table = S.similarity_matrix({"embed": a[0]}, {"l1": a[1], "l2": a[2]}, "cka_linear")
    assert table["layer_a"].tolist() == ["embed", "embed"]
    assert table["layer_b"].tolist() == ["l1", "l2"]
    assert table["depth_a"].tolist() == [0.0, 0.0] and table["depth_b"].tolist() == [0.0, 1.0]


def test_similarity_matrix_rejects_different_stimulus_counts(model_layers):
    a, _ = model_layers
    with pytest.raises(ValueError, match="same stimuli"):
        S.similarity_matrix(a, [a[0][:50]])


# ------------------------------------------------------------------ bad input

def with_nan(X: np.ndarray) -> np.ndarray:
    X = X.copy()
    X[3, 1] = np.nan
    return X


def with_inf(X: np.ndarray) -> np.ndarray:
    X = X.copy()
    X[5, 0] = np.inf
    return X


BAD_Y = {
    "nan": (with_nan, "NaN or inf"),
    "inf": (with_inf, "NaN or inf"),
    "mismatched": (lambda Y: Y[:-1], "same stimuli"),
    "constant": (lambda Y: np.ones_like(Y), "constant"),
    "one_dimensional": (lambda Y: Y[:, 0], "2-D"),
}


@pytest.mark.parametrize("bad", sorted(BAD_Y))
@pytest.mark.parametrize("measure", sorted(S.MEASURES))
def test_bad_input_raises_informative_error(related, measure, bad):
    X, Y = related
    corrupt, message = BAD_Y[bad]
    with pytest.raises(ValueError, match=message):
        score(X, corrupt(Y), measure)


@pytest.mark.parametrize("measure", ["mutual_knn", "cknna"])
def test_too_few_stimuli_for_k(measure):
    X = gaussian(10, 4, 22)
    with pytest.raises(ValueError, match="n > k"):
        S.similarity(X, X, measure, k=10)


def test_too_few_stimuli_for_debiased_cka():
    X = gaussian(3, 4, 23)
    with pytest.raises(ValueError, match="at least 4"):
        S.cka(X, X, debiased=True)


def test_degenerate_debiased_kernel_raises_instead_of_nan(related):
    X, Y = related
    with pytest.raises(ValueError, match="numerically the identity"):
        S.cka(X, Y, kernel="rbf", threshold=1e-3, debiased=True)


def test_cca_with_too_many_dimensions_raises():
    X, Y = gaussian(20, 12, 24), gaussian(20, 10, 25)
    with pytest.raises(ValueError, match="meaningless"):
        S.pwcca(X, Y)


def test_unknown_names_list_the_options(related):
    X, Y = related
    with pytest.raises(ValueError, match="cka_linear_debiased"):
        S.similarity(X, Y, "cka")
    with pytest.raises(ValueError, match="rbf"):
        S.cka(X, Y, kernel="poly")
    with pytest.raises(ValueError, match="no minibatch"):
        S.MinibatchCKA().value()


def test_pwcca_keep_makes_wide_layers_comparable():
    rng = np.random.default_rng(11)
    X = rng.standard_normal((40, 100))
    with pytest.raises(ValueError, match="meaningless"):
        S.pwcca(X, X @ rng.standard_normal((100, 100)))
    assert S.pwcca(X, X, keep=5) == pytest.approx(1.0)
    table = S.similarity_matrix([X], [X[:, ::-1]], "pwcca", keep=5)
    assert table["value"].iloc[0] == pytest.approx(1.0)


def test_similarity_matrix_keeps_the_layer_ids_of_activations():
    """Activations of a layer subset used to be renumbered 0, 1, ... in the table."""
    from resonance.activations import Activations

    rng = np.random.default_rng(0)
    layers = [rng.normal(size=(20, 5)) for _ in range(3)]
    acts = Activations(layers, [0, 3, 6], "m", "mean", "k", n_items=20)
    frame = S.similarity_matrix(acts, acts, measure="cka_linear")
    assert sorted(set(frame["layer_a"])) == [0, 3, 6]
    assert frame.set_index(["layer_a", "layer_b"]).loc[(3, 6), "value"] == pytest.approx(
        S.similarity_matrix({3: layers[1]}, {6: layers[2]}, measure="cka_linear")["value"].iloc[0])
