"""08_measure_trust: how far can each measure be trusted?

Three checks every measure of the registry should pass before its numbers are read:

1. **Invariances** (live, seeded Gaussian data): which transforms of one side leave the value
   unchanged, against what each measure's definition promises (:data:`EXPECTED_INVARIANT`).
2. **Reference values**: the library on the inputs the field's reference numbers were made
   with (chance levels, the small-n bias of biased CKA, Kornblith et al.'s CKA demo input).
3. **Layer identification** (Kornblith et al. 2019, Table 2): for models of one architecture
   trained from different seeds, is the most similar layer of model B to layer i of model A
   layer i itself? In-house 6-block GPT-2-style models trained on the KJV, token-level hidden
   states at held-out validation positions, the embedding layer excluded; accuracy per measure
   with chance (1/L), a cluster bootstrap over seeds, +-1-layer accuracy and confusion counts,
   and the same test on the seeds' untrained initialisations as a control.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from .. import data, invariance, store, train
from .. import measures as registry
from ..seeding import seed_everything
from ..similarity import similarity_matrix
from ..stats import fmt, seed_pair_bootstrap, unigram_perplexity
from ..store import Bundle
from .common import profile_config

VERSION = 1
NAME = "08_measure_trust"

# label -> (registry name, options). Kornblith's CCA rows: mean rho over all directions (CCA),
# SVCCA at 99 % variance (their setting, after Raghu et al.) and at a fixed k; RBF CKA at their
# three bandwidths (fractions of the median distance).
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

# Kornblith et al. 2019, Table 2 (10 architecturally identical 10-layer CNNs on CIFAR-10, logits
# layer excluded, accuracy in %), quoted from memory of the paper, not re-read here: treat them as
# approximate. Their asymmetric indexes (PWCCA, linear regression) were symmetrised as S + S^T,
# as done here. None: the paper has no such row.
PAPER_TABLE2 = {
    "linear CKA": 99.3, "RBF CKA 0.2": 80.6, "RBF CKA 0.4": 99.1, "RBF CKA 0.8": 99.3,
    "debiased CKA": None, "CCA (mean rho)": 1.4, "SVCCA 99 %": 9.9, "SVCCA k=10": None,
    "PWCCA": 11.1, "linear predictivity": 45.4, "mutual 10-NN": None, "RSA": None,
    "Procrustes": None,
}

# The invariances each definition promises (transform -> measures invariant to it); every other
# (measure, transform) cell is expected to move. Mutual k-NN, CKNNA and RSA read angles or
# correlations of uncentred rows, so translation moves them, and RSA's row-wise correlation
# distance is not rotation invariant; only CCA without truncation (PWCCA keeps every direction)
# forgives an invertible linear map; only a pairing-free measure ignores a shuffle of Y's rows.
_ALL = tuple(registry.MEASURES)
EXPECTED_INVARIANT = {
    "rotation": tuple(m for m in _ALL if m != "rsa"),
    "isotropic_scale": _ALL,
    "translation": tuple(m for m in _ALL if m not in ("mutual_knn", "cknna", "rsa")),
    "invertible_linear": ("pwcca",),
    "feature_permutation": _ALL,
    "row_shuffle": tuple(m for m in _ALL if registry.get(m).null == "gaussian"),
}

RELIABLE = 0.9       # identification accuracy a measure needs to be called reliable at it
GATE_RATIO = 0.75    # capability gate: every model's val perplexity below this x unigram's
MIN_CONTEXT = 8      # stimuli are token positions with at least this many tokens before them

_MODEL = {"context": 64, "batch_size": 8, "lr": 5e-3, "eval_every": 64, "eval_tokens": 8192,
          "vocab_size": 4096}
SIZES = {
    "smoke": {"model": {**_MODEL, "d_model": 32, "n_layers": 3, "tokens": 16_384, "warmup": 4},
              "seeds": [0, 1], "n_stimuli": 300, "init_control": True,
              "invariance": {"n": 40, "d": 8}, "n_reference_draws": 5, "n_boot": 200},
    "paper": {"model": {**_MODEL, "d_model": 48, "n_layers": 6, "tokens": 131_072, "warmup": 20},
              "seeds": [0, 1, 2, 3, 4], "n_stimuli": 2000, "init_control": True,
              "invariance": {"n": 64, "d": 10}, "n_reference_draws": 50, "n_boot": 2000},
}


def run(profile: str = "paper", seed: int = 0, force: bool = False, **overrides: Any) -> Bundle:
    config = profile_config(SIZES, profile, seed, overrides, version=VERSION)
    return store.cached(NAME, profile, config, compute, force=force)


# -- 1. invariances ------------------------------------------------------------------------------

def invariances(config: dict) -> pd.DataFrame:
    table = invariance.invariance_table(n=config["invariance"]["n"], d=config["invariance"]["d"],
                                        seed=config["seed"])
    table["expected"] = [m in EXPECTED_INVARIANT[t] for m, t in zip(table["measure"],
                                                                      table["transform"])]
    return table


# -- 2. reference values -------------------------------------------------------------------------

def _kornblith_demo() -> tuple[np.ndarray, np.ndarray]:
    """The input of Kornblith's CKA demo notebook: ``np.random.seed(1337)``, ``X = randn(100,
    10)``, ``Y = randn(100, 10) + X`` (legacy global NumPy generator, as there)."""
    state = np.random.RandomState(1337)
    X = state.randn(100, 10)
    return X, state.randn(100, 10) + X


def _textbook_linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    return float(np.linalg.norm(Yc.T @ Xc) ** 2
                 / (np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc)))


def _textbook_rbf_cka(X: np.ndarray, Y: np.ndarray, threshold: float) -> float:
    from scipy.spatial.distance import cdist

    def gram(Z):
        sq = cdist(Z, Z, "sqeuclidean")
        return np.exp(-sq / (2 * threshold ** 2 * np.median(sq)))
    n = X.shape[0]
    H = np.eye(n) - 1.0 / n
    K, L = H @ gram(X) @ H, H @ gram(Y) @ H
    return float(np.sum(K * L) / np.sqrt(np.sum(K * K) * np.sum(L * L)))


def reference_values(config: dict) -> pd.DataFrame:
    """The library's value beside the reference value, with where the reference comes from."""
    rng = np.random.default_rng(config["seed"])
    draws = config["n_reference_draws"]

    def independent(measure, n, d, **kw):
        vals = [registry.get(measure).compute(rng.standard_normal((n, d)),
                                              rng.standard_normal((n, d)), **kw)
                for _ in range(draws)]
        return float(np.mean(vals)), float(np.std(vals, ddof=1) / np.sqrt(draws))

    rows = []

    def add(key, check, measure, library, se, reference, source, tolerance):
        rows.append({"key": key, "check": check, "measure": measure, "library": library, "library_se": se,
                     "reference": reference, "source": source, "tolerance": tolerance,
                     "agrees": bool(abs(library - reference) <= tolerance)})

    mean, se = independent("cka_linear", 32, 64)
    add("cka_bias_n32", "biased linear CKA, independent Gaussians n=32, d=64", "cka_linear", mean, se, 0.67,
        "small-n bias of biased CKA (research notes; ~0.67)", 0.05)
    mean, se = independent("cka_linear_debiased", 32, 64)
    add("debiased_cka_n32", "debiased linear CKA, same inputs", "cka_linear_debiased", mean, se, 0.0,
        "unbiased HSIC has expectation 0 under independence (Song et al. 2012)",
        max(0.02, 3 * se))
    n, k = 500, 10
    mean, se = independent("mutual_knn", n, 32, k=k)
    add("mutual_knn_chance", f"mutual {k}-NN, independent Gaussians n={n}", "mutual_knn", mean, se, k / (n - 1),
        "chance level k/(n-1) (Huh et al. 2024)", max(0.005, 3 * se))
    X, Y = _kornblith_demo()
    add("kornblith_demo_linear", "linear CKA on Kornblith's demo input (seed 1337)", "cka_linear",
        registry.get("cka_linear").compute(X, Y), 0.0, _textbook_linear_cka(X, Y),
        "feature-space formula ||Y'X||^2 / (||X'X|| ||Y'Y||) (Kornblith et al. 2019, eq. 5)",
        1e-10)
    add("kornblith_demo_rbf", "RBF CKA (threshold 0.5) on Kornblith's demo input", "cka_rbf",
        registry.get("cka_rbf").compute(X, Y, threshold=0.5), 0.0,
        _textbook_rbf_cka(X, Y, 0.5),
        "their gram_rbf: sigma^2 = threshold^2 x median of all squared distances", 1e-10)
    return pd.DataFrame(rows)


