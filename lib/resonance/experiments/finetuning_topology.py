"""07_finetuning_topology: does topology change mostly early in fine-tuning?

Seed 004 (arXiv 2606.19542) reports, for 1-7B models under supervised fine-tuning, that most
topological reorganisation of the activations happens early and that objectives leave
distinguishable trajectories. This module runs the protocol at CPU scale with the controls that
could refute it; the per-checkpoint pipeline is :func:`resonance.trajectories.measure_checkpoints`.

Protocol: final-token hidden states of ``n_per_corpus`` validation snippets of each corpus (KJV
verses, fortunes, WordNet glosses) at ``n_layers_probe`` evenly spaced layers; per checkpoint,
``n_subsamples`` disjoint subsamples of ``m`` prompts, Rips H1 on raw Euclidean distances and
the barcode summary; topological velocity ``v_t = W2(H1_t, H1_{t+1})`` averaged over subsamples;
concentration ``C = Σ_{t ≤ T/3} v_t / Σ_t v_t`` against a checkpoint-permutation null (seeds
averaged, draw by draw). Set-up: a base GPT-2 (d128/L4) trained on KJV, fine-tuned from its last
checkpoint on each objective (``kjv``: the in-domain control; ``fortunes``; ``wordnet``;
``mix``) for ``n_seeds`` seeds under two schedules (``cosine``: warmup then cosine decay;
``constant``: the same warmup, then flat), ``n_checkpoints`` evenly spaced checkpoints.

Controls, each with its own C against the same null: ``gauss`` (the pipeline on Gaussian clouds
matched to the first subsample in shape and scale, drawn afresh at every checkpoint), the
geometry of the full cloud (``centroid``, ``total_variance``, ``mean_distance``, ``cka``),
``params`` (weight distance), ``js`` (next-token behaviour); the W2 noise floor between disjoint
subsamples; objective classification (nearest centroid, leave one seed out) from topological vs
geometric trajectories against a whole-run label permutation; held-out loss on each corpus.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .. import finetune as ft
from .. import data, stats, stimuli, store, topology, train
from ..store import Bundle
from ..trajectories import (TOPOLOGY, concentration_meta, disjoint_subsamples,
                            evenly_spaced_layers, measure_checkpoints, measure_contrast, objective_classification,
                            own_loss_change, path_tables, trajectory_matrix,
                            velocity_over_floor)
from .common import RECIPE, profile_config

NAME = "07_finetuning_topology"
VERSION = 1

OBJECTIVES = {"kjv": ("kjv",), "fortunes": ("fortunes",), "wordnet": ("wordnet",),
              "mix": ("fortunes", "wordnet")}
CONTROL_OBJECTIVE = "kjv"
EVAL_CORPORA = ("kjv", "fortunes", "wordnet")
SCHEDULES = ("cosine", "constant")
MEASURES = (TOPOLOGY, "gauss", "centroid", "total_variance", "mean_distance", "cka", "params",
            "js")
LAYERLESS = ("params", "js")  # one value per checkpoint pair, not per layer
GEOMETRY_FEATURES = ("centroid_drift", "total_variance", "mean_distance")
TRAJECTORY_FEATURES = ("h1_bar_count", "h1_total_persistence", "h1_persistence_mean",
                       "h0_death_mean")

# The base model's recipe: the shared in-house recipe when these results were computed (pinned;
# ``common.RECIPE["paper"]`` has since been halved; switching retrains the base and 16 runs).
BASE_RECIPE = {"corpus": "kjv", "vocab_size": 4096, "context": 128, "tokens": 400_000,
               "batch_size": 16, "lr": 2e-3, "warmup": 30, "eval_every": 25,
               "eval_tokens": 32_768}

SIZES = {
    "smoke": {"base": [32, 2], "recipe": RECIPE["smoke"], "objectives": ["kjv", "fortunes"],
              "n_seeds": 2, "schedules": list(SCHEDULES), "steps": 12, "batch_size": 4,
              "lr": 1e-3, "warmup": 2, "n_checkpoints": 12, "n_per_corpus": 40,
              "max_words": 12, "m": 40, "n_subsamples": 2, "n_layers_probe": 3,
              "eval_tokens": 1024, "n_perm": 199, "n_perm_class": 19, "n_jobs": 1},
    "paper": {"base": [128, 4], "recipe": BASE_RECIPE, "objectives": list(OBJECTIVES),
              "n_seeds": 2, "schedules": list(SCHEDULES), "steps": 60, "batch_size": 8,
              "lr": 1e-3, "warmup": 5, "n_checkpoints": 12, "n_per_corpus": 171,
              "max_words": 12, "m": 160, "n_subsamples": 3, "n_layers_probe": 5,
              "eval_tokens": 2048, "n_perm": 2000, "n_perm_class": 199, "n_jobs": 3},
    # hub (a GPU): a wider, deeper base on 4x the tokens, 5 seeds (leave-one-seed-out), 10x the
    # fine-tuning steps, 5 disjoint subsamples of 250 prompts at 7 layers.
    "hub": {"base": [512, 8], "recipe": {**BASE_RECIPE, "context": 256, "tokens": 1_600_000},
            "objectives": list(OBJECTIVES), "n_seeds": 5, "schedules": list(SCHEDULES),
            "steps": 600, "batch_size": 16, "lr": 5e-4, "warmup": 30, "n_checkpoints": 12,
            "n_per_corpus": 500, "max_words": 24, "m": 250, "n_subsamples": 5,
            "n_layers_probe": 7, "eval_tokens": 16384, "n_perm": 2000, "n_perm_class": 999,
            "n_jobs": 1},
}


def run(profile: str = "paper", seed: int = 0, force: bool = False, **overrides: Any) -> Bundle:
    config = profile_config(SIZES, profile, seed, overrides, VERSION)
    validate_config(config)
    return store.cached(NAME, profile, config, compute, force=force)


def validate_config(config: Mapping[str, Any]) -> None:
    """Raise a ValueError naming the problem when ``config`` cannot give a sound experiment."""
    bad = [o for o in config["objectives"] if o not in OBJECTIVES]
    if bad:
        raise ValueError(f"unknown objectives {bad}; choose from {sorted(OBJECTIVES)}")
    if len(config["objectives"]) < 2:
        raise ValueError("need at least two objectives to classify them")
    bad = [s for s in config["schedules"] if s not in SCHEDULES]
    if bad or not config["schedules"]:
        raise ValueError(f"schedules must be a non-empty subset of {SCHEDULES}, got "
                         f"{config['schedules']}")
    if not isinstance(config["n_seeds"], int) or config["n_seeds"] < 2:
        raise ValueError("n_seeds must be an integer >= 2 (leave-one-seed-out classification)")
    if config["n_checkpoints"] < 6:
        raise ValueError("n_checkpoints must be >= 6 so the first third holds >= 2 steps")
    if config["steps"] % config["n_checkpoints"]:
        raise ValueError(f"steps ({config['steps']}) must be a multiple of n_checkpoints "
                         f"({config['n_checkpoints']}): checkpoints are evenly spaced")
    n_prompts = config["n_per_corpus"] * len(EVAL_CORPORA)
    if config["m"] * config["n_subsamples"] > n_prompts:
        raise ValueError(f"{config['n_subsamples']} disjoint subsamples of m={config['m']} need "
                         f"{config['m'] * config['n_subsamples']} prompts; there are {n_prompts}")
    if config["n_subsamples"] < 2:
        raise ValueError("n_subsamples must be >= 2 (the noise floor compares disjoint ones)")
    if config["m"] < 8:
        raise ValueError("m must be >= 8 points for H1")
    if config["n_perm"] < 99 or config["n_perm_class"] < 19:
        raise ValueError("need n_perm >= 99 and n_perm_class >= 19 null draws")
    d, n_layers = config["base"]
    if not 2 <= config["n_layers_probe"] <= n_layers + 1:
        raise ValueError(f"n_layers_probe must be in [2, {n_layers + 1}] for {n_layers} layers")


def base_config(config: Mapping[str, Any]) -> train.TrainConfig:
    d, n_layers = config["base"]
    return train.TrainConfig(family="gpt2", d_model=int(d), n_layers=int(n_layers),
                             seed=int(config["seed"]), **config["recipe"])


def finetune_config(config: Mapping[str, Any], objective: str, seed: int,
                    schedule: str) -> ft.FinetuneConfig:
    return ft.FinetuneConfig(base_config(config), corpora=OBJECTIVES[objective],
                             steps=int(config["steps"]), batch_size=int(config["batch_size"]),
                             lr=float(config["lr"]), warmup=int(config["warmup"]),
                             schedule=schedule, n_checkpoints=int(config["n_checkpoints"]),
                             seed=int(seed))


def evaluation_prompts(config: Mapping[str, Any]) -> stimuli.Stimuli:
    """Validation snippets of each evaluation corpus, labelled by corpus (never trained on)."""
    parts = [stimuli.corpus_stimuli(c, n=int(config["n_per_corpus"]),
                                    max_words=int(config["max_words"]), seed=int(config["seed"]))
             for c in EVAL_CORPORA]
    texts = [t for p in parts for t in p.texts]
    labels = [c for c, p in zip(EVAL_CORPORA, parts) for _ in p.texts]
    return stimuli.Stimuli("07-eval-prompts", texts, None, labels)


def process_run(config: Mapping[str, Any], objective: str, seed: int, schedule: str,
                texts: Sequence[str], subsets: Sequence[np.ndarray]) -> dict[str, list[dict]]:
    """Fine-tune one run and measure every checkpoint; rows for each long table.

    The rows are cached beside the fine-tuning run (keyed by everything that shapes them),
    so an interrupted experiment resumes run by run.
    """
    key = store.config_hash({"config": {k: v for k, v in config.items() if k != "n_jobs"},
                             "run": [objective, seed, schedule], "texts": list(texts),
                             "subsets": [s.tolist() for s in subsets]})
    path = ft.finetune_dir(finetune_config(config, objective, seed, schedule)) \
        / f"measures-{NAME}-{key}.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    torch.set_num_threads(1)
    run_cfg = finetune_config(config, objective, seed, schedule)
    fr = ft.finetune(run_cfg, threads=1)
    base = base_config(config)
    layers = evenly_spaced_layers(base.n_layers, int(config["n_layers_probe"]))
    tok = fr.tokenizer
    windows = replace(base, eval_tokens=int(config["eval_tokens"]))  # of the base context
    val = {c: train._val_windows(np.asarray(s.numpy()), windows)
           for c, s in zip(EVAL_CORPORA, ft.token_streams(EVAL_CORPORA, "validation", tok))}
    rng = np.random.default_rng([seed, 0x6A55, SCHEDULES.index(schedule),
                                 list(OBJECTIVES).index(objective)])
    out = measure_checkpoints(fr, texts, subsets, layers, val, rng, objective=objective,
                              seed=seed, schedule=schedule)
    with store.atomic_path(path) as tmp:
        tmp.write_bytes(pickle.dumps(out))
    return out


def unigram_loss(corpus: str, tokenizer) -> float:
    """Cross-entropy (nats/token) of ``corpus``' validation tokens under its training unigram
    distribution (add-one smoothed, :func:`resonance.stats.unigram_perplexity`): the capability
    gate's reference."""
    return math.log(stats.unigram_perplexity(
        np.asarray(data.token_stream(corpus, "train", tokenizer)),
        np.asarray(data.token_stream(corpus, "validation", tokenizer)), len(tokenizer)))


