"""CPU time of 07_finetuning_topology's per-checkpoint topology pipeline, on synthetic clouds.

One "checkpoint" of one layer at the paper profile: B = 3 disjoint subsamples of m = 160
points in d = 128, each through Rips H0+H1 (ripser) and the 41-feature summary; one
Gaussian-matched control cloud; then the W2 (order 2, persim's L2 ground metric) between the
H1 diagrams of two checkpoints, for real-like (a low-dimensional latent plus noise) and
Gaussian clouds, whose H1 diagrams differ a lot in size (the assignment problem is cubic in
the number of bars). Reports CPU seconds (``time.process_time``) per operation and per
checkpoint x layer, and the implied cost of one run (13 checkpoints x 5 layers, all pairs).
Writes ``benchmarks/results/finetuning_topology.json``.

    python benchmarks/bench_finetuning_topology.py [--quick]
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results" / "finetuning_topology.json"
M, D, B, CHECKPOINTS, LAYERS = 160, 128, 3, 13, 5


def _cpu(fn, repeats: int) -> tuple[float, object]:
    t0 = time.process_time()
    for _ in range(repeats):
        out = fn()
    return (time.process_time() - t0) / repeats, out


def main(quick: bool = False) -> dict:
    from resonance import stats, topology, trajectories

    rng = np.random.default_rng(0)
    latent = rng.normal(size=(B * M, 8))
    X = np.tanh(latent @ rng.normal(size=(8, D))) + 0.05 * rng.normal(size=(B * M, D))
    X2 = X + 0.02 * rng.normal(size=X.shape)
    reps = 2 if quick else 10
    ph, (dgm, _) = _cpu(lambda: trajectories.h1_and_summary(X[:M]), reps)
    dgm2, _ = trajectories.h1_and_summary(X2[:M])
    G = stats.gaussian_like(X[:M], rng)
    ph_gauss, (gdgm, _) = _cpu(lambda: trajectories.h1_and_summary(G), reps)
    gdgm2, _ = trajectories.h1_and_summary(stats.gaussian_like(X[:M], rng))
    w2, _ = _cpu(lambda: topology.diagram_distance(dgm, dgm2, order=2), reps * 5)
    w2_gauss, _ = _cpu(lambda: topology.diagram_distance(gdgm, gdgm2, order=2), reps)
    pairs = CHECKPOINTS * (CHECKPOINTS - 1) // 2
    per_ckpt_layer = B * ph + ph_gauss
    per_run = (CHECKPOINTS * LAYERS * per_ckpt_layer
               + LAYERS * pairs * (B * w2 + w2_gauss))
    result = {
        "benchmark": "finetuning_topology", "m": M, "d": D, "subsamples": B,
        "h1_bars_real_like": int(len(dgm)), "h1_bars_gaussian": int(len(gdgm)),
        "cpu_s": {"ph_h0h1_plus_summary": ph, "ph_gaussian": ph_gauss, "w2_real_like": w2,
                  "w2_gaussian": w2_gauss, "per_checkpoint_layer_ph": per_ckpt_layer,
                  "per_run_topology_all_pairs": per_run},
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
        "note": "CPU time on the shared 2-core machine; other jobs ran beside it",
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    for k, v in result["cpu_s"].items():
        print(f"{k:32s} {v * 1000:9.1f} ms")
    print(f"H1 bars: real-like {len(dgm)}, Gaussian {len(gdgm)}")
    return result


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
