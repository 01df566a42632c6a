"""Image-model extraction: EfficientNet-Lite0/1/2 on the paired stimuli of 03_cross_modal.

For each installed Lite model, on ``--n`` paired images (``stimuli.paired_stimuli``, 160 px,
upsampled by the model's preprocessing to its native 224 / 240 / 260 px), batch 32:

- ``extract``: :func:`resonance.activations.extract` without the cache (preprocess, hooked
  forward, spatial mean-pooling of every block, copy-out);
- ``bare``: ``net.extract_features`` on the same preprocessed batches, no hooks;
- ``preprocess``: the resize + normalisation alone.

Each is the best of ``--repeats`` interleaved rounds, as wall seconds and CPU seconds (user +
system of this process, which is what the paper-profile budget is sized by on a shared
machine). Goal: hooks and pooling add <= 10 % to the bare forward.

    python benchmarks/bench_image_extraction.py [--n 64] [--repeats 2]

Writes ``benchmarks/results/image_extraction.json``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from _record import machine, write
from resonance import activations, stimuli, zoo

OUT = Path(__file__).resolve().parent / "results" / "image_extraction.json"
MODELS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
BATCH = 32


def timed(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def bench(name: str, stims, repeats: int) -> dict:
    model = zoo.load(name)
    chunks = [stims.images[i:i + BATCH] for i in range(0, len(stims), BATCH)]
    batches = [model.preprocess(c)["pixel_values"] for c in chunks]

    def bare():
        with torch.inference_mode():
            for x in batches:
                model.module.extract_features(x)

    runs = {"extract": lambda: activations.extract(model, stims, cache=False), "bare": bare,
            "preprocess": lambda: [model.preprocess(c) for c in chunks]}
    best = {k: (float("inf"), float("inf")) for k in runs}
    for _ in range(repeats):
        for key, fn in runs.items():
            wall, cpu = timed(fn)
            best[key] = (min(best[key][0], wall), min(best[key][1], cpu))
    n = len(stims)
    return {"model": name, "image_size": model.image_size, "layers": model.n_layers + 1,
            "n": n, **{f"{k}_wall_s": round(v[0], 3) for k, v in best.items()},
            **{f"{k}_cpu_s": round(v[1], 3) for k, v in best.items()},
            "extract_cpu_ms_per_image": round(1000 * best["extract"][1] / n, 1),
            "overhead_cpu_pct": round(100 * (best["extract"][1] / best["bare"][1] - 1), 1),
            "goal_overhead_pct": 10}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="n = 32, one round")
    args = parser.parse_args()
    n, repeats = (32, 1) if args.quick else (args.n, args.repeats)
    load_before = os.getloadavg()
    stims = stimuli.paired_stimuli(n=n, seed=0)
    rows = []
    for name in MODELS:
        if not zoo.available(name):
            print(f"{name}: not installed, skipped")
            continue
        row = bench(name, stims, repeats)
        rows.append(row)
        print(f"{name} ({row['image_size']} px, {row['layers']} states): "
              f"{row['extract_cpu_ms_per_image']} CPU ms/image, hooks + pooling "
              f"{row['overhead_cpu_pct']:+.1f} % over the bare forward; preprocess "
              f"{row['preprocess_cpu_s']} CPU s of {row['extract_cpu_s']}")
    result = {
        "models": rows,
        "machine": machine(load_before),
        "note": "measured while other jobs shared the machine: CPU seconds are the robust number",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write(OUT, result)


if __name__ == "__main__":
    main()
