"""Time and memory of resonance.topology on one synthetic layer: n = 1000 stimuli, d = 384.

Cases: the subsampling itself (landmark / random, 1000 -> 500), PH H0+H1 after landmark
subsampling to the default ``max_points`` and on all 1000 points, RTD and topological
resonance at their defaults.  Each case runs in a fresh subprocess so that its peak RSS
(``resource`` maxrss, which includes ripser's C++ memory) is its own; ``tracemalloc`` peak
counts Python/NumPy allocations only.  Prints a table, writes ``benchmarks/results/topology.json``.

    python benchmarks/bench_topology.py
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

N, D, SEED = 1000, 384, 0
OUT = Path(__file__).resolve().parent / "results" / "topology.json"


def layers() -> tuple[np.ndarray, np.ndarray]:
    """Two 'models' of the same 1000 stimuli: different nonlinear maps of a 16-d latent."""
    rng = np.random.default_rng(SEED)
    Z = rng.normal(size=(N, 16))
    X = np.tanh(Z @ rng.normal(size=(16, 64))) @ rng.normal(size=(64, D))
    Y = np.maximum(Z @ rng.normal(size=(16, 96)), 0) @ rng.normal(size=(96, D))
    X += 0.1 * rng.normal(size=(N, D))
    Y += 0.1 * rng.normal(size=(N, D))
    return X, Y


def cases():
    from resonance import topology as T
    return {
        "subsample_landmark_500": (lambda X, Y: T.subsample(X, 500, method="landmark"), 3),
        "subsample_random_500": (lambda X, Y: T.subsample(X, 500, method="random"), 3),
        "ph_h0h1_landmark_default": (lambda X, Y: T.persistence(X), 3),
        "ph_h0h1_full_1000": (lambda X, Y: T.persistence(X, max_points=N), 1),
        "rtd_default": (lambda X, Y: T.rtd(X, Y), 1),
        "topological_resonance_default": (lambda X, Y: T.topological_resonance(X, Y).value, 1),
    }


def run_case(name: str) -> dict:
    X, Y = layers()
    fn, repeats = cases()[name]
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn(X, Y)
        times.append(time.perf_counter() - t0)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    fn(X, Y)
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out = {"case": name, "repeats": repeats, "time_s_min": min(times),
           "time_s_median": float(np.median(times)), "tracemalloc_peak_mb": traced / 2**20,
           "maxrss_mb": peak_rss / 1024, "maxrss_delta_mb": (peak_rss - base_rss) / 1024}
    if isinstance(result, float):
        out["value"] = result
    elif isinstance(result, list):
        out["bars"] = [len(d) for d in result]
    return out


def main() -> None:
    import inspect

    from resonance.topology import persistence
    from importlib.metadata import version
    rows = []
    for name in cases():
        proc = subprocess.run([sys.executable, __file__, "--case", name], capture_output=True,
                              text=True, check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"n={N} d={D}; default max_points="
          f"{inspect.signature(persistence).parameters['max_points'].default}; "
          f"{os.cpu_count()} CPUs; ripser {version('ripser')}, persim {version('persim')}")
    print(f"{'case':32s} {'time min (s)':>12s} {'median':>8s} {'maxrss (MB)':>12s} "
          f"{'Δrss (MB)':>10s} {'tracemalloc (MB)':>17s}  result")
    for r in rows:
        extra = r.get("value", r.get("bars", ""))
        print(f"{r['case']:32s} {r['time_s_min']:12.3f} {r['time_s_median']:8.3f} "
              f"{r['maxrss_mb']:12.1f} {r['maxrss_delta_mb']:10.1f} "
              f"{r['tracemalloc_peak_mb']:17.1f}  {extra}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "n": N, "d": D, "seed": SEED, "cpus": os.cpu_count(), "python": platform.python_version(),
        "ripser": version("ripser"), "persim": version("persim"),
        "note": "shared machine; timings are noisy", "cases": rows}, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--case":
        print(json.dumps(run_case(sys.argv[2])))
    else:
        main()
