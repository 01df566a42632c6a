"""Many training runs of small language models, and what their learning curves say.

- :func:`train_many`: train runs side by side in worker processes (one torch thread each);
- :func:`choose_lr`: a learning rate per configuration from a sweep on a seed of its own;
- :func:`plateau_gates` / :func:`gate_summary`: the capability gate (final perplexity well below
  a unigram model's) and the plateau gate (the curve has flattened) per run;
- :func:`flops_matched_losses`: two configurations' losses at equal training FLOPs;
- :func:`perplexity_summary`: geometric-mean perplexity over seeds with a t interval;
- :func:`paired_effects`: declared comparisons between configurations, paired by seed, at equal
  tokens (at the end and before the last window of the steps) and at equal FLOPs.

Tables: ``final`` has one row per run (arm, config, seed, lr, params, val_loss, val_ppl);
``curves`` one row per evaluation (arm, config, seed, step, tokens, val_loss, val_ppl).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from . import stats


# --------------------------------------------------------------------------------------------
# Training many runs


def default_workers() -> int:
    """``RESONANCE_WORKERS`` when set (1 on a shared machine), else the CPU count, at most 2."""
    return int(os.environ.get("RESONANCE_WORKERS") or min(2, os.cpu_count() or 1))


def _train_one(config):
    """Train one run on one thread (a worker process's job); returns its history and info."""
    from .train import train

    os.environ.setdefault("TQDM_DISABLE", "1")
    trained = train(config, progress=False, threads=1)
    return trained.history, trained.info


def train_many(configs: Sequence, workers: int | None = None) -> list[tuple[pd.DataFrame, dict]]:
    """Train (or load from the cache) every :class:`resonance.train.TrainConfig` of ``configs``,
    ``workers`` processes side by side (default :func:`default_workers`); returns
    ``(history, info)`` per config, in order. The number of workers changes no number."""
    workers = default_workers() if workers is None else int(workers)
    if workers <= 1 or len(configs) <= 1:
        return [_train_one(tc) for tc in configs]
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(_train_one, configs))


def choose_lr(tuning: pd.DataFrame, grid: Sequence[float]) -> dict[str, float]:
    """Per configuration, the grid learning rate with the lowest final validation loss on the
    tuning seed (ties: the smaller rate). ``tuning`` has columns config, lr, val_loss."""
    missing = {(c, float(lr)) for c in tuning["config"].unique() for lr in grid} - \
        set(zip(tuning["config"], tuning["lr"].astype(float)))
    if missing:
        raise ValueError(f"the tuning table lacks runs {sorted(missing)}")
    best = (tuning.sort_values(["config", "val_loss", "lr"]).groupby("config", sort=False)
            .head(1))
    return {row.config: float(row.lr) for row in best.itertuples()}


