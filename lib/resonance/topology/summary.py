"""Scalar summaries of persistence diagrams ``(k, 2)``, including the 41-feature barcode summary.

The 41 features follow the fine-tuning study (seed 004, arXiv 2606.19542): mean, min,
quartiles (25/50/75), max and std of five bar quantities -- H0 deaths, H1 births, H1 deaths,
H1 persistence (death - birth), H1 birth/death ratio -- (5 x 7 = 35), plus total
persistence, bar count and persistent entropy of H0 and of H1 (3 x 2 = 6).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from persim.persistent_entropy import persistent_entropy as _persim_entropy

from .persistence import as_diagram

QUANTITIES = ("h0_death", "h1_birth", "h1_death", "h1_persistence", "h1_ratio")
STATS = ("mean", "min", "q25", "q50", "q75", "max", "std")
TOTALS = ("total_persistence", "bar_count", "entropy")
SUMMARY_FEATURES: tuple[str, ...] = tuple(
    [f"{q}_{s}" for q in QUANTITIES for s in STATS]
    + [f"h{k}_{t}" for k in (0, 1) for t in TOTALS]
)


def _finite(diagram: Any) -> np.ndarray:
    d = as_diagram(diagram)
    return d[np.isfinite(d[:, 1])]


def total_persistence(diagram: Any, p: float = 1.0) -> float:
    """``sum (death - birth) ** p`` over the finite bars of ``diagram (k, 2)``; 0 if empty."""
    d = _finite(diagram)
    return float(np.sum((d[:, 1] - d[:, 0]) ** p))


def persistent_entropy(diagram: Any, normalize: bool = False) -> float:
    """Shannon entropy (natural log) of the bar lengths ``l_i / sum l`` of the finite bars.

    Computed with ``persim.persistent_entropy``; zero-length bars are dropped first (they
    contribute ``0 log 0 = 0``).  ``k`` equal bars give ``log k``; one bar gives 0; an empty
    diagram gives 0.  ``normalize`` divides by ``log k`` (defined as 0 when ``k < 2``).
    """
    d = _finite(diagram)
    d = d[d[:, 1] > d[:, 0]]
    if len(d) == 0 or (normalize and len(d) < 2):
        return 0.0
    return float(_persim_entropy(d, normalize=normalize)[0])


def _stats(values: np.ndarray, prefix: str) -> dict[str, float]:
    if values.size == 0:
        return {f"{prefix}_{s}": 0.0 for s in STATS}
    q25, q50, q75 = np.quantile(values, [0.25, 0.5, 0.75])
    return {
        f"{prefix}_mean": float(values.mean()), f"{prefix}_min": float(values.min()),
        f"{prefix}_q25": float(q25), f"{prefix}_q50": float(q50), f"{prefix}_q75": float(q75),
        f"{prefix}_max": float(values.max()), f"{prefix}_std": float(values.std()),
    }


def persistence_summary(diagrams: list[Any]) -> dict[str, float]:
    """The 41-feature barcode summary of ``[H0, H1, ...]`` diagrams (extra dims are ignored).

    Keys are :data:`SUMMARY_FEATURES`, e.g. ``h0_death_mean``, ``h1_ratio_q25``,
    ``h1_total_persistence``, ``h1_bar_count``, ``h0_entropy``.  Conventions: infinite bars
    are dropped; quartiles use NumPy's linear interpolation; ``std`` is the population
    standard deviation (``ddof=0``); ``ratio`` is birth/death of each H1 bar; total
    persistence is the sum of bar lengths (``p = 1``).  A dimension with no bars (typically
    H1 of a blob) gives 0 for all of its features.
    """
    if len(diagrams) < 2:
        raise ValueError(f"persistence_summary needs the H0 and H1 diagrams, got {len(diagrams)} "
                         "diagram(s); compute them with maxdim >= 1")
    h0, h1 = _finite(diagrams[0]), _finite(diagrams[1])
    b1, d1 = h1[:, 0], h1[:, 1]
    ratio = np.divide(b1, d1, out=np.zeros_like(b1), where=d1 > 0)
    out: dict[str, float] = {}
    for prefix, values in zip(QUANTITIES, (h0[:, 1], b1, d1, d1 - b1, ratio)):
        out.update(_stats(values, prefix))
    for k, d in ((0, h0), (1, h1)):
        out[f"h{k}_total_persistence"] = total_persistence(d)
        out[f"h{k}_bar_count"] = float(len(d))
        out[f"h{k}_entropy"] = persistent_entropy(d)
    assert tuple(out) == SUMMARY_FEATURES
    return out
