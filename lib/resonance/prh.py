"""The Platonic Representation Hypothesis protocol (Huh et al. 2024), fast enough for nulls.

Their alignment score between two models: for every layer, features clamped at the 95th
percentile of ``|x|`` (their ``remove_outliers``, see :func:`resonance.similarity.mutual_knn`),
rows L2-normalised, the ``k = 10`` nearest neighbours of each stimulus by cosine (self
excluded); the mutual k-NN of a layer pair is ``mean_i |N_A(i) ∩ N_B(i)| / k``, and a model
pair's score is the **maximum over all layer pairs**. A maximum over a grid needs a null of
maxima: each null draw permutes the stimuli of B (every layer of B by one permutation) and
takes the grid's maximum again.

Neighbour sets are computed once per layer. A permutation ``p`` of B's rows maps B's neighbour
set of stimulus ``p[i]`` to ``p⁻¹[N_B(p[i])]`` for stimulus ``i``, so a null draw costs index
arithmetic, not new neighbour searches: A's layers are packed as bit masks over an ``(n, n)``
table (bit ``l`` of ``W[i, j]`` says that j is a neighbour of i in A's layer l), and one gather
per B layer counts the overlaps of all A layers at once.

>>> nbrs_a = [neighbours(X) for X in layers_a]                    # doctest: +SKIP
>>> out = grid_alignment(nbrs_a, [neighbours(Y) for Y in layers_b], n_null=99)  # doctest: +SKIP
>>> out.value, out.best, out.p_value                              # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .similarity import _cosine_neighbours, _validated

__all__ = ["CLAMP_QUANTILE", "K", "neighbours", "knn_grid", "grid_alignment", "GridAlignment",
           "shuffles", "within_group_shuffles", "chance", "cka_with_null"]

CLAMP_QUANTILE = 0.95
K = 10
_MAX_LAYERS = 64  # bits in the packed table


def neighbours(X, k: int = K, clamp_quantile: float | None = CLAMP_QUANTILE,
               name: str = "X") -> np.ndarray:
    """Indices ``(n, k)`` of each row's k nearest other rows by cosine, after clamping."""
    X = _validated(X, name)
    return _cosine_neighbours(X, k, clamp_quantile, name, values=False)[0]


def chance(n: int, k: int = K) -> float:
    """Expected mutual k-NN of unrelated neighbour sets: ``k / (n - 1)``."""
    return k / (n - 1)


def _packed(nbrs: Sequence[np.ndarray]) -> np.ndarray:
    n = nbrs[0].shape[0]
    if len(nbrs) > _MAX_LAYERS:
        raise ValueError(f"at most {_MAX_LAYERS} layers on side A, got {len(nbrs)}")
    dtype = next(t for t in (np.uint8, np.uint16, np.uint32, np.uint64)
                 if np.dtype(t).itemsize * 8 >= len(nbrs))
    table = np.zeros((n, n), dtype=dtype)
    rows = np.arange(n)[:, None]
    for bit, nb in enumerate(nbrs):
        table[rows, nb] |= dtype(1) << dtype(bit)
    return table


def _check(nbrs_a: Sequence[np.ndarray], nbrs_b: Sequence[np.ndarray]) -> tuple[int, int]:
    if not len(nbrs_a) or not len(nbrs_b):
        raise ValueError("need at least one layer on each side")
    shapes = {np.shape(x) for x in [*nbrs_a, *nbrs_b]}
    if len(shapes) != 1:
        raise ValueError(f"all neighbour arrays must share one (n, k) shape, got {sorted(shapes)}")
    (n, k), = shapes
    return n, k


def _overlaps(table: np.ndarray, n_a: int, nbrs_b: np.ndarray, k: int) -> np.ndarray:
    """(n_a, n_b) mutual k-NN from the packed A table and B's stacked (n_b, n, k) indices."""
    n = table.shape[0]
    hits = table[np.arange(n)[None, :, None], nbrs_b]  # (n_b, n, k) bit masks
    bits = np.unpackbits(hits.reshape(len(nbrs_b), -1).view(np.uint8), axis=1,
                         bitorder="little")  # (n_b, n*k*64)
    width = table.dtype.itemsize * 8
    counts = bits.reshape(len(nbrs_b), n * k, width).sum(axis=1, dtype=np.int64)
    return counts[:, :n_a].T / (n * k)


