"""04_resonance_transformer: the seed's "60 % smarter" runs at CPU scale, trained to a plateau,
then controlled.

Configurations: :mod:`resonance.phase_variants` (each trained with the same paired seeds; a
seed fixes the data order).

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

Gates before any comparison (:func:`resonance.runs.plateau_gates`): every run's final validation
perplexity is at most ``max_unigram_ratio`` × a unigram model's of the same tokens, and it
improved by less than ``plateau_tolerance`` over the last ``plateau_window`` of the steps.
Effects: the relative change in perplexity, ``exp(mean Δ loss) − 1``, with a t interval over
paired seeds, at equal tokens and at equal FLOPs (:func:`resonance.runs.paired_effects`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from .. import (activations, phase_mechanism, phase_variants, runs, seeds, stats, stimuli,
               store, zoo)
from ..models import resonance_lm as rt
from ..store import Bundle
from ..train import train, unigram_perplexity
from ..phase_variants import (COMPARISONS, CONFIGS, FAITHFUL_CONFIGS, PHASE_CONFIGS, PUBLISHED,
                              PUBLISHED_EFFECT, all_jobs, flops_per_token, model_shapes,
                              seeds_of, tokenizer_name, train_config, wide_width)
from .common import profile_config

NAME = "04_resonance_transformer"
VERSION = 2

# The first version of this notebook (64 updates per run; results at commit e14cc5c), kept to
# report what changed.
PREVIOUS = {"steps": 64, "tokens": 131_072, "n_seeds": 3, "d_model": 48, "n_layers": 3,
            "vocab_size": 4096, "ppl_min": 1064.0, "ppl_max": 1950.1, "published_gap": -25.8,
            "published_gap_low": -31.8, "published_gap_high": -19.4, "fair_gap": -1.9,
            "fair_gap_low": -5.9, "fair_gap_high": 2.2, "init_effect": 32.2, "params": 31.5,
            "bias": -0.00, "rhyme": -2.3, "rhyme_vs_shuffled": -0.3}

ARMS = ("faithful", "tuned")
SEED_LR = 3e-4

_SHARED = {"corpus": "kjv", "tokenizer": None, "n_frequencies": 32, "micro_batch": 8,
           "accumulation": 4, "divide_by_accumulation": False, "lr": SEED_LR,
           "weight_decay": 0.01, "decay_all_params": True, "betas": [0.9, 0.999],
           "grad_clip": 1.0, "dropout": 0.1, "configs": list(CONFIGS),
           "max_unigram_ratio": 0.5, "plateau_tolerance": 0.01, "plateau_window": 0.2,
           "tost_margin": 0.02, "n_boot": 2000, "tuning_seed": 100}
SIZES = {
    # smoke: the whole notebook in about 2 minutes on 2 cores; gates are not expected to pass.
    "smoke": {**_SHARED, "faithful_configs": list(FAITHFUL_CONFIGS), "vocab_size": 1024,
              "d_model": 16, "n_layers": 1, "n_heads": 2, "small_d_model": 8,
              "small_n_layers": 1, "small_n_heads": 2, "context": 16, "tokens": 8 * 32 * 16,
              "eval_every": 2, "eval_tokens": 1024, "n_seeds": 2, "n_seeds_ablation": 2,
              "n_seeds_faithful": 2, "lr_grid": [3e-3], "n_stimuli": 48, "max_words": 5,
              "n_boot": 200},
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
              "n_seeds_faithful": 3, "lr_grid": [3e-3, 1e-2], "n_stimuli": 256, "max_words": 9},
    # hub: the seed's own data, tokenizer and context (OpenWebText, GPT-2 BPE, 256), for a GPU.
    "hub": {**_SHARED, "faithful_configs": list(CONFIGS), "corpus": "openwebtext",
            "tokenizer": "gpt2", "vocab_size": 50257, "d_model": 384, "n_layers": 6,
            "n_heads": 6, "small_d_model": 256, "small_n_layers": 4, "small_n_heads": 4,
            "context": 256, "tokens": 20_000 * 32 * 256, "eval_every": 2000,
            "eval_tokens": 262_144, "n_seeds": 5, "n_seeds_ablation": 5,
            "n_seeds_faithful": 5, "lr_grid": [3e-4, 6e-4, 1e-3, 2e-3],
            "n_stimuli": 512, "max_words": 32},
}

# Representational resonance: the phase model vs the fair Standard, each against itself.
RESONANCE_MODELS = ("A_random_phase", "standard_fixed")
RESONANCE_ARM = "tuned"


def run(profile: str = "paper", seed: int = 0, force: bool = False, workers: int | None = None,
        **overrides: Any) -> Bundle:
    """Train (or load) every configuration × arm × seed and return the bundle of tidy tables.
    ``workers``: training processes (:func:`resonance.runs.train_many`; changes no number, so
    not in the config). ``force`` recomputes the tables; training runs stay cached."""
    config = profile_config(SIZES, profile, seed, overrides, version=VERSION)
    return store.cached(NAME, profile, config, lambda c: compute(c, workers=workers),
                        force=force)


def effects_table(final: pd.DataFrame, curves: pd.DataFrame, flops: dict[str, int],
                  margin: float, window: float = 0.2) -> pd.DataFrame:
    """Every comparison of :data:`COMPARISONS` (:func:`resonance.runs.paired_effects`)."""
    return runs.paired_effects(final, curves, flops, COMPARISONS, ARMS, margin, window,
                               PUBLISHED_EFFECT)


def _train(jobs: list[dict], workers: int | None) -> list[dict]:
    return [{**job, "history": h, "info": info} for job, (h, info) in
            zip(jobs, runs.train_many([j["train_config"] for j in jobs], workers))]


def compute(config: dict, workers: int | None = None) -> tuple[dict[str, pd.DataFrame], dict]:
    names = list(config["configs"])
    if config["tokenizer"] is None:
        rt.tokenizer_rhyme_groups(tokenizer_name(config), config["vocab_size"])  # warm
    done = _train(all_jobs(config), workers)  # the tuning sweep and the faithful arm
    tuning = pd.DataFrame([{"config": r["config"], "lr": r["lr"],
                            "val_loss": float(r["history"]["val_loss"].iloc[-1]),
                            "val_ppl": float(r["history"]["val_ppl"].iloc[-1])}
                           for r in done if r["arm"] == "tuning"])
    tuned_lr = runs.choose_lr(tuning, config["lr_grid"])
    tuning["chosen"] = [tuned_lr[c] == lr for c, lr in zip(tuning["config"], tuning["lr"])]
    done = [r for r in done if r["arm"] in ARMS] + _train(
        [j for j in all_jobs(config, tuned_lr) if j["arm"] == "tuned"], workers)

    flops = {name: flops_per_token(config, name) for name in names}
    final, curves = runs.run_tables(done, flops)
    unigram = unigram_perplexity(train_config(config, names[0], config["seed"]))
    gates = runs.plateau_gates(final, curves, unigram, config["max_unigram_ratio"],
                               config["plateau_tolerance"], config["plateau_window"])
    final = final.merge(gates[["arm", "config", "seed", "unigram_ratio", "improvement_last",
                               "below_unigram", "plateau", "passed"]],
                        on=["arm", "config", "seed"])
    params = final.groupby("config")["params"].first().to_dict()
    models_table = phase_variants.models_table(config, params, flops, tuned_lr)

    rhyme_groups = rt.tokenizer_rhyme_groups(tokenizer_name(config), config["vocab_size"])
    windows = phase_mechanism.validation_windows(train_config(config, names[0], config["seed"]))
    mechanism, heads = phase_mechanism.mechanism_tables(
        [r for r in done if r["config"] in PHASE_CONFIGS], rhyme_groups, windows,
        no_heads=("A_no_bias",))
    layers, pairs = resonance_tables(config, tuned_lr)
    tables = {"final": final, "curves": curves, "tuning": tuning, "models": models_table,
              "mechanism": mechanism, "heads": heads, "resonance_layers": layers,
              "resonance_pairs": pairs}
    tables["summary"] = runs.perplexity_summary(final, PUBLISHED)
    tables["effects"] = effects_table(final, curves, flops, config["tost_margin"],
                                      config["plateau_window"])
    tables["resonance_summary"] = stats.cross_within_bootstrap(pairs, seeds_of(config),
                                                               config["n_boot"], config["seed"])
    rhyme = phase_mechanism.rhyme_stats(tokenizer_name(config), config["vocab_size"])
    return tables, summarise(tables, config, unigram, rhyme)


def resonance_tables(config: dict, arm_lr: dict[str, float]
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Debiased linear CKA between matched layers of the phase model and the fair Standard
    (every seed against every seed) and of each against itself from another seed
    (:func:`resonance.seeds.cross_seed_similarity`), in the :data:`RESONANCE_ARM` arm, on
    held-out corpus snippets (mean-pooled hidden states)."""
    names = [n for n in RESONANCE_MODELS if n in config["configs"]]
    if len(names) < 2:
        return pd.DataFrame(), pd.DataFrame(columns=["kind", "seed_a", "seed_b", "value"])
    stims = stimuli.corpus_stimuli(config["corpus"], n=config["n_stimuli"],
                                   max_words=config["max_words"], seed=config["seed"])
    layers = {}
    for n in names:
        for s in seeds_of(config):
            trained = train(train_config(config, n, s, arm_lr[n]), progress=False, threads=1)
            layers[(n, s)] = activations.extract(zoo.wrap_trained(trained, name=f"{n}-s{s}"),
                                                 stims, cache=False).layers
    return seeds.cross_seed_similarity(layers, *names, seeds_of(config))


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
    meta.update(runs.gate_summary(final))
    for row in summary.itertuples():  # perplexities and learning rates
        key = f"ppl_{row.arm}_{row.config}"
        meta[key], meta[f"{key}_low"], meta[f"{key}_high"] = row.val_ppl, row.ci_low, row.ci_high
        if row.arm == "tuned":
            meta[f"lr_tuned_{row.config}"] = row.lr
    meta.update(runs.effects_meta(effects))  # in percent
    for key, value in PUBLISHED_EFFECT.items():
        meta[f"published_{key}"] = 100 * value
    meta.update(_mechanism_meta(tables.get("mechanism"), tables.get("heads")))
    models_table = tables.get("models")  # parameters and FLOPs
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
    rs = tables.get("resonance_summary")  # debiased CKA over matched layers
    if rs is not None and len(rs):
        for row in rs.itertuples():
            meta[f"cka_{row.quantity}"] = row.value
            meta[f"cka_{row.quantity}_low"], meta[f"cka_{row.quantity}_high"] = \
                row.ci_low, row.ci_high
    meta["headline"] = headline(meta)
    meta["verdict"] = verdict(meta)
    return meta


