"""The seed's three resonance metrics, made precise.

Two models A and B see the same n stimuli; ``X: (n, d_a)`` and ``Y: (n, d_b)`` are their
representations at one layer each (``layers_a``/``layers_b``: one such array per layer).

- **Global resonance** — how alike the whole clouds are: each measure's value on all n stimuli,
  a confidence interval over stimuli (delete-d jackknife: ``n_boot`` random subsets leaving out
  a tenth of the stimuli), and a null distribution. The null depends on what
  the measure looks at: measures that use the pairing of stimuli (CKA, mutual k-NN, RTD, …)
  are compared with *shuffled pairs* (rows of Y permuted); pairing-free topological distances
  (diagram distances) with an *isotropic Gaussian cloud* of Y's shape and total variance.
- **Local resonance** — the same restricted to the stimuli of one concept (labels given), with
  the same intervals and nulls, so one can say which concepts two models agree on.
- **Dynamic resonance** — resonance as the stimuli flow through the networks: the layer × layer
  similarity matrix, its trajectory over relative depth, the best monotone layer map between
  models of different depth, and resonance per token position.

Measures are the names of :data:`resonance.measures.MEASURES` (the similarity measures plus
``"rtd"`` and ``"persistence_distance"``); that registry says for each whether higher means more
alike (``direction``), which null fits it and which values it can take, and every function here
reads it: p-values count the tail that means "more alike", the best layer pair of a distance is
the smallest, and intervals stay inside the measure's range.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import measures as _registry
from . import similarity
from ._checks import as_matrix, fraction, paired, positive_int
from .similarity import similarity_matrix
from .stats import delete_d_jackknife_interval, gaussian_like

DEFAULT_MEASURES = ("cka_linear_debiased", "mutual_knn", "rtd")
# Kept for code that imported them; the registry is the source (direction / null of each record).
DIVERGENCES = tuple(name for name, m in _registry.MEASURES.items() if m.direction == "distance")
PAIRING_FREE = tuple(name for name, m in _registry.MEASURES.items() if m.null == "gaussian")


def _bound(name: str, kwargs: Mapping[str, Any]) -> tuple[_registry.Measure,
                                                         Callable[[np.ndarray, np.ndarray], float]]:
    spec = _registry.get(name)
    _registry.check_options(name, kwargs)
    return spec, lambda X, Y: spec.compute(X, Y, **kwargs)


def _checked_kwargs(measure_kwargs: Mapping[str, Mapping] | None,
                    names: Sequence[str]) -> Mapping[str, Mapping]:
    if measure_kwargs is None:
        return {}
    if not isinstance(measure_kwargs, Mapping):
        raise ValueError("measure_kwargs must map a measure name to its options, e.g. "
                         f"{{'rtd': {{'subsample_size': 100}}}}, got {measure_kwargs!r}")
    stray = sorted(set(measure_kwargs) - set(names))
    if stray:
        raise ValueError(f"measure_kwargs has options for {stray}, which are not among the "
                         f"measures {list(names)}: a misspelt name, or add it to measures")
    return measure_kwargs


def null_sample(layers: Sequence[np.ndarray], kind: str,
                rng: np.random.Generator) -> list[np.ndarray]:
    """One null draw of a model's layers ``[(n, d_l), ...]`` for a measure whose registry null is
    ``kind``: ``"shuffle"`` permutes the stimuli with one permutation shared by every layer (so
    the model stays one model, only its pairing with the other is broken); ``"gaussian"``
    replaces each layer by an isotropic Gaussian cloud of its shape, mean and total variance
    (:func:`~resonance.stats.gaussian_like`; a pairing-free measure ignores a shuffle)."""
    layers = [as_matrix(layer, f"layers[{i}]") for i, layer in enumerate(layers)]
    if kind == "shuffle":
        perm = rng.permutation(layers[0].shape[0])
        return [layer[perm] for layer in layers]
    if kind == "gaussian":
        return [gaussian_like(layer, rng) for layer in layers]
    raise ValueError(f"unknown null kind {kind!r}; choose 'shuffle' or 'gaussian'")


def _estimate(X: np.ndarray, Y: np.ndarray, spec: _registry.Measure,
              fn: Callable[[np.ndarray, np.ndarray], float], bounds: tuple[float, float],
              n_boot: int, n_null: int, ci: float, rng: np.random.Generator) -> dict[str, float]:
    value = fn(X, Y)
    n = X.shape[0]
    drop = max(1, n // 10)
    # Delete-d jackknife (Shao & Wu 1989): recompute on n_boot random subsets without `drop`
    # stimuli. Unlike a with-replacement bootstrap it never duplicates a stimulus (which would
    # break k-NN self-exclusion and unbiased HSIC) and barely changes n (k-NN, RTD and
    # persistence depend on n), so the interval is centred on the full-sample value.
    replicates = [fn(X[keep], Y[keep]) for keep in
                  (np.sort(rng.permutation(n)[drop:]) for _ in range(n_boot))]
    ci_low, ci_high = delete_d_jackknife_interval(value, replicates, n, drop, ci, bounds)
    nulls = []
    for _ in range(n_null):
        nulls.append(fn(X, null_sample([Y], spec.null, rng)[0]))
    alpha = (1 - ci) / 2
    nulls = np.asarray(nulls, float)
    distance = spec.direction == "distance"
    as_extreme = (nulls <= value) if distance else (nulls >= value)
    return {
        "value": float(value),
        "ci_low": ci_low,
        "ci_high": ci_high,
        "null_mean": float(nulls.mean()) if n_null else np.nan,
        "null_low": float(np.quantile(nulls, alpha)) if n_null else np.nan,
        "null_high": float(np.quantile(nulls, 1 - alpha)) if n_null else np.nan,
        "p_value": float((1 + as_extreme.sum()) / (1 + n_null)) if n_null else np.nan,
        "null": spec.null,
        "divergence": distance,
        "n": n,
    }


def _resampling_sizes(n_boot: Any, n_null: Any, ci: Any) -> tuple[int, int, float]:
    return (positive_int(n_boot, "n_boot", minimum=0), positive_int(n_null, "n_null", minimum=0),
            fraction(ci, "ci"))


def global_resonance(X, Y, measures: Sequence[str] = DEFAULT_MEASURES, *, n_boot: int = 100,
                     n_null: int = 100, ci: float = 0.95, seed: int = 0,
                     measure_kwargs: Mapping[str, Mapping] | None = None) -> pd.DataFrame:
    """Whole-cloud resonance of ``X: (n, d_a)`` and ``Y: (n, d_b)``, one row per measure.

    ``measures``: registered names (a single name is one measure); ``measure_kwargs``: options
    per measure, e.g. ``{"rtd": {"subsample_size": 100}}`` (unknown names or options raise).
    Columns: measure, value, ci_low/ci_high (delete-d jackknife over stimuli; normal interval
    clipped to the measure's range), null_mean/null_low/null_high (the central ``ci`` of the
    null), a one-sided permutation ``p_value`` counting null draws at least as alike as the
    observed value (``>=`` for a similarity, ``<=`` for a distance), null ("shuffle" |
    "gaussian", from the registry), divergence (True when lower means more alike), n.
    """
    X, Y = paired(X, Y)
    names = _registry.names(measures)
    n_boot, n_null, ci = _resampling_sizes(n_boot, n_null, ci)
    measure_kwargs = _checked_kwargs(measure_kwargs, names)
    rows = []
    for offset, name in enumerate(names):
        kwargs = measure_kwargs.get(name, {})
        spec, fn = _bound(name, kwargs)
        rng = np.random.default_rng([seed, offset])
        rows.append({"measure": name, **_estimate(X, Y, spec, fn, spec.bounds(kwargs), n_boot,
                                                  n_null, ci, rng)})
    return pd.DataFrame(rows)


def local_resonance(X, Y, labels: Sequence[str], measures: Sequence[str] = ("cka_linear_debiased",),
                    *, min_items: int = 8, **kwargs) -> pd.DataFrame:
    """:func:`global_resonance` within each concept's stimuli; one row per (concept, measure).

    ``labels``: one concept label per row of X and Y. Concepts with fewer than ``min_items``
    stimuli raise a ValueError (too few points for a meaningful comparison). ``measures`` and
    the keyword options (``n_boot``, ``n_null``, ``ci``, ``seed``, ``measure_kwargs``) are those
    of :func:`global_resonance`; the shuffle null permutes stimuli *within* the concept.
    """
    X, Y = paired(X, Y)
    measures = _registry.names(measures)
    min_items = positive_int(min_items, "min_items", minimum=2)
    labels = np.asarray(labels)
    if labels.shape != (X.shape[0],):
        raise ValueError(f"labels has {labels.size} entries but there are {X.shape[0]} stimuli")
    frames = []
    for concept in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == concept)
        if idx.size < min_items:
            raise ValueError(f"concept {concept!r} has {idx.size} stimuli; local resonance needs "
                             f"at least {min_items} (raise n_per_concept)")
        frame = global_resonance(X[idx], Y[idx], measures, **kwargs)
        frames.append(frame.assign(concept=concept))
    out = pd.concat(frames, ignore_index=True)
    return out[["concept"] + [c for c in out.columns if c != "concept"]]


def _as_grid(table: pd.DataFrame) -> np.ndarray:
    return table.pivot(index="layer_a", columns="layer_b", values="value").to_numpy()


def _higher_is_better(table: pd.DataFrame) -> bool:
    """False when the table holds a registered distance (its ``measure`` column); tables of
    unregistered measures are read as similarities."""
    if "measure" not in table:
        return True
    kinds = {_registry.MEASURES[m].direction for m in table["measure"].unique()
             if m in _registry.MEASURES}
    if len(kinds) > 1:
        raise ValueError("the table mixes similarities and distances; pass one measure's rows")
    return kinds != {"distance"}


def best_layer_map(table: pd.DataFrame, *, monotone: bool = True) -> pd.DataFrame:
    """For each layer of A, its best-matching layer of B.

    ``monotone=True`` finds the non-decreasing map (deeper in A never maps shallower in B) with
    the largest total similarity (smallest total distance, for a registered distance such as
    ``procrustes`` or ``rtd``), by dynamic programming; ``False`` takes each row's best.
    Input: a :func:`~resonance.similarity.similarity_matrix` table.
    """
    higher = _higher_is_better(table)
    values = _as_grid(table)
    grid = values if higher else -values
    n_a, n_b = grid.shape
    if monotone:
        score = np.full((n_a, n_b), -np.inf)
        score[0] = grid[0]
        for i in range(1, n_a):
            score[i] = grid[i] + np.maximum.accumulate(score[i - 1])
        choice = np.empty(n_a, dtype=int)
        choice[-1] = int(np.argmax(score[-1]))
        for i in range(n_a - 2, -1, -1):
            choice[i] = int(np.argmax(score[i, : choice[i + 1] + 1]))
    else:
        choice = grid.argmax(axis=1)
    return pd.DataFrame({
        "layer_a": np.arange(n_a), "layer_b": choice,
        "depth_a": np.arange(n_a) / max(n_a - 1, 1),
        "depth_b": choice / max(n_b - 1, 1),
        "value": values[np.arange(n_a), choice],
    })


def depth_trajectory(table: pd.DataFrame, n_points: int = 11) -> pd.DataFrame:
    """Resonance along the diagonal of relative depth: at t in [0, 1], the similarity of A's
    layer nearest to depth t with B's layer nearest to depth t. Columns: depth, layer_a,
    layer_b, value."""
    grid = _as_grid(table)
    n_a, n_b = grid.shape
    rows = []
    for t in np.linspace(0, 1, n_points):
        i, j = round(t * (n_a - 1)), round(t * (n_b - 1))
        rows.append({"depth": float(t), "layer_a": i, "layer_b": j, "value": float(grid[i, j])})
    return pd.DataFrame(rows)


def best_layer_resonance(layers_a: Sequence, layers_b: Sequence,
                         measure: str = "cka_linear_debiased", *, skip_embeddings: bool = True,
                         n_null: int = 20, ci: float = 0.95, seed: int = 0,
                         **kwargs) -> dict[str, Any]:
    """Resonance at the best-matching layer pair, with a null for the *best* value.

    The best pair (largest similarity, or smallest distance for a registered distance) is
    selected from a whole grid, so its null must be too: each null draw replaces B's layers by
    :func:`null_sample` (a shuffle of the stimuli shared by all of B's layers; Gaussian clouds
    for a pairing-free measure) and takes the grid's best value.
    ``skip_embeddings`` leaves out layer 0 (token embeddings) of both models. Returns value,
    layer_a, layer_b, depth_a, depth_b, null_mean, null_high (the value to beat: the ``ci``
    quantile of the null maxima, or the ``1 - ci`` quantile of the null minima for a distance)
    and a one-sided p_value.
    """
    spec = _registry.get(measure)
    n_null = positive_int(n_null, "n_null", minimum=0)
    ci = fraction(ci, "ci")
    start = 1 if skip_embeddings else 0
    layers_a, layers_b = list(layers_a)[start:], list(layers_b)[start:]
    if not layers_a or not layers_b:
        raise ValueError("need at least one layer per model beyond the embeddings")
    higher = spec.direction == "similarity"
    table = similarity_matrix(layers_a, layers_b, measure, **kwargs)
    best = table.loc[table["value"].idxmax() if higher else table["value"].idxmin()]
    rng = np.random.default_rng(seed)
    nulls = []
    for _ in range(n_null):
        values = similarity_matrix(layers_a, null_sample(layers_b, spec.null, rng), measure,
                                   **kwargs)["value"]
        nulls.append(values.max() if higher else values.min())
    nulls = np.asarray(nulls, float)
    as_extreme = (nulls >= best["value"]) if higher else (nulls <= best["value"])
    n_a, n_b = len(layers_a) + start, len(layers_b) + start
    return {
        "measure": measure, "value": float(best["value"]),
        "layer_a": int(best["layer_a"]) + start, "layer_b": int(best["layer_b"]) + start,
        "depth_a": (int(best["layer_a"]) + start) / max(n_a - 1, 1),
        "depth_b": (int(best["layer_b"]) + start) / max(n_b - 1, 1),
        "null_mean": float(nulls.mean()) if n_null else np.nan,
        "null_high": float(np.quantile(nulls, ci if higher else 1 - ci)) if n_null else np.nan,
        "p_value": float((1 + as_extreme.sum()) / (1 + n_null)) if n_null else np.nan,
    }


def layer_identification(table: pd.DataFrame) -> float:
    """Kornblith et al. (2019) sanity check for two nets of equal depth: the share of A's layers
    whose most similar layer of B is the corresponding one."""
    higher = _higher_is_better(table)
    grid = _as_grid(table)
    if grid.shape[0] != grid.shape[1]:
        raise ValueError(f"layer identification needs equal depths, got {grid.shape}")
    best = grid.argmax(axis=1) if higher else grid.argmin(axis=1)
    return float(np.mean(best == np.arange(grid.shape[0])))


def positional_resonance(tokens_a, tokens_b, positions: Sequence[int],
                         measure: str = "cka_linear_debiased", *, min_items: int = 8,
                         **kwargs) -> pd.DataFrame:
    """Resonance per token position: for each position p, compare the two models' vectors of the
    items that have a token at p. ``tokens_a: (N, d_a)``, ``tokens_b: (N, d_b)`` are token-level
    activations aligned row by row (same tokenizer or word-aligned), ``positions: (N,)``.
    Positions with fewer than ``min_items`` items are skipped. Columns: position, n, value."""
    A, B = paired(tokens_a, tokens_b)
    _registry.get(measure)
    min_items = positive_int(min_items, "min_items", minimum=2)
    positions = np.asarray(positions)
    if positions.shape != (A.shape[0],):
        raise ValueError(f"positions has {positions.size} entries for {A.shape[0]} token rows")
    rows = []
    for p in np.unique(positions):
        idx = np.flatnonzero(positions == p)
        if idx.size >= min_items:
            rows.append({"position": int(p), "n": int(idx.size),
                         "value": similarity.similarity(A[idx], B[idx], measure, **kwargs)})
    return pd.DataFrame(rows, columns=["position", "n", "value"])


__all__ = [
    "global_resonance", "pair_topology", "local_resonance", "similarity_matrix", "best_layer_map",
    "depth_trajectory", "layer_identification", "positional_resonance", "gaussian_like",
    "best_layer_resonance", "null_sample",
]


def pair_topology(X, Y, groups: Sequence[str], *, n_boot: int, n_null: int, subsample: int,
                  n_subsamples: int, min_items: int, local_null: int, seed: int = 0,
                  clamp_quantile: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Topology and locality of one paired layer: :func:`global_resonance` by RTD and the H1
    persistence-diagram distance (``n_subsamples`` subsamples of ``subsample`` points), and
    :func:`local_resonance` (debiased CKA, mutual k-NN clamped at ``clamp_quantile``, with
    ``local_null`` null draws) within each group of at least ``min_items`` rows (its size in
    ``n_items``)."""
    kwargs = {"rtd": {"n_subsamples": n_subsamples, "subsample_size": subsample},
              "persistence_distance": {"n_subsamples": n_subsamples, "max_points": subsample}}
    glob = global_resonance(X, Y, ("rtd", "persistence_distance"), n_boot=n_boot,
                            n_null=n_null, seed=seed, measure_kwargs=kwargs)
    groups = np.asarray(groups)
    names, counts = np.unique(groups, return_counts=True)
    keep = np.isin(groups, names[counts >= min_items])
    if not keep.any():
        raise ValueError(f"no group has {min_items} items for local resonance: lower "
                         f"min_items or use more stimuli")
    local = local_resonance(
        X[keep], Y[keep], groups[keep], ("cka_linear_debiased", "mutual_knn"),
        min_items=min_items, n_boot=0, n_null=local_null, seed=seed,
        measure_kwargs={"mutual_knn": {"clamp_quantile": clamp_quantile}})
    sizes = dict(zip(names, counts))
    return glob, local.assign(n_items=[int(sizes[c]) for c in local["concept"]])
