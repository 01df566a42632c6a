"""Tests of resonance.decoding and resonance.topology.features."""

import numpy as np
import pytest

from resonance import decoding as A
from resonance import topology as T


def _blobs(n_groups=3, n_classes=3, per=8, n_feat=6, shift=3.0, seed=0):
    rng = np.random.default_rng(seed)
    X, y, g = [], [], []
    for group in range(n_groups):
        for c in range(n_classes):
            centre = np.zeros(n_feat)
            centre[c] = shift
            X.append(centre + rng.standard_normal((per, n_feat)))
            y += [f"arch{c}"] * per
            g += [group] * per
    return np.vstack(X), np.array(y), np.array(g)


def test_grouped_classifier_separable_features_score_high():
    X, y, g = _blobs(shift=4.0)
    res = A.grouped_classification(X, y, g, n_perm=9, n_boot=50)
    assert res["accuracy"] > 0.9
    assert res["ci_low"] > res["chance"]
    assert res["p_value"] == pytest.approx(1 / 10)  # the smallest possible with 9 permutations
    assert res["chance"] == pytest.approx(1 / 3)
    assert res["n_groups"] == 3 and res["n_classes"] == 3


def test_grouped_classifier_shuffled_labels_give_chance():
    X, y, g = _blobs(shift=4.0, per=10)
    rng = np.random.default_rng(1)
    y_shuffled = y.copy()
    for group in np.unique(g):  # shuffle labels within each seed group
        idx = np.flatnonzero(g == group)
        y_shuffled[idx] = rng.permutation(y[idx])
    res = A.grouped_classification(X, y_shuffled, g, n_perm=19, n_boot=50)
    assert abs(res["accuracy"] - 1 / 3) < 0.2
    assert res["p_value"] > 0.05


def test_grouped_classifier_never_trains_on_the_test_group():
    # A feature that identifies the class only through a group-specific code: a classifier that
    # saw the test group would score 1; with leave-one-group-out it cannot.
    rng = np.random.default_rng(0)
    n_groups, per = 4, 6
    X, y, g = [], [], []
    for group in range(n_groups):
        for c in range(3):
            code = np.zeros(3 * n_groups)
            code[group * 3 + c] = 1.0
            X.append(code + 0.01 * rng.standard_normal((per, 3 * n_groups)))
            y += [c] * per
            g += [group] * per
    res = A.grouped_classification(np.vstack(X), np.array(y), np.array(g), n_perm=4, n_boot=20)
    assert res["accuracy"] < 0.6


def test_grouped_classifier_rejects_bad_input():
    X, y, g = _blobs()
    with pytest.raises(ValueError, match="two groups"):
        A.grouped_classification(X, y, np.zeros_like(g), n_perm=5, n_boot=5)
    with pytest.raises(ValueError, match="two classes"):
        A.grouped_classification(X, np.full_like(y, "a"), g, n_perm=5, n_boot=5)
    X2 = X.copy()
    X2[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        A.grouped_classification(X2, y, g, n_perm=5, n_boot=5)


def test_normalise_scale_removes_scale_but_not_shape():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 5))
    a, b = T.normalise_scale(X), T.normalise_scale(7.5 * X)
    np.testing.assert_allclose(a, b)
    feats_a = T.topo_features(a)
    feats_b = T.topo_features(b)
    assert feats_a == pytest.approx(feats_b)
    assert T.scale_features(7.5 * X)["scale_median_distance"] == pytest.approx(
        7.5 * T.scale_features(X)["scale_median_distance"])
    with pytest.raises(ValueError, match="zero median"):
        T.normalise_scale(np.ones((5, 3)))


def test_concept_decodability_needs_concept_structure_that_generalises_across_words():
    rng = np.random.default_rng(0)
    concepts = np.repeat([f"c{i}" for i in range(4)], 30)
    words = np.array([f"{c}-w{i % 6}" for i, c in enumerate(concepts)])
    centres = rng.standard_normal((4, 16)) * 3
    codes = {c: i for i, c in enumerate(np.unique(concepts))}
    X = np.stack([centres[codes[c]] for c in concepts]) + rng.standard_normal((120, 16))
    good = A.concept_decodability(X, concepts, words, n_boot=100)
    assert good["accuracy"] > 0.9 and good["ci_low"] > good["chance"] == 0.25
    # word identity only (each word its own random centre): held-out words are at chance
    word_centres = {w: rng.standard_normal(16) * 3 for w in np.unique(words)}
    Xw = np.stack([word_centres[w] for w in words]) + 0.1 * rng.standard_normal((120, 16))
    bad = A.concept_decodability(Xw, concepts, words, n_boot=100)
    assert bad["accuracy"] < 0.5


def test_nested_increment_detects_extra_information_and_not_noise():
    rng = np.random.default_rng(1)
    y = np.tile(["a", "b", "c"], 30)
    groups = np.repeat(np.arange(5), 18)
    base = rng.standard_normal((90, 2))
    informative = (y[:, None] == np.array(["a", "b", "c"])).astype(float) * 3 + rng.standard_normal((90, 3))
    res = A.nested_increment(base, informative, y, groups, n_perm=19)
    assert res["increment"] > 0.4 and res["p_value"] == pytest.approx(0.05)
    noise = A.nested_increment(base, rng.standard_normal((90, 3)), y, groups, n_perm=19)
    assert noise["p_value"] > 0.05
