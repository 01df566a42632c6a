"""02_architecture: do architectures leave a topological fingerprint, yet share semantics?

ResonAI (seed 000) claims that "models with different architectures have distinguishable
topological features, but they can still resonate on high-level semantic tasks". Both halves
are tested on the same WordNet concept words (bare words: 00_tour shows that in template
sentences the template, not the concept, dominates the geometry):

- **Distinguishable topology.** Every layer's cloud is cut into disjoint, concept-stratified
  stimulus subsets; each subset gives the 41-feature persistence summary plus Mapper graph
  statistics. A logistic regression must tell the architecture from these features, scored
  out of fold with *grouped* cross-validation (leave one training seed out for the in-house
  models, so train and test never share a seed; leave one stimulus subset out for the
  pretrained models), against ``permutation_test_score``'s label-permutation null (labels
  permuted within groups). Scale control: the same features after dividing each cloud by its
  median pairwise distance, and a scale-only feature set (norms and spreads).
- **Shared semantics.** Debiased linear CKA, mutual k-NN and RTD between every pair of models
  along relative depth, split into within-architecture pairs (same family, different seeds:
  the seed ceiling) and across-architecture pairs; within-concept (local) CKA too, per concept
  and against a within-concept shuffled null; and the best monotone layer map between models
  of different depth.

Every cloud is mean-centred first (decoder LMs' mean-pooled vectors carry a large shared
offset from the first token, which would otherwise dominate cosine neighbourhoods; CKA,
persistence and Mapper are translation invariant anyway).
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.spatial.distance import pdist
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict, permutation_test_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .. import activations, metrics, models, similarity, stimuli, store, topology, zoo
from ..seeding import seed_everything
from ..store import Bundle
from .common import RECIPE, profile_config

NAME = "02_architecture"
VERSION = 2  # 2: bare-word stimuli, GPT-2 shape shared with 01_scale, per-concept local CKA

# Short names and architecture labels of the pretrained models (zoo name -> short name).
PRETRAINED = {"minilm": "minilm", "mpnet": "mpnet", "smollm2-135m": "smollm2",
              "gemma3-270m": "gemma3"}
ARCHITECTURE = {"minilm": "BERT encoder", "mpnet": "MPNet encoder",
                "smollm2": "Llama decoder", "gemma3": "Gemma-3 decoder",
                "gpt2": "GPT-2 (in-house)", "llama": "Llama (in-house)", "gru": "GRU (in-house)"}

SIZES = {
    # smoke: a tiny GPT-2 shape (shared with 01_scale's smoke ladder), the smoke recipe,
    # 2 seeds, MiniLM only. ``shape`` is the GPT-2 (d_model, n_layers); the other families
    # get the same depth and the width that matches its parameter count.
    "smoke": {"families": ["gpt2", "llama", "gru"], "shape": [32, 2], "n_seeds": 2,
              "pretrained": ["minilm"], "n_per_concept": 10, "n_subsets": 2, "n_perm": 49,
              "n_boot": 200, "knn_k": 10, "rtd_size": 50, "rtd_subsamples": 1,
              "pretrained_depths": 5,
              "map_pairs": [["minilm", "gpt2-s0"], ["gpt2-s0", "llama-s0"],
                            ["gpt2-s0", "gru-s0"], ["gpt2-s0", "gpt2-s1"]],
              "recipe": RECIPE["smoke"]},
    # paper: GPT-2 d=128, L=3 (a rung of 01_scale's ladder, so its three trained seeds are
    # shared), 3 seeds, four pretrained models.
    "paper": {"families": ["gpt2", "llama", "gru"], "shape": [128, 3], "n_seeds": 3,
              "pretrained": ["minilm", "mpnet", "smollm2-135m", "gemma3-270m"],
              "n_per_concept": 20, "n_subsets": 4, "n_perm": 199, "n_boot": 1000,
              "knn_k": 10, "rtd_size": 100, "rtd_subsamples": 2, "pretrained_depths": 11,
              "map_pairs": [["minilm", "mpnet"], ["smollm2", "gemma3"], ["minilm", "smollm2"],
                            ["gpt2-s0", "llama-s0"], ["gpt2-s0", "gru-s0"],
                            ["gpt2-s0", "gpt2-s1"]],
              "recipe": RECIPE["paper"]},
}
FEATURE_SETS = ("topology", "topology_normalised", "scale_only")
SCALE_FEATURES = ("scale_median_distance", "scale_mean_norm", "scale_total_variance")
# Mapper statistics the classifier sees. Concept purity (``mapper_purity``) is stored but left
# out: it reads the concept labels, so it measures semantics, not label-free topology.
MAPPER_FEATURES = ("mapper_nodes", "mapper_edges", "mapper_components", "mapper_betti1",
                   "mapper_mean_node_size", "mapper_coverage")


# --------------------------------------------------------------------------------------------
# Config


def run(profile: str = "paper", seed: int = 0, force: bool = False, **overrides: Any) -> Bundle:
    config = profile_config(SIZES, profile, seed, overrides, VERSION)
    validate_config(config)
    return store.cached(NAME, profile, config, compute, force=force)


def inhouse_names(config: Mapping[str, Any]) -> list[str]:
    return [f"{f}-s{config['seed'] + i}" for f in config["families"]
            for i in range(config["n_seeds"])]


def model_names(config: Mapping[str, Any]) -> list[str]:
    return inhouse_names(config) + [PRETRAINED[p] for p in config["pretrained"]]


def validate_config(config: Mapping[str, Any]) -> None:
    """Raise a ValueError naming the problem when ``config`` cannot give a sound experiment."""
    families = list(config["families"])
    unknown = set(families) - set(models.FAMILIES)
    if unknown:
        raise ValueError(f"unknown families {sorted(unknown)}; known: {models.FAMILIES}")
    if len(set(families)) < 2:
        raise ValueError("need at least two distinct architectures (families) to compare")
    if not isinstance(config["n_seeds"], int) or config["n_seeds"] < 2:
        raise ValueError(f"n_seeds must be an integer >= 2 (grouped-by-seed cross-validation and "
                         f"the within-architecture seed ceiling need two), got {config['n_seeds']!r}")
    shape = config["shape"]
    if (len(shape) != 2 or not all(isinstance(v, int) and v >= 1 for v in shape)
            or shape[0] % 8):
        raise ValueError(f"shape must be [d_model, n_layers] with d_model a multiple of 8, "
                         f"got {shape!r}")
    bad = [p for p in config["pretrained"] if p not in PRETRAINED]
    if bad:
        raise ValueError(f"unknown pretrained models {bad}; choose from {sorted(PRETRAINED)}")
    n_sub, per = config["n_subsets"], config["n_per_concept"]
    if not isinstance(n_sub, int) or n_sub < 2:
        raise ValueError(f"n_subsets must be an integer >= 2 (one is held out), got {n_sub!r}")
    if per < 8:
        raise ValueError(f"n_per_concept must be >= 8 for within-concept resonance, got {per}")
    if per % n_sub:
        raise ValueError(f"n_per_concept ({per}) must be divisible by n_subsets ({n_sub}) so "
                         "every stimulus subset holds each concept equally")
    if per // n_sub * len(stimuli.CONCEPTS) < 20:
        raise ValueError("each stimulus subset needs >= 20 points for persistent homology; "
                         "raise n_per_concept or lower n_subsets")
    names = set(model_names(config))
    for pair in config["map_pairs"]:
        if len(pair) != 2 or not set(pair) <= names:
            raise ValueError(f"map pair {pair} must name two of the compared models {sorted(names)}")
    if config["pretrained_depths"] < 2:
        raise ValueError("pretrained_depths must be >= 2 (the embeddings and the last layer)")


# --------------------------------------------------------------------------------------------
# Helpers (tested in tests/test_architecture.py)


def centred(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return X - X.mean(0)


def normalise_scale(X: np.ndarray) -> np.ndarray:
    """``X`` divided by its median pairwise distance (so every cloud has median distance 1)."""
    med = float(np.median(pdist(X)))
    if not med > 0:
        raise ValueError("cloud has zero median pairwise distance: cannot normalise its scale")
    return X / med


def scale_features(X: np.ndarray) -> dict[str, float]:
    """Pure scale descriptors of a (centred) cloud: median distance, mean norm, total variance."""
    return {"scale_median_distance": float(np.median(pdist(X))),
            "scale_mean_norm": float(np.linalg.norm(X, axis=1).mean()),
            "scale_total_variance": float(X.var(0).sum())}


def mapper_purity(graph: dict, labels: Sequence[str]) -> float:
    """Size-weighted mean share of each Mapper node's majority concept (1 = pure nodes)."""
    labels = np.asarray(labels)
    hits = total = 0
    for members in graph["nodes"].values():
        _, counts = np.unique(labels[members], return_counts=True)
        hits += counts.max()
        total += len(members)
    return float(hits / total) if total else 0.0


