"""Small statistics used to report results: intervals over seeds and effect sizes."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats as _stats


def gaussian_like(Y: np.ndarray, rng: np.random.Generator, n_rows: int | None = None) -> np.ndarray:
    """Null cloud: an isotropic Gaussian ``(n_rows or n, d)`` with ``Y: (n, d)``'s mean and
    total variance (mean squared distance to the centroid)."""
    centred = Y - Y.mean(0)
    scale = np.sqrt((centred ** 2).sum() / centred.size)
    shape = (Y.shape[0] if n_rows is None else n_rows, Y.shape[1])
    return Y.mean(0) + rng.standard_normal(shape) * scale


def mean_ci(values: Sequence[float], ci: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval of independent values (e.g. one per seed).

    With a single value the interval is (nan, nan): one seed says nothing about seed noise.
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("mean_ci needs at least one value")
    mean = float(values.mean())
    if values.size < 2:
        return mean, float("nan"), float("nan")
    half = float(_stats.t.ppf((1 + ci) / 2, values.size - 1) * values.std(ddof=1)
                 / np.sqrt(values.size))
    return mean, mean - half, mean + half


def hedges_g(a: Sequence[float], b: Sequence[float]) -> float:
    """Hedges' g (bias-corrected standardised mean difference a − b)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 2 or b.size < 2:
        raise ValueError("Hedges' g needs at least two values per group")
    pooled = np.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1))
                     / (a.size + b.size - 2))
    if pooled == 0:
        return float("inf") * np.sign(a.mean() - b.mean()) if a.mean() != b.mean() else 0.0
    correction = 1 - 3 / (4 * (a.size + b.size) - 9)
    return float((a.mean() - b.mean()) / pooled * correction)


def fmt(value: float | None, spec: str = ".2f") -> str:
    """Format a number for a report; undefined ones (None, NaN) print as "n/a"."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    return format(value, spec)


def cliffs_delta(a: Sequence[float], b: Sequence[float]) -> float:
    """Cliff's δ = P(a > b) − P(a < b) over all pairs (−1 … 1; 0 = no dominance)."""
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError("Cliff's delta needs at least one value per group")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("Cliff's delta got NaN or inf values")
    diff = np.sign(a[:, None] - b[None, :])
    return float(diff.mean())


def _early_count(n_steps: int, early_fraction: float) -> int:
    if not 0 < early_fraction < 1:
        raise ValueError(f"early_fraction must lie in (0, 1), got {early_fraction}")
    k = int(np.floor(n_steps * early_fraction + 1e-9))
    if k < 1 or k >= n_steps:
        raise ValueError(f"{n_steps} steps leave no early window of {early_fraction:.3g} of "
                         f"them; use more checkpoints (at least {int(np.ceil(1 / early_fraction)) + 1})")
    return k


def concentration(velocity: Sequence[float], early_fraction: float = 1 / 3) -> float:
    """Share of the total path travelled in the first steps: ``Σ_{t ≤ T/3} v_t / Σ_t v_t``.

    ``velocity (T,)`` are non-negative step lengths between consecutive, evenly spaced
    checkpoints (``v_1`` = checkpoint 0 → 1). The early window is the first
    ``floor(T · early_fraction)`` steps, so a constant velocity gives that window's share
    (1/3 when ``T`` is a multiple of 3). Undefined (``ValueError``) when every step is 0.
    """
    v = np.asarray(velocity, dtype=float).ravel()
    if not np.isfinite(v).all() or (v < 0).any():
        raise ValueError("velocities must be finite and non-negative")
    k = _early_count(v.size, early_fraction)
    total = v.sum()
    if total <= 0:
        raise ValueError("every velocity is 0: nothing moved, so concentration is undefined")
    return float(v[:k].sum() / total)


