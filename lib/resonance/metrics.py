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

Measures are named as in :data:`resonance.similarity.MEASURES`, plus ``"rtd"`` (Representation
Topology Divergence) and ``"persistence_distance"`` (Wasserstein distance between H1 diagrams);
these two are divergences: lower means more alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as _stats

from . import similarity, topology
from ._checks import paired
from .stats import gaussian_like

DIVERGENCES = ("rtd", "persistence_distance")
PAIRING_FREE = ("persistence_distance",)
DEFAULT_MEASURES = ("cka_linear_debiased", "mutual_knn", "rtd")


@dataclass(frozen=True)
class _Measure:
    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    divergence: bool
    null: str  # "shuffle" or "gaussian"


def _persistence_distance(X: np.ndarray, Y: np.ndarray, **kwargs) -> float:
    return topology.topological_resonance(X, Y, **kwargs).value


def _measure(name: str, kwargs: Mapping[str, Any]) -> _Measure:
    if name == "rtd":
        fn = partial(topology.rtd, **kwargs)
    elif name == "persistence_distance":
        fn = partial(_persistence_distance, **kwargs)
    elif name in similarity.MEASURES:
        fn = partial(similarity.similarity, measure=name, **kwargs)
    else:
        known = sorted(similarity.MEASURES) + list(DIVERGENCES)
        raise ValueError(f"unknown measure {name!r}; known: {', '.join(known)}")
    return _Measure(name, fn, name in DIVERGENCES, "gaussian" if name in PAIRING_FREE else "shuffle")


