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
    with pytest.raises(ValueError):
        stats.mean_ci([])


def test_diff_ci_matches_welch_test_and_hedges_g_sign():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1, 1, 8), rng.normal(0, 2, 6)
    diff, low, high = stats.diff_ci(a, b)
    t = sps.ttest_ind(a, b, equal_var=False)
    # the interval excludes 0 exactly when Welch's test rejects at 5 %
    assert (low > 0 or high < 0) == (t.pvalue < 0.05)
    assert diff == pytest.approx(a.mean() - b.mean())
    assert stats.hedges_g(a, b) > 0 > stats.hedges_g(b, a)
    # known value: two groups one pooled SD apart, large n -> g close to 1
    x = np.tile([-1.0, 1.0], 500)
    assert stats.hedges_g(x + 1, x) == pytest.approx(1 / np.std(x, ddof=1), rel=1e-2)


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
