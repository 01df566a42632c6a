"""Training throughput of each model family at a small and a medium size, on this CPU.

For gpt2 / llama / gru at two rungs of :func:`resonance.models.size_ladder` (parameter-matched
to gpt2, so the gru is wider): tokens per second of full AdamW training steps (the same
``_step`` as :func:`resonance.train.train`; batch 16 x context 128, synthetic tokens, vocab 4096)
at 1 thread, at torch's default thread count, and as two single-threaded processes side by
side (``workers=2``: how :func:`resonance.runs.train_many` and ``make reproduce`` use the two
cores; their tokens per second are summed), and that rate as a fraction of the machine's
measured float32 matmul rate (a 2048^3 ``torch.matmul``) at the same thread count (twice the
1-thread rate for two workers), counting 6 x params x tokens FLOPs per trained token (the tied
head included; attention's own FLOPs and the GRU's sequential structure ignored). ``speedup``
is each row's rate over the same model's 1-thread rate. Prints a table, writes
``benchmarks/results/train.json``.

    python benchmarks/bench_train.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch

from resonance import models
from resonance import train as T

OUT = Path(__file__).resolve().parent / "results" / "train.json"
VOCAB, CONTEXT, BATCH = 4096, 128, 16
RUNGS = {"small": 1, "medium": 3}  # LADDER rungs: d64/3L and d192/5L (gpt2 shapes)


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def throughput(family: str, rung: dict, seconds: float) -> dict:
    torch.manual_seed(0)
    model = models.build(family, VOCAB, rung["d_model"], rung["n_layers"],
                         n_heads=rung["n_heads"], context=CONTEXT)
    model.train()
    config = T.TrainConfig(family=family, d_model=rung["d_model"], n_layers=rung["n_layers"],
                           corpus="synthetic", vocab_size=VOCAB, context=CONTEXT,
                           batch_size=BATCH)
    optimizer = T._optimizer(model, config)
    stream = torch.from_numpy(T._synthetic_streams(VOCAB)[0].astype("int64"))
    gen = torch.Generator().manual_seed(0)

    def one() -> None:
        starts = torch.randint(0, len(stream) - CONTEXT, (BATCH,), generator=gen)
        T._step(model, optimizer, T._batch(stream, starts, CONTEXT + 1), 1e-4, 1.0)

    for _ in range(2):  # warm-up
        one()
    steps, t0 = 0, time.perf_counter()
    while True:
        one()
        steps += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and steps >= 3:
            break
    return dict(steps=steps, seconds=round(elapsed, 3),
                tokens_per_s=steps * BATCH * CONTEXT / elapsed,
                ms_per_step=1000 * elapsed / steps)


def _single_threaded(family: str, rung: dict, seconds: float) -> dict:
    torch.set_num_threads(1)
    return throughput(family, rung, seconds)


def side_by_side(family: str, rung: dict, seconds: float, workers: int = 2) -> dict:
    """``workers`` single-threaded processes training the same model at once; rates summed."""
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        parts = list(pool.map(_single_threaded, [family] * workers, [rung] * workers,
                              [seconds] * workers))
    tokens_per_s = sum(p["tokens_per_s"] for p in parts)
    return dict(steps=sum(p["steps"] for p in parts), seconds=max(p["seconds"] for p in parts),
                tokens_per_s=tokens_per_s, ms_per_step=1000 * BATCH * CONTEXT / tokens_per_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per case")
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    thread_counts = sorted({1, default_threads})
    peak = {}
    for threads in thread_counts:
        torch.set_num_threads(threads)
        peak[threads] = matmul_gflops()
    rows = []
    for size, index in RUNGS.items():
        for family in models.FAMILIES:
            rung = next(r for r in models.size_ladder(family) if r["rung"] == index)
            modes = [(threads, 1) for threads in thread_counts] + [(1, 2)]
            for threads, workers in modes:
                torch.set_num_threads(threads)
                m = (throughput(family, rung, args.seconds) if workers == 1
                     else side_by_side(family, rung, args.seconds, workers))
                achieved = 6 * rung["params"] * m["tokens_per_s"] / 1e9
                rows.append(dict(size=size, family=family, d_model=rung["d_model"],
                                 n_layers=rung["n_layers"], params=rung["params"],
                                 threads=threads, workers=workers, **m, train_gflops=achieved))
                r = rows[-1]
                print(f"{size:6s} {family:5s} d={r['d_model']:<3d} L={r['n_layers']} "
                      f"{r['params']:>9,d} params  {threads} thr x {workers}  "
                      f"{r['tokens_per_s']:>8,.0f} tok/s  {r['ms_per_step']:7.1f} ms/step  "
                      f"{r['train_gflops']:6.2f} GFLOP/s", flush=True)
    for threads in thread_counts:  # again at the end: the best of both (the machine may be busy)
        torch.set_num_threads(threads)
        peak[threads] = max(peak[threads], matmul_gflops())
    for r in rows:
        r["fraction_of_matmul"] = r["train_gflops"] / (r["workers"] * peak[r["threads"]])
        one = next(o for o in rows if o["family"] == r["family"] and o["size"] == r["size"]
                   and o["threads"] == 1 and o["workers"] == 1)
        r["speedup"] = r["tokens_per_s"] / one["tokens_per_s"]
    torch.set_num_threads(default_threads)
    print("\nmatmul float32 2048^3: " + ", ".join(f"{t} thread(s) {g:.1f} GFLOP/s"
                                                  for t, g in peak.items()))
    result = dict(
        benchmark="train", batch_size=BATCH, context=CONTEXT, vocab_size=VOCAB,
        flops_per_token="6 x params", matmul_gflops={str(t): g for t, g in peak.items()},
        rows=rows,
        machine=dict(platform=platform.platform(), processor=platform.processor(),
                     cpu_count=os.cpu_count(), torch=torch.__version__,
                     default_threads=default_threads),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        load_average=os.getloadavg(),
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print("\nsize   family  d   L     params  threads workers   tok/s  speedup  % of matmul")
    for r in rows:
        print(f"{r['size']:6s} {r['family']:6s} {r['d_model']:<3d} {r['n_layers']} "
              f"{r['params']:>10,d}  {r['threads']:>7d} {r['workers']:>7d}  "
              f"{r['tokens_per_s']:>7,.0f}  {r['speedup']:6.2f}x  "
              f"{100 * r['fraction_of_matmul']:10.1f}")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
