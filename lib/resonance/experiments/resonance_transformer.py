"""04_resonance_transformer: the seed's "60 % smarter" runs at CPU scale, trained to a plateau,
then controlled.

Configurations (each trained with the same paired seeds; a seed fixes the data order):

==================  =========================================================================
``A_random_phase``  the Resonance Transformer, random phases (seed's model A)
``B_rhyme_phase``   the same with rhyme-group phases (seed's model B)
``B_shuffled``      B's groups (same tokens, same sizes) with members dealt at random
``C_small_rhyme``   rhyme phases at about 2/3 of A's width and depth (seed's model C)
``standard_seed``   the seed's Standard: no phase, positions left at N(0, 1)
``standard_fixed``  the Standard with positions at N(0, 0.02) like every other embedding
``A_no_bias``       A with the attention bias off (w_h = 0, fixed)
``A_no_blend``      A with the phase not added to the input (it still drives the bias)
``standard_wide``   ``standard_fixed`` widened to A's parameter count
==================  =========================================================================

Two training arms (:data:`ARMS`):

``faithful``
    the seed's optimiser exactly: AdamW 3e-4, betas (0.9, 0.999), weight decay 0.01 on *all*
    parameters (``torch.optim.AdamW(model.parameters())``), constant LR without warmup, clip
    1.0, batches of 8 × 4 accumulated with the loss *not* divided by 4 (``loss_scale = 4``; see
    :mod:`resonance.models.resonance_lm`), dropout 0.1 as in the seed's config.
``tuned``
    the same except the learning rate, chosen per configuration from ``lr_grid`` by the final
    validation loss of one run on a separate ``tuning_seed`` (never one of the paired seeds),
    so no architecture wins by the seed's learning rate suiting it better.

Gates before any comparison (:func:`run_gates`): every run's final validation perplexity is at
most ``max_unigram_ratio`` × a unigram model's of the same tokens, and its curve has flattened:
the perplexity improved by less than ``plateau_tolerance`` over the last ``plateau_window`` of
the steps. Effects are the relative change in validation perplexity, ``exp(mean Δ loss) − 1``,
with a t interval over the paired seeds (:func:`paired_effect`), at equal tokens and at equal
training FLOPs (:func:`flops_matched_losses`).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields
from multiprocessing import get_context
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

from .. import activations, models, similarity, stimuli, store, zoo
from ..models import resonance_lm as rt
from ..seeding import seed_everything
from ..store import Bundle
from ..train import TrainConfig, _load_data, _val_windows, train, unigram_perplexity
from .common import profile_config

NAME = "04_resonance_transformer"
VERSION = 2
_DEFAULTS = {f.name: f.default for f in fields(rt.ResonanceConfig)}

# The seed's published validation perplexities after 2 epochs (test5.ipynb).
PUBLISHED = {"A_random_phase": 63.88, "B_rhyme_phase": 63.17, "C_small_rhyme": 70.92,
             "standard_seed": 148.90}

# The first version of this notebook (64 updates per run; results at commit e14cc5c), kept to
# report what changed.
PREVIOUS = {"steps": 64, "tokens": 131_072, "n_seeds": 3, "d_model": 48, "n_layers": 3,
            "vocab_size": 4096, "ppl_min": 1064.0, "ppl_max": 1950.1, "published_gap": -25.8,
            "published_gap_low": -31.8, "published_gap_high": -19.4, "fair_gap": -1.9,
            "fair_gap_low": -5.9, "fair_gap_high": 2.2, "init_effect": 32.2, "params": 31.5,
            "bias": -0.00, "rhyme": -2.3, "rhyme_vs_shuffled": -0.3}

CONFIGS = ("A_random_phase", "B_rhyme_phase", "B_shuffled", "C_small_rhyme", "standard_seed",
           "standard_fixed", "A_no_bias", "A_no_blend", "standard_wide")
PHASE_CONFIGS = ("A_random_phase", "B_rhyme_phase", "B_shuffled", "C_small_rhyme",
                 "A_no_bias", "A_no_blend")
ARMS = ("faithful", "tuned")
SEED_LR = 3e-4

_SHARED = {"corpus": "kjv", "tokenizer": None, "n_frequencies": 32, "micro_batch": 8,
           "accumulation": 4, "divide_by_accumulation": False, "lr": SEED_LR,
           "weight_decay": 0.01, "decay_all_params": True, "betas": [0.9, 0.999],
           "grad_clip": 1.0, "dropout": 0.1, "configs": list(CONFIGS),
           "max_unigram_ratio": 0.5, "plateau_tolerance": 0.01, "plateau_window": 0.2,
           "tost_margin": 0.02, "n_boot": 2000, "tuning_seed": 100}
# The headline comparisons (published gap, fair gap, parameters) get ``n_seeds`` paired seeds;
# the ablations ``n_seeds_ablation`` (the first seeds of the same list, so still paired).
HEADLINE_CONFIGS = ("A_random_phase", "standard_seed", "standard_fixed", "standard_wide")
FAITHFUL_CONFIGS = ("A_random_phase", "standard_seed", "standard_fixed")
SIZES = {
    # smoke: the whole notebook in about 2 minutes on 2 cores; gates are not expected to pass.
    "smoke": {**_SHARED, "faithful_configs": list(FAITHFUL_CONFIGS), "vocab_size": 1024,
              "d_model": 16, "n_layers": 1, "n_heads": 2, "small_d_model": 8,
              "small_n_layers": 1, "small_n_heads": 2, "context": 16, "tokens": 8 * 32 * 16,
              "eval_every": 2, "eval_tokens": 1024, "n_seeds": 2, "n_seeds_ablation": 2,
              "n_seeds_faithful": 2,
              "lr_grid": [3e-3],
              "n_stimuli": 48, "max_words": 5, "n_boot": 200},
    # paper: A/B/Standard 32 wide, 2 deep (2 heads of 16); C 22 wide, 1 deep (2/3 of both,
    # rounded); a 1024-token BPE, context 32; 800 updates of the seed's 32-sequence batches
    # (819k tokens, 0.63 epoch of the KJV); 5 paired seeds for the headline configurations, 3
    # for the ablations. The faithful arm trains A and the two Standards (3 seeds); the tuned
    # arm every configuration but C (cut to fit the budget of a shared 2-core machine).
    "paper": {**_SHARED, "faithful_configs": list(FAITHFUL_CONFIGS), "vocab_size": 1024,
              "d_model": 32, "n_layers": 2, "n_heads": 2, "small_d_model": 22,
              "small_n_layers": 1, "small_n_heads": 2, "context": 32, "tokens": 800 * 32 * 32,
              "configs": [c for c in CONFIGS if c != "C_small_rhyme"],
              "eval_every": 80, "eval_tokens": 4096, "n_seeds": 5, "n_seeds_ablation": 3,
              "n_seeds_faithful": 3,
              "lr_grid": [3e-3, 1e-2],
              "n_stimuli": 256, "max_words": 9},
    # hub: the seed's own data, tokenizer and context (OpenWebText, GPT-2 BPE, 256), for a GPU.
    "hub": {**_SHARED, "faithful_configs": list(CONFIGS), "corpus": "openwebtext",
            "tokenizer": "gpt2", "vocab_size": 50257, "d_model": 384, "n_layers": 6,
            "n_heads": 6, "small_d_model": 256, "small_n_layers": 4, "small_n_heads": 4,
            "context": 256, "tokens": 20_000 * 32 * 256, "eval_every": 2000,
            "eval_tokens": 262_144, "n_seeds": 5, "n_seeds_ablation": 5,
            "n_seeds_faithful": 5, "lr_grid": [3e-4, 6e-4, 1e-3, 2e-3],
            "n_stimuli": 512, "max_words": 32},
}

# (key, label, treatment, reference, what it isolates)
COMPARISONS = (
    ("published_gap", "published gap (A vs seed's Standard)", "A_random_phase", "standard_seed",
     "the seed's headline comparison"),
    ("fair_gap", "fair gap (A vs fixed Standard)", "A_random_phase", "standard_fixed",
     "phase model vs a Standard initialised like it"),
    ("init_effect", "baseline init (seed's vs fixed Standard)", "standard_seed",
     "standard_fixed", "positions at N(0, 1) instead of N(0, 0.02)"),
    ("params", "parameters (A vs param-matched wide Standard)", "A_random_phase",
     "standard_wide", "A's extra parameters spent on width instead"),
    ("bias", "attention bias (A vs A without bias)", "A_random_phase", "A_no_bias", "w_h · R"),
    ("blend", "blend (A vs A without blend)", "A_random_phase", "A_no_blend",
     "phase added to the input"),
    ("rhyme", "rhyme init (B vs A)", "B_rhyme_phase", "A_random_phase", "rhyme-group phases"),
    ("rhyme_vs_shuffled", "rhyme vs random groups (B vs B shuffled)", "B_rhyme_phase",
     "B_shuffled", "rhyme itself, grouping held fixed"),
    ("grouping", "random groups (B shuffled vs A)", "B_shuffled", "A_random_phase",
     "grouped phases of any kind"),
    ("small", "smaller rhyme model (C vs A)", "C_small_rhyme", "A_random_phase",
     "2/3 width and depth"),
    ("small_vs_seed_standard", "C vs seed's Standard", "C_small_rhyme", "standard_seed",
     "the seed's C vs its Standard"),
)
HEADLINE = ("published_gap", "fair_gap", "params")
PUBLISHED_EFFECT = {"published_gap": PUBLISHED["A_random_phase"] / PUBLISHED["standard_seed"] - 1,
                    "rhyme": PUBLISHED["B_rhyme_phase"] / PUBLISHED["A_random_phase"] - 1,
                    "small": PUBLISHED["C_small_rhyme"] / PUBLISHED["A_random_phase"] - 1,
                    "small_vs_seed_standard": PUBLISHED["C_small_rhyme"] /
                    PUBLISHED["standard_seed"] - 1}

# Representational resonance: the phase model vs the fair Standard, each against itself.
RESONANCE_MODELS = ("A_random_phase", "standard_fixed")
RESONANCE_ARM = "tuned"


def run(profile: str = "paper", seed: int = 0, force: bool = False, workers: int | None = None,
        **overrides: Any) -> Bundle:
    """Train (or load) every configuration × arm × seed and return the bundle of tidy tables.

    ``workers`` training processes run side by side (default: ``RESONANCE_WORKERS``, else the
    CPU count, at most 2; one torch thread each). It does not change any number, so it is not
    part of the config.
    ``force`` recomputes the tables; the training runs themselves stay cached by their config.
    """
    config = profile_config(SIZES, profile, seed, overrides, version=VERSION)
    return store.cached(NAME, profile, config, lambda c: compute(c, workers=workers),
                        force=force)


# --------------------------------------------------------------------------------------------
# Configurations


def _tokenizer_name(config: dict) -> str:
    return config["tokenizer"] or config["corpus"]


def wide_width(config: dict) -> int:
    """The Standard width (a multiple of ``n_heads``) whose parameter count is nearest A's."""
    V, L, h, ctx = config["vocab_size"], config["n_layers"], config["n_heads"], config["context"]
    target = rt.meta_param_count(V, config["d_model"], L, h, ctx, phase=True,
                                 n_frequencies=config["n_frequencies"])
    return min(range(config["d_model"], 2 * config["d_model"] + h, h),
               key=lambda d: abs(rt.meta_param_count(V, d, L, h, ctx, phase=False) - target))


