"""04_resonance_transformer: reproduce the seed's "60 % smarter" runs at CPU scale, then control.

All configurations are trained the same way: the seed's AdamW 3e-4, weight decay 0.01, betas
(0.9, 0.999), constant LR without warmup, clip 1.0, batches of 8 × 4 accumulated with the loss
*not* divided by 4 (``loss_scale = accumulation``; see :mod:`resonance.resonance_transformer`).

The nine configurations (``A_random_phase`` ... ``standard_wide``) are those described in
:mod:`resonance.experiments.resonance_transformer_plateau`, which replaces this 64-update
version once its paper profile has been run.

Every configuration is trained with the same seeds; a seed fixes the data order, so
comparisons are paired by seed. Effects are reported as the relative change in validation
perplexity, ``exp(mean Δ val_loss) - 1`` with a t interval over the paired seeds.
"""

from __future__ import annotations

import math
import os
from dataclasses import fields
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .. import activations, similarity, stimuli, store, zoo
from .. import resonance_transformer as rt
from ..store import Bundle
from ..train import TrainConfig, train
from .common import profile_config
# Shared with the plateau version of this experiment (resonance_transformer_plateau), which
# replaces this module once its paper profile has been run.
from .resonance_transformer_plateau import (_tokenizer_name, _train_all, _train_one,  # noqa: F401
                                            model_shapes, rhyme_stats, wide_width)

NAME = "04_resonance_transformer"
_DEFAULTS = {f.name: f.default for f in fields(rt.ResonanceConfig)}

# The seed's published validation perplexities after 2 epochs (test5.ipynb).
PUBLISHED = {"A_random_phase": 63.88, "B_rhyme_phase": 63.17, "C_small_rhyme": 70.92,
             "standard_seed": 148.90}

CONFIGS = ("A_random_phase", "B_rhyme_phase", "B_shuffled", "C_small_rhyme", "standard_seed",
           "standard_fixed", "A_no_bias", "A_no_blend", "standard_wide")

_SHARED = {"corpus": "kjv", "tokenizer": None, "vocab_size": 4096, "n_frequencies": 32,
           "micro_batch": 8, "accumulation": 4, "divide_by_accumulation": False, "lr": 3e-4,
           "weight_decay": 0.01, "betas": [0.9, 0.999], "grad_clip": 1.0, "dropout": 0.1,
           "configs": list(CONFIGS), "knn_k": 10}
SIZES = {
    # smoke: the whole notebook in well under 3 minutes on 2 cores.
    "smoke": {**_SHARED, "d_model": 48, "n_layers": 3, "n_heads": 3, "small_d_model": 32,
              "small_n_layers": 2, "small_n_heads": 2, "context": 32, "tokens": 8_192,
              "eval_every": 2, "eval_tokens": 4096, "n_seeds": 2, "n_stimuli": 64,
              "max_words": 8},
    # paper: A/B/Standard 48 wide, 3 deep (3 heads of 16); C 32 wide, 2 deep (2/3 of both);
    # 64 updates of the seed's 32-sequence batches (sized for ~20 min on 2 busy cores).
    "paper": {**_SHARED, "d_model": 48, "n_layers": 3, "n_heads": 3, "small_d_model": 32,
              "small_n_layers": 2, "small_n_heads": 2, "context": 64, "tokens": 131_072,
              "eval_every": 8, "eval_tokens": 16_384, "n_seeds": 3, "n_stimuli": 256,
              "max_words": 24},
    # hub: the seed's own data and tokenizer (OpenWebText, GPT-2 BPE), for a GPU.
    "hub": {**_SHARED, "corpus": "openwebtext", "tokenizer": "gpt2", "vocab_size": 50257,
            "d_model": 384, "n_layers": 6, "n_heads": 6, "small_d_model": 256,
            "small_n_layers": 4, "small_n_heads": 4, "context": 256, "tokens": 20_000_000,
            "eval_every": 200, "eval_tokens": 262_144, "n_seeds": 3, "n_stimuli": 512,
            "max_words": 32},
}

