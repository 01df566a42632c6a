"""03_cross_modal: do vision and language models organise paired images and captions alike?

ResonAI claims "multimodal models exhibit cross-modal resonance"; the Platonic Representation
Hypothesis (Huh et al. 2024) claims that unimodal vision and language models converge. Both are
tested on real image-caption pairs (Tux Paint stamps and Noto emoji, :func:`resonance.stimuli.
paired_stimuli`) with the PRH protocol first (:mod:`resonance.prh`: clamped, L2-normalised
features, mutual 10-NN, maximum over all layer pairs, a null of grid maxima), then debiased
CKA, RTD and the persistence-diagram distance, and controls that could refute it.

Primary analysis, declared before the others: EfficientNet-Lite0 ↔ MiniLM, mutual 10-NN
(PRH protocol) on all pairs, against 99 shuffled-pair grid maxima.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as _stats

from .. import activations, metrics, prh, similarity, stimuli, store, zoo
from ..baselines import bits_per_byte, pixel_features, random_twin, static_features
from ..contrastive import linear_map_retrieval, positive_control
from ..seeding import seed_everything
from ..stats import fmt, mean_ci, permutation_p, spearman_ci
from ..store import Bundle, config_hash
from .common import PPL_GATE, RECIPE_GATED, inhouse_model, profile_config, unigram_baseline

VERSION = 2  # bump when compute() changes its output
NAME = "03_cross_modal"
PRIMARY = ("efficientnet-lite0", "minilm")
# ImageNet top-1 of the EfficientNet-Lite checkpoints (TensorFlow TPU model card, the source of
# these weights): the vision models' competence order.
IMAGENET_TOP1 = {"efficientnet-lite0": 75.1, "efficientnet-lite1": 76.7,
                 "efficientnet-lite2": 77.6}
# Released models whose captions are also shown as category names (the category-name control).
SIZES = {
    "smoke": {"n_pairs": 100, "size": 160, "vision": ["efficientnet-lite0"], "text": ["minilm"],
              "static": False, "random_init": True, "pixels": 32, "ladder": [[16, 1]],
              "n_null": 99, "sweep": [32, 64, 100], "sweep_draws": 3,
              "topo": {"n_null": 99, "n_boot": 5, "subsample": 50, "n_subsamples": 1},
              "local_min_items": 11,
              "contrastive": {"seeds": [0, 1], "train_fraction": 0.5, "steps": 100,
                              "hidden": 128, "dim": 64, "lr": 1e-3, "temperature": 0.07},
              "functional_draws": 99, "bpb_bytes": 2000},
    "paper": {"n_pairs": 512, "size": 160,
              "vision": ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"],
              "text": ["minilm", "mpnet", "smollm2-135m", "gemma3-270m"],
              "static": True, "random_init": True, "pixels": 32,
              # The in-house GPT-2 ladder of 01_scale: its seed-0 runs (01's recipe), cached.
              "ladder": "scale",
              # n-sweep: sizes above n_pairs (None = every pair of the corpus) are drawn from
              # all pairs, for the primary pair only (its features extracted on all of them).
              "n_null": 99, "sweep": [64, 128, 256, 512, 1024, None], "sweep_draws": 5,
              "topo": {"n_null": 99, "n_boot": 10, "subsample": 100, "n_subsamples": 2},
              "local_min_items": 16,
              "contrastive": {"seeds": [0, 1, 2, 3, 4], "train_fraction": 0.5, "steps": 300,
                              "hidden": 256, "dim": 128, "lr": 1e-3, "temperature": 0.07},
              "functional_draws": 99, "bpb_bytes": 12_000},
}
CAUSAL = ("smollm2-135m", "gemma3-270m")


def run(profile: str = "paper", seed: int = 0, force: bool = False, **overrides: Any) -> Bundle:
    config = profile_config(SIZES, profile, seed, overrides, version=VERSION)
    if config["ladder"] == "scale":
        from .scale import SIZES as SCALE_SIZES
        config["ladder"] = [list(r) for r in SCALE_SIZES["paper"]["ladder"]]
    config["recipe"] = RECIPE_GATED["smoke" if profile == "smoke" else "paper"]
    return store.cached(NAME, profile, config, compute, force=force)


def paired(config: dict) -> stimuli.Stimuli:
    """The stimuli of a config (also what the notebook shows as retrieval examples)."""
    return stimuli.paired_stimuli(size=config["size"], n=config["n_pairs"], seed=config["seed"])


# -- models and features ----------------------------------------------------------------------

def _deep_layers(model, stims) -> list[np.ndarray]:
    """Every hidden state but the input embedding / stem (as :mod:`metrics` compares them)."""
    return activations.extract(model, stims).layers[1:]


def _model_entries(config: dict) -> tuple[list[dict], list[dict]]:
    """(vision entries, text entries): name, kind, loader; loaded lazily in :func:`_features`."""
    def pretrained(names: list[str]) -> list[dict]:
        entries = [{"name": m, "kind": "pretrained"} for m in names]
        if config["random_init"]:  # a random-init twin of the first model
            entries.append({"name": f"{names[0]}-random", "kind": "random", "base": names[0]})
        return entries

    vision = pretrained(config["vision"])
    if config["pixels"]:
        vision.append({"name": "pixels", "kind": "pixels"})
    text = pretrained(config["text"])
    if config["static"]:
        text.append({"name": "wordllama", "kind": "static"})
    for d_model, n_layers in config["ladder"]:
        text.append({"name": f"gpt2-d{d_model}-l{n_layers}-s0", "kind": "inhouse",
                     "shape": (d_model, n_layers)})
    return vision, text


def _load(entry: dict, config: dict):
    if entry["kind"] == "pretrained":
        return zoo.load(entry["name"])
    if entry["kind"] == "random":
        return random_twin(zoo.load(entry["base"]), config["seed"])
    if entry["kind"] == "inhouse":
        return inhouse_model("gpt2", *entry["shape"], 0, config["recipe"])[0]
    raise ValueError(f"{entry['name']} is not a network")


def _features(entries: list[dict], config: dict, stims: stimuli.Stimuli,
              texts: list[str] | None = None) -> dict[str, list[np.ndarray]]:
    """Per model, its layers on ``stims`` (or on ``texts``, for text models)."""
    out = {}
    for entry in entries:
        if entry["kind"] == "pixels":
            out[entry["name"]] = [pixel_features(stims.images, config["pixels"])]
            continue
        if texts is not None:
            # Texts repeat (category names): extract the distinct ones once, then index.
            unique = list(dict.fromkeys(texts))
            where = np.array([unique.index(t) for t in texts])
            sub = stimuli.Stimuli(f"{stims.name}-texts-{config_hash(unique)}", unique, None,
                                  [""] * len(unique))
        else:
            sub, where = stims, None
        if entry["kind"] == "static":
            layers = [static_features(sub.texts)]
        else:
            layers = _deep_layers(_load(entry, config), sub)
        out[entry["name"]] = layers if where is None else [x[where] for x in layers]
    return out


# -- measures ---------------------------------------------------------------------------------

def _pair_row(va: str, ta: str, nb_v, nb_t, feats_v, feats_t, perms, text_input="caption",
              cka: bool = True) -> dict:
    res = prh.grid_alignment(nb_v, nb_t, perms)
    i, j = res.best
    row = {"vision": va, "text": ta, "text_input": text_input, "n": res.n,
           "knn": res.value, "layer_v": i + 1, "layer_t": j + 1,
           "depth_v": (i + 1) / max(len(nb_v), 1), "depth_t": (j + 1) / max(len(nb_t), 1),
           "knn_null_mean": float(res.null.mean()), "knn_null_high": res.null_quantile(0.95),
           "knn_p": res.p_value, "chance": prh.chance(res.n, res.k),
           "knn_last": float(res.grid[-1, -1])}
    if cka:
        value, null = prh.cka_with_null(feats_v[i], feats_t[j], perms)
        row.update(cka=value, cka_null_high=float(np.quantile(null, 0.95)), cka_p=permutation_p(value, null))
    return row


def _neighbours(feats: dict[str, list[np.ndarray]], idx: np.ndarray | None = None) -> dict:
    return {name: [prh.neighbours(x if idx is None else x[idx]) for x in layers]
            for name, layers in feats.items()}


# -- the pieces of compute ----------------------------------------------------------------------

def _grid_tables(config, stims, feats_v, feats_t, feats_names, vision, text) -> dict:
    n = len(stims)
    nb_v, nb_t, nb_names = _neighbours(feats_v), _neighbours(feats_t), _neighbours(feats_names)
    perms = prh.shuffles(n, config["n_null"], config["seed"])
    within = prh.within_group_shuffles(stims.labels, config["n_null"], config["seed"] + 1)
    rows, controls = [], []
    for v in vision:
        for t in text:
            rows.append({**_pair_row(v["name"], t["name"], nb_v[v["name"]], nb_t[t["name"]],
                                     feats_v[v["name"]], feats_t[t["name"]], perms),
                         "vision_kind": v["kind"], "text_kind": t["kind"]})
    real_v = [v["name"] for v in vision if v["kind"] == "pretrained"]
    for v in real_v:
        for t in feats_names:
            kind = next(e["kind"] for e in text if e["name"] == t)
            row = {**_pair_row(v, t, nb_v[v], nb_names[t], feats_v[v], feats_names[t], perms,
                               "category_name"), "vision_kind": "pretrained", "text_kind": kind}
            rows.append(row)
            res = prh.grid_alignment(nb_v[v], nb_t[t], within)
            controls.append({"vision": v, "text": t, "text_kind": kind,
                             "within_mean": float(res.null.mean()),
                             "within_high": res.null_quantile(0.95),
                             "within_low": res.null_quantile(0.05)})
    return {"pairs": pd.DataFrame(rows), "within_category": pd.DataFrame(controls)}


def _sweep(config, stims, feats_v, feats_t, pairs: pd.DataFrame, primary_pairs,
           big=None) -> pd.DataFrame:
    """Mutual 10-NN at each pair's best layer pair on random subsets of n pairs. Sizes up to
    ``len(stims)`` use the analysis set (every pair in ``primary_pairs``); larger sizes use
    ``big = (all_stims, feats_v, feats_t)``, features of the first pair on every pair."""
    rows = []
    n_set = len(stims)
    n_all = len(big[0]) if big is not None else n_set
    rng = np.random.default_rng([config["seed"], 0x5EE])
    sizes = sorted({n_all if s is None else min(int(s), n_all) for s in config["sweep"]})
    best = pairs.query("text_input == 'caption'").set_index(["vision", "text"])
    for size in sizes:
        source = (n_set, feats_v, feats_t, primary_pairs) if size <= n_set else \
            (n_all, big[1], big[2], primary_pairs[:1])
        draws = 1 if size in (n_set, n_all) else config["sweep_draws"]
        for draw in range(draws):
            idx = np.sort(rng.choice(source[0], size=size, replace=False))
            perm = rng.permutation(size)
            for v, t in source[3]:
                b = best.loc[(v, t)]
                X, Y = source[1][v][b.layer_v - 1][idx], source[2][t][b.layer_t - 1][idx]
                nx, ny = prh.neighbours(X), prh.neighbours(Y)
                rows.append({"vision": v, "text": t, "n": size, "draw": draw,
                             "set": "analysis" if size <= n_set else "all pairs",
                             "knn": prh.knn_grid([nx], [ny])[0, 0],
                             "knn_shuffled": prh.knn_grid([nx], [np.argsort(perm)[ny[perm]]])[0, 0],
                             "chance": prh.chance(size),
                             "cka": similarity.cka(X, Y, debiased=True)})
    return pd.DataFrame(rows)


def _topology(config, stims, feats_v, feats_t, pairs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """RTD and H1 persistence-diagram distance (with nulls) and local resonance per category,
    for the primary pair at its best PRH layer pair."""
    v, t = PRIMARY if PRIMARY[0] in feats_v and PRIMARY[1] in feats_t else \
        (next(iter(feats_v)), next(iter(feats_t)))
    b = pairs.query("vision == @v and text == @t and text_input == 'caption'").iloc[0]
    X, Y = feats_v[v][b.layer_v - 1], feats_t[t][b.layer_t - 1]
    topo = config["topo"]
    kwargs = {"rtd": {"n_subsamples": topo["n_subsamples"], "subsample_size": topo["subsample"]},
              "persistence_distance": {"n_subsamples": topo["n_subsamples"],
                                       "max_points": topo["subsample"]}}
    glob = metrics.global_resonance(X, Y, ("rtd", "persistence_distance"), n_boot=topo["n_boot"],
                                    n_null=topo["n_null"], seed=config["seed"],
                                    measure_kwargs=kwargs).assign(vision=v, text=t)
    groups = np.array([stimuli.coarse_category(label) for label in stims.labels])
    names, counts = np.unique(groups, return_counts=True)
    keep = np.isin(groups, names[counts >= config["local_min_items"]])
    if not keep.any():
        raise ValueError(f"no category has {config['local_min_items']} pairs for local "
                         f"resonance: lower local_min_items or raise n_pairs")
    local = metrics.local_resonance(
        X[keep], Y[keep], groups[keep], ("cka_linear_debiased", "mutual_knn"),
        min_items=config["local_min_items"], n_boot=0, n_null=config["n_null"],
        seed=config["seed"], measure_kwargs={"mutual_knn": {"clamp_quantile": prh.CLAMP_QUANTILE}})
    sizes = dict(zip(names, counts))
    local = local.assign(vision=v, text=t, n_items=[int(sizes[c]) for c in local["concept"]])
    return glob, local


def _contrastive(config, stims, feats_v, feats_t) -> pd.DataFrame:
    """The positive control (:func:`resonance.contrastive.positive_control`) on the primary
    pair."""
    v, t = PRIMARY if PRIMARY[0] in feats_v and PRIMARY[1] in feats_t else \
        (next(iter(feats_v)), next(iter(feats_t)))
    c = config["contrastive"]
    table = positive_control(feats_v[v], feats_t[t], c, c["seeds"], config["n_null"],
                             config["seed"])
    return table.assign(vision=v, text=t)


def _functional(config, stims, feats_v, feats_t, primary_pairs) -> tuple[pd.DataFrame,
                                                                        pd.DataFrame]:
    """A linear map image -> text fitted on the emoji pairs (ridge, alpha by leave-one-out),
    scored by caption retrieval on the Tux Paint pairs, vs chance and shuffled-pair maps."""
    source = np.array([label.split("/", 1)[0] for label in stims.labels])
    fit, test = np.flatnonzero(source == "emoji"), np.flatnonzero(source == "tuxpaint")
    if len(fit) < 20 or len(test) < 10:
        raise ValueError(f"the functional check needs >= 20 emoji and >= 10 Tux Paint pairs, got "
                         f"{len(fit)} and {len(test)}: raise n_pairs")
    rows, examples = [], []
    rng = np.random.default_rng([config["seed"], 0xF17])
    perms = [rng.permutation(len(fit)) for _ in range(config["functional_draws"])]
    for v, t in primary_pairs:
        # Layers chosen by the PRH grid on the fitting source only (the test pairs stay unseen).
        sel = prh.grid_alignment([prh.neighbours(x[fit]) for x in feats_v[v]],
                                 [prh.neighbours(y[fit]) for y in feats_t[t]])
        X, Y = feats_v[v][sel.best[0]], feats_t[t][sel.best[1]]
        real = linear_map_retrieval(X[fit], Y[fit], X[test], Y[test], perms=perms)
        null5, null1 = real["null_top5"], real["null_top1"]
        rows.append({"vision": v, "text": t, "layer_v": sel.best[0] + 1,
                     "layer_t": sel.best[1] + 1, "alpha": real["alpha"],
                     "n_fit": len(fit), "n_test": len(test),
                     "top1": real["top1"], "top5": real["top5"],
                     "median_rank": real["median_rank"],
                     "chance_top1": 1 / len(test), "chance_top5": 5 / len(test),
                     "shuffled_top5_mean": float(null5.mean()),
                     "shuffled_top5_high": float(np.quantile(null5, 0.95)),
                     "shuffled_top1_mean": float(null1.mean()),
                     "p_top5": real["p_top5"], "p_top1": real["p_top1"]})
        if (v, t) == primary_pairs[0]:
            top = np.argsort(-real["scores"], axis=1, kind="stable")[:, :3]
            for row, item in enumerate(test):
                examples.append({"item": int(item), "caption": stims.texts[item],
                                 "rank": int(real["ranks"][row]),
                                 **{f"retrieved_{r + 1}": stims.texts[test[top[row, r]]]
                                    for r in range(3)}})
    return pd.DataFrame(rows), pd.DataFrame(examples)


def _competence(config, text) -> pd.DataFrame:
    """Bits per byte of every causal LM on one held-out text (KJV validation chapters)."""
    causal = [e for e in text if e["name"] in CAUSAL or e["kind"] == "inhouse"]
    if not causal or not config["bpb_bytes"]:
        return pd.DataFrame(columns=["text", "kind", "bpb", "params", "val_ppl", "unigram_ppl",
                                     "ppl_gate"])
    from .. import data

    held_out = "\n".join(data.corpus("kjv").split("validation"))
    held_out = held_out[:config["bpb_bytes"]]
    rows = []
    unigram = unigram_baseline(config["recipe"]) if any(e["kind"] == "inhouse" for e in causal) \
        else float("nan")
    for entry in causal:
        model = _load(entry, config)
        row = {"text": entry["name"], "kind": entry["kind"],
               "bpb": bits_per_byte(model, held_out), "params": model.n_params,
               "val_ppl": float("nan"), "unigram_ppl": float("nan"), "ppl_gate": True}
        if entry["kind"] == "inhouse":  # the capability gate of 01_scale, on its own tokens
            trained = inhouse_model("gpt2", *entry["shape"], 0, config["recipe"])[1]
            val = float(trained.history.dropna(subset=["val_ppl"])["val_ppl"].iloc[-1])
            row.update(val_ppl=val, unigram_ppl=unigram, ppl_gate=bool(val <= PPL_GATE * unigram))
        rows.append(row)
    return pd.DataFrame(rows)


def compute(config: dict) -> tuple[dict[str, pd.DataFrame], dict]:
    seed_everything(config["seed"])
    stims = paired(config)
    vision, text = _model_entries(config)
    feats_v = _features(vision, config, stims)
    feats_t = _features(text, config, stims)
    names = [stimuli.category_name(label) for label in stims.labels]
    name_entries = [e for e in text if e["kind"] in ("pretrained", "static")]
    feats_names = _features(name_entries, config, stims, texts=names)
    tables = _grid_tables(config, stims, feats_v, feats_t, feats_names, vision, text)
    primary_pairs = [(v, t) for v in config["vision"] for t in config["text"]]
    primary_pairs.sort(key=lambda p: p != PRIMARY)  # the declared primary pair first
    big = None
    if any(s is None or s > len(stims) for s in config["sweep"]):
        all_stims = stimuli.paired_stimuli(size=config["size"], n=None, seed=config["seed"])
        v0, t0 = primary_pairs[0]
        big = (all_stims, _features([e for e in vision if e["name"] == v0], config, all_stims),
               _features([e for e in text if e["name"] == t0], config, all_stims))
    tables["sweep"] = _sweep(config, stims, feats_v, feats_t, tables["pairs"], primary_pairs, big)
    tables["topology"], tables["local"] = _topology(config, stims, feats_v, feats_t,
                                                    tables["pairs"])
    tables["contrastive"] = _contrastive(config, stims, feats_v, feats_t)
    tables["functional"], tables["retrieval_examples"] = _functional(
        config, stims, feats_v, feats_t, primary_pairs)
    tables["competence"] = _competence(config, text)
    tables["models"] = pd.DataFrame(
        [{"name": e["name"], "modality": m, "kind": e["kind"],
          "layers": len((feats_v if m == "vision" else feats_t)[e["name"]])}
         for m, entries in (("vision", vision), ("text", text)) for e in entries])
    tables["stimuli"] = pd.DataFrame({"source": [lb.split("/", 1)[0] for lb in stims.labels],
                                      "category": stims.labels})
    return tables, summarise(tables)


# -- summary and verdict ------------------------------------------------------------------------

def summarise(tables: dict[str, pd.DataFrame]) -> dict:
    pairs = tables["pairs"]
    cap = pairs[pairs["text_input"] == "caption"]
    real = cap.query("vision_kind == 'pretrained' and text_kind == 'pretrained'")
    first = real.iloc[0] if len(real) else cap.iloc[0]
    prim = real.query("vision == @PRIMARY[0] and text == @PRIMARY[1]")
    prim = prim.iloc[0] if len(prim) else first
    meta: dict[str, Any] = {
        "n_pairs": int(prim["n"]), "primary_vision": prim["vision"], "primary_text": prim["text"],
        "knn": float(prim["knn"]), "knn_chance": float(prim["chance"]),
        "knn_null_high": float(prim["knn_null_high"]), "knn_p": float(prim["knn_p"]),
        "knn_ratio": float(prim["knn"] / prim["chance"]),
        "cka": float(prim["cka"]), "cka_null_high": float(prim["cka_null_high"]),
        "cka_p": float(prim["cka_p"]),
        "layer_v": int(prim["layer_v"]), "layer_t": int(prim["layer_t"]),
        "n_real_pairs": int(len(real)),
        "real_knn_min": float(real["knn"].min()), "real_knn_max": float(real["knn"].max()),
        "real_p_max": float(real["knn_p"].max()),
        "real_all_significant": bool((real["knn_p"] <= 0.05).all()),
    }
    # Controls, averaged over the released vision x released text pairs.
    within = tables["within_category"].query("text_kind == 'pretrained'").merge(
        real[["vision", "text", "knn", "knn_null_mean"]], on=["vision", "text"])
    share = (within["within_mean"] - within["knn_null_mean"]) / (within["knn"] - within["knn_null_mean"])
    meta["within_share"] = float(share.mean())
    meta["within_share_min"] = float(share.min())
    meta["within_share_max"] = float(share.max())
    meta["within_knn_primary"] = float(within.query("vision == @PRIMARY[0] and text == @PRIMARY[1]")
                                       ["within_mean"].iloc[0]) if len(within.query(
                                           "vision == @PRIMARY[0] and text == @PRIMARY[1]")) \
        else float(within["within_mean"].iloc[0])
    names = pairs.query("text_input == 'category_name' and text_kind == 'pretrained'").merge(
        real[["vision", "text", "knn"]], on=["vision", "text"], suffixes=("_name", ""))
    meta["name_ratio"] = float((names["knn_name"] / names["knn"]).mean())
    meta["name_knn_primary"] = float(names.iloc[0]["knn_name"]) if len(names) else float("nan")
    for kind in ("random", "pixels", "static", "inhouse"):
        v_rows = cap.query("vision_kind == @kind and text_kind == 'pretrained'")
        t_rows = cap.query("text_kind == @kind and vision_kind == 'pretrained'")
        rows = v_rows if len(v_rows) else t_rows
        if kind == "random":
            meta["random_vision_knn"] = float(v_rows["knn"].mean()) if len(v_rows) else float("nan")
            meta["random_text_knn"] = float(t_rows["knn"].mean()) if len(t_rows) else float("nan")
            meta["random_vision_p_max"] = float(v_rows["knn_p"].max()) if len(v_rows) else float("nan")
        else:
            meta[f"{kind}_knn"] = float(rows["knn"].mean()) if len(rows) else float("nan")
            meta[f"{kind}_knn_max"] = float(rows["knn"].max()) if len(rows) else float("nan")
    meta["real_knn_mean"] = float(real["knn"].mean())
    # n sweep (primary pair): mutual k-NN and its ratio to chance at the smallest and all n.
    sweep = tables["sweep"].query("vision == @meta['primary_vision'] and text == @meta['primary_text']")
    by_n = sweep.groupby("n")[["knn", "chance", "cka", "knn_shuffled"]].mean()
    meta["sweep_n_min"], meta["sweep_n_max"] = int(by_n.index.min()), int(by_n.index.max())
    meta["sweep_knn_small"] = float(by_n["knn"].iloc[0])
    meta["sweep_knn_all"] = float(by_n["knn"].iloc[-1])
    meta["sweep_ratio_small"] = float(by_n["knn"].iloc[0] / by_n["chance"].iloc[0])
    meta["sweep_ratio_all"] = float(by_n["knn"].iloc[-1] / by_n["chance"].iloc[-1])
    meta["sweep_cka_small"] = float(by_n["cka"].iloc[0])
    meta["sweep_cka_all"] = float(by_n["cka"].iloc[-1])
    allpairs = tables["sweep"].groupby(["vision", "text", "n"])["knn"].mean().unstack("n")
    meta["sweep_knn_falls_all"] = bool(allpairs.apply(
        lambda r: r.dropna().iloc[-1] < r.dropna().iloc[0], axis=1).all())
    # Topology and local resonance (primary pair).
    topo = tables["topology"].set_index("measure")
    for m in ("rtd", "persistence_distance"):
        meta[f"{m}"] = float(topo.at[m, "value"])
        meta[f"{m}_null_low"] = float(topo.at[m, "null_low"])
        meta[f"{m}_null_mean"] = float(topo.at[m, "null_mean"])
        meta[f"{m}_p"] = float(topo.at[m, "p_value"])
    local = tables["local"]
    lk = local[local["measure"] == "cka_linear_debiased"].sort_values("value")
    meta["local_n_categories"] = int(len(lk))
    meta["local_best"], meta["local_best_value"] = lk["concept"].iloc[-1], float(lk["value"].iloc[-1])
    meta["local_worst"], meta["local_worst_value"] = lk["concept"].iloc[0], float(lk["value"].iloc[0])
    meta["local_significant"] = int((lk["p_value"] <= 0.05).sum())
    # Positive control.
    con = tables["contrastive"]
    for col in ("towers_knn", "inputs_knn", "inputs_grid_knn", "towers_cka", "inputs_cka",
                "towers_top1"):
        m, lo, hi = mean_ci(con[col])
        meta[f"{col}"], meta[f"{col}_low"], meta[f"{col}_high"] = m, lo, hi
    meta["towers_seeds"] = int(len(con))
    meta["towers_n_test"] = int(con["n_test"].iloc[0])
    meta["towers_chance_top1"] = float(con["chance_top1"].iloc[0])
    meta["towers_p_max"] = float(con["towers_p"].max())
    meta["towers_gain"] = float((con["towers_knn"] / con["inputs_grid_knn"]).mean())
    meta["unimodal_share_of_towers"] = float((con["inputs_grid_knn"] / con["towers_knn"]).mean())
    # Functional check (primary pair first).
    fun = tables["functional"]
    f0 = fun.iloc[0]
    meta.update({"func_top5": float(f0["top5"]), "func_top1": float(f0["top1"]),
                 "func_chance_top5": float(f0["chance_top5"]),
                 "func_shuffled_top5": float(f0["shuffled_top5_mean"]),
                 "func_p": float(f0["p_top5"]), "func_n_test": int(f0["n_test"]),
                 "func_median_rank": float(f0["median_rank"]),
                 "func_pairs_significant": int((fun["p_top5"] <= 0.05).sum()),
                 "func_pairs": int(len(fun)),
                 "func_best_top5": float(fun["top5"].max()),
                 "func_best_pair": f"{fun.loc[fun['top5'].idxmax(), 'vision']} → "
                                   f"{fun.loc[fun['top5'].idxmax(), 'text']}"})
    # Competence: bits per byte (lower = better) vs alignment, per vision model.
    comp = tables["competence"]
    ladder = comp[comp["kind"] == "inhouse"] if "kind" in comp else comp.iloc[:0]
    meta["ladder_n"] = int(len(ladder))
    meta["ladder_gate_passed"] = int(ladder["ppl_gate"].astype(bool).sum()) if len(ladder) else 0
    meta["ppl_gate"] = PPL_GATE
    if len(ladder):
        lk = cap[cap["text"].isin(ladder["text"]) & (cap["vision_kind"] == "pretrained")]
        meta["ladder_knn_min"], meta["ladder_knn_max"] = float(lk["knn"].min()), float(lk["knn"].max())
        meta["ladder_share"] = float(lk["knn"].mean() / meta["real_knn_mean"])
        meta["ladder_failed"] = [t for t, ok in zip(ladder["text"], ladder["ppl_gate"]) if not ok]
        meta["ladder_ppl_ratio_max"] = float((ladder["val_ppl"] / ladder["unigram_ppl"]).max())
    if "ppl_gate" in comp:  # models that fail the capability gate take no part in the comparison
        comp = comp[comp["ppl_gate"].astype(bool)]
    meta["n_lms"] = int(len(comp))
    if len(comp):
        align = cap[cap["text"].isin(comp["text"]) & (cap["vision_kind"] == "pretrained")] \
            .groupby("text")["knn"].mean()
        joined = comp.set_index("text").join(align.rename("knn"))
        best = joined["bpb"].idxmin()
        meta.update(lm_best=best, lm_best_bpb=float(joined.at[best, "bpb"]),
                    lm_best_knn=float(joined.at[best, "knn"]),
                    lm_best_aligns_most=bool(joined["knn"].idxmax() == best),
                    lm_bpb_range=f"{joined['bpb'].min():.2f}–{joined['bpb'].max():.2f}")
    if len(comp) >= 3:
        rho, lo, hi = spearman_ci(-joined["bpb"], joined["knn"])
        meta.update(competence_rho=rho, competence_rho_low=lo, competence_rho_high=hi)
    else:
        meta.update(competence_rho=float("nan"), competence_rho_low=float("nan"),
                    competence_rho_high=float("nan"))
    # Vision ordering: does alignment rise Lite0 -> Lite1 -> Lite2 for each released text model?
    vis = real[real["vision"].isin(IMAGENET_TOP1)]
    if vis["vision"].nunique() >= 3:
        rhos = [float(_stats.spearmanr([IMAGENET_TOP1[v] for v in g["vision"]], g["knn"]).statistic)
                for _, g in vis.groupby("text")]
        meta["vision_order_rho_mean"] = float(np.mean(rhos))
        meta["vision_order_increasing"] = int(sum(r == 1.0 for r in rhos))
        meta["vision_order_n"] = len(rhos)
    else:
        meta.update(vision_order_rho_mean=float("nan"), vision_order_increasing=0,
                    vision_order_n=0)
    meta["headline"] = (
        f"{meta['primary_vision']} ↔ {meta['primary_text']} on {meta['n_pairs']} image–caption "
        f"pairs: mutual 10-NN {meta['knn']:.3f} ({meta['knn_ratio']:.0f}× chance, p = "
        f"{meta['knn_p']:.2f}); {meta['within_share']:.0%} of it survives shuffling within "
        f"category; contrastive towers {meta['towers_knn']:.2f} vs unimodal "
        f"{meta['inputs_grid_knn']:.2f} on held-out pairs")
    return meta


def verdict(meta: dict) -> str:
    """How much cross-modal resonance survives each control, in words and numbers."""
    lines = []
    sig = "all" if meta["real_all_significant"] else "not all"
    lines.append(
        f"PRH protocol, {meta['primary_vision']} ↔ {meta['primary_text']} ({meta['n_pairs']} "
        f"pairs): mutual 10-NN {meta['knn']:.3f}, {meta['knn_ratio']:.1f}× chance "
        f"({meta['knn_chance']:.4f}); 95% of shuffled-pair grid maxima ≤ "
        f"{meta['knn_null_high']:.3f} (p = {meta['knn_p']:.3f}). Debiased CKA at that layer pair "
        f"{meta['cka']:.3f} (shuffled ≤ {meta['cka_null_high']:.3f}). Across the "
        f"{meta['n_real_pairs']} released vision × text pairs mutual 10-NN ranges "
        f"{meta['real_knn_min']:.3f}–{meta['real_knn_max']:.3f}, {sig} above their null "
        f"(largest p = {meta['real_p_max']:.3f}).")
    lines.append(
        f"Shuffling captions within category keeps {meta['within_share']:.0%} of the above-null "
        f"alignment on average (range {meta['within_share_min']:.0%}–{meta['within_share_max']:.0%}"
        f"): that part is category-level, not item-level. Replacing every caption by its "
        f"category name reaches {meta['name_ratio']:.0%} of the caption alignment.")
    share = {k: None if meta[k] is None else meta[k] / meta["real_knn_mean"] for k in ("random_vision_knn", "random_text_knn",
                                                           "pixels_knn", "static_knn")}
    lines.append(
        f"Baselines (share of the trained pairs' mean {meta['real_knn_mean']:.3f} that each keeps): "
        f"a random-init {meta['primary_vision']} {fmt(meta['random_vision_knn'], '.3f')} "
        f"({fmt(share['random_vision_knn'], '.0%')}), a random-init text twin "
        f"{fmt(meta['random_text_knn'], '.3f')} ({fmt(share['random_text_knn'], '.0%')}), raw "
        f"pixels {fmt(meta['pixels_knn'], '.3f')} ({fmt(share['pixels_knn'], '.0%')}), static "
        f"word embeddings (wordllama) {fmt(meta['static_knn'], '.3f')} "
        f"({fmt(share['static_knn'], '.0%')}).")
    if meta.get("ladder_n"):
        lines.append(
            f"In-house GPT-2 ladder (KJV only, {meta['ladder_n']} rungs, "
            f"{meta['ladder_gate_passed']} of them past the gate val perplexity ≤ "
            f"{meta['ppl_gate']} × unigram): mutual 10-NN {meta['ladder_knn_min']:.3f}–"
            f"{meta['ladder_knn_max']:.3f} with the vision models, "
            f"{meta['ladder_share']:.0%} of the released text models' mean.")
    direction = "falls" if meta["sweep_knn_all"] < meta["sweep_knn_small"] else "rises"
    lines.append(
        f"n-sweep ({meta['primary_vision']} ↔ {meta['primary_text']}): mutual 10-NN {direction} from {meta['sweep_knn_small']:.3f} at n = "
        f"{meta['sweep_n_min']} to {meta['sweep_knn_all']:.3f} at n = {meta['sweep_n_max']} "
        f"(ratio to chance {meta['sweep_ratio_small']:.1f}× → {meta['sweep_ratio_all']:.1f}×); "
        f"debiased CKA {meta['sweep_cka_small']:.3f} → {meta['sweep_cka_all']:.3f}.")
    lines.append(
        f"Topology: RTD {meta['rtd']:.2f} vs shuffled {meta['rtd_null_mean']:.2f} (p = "
        f"{meta['rtd_p']:.2f}); H1 diagram distance {meta['persistence_distance']:.2f} vs "
        f"Gaussian clouds {meta['persistence_distance_null_mean']:.2f} (p = "
        f"{meta['persistence_distance_p']:.2f}). Locally (debiased CKA within "
        f"{meta['local_n_categories']} categories) {meta['local_significant']} are above their "
        f"null; best {meta['local_best']} {meta['local_best_value']:.2f}, worst "
        f"{meta['local_worst']} {meta['local_worst_value']:.2f}.")
    lines.append(
        f"Positive control: CLIP-style towers trained on half the pairs reach mutual 10-NN "
        f"{meta['towers_knn']:.3f} [{fmt(meta['towers_knn_low'], '.3f')}, "
        f"{fmt(meta['towers_knn_high'], '.3f')}] on the held-out pairs ({meta['towers_seeds']} "
        f"seeds), {meta['towers_gain']:.1f}× the unimodal models' {meta['inputs_grid_knn']:.3f} on "
        f"the same pairs: the separately trained models reach "
        f"{meta['unimodal_share_of_towers']:.0%} of a (weak) multimodal model's resonance.")
    if meta["n_lms"] >= 3:
        lines.append(
            f"Competence: across {meta['n_lms']} causal LMs past their gates, Spearman ρ between competence "
            f"(− bits per byte) and alignment is {meta['competence_rho']:+.2f} "
            f"[{fmt(meta['competence_rho_low'], '+.2f')}, {fmt(meta['competence_rho_high'], '+.2f')}].")
    elif meta["n_lms"]:
        most = "also aligns most" if meta["lm_best_aligns_most"] else "does not align most"
        lines.append(
            f"Competence: only {meta['n_lms']} causal LMs at this profile (bits per byte "
            f"{meta['lm_bpb_range']}), too few for a rank correlation; the more competent, "
            f"{meta['lm_best']} ({meta['lm_best_bpb']:.2f} bits per byte), {most} with the "
            f"vision models (mutual 10-NN {meta['lm_best_knn']:.3f}).")
    else:
        lines.append("Competence: no causal LM at this profile, no correlation.")
    if meta["vision_order_n"]:
        lines.append(
            f"Vision: alignment rises strictly Lite0 → Lite1 → Lite2 (the ImageNet order) for "
            f"{meta['vision_order_increasing']} of {meta['vision_order_n']} text models (mean ρ "
            f"{meta['vision_order_rho_mean']:+.2f}).")
    lines.append(
        f"Function: a linear map fitted on emoji retrieves the Tux Paint caption in the top 5 for "
        f"{meta['func_top5']:.1%} of stamps (chance {meta['func_chance_top5']:.1%}, shuffled maps "
        f"{meta['func_shuffled_top5']:.1%}, p = {meta['func_p']:.2f}); "
        f"{meta['func_pairs_significant']} of {meta['func_pairs']} model pairs beat their "
        f"shuffled maps (best {meta['func_best_pair']}, {meta['func_best_top5']:.1%}).")
    return "\n".join(lines)


__all__ = ["run", "compute", "summarise", "verdict", "paired", "random_twin", "pixel_features",
           "static_features", "bits_per_byte", "SIZES", "NAME", "PRIMARY", "IMAGENET_TOP1"]
