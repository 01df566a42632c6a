"""Linear maps between two models' representations of the same inputs: ``Y ≈ X W + b``.

>>> from resonance import linear_maps
>>> m = linear_maps.fit(X_train, Y_train)          # doctest: +SKIP  ridge, CV-chosen penalty
>>> linear_maps.quality(m, X_test, Y_test)         # doctest: +SKIP  R², raw & centred cosine

The penalty is chosen by scikit-learn's :class:`~sklearn.linear_model.RidgeCV` (efficient
leave-one-out cross-validation over :data:`ALPHAS`), never fixed. Quality is judged on held-out
pairs: variance-weighted R² (1 = perfect, 0 = the training mean, < 0 worse than it) and the
mean cosine between predicted and true rows, both raw and **centred** (the training mean of
``Y`` subtracted from both). Decoder states share a large mean direction, so raw cosines are
high for any predictor that outputs roughly the mean; :func:`baselines` gives the numbers a map
must beat (the training-mean predictor and a map fitted on shuffled pairs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ALPHAS", "LinearMap", "fit", "quality", "baselines", "mean_baseline", "fit_shuffled",
           "row_errors"]

# Penalties relative to the data: fit() rescales X to unit mean squared (centred) norm per row
# first, so one grid serves layers of any scale (Gemma's residual stream is ~100x SmolLM2's).
ALPHAS = np.logspace(-1, 4, 6)


@dataclass
class LinearMap:
    """``predict(X) = X @ coef + intercept``; ``coef: (d_in, d_out)``; ``alpha`` the chosen
    ridge penalty. A difference of two inputs (a steering direction) maps by ``coef`` alone."""

    coef: np.ndarray
    intercept: np.ndarray
    alpha: float
    y_mean: np.ndarray

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) @ self.coef + self.intercept

    def direction(self, v: np.ndarray) -> np.ndarray:
        """The image of a difference vector ``v: (d_in,)`` or ``(k, d_in)`` (no intercept)."""
        return np.asarray(v, dtype=np.float64) @ self.coef


def _check_pair(X, Y, what: str = "X, Y") -> tuple[np.ndarray, np.ndarray]:
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2:
        raise ValueError(f"{what} must be 2-D (n, d) arrays, got shapes {X.shape} and {Y.shape}")
    if len(X) != len(Y):
        raise ValueError(f"{what} must hold the same pairs: {len(X)} rows vs {len(Y)} rows")
    if len(X) < 3:
        raise ValueError(f"a linear map needs >= 3 pairs, got {len(X)}")
    if not (np.isfinite(X).all() and np.isfinite(Y).all()):
        raise ValueError(f"{what} contain NaN or inf: drop or fix those rows first")
    return X, Y


def fit(X: np.ndarray, Y: np.ndarray, alphas=ALPHAS) -> LinearMap:
    """Ridge regression of ``Y: (n, d_out)`` on ``X: (n, d_in)`` with an intercept; one penalty
    for all outputs, chosen among ``alphas`` by efficient leave-one-out CV (``RidgeCV``) after
    ``X`` is divided by its root mean squared centred row norm (``alpha`` is in those units)."""
    from sklearn.linear_model import RidgeCV

    X, Y = _check_pair(X, Y)
    alphas = np.asarray(alphas, dtype=float)
    if alphas.ndim != 1 or not len(alphas) or (alphas <= 0).any():
        raise ValueError(f"alphas must be a non-empty list of positive penalties, got {alphas}")
    scale = float(np.sqrt(((X - X.mean(0)) ** 2).sum(1).mean())) or 1.0
    model = RidgeCV(alphas=alphas, fit_intercept=True).fit(X / scale, Y)
    return LinearMap(coef=np.asarray(model.coef_, dtype=np.float64).T / scale,
                     intercept=np.asarray(model.intercept_, dtype=np.float64),
                     alpha=float(model.alpha_), y_mean=Y.mean(0))


def _cosines(P: np.ndarray, Y: np.ndarray) -> np.ndarray:
    num = (P * Y).sum(1)
    den = np.linalg.norm(P, axis=1) * np.linalg.norm(Y, axis=1)
    return num / np.maximum(den, 1e-300)


def row_errors(P: np.ndarray, Y: np.ndarray, y_mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per held-out row: squared error of the prediction and of the training mean (R²'s
    numerator and denominator), so R² can be resampled by rows or groups of rows."""
    return ((Y - P) ** 2).sum(1), ((Y - y_mean) ** 2).sum(1)


def _scores(P: np.ndarray, Y: np.ndarray, y_mean: np.ndarray) -> dict[str, float]:
    sse, sst = row_errors(P, Y, y_mean)
    return {"r2": float(1.0 - sse.sum() / sst.sum()),
            "cos_raw": float(_cosines(P, Y).mean()),
            "cos_centred": float(_cosines(P - y_mean, Y - y_mean).mean())}


def quality(m: LinearMap, X_test: np.ndarray, Y_test: np.ndarray) -> dict[str, float]:
    """Held-out ``r2`` (against the *training* mean), ``cos_raw``, ``cos_centred`` and ``alpha``.

    ``r2`` is variance-weighted over outputs: ``1 - Σ‖y - ŷ‖² / Σ‖y - ȳ_train‖²``.
    """
    X_test, Y_test = _check_pair(X_test, Y_test, "X_test, Y_test")
    if X_test.shape[1] != m.coef.shape[0] or Y_test.shape[1] != m.coef.shape[1]:
        raise ValueError(f"the map takes {m.coef.shape[0]} -> {m.coef.shape[1]} dimensions, "
                         f"got test arrays of widths {X_test.shape[1]} and {Y_test.shape[1]}")
    return {**_scores(m.predict(X_test), Y_test, m.y_mean), "alpha": m.alpha}


def baselines(X_train, Y_train, X_test, Y_test, seed: int = 0, alphas=ALPHAS,
              shuffled: "LinearMap | None" = None) -> dict[str, dict[str, float]]:
    """What a map must beat: ``mean`` (predict the training mean of ``Y`` for every row) and
    ``shuffled`` (a ridge map fitted on training pairs whose rows of ``Y`` were permuted; pass
    one already fitted by :func:`fit_shuffled` to reuse it)."""
    X_train, Y_train = _check_pair(X_train, Y_train, "X_train, Y_train")
    mean_scores = mean_baseline(Y_train, Y_test)
    if shuffled is None:
        shuffled = fit_shuffled(X_train, Y_train, seed, alphas)
    return {"mean": mean_scores, "shuffled": quality(shuffled, X_test, Y_test)}


def mean_baseline(Y_train: np.ndarray, Y_test: np.ndarray) -> dict[str, float]:
    """Scores of predicting the training mean of ``Y`` for every held-out row (R² ≈ 0; the
    centred cosine is 0 by definition: a constant has no centred direction)."""
    Y_train, Y_test = np.asarray(Y_train, np.float64), np.asarray(Y_test, np.float64)
    y_mean = Y_train.mean(0)
    out = _scores(np.broadcast_to(y_mean, Y_test.shape), Y_test, y_mean)
    return {**out, "cos_centred": 0.0}


def fit_shuffled(X: np.ndarray, Y: np.ndarray, seed: int = 0, alphas=ALPHAS) -> LinearMap:
    """The null map: :func:`fit` on pairs whose rows of ``Y`` were permuted (seeded)."""
    X, Y = _check_pair(X, Y)
    perm = np.random.default_rng([int(seed), 0x5F]).permutation(len(Y))
    return fit(X, Y[perm], alphas)
