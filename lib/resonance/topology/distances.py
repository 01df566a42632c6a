"""Distances between persistence diagrams, and the topological resonance of two models.

Ground metrics (read off the persim 0.4.1 source, and checked by the tests):

- ``persim.wasserstein`` is the **order-1** Wasserstein distance (sum of matched costs, no
  order argument) with the **Euclidean (L2)** ground metric between points ``(b, d)``; a
  point matched to the diagonal costs its L2 distance to it, ``(d - b) / sqrt(2)``.
- ``persim.bottleneck`` uses the **L-infinity** ground metric; a point matched to the
  diagonal costs ``(d - b) / 2``.

So the two are not the ``p -> inf`` limit of one family: here bottleneck <= W_q for every q
(L-inf <= L2 pointwise).  Both drop infinite bars (with a warning), which we drop first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import persim
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from .._checks import not_constant, paired
from ..stats import gaussian_like
from .persistence import as_diagram, min_points, ripser_distance_matrix, scaled_distances, _check_maxdim

DIAGRAM_METRICS = ("wasserstein", "bottleneck")


def _finite(d: Any, name: str) -> np.ndarray:
    d = as_diagram(d, name)
    return d[np.isfinite(d[:, 1])]


def _wasserstein_q(S: np.ndarray, T: np.ndarray, q: float) -> float:
    """Order-``q`` Wasserstein distance with persim's construction (L2 ground metric)."""
    M, N = len(S), len(T)
    if M + N == 0:
        return 0.0
    C = np.zeros((M + N, M + N))
    C[:M, :N] = cdist(S, T) if M and N else 0.0
    C[:M, N:] = np.inf
    C[M:, :N] = np.inf
    C[np.arange(M), N + np.arange(M)] = (S[:, 1] - S[:, 0]) / np.sqrt(2)
    C[M + np.arange(N), np.arange(N)] = (T[:, 1] - T[:, 0]) / np.sqrt(2)
    cost = C ** q
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].sum() ** (1.0 / q))


def diagram_distance(d1: Any, d2: Any, metric: str = "wasserstein", order: float = 1) -> float:
    """Distance between two diagrams ``(k1, 2)`` and ``(k2, 2)``; infinite bars are dropped.

    ``metric="wasserstein"``: order-``order`` Wasserstein distance, L2 ground metric.
    ``order=1`` (default) calls ``persim.wasserstein`` itself; persim has no order
    argument, so other orders ``q >= 1`` solve the same assignment problem (same cost
    matrix, costs raised to ``q``) with scipy and return ``(sum cost^q)^(1/q)``.
    ``metric="bottleneck"``: ``persim.bottleneck``, L-infinity ground metric (``order`` is
    ignored).  See the module docstring for what persim's ground metrics are.
    """
    if metric not in DIAGRAM_METRICS:
        raise ValueError(f"metric must be one of {DIAGRAM_METRICS}, got {metric!r}")
    S, T = _finite(d1, "d1"), _finite(d2, "d2")
    if metric == "bottleneck":
        return float(persim.bottleneck(S, T))
    if not np.isfinite(order) or order < 1:
        raise ValueError(f"order must be a finite number >= 1, got {order!r}")
    if order == 1:
        return float(persim.wasserstein(S, T))
    return _wasserstein_q(S, T, float(order))


@dataclass(frozen=True)
class ResonanceResult:
    """Topological resonance of two models: ``value`` and its null reference.

    ``value`` is the mean diagram distance over the shared subsamples (``per_subsample``);
    ``null`` the null distances (empty when none were drawn); ``null_ci`` the 2.5/97.5
    percentiles of ``null``; ``p_value = (1 + #{null <= value}) / (1 + len(null))`` -- small
    when the two clouds are closer in topology than a structureless cloud is.  Null fields
    are NaN when no null was drawn.
    """

    value: float
    per_subsample: np.ndarray
    null: np.ndarray = field(default_factory=lambda: np.zeros(0))
    null_mean: float = float("nan")
    null_ci: tuple[float, float] = (float("nan"), float("nan"))
    p_value: float = float("nan")

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "null_mean": self.null_mean, "null_ci_low": self.null_ci[0],
                "null_ci_high": self.null_ci[1], "p_value": self.p_value, "n_null": len(self.null)}


def _subsets(n: int, m: int, k: int, seed: int) -> list[np.ndarray]:
    if n <= m:
        return [np.arange(n)]
    rng = np.random.default_rng(seed)
    return [np.sort(rng.choice(n, size=m, replace=False)) for _ in range(k)]


def _diagram(Z: np.ndarray, dim: int, quantile: float, cloud_metric: str) -> np.ndarray:
    return ripser_distance_matrix(scaled_distances(Z, cloud_metric, quantile), dim)[dim]


def _prepare(X, Y, dim, max_points, n_subsamples):
    dim = _check_maxdim(dim)
    X, Y = paired(X, Y, min_rows=min_points(dim))
    not_constant(X, "X")
    not_constant(Y, "Y")
    if not isinstance(max_points, (int, np.integer)) or max_points < min_points(dim):
        raise ValueError(f"max_points must be an integer >= {min_points(dim)}, got {max_points!r}")
    if not isinstance(n_subsamples, (int, np.integer)) or n_subsamples < 1:
        raise ValueError(f"n_subsamples must be a positive integer, got {n_subsamples!r}")
    return dim, X, Y