def model_shapes(config: dict) -> dict[str, dict[str, Any]]:
    """``name -> {d_model, n_layers, n_heads, build_kwargs}`` for every configuration."""
    d, L, h = config["d_model"], config["n_layers"], config["n_heads"]
    base = {"dropout": config["dropout"], "n_frequencies": config["n_frequencies"],
            "loss_scale": 1.0 if config["divide_by_accumulation"] else
            float(config["accumulation"])}
    rhyme = {"phase_init": "rhyme", "rhyme_tokenizer": _tokenizer_name(config)}
    standard = {"phase": False}
    shapes = {
        "A_random_phase": (d, L, h, {}),
        "B_rhyme_phase": (d, L, h, rhyme),
        "B_shuffled": (d, L, h, {**rhyme, "phase_init": "shuffled_rhyme"}),
        "C_small_rhyme": (config["small_d_model"], config["small_n_layers"],
                          config["small_n_heads"], rhyme),
        "standard_seed": (d, L, h, {**standard, "pos_init": "torch_default"}),
        "standard_fixed": (d, L, h, standard),
        "A_no_bias": (d, L, h, {"attn_bias": False}),
        "A_no_blend": (d, L, h, {"blend": False}),
        "standard_wide": (None, L, h, standard),
    }
    out = {}
    for name in config["configs"]:
        if name not in shapes:
            raise ValueError(f"unknown configuration {name!r}; known: {list(shapes)}")
        width, layers, heads, kw = shapes[name]
        if width is None:
            width = wide_width(config)
        out[name] = {"d_model": width, "n_layers": layers, "n_heads": heads,
                     "build_kwargs": {**base, **kw}}
    return out


