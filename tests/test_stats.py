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
