"""00_tour: every measure once, on two real pretrained models and the concept stimuli."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from .. import activations, metrics, similarity, stimuli, store, topology, zoo
from ..seeding import seed_everything
from ..store import Bundle
from .common import long_diagrams, profile_config

VERSION = 2  # bump when compute() changes its output
NAME = "00_tour"
SIZES = {
    # smoke: only what `make test` installs (MiniLM); compares MiniLM's middle and last layers.
    "smoke": {"model_a": "minilm", "model_b": "minilm", "layer_a": 3, "layer_b": -1,
              "n_per_concept": 10, "n_boot": 20, "n_null": 20, "n_topo": 3},
    "paper": {"model_a": "minilm", "model_b": "mpnet", "layer_a": -1, "layer_b": -1,
              "n_per_concept": 20, "n_boot": 200, "n_null": 200, "n_topo": 20},
}
# Each measure once, with its settings (CCA needs far fewer kept dimensions than stimuli).
ONCE = {"cka_linear": {}, "cka_linear_debiased": {}, "cka_rbf": {}, "mutual_knn": {}, "cknna": {},
        "svcca": {"keep": 10}, "pwcca": {"keep": 10}, "procrustes": {}, "rsa": {},
        "linear_predictivity": {}}


def run(profile: str = "paper", seed: int = 0, force: bool = False, **overrides: Any) -> Bundle:
    config = profile_config(SIZES, profile, seed, overrides, version=VERSION)
    return store.cached(NAME, profile, config, compute, force=force)


def compute(config: dict) -> tuple[dict[str, pd.DataFrame], dict]:
    seed_everything(config["seed"])
    stims = stimuli.concept_stimuli(config["n_per_concept"], form="word", seed=config["seed"])
    model_a, model_b = zoo.load(config["model_a"]), zoo.load(config["model_b"])
    acts_a = activations.extract(model_a, stims)
    acts_b = activations.extract(model_b, stims)
    X, Y = acts_a[config["layer_a"]], acts_b[config["layer_b"]]
    labels = list(stims.labels)

    layer_table = metrics.similarity_matrix(acts_a.layers, acts_b.layers, "cka_linear_debiased")
    once = pd.DataFrame([{"measure": m, "value": similarity.similarity(X, Y, m, **ONCE.get(m, {}))}
                         for m in ONCE])
    geometric = metrics.global_resonance(
        X, Y, ("cka_linear_debiased", "mutual_knn"), n_boot=config["n_boot"],
        n_null=config["n_null"], seed=config["seed"])
    topological = metrics.global_resonance(
        X, Y, ("rtd", "persistence_distance"), n_boot=config["n_topo"], n_null=config["n_topo"],
        seed=config["seed"])
    local = metrics.local_resonance(X, Y, labels, ("cka_linear_debiased",),
                                    n_boot=config["n_boot"], n_null=config["n_null"],
                                    seed=config["seed"])
    diagrams = pd.DataFrame(
        long_diagrams(topology.persistence(X, maxdim=1, seed=config["seed"]), model="A")
        + long_diagrams(topology.persistence(Y, maxdim=1, seed=config["seed"]), model="B"))
    projection = pd.concat([
        pd.DataFrame(PCA(2, random_state=config["seed"]).fit_transform(Z), columns=["pc1", "pc2"])
        .assign(model=model, concept=labels, word=stims.words)
        for model, Z in (("A", X), ("B", Y))], ignore_index=True)
    graph_a = topology.mapper_graph(X, seed=config["seed"])
    graph_b = topology.mapper_graph(Y, seed=config["seed"])
    membership = pd.DataFrame([{"node": node, "item": int(i)}
                               for node, items in graph_a["nodes"].items() for i in items])

    controls = template_control(model_a, model_b, config)

    result = pd.concat([geometric, topological], ignore_index=True)
    cka = result.set_index("measure").loc["cka_linear_debiased"]
    knn = result.set_index("measure").loc["mutual_knn"]
    n = len(stims)
    meta = {
        "model_a": model_a.name, "model_b": model_b.name, "n_stimuli": n,
        "cka": cka.value, "cka_ci_low": cka.ci_low, "cka_ci_high": cka.ci_high,
        "cka_null_high": cka.null_high, "cka_p": cka.p_value,
        "knn": knn.value, "knn_chance": 10 / (n - 1),
        "sentence_cka": float(controls.query("form == 'sentence'")["models"].iloc[0]),
        "sentence_template_cka_a": float(controls.query("form == 'sentence'")["a_template"].iloc[0]),
        "sentence_concept_cka_a": float(controls.query("form == 'sentence'")["a_concept"].iloc[0]),
        "word_concept_cka_a": float(controls.query("form == 'word'")["a_concept"].iloc[0]),
        "best_local": local.sort_values("value").concept.iloc[-1],
        "worst_local": local.sort_values("value").concept.iloc[0],
        **{f"mapper_{k}": float(v) for k, v in topology.compare_mapper(graph_a, graph_b, n).items()},
    }
    meta["headline"] = (
        f"{model_a.name} ↔ {model_b.name} on {n} concept words: debiased CKA "
        f"{cka.value:.2f} [{cka.ci_low:.2f}, {cka.ci_high:.2f}] (shuffled-pair null ≤ "
        f"{cka.null_high:.2f}); mutual 10-NN {knn.value:.2f} (chance {meta['knn_chance']:.2f})")
    tables = {"layers": layer_table, "once": once, "global": result, "local": local,
              "diagrams": diagrams, "projection": projection, "mapper_membership": membership,
              "template_control": controls,
              "mapper_links": pd.DataFrame([{"source": s, "target": t}
                                            for s, targets in graph_a["links"].items()
                                            for t in targets], columns=["source", "target"])}
    return tables, meta


def _one_hot(labels: list[str]) -> np.ndarray:
    labels = np.asarray(labels)
    return (labels[:, None] == np.unique(labels)[None, :]).astype(float)


def template_control(model_a, model_b, config: dict) -> pd.DataFrame:
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
        concepts = _one_hot(stims.labels)
        row = {"form": form, "models": similarity.cka(X, Y, debiased=True),
               "a_concept": similarity.cka(concepts, X, debiased=True),
               "b_concept": similarity.cka(concepts, Y, debiased=True),
               "a_template": np.nan, "b_template": np.nan}
        if form == "sentence":
            templates = _one_hot([_template_of(text, word) for text, word in zip(stims.texts, stims.words)])
            row["a_template"] = similarity.cka(templates, X, debiased=True)
            row["b_template"] = similarity.cka(templates, Y, debiased=True)
        rows.append(row)
    return pd.DataFrame(rows)


def _template_of(text: str, word: str) -> str:
    for template in stimuli.TEMPLATES:
        if template.format(w=word) == text:
            return template
    raise ValueError(f"{text!r} matches no template of resonance.stimuli.TEMPLATES")


def mapper_from_tables(bundle: Bundle) -> dict:
    """Rebuild model A's Mapper graph (kmapper dict form) from the stored tables."""
    nodes = {node: group["item"].tolist()
             for node, group in bundle["mapper_membership"].groupby("node", sort=True)}
    links: dict[str, list[str]] = {}
    for source, target in bundle["mapper_links"].itertuples(index=False):
        links.setdefault(source, []).append(target)
    return {"nodes": nodes, "links": links}


__all__ = ["run", "compute", "mapper_from_tables", "SIZES", "NAME"]