def flops_per_token(config: dict, name: str) -> int:
    """Training FLOPs per token of a configuration (:func:`rt.train_flops_per_token`)."""
    shape = model_shapes(config)[name]
    kw = shape["build_kwargs"]
    return rt.train_flops_per_token(config["vocab_size"], shape["d_model"], shape["n_layers"],
                                    config["context"], phase=kw.get("phase", True),
                                    attn_bias=kw.get("attn_bias", True),
                                    blend=kw.get("blend", True),
                                    n_frequencies=config["n_frequencies"])


def train_config(config: dict, name: str, seed: int, lr: float | None = None) -> TrainConfig:
    """The :class:`TrainConfig` of one run (``lr``: the arm's learning rate; default the
    seed's)."""
    shape = model_shapes(config)[name]
    return TrainConfig(
        family=rt.FAMILY, d_model=shape["d_model"], n_layers=shape["n_layers"],
        n_heads=shape["n_heads"], context=config["context"], corpus=config["corpus"],
        tokenizer=config["tokenizer"], vocab_size=config["vocab_size"], tokens=config["tokens"],
        batch_size=config["micro_batch"] * config["accumulation"],
        lr=float(config["lr"] if lr is None else lr), weight_decay=config["weight_decay"],
        betas=tuple(config["betas"]), warmup=0, schedule="constant",
        grad_clip=config["grad_clip"], eval_every=config["eval_every"],
        eval_tokens=config["eval_tokens"], n_log_checkpoints=0, n_linear_checkpoints=1,
        seed=seed, build_kwargs=shape["build_kwargs"],
        decay_all_params=bool(config["decay_all_params"]))


