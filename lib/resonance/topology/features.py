"""Label-free shape descriptors of one cloud, with and without its scale.

``normalise_scale`` divides a cloud by its median pairwise distance, so two architectures
whose states differ only in norm (a GRU's are 5-10x smaller than a transformer's) look alike;
``scale_features`` keeps exactly what that division removes; ``topo_features`` is the
41-feature persistence summary plus Mapper statistics.
"""

from __future__ import annotations


import numpy as np
from scipy.spatial.distance import pdist

from .mapper import mapper_graph, mapper_stats
from .persistence import persistence
from .summary import persistence_summary

MAPPER_FEATURES = ("mapper_nodes", "mapper_edges", "mapper_components", "mapper_betti1",
                   "mapper_mean_node_size", "mapper_coverage")
SCALE_FEATURES = ("scale_median_distance", "scale_mean_norm", "scale_total_variance")

__all__ = ["normalise_scale", "scale_features", "topo_features",
           "MAPPER_FEATURES", "SCALE_FEATURES"]


def normalise_scale(X: np.ndarray) -> np.ndarray:
    """``X: (n, d)`` centred and divided by its median pairwise distance (median becomes 1)."""
    X = np.asarray(X, dtype=np.float64)
    X = X - X.mean(0)
    med = float(np.median(pdist(X)))
    if not med > 0:
        raise ValueError("cloud has zero median pairwise distance: cannot normalise its scale")
    return X / med


def scale_features(X: np.ndarray) -> dict[str, float]:
    """Pure scale descriptors of the centred cloud: median distance, mean norm, total variance."""
    X = np.asarray(X, dtype=np.float64)
    X = X - X.mean(0)
    return {"scale_median_distance": float(np.median(pdist(X))),
            "scale_mean_norm": float(np.linalg.norm(X, axis=1).mean()),
            "scale_total_variance": float(X.var(0).sum())}


def topo_features(X: np.ndarray, seed: int = 0, max_points: int = 1000,
                  n_cubes: int = 5) -> dict[str, float]:
    """41 persistence-summary features (H0, H1) plus Mapper statistics of ``X: (n, d)``."""
    feats = persistence_summary(persistence(X, maxdim=1, max_points=max_points, seed=seed))
    stats = mapper_stats(mapper_graph(X, n_cubes=n_cubes, seed=seed))
    feats.update({f"mapper_{k}": float(stats[k]) for k in
                  ("nodes", "edges", "components", "betti1", "mean_node_size", "coverage")})
    return feats


def h1_diagram(X: np.ndarray, quantile: float = 0.9, max_points: int | None = None,
               seed: int = 0) -> np.ndarray:
    """The Rips H1 diagram of ``X: (n, d)`` after dividing its distances by their
    ``quantile`` (RTD's normalisation), so clouds of any scale compare; ``max_points``
    random rows when given."""
    from .persistence import ripser_distance_matrix, scaled_distances
    X = np.asarray(X, dtype=np.float64)
    if max_points is not None and len(X) > max_points:
        X = X[np.sort(np.random.default_rng(seed).choice(len(X), max_points, replace=False))]
    return ripser_distance_matrix(scaled_distances(X, "euclidean", quantile), 1)[1]


def gaussian_h1_diagrams(n: int, d: int, n_draws: int, seed: int = 0,
                         quantile: float = 0.9) -> list[np.ndarray]:
    """``n_draws`` H1 diagrams of isotropic Gaussian clouds ``(n, d)`` (scale-normalised as in
    :func:`h1_diagram`): the structureless null a representation's topology is read against."""
    rng = np.random.default_rng([int(seed), int(d), 0x6A])
    return [h1_diagram(rng.standard_normal((n, d)), quantile) for _ in range(n_draws)]
