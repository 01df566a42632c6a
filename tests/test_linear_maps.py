"""Linear maps: ridge with a cross-validated penalty, held-out quality and its baselines."""

import numpy as np
import pytest

from resonance import linear_maps


def _linear_pairs(n=400, d_in=20, d_out=15, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d_in)) + 3.0  # a shared offset, as decoder states have
    W = rng.normal(size=(d_in, d_out))
    Y = X @ W + 5.0 + noise * rng.normal(size=(n, d_out))
    return X, Y, W


def test_a_known_linear_relation_is_recovered_on_held_out_pairs():
    X, Y, W = _linear_pairs()
    m = linear_maps.fit(X[:300], Y[:300])
    q = linear_maps.quality(m, X[300:], Y[300:])
    assert q["r2"] > 0.99
    assert q["cos_centred"] > 0.99
    assert m.alpha in linear_maps.ALPHAS
    np.testing.assert_allclose(m.coef, W, atol=0.05)
    # a direction (difference of two inputs) maps through coef alone
    np.testing.assert_allclose(m.direction(X[0] - X[1]), m.predict(X[:1])[0] - m.predict(X[1:2])[0])


def test_the_penalty_is_chosen_by_cross_validation():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 50))
    Y = X[:, :1] @ np.ones((1, 5)) + 3.0 * rng.normal(size=(60, 5))  # noisy, many features
    assert linear_maps.fit(X, Y).alpha > linear_maps.fit(*_linear_pairs()[:2]).alpha


def test_shuffled_pairs_and_the_mean_predictor_score_near_zero():
    X, Y, _ = _linear_pairs(noise=0.5)
    base = linear_maps.baselines(X[:300], Y[:300], X[300:], Y[300:])
    assert abs(base["shuffled"]["r2"]) < 0.1
    assert abs(base["shuffled"]["cos_centred"]) < 0.2
    assert base["mean"]["r2"] == pytest.approx(0.0, abs=0.05)
    # the raw cosine of a constant mean prediction is high: why centring is needed
    assert base["mean"]["cos_raw"] > 0.5


def test_bad_input_is_named():
    X, Y, _ = _linear_pairs()
    with pytest.raises(ValueError, match="same pairs"):
        linear_maps.fit(X, Y[:-1])
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        linear_maps.fit(Xn, Y)
    m = linear_maps.fit(X, Y)
    with pytest.raises(ValueError, match="dimensions"):
        linear_maps.quality(m, X[:, :5], Y)
    with pytest.raises(ValueError, match="positive"):
        linear_maps.fit(X, Y, alphas=[0.0])
