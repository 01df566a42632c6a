"""Small statistics used to report results: intervals over seeds and effect sizes."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats as _stats


def gaussian_like(Y: np.ndarray, rng: np.random.Generator, n_rows: int | None = None) -> np.ndarray:
    """Null cloud: an isotropic Gaussian ``(n_rows or n, d)`` with ``Y: (n, d)``'s mean and
    total variance (mean squared distance to the centroid)."""
    centred = Y - Y.mean(0)
    scale = np.sqrt((centred ** 2).sum() / centred.size)
    shape = (Y.shape[0] if n_rows is None else n_rows, Y.shape[1])
    return Y.mean(0) + rng.standard_normal(shape) * scale


def mean_ci(values: Sequence[float], ci: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval of independent values (e.g. one per seed).

    With a single value the interval is (nan, nan): one seed says nothing about seed noise.
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("mean_ci needs at least one value")
    mean = float(values.mean())
    if values.size < 2:
        return mean, float("nan"), float("nan")
    half = float(_stats.t.ppf((1 + ci) / 2, values.size - 1) * values.std(ddof=1)
                 / np.sqrt(values.size))
    return mean, mean - half, mean + half


def hedges_g(a: Sequence[float], b: Sequence[float]) -> float:
    """Hedges' g (bias-corrected standardised mean difference a − b)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 2 or b.size < 2:
        raise ValueError("Hedges' g needs at least two values per group")
    pooled = np.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1))
                     / (a.size + b.size - 2))
    if pooled == 0:
        return float("inf") * np.sign(a.mean() - b.mean()) if a.mean() != b.mean() else 0.0
    correction = 1 - 3 / (4 * (a.size + b.size) - 9)
    return float((a.mean() - b.mean()) / pooled * correction)


def diff_ci(a: Sequence[float], b: Sequence[float], ci: float = 0.95) -> tuple[float, float, float]:
    """Difference of means a − b with a Welch confidence interval."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return diff, float("nan"), float("nan")
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = np.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    dof = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    half = float(_stats.t.ppf((1 + ci) / 2, dof) * se)
    return diff, diff - half, diff + half


def fmt(value: float | None, spec: str = ".2f") -> str:
    """Format a number for a report; undefined ones (None, NaN) print as "n/a"."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    return format(value, spec)


def delete_d_jackknife_interval(value: float, replicates: Sequence[float], n: int, d: int,
                                ci: float = 0.95,
                                bounds: tuple[float, float] = (-np.inf, np.inf)) -> tuple[float, float]:
    """Normal interval ``value ± z · se`` from delete-``d`` jackknife replicates (Shao & Wu 1989),
    ``se² = (n - d) / (d · B) · Σ (θ_b - θ̄)²`` over the ``B`` replicates, clipped to ``bounds``
    (the measure's range: a CKA interval must not reach past 1). ``(nan, nan)`` when ``B < 2``.
    """
    replicates = np.asarray(replicates, dtype=float)
    if replicates.size < 2:
        return float("nan"), float("nan")
    se = np.sqrt((n - d) / (d * replicates.size) * ((replicates - replicates.mean()) ** 2).sum())
    half = float(_stats.norm.ppf((1 + ci) / 2) * se)
    low, high = bounds
    return float(np.clip(value - half, low, high)), float(np.clip(value + half, low, high))