def null_summary(observed: float, null: Sequence[float], uniform: float) -> dict[str, float]:
    """C against null draws of it: C, null_mean, null_low / null_high (2.5 / 97.5 percentiles),
    p_value = ``(1 + #{null ≥ C}) / (1 + n)`` (one-sided: front-loaded?), uniform, n_perm."""
    null = np.asarray(null, dtype=float).ravel()
    if null.size < 99:
        raise ValueError(f"need >= 99 null draws for a p-value, got {null.size}")
    return {"C": float(observed), "null_mean": float(null.mean()),
            "null_low": float(np.quantile(null, 0.025)),
            "null_high": float(np.quantile(null, 0.975)),
            "p_value": float((1 + np.sum(null >= observed - 1e-12)) / (1 + null.size)),
            "uniform": float(uniform), "n_perm": int(null.size)}


def _check_n_perm(n_perm: Any) -> int:
    if not isinstance(n_perm, (int, np.integer)) or n_perm < 99:
        raise ValueError(f"n_perm must be an integer >= 99 for a p-value, got {n_perm!r}")
    return int(n_perm)


def concentration_test(velocity: Sequence[float], n_perm: int = 2000, seed: int = 0,
                       early_fraction: float = 1 / 3) -> dict[str, float]:
    """:func:`concentration` against a null that shuffles the order of the steps.

    Each of ``n_perm`` draws permutes the velocities ``(T,)`` and recomputes C. Returns the
    fields of :func:`null_summary`. A flat series sits at the null; a front-loaded one above.
    """
    v = np.asarray(velocity, dtype=float).ravel()
    observed = concentration(v, early_fraction)
    k = _early_count(v.size, early_fraction)
    rng = np.random.default_rng([seed, 0xC0C])
    perms = np.argsort(rng.random((_check_n_perm(n_perm), v.size)), axis=1)
    null = v[perms][:, :k].sum(1) / v.sum()
    return null_summary(observed, null, k / v.size)


def path_velocity(distances: Any) -> np.ndarray:
    """Consecutive steps ``D[t, t+1]`` ``(T,)`` of a checkpoint distance matrix ``(T+1, T+1)``."""
    return np.diagonal(_distance_matrix(distances), offset=1).copy()


def _distance_matrix(distances: Any) -> np.ndarray:
    D = np.asarray(distances, dtype=float)
    if D.ndim != 2 or D.shape[0] != D.shape[1] or D.shape[0] < 3:
        raise ValueError(f"need a square (T+1, T+1) distance matrix with T+1 >= 3, got {D.shape}")
    if not np.isfinite(D).all() or (D < 0).any():
        raise ValueError("distances must be finite and non-negative")
    if not np.allclose(D, D.T, rtol=1e-9, atol=1e-12):
        raise ValueError("the distance matrix is not symmetric")
    return D


def checkpoint_permutation_null(distances: Any, n_perm: int = 2000, seed: int = 0,
                                early_fraction: float = 1 / 3) -> np.ndarray:
    """Null draws ``(n_perm,)`` of C for the path through checkpoints ``0..T``.

    ``distances (T+1, T+1)``: any distance between every pair of checkpoints (diagram
    distance, parameter distance, 1 − CKA). Each draw visits the checkpoints in a random
    order ``π`` and takes ``v_t = D[π_t, π_{t+1}]``: the null keeps every distance the run
    produced and forgets only which checkpoint came when. The same ``seed`` gives the same
    permutations for every matrix of the same size (paired nulls across measures).
    """
    D = _distance_matrix(distances)
    T = D.shape[0] - 1
    k = _early_count(T, early_fraction)
    rng = np.random.default_rng([seed, 0xC4E])
    perms = np.argsort(rng.random((_check_n_perm(n_perm), T + 1)), axis=1)
    steps = D[perms[:, :-1], perms[:, 1:]]  # (n_perm, T)
    totals = steps.sum(1)
    if (totals <= 0).any():
        raise ValueError("a permuted path has length 0: the checkpoints all coincide")
    return steps[:, :k].sum(1) / totals


def checkpoint_permutation_test(distances: Any, n_perm: int = 2000, seed: int = 0,
                                early_fraction: float = 1 / 3) -> dict[str, float]:
    """:func:`concentration` of the observed path ``D[t, t+1]`` against
    :func:`checkpoint_permutation_null`; returns the fields of :func:`null_summary`."""
    D = _distance_matrix(distances)
    T = D.shape[0] - 1
    observed = concentration(np.diagonal(D, offset=1), early_fraction)
    null = checkpoint_permutation_null(D, n_perm, seed, early_fraction)
    return null_summary(observed, null, _early_count(T, early_fraction) / T)

