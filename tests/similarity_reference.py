"""Inputs for tests/test_similarity_large.py and the script that recorded their reference values.

The reference values in ``tests/data/similarity_reference.json`` were computed once, with the
library as it was before the large-n rewrite (commit e14cc5c: float64 copies of every layer,
whole-Gram neighbour search). They pin today's numbers so that the new code paths (feature form,
float32 storage, blocked neighbour search) are checked against the old results, not against
themselves. Do not regenerate them with newer code; add new cases instead.

Usage (only to add cases): ``python tests/similarity_reference.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

REFERENCE = Path(__file__).resolve().parent / "data" / "similarity_reference.json"


def residual_model(n: int, d: int, layers: int, seed: int, offset: float = 0.0,
                   dtype=np.float32) -> list[np.ndarray]:
    """Residual-stream-like layers over shared stimuli: each layer = previous + tanh update."""
    rng = np.random.default_rng(seed)
    stimuli = np.random.default_rng(0).standard_normal((n, 16))
    h = stimuli @ rng.standard_normal((16, d)) / 4.0
    out = []
    for _ in range(layers):
        update = np.tanh(h @ rng.standard_normal((d, d)) / np.sqrt(d))
        h = h + update + 0.3 * rng.standard_normal((n, d))
        out.append((h + offset).astype(dtype))
    return out


def clustered(n: int, d: int, seed: int, dtype=np.float32) -> np.ndarray:
    """Points around 40 cluster centres (many close neighbour scores), no duplicates."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, d))
    labels = rng.integers(0, 40, n)
    return (centres[labels] + 0.35 * rng.standard_normal((n, d))).astype(dtype)


def cases() -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    """name -> (layers_a, layers_b). Small and medium sizes the old code ran."""
    return {
        # float32, n > d: feature form; model B carries a large shared mean (centring precision)
        "resid32": (residual_model(1500, 64, 3, 1), residual_model(1500, 48, 3, 2, offset=6.0)),
        # float64 input, the same shapes
        "resid64": (residual_model(800, 40, 3, 3, dtype=np.float64),
                    residual_model(800, 56, 2, 4, dtype=np.float64)),
        # float32, d > n: Gram form
        "wide32": (residual_model(300, 700, 2, 5), residual_model(300, 520, 2, 6, offset=2.0)),
        # clustered float32 points: close neighbour scores for the k-NN measures
        "clustered32": ([clustered(2000, 32, 7), clustered(2000, 24, 8)],
                        [clustered(2000, 32, 7) + clustered(2000, 32, 9) * 0.3]),
        # medium: n = 4096, d = 384 float32 (as activations.extract returns them)
        "medium32": (residual_model(4096, 384, 2, 10),
                     residual_model(4096, 384, 2, 11, offset=1.0)),
    }


MATRIX_MEASURES = {
    "cka_linear": {}, "cka_linear_debiased": {},
    "mutual_knn": {"k": 10}, "mutual_knn_clamped": {"k": 10, "clamp_quantile": 0.95},
    "cknna": {"k": 10},
}


def measure_name(label: str) -> str:
    return label.removesuffix("_clamped")


def record() -> dict:
    from resonance import similarity as S

    out: dict = {"commit": "e14cc5c", "cases": {}}
    for name, (a, b) in cases().items():
        entry: dict = {}
        for label, kw in MATRIX_MEASURES.items():
            if name == "medium32" and label == "cknna":
                kw = {"k": 5}
            entry[label] = S.similarity_matrix(a, b, measure_name(label), **kw)["value"].tolist()
        entry["cka_linear_debiased_same"] = S.similarity_matrix(
            a, a, "cka_linear_debiased")["value"].tolist()
        entry["cka_pair"] = [S.cka(a[0], b[-1]), S.cka(a[0], b[-1], debiased=True)]
        batches = np.array_split(np.arange(a[0].shape[0]), 3)
        minibatch = S.MinibatchCKA()
        for rows in batches:
            minibatch.update(a[-1][rows], b[0][rows])
        entry["minibatch_cka"] = minibatch.value()
        out["cases"][name] = entry
        print(name, {k: np.round(v, 4).tolist() for k, v in entry.items()}, flush=True)
    return out


if __name__ == "__main__":
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    REFERENCE.write_text(json.dumps(record(), indent=1) + "\n")
    print(f"wrote {REFERENCE}")