def _mechanism_meta(mech: pd.DataFrame | None, heads: pd.DataFrame | None) -> dict[str, Any]:
    """A's R spread, w, blend and rhyme cohesion, and B's and B shuffled's group cohesion,
    per arm and stage (seed means); A's range of w_h per arm."""
    meta: dict[str, Any] = {}
    cols = {"A_random_phase": [(c, f"A_{c}") for c in (
                "r_mean", "r_std", "r_q05", "r_q95", "bias_spread", "w_mean", "w_abs_max",
                "blend_mean", "rhyme_cohesion")],
            "B_rhyme_phase": [("own_cohesion", "B_cohesion")],
            "B_shuffled": [("own_cohesion", "shuffled_cohesion"),
                           ("rhyme_cohesion", "shuffled_rhyme_cohesion")]}
    if mech is not None and len(mech):
        for (arm, stage, name), part in mech.groupby(["arm", "stage", "config"]):
            for col, tag in cols.get(name, []):
                if arm in ARMS and col in part:
                    meta[f"{tag}_{arm}_{stage}"] = float(part[col].mean())
    if heads is not None and len(heads):
        for arm, a in heads[heads["config"] == "A_random_phase"].groupby("arm"):
            meta[f"A_w_min_{arm}"], meta[f"A_w_max_{arm}"] = float(a["w"].min()), \
                float(a["w"].max())
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
           "ARMS", "COMPARISONS", "PUBLISHED", "FAITHFUL_CONFIGS", "model_shapes",
           "train_config", "wide_width", "flops_per_token", "effects_table", "all_jobs",
           "seeds_of"]
