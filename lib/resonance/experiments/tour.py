"""00_tour: the three resonance metrics (global, local, dynamic) once each, with their nulls,
on two pretrained sentence encoders and 200 bare concept words.

Tables (tidy): ``layers`` (layer x layer debiased CKA), ``layer_map`` (the best monotone map),
``best_layer`` (against a null for the maximum), ``once`` (every measure once), ``global`` (CKA,
mutual k-NN, the pairing-free H1 diagram distance: jackknife intervals, nulls), ``topology``
(the diagram distance under other dimensions, filtrations and layers), ``local`` (per concept),
``positions`` (per token position of WordNet glosses, embeddings and chosen layers),
``diagrams`` (H0/H1 of A, B and a Gaussian cloud on the compared scale), ``projection``,
``mapper_membership``/``mapper_links`` and ``template_control``. ``summarise(tables, config)``
holds every number the notebook and the paper quote; ``verdict(meta)`` says what they mean.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.metrics import pairwise_distances

from .. import (activations, decoding, metrics, positions, similarity, stimuli, store,
               topology, zoo)
from ..seeding import seed_everything
from ..stats import gaussian_like
from ..store import Bundle
from .common import long_diagrams, profile_config

VERSION = 3  # bump when compute() changes its output
NAME = "00_tour"
SIZES = {
    # smoke: only what `make test` installs (MiniLM); compares MiniLM's middle and last layers.
    "smoke": {"model_a": "minilm", "model_b": "minilm", "layer_a": 3, "layer_b": -1,
              # (fewer null draws than the >= 99 of any p-value a reader sees: CI only)
              "n_per_concept": 10, "n_boot": 20, "n_null": 49, "n_topo_boot": 5,
              "n_topo_null": 19, "n_layer_null": 19, "n_texts": 48, "max_words": 10,
              "min_tokens": 24},
    "paper": {"model_a": "minilm", "model_b": "mpnet", "layer_a": -1, "layer_b": -1,
              "n_per_concept": 20, "n_boot": 99, "n_null": 199, "n_topo_boot": 20,
              "n_topo_null": 99, "n_layer_null": 99, "n_texts": 128, "max_words": 10,
              "min_tokens": 64},
    # hub: MPNet against a larger hub encoder (BGE-large, 24 layers), more draws everywhere.
    "hub": {"model_a": "mpnet", "model_b": "BAAI/bge-large-en-v1.5", "layer_a": -1,
            "layer_b": -1, "n_per_concept": 40, "n_boot": 999, "n_null": 999,
            "n_topo_boot": 50, "n_topo_null": 999, "n_layer_null": 999, "n_texts": 512,
            "max_words": 16, "min_tokens": 128},
}
# Each measure once, with its settings (CCA needs far fewer kept dimensions than stimuli).
ONCE = {"cka_linear": {}, "cka_linear_debiased": {}, "cka_rbf": {}, "mutual_knn": {}, "cknna": {},
        "svcca": {"keep": 10}, "pwcca": {"keep": 10}, "procrustes": {}, "rsa": {},
        "linear_predictivity": {}}
GEOMETRIC = ("cka_linear_debiased", "mutual_knn")
KNN_K = 10  # mutual_knn's default k
CORPUS = "wordnet"  # token positions: WordNet glosses (varied, neutral definitions)


def run(profile: str = "paper", seed: int = 0, force: bool = False, **overrides: Any) -> Bundle:
    config = profile_config(SIZES, profile, seed, overrides, version=VERSION)
    return store.cached(NAME, profile, config, compute, force=force)


def compute(config: dict) -> tuple[dict[str, pd.DataFrame], dict]:
    seed = config["seed"]
    seed_everything(seed)
    stims = stimuli.concept_stimuli(config["n_per_concept"], form="word", seed=seed)
    model_a, model_b = zoo.load(config["model_a"]), zoo.load(config["model_b"])
    acts_a = activations.extract(model_a, stims)
    acts_b = activations.extract(model_b, stims)
    X, Y = acts_a[config["layer_a"]], acts_b[config["layer_b"]]
    labels = list(stims.labels)

    # Dynamic resonance along depth: every layer pair, the best map, the best pair vs its null.
    layer_table = metrics.similarity_matrix(acts_a.layers, acts_b.layers, "cka_linear_debiased")
    layer_map = metrics.best_layer_map(layer_table)
    best = metrics.best_layer_resonance(acts_a.layers, acts_b.layers, n_null=config["n_layer_null"],
                                        seed=seed)
    once = pd.DataFrame([{"measure": m, "value": similarity.similarity(X, Y, m, **ONCE.get(m, {}))}
                         for m in ONCE])
    # Global resonance.
    geometric = metrics.global_resonance(X, Y, GEOMETRIC, n_boot=config["n_boot"],
                                         n_null=config["n_null"], seed=seed)
    topological = metrics.global_resonance(X, Y, ("persistence_distance",),
                                           n_boot=config["n_topo_boot"],
                                           n_null=config["n_topo_null"], seed=seed)
    topo = topology_variants(acts_a, acts_b, config, (best["layer_a"], best["layer_b"]))
    # Local resonance.
    local = metrics.local_resonance(X, Y, labels, ("cka_linear_debiased",),
                                    n_boot=config["n_boot"], n_null=config["n_null"], seed=seed)
    # Dynamic resonance along token positions.
    pos = positional_table(model_a, model_b, config)

    diagrams = pd.DataFrame(
        long_diagrams(topology.persistence(_unit_scale(X), maxdim=1, seed=seed), model="A")
        + long_diagrams(topology.persistence(_unit_scale(Y), maxdim=1, seed=seed), model="B")
        + long_diagrams(topology.persistence(
            _unit_scale(gaussian_like(Y, np.random.default_rng(seed))), maxdim=1, seed=seed),
            model="Gaussian"))
    projection = pd.concat([
        pd.DataFrame(PCA(2, random_state=seed).fit_transform(Z), columns=["pc1", "pc2"])
        .assign(model=model, concept=labels, word=stims.words)
        for model, Z in (("A", X), ("B", Y))], ignore_index=True)
    graphs = {"A": topology.mapper_graph(X, seed=seed), "B": topology.mapper_graph(Y, seed=seed)}
    membership, links = topology.graphs_to_tables(graphs)
    mapper = pd.DataFrame([topology.compare_mapper(graphs["A"], graphs["B"], len(stims))])

    tables = {"layers": layer_table, "layer_map": layer_map, "best_layer": pd.DataFrame([best]),
              "once": once, "global": pd.concat([geometric, topological], ignore_index=True),
              "topology": topo, "local": local, "positions": pos, "diagrams": diagrams,
              "projection": projection, "mapper_membership": membership,
              "mapper_links": links, "mapper_compare": mapper,
              "template_control": template_control(model_a, model_b, config)}
    meta = summarise(tables, {**config, "model_a": model_a.name, "model_b": model_b.name})
    return tables, meta


def _unit_scale(Z: np.ndarray, quantile: float = 0.9) -> np.ndarray:
    """``Z`` divided by the ``quantile`` of its ``(n, n)`` distance matrix: the scale on which
    the diagram distance compares clouds (so diagrams of different models share one axis)."""
    return Z / np.quantile(pairwise_distances(Z), quantile)


TOPOLOGY_VARIANTS = {
    # name: (homology dimension, cloud metric, layers: "chosen" or "best")
    "H1, cosine, chosen layers": (1, "cosine", "chosen"),
    "H0, euclidean, chosen layers": (0, "euclidean", "chosen"),
    "H1, euclidean, best-matching layers": (1, "euclidean", "best"),
}


def topology_variants(acts_a, acts_b, config: Mapping[str, Any],
                      best: tuple[int, int]) -> pd.DataFrame:
    """The pairing-free diagram distance (``global``'s ``persistence_distance``) under other
    choices: H0 (clusters) instead of H1 (loops), cosine instead of Euclidean distances, the
    best-matching layer pair ``best`` instead of the chosen layers; same Gaussian null."""
    rows = []
    for name, (dim, metric, which) in TOPOLOGY_VARIANTS.items():
        la, lb = (config["layer_a"], config["layer_b"]) if which == "chosen" else best
        table = metrics.global_resonance(
            acts_a[la], acts_b[lb], ("persistence_distance",), n_boot=0,
            n_null=config["n_topo_null"], seed=config["seed"],
            measure_kwargs={"persistence_distance": {"dim": dim, "cloud_metric": metric}})
        rows.append(table.drop(columns=["ci_low", "ci_high"]).assign(
            variant=name, dim=dim, cloud_metric=metric, layer_a=la % len(acts_a),
            layer_b=lb % len(acts_b)))
    out = pd.concat(rows, ignore_index=True)
    return out[["variant", "dim", "cloud_metric", "layer_a", "layer_b"]
               + [c for c in out.columns if c not in ("variant", "dim", "cloud_metric",
                                                       "layer_a", "layer_b")]]


def positional_table(model_a, model_b, config: Mapping[str, Any]) -> pd.DataFrame:
    """Resonance per token position of ``n_texts`` WordNet glosses at the embeddings and at the
    chosen layers (:func:`resonance.positions.positional_table`)."""
    texts = stimuli.corpus_stimuli(CORPUS, n=config["n_texts"], max_words=config["max_words"],
                                   seed=config["seed"])
    return positions.positional_table(
        model_a, model_b, texts, {"embeddings": (0, 0), "chosen layers": (config["layer_a"],
                                                                          config["layer_b"])},
        n_null=config["n_null"], min_items=config["min_tokens"], seed=config["seed"])


def control_row(X: np.ndarray, Y: np.ndarray, concepts, templates=None) -> dict[str, float]:
    """Debiased CKA between the models (``X``, ``Y``: ``(n, d)``), and of each model with the
    one-hot ``concepts`` labels and, when given, the one-hot ``templates`` labels (else NaN)."""
    row = {"models": similarity.cka(X, Y, debiased=True),
           "a_concept": decoding.label_cka(X, concepts),
           "b_concept": decoding.label_cka(Y, concepts), "a_template": np.nan,
           "b_template": np.nan}
    if templates is not None:
        row["a_template"] = decoding.label_cka(X, templates)
        row["b_template"] = decoding.label_cka(Y, templates)
    return row


def template_control(model_a, model_b, config: Mapping[str, Any]) -> pd.DataFrame:
    """A control: do the models agree on the *concepts*, or on the sentence template?

    The same words, bare and inside one of six template sentences. For each form: debiased CKA
    between the models, and of each model with the one-hot concept labels and (sentences) the
    one-hot template labels. Columns: form, models, a_concept, b_concept, a_template, b_template.
    """
    rows = []
    for form in ("word", "sentence"):
        stims = stimuli.concept_stimuli(config["n_per_concept"], form=form, seed=config["seed"])
        X = activations.extract(model_a, stims)[config["layer_a"]]
        Y = activations.extract(model_b, stims)[config["layer_b"]]
        templates = None
        if form == "sentence":
            templates = [_template_of(text, word) for text, word in zip(stims.texts, stims.words)]
        rows.append({"form": form, **control_row(X, Y, stims.labels, templates)})
    return pd.DataFrame(rows)


def _template_of(text: str, word: str) -> str:
    for template in stimuli.TEMPLATES:
        if template.format(w=word) == text:
            return template
    raise ValueError(f"{text!r} matches no template of resonance.stimuli.TEMPLATES")


def summarise(tables: Mapping[str, pd.DataFrame], config: Mapping[str, Any]) -> dict[str, Any]:
    """Every number the notebook and the paper quote, from the tables (and the two model
    names and the layer choice in ``config``)."""
    glob = tables["global"].set_index("measure")
    cka, knn, pd_ = (glob.loc[m] for m in ("cka_linear_debiased", "mutual_knn",
                                           "persistence_distance"))
    n = int(cka["n"])
    local = tables["local"].sort_values("value")
    best = tables["best_layer"].iloc[0]
    layer_map = tables["layer_map"]
    pos = tables["positions"]
    topo = tables["topology"].set_index("variant")
    control = tables["template_control"].set_index("form")
    meta: dict[str, Any] = {
        "model_a": config["model_a"], "model_b": config["model_b"], "n_stimuli": n,
        "n_concepts": int(tables["local"]["concept"].nunique()),
        "layer_a": int(config["layer_a"]), "layer_b": int(config["layer_b"]),
        # global
        "cka": cka["value"], "cka_ci_low": cka["ci_low"], "cka_ci_high": cka["ci_high"],
        "cka_null_high": cka["null_high"], "cka_p": cka["p_value"],
        "knn": knn["value"], "knn_ci_low": knn["ci_low"], "knn_ci_high": knn["ci_high"],
        "knn_null_high": knn["null_high"], "knn_p": knn["p_value"],
        "knn_chance": KNN_K / (n - 1),
        "global_beyond_null": bool(cka["ci_low"] > cka["null_high"]
                                   and knn["ci_low"] > knn["null_high"]),
        # topology, pairing-free
        "pd_value": pd_["value"], "pd_null_mean": pd_["null_mean"],
        "pd_null_low": pd_["null_low"], "pd_null_high": pd_["null_high"], "pd_p": pd_["p_value"],
        "pd_n_null": int(config["n_topo_null"]), "n_null": int(config["n_null"]),
        # "beyond the null": past the null's central 95 % range on the more-alike side (for a
        # distance, below null_low), which needs no minimum number of draws to be reachable
        "topo_informative": bool(pd_["value"] < pd_["null_low"]),
        # local
        "best_local": local["concept"].iloc[-1], "worst_local": local["concept"].iloc[0],
        "best_local_value": local["value"].iloc[-1], "worst_local_value": local["value"].iloc[0],
        "local_beyond_null": int((local["ci_low"] > local["null_high"]).sum()),
        "local_ranking_resolved": bool(local["ci_low"].iloc[-1] > local["ci_high"].iloc[0]),
        # dynamic, depth
        "best_layer_a": int(best["layer_a"]), "best_layer_b": int(best["layer_b"]),
        "best_layer_value": best["value"], "best_layer_null_high": best["null_high"],
        "best_layer_p": best["p_value"],
        "best_layer_beyond_null": bool(best["value"] > best["null_high"]),
        "chosen_layer_value": _chosen_value(tables["layers"], config),
        "map_monotone_span": int(layer_map["layer_b"].iloc[-1] - layer_map["layer_b"].iloc[0]),
        # dynamic, token positions
        "positions_aligned_texts": int(pos["aligned_texts"].iloc[0]),
    }
    for stage, key in (("embeddings", "pos_embed"), ("chosen layers", "pos_chosen")):
        meta.update({f"{key}_{k}": v for k, v in
                     positions.trajectory_summary(pos[pos["stage"] == stage]).items()})
    meta["pos_lexical_above_contextual"] = bool(meta["pos_embed_min"] > meta["pos_chosen_max"])
    meta["pos_first"] = int(pos["position"].min())
    meta["pos_last"] = int(pos["position"].max())
    for name, key in (("H1, cosine, chosen layers", "topo_h1_cosine"),
                      ("H0, euclidean, chosen layers", "topo_h0"),
                      ("H1, euclidean, best-matching layers", "topo_h1_best")):
        meta[f"{key}_value"] = topo.loc[name, "value"]
        meta[f"{key}_null_mean"] = topo.loc[name, "null_mean"]
        meta[f"{key}_p"] = topo.loc[name, "p_value"]
    meta["topo_others"] = int(len(topo))
    meta["topo_others_beyond_null"] = int((topo["value"] < topo["null_low"]).sum())
    meta.update({
        "sentence_cka": control.loc["sentence", "models"],
        "sentence_template_cka_a": control.loc["sentence", "a_template"],
        "sentence_concept_cka_a": control.loc["sentence", "a_concept"],
        "word_concept_cka_a": control.loc["word", "a_concept"],
        "template_dominates": bool(control.loc["sentence", "a_template"]
                                   > control.loc["sentence", "a_concept"]),
    })
    if "mapper_compare" in tables:
        meta.update({f"mapper_{k}": float(v)
                     for k, v in tables["mapper_compare"].iloc[0].items()})
    meta["headline"] = (
        f"{meta['model_a']} ↔ {meta['model_b']} on {n} concept words: debiased CKA "
        f"{meta['cka']:.2f} [{meta['cka_ci_low']:.2f}, {meta['cka_ci_high']:.2f}] "
        f"(shuffled-pair null ≤ {meta['cka_null_high']:.2f}); mutual 10-NN {meta['knn']:.2f} "
        f"(chance {meta['knn_chance']:.2f}); H1 diagram distance {meta['pd_value']:.2f} vs "
        f"Gaussian null {meta['pd_null_mean']:.2f} (p = {meta['pd_p']:.2f})")
    meta["verdict"] = verdict(meta)
    return meta


def _chosen_value(layers: pd.DataFrame, config: Mapping[str, Any]) -> float:
    la = config["layer_a"] % layers["layer_a"].nunique()
    lb = config["layer_b"] % layers["layer_b"].nunique()
    return float(layers.loc[(layers["layer_a"] == la) & (layers["layer_b"] == lb), "value"].iloc[0])


def _p(p: float) -> str:
    return f"p = {p:.3f}" if p >= 0.001 else "p < 0.001"


def verdict(meta: Mapping[str, Any]) -> str:
    """What the tour's numbers say, one sentence per metric, worded by the data."""
    a, b = meta["model_a"], meta["model_b"]
    lines = []
    if meta["global_beyond_null"]:
        lines.append(
            f"Global: {a} and {b} resonate — debiased CKA {meta['cka']:.2f} and mutual 10-NN "
            f"{meta['knn']:.2f}, both intervals above their shuffled-pair nulls "
            f"(≤ {meta['cka_null_high']:.2f} and ≤ {meta['knn_null_high']:.2f}).")
    else:
        lines.append(
            f"Global: no resonance beyond shuffled pairs — debiased CKA {meta['cka']:.2f} "
            f"[{meta['cka_ci_low']:.2f}, {meta['cka_ci_high']:.2f}] vs null ≤ "
            f"{meta['cka_null_high']:.2f}; mutual 10-NN {meta['knn']:.2f} vs null ≤ "
            f"{meta['knn_null_high']:.2f}.")
    ranking = ("and the ranking is resolved" if meta["local_ranking_resolved"] else
               "but the intervals of the most and least resonant overlap, so the ranking is "
               "not resolved")
    lines.append(
        f"Local: {meta['local_beyond_null']} of {meta['n_concepts']} concepts resonate beyond "
        f"their within-concept null (most: {meta['best_local']} {meta['best_local_value']:.2f}, "
        f"least: {meta['worst_local']} {meta['worst_local_value']:.2f}), {ranking}.")
    lines.append(
        f"Dynamic, depth: the best layer pair is {a} {meta['best_layer_a']} ↔ {b} "
        f"{meta['best_layer_b']} at {meta['best_layer_value']:.2f} (null for the maximum ≤ "
        f"{meta['best_layer_null_high']:.2f}, {_p(meta['best_layer_p'])}); the chosen layers "
        f"give {meta['chosen_layer_value']:.2f}.")
    lines.append(
        f"Dynamic, token positions: at the chosen layers {meta['pos_chosen_beyond_null']} of "
        f"{meta['pos_chosen_n_positions']} positions resonate beyond their null (CKA "
        f"{meta['pos_chosen_min']:.2f}–{meta['pos_chosen_max']:.2f}); the context-free "
        f"embeddings give {meta['pos_embed_min']:.2f}–{meta['pos_embed_max']:.2f}"
        + (", more at every position." if meta["pos_lexical_above_contextual"] else "."))
    if meta["topo_informative"]:
        lines.append(
            f"Topology: the pairing-free H1 diagram distance ({meta['pd_value']:.2f}) is below "
            f"its Gaussian null ({meta['pd_null_mean']:.2f}, {_p(meta['pd_p'])}); "
            f"{meta['topo_others_beyond_null']} of {meta['topo_others']} other settings also are.")
    else:
        lines.append(
            f"Topology: the pairing-free H1 diagram distance is not informative here — "
            f"{meta['pd_value']:.2f} between the models against {meta['pd_null_mean']:.2f} "
            f"between {a} and a structureless Gaussian cloud ({_p(meta['pd_p'])}); "
            f"{meta['topo_others_beyond_null']} of {meta['topo_others']} other settings (H0, "
            f"cosine distances, the best-matching layers) fall below their nulls.")
    return "\n".join(lines)


def mapper_from_tables(bundle: Bundle, model: str = "A") -> dict:
    """Rebuild ``model``'s Mapper graph from the stored tables
    (:func:`resonance.topology.graph_from_tables`)."""
    return topology.graph_from_tables(bundle["mapper_membership"], bundle["mapper_links"], model)


__all__ = ["run", "compute", "summarise", "verdict", "template_control", "control_row",
           "mapper_from_tables", "topology_variants", "positional_table", "SIZES", "NAME"]
