"""12 x 12 layer grids at n = 2,048, d = 768: our NumPy and torch-CPU paths, their floor, peers.

One run times, on the same float32 inputs (residual-stream-like synthetic models, as
``bench_similarity.synthetic_model``):

- ours: ``similarity_matrix`` for linear CKA (biased, debiased) and mutual 10-NN, with the
  default NumPy backend and with ``device="cpu"`` (the torch backend on CPU);
- the floor: the matrix products no exact method of this form avoids -- each of the 24 layers'
  ``n x n`` float32 product ``X Xᵀ`` once (the Grams of CKA; the cosine scores of k-NN, on unit
  rows), by NumPy's BLAS (a SYRK). Everything else (centring, band pairings, top-k, re-ranking)
  is overhead on top of it;
- peer-style per-pair baselines, written here from the published definitions (no code copied):
  a platonic-rep-style CKA (Huh et al. 2024: biased HSIC ``tr(K H L H)`` with an explicit
  centring matrix, torch float32) and mutual k-NN (normalise, ``X Xᵀ``, top-k, n x n masks,
  every pair from scratch); a per-pair torch debiased CKA as minibatch-CKA packages compute it
  (``tr(K L)`` through the product ``K @ L``); naive per-pair NumPy float64 Grams (centred ``K``,
  ``L``, their Frobenius product). The peers are timed on a few pairs and scaled to the 144
  pairs of the grid (they cost the same per pair); their values are checked against ours.

The ratios are computed from CPU time (user + sys of this process) -- the machine is shared
with other jobs, so wall times are inflated and even CPU times are (shared caches); the load
average is recorded. Usage: ``python benchmarks/bench_floor.py [--quick]`` (``--quick``:
n = 512, 4 + 4 layers). Writes ``benchmarks/results/floor.json`` and ``floor.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import machine, write  # noqa: E402
from bench_similarity import blas, synthetic_model  # noqa: E402

from resonance import similarity as S  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
K = 10


def timed(fn: Callable[[], object], repeats: int = 1) -> tuple[dict[str, float], object]:
    """The fastest of ``repeats`` runs (CPU time of this process, and wall)."""
    best = None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        times = {"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall}
        if best is None or times["cpu_s"] < best["cpu_s"]:
            best = times
    return best, result


def floor(layers: list[np.ndarray]) -> None:
    for X in layers:
        X @ X.T


# ---- peer-style per-pair baselines (own code, from the published definitions) ----------------

def platonic_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Biased linear CKA as in Huh et al.'s metrics: Grams, ``tr(K H L H)`` with H explicit."""
    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    K, L = x @ x.T, y @ y.T
    n = K.shape[0]
    H = torch.eye(n) - torch.ones(n, n) / n

    def hsic(A, B):
        return torch.trace(A @ H @ B @ H) / (n - 1) ** 2

    return float(hsic(K, L) / torch.sqrt(hsic(K, K) * hsic(L, L)))


def platonic_mutual_knn(X: np.ndarray, Y: np.ndarray, k: int = K) -> float:
    """Mutual k-NN as in Huh et al.: unit rows, ``X Xᵀ`` with the diagonal excluded, top-k,
    n x n neighbour masks, the mean share of neighbours both masks hold."""
    def mask(A):
        a = torch.nn.functional.normalize(torch.from_numpy(A), dim=1)
        scores = a @ a.T
        scores.fill_diagonal_(-1e8)
        top = torch.topk(scores, k, dim=1).indices
        return torch.zeros_like(scores).scatter_(1, top, 1.0)

    return float(((mask(X) * mask(Y)).sum(1) / k).mean())


def torch_debiased_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Debiased CKA per pair as minibatch-CKA packages compute it: Grams with zeroed diagonals,
    ``tr(K L)`` and ``1ᵀ K L 1`` through the product ``K @ L``."""
    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    x, y = x - x.mean(0), y - y.mean(0)
    K, L = x @ x.T, y @ y.T
    K.fill_diagonal_(0)
    L.fill_diagonal_(0)
    n = K.shape[0]

    def hsic(A, B):
        AB = A @ B
        return (torch.trace(AB) + A.sum() * B.sum() / ((n - 1) * (n - 2))
                - 2 * AB.sum() / (n - 2)) / (n * (n - 3))

    return float(hsic(K, L) / torch.sqrt(hsic(K, K) * hsic(L, L)))


def naive_gram_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Biased linear CKA from two float64 NumPy Grams, centred, per pair."""
    def centred_gram(A):
        A = A.astype(np.float64)
        G = A @ A.T
        return G - G.mean(0) - G.mean(1)[:, None] + G.mean()

    K, L = centred_gram(X), centred_gram(Y)
    return float(np.vdot(K, L) / np.sqrt(np.vdot(K, K) * np.vdot(L, L)))