# (label, treatment, reference, what it isolates)
COMPARISONS = (
    ("published gap (A vs seed's Standard)", "A_random_phase", "standard_seed",
     "the seed's headline comparison"),
    ("fair gap (A vs fixed Standard)", "A_random_phase", "standard_fixed",
     "phase model vs a Standard initialised like it"),
    ("baseline init (seed's vs fixed Standard)", "standard_seed", "standard_fixed",
     "positions at N(0, 1) instead of N(0, 0.02)"),
    ("rhyme init (B vs A)", "B_rhyme_phase", "A_random_phase", "rhyme-group phases"),
    ("rhyme vs random groups (B vs B shuffled)", "B_rhyme_phase", "B_shuffled",
     "rhyme itself, grouping held fixed"),
    ("random groups (B shuffled vs A)", "B_shuffled", "A_random_phase",
     "grouped phases of any kind"),
    ("attention bias (A vs A without bias)", "A_random_phase", "A_no_bias", "w_h · R"),
    ("blend (A vs A without blend)", "A_random_phase", "A_no_blend", "phase added to input"),
    ("parameters (A vs param-matched wide Standard)", "A_random_phase", "standard_wide",
     "A's extra parameters spent on width instead"),
    ("smaller rhyme model (C vs A)", "C_small_rhyme", "A_random_phase", "2/3 width and depth"),
    ("C vs seed's Standard", "C_small_rhyme", "standard_seed", "the seed's C vs its Standard"),
)
PUBLISHED_EFFECT = {"A_random_phase/standard_seed": PUBLISHED["A_random_phase"] /
                    PUBLISHED["standard_seed"] - 1,
                    "B_rhyme_phase/A_random_phase": PUBLISHED["B_rhyme_phase"] /
                    PUBLISHED["A_random_phase"] - 1,
                    "C_small_rhyme/A_random_phase": PUBLISHED["C_small_rhyme"] /
                    PUBLISHED["A_random_phase"] - 1,
                    "C_small_rhyme/standard_seed": PUBLISHED["C_small_rhyme"] /
                    PUBLISHED["standard_seed"] - 1}

# Model pairs compared layer by layer: (label, (config, seed index), (config, seed index)).
RESONANCE_PAIRS = (
    ("A ↔ fixed Standard", ("A_random_phase", 0), ("standard_fixed", 0)),
    ("A ↔ seed's Standard", ("A_random_phase", 0), ("standard_seed", 0)),
    ("fixed Standard ↔ fixed Standard (seed 1)", ("standard_fixed", 0), ("standard_fixed", 1)),
    ("A ↔ A (seed 1)", ("A_random_phase", 0), ("A_random_phase", 1)),
)


def run(profile: str = "paper", seed: int = 0, force: bool = False, workers: int | None = None,
        **overrides: Any) -> Bundle:
    """Train (or load) every configuration × seed and return the bundle of tidy tables.

    ``workers`` training processes run side by side (default: the CPU count, at most 2; one
    torch thread each). It does not change any number, so it is not part of the config.
    """
    config = profile_config(SIZES, profile, seed, overrides)
    return store.cached(NAME, profile, config, lambda c: compute(c, workers=workers),
                        force=force)


# --------------------------------------------------------------------------------------------
# Configurations


def train_config(config: dict, name: str, seed: int) -> TrainConfig:
    shape = model_shapes(config)[name]
    return TrainConfig(
        family=rt.FAMILY, d_model=shape["d_model"], n_layers=shape["n_layers"],
        n_heads=shape["n_heads"], context=config["context"], corpus=config["corpus"],
        tokenizer=config["tokenizer"], vocab_size=config["vocab_size"], tokens=config["tokens"],
        batch_size=config["micro_batch"] * config["accumulation"], lr=config["lr"],
        weight_decay=config["weight_decay"], betas=tuple(config["betas"]), warmup=0,
        schedule="constant", grad_clip=config["grad_clip"], eval_every=config["eval_every"],
        eval_tokens=config["eval_tokens"], n_log_checkpoints=0, n_linear_checkpoints=1,
        seed=seed, build_kwargs=shape["build_kwargs"])




# --------------------------------------------------------------------------------------------
# Statistics