# -- 3. layer identification ---------------------------------------------------------------------

def _train_config(config: dict, seed: int) -> train.TrainConfig:
    return train.TrainConfig(family="gpt2", seed=seed, **config["model"])


def _stimulus_windows(val: np.ndarray, config: dict) -> tuple[np.ndarray, np.ndarray]:
    """Validation windows (evenly spread over the held-out stream) and the (window, position)
    rows sampled from them: ``n_stimuli`` token positions with >= MIN_CONTEXT tokens before."""
    context, n = config["model"]["context"], config["n_stimuli"]
    per_window = 16
    n_windows = -(-n // per_window)
    starts = np.linspace(0, len(val) - context - 1, n_windows).astype(int)
    windows = np.stack([val[s:s + context] for s in starts])
    rng = np.random.default_rng(config["seed"])
    rows = [(w, p) for w in range(n_windows)
            for p in np.sort(rng.choice(np.arange(MIN_CONTEXT, context), per_window, False))]
    return windows, np.array(rows[:n])


def hidden_states(model, windows: np.ndarray, rows: np.ndarray) -> list[np.ndarray]:
    """Each block's output (embedding layer excluded) at the sampled (window, position) rows:
    a list of ``(n, d)`` float64 arrays, block 1 first (the last one after the final norm)."""
    import torch

    with torch.no_grad():
        out = model(input_ids=torch.as_tensor(windows, dtype=torch.long),
                    output_hidden_states=True)
    return [h[rows[:, 0], rows[:, 1]].double().numpy() for h in out.hidden_states[1:]]


def _grids(states: dict[int, list[np.ndarray]], measure: str, kw: dict) -> dict:
    """Layer x layer values for every seed pair (a < b), oriented so that higher = more alike;
    asymmetric measures are symmetrised as S(A, B) + S(B, A)^T, as Kornblith et al. did. One
    ``similarity_matrix`` call over all models' layers, so each layer is prepared once."""
    spec = registry.get(measure)
    layers = {(seed, i): X for seed, xs in states.items() for i, X in enumerate(xs)}
    table = similarity_matrix(layers, layers, measure, **kw)
    names = list(layers)
    values = table["value"].to_numpy().reshape(len(names), len(names))
    if not spec.symmetric:
        values = values + values.T
    if not spec.higher_is_similar:
        values = -values
    where = {name: i for i, name in enumerate(names)}
    out = {}
    for a, b in combinations(sorted(states), 2):
        rows = [where[a, i] for i in range(len(states[a]))]
        cols = [where[b, j] for j in range(len(states[b]))]
        out[a, b] = values[np.ix_(rows, cols)]
    return out


def identification_rows(states: dict[int, list[np.ndarray]], condition: str) -> pd.DataFrame:
    """One row per (measure, ordered seed pair, layer of A): the most similar layer of B."""
    rows = []
    for label, (measure, kw) in IDENTIFICATION.items():
        for (a, b), grid in _grids(states, measure, kw).items():
            for (sa, sb), g in (((a, b), grid), ((b, a), grid.T)):
                best = g.argmax(axis=1)
                for layer, hit in enumerate(best):
                    rows.append({"condition": condition, "measure": label, "registry": measure,
                                 "seed_a": sa, "seed_b": sb, "layer": layer + 1,
                                 "best": int(hit) + 1, "n_layers": g.shape[0]})
    return pd.DataFrame(rows)


def _models(config: dict) -> tuple[pd.DataFrame, dict, dict]:
    tokenizer = data.tokenizer("kjv", config["model"]["vocab_size"])
    train_np = data.token_stream("kjv", "train", tokenizer)
    val_np = data.token_stream("kjv", "validation", tokenizer)
    eval_tokens = config["model"]["eval_tokens"]
    unigram = unigram_perplexity(train_np, val_np[:eval_tokens + 1],
                                 config["model"]["vocab_size"])
    windows, rows = _stimulus_windows(val_np, config)
    trained_states, init_states, info = {}, {}, []
    for seed in config["seeds"]:
        run_ = train.train(_train_config(config, seed), progress=False, threads=1)
        final = run_.history.dropna(subset=["val_ppl"]).iloc[-1]
        info.append({"seed": seed, "val_ppl": float(final["val_ppl"]), "unigram_ppl": unigram,
                     "params": int(run_.info.get("params", 0)), "tokens": run_.config.tokens,
                     "n_stimuli": len(rows)})
        trained_states[seed] = hidden_states(run_.model, windows, rows)
        if config["init_control"]:
            init_states[seed] = hidden_states(train.load_checkpoint(run_, 0), windows, rows)
    return pd.DataFrame(info), trained_states, init_states


def compute(config: dict) -> tuple[dict[str, pd.DataFrame], dict]:
    from threadpoolctl import threadpool_limits

    seed_everything(config["seed"])
    with threadpool_limits(1):  # small matrices: one BLAS thread is fastest (and repeatable)
        return _compute(config)


def _compute(config: dict) -> tuple[dict[str, pd.DataFrame], dict]:
    models, trained_states, init_states = _models(config)
    ident = [identification_rows(trained_states, "trained")]
    if init_states:
        ident.append(identification_rows(init_states, "init"))
    tables = {"invariances": invariances(config), "reference": reference_values(config),
              "models": models, "identification": pd.concat(ident, ignore_index=True)}
    return tables, summarise(tables, n_boot=config["n_boot"], seed=config["seed"])


# -- summary and verdict -------------------------------------------------------------------------

def accuracy_table(ident: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per (condition, measure): exact and +-1-layer identification accuracy, each with a
    cluster-bootstrap 95 % interval over seeds, and their chance levels."""
    rows = []
    for (condition, measure), g in ident.groupby(["condition", "measure"], sort=False):
        L = int(g["n_layers"].iloc[0])
        hit = (g["best"] == g["layer"]).to_numpy(float)
        near = ((g["best"] - g["layer"]).abs() <= 1).to_numpy(float)
        acc, low, high = seed_pair_bootstrap(hit, g["seed_a"], g["seed_b"], n_boot, seed=seed)
        acc1, low1, high1 = seed_pair_bootstrap(near, g["seed_a"], g["seed_b"], n_boot, seed=seed)
        paper = PAPER_TABLE2.get(measure)
        rows.append({"condition": condition, "measure": measure,
                     "registry": g["registry"].iloc[0], "n_layers": L,
                     "n_pairs": g[["seed_a", "seed_b"]].drop_duplicates().shape[0],
                     "accuracy": acc, "ci_low": low, "ci_high": high, "chance": 1 / L,
                     "accuracy_pm1": acc1, "ci_low_pm1": low1, "ci_high_pm1": high1,
                     "chance_pm1": (3 * L - 2) / L ** 2,
                     "paper_table2": None if paper is None else paper / 100})
    return pd.DataFrame(rows)


def _key(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label.lower()).strip("_").replace("__", "_")


def summarise(tables: dict[str, pd.DataFrame], n_boot: int = 2000, seed: int = 0) -> dict:
    inv, ref, models = tables["invariances"], tables["reference"], tables["models"]
    acc = accuracy_table(tables["identification"], n_boot=n_boot, seed=seed)
    mismatches = inv[inv["invariant"] != inv["expected"]]
    gate = bool((models["val_ppl"] < GATE_RATIO * models["unigram_ppl"]).all())
    meta: dict[str, Any] = {
        "n_seeds": int(len(models)), "n_layers": int(acc["n_layers"].iloc[0]),
        "n_stimuli": int(models["n_stimuli"].iloc[0]),
        "val_ppl_max": float(models["val_ppl"].max()),
        "unigram_ppl": float(models["unigram_ppl"].iloc[0]), "gate_ratio": GATE_RATIO,
        "gate_passed": gate, "reliable_threshold": RELIABLE,
        "invariance_mismatches": [f"{m} / {t}" for m, t in zip(mismatches["measure"],
                                                               mismatches["transform"])],
        "reference_all_agree": bool(ref["agrees"].all()),
        "reference_failed": [c for c, ok in zip(ref["check"], ref["agrees"]) if not ok],
    }
    for row in ref.itertuples():
        meta[f"ref_{row.key}"] = float(row.library)
        meta[f"ref_{row.key}_reference"] = float(row.reference)
    trusted, failed = [], []
    for row in acc.itertuples():
        key = f"{row.condition}_{_key(row.measure)}"
        for col in ("accuracy", "ci_low", "ci_high", "accuracy_pm1", "chance"):
            meta[f"{key}_{col}"] = float(getattr(row, col))
        if row.condition == "trained":
            meta.setdefault("identification_keys", []).append([row.measure, key])
            meta[f"{key}_paper_table2"] = (None if pd.isna(row.paper_table2)
                                           else float(row.paper_table2))
            meta[f"{key}_ci_low_pm1"] = float(row.ci_low_pm1)
            meta[f"{key}_ci_high_pm1"] = float(row.ci_high_pm1)
            init = acc[(acc["condition"] == "init") & (acc["measure"] == row.measure)]
            meta[f"{key}_untrained"] = float(init["accuracy"].iloc[0]) if len(init) else None
            beats = bool(row.ci_low > row.chance)
            reliable = bool(row.accuracy >= RELIABLE)
            meta[f"{key}_beats_chance"] = beats
            meta[f"{key}_reliable"] = reliable
            (trusted if reliable and beats else failed).append(row.measure)
    meta["identifies_reliably"] = trusted
    meta["identifies_poorly"] = failed
    meta["chance"] = float(acc["chance"].iloc[0])
    best = acc[acc["condition"] == "trained"].sort_values("accuracy", ascending=False).iloc[0]
    meta["best_measure"], meta["best_accuracy"] = best["measure"], float(best["accuracy"])
    meta["headline"] = (
        f"Layer identification across {meta['n_seeds']} seeds of a {meta['n_layers']}-block "
        f"KJV transformer: {len(trusted)} of {len(acc[acc['condition'] == 'trained'])} measures "
        f"reach {RELIABLE:.0%} (best {best['measure']} {best['accuracy']:.0%}, chance "
        f"{meta['chance']:.0%}); invariances match their definitions "
        f"{'everywhere' if not meta['invariance_mismatches'] else 'except ' + ', '.join(meta['invariance_mismatches'])}.")
    meta["verdicts"] = measure_verdicts(inv, acc, meta)
    return meta


def measure_verdicts(inv: pd.DataFrame, acc: pd.DataFrame, meta: dict) -> list[list[str]]:
    """One sentence per identification measure: what it is invariant to, whether it identifies
    layers (and whether that survives the untrained control), hence when to trust it.
    A list of ``[measure, sentence]`` in :data:`IDENTIFICATION` order."""
    out = []
    for row in acc[acc["condition"] == "trained"].itertuples():
        cells = inv[inv["measure"] == row.registry]
        keeps = [t.replace("_", " ") for t, ok in zip(cells["transform"], cells["invariant"])
                 if ok and t != "row_shuffle"]
        moves = [t.replace("_", " ") for t, ok in zip(cells["transform"], cells["invariant"])
                 if not ok and t != "row_shuffle"]
        init = acc[(acc["condition"] == "init") & (acc["measure"] == row.measure)]
        init_note = ""
        if len(init):
            init_note = f"; untrained twins {init['accuracy'].iloc[0]:.0%}"
        ident = (f"identifies layers {row.accuracy:.0%} [{fmt(row.ci_low, '.0%')}, "
                 f"{fmt(row.ci_high, '.0%')}] "
                 f"(chance {row.chance:.0%}; +-1 layer {row.accuracy_pm1:.0%}{init_note})")
        if not meta["gate_passed"]:
            use = "no verdict on identification: the models failed the capability gate"
        elif row.accuracy >= RELIABLE and row.ci_low > row.chance:
            use = "trust it to match layers across seeds"
        elif row.ci_low > row.chance:
            use = "above chance but not reliable: trust only coarse depth (+-1 layer)"
        else:
            use = "not distinguishable from chance here: do not use it to match layers"
        out.append([row.measure, f"invariant to {', '.join(keeps) or 'none of the transforms'}"
                            f"{'; moved by ' + ', '.join(moves) if moves else ''}; {ident}: {use}."])
    return out


def verdict(meta: dict) -> str:
    lines = [meta["headline"]]
    if not meta["gate_passed"]:
        lines.append(f"Capability gate FAILED: a model's validation perplexity "
                     f"({meta['val_ppl_max']:.0f}) is not below {meta['gate_ratio']} x the "
                     f"unigram model's ({meta['unigram_ppl']:.0f}); identification is not "
                     f"interpretable at this profile.")
    if not meta["reference_all_agree"]:
        lines.append("Reference values NOT reproduced: " + "; ".join(meta["reference_failed"]))
    lines += [f"- {m}: {v}" for m, v in meta["verdicts"]]
    return "\n".join(lines)