def topo_features(X: np.ndarray, labels: Sequence[str], seed: int = 0) -> dict[str, float]:
    """41 persistence-summary features plus Mapper statistics of one cloud ``X: (n, d)``."""
    feats = topology.persistence_summary(topology.persistence(X, maxdim=1, seed=seed))
    graph = topology.mapper_graph(X, n_cubes=5, seed=seed)
    stats = topology.mapper_stats(graph)
    feats.update({f"mapper_{k}": float(stats[k]) for k in
                  ("nodes", "edges", "components", "betti1", "mean_node_size", "coverage")})
    feats["mapper_purity"] = mapper_purity(graph, labels)
    return feats


def stratified_subsets(labels: Sequence[str], n_subsets: int, seed: int) -> list[np.ndarray]:
    """Disjoint row subsets, each holding an equal share of every concept's stimuli."""
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, 0x5B5])
    parts: list[list[int]] = [[] for _ in range(n_subsets)]
    for concept in sorted(set(labels.tolist())):
        idx = rng.permutation(np.flatnonzero(labels == concept))
        for k, chunk in enumerate(np.array_split(idx, n_subsets)):
            parts[k].extend(chunk.tolist())
    return [np.sort(np.asarray(p)) for p in parts]


def _classifier(seed: int):
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=5000,
                                                              random_state=seed))


