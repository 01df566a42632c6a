"""The registry of measures, and the inputs that used to give silently wrong answers."""

import numpy as np
import pandas as pd
import pytest
import torch

from resonance import measures, metrics, stats
from resonance import similarity as S
from resonance import topology as T

NAMES = ["cka_linear", "cka_linear_debiased", "cka_rbf", "mutual_knn", "cknna", "svcca", "pwcca",
         "procrustes", "rsa", "linear_predictivity", "rtd", "persistence_distance"]
# Options that make every measure cheap and defined on 40 x 6 inputs.
FAST = {"svcca": {"keep": 3}, "pwcca": {"keep": 3}, "mutual_knn": {"k": 5}, "cknna": {"k": 5},
        "rtd": {"n_subsamples": 1, "subsample_size": 40},
        "persistence_distance": {"n_subsamples": 1, "max_points": 40}}


def _pair(n=40, d=6, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return X, X @ q + noise * rng.standard_normal((n, d))


# ------------------------------------------------------------------ the registry

def test_one_record_per_measure_with_direction_null_and_range():
    assert list(measures.MEASURES) == NAMES
    for name, spec in measures.MEASURES.items():
        assert spec.direction in ("similarity", "distance")
        assert spec.null in ("shuffle", "gaussian")
        low, high = spec.bounds(FAST.get(name, {}))
        assert low < high
    distances = {n for n, m in measures.MEASURES.items() if m.direction == "distance"}
    assert distances == {"procrustes", "rtd", "persistence_distance"}
    assert [n for n, m in measures.MEASURES.items() if m.null == "gaussian"] == [
        "persistence_distance"]
    for name, spec in S.MEASURES.items():  # similarity's records are the registry's
        assert measures.MEASURES[name] is spec
    assert not S.MEASURES["procrustes"].higher_is_similar
    assert measures.get("procrustes").bounds({"form": "euclidean"}) == (0.0, np.sqrt(2))
    assert metrics.DIVERGENCES == ("procrustes", "rtd", "persistence_distance")


@pytest.mark.parametrize("name", NAMES)
def test_every_value_lies_in_its_range_and_similarity_reaches_all(name):
    X, Y = _pair()
    value = S.similarity(X, Y, name, **FAST.get(name, {}))
    low, high = measures.get(name).bounds(FAST.get(name, {}))
    assert low <= value <= high
    grid = S.similarity_matrix([X], [Y], name, **FAST.get(name, {}))
    assert grid.value.iloc[0] == pytest.approx(value)


def test_registry_rejects_bad_records_and_names():
    with pytest.raises(ValueError, match="unknown direction 'up'"):
        S.Measure(S.cka, direction="up")
    with pytest.raises(ValueError, match="unknown measure 'cka'.*cka_linear_debiased"):
        measures.get("cka")
    with pytest.raises(ValueError, match="measures is empty"):
        measures.names([])


# ------------------------------------------------------------------ direction in metrics

def test_procrustes_p_value_counts_the_lower_tail():
    X, Y = _pair(noise=0.3)  # a noisy rotation: far closer than shuffled pairs
    row = metrics.global_resonance(X, Y, ["procrustes"], n_boot=5, n_null=19).iloc[0]
    assert row.divergence and row.value < row.null_low
    assert row.p_value == pytest.approx(1 / 20)  # was 1.0 when procrustes counted as similarity


def test_best_layer_resonance_of_a_distance_picks_the_smallest():
    rng = np.random.default_rng(1)
    X, Y = _pair(noise=0.2)
    layers_a = [X]
    layers_b = [rng.standard_normal(X.shape), Y, rng.standard_normal(X.shape)]
    best = metrics.best_layer_resonance(layers_a, layers_b, "procrustes", skip_embeddings=False,
                                        n_null=9)
    assert best["layer_b"] == 1
    assert best["value"] == pytest.approx(S.procrustes_distance(X, Y))
    assert best["value"] < best["null_high"] and best["p_value"] == pytest.approx(0.1)
    table = S.similarity_matrix(layers_a, layers_b, "procrustes")
    assert metrics.best_layer_map(table).layer_b.tolist() == [1]
    cka = metrics.best_layer_resonance(layers_a, layers_b, "cka_linear", skip_embeddings=False,
                                       n_null=3)
    assert cka["layer_b"] == 1


def test_null_sample_fits_the_measure():
    rng = np.random.default_rng(6)
    A, B = rng.standard_normal((30, 4)), rng.standard_normal((30, 6))
    shuffled = metrics.null_sample([A, B], "shuffle", np.random.default_rng(0))
    perm = np.random.default_rng(0).permutation(30)  # one permutation for every layer
    np.testing.assert_array_equal(shuffled[0], A[perm])
    np.testing.assert_array_equal(shuffled[1], B[perm])
    clouds = metrics.null_sample([A, B], "gaussian", rng)
    assert [c.shape for c in clouds] == [A.shape, B.shape]
    with pytest.raises(ValueError, match="unknown null kind 'uniform'"):
        metrics.null_sample([A], "uniform", rng)


def test_best_layer_resonance_of_a_pairing_free_measure_draws_gaussian_clouds():
    X, Y = _pair(n=30, d=3)
    kw = {"n_subsamples": 1, "max_points": 30}
    best = metrics.best_layer_resonance([X], [Y], "persistence_distance", skip_embeddings=False,
                                        n_null=3, **kw)
    # a shuffle leaves a diagram distance unchanged: the old null equalled the value (p = 1)
    assert best["null_mean"] != pytest.approx(best["value"])


def test_jackknife_interval_stays_inside_the_range():
    rng = np.random.default_rng(5)
    X = rng.standard_t(2, (20, 5))  # heavy tails: a wide interval next to the bound of 1
    Y = X + 0.3 * rng.standard_normal(X.shape)
    value = S.cka(X, Y, debiased=True)
    replicates = [S.cka(X[keep], Y[keep], debiased=True)
                  for keep in (np.sort(rng.permutation(20)[2:]) for _ in range(50))]
    unclipped = stats.delete_d_jackknife_interval(value, replicates, 20, 2)
    clipped = stats.delete_d_jackknife_interval(value, replicates, 20, 2, bounds=(-1, 1))
    assert unclipped[1] > 1.03 and clipped == (unclipped[0], 1.0)  # before: reported 1.04
    row = metrics.global_resonance(X, Y, ["cka_linear_debiased"], n_boot=50, n_null=0).iloc[0]
    assert row.ci_low <= row.value <= row.ci_high <= 1.0
    assert np.isnan(stats.delete_d_jackknife_interval(0.5, [0.5], 20, 2)).all()  # < 2 replicates


# ------------------------------------------------------------------ arguments

def test_a_single_measure_name_is_one_measure():
    X, Y = _pair()
    table = metrics.global_resonance(X, Y, "cka_linear", n_boot=0, n_null=0)
    assert table.measure.tolist() == ["cka_linear"]  # was "unknown measure 'c'"


@pytest.mark.parametrize("kwargs, message", [
    ({"ci": 1.5}, r"ci must be a number in \(0, 1\), got 1.5"),
    ({"ci": 0}, r"ci must be a number in \(0, 1\)"),
    ({"n_null": -3}, "n_null must be an integer >= 0, got -3"),
    ({"n_boot": 2.5}, "n_boot must be an integer >= 0, got 2.5"),
    ({"n_boot": True}, "n_boot must be an integer >= 0, got True"),
    ({"measure_kwargs": {"rdt": {}}}, r"measure_kwargs has options for \['rdt'\]"),
    ({"measure_kwargs": {"mutual_knn": {"kk": 3}}},
     r"unknown option\(s\) \['kk'\] for measure 'mutual_knn'; it takes: k, clamp_quantile"),
    ({"measures": ["cka_linear", "cosine"]}, "unknown measure 'cosine'"),
])
def test_bad_resampling_arguments_raise(kwargs, message):
    X, Y = _pair()
    kwargs = {"measures": ["mutual_knn"], "n_boot": 2, "n_null": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        metrics.global_resonance(X, Y, **kwargs)


def test_bad_arguments_of_the_other_consumers_raise():
    X, Y = _pair()
    with pytest.raises(ValueError, match="n_null must be an integer >= 0"):
        metrics.best_layer_resonance([X, X], [Y, Y], "cka_linear", n_null=-3)
    with pytest.raises(ValueError, match=r"ci must be a number in \(0, 1\)"):
        metrics.best_layer_resonance([X, X], [Y, Y], "cka_linear", ci=1.5)
    with pytest.raises(ValueError, match="min_items must be an integer >= 2"):
        metrics.local_resonance(X, Y, ["a"] * 40, min_items=2.5)
    with pytest.raises(ValueError, match="unknown measure 'cosine'"):
        metrics.positional_resonance(X, Y, np.zeros(40), "cosine")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['thresold'\] for measure 'cka_rbf'"):
        S.similarity(X, Y, "cka_rbf", thresold=0.5)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['keeep'\]"):
        S.similarity_matrix([X], [Y], "svcca", keeep=3)
    with pytest.raises(ValueError, match="the table mixes similarities and distances"):
        metrics.best_layer_map(pd.concat([S.similarity_matrix([X], [Y], m)
                                          for m in ("procrustes", "cka_linear")]))


@pytest.mark.parametrize("fn", [S.mutual_knn, S.cknna])
def test_k_true_is_not_k_one(fn):
    X, Y = _pair()
    with pytest.raises(ValueError, match="integer k|k must be an integer >= 1, got True"):
        fn(X, Y, k=True)


def test_complex_input_raises_instead_of_dropping_the_imaginary_part():
    X, Y = _pair()
    with pytest.raises(ValueError, match="X is complex"):
        S.cka(X + 1j * Y, Y)
    with pytest.raises(ValueError, match="complex tensor"):
        S.cka(torch.from_numpy(X + 1j * Y), Y)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_tensors_are_converted_exactly(dtype):
    X, Y = _pair()
    Xh = torch.from_numpy(X).to(dtype)
    expected = S.cka(Xh.float().numpy(), Y)  # every bfloat16/float16 is exact in float32
    assert S.cka(Xh, Y) == expected
    assert metrics.global_resonance(Xh, Y, "cka_linear", n_boot=0, n_null=0).value.iloc[0] == \
        pytest.approx(expected)


def test_images_need_flattening_and_float_images_in_unit_range_match_uint8():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(30, 8, 8, 3), dtype=np.uint8)
    features = rng.standard_normal((30, 5))
    with pytest.raises(ValueError, match=r"flatten images .*reshape\(len\(X\), -1\)"):
        S.cka(images, features)
    flat = images.reshape(30, -1)
    for name in ("cka_linear_debiased", "mutual_knn", "procrustes"):
        assert S.similarity(flat / 255.0, features, name) == pytest.approx(
            S.similarity(flat, features, name), abs=1e-12)


def test_strings_and_ragged_lists_raise():
    with pytest.raises(ValueError, match="must be numeric"):
        S.cka([["a", "b"], ["c", "d"], ["e", "f"]], np.eye(3))


# ------------------------------------------------------------------ extreme magnitudes

SCALE_INVARIANT = [n for n in NAMES if n != "linear_predictivity"]


@pytest.mark.parametrize("name", SCALE_INVARIANT)
@pytest.mark.parametrize("scale", [1e154, 1e-160])
def test_scale_invariant_measures_survive_extreme_magnitudes(name, scale):
    X, Y = _pair()
    kw = FAST.get(name, {})
    # before: procrustes pi/2, RBF CKA NaN, mutual k-NN and SVCCA drift; RTD raised
    assert S.similarity(X * scale, Y, name, **kw) == pytest.approx(
        S.similarity(X, Y, name, **kw), rel=1e-9, abs=1e-12)


def test_ordinary_magnitudes_are_not_touched_by_the_rescaling():
    X, Y = _pair()
    assert S.cka(X * 2.0 ** 60, Y) == S.cka(X, Y)  # inside the safe band: the same bits
    assert S.cka(X * 2.0 ** 500, Y) == S.cka(X, Y)  # outside: an exact power-of-two rescale


def test_persistence_of_huge_or_tiny_clouds_is_the_scaled_diagram():
    rng = np.random.default_rng(4)
    angles = rng.uniform(0, 2 * np.pi, 60)
    X = np.c_[np.cos(angles), np.sin(angles)] + 0.05 * rng.standard_normal((60, 2))
    reference = T.persistence(X)
    for scale in (1e39, 1e154, 1e-45):
        scaled = T.persistence(X * scale)  # before: 1e39 gave empty diagrams (float32 overflow)
        assert [len(d) for d in scaled] == [len(d) for d in reference]
        for a, b in zip(scaled, reference):
            np.testing.assert_allclose(a, b * scale, rtol=1e-6)


def test_rescaled_procrustes_unscaled_keeps_units():
    X, Y = _pair()
    d = S.procrustes_distance(X, Y, "euclidean_unscaled")
    assert S.procrustes_distance(X * 1e154, Y * 1e154, "euclidean_unscaled") == pytest.approx(
        d * 1e154, rel=1e-9)
    assert S.procrustes_distance(3 * X, 3 * Y, "euclidean_unscaled") == pytest.approx(3 * d)
    assert S.procrustes_distance(3 * X, 3 * Y, "euclidean") == pytest.approx(
        S.procrustes_distance(X, Y, "euclidean"))
