"""Input checks shared by the measures: every bad input gets a ValueError that says what to do."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_matrix(X: Any, name: str = "X", *, min_rows: int = 2, dtype=np.float64) -> np.ndarray:
    """``X`` as a finite 2-D array ``(n, d)`` of ``dtype`` with at least ``min_rows`` rows.

    Accepts NumPy arrays, nested lists and torch tensors (detached, moved to CPU).
    """
    if hasattr(X, "detach"):
        X = X.detach().cpu().numpy()
    X = np.asarray(X, dtype=dtype)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n stimuli, d features), got shape {X.shape}; "
                         "pool token-level activations first or reshape")
    n, d = X.shape
    if n < min_rows:
        raise ValueError(f"{name} has {n} rows but at least {min_rows} are needed")
    if d == 0:
        raise ValueError(f"{name} has no features (shape {X.shape})")
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X)).any(axis=1).sum())
        raise ValueError(f"{name} has NaN or inf in {bad} of {n} rows; drop or repair those "
                         "stimuli (e.g. check the model's dtype overflow) before comparing")
    return X


def paired(X: Any, Y: Any, *, min_rows: int = 2, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Check that ``X: (n, d1)`` and ``Y: (n, d2)`` describe the same ``n`` stimuli."""
    X = as_matrix(X, "X", min_rows=min_rows, dtype=dtype)
    Y = as_matrix(Y, "Y", min_rows=min_rows, dtype=dtype)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows and Y has {Y.shape[0]}: both must hold the "
                         "same stimuli in the same order")
    return X, Y


def not_constant(X: np.ndarray, name: str = "X") -> np.ndarray:
    """Raise when every row of ``X`` is the same point (no variance to compare)."""
    if np.ptp(X, axis=0).max() == 0:
        raise ValueError(f"{name} is constant across stimuli: every row is the same point, so "
                         "no similarity is defined (is the layer dead or the input identical?)")
    return X