# --------------------------------------------------------------------------------------------
# Resampling models, equivalence, permutation p-values, a unigram baseline (01, 02 and later)


def permutation_p(observed: float, null: Sequence[float], greater: bool = True) -> float:
    """One-sided permutation p-value ``(1 + #{null as extreme}) / (1 + n_null)``.

    ``greater=True``: large values are extreme (similarities); ``False``: small ones
    (divergences). Its floor is ``1 / (1 + n_null)`` (see :func:`p_floor`); with no null draws
    there is no p-value (ValueError), never a silent NaN.
    """
    null = np.asarray(null, dtype=float)
    if null.size == 0:
        raise ValueError("no null draws: a permutation p-value needs at least one")
    if not np.isfinite(null).all() or not np.isfinite(observed):
        raise ValueError("observed value or null draws hold NaN or inf")
    extreme = (null >= observed) if greater else (null <= observed)
    return float((1 + extreme.sum()) / (1 + null.size))


def p_floor(n_null: int) -> float:
    """The smallest p-value ``n_null`` permutation draws can give: ``1 / (1 + n_null)``."""
    if n_null < 1:
        raise ValueError(f"n_null must be >= 1, got {n_null}")
    return 1.0 / (1 + n_null)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (same order as given), capped at 1."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (p.size - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def multiway_bootstrap(table, statistic, by: Sequence[str], strata: Mapping | None = None,
                       n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """Bootstrap a statistic by resampling the *units* (models) that the rows are made of.

    ``table`` has one row per observation (e.g. one model pair); the columns ``by`` name the
    units each row involves (``["model_a", "model_b"]``); all ``by`` columns share one pool of
    units. Each draw resamples the units with replacement -- within each stratum of
    ``strata`` (unit -> stratum, e.g. a model's size or family; default one stratum) -- and
    weights every row by the product of its units' draw counts, so pairs that share a model
    are never treated as independent (the multiway bootstrap of Owen 2007).
    ``statistic(weights)`` gets the ``(len(table),)`` row weights of one draw (use
    :func:`weighted_mean`); draws that leave no row are redrawn. Returns ``(n_boot,)`` values.
    """
    import pandas as pd

    if not isinstance(table, pd.DataFrame) or table.empty:
        raise ValueError("multiway_bootstrap needs a non-empty DataFrame")
    missing = [c for c in by if c not in table.columns]
    if missing:
        raise ValueError(f"unit columns {missing} not in the table ({list(table.columns)})")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    units = sorted(set().union(*(set(table[c]) for c in by)), key=str)
    strata = dict(strata or {})
    unknown = [u for u in units if strata and u not in strata]
    if unknown:
        raise ValueError(f"units {unknown[:5]} have no stratum in strata")
    groups: dict = {}
    for i, u in enumerate(units):
        groups.setdefault(strata.get(u, 0), []).append(i)
    index = {u: i for i, u in enumerate(units)}
    cols = [table[c].map(index).to_numpy() for c in by]
    rng = np.random.default_rng([int(seed), 0xB007])
    out = np.empty(n_boot)
    k = 0
    while k < n_boot:
        counts = np.zeros(len(units))
        for members in groups.values():
            np.add.at(counts, rng.choice(members, len(members)), 1)
        weight = np.ones(len(table))
        for col in cols:
            weight = weight * counts[col]
        if weight.sum() == 0:
            continue
        out[k] = statistic(weight)
        k += 1
    return out


def weighted_mean(values: np.ndarray, weights: np.ndarray, mask: np.ndarray | None = None) -> float:
    """``sum(w v) / sum(w)`` over the rows in ``mask`` (NaN when their weights sum to 0)."""
    v, w = np.asarray(values, float), np.asarray(weights, float)
    if mask is not None:
        v, w = v[mask], w[mask]
    total = w.sum()
    return float((w * v).sum() / total) if total > 0 else float("nan")


