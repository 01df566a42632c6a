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
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .similarity import _cosine_neighbours, _validated, cka
from .stats import permutation_p

__all__ = ["CLAMP_QUANTILE", "K", "neighbours", "knn_grid", "grid_alignment", "GridAlignment",
           "shuffles", "within_group_shuffles", "chance", "cka_with_null", "neighbour_sets",
           "alignment_row", "alignment_tables", "size_sweep", "alignment_summary",
           "sweep_summary", "order_summary"]

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


# -- tables of vision (``v``) x text (``t``) model pairs --------------------------------------

def neighbour_sets(feats: Mapping[str, Sequence[np.ndarray]]) -> dict[str, list[np.ndarray]]:
    """Per model, the :func:`neighbours` of each of its layers."""
    return {name: [neighbours(x) for x in layers] for name, layers in feats.items()}


def alignment_row(nbrs_v: Sequence[np.ndarray], nbrs_t: Sequence[np.ndarray],
                  layers_v: Sequence[np.ndarray], layers_t: Sequence[np.ndarray],
                  permutations: Sequence[np.ndarray]) -> dict[str, Any]:
    """One model pair's PRH score as a table row: the grid maximum ``knn`` at 1-based layers
    ``layer_v, layer_t`` (and their relative depths), its null of grid maxima (mean, 95%
    quantile, p), chance, the last layers' score, and debiased CKA at the best layer pair with
    its null under the same permutations."""
    res = grid_alignment(nbrs_v, nbrs_t, permutations)
    i, j = res.best
    row = {"n": res.n, "knn": res.value, "layer_v": i + 1, "layer_t": j + 1,
           "depth_v": (i + 1) / max(len(nbrs_v), 1), "depth_t": (j + 1) / max(len(nbrs_t), 1),
           "knn_null_mean": float(res.null.mean()), "knn_null_high": res.null_quantile(0.95),
           "knn_p": res.p_value, "chance": chance(res.n, res.k),
           "knn_last": float(res.grid[-1, -1])}
    value, null = cka_with_null(layers_v[i], layers_t[j], permutations)
    row.update(cka=value, cka_null_high=float(np.quantile(null, 0.95)),
               cka_p=permutation_p(value, null))
    return row