def _estimate(X: np.ndarray, Y: np.ndarray, measure: _Measure, n_boot: int, n_null: int,
              ci: float, rng: np.random.Generator) -> dict[str, float]:
    value = measure.fn(X, Y)
    n = X.shape[0]
    drop = max(1, n // 10)
    # Delete-d jackknife (Shao & Wu 1989): recompute on n_boot random subsets without `drop`
    # stimuli. Unlike a with-replacement bootstrap it never duplicates a stimulus (which would
    # break k-NN self-exclusion and unbiased HSIC) and barely changes n (k-NN, RTD and
    # persistence depend on n), so the interval is centred on the full-sample value.
    replicates = np.asarray([measure.fn(X[keep], Y[keep]) for keep in
                             (np.sort(rng.permutation(n)[drop:]) for _ in range(n_boot))], float)
    if n_boot > 1:
        se = np.sqrt((n - drop) / (drop * n_boot) * ((replicates - replicates.mean()) ** 2).sum())
        half = float(_stats.norm.ppf((1 + ci) / 2) * se)
    else:
        half = np.nan
    nulls = []
    for _ in range(n_null):
        Y0 = Y[rng.permutation(n)] if measure.null == "shuffle" else gaussian_like(Y, rng)
        nulls.append(measure.fn(X, Y0))
    alpha = (1 - ci) / 2
    nulls = np.asarray(nulls, float)
    as_extreme = (nulls <= value) if measure.divergence else (nulls >= value)
    return {
        "value": float(value),
        "ci_low": float(value - half),
        "ci_high": float(value + half),
        "null_mean": float(nulls.mean()) if n_null else np.nan,
        "null_low": float(np.quantile(nulls, alpha)) if n_null else np.nan,
        "null_high": float(np.quantile(nulls, 1 - alpha)) if n_null else np.nan,
        "p_value": float((1 + as_extreme.sum()) / (1 + n_null)) if n_null else np.nan,
        "null": measure.null,
        "divergence": measure.divergence,
        "n": n,
    }


def global_resonance(X, Y, measures: Sequence[str] = DEFAULT_MEASURES, *, n_boot: int = 100,
                     n_null: int = 100, ci: float = 0.95, seed: int = 0,
                     measure_kwargs: Mapping[str, Mapping] | None = None) -> pd.DataFrame:
    """Whole-cloud resonance of ``X: (n, d_a)`` and ``Y: (n, d_b)``, one row per measure.

    Columns: measure, value, ci_low/ci_high (delete-d jackknife over stimuli; normal interval),
    null_mean/null_low/null_high
    and a one-sided permutation ``p_value`` against the measure's null (see module docstring),
    null ("shuffle" | "gaussian"), divergence (True when lower means more alike), n.
    """
    X, Y = paired(X, Y)
    measure_kwargs = measure_kwargs or {}
    rows = []
    for offset, name in enumerate(measures):
        measure = _measure(name, measure_kwargs.get(name, {}))
        rng = np.random.default_rng([seed, offset])
        rows.append({"measure": name, **_estimate(X, Y, measure, n_boot, n_null, ci, rng)})
    return pd.DataFrame(rows)


def local_resonance(X, Y, labels: Sequence[str], measures: Sequence[str] = ("cka_linear_debiased",),
                    *, min_items: int = 8, **kwargs) -> pd.DataFrame:
    """:func:`global_resonance` within each concept's stimuli; one row per (concept, measure).

    ``labels``: one concept label per row of X and Y. Concepts with fewer than ``min_items``
    stimuli raise a ValueError (too few points for a meaningful comparison).
    """
    X, Y = paired(X, Y)
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


def layer_similarity(layers_a: Sequence, layers_b: Sequence, measure: str = "cka_linear_debiased",
                     **kwargs) -> pd.DataFrame:
    """The layer × layer table (layer_a, layer_b, depth_a, depth_b, measure, value)."""
    return similarity.similarity_matrix(layers_a, layers_b, measure=measure, **kwargs)


def _as_grid(table: pd.DataFrame) -> np.ndarray:
    return table.pivot(index="layer_a", columns="layer_b", values="value").to_numpy()


def best_layer_map(table: pd.DataFrame, *, monotone: bool = True) -> pd.DataFrame:
    """For each layer of A, its best-matching layer of B.

    ``monotone=True`` finds the non-decreasing map (deeper in A never maps shallower in B) with
    the largest total similarity, by dynamic programming; ``False`` takes each row's argmax.
    Input: a :func:`layer_similarity` table of a similarity (higher = more alike).
    """
    grid = _as_grid(table)
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
        "value": grid[np.arange(n_a), choice],
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
    """Resonance at the best-matching layer pair, with a null for the *maximum*.

    The best pair's value is selected from a whole grid, so its null must be too: each null
    draw shuffles the stimuli of every layer of B (one permutation for all of B's layers) and
    takes the grid's maximum. ``skip_embeddings`` leaves out layer 0 (token embeddings) of
    both models. Returns value, layer_a, layer_b, depth_a, depth_b, null_mean, null_high (the
    ``ci`` quantile of the null maxima) and a one-sided p_value.
    """
    start = 1 if skip_embeddings else 0
    layers_a, layers_b = list(layers_a)[start:], list(layers_b)[start:]
    if not layers_a or not layers_b:
        raise ValueError("need at least one layer per model beyond the embeddings")
    table = layer_similarity(layers_a, layers_b, measure, **kwargs)
    best = table.loc[table["value"].idxmax()]
    rng = np.random.default_rng(seed)
    n = np.asarray(layers_b[0]).shape[0]
    nulls = []
    for _ in range(n_null):
        perm = rng.permutation(n)
        shuffled = [np.asarray(layer)[perm] for layer in layers_b]
        nulls.append(layer_similarity(layers_a, shuffled, measure, **kwargs)["value"].max())
    nulls = np.asarray(nulls, float)
    n_a, n_b = len(layers_a) + start, len(layers_b) + start
    return {
        "measure": measure, "value": float(best["value"]),
        "layer_a": int(best["layer_a"]) + start, "layer_b": int(best["layer_b"]) + start,
        "depth_a": (int(best["layer_a"]) + start) / max(n_a - 1, 1),
        "depth_b": (int(best["layer_b"]) + start) / max(n_b - 1, 1),
        "null_mean": float(nulls.mean()) if n_null else np.nan,
        "null_high": float(np.quantile(nulls, ci)) if n_null else np.nan,
        "p_value": float((1 + (nulls >= best["value"]).sum()) / (1 + n_null)) if n_null else np.nan,
    }


def layer_identification(table: pd.DataFrame) -> float:
    """Kornblith et al. (2019) sanity check for two nets of equal depth: the share of A's layers
    whose most similar layer of B is the corresponding one."""
    grid = _as_grid(table)
    if grid.shape[0] != grid.shape[1]:
        raise ValueError(f"layer identification needs equal depths, got {grid.shape}")
    return float(np.mean(grid.argmax(axis=1) == np.arange(grid.shape[0])))


def positional_resonance(tokens_a, tokens_b, positions: Sequence[int],
                         measure: str = "cka_linear_debiased", *, min_items: int = 8,
                         **kwargs) -> pd.DataFrame:
    """Resonance per token position: for each position p, compare the two models' vectors of the
    items that have a token at p. ``tokens_a: (N, d_a)``, ``tokens_b: (N, d_b)`` are token-level
    activations aligned row by row (same tokenizer or word-aligned), ``positions: (N,)``.
    Positions with fewer than ``min_items`` items are skipped. Columns: position, n, value."""
    A, B = paired(tokens_a, tokens_b)
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
    "global_resonance", "local_resonance", "layer_similarity", "best_layer_map",
    "depth_trajectory", "layer_identification", "positional_resonance", "gaussian_like",
    "best_layer_resonance",
]
