"""Which transforms of one representation leave a measure unchanged, checked numerically.

>>> table = invariance_table(["cka_linear", "svcca"], n=64, d=10, seed=0)
>>> table.pivot(index="measure", columns="transform", values="invariant")

Each check draws a related pair ``X: (n, d)``, ``Y = tanh(X W) + noise`` (seeded Gaussian
data), applies one transform ``T`` to ``Y`` alone and compares ``m(X, T(Y))`` with
``m(X, Y)``. The change is scaled by the measure's spread on this data (``|m(X, Y) -
m(X, Y_shuffled)|``, how far the value moves when the pairing is destroyed), so that a change
of ``1e-9`` is "unchanged" whatever the measure's units; ``invariant`` is True when the scaled
change is below ``tolerance``.

Transforms (:data:`TRANSFORMS`): ``rotation`` (a random orthogonal map), ``isotropic_scale``
(multiply by 3.7), ``translation`` (add one vector of 5x the data's scale to every row),
``invertible_linear`` (a random well-conditioned non-orthogonal map), ``feature_permutation``
(reorder the features) and ``row_shuffle`` (reorder the stimuli of ``Y`` only: it breaks the
pairing, so only a pairing-free measure -- registry null kind ``"gaussian"`` -- should be
unchanged).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

from . import measures as registry

__all__ = ["TRANSFORMS", "transform", "invariance_table"]

TRANSFORMS = ("rotation", "isotropic_scale", "translation", "invertible_linear",
              "feature_permutation", "row_shuffle")


def _orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _invertible(d: int, rng: np.random.Generator) -> np.ndarray:
    """A random linear map with singular values spread over [0.3, 3] (far from orthogonal,
    well conditioned)."""
    return _orthogonal(d, rng) @ np.diag(np.geomspace(0.3, 3.0, d)) @ _orthogonal(d, rng)


def transform(Y: np.ndarray, name: str, rng: np.random.Generator) -> np.ndarray:
    """``Y: (n, d)`` under transform ``name`` (one of :data:`TRANSFORMS`), drawn from ``rng``."""
    Y = np.asarray(Y, dtype=float)
    if Y.ndim != 2:
        raise ValueError(f"Y must be a 2-d array (n, d), got shape {Y.shape}")
    n, d = Y.shape
    makers: dict[str, Callable[[], np.ndarray]] = {
        "rotation": lambda: Y @ _orthogonal(d, rng),
        "isotropic_scale": lambda: 3.7 * Y,
        "translation": lambda: Y + 5.0 * Y.std() * rng.standard_normal(d),
        "invertible_linear": lambda: Y @ _invertible(d, rng),
        "feature_permutation": lambda: Y[:, rng.permutation(d)],
        "row_shuffle": lambda: Y[rng.permutation(n)],
    }
    if name not in makers:
        raise ValueError(f"unknown transform {name!r}; choose from {', '.join(TRANSFORMS)}")
    return makers[name]()


def _pair(n: int, d: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    X = rng.standard_normal((n, d))
    Y = np.tanh(X @ rng.standard_normal((d, d)) / np.sqrt(d)) + 0.3 * rng.standard_normal((n, d))
    return X, Y


def invariance_table(measures: Sequence[str] | None = None,
                     transforms: Sequence[str] = TRANSFORMS, *, n: int = 64, d: int = 10,
                     seed: int = 0, tolerance: float = 1e-6,
                     options: dict[str, dict] | None = None) -> pd.DataFrame:
    """One row per (measure, transform): ``value`` m(X, Y), ``transformed`` m(X, T(Y)),
    ``change`` (scaled, see the module docstring), ``invariant`` (change < tolerance), and the
    measure's registry ``direction`` and ``null`` kind. ``measures`` defaults to the whole
    registry; ``options`` maps a measure name to keyword options for it."""
    names = registry.names(list(registry.MEASURES) if measures is None else measures)
    for t in transforms:
        if t not in TRANSFORMS:
            raise ValueError(f"unknown transform {t!r}; choose from {', '.join(TRANSFORMS)}")
    if n < 12 or d < 2:
        raise ValueError(f"need n >= 12 stimuli and d >= 2 features, got n={n}, d={d}")
    options = options or {}
    rng = np.random.default_rng(seed)
    X, Y = _pair(n, d, rng)
    shuffled = Y[rng.permutation(n)]
    rows = []
    for name in names:
        spec, kw = registry.get(name), options.get(name, {})
        registry.check_options(name, kw)
        value = float(spec.compute(X, Y, **kw))
        spread = abs(value - float(spec.compute(X, shuffled, **kw)))
        scale = spread if spread > 0 else max(abs(value), 1.0)
        for t_index, t in enumerate(transforms):
            t_rng = np.random.default_rng([seed, t_index])
            moved = float(spec.compute(X, transform(Y, t, t_rng), **kw))
            change = abs(moved - value) / scale
            rows.append({"measure": name, "transform": t, "value": value, "transformed": moved,
                         "change": change, "invariant": bool(change < tolerance),
                         "direction": spec.direction, "null": spec.null})
    return pd.DataFrame(rows)
