"""Representational similarity between paired representations of the same stimuli.

Shapes: ``X: (n, d1)`` and ``Y: (n, d2)`` hold the same ``n`` stimuli (rows, same order);
``d1 != d2`` is allowed. Gram matrices are ``(n, n)``. Inputs may be NumPy arrays, nested lists or
torch tensors; results are Python floats. Linear CKA and the k-NN measures keep float32 input
(what ``activations.extract`` returns) in float32, multiply in float32 and sum in float64 (within
~1e-6 of all-float64 arithmetic, neighbour sets ranked in float64); everything else is computed in
float64. Bad input (NaN/inf, mismatched ``n``, too few stimuli, ``n <= k``, constant input) raises
``ValueError`` naming the problem; no measure returns NaN. A single constant column (a dead unit)
is allowed; a matrix whose rows are all identical is not.

Invariances (transforms applied to the features of one side):

=====================  ==========  ==========  ===========  ===========  ===================
measure                orthogonal  isotropic   translation  feature      invertible linear
                                   scaling                  permutation
=====================  ==========  ==========  ===========  ===========  ===================
cka (linear, rbf)      yes         yes         yes          yes          no
mutual_knn, cknna      yes         yes         no (cosine)  yes          no
svcca (keep=1.0)       yes         yes         yes          yes          yes (no if keep < 1)
pwcca                  no          yes         yes          yes          no (correlations are)
procrustes             yes         yes         yes          yes          no
rsa (correlation)      no          yes         no           yes          no
rsa (euclidean)        yes         yes         yes          yes          no
linear_predictivity    yes         Y only      yes          yes          no
=====================  ==========  ==========  ===========  ===========  ===================

``MEASURES`` holds the :class:`Measure` records of this module's measures; the registry every
consumer reads, :data:`resonance.measures.MEASURES`, adds the topological ones (``rtd``,
``persistence_distance``). ``similarity`` calls any registered measure by name and
``similarity_matrix`` compares every layer of one model with every layer of another, preparing
each layer (its Gram matrix, neighbour sets, subspace, ...) once and then pairing the prepared
layers.

Magnitudes: every measure here except ``linear_predictivity`` (whose ridge penalty is absolute)
and Procrustes ``"euclidean_unscaled"`` is scale-invariant, and rescales an input whose largest
entry lies outside ``[2^-64, 2^64]`` by a power of two before squaring anything (exact; ordinary
inputs are untouched), so activations of ~1e154 or ~1e-160 give the same values as at ~1.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import linalg, sparse, stats
from scipy.spatial.distance import pdist, squareform
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold, cross_val_predict

from resonance._checks import (as_matrix, not_constant, paired, positive_int, scale_exponent,
                               unit_scaled)

__all__ = [
    "linear_gram", "rbf_gram", "center_gram", "hsic", "cka", "MinibatchCKA", "mutual_knn", "cknna",
    "clamp_outliers", "svcca", "pwcca", "procrustes_distance", "rsa", "linear_predictivity",
    "Measure", "MEASURES",
    "similarity", "similarity_matrix",
]

# Relative size below which a self-HSIC counts as zero (round-off of a degenerate kernel).
_SELF_HSIC_RTOL = 1e-12
# Gram entries per layer in one band of rows (4 MiB of float32) when pairing layers band by band;
# bands of a few hundred rows keep the band GEMMs about as efficient as one whole-Gram product.
_BAND_ELEMENTS = 2**20
# Band entries per layer converted to float64 at a time for the pairing products (cache-sized).
_PAIRED_CHUNK = 2**13
# No single product larger than this many rows in linear_gram: the threaded float64 SYRK that
# numpy uses for ``X @ X.T`` segfaults in the bundled OpenBLAS from n ~ 16,000 (numpy#19685).
_GRAM_BAND_ROWS = 2048
# The feature form of linear CKA streams centred row blocks of all layers through a buffer of this
# many bytes; float32 products are summed over at most _SUMMED_ROWS rows before a float64 add.
_FEATURE_BLOCK_BYTES = 2**26
_SUMMED_ROWS = 2048
# Float64 accumulators X_iᵀ Y_j held at once by the feature form (A's layers go in groups).
_FEATURE_ACCUMULATOR_BYTES = 2**27
# Cost weight of one Gram-band inner product per entry, relative to one multiply-add of a dense
# GEMM (band pairings are memory-bound). Fitted on this project's 2-core machine: the two forms
# take the same time for 12 + 12 layers of width 384 at n ~ 4,000; see _linear_form.
_GRAM_PAIR_WEIGHT = 16.0
# Entries centred at a time (float64 temporaries of 256 KiB: they stay in the cache).
_CENTRED_CHUNK = 2**15
# Float32 cosine scores held at once by the neighbour search (rows x n; 32 MiB).
_SCORE_ELEMENTS = 2**23
# Rows at least this long pick their neighbour candidates with torch.topk instead of NumPy
# (2x faster than np.argpartition at n = 2,048, 10x at n >~ 4,000).
_TOPK_WITH_TORCH = 1024


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------

def _validated(X: Any, name: str) -> np.ndarray:
    """``X`` as a finite, non-constant float64 ``(n, d)`` matrix."""
    return not_constant(as_matrix(X, name), name)


def _validated_pair(X: Any, Y: Any) -> tuple[np.ndarray, np.ndarray]:
    X, Y = paired(X, Y)
    return not_constant(X, "X"), not_constant(Y, "Y")


def _require_rows(X: np.ndarray, needed: int, why: str, name: str) -> None:
    if X.shape[0] < needed:
        raise ValueError(f"{name} has {X.shape[0]} stimuli but {why} needs at least {needed}")


def _require_choice(value: str, options: Sequence[str], what: str) -> None:
    if value not in options:
        raise ValueError(f"unknown {what} {value!r}; choose one of {list(options)}")


def _centred(X: np.ndarray) -> np.ndarray:
    return X - X.mean(axis=0)


# --------------------------------------------------------------------------------------------
# Gram matrices and HSIC
# --------------------------------------------------------------------------------------------

def linear_gram(X: np.ndarray) -> np.ndarray:
    """Linear kernel ``K = X Xᵀ``: ``(n, d) -> (n, n)``, float64.

    Computed in float64 by bands of at most 2048 rows of the upper triangle, mirrored below, so
    no single BLAS call is the whole-matrix SYRK that crashes OpenBLAS at n >= ~16,000. Memory:
    ``K`` (``8 n²`` bytes) plus a float64 copy of a non-float64 ``X``.
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    if n <= _GRAM_BAND_ROWS:
        return X @ X.T
    K = np.empty((n, n))
    for start in range(0, n, _GRAM_BAND_ROWS):
        stop = min(start + _GRAM_BAND_ROWS, n)
        np.matmul(X[start:stop], X[start:].T, out=K[start:stop, start:])
        K[stop:, start:stop] = K[start:stop, stop:].T
    return K


RBF_MEDIANS = ("matrix", "pairs")
# An RBF Gram whose off-diagonal entries carry less squared mass than this per row is the identity
# for every practical purpose: CKA against it is within about this much of 1 whatever the data.
_RBF_MIN_OFF_DIAGONAL = 1e-2


def rbf_gram(X: np.ndarray, threshold: float = 1.0, median_over: str = "matrix",
             device: Any = None) -> np.ndarray:
    """RBF kernel ``exp(-|xi - xj|² / (2 sigma²))``, ``(n, d) -> (n, n)``.

    ``median_over="matrix"`` (default; Kornblith et al.'s ``gram_rbf``):
    ``sigma² = threshold² * median of the full n x n matrix of squared distances``, the zero
    diagonal included, so the published CKA values are reproduced. ``"pairs"`` (this library's
    convention before 2026-12): ``sigma = threshold * median Euclidean distance over the pairs
    i < j``; the two differ by O(1/n) in ``sigma``.

    Raises when the median is 0 (most stimuli coincide) and when the bandwidth is so small that
    the kernel is numerically the identity (off-diagonal squared mass below 1e-2 per row): CKA of
    such a kernel is ~1 for any data, independent clouds included.

    ``device="cpu" | "cuda" | "auto"``: the same Gram as a float64 torch tensor on that device
    (:func:`resonance.backend.rbf_gram`).
    """
    if device is not None:
        from .backend import rbf_gram as torch_rbf_gram
        return torch_rbf_gram(X, threshold, median_over, device)
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    _require_choice(median_over, RBF_MEDIANS, "median_over")
    X = np.asarray(X, dtype=np.float64)
    sq_norms = np.einsum("ij,ij->i", X, X)
    sq_dist = sq_norms[:, None] + sq_norms[None, :] - 2.0 * linear_gram(X)
    np.maximum(sq_dist, 0.0, out=sq_dist)
    np.fill_diagonal(sq_dist, 0.0)
    if median_over == "matrix":
        sq_sigma = threshold ** 2 * float(np.median(sq_dist))
    else:
        sq_sigma = (threshold * float(np.median(np.sqrt(squareform(sq_dist, checks=False))))) ** 2
    if sq_sigma == 0.0:
        raise ValueError("median pairwise distance is 0 (over half the stimulus pairs coincide), "
                         "so the RBF bandwidth is undefined; deduplicate the stimuli")
    K = np.exp(sq_dist / (-2.0 * sq_sigma))
    n = K.shape[0]
    off_diagonal = (float(np.vdot(K, K)) - n) / n
    if off_diagonal < _RBF_MIN_OFF_DIAGONAL:
        raise ValueError(
            f"the RBF kernel is numerically the identity (threshold={threshold:g}: off-diagonal "
            f"squared mass {off_diagonal:.2g} per row): every stimulus is many bandwidths from all "
            "others, so CKA would be ~1 for any data; raise the threshold (Kornblith et al. use "
            "0.2-1.0 of the median distance; high-dimensional data need the upper end)")
    return K


