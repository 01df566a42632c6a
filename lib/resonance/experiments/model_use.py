"""09_model_use: does resonance help choose, combine and distil models? (issue 20)

ResonAI (seed 000) names three uses of resonance; each is tested on the in-house models that
notebooks 01 and 02 trained (one corpus, tokenizer and budget; reused from the cache). Gate
first: a model joins an analysis only with validation perplexity <= ``PPL_GATE`` x unigram.

- **Selection** (primary, declared first): over gated candidates, Spearman rho of resonance with
  a reference (debiased linear CKA on held-out verse tokens, best block pair) against top-1
  next-token agreement with it, minus rho of parameter count and of (negative) perplexity;
  CIs from a bootstrap over candidate models, a 999-draw permutation p-value.
- **Integration**: per pair of gated models, the gain of the averaged-logit ensemble over its
  better member vs the pair's resonance; a quadratic (the inverted U) against the better
  monotone fit (line or isotonic) on held-out pairs of held-out models (model-disjoint halves).
- **Distillation**: one teacher distilled (``resonance.distill``) into students of other sizes and
  architectures at their trained-alone twins' recipe, seeds and budget; does resonance of the
  teacher with the twin predict the gain in validation loss?
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.isotonic import IsotonicRegression

from .. import activations, distill, similarity, stimuli, stats, store
from ..lm_eval import (ensemble_loss, eval_windows, lm_logits, next_token_loss, targets,
                       top1_agreement)
from ..seeding import seed_everything
from ..store import Bundle
from .common import (PPL_GATE, RECIPE_GATED as RECIPE, inhouse_model, profile_config, token_rows,
                     unigram_baseline)

NAME = "09_model_use"
VERSION = 1
MEASURE = "cka_linear_debiased"
BASELINES = ("params", "neg_ppl")
ALPHA = 0.05
SIZES = {
    "smoke": {"pool": [["gpt2", 32, 2, [0, 1, 2]], ["llama", 32, 2, [0, 1]],  # 01/02's smoke
                       ["gru", 32, 2, [0, 1]]],                                 # runs, shared
              "references": [["gpt2", 32, 2, 0]], "students": [["gpt2", 16, 1], ["llama", 32, 2]],
              "student_seeds": [0, 1], "alpha": 0.5, "temperature": 2.0, "n_verses": 12,
              "n_tokens": 150, "n_eval_tokens": 512, "n_boot": 200, "n_perm": 99, "n_splits": 20,
              "recipe": RECIPE["smoke"]},
    "paper": {"pool": [["gpt2", d, 2, [0, 1, 2, 3, 4]] for d in (32, 64, 96, 128)]
              + [["llama", 64, 2, [0, 1, 2]], ["gru", 72, 2, [0, 1, 2]]],
              "references": [["gpt2", 128, 2, 0], ["gpt2", 128, 2, 1]],
              "students": [["gpt2", 64, 2], ["gpt2", 96, 2], ["llama", 64, 2], ["gru", 72, 2]],
              "student_seeds": [0, 1, 2], "alpha": 0.5, "temperature": 2.0, "n_verses": 40,
              "n_tokens": 500, "n_eval_tokens": 2048, "n_boot": 1000, "n_perm": 999,
              "n_splits": 200, "recipe": RECIPE["paper"]},
}
SIZES["hub"] = SIZES["paper"]


def run(profile: str = "paper", seed: int = 0, force: bool = False, **overrides: Any) -> Bundle:
    config = profile_config(SIZES, profile, seed, overrides, VERSION)
    refs, pool = ({tuple(r) for r in config["references"]},
                  {(f, d, L, s) for f, d, L, seeds in config["pool"] for s in seeds})
    if not refs or not refs <= pool:
        raise ValueError(f"references {sorted(refs)} must be models of the pool")
    if config["n_perm"] < 99:
        raise ValueError(f"n_perm must be >= 99 for a reported p-value, got {config['n_perm']}")
    return store.cached(NAME, profile, config, compute, force=force)


# -- computation ---------------------------------------------------------------------------------

def _clouds(zm, verses, config):
    acts = activations.extract(zm, verses, pool="tokens", progress=False)
    special = getattr(zm.tokenizer, "all_special_ids", None) or []
    keep = token_rows(acts, config["n_tokens"], config["seed"], special)
    return [a[keep] for a in acts.layers][1:]  # the blocks (embeddings are token tables)


def _resonance(a, b) -> float:  # best block pair
    return float(similarity.similarity_matrix(a, b, MEASURE)["value"].max())


def _pool(config, verses, windows, unigram):
    rows, clouds, logits, refs = [], {}, {}, config["references"]
    target = targets(windows)
    for family, d, L, seeds in config["pool"]:
        for s in seeds:
            zm, trained = inhouse_model(family, d, L, s, config["recipe"])
            name = f"{family}-d{d}-l{L}-s{s}"
            ppl = float(trained.history["val_ppl"].dropna().iloc[-1])
            clouds[name] = _clouds(zm, verses, config)
            logits[name] = lm_logits(trained.model, windows)
            rows.append({"model": name, "family": family, "d_model": d, "n_layers": L, "seed": s,
                         "params": int(zm.n_params), "val_ppl": ppl, "ppl_ratio": ppl / unigram,
                         "gate": ppl <= PPL_GATE * unigram,
                         "eval_loss": next_token_loss(logits[name], target),
                         "role": ("candidate", "reference")[[family, d, L, s] in refs]})
    return pd.DataFrame(rows), clouds, logits


def _pairs(models, clouds, logits, target) -> pd.DataFrame:
    rows, loss = [], dict(zip(models.model, models.eval_loss))
    for a, b in itertools.combinations(models.model, 2):
        ens = ensemble_loss(logits[a], logits[b], target)
        rows.append({"model_a": a, "model_b": b, "resonance": _resonance(clouds[a], clouds[b]),
                     "agreement": top1_agreement(logits[a], logits[b]),
                     "ensemble_loss": ens, "gain": min(loss[a], loss[b]) - ens,
                     "quality_gap": abs(loss[a] - loss[b])})
    return pd.DataFrame(rows)


def _distillation(config, models, clouds, verses) -> pd.DataFrame:
    teacher = models[models.role == "reference"].iloc[0]
    _, t_run = inhouse_model(teacher.family, int(teacher.d_model), int(teacher.n_layers),
                                int(teacher.seed), config["recipe"])
    unigram = float(models.val_ppl.iloc[0] / models.ppl_ratio.iloc[0])
    rows = []
    for family, d, L in config["students"]:
        for s in config["student_seeds"]:
            zm, alone = inhouse_model(family, d, L, s, config["recipe"])
            name = f"{family}-d{d}-l{L}-s{s}"
            cloud = clouds[name] if name in clouds else _clouds(zm, verses, config)
            run = distill.distil(t_run.model, t_run.config.key, alone.config, alpha=config["alpha"],
                                 temperature=config["temperature"], progress=False, threads=1)
            ppl = float(alone.history["val_ppl"].iloc[-1])
            rows.append({"student": name, "type": f"{family}-d{d}-l{L}", "family": family,
                         "seed": s, "params": int(zm.n_params), "teacher": teacher.model,
                         "resonance": _resonance(clouds[teacher.model], cloud),
                         "alone_loss": float(alone.history["val_loss"].iloc[-1]),
                         "distilled_loss": float(run.history["val_loss"].iloc[-1]),
                         "alone_ppl_ratio": ppl / unigram, "gate": ppl <= PPL_GATE * unigram})
    out = pd.DataFrame(rows)
    return out.assign(gain=out.alone_loss - out.distilled_loss)


def compute(config: dict) -> tuple[dict[str, pd.DataFrame], dict]:
    seed_everything(config["seed"])
    verses = stimuli.corpus_stimuli("kjv", n=config["n_verses"], seed=config["seed"])
    r = config["recipe"]
    windows = eval_windows(r["corpus"], r["vocab_size"], r["context"], config["n_eval_tokens"])
    models, clouds, logits = _pool(config, verses, windows, unigram_baseline(config["recipe"]))
    tables = {"models": models, "pairs": _pairs(models, clouds, logits, targets(windows)),
              "distillation": _distillation(config, models, clouds, verses)}
    keys = ("n_boot", "n_perm", "n_splits", "seed", "n_tokens", "n_eval_tokens")
    tables["config"] = pd.DataFrame([{k: config[k] for k in keys}])
    meta = summarise(tables)
    meta.update(verdict=verdict(meta), headline=headline(meta))
    return tables, meta


# -- summaries -------------------------------------------------------------------------------------

def _rho(x, y) -> float:
    r = spearmanr(x, y).statistic
    return float(r) if np.isfinite(r) else 0.0


def _q(draws) -> list[float]:
    return list(stats.percentile_ci(draws))


def _perm_p(est: float, null) -> float:  # two-sided, on |rho|
    return stats.permutation_p(abs(est), np.abs(null))


def selection_table(models: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """One row per (gated candidate, reference): resonance, agreement and the baselines."""
    ok = set(models[models.gate].model)
    refs = [m for m in models[models.role == "reference"].model if m in ok]
    info, rows = models.set_index("model"), []
    for p in pairs.itertuples():
        for ref, cand in ((p.model_a, p.model_b), (p.model_b, p.model_a)):
            if ref in refs and cand in ok and cand not in refs:
                rows.append({"reference": ref, "candidate": cand, "resonance": p.resonance,
                             "agreement": p.agreement, "params": info.at[cand, "params"],
                             "neg_ppl": -info.at[cand, "val_ppl"]})
    return pd.DataFrame(rows)


def _selection(sel: pd.DataFrame, n_boot: int, n_perm: int, seed: int) -> dict:
    cands = np.array(sorted(sel.candidate.unique()))
    by = {r: g.set_index("candidate") for r, g in sel.groupby("reference")}
    cols = ("resonance",) + BASELINES

    def rhos(draw, perm=None) -> dict:
        out = {}
        for c in cols:
            vals = []
            for g in by.values():
                y = g.agreement.loc[draw].to_numpy()
                vals.append(_rho(g[c].loc[draw].to_numpy(), y[perm] if perm is not None else y))
            out[c] = float(np.mean(vals))
        return out

    rng = np.random.default_rng([seed, 0x5E1])
    est, boots = rhos(cands), [rhos(rng.choice(cands, len(cands))) for _ in range(n_boot)]
    null = [rhos(cands, rng.permutation(len(cands)))["resonance"] for _ in range(n_perm)]
    meta = {"sel_n_candidates": len(cands), "sel_n_references": len(by),
            "sel_p_resonance": _perm_p(est["resonance"], null)}
    for c in cols:
        meta[f"sel_rho_{c}"], meta[f"sel_rho_{c}_ci"] = est[c], _q([d[c] for d in boots])
        if c != "resonance":
            meta[f"sel_minus_{c}"] = est["resonance"] - est[c]
            meta[f"sel_minus_{c}_ci"] = _q([d["resonance"] - d[c] for d in boots])
    return meta


def _fits(train_pairs: pd.DataFrame, test_pairs: pd.DataFrame) -> tuple[float, float]:
    """Held-out RMSE of the quadratic and of the better monotone fit (line or isotonic)."""
    x, y = train_pairs.resonance.to_numpy(), train_pairs.gain.to_numpy()
    xt, yt = test_pairs.resonance.to_numpy(), test_pairs.gain.to_numpy()
    iso = IsotonicRegression(increasing=bool(_rho(x, y) >= 0), out_of_bounds="clip").fit(x, y)
    rmse = lambda pred: float(np.sqrt(np.mean((pred - yt) ** 2)))  # noqa: E731
    return (rmse(np.polyval(np.polyfit(x, y, 2), xt)),
            min(rmse(np.polyval(np.polyfit(x, y, 1), xt)), rmse(iso.predict(xt))))


def _integration(pairs: pd.DataFrame, gated: list[str], n_splits: int, seed: int) -> dict:
    t = pairs[pairs.model_a.isin(gated) & pairs.model_b.isin(gated)]
    rng, quad, mono = np.random.default_rng([seed, 0x1E6]), [], []
    for _ in range(n_splits):
        half = set(rng.permutation(gated)[:len(gated) // 2])
        ina, inb = t.model_a.isin(half), t.model_b.isin(half)
        a, b = t[ina & inb], t[~ina & ~inb]
        for fit, test in ((a, b), (b, a)):
            if len(fit) >= 4 and len(test) >= 1:
                q, m = _fits(fit, test)
                quad, mono = quad + [q], mono + [m]
    (c2, c1, _), diff = np.polyfit(t.resonance, t.gain, 2), np.array(mono) - np.array(quad)
    vertex = -c1 / (2 * c2) if c2 else float("nan")
    return {"int_n_pairs": len(t), "int_n_models": len(gated), "int_n_folds": len(quad),
            "int_rmse_quadratic": float(np.mean(quad)), "int_rmse_monotone": float(np.mean(mono)),
            "int_quadratic_wins": float(np.mean(diff > 0)), "int_curvature": float(c2),
            "int_vertex": float(vertex), "int_res_min": float(t.resonance.min()),
            "int_res_max": float(t.resonance.max()),
            "int_vertex_inside": bool(c2 < 0 and t.resonance.min() < vertex < t.resonance.max()),
            "int_gain_mean": float(t.gain.mean()), "int_share_positive": float((t.gain > 0).mean()),
            "int_rho_gain_resonance": _rho(t.resonance, t.gain), "int_rho_gain_quality_gap":
            _rho(t.quality_gap, t.gain)}


def _distil_summary(dist: pd.DataFrame, n_boot: int, n_perm: int, seed: int) -> dict:
    g = dist[dist.gate]
    types, rng = sorted(g.type.unique()), np.random.default_rng([seed, 0xD15])
    meta = {"dist_n_students": len(g), "dist_n_types": len(types),
            "dist_types": sorted(dist.type.unique()), "dist_n_types_all": int(dist.type.nunique()),
            "dist_teacher": str(dist.teacher.iloc[0]), "dist_gain_mean": float(dist.gain.mean()),
            "dist_share_positive": float((dist.gain > 0).mean())}
    for t, d in dist.groupby("type"):
        meta.update({f"dist_gain_{t}": float(d.gain.mean()), f"dist_gate_{t}": bool(d.gate.all()),
                     f"dist_res_{t}": float(d.resonance.mean())})
    if len(types) < 3:
        meta.update(dist_testable=False, dist_rho=float("nan"), dist_rho_ci=[None, None],
                    dist_p=float("nan"), dist_rho_types=float("nan"))
        return meta
    est = _rho(g.resonance, g.gain)
    strata = [np.flatnonzero(g.type.to_numpy() == t) for t in types]
    boots = [_rho(g.resonance.to_numpy()[i], g.gain.to_numpy()[i]) for i in
             (np.concatenate([rng.choice(s, len(s)) for s in strata]) for _ in range(n_boot))]
    null = [_rho(g.resonance, rng.permutation(g.gain.to_numpy())) for _ in range(n_perm)]
    means = g.groupby("type")[["resonance", "gain"]].mean()
    meta.update(dist_testable=True, dist_rho=est,
                dist_rho_ci=_q(boots), dist_p=_perm_p(est, null),
                dist_rho_types=_rho(means.resonance, means.gain))
    return meta


def summarise(tables: dict[str, pd.DataFrame]) -> dict:
    """Gates, then the three claims' numbers (selection primary)."""
    models, pairs, cfg = tables["models"], tables["pairs"], tables["config"].iloc[0]
    n_boot, n_perm, n_splits, seed = (int(cfg[k]) for k in ("n_boot", "n_perm", "n_splits", "seed"))
    gated = list(models[models.gate].model)
    meta: dict[str, Any] = {
        "n_models": len(models), "n_gated": len(gated), "ppl_gate": PPL_GATE, "alpha": ALPHA,
        "n_boot": n_boot, "n_perm": n_perm, "failed_gate": sorted(set(models.model) - set(gated)),
        **{k: int(cfg.get(k, 0)) for k in ("n_tokens", "n_eval_tokens")}}
    sel = selection_table(models, pairs)
    meta["sel_testable"] = bool(sel.candidate.nunique() >= 5) if len(sel) else False
    if meta["sel_testable"]:
        meta.update(_selection(sel, n_boot, n_perm, seed))
    meta["int_testable"] = len(gated) >= 6
    if meta["int_testable"]:
        meta.update(_integration(pairs, gated, n_splits, seed))
    meta.update(_distil_summary(tables["distillation"], n_boot, n_perm, seed))
    meta.update({f"{k}_{e}": v[i] for k, v in list(meta.items()) if k.endswith("_ci")
                 for i, e in enumerate(("low", "high"))})  # scalars for the paper's cite()
    return meta


