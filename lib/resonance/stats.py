"""Small statistics used to report results: intervals over seeds and effect sizes."""

from __future__ import annotations

from typing import Any, Sequence

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


def cliffs_delta(a: Sequence[float], b: Sequence[float]) -> float:
    """Cliff's δ = P(a > b) − P(a < b) over all pairs (−1 … 1; 0 = no dominance)."""
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError("Cliff's delta needs at least one value per group")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("Cliff's delta got NaN or inf values")
    diff = np.sign(a[:, None] - b[None, :])
    return float(diff.mean())


def _early_count(n_steps: int, early_fraction: float) -> int:
    if not 0 < early_fraction < 1:
        raise ValueError(f"early_fraction must lie in (0, 1), got {early_fraction}")
    k = int(np.floor(n_steps * early_fraction + 1e-9))
    if k < 1 or k >= n_steps:
        raise ValueError(f"{n_steps} steps leave no early window of {early_fraction:.3g} of "
                         f"them; use more checkpoints (at least {int(np.ceil(1 / early_fraction)) + 1})")
    return k


def concentration(velocity: Sequence[float], early_fraction: float = 1 / 3) -> float:
    """Share of the total path travelled in the first steps: ``Σ_{t ≤ T/3} v_t / Σ_t v_t``.

    ``velocity (T,)`` are non-negative step lengths between consecutive, evenly spaced
    checkpoints (``v_1`` = checkpoint 0 → 1). The early window is the first
    ``floor(T · early_fraction)`` steps, so a constant velocity gives that window's share
    (1/3 when ``T`` is a multiple of 3). Undefined (``ValueError``) when every step is 0.
    """
    v = np.asarray(velocity, dtype=float).ravel()
    if not np.isfinite(v).all() or (v < 0).any():
        raise ValueError("velocities must be finite and non-negative")
    k = _early_count(v.size, early_fraction)
    total = v.sum()
    if total <= 0:
        raise ValueError("every velocity is 0: nothing moved, so concentration is undefined")
    return float(v[:k].sum() / total)


def null_summary(observed: float, null: Sequence[float], uniform: float) -> dict[str, float]:
    """C against null draws of it: C, null_mean, null_low / null_high (2.5 / 97.5 percentiles),
    p_value = ``(1 + #{null ≥ C}) / (1 + n)`` (one-sided: front-loaded?), uniform, n_perm."""
    null = np.asarray(null, dtype=float).ravel()
    if null.size < 99:
        raise ValueError(f"need >= 99 null draws for a p-value, got {null.size}")
    return {"C": float(observed), "null_mean": float(null.mean()),
            "null_low": float(np.quantile(null, 0.025)),
            "null_high": float(np.quantile(null, 0.975)),
            "p_value": float((1 + np.sum(null >= observed - 1e-12)) / (1 + null.size)),
            "uniform": float(uniform), "n_perm": int(null.size)}


def _check_n_perm(n_perm: Any) -> int:
    if not isinstance(n_perm, (int, np.integer)) or n_perm < 99:
        raise ValueError(f"n_perm must be an integer >= 99 for a p-value, got {n_perm!r}")
    return int(n_perm)


def concentration_test(velocity: Sequence[float], n_perm: int = 2000, seed: int = 0,
                       early_fraction: float = 1 / 3) -> dict[str, float]:
    """:func:`concentration` against a null that shuffles the order of the steps.

    Each of ``n_perm`` draws permutes the velocities ``(T,)`` and recomputes C. Returns the
    fields of :func:`null_summary`. A flat series sits at the null; a front-loaded one above.
    """
    v = np.asarray(velocity, dtype=float).ravel()
    observed = concentration(v, early_fraction)
    k = _early_count(v.size, early_fraction)
    rng = np.random.default_rng([seed, 0xC0C])
    perms = np.argsort(rng.random((_check_n_perm(n_perm), v.size)), axis=1)
    null = v[perms][:, :k].sum(1) / v.sum()
    return null_summary(observed, null, k / v.size)


def path_velocity(distances: Any) -> np.ndarray:
    """Consecutive steps ``D[t, t+1]`` ``(T,)`` of a checkpoint distance matrix ``(T+1, T+1)``."""
    return np.diagonal(_distance_matrix(distances), offset=1).copy()


def _distance_matrix(distances: Any) -> np.ndarray:
    D = np.asarray(distances, dtype=float)
    if D.ndim != 2 or D.shape[0] != D.shape[1] or D.shape[0] < 3:
        raise ValueError(f"need a square (T+1, T+1) distance matrix with T+1 >= 3, got {D.shape}")
    if not np.isfinite(D).all() or (D < 0).any():
        raise ValueError("distances must be finite and non-negative")
    if not np.allclose(D, D.T, rtol=1e-9, atol=1e-12):
        raise ValueError("the distance matrix is not symmetric")
    return D


def checkpoint_permutation_null(distances: Any, n_perm: int = 2000, seed: int = 0,
                                early_fraction: float = 1 / 3) -> np.ndarray:
    """Null draws ``(n_perm,)`` of C for the path through checkpoints ``0..T``.

    ``distances (T+1, T+1)``: any distance between every pair of checkpoints (diagram
    distance, parameter distance, 1 − CKA). Each draw visits the checkpoints in a random
    order ``π`` and takes ``v_t = D[π_t, π_{t+1}]``: the null keeps every distance the run
    produced and forgets only which checkpoint came when. The same ``seed`` gives the same
    permutations for every matrix of the same size (paired nulls across measures).
    """
    D = _distance_matrix(distances)
    T = D.shape[0] - 1
    k = _early_count(T, early_fraction)
    rng = np.random.default_rng([seed, 0xC4E])
    perms = np.argsort(rng.random((_check_n_perm(n_perm), T + 1)), axis=1)
    steps = D[perms[:, :-1], perms[:, 1:]]  # (n_perm, T)
    totals = steps.sum(1)
    if (totals <= 0).any():
        raise ValueError("a permuted path has length 0: the checkpoints all coincide")
    return steps[:, :k].sum(1) / totals


def checkpoint_permutation_test(distances: Any, n_perm: int = 2000, seed: int = 0,
                                early_fraction: float = 1 / 3) -> dict[str, float]:
    """:func:`concentration` of the observed path ``D[t, t+1]`` against
    :func:`checkpoint_permutation_null`; returns the fields of :func:`null_summary`."""
    D = _distance_matrix(distances)
    T = D.shape[0] - 1
    observed = concentration(np.diagonal(D, offset=1), early_fraction)
    null = checkpoint_permutation_null(D, n_perm, seed, early_fraction)
    return null_summary(observed, null, _early_count(T, early_fraction) / T)


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
