"""The torch backend of the measures: the same values as :mod:`resonance.similarity`, on a device.

``similarity_matrix(..., device="cuda" | "cpu" | "auto")`` (or ``backend="torch"``), ``cka``,
``mutual_knn``, ``cknna`` and ``rbf_gram`` with ``device=...``, and :func:`shuffle_null` come here.
The measures it serves (:data:`SERVED`) are named as in the registry
(:data:`resonance.measures.MEASURES`), which still says what each one is (direction, null,
symmetry, options); this module only says how to compute it with torch.

Tensors stay on the device: a torch tensor already there (e.g. activations extracted on a GPU) is
used as it is, never copied through NumPy; NumPy input is moved once. Only the ``(La, Lb)`` table
of values (and, for debiased CKA, ``n`` float64 row norms per layer) comes back to the host.

Precision mirrors the NumPy path, so values agree with it to ~1e-9 (tested to <= 1e-6 on CPU
torch): float32 layers are centred in float64, stored in float32 and multiplied in float32 with
sums over at most 2,048 rows before a float64 add; float64 layers are multiplied in float64; RBF
Grams, HSIC pairings, neighbour re-ranking and the masked CKNNA Grams are float64. Neighbour sets
are the float64 ranking with ties to the lower index, as in NumPy (float32 screening, float64
re-scoring of near-ties).

Memory is bounded by chunking (peak beyond the inputs, on the device):

- linear CKA, feature form: a block of centred rows of all layers (<= 64 MiB) plus float64
  accumulators ``X_iᵀ [Y_1 .. Y_L]`` of a group of A's layers (<= 128 MiB, more only when one A
  layer alone needs more); Gram form: a centred copy of every layer plus one band of every
  layer's Gram (``_BAND_ELEMENTS`` float64 entries, 8 MiB, per layer);
- mutual k-NN / CKNNA: one layer's float32 unit rows (``4 n d`` bytes) plus a 32 MiB score block;
  ``O(n k)`` per layer kept;
- RBF CKA: every layer's ``(n, n)`` float64 Gram (``8 n² (La + Lb)`` bytes), as in NumPy;
- :func:`shuffle_null`: the prepared layers plus one permuted copy of Y (linear CKA) or of its
  Gram (RBF), or ``O(n k)`` (k-NN measures: a shuffle only relabels Y's neighbour sets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from . import similarity as S

__all__ = ["DEVICES", "SERVED", "resolve_device", "as_tensor", "pair_values", "rbf_gram",
           "shuffle_null", "values_on_device"]

DEVICES = ("cpu", "cuda", "auto")


def _torch():
    import torch
    return torch


# --------------------------------------------------------------------------------------------
# Devices and input
# --------------------------------------------------------------------------------------------

def resolve_device(device: Any) -> Any:
    """``"cpu"``, ``"cuda"`` (or ``"cuda:N"``, a ``torch.device``) or ``"auto"`` (CUDA when
    torch sees a GPU, else CPU) as a ``torch.device``; ``"cuda"`` without CUDA raises, saying
    what to do."""
    torch = _torch()
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str) or device.split(":")[0] not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {list(DEVICES)} "
                         "(or 'cuda:N')")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was asked for, but this torch ({torch.__version__}) sees no CUDA "
            "device (a CPU-only build, no GPU, or CUDA_VISIBLE_DEVICES hides it): install a CUDA "
            "build of torch on a GPU machine, or pass device='auto' (GPU when there is one) or "
            "device='cpu'")
    return torch.device(device)


def as_tensor(X: Any, name: str, device: Any, keep_float32: bool = True) -> Any:
    """``X: (n, d)`` as a finite, non-constant tensor on ``device``: float32 (float16, bfloat16
    and float32 input, when ``keep_float32``) or float64. A tensor already on ``device`` in that
    dtype is used as it is (no copy); NumPy input is moved once."""
    torch = _torch()
    if not isinstance(X, torch.Tensor):
        X = S._float32_kept(X)
        X = torch.from_numpy(S.as_matrix(X, name, dtype=np.float32 if S._is_float32(X)
                                         else np.float64))
    X = X.detach()
    if X.is_complex():
        raise ValueError(f"{name} is a complex tensor ({X.dtype}); the measures compare real "
                         "representations: pass X.real or X.abs(), whichever you mean")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n stimuli, d features), got shape "
                         f"{tuple(X.shape)}; pool token-level activations first")
    if X.shape[0] < 2 or X.shape[1] == 0:
        raise ValueError(f"{name} has shape {tuple(X.shape)}: at least 2 rows and 1 feature "
                         "are needed")
    low = X.dtype in (torch.float16, torch.bfloat16, torch.float32)
    dtype = torch.float32 if keep_float32 and low else torch.float64
    X = X.to(device=device, dtype=dtype)
    if not bool(torch.isfinite(X).all()):
        bad = int((~torch.isfinite(X)).any(dim=1).sum())
        raise ValueError(f"{name} has NaN or inf in {bad} of {X.shape[0]} rows; drop or repair "
                         "those stimuli before comparing")
    if bool((X.amax(0) == X.amin(0)).all()):
        raise ValueError(f"{name} is constant across stimuli: every row is the same point, so "
                         "no similarity is defined (is the layer dead or the input identical?)")
    return X


def _scaled(X: Any) -> Any:
    """NumPy's magnitude rule (``_safely_scaled`` / ``unit_scaled``): rescale by a power of two
    when the largest entry lies outside ``[2^-20, 2^20]`` (float32) or ``[2^-64, 2^64]``."""
    torch = _torch()
    top = float(X.abs().max())
    limit = 20 if X.dtype == torch.float32 else 64
    if top == 0.0 or 2.0 ** -limit <= top <= 2.0 ** limit:
        return X
    return torch.ldexp(X, torch.tensor(-math.frexp(top)[1], device=X.device)).to(X.dtype)


def _check_rows(X: Any, needed: int, why: str, name: str) -> None:
    if X.shape[0] < needed:
        raise ValueError(f"{name} has {X.shape[0]} stimuli but {why} needs at least {needed}")


# --------------------------------------------------------------------------------------------
# Linear CKA
# --------------------------------------------------------------------------------------------

@dataclass
class _Linear:
    values: Any            # (n, d) tensor, float32 or float64, on the device
    mean: Any              # (d,) float64
    sq_norms: np.ndarray   # (n,) float64 diagonal of the centred Gram, on the host
    debiased: bool
    name: str

    @property
    def width(self) -> int:
        return self.values.shape[1]

    def centred(self, start: int, stop: int) -> Any:
        return (self.values[start:stop].double() - self.mean).to(self.values.dtype)


def _linear_layer(X: Any, name: str, debiased: bool = False) -> _Linear:
    _check_rows(X, 4 if debiased else 3, "debiased CKA" if debiased else "CKA", name)
    X = _scaled(X)
    torch = _torch()
    n = X.shape[0]
    mean = torch.zeros(X.shape[1], dtype=torch.float64, device=X.device)
    rows = S._rows_per_block(X.shape[1], 8, S._FEATURE_BLOCK_BYTES)
    for start in range(0, n, rows):
        mean += X[start:start + rows].double().sum(0)
    layer = _Linear(X, mean / n, np.empty(n), debiased, name)
    norms = [(layer.centred(start, start + rows).double() ** 2).sum(1)
             for start in range(0, n, rows)]
    layer.sq_norms = torch.cat(norms).cpu().numpy()
    return layer


def _feature_products(layers_a: list[_Linear], layers_b: list[_Linear], same: bool) -> Any:
    """``|X_iᵀ Y_j|_F²`` for all pairs (``j >= i`` only when ``same``), ``(La, Lb)`` float64:
    row blocks of ``<= 2,048`` rows of all B layers centred into one buffer, multiplied with each
    A layer in one product, summed over blocks in float64 (A's layers grouped so that their
    accumulators fit in ``_FEATURE_ACCUMULATOR_BYTES``)."""
    torch = _torch()
    device, n = layers_a[0].values.device, layers_a[0].values.shape[0]
    itemsize = max(layer.values.element_size() for layer in layers_a + layers_b)
    offsets = np.concatenate([[0], np.cumsum([b.width for b in layers_b])]).astype(int)
    first = [int(offsets[i]) if same else 0 for i in range(len(layers_a))]
    groups: list[list[int]] = [[]]
    held = 0
    for i, layer in enumerate(layers_a):
        need = layer.width * (offsets[-1] - first[i]) * 8
        if groups[-1] and held + need > S._FEATURE_ACCUMULATOR_BYTES:
            groups.append([])
            held = 0
        groups[-1].append(i)
        held += need
    cross = torch.zeros((len(layers_a), len(layers_b)), dtype=torch.float64, device=device)
    for group in groups:
        start_b = first[group[0]]
        first_b = int(np.searchsorted(offsets, start_b))
        width_a = 0 if same else sum(layers_a[i].width for i in group)
        rows = S._rows_per_block(offsets[-1] - start_b + width_a, itemsize,
                                 S._FEATURE_BLOCK_BYTES, S._SUMMED_ROWS)
        sums = {i: torch.zeros((layers_a[i].width, offsets[-1] - first[i]), dtype=torch.float64,
                               device=device) for i in group}
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            block_b = torch.cat([layers_b[j].centred(start, stop)
                                 for j in range(first_b, len(layers_b))], dim=1)
            for i in group:
                x = (block_b[:, first[i] - start_b:first[i] - start_b + layers_a[i].width]
                     if same else layers_a[i].centred(start, stop))
                sums[i] += (x.T @ block_b[:, first[i] - start_b:]).double()
        for i in group:
            for j in range(len(layers_b)):
                if offsets[j] >= first[i]:
                    part = sums[i][:, offsets[j] - first[i]:offsets[j + 1] - first[i]]
                    cross[i, j] = (part * part).sum()
        del sums
    if same:
        cross = torch.triu(cross) + torch.triu(cross, 1).T
    return cross


def _self_product(layer: _Linear) -> Any:
    """``|XᵀX|_F²`` of the centred rows (float64 sums of float32 block products)."""
    torch = _torch()
    rows = S._rows_per_block(layer.width, 8, S._FEATURE_BLOCK_BYTES, S._SUMMED_ROWS)
    total = torch.zeros((layer.width, layer.width), dtype=torch.float64,
                        device=layer.values.device)
    for start in range(0, layer.values.shape[0], rows):
        block = layer.centred(start, start + rows)
        total += (block.T @ block).double()
    return (total * total).sum()


def _banded_gram_products(layers_a: list[_Linear], layers_b: list[_Linear],
                          same: bool) -> tuple[Any, Any, Any]:
    """``<K_i, L_j>_F`` and the self products from bands of the upper triangles of the Grams
    (the part right of the diagonal block scaled by √2), each band of every layer paired with
    all others in one float64 product. Never an ``(n, n)`` matrix."""
    torch = _torch()
    layers = layers_a if same else layers_a + layers_b
    n, device = layers[0].values.shape[0], layers[0].values.device
    centred = [layer.centred(0, n) for layer in layers]
    rows = min(max(1, S._BAND_ELEMENTS // n), n)
    root2 = math.sqrt(2.0)
    cross = torch.zeros((len(layers_a), len(layers_b)), dtype=torch.float64, device=device)
    selfs = torch.zeros(len(layers), dtype=torch.float64, device=device)
    buffer = torch.empty((len(layers), rows * n), dtype=torch.float64, device=device)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        bands = buffer[:, :(stop - start) * (n - start)]
        for features, band in zip(centred, bands):
            gram = band.view(stop - start, n - start)
            gram.copy_(features[start:stop] @ features[start:].T)
            gram[:, stop - start:] *= root2
        selfs += (bands * bands).sum(1)
        cross += bands[:len(layers_a)] @ bands[len(layers) - len(layers_b):].T
    return cross, selfs[:len(layers_a)], selfs[len(layers) - len(layers_b):]


def _linear_block(layers_a: list[_Linear], layers_b: list[_Linear], same: bool) -> np.ndarray:
    n = layers_a[0].values.shape[0]
    form = S._linear_form(n, [a.width for a in layers_a], [b.width for b in layers_b], same)
    if form == "gram":
        cross, selfs_a, selfs_b = _banded_gram_products(layers_a, layers_b, same)
    else:
        cross = _feature_products(layers_a, layers_b, same)
        if same:
            selfs_a = selfs_b = cross.diagonal()
        else:
            selfs_a = _torch().stack([_self_product(a) for a in layers_a])
            selfs_b = _torch().stack([_self_product(b) for b in layers_b])
    cross, selfs_a, selfs_b = (t.cpu().numpy() for t in (cross, selfs_a, selfs_b))
    return _linear_cka_values(cross, selfs_a, selfs_b, layers_a, layers_b)


def _linear_cka_values(cross: np.ndarray, selfs_a: np.ndarray, selfs_b: np.ndarray,
                       layers_a: Sequence[Any], layers_b: Sequence[Any]) -> np.ndarray:
    """CKA from the Frobenius products, by the NumPy path's own HSIC arithmetic."""
    self_a = [S._linear_self_hsic(float(p), a) for p, a in zip(selfs_a, layers_a)]
    self_b = [S._linear_self_hsic(float(p), b) for p, b in zip(selfs_b, layers_b)]
    return np.array([[S._cka_ratio(S._linear_hsic(float(cross[i, j]), a, b), self_a[i],
                                   self_b[j])
                      for j, b in enumerate(layers_b)] for i, a in enumerate(layers_a)])