def compute(config: dict) -> tuple[dict[str, pd.DataFrame], dict]:
    prompts = evaluation_prompts(config)
    subsets = disjoint_subsamples(len(prompts), int(config["m"]), int(config["n_subsamples"]),
                                  int(config["seed"]))
    base_run = train.train(base_config(config), progress=False, threads=1)
    args = [(config, o, int(config["seed"]) + i, s, prompts.texts, subsets)
            for o in config["objectives"] for s in config["schedules"]
            for i in range(config["n_seeds"])]
    n_jobs = int(config.get("n_jobs", 1))
    if n_jobs > 1:
        from joblib import Parallel, delayed
        from joblib.externals.loky import get_reusable_executor

        results = Parallel(n_jobs=n_jobs, backend="loky")(delayed(process_run)(*a) for a in args)
        get_reusable_executor().shutdown(wait=True)  # reaped, the workers' CPU time is recorded
    else:
        results = [process_run(*a) for a in args]
    tables = {name: pd.DataFrame([row for r in results for row in r[name]])
              for name in ("distances", "features", "geometry", "behaviour", "noise_floor")}
    base_val = float(base_run.history["val_loss"].iloc[-1])
    tables["base"] = pd.DataFrame([{
        "corpus": c, "unigram_loss": unigram_loss(c, base_run.tokenizer),
        "base_val_loss": float(tables["behaviour"].query("step == 0 and corpus == @c")
                               ["val_loss"].iloc[0])} for c in EVAL_CORPORA])
    tables["base"]["base_train_val_loss"] = base_val
    tables.update(derived_tables(tables, config))
    return tables, summarise(tables, config)


