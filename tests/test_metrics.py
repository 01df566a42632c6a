import numpy as np
import pandas as pd
import pytest

from resonance import metrics


def _rotation(d, rng):
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return q


def _grid_table(grid):
    n_a, n_b = grid.shape
    return pd.DataFrame([{"layer_a": i, "layer_b": j, "depth_a": i / max(n_a - 1, 1),
                          "depth_b": j / max(n_b - 1, 1), "measure": "toy", "value": grid[i, j]}
                         for i in range(n_a) for j in range(n_b)])


def test_global_resonance_of_a_rotated_copy_beats_its_null():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 8)) @ rng.standard_normal((8, 20))
    Y = 3 * X @ _rotation(20, rng)  # mutual k-NN uses cosine: not translation-invariant
    table = metrics.global_resonance(X, Y, ["cka_linear_debiased", "mutual_knn"], n_boot=20,
                                     n_null=50, seed=0)
    cka = table.set_index("measure").loc["cka_linear_debiased"]
    assert cka.value == pytest.approx(1.0, abs=1e-6)
    # every resample keeps X's and Y's rows paired, so an exact copy stays at 1 in each of them:
    # an interval below 1 would mean the rows were resampled apart
    assert (cka.ci_low, cka.ci_high) == pytest.approx((1.0, 1.0), abs=1e-6)
    assert abs(cka.null_mean) < 0.1 and cka.p_value == pytest.approx(1 / 51)
    knn = table.set_index("measure").loc["mutual_knn"]
    assert knn.value == pytest.approx(1.0) and knn.null_mean < 0.4


def test_global_resonance_of_independent_clouds_is_not_significant():
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((60, 10)), rng.standard_normal((60, 12))
    table = metrics.global_resonance(X, Y, ["cka_linear_debiased"], n_boot=10, n_null=50)
    assert table.p_value.iloc[0] > 0.05
    assert table.null_low.iloc[0] <= table.value.iloc[0] <= table.null_high.iloc[0]


def test_global_resonance_is_deterministic_by_seed():
    rng = np.random.default_rng(2)
    X, Y = rng.standard_normal((40, 5)), rng.standard_normal((40, 6))
    first = metrics.global_resonance(X, Y, ["cka_linear"], n_boot=10, n_null=10, seed=3)
    again = metrics.global_resonance(X, Y, ["cka_linear"], n_boot=10, n_null=10, seed=3)
    pd.testing.assert_frame_equal(first, again)


def test_rtd_is_a_divergence_with_a_shuffle_null():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 3))
    table = metrics.global_resonance(X, X @ _rotation(3, rng), ["rtd"], n_boot=0, n_null=3,
                                     measure_kwargs={"rtd": {"n_subsamples": 1,
                                                             "subsample_size": 40}})
    row = table.iloc[0]
    assert row.divergence and row["null"] == "shuffle"
    assert row.value < row.null_low


def test_gaussian_like_matches_shape_mean_and_total_variance():
    rng = np.random.default_rng(4)
    Y = rng.standard_normal((500, 6)) * np.arange(1, 7) + 5
    G = metrics.gaussian_like(Y, rng)
    assert G.shape == Y.shape
    np.testing.assert_allclose(G.mean(0), Y.mean(0), atol=0.5)
    assert G.var(0).sum() == pytest.approx(Y.var(0).sum(), rel=0.1)


def _shared_then_unrelated(seed, d, n_other, n_shared=30):
    """X, Y: ``n_shared`` rows related by a rotation, then ``n_other`` unrelated rows."""
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal((n_shared, d))
    X = np.vstack([shared, rng.standard_normal((n_other, d))])
    return X, np.vstack([shared @ _rotation(d, rng), rng.standard_normal((n_other, d))])


