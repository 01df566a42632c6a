"""Large-n paths of resonance.similarity: the results of the old implementation (recorded in
tests/data/similarity_reference.json), the choice of form, float32 storage, blocked neighbour
search and a run at n = 20,000 (where the old float64 ``X @ X.T`` segfaulted)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from similarity_reference import (MATRIX_MEASURES, REFERENCE, cases, clustered, measure_name,
                                  residual_model)

from resonance import similarity as S

RECORDED = json.loads(REFERENCE.read_text())["cases"]
CASES = cases()


def knn_options(case: str, label: str) -> dict:
    return {"k": 5} if case == "medium32" and label == "cknna" else MATRIX_MEASURES[label]


# ------------------------------------------------------------------ the old numbers

@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("label", sorted(MATRIX_MEASURES))
def test_similarity_matrix_matches_the_old_implementation(case, label):
    a, b = CASES[case]
    table = S.similarity_matrix(a, b, measure_name(label), **knn_options(case, label))
    np.testing.assert_allclose(table["value"], RECORDED[case][label], rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_model_cka_pair_and_minibatch_match_the_old_implementation(case):
    a, b = CASES[case]
    recorded = RECORDED[case]
    same = S.similarity_matrix(a, a, "cka_linear_debiased")["value"]
    np.testing.assert_allclose(same, recorded["cka_linear_debiased_same"], rtol=0, atol=1e-6)
    pair = [S.cka(a[0], b[-1]), S.cka(a[0], b[-1], debiased=True)]
    np.testing.assert_allclose(pair, recorded["cka_pair"], rtol=0, atol=1e-6)
    minibatch = S.MinibatchCKA()
    for rows in np.array_split(np.arange(a[0].shape[0]), 3):
        minibatch.update(a[-1][rows], b[0][rows])
    assert minibatch.value() == pytest.approx(recorded["minibatch_cka"], abs=1e-6)


def test_float64_input_reproduces_the_old_numbers_to_round_off():
    a, b = CASES["resid64"]
    for label in ("cka_linear", "cka_linear_debiased", "cknna"):
        values = S.similarity_matrix(a, b, measure_name(label), **MATRIX_MEASURES[label])["value"]
        np.testing.assert_allclose(values, RECORDED["resid64"][label], rtol=1e-10, atol=1e-13)


# ------------------------------------------------------------------ forms agree

@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_feature_and_gram_forms_agree(monkeypatch, debiased, dtype):
    a = residual_model(500, 60, 3, 21, dtype=dtype)
    b = residual_model(500, 90, 2, 22, offset=4.0, dtype=dtype)
    layers_a = [S._linear_layer(X, debiased=debiased) for X in a]
    layers_b = [S._linear_layer(Y, debiased=debiased) for Y in b]
    values = {}
    for form in ("features", "gram"):
        monkeypatch.setattr(S, "_linear_form", lambda *shape, form=form: form)
        values[form] = (S._linear_cka_block(layers_a, layers_b),
                        S._linear_cka_block(layers_a, layers_a))
    tol = 1e-6 if dtype == np.float32 else 1e-12
    for features, gram in zip(values["features"], values["gram"]):
        np.testing.assert_allclose(features, gram, rtol=0, atol=tol)


def test_form_choice_follows_the_cost():
    assert S._linear_form(20_000, [384] * 12, [384] * 12, same=False) == "features"
    assert S._linear_form(50_000, [768] * 12, [768] * 12, same=True) == "features"
    assert S._linear_form(1_000, [4096] * 12, [4096] * 12, same=False) == "gram"
    assert S._linear_form(500, [3000], [3000], same=False) == "gram"   # d > n: Grams
    assert S._linear_form(5_000, [300], [200], same=False) == "features"


def test_feature_form_groups_accumulators_to_fit_the_budget(monkeypatch):
    a = residual_model(700, 50, 4, 23, dtype=np.float64)  # float64: only round-off may differ
    b = residual_model(700, 30, 3, 24, dtype=np.float64)
    expected = S.similarity_matrix(a, b, "cka_linear_debiased")["value"]
    expected_same = S.similarity_matrix(a, a, "cka_linear")["value"]
    # one A layer per group and 64-row blocks: many passes, the same numbers
    monkeypatch.setattr(S, "_FEATURE_ACCUMULATOR_BYTES", 1)
    monkeypatch.setattr(S, "_FEATURE_BLOCK_BYTES", 64 * 4 * 200)
    np.testing.assert_allclose(S.similarity_matrix(a, b, "cka_linear_debiased")["value"],
                               expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(S.similarity_matrix(a, a, "cka_linear")["value"],
                               expected_same, rtol=0, atol=1e-12)


def test_float32_layers_are_not_copied_to_float64(monkeypatch):
    X = residual_model(300, 20, 1, 25)[0]
    layer = S._linear_layer(S._validated_floats(X, "X"))
    assert layer.values is X and layer.values.dtype == np.float32
    assert S._validated_floats(X.astype(np.float16), "X").dtype == np.float32
    assert S._validated_floats(X.astype(int), "X").dtype == np.float64
    seen = []
    original = S._linear_layer
    monkeypatch.setattr(S, "_linear_layer", lambda X, *args, **kw: seen.append(X.dtype)
                        or original(X, *args, **kw))
    S.cka(X, X[:, :7])
    assert seen == [np.float32, np.float32]


def test_float32_centring_is_exact_to_float32_for_offset_activations():
    """A large shared offset (decoder states) must not cost precision: centring is in float64."""
    base = residual_model(2000, 32, 2, 26, dtype=np.float64)
    shifted = [(X + 300.0).astype(np.float32) for X in base]
    reference = S.similarity_matrix([X.astype(np.float64) for X in shifted[:1]],
                                    [X.astype(np.float64) for X in shifted[1:]], "cka_linear")
    values = S.similarity_matrix(shifted[:1], shifted[1:], "cka_linear")
    np.testing.assert_allclose(values["value"], reference["value"], rtol=0, atol=1e-6)


# ------------------------------------------------------------------ neighbour search

def brute_force_neighbours(X: np.ndarray, k: int) -> set[tuple[int, int]]:
    U = X.astype(np.float64)
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    scores = np.einsum("id,jd->ij", U, U)  # duplicates score bitwise alike
    np.fill_diagonal(scores, -np.inf)
    order = np.lexsort((np.broadcast_to(np.arange(len(X)), scores.shape), -scores))[:, :k]
    return {(i, int(j)) for i, row in enumerate(order) for j in row}


def neighbour_set(X: np.ndarray, k: int) -> set[tuple[int, int]]:
    indices, _ = S._cosine_neighbours(X, k, None, "X")
    return {(i, int(j)) for i, row in enumerate(indices) for j in row}


def test_blocked_neighbour_search_is_exact_with_small_blocks(monkeypatch):
    X = clustered(600, 12, 27)
    expected = brute_force_neighbours(X, 7)
    monkeypatch.setattr(S, "_SCORE_ELEMENTS", 37 * 600)  # 37-row blocks, the last one short
    assert neighbour_set(X, 7) == expected


def test_near_ties_and_duplicates_fall_back_to_float64_rows(monkeypatch):
    rng = np.random.default_rng(28)
    X = rng.standard_normal((400, 16))
    X[200:260] = X[:60]                      # exact duplicates: ties broken by lower index
    X[300:340] = X[100:140] + 1e-9 * rng.standard_normal((40, 16))  # below float32's resolution
    X[360:390] = X[5] + 1e-9 * rng.standard_normal((30, 16))  # more near-ties than candidates
    redone = []
    original = S._exact_neighbours
    monkeypatch.setattr(S, "_exact_neighbours", lambda unit, rows, *rest:
                        redone.append(rows) or original(unit, rows, *rest))
    assert neighbour_set(X, 5) == brute_force_neighbours(X, 5)
    redone = set(np.concatenate(redone).tolist())
    assert set(range(360, 390)) <= redone and len(redone) < 60  # only the unsure rows


def test_cknna_sparse_matches_dense_reference_formula():
    X, Y = clustered(300, 10, 29).astype(np.float64), clustered(300, 8, 30).astype(np.float64)
    k = 6

    def dense(F):
        U = F / np.linalg.norm(F, axis=1, keepdims=True)
        K = U @ U.T
        masked = K.copy()
        np.fill_diagonal(masked, -np.inf)
        idx = np.argsort(-masked, axis=1)[:, :k]
        mask = np.zeros_like(K, dtype=bool)
        np.put_along_axis(mask, idx, True, axis=1)
        return K, mask

    (K, mx), (L, my) = dense(X), dense(Y)
    both = mx & my
    selfs = S.hsic(K * mx, K * mx, debiased=True) * S.hsic(L * my, L * my, debiased=True)
    value = S.hsic(K * both, L * both, debiased=True) / np.sqrt(selfs)
    assert S.cknna(X, Y, k=k) == pytest.approx(value, rel=1e-10)


# ------------------------------------------------------------------ large n

@pytest.fixture(scope="module")
def large_layers() -> list[np.ndarray]:
    """Two float32 layers at n = 20,000, d = 384 (as activations.extract returns them)."""
    rng = np.random.default_rng(31)
    latent = rng.standard_normal((20_000, 24)).astype(np.float32)
    layers = []
    for seed in (32, 33):
        mix = np.random.default_rng(seed).standard_normal((24, 384)).astype(np.float32)
        noise = np.random.default_rng(seed + 10).standard_normal((20_000, 384), dtype=np.float32)
        layers.append(latent @ mix + 2.0 * noise + 1.5)
    return layers


def test_large_n_cka_runs_in_feature_form_and_matches_float64(large_layers):
    X, Y = large_layers
    X64, Y64 = (np.asarray(M, np.float64) - np.asarray(M, np.float64).mean(axis=0)
                for M in large_layers)
    cross, sx, sy = (np.sum((A.T @ B) ** 2) for A, B in ((X64, Y64), (X64, X64), (Y64, Y64)))
    expected = cross / np.sqrt(sx * sy)
    table = S.similarity_matrix(large_layers, large_layers, "cka_linear")
    values = table["value"].to_numpy().reshape(2, 2)
    np.testing.assert_allclose(np.diag(values), 1.0, rtol=0, atol=1e-12)
    assert values[0, 1] == pytest.approx(expected, abs=1e-6)
    debiased = S.similarity_matrix([X], [Y], "cka_linear_debiased")["value"].iloc[0]
    assert 0.5 < debiased < values[0, 1]


@pytest.mark.slow
def test_large_n_mutual_knn_and_cknna(large_layers):
    """Four neighbour searches at n = 20,000 (~7 s of CPU each); the old code segfaulted."""
    X, Y = large_layers
    rotation = np.linalg.qr(np.random.default_rng(34).standard_normal((384, 384)))[0]
    rotated = X @ rotation.astype(np.float32)
    knn = S.similarity_matrix([X], [rotated], "mutual_knn")["value"].iloc[0]
    assert knn > 0.999           # a rotation keeps the neighbours (float32 round-off aside)
    rows = np.random.default_rng(35).choice(20_000, 50, replace=False)
    indices, scores = S._cosine_neighbours(Y, 10, None, "Y")
    U = Y.astype(np.float64) / np.linalg.norm(Y.astype(np.float64), axis=1, keepdims=True)
    exact = U[rows] @ U.T
    exact[np.arange(rows.size), rows] = -np.inf
    expected = np.sort(np.argsort(-exact, axis=1)[:, :10], axis=1)
    np.testing.assert_array_equal(np.sort(indices[rows], axis=1), expected)
    np.testing.assert_allclose(np.sort(scores[rows], axis=1),
                               np.sort(np.take_along_axis(exact, expected, axis=1), axis=1),
                               rtol=0, atol=1e-12)
    value = S.similarity_matrix([X], [Y], "cknna")["value"].iloc[0]
    assert 0.05 < value < 0.95   # related layers: far above 0, below identical


@pytest.mark.parametrize("measure", ["cka_linear", "cka_linear_debiased", "mutual_knn"])
def test_mixed_float32_and_float64_layers(measure):
    a = residual_model(600, 30, 2, 36)                      # float32
    b = residual_model(600, 20, 2, 37, dtype=np.float64)
    mixed = S.similarity_matrix(a, b, measure)["value"]
    wide = S.similarity_matrix([X.astype(np.float64) for X in a], b, measure)["value"]
    np.testing.assert_allclose(mixed, wide, rtol=0, atol=1e-6)


@pytest.mark.parametrize("power", [-90, 70])
def test_float32_extreme_magnitudes_are_rescaled_not_overflowed(power):
    X, Y = residual_model(400, 24, 2, 38)
    scaled = np.ldexp(X, power).astype(np.float32)
    assert np.isfinite(scaled).all() and scaled.dtype == np.float32
    for debiased in (False, True):
        assert S.cka(scaled, Y, debiased=debiased) == pytest.approx(
            S.cka(X, Y, debiased=debiased), abs=1e-6)
    assert S.mutual_knn(scaled, Y) == S.mutual_knn(X, Y)