def derived_tables(tables: Mapping[str, pd.DataFrame],
                   config: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """:func:`resonance.trajectories.path_tables` of the distances."""
    return path_tables(tables["distances"], int(config["n_perm"]), int(config["seed"]))


def summarise(tables: Mapping[str, pd.DataFrame], config: Mapping[str, Any]) -> dict:
    """Every number the notebook and the paper quote; see :func:`verdict`."""
    dist = tables["distances"]
    if "concentration" not in tables:
        tables = {**tables, **derived_tables(tables, config)}
    vel, conc, eff = tables["velocity"], tables["concentration"], tables["effects"]
    objectives = [o for o in config["objectives"] if o != CONTROL_OBJECTIVE]
    primary = conc.query("measure == @TOPOLOGY and schedule == 'cosine' "
                         "and objective in @objectives").copy()
    primary["p_holm"] = stats.holm(primary["p_value"])
    meta: dict[str, Any] = {"n_runs": int(dist[["objective", "seed", "schedule"]]
                                          .drop_duplicates().shape[0]),
                            "n_checkpoints": int(config["n_checkpoints"]) + 1,
                            "n_prompts": int(config["n_per_corpus"]) * len(EVAL_CORPORA),
                            "uniform_share": float(conc["uniform"].iloc[0]),
                            "n_perm": int(config["n_perm"])}
    meta.update(concentration_meta(conc, objectives, config["schedules"], MEASURES))
    meta["primary_cells"] = int(len(primary))
    meta["primary_sig"] = int((primary["p_value"] < 0.05).sum())
    meta["primary_sig_holm"] = int((primary["p_holm"] < 0.05).sum())
    # Is topology more front-loaded than the geometry of the same clouds? Cell by cell.
    meta.update(measure_contrast(conc, TOPOLOGY, ("gauss", "centroid", "total_variance",
                                                  "mean_distance", "cka"), "topo"))
    topo = conc.query("measure == @TOPOLOGY").set_index(["objective", "schedule", "layer"])["C"]
    if {"cosine", "constant"} <= set(config["schedules"]):
        tc = topo.unstack("schedule").query("objective in @objectives")
        meta["topo_cosine_minus_constant"] = float((tc["cosine"] - tc["constant"]).mean())
        meta["topo_constant_above_cosine_frac"] = float((tc["constant"] > tc["cosine"]).mean())
    pe = eff.query("measure == @TOPOLOGY and schedule == 'cosine' and objective in @objectives")
    meta["hedges_g_median"] = float(pe["hedges_g"].median())
    meta["cliffs_delta_median"] = float(pe["cliffs_delta"].median())
    meta.update(velocity_over_floor(vel.query("measure == @TOPOLOGY"), tables["noise_floor"]))
    for name, table, cols in (("topology", "features", topology.SUMMARY_FEATURES),
                              ("geometry", "geometry", GEOMETRY_FEATURES)):  # objective decoding
        res = objective_classification(*trajectory_matrix(tables[table], cols),
                                       int(config["n_perm_class"]), int(config["seed"]))
        meta.update({f"class_{name}_{k}": v for k, v in res.items()})
    meta.update(own_loss_change(tables["behaviour"],  # fine-tuning moves the model?
                                {o: OBJECTIVES[o] for o in config["objectives"]}))
    base = tables["base"].set_index("corpus")
    meta["base_val_loss_kjv"] = float(base.loc["kjv", "base_val_loss"])
    meta["unigram_loss_kjv"] = float(base.loc["kjv", "unigram_loss"])
    meta["capability_gate"] = bool(meta["base_val_loss_kjv"] < meta["unigram_loss_kjv"] - 0.5)
    meta["finetune_moves"] = bool(all(meta[f"val_loss_end_{o}"] < meta[f"val_loss_start_{o}"]
                                      for o in objectives))
    meta["headline"] = headline(meta, config)
    meta["verdict"] = verdict(meta)
    return meta


def _claim_holds(meta: Mapping[str, Any]) -> bool:
    return meta["primary_sig_holm"] >= max(1, meta["primary_cells"] // 2)


def _explained_by_schedule(meta: Mapping[str, Any]) -> bool:
    return ("frac_sig_topology_constant" in meta
            and meta["frac_sig_topology_constant"] < 0.5 <= meta["frac_sig_topology_cosine"])


def headline(meta: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    c = meta["C_mean_topology_cosine"]
    null = meta["null_high_mean_topology_cosine"]
    parts = [f"topological concentration C = {c:.2f} (uniform {meta['uniform_share']:.2f}, "
             f"null 97.5 % {null:.2f}) under warmup+cosine; "
             f"{meta['primary_sig_holm']}/{meta['primary_cells']} objective x layer cells "
             "front-loaded after Holm"]
    if "C_mean_topology_constant" in meta:
        parts.append(f"{meta['C_mean_topology_constant']:.2f} at constant LR")
    parts.append(f"objective decodable from topology {meta['class_topology_accuracy']:.2f} vs "
                 f"geometry {meta['class_geometry_accuracy']:.2f} (chance "
                 f"{meta['class_topology_chance']:.2f})")
    return "; ".join(parts)


def verdict(meta: Mapping[str, Any]) -> str:
    """The finding in words, chosen by the numbers in ``meta``."""
    lines = []
    if not meta["capability_gate"]:
        lines.append("The base model fails the capability gate (KJV loss not well below a "
                     "unigram model): nothing below is about a trained model.")
    early = _claim_holds(meta)
    lines.append(
        f"Early concentration {'holds' if early else 'does not hold'} under warmup+cosine: "
        f"mean C = {meta['C_mean_topology_cosine']:.2f} against a uniform share of "
        f"{meta['uniform_share']:.2f} (checkpoint-permutation null, 97.5th percentile "
        f"{meta['null_high_mean_topology_cosine']:.2f} on average); "
        f"{meta['primary_sig']} of {meta['primary_cells']} objective x layer cells have "
        f"p < 0.05 ({meta['primary_sig_holm']} after Holm).")
    if "C_mean_topology_constant" in meta:
        if _explained_by_schedule(meta):
            sched = "so the early peak is largely the learning-rate schedule's"
        elif meta["frac_sig_topology_constant"] >= 0.5:
            sched = "so the early concentration is not just the learning-rate decay"
        else:
            sched = "(neither schedule gives a consistent early peak)"
        lines.append(f"At constant LR: mean C = {meta['C_mean_topology_constant']:.2f}, "
                     f"{100 * meta['frac_sig_topology_constant']:.0f} % of cells significant, "
                     f"{sched}.")
    geo = ", ".join(f"{m} {meta[f'C_mean_{m}_cosine']:.2f}"
                    for m in ("gauss", "centroid", "total_variance", "mean_distance", "cka",
                              "params", "js") if f"C_mean_{m}_cosine" in meta)
    lines.append(f"Controls' mean C under warmup+cosine: {geo}.")
    more = meta["topo_minus_cka_mean"] > 0 and meta["topo_above_cka_frac"] > 0.5
    lines.append(
        f"Topology is {'more' if more else 'not more'} front-loaded than the geometry of the "
        f"same clouds (C_topology − C_(1−CKA) = {meta['topo_minus_cka_mean']:+.2f} on average, "
        f"higher in {100 * meta['topo_above_cka_frac']:.0f} % of cells; vs Gaussian-matched "
        f"clouds {meta['topo_minus_gauss_mean']:+.2f}).")
    lines.append(
        f"Median topological velocity is {meta['velocity_over_floor_median']:.2f}x the W2 noise "
        f"floor between disjoint subsamples ({meta['late_velocity_over_floor_median']:.2f}x in "
        "the last third).")
    t_ok = meta["class_topology_p_value"] < 0.05
    g_ok = meta["class_geometry_p_value"] < 0.05
    lines.append(
        f"Objectives are {'distinguishable' if t_ok else 'not distinguishable'} from topological "
        f"trajectories (leave-one-seed-out balanced accuracy {meta['class_topology_accuracy']:.2f}, "
        f"null 95th percentile {meta['class_topology_null_high']:.2f}, p = "
        f"{meta['class_topology_p_value']:.3f}) and {'also' if g_ok else 'not'} from geometric "
        f"ones ({meta['class_geometry_accuracy']:.2f}, null {meta['class_geometry_null_high']:.2f},"
        f" p = {meta['class_geometry_p_value']:.3f}).")
    return " ".join(lines)