# --------------------------------------------------------------------------------------------
# RBF Grams and RBF CKA
# --------------------------------------------------------------------------------------------

def _median(values: Any) -> float:
    """NumPy's median (the mean of the two middle values for an even count) of a flat tensor."""
    count = values.numel()
    low = values.kthvalue((count + 1) // 2).values
    high = values.kthvalue(count // 2 + 1).values
    return float((low.double() + high.double()) / 2)


def rbf_gram(X: Any, threshold: float = 1.0, median_over: str = "matrix",
             device: Any = "auto") -> Any:
    """:func:`resonance.similarity.rbf_gram` on ``device``: the ``(n, n)`` float64 tensor (same
    bandwidth rule, same errors). Memory: the Gram and one ``(n, n)`` float64 work matrix."""
    torch = _torch()
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    S._require_choice(median_over, S.RBF_MEDIANS, "median_over")
    if not isinstance(X, torch.Tensor) or X.dtype != torch.float64:
        X = as_tensor(X, "X", resolve_device(device), keep_float32=False)
    sq_norms = (X * X).sum(1)
    rows = S._GRAM_BAND_ROWS
    sq_dist = torch.empty((X.shape[0], X.shape[0]), dtype=torch.float64, device=X.device)
    for start in range(0, X.shape[0], rows):
        sq_dist[start:start + rows] = X[start:start + rows] @ X.T
    sq_dist.mul_(-2.0).add_(sq_norms[:, None]).add_(sq_norms[None, :]).clamp_(min=0.0)
    sq_dist.fill_diagonal_(0.0)
    if median_over == "matrix":
        sq_sigma = threshold ** 2 * _median(sq_dist.reshape(-1))
    else:
        upper = torch.triu_indices(X.shape[0], X.shape[0], 1, device=X.device)
        sq_sigma = (threshold * _median(sq_dist[upper[0], upper[1]].sqrt())) ** 2
    if sq_sigma == 0.0:
        raise ValueError("median pairwise distance is 0 (over half the stimulus pairs coincide), "
                         "so the RBF bandwidth is undefined; deduplicate the stimuli")
    K = sq_dist.div_(-2.0 * sq_sigma).exp_()
    n = K.shape[0]
    off_diagonal = (float((K * K).sum()) - n) / n
    if off_diagonal < S._RBF_MIN_OFF_DIAGONAL:
        raise ValueError(
            f"the RBF kernel is numerically the identity (threshold={threshold:g}: off-diagonal "
            f"squared mass {off_diagonal:.2g} per row): raise the threshold (Kornblith et al. use "
            "0.2-1.0 of the median distance)")
    return K


@dataclass
class _Gram:
    matrix: Any      # centred Gram (biased) or Gram with zeroed diagonal (debiased), float64
    row_sums: Any
    total: float
    debiased: bool
    self_hsic: float


def _hsic(a: _Gram, b: _Gram, trace: float) -> float:
    n = a.matrix.shape[0]
    if not a.debiased:
        return trace / (n - 1) ** 2
    return (trace + a.total * b.total / ((n - 1) * (n - 2))
            - 2.0 * float(a.row_sums @ b.row_sums) / (n - 2)) / (n * (n - 3))


def _gram_terms(K: Any, debiased: bool) -> tuple[Any, Any, float]:
    if debiased:
        K.fill_diagonal_(0.0)
    else:
        K = K - K.mean(0, keepdim=True) - K.mean(1, keepdim=True) + K.mean()
    sums = K.sum(1)
    return K, sums, float(sums.sum())


def _rbf_layer(X: Any, name: str, threshold: float = 1.0, debiased: bool = False,
               median_over: str = "matrix") -> _Gram:
    _check_rows(X, 4 if debiased else 3, "debiased CKA" if debiased else "CKA", name)
    X = _scaled(X.double())
    X = X - X.mean(0)
    matrix, sums, total = _gram_terms(rbf_gram(X, threshold, median_over), debiased)
    n, trace = X.shape[0], float((matrix * matrix).sum())
    scale = trace / (n * (n - 3) if debiased else (n - 1) ** 2)
    layer = _Gram(matrix, sums, total, debiased, 0.0)
    layer.self_hsic = S._checked_self_hsic(_hsic(layer, layer, trace), scale, name)
    return layer


def _rbf_block(layers_a: list[_Gram], layers_b: list[_Gram], same: bool) -> np.ndarray:
    torch = _torch()
    n = layers_a[0].matrix.shape[0]
    rows = max(1, S._BAND_ELEMENTS // n)
    traces = torch.zeros((len(layers_a), len(layers_b)), dtype=torch.float64,
                         device=layers_a[0].matrix.device)
    for start in range(0, n, rows):
        band_a = torch.stack([g.matrix[start:start + rows].reshape(-1) for g in layers_a])
        band_b = band_a if same else torch.stack([g.matrix[start:start + rows].reshape(-1)
                                                  for g in layers_b])
        traces += band_a @ band_b.T
    traces = traces.cpu().numpy()
    return np.array([[S._cka_ratio(_hsic(a, b, float(traces[i, j])), a.self_hsic, b.self_hsic)
                      for j, b in enumerate(layers_b)] for i, a in enumerate(layers_a)])


# --------------------------------------------------------------------------------------------
# Cosine neighbours: mutual k-NN and CKNNA
# --------------------------------------------------------------------------------------------

@dataclass
class _Unit:
    values: Any             # (n, d) layer as given (float32 or float64)
    threshold: float | None
    norms: Any              # (n,) float64 norms of the clamped rows

    def rows(self, index: Any) -> Any:
        rows = self.values[index].double()
        if self.threshold is not None:
            rows = rows.clamp(-self.threshold, self.threshold)
        return rows / self.norms[index][:, None]


def _unit(X: Any, clamp_quantile: float | None, name: str) -> _Unit:
    torch = _torch()
    if clamp_quantile is not None and not 0 < clamp_quantile <= 1:
        raise ValueError(f"clamp_quantile must be in (0, 1], got {clamp_quantile}")
    n, d = X.shape
    rows = S._rows_per_block(d, 8, S._FEATURE_BLOCK_BYTES)
    threshold = None
    if clamp_quantile is not None and clamp_quantile != 1:
        rows_q = min(rows, max(1, 2**24 // d - 1))  # torch.quantile takes < 2^24 elements
        per_row = [torch.quantile(X[s:s + rows_q].abs().double(), clamp_quantile, dim=1)
                   for s in range(0, n, rows_q)]
        threshold = float(torch.cat(per_row).mean())
    unit = _Unit(X, threshold, torch.empty(n, dtype=torch.float64, device=X.device))
    for start in range(0, n, rows):
        block = X[start:start + rows].double()
        if threshold is not None:
            block = block.clamp(-threshold, threshold)
        unit.norms[start:start + rows] = (block * block).sum(1).sqrt()
    if bool((unit.norms == 0).any()):
        raise ValueError(f"{name} has {int((unit.norms == 0).sum())} all-zero rows (after "
                         "clamping): their cosine neighbours are undefined")
    return unit


def _pairs(unit: _Unit, rows: Any, columns: Any) -> Any:
    """Float64 cosines of ``rows[i]`` with each of ``columns[i, :]``, ``(len rows, c)``:
    elementwise products summed per pair, so identical rows give identical scores."""
    torch = _torch()
    d, count = unit.values.shape[1], columns.shape[1]
    step = max(1, S._SCORE_ELEMENTS // (4 * count * d))
    out = torch.empty(columns.shape, dtype=torch.float64, device=columns.device)
    for first in range(0, rows.numel(), step):
        last = min(first + step, rows.numel())
        others = unit.rows(columns[first:last].reshape(-1)).view(last - first, count, d)
        out[first:last] = (unit.rows(rows[first:last])[:, None, :] * others).sum(-1)
    return out


def _ranked(scores: Any, candidates: Any, k: int) -> Any:
    """The ``k`` best ``candidates`` of each row by float64 ``scores``, ties to lower indices."""
    torch = _torch()
    by_index = torch.argsort(candidates, dim=1)
    candidates = torch.gather(candidates, 1, by_index)
    scores = torch.gather(scores, 1, by_index)
    order = torch.argsort(-scores, dim=1, stable=True)[:, :k]
    return torch.gather(candidates, 1, order), torch.gather(scores, 1, order)


def _neighbours(X: Any, k: int, clamp_quantile: float | None, name: str,
                values: bool = True) -> tuple[Any, Any]:
    """Indices ``(n, k)`` of each row's k nearest other rows by cosine (and their float64
    cosines): :func:`resonance.similarity._cosine_neighbours` on the device, the same rule."""
    torch = _torch()
    k = S.positive_int(k, "k")
    n, d = X.shape
    if n <= k:
        raise ValueError(f"k={k} neighbours need n > k stimuli, but {name} has n={n}")
    unit = _unit(_scaled(X) if X.dtype == torch.float64 else X, clamp_quantile, name)
    rows = S._rows_per_block(d, 8, S._FEATURE_BLOCK_BYTES)
    screen = torch.cat([unit.rows(slice(s, s + rows)).float() for s in range(0, n, rows)])
    eps = 2.0 ** -24
    bound = (d + 3) * eps / (1 - (d + 3) * eps)
    candidates = min(n - 1, 2 * k + 8)
    indices = torch.empty((n, k), dtype=torch.int64, device=X.device)
    block = max(1, min(n, S._SCORE_ELEMENTS // n))
    redo = []
    for start in range(0, n, block):
        stop = min(start + block, n)
        similar = screen[start:stop] @ screen.T
        local = torch.arange(stop - start, device=X.device)
        similar[local, local + start] = -math.inf
        screened, proposed = torch.topk(similar, candidates, dim=1, sorted=True)
        indices[start:stop] = proposed[:, :k]
        if candidates == k:
            continue
        unclear = torch.nonzero(screened[:, k - 1] - screened[:, k] <= 2 * bound).ravel()
        if unclear.numel():
            exact = _pairs(unit, start + unclear, proposed[unclear])
            best, best_scores = _ranked(exact, proposed[unclear], k)
            indices[start + unclear] = best
            unsure = best_scores[:, -1] - screened[unclear, -1].double() <= bound
            redo.append(start + unclear[unsure])
    redo = torch.cat(redo) if redo else torch.empty(0, dtype=torch.int64)
    if redo.numel():  # near-ties beyond the candidates: rank the full float64 row
        columns = torch.arange(n, device=X.device)
        for row in redo.tolist():
            scores = _pairs(unit, torch.tensor([row], device=X.device), columns[None, :])
            scores[0, row] = -math.inf
            indices[row] = torch.argsort(-scores[0], stable=True)[:k]
    return indices, (_pairs(unit, torch.arange(n, device=X.device), indices) if values else None)


def _knn_layer(X: Any, name: str, k: int = 10, clamp_quantile: float | None = None) -> Any:
    """Each row's neighbours, sorted, ``(n, k)``."""
    return _neighbours(X, k, clamp_quantile, name, values=False)[0].sort(dim=1).values


def _shared_counts(a: Any, b: Any) -> Any:
    """``|N_a(i) ∩ N_b(i)|`` per row, by rows in chunks of ``n k²`` booleans at most 2^24."""
    n, k = a.shape
    step = max(1, 2**24 // (k * k))
    return _torch().cat([(a[s:s + step, :, None] == b[s:s + step, None, :]).sum((1, 2))
                         for s in range(0, n, step)])


def _knn_block(layers_a: list[Any], layers_b: list[Any], same: bool) -> np.ndarray:
    torch = _torch()
    values = torch.empty((len(layers_a), len(layers_b)), dtype=torch.float64)
    for i, a in enumerate(layers_a):
        for j, b in enumerate(layers_b):
            if same and j < i:
                values[i, j] = values[j, i]
            else:
                values[i, j] = float(_shared_counts(a, b).sum()) / a.numel()
    return values.numpy()


@dataclass
class _Masked:
    """One layer's masked cosine Gram ``M_X∘K``: ``k`` entries per row, held as codes."""

    codes: Any     # (n k,) sorted codes i * n + j of the neighbour pairs
    scores: Any    # (n k,) float64 cosines at those codes
    n: int
    self_hsic: float


def _masked_hsic(codes: Any, a: Any, b: Any, n: int) -> float:
    """Unbiased HSIC of ``A``, ``B`` with entries ``a``, ``b`` at the sorted ``codes`` (zero
    diagonal): ``tr(AB)`` by looking up each transposed code, totals and ``1ᵀAB1``."""
    torch = _torch()
    rows, cols = codes // n, codes % n
    transposed = cols * n + rows
    where = torch.searchsorted(codes, transposed).clamp(max=codes.numel() - 1)
    found = codes[where] == transposed
    trace = float((a * torch.where(found, b[where], torch.zeros_like(b))).sum())
    col_a = torch.zeros(n, dtype=torch.float64, device=codes.device).index_add_(0, cols, a)
    row_b = torch.zeros(n, dtype=torch.float64, device=codes.device).index_add_(0, rows, b)
    total_a, total_b = float(a.sum()), float(b.sum())
    return (trace + total_a * total_b / ((n - 1) * (n - 2))
            - 2.0 * float(col_a @ row_b) / (n - 2)) / (n * (n - 3))


def _cknna_layer(X: Any, name: str, k: int = 10,
                 clamp_quantile: float | None = None) -> _Masked:
    if isinstance(k, (bool, np.bool_)) or not (isinstance(k, (int, np.integer)) and k >= 2):
        raise ValueError(f"CKNNA needs an integer k >= 2, got {k!r}")
    indices, scores = _neighbours(X, k, clamp_quantile, name)
    n = X.shape[0]
    codes = (_torch().arange(n, device=X.device)[:, None] * n + indices).reshape(-1)
    codes, order = codes.sort()
    scores = scores.reshape(-1)[order]
    scale = float((scores ** 2).sum()) / (n * (n - 3))
    return _Masked(codes, scores, n,
                   S._checked_self_hsic(_masked_hsic(codes, scores, scores, n), scale, name))


def _cknna_pair(a: _Masked, b: _Masked) -> float:
    """HSIC of ``(M_a∘K_a)∘M_b`` and ``(M_b∘K_b)∘M_a``: both live on the shared codes."""
    torch = _torch()
    where = torch.searchsorted(b.codes, a.codes).clamp(max=b.codes.numel() - 1)
    shared = b.codes[where] == a.codes
    codes = a.codes[shared]
    if codes.numel() == 0:
        cross = _masked_hsic(a.codes[:0], a.scores[:0], a.scores[:0], a.n)
    else:
        cross = _masked_hsic(codes, a.scores[shared], b.scores[where[shared]], a.n)
    return S._cka_ratio(cross, a.self_hsic, b.self_hsic)


def _cknna_block(layers_a: list[_Masked], layers_b: list[_Masked], same: bool) -> np.ndarray:
    return np.array([[_cknna_pair(a, b) for b in layers_b] for a in layers_a])


# --------------------------------------------------------------------------------------------
# Dispatch: the registry's names, the torch implementations
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Served:
    prepare: Callable[..., Any]                       # (tensor, name, **options) -> state
    block: Callable[[list, list, bool], np.ndarray]   # (states_a, states_b, same) -> values
    keep_float32: bool = True
    common_dtype: bool = False                        # float64 for all when any is (as NumPy)


def _linear(debiased: bool) -> _Served:
    return _Served(lambda X, name, **kw: _linear_layer(X, name, debiased, **kw), _linear_block,
                   common_dtype=True)


def _rbf_prepare(X: Any, name: str, threshold: float = 1.0, debiased: bool = False,
                 median_over: str = "matrix") -> _Gram:
    return _rbf_layer(X, name, threshold, debiased, median_over)


SERVED: dict[str, _Served] = {
    "cka_linear": _linear(False),
    "cka_linear_debiased": _linear(True),
    "cka_rbf": _Served(_rbf_prepare, _rbf_block, keep_float32=False),
    "mutual_knn": _Served(_knn_layer, _knn_block),
    "cknna": _Served(_cknna_layer, _cknna_block),
}


def _served(measure: str) -> _Served:
    from .measures import get
    get(measure)  # an unknown name raises, listing the registry
    if measure not in SERVED:
        raise ValueError(f"measure {measure!r} has no torch backend; torch serves "
                         f"{', '.join(SERVED)}: use backend='numpy' (no device=) for it")
    return SERVED[measure]


def _rbf_options(measure: str, kw: dict[str, Any]) -> dict[str, Any]:
    """The keyword options a torch ``prepare`` takes (``kernel`` is fixed by the name)."""
    if measure == "cka_rbf":
        kw = {key: value for key, value in kw.items() if key != "kernel"}
    return kw


def tensors(layers: Sequence[Any], label: str, device: Any, keep_float32: bool = True) -> list:
    """Validated tensors on ``device`` for a list of layers, all of the same ``n``."""
    out = [as_tensor(X, f"{label}[{i!r}]", device, keep_float32) for i, X in enumerate(layers)]
    if not out:
        raise ValueError(f"{label} holds no layers")
    return out


def pair_values(measure: str, arrays_a: Sequence[Any], arrays_b: Sequence[Any] | None,
                device: Any = "auto", **kw: Any) -> np.ndarray:
    """Values ``(La, Lb)`` of registered ``measure`` between every layer of ``arrays_a`` and of
    ``arrays_b`` (``None``: A against itself, each pair once), computed on ``device``."""
    from .measures import check_options
    served = _served(measure)
    check_options(measure, kw)
    device = resolve_device(device)
    a = tensors(arrays_a, "layers_a", device, served.keep_float32)
    same = arrays_b is None
    b = a if same else tensors(arrays_b, "layers_b", device, served.keep_float32)
    counts = {X.shape[0] for X in a + b}
    if len(counts) > 1:
        raise ValueError(f"all layers must hold the same stimuli, got row counts {sorted(counts)}")
    if served.common_dtype and any(X.dtype == _torch().float64 for X in a + b):
        a = [X.double() for X in a]
        b = a if same else [Y.double() for Y in b]
    options = _rbf_options(measure, kw)
    if measure == "cka_rbf" and kw.get("kernel", "rbf") != "rbf":
        raise ValueError("cka_rbf fixes kernel='rbf'")
    states_a = [served.prepare(X, f"layers_a[{i}]", **options) for i, X in enumerate(a)]
    states_b = states_a if same else [served.prepare(Y, f"layers_b[{j}]", **options)
                                      for j, Y in enumerate(b)]
    return served.block(states_a, states_b, same)


def values_on_device(measure: str, X: Any, Y: Any, device: Any = "auto", **kw: Any) -> float:
    """One value of ``measure(X, Y)`` on ``device``."""
    return float(pair_values(measure, [X], [Y], device, **kw)[0, 0])


# --------------------------------------------------------------------------------------------
# Shuffle nulls
# --------------------------------------------------------------------------------------------

def _permuted_linear(layer: _Linear, perm: Any) -> _Linear:
    return _Linear(layer.values[perm], layer.mean, layer.sq_norms[perm.cpu().numpy()],
                   layer.debiased, layer.name)


def _permuted_knn(neighbours: Any, perm: Any, inverse: Any) -> Any:
    """Neighbours of ``Y[perm]`` from those of ``Y``: row ``i`` is ``Y[perm[i]]``, whose
    neighbours ``j`` sit at rows ``inverse[j]``. (A shuffle relabels; nothing is searched.)"""
    return inverse[neighbours[perm]].sort(dim=1).values


def _permuted_masked(layer: _Masked, perm: Any, inverse: Any) -> _Masked:
    n = layer.n
    rows, cols = layer.codes // n, layer.codes % n
    codes, order = (inverse[rows] * n + inverse[cols]).sort()
    return _Masked(codes, layer.scores[order], n, layer.self_hsic)


def _permuted_gram(layer: _Gram, perm: Any) -> _Gram:
    return _Gram(layer.matrix[perm][:, perm], layer.row_sums[perm], layer.total, layer.debiased,
                 layer.self_hsic)


def shuffle_null(X: Any, Y: Any, measure: str = "cka_linear_debiased", n_null: int = 99,
                 seed: int | np.random.Generator = 0, device: Any = "auto",
                 **kw: Any) -> np.ndarray:
    """``n_null`` draws of ``measure(X, Y[perm])``, ``perm`` drawn as
    :func:`resonance.metrics.null_sample` draws them (``rng.permutation(n)`` per draw from
    ``np.random.default_rng(seed)``, or from the Generator given), so the draws equal the NumPy
    loop's one by one. Each layer is prepared once: a shuffle only reorders Y's rows, so its self
    term is reused; linear CKA recomputes the cross products (``n d1 d2`` per draw), RBF CKA
    permutes Y's Gram, and the k-NN measures relabel Y's neighbour sets (``O(n k)`` per draw)."""
    from .measures import check_options, get
    served = _served(measure)
    if get(measure).null != "shuffle":
        raise ValueError(f"{measure!r} has a {get(measure).null!r} null, not a shuffle")
    check_options(measure, kw)
    n_null = S.positive_int(n_null, "n_null", minimum=0)
    torch = _torch()
    device = resolve_device(device)
    x = as_tensor(X, "X", device, served.keep_float32)
    y = as_tensor(Y, "Y", device, served.keep_float32)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"X has {x.shape[0]} rows and Y has {y.shape[0]}: both must hold the "
                         "same stimuli in the same order")
    options = _rbf_options(measure, kw)
    if served.common_dtype and _torch().float64 in (x.dtype, y.dtype):
        x, y = x.double(), y.double()
    a, b = served.prepare(x, "X", **options), served.prepare(y, "Y", **options)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    draws = np.empty(n_null)
    for t in range(n_null):
        perm = torch.from_numpy(rng.permutation(x.shape[0])).to(device)
        if measure.startswith("cka_linear"):
            shuffled = _permuted_linear(b, perm)
        elif measure == "cka_rbf":
            shuffled = _permuted_gram(b, perm)
        else:
            inverse = torch.empty_like(perm)
            inverse[perm] = torch.arange(perm.numel(), device=device)
            shuffled = (_permuted_knn(b, perm, inverse) if measure == "mutual_knn"
                        else _permuted_masked(b, perm, inverse))
        draws[t] = served.block([a], [shuffled], False)[0, 0]
    return draws
