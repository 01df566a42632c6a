"""Forward + backward CPU time per token of the routed MoE against the dense model with the same
active parameters (``resonance.moe``: cosine/SRA and linear routers, dense FFN of width k·h).

Two levels, each at 05_semantic_routing's paper shape and at a wider one: the feed-forward layer
alone (where the dispatch overhead shows) and a whole training step (loss, backward, AdamW, as
``resonance.train`` runs it). Times are CPU seconds (``time.process_time``, one torch thread),
the best of ``--repeats`` blocks, so a shared machine inflates them less than wall time; the
ratio MoE / dense is the number to read (goal: <= 1.5x per token). Writes
``benchmarks/results/moe.json``.

    python benchmarks/bench_moe.py [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from _record import machine, write
from resonance import moe
from resonance import train as T

OUT = Path(__file__).resolve().parent / "results" / "moe.json"
SHAPES = {"paper": dict(d=64, layers=2, heads=2, experts=16, hidden=64, batch=16),
          "wide": dict(d=256, layers=2, heads=4, experts=32, hidden=256, batch=8)}
VOCAB, CONTEXT, K = 2048, 128, 2


def _best(fn, repeats: int, inner: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        for _ in range(inner):
            fn()
        best = min(best, (time.process_time() - t0) / inner)
    return best


def layer_time(shape: dict, router: str, repeats: int) -> float:
    torch.manual_seed(0)
    c = moe.MoEConfig(VOCAB, shape["d"], 1, shape["heads"], CONTEXT, router=router,
                      n_experts=shape["experts"], expert_hidden=shape["hidden"], top_k=K)
    layer = moe.MoEFeedForward(c) if router != "dense" else moe.DenseFeedForward(
        c.hidden_size, c.dense_hidden, c.dropout)
    layer.train()
    x = torch.randn(shape["batch"] * CONTEXT, shape["d"], requires_grad=True)

    def one() -> None:
        layer(x).sum().backward()
    return _best(one, repeats, 10)


def step_time(shape: dict, router: str, repeats: int) -> float:
    torch.manual_seed(0)
    model = moe.build(VOCAB, shape["d"], shape["layers"], n_heads=shape["heads"], context=CONTEXT,
                      router=router, n_experts=shape["experts"], expert_hidden=shape["hidden"],
                      top_k=K)
    model.train()
    config = T.TrainConfig(family=moe.FAMILY, d_model=shape["d"], corpus="synthetic",
                           vocab_size=VOCAB, context=CONTEXT, batch_size=shape["batch"])
    opt = T._optimizer(model, config)
    stream = torch.from_numpy(T._synthetic_streams(VOCAB)[0].astype("int64"))
    gen = torch.Generator().manual_seed(0)

    def one() -> None:
        starts = torch.randint(0, len(stream) - CONTEXT, (shape["batch"],), generator=gen)
        T._step(model, opt, T._batch(stream, starts, CONTEXT + 1), 1e-4, 1.0)
    return _best(one, repeats, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()
    repeats = 2 if args.quick else args.repeats
    rows = []
    for name, shape in SHAPES.items():
        tokens = shape["batch"] * CONTEXT
        for level, fn in (("ffn_layer", layer_time), ("train_step", step_time)):
            dense = fn(shape, "dense", repeats)
            for router in ("cosine", "linear"):
                t = fn(shape, router, repeats)
                rows.append({"shape": name, **shape, "level": level, "router": router,
                             "us_per_token": 1e6 * t / tokens,
                             "dense_us_per_token": 1e6 * dense / tokens, "ratio": t / dense})
                print(f"{name:6s} {level:10s} {router:7s} {1e6 * t / tokens:8.2f} us/token "
                      f"(dense {1e6 * dense / tokens:8.2f}): {t / dense:.2f}x", flush=True)
    write(OUT, {"rows": rows, "vocab": VOCAB, "context": CONTEXT, "top_k": K,
                "goal": "MoE <= 1.5x the dense model of equal active parameters per token",
                "note": "CPU time (process_time), one torch thread, best of repeats; the "
                        "machine was shared with other jobs", "machine": machine(load)})


if __name__ == "__main__":
    main()