def run_tables(done: Sequence[Mapping[str, Any]], flops: Mapping[str, int]
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``final`` (one row per run) and ``curves`` (one per evaluation, with the FLOPs spent)
    from trained runs ``{arm, config, seed, lr, train_config, history, info}``."""
    curves, finals = [], []
    for r in done:
        tc, history = r["train_config"], r["history"]
        curves.append(history.assign(arm=r["arm"], config=r["config"], seed=r["seed"]))
        last = history.iloc[-1]
        finals.append({"arm": r["arm"], "config": r["config"], "seed": r["seed"], "lr": r["lr"],
                       "d_model": tc.d_model, "n_layers": tc.n_layers, "n_heads": tc.n_heads,
                       "params": r["info"]["params"], "tokens": int(last["tokens"]),
                       "steps": int(last["step"]), "flops": int(last["tokens"]) * flops[r["config"]],
                       "val_loss": float(last["val_loss"]), "val_ppl": float(last["val_ppl"]),
                       "run": tc.name})
    curves = pd.concat(curves, ignore_index=True)[
        ["arm", "config", "seed", "step", "tokens", "train_loss", "val_loss", "val_ppl"]]
    curves["flops"] = curves["tokens"] * curves["config"].map(flops)
    return pd.DataFrame(finals), curves


# --------------------------------------------------------------------------------------------
# Gates


RUN_KEYS = ["arm", "config", "seed"]


def plateau_gates(final: pd.DataFrame, curves: pd.DataFrame, unigram_ppl: float,
                  max_ratio: float, tolerance: float, window: float) -> pd.DataFrame:
    """Per run (arm, config, seed): the final perplexity against ``max_ratio`` × the unigram
    perplexity (``below_unigram``), and the relative improvement over the last ``window`` of the
    steps (from the last evaluation at or before ``(1 - window) · steps`` to the end) against
    ``tolerance`` (``plateau``); ``passed`` = both."""
    if not unigram_ppl > 0:
        raise ValueError(f"unigram_ppl must be positive, got {unigram_ppl!r}")
    rows = []
    for key, curve in curves.groupby(RUN_KEYS, sort=False):
        curve = curve.sort_values("step")
        steps = int(curve["step"].max())
        earlier = curve[curve["step"] <= (1 - window) * steps]
        if earlier.empty or steps == 0:
            raise ValueError(f"run {key} has no evaluation at or before {1 - window:.0%} of "
                             "its steps; evaluate more often (eval_every)")
        start = float(earlier["val_ppl"].iloc[-1])
        end = float(curve["val_ppl"].iloc[-1])
        improvement = 1 - end / start
        rows.append({**dict(zip(RUN_KEYS, key)), "val_ppl": end,
                     "unigram_ratio": end / unigram_ppl, "improvement_last": improvement,
                     "below_unigram": end / unigram_ppl <= max_ratio,
                     "plateau": improvement < tolerance})
    gates = pd.DataFrame(rows)
    gates["passed"] = gates["below_unigram"] & gates["plateau"]
    missing = set(map(tuple, final[RUN_KEYS].to_numpy())) - \
        set(map(tuple, gates[RUN_KEYS].to_numpy()))
    if missing:
        raise ValueError(f"runs without a learning curve: {sorted(missing)}")
    return gates


def gate_summary(final: pd.DataFrame) -> dict[str, Any]:
    """How many runs of ``final`` (with the columns of :func:`plateau_gates`) passed, the worst
    and best unigram ratios, the worst improvement (%), and the failures as arm/config/s<seed>."""
    failed = final[~final["passed"]]
    return {"n_runs": int(len(final)), "n_runs_passed": int(final["passed"].sum()),
            "all_passed": bool(final["passed"].all()),
            "worst_unigram_ratio": float(final["unigram_ratio"].max()),
            "best_unigram_ratio": float(final["unigram_ratio"].min()),
            "worst_improvement_pct": 100 * float(final["improvement_last"].max()),
            "gate_failures": [f"{r.arm}/{r.config}/s{r.seed}" for r in failed.itertuples()]}


# --------------------------------------------------------------------------------------------
# Comparisons


def flops_matched_losses(curves: pd.DataFrame, flops: Mapping[str, int], treat: str, ref: str
                         ) -> pd.DataFrame:
    """Validation loss of two configurations at equal training FLOPs, per (arm, seed).

    The budget is the smaller of the two runs' total FLOPs (tokens × ``flops[config]`` per
    token); the other run's loss there is interpolated linearly in log FLOPs between its
    evaluations. Returns columns arm, seed, budget, treat_loss, ref_loss."""
    rows = []
    for (arm, seed), both in curves[curves["config"].isin([treat, ref])].groupby(
            ["arm", "seed"], sort=False):
        runs = {name: both[both["config"] == name].sort_values("tokens") for name in (treat, ref)}
        if any(r.empty for r in runs.values()):
            continue
        spent = {n: r["tokens"].to_numpy(float) * flops[n] for n, r in runs.items()}
        budget = min(s[-1] for s in spent.values())
        loss = {}
        for name, r in runs.items():
            x, y = spent[name][1:], r["val_loss"].to_numpy(float)[1:]  # step 0 spent nothing
            loss[name] = float(np.interp(np.log(budget), np.log(x), y))
        rows.append({"arm": arm, "seed": seed, "budget": budget, "treat_loss": loss[treat],
                     "ref_loss": loss[ref]})
    return pd.DataFrame(rows, columns=["arm", "seed", "budget", "treat_loss", "ref_loss"])


def paired_effects(final: pd.DataFrame, curves: pd.DataFrame, flops: Mapping[str, int],
                   comparisons: Sequence[tuple[str, str, str, str, str]], arms: Sequence[str],
                   margin: float, window: float = 0.2,
                   published: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Every comparison ``(key, label, treatment, reference, what it isolates)`` in every arm
    of ``arms`` where both were trained, paired by seed (:func:`resonance.stats.paired_effect`):
    at equal tokens (``basis`` tokens: the final losses; tokens_early: at the last evaluation
    before the final ``window`` of the steps, to show whether the gap still moves) and at equal
    FLOPs (:func:`flops_matched_losses`). ``published``: key -> a published relative change."""
    published = published or {}
    rows = []
    for arm in [a for a in arms if a in set(final["arm"])]:
        by = final[final["arm"] == arm].pivot(index="seed", columns="config", values="val_loss")
        for key, label, treat, ref, isolates in comparisons:
            if treat not in by or ref not in by:
                continue
            base = {"arm": arm, "key": key, "comparison": label, "treatment": treat,
                    "reference": ref, "isolates": isolates,
                    "published_change": published.get(key, float("nan"))}
            pair = by[[treat, ref]].dropna()
            rows.append({**base, "basis": "tokens",
                         **stats.paired_effect(pair[treat], pair[ref], margin)})
            at = curves[(curves["arm"] == arm) & curves["config"].isin([treat, ref])]
            steps = int(at["step"].max())
            early = at[at["step"] == at.loc[at["step"] <= (1 - window) * steps, "step"].max()]
            early = early.pivot(index="seed", columns="config", values="val_loss").dropna()
            rows.append({**base, "basis": "tokens_early",
                         **stats.paired_effect(early[treat], early[ref], margin)})
            matched = flops_matched_losses(curves[curves["arm"] == arm], flops, treat, ref)
            rows.append({**base, "basis": "flops",
                         **stats.paired_effect(matched["treat_loss"], matched["ref_loss"],
                                               margin)})
    return pd.DataFrame(rows)