PEERS = {  # name: (function, our measure it computes, pairs timed at full size)
    "platonic-rep-style CKA (per pair, torch, explicit H)": (platonic_cka, "cka_linear", 2),
    "platonic-rep-style mutual k-NN (per pair, torch)": (platonic_mutual_knn, "mutual_knn", 12),
    "per-pair torch debiased CKA (K @ L)": (torch_debiased_cka, "cka_linear_debiased", 4),
    "naive per-pair NumPy float64 Grams": (naive_gram_cka, "cka_linear", 12),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 512, 4 + 4 layers")
    args = parser.parse_args()
    n, d, layers = (512, 128, 4) if args.quick else (2048, 768, 12)
    load = os.getloadavg()
    a, b = synthetic_model(n, d, layers, 1), synthetic_model(n, d, layers, 2)
    S.similarity_matrix(a[:1], b[:1], "mutual_knn", device="cpu")  # imports, threads
    pairs = layers * layers
    started = time.process_time()
    floor_times, _ = timed(lambda: floor(a + b), repeats=3)
    rows, ours = [], {}
    for measure in ("cka_linear", "cka_linear_debiased", "mutual_knn"):
        for backend, options in (("numpy", {}), ("torch-cpu", {"device": "cpu"})):
            times, table = timed(lambda: S.similarity_matrix(a, b, measure, **options), repeats=2)
            values = table["value"].to_numpy().reshape(layers, layers)
            ours[(measure, backend)] = values
            rows.append({"method": f"ours, {backend}", "measure": measure, "pairs": pairs,
                         **times, "cpu_ratio_to_floor": times["cpu_s"] / floor_times["cpu_s"]})
            print(rows[-1], flush=True)
    agreement = {measure: float(np.abs(ours[(measure, "numpy")]
                                       - ours[(measure, "torch-cpu")]).max())
                 for measure in ("cka_linear", "cka_linear_debiased", "mutual_knn")}
    for name, (fn, measure, timed_pairs) in PEERS.items():
        timed_pairs = min(timed_pairs, pairs)
        chosen = [(i % layers, (i * 5 + 3) % layers) for i in range(timed_pairs)]
        times, values = timed(lambda: [fn(a[i], b[j]) for i, j in chosen])
        per_pair = {key: value / timed_pairs for key, value in times.items()}
        grid = {key: value * pairs for key, value in per_pair.items()}
        ours_numpy = next(r for r in rows if r["measure"] == measure and r["method"] == "ours, numpy")
        rows.append({"method": name, "measure": measure, "pairs": pairs,
                     "pairs_timed": timed_pairs, **grid,
                     "cpu_ratio_to_floor": grid["cpu_s"] / floor_times["cpu_s"],
                     "slower_than_ours_numpy": grid["cpu_s"] / ours_numpy["cpu_s"],
                     "max_abs_diff_from_ours": float(np.max(np.abs(
                         np.asarray(values) - [ours[(measure, "numpy")][i, j]
                                               for i, j in chosen])))})
        print(rows[-1], flush=True)
    result = {
        "note": "shared 2-core machine under load from other jobs: ratios are of CPU time "
                "(user + sys of this process) and are inflated by the load too; wall times more so",
        "shape": {"n": n, "d": d, "layers": f"{layers}+{layers}", "k": K, "dtype": "float32"},
        "threads": {"torch": torch.get_num_threads(), "blas": blas(),
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "machine": machine(load), "floor": {"what": "24 float32 X Xᵀ (NumPy SYRK)", **floor_times},
        "linear_form": S._linear_form(n, [d] * layers, [d] * layers, same=False),
        "torch_vs_numpy_max_abs_diff": agreement, "rows": rows,
        "benchmark_cpu_s": time.process_time() - started,
    }
    name = "floor_quick" if args.quick else "floor"
    write(RESULTS / f"{name}.json", result)
    lines = [f"{layers} + {layers} layers, n = {n}, d = {d}, float32 (threads: torch "
             f"{torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}); "
             f"floor {floor_times['cpu_s']:.2f} s CPU; load average {load[0]:.1f} before, "
             f"{os.getloadavg()[0]:.1f} after", "",
             "| method | measure | CPU s (144 pairs) | wall s | ÷ floor (CPU) | note |",
             "|---|---|---:|---:|---:|---|"]
    for r in rows:
        note = (f"{r['pairs_timed']} pairs timed, scaled; {r['slower_than_ours_numpy']:.0f}x ours;"
                f" max diff {r['max_abs_diff_from_ours']:.1e}" if "pairs_timed" in r else "")
        lines.append(f"| {r['method']} | {r['measure']} | {r['cpu_s']:.2f} | {r['wall_s']:.2f} | "
                     f"{r['cpu_ratio_to_floor']:.2f} | {note} |")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