def percentile_ci(boots: Sequence[float], ci: float = 0.95) -> tuple[float, float]:
    """The central ``ci`` percentile interval of bootstrap draws."""
    b = np.asarray(boots, dtype=float)
    b = b[np.isfinite(b)]
    if b.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - ci) / 2
    return float(np.quantile(b, alpha)), float(np.quantile(b, 1 - alpha))


def tost_bootstrap(estimate: float, boots: Sequence[float], margin: float,
                   alpha: float = 0.05) -> dict[str, float | bool]:
    """Two one-sided tests of equivalence ``|effect| < margin`` from bootstrap draws.

    Equivalence is declared at level ``alpha`` when the ``1 - 2 alpha`` percentile interval
    of the draws lies inside ``(-margin, margin)``. ``p_value`` is the larger of the two
    one-sided bootstrap p-values ``P*(effect <= -margin)`` and ``P*(effect >= margin)``
    (each floored at ``1 / (n_boot + 1)``). A CI that merely contains 0 is *not* equivalence.
    """
    if not margin > 0:
        raise ValueError(f"the equivalence margin must be > 0, got {margin}")
    b = np.asarray(boots, dtype=float)
    if b.size < 2 or not np.isfinite(b).all():
        raise ValueError("TOST needs at least two finite bootstrap draws")
    low, high = percentile_ci(b, 1 - 2 * alpha)
    p_low = (1 + np.sum(b <= -margin)) / (1 + b.size)
    p_high = (1 + np.sum(b >= margin)) / (1 + b.size)
    return {"estimate": float(estimate), "margin": float(margin), "ci90_low": low,
            "ci90_high": high, "p_value": float(max(p_low, p_high)),
            "equivalent": bool(-margin < low and high < margin)}


def unigram_perplexity(train_ids: Sequence[int], eval_ids: Sequence[int],
                       vocab_size: int) -> float:
    """Perplexity of an add-one-smoothed unigram model fitted on ``train_ids`` and scored on
    ``eval_ids`` (the baseline a language model must clearly beat to count as one)."""
    train_ids, eval_ids = np.asarray(train_ids), np.asarray(eval_ids)
    if train_ids.size == 0 or eval_ids.size == 0:
        raise ValueError("unigram perplexity needs training and evaluation tokens")
    if max(train_ids.max(), eval_ids.max()) >= vocab_size or min(train_ids.min(),
                                                                  eval_ids.min()) < 0:
        raise ValueError(f"token ids must lie in [0, {vocab_size})")
    counts = np.bincount(train_ids, minlength=vocab_size) + 1.0
    logp = np.log(counts / counts.sum())
    return float(np.exp(-logp[eval_ids].mean()))