def center_gram(K: np.ndarray) -> np.ndarray:
    """Double-centred Gram ``H K H`` with ``H = I - 11ᵀ/n``: ``(n, n) -> (n, n)``."""
    K = np.asarray(K, dtype=np.float64)
    return K - K.mean(axis=0, keepdims=True) - K.mean(axis=1, keepdims=True) + K.mean()


@dataclass(frozen=True)
class _HsicTerms:
    """One Gram matrix reduced to what HSIC needs, so it can be paired many times cheaply."""

    matrix: np.ndarray      # centred Gram (biased) or Gram with zeroed diagonal (debiased)
    transposed: np.ndarray  # matrix.T, C-contiguous; the same object when the matrix is symmetric
    row_sums: np.ndarray
    col_sums: np.ndarray
    total: float
    debiased: bool


def _hsic_terms(K: np.ndarray, debiased: bool, *, symmetric: bool = True,
                centred: bool = False) -> _HsicTerms:
    """Prepare a float64 ``K`` (``centred``: already ``H K H``, e.g. the Gram of centred
    features). Debiased terms zero the diagonal of ``K`` in place: pass a matrix you own."""
    if debiased:
        matrix = K
        np.fill_diagonal(matrix, 0.0)
    else:
        matrix = K if centred else center_gram(K)
    transposed = matrix if symmetric else np.ascontiguousarray(matrix.T)
    row_sums = matrix.sum(axis=1)
    col_sums = row_sums if symmetric else matrix.sum(axis=0)
    return _HsicTerms(matrix, transposed, row_sums, col_sums, float(row_sums.sum()), debiased)


def _hsic_from_terms(a: _HsicTerms, b: _HsicTerms, trace: float | None = None) -> float:
    """HSIC from prepared terms; ``trace`` = ``tr(A B)`` when the caller already has it."""
    n = a.matrix.shape[0]
    if trace is None:
        trace = float(np.vdot(a.matrix, b.transposed))
    if not a.debiased:
        return trace / (n - 1) ** 2
    return (trace + a.total * b.total / ((n - 1) * (n - 2))
            - 2.0 * float(a.col_sums @ b.row_sums) / (n - 2)) / (n * (n - 3))


def hsic(K: np.ndarray, L: np.ndarray, debiased: bool = False) -> float:
    """HSIC of two ``(n, n)`` kernel matrices.

    Biased: ``tr(K H L H) / (n-1)²`` (Gretton et al. 2005). Debiased: the unbiased estimator of
    Song et al. 2012, eq. 5, with ``K~``, ``L~`` the Gram matrices with zeroed diagonals:
    ``[tr(K~L~) + 1ᵀK~1 1ᵀL~1 / ((n-1)(n-2)) - 2/(n-2) 1ᵀK~L~1] / (n(n-3))``; needs ``n >= 4``.
    ``K``, ``L`` need not be symmetric (CKNNA uses masked, asymmetric ones).
    """
    K, L = as_matrix(K, "K"), as_matrix(L, "L")
    if K.shape[0] != K.shape[1] or K.shape != L.shape:
        raise ValueError(f"K and L must be square and of equal shape, got {K.shape} and {L.shape}")
    if debiased:
        _require_rows(K, 4, "the unbiased HSIC estimator", "K")
    return _hsic_from_terms(_hsic_terms(K.copy(), debiased, symmetric=False),
                            _hsic_terms(L.copy(), debiased, symmetric=False))


def _checked_self_hsic(value: float, scale: float, name: str) -> float:
    """Refuse a (numerically) non-positive self-HSIC instead of letting CKA become NaN.

    In exact arithmetic the unbiased self-HSIC of a symmetric kernel is >= 0 (it is the squared
    norm of the U-centred Gram, Székely & Rizzo 2014). It is 0 -- and round-off makes it slightly
    negative, the NaNs reported for other libraries -- when the kernel has no structure beyond its
    diagonal, e.g. an RBF bandwidth far below the typical distance, or too few stimuli.
    """
    if value <= _SELF_HSIC_RTOL * scale:
        raise ValueError(
            f"self-HSIC of {name} is {value:.3g} (<= 0 up to round-off): its kernel carries no "
            "structure the estimator can normalise by; use more stimuli, a larger RBF threshold, "
            "or the biased estimator")
    return value


def _cka_ratio(cross: float, self_x: float, self_y: float) -> float:
    return float(np.clip(cross / (np.sqrt(self_x) * np.sqrt(self_y)), -1.0, 1.0))


# --------------------------------------------------------------------------------------------
# CKA
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _GramLayer:
    terms: _HsicTerms
    self_hsic: float


def _gram_layer(X: np.ndarray, name: str = "X", kernel: str = "linear", threshold: float = 1.0,
                debiased: bool = False, median_over: str = "matrix") -> _GramLayer:
    """One layer's (centred / diagonal-free) Gram and self-HSIC, computed once."""
    _require_choice(kernel, ("linear", "rbf"), "kernel")
    _require_rows(X, 4 if debiased else 3, "debiased CKA" if debiased else "CKA", name)
    X = _centred(unit_scaled(X))
    K = linear_gram(X) if kernel == "linear" else rbf_gram(X, threshold, median_over)
    terms = _hsic_terms(K, debiased, centred=kernel == "linear")
    n, trace = X.shape[0], float(np.vdot(terms.matrix, terms.matrix))
    scale = trace / (n * (n - 3) if debiased else (n - 1) ** 2)
    return _GramLayer(terms, _checked_self_hsic(_hsic_from_terms(terms, terms, trace), scale, name))


def _pair_gram_layers(a: _GramLayer, b: _GramLayer) -> float:
    return _cka_ratio(_hsic_from_terms(a.terms, b.terms), a.self_hsic, b.self_hsic)