def alignment_tables(feats_v: Mapping[str, Sequence[np.ndarray]],
                     feats_t: Mapping[str, Sequence[np.ndarray]],
                     names: Mapping[str, Sequence[np.ndarray]], kinds: Mapping[str, str],
                     labels: Sequence, n_null: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    """``pairs``: the :func:`alignment_row` of every vision x text model on the captions
    (``text_input == "caption"``), then of every ``"pretrained"`` vision model x every model of
    ``names`` (text models' layers on the category names) on those names; ``n_null``
    shuffled-pair permutations drawn with ``seed``. ``within_category``: the grid maxima of the
    same caption pairs when captions move only within their ``labels`` group (``seed + 1``),
    i.e. how much of the score is category-level. ``kinds`` gives each model's kind."""
    nb_v, nb_t, nb_names = neighbour_sets(feats_v), neighbour_sets(feats_t), neighbour_sets(names)
    perms = shuffles(len(labels), n_null, seed)
    within = within_group_shuffles(labels, n_null, seed + 1)
    rows = [{"vision": v, "text": t, "text_input": "caption",
             **alignment_row(nb_v[v], nb_t[t], feats_v[v], feats_t[t], perms),
             "vision_kind": kinds[v], "text_kind": kinds[t]} for v in feats_v for t in feats_t]
    controls = []
    for v in [v for v in feats_v if kinds[v] == "pretrained"]:
        for t in names:
            rows.append({"vision": v, "text": t, "text_input": "category_name",
                         **alignment_row(nb_v[v], nb_names[t], feats_v[v], names[t], perms),
                         "vision_kind": "pretrained", "text_kind": kinds[t]})
            res = grid_alignment(nb_v[v], nb_t[t], within)
            controls.append({"vision": v, "text": t, "text_kind": kinds[t],
                             "within_mean": float(res.null.mean()),
                             "within_high": res.null_quantile(0.95),
                             "within_low": res.null_quantile(0.05)})
    return {"pairs": pd.DataFrame(rows), "within_category": pd.DataFrame(controls)}


def size_sweep(feats_v: Mapping[str, Sequence[np.ndarray]],
               feats_t: Mapping[str, Sequence[np.ndarray]], pairs: pd.DataFrame,
               model_pairs: Sequence[tuple[str, str]], sizes: Sequence[int | None],
               draws: int, seed: int = 0, all_pairs: tuple | None = None) -> pd.DataFrame:
    """Mutual k-NN, the same with one side shuffled, chance and debiased CKA at each model
    pair's best caption layer pair (from ``pairs``) on random subsets of n stimuli, ``draws``
    subsets per size (one at the full set). Sizes up to the analysis set (the rows of
    ``feats_*``) use every pair of ``model_pairs``; larger sizes (``None``: all) use
    ``all_pairs = (feats_v, feats_t)``, the first model pair's layers on a larger set."""
    rows = []
    n_set = len(next(iter(feats_v.values()))[0])
    n_all = len(next(iter(all_pairs[0].values()))[0]) if all_pairs is not None else n_set
    rng = np.random.default_rng([seed, 0x5EE])
    best = pairs.query("text_input == 'caption'").set_index(["vision", "text"])
    for size in sorted({n_all if s is None else min(int(s), n_all) for s in sizes}):
        source = (n_set, feats_v, feats_t, model_pairs) if size <= n_set else \
            (n_all, all_pairs[0], all_pairs[1], model_pairs[:1])
        for draw in range(1 if size in (n_set, n_all) else draws):
            idx = np.sort(rng.choice(source[0], size=size, replace=False))
            perm = rng.permutation(size)
            for v, t in source[3]:
                b = best.loc[(v, t)]
                X, Y = source[1][v][b.layer_v - 1][idx], source[2][t][b.layer_t - 1][idx]
                nx, ny = neighbours(X), neighbours(Y)
                rows.append({"vision": v, "text": t, "n": size, "draw": draw,
                             "set": "analysis" if size <= n_set else "all pairs",
                             "knn": knn_grid([nx], [ny])[0, 0],
                             "knn_shuffled": knn_grid([nx], [np.argsort(perm)[ny[perm]]])[0, 0],
                             "chance": chance(size), "cka": cka(X, Y, debiased=True)})
    return pd.DataFrame(rows)


def _mean(rows: pd.DataFrame, column: str, how: str = "mean") -> float:
    return float(getattr(rows[column], how)()) if len(rows) else float("nan")


def alignment_summary(pairs: pd.DataFrame, within: pd.DataFrame,
                      primary: tuple[str, str]) -> dict[str, Any]:
    """Scalars of :func:`alignment_tables`: the ``primary`` pair (else the first pretrained
    pair), the range over pretrained x pretrained pairs, the within-category share of the
    above-null score ``(within - null) / (knn - null)``, the category-name ratio, and the mean
    score of each baseline kind (random-init, pixels, static, in-house) with pretrained
    partners."""
    cap = pairs[pairs["text_input"] == "caption"]
    real = cap.query("vision_kind == 'pretrained' and text_kind == 'pretrained'")
    prim = real[(real["vision"] == primary[0]) & (real["text"] == primary[1])]
    prim = prim.iloc[0] if len(prim) else (real.iloc[0] if len(real) else cap.iloc[0])
    meta: dict[str, Any] = {
        "n_pairs": int(prim["n"]), "primary_vision": prim["vision"], "primary_text": prim["text"],
        "knn": float(prim["knn"]), "knn_chance": float(prim["chance"]),
        "knn_null_high": float(prim["knn_null_high"]), "knn_p": float(prim["knn_p"]),
        "knn_ratio": float(prim["knn"] / prim["chance"]),
        "cka": float(prim["cka"]), "cka_null_high": float(prim["cka_null_high"]),
        "cka_p": float(prim["cka_p"]),
        "layer_v": int(prim["layer_v"]), "layer_t": int(prim["layer_t"]),
        "n_real_pairs": int(len(real)),
        "real_knn_min": float(real["knn"].min()), "real_knn_max": float(real["knn"].max()),
        "real_p_max": float(real["knn_p"].max()),
        "real_all_significant": bool((real["knn_p"] <= 0.05).all()),
    }
    within = within.query("text_kind == 'pretrained'").merge(
        real[["vision", "text", "knn", "knn_null_mean"]], on=["vision", "text"])
    share = (within["within_mean"] - within["knn_null_mean"]) / \
        (within["knn"] - within["knn_null_mean"])
    meta.update(within_share=float(share.mean()), within_share_min=float(share.min()),
                within_share_max=float(share.max()))
    at = within[(within["vision"] == primary[0]) & (within["text"] == primary[1])]
    meta["within_knn_primary"] = float((at if len(at) else within)["within_mean"].iloc[0])
    names = pairs.query("text_input == 'category_name' and text_kind == 'pretrained'").merge(
        real[["vision", "text", "knn"]], on=["vision", "text"], suffixes=("_name", ""))
    meta["name_ratio"] = float((names["knn_name"] / names["knn"]).mean())
    meta["name_knn_primary"] = float(names.iloc[0]["knn_name"]) if len(names) else float("nan")
    for kind in ("random", "pixels", "static", "inhouse"):
        v_rows = cap.query("vision_kind == @kind and text_kind == 'pretrained'")
        t_rows = cap.query("text_kind == @kind and vision_kind == 'pretrained'")
        rows = v_rows if len(v_rows) else t_rows
        if kind == "random":
            meta.update(random_vision_knn=_mean(v_rows, "knn"), random_text_knn=_mean(t_rows, "knn"),
                        random_vision_p_max=_mean(v_rows, "knn_p", "max"))
        else:
            meta.update({f"{kind}_knn": _mean(rows, "knn"), f"{kind}_knn_max": _mean(rows, "knn", "max")})
    meta["real_knn_mean"] = float(real["knn"].mean())
    return meta


def sweep_summary(sweep: pd.DataFrame, vision: str, text: str) -> dict[str, Any]:
    """Scalars of :func:`size_sweep` for one model pair (mutual k-NN, its ratio to chance and
    CKA at the smallest and the largest n), and whether every pair's score falls with n."""
    one = sweep[(sweep["vision"] == vision) & (sweep["text"] == text)]
    by_n = one.groupby("n")[["knn", "chance", "cka", "knn_shuffled"]].mean()
    allpairs = sweep.groupby(["vision", "text", "n"])["knn"].mean().unstack("n")
    return {"sweep_n_min": int(by_n.index.min()), "sweep_n_max": int(by_n.index.max()),
            "sweep_knn_small": float(by_n["knn"].iloc[0]),
            "sweep_knn_all": float(by_n["knn"].iloc[-1]),
            "sweep_ratio_small": float(by_n["knn"].iloc[0] / by_n["chance"].iloc[0]),
            "sweep_ratio_all": float(by_n["knn"].iloc[-1] / by_n["chance"].iloc[-1]),
            "sweep_cka_small": float(by_n["cka"].iloc[0]),
            "sweep_cka_all": float(by_n["cka"].iloc[-1]),
            "sweep_knn_falls_all": bool(allpairs.apply(
                lambda r: r.dropna().iloc[-1] < r.dropna().iloc[0], axis=1).all())}


def order_summary(pairs: pd.DataFrame, order: Mapping[str, float]) -> dict[str, Any]:
    """Does alignment follow a competence ``order`` of the vision models (e.g. ImageNet top-1)?
    Per text model of ``pairs`` (``vision``, ``text``, ``knn``), Spearman's rho of the order and
    the score over the vision models in ``order``; needs >= 3 of them (else nan and 0)."""
    from scipy import stats as _stats

    vis = pairs[pairs["vision"].isin(order)]
    if vis["vision"].nunique() < 3:
        return {"vision_order_rho_mean": float("nan"), "vision_order_increasing": 0,
                "vision_order_n": 0}
    rhos = [float(_stats.spearmanr([order[v] for v in g["vision"]], g["knn"]).statistic)
            for _, g in vis.groupby("text")]
    return {"vision_order_rho_mean": float(np.mean(rhos)),
            "vision_order_increasing": int(sum(r == 1.0 for r in rhos)),
            "vision_order_n": len(rhos)}