def test_local_resonance_finds_the_concept_the_models_share():
    X, Y = _shared_then_unrelated(5, 10, 30)
    labels = ["shared"] * 30 + ["unrelated"] * 30
    table = metrics.local_resonance(X, Y, labels, n_boot=5, n_null=20).set_index("concept")
    assert table.loc["shared", "value"] > 0.9 > 0.3 > table.loc["unrelated", "value"]
    with pytest.raises(ValueError, match="has 30 stimuli"):
        metrics.local_resonance(X, Y, labels, min_items=40)
    with pytest.raises(ValueError, match="labels has 3 entries"):
        metrics.local_resonance(X, Y, ["a", "b", "c"])


def test_unknown_measure_names_the_known_ones():
    X = np.random.default_rng(0).standard_normal((20, 3))
    with pytest.raises(ValueError, match="unknown measure 'cosine'.*cka_linear"):
        metrics.global_resonance(X, X, ["cosine"])


def test_best_layer_map_is_monotone_and_maximal():
    grid = np.array([[0.9, 0.1, 0.0],
                     [0.2, 0.3, 0.8],
                     [0.1, 0.7, 0.6],   # argmax goes back to layer 1; monotone map cannot
                     [0.0, 0.2, 0.9]])
    table = _grid_table(grid)
    free = metrics.best_layer_map(table, monotone=False)
    assert free.layer_b.tolist() == [0, 2, 1, 2]
    mono = metrics.best_layer_map(table, monotone=True)
    assert np.all(np.diff(mono.layer_b) >= 0)
    assert mono.value.sum() == pytest.approx(0.9 + 0.8 + 0.6 + 0.9)
    assert mono.depth_b.tolist() == [0.0, 1.0, 1.0, 1.0]


def test_layer_identification_and_depth_trajectory():
    grid = np.eye(4) + 0.1
    grid[3, 2] = 2.0
    table = _grid_table(grid)
    assert metrics.layer_identification(table) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="equal depths"):
        metrics.layer_identification(_grid_table(np.ones((3, 4))))
    trajectory = metrics.depth_trajectory(_grid_table(np.arange(12.0).reshape(3, 4)), n_points=3)
    assert trajectory.layer_a.tolist() == [0, 1, 2] and trajectory.layer_b.tolist() == [0, 2, 3]
    assert trajectory.value.tolist() == [0.0, 6.0, 11.0]


def test_positional_resonance_per_position():
    rng = np.random.default_rng(6)
    A = rng.standard_normal((90, 5))
    B = np.where(np.repeat(np.arange(3), 30)[:, None] == 0, A, rng.standard_normal((90, 5)))
    out = metrics.positional_resonance(A, B, np.repeat(np.arange(3), 30), "cka_linear")
    assert out.position.tolist() == [0, 1, 2]
    assert out.value.iloc[0] == pytest.approx(1.0) and out.value.iloc[1] < 0.5


def test_interval_is_centred_on_the_value_for_size_dependent_measures():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((80, 6))
    Y = X + 0.5 * rng.standard_normal((80, 6))
    table = metrics.global_resonance(X, Y, ["mutual_knn", "cka_linear_debiased"], n_boot=30,
                                     n_null=5).set_index("measure")
    for row in table.itertuples():
        assert row.ci_low < row.value < row.ci_high
        assert row.value - row.ci_low == pytest.approx(row.ci_high - row.value)


def test_pair_topology_keeps_groups_large_enough_and_counts_them():
    X, Y = _shared_then_unrelated(6, 6, 12)
    groups = ["shared"] * 30 + ["small"] * 12
    glob, local = metrics.pair_topology(X, Y, groups, n_boot=0, n_null=9, subsample=20,
                                        n_subsamples=1, min_items=15, local_null=19, seed=0)
    assert sorted(glob["measure"]) == ["persistence_distance", "rtd"]
    assert set(local["concept"]) == {"shared"} and set(local["n_items"]) == {30}
    knn = local.set_index("measure").loc["cka_linear_debiased"]
    assert knn["value"] > 0.9 and knn["p_value"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="no group has 40 items"):
        metrics.pair_topology(X, Y, groups, n_boot=0, n_null=9, subsample=20, n_subsamples=1,
                              min_items=40, local_null=19)
