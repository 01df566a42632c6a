"""08_measure_trust: how far can each measure be trusted?

1. **Invariances** (live, seeded Gaussian data) against what each definition promises
   (:data:`EXPECTED_INVARIANT`).
2. **Reference values**: the library on the reference implementations' demo inputs beside their
   published values (:mod:`resonance.references`).
3. **Layer identification** (Kornblith et al. 2019, Table 2) on 6-block GPT-2-style KJV models
   from different seeds, token-level states at held-out positions, embeddings excluded; the
   seeds' untrained initialisations as a control; and, within each model, **layer
   monotonicity** (ReSi): is a nearer block more alike than a farther one?
4. **Grounding tests** after ReSi (Klabunde et al. 2025) on small in-house MLPs on digits
   (:func:`resonance.grounding.classifier_family`): separating real-label models from models
   trained on randomised labels (all, or a quarter) or with a shortcut input; tracking the
   models' output differences (Spearman's rho). Intervals resample models.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import data, grounding, invariance, references, store, train
from .. import measures as registry
from ..seeding import seed_everything
from ..stats import fmt, unigram_perplexity
from ..store import Bundle
from .common import profile_config

VERSION = 2
NAME = "08_measure_trust"

# label -> (registry name, options): Kornblith's CCA rows (mean rho over all directions, SVCCA
# at 99 % variance as theirs, and at a fixed k) and RBF CKA at their three bandwidths.
IDENTIFICATION = {
    "linear CKA": ("cka_linear", {}),
    "RBF CKA 0.2": ("cka_rbf", {"threshold": 0.2}),
    "RBF CKA 0.4": ("cka_rbf", {"threshold": 0.4}),
    "RBF CKA 0.8": ("cka_rbf", {"threshold": 0.8}),
    "debiased CKA": ("cka_linear_debiased", {}),
    "CCA (mean rho)": ("svcca", {"keep": 1.0}),
    "SVCCA 99 %": ("svcca", {"keep": 0.99}),
    "SVCCA k=10": ("svcca", {"keep": 10}),
    "PWCCA": ("pwcca", {}),
    "linear predictivity": ("linear_predictivity", {}),
    "mutual 10-NN": ("mutual_knn", {"k": 10}),
    "RSA": ("rsa", {}),
    "Procrustes": ("procrustes", {}),
}

# Kornblith et al. 2019, Table 2 (10-layer CNNs on CIFAR-10, logits excluded, %), quoted from
# memory of the paper, not re-read here: approximate. None: no such row in the paper.
PAPER_TABLE2 = {
    "linear CKA": 99.3, "RBF CKA 0.2": 80.6, "RBF CKA 0.4": 99.1, "RBF CKA 0.8": 99.3,
    "debiased CKA": None, "CCA (mean rho)": 1.4, "SVCCA 99 %": 9.9, "SVCCA k=10": None,
    "PWCCA": 11.1, "linear predictivity": 45.4, "mutual 10-NN": None, "RSA": None,
    "Procrustes": None,
}

# transform -> measures whose definition promises invariance (every other cell should move):
# neighbour measures and RSA read uncentred rows, RSA's row correlations are not rotation
# invariant, only untruncated CCA forgives an invertible map, only a pairing-free measure
# ignores a shuffle of Y's rows.
_ALL = tuple(registry.MEASURES)
EXPECTED_INVARIANT = {
    "rotation": tuple(m for m in _ALL if m != "rsa"),
    "isotropic_scale": _ALL,
    "translation": tuple(m for m in _ALL if m not in ("mutual_knn", "cknna", "rsa")),
    "invertible_linear": ("pwcca",),
    "feature_permutation": _ALL,
    "row_shuffle": tuple(m for m in _ALL if registry.get(m).null == "gaussian"),
}

# ReSi-style families: variant -> (share of randomised training labels, shortcut input), and
# the tests read from them (test -> (reference group, other group)); "output" and
# "monotonicity" are the two correlational tests. Primary test: random_labels.
VARIANTS = {"real": (0.0, False), "noisy25": (0.25, False), "noisy50": (0.5, False),
            "random": (1.0, False), "shortcut": (0.0, True)}
SEPARATION = {"random_labels": ("real", "random"), "noisy_labels": ("real", "noisy25"),
              "shortcut": ("real", "shortcut")}
OUTPUT_VARIANTS = ("real", "noisy25", "noisy50", "random")
TESTS = {"random_labels": "real vs random labels", "noisy_labels": "real vs 25 % noisy labels",
         "shortcut": "real vs shortcut", "output": "tracks output difference",
         "monotonicity": "monotone in layer distance"}
CHANCE = {"random_labels": 0.5, "noisy_labels": 0.5, "shortcut": 0.5, "output": 0.0,
          "monotonicity": 0.5}

RELIABLE = 0.9       # identification accuracy a measure needs to be called reliable at it
GATE_RATIO = 0.75    # LM gate: every model's val perplexity below this x unigram's
CLASSIFIER_GATE = 0.8  # classifier gate: real-label test accuracy above this, random-label <= 0.2
MIN_CONTEXT = 8      # stimuli are token positions with at least this many tokens before them

_MODEL = {"context": 64, "batch_size": 8, "lr": 5e-3, "eval_every": 64, "eval_tokens": 8192,
          "vocab_size": 4096}
SIZES = {
    "smoke": {"model": {**_MODEL, "d_model": 32, "n_layers": 3, "tokens": 16_384, "warmup": 4},
              "seeds": [0, 1], "n_stimuli": 300, "init_control": True,
              "invariance": {"n": 40, "d": 8}, "n_reference_draws": 5, "rtd_trials": 1,
              "classifiers": {"seeds": [0, 1], "steps": 120, "hidden": 32, "n_test": 150},
              "n_boot": 100, "n_perm": 99},
    "paper": {"model": {**_MODEL, "d_model": 48, "n_layers": 6, "tokens": 131_072, "warmup": 20},
              "seeds": [0, 1, 2, 3, 4], "n_stimuli": 2000, "init_control": True,
              "invariance": {"n": 64, "d": 10}, "n_reference_draws": 50, "rtd_trials": 10,
              "classifiers": {"seeds": [0, 1, 2, 3, 4], "steps": 1000, "hidden": 64,
                              "n_test": 500},
              "n_boot": 1000, "n_perm": 199},
    # GPU-sized: 12-block models trained 16x longer, 10 seeds of each classifier variant.
    "hub": {"model": {**_MODEL, "context": 128, "d_model": 256, "n_layers": 12,
                      "tokens": 2_097_152, "warmup": 200, "lr": 1e-3, "eval_every": 256,
                      "eval_tokens": 32_768},
            "seeds": list(range(10)), "n_stimuli": 5000, "init_control": True,
            "invariance": {"n": 128, "d": 16}, "n_reference_draws": 200, "rtd_trials": 10,
            "classifiers": {"seeds": list(range(10)), "steps": 2000, "hidden": 128,
                            "n_test": 800},
            "n_boot": 2000, "n_perm": 999},
}


def run(profile: str = "paper", seed: int = 0, force: bool = False, **overrides: Any) -> Bundle:
    config = profile_config(SIZES, profile, seed, overrides, version=VERSION)
    return store.cached(NAME, profile, config, compute, force=force)


def invariances(config: dict) -> pd.DataFrame:
    table = invariance.invariance_table(n=config["invariance"]["n"], d=config["invariance"]["d"],
                                        seed=config["seed"])
    table["expected"] = [m in EXPECTED_INVARIANT[t]
                         for m, t in zip(table["measure"], table["transform"])]
    return table


def _language_models(config: dict) -> tuple[pd.DataFrame, dict, dict]:
    tokenizer = data.tokenizer("kjv", config["model"]["vocab_size"])
    train_np = data.token_stream("kjv", "train", tokenizer)
    val_np = data.token_stream("kjv", "validation", tokenizer)
    unigram = unigram_perplexity(train_np, val_np[:config["model"]["eval_tokens"] + 1],
                                 config["model"]["vocab_size"])
    windows, rows = grounding.validation_positions(val_np, config["model"]["context"],
                                                   config["n_stimuli"], MIN_CONTEXT,
                                                   config["seed"])
    trained, init, info = {}, {}, []
    for seed in config["seeds"]:
        run_ = train.train(train.TrainConfig(family="gpt2", seed=seed, **config["model"]),
                           progress=False, threads=1)
        final = run_.history.dropna(subset=["val_ppl"]).iloc[-1]
        info.append({"seed": seed, "val_ppl": float(final["val_ppl"]), "unigram_ppl": unigram,
                     "params": int(run_.info.get("params", 0)), "tokens": run_.config.tokens,
                     "n_stimuli": len(rows)})
        trained[seed] = grounding.block_states(run_.model, windows, rows)
        if config["init_control"]:
            init[seed] = grounding.block_states(train.load_checkpoint(run_, 0), windows, rows)
    return pd.DataFrame(info), trained, init


def grounding_tests(family: grounding.ClassifierFamily, n_boot: int, n_perm: int,
                    seed: int = 0) -> pd.DataFrame:
    """One row per (measure, separation or output test) on the classifiers' last hidden layer:
    value, 95 % interval over resampled models, chance and (separation) permutation p."""
    rows = []
    for label, (measure, kw) in IDENTIFICATION.items():
        names, S = grounding.oriented_grid(family.penultimate(), measure, **kw)
        for test, (ref, other) in SEPARATION.items():
            keep = [i for i, n in enumerate(names) if n[0] in (ref, other)]
            sub, kept = S[np.ix_(keep, keep)], [names[i] for i in keep]
            value, low, high = grounding.model_bootstrap(
                lambda d: grounding.separation_auc(sub, kept, ref, other, d), kept, n_boot, seed)
            p = grounding.permutation_pvalue(sub, kept, ref, other, n_perm, seed)
            rows.append({"measure": label, "test": test, "value": value, "ci_low": low,
                         "ci_high": high, "chance": CHANCE[test], "p": p})
        keep = [i for i, n in enumerate(names) if n[0] in OUTPUT_VARIANTS]
        sub, kept = S[np.ix_(keep, keep)], [names[i] for i in keep]
        D = family.output_distance(kept)
        value, low, high = grounding.model_bootstrap(
            lambda d: grounding.output_correlation(sub, D, d), kept, n_boot, seed)
        rows.append({"measure": label, "test": "output", "value": value, "ci_low": low,
                     "ci_high": high, "chance": CHANCE["output"], "p": np.nan})
    return pd.DataFrame(rows)


def _monotonicity(mono: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    rows = []
    for label, g in mono[mono["condition"] == "trained"].groupby("measure", sort=False):
        v = g["monotonicity"].to_numpy()
        value, low, high = grounding.model_bootstrap(lambda d: float(np.mean(v[d])),
                                                     ["m"] * len(v), n_boot, seed)
        rows.append({"measure": label, "test": "monotonicity", "value": value, "ci_low": low,
                     "ci_high": high, "chance": CHANCE["monotonicity"], "p": np.nan})
    return pd.DataFrame(rows)


def compute(config: dict) -> tuple[dict[str, pd.DataFrame], dict]:
    from threadpoolctl import threadpool_limits

    seed_everything(config["seed"])
    with threadpool_limits(1):  # small matrices: one BLAS thread is fastest (and repeatable)
        models, trained, init = _language_models(config)
        ident, mono = grounding.identification_rows(trained, "trained", IDENTIFICATION)
        if init:
            ident0, mono0 = grounding.identification_rows(init, "init", IDENTIFICATION)
            ident, mono = pd.concat([ident, ident0]), pd.concat([mono, mono0])
        c = config["classifiers"]
        family = grounding.classifier_family(VARIANTS, c["seeds"], hidden=c["hidden"],
                                             steps=c["steps"], n_test=c["n_test"],
                                             data_seed=config["seed"])
        tests = pd.concat([grounding_tests(family, config["n_boot"], config["n_perm"],
                                           config["seed"]),
                           _monotonicity(mono, config["n_boot"], config["seed"])],
                          ignore_index=True)
        tables = {"invariances": invariances(config),
                  "reference": references.reference_table(config["rtd_trials"],
                                                          config["n_reference_draws"],
                                                          config["seed"]),
                  "models": models, "identification": ident.reset_index(drop=True),
                  "monotonicity": mono.reset_index(drop=True), "classifiers": family.info,
                  "grounding": tests}
    return tables, summarise(tables, n_boot=config["n_boot"], seed=config["seed"])


def accuracy_table(ident: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """:func:`resonance.grounding.accuracy_table` with Kornblith et al.'s Table 2 beside it."""
    acc = grounding.accuracy_table(ident, n_boot=n_boot, seed=seed)
    acc["paper_table2"] = [None if PAPER_TABLE2.get(m) is None else PAPER_TABLE2[m] / 100
                           for m in acc["measure"]]
    return acc