def _train_one(tc: TrainConfig):
    """Train one run on one thread (a worker process's job); returns its history and info."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    trained = train(tc, progress=False, threads=1)
    return trained.history, trained.info


def _train_all(jobs: list[TrainConfig], workers: int) -> list:
    if workers <= 1 or len(jobs) <= 1:
        return [_train_one(tc) for tc in jobs]
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(_train_one, jobs))


def seeds_of(config: dict, name: str | None = None, arm: str = "tuned") -> list[int]:
    """The paired seeds of a configuration in an arm (all ``n_seeds`` without ``name``): the
    headline configurations get ``n_seeds``, the ablations ``n_seeds_ablation``, and the
    faithful arm at most ``n_seeds_faithful``; always the first seeds of one list."""
    n = config["n_seeds"] if name is None or name in HEADLINE_CONFIGS else \
        min(config["n_seeds_ablation"], config["n_seeds"])
    if arm == "faithful" and name is not None:
        n = min(n, config["n_seeds_faithful"])
    return [config["seed"] + i for i in range(n)]


def all_jobs(config: dict, tuned_lr: dict[str, float] | None = None) -> list[dict]:
    """Every run as ``{arm, config, seed, lr, train_config}``: the tuning sweep (arm
    ``"tuning"``), the faithful arm and -- once ``tuned_lr`` is known -- the tuned arm."""
    jobs = []
    for name in config["configs"]:
        for lr in config["lr_grid"]:
            jobs.append({"arm": "tuning", "config": name, "seed": config["tuning_seed"],
                         "lr": float(lr)})
    for name in [n for n in config["configs"] if n in config["faithful_configs"]]:
        for seed in seeds_of(config, name, "faithful"):
            jobs.append({"arm": "faithful", "config": name, "seed": seed,
                         "lr": float(config["lr"])})
    if tuned_lr is not None:
        for name in config["configs"]:
            for seed in seeds_of(config, name):
                jobs.append({"arm": "tuned", "config": name, "seed": seed,
                             "lr": float(tuned_lr[name])})
    for job in jobs:
        job["train_config"] = train_config(config, job["config"], job["seed"], job["lr"])
    return jobs


def choose_lr(tuning: pd.DataFrame, grid: list[float]) -> dict[str, float]:
    """Per configuration, the grid learning rate with the lowest final validation loss on the
    tuning seed (ties: the smaller rate). ``tuning`` has columns config, lr, val_loss."""
    missing = {(c, float(lr)) for c in tuning["config"].unique() for lr in grid} - \
        set(zip(tuning["config"], tuning["lr"].astype(float)))
    if missing:
        raise ValueError(f"the tuning table lacks runs {sorted(missing)}")
    best = (tuning.sort_values(["config", "val_loss", "lr"]).groupby("config", sort=False)
            .head(1))
    return {row.config: float(row.lr) for row in best.itertuples()}


# --------------------------------------------------------------------------------------------
# Statistics (pure functions of tables; tested on synthetic ones)


def paired_effect(treat: np.ndarray, ref: np.ndarray, margin: float | None = None
                  ) -> dict[str, float]:
    """Mean paired difference of validation losses with a 95 % t interval, and the matching
    relative change in perplexity ``exp(Δ) - 1``. Needs at least 2 pairs.

    With ``margin`` (a relative change, e.g. 0.02), also TOST equivalence at 5 %: the 90 %
    interval of the change lies inside ``(-margin, +margin)`` (``equivalent``)."""
    treat, ref = np.asarray(treat, float), np.asarray(ref, float)
    if treat.shape != ref.shape or treat.ndim != 1 or treat.size < 2:
        raise ValueError(f"need >= 2 paired values in two 1-D arrays of one shape, got "
                         f"{treat.shape} and {ref.shape}")
    if not (np.isfinite(treat).all() and np.isfinite(ref).all()):
        raise ValueError("paired values contain NaN or inf; every seed needs both runs")
    diff = treat - ref
    n = diff.size
    mean, se = float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(n))
    half = float(stats.t.ppf(0.975, n - 1)) * se
    out = {"n_seeds": n, "delta_loss": mean, "delta_loss_low": mean - half,
           "delta_loss_high": mean + half, "ppl_change": math.expm1(mean),
           "ppl_change_low": math.expm1(mean - half), "ppl_change_high": math.expm1(mean + half)}
    if margin is not None:
        half90 = float(stats.t.ppf(0.95, n - 1)) * se
        out["equivalent"] = bool(math.expm1(mean - half90) > -margin
                                 and math.expm1(mean + half90) < margin)
    return out


def run_gates(final: pd.DataFrame, curves: pd.DataFrame, unigram_ppl: float,
              max_ratio: float, tolerance: float, window: float) -> pd.DataFrame:
    """Per run (arm, config, seed): the final perplexity against ``max_ratio`` × the unigram
    perplexity, and the relative improvement over the last ``window`` of the steps (from the
    last evaluation at or before ``(1 - window) · steps`` to the end) against ``tolerance``."""
    if not unigram_ppl > 0:
        raise ValueError(f"unigram_ppl must be positive, got {unigram_ppl!r}")
    rows = []
    keys = ["arm", "config", "seed"]
    for key, curve in curves.groupby(keys, sort=False):
        curve = curve.sort_values("step")
        steps = int(curve["step"].max())
        earlier = curve[curve["step"] <= (1 - window) * steps]
        if earlier.empty or steps == 0:
            raise ValueError(f"run {key} has no evaluation at or before {1 - window:.0%} of "
                             "its steps; evaluate more often (eval_every)")
        start = float(earlier["val_ppl"].iloc[-1])
        end = float(curve["val_ppl"].iloc[-1])
        improvement = 1 - end / start
        rows.append({**dict(zip(keys, key)), "val_ppl": end, "unigram_ratio": end / unigram_ppl,
                     "improvement_last": improvement, "below_unigram": end / unigram_ppl
                     <= max_ratio, "plateau": improvement < tolerance})
    gates = pd.DataFrame(rows)
    gates["passed"] = gates["below_unigram"] & gates["plateau"]
    missing = set(map(tuple, final[keys].to_numpy())) - set(map(tuple, gates[keys].to_numpy()))
    if missing:
        raise ValueError(f"runs without a learning curve: {sorted(missing)}")
    return gates


def flops_matched_losses(curves: pd.DataFrame, flops: dict[str, int], treat: str, ref: str
                         ) -> pd.DataFrame:
    """Validation loss of two configurations at equal training FLOPs, per (arm, seed).

    The budget is the smaller of the two runs' total FLOPs (tokens × FLOPs per token); the
    other run's loss there is interpolated linearly in log FLOPs between its evaluations.
    Returns columns arm, seed, budget, treat_loss, ref_loss."""
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


def effects_table(final: pd.DataFrame, curves: pd.DataFrame, flops: dict[str, int],
                  margin: float, window: float = 0.2) -> pd.DataFrame:
    """Every comparison of :data:`COMPARISONS` in every arm where both were trained, at equal
    tokens (the final losses; ``tokens_early``: at the last evaluation before the final
    ``window`` of the steps, to show whether the gap still moves) and at equal FLOPs, paired
    by seed."""
    rows = []
    for arm in [a for a in ARMS if a in set(final["arm"])]:
        by = final[final["arm"] == arm].pivot(index="seed", columns="config", values="val_loss")
        for key, label, treat, ref, isolates in COMPARISONS:
            if treat not in by or ref not in by:
                continue
            base = {"arm": arm, "key": key, "comparison": label, "treatment": treat,
                    "reference": ref, "isolates": isolates,
                    "published_change": PUBLISHED_EFFECT.get(key, float("nan"))}
            pair = by[[treat, ref]].dropna()
            rows.append({**base, "basis": "tokens",
                         **paired_effect(pair[treat], pair[ref], margin)})
            at = curves[(curves["arm"] == arm) & curves["config"].isin([treat, ref])]
            steps = int(at["step"].max())
            early = at[at["step"] == at.loc[at["step"] <= (1 - window) * steps, "step"].max()]
            early = early.pivot(index="seed", columns="config", values="val_loss").dropna()
            rows.append({**base, "basis": "tokens_early",
                         **paired_effect(early[treat], early[ref], margin)})
            matched = flops_matched_losses(curves[curves["arm"] == arm], flops, treat, ref)
            rows.append({**base, "basis": "flops",
                         **paired_effect(matched["treat_loss"], matched["ref_loss"], margin)})
    return pd.DataFrame(rows)


def summary_table(final: pd.DataFrame) -> pd.DataFrame:
    """Per arm and configuration: geometric-mean perplexity over seeds with a 95 % t
    interval, the range, and the learning rate."""
    rows = []
    for (arm, name), group in final.groupby(["arm", "config"], sort=False):
        loss = group["val_loss"].to_numpy(float)
        n = loss.size
        mean = float(loss.mean())
        half = (float(stats.t.ppf(0.975, n - 1)) * float(loss.std(ddof=1)) / math.sqrt(n)
                if n > 1 else float("nan"))
        rows.append({"arm": arm, "config": name, "lr": float(group["lr"].iloc[0]),
                     "n_seeds": n, "params": int(group["params"].iloc[0]),
                     "val_ppl": math.exp(mean), "ci_low": math.exp(mean - half),
                     "ci_high": math.exp(mean + half), "ppl_min": float(group["val_ppl"].min()),
                     "ppl_max": float(group["val_ppl"].max()),
                     "published_ppl": PUBLISHED.get(name, float("nan"))})
    return pd.DataFrame(rows)


def seed_bootstrap_cka(pairs: pd.DataFrame, seeds: list[int], n_boot: int, seed: int = 0
                       ) -> pd.DataFrame:
    """Matched-layer CKA of the phase model vs the fair Standard (``cross``) and of each
    against itself from other seeds (``within_A``, ``within_S``), with 95 % intervals from a
    bootstrap that resamples *seeds* (models), not pairs that share them.

    ``pairs`` has columns kind (cross / within_A / within_S), seed_a, seed_b, value (mean over
    matched layers). A draw resamples the seed list with replacement and averages the pairs
    whose two seeds were both drawn (distinct draws for within-model pairs). Also the
    differences cross − within_A and cross − within_S."""
    if n_boot < 99:
        raise ValueError(f"n_boot must be >= 99 for a bootstrap interval, got {n_boot}")
    kinds = ("cross", "within_A", "within_S")
    values = {k: {(int(r.seed_a), int(r.seed_b)): float(r.value)
                  for r in pairs[pairs["kind"] == k].itertuples()} for k in kinds}

    def stat(draw: list[int]) -> dict[str, float]:
        out = {}
        for k in kinds:
            vals = [values[k][(a, b)] for i, a in enumerate(draw) for j, b in enumerate(draw)
                    if i != j and (a, b) in values[k]]
            if k == "cross":
                vals += [values[k][(a, a)] for a in draw if (a, a) in values[k]]
            out[k] = float(np.mean(vals)) if vals else float("nan")
        out["cross_minus_within_A"] = out["cross"] - out["within_A"]
        out["cross_minus_within_S"] = out["cross"] - out["within_S"]
        return out

    point = stat(list(seeds))
    rng = np.random.default_rng([seed, 0xC4A])
    draws = pd.DataFrame([stat(list(rng.choice(seeds, size=len(seeds))))
                          for _ in range(n_boot)])
    rows = []
    for key, value in point.items():
        col = draws[key].dropna()
        rows.append({"quantity": key, "value": value, "ci_low": float(col.quantile(0.025)),
                     "ci_high": float(col.quantile(0.975)), "n_boot": int(col.size)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# The computation


def compute(config: dict, workers: int | None = None) -> tuple[dict[str, pd.DataFrame], dict]:
    names = list(config["configs"])
    if workers is None:  # RESONANCE_WORKERS=1 when the machine is shared
        workers = int(os.environ.get("RESONANCE_WORKERS") or min(2, os.cpu_count() or 1))
    if config["tokenizer"] is None:
        rt.tokenizer_rhyme_groups(_tokenizer_name(config), config["vocab_size"])  # warm
    first = all_jobs(config)  # the tuning sweep and the faithful arm
    runs = [{**job, "history": h, "info": info} for job, (h, info) in
            zip(first, _train_all([j["train_config"] for j in first], workers))]
    tuning = pd.DataFrame([{"config": r["config"], "lr": r["lr"],
                            "val_loss": float(r["history"]["val_loss"].iloc[-1]),
                            "val_ppl": float(r["history"]["val_ppl"].iloc[-1])}
                           for r in runs if r["arm"] == "tuning"])
    tuned_lr = choose_lr(tuning, config["lr_grid"])
    tuning["chosen"] = [tuned_lr[c] == lr for c, lr in zip(tuning["config"], tuning["lr"])]
    tuned_jobs = [j for j in all_jobs(config, tuned_lr) if j["arm"] == "tuned"]
    runs += [{**job, "history": h, "info": info} for job, (h, info) in
             zip(tuned_jobs, _train_all([j["train_config"] for j in tuned_jobs], workers))]
    runs = [r for r in runs if r["arm"] in ARMS]

    flops = {name: flops_per_token(config, name) for name in names}
    curves, finals = [], []
    for r in runs:
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
    final = pd.DataFrame(finals)
    unigram = unigram_perplexity(train_config(config, names[0], config["seed"]))
    gates = run_gates(final, curves, unigram, config["max_unigram_ratio"],
                      config["plateau_tolerance"], config["plateau_window"])
    final = final.merge(gates[["arm", "config", "seed", "unigram_ratio", "improvement_last",
                               "below_unigram", "plateau", "passed"]],
                        on=["arm", "config", "seed"])
    shapes = model_shapes(config)
    models_table = pd.DataFrame([
        {"config": name, **{k: v for k, v in shapes[name].items() if k != "build_kwargs"},
         **{k: shapes[name]["build_kwargs"].get(k, _DEFAULTS[k]) for k in
            ("phase", "attn_bias", "blend", "phase_init", "pos_init", "loss_scale", "dropout")},
         "params": int(final.query("config == @name")["params"].iloc[0]),
         "flops_per_token": flops[name], "lr_tuned": tuned_lr[name]} for name in names])

    mechanism, heads = mechanism_tables(config, runs)
    layers, pairs = resonance_tables(config, tuned_lr)
    tables = {"final": final, "curves": curves, "tuning": tuning, "models": models_table,
              "mechanism": mechanism, "heads": heads, "resonance_layers": layers,
              "resonance_pairs": pairs}
    tables["summary"] = summary_table(final)
    tables["effects"] = effects_table(final, curves, flops, config["tost_margin"],
                                      config["plateau_window"])
    tables["resonance_summary"] = seed_bootstrap_cka(pairs, seeds_of(config), config["n_boot"],
                                                      config["seed"])
    meta = summarise(tables, config, unigram, rhyme_stats(config))
    return tables, meta


def rhyme_stats(config: dict) -> dict[str, Any]:
    """How much of the vocabulary the rhyme init touches."""
    groups = rt.tokenizer_rhyme_groups(_tokenizer_name(config), config["vocab_size"])
    members = sum(len(g) for g in groups.values())
    return {"rhyme_groups": len(groups), "rhyme_tokens": members,
            "rhyme_share": members / config["vocab_size"],
            "rhyme_multi_groups": sum(len(g) > 1 for g in groups.values())}


def _init_groups(tc: TrainConfig) -> dict[str, list[int]] | None:
    """The groups a run's phases were tied in at init, rebuilt with the run's own seed."""
    with torch.random.fork_rng(devices=[]):
        seed_everything(tc.seed)
        model = models.build(tc.family, tc.vocab_size, tc.d_model, tc.n_layers,
                             n_heads=tc.n_heads, context=tc.context, **tc.model_kwargs())
    return model.phase_groups


def mechanism_tables(config: dict, runs: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For every phase run, at init (step 0) and at the end: the spread of ``R`` off the
    diagonal on validation windows, the blend σ(b), and how tightly the rhyme groups (and the
    run's own init groups) sit together in phase space; plus ``w_h`` per layer and head."""
    from ..train import load_checkpoint

    rhyme = rt.tokenizer_rhyme_groups(_tokenizer_name(config), config["vocab_size"])
    tc0 = train_config(config, config["configs"][0], config["seed"])
    _, _, val = _load_data(tc0)
    windows = _val_windows(val, tc0)[:64, :-1]
    rows, head_rows = [], []
    for r in runs:
        if r["config"] not in PHASE_CONFIGS:
            continue
        tc = r["train_config"]
        own = _init_groups(tc)
        for stage, step in (("init", 0), ("end", tc.n_steps)):
            model = load_checkpoint(tc, step)
            row = {"arm": r["arm"], "config": r["config"], "seed": r["seed"], "stage": stage}
            row.update(rt.resonance_spread(model, windows))
            state = rt.mechanism_state(model)
            row.update({k: v for k, v in state.items() if k != "w"})
            w = np.asarray(state["w"], float)
            row["w_mean"], row["w_abs_max"] = float(w.mean()), float(np.abs(w).max())
            row["bias_spread"] = float(np.abs(w).mean()) * row["r_std"]
            for prefix, groups in (("rhyme", rhyme), ("own", own)):
                if groups is None:
                    continue
                c = rt.group_cohesion(model.phase.weight, groups)
                row.update({f"{prefix}_within": c["within"], f"{prefix}_between": c["between"],
                            f"{prefix}_cohesion": c["cohesion"]})
            rows.append(row)
            if stage == "end" and config["configs"] and r["config"] != "A_no_bias":
                for layer, ws in enumerate(state["w"]):
                    for head, value in enumerate(ws):
                        head_rows.append({"arm": r["arm"], "config": r["config"],
                                          "seed": r["seed"], "layer": layer, "head": head,
                                          "w": float(value)})
    return pd.DataFrame(rows), pd.DataFrame(head_rows)


