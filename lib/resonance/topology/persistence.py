"""Vietoris-Rips persistence of a point cloud ``(n, d)`` via ripser, with bounded ``n``.

Ripser's memory grows with the number of simplices, so ``persistence`` first cuts the cloud
down to ``max_points`` rows (greedy landmarks by default) and only then calls ripser.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ripser import ripser
from sklearn.metrics import pairwise_distances

from .._checks import as_matrix, not_constant, scale_exponent, unit_scaled

SUBSAMPLE_METHODS = ("random", "landmark")
# Metrics with d(sx, sy) = s d(x, y): clouds of extreme magnitude are rescaled exactly before the
# distances are computed (their squares would overflow) and the distances scaled back.
_HOMOGENEOUS_METRICS = ("euclidean", "l2", "manhattan", "l1", "cityblock", "chebyshev")


def min_points(maxdim: int) -> int:
    """Fewest points whose Rips complex can carry an ``H_maxdim`` bar: ``2 * maxdim + 2``.

    (Two points for an H0 death, a 4-cycle for H1, an octahedron for H2.)
    """
    return 2 * int(maxdim) + 2


def _check_maxdim(maxdim: int) -> int:
    if not isinstance(maxdim, (int, np.integer)) or maxdim < 0:
        raise ValueError(f"maxdim/dim must be a non-negative integer, got {maxdim!r}")
    return int(maxdim)


def _as_cloud(X: Any, name: str, maxdim: int) -> np.ndarray:
    X = as_matrix(X, name, min_rows=min_points(maxdim))
    return not_constant(X, name)


def subsample(X: Any, m: int, method: str = "random", seed: int = 0,
              metric: str = "euclidean") -> np.ndarray:
    """Indices ``(min(m, n),)`` of the rows of ``X: (n, d)`` to keep.

    ``method="random"``: ``m`` distinct rows drawn uniformly (sorted).
    ``method="landmark"``: greedy permutation / farthest point sampling (maxmin): start at a
    row drawn with ``seed``, then repeatedly add the row farthest from the landmarks so far.
    The landmarks cover the cloud: every row lies within the last insertion radius of one.
    Returned in insertion order.  When ``m >= n`` every index ``0..n-1`` is returned.
    Deterministic given ``seed`` (ties go to the lowest index).
    """
    X = as_matrix(X, "X", min_rows=1)
    n = X.shape[0]
    if not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"m must be a positive integer, got {m!r}")
    if method not in SUBSAMPLE_METHODS:
        raise ValueError(f"method must be one of {SUBSAMPLE_METHODS}, got {method!r}")
    if m >= n:
        return np.arange(n)
    if metric in _HOMOGENEOUS_METRICS:
        X = unit_scaled(X)  # landmarks do not change with scale; squares of ~1e154 would overflow
    rng = np.random.default_rng(seed)
    if method == "random":
        return np.sort(rng.choice(n, size=int(m), replace=False))
    if metric == "euclidean":  # one mat-vec per landmark (the expansion sklearn also uses)
        sq = np.einsum("ij,ij->i", X, X)

        def to_all(i: int) -> np.ndarray:
            return np.sqrt(np.maximum(sq - 2.0 * (X @ X[i]) + sq[i], 0.0))
    else:
        def to_all(i: int) -> np.ndarray:
            return pairwise_distances(X, X[i][None, :], metric=metric).ravel()
    idx = np.empty(int(m), dtype=np.int64)
    idx[0] = rng.integers(n)
    dist = to_all(idx[0])
    for k in range(1, int(m)):
        idx[k] = int(np.argmax(dist))
        np.minimum(dist, to_all(idx[k]), out=dist)
    return idx


QUANTILE_OVER = ("matrix", "pairs")


def scaled_distances(X: np.ndarray, metric: str = "euclidean", quantile: float = 0.9,
                     quantile_over: str = "matrix") -> np.ndarray:
    """Pairwise distances ``(n, n)`` of ``X`` divided by their ``quantile``.

    ``quantile_over="matrix"`` (default, as the RTD authors do): the quantile of all ``n²``
    entries, the zero diagonal included; ``"pairs"``: of the ``n(n-1)/2`` pairs ``i < j`` only
    (this library's convention before 2026-12; a slightly larger scale, by O(1/n)). Dividing by a
    quantile of the distances makes the matrix scale-free, so two clouds are compared by shape,
    not by the size of their activations.
    """
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile must lie in (0, 1], got {quantile}")
    if quantile_over not in QUANTILE_OVER:
        raise ValueError(f"quantile_over must be one of {QUANTILE_OVER}, got {quantile_over!r}")
    D = pairwise_distances(unit_scaled(X), metric=metric)  # exact rescale; normalised below
    values = D if quantile_over == "matrix" else D[np.triu_indices(D.shape[0], k=1)]
    scale = float(np.quantile(values, quantile))
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"the {quantile} quantile of the pairwise distances is {scale}: most "
                         "stimuli coincide, so there is no shape to normalise")
    return D / scale


def finite_diagrams(dgms: list[np.ndarray]) -> list[np.ndarray]:
    """Ripser's diagrams as float64 ``(k, 2)`` arrays with infinite bars dropped."""
    out = []
    for dgm in dgms:
        dgm = np.asarray(dgm, dtype=np.float64).reshape(-1, 2)
        out.append(dgm[np.isfinite(dgm[:, 1])])
    return out


# ripser works in float32 (max ~3.4e38, smallest normal ~1.2e-38): distance matrices whose largest
# finite entry lies outside [2^-32, 2^32] are rescaled by a power of two first (exact both ways).
_RIPSER_EXPONENT = 32


def ripser_distance_matrix(D: np.ndarray, maxdim: int) -> list[np.ndarray]:
    """Diagrams H0..H``maxdim`` (infinite bars dropped) of a distance matrix ``(n, n)``.

    Ripser casts to float32, so a matrix of distances ~1e39 would overflow to inf (and return
    empty diagrams) and one of ~1e-39 would underflow; such a matrix is scaled by a power of two
    into float32's range and the diagrams scaled back, exactly.
    """
    finite = np.abs(D[np.isfinite(D)])
    top = float(finite.max()) if finite.size else 0.0
    exponent = 0
    if top > 0 and not 2.0 ** -_RIPSER_EXPONENT <= top <= 2.0 ** _RIPSER_EXPONENT:
        exponent = int(np.frexp(top)[1])
        D = np.ldexp(D, -exponent)
    dgms = finite_diagrams(ripser(D, maxdim=maxdim, distance_matrix=True)["dgms"])
    return [np.ldexp(d, exponent) for d in dgms] if exponent else dgms


def persistence(X: Any, maxdim: int = 1, max_points: int = 500,
                subsample_method: str = "landmark", seed: int = 0,
                metric: str = "euclidean") -> list[np.ndarray]:
    """Rips persistence diagrams ``[H0, ..., H_maxdim]`` of ``X: (n, d)``, each ``(k, 2)``.

    Clouds with more than ``max_points`` rows are first cut down with :func:`subsample`
    (``subsample_method``, ``seed``), so time and memory stay bounded whatever ``n``: H0+H1
    of 500 landmarks of a 384-d layer take ~1-4 s and ~120 MB (1000 points: ~5 s, ~150 MB;
    ripser's memory grows ~quadratically beyond).  Distances are ``metric`` (any sklearn
    metric), not rescaled.

    Which subsample: ``"landmark"`` (default) covers the cloud, outliers included, so large
    loops and far clusters survive; but maxmin landmarks are at least the covering radius
    apart, so every H0 death is at least that radius, and ripser is slower on such evenly
    spread sets (3.3 s vs 0.6 s for random at 500 x 384).  ``"random"`` keeps the density,
    hence unbiased bar *statistics* (e.g. for ``persistence_summary``).

    The infinite H0 bar (the whole cloud as one component, born 0, never dying) is
    **dropped**: every cloud has exactly one, it carries no information and it would make
    totals and distances infinite.  So ``H0`` has ``m - 1`` finite bars for ``m`` distinct
    points.  Rips H1 and above have no infinite bars (the complex becomes a simplex).
    Zero-length bars are not reported (ripser omits them).
    """
    maxdim = _check_maxdim(maxdim)
    X = _as_cloud(X, "X", maxdim)
    if not isinstance(max_points, (int, np.integer)) or max_points < min_points(maxdim):
        raise ValueError(f"max_points must be an integer >= {min_points(maxdim)} for "
                         f"maxdim={maxdim}, got {max_points!r}")
    idx = subsample(X, int(max_points), method=subsample_method, seed=seed, metric=metric)
    exponent = scale_exponent(X) if metric in _HOMOGENEOUS_METRICS else 0
    D = pairwise_distances(np.ldexp(X[idx], -exponent) if exponent else X[idx], metric=metric)
    D = np.ldexp(D, exponent) if exponent else D  # ripser_distance_matrix rescales for float32
    return ripser_distance_matrix(D, maxdim)


def as_diagram(dgm: Any, name: str = "diagram") -> np.ndarray:
    """``dgm`` as a float ``(k, 2)`` array of (birth, death); empty input gives ``(0, 2)``.

    Infinite deaths are kept; NaN, ``-inf``, or ``death < birth`` raise ``ValueError``.
    """
    d = np.asarray(dgm, dtype=np.float64)
    if d.size == 0:
        return np.zeros((0, 2))
    if d.ndim != 2 or d.shape[1] != 2:
        raise ValueError(f"{name} must have shape (k, 2) of (birth, death), got {d.shape}")
    if np.isnan(d).any() or np.isinf(d[:, 0]).any() or (d[:, 1] == -np.inf).any():
        raise ValueError(f"{name} has NaN or infinite births")
    if (d[:, 1] < d[:, 0]).any():
        raise ValueError(f"{name} has bars that die before they are born (death < birth)")
    return d


def betti_curve(diagram: Any, grid: Any) -> np.ndarray:
    """Betti numbers ``(len(grid),)``: bars alive at each scale, ``birth <= t < death``.

    Infinite bars count as alive for every ``t >= birth``.
    """
    d = as_diagram(diagram)
    t = np.asarray(grid, dtype=np.float64).ravel()
    if not np.isfinite(t).all():
        raise ValueError("grid must be finite")
    alive = (d[:, 0][None, :] <= t[:, None]) & (t[:, None] < d[:, 1][None, :])
    return alive.sum(axis=1).astype(np.int64)