def _key(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label.lower()).strip("_").replace("__", "_")


def summarise(tables: dict[str, pd.DataFrame], n_boot: int = 2000, seed: int = 0) -> dict:
    inv, ref, models, clf = (tables[k] for k in ("invariances", "reference", "models",
                                                  "classifiers"))
    acc = accuracy_table(tables["identification"], n_boot=n_boot, seed=seed)
    mismatches = inv[inv["invariant"] != inv["expected"]]
    by_variant = clf.groupby("variant")
    real_acc = float(by_variant["test_accuracy"].mean()["real"])
    random_acc = float(by_variant["test_accuracy"].mean()["random"])
    meta: dict[str, Any] = {
        "n_seeds": int(len(models)), "n_layers": int(acc["n_layers"].iloc[0]),
        "n_stimuli": int(models["n_stimuli"].iloc[0]),
        "val_ppl_max": float(models["val_ppl"].max()),
        "unigram_ppl": float(models["unigram_ppl"].iloc[0]), "gate_ratio": GATE_RATIO,
        "gate_passed": bool((models["val_ppl"] < GATE_RATIO * models["unigram_ppl"]).all()),
        "reliable_threshold": RELIABLE, "chance": float(acc["chance"].iloc[0]),
        "invariance_mismatches": [f"{m} / {t}" for m, t in zip(mismatches["measure"],
                                                               mismatches["transform"])],
        "reference_all_agree": bool(ref["agrees"].all()),
        "reference_failed": [c for c, ok in zip(ref["check"], ref["agrees"]) if not ok],
        "classifier_seeds": int(clf["seed"].nunique()), "classifier_gate": CLASSIFIER_GATE,
        "real_test_accuracy": real_acc, "random_test_accuracy": random_acc,
        "random_train_accuracy": float(by_variant["train_accuracy"].mean()["random"]),
        "shortcut_follows_code": float(by_variant["follows_code"].mean()["shortcut"]),
        "real_follows_code": float(by_variant["follows_code"].mean()["real"]),
        "classifier_gate_passed": bool(real_acc > CLASSIFIER_GATE and random_acc <= 0.2),
    }
    for row in ref.itertuples():
        meta[f"ref_{row.key}"], meta[f"ref_{row.key}_reference"] = row.library, row.reference
    trusted, failed = [], []
    for row in acc.itertuples():
        key = f"{row.condition}_{_key(row.measure)}"
        for col in ("accuracy", "ci_low", "ci_high", "accuracy_pm1", "chance"):
            meta[f"{key}_{col}"] = float(getattr(row, col))
        if row.condition != "trained":
            continue
        meta.setdefault("identification_keys", []).append([row.measure, key])
        meta[f"{key}_paper_table2"] = None if pd.isna(row.paper_table2) else float(row.paper_table2)
        meta[f"{key}_ci_low_pm1"], meta[f"{key}_ci_high_pm1"] = row.ci_low_pm1, row.ci_high_pm1
        init = acc[(acc["condition"] == "init") & (acc["measure"] == row.measure)]
        meta[f"{key}_untrained"] = float(init["accuracy"].iloc[0]) if len(init) else None
        meta[f"{key}_beats_chance"] = bool(row.ci_low > row.chance)
        meta[f"{key}_reliable"] = bool(row.accuracy >= RELIABLE)
        (trusted if row.accuracy >= RELIABLE and row.ci_low > row.chance else failed).append(
            row.measure)
    meta["identifies_reliably"], meta["identifies_poorly"] = trusted, failed
    for row in tables["grounding"].itertuples():
        key = f"grounding_{_key(row.measure)}_{row.test}"
        passed = bool(row.ci_low > row.chance and (pd.isna(row.p) or row.p <= 0.05))
        meta.update({key: float(row.value), f"{key}_ci_low": float(row.ci_low),
                     f"{key}_ci_high": float(row.ci_high), f"{key}_passed": passed})
        if not pd.isna(row.p):
            meta[f"{key}_p"] = float(row.p)
    best = acc[acc["condition"] == "trained"].sort_values("accuracy", ascending=False).iloc[0]
    meta["best_measure"], meta["best_accuracy"] = best["measure"], float(best["accuracy"])
    n_all = len(IDENTIFICATION)
    grounded = [m for m in IDENTIFICATION
                if all(meta.get(f"grounding_{_key(m)}_{t}_passed", False) for t in TESTS)]
    meta["grounding_all_passed"] = grounded
    meta["headline"] = (
        f"Layer identification across {meta['n_seeds']} seeds of a {meta['n_layers']}-block "
        f"KJV transformer: {len(trusted)} of {n_all} measures reach {RELIABLE:.0%} (best "
        f"{best['measure']} {best['accuracy']:.0%}, chance {meta['chance']:.0%}); "
        f"{len(grounded)} of {n_all} pass all five ReSi-style grounding tests; invariances match "
        f"their definitions {'everywhere' if not meta['invariance_mismatches'] else 'except ' + ', '.join(meta['invariance_mismatches'])}.")
    meta["verdicts"] = measure_verdicts(inv, acc, meta)
    return meta