BASIS_SUFFIX = {"tokens": "", "flops": "_flops", "tokens_early": "_early"}


def effects_meta(effects: pd.DataFrame) -> dict[str, Any]:
    """A :func:`paired_effects` table as flat keys, in percent: ``<key>_<arm>[_flops|_early]``
    with ``_low``, ``_high``, ``_equivalent`` and ``_class``
    (:func:`resonance.stats.interval_class`)."""
    meta: dict[str, Any] = {}
    for row in effects.itertuples():
        key = f"{row.key}_{row.arm}{BASIS_SUFFIX[row.basis]}"
        meta[key] = 100 * row.ppl_change
        meta[f"{key}_low"] = 100 * row.ppl_change_low
        meta[f"{key}_high"] = 100 * row.ppl_change_high
        meta[f"{key}_equivalent"] = bool(row.equivalent)
        meta[f"{key}_class"] = stats.interval_class(row.ppl_change_low, row.ppl_change_high,
                                                    row.equivalent)
    return meta


def perplexity_summary(final: pd.DataFrame, published: Mapping[str, float] | None = None
                       ) -> pd.DataFrame:
    """Per arm and configuration: geometric-mean perplexity over seeds with a 95 % t interval
    (NaN with one seed), the range, the learning rate and ``published`` perplexity if given."""
    published = published or {}
    rows = []
    for (arm, name), group in final.groupby(["arm", "config"], sort=False):
        mean, low, high = stats.mean_ci(group["val_loss"].to_numpy(float))
        rows.append({"arm": arm, "config": name, "lr": float(group["lr"].iloc[0]),
                     "n_seeds": int(len(group)), "params": int(group["params"].iloc[0]),
                     "val_ppl": math.exp(mean), "ci_low": math.exp(low),
                     "ci_high": math.exp(high), "ppl_min": float(group["val_ppl"].min()),
                     "ppl_max": float(group["val_ppl"].max()),
                     "published_ppl": published.get(name, float("nan"))})
    return pd.DataFrame(rows)


def perplexity_report(summary: pd.DataFrame) -> str:
    """A :func:`perplexity_summary` table as aligned text lines (arm, config, learning rate,
    perplexity with its interval, parameters)."""
    return "\n".join(f"{row.arm:8s} {row.config:15s} lr {row.lr:.0e}  ppl {row.val_ppl:7.1f} "
                     f"[{row.ci_low:7.1f}, {row.ci_high:7.1f}]  params {row.params:,}"
                     for row in summary.itertuples())


__all__ = ["default_workers", "train_many", "choose_lr", "run_tables", "plateau_gates",
           "gate_summary", "flops_matched_losses", "paired_effects", "effects_meta",
           "perplexity_summary", "perplexity_report"]
