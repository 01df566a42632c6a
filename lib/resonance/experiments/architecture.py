"""02_architecture, gated redesign (issue 13; its paper run is pending): do architectures leave a topological fingerprint, yet share semantics?

ResonAI (seed 000) claims that "models with different architectures have distinguishable
topological features, but they can still resonate on high-level semantic tasks". Both halves
are tested on what the in-house models were trained on (held-out KJV verses):

- **Capability gates first.** Perplexity against a unigram model of the same tokens, and
  concept decodability on held-out words (concept nouns read at their position inside
  verses) against chance and a random-init twin. A model that fails the concept gate cannot
  test the semantic half: for it the claim is *untestable*, not refuted.
- **Distinguishable topology.** One cloud per (model, layer): ``n_tokens`` verse-token states,
  scale-normalised (median pairwise distance 1) before the 41-feature persistence summary and
  Mapper statistics. Logistic regression names the in-house architecture on held-out seeds
  (leave one seed out), against a label-permutation null; scale-only features are the
  control and a nested test asks whether topology adds to scale. Embedding layers are
  classified separately (they are token tables, not computations).
- **Shared semantics.** Debiased linear CKA on the word stimuli between every pair of models
  along relative depth, within (seed pairs) and across architectures, intervals from a
  multiway bootstrap over models; pretrained pairs with a shuffled-pair null.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .. import activations, decoding, metrics, models, stats, store, topology, zoo
from ..seeding import seed_everything
from ..store import Bundle
from .common import (RECIPE_GATED as RECIPE, check_architecture_config, decodability_rows,
                     gate_table, inhouse_model, model_clouds, profile_config, random_init_twin,
                     unigram_baseline, word_and_verse_stimuli)

NAME = "02_architecture"
VERSION = 3  # 3: word-in-verse / verse-token stimuli, gates, 500-point topology, nested test

PRETRAINED = {"minilm": "minilm", "mpnet": "mpnet", "smollm2-135m": "smollm2",
              "gemma3-270m": "gemma3"}
FEATURE_SETS = ("scale_only", "topology", "scale_topology")
N_BOOT = 1000
ALPHA = 0.05
SIZES = {
    "smoke": {"families": ["gpt2", "llama", "gru"], "shape": [32, 2], "n_seeds": 2,
              "pretrained": ["minilm"], "n_per_concept": 10, "max_per_word": 10,
              "n_verses": 12, "n_tokens": 150, "n_perm": 19, "recipe": RECIPE["smoke"]},
    # paper: GPT-2 d=64, L=2 (a rung of 01_scale's ladder, so its seeds are shared)
    "paper": {"families": ["gpt2", "llama", "gru"], "shape": [64, 2], "n_seeds": 3,
              "pretrained": ["minilm", "mpnet", "smollm2-135m"], "n_per_concept": 30,
              "max_per_word": 10, "n_verses": 40, "n_tokens": 500, "n_perm": 99,
              "recipe": RECIPE["paper"]},
}
# hub (a GPU): a wider, deeper matched shape on 10x the tokens, 5 seeds, the larger packaged LMs.
SIZES["hub"] = {**SIZES["paper"], "shape": [256, 4], "n_seeds": 5,
                "pretrained": ["minilm", "mpnet", "smollm2-135m", "gemma3-270m"],
                "n_per_concept": 60, "n_verses": 120, "n_tokens": 1000, "n_perm": 999,
                "recipe": {**RECIPE["paper"], "tokens": 2_000_000, "eval_every": 100}}


def run(profile: str = "paper", seed: int = 0, force: bool = False, **overrides: Any) -> Bundle:
    config = profile_config(SIZES, profile, seed, overrides, VERSION)
    validate_config(config)
    return store.cached(NAME, profile, config, compute, force=force)


def validate_config(config: Mapping[str, Any]) -> None:
    """Raise a ValueError naming the problem when ``config`` cannot give a sound experiment."""
    check_architecture_config(config, PRETRAINED)
    if config["n_tokens"] < 100:
        raise ValueError(f"n_tokens must be >= 100 for persistent homology, got {config['n_tokens']}")
    if config["n_perm"] < 19:
        raise ValueError(f"n_perm must be >= 19 (99 for a reported p-value), got {config['n_perm']}")


# -- computation ---------------------------------------------------------------------------------

def _load_models(config, words, verses):
    clouds, rows, gates = {}, [], []
    d, L = config["shape"]
    for family in config["families"]:
        shape = models.matched_shape(family, d, L, vocab_size=config["recipe"]["vocab_size"],
                                     context=config["recipe"]["context"])
        for s in range(config["seed"], config["seed"] + config["n_seeds"]):
            zm, trained = inhouse_model(family, shape["d_model"], shape["n_layers"], s,
                                        config["recipe"])
            name = f"{family}-s{s}"
            clouds[name] = model_clouds(zm, words, verses, config["n_tokens"], config["seed"])
            rows.append({"model": name, "arch": family, "source": "in-house", "seed": s,
                         "d_model": shape["d_model"], "n_layers": shape["n_layers"],
                         "params": int(zm.n_params),
                         "val_ppl": float(trained.history["val_ppl"].dropna().iloc[-1])})
            gates += decodability_rows(name, "trained", clouds[name]["words"], words, N_BOOT,
                                       config["seed"], arch=family)
            if s == config["seed"]:
                twin = random_init_twin(zm, trained)
                gates += decodability_rows(f"{family}-init", "random_init",
                                           activations.extract_last_word(twin, words).layers,
                                           words, N_BOOT, config["seed"], arch=family)
    for full in config["pretrained"]:
        zm, name = zoo.load(full), PRETRAINED[full]
        clouds[name] = model_clouds(zm, words, verses, config["n_tokens"], config["seed"])
        rows.append({"model": name, "arch": name, "source": "pretrained", "seed": -1,
                     "d_model": int(zm.hidden_sizes[-1]), "n_layers": zm.n_layers,
                     "params": int(zm.n_params), "val_ppl": float("nan")})
        gates += decodability_rows(name, "trained", clouds[name]["words"], words, N_BOOT,
                                   config["seed"], arch=name)
    info = pd.DataFrame(rows)
    info["unigram_ppl"] = np.where(info.source == "in-house", unigram_baseline(config["recipe"]),
                                   np.nan)
    return clouds, info, pd.DataFrame(gates)


def _features(clouds, info, seed) -> pd.DataFrame:
    rows = []
    for rec in info[info.source == "in-house"].itertuples():  # one model per pretrained arch:
        layers = clouds[rec.model]["tokens"]                   # nothing to classify there
        for layer, X in enumerate(layers):
            rows.append({"model": rec.model, "arch": rec.arch, "source": rec.source,
                         "seed": rec.seed, "layer": layer, "depth": layer / (len(layers) - 1),
                         **topology.scale_features(X),
                         **topology.topo_features(topology.normalise_scale(X), seed=seed)})
    return pd.DataFrame(rows)


def feature_columns(feature_set: str) -> list[str]:
    topo = list(topology.SUMMARY_FEATURES) + list(topology.MAPPER_FEATURES)
    cols = {"scale_only": list(topology.SCALE_FEATURES), "topology": topo,
            "scale_topology": list(topology.SCALE_FEATURES) + topo}
    if feature_set not in cols:
        raise ValueError(f"feature_set must be one of {FEATURE_SETS}, got {feature_set!r}")
    return cols[feature_set]


def _classification(features, config) -> pd.DataFrame:
    rows = []
    inhouse = features[features.source == "in-house"]
    for layers, table in (("inner", inhouse[inhouse.layer > 0]), ("embeddings", inhouse[inhouse.layer == 0])):
        for fs in FEATURE_SETS:
            res = decoding.grouped_classification(
                table[feature_columns(fs)].to_numpy(), table.arch.to_numpy(), table.seed.to_numpy(),
                units=table.model.to_numpy(), n_perm=config["n_perm"], n_boot=N_BOOT,
                seed=config["seed"])
            rows.append({"layers": layers, "feature_set": fs, **res})
        nested = decoding.nested_increment(
            table[feature_columns("scale_only")].to_numpy(), table[feature_columns("topology")].to_numpy(),
            table.arch.to_numpy(), table.seed.to_numpy(), n_perm=config["n_perm"], seed=config["seed"])
        rows.append({"layers": layers, "feature_set": "topology_beyond_scale",
                     "accuracy": nested["full_accuracy"], "p_value": nested["p_value"],
                     "increment": nested["increment"], "null_high": nested["null_high"],
                     "null_mean": nested["null_mean"], "n_perm": nested["n_perm"]})
    return pd.DataFrame(rows)


def _resonance(clouds, info, config) -> pd.DataFrame:
    """Debiased CKA on the word stimuli for every pair along relative depth (in-house) and at
    the last layer (pretrained), with a shuffled-pair null of ``n_perm`` draws."""
    arch = dict(zip(info.model, info.arch))
    rows = []
    for group in ("in-house", "pretrained"):
        names = info[info.source == group].model.tolist()
        for i, (a, b) in enumerate(itertools.combinations(names, 2)):
            A, B = clouds[a]["words"], clouds[b]["words"]
            depths = np.linspace(0, 1, len(A)) if group == "in-house" else [1.0]
            for t in depths:
                la, lb = int(round(t * (len(A) - 1))), int(round(t * (len(B) - 1)))
                res = metrics.global_resonance(A[la], B[lb], ["cka_linear_debiased"], n_boot=0,
                                               n_null=config["n_perm"], seed=config["seed"] + i)
                rows.append({"group": group, "model_a": a, "model_b": b, "depth": float(t),
                             "kind": "within" if arch[a] == arch[b] else "across",
                             "arch_pair": "–".join(sorted((arch[a], arch[b]))),
                             **res.iloc[0][["value", "null_mean", "null_high", "p_value"]].to_dict()})
    return pd.DataFrame(rows)


def compute(config: dict) -> tuple[dict[str, pd.DataFrame], dict]:
    seed_everything(config["seed"])
    words, verses = word_and_verse_stimuli(config)
    clouds, info, gates = _load_models(config, words, verses)
    features = _features(clouds, info, config["seed"])
    tables = {"models": info, "gates": gates, "features": features,
              "classification": _classification(features, config),
              "resonance": _resonance(clouds, info, config)}
    meta = summarise(tables)
    meta["n_stimuli_words"], meta["n_tokens"] = len(words), int(config["n_tokens"])
    meta["verdict"] = verdict(meta)
    return tables, meta


# -- summaries ---------------------------------------------------------------------------------

def _ratio_stat(t: pd.DataFrame):
    """Across- over within-architecture mean CKA: the estimate and its bootstrap statistic."""
    v, across = t["value"].to_numpy(float), (t["kind"] == "across").to_numpy()

    def stat(w: np.ndarray) -> float:
        return stats.weighted_mean(v, w, across) / stats.weighted_mean(v, w, ~across)
    return stat(np.ones(len(t))), stat


def summarise(tables: Mapping[str, pd.DataFrame]) -> dict:
    info, clf, res = tables["models"], tables["classification"], tables["resonance"]
    gates = gate_table(info, tables["gates"], "arch")
    inhouse = gates[gates.source == "in-house"]
    meta: dict[str, Any] = {
        "n_models": int(len(info)), "n_inhouse": int(len(inhouse)),
        "n_seeds": int(inhouse.seed.nunique()), "alpha": ALPHA,
        "unigram_ppl": float(inhouse.unigram_ppl.iloc[0]),
        "concept_chance": float(gates.chance.iloc[0]),
        "inhouse_shapes": "; ".join(f"{r.arch} d={r.d_model} L={r.n_layers} "
                                    f"({r.params / 1e6:.2f}M params)"
                                    for r in inhouse.groupby("arch", sort=False).head(1).itertuples()),
    }
    for arch, g in gates.groupby("arch", sort=False):
        meta[f"ppl_{arch}"] = float(g.val_ppl.mean())
        meta[f"concept_acc_{arch}"] = float(g.accuracy.mean())
        meta[f"twin_acc_{arch}"] = float(g.twin_accuracy.iloc[0])
        meta[f"gate_{arch}"] = bool(g.ppl_gate.all() and g.concept_gate.all())
    meta["inhouse_gates_pass"] = bool(all(meta[f"gate_{a}"] for a in inhouse.arch.unique()))
    meta["pretrained_gates_pass"] = bool(gates[gates.source == "pretrained"].concept_gate.all())
    for rec in clf.itertuples():
        key = f"clf_{rec.layers}_{rec.feature_set}"
        meta[f"{key}_accuracy"], meta[f"{key}_p_value"] = float(rec.accuracy), float(rec.p_value)
        if rec.feature_set == "topology_beyond_scale":
            meta[f"{key}_increment"] = float(rec.increment)
        else:
            meta[f"{key}_ci_low"], meta[f"{key}_ci_high"] = float(rec.ci_low), float(rec.ci_high)
            meta[f"{key}_chance"] = float(rec.chance)
    meta["n_perm"] = int(clf.n_perm.min())
    meta["p_floor"] = stats.p_floor(meta["n_perm"])
    r_in = res[res.group == "in-house"]
    strata = dict(zip(info.model, info.arch))
    for depth, g in r_in.groupby("depth"):
        tag = "last" if depth == r_in.depth.max() else f"d{depth:.2f}"
        for kind in ("within", "across"):
            v = g[g.kind == kind]
            vals = v["value"].to_numpy(float)
            boots = stats.multiway_bootstrap(v, lambda w: stats.weighted_mean(vals, w),
                                             ["model_a", "model_b"], strata, N_BOOT)
            meta[f"inhouse_{kind}_cka_{tag}"] = float(v.value.mean())
            meta[f"inhouse_{kind}_cka_{tag}_ci_low"], meta[f"inhouse_{kind}_cka_{tag}_ci_high"] = \
                stats.percentile_ci(boots)
        meta[f"inhouse_null_cka_{tag}"] = float(g.null_high.mean())
    last = r_in[r_in.depth == r_in.depth.max()]
    meta["inhouse_ratio_last"], ratio = _ratio_stat(last)
    boots = stats.multiway_bootstrap(last, ratio, ["model_a", "model_b"], strata, N_BOOT)
    meta["inhouse_ratio_last_ci_low"], meta["inhouse_ratio_last_ci_high"] = stats.percentile_ci(boots)
    pre = res[res.group == "pretrained"]
    if len(pre):
        meta["pretrained_across_cka_last"] = float(pre.value.mean())
        meta["pretrained_across_cka_min_p"] = float(pre.p_value.max())
        meta["pretrained_null_high"] = float(pre.null_high.mean())
    meta["headline"] = (
        f"in-house architecture (3 families × {meta['n_seeds']} seeds) from scale-normalised "
        f"500-point topology: balanced acc {meta['clf_inner_topology_accuracy']:.2f} "
        f"(chance {meta['clf_inner_topology_chance']:.2f}, p={meta['clf_inner_topology_p_value']:.2f}), "
        f"scale alone {meta['clf_inner_scale_only_accuracy']:.2f}, topology beyond scale "
        f"{meta['clf_inner_topology_beyond_scale_increment']:+.2f} "
        f"(p={meta['clf_inner_topology_beyond_scale_p_value']:.2f}); semantic half "
        f"{'testable' if meta['inhouse_gates_pass'] else 'untestable in-house (concept gate fails)'}")
    return meta


def verdict(meta: Mapping[str, Any]) -> str:
    """Both halves of the claim, each from its own test, with the gates first."""
    m, a = meta, meta["alpha"]
    topo_sig = (m["clf_inner_topology_p_value"] < a
                and m["clf_inner_topology_ci_low"] > m["clf_inner_topology_chance"])
    beyond = m["clf_inner_topology_beyond_scale_p_value"] < a
    if topo_sig and beyond:
        topo = "topology: supported (architectures differ in scale-normalised topology, beyond scale)"
    elif topo_sig:
        topo = ("topology: partly supported (scale-normalised topology names the architecture, but adds "
                "nothing significant to scale alone)")
    else:
        topo = "topology: not supported (scale-normalised topology does not name the architecture)"
    topo += (f" [topology {m['clf_inner_topology_accuracy']:.2f}, p={m['clf_inner_topology_p_value']:.2f}; "
             f"scale {m['clf_inner_scale_only_accuracy']:.2f}; increment "
             f"{m['clf_inner_topology_beyond_scale_increment']:+.2f}, "
             f"p={m['clf_inner_topology_beyond_scale_p_value']:.2f}]")
    if not m["inhouse_gates_pass"]:
        sem = ("semantics (in-house): untestable, the models fail the concept gate (held-out-word "
               f"accuracy vs random-init twin), so shared CKA ({m['inhouse_across_cka_last']:.2f} "
               f"across vs {m['inhouse_within_cka_last']:.2f} within) cannot be read as semantic")
    elif m["inhouse_ratio_last_ci_low"] > 0.9:
        sem = (f"semantics (in-house): supported, across/within CKA {m['inhouse_ratio_last']:.2f} "
               f"[{m['inhouse_ratio_last_ci_low']:.2f}, {m['inhouse_ratio_last_ci_high']:.2f}]")
    else:
        sem = (f"semantics (in-house): not supported, across/within CKA "
               f"{m['inhouse_ratio_last']:.2f} [{m['inhouse_ratio_last_ci_low']:.2f}, "
               f"{m['inhouse_ratio_last_ci_high']:.2f}] falls short of 0.9")
    return f"{topo}; {sem}."