def _load(config: dict, name: str, seed: int, lr: float):
    return zoo.wrap_trained(train(train_config(config, name, seed, lr), progress=False,
                                  threads=1), name=f"{name}-s{seed}")


def resonance_tables(config: dict, arm_lr: dict[str, float]
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Debiased linear CKA between matched layers of the phase model and the fair Standard
    (every seed against every seed) and of each against itself from another seed, in the
    :data:`RESONANCE_ARM` arm, on held-out corpus snippets (mean-pooled hidden states)."""
    names = [n for n in RESONANCE_MODELS if n in config["configs"]]
    if len(names) < 2:
        return pd.DataFrame(), pd.DataFrame(columns=["kind", "seed_a", "seed_b", "value"])
    stims = stimuli.corpus_stimuli(config["corpus"], n=config["n_stimuli"],
                                   max_words=config["max_words"], seed=config["seed"])
    seeds = seeds_of(config)
    acts = {(n, s): activations.extract(_load(config, n, s, arm_lr[n]), stims,
                                        cache=False).layers for n in names for s in seeds}
    a, b = names
    specs = ([("cross", a, sa, b, sb) for sa in seeds for sb in seeds]
             + [("within_A", a, sa, a, sb) for sa in seeds for sb in seeds if sa < sb]
             + [("within_S", b, sa, b, sb) for sa in seeds for sb in seeds if sa < sb])
    layer_rows, pair_rows = [], []
    for kind, na, sa, nb, sb in specs:
        table = similarity.similarity_matrix(acts[(na, sa)], acts[(nb, sb)],
                                             "cka_linear_debiased")
        diag = table[table["layer_a"] == table["layer_b"]]
        for row in diag.itertuples():
            layer_rows.append({"kind": kind, "seed_a": sa, "seed_b": sb,
                               "layer": int(row.layer_a), "value": float(row.value)})
        pair_rows.append({"kind": kind, "seed_a": sa, "seed_b": sb,
                          "value": float(diag["value"].mean())})
        if kind.startswith("within"):  # symmetric: store both orders for the bootstrap
            pair_rows.append({"kind": kind, "seed_a": sb, "seed_b": sa,
                              "value": float(diag["value"].mean())})
    return pd.DataFrame(layer_rows), pd.DataFrame(pair_rows)



# --------------------------------------------------------------------------------------------
# Summary and verdict


def _classify(effect: dict[str, Any]) -> str:
    """better / worse (the 95 % interval excludes 0), equivalent (TOST), or undecided."""
    if effect["high"] < 0:
        return "better"
    if effect["low"] > 0:
        return "worse"
    return "equivalent" if effect.get("equivalent") else "undecided"


def summarise(tables: dict[str, pd.DataFrame], config: dict, unigram_ppl: float,
              rhyme: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every number the notebook and the paper quote, from the tables (percentages for
    effects). Needs tables final (with the gate columns), summary, effects; uses mechanism,
    models and resonance_summary when present."""
    final, summary, effects = tables["final"], tables["summary"], tables["effects"]
    meta: dict[str, Any] = {
        "n_seeds": int(config["n_seeds"]), "tokens": int(config["tokens"]),
        "n_seeds_ablation": int(min(config["n_seeds_ablation"], config["n_seeds"])),
        "n_seeds_faithful": int(config["n_seeds_faithful"]),
        "steps": int(final["steps"].max()), "d_model": config["d_model"],
        "n_layers": config["n_layers"], "context": config["context"],
        "vocab_size": config["vocab_size"], "corpus": config["corpus"],
        "lr_seed": float(config["lr"]), "lr_grid": [float(x) for x in config["lr_grid"]],
        "tuning_seed": int(config["tuning_seed"]), "unigram_ppl": float(unigram_ppl),
        "max_unigram_ratio": float(config["max_unigram_ratio"]),
        "plateau_tolerance_pct": 100 * float(config["plateau_tolerance"]),
        "plateau_window_pct": 100 * float(config["plateau_window"]),
        "tost_margin_pct": 100 * float(config["tost_margin"]), **(rhyme or {}),
        **{f"v1_{k}": v for k, v in PREVIOUS.items()}}
    # -- gates
    failed = final[~final["passed"]]
    meta.update(n_runs=int(len(final)), n_runs_passed=int(final["passed"].sum()),
                all_passed=bool(final["passed"].all()),
                worst_unigram_ratio=float(final["unigram_ratio"].max()),
                best_unigram_ratio=float(final["unigram_ratio"].min()),
                worst_improvement_pct=100 * float(final["improvement_last"].max()),
                gate_failures=[f"{r.arm}/{r.config}/s{r.seed}" for r in failed.itertuples()])
    # -- perplexities and learning rates
    for row in summary.itertuples():
        key = f"ppl_{row.arm}_{row.config}"
        meta[key], meta[f"{key}_low"], meta[f"{key}_high"] = row.val_ppl, row.ci_low, row.ci_high
        if row.arm == "tuned":
            meta[f"lr_tuned_{row.config}"] = row.lr
    # -- effects, in percent
    for row in effects.itertuples():
        key = f"{row.key}_{row.arm}" + {"tokens": "", "flops": "_flops",
                                          "tokens_early": "_early"}[row.basis]
        meta[key] = 100 * row.ppl_change
        meta[f"{key}_low"] = 100 * row.ppl_change_low
        meta[f"{key}_high"] = 100 * row.ppl_change_high
        meta[f"{key}_equivalent"] = bool(row.equivalent)
        meta[f"{key}_class"] = _classify({"low": row.ppl_change_low,
                                          "high": row.ppl_change_high,
                                          "equivalent": row.equivalent})
    for key, value in PUBLISHED_EFFECT.items():
        meta[f"published_{key}"] = 100 * value
    # -- the mechanism, trained
    mech = tables.get("mechanism")
    if mech is not None and len(mech):
        for arm in ARMS:
            for stage in ("init", "end"):
                sel = mech[(mech["arm"] == arm) & (mech["stage"] == stage)]
                a = sel[sel["config"] == "A_random_phase"]
                if len(a):
                    for col in ("r_mean", "r_std", "r_q05", "r_q95", "bias_spread", "w_mean",
                                "w_abs_max", "blend_mean", "rhyme_cohesion"):
                        meta[f"A_{col}_{arm}_{stage}"] = float(a[col].mean())
                for name, col, tag in (("B_rhyme_phase", "own_cohesion", "B_cohesion"),
                                       ("B_shuffled", "own_cohesion", "shuffled_cohesion"),
                                       ("B_shuffled", "rhyme_cohesion", "shuffled_rhyme_cohesion")):
                    part = sel[sel["config"] == name]
                    if len(part) and col in part:
                        meta[f"{tag}_{arm}_{stage}"] = float(part[col].mean())
    heads = tables.get("heads")
    if heads is not None and len(heads):
        for arm in ARMS:
            a = heads[(heads["arm"] == arm) & (heads["config"] == "A_random_phase")]
            if len(a):
                meta[f"A_w_min_{arm}"], meta[f"A_w_max_{arm}"] = float(a["w"].min()), \
                    float(a["w"].max())
    # -- parameters and FLOPs
    models_table = tables.get("models")
    if models_table is not None and len(models_table):
        mt = models_table.set_index("config")
        if {"A_random_phase", "standard_fixed"} <= set(mt.index):
            meta["phase_param_share"] = 100 * (mt.loc["A_random_phase", "params"]
                                               / mt.loc["standard_fixed", "params"] - 1)
            meta["phase_flops_share"] = 100 * (mt.loc["A_random_phase", "flops_per_token"]
                                               / mt.loc["standard_fixed", "flops_per_token"] - 1)
        if "standard_wide" in mt.index:
            meta["wide_d_model"] = int(mt.loc["standard_wide", "d_model"])
    meta["phase_param_share_seed_scale"] = 100 * rt.phase_param_count(50257, 768, 12, 12) / \
        rt.meta_param_count(50257, 768, 12, 12, 256, phase=False)
    # -- representational resonance (debiased CKA over matched layers)
    rs = tables.get("resonance_summary")
    if rs is not None and len(rs):
        for row in rs.itertuples():
            meta[f"cka_{row.quantity}"] = row.value
            meta[f"cka_{row.quantity}_low"], meta[f"cka_{row.quantity}_high"] = \
                row.ci_low, row.ci_high
    meta["headline"] = headline(meta)
    meta["verdict"] = verdict(meta)
    return meta


def _fmt(meta: dict, key: str, digits: int = 1) -> str:
    return (f"{meta[key]:+.{digits}f} % [{meta[key + '_low']:+.{digits}f}, "
            f"{meta[key + '_high']:+.{digits}f}]")


def headline(meta: dict) -> str:
    """One line for the README: the published and the fair gap, both arms, and whether the
    runs reached their plateau."""
    gates = ("every run at its plateau" if meta["all_passed"] else
             f"{meta['n_runs_passed']} of {meta['n_runs']} runs past the plateau gates")
    return (f"After {meta['steps']:,} updates ({gates}; {meta['n_seeds']} paired seeds, "
            f"{meta['d_model']}d × {meta['n_layers']}L on {meta['corpus'].upper()}): phase "
            f"model vs the seed's "
            f"Standard {_fmt(meta, 'published_gap_faithful', 0)} (published "
            f"{meta['published_published_gap']:+.0f} %); vs a Standard initialised like it "
            f"{_fmt(meta, 'fair_gap_faithful')} at the seed's learning rate, "
            f"{_fmt(meta, 'fair_gap_tuned')} with tuned learning rates")


_WORDS = {"better": "lower (better)", "worse": "higher (worse)",
          "equivalent": "equivalent within the margin", "undecided": "not distinguishable"}


def verdict(meta: dict) -> str:
    """The finding in words, every number and direction read from ``meta``."""
    out = []
    if meta["all_passed"]:
        out.append(
            f"All {meta['n_runs']} runs passed the capability and plateau gates: final "
            f"perplexity at most {meta['worst_unigram_ratio']:.2f} × the unigram model's "
            f"{meta['unigram_ppl']:.0f} (gate {meta['max_unigram_ratio']:.2f}), and at most "
            f"{meta['worst_improvement_pct']:.2f} % improvement over the last "
            f"{meta['plateau_window_pct']:.0f} % of the steps (gate "
            f"{meta['plateau_tolerance_pct']:.0f} %).")
    else:
        out.append(
            f"{meta['n_runs'] - meta['n_runs_passed']} of {meta['n_runs']} runs failed the "
            f"gates ({', '.join(meta['gate_failures'][:6])}"
            f"{', ...' if len(meta['gate_failures']) > 6 else ''}); comparisons involving them "
            "are not at a plateau and are reported only as description.")
    for arm, how in (("faithful", "with the seed's optimiser (AdamW 3e-4)"),
                     ("tuned", "with each configuration at its own best learning rate")):
        if f"fair_gap_{arm}" not in meta:
            continue
        out.append(
            f"{how[0].upper() + how[1:]}: against the seed's own Standard the phase model's perplexity "
            f"is {_fmt(meta, f'published_gap_{arm}')} (published "
            f"{meta['published_published_gap']:+.0f} %); against a Standard initialised like it "
            f"{_fmt(meta, f'fair_gap_{arm}')}, {_WORDS[meta[f'fair_gap_{arm}_class']]} "
            f"(equal FLOPs: {_fmt(meta, f'fair_gap_{arm}_flops')}; at "
            f"{100 - meta['plateau_window_pct']:.0f} % of the steps: "
            f"{_fmt(meta, f'fair_gap_{arm}_early')})"
            + (f"; against a Standard given its parameters as width "
               f"{_fmt(meta, f'params_{arm}')}." if f"params_{arm}" in meta else "."))
    arms = [a for a in ARMS if f"fair_gap_{a}" in meta]
    published = meta["published_published_gap"]
    if arms and all(meta[f"fair_gap_{a}_low"] > published / 2 for a in arms):
        out.append(f"So the fair gap rules out anything like \"60 % smarter\" (it would be "
                   f"{published:+.0f} %): the interval's best case is "
                   f"{min(meta[f'fair_gap_{a}_low'] for a in arms):+.1f} %.")
    elif arms:
        out.append("The fair gap does not rule out an effect as large as the published one.")
    for key, what in (("bias", "the attention bias w_h·R"), ("blend", "the blend"),
                      ("rhyme_vs_shuffled", "rhyme groups against random groups of the same "
                                            "sizes")):
        if f"{key}_tuned" in meta:
            out.append(f"Switching on {what} changes perplexity by "
                       f"{_fmt(meta, f'{key}_tuned', 2)} (tuned arm): "
                       f"{_WORDS[meta[f'{key}_tuned_class']]}.")
    if "A_r_std_tuned_init" in meta:
        out.append(f"Trained, R's spread off the diagonal goes from "
                   f"{meta['A_r_std_tuned_init']:.3f} to {meta['A_r_std_tuned_end']:.3f} (std), "
                   f"w_h ends in [{meta.get('A_w_min_tuned', float('nan')):+.2f}, "
                   f"{meta.get('A_w_max_tuned', float('nan')):+.2f}] and σ(b) at "
                   f"{meta['A_blend_mean_tuned_end']:.2f} (init 0.57).")
    if "B_cohesion_tuned_init" in meta:
        out.append(f"Rhyme groups' phase cohesion (within − between resonance) goes from "
                   f"{meta['B_cohesion_tuned_init']:.3f} at init to "
                   f"{meta['B_cohesion_tuned_end']:.3f} trained; a random-phase model ends "
                   f"at {meta['A_rhyme_cohesion_tuned_end']:.3f} on the same groups.")
    if "cka_cross" in meta:
        out.append(f"Debiased CKA over matched layers: phase model ↔ fair Standard "
                   f"{meta['cka_cross']:.3f} [{meta['cka_cross_low']:.3f}, "
                   f"{meta['cka_cross_high']:.3f}], phase ↔ phase "
                   f"{meta['cka_within_A']:.3f} [{meta['cka_within_A_low']:.3f}, "
                   f"{meta['cka_within_A_high']:.3f}], Standard ↔ Standard "
                   f"{meta['cka_within_S']:.3f} [{meta['cka_within_S_low']:.3f}, "
                   f"{meta['cka_within_S_high']:.3f}] (intervals resample seeds).")
    return " ".join(out)


__all__ = ["run", "compute", "summarise", "verdict", "headline", "SIZES", "NAME", "CONFIGS",
           "ARMS", "COMPARISONS", "PUBLISHED", "model_shapes", "train_config", "wide_width",
           "flops_per_token", "paired_effect", "run_gates", "flops_matched_losses",
           "effects_table", "summary_table", "choose_lr", "seed_bootstrap_cka", "all_jobs"]
