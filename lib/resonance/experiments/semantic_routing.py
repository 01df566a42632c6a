"""05_semantic_routing (issue 16): does cosine-anchor routing (SRA, seed 003) beat a linear
router and a dense model, and does it leave fewer dead experts?

Every arm is a :mod:`resonance.moe` model of one shape trained by :func:`resonance.train.train`
on the same KJV tokens, steps and data order (the run seed fixes both init and batches, and
seed ``s`` of every arm sees the same batches): ``sra`` (v1: cosine, softmax over the top-k,
balance 0.4 + dispersion 0.6), ``linear`` (the same experts, k, noise and balance loss),
``dense_active`` (FFN width k·h: the active parameters), ``dense_total`` (FFN width N·h: the
total expert parameters), ``sra_no_dispersion``, ``sra_v2`` (learnable temperature, init 10,
softmax over all experts) and ``dense_half`` (dense_active on half the tokens: the seed's
unmatched comparison, its best run had ~2x the steps of its dense baseline).

Gates first (per run): validation perplexity <= ``MAX_UNIGRAM_RATIO`` x a unigram model's of
the same tokens, and a flattened curve (perplexity fell by < ``PLATEAU_TOL`` over the last
``PLATEAU_WINDOW`` of the steps); a failing arm makes the claims untestable for it.
Primary analysis, declared first: paired (by seed) difference in validation perplexity,
SRA − linear, t interval over seeds, with TOST at ±``MARGIN`` (relative). Secondary: SRA −
dense_active, the other arms; dead experts / entropy; specialisation (token classes, token
ids; shuffled-expert null); cross-seed debiased CKA of the routed hidden states.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import lexicon, moe, routing, similarity, stats, store
from .. import train as T
from ..seeding import seed_everything
from ..store import Bundle
from .common import profile_config
from ..runs import plateau_gates, train_many

VERSION = 2
NAME = "05_semantic_routing"
ARMS = {"sra": {"router": "cosine"}, "linear": {"router": "linear"},
        "dense_active": {"router": "dense"}, "dense_total": {"router": "dense", "total": True},
        "sra_no_dispersion": {"router": "cosine", "dispersion_weight": 0.0},
        "sra_v2": {"router": "cosine", "temperature": 10.0},
        "dense_half": {"router": "dense", "half": True}}
HEADLINE = ("sra", "linear", "dense_active")          # n_seeds; the others n_seeds_ablation
COMPARISONS = (("sra", "linear"), ("sra", "dense_active"), ("linear", "dense_active"),
               ("sra", "dense_total"), ("sra", "sra_no_dispersion"), ("sra", "sra_v2"),
               ("sra", "dense_half"))
PRIMARY = ("sra", "linear")
MAX_UNIGRAM_RATIO = 0.5   # "well below unigram"
PLATEAU_TOL, PLATEAU_WINDOW = 0.05, 0.2
MARGIN = 0.02             # TOST margin on the relative perplexity difference
ALPHA = 0.05
LABELS = ("class", "token", "supersense")   # what an expert's tokens are labelled by
_SHAPE = {"corpus": "kjv", "top_k": 2, "lr": 2e-3, "dropout": 0.1, "router_noise": 0.05}
SIZES = {
    "smoke": {**_SHAPE, "d_model": 32, "n_layers": 1, "n_heads": 1, "context": 32,
              "vocab_size": 2048, "batch_size": 8, "tokens": 8 * 32 * 24, "warmup": 3,
              "eval_every": 4, "eval_tokens": 2048, "n_experts": 4, "expert_hidden": 16,
              "n_seeds": 2, "n_seeds_ablation": 2, "n_cka_tokens": 300, "n_null": 19},
    # batch 8 x 128: 390 updates on 400k tokens (at batch 16 the 195 updates left every
    # headline arm still improving by 5-6 % over its last fifth)
    "paper": {**_SHAPE, "d_model": 64, "n_layers": 2, "n_heads": 2, "context": 128,
              "vocab_size": 2048, "batch_size": 8, "tokens": 400_000, "warmup": 15,
              "eval_every": 10, "eval_tokens": 16_384, "n_experts": 16, "expert_hidden": 64,
              "n_seeds": 5, "n_seeds_ablation": 3, "n_cka_tokens": 1500, "n_null": 99},
}
# v1's shape (d 512, 4 x 8 heads, 128 experts x 1024, top-2) on WikiText-103, for a GPU.
SIZES["hub"] = {**SIZES["paper"], "corpus": "wikitext-103", "d_model": 512, "n_layers": 4,
                "n_heads": 8, "context": 256, "vocab_size": 4096, "tokens": 50_000_000, "warmup": 500,
                "eval_every": 500,
                "n_experts": 128, "expert_hidden": 1024, "lr": 3e-4}


def run(profile: str = "paper", seed: int = 0, force: bool = False, **overrides: Any) -> Bundle:
    config = profile_config(SIZES, profile, seed, overrides, version=VERSION)
    if config["n_seeds"] < 2 or config["n_seeds_ablation"] < 2:
        raise ValueError("paired intervals need n_seeds and n_seeds_ablation >= 2")
    return store.cached(NAME, profile, config, compute, force=force)


def train_config(config: dict, arm: str, seed: int) -> T.TrainConfig:
    """The :class:`resonance.train.TrainConfig` of one arm and seed."""
    spec = dict(ARMS[arm])
    total, half = spec.pop("total", False), spec.pop("half", False)
    kw = {"n_experts": config["n_experts"], "expert_hidden": config["expert_hidden"],
          "top_k": config["top_k"], "dropout": config["dropout"],
          "router_noise": config["router_noise"], **spec}
    if total:
        kw["dense_hidden"] = config["n_experts"] * config["expert_hidden"]
    return T.TrainConfig(
        family=moe.FAMILY, d_model=config["d_model"], n_layers=config["n_layers"],
        n_heads=config["n_heads"], context=config["context"], corpus=config["corpus"],
        vocab_size=config["vocab_size"], tokens=config["tokens"] // (2 if half else 1),
        batch_size=config["batch_size"], lr=config["lr"], warmup=config["warmup"],
        eval_every=config["eval_every"], eval_tokens=config["eval_tokens"],
        n_log_checkpoints=4, n_linear_checkpoints=4, seed=seed, build_kwargs=kw)


def seeds_of(config: dict, arm: str) -> list[int]:
    n = config["n_seeds"] if arm in HEADLINE else config["n_seeds_ablation"]
    return [config["seed"] + i for i in range(n)]


# -- computation ---------------------------------------------------------------------------------

@torch.no_grad()
def _routing(model: moe.MoELM, windows: torch.Tensor) -> list[dict[str, np.ndarray]]:
    """Per layer, over the validation windows: top-k experts ``(n, k)`` and router inputs."""
    model.eval()
    parts: list[list[dict]] = []
    for i in range(0, len(windows), 32):
        model(windows[i:i + 32, :-1], record_routing=True)
        parts.append(model.last_routing)
    return [{key: torch.cat([p[layer][key] for p in parts]).flatten(0, 1).numpy()
             for key in ("experts", "inputs")} for layer in range(len(parts[0]))]


def _anchor_rows(trained, arm: str, seed: int) -> list[dict]:
    rows = []
    for step, _ in trained.checkpoints:
        model = trained.load_checkpoint(step)
        for layer, ffn in enumerate(model.moe_layers()):
            a = ffn.anchors.detach()
            centroid = torch.nn.functional.normalize(a, dim=-1).sum(0).norm() / a.size(0)
            rows.append({"arm": arm, "seed": seed, "step": step, "layer": layer,
                         "max_abs_cos": moe.anchor_max_abs_cos(a),
                         "dispersion": float(moe.dispersion_loss(a)),
                         "centroid_formula": float(moe.dispersion_from_centroid(a)),
                         "centroid_norm": float(centroid)})
    return rows


def compute(config: dict) -> tuple[dict[str, pd.DataFrame], dict]:
    seed_everything(config["seed"])
    tc0 = train_config(config, "sra", config["seed"])
    tokenizer, _, val = T._load_data(tc0)
    windows = T._val_windows(val, tc0)
    targets = windows[:, :-1].reshape(-1).numpy()   # the routed tokens
    vocab = np.asarray(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))))
    classes = routing.token_classes(vocab)
    # a word-start token is a whole word unless the token after it continues the word
    senses = lexicon.token_supersenses(vocab[targets],
                                       classes[windows[:, 1:].reshape(-1).numpy()] == "piece")
    labellings = {"class": (classes[targets], slice(None)), "token": (targets, slice(None)),
                  "supersense": (senses, senses != "")}
    rng = np.random.default_rng([config["seed"], 0xC4A])
    cka_rows = np.sort(rng.choice(targets.size, min(config["n_cka_tokens"], targets.size), False))
    runs, curves, util, spec, anchors, hidden = [], [], [], [], [], {}
    train_many([train_config(config, arm, s) for arm in ARMS for s in seeds_of(config, arm)])
    for arm in ARMS:
        for seed in seeds_of(config, arm):
            tc = train_config(config, arm, seed)
            trained = T.train(tc, progress=False, threads=1)
            h = trained.history
            curves.append(h.assign(arm=arm, config=arm, seed=seed))
            runs.append({"arm": arm, "config": arm, "seed": seed, "steps": tc.n_steps,
                         "params": int(trained.info["params"]),
                         "val_loss": float(h.val_loss.iloc[-1]),
                         "val_ppl": float(h.val_ppl.iloc[-1])})
            if ARMS[arm]["router"] == "dense":
                continue
            for layer, r in enumerate(_routing(trained.model, windows)):
                shares = routing.assignment_shares(r["experts"], config["n_experts"])
                util.append({"arm": arm, "seed": seed, "layer": layer,
                             **routing.utilisation(shares), "max_share": float(shares.max())})
                top1 = r["experts"][:, 0]
                for label, (lab, keep) in labellings.items():
                    spec.append({"arm": arm, "seed": seed, "layer": layer, "labels": label,
                                 "n_tokens": int(top1[keep].size),
                                 **routing.specialisation(top1[keep], lab[keep],
                                                          config["n_null"], seed)})
                hidden[arm, seed, layer] = r["inputs"][cka_rows]
            if ARMS[arm]["router"] == "cosine":
                anchors += _anchor_rows(trained, arm, seed)
    runs = pd.DataFrame(runs)
    runs["unigram_ppl"] = T.unigram_perplexity(tc0)
    curves = pd.concat(curves, ignore_index=True)
    gates = plateau_gates(runs, curves, float(runs.unigram_ppl.iloc[0]), MAX_UNIGRAM_RATIO,
                          PLATEAU_TOL, PLATEAU_WINDOW)
    cka = [{"arm": arm, "layer": layer, "seed_a": a, "seed_b": b,
            "cka": similarity.cka(hidden[arm, a, layer], hidden[arm, b, layer], debiased=True)}
           for (arm, a, layer) in hidden for (arm2, b, layer2) in hidden
           if arm2 == arm and layer2 == layer and a < b]
    tables = {"runs": runs, "curves": curves.drop(columns="config"), "gates": gates,
              "utilisation": pd.DataFrame(util), "specialisation": pd.DataFrame(spec),
              "anchors": pd.DataFrame(anchors), "cka": pd.DataFrame(cka)}
    meta = summarise(tables)
    tables["paired"] = pd.DataFrame(meta.pop("paired"))
    meta["verdict"] = verdict(meta)
    return tables, meta


# -- summaries ---------------------------------------------------------------------------------

def _by_seed(excess: pd.Series, arm: str, labels: str) -> pd.Series:
    return excess.xs((arm, labels), level=("arm", "labels"))


def summarise(tables: dict[str, pd.DataFrame]) -> dict:
    """Every number the notebook and paper quote: gates, paired differences, routing, CKA."""
    runs, gates, util = tables["runs"], tables["gates"], tables["utilisation"]
    spec, anchors = tables["specialisation"], tables["anchors"]
    ppl = runs.pivot(index="seed", columns="arm", values="val_ppl")
    per_run = util.groupby(["arm", "seed"])[["dead_frac", "low_frac", "entropy"]].mean()
    excess = spec.groupby(["arm", "seed", "labels"]).nmi_excess.mean()
    meta: dict[str, Any] = {"unigram_ppl": float(runs.unigram_ppl.iloc[0]),
                            "max_unigram_ratio": MAX_UNIGRAM_RATIO, "margin": MARGIN,
                            "plateau_tol_pct": 100 * PLATEAU_TOL,
                            "plateau_window_pct": 100 * PLATEAU_WINDOW,
                            "n_seeds": int(ppl[PRIMARY[0]].notna().sum()),
                            "n_seeds_ablation": int(runs[~runs.arm.isin(HEADLINE)].groupby(
                                "arm").seed.nunique().min()),
                            "n_runs": len(runs), "steps": int(runs.steps.max()),
                            "n_null": int(spec.n_null.max()),
                            "n_val_tokens": int(spec.n_tokens.max()),
                            "n_supersense_tokens": int(spec[spec.labels == "supersense"]
                                                       .n_tokens.max())}
    for arm, g in gates.groupby("config"):
        meta[f"gate_{arm}"] = bool(g.passed.all())
        meta[f"ppl_{arm}"] = float(g.val_ppl.mean())
        meta[f"ratio_{arm}"] = float(g.unigram_ratio.mean())
        meta[f"improvement_last_pct_{arm}"] = 100 * float(g.improvement_last.max())
        meta[f"params_{arm}"] = int(runs[runs.arm == arm].params.iloc[0])
    for arm, g in per_run.groupby(level="arm"):
        for key in ("dead_frac", "low_frac", "entropy"):
            meta[f"{key}_{arm}"] = float(g[key].mean())
        for labels in LABELS:
            meta[f"nmi_excess_{labels}_{arm}"] = float(_by_seed(excess, arm, labels).mean())
    meta["spec_all_p_floor"] = bool((spec.nmi_p <= stats.p_floor(meta["n_null"]) + 1e-12).all())
    if not anchors.empty:
        final = anchors[anchors.step == anchors.groupby(["arm", "seed"]).step.transform("max")]
        for arm, g in anchors.groupby("arm"):
            meta[f"anchor_max_cos_peak_{arm}"] = float(g.max_abs_cos.max())
            meta[f"anchor_max_cos_final_{arm}"] = float(final[final.arm == arm].max_abs_cos.mean())
            meta[f"centroid_final_{arm}"] = float(final[final.arm == arm].centroid_norm.mean())
    paired = []
    for a, b in COMPARISONS:
        rel = np.log(ppl[a]) - np.log(ppl[b])   # log ratio ~ relative difference
        row = {"a": a, "b": b, "measure": "val_ppl", **stats.paired_difference(ppl[a], ppl[b]),
               **{f"rel_{k}": v for k, v in stats.paired_difference(
                   rel, 0 * rel, MARGIN if (a, b) == PRIMARY else None).items()}}
        paired.append(row)
        if a in per_run.index and b in per_run.index:
            for key in ("dead_frac", "entropy"):
                paired.append({"a": a, "b": b, "measure": key, **stats.paired_difference(
                    per_run.loc[a, key], per_run.loc[b, key])})
            for labels in LABELS:
                paired.append({"a": a, "b": b, "measure": f"nmi_excess_{labels}",
                               **stats.paired_difference(_by_seed(excess, a, labels),
                                                   _by_seed(excess, b, labels))})
    for r in paired:
        tag = f"{r['measure']}_{r['a']}_vs_{r['b']}"
        for k in ("diff", "ci_low", "ci_high", "n_better", "rel_diff", "rel_ci_low",
                  "rel_ci_high", "rel_tost_p", "rel_equivalent"):
            if k in r:
                meta[f"{tag}_{k}"] = r[k]
    meta["paired"] = paired
    if not tables["cka"].empty:
        meta.update({f"cka_{k}": v for k, v in
                     stats.seed_pair_difference(tables["cka"], "arm", "cka", "sra", "linear").items()})
    meta["headline"] = _headline(meta)
    return meta


def _judge(meta: dict, a: str, b: str) -> str:
    p = f"val_ppl_{a}_vs_{b}"
    lo, hi = meta[f"{p}_ci_low"], meta[f"{p}_ci_high"]
    word = "lower" if hi < 0 else "higher" if lo > 0 else "not distinguishable"
    return (f"{a} − {b} perplexity {meta[f'{p}_diff']:+.2f} [{lo:+.2f}, {hi:+.2f}] "
            f"({word})")


def _headline(meta: dict) -> str:
    failed = [a for a in HEADLINE if not meta.get(f"gate_{a}", False)]
    head = f"untestable for {', '.join(failed)} (gates fail); " if failed else ""
    return (head + f"{meta['n_seeds']} paired seeds, {meta['steps']} steps: SRA ppl "
            f"{meta['ppl_sra']:.1f} vs linear {meta['ppl_linear']:.1f} vs dense "
            f"{meta['ppl_dense_active']:.1f}; {_judge(meta, 'sra', 'linear')}; dead experts "
            f"{100 * meta['dead_frac_sra']:.1f} % vs {100 * meta['dead_frac_linear']:.1f} %")


def verdict(meta: dict) -> str:
    """The seed's two claims (perplexity, dead experts) judged on the paired seeds."""
    m = meta
    failed = [a for a in HEADLINE if not m.get(f"gate_{a}", False)]
    p = "val_ppl_sra_vs_linear"
    rel = (f"relative {100 * m[f'{p}_rel_diff']:+.1f} % [{100 * m[f'{p}_rel_ci_low']:+.1f}, "
           f"{100 * m[f'{p}_rel_ci_high']:+.1f}]")
    if failed:
        ppl = (f"untestable: {', '.join(failed)} fail the capability/plateau gates (ppl ≤ "
               f"{m['max_unigram_ratio']} × unigram {m['unigram_ppl']:.0f}, < "
               f"{m['plateau_tol_pct']:.0f} % gain over the last {m['plateau_window_pct']:.0f} %"
               f" of steps), so what follows is description: {_judge(m, 'sra', 'linear')}, {rel}")
    elif m[f"{p}_ci_high"] < 0:
        ppl = f"SRA beats the linear router: {_judge(m, 'sra', 'linear')}, {rel}"
    elif m[f"{p}_ci_low"] > 0:
        ppl = f"refuted: SRA is worse than the linear router, {_judge(m, 'sra', 'linear')}, {rel}"
    elif m[f"{p}_rel_equivalent"]:
        ppl = (f"SRA and the linear router are equivalent within ±{100 * m['margin']:.0f} % "
               f"(TOST p={m[f'{p}_rel_tost_p']:.3f}; {rel}): no advantage of cosine routing")
    else:
        ppl = f"inconclusive: {_judge(m, 'sra', 'linear')}, {rel}"
    d = "dead_frac_sra_vs_linear"
    dead = (f"dead experts (< 0.01 % of assignments) SRA {100 * m['dead_frac_sra']:.1f} % vs "
            f"linear {100 * m['dead_frac_linear']:.1f} % (paired {100 * m[f'{d}_diff']:+.1f} pp "
            f"[{100 * m[f'{d}_ci_low']:+.1f}, {100 * m[f'{d}_ci_high']:+.1f}])")
    dense = _judge(m, "sra", "dense_active")
    half = _judge(m, "sra", "dense_half")
    spec = "; ".join(
        f"{name} SRA − linear {m[f'{s}_diff']:+.3f} [{m[f'{s}_ci_low']:+.3f}, "
        f"{m[f'{s}_ci_high']:+.3f}]" for name, s in
        (("token classes", "nmi_excess_class_sra_vs_linear"),
         ("WordNet supersenses of whole words", "nmi_excess_supersense_sra_vs_linear")))
    return (f"{ppl}. Against the dense model of equal active parameters: {dense}; against one "
            f"trained on half the tokens (the seed's unmatched comparison): {half}. {dead}. "
            f"Specialisation (NMI above the shuffled null): {spec}. "
            f"Cross-seed CKA of routed hidden states: SRA {m['cka_cka_a']:.3f} vs linear "
            f"{m['cka_cka_b']:.3f}, difference {m['cka_diff']:+.3f} [{m['cka_ci_low']:+.3f}, "
            f"{m['cka_ci_high']:+.3f}]. Anchors' largest |cos| peaked at "
            f"{m['anchor_max_cos_peak_sra']:.2f} with dispersion, "
            f"{m['anchor_max_cos_peak_sra_no_dispersion']:.2f} without.")
