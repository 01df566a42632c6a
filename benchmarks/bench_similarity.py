"""Benchmark the layer-by-layer similarity matrix at large n, beside the bare float32 products.

Inputs are what ``activations.extract`` returns: float32 ``(n, d)`` layers (residual-stream-like
synthetic models, d = 384). Three parts:

- scaling: ``similarity_matrix`` for debiased linear CKA (4 + 4 layers) and mutual 10-NN (one
  pair) at n = 1k ... 50k, each beside its floor -- the bare float32 products any exact method
  needs: ``X_iᵀ Y_j`` over all n rows for every CKA pair (one GEMM each, no centring), and the
  ``n x n`` score products ``U Uᵀ`` of each k-NN layer (in row blocks, nothing else);
- the ``MinibatchCKA`` accumulator on the largest pair, for reference (a different estimator);
- grids: 12 + 12 layers at n = 20,000 for CKA (biased and debiased) and mutual k-NN, each in its
  own process under ``/usr/bin/time -v`` for its CPU time and peak RSS (and the RSS once the
  inputs are built, so the measure's own share shows).

The BLAS and its thread count (threadpoolctl) go into the output. Timings on a shared machine
are inflated by the other jobs: compare the ratios and the CPU times (user + sys), not the wall
times. The default run takes about 10 minutes of CPU.

Usage: ``python benchmarks/bench_similarity.py [--quick]`` (``--quick``: n up to 5k, grids at
n = 4,096 with 4 + 4 layers). Writes ``benchmarks/results/similarity.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_info

from resonance import similarity as S

RESULTS = Path(__file__).resolve().parent / "results" / "similarity.json"
D = 384
SCALING_N = (1_000, 2_000, 5_000, 10_000, 20_000, 50_000)
KNN_FLOOR_MAX_N = 20_000   # the k-NN floor at 50k would cost as much as the search itself
GRID_MEASURES = ("cka_linear", "cka_linear_debiased", "mutual_knn")


def synthetic_model(n: int, d: int, layers: int, seed: int) -> list[np.ndarray]:
    """Residual-stream-like float32 layers: each is the previous one plus a nonlinear update and
    noise, with a shared offset (decoder states carry a large common mean)."""
    rng = np.random.default_rng(seed)
    stimuli = np.random.default_rng(0).standard_normal((n, 32), dtype=np.float32)
    h = stimuli @ rng.standard_normal((32, d), dtype=np.float32) / np.float32(np.sqrt(32))
    model = []
    for _ in range(layers):
        update = rng.standard_normal((d, d), dtype=np.float32) / np.float32(np.sqrt(d))
        h = h + np.tanh(h @ update) + 0.3 * rng.standard_normal((n, d), dtype=np.float32)
        model.append(h + np.float32(3.0))
    return model


def timed(fn: Callable[[], object]) -> tuple[dict[str, float], object]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}, result


def cka_floor(model_a: list[np.ndarray], model_b: list[np.ndarray]) -> None:
    for X in model_a:
        for Y in model_b:
            X.T @ Y


def knn_floor(model: list[np.ndarray]) -> None:
    for X in model:
        rows = max(1, S._SCORE_ELEMENTS // X.shape[0])
        for start in range(0, X.shape[0], rows):
            X[start:start + rows] @ X.T


def blas() -> list[dict]:
    return [{key: info.get(key) for key in ("internal_api", "version", "num_threads",
                                            "threading_layer", "architecture")}
            for info in threadpool_info()]


def scaling(sizes: tuple[int, ...], cka_layers: int) -> list[dict]:
    rows = []
    for n in sizes:
        model_a = synthetic_model(n, D, cka_layers, 1)
        model_b = synthetic_model(n, D, cka_layers, 2)
        times, _ = timed(lambda: S.similarity_matrix(model_a, model_b, "cka_linear_debiased"))
        floor, _ = timed(lambda: cka_floor(model_a, model_b))
        form = S._linear_form(n, [D] * cka_layers, [D] * cka_layers, same=False)
        rows.append({"measure": "cka_linear_debiased", "n": n, "d": D,
                     "layers": f"{cka_layers}+{cka_layers}", "form": form, **times,
                     "floor_wall_s": floor["wall_s"], "floor_cpu_s": floor["cpu_s"],
                     "cpu_ratio_to_floor": times["cpu_s"] / floor["cpu_s"]})
        print_row(rows[-1])
        pair = [model_a[-1]], [model_b[-1]]
        times, _ = timed(lambda: S.similarity_matrix(*pair, "mutual_knn"))
        row = {"measure": "mutual_knn", "n": n, "d": D, "layers": "1+1", "form": "row blocks",
               **times}
        if n <= KNN_FLOOR_MAX_N:
            floor, _ = timed(lambda: knn_floor(pair[0] + pair[1]))
            row.update(floor_wall_s=floor["wall_s"], floor_cpu_s=floor["cpu_s"],
                       cpu_ratio_to_floor=times["cpu_s"] / floor["cpu_s"])
        rows.append(row)
        print_row(row)
    return rows


def minibatch(n: int, batch: int) -> dict:
    X, Y = synthetic_model(n, D, 1, 1)[0], synthetic_model(n, D, 1, 2)[0]

    def run() -> float:
        accumulator = S.MinibatchCKA()
        for start in range(0, n, batch):
            accumulator.update(X[start:start + batch], Y[start:start + batch])
        return accumulator.value()

    times, value = timed(run)
    full_times, full = timed(lambda: S.cka(X, Y, debiased=True))
    return {"n": n, "d": D, "batch": batch, "minibatch": times, "minibatch_value": value,
            "cka_full_n": full_times, "cka_full_n_value": full}


def grid_child(measure: str, n: int, layers: int) -> None:
    """One grid, in this process: print the RSS after the inputs and the measure's times."""
    model_a, model_b = synthetic_model(n, D, layers, 1), synthetic_model(n, D, layers, 2)
    inputs_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times, table = timed(lambda: S.similarity_matrix(model_a, model_b, measure))
    values = table["value"].to_numpy()
    print(json.dumps({"inputs_rss_mib": inputs_rss, **times,
                      "value_range": [float(values.min()), float(values.max())]}))


