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

from .. import metrics, prh, stimuli, store, zoo
from ..baselines import bits_per_byte, competence_summary, model_features, random_twin
from ..contrastive import control_summary as contrastive_summary
from ..contrastive import positive_control, transfer_retrieval, transfer_summary
from ..seeding import seed_everything
from ..stats import fmt
from ..store import Bundle
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
# hub (a GPU, the hub): every pair of the corpus, a larger hub text encoder beside the packaged
# models (the hub holds no EfficientNet-Lite; hub models load as text models), more draws.
SIZES["hub"] = {**SIZES["paper"], "n_pairs": None,
                "text": [*SIZES["paper"]["text"], "BAAI/bge-large-en-v1.5"],
                "n_null": 999, "sweep": [64, 128, 256, 512, 1024, None], "sweep_draws": 10,
                "topo": {"n_null": 999, "n_boot": 50, "subsample": 200, "n_subsamples": 4},
                "local_min_items": 20,
                "contrastive": {**SIZES["paper"]["contrastive"], "seeds": list(range(10)),
                                "steps": 1000},
                "functional_draws": 999, "bpb_bytes": 50_000}
CAUSAL = ("smollm2-135m", "gemma3-270m")


def run(profile: str = "paper", seed: int = 0, force: bool = False, **overrides: Any) -> Bundle:
    config = profile_config(SIZES, profile, seed, overrides, version=VERSION)
    validate_config(config)
    if config["ladder"] == "scale":
        from .scale import SIZES as SCALE_SIZES
        config["ladder"] = [list(r) for r in SCALE_SIZES["paper"]["ladder"]]
    config["recipe"] = RECIPE_GATED["smoke" if profile == "smoke" else "paper"]
    return store.cached(NAME, profile, config, compute, force=force)


def validate_config(config: dict) -> None:
    """Known vision models, text models from the zoo or the hub, >= 99 draws for every shown
    p-value, and sound sweep, ladder and split settings."""
    vision = {n for n in zoo.NAMES if n.startswith("efficientnet-")}
    if not config["vision"] or set(config["vision"]) - vision:
        raise ValueError(f"vision must be a non-empty list of {sorted(vision)}, got {config['vision']}")
    bad = [t for t in config["text"] if t not in zoo.NAMES and "/" not in t]
    if not config["text"] or bad:
        raise ValueError(f"text models must be zoo names or hub ids (owner/name), got {bad or '[]'}")
    draws = {"n_null": config["n_null"], "topo.n_null": config["topo"]["n_null"],
             "functional_draws": config["functional_draws"]}
    if min(draws.values()) < 99:
        raise ValueError(f"every p-value shown needs >= 99 null draws, got {draws}")
    if any(s is not None and (not isinstance(s, int) or s <= prh.K + 1) for s in config["sweep"]):
        raise ValueError(f"sweep sizes must be integers > {prh.K + 1} or None, got {config['sweep']}")
    if config["ladder"] != "scale" and any(len(r) != 2 for r in config["ladder"]):
        raise ValueError(f"ladder must be 'scale' or [[d_model, n_layers], ...], got {config['ladder']}")
    c = config["contrastive"]
    if not 0 < c["train_fraction"] < 1 or not c["seeds"]:
        raise ValueError(f"contrastive needs 0 < train_fraction < 1 and seeds, got {c}")


def paired(config: dict) -> stimuli.Stimuli:
    """The stimuli of a config (also what the notebook shows as retrieval examples)."""
    return stimuli.paired_stimuli(size=config["size"], n=config["n_pairs"], seed=config["seed"])


def _model_entries(config: dict) -> tuple[list[dict], list[dict]]:
    """(vision entries, text entries): name, kind, loader; loaded lazily by :func:`_load`."""
    def pretrained(names: list[str]) -> list[dict]:
        entries = [{"name": m, "kind": "pretrained"} for m in names]
        if config["random_init"]:  # a random-init twin of the first model
            entries.append({"name": f"{names[0]}-random", "kind": "random", "base": names[0]})
        return entries

    vision = pretrained(config["vision"]) + ([{"name": "pixels", "kind": "pixels"}]
                                             if config["pixels"] else [])
    text = pretrained(config["text"]) + ([{"name": "wordllama", "kind": "static"}]
                                         if config["static"] else [])
    text += [{"name": f"gpt2-d{d}-l{n}-s0", "kind": "inhouse", "shape": (d, n)}
             for d, n in config["ladder"]]
    return vision, text