def grouped_classification(X: np.ndarray, y: Sequence, groups: Sequence, *,
                           units: Sequence | None = None, n_perm: int = 99, n_boot: int = 1000,
                           seed: int = 0) -> dict[str, float]:
    """Can ``X: (n, f)`` predict ``y`` on held-out groups? Logistic regression (standardised).

    Cross-validation leaves one group out (train and test never share a group); the score is
    balanced accuracy (chance = 1 / number of classes). ``p_value`` comes from
    ``permutation_test_score`` (labels permuted within groups); the 95 % CI from a bootstrap
    over ``units`` (e.g. one trained model; default: the groups) of the out-of-fold
    predictions. Returns accuracy, ci_low, ci_high, chance, null_mean, null_high, p_value,
    n_rows, n_groups, n_classes.
    """
    X = np.asarray(X, dtype=np.float64)
    y, groups = np.asarray(y), np.asarray(groups)
    units = groups if units is None else np.asarray(units)
    if not np.isfinite(X).all():
        raise ValueError("features hold NaN or inf")
    if len({len(X), len(y), len(groups), len(units)}) != 1:
        raise ValueError("X, y, groups and units must have one entry per row")
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError("need at least two classes to classify")
    if len(np.unique(groups)) < 2:
        raise ValueError("need at least two groups for grouped cross-validation")
    cv = LeaveOneGroupOut()
    estimator = _classifier(seed)
    score, null, p_value = permutation_test_score(
        estimator, X, y, groups=groups, cv=cv, n_permutations=n_perm, random_state=seed,
        scoring="balanced_accuracy")
    predicted = cross_val_predict(estimator, X, y, groups=groups, cv=cv)
    rng = np.random.default_rng([seed, 0xB00])
    unit_ids = np.unique(units)
    rows_of = {u: np.flatnonzero(units == u) for u in unit_ids}
    boots = []
    for _ in range(n_boot):
        rows = np.concatenate([rows_of[u] for u in rng.choice(unit_ids, len(unit_ids))])
        boots.append(_balanced_accuracy(y[rows], predicted[rows], classes))
    return {"accuracy": float(score),
            "ci_low": float(np.quantile(boots, 0.025)) if n_boot else float("nan"),
            "ci_high": float(np.quantile(boots, 0.975)) if n_boot else float("nan"),
            "chance": 1.0 / len(classes), "null_mean": float(np.mean(null)),
            "null_high": float(np.quantile(null, 0.95)), "p_value": float(p_value),
            "n_rows": int(len(y)), "n_groups": int(len(np.unique(groups))),
            "n_classes": int(len(classes))}


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray, classes: np.ndarray) -> float:
    recalls = [np.mean(pred[y == c] == c) for c in classes if np.any(y == c)]
    return float(np.mean(recalls))


def single_feature_accuracy(X: np.ndarray, y: Sequence, groups: Sequence, names: Sequence[str],
                            seed: int = 0) -> pd.DataFrame:
    """Grouped-CV balanced accuracy of the classifier on each feature alone, best first."""
    X, y, groups = np.asarray(X, float), np.asarray(y), np.asarray(groups)
    classes = np.unique(y)
    rows = []
    for j, name in enumerate(names):
        if np.ptp(X[:, j]) == 0:
            rows.append({"feature": name, "accuracy": 1.0 / len(classes)})
            continue
        pred = cross_val_predict(_classifier(seed), X[:, [j]], y, groups=groups,
                                 cv=LeaveOneGroupOut())
        rows.append({"feature": name, "accuracy": _balanced_accuracy(y, pred, classes)})
    return pd.DataFrame(rows).sort_values(["accuracy", "feature"], ascending=[False, True],
                                          ignore_index=True)


def concept_accuracy(X: np.ndarray, labels: Sequence[str], k: int = 5) -> float:
    """Leave-one-out k-NN (cosine) accuracy of the concept labels: how concept-level a layer is.

    Each stimulus is labelled by the majority concept of its ``k`` most cosine-similar other
    stimuli (ties go to the alphabetically first concept)."""
    X = np.asarray(X, dtype=np.float64)
    labels = np.asarray(labels)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("a stimulus has a zero vector: cosine neighbours are undefined")
    U = X / norms
    S = U @ U.T
    np.fill_diagonal(S, -np.inf)
    neighbours = np.argsort(-S, axis=1, kind="stable")[:, :k]
    names, codes = np.unique(labels, return_inverse=True)
    votes = np.zeros((len(X), len(names)), dtype=int)
    np.add.at(votes, (np.repeat(np.arange(len(X)), k), codes[neighbours].ravel()), 1)
    return float(np.mean(votes.argmax(1) == codes))


def depth_layers(n_layers: int, depths: Sequence[float]) -> list[int]:
    """Index of the layer nearest each relative depth, for a model with ``n_layers`` layers
    (embeddings = layer 0, so ``n_layers + 1`` arrays)."""
    return [int(round(t * n_layers)) for t in depths]


def bootstrap_mean(values: Sequence[float], n_boot: int, seed: int) -> tuple[float, float, float]:
    """Mean and 95 % percentile-bootstrap interval of ``values``."""
    v = np.asarray(values, float)
    if v.size == 0:
        raise ValueError("no values to average")
    rng = np.random.default_rng([seed, 0xC1])
    boots = v[rng.integers(0, v.size, (n_boot, v.size))].mean(1) if n_boot else np.array([v.mean()])
    return float(v.mean()), float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


# --------------------------------------------------------------------------------------------
# Compute


