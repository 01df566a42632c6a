"""06_linear_steering: does one linear map connect two models' layers, and carry steering?

Seed 002 claims a linear map ``b ≈ W a`` (fitted on ~5-10k pairs) joins two models' layers,
best between functionally aligned layers, with cosine 0.78-0.94 after mapping, and carries a
teacher's steering vectors to a student with 76-95 % success (an unsourced table). Tested with
ridge maps (:mod:`resonance.linear_maps`, CV-chosen penalty) over layer grids, on word-end
states of held-out KJV sentences paired through the tokenizers' offsets
(:func:`resonance.positions.word_end_pairs`): held-out R², raw and centred cosine, against the
training mean, shuffled-pair maps and random-init twins; each teacher layer's best target vs
the same relative depth and vs the debiased-CKA layer map (:func:`metrics.best_layer_map`);
sentiment steering (:mod:`resonance.steering`: VADER-word contrastive vectors, next-token
preference for a disjoint half of the VADER words on neutral prompts) with native, mapped (raw
norm / rescaled), reversed, shuffled-map and matched-norm random (isotropic, student-covariance)
vectors.

Primary analysis, declared before the others: Gemma-3-270M -> SmolLM2-135M. (1) The best map
of each teacher layer (held-out R², centred cosine) against the shuffled-map and random-init
maps. (2) At the student layer nearest half depth, with the teacher layer whose map into it has
the best R²: mapped (rescaled) effect / native effect, interval over prompts, and the mapped
effect's rank among the matched-norm isotropic random vectors. In-house pairs (GPT-2 -> Llama
trained on the same tokens, one pair per seed) and quality-vs-transfer correlations: secondary.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import activations, linear_maps, metrics, positions, similarity, steering, stimuli, store, zoo
from ..seeding import seed_everything
from ..stats import fmt, percentile_ci, spearman_ci
from ..store import Bundle
from .common import PPL_GATE, RECIPE, RECIPE_GATED, inhouse_model, profile_config, random_init_twin, unigram_baseline

NAME = "06_linear_steering"
VERSION = 2  # 2: first tokens (attention sinks) left out of the pairs
SEED_TABLE = {"cosine": (0.78, 0.94), "success": (0.76, 0.95)}  # seed 002's unsourced table
TEMPLATES = ["It was", "They were", "and he was", "This is"]
_BASE = {"teacher": "gemma3-270m", "student": "smollm2-135m", "layer_step": [3, 5], "max_words": 16,
         "test_fraction": 0.25, "min_valence": 1.5, "words_per_set": 32, "strength": 4.0,
         "steer_depths": [0.33, 0.5], "n_boot": 1000, "cka_rows": 3000}
SIZES = {
    "smoke": {**_BASE, "zoo": False, "inhouse_shape": [32, 2], "inhouse_seeds": [0],
              "recipe": RECIPE["smoke"], "n_sentences": 60, "n_prompts": 12, "n_random": 19,
              "n_cov": 5, "n_boot": 200},
    # ~3k word-end pairs (200 sentences; below the seed's 5-10k for the CPU budget); 02's runs.
    "paper": {**_BASE, "zoo": True, "inhouse_shape": [64, 2], "inhouse_seeds": [0, 1, 2],
              "recipe": RECIPE_GATED["paper"], "n_sentences": 200, "n_prompts": 16,
              "n_random": 99, "n_cov": 10, "steer_depths": [0.5]},
}
SIZES["hub"] = SIZES["paper"]


def run(profile: str = "paper", seed: int = 0, force: bool = False, **overrides: Any) -> Bundle:
    config = profile_config(SIZES, profile, seed, overrides, VERSION)
    if config["n_random"] < 19 or config["n_sentences"] < 20:
        raise ValueError("need n_random >= 19 (99 for a shown p-value) and n_sentences >= 20")
    return store.cached(NAME, profile, config, compute, force=force)


# -- models ---------------------------------------------------------------------------------

def _model_pairs(config):
    """Yield (pair name, teacher, student, teacher twin, student twin, gate rows)."""
    for s in config["inhouse_seeds"]:
        gates, zms, uni = [], [], unigram_baseline(config["recipe"])
        for fam in ("gpt2", "llama"):
            zm, trained = inhouse_model(fam, *config["inhouse_shape"], s, config["recipe"])
            ppl = float(trained.history["val_ppl"].dropna().iloc[-1])
            gates.append({"pair": f"inhouse-s{s}", "model": zm.name, "val_ppl": ppl,
                          "unigram_ppl": uni, "passes": ppl <= PPL_GATE * uni})
            zms += [zm, random_init_twin(zm, trained)]
        yield f"inhouse-s{s}", zms[0], zms[2], zms[1], zms[3], gates
    if config["zoo"]:
        from ..baselines import random_twin
        t, st = zoo.load(config["teacher"]), zoo.load(config["student"])
        yield "zoo", t, st, random_twin(t, config["seed"]), random_twin(st, config["seed"]), []


def _ids(model, step: int) -> list[int]:
    """Every ``step``-th hidden state and the last (every one for shallow models)."""
    step = 1 if model.n_layers <= 6 else step
    return sorted(set(range(0, model.n_layers + 1, step)) | {model.n_layers})


# -- maps -----------------------------------------------------------------------------------

def _maps(pair, X, Y, ids_t, ids_s, train, test, items, seed, kind="trained", only=None,
          shuffle=()):
    """Maps for every layer pair (or those in ``only``); shuffled-pair maps for ``shuffle``."""
    rows, errs, fitted = [], [], {}
    for a, i in enumerate(ids_t):
        for b, j in enumerate(ids_s):
            if only is not None and (i, j) not in only:
                continue
            m = linear_maps.fit(X[a][train], Y[b][train])
            shuf = linear_maps.fit_shuffled(X[a][train], Y[b][train], seed) \
                if (i, j) in shuffle else None
            base = linear_maps.baselines(X[a][train], Y[b][train], X[a][test], Y[b][test], seed,
                                         shuffled=shuf) if shuf else \
                {"mean": linear_maps.mean_baseline(Y[b][train], Y[b][test])}
            q = linear_maps.quality(m, X[a][test], Y[b][test])
            fitted[(i, j)] = (m, shuf)
            rows.append({"pair": pair, "kind": kind, "layer_t": i, "layer_s": j,
                         "depth_t": i / ids_t[-1], "depth_s": j / ids_s[-1], **q,
                         **{f"{k}_{n}": v for n, d in base.items() for k, v in d.items()}})
            sse, sst = linear_maps.row_errors(m.predict(X[a][test]), Y[b][test], m.y_mean)
            g = pd.DataFrame({"sentence": items[test], "sse": sse, "sst": sst})
            errs.append(g.groupby("sentence", as_index=False).sum().assign(
                pair=pair, kind=kind, layer_t=i, layer_s=j))
    return rows, errs, fitted


def _same_depth(i: int, ids_t: list[int], ids_s: list[int]) -> int:
    target = i / ids_t[-1] * ids_s[-1]
    return min(ids_s, key=lambda j: (abs(j - target), j))


def _one_pair(config, pair, t, st, tt, ts, texts, tables):
    stims = stimuli.Stimuli(f"kjv-sentences-{len(texts)}x{config['max_words']}w-s{config['seed']}",
                            texts, None, [""] * len(texts))
    ids_t, ids_s = _ids(t, config["layer_step"][0]), _ids(st, config["layer_step"][1])
    acts = {k: activations.extract(m, stims, layers=ids, pool="tokens") for k, m, ids in
            (("t", t, ids_t), ("s", st, ids_s), ("tt", tt, ids_t), ("ts", ts, ids_s))}
    ra, rb, items = positions.word_end_pairs(acts["t"], acts["s"], t.tokenizer, st.tokenizer, texts)
    keep = (acts["t"].positions[ra] > 0) & (acts["s"].positions[rb] > 0)  # no first token: an
    ra, rb, items = ra[keep], rb[keep], items[keep]  # attention sink of ~100x the norm (SmolLM2)
    X, Y = [a[ra] for a in acts["t"].layers], [a[rb] for a in acts["s"].layers]
    rng = np.random.default_rng([config["seed"], 0x7E])
    test = np.isin(items, rng.choice(len(texts), int(config["test_fraction"] * len(texts)), False))
    train = ~test
    tables["pairs"].append({"pair": pair, "teacher": t.name, "student": st.name,
                            "n_pairs": int(len(ra)), "n_train": int(train.sum()),
                            "n_test": int(test.sum()), "n_sentences": len(texts)})
    steer = {(i, j) for i in ids_t[1:] for j in _steer_layers(config, ids_s)}
    rows, errs, fitted = _maps(pair, X, Y, ids_t, ids_s, train, test, items, config["seed"],
                               shuffle=steer)
    same = {(i, _same_depth(i, ids_t, ids_s)) for i in ids_t}
    Xr, Yr = [a[ra] for a in acts["tt"].layers], [a[rb] for a in acts["ts"].layers]
    r_rows, r_errs, _ = _maps(pair, Xr, Yr, ids_t, ids_s, train, test, items, config["seed"],
                              "random_init", same)
    tables["maps"] += rows + r_rows
    tables["errors"] += errs + r_errs
    sub = rng.choice(len(ra), min(len(ra), config["cka_rows"]), replace=False)
    cka = similarity.similarity_matrix([x[sub] for x in X], [y[sub] for y in Y])
    tables["cka"] += cka.assign(pair=pair, layer_t=[ids_t[i] for i in cka["layer_a"]],
                                layer_s=[ids_s[j] for j in cka["layer_b"]]).to_dict("records")
    del acts, Xr, Yr
    _steer(config, pair, t, st, X, Y, ids_t, ids_s, train, fitted, tables, set(texts))


# -- steering -------------------------------------------------------------------------------

def _steer_layers(config, ids_s) -> list[int]:
    return sorted({min(ids_s[1:], key=lambda j: abs(j / ids_s[-1] - d))
                   for d in config["steer_depths"]})


def _steer(config, pair, t, st, X, Y, ids_t, ids_s, train, fitted, tables, exclude):
    (vp, ip), (vn, ineg) = steering.word_sets(st.tokenizer, t.tokenizer, config["min_valence"],
                                              config["words_per_set"], config["seed"])
    pos, neg = ([f"{tpl} {w}" for tpl in TEMPLATES for w in ws] for ws in (vp, vn))
    pool = stimuli.corpus_stimuli("kjv", n=20 * config["n_prompts"], max_words=8, min_words=6,
                                  seed=config["seed"] + 1).texts
    prompts = steering.neutral_prompts([p for p in pool if p not in exclude], config["n_prompts"])
    tables["words"].append({"pair": pair, "vector_pos": " ".join(vp), "vector_neg": " ".join(vn),
                            "n_metric_pos": len(ip), "n_metric_neg": len(ineg),
                            "n_prompts": len(prompts), "prompts": " | ".join(prompts)})
    base = steering.preference(st, prompts, ip, ineg)
    rng = np.random.default_rng([config["seed"], 0x5E])
    c = config["strength"]
    vt = dict(zip(ids_t[1:], steering.contrastive_vector(t, pos, neg, ids_t[1:])))
    for j in _steer_layers(config, ids_s):
        native = c * steering.contrastive_vector(st, pos, neg, j)
        norm = float(np.linalg.norm(native))
        cloud = Y[ids_s.index(j)][train] - Y[ids_s.index(j)][train].astype(np.float64).mean(0)
        vecs = {("native", -1, 0): native, ("native_reversed", -1, 0): -native}
        iso = steering.matched_norm(rng.normal(size=(config["n_random"], len(native))), norm)
        cov = steering.matched_norm(rng.normal(size=(config["n_cov"], len(cloud))) @ cloud, norm)
        vecs.update({("random", -1, k): v for k, v in enumerate(iso)})
        vecs.update({("random_cov", -1, k): v for k, v in enumerate(cov)})
        for i, v in vt.items():
            m, shuf = fitted[(i, j)]
            mapped = c * m.direction(v)
            vecs[("mapped_raw", i, 0)] = mapped
            vecs[("mapped", i, 0)] = steering.matched_norm(mapped, norm)[0]
            vecs[("mapped_reversed", i, 0)] = -vecs[("mapped", i, 0)]
            vecs[("shuffled_map", i, 0)] = steering.matched_norm(c * shuf.direction(v), norm)[0]
        for (cond, i, k), v in vecs.items():
            eff = steering.preference(st, prompts, ip, ineg, j, v) - base
            tables["effects"] += [{"pair": pair, "layer_s": j, "layer_t": i, "condition": cond,
                                   "draw": k, "prompt": p, "effect": float(e),
                                   "norm": float(np.linalg.norm(v))} for p, e in enumerate(eff)]


def compute(config: dict) -> tuple[dict[str, pd.DataFrame], dict]:
    seed_everything(config["seed"])
    texts = stimuli.corpus_stimuli("kjv", n=config["n_sentences"], max_words=config["max_words"],
                                   seed=config["seed"]).texts
    tables: dict[str, list] = {k: [] for k in ("maps", "errors", "cka", "effects", "pairs", "words", "gates")}
    for pair, t, st, tt, ts, gates in _model_pairs(config):
        tables["gates"] += gates
        _one_pair(config, pair, t, st, tt, ts, texts, tables)
    out = {k: pd.concat(v, ignore_index=True) if k == "errors" else pd.DataFrame(v)
           for k, v in tables.items()}
    return out, summarise(out, config)


# -- summary --------------------------------------------------------------------------------

def _best_maps(maps: pd.DataFrame, pair: str) -> pd.DataFrame:
    m = maps[(maps.pair == pair) & (maps.kind == "trained") & (maps.layer_t > 0)]
    return m.loc[m.groupby("layer_t")["r2"].idxmax()].reset_index(drop=True)


def _alignment(tables, pair, n_boot, seed) -> dict:
    """Best target vs same relative depth (R² gain, depth offset; intervals resample test
    sentences) and agreement of the best targets with the monotone CKA layer map."""
    e = tables["errors"].query("pair == @pair and kind == 'trained'")
    sse, sst = (e.pivot_table(index="sentence", columns=["layer_t", "layer_s"], values=v)
                for v in ("sse", "sst"))
    ids_t, ids_s = sorted(e.layer_t.unique()), sorted(e.layer_s.unique())
    same = [(i, _same_depth(i, ids_t, ids_s)) for i in ids_t if i > 0]

    def stats(pick):
        grid = (1 - sse.iloc[pick].sum() / sst.iloc[pick].sum()).unstack()
        return (np.mean([grid.loc[i].max() - grid.loc[i, j] for i, j in same]),
                np.mean([grid.loc[i].idxmax() / ids_s[-1] - i / ids_t[-1] for i, _ in same]),
                np.mean([grid.loc[i].idxmax() == j for i, j in same]), grid)

    rng = np.random.default_rng([seed, 0xA1])
    boots = np.array([stats(rng.integers(0, len(sse), len(sse)))[:2] for _ in range(n_boot)])
    gain, offset, share, grid = stats(np.arange(len(sse)))
    cka = tables["cka"][tables["cka"].pair == pair]
    lm = metrics.best_layer_map(cka[["layer_a", "layer_b", "value"]])
    cka_target = {ids_t[a]: ids_s[b] for a, b in zip(lm.layer_a, lm.layer_b)}
    return {"r2_gain_vs_same_depth": float(gain), "r2_gain_ci": list(percentile_ci(boots[:, 0])),
            "depth_offset": float(offset), "depth_offset_ci": list(percentile_ci(boots[:, 1])),
            "share_best_is_same_depth": float(share),
            "share_best_is_cka_map": float(np.mean([cka_target[i] == grid.loc[i].idxmax()
                                                    for i, _ in same]))}


def _transfer(eff: pd.DataFrame, j: int, i: int, cond: str, n_boot: int, seed: int) -> dict:
    e = eff[eff.layer_s == j].sort_values("prompt")
    return steering.transfer_stats(
        e[e.condition == "native"].effect.to_numpy(), e[(e.condition == cond) & (e.layer_t == i)]
        .effect.to_numpy(), e[e.condition == "random"].groupby("draw").effect.mean(), n_boot, seed)


def summarise(tables: dict[str, pd.DataFrame], config: dict | None = None) -> dict:
    maps, eff = tables["maps"], tables["effects"]
    n_boot, seed = (config or {}).get("n_boot", 1000), (config or {}).get("seed", 0)
    meta: dict[str, Any] = {"seed_table": SEED_TABLE, "pairs": {}}
    for pair in tables["pairs"].pair:
        best = _best_maps(maps, pair)
        rnd = maps[(maps.pair == pair) & (maps.kind == "random_init") & (maps.layer_t > 0)]
        e = eff[eff.pair == pair]
        rows = []
        for (j, i), _g in e[e.condition == "mapped"].groupby(["layer_s", "layer_t"]):
            q = maps[(maps.pair == pair) & (maps.kind == "trained") & (maps.layer_t == i) &
                     (maps.layer_s == j)].iloc[0]
            rows.append({"layer_s": j, "layer_t": i, "r2": q.r2, "cos_centred": q.cos_centred,
                         **{k: v for k, v in _transfer(e, j, i, "mapped", 1, seed).items()
                            if k in ("ratio", "p_vs_random")}})
        per = pd.DataFrame(rows)
        j0 = min(per.layer_s, key=lambda j: abs(j / maps[maps.pair == pair].layer_s.max() - 0.5))
        i0 = int(per[per.layer_s == j0].sort_values("r2").layer_t.iloc[-1])
        rho, *rho_ci = (spearman_ci(per.r2, per.ratio, n_boot, seed=[seed, 0xC0])
                        if len(per) > 2 else (None, None, None))
        meta["pairs"][pair] = {
            "n_pairs": int(tables["pairs"].set_index("pair").n_pairs[pair]),
            "best_r2": [float(best.r2.min()), float(best.r2.median()), float(best.r2.max())],
            "best_cos_raw": [float(best.cos_raw.min()), float(best.cos_raw.max())],
            "best_cos_centred": [float(best.cos_centred.min()), float(best.cos_centred.max())],
            "mean_cos_raw": float(best.cos_raw_mean.median()),  # same target layers
            "shuffled_r2_max": float(maps[maps.pair == pair].r2_shuffled.max()),
            "shuffled_cos_centred_max": float(maps[maps.pair == pair].cos_centred_shuffled.max()),
            "random_init_r2_median": float(rnd.r2.median()),
            "random_init_cos_centred_median": float(rnd.cos_centred.median()),
            "alignment": _alignment(tables, pair, n_boot, seed),
            "primary_layers": [i0, int(j0)],
            "transfer": _transfer(e, j0, i0, "mapped", n_boot, seed),
            "transfer_raw": _transfer(e, j0, i0, "mapped_raw", n_boot, seed),
            "reversed": _transfer(e, j0, i0, "mapped_reversed", n_boot, seed),
            "shuffled_map": _transfer(e, j0, i0, "shuffled_map", n_boot, seed),
            "cov_random_mean": float(e[(e.layer_s == j0) & (e.condition == "random_cov")].effect.mean()),
            "quality_transfer_rho": rho, "rho_ci": rho_ci,
            "n_layer_pairs": int(len(per))}
    primary = "zoo" if "zoo" in meta["pairs"] else sorted(meta["pairs"])[0]
    p, tr = meta["pairs"][primary], meta["pairs"][primary]["transfer"]
    meta.update(primary=primary, gates_pass=bool(tables["gates"].passes.all()) if len(tables["gates"]) else True,
                maps_beat_nulls=p["best_r2"][0] > max(p["shuffled_r2_max"], p["random_init_r2_median"]),
                raw_cosine_uninformative=p["mean_cos_raw"] >= SEED_TABLE["cosine"][0],
                centred_in_seed_range=p["best_cos_centred"][1] >= SEED_TABLE["cosine"][0],
                native_steers=tr["native_p_vs_random"] <= 0.05 and tr["native"] > 0,
                transfer_beats_random=tr["p_vs_random"] <= 0.05,
                success_in_seed_range=tr["ratio_ci"][1] >= SEED_TABLE["success"][0],
                aligned_not_same_depth=p["alignment"]["r2_gain_ci"][0] > 0)
    a, raw = p["alignment"], p["transfer_raw"]
    meta.update(  # flat keys for the paper's cite()
        n_pairs=p["n_pairs"], best_r2_min=p["best_r2"][0], best_r2_max=p["best_r2"][2],
        cos_centred_min=p["best_cos_centred"][0], cos_centred_max=p["best_cos_centred"][1],
        cos_raw_min=p["best_cos_raw"][0], cos_raw_max=p["best_cos_raw"][1],
        mean_cos_raw=p["mean_cos_raw"], shuffled_r2_max=p["shuffled_r2_max"],
        random_init_r2=p["random_init_r2_median"], ratio=tr["ratio"], ratio_low=tr["ratio_ci"][0],
        ratio_high=tr["ratio_ci"][1], ratio_raw=raw["ratio"], p_vs_random=tr["p_vs_random"],
        native_p=tr["native_p_vs_random"], n_random=tr["n_random"],
        reversed_ratio=p["reversed"]["ratio"], shuffled_map_ratio=p["shuffled_map"]["ratio"],
        rho=p["quality_transfer_rho"], rho_low=p["rho_ci"][0], rho_high=p["rho_ci"][1],
        n_layer_pairs=p["n_layer_pairs"], r2_gain=a["r2_gain_vs_same_depth"],
        r2_gain_low=a["r2_gain_ci"][0], r2_gain_high=a["r2_gain_ci"][1],
        share_cka=a["share_best_is_cka_map"], share_same_depth=a["share_best_is_same_depth"],
        inhouse_ratios=[meta["pairs"][k]["transfer"]["ratio"] for k in sorted(meta["pairs"])
                        if k.startswith("inhouse")],
        headline=(f"{primary} maps: held-out R² {fmt(p['best_r2'][0])}–{fmt(p['best_r2'][2])}, "
                  f"centred cosine ≤ {fmt(p['best_cos_centred'][1])} (raw {fmt(p['best_cos_raw'][1])}"
                  f" = training mean's {fmt(p['mean_cos_raw'])}); mapped steering {tr['ratio']:.0%}"
                  f" of native, p = {fmt(tr['p_vs_random'], '.2f')} vs matched-norm random"))
    return meta


def verdict(meta: dict) -> str:
    m, f = meta, (lambda k, spec=".2f": fmt(meta[k], spec))
    out = [f"{m['primary']}: best maps reach held-out R² {f('best_r2_min')}–{f('best_r2_max')} "
           f"({'above' if m['maps_beat_nulls'] else 'NOT above'} shuffled pairs ≤ "
           f"{f('shuffled_r2_max')} and random-init twins {f('random_init_r2')}); cosine after "
           f"mapping {f('cos_raw_min')}–{f('cos_raw_max')} raw ({'no more than' if m['raw_cosine_uninformative'] else 'above'} "
           f"the training mean's {f('mean_cos_raw')}), centred {f('cos_centred_min')}–"
           f"{f('cos_centred_max')}: {'only the best layer reaches' if m['centred_in_seed_range'] else 'below'} the seed's 0.78–0.94."]
    if not m["native_steers"]:
        out.append(f"The student's own vector does not beat matched-norm random vectors "
                   f"(p = {f('native_p')}): steering transfer is untestable here.")
    else:
        out.append(f"Mapped steering: {m['ratio']:.0%} of the native effect [{m['ratio_low']:.0%}, "
                   f"{m['ratio_high']:.0%}], {'above' if m['transfer_beats_random'] else 'not above'} "
                   f"{m['n_random']} matched-norm random vectors (p = {f('p_vs_random')}); the "
                   f"seed's 76–95 % {'is compatible' if m['success_in_seed_range'] else 'does not survive'}.")
    out.append(f"Best target vs same relative depth: R² gain {f('r2_gain', '.3f')} "
               f"[{f('r2_gain_low', '.3f')}, {f('r2_gain_high', '.3f')}]; the CKA layer map picks "
               f"the best target for {m['share_cka']:.0%} of teacher layers. Map quality vs transfer "
               f"over {m['n_layer_pairs']} layer pairs: Spearman {f('rho')} [{f('rho_low')}, {f('rho_high')}].")
    return " ".join(out)