def _load(entry: dict, config: dict):
    if entry["kind"] == "pretrained":
        return zoo.load(entry["name"])
    if entry["kind"] == "random":
        return random_twin(zoo.load(entry["base"]), config["seed"])
    if entry["kind"] == "inhouse":
        return inhouse_model("gpt2", *entry["shape"], 0, config["recipe"])[0]
    raise ValueError(f"{entry['name']} is not a network")


def _features(entries, config, stims, texts=None) -> dict[str, list[np.ndarray]]:
    return model_features(entries, stims, lambda e: _load(e, config), config["pixels"], texts)


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
    feats_v, feats_t = _features(vision, config, stims), _features(text, config, stims)
    names = [stimuli.category_name(label) for label in stims.labels]
    feats_names = _features([e for e in text if e["kind"] in ("pretrained", "static")], config,
                            stims, texts=names)
    kinds = {e["name"]: e["kind"] for e in vision + text}
    tables = prh.alignment_tables(feats_v, feats_t, feats_names, kinds, stims.labels,
                                  config["n_null"], config["seed"])
    primary_pairs = [(v, t) for v in config["vision"] for t in config["text"]]
    primary_pairs.sort(key=lambda p: p != PRIMARY)  # the declared primary pair first
    big = None
    if any(s is None or s > len(stims) for s in config["sweep"]):
        all_stims = stimuli.paired_stimuli(size=config["size"], n=None, seed=config["seed"])
        v0, t0 = primary_pairs[0]
        big = (_features([e for e in vision if e["name"] == v0], config, all_stims),
               _features([e for e in text if e["name"] == t0], config, all_stims))
    tables["sweep"] = prh.size_sweep(feats_v, feats_t, tables["pairs"], primary_pairs,
                                     config["sweep"], config["sweep_draws"], config["seed"], big)
    # Topology, locality and the positive control: the primary pair at its best PRH layers.
    v, t = PRIMARY if PRIMARY[0] in feats_v and PRIMARY[1] in feats_t else \
        (next(iter(feats_v)), next(iter(feats_t)))
    b = tables["pairs"].query("vision == @v and text == @t and text_input == 'caption'").iloc[0]
    topo = config["topo"]
    glob, local = metrics.pair_topology(
        feats_v[v][b.layer_v - 1], feats_t[t][b.layer_t - 1],
        [stimuli.coarse_category(label) for label in stims.labels], n_boot=topo["n_boot"],
        n_null=topo["n_null"], subsample=topo["subsample"], n_subsamples=topo["n_subsamples"],
        min_items=config["local_min_items"], local_null=config["n_null"], seed=config["seed"],
        clamp_quantile=prh.CLAMP_QUANTILE)
    tables["topology"] = glob.assign(vision=v, text=t)
    tables["local"] = local.assign(vision=v, text=t, n_items=local.pop("n_items"))
    c = config["contrastive"]
    tables["contrastive"] = positive_control(feats_v[v], feats_t[t], c, c["seeds"],
                                             config["n_null"], config["seed"]).assign(vision=v, text=t)
    tables["functional"], tables["retrieval_examples"] = transfer_retrieval(
        feats_v, feats_t, [lb.split("/", 1)[0] for lb in stims.labels], stims.texts,
        primary_pairs, config["functional_draws"], config["seed"])
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
    meta = prh.alignment_summary(pairs, tables["within_category"], PRIMARY)
    meta.update(prh.sweep_summary(tables["sweep"], meta["primary_vision"], meta["primary_text"]))
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
    meta.update(contrastive_summary(tables["contrastive"]))
    meta.update(transfer_summary(tables["functional"]))
    meta.update(competence_summary(tables["competence"], cap, meta["real_knn_mean"], PPL_GATE))
    meta.update(prh.order_summary(real, IMAGENET_TOP1))
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


__all__ = ["run", "compute", "summarise", "verdict", "validate_config", "paired", "SIZES", "NAME",
           "PRIMARY", "IMAGENET_TOP1"]
