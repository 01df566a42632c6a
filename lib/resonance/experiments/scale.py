"""01_scale, gated redesign (issue 13; its paper run is pending): does resonance depend on model size, and do medium models resonate with large ones?

A controlled family (the in-house GPT-2 ladder: width scaled at fixed depth, one corpus,
tokenizer, budget and recipe, five seeds per size) read where the models understand their
input: concept nouns inside held-out KJV verses (the representation at the word's last token,
as in running text) and every token of held-out verses. Seeds ``0 .. n_references-1`` of the
largest size are the *references*; every size's other seeds are compared with them, so the
noise ceiling (largest vs reference) never uses a reference twice over.

Primary analysis, declared before the others: concept words x debiased linear CKA at the best
layer pair; medium minus ceiling, equivalence by TOST within ``MARGIN``. Secondary: the other
three cells (verse tokens; mutual 10-NN), Holm-adjusted; the size trend; H1 topology.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from .. import activations, metrics, stats, store, topology, zoo
from ..seeding import seed_everything
from ..store import Bundle
from .common import (PPL_GATE, RECIPE_GATED as RECIPE, decodability_rows, gate_table, inhouse_model,
                     model_clouds, profile_config, random_init_twin, unigram_baseline,
                     word_and_verse_stimuli)

VERSION = 3  # 3: word-in-verse and verse-token stimuli, gates, references split from ceiling
NAME = "01_scale"
MEASURES = ("cka_linear_debiased", "mutual_knn")
STIMULI = ("words", "tokens")
PRIMARY = ("words", "cka_linear_debiased")
KNN_K = 10         # mutual k-NN's k (the registry default)
MARGIN = 0.05      # equivalence margin (CKA / mutual-k-NN units) for "as much as"
ALPHA = 0.05
N_BOOT = 1000
UNITS = ["model_a", "model_b"]  # the models every pair row is made of (multiway bootstrap)
SIZES = {
    "smoke": {"ladder": [[16, 1], [32, 1], [32, 2]], "seeds": [0, 1, 2], "n_references": 1,
              "n_per_concept": 10, "max_per_word": 10, "n_verses": 12, "n_tokens": 150,
              "n_null": 19, "encoders": []},
    "paper": {"ladder": [[32, 2], [64, 2], [96, 2], [128, 2]], "seeds": [0, 1, 2, 3, 4],
              "n_references": 2, "n_per_concept": 30, "max_per_word": 10, "n_verses": 40,
              "n_tokens": 500, "n_null": 99, "encoders": ["minilm", "mpnet"]},
}
# hub (a GPU): a wider ladder on 10x the tokens, 8 seeds, and a larger hub encoder for context.
SIZES["hub"] = {**SIZES["paper"], "ladder": [[64, 4], [128, 4], [256, 4], [384, 4], [512, 4]],
                "seeds": list(range(8)), "n_references": 3, "n_per_concept": 60,
                "n_verses": 120, "n_tokens": 1000, "n_null": 999,
                "encoders": ["minilm", "mpnet", "BAAI/bge-large-en-v1.5"]}
HUB_RECIPE = {**RECIPE["paper"], "tokens": 2_000_000, "eval_every": 100}


def run(profile: str = "paper", seed: int = 0, force: bool = False, **overrides: Any) -> Bundle:
    config = profile_config(SIZES, profile, seed, overrides, version=VERSION)
    config["recipe"] = HUB_RECIPE if profile == "hub" else RECIPE[profile]
    if config["n_references"] >= len(config["seeds"]):
        raise ValueError("n_references must leave at least one non-reference seed")
    return store.cached(NAME, profile, config, compute, force=force)


# -- computation ---------------------------------------------------------------------------------

def _family(config, words, verses):
    rows, layers, gate_rows = [], {}, []
    top = len(config["ladder"]) - 1
    for rung, (d, L) in enumerate(config["ladder"]):
        for seed in config["seeds"]:
            model, trained = inhouse_model("gpt2", d, L, seed, config["recipe"])
            hist = trained.history.dropna(subset=["val_ppl"])
            role = ("reference" if rung == top and seed in config["seeds"][:config["n_references"]]
                    else "comparand")
            rows.append({"model": model.name, "rung": rung, "d_model": d, "n_layers": L,
                         "seed": seed, "params": model.n_params, "role": role,
                         "val_ppl": float(hist["val_ppl"].iloc[-1]),
                         "val_ppl_half": float(hist["val_ppl"].iloc[len(hist) // 2])})
            layers[model.name] = model_clouds(model, words, verses, config["n_tokens"],
                                              config["seed"])
            gate_rows += decodability_rows(model.name, "trained", layers[model.name]["words"],
                                           words, N_BOOT, config["seed"], rung=rung)
            if seed == config["seeds"][0]:  # the random-init twin of this shape (step 0)
                twin = random_init_twin(model, trained)
                gate_rows += decodability_rows(
                    twin.name, "random_init", activations.extract_last_word(twin, words).layers,
                    words, N_BOOT, config["seed"], rung=rung)
    return pd.DataFrame(rows), layers, pd.DataFrame(gate_rows)


def _pairs(config, models, layers) -> pd.DataFrame:
    refs = models[models.role == "reference"]
    comps = models[(models.role == "comparand") & ~models.seed.isin(refs.seed)]
    rows = []
    for i, (a, b) in enumerate((a, b) for a in comps.itertuples() for b in refs.itertuples()):
        for stim in STIMULI:
            for measure in MEASURES:
                # Mutual k-NN has a known chance level, k / (n - 1); CKA gets the grid-max null.
                n_null = config["n_null"] if measure == "cka_linear_debiased" else 0
                best = metrics.best_layer_resonance(layers[a.model][stim], layers[b.model][stim],
                                                    measure, n_null=n_null, seed=config["seed"] + i)
                if not n_null:
                    best["null_high"] = KNN_K / (len(layers[a.model][stim][0]) - 1)
                rows.append({"model_a": a.model, "model_b": b.model, "rung": a.rung,
                             "params": a.params, "seed_a": a.seed, "seed_b": b.seed,
                             "stimuli": stim, "n_null": n_null, **best})
    return pd.DataFrame(rows)


def _topology(config, models, layers, pairs) -> pd.DataFrame:
    """H1 Wasserstein distance between each comparand's and each reference's verse-token cloud:
    last layer with a Gaussian-cloud null of ``n_null`` draws, embeddings without one."""
    n = config["n_tokens"]
    dgm = {(m, layer): topology.h1_diagram(layers[m]["tokens"][layer])
           for m in models.model for layer in (0, -1)}
    width = dict(zip(models.model, models.d_model))
    pool = {d: topology.gaussian_h1_diagrams(n, d, config["n_null"], seed=config["seed"])
            for d in models.d_model.unique()}
    rows = []
    for a, b in pairs[["model_a", "model_b"]].drop_duplicates().itertuples(index=False):
        for layer, name in ((0, "embeddings"), (-1, "last")):
            da, db = dgm[a, layer], dgm[b, layer]
            value = topology.diagram_distance(da, db)
            null = ([0.5 * (topology.diagram_distance(da, gb) + topology.diagram_distance(ga, db))
                     for ga, gb in zip(pool[width[a]], pool[width[b]])] if name == "last" else [])
            rows.append({"model_a": a, "model_b": b, "layer": name,
                         "rung": int(models.set_index("model").at[a, "rung"]), "value": value,
                         "null_mean": float(np.mean(null)) if null else float("nan"),
                         "p_value": stats.permutation_p(value, null, greater=False) if null
                         else float("nan"), **{f"null_{k}": v for k, v in enumerate(null)}})
    return pd.DataFrame(rows)


def _pretrained(config, words) -> pd.DataFrame:
    """Context, not a controlled test: a real pair of pretrained encoders of different size
    (MiniLM 23M, MPNet 110M) on the same word stimuli, best layer pair, shuffled null."""
    loaded = [zoo.load(n) for n in config["encoders"]]
    acts = {m.name: activations.extract_last_word(m, words).layers for m in loaded}
    rows = []
    for i, (a, b) in enumerate((a, b) for j, a in enumerate(loaded) for b in loaded[j + 1:]):
        for measure in MEASURES:
            n_null = config["n_null"] if measure == "cka_linear_debiased" else 0
            best = metrics.best_layer_resonance(acts[a.name], acts[b.name], measure,
                                                n_null=n_null, seed=config["seed"] + i)
            rows.append({"model_a": a.name, "model_b": b.name, "params_a": a.n_params,
                         "params_b": b.n_params, **best})
    return pd.DataFrame(rows, columns=["model_a", "model_b", "params_a", "params_b", "measure",
                                       "value", "layer_a", "layer_b", "null_high", "p_value"])


def compute(config: dict) -> tuple[dict[str, pd.DataFrame], dict]:
    seed_everything(config["seed"])
    words, verses = word_and_verse_stimuli(config)
    models, layers, gates = _family(config, words, verses)
    models["unigram_ppl"] = unigram_baseline(config["recipe"])
    pairs = _pairs(config, models, layers)
    tables = {"models": models, "gates": gates, "pairs": pairs,
              "topology": _topology(config, models, layers, pairs),
              "pretrained": _pretrained(config, words)}
    meta = summarise(tables)
    meta["n_words_stimuli"], meta["n_distinct_words"] = len(words), len(set(words.words))
    tables["cells"] = pd.DataFrame(meta.pop("cells"))
    tables["by_size"] = pd.DataFrame(meta.pop("by_size"))
    meta["verdict"] = verdict(meta)
    return tables, meta


# -- summaries ---------------------------------------------------------------------------------

def _mean_ci(t: pd.DataFrame, strata) -> tuple[float, float]:
    v = t["value"].to_numpy(float)
    return stats.percentile_ci(stats.multiway_bootstrap(
        t, lambda w: stats.weighted_mean(v, w), UNITS, strata, N_BOOT))


def summarise(tables: dict[str, pd.DataFrame]) -> dict:
    """Every number the notebook and paper quote: gates, the four cells (primary first), the
    size trend, topology, pretrained context."""
    models, pairs = tables["models"], tables["pairs"]
    gates = gate_table(models, tables["gates"], "rung")
    rungs = sorted(models.rung.unique())
    top, medium, smallest = rungs[-1], rungs[len(rungs) // 2], rungs[0]
    rung_ok = gates.groupby("rung").agg(ppl=("ppl_gate", "all"), concept=("concept_gate", "all"))
    strata = dict(zip(models.model, models.rung.astype(str) + models.role))
    cells, by_size = [], []
    for stim in STIMULI:
        for measure in MEASURES:
            t = pairs[(pairs.stimuli == stim) & (pairs.measure == measure)]
            for rung in rungs:
                v = t[t.rung == rung]
                by_size.append({"stimuli": stim, "measure": measure, "rung": int(rung),
                                "params": float(v.params.mean()), "value": float(v.value.mean()),
                                **dict(zip(("ci_low", "ci_high"), _mean_ci(v, strata))),
                                "null_high": float(v.null_high.mean()),
                                "max_p": float(v.p_value.max())})
            est, boots = stats.multiway_difference(t[t.rung.isin([medium, top])], "rung", medium,
                                                   top, UNITS, strata, N_BOOT)
            tost = stats.tost_bootstrap(est, boots, MARGIN, ALPHA)
            gate = bool(rung_ok.loc[[medium, top], "ppl"].all()
                        and (stim != "words" or rung_ok.loc[[medium, top], "concept"].all()))
            slope = _slope(t, rungs, strata)
            cells.append({"stimuli": stim, "measure": measure, "primary": (stim, measure) == PRIMARY,
                          "medium_minus_ceiling": est,
                          **dict(zip(("ci_low", "ci_high"), stats.percentile_ci(boots))),
                          "tost_p": tost["p_value"], "equivalent": tost["equivalent"],
                          "gates_pass": gate, **slope})
    holm = stats.holm([c["tost_p"] for c in cells])
    for c, p in zip(cells, holm):
        c["tost_p_holm"] = float(p)
    prim = next(c for c in cells if c["primary"])
    size = pd.DataFrame(by_size)
    ps = size[(size.stimuli == PRIMARY[0]) & (size.measure == PRIMARY[1])].set_index("rung")
    meta: dict[str, Any] = {
        "n_sizes": len(rungs), "n_seeds": int(models.seed.nunique()),
        "n_references": int((models.role == "reference").sum()),
        "params_min": float(models.params.min()), "params_max": float(models.params.max()),
        "param_span": float(models.params.max() / models.params.min()),
        "medium_rung": int(medium), "medium_params": float(ps.at[medium, "params"]),
        "unigram_ppl": float(models.unigram_ppl.iloc[0]),
        "margin": MARGIN, "ppl_gate": PPL_GATE, "alpha": ALPHA, "n_cells": len(cells),
        "n_null": int(pairs.n_null.max()), "p_floor": stats.p_floor(int(pairs.n_null.max())),
        "pairs_max_p": float(pairs.p_value.max()),
        "knn_chance": float(pairs[pairs.measure == "mutual_knn"].null_high.max()),
        "primary_value_medium": float(ps.at[medium, "value"]),
        "primary_value_smallest": float(ps.at[smallest, "value"]),
        "primary_ceiling": float(ps.at[top, "value"]),
        **{f"primary_{k}": v for k, v in prim.items() if k not in ("stimuli", "measure", "primary")},
        "cells": cells, "by_size": by_size,
        "n_cells_equivalent": int(sum(c["equivalent"] and c["tost_p_holm"] < ALPHA for c in cells)),
        "n_cells_below": int(sum(c["ci_high"] < 0 for c in cells)),
    }
    for rung in rungs:
        g = gates[gates.rung == rung]
        meta[f"ppl_rung{rung}"] = float(g.val_ppl.mean())
        meta[f"ppl_ratio_rung{rung}"] = float(g.ppl_ratio.mean())
        meta[f"concept_acc_rung{rung}"] = float(g.accuracy.mean())
        meta[f"twin_acc_rung{rung}"] = float(g.twin_accuracy.iloc[0])
        meta[f"gate_ppl_rung{rung}"] = bool(rung_ok.at[rung, "ppl"])
        meta[f"gate_concept_rung{rung}"] = bool(rung_ok.at[rung, "concept"])
    meta["concept_chance"] = float(gates.chance.iloc[0])
    meta.update(_topology_summary(tables["topology"], medium, top, strata))
    meta.update(_nonlinearity(pairs, rungs, strata))
    meta["headline"] = (
        ("untestable (capability gate fails); " if _failed_gates(meta) else "") +
        f"GPT-2 ladder {meta['param_span']:.0f}× params, {meta['n_seeds']} seeds; concept words "
        f"in held-out verses, debiased CKA with the references: medium − ceiling "
        f"{prim['medium_minus_ceiling']:+.2f} [{prim['ci_low']:+.2f}, {prim['ci_high']:+.2f}], "
        f"TOST ±{MARGIN} p={prim['tost_p_holm']:.2f} (Holm, 4 cells); "
        f"{meta['n_cells_below']}/4 cells below the ceiling")
    return meta


def _slope(t: pd.DataFrame, rungs, strata) -> dict:
    """Largest minus smallest comparand rung (does resonance grow with size?), multiway CI."""
    est, boots = stats.multiway_difference(t[t.rung.isin([rungs[0], rungs[-1]])], "rung",
                                           rungs[-1], rungs[0], UNITS, strata, N_BOOT)
    low, high = stats.percentile_ci(boots)
    return {"top_minus_smallest": est, "tms_ci_low": low, "tms_ci_high": high}


def _nonlinearity(pairs: pd.DataFrame, rungs, strata) -> dict:
    """Saturating (3 parameters) vs straight line in log-params, leave-one-size-out RMSE on the
    size means, with a multiway-bootstrap CI on (line - saturating). With fewer than five sizes
    a 3-parameter curve through the remaining sizes is exact, so the claim is undecidable."""
    t = pairs[(pairs.stimuli == PRIMARY[0]) & (pairs.measure == PRIMARY[1])]
    if len(rungs) < 5:
        return {"nonlinear_decidable": False, "loso_rmse_linear": None,
                "loso_rmse_saturating": None, "loso_diff_ci_low": None, "loso_diff_ci_high": None}

    v, r = t["value"].to_numpy(float), t["rung"].to_numpy()
    x = np.log10(t.groupby("rung")["params"].mean().loc[rungs].to_numpy(float))

    def diff(w):
        lin, sat = stats.loso_fit_errors(x, [stats.weighted_mean(v, w, r == k) for k in rungs])
        return lin - sat
    lin, sat = stats.loso_fit_errors(x, [v[r == k].mean() for k in rungs])
    low, high = stats.percentile_ci(stats.multiway_bootstrap(t, diff, ["model_a", "model_b"],
                                                             strata, 200))
    return {"nonlinear_decidable": True, "loso_rmse_linear": lin, "loso_rmse_saturating": sat,
            "loso_diff_ci_low": low, "loso_diff_ci_high": high}


def _topology_summary(topo: pd.DataFrame, medium, top, strata) -> dict:
    out = {}
    null_cols = [c for c in topo.columns if c.startswith("null_") and c[5:].isdigit()]
    for layer in ("last", "embeddings"):
        t = topo[topo.layer == layer]
        for rung, g in t.groupby("rung"):
            obs = g.value.mean()
            out[f"topo_{layer}_rung{rung}"] = float(obs)
            if layer == "last":
                null = g[null_cols].mean(0).to_numpy()
                out[f"topo_{layer}_null_rung{rung}"] = float(null.mean())
                out[f"topo_{layer}_p_rung{rung}"] = stats.permutation_p(obs, null, greater=False)
        est, boots = stats.multiway_difference(t[t.rung.isin([medium, top])], "rung", medium,
                                               top, UNITS, strata, N_BOOT)
        out[f"topo_{layer}_medium_minus_ceiling"] = est
        out[f"topo_{layer}_mmc_ci_low"], out[f"topo_{layer}_mmc_ci_high"] = stats.percentile_ci(boots)
    return out


def _failed_gates(m: Mapping[str, Any]) -> list[str]:
    """The gates of the medium and largest widths that fail, in words (empty when all pass)."""
    names = {m["medium_rung"]: "medium", m["n_sizes"] - 1: "largest"}
    what = {"ppl": "perplexity", "concept": "concept decodability"}
    return [f"the {names[r]} width's {what[g]}" for r in names for g in what
            if not m[f"gate_{g}_rung{r}"]]


def verdict(meta: dict) -> str:
    """The seed's claim, judged on the primary cell; the other cells and topology stated."""
    m = meta
    failed = _failed_gates(m)
    if failed:
        head = (f"untestable: {', '.join(failed)} fail{'s' if len(failed) == 1 else ''} a "
                "capability gate, so concept-level resonance cannot be read (descriptively, "
                f"medium − ceiling {m['primary_medium_minus_ceiling']:+.2f} "
                f"[{m['primary_ci_low']:+.2f}, {m['primary_ci_high']:+.2f}], TOST Holm "
                f"p={m['primary_tost_p_holm']:.2f})")
    elif m["primary_equivalent"] and m["primary_tost_p_holm"] < m["alpha"]:
        head = (f"supported: medium resonates with the references as much as the ceiling "
                f"(within ±{m['margin']}, TOST Holm p={m['primary_tost_p_holm']:.3f})")
    elif m["primary_ci_high"] < 0:
        head = (f"refuted: medium resonates less than the ceiling by "
                f"{-m['primary_medium_minus_ceiling']:.2f} [{-m['primary_ci_high']:.2f}, "
                f"{-m['primary_ci_low']:.2f}]")
    else:
        head = (f"inconclusive: medium − ceiling {m['primary_medium_minus_ceiling']:+.2f} "
                f"[{m['primary_ci_low']:+.2f}, {m['primary_ci_high']:+.2f}] is neither below 0 "
                f"nor within ±{m['margin']}")
    mid, top = m["medium_rung"], m["n_sizes"] - 1
    topo = (f"topology (H1 distance to the references, last layer): medium "
            f"{m['topo_last_rung%d' % mid]:.2f} vs ceiling {m['topo_last_rung%d' % top]:.2f}, "
            f"difference {m['topo_last_medium_minus_ceiling']:+.2f} "
            f"[{m['topo_last_mmc_ci_low']:+.2f}, {m['topo_last_mmc_ci_high']:+.2f}]; Gaussian "
            f"null {m['topo_last_null_rung%d' % top]:.2f} (p={m['topo_last_p_rung%d' % top]:.2f} "
            "for the ceiling)")
    if not m["nonlinear_decidable"]:
        shape = f"nonlinearity: undecidable with {m['n_sizes']} sizes (five needed)"
    else:
        better = ("the saturating fit predicts held-out sizes better"
                  if m["loso_diff_ci_low"] > 0 else "no better than a line"
                  if m["loso_diff_ci_high"] > 0 else "a line predicts held-out sizes better")
        shape = (f"nonlinearity: held-out RMSE line {m['loso_rmse_linear']:.3f} vs saturating "
                 f"{m['loso_rmse_saturating']:.3f}, {better}")
    return (f"{head}. {m['n_cells_below']} of {m['n_cells']} cells lie below the ceiling, "
            f"{m['n_cells_equivalent']} are equivalent to it. {topo}. {shape}.")
