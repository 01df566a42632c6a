"""The registry of measures: one :class:`~resonance.similarity.Measure` record per name.

Every consumer -- :func:`resonance.similarity.similarity` / ``similarity_matrix``, and
:mod:`resonance.metrics` (``global_resonance``, ``local_resonance``, ``best_layer_resonance``,
``best_layer_map``) -- reads from here what a measure computes, whether higher values mean more
alike (``direction``), which null distribution fits it (``null``) and which values it can take
(``value_range``).

=====================  ==========  =======  ===============  =========
name                   direction   null     range            symmetric
=====================  ==========  =======  ===============  =========
cka_linear             similarity  shuffle  [0, 1]           yes
cka_linear_debiased    similarity  shuffle  [-1, 1]          yes
cka_rbf                similarity  shuffle  [0, 1] ([-1, 1]  yes
                                            debiased)
mutual_knn             similarity  shuffle  [0, 1]           yes
cknna                  similarity  shuffle  [-1, 1]          no
svcca                  similarity  shuffle  [0, 1]           yes
pwcca                  similarity  shuffle  [0, 1]           no
procrustes             distance    shuffle  [0, pi/2]        yes
                                            (form-dependent)
rsa                    similarity  shuffle  [-1, 1]          yes
linear_predictivity    similarity  shuffle  (-inf, 1]        no
rtd                    distance    shuffle  [0, inf)         yes
persistence_distance   distance    gaussian [0, inf)         yes
=====================  ==========  =======  ===============  =========

A shuffle null permutes the rows of Y (the measure reads which stimulus is which); the
persistence-diagram distance ignores the pairing, so a shuffle would change nothing and its null
is an isotropic Gaussian cloud of Y's shape and total variance (:func:`resonance.stats.gaussian_like`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from . import similarity, topology
from .similarity import Measure

__all__ = ["Measure", "MEASURES", "get", "names", "check_options", "persistence_distance"]


def persistence_distance(X: Any, Y: Any, dim: int = 1, metric: str = "wasserstein",
                         order: float = 1, max_points: int = 300, n_subsamples: int = 5,
                         quantile: float = 0.9, seed: int = 0,
                         cloud_metric: str = "euclidean") -> float:
    """Distance between the ``H_dim`` diagrams of ``X: (n, d1)`` and ``Y: (n, d2)``: the value
    of :func:`resonance.topology.topological_resonance` (no null drawn)."""
    return topology.topological_resonance(
        X, Y, dim=dim, metric=metric, order=order, max_points=max_points,
        n_subsamples=n_subsamples, quantile=quantile, n_null=0, seed=seed,
        cloud_metric=cloud_metric).value


MEASURES: dict[str, Measure] = {
    **similarity.MEASURES,
    "rtd": Measure(topology.rtd, direction="distance", value_range=(0.0, float("inf"))),
    "persistence_distance": Measure(persistence_distance, direction="distance", null="gaussian",
                                    value_range=(0.0, float("inf"))),
}


def get(name: Any) -> Measure:
    """The record of measure ``name``; an unknown name raises, listing the known ones."""
    if not isinstance(name, str) or name not in MEASURES:
        raise ValueError(f"unknown measure {name!r}; known measures: {', '.join(MEASURES)}")
    return MEASURES[name]


def names(measures: str | Sequence[str]) -> list[str]:
    """``measures`` as a list of registered names: a single name (``"rtd"``) means that one
    measure; an empty list or an unknown name raises."""
    if isinstance(measures, str):
        measures = [measures]
    try:
        measures = list(measures)
    except TypeError:
        raise ValueError(f"measures must be a name or a list of names, got {measures!r}") from None
    if not measures:
        raise ValueError("measures is empty; name at least one, e.g. ['cka_linear_debiased']")
    for name in measures:
        get(name)
    return measures


def check_options(name: str, options: Mapping[str, Any]) -> None:
    """Raise when ``options`` holds a keyword measure ``name`` does not take (a misspelling
    would otherwise be ignored or fail deep inside), naming the ones it does take."""
    if not isinstance(options, Mapping):
        raise ValueError(f"the options of {name!r} must be a dict of keyword arguments, got "
                         f"{options!r}")
    valid = get(name).options()
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for measure {name!r}; it takes: "
                         f"{', '.join(valid) or 'no options'}")