def _null(X, Y, dgx, dgy, dim, metric, order, quantile, cloud_metric, m, n_null, seed):
    rng = np.random.default_rng([seed, 1])
    null = np.empty(n_null)
    for k in range(n_null):
        vals = []
        for dx, dy in zip(dgx, dgy):
            gy = _diagram(gaussian_like(Y, rng, m), dim, quantile, cloud_metric)
            gx = _diagram(gaussian_like(X, rng, m), dim, quantile, cloud_metric)
            vals.append(0.5 * (diagram_distance(dx, gy, metric, order)
                               + diagram_distance(gx, dy, metric, order)))
        null[k] = np.mean(vals)
    return null


def _observed(X, Y, dim, metric, order, max_points, n_subsamples, quantile, cloud_metric, seed):
    subsets = _subsets(X.shape[0], int(max_points), int(n_subsamples), seed)
    dgx = [_diagram(X[s], dim, quantile, cloud_metric) for s in subsets]
    dgy = [_diagram(Y[s], dim, quantile, cloud_metric) for s in subsets]
    per = np.array([diagram_distance(a, b, metric, order) for a, b in zip(dgx, dgy)])
    return per, dgx, dgy, len(subsets[0])


def topological_null(X: Any, Y: Any, dim: int = 1, metric: str = "wasserstein", order: float = 1,
                     max_points: int = 300, n_subsamples: int = 5, quantile: float = 0.9,
                     n_null: int = 20, seed: int = 0, cloud_metric: str = "euclidean") -> np.ndarray:
    """Null distances ``(n_null,)`` for :func:`topological_resonance` of ``X (n, d1)``, ``Y (n, d2)``.

    Each null draw is the same estimator with one side replaced by a structureless cloud:
    ``1/2 [dist(X, G_Y) + dist(G_X, Y)]`` averaged over the same subsamples, where ``G_Z``
    is an isotropic Gaussian with ``Z``'s subsample size, dimension and mean squared radius
    (the scale match is moot after the quantile normalisation, but kept).  A permutation
    null is not offered: a diagram distance ignores which stimulus is which, so shuffling
    rows of ``Y`` changes nothing.  Cost: ``2 * n_null * n_subsamples`` ripser calls.
    """
    dim, X, Y = _prepare(X, Y, dim, max_points, n_subsamples)
    if not isinstance(n_null, (int, np.integer)) or n_null < 1:
        raise ValueError(f"n_null must be a positive integer, got {n_null!r}")
    _, dgx, dgy, m = _observed(X, Y, dim, metric, order, max_points, n_subsamples, quantile,
                               cloud_metric, seed)
    return _null(X, Y, dgx, dgy, dim, metric, order, quantile, cloud_metric, m, int(n_null), seed)


def topological_resonance(X: Any, Y: Any, dim: int = 1, metric: str = "wasserstein",
                          order: float = 1, max_points: int = 300, n_subsamples: int = 5,
                          quantile: float = 0.9, n_null: int = 0, seed: int = 0,
                          cloud_metric: str = "euclidean") -> ResonanceResult:
    """Distance between the ``H_dim`` diagrams of two models on the same stimuli.

    ``X: (n, d1)`` and ``Y: (n, d2)`` are paired.  For each of ``n_subsamples`` random
    subsets of ``max_points`` stimuli (the same subset for both models; one pass over all
    rows when ``n <= max_points``), each cloud's pairwise ``cloud_metric`` distances are
    divided by their ``quantile`` over the full matrix, zero diagonal included (default 0.9,
    as in RTD), so that shape, not scale, is compared; the Rips ``H_dim`` diagrams are compared with :func:`diagram_distance`
    (``metric``, ``order``) and the distances averaged.  Invariant to rotation, translation
    and scaling of either cloud.  0 means identical diagrams; the value has no upper bound,
    so read it against the null: ``n_null > 0`` adds :func:`topological_null`.
    """
    dim, X, Y = _prepare(X, Y, dim, max_points, n_subsamples)
    per, dgx, dgy, m = _observed(X, Y, dim, metric, order, max_points, n_subsamples, quantile,
                                 cloud_metric, seed)
    value = float(per.mean())
    if not n_null:
        return ResonanceResult(value=value, per_subsample=per)
    if not isinstance(n_null, (int, np.integer)) or n_null < 0:
        raise ValueError(f"n_null must be a non-negative integer, got {n_null!r}")
    null = _null(X, Y, dgx, dgy, dim, metric, order, quantile, cloud_metric, m, int(n_null), seed)
    lo, hi = np.percentile(null, [2.5, 97.5])
    p = (1 + int(np.sum(null <= value))) / (1 + len(null))
    return ResonanceResult(value=value, per_subsample=per, null=null, null_mean=float(null.mean()),
                           null_ci=(float(lo), float(hi)), p_value=float(p))
