"""The Resonance Transformer's variants and ablations, and the seed's optimiser (notebook 04).

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

:data:`COMPARISONS` pairs them so that each comparison isolates one thing; :func:`all_jobs`
plans the runs (a learning-rate sweep on a tuning seed, the faithful and the tuned arm). The functions take
an experiment config with the keys vocab_size, d_model, n_layers, n_heads, small_d_model,
small_n_layers, small_n_heads, context, n_frequencies, dropout, accumulation,
divide_by_accumulation, corpus, tokenizer, configs and the optimiser's (lr, weight_decay,
betas, grad_clip, micro_batch, tokens, eval_every, eval_tokens, decay_all_params) and the
plan's (seed, n_seeds, n_seeds_ablation, n_seeds_faithful, faithful_configs, lr_grid,
tuning_seed).
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any

from .models import resonance_lm as rt
from .train import TrainConfig

if TYPE_CHECKING:
    import pandas as pd

# The seed's published validation perplexities after 2 epochs (test5.ipynb).
PUBLISHED = {"A_random_phase": 63.88, "B_rhyme_phase": 63.17, "C_small_rhyme": 70.92,
             "standard_seed": 148.90}

CONFIGS = ("A_random_phase", "B_rhyme_phase", "B_shuffled", "C_small_rhyme", "standard_seed",
           "standard_fixed", "A_no_bias", "A_no_blend", "standard_wide")
PHASE_CONFIGS = ("A_random_phase", "B_rhyme_phase", "B_shuffled", "C_small_rhyme",
                 "A_no_bias", "A_no_blend")

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
PUBLISHED_EFFECT = {"published_gap": PUBLISHED["A_random_phase"] / PUBLISHED["standard_seed"] - 1,
                    "rhyme": PUBLISHED["B_rhyme_phase"] / PUBLISHED["A_random_phase"] - 1,
                    "small": PUBLISHED["C_small_rhyme"] / PUBLISHED["A_random_phase"] - 1,
                    "small_vs_seed_standard": PUBLISHED["C_small_rhyme"] /
                    PUBLISHED["standard_seed"] - 1}


def tokenizer_name(config: dict) -> str:
    """The tokenizer a config trains with: its ``tokenizer``, else one trained on its corpus."""
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
    rhyme = {"phase_init": "rhyme", "rhyme_tokenizer": tokenizer_name(config)}
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


# The headline comparisons (published gap, fair gap, parameters) get ``n_seeds`` paired seeds;
# the ablations ``n_seeds_ablation`` (the first seeds of the same list, so still paired).
HEADLINE_CONFIGS = ("A_random_phase", "standard_seed", "standard_fixed", "standard_wide")
FAITHFUL_CONFIGS = ("A_random_phase", "standard_seed", "standard_fixed")


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


_DEFAULTS = {f.name: f.default for f in fields(rt.ResonanceConfig)}


def models_table(config: dict, params: dict[str, int], flops: dict[str, int],
                 tuned_lr: dict[str, float]) -> "pd.DataFrame":
    """One row per configuration: its shape, the mechanism switches, its parameter count,
    training FLOPs per token and tuned learning rate."""
    import pandas as pd

    shapes = model_shapes(config)
    return pd.DataFrame([
        {"config": name, **{k: v for k, v in shapes[name].items() if k != "build_kwargs"},
         **{k: shapes[name]["build_kwargs"].get(k, _DEFAULTS[k]) for k in
            ("phase", "attn_bias", "blend", "phase_init", "pos_init", "loss_scale", "dropout")},
         "params": int(params[name]), "flops_per_token": flops[name],
         "lr_tuned": tuned_lr[name]} for name in config["configs"]])


__all__ = ["CONFIGS", "PHASE_CONFIGS", "COMPARISONS", "PUBLISHED", "PUBLISHED_EFFECT",
           "HEADLINE_CONFIGS", "FAITHFUL_CONFIGS", "wide_width", "model_shapes",
           "flops_per_token", "train_config", "tokenizer_name", "seeds_of", "all_jobs",
           "models_table"]