def grid(measure: str, n: int, layers: int) -> dict:
    command = ["/usr/bin/time", "-v", sys.executable, __file__, "--grid-child", measure,
               "--n", str(n), "--layers", str(layers)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return {"measure": measure, "n": n, "layers": f"{layers}+{layers}",
                "returncode": done.returncode, "stderr_tail": done.stderr[-2000:]}
    child = json.loads(done.stdout.strip().splitlines()[-1])

    def field(label: str) -> float:
        return float(re.search(rf"{re.escape(label)}: ([\d.:]+)", done.stderr).group(1))

    peak = field("Maximum resident set size (kbytes)") / 1024
    return {"measure": measure, "n": n, "d": D, "layers": f"{layers}+{layers}",
            "form": (S._linear_form(n, [D] * layers, [D] * layers, same=False)
                     if measure.startswith("cka") else "row blocks"),
            "returncode": 0, **child,
            "process_user_s": field("User time (seconds)"),
            "process_sys_s": field("System time (seconds)"),
            "peak_rss_mib": peak, "measure_rss_mib": peak - child["inputs_rss_mib"]}


def print_row(row: dict) -> None:
    floor = (f"floor cpu {row['floor_cpu_s']:7.2f} s  x{row['cpu_ratio_to_floor']:.2f}"
             if "floor_cpu_s" in row else "floor not timed")
    print(f"{row['measure']:<20} n={row['n']:>6} {row['layers']:>4} {row['form']:<10} "
          f"cpu {row['cpu_s']:7.2f} s  wall {row['wall_s']:7.2f} s  {floor}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n <= 5k; grids 4+4 at n=4096")
    parser.add_argument("--grid-child", metavar="MEASURE", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=20_000, help="grid stimuli")
    parser.add_argument("--layers", type=int, default=12, help="grid layers per model")
    args = parser.parse_args()
    if args.grid_child:
        grid_child(args.grid_child, args.n, args.layers)
        return
    sizes = SCALING_N[:3] if args.quick else SCALING_N
    grid_n, grid_layers = (4096, 4) if args.quick else (args.n, args.layers)
    warm = synthetic_model(S._TOPK_WITH_TORCH, 16, 2, 0)  # warm up BLAS threads, import torch
    S.similarity_matrix(warm, warm, "cka_linear")
    S.similarity_matrix(warm, warm, "mutual_knn")
    started = time.process_time()
    print(f"BLAS: {blas()}")
    scaled = scaling(sizes, cka_layers=4)
    mini = minibatch(sizes[-1], batch=2048)
    print(f"one pair at n={mini['n']}: full-n debiased cka {mini['cka_full_n']['cpu_s']:.2f} s "
          f"cpu ({mini['cka_full_n_value']:.4f}); MinibatchCKA (batches of {mini['batch']}) "
          f"{mini['minibatch']['cpu_s']:.2f} s cpu ({mini['minibatch_value']:.4f})", flush=True)
    grids = []
    for measure in GRID_MEASURES:
        grids.append(grid(measure, grid_n, grid_layers))
        g = grids[-1]
        if g["returncode"]:
            print(f"grid {measure}: FAILED with return code {g['returncode']}", flush=True)
            continue
        print(f"grid {measure} {g['layers']} n={g['n']} ({g['form']}): cpu {g['cpu_s']:.1f} s, "
              f"wall {g['wall_s']:.1f} s; peak RSS {g['peak_rss_mib']:.0f} MiB "
              f"({g['inputs_rss_mib']:.0f} MiB once the inputs are built)", flush=True)
    results = {
        "note": "shared 2-core machine under load from other jobs: compare ratios and CPU "
                "times; wall times are inflated",
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "numpy": np.__version__, "blas": blas(), "input_dtype": "float32", "d": D,
        "scaling": scaled, "minibatch_reference": mini, "grids": grids,
        "benchmark_cpu_s_parent": time.process_time() - started,
        "benchmark_cpu_s_grids": sum(g.get("process_user_s", 0) + g.get("process_sys_s", 0)
                                     for g in grids),
    }
    out = RESULTS.with_name("similarity_quick.json") if args.quick else RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
