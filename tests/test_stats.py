import numpy as np
import pytest
from scipy import stats as sps

from resonance import stats


def test_mean_ci_matches_scipy_t_interval():
    values = [1.0, 2.0, 4.0, 3.5]
    mean, low, high = stats.mean_ci(values)
    ref = sps.t.interval(0.95, 3, loc=np.mean(values), scale=sps.sem(values))
    assert mean == pytest.approx(2.625)
    assert (low, high) == pytest.approx(ref)
    assert np.isnan(stats.mean_ci([1.0])[1])
    with pytest.raises(ValueError, match="at least one value"):
        stats.mean_ci([])


def test_hedges_g_sign_and_known_value():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1, 1, 8), rng.normal(0, 2, 6)
    assert stats.hedges_g(a, b) > 0 > stats.hedges_g(b, a)
    # known value: two groups one pooled SD apart, large n -> g close to 1
    x = np.tile([-1.0, 1.0], 500)
    assert stats.hedges_g(x + 1, x) == pytest.approx(1 / np.std(x, ddof=1), rel=1e-2)


def test_cliffs_delta_known_values_and_errors():
    assert stats.cliffs_delta([3, 4, 5], [0, 1, 2]) == 1.0
    assert stats.cliffs_delta([0, 1], [2, 3]) == -1.0
    assert stats.cliffs_delta([1, 2], [1, 2]) == 0.0
    assert stats.cliffs_delta([1, 3], [2]) == 0.0  # one win, one loss
    with pytest.raises(ValueError, match="at least one value"):
        stats.cliffs_delta([], [1])
    with pytest.raises(ValueError, match="NaN"):
        stats.cliffs_delta([np.nan], [1])


def test_concentration_of_flat_and_front_loaded_series():
    assert stats.concentration(np.ones(12)) == pytest.approx(1 / 3)
    assert stats.concentration([9, 1, 1, 1, 1, 1]) == pytest.approx(10 / 14)
    with pytest.raises(ValueError, match="every velocity is 0"):
        stats.concentration(np.zeros(6))
    with pytest.raises(ValueError, match="non-negative"):
        stats.concentration([1, -1, 1])
    with pytest.raises(ValueError, match="no early window"):
        stats.concentration([1, 1])


def test_front_loaded_velocity_beats_its_permutation_null_and_a_flat_one_does_not():
    rng = np.random.default_rng(0)
    T = 15
    flat = 1 + 0.1 * rng.random(T)
    front = flat + 5 * np.exp(-np.arange(T) / 2)  # a transient peak, then stabilisation
    hi = stats.concentration_test(front, n_perm=2000, seed=1)
    lo = stats.concentration_test(flat, n_perm=2000, seed=1)
    assert hi["C"] > hi["null_high"] and hi["p_value"] < 0.01
    assert lo["null_low"] < lo["C"] < lo["null_high"] and lo["p_value"] > 0.05
    assert lo["uniform"] == pytest.approx(5 / 15) and lo["n_perm"] == 2000
    with pytest.raises(ValueError, match=">= 99"):
        stats.concentration_test(front, n_perm=10)


def test_checkpoint_permutation_null_on_paths():
    # A path that jumps away early and then sits still: checkpoint 0 far from the rest.
    T = 12
    pos = np.r_[0.0, np.full(T, 10.0) + 0.01 * np.arange(T)]
    D = np.abs(pos[:, None] - pos[None, :])
    res = stats.checkpoint_permutation_test(D, n_perm=999, seed=0)
    assert res["C"] > 0.99 and res["p_value"] < 0.05
    # A steady walk: every step the same length; C = 1/3 and not front-loaded.
    line = np.arange(T + 1.0)
    walk = stats.checkpoint_permutation_test(np.abs(line[:, None] - line[None, :]), n_perm=999)
    assert walk["C"] == pytest.approx(1 / 3) and walk["p_value"] > 0.05
    assert np.array_equal(stats.path_velocity(D), np.diff(pos))
    # Same seed, same permutations for any matrix of that size (paired nulls).
    a = stats.checkpoint_permutation_null(D, n_perm=99, seed=3)
    b = stats.checkpoint_permutation_null(D, n_perm=99, seed=3)
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="symmetric"):
        stats.checkpoint_permutation_test(np.triu(D), n_perm=99)
    with pytest.raises(ValueError, match="square"):
        stats.checkpoint_permutation_test(np.ones((3, 4)), n_perm=99)

def test_permutation_p_floor_and_direction():
    null = np.arange(99, dtype=float)
    assert stats.permutation_p(1000.0, null) == pytest.approx(0.01) == stats.p_floor(99)
    assert stats.permutation_p(-1.0, null) == pytest.approx(1.0)
    assert stats.permutation_p(-1.0, null, greater=False) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="no null draws"):
        stats.permutation_p(1.0, [])