def knn_grid(nbrs_a: Sequence[np.ndarray], nbrs_b: Sequence[np.ndarray]) -> np.ndarray:
    """Mutual k-NN of every layer pair: ``(len(nbrs_a), len(nbrs_b))``."""
    n, k = _check(nbrs_a, nbrs_b)
    return _overlaps(_packed(nbrs_a), len(nbrs_a), np.stack(nbrs_b), k)


def _permuted(nbrs_b: np.ndarray, perm: np.ndarray) -> np.ndarray:
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(perm.size)
    return inverse[nbrs_b[:, perm]]


def shuffles(n: int, n_draws: int, seed: int = 0) -> list[np.ndarray]:
    """``n_draws`` uniform permutations of ``n`` stimuli (the shuffled-pairs null)."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(n) for _ in range(n_draws)]


def within_group_shuffles(groups: Sequence, n_draws: int, seed: int = 0) -> list[np.ndarray]:
    """Permutations that move each stimulus only within its group (keeps group structure)."""
    groups = np.asarray(groups)
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    out = []
    for _ in range(n_draws):
        perm = np.arange(groups.size)
        for idx in members:
            perm[idx] = idx[rng.permutation(idx.size)]
        out.append(perm)
    return out


@dataclass
class GridAlignment:
    """The PRH score of a model pair: ``value`` = the grid maximum at layers ``best``."""

    grid: np.ndarray          # (layers of A, layers of B)
    value: float
    best: tuple[int, int]     # positions in the given layer lists
    null: np.ndarray          # one grid maximum per permutation
    n: int
    k: int

    @property
    def p_value(self) -> float:
        """One-sided permutation p-value of the maximum (``nan`` without null draws)."""
        if not self.null.size:
            return float("nan")
        return float((1 + (self.null >= self.value).sum()) / (1 + self.null.size))

    def null_quantile(self, q: float = 0.95) -> float:
        return float(np.quantile(self.null, q)) if self.null.size else float("nan")


def grid_alignment(nbrs_a: Sequence[np.ndarray], nbrs_b: Sequence[np.ndarray],
                   permutations: Sequence[np.ndarray] = ()) -> GridAlignment:
    """The grid, its maximum, and the grid maximum under each permutation of B's stimuli
    (e.g. :func:`shuffles` for the shuffled-pairs null, :func:`within_group_shuffles`)."""
    n, k = _check(nbrs_a, nbrs_b)
    table = _packed(nbrs_a)
    stacked = np.stack(nbrs_b)
    grid = _overlaps(table, len(nbrs_a), stacked, k)
    best = np.unravel_index(int(np.argmax(grid)), grid.shape)
    null = []
    for perm in permutations:
        perm = np.asarray(perm)
        if perm.shape != (n,):
            raise ValueError(f"a permutation of {n} stimuli was expected, got shape {perm.shape}")
        null.append(_overlaps(table, len(nbrs_a), _permuted(stacked, perm), k).max())
    return GridAlignment(grid, float(grid[best]), (int(best[0]), int(best[1])),
                         np.asarray(null, float), n, k)


def cka_with_null(X: np.ndarray, Y: np.ndarray,
                  permutations: Sequence[np.ndarray]) -> tuple[float, np.ndarray]:
    """Debiased linear CKA of ``X: (n, d1)`` and ``Y: (n, d2)`` and its value under each
    permutation of ``Y``'s rows, the two Gram matrices built once (the companion of a PRH score
    at its best layer pair)."""
    from .similarity import hsic, linear_gram

    K, L = linear_gram(X), linear_gram(Y)
    scale = np.sqrt(hsic(K, K, True) * hsic(L, L, True))
    value = hsic(K, L, True) / scale
    null = np.array([hsic(K, L[np.ix_(p, p)], True) / scale for p in permutations])
    return float(value), null
