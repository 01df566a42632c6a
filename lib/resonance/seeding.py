"""One place that makes a run deterministic."""

from __future__ import annotations

import os
import random

import numpy as np


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and (if installed) PyTorch; return a fresh NumPy ``Generator``.

    Also asks PyTorch for deterministic kernels, so CPU results are bitwise repeatable.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    else:
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
    return np.random.default_rng(seed)


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def numeric_environment(*, torch_too: bool | None = None) -> dict:
    """What changes floating-point bits between two runs of the same code on CPU.

    torch's intra-op thread count and its CPU kernel level (AVX2/AVX-512), the BLAS behind
    NumPy and torch, their versions and the thread variables of OpenMP/MKL/OpenBLAS. Results
    are bitwise repeatable only where all of these agree. ``torch_too=None`` describes torch
    only if something already imported it (importing it just to describe it would be slow).
    """
    import sys

    env: dict = {"numpy": np.__version__, "numpy_blas": _numpy_blas(),
                 "thread_variables": {v: os.environ.get(v) for v in _THREAD_VARIABLES}}
    if torch_too is None:
        torch_too = "torch" in sys.modules
    if torch_too:
        import torch

        env.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                   torch_cpu_capability=torch.backends.cpu.get_cpu_capability(),
                   torch_blas=_torch_blas(torch))
    return env


def _numpy_blas() -> str:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}".strip()
    except Exception:  # older NumPy: no dict mode
        return "unknown"


def _torch_blas(torch) -> str:
    import re

    found = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    return found.group(1) if found else "unknown"
