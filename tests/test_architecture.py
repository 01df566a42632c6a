"""Fast tests of the 02_architecture helpers (no models, no training)."""

import numpy as np
import pandas as pd
import pytest

from resonance.experiments import architecture as A
from resonance.experiments.common import profile_config


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


def test_single_feature_accuracy_ranks_the_informative_feature_first():
    X, y, g = _blobs(shift=4.0, n_feat=3)
    X = np.column_stack([X[:, 0], np.random.default_rng(2).standard_normal(len(y))])
    table = A.single_feature_accuracy(X, y, g, ["informative", "noise"])
    assert table["feature"].iloc[0] == "informative"


def test_stratified_subsets_are_disjoint_and_balanced():
    labels = np.repeat(list("abcde"), 8)
    subsets = A.stratified_subsets(labels, 4, seed=0)
    assert len(subsets) == 4
    joined = np.concatenate(subsets)
    assert sorted(joined.tolist()) == list(range(len(labels)))
    for s in subsets:
        assert set(pd.Series(labels[s]).value_counts()) == {2}


def test_normalise_scale_removes_scale_but_not_shape():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 5))
    a, b = A.normalise_scale(X), A.normalise_scale(7.5 * X)
    np.testing.assert_allclose(a, b)
    feats_a = A.topo_features(a, np.repeat(list("ab"), 20))
    feats_b = A.topo_features(b, np.repeat(list("ab"), 20))
    assert feats_a == pytest.approx(feats_b)
    assert A.scale_features(7.5 * X)["scale_median_distance"] == pytest.approx(
        7.5 * A.scale_features(X)["scale_median_distance"])
    with pytest.raises(ValueError, match="zero median"):
        A.normalise_scale(np.ones((5, 3)))


def test_mapper_purity():
    graph = {"nodes": {"a": [0, 1, 2, 3], "b": [4, 5]}}
    assert A.mapper_purity(graph, ["x", "x", "x", "y", "y", "z"]) == pytest.approx(4 / 6)


def test_depth_layers_and_bootstrap():
    assert A.depth_layers(4, [0, 0.5, 1]) == [0, 2, 4]
    assert A.depth_layers(30, [0, 0.1, 1]) == [0, 3, 30]
    mean, lo, hi = A.bootstrap_mean([1.0, 2.0, 3.0], 200, seed=0)
    assert mean == 2.0 and 1.0 <= lo <= mean <= hi <= 3.0
    with pytest.raises(ValueError):
        A.bootstrap_mean([], 10, 0)


@pytest.mark.parametrize("profile", ["smoke", "paper"])
def test_profiles_validate(profile):
    config = profile_config(A.SIZES, profile, 0, {})
    A.validate_config(config)
    if profile == "paper":
        assert config["n_seeds"] >= 3
        # the GPT-2 shape is a rung of 01_scale's ladder, so the trained seeds are shared
        from resonance.experiments import scale
        assert config["shape"] in profile_config(scale.SIZES, "paper", 0, {})["ladder"]


@pytest.mark.parametrize("override, message", [
    ({"families": ["gpt2"]}, "two distinct"),
    ({"families": ["gpt2", "transformer-xl"]}, "unknown families"),
    ({"n_seeds": 1}, "n_seeds"),
    ({"n_subsets": 3}, "divisible"),
    ({"n_per_concept": 4, "n_subsets": 2}, ">= 8"),
    ({"pretrained": ["bert-large"]}, "unknown pretrained"),
    ({"map_pairs": [["gpt2-s0", "gpt2-s7"]]}, "map pair"),
    ({"shape": [100, 3]}, "shape"),
    ({"shape": [128]}, "shape"),
])
def test_bad_configs_are_rejected(override, message):
    config = profile_config(A.SIZES, "smoke", 0, override)
    with pytest.raises(ValueError, match=message):
        A.validate_config(config)


def test_unknown_override_is_rejected():
    with pytest.raises(ValueError, match="unknown parameter"):
        A.run("smoke", n_layers=3)


def test_concept_accuracy_matches_sklearn_knn():
    from sklearn.model_selection import LeaveOneOut, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    rng = np.random.default_rng(3)
    X, y, _ = _blobs(n_groups=1, per=15, shift=2.0, seed=3)
    X = X + 0.1 * rng.standard_normal(X.shape)
    ours = A.concept_accuracy(X, y, k=5)
    knn = KNeighborsClassifier(n_neighbors=5, metric="cosine")
    theirs = cross_val_score(knn, X, y, cv=LeaveOneOut()).mean()
    assert ours == pytest.approx(theirs, abs=0.05)
    assert ours > 0.5  # chance is 1/3


def test_local_cka_rows_signal_and_within_concept_null():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 12)
    X = rng.standard_normal((36, 8))
    Q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    rows = A.local_cka_rows(X, 2.0 * X @ Q, labels, rng)  # same geometry within every concept
    assert [r["concept"] for r in rows] == ["a", "b", "c"]
    assert all(r["value"] == pytest.approx(1.0) for r in rows)
    assert all(abs(r["null"]) < 0.5 for r in rows)
    # a second cloud unrelated to X: local CKA near zero for every concept
    unrelated = A.local_cka_rows(X, rng.standard_normal((36, 8)), labels, rng)
    assert all(abs(r["value"]) < 0.5 for r in unrelated)


def test_local_by_concept_summarises_the_last_depth():
    local = pd.DataFrame([
        {"group": "in-house", "kind": kind, "concept": c, "depth": depth, "value": v, "null": 0.0}
        for kind, base in (("within", 0.8), ("across", 0.4))
        for c in ("a", "b") for depth in (0.0, 1.0) for v in (base - 0.05, base + 0.05)])
    table = A.local_by_concept(local, n_boot=100)
    assert len(table) == 4  # (kind, concept) at depth 1 only
    assert table.set_index(["kind", "concept"]).loc[("across", "a"), "mean"] == pytest.approx(0.4)
    meta = A._local_summary(table)
    assert meta["inhouse_local_concepts_above_null"] == 2
    assert meta["inhouse_local_concepts_below_ceiling"] == 2