def _load_models(config: dict, stims) -> tuple[dict, pd.DataFrame]:
    """Per model: list of centred layer clouds; plus a table describing each model."""
    from .common import inhouse_model
    clouds, rows = {}, []
    d_gpt2, n_layers = config["shape"]
    for family in config["families"]:
        shape = models.matched_shape(family, d_gpt2, n_layers,
                                     vocab_size=config["recipe"]["vocab_size"],
                                     context=config["recipe"]["context"])
        for i in range(config["n_seeds"]):
            s = config["seed"] + i
            zm, trained = inhouse_model(family, shape["d_model"], shape["n_layers"], s,
                                        config["recipe"])
            acts = activations.extract(zm, stims)
            name = f"{family}-s{s}"
            clouds[name] = [centred(a) for a in acts.layers]
            rows.append({"model": name, "arch": family, "source": "in-house", "seed": s,
                         "d_model": shape["d_model"], "n_layers": shape["n_layers"],
                         "params": int(models.param_count(zm.module)),
                         "val_ppl": float(trained.history["val_ppl"].iloc[-1]),
                         "matched_to": f"gpt2 d{d_gpt2}-L{n_layers}"})
    for full in config["pretrained"]:
        zm = zoo.load(full)
        acts = activations.extract(zm, stims)
        name = PRETRAINED[full]
        clouds[name] = [centred(a) for a in acts.layers]
        rows.append({"model": name, "arch": name, "source": "pretrained", "seed": -1,
                     "d_model": int(acts.layers[-1].shape[1]), "n_layers": len(acts.layers) - 1,
                     "params": int(zm.n_params), "val_ppl": float("nan"), "matched_to": ""})
    return clouds, pd.DataFrame(rows)


def _features_table(clouds: dict, info: pd.DataFrame, labels: np.ndarray, subsets,
                    seed: int) -> pd.DataFrame:
    rows = []
    for rec in info.itertuples():
        layers = clouds[rec.model]
        for layer, X in enumerate(layers):
            for k, idx in enumerate(subsets):
                Z = centred(X[idx])
                base = {"model": rec.model, "arch": rec.arch, "source": rec.source,
                        "seed": rec.seed, "layer": layer, "depth": layer / (len(layers) - 1),
                        "subset": k}
                raw = topo_features(Z, labels[idx], seed)
                norm = topo_features(normalise_scale(Z), labels[idx], seed)
                rows.append({**base, **scale_features(Z), **raw,
                             **{f"norm_{f}": v for f, v in norm.items()}})
    return pd.DataFrame(rows)


def feature_columns(table: pd.DataFrame, feature_set: str) -> list[str]:
    topo = list(topology.SUMMARY_FEATURES) + list(MAPPER_FEATURES)
    if feature_set == "topology":
        return topo
    if feature_set == "topology_normalised":
        return [f"norm_{f}" for f in topo]
    if feature_set == "scale_only":
        return list(SCALE_FEATURES)
    raise ValueError(f"feature_set must be one of {FEATURE_SETS}, got {feature_set!r}")


