"""Benchmark similarity_matrix (debiased linear CKA) against a naive per-pair path and bare Grams.

Two synthetic L-layer "models" over the same n stimuli, float32 activations of width d. Compared:

- ``similarity_matrix``: each layer's Gram computed once (band by band), all L×L pairs batched;
- naive: every pair recomputes both Gram matrices (timed on a few pairs, extrapolated to L×L);
- per-pair feature-space ``cka`` (what a loop of ``cka`` calls costs; also extrapolated);
- bare products: only the 2L Gram matrices ``X Xᵀ`` (float64), the floor for any Gram method.

Usage: ``python benchmarks/bench_similarity.py [--n 4096 --d 768 --layers 12] [--quick]``.
Writes the numbers to ``benchmarks/results/similarity.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
import tracemalloc
from pathlib import Path
from typing import Callable

import numpy as np

from resonance import similarity as S

RESULTS = Path(__file__).resolve().parent / "results" / "similarity.json"
MEASURE = "cka_linear_debiased"


def synthetic_model(n: int, d: int, layers: int, seed: int, stimuli: np.ndarray) -> list[np.ndarray]:
    """Residual-stream-like layers: each is the previous one plus a random linear update."""
    rng = np.random.default_rng(seed)
    h = stimuli @ rng.standard_normal((stimuli.shape[1], d)).astype(np.float32) / np.sqrt(d)
    model = []
    for _ in range(layers):
        update = rng.standard_normal((d, d)).astype(np.float32) / np.sqrt(d)
        h = h + np.tanh(h @ update) + 0.1 * rng.standard_normal((n, d)).astype(np.float32)
        model.append(h)
    return model


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bare_gram_seconds(model_a: list[np.ndarray], model_b: list[np.ndarray]) -> float:
    """Time of the 2L float64 Gram products alone (inputs converted beforehand, not timed)."""
    total = 0.0
    for X in model_a + model_b:
        X64 = X.astype(np.float64)
        total += timed(lambda: X64 @ X64.T)[0]
    return total


def naive_pair(X: np.ndarray, Y: np.ndarray) -> float:
    """Debiased CKA of one pair, recomputing both Grams (what a per-pair Gram loop does)."""
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    return S._pair_gram_layers(S._gram_layer(X64, debiased=True), S._gram_layer(Y64, debiased=True))


def feature_space_pair(X: np.ndarray, Y: np.ndarray) -> float:
    return S.cka(X, Y, debiased=True)


def sample_pairs(layers: int, count: int) -> list[tuple[int, int]]:
    rng = np.random.default_rng(0)
    return [(int(i), int(j)) for i, j in rng.integers(0, layers, size=(count, 2))]


def one_round(model_a, model_b, pairs) -> tuple[dict[str, float], np.ndarray, dict[str, float]]:
    """Seconds of each path (naive ones per pair), the matrix, and per-pair deviations from it."""
    layers = len(model_a)
    seconds, table = timed(lambda: S.similarity_matrix(model_a, model_b, MEASURE))
    matrix = table["value"].to_numpy().reshape(layers, len(model_b))
    times = {"matrix": seconds, "bare": bare_gram_seconds(model_a, model_b)}
    deviations = {}
    for label, fn in (("naive", naive_pair), ("feature", feature_space_pair)):
        runs = [timed(lambda: fn(model_a[i], model_b[j])) for i, j in pairs]
        times[label] = float(np.mean([elapsed for elapsed, _ in runs]))
        deviations[label] = max(abs(value - matrix[i, j]) for (_, value), (i, j) in zip(runs, pairs))
    return times, matrix, deviations


def matrix_peak_memory(model_a, model_b) -> int:
    tracemalloc.start()
    S.similarity_matrix(model_a, model_b, MEASURE)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--naive-pairs", type=int, default=3,
                        help="pairs timed for the naive paths (extrapolated to layers²)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds of every path; each path keeps its fastest")
    parser.add_argument("--quick", action="store_true", help="n=1024, d=256, 6 layers")
    args = parser.parse_args()
    if args.quick:
        args.n, args.d, args.layers = 1024, 256, 6
    n, d, layers = args.n, args.d, args.layers

    stimuli = np.random.default_rng(0).standard_normal((n, 64)).astype(np.float32)
    model_a = synthetic_model(n, d, layers, 1, stimuli)
    model_b = synthetic_model(n, d, layers, 2, stimuli)
    S.linear_gram(model_a[0][:256].astype(np.float64))  # warm up BLAS threads

    pairs = sample_pairs(layers, args.naive_pairs)
    rounds = [one_round(model_a, model_b, pairs) for _ in range(args.rounds)]
    best = {path: min(times[path] for times, _, _ in rounds) for path in rounds[0][0]}
    deviations = {path: max(dev[path] for _, _, dev in rounds) for path in rounds[0][2]}
    peak_bytes = matrix_peak_memory(model_a, model_b)

    n_pairs = layers * layers
    naive_s, feature_s = best["naive"] * n_pairs, best["feature"] * n_pairs
    results = {
        "n": n, "d": d, "layers": layers, "measure": MEASURE, "input_dtype": "float32",
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "rounds_best_of": args.rounds,
        "naive_pairs_timed": len(pairs),
        "similarity_matrix_s": best["matrix"],
        "bare_gram_products_s": best["bare"],
        "naive_gram_per_pair_s_extrapolated": naive_s,
        "feature_space_cka_per_pair_s_extrapolated": feature_s,
        "speedup_vs_naive": naive_s / best["matrix"],
        "speedup_vs_feature_space_loop": feature_s / best["matrix"],
        "ratio_to_bare_products": best["matrix"] / best["bare"],
        "max_abs_deviation_naive": deviations["naive"],
        "max_abs_deviation_feature_space": deviations["feature"],
        "all_rounds_s": [times for times, _, _ in rounds],
        "tracemalloc_peak_mib": peak_bytes / 2**20,
        "process_max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)


def print_table(r: dict) -> None:
    print(f"debiased linear CKA, {r['layers']}x{r['layers']} layers, n={r['n']}, d={r['d']} "
          f"(float32 inputs, float64 arithmetic; fastest of {r['rounds_best_of']} interleaved "
          "rounds per path; shared machine)")
    rows = [
        ("similarity_matrix (each Gram once, banded)", r["similarity_matrix_s"], 1.0),
        ("bare Gram products only (2L x X Xᵀ)", r["bare_gram_products_s"],
         r["bare_gram_products_s"] / r["similarity_matrix_s"]),
        (f"naive per-pair Grams (extrapolated from {r['naive_pairs_timed']} pairs)",
         r["naive_gram_per_pair_s_extrapolated"], r["speedup_vs_naive"]),
        (f"per-pair feature-space cka (extrapolated from {r['naive_pairs_timed']} pairs)",
         r["feature_space_cka_per_pair_s_extrapolated"], r["speedup_vs_feature_space_loop"]),
    ]
    print(f"{'path':<62}{'seconds':>10}{'x matrix':>10}")
    for name, seconds, ratio in rows:
        print(f"{name:<62}{seconds:>10.2f}{ratio:>10.2f}")
    print(f"similarity_matrix / bare products: {r['ratio_to_bare_products']:.2f}x "
          f"(goal <= 3); naive / similarity_matrix: {r['speedup_vs_naive']:.1f}x (goal >= 10)")
    print(f"peak traced memory in similarity_matrix: {r['tracemalloc_peak_mib']:.0f} MiB; "
          f"process max RSS: {r['process_max_rss_mib']:.0f} MiB")
    print(f"max |naive - matrix| = {r['max_abs_deviation_naive']:.1e}, "
          f"max |feature-space - matrix| = {r['max_abs_deviation_feature_space']:.1e}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