def paired_effect(treat: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Mean paired difference of validation losses with a 95 % t interval, and the matching
    relative change in perplexity ``exp(Δ) - 1``. Needs at least 2 pairs."""
    treat, ref = np.asarray(treat, float), np.asarray(ref, float)
    if treat.shape != ref.shape or treat.size < 2:
        raise ValueError(f"need >= 2 paired values, got {treat.shape} and {ref.shape}")
    diff = treat - ref
    n = diff.size
    mean, se = float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(n))
    half = float(stats.t.ppf(0.975, n - 1)) * se
    return {"n_seeds": n, "delta_loss": mean, "delta_loss_low": mean - half,
            "delta_loss_high": mean + half, "ppl_change": math.expm1(mean),
            "ppl_change_low": math.expm1(mean - half), "ppl_change_high": math.expm1(mean + half)}


def summarise(final: pd.DataFrame) -> pd.DataFrame:
    """Per configuration: geometric-mean perplexity over seeds with a 95 % t interval."""
    rows = []
    for name, group in final.groupby("config", sort=False):
        loss = group["val_loss"].to_numpy()
        n = loss.size
        mean = float(loss.mean())
        half = (float(stats.t.ppf(0.975, n - 1)) * float(loss.std(ddof=1)) / math.sqrt(n)
                if n > 1 else float("nan"))
        rows.append({"config": name, "n_seeds": n, "params": int(group["params"].iloc[0]),
                     "val_ppl": math.exp(mean), "ci_low": math.exp(mean - half),
                     "ci_high": math.exp(mean + half), "ppl_min": float(group["val_ppl"].min()),
                     "ppl_max": float(group["val_ppl"].max()),
                     "published_ppl": PUBLISHED.get(name, float("nan"))})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# The computation


def compute(config: dict, workers: int | None = None) -> tuple[dict[str, pd.DataFrame], dict]:
    names = list(config["configs"])
    seeds = [config["seed"] + i for i in range(config["n_seeds"])]
    shapes = model_shapes(config)
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    if config["tokenizer"] is None and any(s["build_kwargs"].get("phase_init", "random") != "random"
                                           for s in shapes.values()):
        rt.tokenizer_rhyme_groups(_tokenizer_name(config), config["vocab_size"])  # warm
    jobs = [(name, seed, train_config(config, name, seed)) for name in names for seed in seeds]
    results = _train_all([tc for _, _, tc in jobs], workers)

    curves, finals = [], []
    for (name, seed, tc), (history, info) in zip(jobs, results):
        curves.append(history.assign(config=name, seed=seed))
        last = history.iloc[-1]
        finals.append({"config": name, "seed": seed, "d_model": tc.d_model,
                       "n_layers": tc.n_layers, "n_heads": tc.n_heads, "params": info["params"],
                       "tokens": int(last["tokens"]), "steps": int(last["step"]),
                       "val_loss": float(last["val_loss"]), "val_ppl": float(last["val_ppl"]),
                       "run": tc.name})
    curves = pd.concat(curves, ignore_index=True)[
        ["config", "seed", "step", "tokens", "train_loss", "val_loss", "val_ppl"]]
    final = pd.DataFrame(finals)
    summary = summarise(final)

    by = final.pivot(index="seed", columns="config", values="val_loss")
    effects = []
    for label, treat, ref, isolates in COMPARISONS:
        if treat not in by or ref not in by:
            continue
        effects.append({"comparison": label, "treatment": treat, "reference": ref,
                        "isolates": isolates, **paired_effect(by[treat], by[ref]),
                        "published_change": PUBLISHED_EFFECT.get(f"{treat}/{ref}", float("nan"))})
    effects = pd.DataFrame(effects)

    models_table = pd.DataFrame([
        {"config": name, **{k: v for k, v in shapes[name].items() if k != "build_kwargs"},
         **{k: shapes[name]["build_kwargs"].get(k, _DEFAULTS[k]) for k in
            ("phase", "attn_bias", "blend", "phase_init", "pos_init", "loss_scale")},
         "params": int(final.query("config == @name")["params"].iloc[0])} for name in names])

    rhyme = rhyme_stats(config)
    layers, resonance_summary = resonance_tables(config, seeds)
    meta = _meta(config, summary, effects, resonance_summary, rhyme, models_table)
    tables = {"final": final, "summary": summary, "curves": curves, "effects": effects,
              "models": models_table, "resonance_layers": layers,
              "resonance_summary": resonance_summary}
    return tables, meta



def _load(config: dict, name: str, seed: int):
    return zoo.wrap_trained(train(train_config(config, name, seed), progress=False, threads=1),
                            name=f"{name}-s{seed}")


def resonance_tables(config: dict, seeds: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Debiased CKA and mutual k-NN between every layer of model pairs on corpus snippets."""
    stims = stimuli.corpus_stimuli(config["corpus"], n=config["n_stimuli"],
                                   max_words=config["max_words"], seed=config["seed"])
    acts: dict[tuple[str, int], Any] = {}
    rows, summary = [], []
    for label, (name_a, i_a), (name_b, i_b) in RESONANCE_PAIRS:
        if name_a not in config["configs"] or name_b not in config["configs"] \
                or max(i_a, i_b) >= len(seeds):
            continue
        keys = [(name_a, seeds[i_a]), (name_b, seeds[i_b])]
        for key in keys:
            if key not in acts:
                acts[key] = activations.extract(_load(config, *key), stims, cache=False).layers
        for measure, kw in (("cka_linear_debiased", {}), ("mutual_knn", {"k": config["knn_k"]})):
            table = similarity.similarity_matrix(acts[keys[0]], acts[keys[1]], measure, **kw)
            rows.append(table.assign(pair=label))
            diag = table[table["layer_a"] == table["layer_b"]]
            last = table[(table["layer_a"] == table["layer_a"].max())
                         & (table["layer_b"] == table["layer_b"].max())]
            summary.append({"pair": label, "measure": measure,
                            "matched_layer_mean": float(diag["value"].mean()),
                            "last_layer": float(last["value"].iloc[0]),
                            "chance": config["knn_k"] / (len(stims) - 1)
                            if measure == "mutual_knn" else 0.0})
    return pd.concat(rows, ignore_index=True), pd.DataFrame(summary)


def _meta(config, summary, effects, resonance_summary, rhyme, models_table) -> dict:
    s = summary.set_index("config")
    e = effects.set_index("treatment", drop=False)
    meta: dict[str, Any] = {"n_seeds": config["n_seeds"], "tokens": config["tokens"],
                            "d_model": config["d_model"], "n_layers": config["n_layers"],
                            "context": config["context"], "corpus": config["corpus"], **rhyme}
    for name, row in s.iterrows():
        meta[f"ppl_{name}"] = row["val_ppl"]
        meta[f"ppl_{name}_low"] = row["ci_low"]
        meta[f"ppl_{name}_high"] = row["ci_high"]
    keys = {"A_random_phase/standard_seed": "published_gap",
            "A_random_phase/standard_fixed": "fair_gap",
            "standard_seed/standard_fixed": "init_effect", "B_rhyme_phase/A_random_phase": "rhyme",
            "B_rhyme_phase/B_shuffled": "rhyme_vs_shuffled",
            "B_shuffled/A_random_phase": "grouping",
            "A_random_phase/A_no_bias": "bias", "A_random_phase/A_no_blend": "blend",
            "A_random_phase/standard_wide": "params", "C_small_rhyme/A_random_phase": "small",
            "C_small_rhyme/standard_seed": "small_vs_seed_standard"}
    for _, row in effects.iterrows():
        key = keys[f"{row['treatment']}/{row['reference']}"]
        for col, suffix in (("ppl_change", ""), ("ppl_change_low", "_low"),
                            ("ppl_change_high", "_high")):
            meta[f"{key}{suffix}"] = 100 * row[col]  # percent
    for key, value in PUBLISHED_EFFECT.items():
        meta[f"published_{keys[key]}"] = 100 * value
    params = models_table.set_index("config")["params"]
    if {"A_random_phase", "standard_fixed"} <= set(params.index):
        meta["phase_param_share"] = 100 * (params["A_random_phase"] / params["standard_fixed"] - 1)
    meta["phase_param_share_seed_scale"] = 100 * rt.phase_param_count(50257, 768, 12, 12) / \
        rt.meta_param_count(50257, 768, 12, 12, 256, phase=False)
    if "standard_wide" in params:
        meta["wide_d_model"] = int(models_table.set_index("config")["d_model"]["standard_wide"])
    rs = resonance_summary.set_index(["pair", "measure"])
    for label, key in (("A ↔ fixed Standard", "a_fixed"), ("A ↔ seed's Standard", "a_seed"),
                       ("fixed Standard ↔ fixed Standard (seed 1)", "fixed_fixed"),
                       ("A ↔ A (seed 1)", "a_a")):
        for measure, mkey in (("cka_linear_debiased", "cka"), ("mutual_knn", "knn")):
            if (label, measure) in rs.index:
                meta[f"{mkey}_{key}"] = float(rs.loc[(label, measure), "matched_layer_mean"])
    fair_excludes_zero = ("fair_gap_low" in meta and
                          (meta["fair_gap_low"] > 0 or meta["fair_gap_high"] < 0))
    meta["fair_gap_significant"] = bool(fair_excludes_zero)
    meta["published_gap_significant"] = bool(meta.get("published_gap_high", 0) < 0)
    meta["headline"] = (
        f"Against the seed's own Standard (positions at N(0, 1)) the phase model's perplexity is "
        f"{meta['published_gap']:+.0f} % [{meta['published_gap_low']:+.0f}, "
        f"{meta['published_gap_high']:+.0f}] (published {meta['published_published_gap']:+.0f} %); "
        f"against a Standard initialised like it, {meta['fair_gap']:+.1f} % "
        f"[{meta['fair_gap_low']:+.1f}, {meta['fair_gap_high']:+.1f}]; rhyme init "
        f"{meta['rhyme']:+.1f} % [{meta['rhyme_low']:+.1f}, {meta['rhyme_high']:+.1f}] "
        f"({config['n_seeds']} seeds, {config['d_model']}d × {config['n_layers']}L on "
        f"{config['corpus'].upper()})")
    return meta


__all__ = ["run", "compute", "SIZES", "NAME", "CONFIGS", "COMPARISONS", "PUBLISHED",
           "model_shapes", "train_config", "wide_width", "paired_effect", "summarise"]