def _ci(v) -> str:  # noqa: D103
    return f"[{v[0]:+.2f}, {v[1]:+.2f}]"


def words(meta: dict) -> dict[str, str]:
    """Each claim's verdict word: supported / refuted / not shown / untestable."""
    m, out = meta, {}
    if m["sel_testable"]:
        diffs = [m[f"sel_minus_{b}_ci"] for b in BASELINES]
        out["selection"] = ("supported" if min(d[0] for d in diffs) > 0 else "refuted"
                            if min(d[1] for d in diffs) < 0 else "not shown")
    if m["int_testable"]:
        u = m["int_quadratic_wins"] >= 1 - m["alpha"] and m["int_vertex_inside"]
        out["integration"] = ("supported" if u else "refuted" if m["int_rmse_monotone"]
                              <= m["int_rmse_quadratic"] else "not shown")
    if m["dist_testable"]:
        lo, hi = m["dist_rho_ci"]
        out["distillation"] = ("supported" if lo > 0 and m["dist_p"] < m["alpha"] else "refuted"
                               if hi < 0 else "not shown")
    return {k: out.get(k, "untestable") for k in ("selection", "integration", "distillation")}


def verdict(meta: dict) -> str:
    """One verdict per claim, with its numbers; 'untestable' where gates or scale forbid."""
    m, w = meta, words(meta)
    sel = ("selection untestable (fewer than 5 gated candidates)" if not m["sel_testable"] else
           f"selection {w['selection']}: rho(resonance, agreement) = {m['sel_rho_resonance']:+.2f} "
           f"{_ci(m['sel_rho_resonance_ci'])} (p={m['sel_p_resonance']:.3f}) vs perplexity "
           f"{m['sel_rho_neg_ppl']:+.2f} and parameters {m['sel_rho_params']:+.2f}; resonance "
           f"minus perplexity {m['sel_minus_neg_ppl']:+.2f} {_ci(m['sel_minus_neg_ppl_ci'])}, "
           f"minus parameters {m['sel_minus_params']:+.2f} {_ci(m['sel_minus_params_ci'])} "
           f"({m['sel_n_candidates']} candidates)")
    integ = ("inverted U untestable (fewer than 6 gated models)" if not m["int_testable"] else
             f"inverted U {w['integration']}: held-out RMSE quadratic "
             f"{m['int_rmse_quadratic']:.4f} vs monotone {m['int_rmse_monotone']:.4f} nats, "
             f"quadratic better in {100 * m['int_quadratic_wins']:.0f}% of {m['int_n_folds']} "
             f"model-disjoint folds ({m['int_n_pairs']} pairs; curvature "
             f"{m['int_curvature']:+.3f}, vertex {m['int_vertex']:.2f} "
             f"{'inside' if m['int_vertex_inside'] else 'outside'} [{m['int_res_min']:.2f}, "
             f"{m['int_res_max']:.2f}]); ensemble gain {m['int_gain_mean']:+.3f} nats on "
             f"average, rho with resonance {m['int_rho_gain_resonance']:+.2f}")
    dist = (f"distillation untestable ({m['dist_n_types']} of {m['dist_n_types_all']} student "
            f"types pass the gate; 3 needed)" if not m["dist_testable"] else
            f"distillation {w['distillation']}: rho(teacher-student resonance, gain) = "
            f"{m['dist_rho']:+.2f} {_ci(m['dist_rho_ci'])} (p={m['dist_p']:.3f}; "
            f"{m['dist_n_students']} students of {m['dist_n_types']} types, rho over type means "
            f"{m['dist_rho_types']:+.2f})")
    return (f"{sel}. {integ}. {dist}; mean distillation gain {m['dist_gain_mean']:+.3f} nats, "
            f"positive for {100 * m['dist_share_positive']:.0f}% of students.")


def headline(meta: dict) -> str:
    """The README's one line: each claim's verdict word and its key number."""
    m, w = meta, words(meta)
    sel = (f" (rho with next-token agreement {m['sel_rho_resonance']:+.2f} vs perplexity's "
           f"{m['sel_rho_neg_ppl']:+.2f})" if m["sel_testable"] else "")
    integ = f" (mean gain {m['int_gain_mean']:+.3f} nats)" if m["int_testable"] else ""
    return (f"resonance for selection: {w['selection']}{sel}; ensembles' inverted U: "
            f"{w['integration']}{integ}; resonance predicting distillation: "
            f"{w['distillation']} (mean gain {m['dist_gain_mean']:+.3f} nats)")