def measure_verdicts(inv: pd.DataFrame, acc: pd.DataFrame, meta: dict) -> list[list[str]]:
    """One ``[measure, sentence]`` per identification measure: its invariances, what it
    identifies, which grounding tests it passes, hence when to trust it and when not."""
    out = []
    for row in acc[acc["condition"] == "trained"].itertuples():
        cells = inv[(inv["measure"] == row.registry) & (inv["transform"] != "row_shuffle")]
        moves = [t.replace("_", " ") for t, ok in zip(cells["transform"], cells["invariant"])
                 if not ok]
        init = acc[(acc["condition"] == "init") & (acc["measure"] == row.measure)]
        init_note = f"; untrained twins {init['accuracy'].iloc[0]:.0%}" if len(init) else ""
        ident = (f"identifies layers {row.accuracy:.0%} [{fmt(row.ci_low, '.0%')}, "
                 f"{fmt(row.ci_high, '.0%')}] (chance {row.chance:.0%}; +-1 layer "
                 f"{row.accuracy_pm1:.0%}{init_note})")
        key = _key(row.measure)
        fails = [TESTS[t] for t in TESTS if not meta.get(f"grounding_{key}_{t}_passed", False)]
        g = f"grounding_{key}"
        tests = (f"random labels AUC {meta[f'{g}_random_labels']:.2f}, 25 % noise "
                 f"{meta[f'{g}_noisy_labels']:.2f}, shortcut {meta[f'{g}_shortcut']:.2f}, "
                 f"output rho {meta[f'{g}_output']:+.2f}, monotone {meta[f'{g}_monotonicity']:.2f}")
        if not meta["gate_passed"]:
            use = "no verdict on identification: the language models failed the capability gate"
        elif row.accuracy >= RELIABLE and row.ci_low > row.chance:
            use = "trust it to match layers across seeds"
        elif row.ci_low > row.chance:
            use = "trust it for coarse depth (+-1 block), not to match exact layers"
        else:
            use = "do not use it to match layers"
        trust = ("passes every grounding test: trust it to tell models that learned different "
                 "things apart" if not fails else "fails " + ", ".join(fails)
                 + ": do not read it for that")
        moved = f" Its value changes under {', '.join(moves)}." if moves else ""
        out.append([row.measure, f"{ident}: {use}. {tests}; {trust}.{moved}"])
    return out


def verdict(meta: dict) -> str:
    lines = [meta["headline"]]
    if not meta["gate_passed"]:
        lines.append(f"Capability gate FAILED: a model's validation perplexity "
                     f"({meta['val_ppl_max']:.0f}) is not below {meta['gate_ratio']} x the "
                     f"unigram model's ({meta['unigram_ppl']:.0f}); identification is not "
                     f"interpretable at this profile.")
    if not meta["classifier_gate_passed"]:
        lines.append(f"Classifier gate FAILED (real-label test accuracy "
                     f"{meta['real_test_accuracy']:.2f}, random-label "
                     f"{meta['random_test_accuracy']:.2f}): the grounding tests are not "
                     f"interpretable at this profile.")
    if not meta["reference_all_agree"]:
        lines.append("Reference values NOT reproduced: " + "; ".join(meta["reference_failed"]))
    lines += [f"- {m}: {v}" for m, v in meta["verdicts"]]
    return "\n".join(lines)