def loso_fit_errors(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Leave-one-out RMSE of a straight line and of a saturating curve
    ``y = c - a exp(-b (x - min x))`` (``a, b >= 0``) fitted to points ``(x, y)`` (e.g. the
    size means of a resonance on log10 parameters). Needs >= 5 points, so that every fit of
    the 3-parameter curve leaves it something to miss."""
    from scipy.optimize import curve_fit

    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size < 5 or x.size != y.size:
        raise ValueError(f"need >= 5 paired points to compare held-out fits, got {x.size}")

    err_lin, err_sat = [], []
    for i in range(x.size):
        keep = np.arange(x.size) != i
        err_lin.append(np.polyval(np.polyfit(x[keep], y[keep], 1), x[i]) - y[i])
        x0 = x[keep].min()
        f = lambda z, c, a, b: c - a * np.exp(-b * (z - x0))  # noqa: E731
        try:
            p, _ = curve_fit(f, x[keep], y[keep], p0=(y.max(), np.ptp(y) + 1e-6, 1.0),
                             bounds=([-np.inf, 0, 0], [np.inf, np.inf, 50]), maxfev=5000)
            err_sat.append(f(x[i], *p) - y[i])
        except RuntimeError:
            err_sat.append(np.nan)
    return (float(np.sqrt(np.mean(np.square(err_lin)))),
            float(np.sqrt(np.nanmean(np.square(err_sat)))))


def delete_d_jackknife_interval(value: float, replicates: Sequence[float], n: int, d: int,
                                ci: float = 0.95,
                                bounds: tuple[float, float] = (-np.inf, np.inf)) -> tuple[float, float]:
    """Normal interval ``value ± z · se`` from delete-``d`` jackknife replicates (Shao & Wu 1989),
    ``se² = (n - d) / (d · B) · Σ (θ_b - θ̄)²`` over the ``B`` replicates, clipped to ``bounds``
    (the measure's range: a CKA interval must not reach past 1). ``(nan, nan)`` when ``B < 2``.
    """
    replicates = np.asarray(replicates, dtype=float)
    if replicates.size < 2:
        return float("nan"), float("nan")
    se = np.sqrt((n - d) / (d * replicates.size) * ((replicates - replicates.mean()) ** 2).sum())
    half = float(_stats.norm.ppf((1 + ci) / 2) * se)
    low, high = bounds
    return float(np.clip(value - half, low, high)), float(np.clip(value + half, low, high))


def seed_pair_bootstrap(values: Sequence[float], seeds_a: Sequence, seeds_b: Sequence,
                        n_boot: int = 2000, ci: float = 0.95,
                        seed: int = 0) -> tuple[float, float, float]:
    """Mean of a statistic measured on pairs of models, with a cluster-bootstrap interval that
    resamples *seeds* (not pairs, which share seeds and are not independent).

    ``values[i]`` belongs to the ordered pair ``(seeds_a[i], seeds_b[i])`` (several values per
    pair are averaged). Each replicate draws the seeds with replacement and averages the pair
    means over every drawn (a, b) with a and b distinct draws of distinct seeds. Needs >= 3
    seeds for an interval; with 2 the interval is (nan, nan).
    """
    values = np.asarray(values, dtype=float)
    a, b = np.asarray(seeds_a), np.asarray(seeds_b)
    if not values.size or values.shape != a.shape or a.shape != b.shape:
        raise ValueError(f"values, seeds_a and seeds_b must be equal-length and non-empty, got "
                         f"{values.shape}, {a.shape}, {b.shape}")
    if np.any(a == b):
        raise ValueError("a pair of a seed with itself is not a cross-seed pair; drop it")
    labels = np.unique(np.concatenate([a, b]))
    index = {s: i for i, s in enumerate(labels.tolist())}
    k = labels.size
    total, count = np.zeros((k, k)), np.zeros((k, k))
    np.add.at(total, ([index[s] for s in a.tolist()], [index[s] for s in b.tolist()]), values)
    np.add.at(count, ([index[s] for s in a.tolist()], [index[s] for s in b.tolist()]), 1)
    means = np.divide(total, count, out=np.full((k, k), np.nan), where=count > 0)
    point = float(np.nanmean(means))
    if k < 3:
        return point, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for r in range(n_boot):
        draw = rng.integers(0, k, k)
        grid = means[np.ix_(draw, draw)]
        grid = np.where(draw[:, None] == draw[None, :], np.nan, grid)
        reps[r] = np.nanmean(grid) if np.isfinite(grid).any() else np.nan
    reps = reps[np.isfinite(reps)]
    low, high = np.quantile(reps, [(1 - ci) / 2, (1 + ci) / 2])
    return point, float(low), float(high)


def spearman_ci(x: Sequence[float], y: Sequence[float], n_boot: int = 999,
                seed: int | Sequence[int] = 0, ci: float = 0.95) -> tuple[float, float, float]:
    """Spearman's rho of paired points (one per model) and a percentile bootstrap interval that
    resamples the points; nan for fewer than 3 points (draws with a constant side skipped)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.shape} and {y.shape}")
    if x.size < 3:
        return float("nan"), float("nan"), float("nan")
    rho = float(spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(int(n_boot)):
        idx = rng.integers(0, x.size, x.size)
        if np.unique(x[idx]).size > 1 and np.unique(y[idx]).size > 1:
            boots.append(spearmanr(x[idx], y[idx]).statistic)
    tail = round((1 - ci) / 2, 12)
    lo, hi = np.quantile(boots, [tail, 1 - tail]) if boots else (np.nan, np.nan)
    return rho, float(lo), float(hi)


def paired_effect(treat: Sequence[float], ref: Sequence[float],
                  margin: float | None = None) -> dict[str, float]:
    """Mean paired difference ``treat - ref`` of losses (one pair per seed) with a 95 % Student-t
    interval, and the matching relative change in perplexity ``exp(Δ) - 1``. Needs >= 2 pairs.

    With ``margin`` (a relative change, e.g. 0.02), also TOST equivalence at 5 %: the 90 %
    interval of the change lies inside ``(-margin, +margin)`` (``equivalent``)."""
    import math

    treat, ref = np.asarray(treat, float), np.asarray(ref, float)
    if treat.shape != ref.shape or treat.ndim != 1 or treat.size < 2:
        raise ValueError(f"need >= 2 paired values in two 1-D arrays of one shape, got "
                         f"{treat.shape} and {ref.shape}")
    if not (np.isfinite(treat).all() and np.isfinite(ref).all()):
        raise ValueError("paired values contain NaN or inf; every seed needs both runs")
    diff = treat - ref
    n = diff.size
    mean, se = float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(n))
    half = float(_stats.t.ppf(0.975, n - 1)) * se
    out = {"n_seeds": n, "delta_loss": mean, "delta_loss_low": mean - half,
           "delta_loss_high": mean + half, "ppl_change": math.expm1(mean),
           "ppl_change_low": math.expm1(mean - half), "ppl_change_high": math.expm1(mean + half)}
    if margin is not None:
        half90 = float(_stats.t.ppf(0.95, n - 1)) * se
        out["equivalent"] = bool(math.expm1(mean - half90) > -margin
                                 and math.expm1(mean + half90) < margin)
    return out


def paired_difference(a, b, margin: float | None = None) -> dict[str, Any]:
    """Mean of ``a − b`` over the seeds both have (pandas Series indexed by seed) with a 95 %
    t interval over seeds (``diff``, ``ci_low``, ``ci_high``, ``n_seeds``, ``n_better``: seeds
    where ``a`` is lower); with ``margin``, TOST equivalence at 5 % (``tost_p``, and
    ``equivalent``: the 90 % t interval inside ``±margin``). Needs >= 2 shared seeds."""
    d = (a - b).dropna()
    if len(d) < 2:
        raise ValueError(f"a paired difference needs >= 2 shared seeds, got {len(d)}")
    mean, low, high = mean_ci(d.to_numpy())
    out: dict[str, Any] = {"diff": mean, "ci_low": low, "ci_high": high, "n_seeds": int(len(d)),
                           "n_better": int((d < 0).sum())}
    if margin is not None:
        _, l90, h90 = mean_ci(d.to_numpy(), 0.90)
        se = d.std(ddof=1) / np.sqrt(len(d))
        p = max(_stats.t.sf((mean + margin) / se, len(d) - 1),
                _stats.t.sf((margin - mean) / se, len(d) - 1)) if se > 0 else 0.0
        out.update({"tost_p": float(p), "equivalent": bool(-margin < l90 and h90 < margin)})
    return out


def seed_pair_difference(table, group: str, value: str, a, b, n_boot: int = 2000,
                         seed: int = 0xCA) -> dict[str, float]:
    """Mean of a cross-seed statistic (``table`` rows: ``group``, ``seed_a``, ``seed_b``,
    ``value``; several rows per pair, e.g. layers, are averaged) for group ``a`` minus group
    ``b``, with a percentile bootstrap that redraws the seeds, shared by both groups, and uses
    only pairs of distinct draws. Returns ``{value}_a`` and ``{value}_b`` (the two means),
    ``diff``, ``ci_low``, ``ci_high``."""
    mats = {}
    for name in (a, b):
        t = table[table[group] == name].groupby(["seed_a", "seed_b"])[value].mean()
        seeds = sorted(set(t.index.get_level_values(0)) | set(t.index.get_level_values(1)))
        m = np.full((len(seeds), len(seeds)), np.nan)
        for (i, j), v in t.items():
            m[seeds.index(i), seeds.index(j)] = m[seeds.index(j), seeds.index(i)] = v
        mats[name] = m
    k = len(mats[a])
    point = float(np.nanmean(mats[a]) - np.nanmean(mats[b]))
    rng, reps = np.random.default_rng(seed), []
    for _ in range(n_boot):
        d = rng.integers(0, k, k)
        same = d[:, None] == d[None, :]
        grids = [np.where(same, np.nan, mats[x][np.ix_(d, d)]) for x in (a, b)]
        if np.isfinite(grids[0]).any():
            reps.append(np.nanmean(grids[0]) - np.nanmean(grids[1]))
    low, high = percentile_ci(reps)
    return {f"{value}_a": float(np.nanmean(mats[a])), f"{value}_b": float(np.nanmean(mats[b])),
            "diff": point, "ci_low": low, "ci_high": high}


def cross_within_bootstrap(pairs, seeds: Sequence[int], n_boot: int, seed: int = 0):
    """A similarity between two models across seeds (``cross``) and of each model with itself
    from another seed (``within_A``, ``within_S``), with 95 % intervals from a bootstrap that
    resamples *seeds* (models), not pairs that share them; also cross − within_A and
    cross − within_S.

    ``pairs`` has columns kind (cross / within_A / within_S), seed_a, seed_b, value. A draw
    resamples the seed list with replacement and averages the pairs whose two seeds were both
    drawn (distinct draws for within-model pairs; cross pairs of one seed count too)."""
    import pandas as pd

    if n_boot < 99:
        raise ValueError(f"n_boot must be >= 99 for a bootstrap interval, got {n_boot}")
    kinds = ("cross", "within_A", "within_S")
    values = {k: {(int(r.seed_a), int(r.seed_b)): float(r.value)
                  for r in pairs[pairs["kind"] == k].itertuples()} for k in kinds}

    def stat(draw: list[int]) -> dict[str, float]:
        out = {}
        for k in kinds:
            vals = [values[k][(a, b)] for i, a in enumerate(draw) for j, b in enumerate(draw)
                    if i != j and (a, b) in values[k]]
            if k == "cross":
                vals += [values[k][(a, a)] for a in draw if (a, a) in values[k]]
            out[k] = float(np.mean(vals)) if vals else float("nan")
        out["cross_minus_within_A"] = out["cross"] - out["within_A"]
        out["cross_minus_within_S"] = out["cross"] - out["within_S"]
        return out

    point = stat(list(seeds))
    rng = np.random.default_rng([seed, 0xC4A])
    draws = pd.DataFrame([stat(list(rng.choice(seeds, size=len(seeds))))
                          for _ in range(n_boot)])
    rows = []
    for key, value in point.items():
        col = draws[key].dropna()
        rows.append({"quantity": key, "value": value, "ci_low": float(col.quantile(0.025)),
                     "ci_high": float(col.quantile(0.975)), "n_boot": int(col.size)})
    return pd.DataFrame(rows)


def interval_class(low: float, high: float, equivalent: bool = False) -> str:
    """A change with a 95 % interval ``[low, high]`` (of a loss: lower is better): ``better``
    (the interval lies below 0), ``worse`` (above), ``equivalent`` (TOST said so), or
    ``undecided``."""
    if high < 0:
        return "better"
    if low > 0:
        return "worse"
    return "equivalent" if equivalent else "undecided"


def multiway_difference(table, group: str, a, b, by: Sequence[str],
                        strata: Mapping | None = None, n_boot: int = 1000, seed: int = 0,
                        value: str = "value") -> tuple[float, np.ndarray]:
    """Mean ``value`` of the rows with ``table[group] == a`` minus that of the rows with
    ``== b`` (e.g. a medium size minus the largest), and its ``(n_boot,)`` draws from a
    :func:`multiway_bootstrap` over the units in the columns ``by``."""
    v, g = table[value].to_numpy(float), table[group].to_numpy()
    in_a, in_b = g == a, g == b
    if not in_a.any() or not in_b.any():
        raise ValueError(f"need rows with {group} == {a!r} and with {group} == {b!r}")

    def stat(w: np.ndarray) -> float:
        return weighted_mean(v, w, in_a) - weighted_mean(v, w, in_b)
    return stat(np.ones(len(table))), multiway_bootstrap(table, stat, by, strata, n_boot, seed)