def test_holm_matches_hand_computation():
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.5])
    assert adjusted == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_multiway_bootstrap_is_wider_than_a_pair_bootstrap_when_models_are_shared():
    import pandas as pd
    rng = np.random.default_rng(1)
    effect_a, effect_b = rng.normal(0, 1, 6), rng.normal(0, 1, 6)
    rows = [{"a": f"a{i}", "b": f"b{j}", "value": effect_a[i] + effect_b[j] + 0.05 * rng.normal()}
            for i in range(6) for j in range(6)]
    table = pd.DataFrame(rows)
    mean = lambda w: stats.weighted_mean(table["value"], w)  # noqa: E731
    two_way = stats.multiway_bootstrap(table, mean, ["a", "b"], n_boot=400, seed=0)
    pairs = stats.multiway_bootstrap(table.assign(pair=range(36)), mean, ["pair"], n_boot=400,
                                     seed=0)
    assert two_way.std() > 2 * pairs.std()
    with pytest.raises(ValueError, match="unit columns"):
        stats.multiway_bootstrap(table, mean, ["seed"])
    # strata: a difference between two groups of models stays defined in every draw
    table["group"] = np.where(table["a"].isin(["a0", "a1", "a2"]), "g1", "g2")
    strata = {**{f"a{i}": ("g1" if i < 3 else "g2") for i in range(6)},
              **{f"b{j}": "ref" for j in range(6)}}
    g1 = (table.group == "g1").to_numpy()
    diff = lambda w: (stats.weighted_mean(table.value, w, g1)  # noqa: E731
                      - stats.weighted_mean(table.value, w, ~g1))
    draws = stats.multiway_bootstrap(table, diff, ["a", "b"], strata=strata, n_boot=200)
    assert np.isfinite(draws).all()


def test_tost_needs_the_interval_inside_the_margin_not_a_ci_containing_zero():
    rng = np.random.default_rng(2)
    tight = rng.normal(0.01, 0.01, 2000)
    wide = rng.normal(0.0, 0.2, 2000)
    assert stats.tost_bootstrap(0.01, tight, margin=0.05)["equivalent"]
    res = stats.tost_bootstrap(0.0, wide, margin=0.05)
    assert not res["equivalent"] and res["p_value"] > 0.05
    with pytest.raises(ValueError, match="margin"):
        stats.tost_bootstrap(0.0, wide, margin=0)


def test_unigram_perplexity_of_a_uniform_stream_is_the_vocabulary_size():
    ids = np.tile(np.arange(8), 100)
    assert stats.unigram_perplexity(ids, ids, 8) == pytest.approx(8.0)
    with pytest.raises(ValueError, match="token ids"):
        stats.unigram_perplexity(ids, ids, 4)


def test_loso_fit_errors_prefers_the_shape_the_data_have():
    x = np.linspace(0, 3, 7)
    saturating = 0.6 - 0.5 * np.exp(-2.0 * x)
    lin, sat = stats.loso_fit_errors(x, saturating)
    assert sat < 0.2 * lin
    line = 0.1 + 0.2 * x
    lin, sat = stats.loso_fit_errors(x, line)
    assert lin < 1e-8
    with pytest.raises(ValueError, match=">= 5"):
        stats.loso_fit_errors(x[:4], line[:4])


def test_multiway_difference_recovers_a_group_gap_and_its_sign():
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = [{"model_a": f"a{g}{i}", "model_b": f"r{j}", "rung": g,
             "value": (0.5 if g == 1 else 0.3) + 0.01 * rng.standard_normal()}
            for g in (0, 1) for i in range(4) for j in range(2)]
    table = pd.DataFrame(rows)
    est, boots = stats.multiway_difference(table, "rung", 1, 0, ["model_a", "model_b"],
                                           n_boot=200)
    assert est == pytest.approx(0.2, abs=0.02) and boots.shape == (200,)
    low, high = stats.percentile_ci(boots)
    assert 0.15 < low < est < high < 0.25
    flipped, _ = stats.multiway_difference(table, "rung", 0, 1, ["model_a", "model_b"], n_boot=10)
    assert flipped == pytest.approx(-est)
    with pytest.raises(ValueError, match="rung == 2"):
        stats.multiway_difference(table, "rung", 2, 0, ["model_a", "model_b"])


def test_interval_class_reads_the_interval_not_the_point():
    assert stats.interval_class(-0.3, -0.1) == "better"
    assert stats.interval_class(0.1, 0.3) == "worse"
    assert stats.interval_class(-0.1, 0.1, equivalent=True) == "equivalent"
    assert stats.interval_class(-0.1, 0.1) == "undecided"


def test_seed_pair_difference_redraws_seeds_shared_by_both_groups():
    import pandas as pd
    rows = [{"arm": arm, "seed_a": a, "seed_b": b, "layer": layer,
             "cka": base + 0.01 * (a + b) + 0.001 * layer}
            for arm, base in (("x", 0.8), ("y", 0.7)) for a in range(5) for b in range(a + 1, 5)
            for layer in (0, 1)]
    out = stats.seed_pair_difference(pd.DataFrame(rows), "arm", "cka", "x", "y", n_boot=200)
    assert out["diff"] == pytest.approx(0.1)  # the seed effects are shared: they cancel
    assert out["ci_low"] == pytest.approx(0.1) and out["ci_high"] == pytest.approx(0.1)
    assert out["cka_a"] > out["cka_b"]


def test_paired_difference_tost_needs_the_interval_inside_the_margin():
    import pandas as pd
    a = pd.Series([1.00, 1.01, 0.99, 1.00, 1.005])
    close = stats.paired_difference(a, a - 0.001, margin=0.05)
    assert close["equivalent"] and close["tost_p"] < 0.05 and close["n_seeds"] == 5
    far = stats.paired_difference(a, a - 0.2 + 0.01 * np.arange(5), margin=0.05)
    assert not far["equivalent"] and far["ci_low"] > 0
