"""Input checks shared by the measures: every bad input gets a ValueError that says what to do."""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np

# Magnitudes whose squares, Gram products and float32 casts (ripser) stay far from overflow and
# underflow; inputs whose largest entry lies outside [2^-64, 2^64] are rescaled by a power of two.
_SAFE_EXPONENT = 64


def as_matrix(X: Any, name: str = "X", *, min_rows: int = 2, dtype=np.float64) -> np.ndarray:
    """``X`` as a finite 2-D array ``(n, d)`` of ``dtype`` with at least ``min_rows`` rows.

    Accepts NumPy arrays, nested lists and torch tensors (detached, moved to CPU; half and
    bfloat16 tensors, the usual dtypes of activations, are converted exactly to float64).
    Complex input raises (a real representation is expected; discarding the imaginary part
    silently would compare something else).
    """
    if hasattr(X, "detach"):
        X = X.detach().cpu()
        if X.is_complex():
            raise ValueError(f"{name} is a complex tensor ({X.dtype}); the measures compare real "
                             "representations: pass X.real, X.abs() or torch.view_as_real(X) "
                             "flattened, whichever you mean")
        X = X.double().numpy()  # bfloat16/float16 have no NumPy dtype; float64 holds them exactly
    if np.iscomplexobj(X):
        raise ValueError(f"{name} is complex; the measures compare real representations: pass "
                         "X.real, np.abs(X) or the real and imaginary parts side by side")
    X = np.asarray(X)
    if X.dtype == object or not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise ValueError(f"{name} must be numeric, got an array of dtype {X.dtype}")
    X = X.astype(dtype, copy=False)
    if X.ndim != 2:
        hint = ("flatten images (n, H, W[, C]) with X.reshape(len(X), -1) or, better, compare "
                "a model's activations to them" if X.ndim >= 3 else "reshape to (n, d)")
        raise ValueError(f"{name} must be 2-D (n stimuli, d features), got shape {X.shape}; "
                         f"pool token-level activations first, or {hint}")
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


def scale_exponent(X: np.ndarray) -> int:
    """The power of two ``e`` such that ``X * 2**-e`` has its largest finite entry in a safe
    range (0 when it is already there, or when ``X`` has no non-zero finite entry)."""
    finite = np.abs(X[np.isfinite(X)])
    top = float(finite.max()) if finite.size else 0.0
    if top == 0.0 or 2.0 ** -_SAFE_EXPONENT <= top <= 2.0 ** _SAFE_EXPONENT:
        return 0
    return int(np.frexp(top)[1])


def unit_scaled(X: np.ndarray) -> np.ndarray:
    """``X`` divided by a power of two when its magnitude is extreme (see :func:`scale_exponent`).

    Scale-invariant measures call this before squaring anything: at ~1e154 squares overflow and
    at ~1e-160 they underflow. A power of two is exact, and inputs of ordinary magnitude are
    returned unchanged, so their values do not move by a single bit.
    """
    exponent = scale_exponent(X)
    return np.ldexp(X, -exponent) if exponent else X


def positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``; bools, floats (``2.5``, even ``3.0``) and strings raise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def fraction(value: Any, name: str, *, closed_high: bool = False) -> float:
    """``value`` as a float in (0, 1) (``(0, 1]`` with ``closed_high``)."""
    ok = (isinstance(value, Real) and not isinstance(value, (bool, np.bool_))
          and 0 < value and (value <= 1 if closed_high else value < 1))
    if not ok:
        interval = "(0, 1]" if closed_high else "(0, 1)"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)