def _frobenius_products(mats_a: list[np.ndarray], mats_b: list[np.ndarray]) -> np.ndarray:
    """``<A_i, B_j>_F`` for all pairs of ``(n, n)`` matrices, ``(len a, len b)``.

    One GEMM per band of rows, so every matrix is streamed from memory once instead of once per
    pair (pairing is memory-bound: 144 separate dot products re-read 2 x 144 Grams).
    """
    n = mats_a[0].shape[0]
    rows = max(1, _BAND_ELEMENTS // n)
    products = np.zeros((len(mats_a), len(mats_b)))
    for start in range(0, n, rows):
        band_a = np.stack([M[start:start + rows].ravel() for M in mats_a])
        band_b = np.stack([M[start:start + rows].ravel() for M in mats_b])
        products += band_a @ band_b.T
    return products


def _pair_gram_blocks(layers_a: list[_GramLayer], layers_b: list[_GramLayer]) -> np.ndarray:
    """``_pair_gram_layers`` for every pair, with the Gram inner products batched."""
    traces = _frobenius_products([a.terms.matrix for a in layers_a],
                                 [b.terms.matrix for b in layers_b])
    return np.array([[_cka_ratio(_hsic_from_terms(a.terms, b.terms, traces[i, j]),
                                 a.self_hsic, b.self_hsic)
                      for j, b in enumerate(layers_b)] for i, a in enumerate(layers_a)])


def _debiased_feature_term(cross: float, sq_rows_x: np.ndarray, sq_rows_y: np.ndarray) -> float:
    """``n(n-3)`` times the unbiased HSIC of the linear Grams of centred X and Y, from features.

    With centred features ``K 1 = 0``, so ``K~ 1 = -diag(K)`` and Song et al.'s estimator reduces
    to ``|XᵀY|² - n/(n-2) diag(K)·diag(L) + tr K tr L / ((n-1)(n-2))`` (Kornblith et al.'s code).
    """
    n = sq_rows_x.shape[0]
    return (cross - n / (n - 2) * float(sq_rows_x @ sq_rows_y)
            + sq_rows_x.sum() * sq_rows_y.sum() / ((n - 1) * (n - 2)))


def _float32_kept(X: Any) -> Any:
    """Float32 and float16 arrays or tensors as float32 NumPy arrays (no copy of float32 arrays);
    anything else unchanged, for ``as_matrix`` to convert to float64."""
    if hasattr(X, "detach") and str(X.dtype) in ("torch.float32", "torch.float16"):
        return X.detach().cpu().float().numpy()
    if isinstance(X, np.ndarray) and X.dtype in (np.float16, np.float32):
        return X.astype(np.float32, copy=False)
    return X


def _is_float32(X: Any) -> bool:
    return isinstance(X, np.ndarray) and X.dtype == np.float32


def _validated_floats(X: Any, name: str) -> np.ndarray:
    """``_validated`` without the float64 copy of float32 input (linear CKA, k-NN measures)."""
    X = _float32_kept(X)
    return not_constant(as_matrix(X, name, dtype=np.float32 if _is_float32(X) else np.float64),
                        name)


def _validated_float_pair(X: Any, Y: Any) -> tuple[np.ndarray, np.ndarray]:
    """``_validated_pair`` keeping float32 when both inputs are float32."""
    X, Y = _float32_kept(X), _float32_kept(Y)
    dtype = np.float32 if _is_float32(X) and _is_float32(Y) else np.float64
    X, Y = paired(X, Y, dtype=dtype)
    return not_constant(X, "X"), not_constant(Y, "Y")


def _safely_scaled(X: np.ndarray) -> np.ndarray:
    """``unit_scaled`` for the float32 path too: float32 products of ``|x| ~ 2^64`` overflow and
    of ``|x| ~ 2^-64`` lose precision to subnormals, so float32 input is brought to ``|x| <~ 1``
    by a power of two (exact; ordinary magnitudes ``2^-20 .. 2^20`` are left as they are)."""
    if X.dtype != np.float32:
        return unit_scaled(X)
    top = max(float(X.max()), -float(X.min()))
    if top == 0.0 or 2.0 ** -20 <= top <= 2.0 ** 20:
        return X
    return np.ldexp(X, -int(np.frexp(top)[1])).astype(np.float32, copy=False)


@dataclass(frozen=True)
class _LinearLayer:
    """One layer prepared for linear CKA, without a centred copy of its rows."""

    values: np.ndarray    # (n, d) as given: float32 stays float32, anything else is float64
    mean: np.ndarray      # (d,) float64 column means
    sq_norms: np.ndarray  # (n,) float64 diagonal of the centred linear Gram
    debiased: bool
    name: str

    @property
    def width(self) -> int:
        return self.values.shape[1]

    def centred(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``start:stop`` minus the mean, subtracted in float64 and stored in the layer's
        dtype (into ``out`` when given): float32 keeps the centred values to float32 precision
        whatever the offset of the raw activations."""
        stop = min(stop, self.values.shape[0])
        if out is None:
            out = np.empty((stop - start, self.width), self.values.dtype)
        step = max(1, _CENTRED_CHUNK // self.width)  # float64 temporaries that stay in cache
        for first in range(start, stop, step):
            last = min(first + step, stop)
            # the values sq_norms was made from: float64 difference, rounded to the layer's dtype
            out[first - start:last - start] = np.subtract(self.values[first:last], self.mean,
                                                          dtype=np.float64)
        return out


def _rows_per_block(width: int, itemsize: int, budget: int, cap: int | None = None) -> int:
    """Rows per block so that ``rows x width`` items of ``itemsize`` bytes fit in ``budget``."""
    rows = max(1, budget // max(1, width * itemsize))
    return rows if cap is None else min(rows, cap)


def _linear_layer(X: np.ndarray, name: str = "X", debiased: bool = False) -> _LinearLayer:
    _require_rows(X, 4 if debiased else 3, "debiased CKA" if debiased else "CKA", name)
    X = _safely_scaled(X)
    n = X.shape[0]
    layer = _LinearLayer(X, X.mean(axis=0, dtype=np.float64), np.empty(n), debiased, name)
    rows = _rows_per_block(X.shape[1], 8, _FEATURE_BLOCK_BYTES)
    for start in range(0, n, rows):
        centred = layer.centred(start, start + rows)
        layer.sq_norms[start:start + rows] = np.einsum("ij,ij->i", centred, centred,
                                                       dtype=np.float64)
    return layer


def _linear_hsic(product: float, a: _LinearLayer, b: _LinearLayer) -> float:
    """HSIC (up to a common factor) from ``<K_a, K_b>_F`` of the centred linear Grams."""
    return _debiased_feature_term(product, a.sq_norms, b.sq_norms) if a.debiased else product


def _linear_self_hsic(product: float, a: _LinearLayer) -> float:
    return _checked_self_hsic(_linear_hsic(product, a, a), product, a.name)


def _storage_dtype(layers: list[_LinearLayer]) -> np.dtype:
    return np.result_type(*(layer.values.dtype for layer in layers))


def _feature_self_product(layer: _LinearLayer) -> float:
    """``|XᵀX|_F²`` of the centred rows, ``XᵀX`` summed over row blocks in float64."""
    rows = _rows_per_block(layer.width, 8, _FEATURE_BLOCK_BYTES, _SUMMED_ROWS)
    total = np.zeros((layer.width, layer.width))
    for start in range(0, layer.values.shape[0], rows):
        block = layer.centred(start, start + rows)
        total += block.T @ block
    return float(np.vdot(total, total))


def _feature_products(layers_a: list[_LinearLayer], layers_b: list[_LinearLayer],
                      same: bool) -> np.ndarray:
    """``|X_iᵀ Y_j|_F² = <K_i, L_j>_F`` for all pairs of centred layers, ``(len a, len b)``.

    Rows are streamed in blocks: each block of every layer is centred once into a shared buffer
    (in the layers' dtype) and multiplied with all of B's layers in one GEMM per A layer; the
    products ``X_iᵀ Y_j`` are summed over blocks in float64. A's layers are taken in groups whose
    float64 accumulators fit in ``_FEATURE_ACCUMULATOR_BYTES`` (B's blocks are centred again
    for each group). With ``same``, only ``j >= i`` is computed and the rest mirrored.
    """
    n = layers_a[0].values.shape[0]
    dtype = _storage_dtype(layers_a + layers_b)
    widths = [layer.width for layer in layers_b]
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(int)
    first_column = [int(offsets[i]) if same else 0 for i in range(len(layers_a))]
    groups: list[list[int]] = [[]]
    held = 0
    for i, layer in enumerate(layers_a):
        need = layer.width * (offsets[-1] - first_column[i]) * 8
        if groups[-1] and held + need > _FEATURE_ACCUMULATOR_BYTES:
            groups.append([])
            held = 0
        groups[-1].append(i)
        held += need
    cross = np.zeros((len(layers_a), len(layers_b)))
    for group in groups:
        start_b = first_column[group[0]]                    # B's columns this group needs
        first_b = int(np.searchsorted(offsets, start_b))     # ... from this B layer on
        width_a = 0 if same else sum(layers_a[i].width for i in group)
        rows = _rows_per_block(offsets[-1] - start_b + width_a, dtype.itemsize,
                               _FEATURE_BLOCK_BYTES, _SUMMED_ROWS)
        block_b = np.empty((min(rows, n), offsets[-1] - start_b), dtype)
        block_a = block_b if same else np.empty((min(rows, n), width_a), dtype)
        where_a = {}
        column = 0
        for i in group:
            where_a[i] = (first_column[i] - start_b if same else column)
            column += layers_a[i].width
        sums = {i: np.zeros((layers_a[i].width, offsets[-1] - first_column[i])) for i in group}
        product = {i: np.empty(sums[i].shape, dtype) for i in group}
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            count = stop - start
            for j in range(first_b, len(layers_b)):
                layers_b[j].centred(start, stop, block_b[:count, offsets[j] - start_b:
                                                         offsets[j + 1] - start_b])
            if not same:
                for i in group:
                    layers_a[i].centred(start, stop,
                                        block_a[:count, where_a[i]:where_a[i] + layers_a[i].width])
            for i in group:
                x = block_a[:count, where_a[i]:where_a[i] + layers_a[i].width]
                np.matmul(x.T, block_b[:count, first_column[i] - start_b:], out=product[i])
                sums[i] += product[i]
        for i in group:
            for j in range(len(layers_b)):
                if offsets[j] >= first_column[i]:
                    part = sums[i][:, offsets[j] - first_column[i]:offsets[j + 1] - first_column[i]]
                    cross[i, j] = np.einsum("ij,ij->", part, part)
        del sums, product
    if same:
        lower = np.tril_indices_from(cross, -1)
        cross[lower] = cross.T[lower]
    return cross


def _gram_band(X: np.ndarray, start: int, stop: int, out: np.ndarray) -> np.ndarray:
    """Rows ``start:stop``, columns ``start:`` of ``X Xᵀ`` into the flat float64 ``out``: first
    the diagonal block (``(stop - start)²`` entries, one SYRK: half the multiply-adds of a GEMM),
    then the block right of it (``(stop - start) (n - stop)`` entries). Summed over bands, inner
    products of the diagonal parts plus twice those of the right parts are the Frobenius products
    of the full symmetric Grams. A float32 ``X`` is multiplied in float32 (``d``-term sums) and
    stored in float64."""
    rows, block = stop - start, X[start:stop]
    diagonal = out[:rows * rows].reshape(rows, rows)
    right = out[rows * rows:].reshape(rows, X.shape[0] - stop)
    if X.dtype == out.dtype:
        np.matmul(block, block.T, out=diagonal)
        np.matmul(block, X[stop:].T, out=right)
    else:
        diagonal[...] = block @ block.T
        right[...] = block @ X[stop:].T
    return out


def _banded_gram_products(layers_a: list[_LinearLayer], layers_b: list[_LinearLayer],
                          same: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``<K_i, L_j>_F`` for all pairs plus the self products ``<K_i, K_i>``, ``<L_j, L_j>``.

    Each layer's Gram is computed once, one band of rows of its upper triangle at a time, into a
    reused float64 buffer: no n×n matrix is ever held, and the bands of all layers are paired in
    two float64 products (diagonal blocks, right blocks) while they are hot, self products
    included. Holds a centred copy of every layer (in its dtype) for the band products.
    """
    layers = layers_a if same else layers_a + layers_b
    n = layers[0].values.shape[0]
    centred = [layer.centred(0, n) for layer in layers]
    rows = min(max(1, _BAND_ELEMENTS // n), n)
    # Bands are stored in the layers' dtype: a float32 Gram entry is exact in either, so this
    # halves the memory traffic; the pairings convert cache-sized chunks to float64.
    buffer = np.empty((len(layers), rows * n), _storage_dtype(layers))
    products = np.zeros((len(layers), len(layers)))
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        bands = buffer[:, :(stop - start) * (n - start)]
        for features, band in zip(centred, bands):
            _gram_band(features, start, stop, band)
        for first, last, weight in ((0, (stop - start) ** 2, 1.0),
                                    ((stop - start) ** 2, bands.shape[1], 2.0)):
            for chunk in range(first, last, _PAIRED_CHUNK):
                part = bands[:, chunk:min(chunk + _PAIRED_CHUNK, last)].astype(np.float64)
                products += weight * (part @ part.T)  # SYRK: all layer pairs, selfs included
    cross = products if same else products[:len(layers_a), len(layers_a):]
    selfs = np.diag(products)
    return cross, selfs[:len(layers_a)], selfs[len(layers) - len(layers_b):]


def _linear_form(n: int, widths_a: Sequence[int], widths_b: Sequence[int], same: bool) -> str:
    """``"features"`` or ``"gram"``: the form of linear CKA with the smaller estimated cost.

    Feature form: ``n d_i d_j`` multiply-adds per pair (dense GEMMs at the BLAS's best rate),
    plus ``n d²/2`` per layer for the self terms. Gram form: ``n² d / 2`` per layer for its
    upper-triangle bands, plus ``n² / 2`` per pair and per layer for the band inner products,
    which are memory-bound and counted ``_GRAM_PAIR_WEIGHT`` times. For ``L x L`` layers of
    width ``d`` the forms break even at ``n ~ 2 d² (L + 1) / (2 d + w (L + 2))``: ``n ~ 2 d`` for
    one pair, ``n ~ 10 d`` for 12 x 12 layers (``n ~ 3,900`` at ``d = 384``). Above that the
    feature form is chosen (its cost grows as ``n``, the Gram form's as ``n²``), below it the
    Gram form (wide layers, few stimuli). Both give the same values to float round-off.
    """
    pairs = [(i, j) for i in range(len(widths_a)) for j in range(len(widths_b))
             if not same or j >= i]
    features = n * sum(widths_a[i] * widths_b[j] for i, j in pairs)
    layers = list(widths_a) if same else list(widths_a) + list(widths_b)
    if not same:
        features += n * sum(d * d for d in layers) / 2
    pair_count = len(widths_a) * len(widths_b) + len(layers)
    gram = n * n / 2 * (sum(layers) + _GRAM_PAIR_WEIGHT * pair_count)
    return "features" if features <= gram else "gram"


def _linear_products(layers_a: list[_LinearLayer], layers_b: list[_LinearLayer],
                     same: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``<K_i, L_j>_F`` of the centred linear Grams for all pairs and the self products, by the
    cheaper of the feature and the Gram form (:func:`_linear_form`)."""
    n = layers_a[0].values.shape[0]
    form = _linear_form(n, [a.width for a in layers_a], [b.width for b in layers_b], same)
    if form == "gram":
        return _banded_gram_products(layers_a, layers_b, same)
    cross = _feature_products(layers_a, layers_b, same)
    if same:
        return cross, np.diag(cross).copy(), np.diag(cross).copy()
    return (cross, np.array([_feature_self_product(a) for a in layers_a]),
            np.array([_feature_self_product(b) for b in layers_b]))


def _linear_cka_block(layers_a: list[_LinearLayer], layers_b: list[_LinearLayer]) -> np.ndarray:
    """Linear CKA for every pair of prepared layers, ``(len a, len b)``."""
    cross, products_a, products_b = _linear_products(layers_a, layers_b, layers_b is layers_a)
    self_a = [_linear_self_hsic(p, a) for p, a in zip(products_a, layers_a)]
    self_b = [_linear_self_hsic(p, b) for p, b in zip(products_b, layers_b)]
    return np.array([[_cka_ratio(_linear_hsic(cross[i, j], a, b), self_a[i], self_b[j])
                      for j, b in enumerate(layers_b)] for i, a in enumerate(layers_a)])


def cka(X: Any, Y: Any, kernel: str = "linear", threshold: float = 1.0,
        debiased: bool = False, median_over: str = "matrix", device: Any = None) -> float:
    """Centred kernel alignment (Kornblith et al. 2019) of ``X: (n, d1)`` and ``Y: (n, d2)``.

    ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))``. ``kernel="rbf"`` uses ``rbf_gram(threshold,
    median_over)`` per matrix (default: Kornblith et al.'s bandwidth, see :func:`rbf_gram`). ``debiased=True`` uses Song et al.'s unbiased HSIC (debiased CKA; ~0 for
    independent data where the biased value is inflated at small n, and can be slightly negative).
    Linear CKA takes the cheaper form (:func:`_linear_form`): the feature form
    ``|YᵀX|² / (|XᵀX| |YᵀY|)`` (``O(n d1 d2)``; chosen when ``n`` exceeds about twice the widths)
    or banded Gram products (``O(n² (d1 + d2))``; wide inputs); float32 input stays float32 with
    float64 sums. Peak memory beyond the inputs: feature form ``<= ~200 MiB`` of row blocks and
    float64 accumulators whatever ``n``; Gram form a centred copy of both inputs plus ``4 MiB``
    of bands each. RBF CKA holds both ``(n, n)`` float64 Grams.

    Invariant to orthogonal transforms, isotropic scaling, translation and feature permutation; not
    to general invertible linear maps. Meaningless for n < 3 (n < 4 debiased). A non-positive
    debiased self-HSIC (degenerate kernel) raises ``ValueError`` instead of returning NaN.
    ``device="cpu" | "cuda" | "auto"`` computes it with torch (:mod:`resonance.backend`).
    """
    if device is not None:
        _require_choice(kernel, ("linear", "rbf"), "kernel")
        from .backend import values_on_device
        if kernel == "linear":
            return values_on_device("cka_linear_debiased" if debiased else "cka_linear", X, Y,
                                    device)
        return values_on_device("cka_rbf", X, Y, device, threshold=threshold, debiased=debiased,
                                median_over=median_over)
    if kernel == "linear":
        X, Y = _validated_float_pair(X, Y)
        layers = [_linear_layer(X, "X", debiased)], [_linear_layer(Y, "Y", debiased)]
        return float(_linear_cka_block(*layers)[0, 0])
    X, Y = _validated_pair(X, Y)
    return _pair_gram_layers(_gram_layer(X, "X", kernel, threshold, debiased, median_over),
                             _gram_layer(Y, "Y", kernel, threshold, debiased, median_over))


class MinibatchCKA:
    """Minibatch debiased linear CKA (Nguyen et al. 2021) for ``n`` too large for one Gram.

    ``update(X_batch: (b, d1), Y_batch: (b, d2))`` adds one minibatch (``b >= 4``, same stimuli in
    both); ``value()`` returns ``mean_b HSIC1(K_b, L_b) / sqrt(mean_b HSIC1(K_b, K_b) mean_b
    HSIC1(L_b, L_b))`` with HSIC1 the unbiased estimator. Same invariances as ``cka``. Each batch
    takes the cheaper form of linear CKA (features or Grams, as ``cka``), keeps float32 input in
    float32 and sums in float64, so batches of any size fit: ``O(b min(b, d)²)``-ish time,
    ``<= ~200 MiB`` beyond the batch (feature form) or a centred copy of it (Gram form). This is a
    different estimator from full-``n`` debiased CKA (a mean over batches), so ``cka`` and
    ``similarity_matrix`` never switch to it on their own.
    """

    def __init__(self) -> None:
        self._cross = self._self_x = self._self_y = 0.0
        self._batches = 0

    def update(self, X_batch: Any, Y_batch: Any) -> MinibatchCKA:
        X, Y = _validated_float_pair(X_batch, Y_batch)
        _require_rows(X, 4, "a minibatch of debiased CKA", "X_batch")
        a = _linear_layer(X, "X_batch", debiased=True)
        b = _linear_layer(Y, "Y_batch", debiased=True)
        cross, (self_a,), (self_b,) = _linear_products([a], [b], same=False)
        scale = X.shape[0] * (X.shape[0] - 3)  # the HSIC1 of one batch is its term over b(b-3)
        self._cross += _linear_hsic(cross[0, 0], a, b) / scale
        self._self_x += _linear_hsic(self_a, a, a) / scale
        self._self_y += _linear_hsic(self_b, b, b) / scale
        self._batches += 1
        return self

    def value(self) -> float:
        if not self._batches:
            raise ValueError("MinibatchCKA has seen no minibatch yet; call update() first")
        return _cka_ratio(self._cross, _checked_self_hsic(self._self_x, 0.0, "X"),
                          _checked_self_hsic(self._self_y, 0.0, "Y"))


# --------------------------------------------------------------------------------------------
# Nearest-neighbour measures (Huh et al. 2024, "The Platonic Representation Hypothesis")
# --------------------------------------------------------------------------------------------

def clamp_outliers(X: Any, quantile: float = 0.95, exact: bool = False) -> np.ndarray:
    """Huh et al.'s outlier clamp (platonic-rep ``remove_outliers``) of ``X: (n, d)`` or a stack
    of layers ``(L, n, d)``: every entry is clipped to ``[-t, t]``.

    ``exact=False`` (what ``mutual_knn(clamp_quantile=q)`` applies to each matrix): ``t`` = the
    mean over the leading axis of the ``quantile`` of ``|x|`` within each slice (each stimulus of a
    2-D matrix; each layer of a stack). ``exact=True``: ``t`` = the entry at position
    ``floor(quantile * N)`` of all ``N`` values ``|x|`` sorted ascending (their ``exact=True``).
    platonic-rep's published alignment scores clamp the stack of *all* layers of a model at once,
    ``exact=True``, ``quantile=0.95``, in float32; to match them, clamp here
    (``clamp_outliers(np.stack(layers), 0.95, exact=True)``), pass the clamped layers with
    ``clamp_quantile=None``, and expect agreement to float32 precision, not bit for bit.
    """
    if not 0 < quantile <= 1:
        raise ValueError(f"clamp_quantile must be in (0, 1], got {quantile}")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim < 2:
        raise ValueError(f"clamp_outliers needs (n, d) or (layers, n, d), got shape {X.shape}")
    if quantile == 1:
        return X
    magnitudes = np.abs(X)
    if exact:
        flat = np.sort(magnitudes, axis=None)
        threshold = float(flat[min(int(quantile * flat.size), flat.size - 1)])
    else:
        threshold = float(np.quantile(magnitudes.reshape(len(X), -1), quantile, axis=1).mean())
    return np.clip(X, -threshold, threshold)


def _clamp_threshold(X: np.ndarray, quantile: float) -> float:
    """Clamp level ``t`` = mean over stimuli of the ``quantile`` of ``|x_i|`` (Huh et al.'s
    ``remove_outliers``, default non-exact mode; they apply it to all layers of a model at once,
    here it is per matrix). Computed in float64, row block by row block."""
    if not 0 < quantile <= 1:
        raise ValueError(f"clamp_quantile must be in (0, 1], got {quantile}")
    rows = _rows_per_block(X.shape[1], 8, _FEATURE_BLOCK_BYTES)
    per_row = [np.quantile(np.abs(X[start:start + rows]).astype(np.float64), quantile, axis=1)
               for start in range(0, X.shape[0], rows)]
    return float(np.concatenate(per_row).mean())


@dataclass(frozen=True)
class _UnitRows:
    """Rows of ``values`` clamped at ``±threshold`` (if set) and L2-normalised, made in float64
    on demand (by slice or index array) instead of held as a float64 copy."""

    values: np.ndarray
    threshold: float | None
    norms: np.ndarray  # (n,) float64 norms of the clamped rows

    def clamped(self, index: slice | np.ndarray) -> np.ndarray:
        rows = self.values[index].astype(np.float64)
        if self.threshold is not None:
            np.clip(rows, -self.threshold, self.threshold, out=rows)
        return rows

    def rows(self, index: slice | np.ndarray) -> np.ndarray:
        rows = self.clamped(index)
        rows /= self.norms[index][:, None]
        return rows


def _unit_rows(X: np.ndarray, clamp_quantile: float | None, name: str,
               screen: np.ndarray | None = None) -> _UnitRows:
    """Norms of the clamped rows and (into ``screen``, when given) the float32 unit rows, in one
    pass of cache-sized float64 chunks."""
    if clamp_quantile is not None and not 0 < clamp_quantile <= 1:
        raise ValueError(f"clamp_quantile must be in (0, 1], got {clamp_quantile}")
    threshold = (None if clamp_quantile is None or clamp_quantile == 1  # as clamp_outliers
                 else _clamp_threshold(X, clamp_quantile))
    unit = _UnitRows(X, threshold, np.empty(X.shape[0]))
    step = max(1, _CENTRED_CHUNK // X.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):  # zero rows raise below
        for start in range(0, X.shape[0], step):
            rows = unit.clamped(slice(start, start + step))
            norms = np.linalg.norm(rows, axis=1)  # the norms the float64 ranking uses
            unit.norms[start:start + step] = norms
            if screen is not None:
                rows /= norms[:, None]  # as unit.rows
                screen[start:start + step] = rows
    if (unit.norms == 0).any():
        raise ValueError(f"{name} has {int((unit.norms == 0).sum())} all-zero rows (after "
                         "clamping): their cosine neighbours are undefined")
    return unit


def _top_k_by_index(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest of one row of float64 ``scores``; ties go to lower indices."""
    kth = np.partition(scores, scores.size - k)[scores.size - k]
    above = np.flatnonzero(scores > kth)
    return np.concatenate([above, np.flatnonzero(scores == kth)[:k - above.size]])


def _exact_neighbours(unit: _UnitRows, rows: np.ndarray, k: int, indices: np.ndarray) -> None:
    """Neighbours of ``rows`` from their full float64 rows of cosines, into ``indices``."""
    n = unit.norms.size
    step = max(1, _SCORE_ELEMENTS // (2 * n))
    columns = _rows_per_block(unit.values.shape[1], 8, _FEATURE_BLOCK_BYTES)
    for first in range(0, rows.size, step):
        chosen = rows[first:first + step]
        queries = unit.rows(chosen)
        full = np.empty((chosen.size, n))
        for start in range(0, n, columns):
            # einsum, not BLAS: identical rows get bitwise identical scores (ties stay ties)
            full[:, start:start + columns] = np.einsum("fd,cd->fc", queries,
                                                       unit.rows(slice(start, start + columns)))
        full[np.arange(chosen.size), chosen] = -np.inf
        for row, values in zip(chosen, full):
            indices[row] = _top_k_by_index(values, k)


def _top_candidates(scores: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices ``(rows, count)`` of the ``count`` largest scores of each row and those
    scores, largest first (ties in any order). ``torch.topk`` for long rows (about 10x faster
    than ``np.argpartition`` at n ~ 4,000, 2x at n ~ 2,000), NumPy for short rows."""
    if scores.shape[1] >= _TOPK_WITH_TORCH:
        import torch

        scores = torch.from_numpy(scores)
        top = torch.topk(scores, count, dim=1, sorted=True)
        return top.indices.numpy(), top.values.numpy()
    kept = np.argpartition(scores, scores.shape[1] - count, axis=1)[:, scores.shape[1] - count:]
    values = np.take_along_axis(scores, kept, axis=1)
    order = np.argsort(-values, axis=1)
    return np.take_along_axis(kept, order, axis=1), np.take_along_axis(values, order, axis=1)


def _cosine_neighbours(X: np.ndarray, k: int, clamp_quantile: float | None, name: str,
                       values: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Indices ``(n, k)`` of each row's k nearest other rows by cosine, and (``values``) those
    cosines in float64.

    The neighbours are those the float64 unit rows rank highest (ties to the lower index), found
    without an ``(n, n)`` matrix: row blocks of float32 scores (``_SCORE_ELEMENTS`` at a time)
    give each row its ``k + 1`` best candidates (:func:`_top_candidates`). A float32 score of
    unit rows is within ``b = (d + 3) 2⁻²⁴`` of the float64 one (any summation order), so when a
    row's k-th and (k+1)-th float32 scores differ by more than ``2b`` its float32 top k is the
    float64 top k. Other rows (near-ties) take their ``2k + 8`` best candidates from the same
    block and have those within ``2b`` of the k-th float32 score (the only ones that can be in
    the top k) re-scored in float64; when even the last candidate is one of those (duplicates,
    many near-ties) the row is redone from its full float64 row of scores. Memory: the float32 unit rows
    (``4 n d`` bytes) plus one score block.
    """
    k = positive_int(k, "k")
    n, d = X.shape
    if n <= k:
        raise ValueError(f"k={k} neighbours need n > k stimuli, but {name} has n={n}")
    screen = np.empty((n, d), np.float32)
    unit = _unit_rows(X if X.dtype == np.float32 else unit_scaled(X), clamp_quantile, name,
                      screen)
    eps = 2.0 ** -24
    bound = (d + 3) * eps / (1 - (d + 3) * eps)
    candidates = min(n - 1, 2 * k + 8)
    indices = np.empty((n, k), np.int64)
    block = max(1, min(n, _SCORE_ELEMENTS // n))
    redo = []
    for start in range(0, n, block):
        stop = min(start + block, n)
        similar = screen[start:stop] @ screen.T
        similar[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        if candidates == k:  # every other row is a neighbour
            indices[start:stop] = _top_candidates(similar, k)[0]
            continue
        proposed, screened = _top_candidates(similar, k + 1)  # enough for the clear rows
        indices[start:stop] = proposed[:, :k]
        unclear = np.flatnonzero(screened[:, k - 1] - screened[:, k] <= 2 * bound)
        if unclear.size:
            proposed, screened = _top_candidates(similar[unclear], candidates)
            # only candidates within 2b of the k-th float32 score can be among the top k
            contender = screened >= screened[:, k - 1:k] - 2 * bound
            exact = np.full(proposed.shape, -np.inf)
            queries = np.broadcast_to((start + unclear)[:, None], proposed.shape)
            exact[contender] = _cosine_pairs(unit, queries[contender], proposed[contender])
            order = np.lexsort((proposed, -exact))[:, :k]
            indices[start + unclear] = np.take_along_axis(proposed, order, axis=1)
            redo.extend(start + unclear[contender[:, -1]])  # contenders beyond the candidates
    if redo:
        _exact_neighbours(unit, np.asarray(redo), k, indices)
    return indices, (_cosine_pairs(unit, np.arange(n), indices) if values else None)


def _cosine_pairs(unit: _UnitRows, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Float64 cosines of ``rows[i]`` with each of ``columns[i, :]``, ``(len rows, c)``; with
    1-D ``columns``, of each pair ``(rows[i], columns[i])``, ``(len rows,)``."""
    d = unit.values.shape[1]
    if columns.ndim == 1:  # pairs; each distinct query row is made once per chunk
        out = np.empty(columns.shape)
        step = max(1, _SCORE_ELEMENTS // (4 * d))
        for first in range(0, rows.size, step):
            chunk = slice(first, first + step)
            distinct, inverse = np.unique(rows[chunk], return_inverse=True)
            out[chunk] = np.einsum("pd,pd->p", unit.rows(distinct)[inverse],
                                   unit.rows(columns[chunk]))
        return out
    count = columns.shape[1]
    step = max(1, _SCORE_ELEMENTS // (4 * count * d))
    out = np.empty(columns.shape)
    for first in range(0, rows.size, step):
        last = min(first + step, rows.size)
        others = unit.rows(columns[first:last].ravel()).reshape(last - first, count, d)
        out[first:last] = np.einsum("qd,qcd->qc", unit.rows(rows[first:last]), others)
    return out


def _knn_layer(X: np.ndarray, name: str = "X", k: int = 10,
               clamp_quantile: float | None = None) -> np.ndarray:
    """Each stimulus's ``k`` neighbours in one layer, ``(n, k)``, sorted along each row."""
    neighbours, _ = _cosine_neighbours(X, k, clamp_quantile, name, values=False)
    return np.sort(neighbours, axis=1)


# Booleans compared at once when counting shared neighbours (rows x k x k).
_SHARED_ELEMENTS = 2**22


def _pair_knn_layers(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of neighbours two layers agree on: ``k²`` comparisons per row (no sort)."""
    n, k = a.shape
    step = max(1, _SHARED_ELEMENTS // (k * k))
    shared = sum(int(np.count_nonzero(a[s:s + step, :, None] == b[s:s + step, None, :]))
                 for s in range(0, n, step))
    return shared / a.size


def mutual_knn(X: Any, Y: Any, k: int = 10, clamp_quantile: float | None = None,
               device: Any = None) -> float:
    """Mutual k-NN alignment of Huh et al. 2024: ``mean_i |N_k^X(i) ∩ N_k^Y(i)| / k``.

    Rows are L2-normalised, neighbours ranked by inner product (cosine), self excluded. With
    ``clamp_quantile`` (they use 0.95) features are first clamped as in their ``remove_outliers``
    in its default (``exact=False``) mode, per matrix. Differences from platonic-rep's published
    scores: their measurement script clamps with ``exact=True`` and one threshold pooled over all
    layers of a model, and computes in float32 (ties among neighbours may then break differently);
    :func:`clamp_outliers` reproduces their clamp. Chance level is about ``k / (n - 1)``;
    identical inputs give 1.

    Invariant to orthogonal transforms (without clamping), isotropic scaling and feature
    permutation; not to translation (cosine is measured from the origin). Needs ``n > k``.

    Neighbours are found by row blocks (:func:`_cosine_neighbours`: float32 screening, float64
    ranking, ties to the lower index), never an ``(n, n)`` matrix: ``O(n² d)`` time, peak memory
    beyond the inputs ``4 n d`` bytes (float32 unit rows of one input) + 32 MiB + ``O(n k)``.
    ``device="cpu" | "cuda" | "auto"`` computes it with torch (:mod:`resonance.backend`).
    """
    if device is not None:
        from .backend import values_on_device
        return values_on_device("mutual_knn", X, Y, device, k=k, clamp_quantile=clamp_quantile)
    X, Y = _validated_float_pair(X, Y)
    return _pair_knn_layers(_knn_layer(X, "X", k, clamp_quantile),
                            _knn_layer(Y, "Y", k, clamp_quantile))


@dataclass(frozen=True)
class _NeighbourLayer:
    masked: sparse.csr_matrix   # (n, n) M_X∘K: the cosine of i with each of its k neighbours
    pattern: sparse.csr_matrix  # (n, n) M_X: 1 at the same places
    self_hsic: float


def _sparse_hsic(A: sparse.csr_matrix, B: sparse.csr_matrix) -> float:
    """Unbiased HSIC of two sparse ``(n, n)`` matrices with zero diagonals (``hsic`` without the
    ``n x n`` arrays: ``tr(AB)``, the totals and ``1ᵀAB1`` from the stored entries)."""
    def terms(M: sparse.csr_matrix) -> _HsicTerms:
        rows, cols = np.asarray(M.sum(axis=1)).ravel(), np.asarray(M.sum(axis=0)).ravel()
        return _HsicTerms(M, M, rows, cols, float(rows.sum()), debiased=True)

    return _hsic_from_terms(terms(A), terms(B), float(A.multiply(B.T).sum()))


def _cknna_layer(X: np.ndarray, name: str = "X", k: int = 10,
                 clamp_quantile: float | None = None) -> _NeighbourLayer:
    if isinstance(k, (bool, np.bool_)) or not (isinstance(k, (int, np.integer)) and k >= 2):
        raise ValueError(f"CKNNA needs an integer k >= 2, got {k!r}")
    indices, scores = _cosine_neighbours(X, k, clamp_quantile, name)
    n = X.shape[0]
    order = np.argsort(indices, axis=1)
    columns = np.take_along_axis(indices, order, axis=1).ravel()
    starts = np.arange(0, n * k + 1, k)
    masked = sparse.csr_matrix((np.take_along_axis(scores, order, axis=1).ravel(), columns,
                                starts), shape=(n, n))
    pattern = sparse.csr_matrix((np.ones(n * k), columns, starts), shape=(n, n))
    scale = float(np.sum(scores ** 2)) / (n * (n - 3))
    return _NeighbourLayer(masked, pattern,
                           _checked_self_hsic(_sparse_hsic(masked, masked), scale, name))


def _pair_cknna_layers(a: _NeighbourLayer, b: _NeighbourLayer) -> float:
    cross = _sparse_hsic(a.masked.multiply(b.pattern).tocsr(), b.masked.multiply(a.pattern).tocsr())
    return _cka_ratio(cross, a.self_hsic, b.self_hsic)


def cknna(X: Any, Y: Any, k: int = 10, clamp_quantile: float | None = None,
          device: Any = None) -> float:
    """CKNNA of Huh et al. 2024 (``metrics.py``, ``unbiased=True``): CKA restricted to pairs that
    are mutual k-nearest neighbours.

    Rows are L2-normalised; ``K``, ``L`` are the cosine Grams; ``M_X[i, j] = 1`` when ``j`` is one
    of the k nearest neighbours of ``i`` in X (self excluded). Value =
    ``HSIC1(M∘K, M∘L) / sqrt(HSIC1(M_X∘K, M_X∘K) HSIC1(M_Y∘L, M_Y∘L))`` with ``M = M_X∘M_Y`` and
    HSIC1 the unbiased estimator applied to the (asymmetric) masked matrices. Their code adds
    1e-6 to the denominator; here it is left out (so identical inputs give exactly 1) and a
    non-positive self term raises. Slightly asymmetric in X and Y. Same invariances as
    ``mutual_knn``; needs ``k >= 2`` and ``n > k``.

    The masked Grams have ``k`` entries per row, so they are held sparse: neighbour search as in
    ``mutual_knn``, then ``O(n k)`` memory and time; no ``(n, n)`` array.
    ``device="cpu" | "cuda" | "auto"`` computes it with torch (:mod:`resonance.backend`).
    """
    if device is not None:
        from .backend import values_on_device
        return values_on_device("cknna", X, Y, device, k=k, clamp_quantile=clamp_quantile)
    X, Y = _validated_float_pair(X, Y)
    return _pair_cknna_layers(_cknna_layer(X, "X", k, clamp_quantile),
                              _cknna_layer(Y, "Y", k, clamp_quantile))


# --------------------------------------------------------------------------------------------
# CCA family
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Subspace:
    basis: np.ndarray     # (n, r) orthonormal basis of the kept principal directions
    features: np.ndarray  # (n, d) centred features


def _components_to_keep(singular_values: np.ndarray, keep: float | int, name: str) -> int:
    rank = singular_values.size
    if isinstance(keep, (int, np.integer)) and not isinstance(keep, bool):
        if not 1 <= keep <= rank:
            raise ValueError(f"keep={keep} components requested but {name} has rank {rank}")
        return int(keep)
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be a variance fraction in (0, 1] or a component count, "
                         f"got {keep!r}")
    explained = np.cumsum(singular_values ** 2) / np.sum(singular_values ** 2)
    return min(int(np.searchsorted(explained, keep)) + 1, rank)


def _subspace(X: np.ndarray, name: str = "X", keep: float | int = 1.0) -> _Subspace:
    """Principal subspace of centred ``X`` holding ``keep`` (variance fraction or count)."""
    features = _centred(unit_scaled(X))
    U, s, _ = linalg.svd(features, full_matrices=False)
    rank = int(np.sum(s > s[0] * max(X.shape) * np.finfo(np.float64).eps))
    r = _components_to_keep(s[:rank], keep, name)
    return _Subspace(U[:, :r], features)


def _canonical_svd(a: _Subspace, b: _Subspace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SVD ``U diag(rho) Vᵀ`` of ``Qxᵀ Qy``; ``rho`` are the canonical correlations."""
    n, r1, r2 = a.basis.shape[0], a.basis.shape[1], b.basis.shape[1]
    if r1 + r2 >= n:
        raise ValueError(
            f"CCA is meaningless here: X keeps {r1} and Y keeps {r2} dimensions of {n - 1} "
            f"centred ones, so {r1 + r2 - n + 1} canonical correlations are 1 by construction; "
            "use more stimuli or fewer dimensions (svcca keep=...)")
    U, rho, Vt = linalg.svd(a.basis.T @ b.basis, full_matrices=False)
    return U, np.clip(rho, 0.0, 1.0), Vt


def _pair_svcca(a: _Subspace, b: _Subspace) -> float:
    return float(_canonical_svd(a, b)[1].mean())


def svcca(X: Any, Y: Any, keep: float | int = 0.99) -> float:
    """SVCCA (Raghu et al. 2017): mean canonical correlation between the principal subspaces.

    ``keep`` is a fraction of variance (float in (0, 1]) or a number of components (int) kept per
    matrix after centring: a float keeps the fewest leading directions whose cumulative share of
    variance reaches ``keep`` (Raghu et al. keep 99%); an int keeps that many, as google/svcca's
    tutorials do (e.g. the top 50 directions); to compare with their published values pass the
    same count. Other differences from google/svcca: its CCA adds ``epsilon`` to the covariance
    diagonals and drops units whose variance is below it, while here CCA is exact, on orthonormal
    bases of the kept subspaces (a dead unit adds no direction, so nothing needs dropping); the
    values then differ by an amount that grows with ``epsilon``. Invariant to orthogonal transforms, isotropic
    scaling, translation and feature permutation; with ``keep=1.0`` (plain CCA) to every
    invertible linear map. Meaningless (raises) when the kept dimensions sum to ``>= n``.
    """
    X, Y = _validated_pair(X, Y)
    return _pair_svcca(_subspace(X, "X", keep), _subspace(Y, "Y", keep))


def _pair_pwcca(a: _Subspace, b: _Subspace) -> float:
    U, rho, Vt = _canonical_svd(a, b)
    if a.features.shape[1] <= b.features.shape[1]:
        variates, features = a.basis @ U, a.features
    else:
        variates, features = b.basis @ Vt.T, b.features
    weights = np.abs(variates.T @ features).sum(axis=1)
    return float(weights @ rho / weights.sum())


def pwcca(X: Any, Y: Any, keep: float | int = 1.0) -> float:
    """Projection-weighted CCA (Morcos et al. 2018): ``sum_i a_i rho_i`` over canonical pairs.

    ``keep`` reduces each side to its principal subspace first, as in :func:`svcca` (1.0 = plain
    PWCCA); needed whenever the features outnumber the stimuli.

    ``a_i ∝ sum_j |<h_i, x_j>|``, with ``h_i`` the unit canonical variates and ``x_j`` the centred
    features of the side with fewer features (X on ties), as in Morcos et al.'s definition.
    google/svcca's ``compute_pwcca`` differs in two ways, so its values differ by up to a few
    hundredths: its "variates" skip the whitening (the rotated, centred activations plus the
    neuron means, orthonormalised by QR in order of decreasing correlation) and its weights use
    the uncentred activations. Its result then depends on the sign LAPACK gives each singular
    vector (a sign flip changes the QR), so it is not a function of the data alone and is not
    offered here; ``keep < 1`` (a principal-subspace reduction first) has no counterpart there.
    Invariant to isotropic scaling, translation and feature permutation; the correlations are
    invariant to invertible linear maps but the weights are not (so neither is PWCCA, nor to
    rotations). Meaningless (raises) when ``rank X + rank Y >= n``.
    """
    X, Y = _validated_pair(X, Y)
    return _pair_pwcca(_subspace(X, "X", keep), _subspace(Y, "Y", keep))


# --------------------------------------------------------------------------------------------
# Procrustes, RSA, linear predictivity
# --------------------------------------------------------------------------------------------

PROCRUSTES_FORMS = ("angular", "euclidean", "euclidean_unscaled")


@dataclass(frozen=True)
class _Shape:
    matrix: np.ndarray  # centred, unit Frobenius norm
    form: str
    norm: float = 1.0   # Frobenius norm of the centred input (used by "euclidean_unscaled")


def _shape(X: np.ndarray, name: str = "X", form: str = "angular") -> _Shape:
    _require_choice(form, PROCRUSTES_FORMS, "Procrustes form")
    features = _centred(X)
    exponent = scale_exponent(features)  # the norm of ~1e154 entries would overflow
    scaled = np.ldexp(features, -exponent) if exponent else features
    norm = float(np.linalg.norm(scaled))
    true_norm = float(np.ldexp(norm, exponent))
    return _Shape(scaled / norm, form, true_norm)


def _pair_shapes(a: _Shape, b: _Shape) -> float:
    nuclear = min(float(linalg.svdvals(a.matrix.T @ b.matrix).sum()), 1.0)
    if a.form == "angular":
        return float(np.arccos(nuclear))
    if a.form == "euclidean":
        return float(np.sqrt(2.0 - 2.0 * nuclear))
    # |X|² + |Y|² - 2|X||Y|ν written so that nothing overflows: (|X|-|Y|)² + 2|X||Y|(1-ν)
    return float(np.hypot(a.norm - b.norm,
                          np.sqrt(2.0 * a.norm) * np.sqrt(b.norm) * np.sqrt(1.0 - nuclear)))


def procrustes_distance(X: Any, Y: Any, form: str = "angular") -> float:
    """Orthogonal Procrustes shape distance (Williams et al. 2021) -- a distance, 0 = same shape.

    Both matrices are centred and scaled to unit Frobenius norm; the smaller is implicitly
    zero-padded (padding leaves ``|XᵀY|_*`` unchanged). ``form="angular"`` (default):
    ``arccos |XᵀY|_*`` in ``[0, pi/2]``, a metric on shapes; ``"euclidean"``:
    ``min_Q |X - YQ|_F = sqrt(2 - 2 |XᵀY|_*)`` in ``[0, sqrt 2]`` of the unit-norm matrices.
    ``"euclidean_unscaled"``: ``min_Q |Xc - Yc Q|_F`` of the centred matrices *without* the
    unit-norm scaling, in the units of the activations -- what netrep's
    ``LinearMetric(alpha=1, score_method="euclidean")`` reports; it is not scale-invariant, so
    it depends on the size of the activations as much as on their shape. Invariant (all forms) to
    orthogonal transforms, translation and feature permutation; angular and euclidean also to
    isotropic scaling; none to invertible linear maps.
    """
    X, Y = _validated_pair(X, Y)
    return _pair_shapes(_shape(X, "X", form), _shape(Y, "Y", form))


def _rdm(X: np.ndarray, name: str = "X", metric: str = "correlation",
         method: str = "spearman") -> np.ndarray:
    """Upper triangle of the RDM, as ranks for Spearman (Spearman = Pearson of ranks)."""
    _require_choice(method, ("spearman", "pearson"), "RSA method")
    _require_rows(X, 3, "RSA", name)
    with np.errstate(invalid="ignore", divide="ignore"):
        rdm = pdist(unit_scaled(X), metric)
    if not np.isfinite(rdm).all():
        raise ValueError(f"{name}: metric {metric!r} is undefined for some stimulus pairs (e.g. "
                         "'correlation' on a row whose features are all equal)")
    if np.ptp(rdm) == 0:
        raise ValueError(f"{name}: all pairwise dissimilarities are equal, so the RDM has no "
                         "variance to correlate")
    return stats.rankdata(rdm) if method == "spearman" else rdm


def _pair_rdms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def rsa(X: Any, Y: Any, metric: str = "correlation", method: str = "spearman") -> float:
    """Representational similarity analysis: rank (or Pearson) correlation of the two RDMs.

    RDM = ``scipy.spatial.distance.pdist(X, metric)`` (upper triangle, ``n(n-1)/2`` entries).
    With ``metric="correlation"``: invariant to isotropic scaling and feature permutation, not to
    rotations or translation (each stimulus is centred over its features); with
    ``"euclidean"``/``"cosine"``, see the module table. Needs ``n >= 3``.
    """
    X, Y = _validated_pair(X, Y)
    return _pair_rdms(_rdm(X, "X", metric, method), _rdm(Y, "Y", metric, method))


def linear_predictivity(X: Any, Y: Any, alpha: float = 1.0, folds: int = 5, seed: int = 0) -> float:
    """Held-out R² of ridge regression from ``X: (n, d1)`` to ``Y: (n, d2)``. Asymmetric.

    Out-of-fold predictions from ``folds``-fold shuffled CV (``seed``), scored with
    ``r2_score(multioutput="variance_weighted")`` = ``1 - |Y - Ŷ|² / |Y - Ȳ|²``; can be < 0.
    Invariant to orthogonal transforms of X or Y, translation, feature permutation and isotropic
    scaling of Y; not to scaling X (the penalty ``alpha`` is absolute) nor invertible linear maps.
    """
    X, Y = _validated_pair(X, Y)
    if not (isinstance(folds, (int, np.integer)) and folds >= 2):
        raise ValueError(f"folds must be an integer >= 2, got {folds!r}")
    _require_rows(X, 2 * folds, f"{folds}-fold linear predictivity", "X")
    cv = KFold(n_splits=folds, shuffle=True, random_state=seed)
    predicted = cross_val_predict(Ridge(alpha=alpha), X, Y, cv=cv)
    return float(r2_score(Y, predicted, multioutput="variance_weighted"))


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

DIRECTIONS = ("similarity", "distance")
NULL_KINDS = ("shuffle", "gaussian")
Range = tuple[float, float]


@dataclass(frozen=True)
class Measure:
    """What a measure is: the one record every consumer reads (:mod:`resonance.measures` holds
    them all, this module's and the topological ones).

    ``compute(X, Y, **kw)`` gives one value. When ``prepare`` (``(X, name, **kw) -> state``) is
    set the measure factorises per layer and ``similarity_matrix`` prepares each layer once,
    then pairs states with ``pair_block`` (``(states_a, states_b) -> (len a, len b)`` values,
    all pairs at once) when set, else with ``pair`` (``(state_a, state_b) -> value``).
    ``symmetric``: ``m(X, Y) == m(Y, X)``. ``direction``: ``"similarity"`` (higher = more alike)
    or ``"distance"`` (lower = more alike; p-values count the lower tail, the best layer pair is
    the smallest). ``null``: the reference distribution that fits it -- ``"shuffle"`` (permute
    the rows of Y: the measure reads the pairing of stimuli) or ``"gaussian"`` (an isotropic
    Gaussian cloud of Y's shape: a pairing-free measure ignores a shuffle). ``value_range``:
    ``(low, high)`` the values can take (intervals are clipped to it), or a function of the
    keyword options returning it.
    """

    compute: Callable[..., float]
    prepare: Callable[..., Any] | None = None
    pair: Callable[[Any, Any], float] | None = None
    symmetric: bool = True
    direction: str = "similarity"
    pair_block: Callable[[list[Any], list[Any]], np.ndarray] | None = None
    null: str = "shuffle"
    value_range: Range | Callable[[Mapping[str, Any]], Range] = (-np.inf, np.inf)

    def __post_init__(self) -> None:
        _require_choice(self.direction, DIRECTIONS, "direction")
        _require_choice(self.null, NULL_KINDS, "null kind")

    @property
    def higher_is_similar(self) -> bool:
        return self.direction == "similarity"

    def bounds(self, kw: Mapping[str, Any] | None = None) -> Range:
        """``(low, high)`` of the values with options ``kw``."""
        return self.value_range(kw or {}) if callable(self.value_range) else self.value_range

    def options(self) -> tuple[str, ...]:
        """The keyword options ``compute`` accepts (those a registry entry fixes excluded)."""
        fixed = getattr(self.compute, "keywords", {}) or {}
        params = inspect.signature(self.compute).parameters
        return tuple(name for name in list(params)[2:] if name not in fixed
                     and params[name].kind not in (params[name].VAR_POSITIONAL,
                                                   params[name].VAR_KEYWORD))


def _cka_range(kw: Mapping[str, Any]) -> Range:
    return (-1.0, 1.0) if kw.get("debiased", False) else (0.0, 1.0)


def _procrustes_range(kw: Mapping[str, Any]) -> Range:
    return {"angular": (0.0, np.pi / 2), "euclidean": (0.0, np.sqrt(2.0))}.get(
        kw.get("form", "angular"), (0.0, np.inf))


MEASURES: dict[str, Measure] = {
    "cka_linear": Measure(partial(cka, kernel="linear", debiased=False),
                          partial(_linear_layer, debiased=False), pair_block=_linear_cka_block,
                          value_range=(0.0, 1.0)),
    "cka_linear_debiased": Measure(partial(cka, kernel="linear", debiased=True),
                                   partial(_linear_layer, debiased=True),
                                   pair_block=_linear_cka_block, value_range=(-1.0, 1.0)),
    "cka_rbf": Measure(partial(cka, kernel="rbf"), partial(_gram_layer, kernel="rbf"),
                       _pair_gram_layers, pair_block=_pair_gram_blocks, value_range=_cka_range),
    "mutual_knn": Measure(mutual_knn, _knn_layer, _pair_knn_layers, value_range=(0.0, 1.0)),
    "cknna": Measure(cknna, _cknna_layer, _pair_cknna_layers, symmetric=False,
                     value_range=(-1.0, 1.0)),
    "svcca": Measure(svcca, _subspace, _pair_svcca, value_range=(0.0, 1.0)),
    "pwcca": Measure(pwcca, _subspace, _pair_pwcca, symmetric=False, value_range=(0.0, 1.0)),
    "procrustes": Measure(procrustes_distance, _shape, _pair_shapes, direction="distance",
                          value_range=_procrustes_range),
    "rsa": Measure(rsa, _rdm, _pair_rdms, value_range=(-1.0, 1.0)),
    "linear_predictivity": Measure(linear_predictivity, symmetric=False,
                                   value_range=(-np.inf, 1.0)),
}


def _measure(name: str) -> Measure:
    from .measures import get  # the full registry (this module's measures and topology's)
    return get(name)


def similarity(X: Any, Y: Any, measure: str, **kw: Any) -> float:
    """``measure`` (any name in :data:`resonance.measures.MEASURES`) applied to ``X: (n, d1)``,
    ``Y: (n, d2)`` with keyword options (a misspelt option raises, naming the valid ones)."""
    from .measures import check_options
    spec = _measure(measure)
    check_options(measure, kw)
    return spec.compute(X, Y, **kw)


Layers = Sequence[Any] | Mapping[Any, Any]


def _layer_names(layers: Layers, label: str) -> tuple[list[Any], list[Any]]:
    """Names and the layers as given (lists: indices; dicts and ``Activations``: their keys)."""
    if hasattr(layers, "layer_ids") and hasattr(layers, "layers"):  # Activations: real layer ids
        layers = dict(zip(layers.layer_ids, layers.layers))
    names = list(layers.keys()) if isinstance(layers, Mapping) else list(range(len(layers)))
    arrays = list(layers.values()) if isinstance(layers, Mapping) else list(layers)
    if not arrays:
        raise ValueError(f"{label} holds no layers")
    return names, arrays


def _named_layers(layers: Layers, label: str,
                  floats: bool = False) -> tuple[list[Any], list[np.ndarray]]:
    """Names and validated arrays; ``floats`` keeps float32 layers float32 (no copy)."""
    names, arrays = _layer_names(layers, label)
    check = _validated_floats if floats else _validated
    return names, [check(X, f"{label}[{name!r}]") for name, X in zip(names, arrays)]


def _keeps_float32(spec: Measure) -> bool:
    """Whether the measure's per-layer preparation works on float32 layers as they are."""
    return getattr(spec.prepare, "func", spec.prepare) in (_linear_layer, _knn_layer, _cknna_layer)


def _depth(index: int, count: int) -> float:
    return index / (count - 1) if count > 1 else 0.0


def _pair_values(spec: Measure, arrays_a: list[np.ndarray], arrays_b: list[np.ndarray],
                 same: bool, kw: dict[str, Any]) -> np.ndarray:
    """Values ``(len a, len b)``; each layer prepared once. With ``pair_block`` all prepared
    layers of both sides are held at once; otherwise B's layers are prepared one at a time."""
    if spec.prepare is None:
        prepare, pair = (lambda X, name: X), partial(spec.compute, **kw)
    else:
        prepare, pair = partial(spec.prepare, **kw), spec.pair
    upper_only = same and spec.symmetric
    states_a = [prepare(X, name=f"layers_a[{i}]") for i, X in enumerate(arrays_a)]
    if spec.pair_block is not None:
        states_b = states_a if same else [prepare(Y, name=f"layers_b[{j}]")
                                          for j, Y in enumerate(arrays_b)]
        return spec.pair_block(states_a, states_b)
    values = np.empty((len(arrays_a), len(arrays_b)))
    for j, Y in enumerate(arrays_b):
        state_b = states_a[j] if same else prepare(Y, name=f"layers_b[{j}]")
        for i in range(j + 1 if upper_only else len(arrays_a)):
            values[i, j] = pair(states_a[i], state_b)
    if upper_only:
        lower = np.tril_indices_from(values, -1)
        values[lower] = values.T[lower]
    return values


def similarity_matrix(layers_a: Layers, layers_b: Layers, measure: str = "cka_linear_debiased",
                      *, backend: str = "numpy", device: Any = None, **kw: Any) -> pd.DataFrame:
    """``measure`` between every layer of ``layers_a`` and every layer of ``layers_b``.

    Layers are lists (names = indices) or dicts ``name -> (n, d_l)`` arrays, all over the same
    ``n`` stimuli. Returns one row per pair with columns ``layer_a, layer_b, depth_a, depth_b,
    measure, value``; depth = layer index / (layer count - 1), 0 for a single layer. Factorised
    measures compute each layer's Gram / neighbour sets / subspace once; pass the same object
    twice (``layers_b is layers_a``) to reuse it and, for symmetric measures, halve the pairs.

    Linear CKA (biased and debiased) picks the cheaper form from ``n``, the widths and the layer
    counts (:func:`_linear_form`): the feature form, ``n Σ_ij d_i d_j`` multiply-adds in dense
    GEMMs over row blocks (chosen whenever the layers are narrow next to ``n``, e.g. 12 + 12
    layers of width ``d`` for ``n >~ 10 d``), or banded Grams, ``n² Σ_l d_l / 2`` plus the band
    pairings (wide layers, small ``n``). Neither holds an ``(n, n)`` matrix or a float64 copy of a
    float32 layer. Peak memory beyond the inputs: feature form ``<= ~200 MiB`` (a 64 MiB buffer of
    centred row blocks and ``<= 128 MiB`` of float64 ``d_i x Σ d_j`` accumulators, more only when
    one A layer alone needs more) plus ``8 n`` bytes per layer; Gram form a centred copy of every
    layer (its dtype) plus 4 MiB of float32 band buffer per layer (8 MiB float64). ``mutual_knn`` and ``cknna`` search
    each layer's neighbours by row blocks (one layer's float32 unit rows, ``4 n d`` bytes, and a
    32 MiB score block at a time) and keep ``O(n k)`` per layer. RBF CKA holds every layer's
    ``(n, n)`` float64 Gram at once (``8 n² (La + Lb)`` bytes); for very large n use
    ``MinibatchCKA``. Minibatch CKA is never picked automatically: it estimates a different
    quantity (a mean over batches), and the full-``n`` feature form costs about as much.

    ``device="cuda" | "cpu" | "auto"`` (or ``backend="torch"``, device ``"auto"``) computes the
    linear and RBF CKA family, ``mutual_knn`` and ``cknna`` with torch on that device
    (:mod:`resonance.backend`: same values to ~1e-9, same memory bounds; torch tensors already on
    the device are not copied); the default ``backend="numpy"`` is the path described above.
    """
    from .measures import check_options
    spec = _measure(measure)
    check_options(measure, kw)
    if backend not in ("numpy", "torch"):
        raise ValueError(f"unknown backend {backend!r}; choose 'numpy' or 'torch'")
    same, floats = layers_b is layers_a, _keeps_float32(spec)
    if backend == "torch" or device is not None:
        from . import backend as torch_backend
        names_a, raw_a = _layer_names(layers_a, "layers_a")
        names_b, raw_b = (names_a, None) if same else _layer_names(layers_b, "layers_b")
        values = torch_backend.pair_values(measure, raw_a, raw_b,
                                           "auto" if device is None else device, **kw)
        return _table(names_a, names_b, measure, values)
    names_a, arrays_a = _named_layers(layers_a, "layers_a", floats)
    names_b, arrays_b = (names_a, arrays_a) if same else _named_layers(layers_b, "layers_b", floats)
    counts = {X.shape[0] for X in arrays_a + arrays_b}
    if len(counts) > 1:
        raise ValueError(f"all layers must hold the same stimuli, got row counts {sorted(counts)}")
    return _table(names_a, names_b, measure, _pair_values(spec, arrays_a, arrays_b, same, kw))


def _table(names_a: list[Any], names_b: list[Any], measure: str,
           values: np.ndarray) -> pd.DataFrame:
    rows = [(name_a, name_b, _depth(i, len(names_a)), _depth(j, len(names_b)), measure,
             float(values[i, j]))
            for i, name_a in enumerate(names_a) for j, name_b in enumerate(names_b)]
    return pd.DataFrame(rows, columns=["layer_a", "layer_b", "depth_a", "depth_b", "measure",
                                       "value"])