def _classification(features: pd.DataFrame, config: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, importance = [], []
    tasks = [("in-house", features[features.source == "in-house"], "seed", "model")]
    pre = features[features.source == "pretrained"]
    if pre["arch"].nunique() >= 2:
        tasks.append(("pretrained", pre, "subset", None))
    for task, table, group_col, unit_col in tasks:
        units = None
        if unit_col is not None:
            units = table[unit_col].to_numpy()
        else:  # one unit = one (model, layer) cloud
            units = (table["model"] + ":" + table["layer"].astype(str)).to_numpy()
        for fs in FEATURE_SETS:
            cols = feature_columns(table, fs)
            res = grouped_classification(table[cols].to_numpy(), table["arch"].to_numpy(),
                                         table[group_col].to_numpy(), units=units,
                                         n_perm=config["n_perm"], n_boot=config["n_boot"],
                                         seed=config["seed"])
            rows.append({"task": task, "feature_set": fs, "grouped_by": group_col, **res})
        cols = feature_columns(table, "topology_normalised")
        single = single_feature_accuracy(table[cols].to_numpy(), table["arch"].to_numpy(),
                                         table[group_col].to_numpy(), cols, config["seed"])
        importance.append(single.assign(task=task,
                                         feature=single["feature"].str.removeprefix("norm_")))
    return pd.DataFrame(rows), pd.concat(importance, ignore_index=True)


def local_cka_rows(X: np.ndarray, Y: np.ndarray, labels: np.ndarray,
                   rng: np.random.Generator) -> list[dict]:
    """Per concept: debiased CKA of that concept's stimuli in ``X`` and ``Y`` (both ``(n, d)``,
    same rows), and one null draw with ``Y``'s rows shuffled *within* the concept
    (:func:`metrics.local_resonance`, no interval)."""
    table = metrics.local_resonance(X, Y, labels, ("cka_linear_debiased",), n_boot=0, n_null=1,
                                    seed=int(rng.integers(2**32)))
    return [{"concept": r.concept, "value": r.value, "null": r.null_mean}
            for r in table.itertuples()]


def _pair_rows(name_a: str, name_b: str, A: list, B: list, depths: Sequence[float],
               labels: np.ndarray, config: dict,
               rng: np.random.Generator) -> tuple[list[dict], list[dict]]:
    """Global measures per depth (value and shuffled-pair null), and local CKA per concept."""
    rows, local = [], []
    rtd = dict(subsample_size=config["rtd_size"], n_subsamples=config["rtd_subsamples"],
               seed=config["seed"])
    for t, i, j in zip(depths, depth_layers(len(A) - 1, depths), depth_layers(len(B) - 1, depths)):
        X, Y = A[i], B[j]
        perm = rng.permutation(len(X))
        where = {"model_a": name_a, "model_b": name_b, "depth": float(t), "layer_a": i,
                 "layer_b": j}
        concepts = [{**where, **r} for r in local_cka_rows(X, Y, labels, rng)]
        local += concepts
        pairs = {
            "cka": (similarity.similarity(X, Y, "cka_linear_debiased"),
                    similarity.similarity(X, Y[perm], "cka_linear_debiased")),
            "mutual_knn": (similarity.similarity(X, Y, "mutual_knn", k=config["knn_k"]),
                           similarity.similarity(X, Y[perm], "mutual_knn", k=config["knn_k"])),
            "rtd": (topology.rtd(X, Y, **rtd), topology.rtd(X, Y[perm], **rtd)),
            "local_cka": (np.mean([r["value"] for r in concepts]),
                          np.mean([r["null"] for r in concepts])),
        }
        for measure, (value, null) in pairs.items():
            rows.append({**where, "measure": measure, "value": float(value), "null": float(null)})
    return rows, local


def _resonance(clouds: dict, info: pd.DataFrame, labels: np.ndarray,
               config: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pairwise resonance along depth (one row per pair, depth and measure) and per-concept
    local CKA (one row per pair, depth and concept)."""
    rng = np.random.default_rng([config["seed"], 0xA2])
    arch = dict(zip(info.model, info.arch))
    inhouse = info[info.source == "in-house"].model.tolist()
    n_in = int(info[info.source == "in-house"].n_layers.iloc[0])
    pretrained = info[info.source == "pretrained"].model.tolist()
    jobs = [(a, b, [layer / n_in for layer in range(n_in + 1)], "in-house",
             "within" if arch[a] == arch[b] else "across",
             "–".join(sorted((arch[a], arch[b]))))
            for a, b in itertools.combinations(inhouse, 2)]
    jobs += [(a, b, list(np.linspace(0, 1, config["pretrained_depths"])), "pretrained",
              "across", f"{a}–{b}") for a, b in itertools.combinations(pretrained, 2)]
    rows, local = [], []
    for a, b, depths, group, kind, arch_pair in jobs:
        tags = {"group": group, "kind": kind, "arch_pair": arch_pair}
        pair, concepts = _pair_rows(a, b, clouds[a], clouds[b], depths, labels, config, rng)
        rows += [{**r, **tags} for r in pair]
        local += [{**r, **tags} for r in concepts]
    return pd.DataFrame(rows), pd.DataFrame(local)


def local_by_concept(bundle_or_table, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Last-layer local CKA per (group, kind, concept): mean over pairs with a bootstrap CI,
    and the mean within-concept shuffled null (from a bundle or its ``local_resonance``)."""
    local = (bundle_or_table["local_resonance"] if isinstance(bundle_or_table, Bundle)
             else bundle_or_table)
    last = local[local.depth == local.groupby("group").depth.transform("max")]
    rows = []
    for (group, kind, concept), g in last.groupby(["group", "kind", "concept"]):
        mean, lo, hi = bootstrap_mean(g["value"], n_boot, seed)
        rows.append({"group": group, "kind": kind, "concept": concept, "mean": mean,
                     "ci_low": lo, "ci_high": hi, "null": float(g["null"].mean()),
                     "n_pairs": len(g)})
    return pd.DataFrame(rows)


def _layer_maps(clouds: dict, config: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    grids, maps = [], []
    for a, b in config["map_pairs"]:
        table = metrics.similarity_matrix(clouds[a], clouds[b], "cka_linear_debiased")
        best = metrics.best_layer_map(table)
        pair = f"{a}→{b}"
        grids.append(table.assign(pair=pair, model_a=a, model_b=b))
        maps.append(best.assign(pair=pair, model_a=a, model_b=b))
    return pd.concat(grids, ignore_index=True), pd.concat(maps, ignore_index=True)


def _mapper_tables(clouds: dict, info: pd.DataFrame, labels: np.ndarray, decod: pd.DataFrame,
                   config: dict) -> tuple[pd.DataFrame, ...]:
    """One Mapper graph per architecture (first seed for in-house), at its layer with the best
    concept decodability; stored as membership / links / a 2-D PCA projection."""
    from sklearn.decomposition import PCA
    members, links, proj, stats = [], [], [], []
    first = info.groupby("arch", sort=False).head(1)
    for rec in first.itertuples():
        d = decod[decod.model == rec.model]
        layer = int(d.loc[d["concept_accuracy"].idxmax(), "layer"])
        X = clouds[rec.model][layer]
        graph = topology.mapper_graph(X, seed=config["seed"])
        st = topology.mapper_stats(graph)
        stats.append({"arch": rec.arch, "model": rec.model, "layer": layer,
                      "depth": layer / (len(clouds[rec.model]) - 1),
                      "clusterer": graph["meta_data"]["clusterer"],
                      **st, "purity": mapper_purity(graph, labels)})
        members += [{"arch": rec.arch, "node": node, "item": int(i)}
                    for node, items in graph["nodes"].items() for i in items]
        links += [{"arch": rec.arch, "source": s, "target": t}
                  for s, targets in graph["links"].items() for t in targets]
        xy = PCA(2, random_state=config["seed"]).fit_transform(X)
        proj.append(pd.DataFrame({"arch": rec.arch, "item": np.arange(len(X)),
                                  "pc1": xy[:, 0], "pc2": xy[:, 1], "concept": labels}))
    return (pd.DataFrame(stats), pd.DataFrame(members),
            pd.DataFrame(links, columns=["arch", "source", "target"]),
            pd.concat(proj, ignore_index=True))


def compute(config: dict) -> tuple[dict[str, pd.DataFrame], dict]:
    seed_everything(config["seed"])
    stims = stimuli.concept_stimuli(config["n_per_concept"], form="word", seed=config["seed"])
    labels = np.asarray(stims.labels)
    clouds, info = _load_models(config, stims)

    decod = pd.DataFrame([
        {"model": m, "arch": a, "source": s, "layer": layer,
         "depth": layer / (len(clouds[m]) - 1), "concept_accuracy": concept_accuracy(X, labels)}
        for m, a, s in zip(info.model, info.arch, info.source)
        for layer, X in enumerate(clouds[m])])

    subsets = stratified_subsets(labels, config["n_subsets"], config["seed"])
    features = _features_table(clouds, info, labels, subsets, config["seed"])
    classification, importance = _classification(features, config)
    resonance, local = _resonance(clouds, info, labels, config)
    grids, maps = _layer_maps(clouds, config)
    mapper_stats, membership, mapper_links, projection = _mapper_tables(
        clouds, info, labels, decod, config)

    meta = summarise(config, info, classification, importance, resonance, local, maps, decod)
    meta["n_stimuli"] = int(len(stims))
    tables = {"models": info, "features": features, "classification": classification,
              "feature_importance": importance, "resonance": resonance,
              "local_resonance": local,
              "concept_decodability": decod, "layer_grids": grids, "layer_maps": maps,
              "mapper_stats": mapper_stats, "mapper_membership": membership,
              "mapper_links": mapper_links, "mapper_projection": projection}
    return tables, meta


# --------------------------------------------------------------------------------------------
# Summaries (meta.json: what the notebook asserts and the paper cites)


def _trajectory_summary(res: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Mean and bootstrap CI over pairs of each (group, kind, measure, depth)."""
    rows = []
    for (group, kind, measure, depth), g in res.groupby(["group", "kind", "measure", "depth"]):
        mean, lo, hi = bootstrap_mean(g["value"], n_boot, seed)
        null = g["null"].dropna()
        rows.append({"group": group, "kind": kind, "measure": measure, "depth": depth,
                     "mean": mean, "ci_low": lo, "ci_high": hi, "n_pairs": len(g),
                     "null_mean": float(null.mean()) if len(null) else float("nan")})
    return pd.DataFrame(rows)


def trajectory_summary(bundle_or_table, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    res = bundle_or_table["resonance"] if isinstance(bundle_or_table, Bundle) else bundle_or_table
    return _trajectory_summary(res, n_boot, seed)


def _late_minus_early(res: pd.DataFrame, measure: str, n_boot: int, seed: int):
    """Per pair: mean over late depths (>= 0.75) minus mean over the first half of the network
    after the embeddings (0 < depth <= 0.5); mean and CI over pairs."""
    r = res[res.measure == measure]
    per_pair = []
    for _, g in r.groupby(["model_a", "model_b"]):
        late = g[g.depth >= 0.75]["value"].mean()
        early = g[(g.depth > 0) & (g.depth <= 0.5)]["value"].mean()
        per_pair.append(late - early)
    return bootstrap_mean(per_pair, n_boot, seed)


def summarise(config, info, classification, importance, resonance, local, maps, decod) -> dict:
    nb, seed = config["n_boot"], config["seed"]
    meta: dict[str, Any] = {"n_models": int(len(info)), "n_inhouse": int((info.source == "in-house").sum()),
                            "n_seeds": int(config["n_seeds"]),
                            "inhouse_shapes": "; ".join(
                                f"{r.arch} d={r.d_model} L={r.n_layers} "
                                f"({r.params / 1e6:.2f}M params)"
                                for r in info[info.source == "in-house"].groupby("arch", sort=False)
                                .head(1).itertuples())}
    for rec in classification.itertuples():
        key = f"clf_{'inhouse' if rec.task == 'in-house' else 'pretrained'}_{rec.feature_set}"
        for col, name in (("accuracy", "accuracy"), ("ci_low", "accuracy_ci_low"),
                          ("ci_high", "accuracy_ci_high"), ("chance", "chance"),
                          ("null_high", "null_high"), ("p_value", "p_value")):
            meta[f"{key}_{name}"] = float(getattr(rec, col))
    top = importance[importance.task == "in-house"].head(3)
    meta["top_features_inhouse"] = ", ".join(f"{f} ({a:.2f})" for f, a in
                                             zip(top.feature, top.accuracy))
    ppl = info[info.source == "in-house"].groupby("arch")["val_ppl"].mean()
    for arch, v in ppl.items():
        meta[f"val_ppl_{arch}"] = float(v)

    res_in = resonance[resonance.group == "in-house"]
    last = res_in.depth.max()
    for measure in ("cka", "mutual_knn", "rtd", "local_cka"):
        for kind in ("within", "across"):
            vals = res_in[(res_in.measure == measure) & (res_in.kind == kind) & (res_in.depth == last)]
            m, lo, hi = bootstrap_mean(vals["value"], nb, seed)
            meta[f"inhouse_{kind}_{measure}_last"] = m
            meta[f"inhouse_{kind}_{measure}_last_ci_low"] = lo
            meta[f"inhouse_{kind}_{measure}_last_ci_high"] = hi
        meta[f"inhouse_null_{measure}_last"] = float(
            res_in[(res_in.measure == measure) & (res_in.depth == last)]["null"].mean())
        # across / within ratio (similarities) with a bootstrap over pairs of each kind
        if measure != "rtd":
            w = res_in[(res_in.measure == measure) & (res_in.kind == "within") & (res_in.depth == last)]["value"].to_numpy()
            a = res_in[(res_in.measure == measure) & (res_in.kind == "across") & (res_in.depth == last)]["value"].to_numpy()
            rng = np.random.default_rng([seed, 0xAA])
            ratios = [a[rng.integers(0, a.size, a.size)].mean() / w[rng.integers(0, w.size, w.size)].mean()
                      for _ in range(nb)]
            meta[f"inhouse_ratio_{measure}_last"] = float(a.mean() / w.mean())
            meta[f"inhouse_ratio_{measure}_last_ci_low"] = float(np.quantile(ratios, 0.025))
            meta[f"inhouse_ratio_{measure}_last_ci_high"] = float(np.quantile(ratios, 0.975))
    traj = _trajectory_summary(resonance, nb, seed)
    for group in resonance.group.unique():
        g = traj[(traj.group == group) & (traj.kind == "across") & (traj.measure == "cka")
                 & (traj.depth > 0)]
        best = g.loc[g["mean"].idxmax()]
        tag = "inhouse" if group == "in-house" else "pretrained"
        meta[f"{tag}_across_cka_peak_depth"] = float(best.depth)
        meta[f"{tag}_across_cka_peak"] = float(best["mean"])
        r = resonance[(resonance.group == group) & (resonance.kind == "across")]
        m, lo, hi = _late_minus_early(r, "cka", nb, seed)
        meta[f"{tag}_across_cka_late_minus_early"] = m
        meta[f"{tag}_across_cka_late_minus_early_ci_low"] = lo
        meta[f"{tag}_across_cka_late_minus_early_ci_high"] = hi
        lastd = r.depth.max()
        v = r[(r.measure == "cka") & (r.depth == lastd)]["value"]
        m, lo, hi = bootstrap_mean(v, nb, seed)
        meta[f"{tag}_across_cka_last"], meta[f"{tag}_across_cka_last_ci_low"], \
            meta[f"{tag}_across_cka_last_ci_high"] = m, lo, hi
        loc = r[(r.measure == "local_cka") & (r.depth == lastd)]["value"]
        meta[f"{tag}_across_local_cka_last"] = float(loc.mean())
    meta.update(_local_summary(local_by_concept(local, nb, seed)))
    # is cross-architecture resonance highest where concepts are most decodable?
    dec_in = decod[decod.source == "in-house"].groupby("depth")["concept_accuracy"].mean()
    meta["inhouse_concept_accuracy_peak_depth"] = float(dec_in[dec_in.index > 0].idxmax())
    meta["inhouse_concept_accuracy_last"] = float(dec_in.iloc[-1])
    meta["inhouse_concept_accuracy_max"] = float(dec_in.max())
    dec_pre = decod[decod.source == "pretrained"]
    if len(dec_pre):
        meta["pretrained_concept_accuracy_last"] = float(
            dec_pre[dec_pre.depth == 1.0]["concept_accuracy"].mean())
    meta["concept_chance"] = 1.0 / 10
    # dynamic: how far the best monotone map strays from the diagonal of relative depth
    maps = maps.assign(off=(maps.depth_b - maps.depth_a).abs())
    for pair, g in maps.groupby("pair", sort=False):
        meta[f"map_offdiag_{pair}"] = float(g.off.mean())

    meta["verdict_topology"] = _verdict_topology(meta)
    meta["verdict_semantics"] = _verdict_semantics(meta)
    meta["headline"] = (
        f"in-house architecture from scale-normalised topology: balanced acc "
        f"{meta['clf_inhouse_topology_normalised_accuracy']:.2f} "
        f"[{meta['clf_inhouse_topology_normalised_accuracy_ci_low']:.2f}, "
        f"{meta['clf_inhouse_topology_normalised_accuracy_ci_high']:.2f}] (chance "
        f"{meta['clf_inhouse_topology_normalised_chance']:.2f}, p="
        f"{meta['clf_inhouse_topology_normalised_p_value']:.3f}), scale alone "
        f"{meta['clf_inhouse_scale_only_accuracy']:.2f}; last-layer CKA across "
        f"architectures {meta['inhouse_across_cka_last']:.2f} vs seed ceiling "
        f"{meta['inhouse_within_cka_last']:.2f}; late minus early layers "
        f"{meta['inhouse_across_cka_late_minus_early']:+.2f} "
        f"[{meta['inhouse_across_cka_late_minus_early_ci_low']:+.2f}, "
        f"{meta['inhouse_across_cka_late_minus_early_ci_high']:+.2f}]")
    return meta


def _local_summary(concepts: pd.DataFrame) -> dict:
    """Per-concept last-layer local CKA: how many concepts resonate across architectures above
    the within-concept null, how many stay below the seed ceiling, the extremes."""
    meta: dict[str, Any] = {}
    for group, tag in (("in-house", "inhouse"), ("pretrained", "pretrained")):
        across = concepts[(concepts.group == group) & (concepts.kind == "across")]
        if across.empty:
            continue
        across = across.set_index("concept")
        meta[f"{tag}_local_n_concepts"] = int(len(across))
        meta[f"{tag}_local_concepts_above_null"] = int((across.ci_low > across.null).sum())
        for end, concept in (("best", across["mean"].idxmax()), ("worst", across["mean"].idxmin())):
            meta[f"{tag}_local_{end}_concept"] = str(concept)
            meta[f"{tag}_local_{end}_value"] = float(across.at[concept, "mean"])
        within = concepts[(concepts.group == group) & (concepts.kind == "within")]
        if len(within):
            within = within.set_index("concept").loc[across.index]
            meta[f"{tag}_local_concepts_below_ceiling"] = int(
                (across.ci_high < within.ci_low).sum())
    return meta


def _verdict_topology(meta: dict) -> str:
    """Supported when scale-normalised topology names the in-house architecture on held-out
    seeds above chance (permutation p < 0.05, CI above chance); qualified when scale alone
    does as well."""
    key = "clf_inhouse_topology_normalised"
    if not (meta[f"{key}_p_value"] < 0.05 and meta[f"{key}_accuracy_ci_low"] > meta[f"{key}_chance"]):
        return "not supported"
    if meta["clf_inhouse_scale_only_accuracy_ci_high"] >= meta[f"{key}_accuracy"]:
        return ("partly supported: architectures are distinguishable from scale-free topology, "
                "but scale alone distinguishes them as well")
    return "supported"


def _verdict_semantics(meta: dict) -> str:
    """Checks each part of "resonate on high-level semantics": resonance beyond the shuffled
    null, most in late layers, close to the seed ceiling, and late layers that are concept-level
    (concept 5-NN accuracy at least twice chance)."""
    if not meta["inhouse_across_cka_last_ci_low"] > meta["inhouse_null_cka_last"]:
        return "not supported"
    failures = []
    if meta["inhouse_across_cka_late_minus_early_ci_high"] < 0:
        failures.append("in-house resonance falls from early to late layers")
    elif not meta["inhouse_across_cka_late_minus_early_ci_low"] > 0:
        failures.append("in-house resonance is not highest in late layers")
    if meta.get("pretrained_across_cka_late_minus_early_ci_low", 1.0) <= 0:
        failures.append("pretrained late layers do not resonate more than early ones")
    if meta["inhouse_ratio_cka_last_ci_high"] < 1:
        failures.append("across-architecture resonance stays below the seed ceiling")
    if meta["inhouse_concept_accuracy_last"] < 2 * meta["concept_chance"]:
        failures.append("the in-house late layers that resonate are not concept-level")
    if not failures:
        return "supported"
    return "partly supported: architectures resonate well above chance, but " + "; ".join(failures)


# --------------------------------------------------------------------------------------------
# Rebuilding Mapper graphs from the stored tables (for drawing and HTML export)


def mapper_from_tables(bundle: Bundle, arch: str) -> tuple[dict, np.ndarray, list[str]]:
    """Architecture ``arch``'s Mapper graph (kmapper dict), its 2-D PCA projection ``(n, 2)`` and
    the concept labels, from the stored tables."""
    mem = bundle["mapper_membership"]
    mem = mem[mem.arch == arch]
    if mem.empty:
        raise ValueError(f"no Mapper graph stored for {arch!r}; have "
                         f"{sorted(bundle['mapper_membership'].arch.unique())}")
    nodes = {node: sorted(g["item"].tolist()) for node, g in mem.groupby("node", sort=True)}
    links: dict[str, list[str]] = {node: [] for node in nodes}
    lk = bundle["mapper_links"]
    for source, target in lk[lk.arch == arch][["source", "target"]].itertuples(index=False):
        links[source].append(target)
    proj = bundle["mapper_projection"]
    proj = proj[proj.arch == arch].sort_values("item")
    st = bundle["mapper_stats"].set_index("arch").loc[arch]
    meta = {"projection": "PCA(1)", "n_cubes": 10, "perc_overlap": 0.3,
            "clusterer": st["clusterer"], "scaler": "None", "n_points": len(proj)}
    graph = {"nodes": nodes, "links": links, "simplices": [], "meta_data": meta,
             "meta_nodes": {}}
    return graph, proj[["pc1", "pc2"]].to_numpy(), proj["concept"].tolist()


__all__ = ["run", "compute", "SIZES", "NAME", "validate_config", "grouped_classification",
           "single_feature_accuracy", "stratified_subsets", "normalise_scale", "scale_features",
           "topo_features", "mapper_purity", "concept_accuracy", "depth_layers",
           "bootstrap_mean", "trajectory_summary", "local_by_concept", "local_cka_rows", "mapper_from_tables", "feature_columns",
           "model_names", "inhouse_names", "ARCHITECTURE", "PRETRAINED"]
