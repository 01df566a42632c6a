"""07_finetuning_topology: does topology change mostly early in fine-tuning?

Seed 004 (arXiv 2606.19542) reports, for 1-7B models under supervised fine-tuning, that most
topological reorganisation of the activations happens early (a transient peak, then
stabilisation) and that objectives leave distinguishable trajectories. This module runs the
protocol at CPU scale and adds the controls that could refute it.

Protocol (faithful):

- a fixed evaluation set: validation snippets of each corpus (KJV verses, fortunes, WordNet
  glosses; ``n_per_corpus`` each), final-token hidden states at 5 evenly spaced layers;
- per checkpoint, ``n_subsamples`` *disjoint* subsamples of ``m`` prompts (the same prompts
  at every checkpoint); Vietoris-Rips persistence up to H1 (ripser, raw Euclidean distances);
  the 41-feature barcode summary of each;
- topological velocity ``v_t = W2(H1_t, H1_{t+1})``: order-2 Wasserstein distance between H1
  diagrams with persim's construction (L2 ground metric between (birth, death) points; a point
  matched to the diagonal costs ``(death - birth) / sqrt 2``), averaged over subsamples;
- concentration ``C = Σ_{t ≤ T/3} v_t / Σ_t v_t`` against a checkpoint-permutation null
  (:func:`resonance.stats.checkpoint_permutation_null`; seeds averaged, draw by draw).

Set-up: a base GPT-2 (d128/L4, the shared in-house recipe) trained on KJV, fine-tuned from its
last checkpoint on each objective (``kjv``: continued in-domain training, the control;
``fortunes``; ``wordnet`` glosses; ``mix``: fortunes and glosses, half each) for ``n_seeds``
seeds, under two schedules (``cosine``: warmup then cosine decay; ``constant``: the same
warmup, then flat), with ``n_checkpoints`` evenly spaced checkpoints after the base.

Controls, each with its own C against the same permutation null:

- ``gauss``: the same pipeline on isotropic Gaussian clouds matched to each subsample in shape
  (m x d) and scale (mean and total variance), drawn afresh at every checkpoint: what scale
  changes and sampling noise alone give;
- geometry of the full evaluation cloud: ``centroid`` (distance between centroids),
  ``total_variance`` and ``mean_distance`` (absolute differences), ``cka`` (1 - debiased
  linear CKA), ``params`` (L2 distance between weight vectors), ``js`` (mean Jensen-Shannon
  divergence of the next-token distributions at the prompts' final tokens: behaviour);
- the W2 noise floor: W2 between the disjoint subsamples of one checkpoint;
- objective classification: logistic regression, leave one seed out, from the summary-feature
  trajectories vs from geometric trajectories, against a label-permutation null that permutes
  objectives between whole runs within each seed;
- validation loss on each corpus' held-out text at every checkpoint.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .. import finetune as ft
from .. import similarity, stats, stimuli, store, topology, train
from ..store import Bundle
from ..topology.persistence import ripser_distance_matrix
from .common import RECIPE, profile_config

NAME = "07_finetuning_topology"
VERSION = 1

OBJECTIVES = {"kjv": ("kjv",), "fortunes": ("fortunes",), "wordnet": ("wordnet",),
              "mix": ("fortunes", "wordnet")}
CONTROL_OBJECTIVE = "kjv"
EVAL_CORPORA = ("kjv", "fortunes", "wordnet")
SCHEDULES = ("cosine", "constant")
TOPOLOGY = "topology"
MEASURES = (TOPOLOGY, "gauss", "centroid", "total_variance", "mean_distance", "cka", "params",
            "js")
LAYERLESS = ("params", "js")  # one value per checkpoint pair, not per layer
GEOMETRY_FEATURES = ("centroid_drift", "total_variance", "mean_distance")
TRAJECTORY_FEATURES = ("h1_bar_count", "h1_total_persistence", "h1_persistence_mean",
                       "h0_death_mean")

# The base model's recipe: the shared in-house recipe as it was when these results were computed
# (``common.RECIPE["paper"]`` has since been halved to 200k tokens for 01/02's budget). Pinned
# so the committed results stay valid; switching to the current shared recipe retrains the
# base and all 16 fine-tuning runs (~17 CPU-minutes).
BASE_RECIPE = {"corpus": "kjv", "vocab_size": 4096, "context": 128, "tokens": 400_000,
               "batch_size": 16, "lr": 2e-3, "warmup": 30, "eval_every": 25,
               "eval_tokens": 32_768}

SIZES = {
    "smoke": {"base": [32, 2], "recipe": RECIPE["smoke"], "objectives": ["kjv", "fortunes"],
              "n_seeds": 2, "schedules": list(SCHEDULES), "steps": 12, "batch_size": 4,
              "lr": 1e-3, "warmup": 2, "n_checkpoints": 12, "n_per_corpus": 40,
              "max_words": 12, "m": 40, "n_subsamples": 2, "n_layers_probe": 3,
              "eval_tokens": 1024, "n_perm": 199, "n_perm_class": 19, "n_jobs": 1},
    "paper": {"base": [128, 4], "recipe": BASE_RECIPE, "objectives": list(OBJECTIVES),
              "n_seeds": 2, "schedules": list(SCHEDULES), "steps": 60, "batch_size": 8,
              "lr": 1e-3, "warmup": 5, "n_checkpoints": 12, "n_per_corpus": 171,
              "max_words": 12, "m": 160, "n_subsamples": 3, "n_layers_probe": 5,
              "eval_tokens": 2048, "n_perm": 2000, "n_perm_class": 199, "n_jobs": 3},
}


# --------------------------------------------------------------------------------------------
# Config


def run(profile: str = "paper", seed: int = 0, force: bool = False, **overrides: Any) -> Bundle:
    config = profile_config(SIZES, profile, seed, overrides, VERSION)
    validate_config(config)
    return store.cached(NAME, profile, config, compute, force=force)


def validate_config(config: Mapping[str, Any]) -> None:
    """Raise a ValueError naming the problem when ``config`` cannot give a sound experiment."""
    bad = [o for o in config["objectives"] if o not in OBJECTIVES]
    if bad:
        raise ValueError(f"unknown objectives {bad}; choose from {sorted(OBJECTIVES)}")
    if len(config["objectives"]) < 2:
        raise ValueError("need at least two objectives to classify them")
    bad = [s for s in config["schedules"] if s not in SCHEDULES]
    if bad or not config["schedules"]:
        raise ValueError(f"schedules must be a non-empty subset of {SCHEDULES}, got "
                         f"{config['schedules']}")
    if not isinstance(config["n_seeds"], int) or config["n_seeds"] < 2:
        raise ValueError("n_seeds must be an integer >= 2 (leave-one-seed-out classification)")
    if config["n_checkpoints"] < 6:
        raise ValueError("n_checkpoints must be >= 6 so the first third holds >= 2 steps")
    if config["steps"] % config["n_checkpoints"]:
        raise ValueError(f"steps ({config['steps']}) must be a multiple of n_checkpoints "
                         f"({config['n_checkpoints']}): checkpoints are evenly spaced")
    n_prompts = config["n_per_corpus"] * len(EVAL_CORPORA)
    if config["m"] * config["n_subsamples"] > n_prompts:
        raise ValueError(f"{config['n_subsamples']} disjoint subsamples of m={config['m']} need "
                         f"{config['m'] * config['n_subsamples']} prompts; there are {n_prompts}")
    if config["n_subsamples"] < 2:
        raise ValueError("n_subsamples must be >= 2 (the noise floor compares disjoint ones)")
    if config["m"] < 8:
        raise ValueError("m must be >= 8 points for H1")
    if config["n_perm"] < 99 or config["n_perm_class"] < 19:
        raise ValueError("need n_perm >= 99 and n_perm_class >= 19 null draws")
    d, n_layers = config["base"]
    if not 2 <= config["n_layers_probe"] <= n_layers + 1:
        raise ValueError(f"n_layers_probe must be in [2, {n_layers + 1}] for {n_layers} layers")


def base_config(config: Mapping[str, Any]) -> train.TrainConfig:
    d, n_layers = config["base"]
    return train.TrainConfig(family="gpt2", d_model=int(d), n_layers=int(n_layers),
                             seed=int(config["seed"]), **config["recipe"])


def probe_layers(n_layers: int, k: int) -> list[int]:
    """``k`` evenly spaced hidden-state indices in ``0..n_layers`` (0 = embeddings)."""
    ids = sorted({int(round(x)) for x in np.linspace(0, n_layers, k)})
    if len(ids) != k:
        raise ValueError(f"cannot place {k} distinct layers in 0..{n_layers}")
    return ids


def finetune_config(config: Mapping[str, Any], objective: str, seed: int,
                    schedule: str) -> ft.FinetuneConfig:
    return ft.FinetuneConfig(base_config(config), corpora=OBJECTIVES[objective],
                             steps=int(config["steps"]), batch_size=int(config["batch_size"]),
                             lr=float(config["lr"]), warmup=int(config["warmup"]),
                             schedule=schedule, n_checkpoints=int(config["n_checkpoints"]),
                             seed=int(seed))


def runs(config: Mapping[str, Any]) -> list[dict]:
    return [{"objective": o, "seed": int(config["seed"]) + i, "schedule": s}
            for o in config["objectives"] for s in config["schedules"]
            for i in range(config["n_seeds"])]


# --------------------------------------------------------------------------------------------
# Per-checkpoint pipeline (library-level pieces live in resonance.topology / resonance.stats)


def evaluation_prompts(config: Mapping[str, Any]) -> stimuli.Stimuli:
    """Validation snippets of each evaluation corpus, labelled by corpus (never trained on)."""
    parts = [stimuli.corpus_stimuli(c, n=int(config["n_per_corpus"]),
                                    max_words=int(config["max_words"]), seed=int(config["seed"]))
             for c in EVAL_CORPORA]
    texts = [t for p in parts for t in p.texts]
    labels = [c for c, p in zip(EVAL_CORPORA, parts) for _ in p.texts]
    return stimuli.Stimuli("07-eval-prompts", texts, None, labels)


def disjoint_subsamples(n: int, m: int, k: int, seed: int) -> list[np.ndarray]:
    """``k`` disjoint random subsets of ``m`` of ``n`` rows (sorted), fixed by ``seed``."""
    if m * k > n:
        raise ValueError(f"{k} disjoint subsets of {m} need {m * k} rows, got {n}")
    perm = np.random.default_rng([seed, 0x07]).permutation(n)
    return [np.sort(perm[i * m:(i + 1) * m]) for i in range(k)]


@torch.no_grad()
def final_token_states(model, tokenizer, texts: Sequence[str], layers: Sequence[int],
                       batch_size: int = 64) -> tuple[list[np.ndarray], np.ndarray]:
    """Final-token hidden states ``[(n, d)] per layer`` and next-token log-probs ``(n, vocab)``."""
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    if min(len(i) for i in ids) < 1:
        raise ValueError("an evaluation prompt tokenizes to nothing")
    states = [[] for _ in layers]
    logp = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        width = max(len(i) for i in chunk)
        x = torch.zeros((len(chunk), width), dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, seq in enumerate(chunk):
            x[r, :len(seq)] = torch.as_tensor(seq)
            mask[r, :len(seq)] = 1
        # The body for hidden states; the LM head only at the final tokens (GPT-2 layout).
        out = model.transformer(input_ids=x, attention_mask=mask, output_hidden_states=True)
        last = mask.sum(1) - 1
        rows = torch.arange(len(chunk))
        for slot, layer in enumerate(layers):
            states[slot].append(out.hidden_states[layer][rows, last].double().numpy())
        logits = model.lm_head(out.hidden_states[-1][rows, last])
        logp.append(torch.log_softmax(logits.double(), -1).numpy())
    return [np.concatenate(s) for s in states], np.concatenate(logp)


def js_divergence(logp: np.ndarray, logq: np.ndarray) -> float:
    """Mean Jensen-Shannon divergence (nats) between rows of two log-prob arrays ``(n, V)``."""
    p, q = np.exp(logp), np.exp(logq)
    logm = np.log(0.5 * (p + q) + 1e-300)
    kl_pm = np.sum(p * (logp - logm), axis=1)
    kl_qm = np.sum(q * (logq - logm), axis=1)
    return float(np.mean(0.5 * (kl_pm + kl_qm)))


def h1_and_summary(X: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """H1 diagram and 41-feature summary of the Rips filtration on raw distances of ``X``."""
    from sklearn.metrics import pairwise_distances

    dgms = ripser_distance_matrix(pairwise_distances(X), 1)
    return dgms[1], topology.persistence_summary(dgms)


def w2_matrix(diagrams: Sequence[np.ndarray]) -> np.ndarray:
    """Symmetric matrix ``(T+1, T+1)`` of order-2 Wasserstein distances between diagrams."""
    n = len(diagrams)
    D = np.zeros((n, n))
    for i, j in itertools.combinations(range(n), 2):
        D[i, j] = D[j, i] = topology.diagram_distance(diagrams[i], diagrams[j], order=2)
    return D


def _abs_diff(values: Sequence[float]) -> np.ndarray:
    v = np.asarray(values, float)
    return np.abs(v[:, None] - v[None, :])


def _euclid(rows: np.ndarray) -> np.ndarray:
    from scipy.spatial.distance import cdist

    return cdist(rows, rows)


def _mean_distance(X: np.ndarray) -> float:
    from scipy.spatial.distance import pdist

    return float(pdist(X).mean())


def _upper(D: np.ndarray, steps: Sequence[int], **cols: Any) -> list[dict]:
    return [{**cols, "step_a": steps[i], "step_b": steps[j], "value": float(D[i, j])}
            for i, j in itertools.combinations(range(len(steps)), 2)]


def process_run(config: Mapping[str, Any], objective: str, seed: int, schedule: str,
                texts: Sequence[str], subsets: Sequence[np.ndarray]) -> dict[str, list[dict]]:
    """Fine-tune one run and measure every checkpoint; rows for each long table.

    The rows are cached beside the fine-tuning run (keyed by everything that shapes them),
    so an interrupted experiment resumes run by run.
    """
    import pickle

    key = store.config_hash({"config": {k: v for k, v in config.items() if k != "n_jobs"},
                             "run": [objective, seed, schedule], "texts": list(texts),
                             "subsets": [s.tolist() for s in subsets]})
    path = ft.finetune_dir(finetune_config(config, objective, seed, schedule)) \
        / f"measures-{NAME}-{key}.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    out = _measure_run(config, objective, seed, schedule, texts, subsets)
    with store.atomic_path(path) as tmp:
        tmp.write_bytes(pickle.dumps(out))
    return out


def _measure_run(config: Mapping[str, Any], objective: str, seed: int, schedule: str,
                 texts: Sequence[str], subsets: Sequence[np.ndarray]) -> dict[str, list[dict]]:
    torch.set_num_threads(1)
    run_cfg = finetune_config(config, objective, seed, schedule)
    fr = ft.finetune(run_cfg, threads=1)
    base = base_config(config)
    layers = probe_layers(base.n_layers, int(config["n_layers_probe"]))
    tok = fr.tokenizer
    val = {c: train._val_windows(np.asarray(s.numpy()), ft_eval_config(base, config))
           for c, s in zip(EVAL_CORPORA, ft.token_streams(EVAL_CORPORA, "validation", tok))}
    steps = run_cfg.checkpoint_steps
    cols = {"objective": objective, "seed": seed, "schedule": schedule}
    rng = np.random.default_rng([seed, 0x6A55, SCHEDULES.index(schedule),
                                 list(OBJECTIVES).index(objective)])
    h1 = {(l, b): [] for l in layers for b in range(len(subsets))}
    gh1 = {l: [] for l in layers}  # Gaussian control on the first subsample (cost: 200+ bars)
    clouds: dict[int, list[np.ndarray]] = {l: [] for l in layers}
    params, logps = [], []
    out: dict[str, list[dict]] = {"features": [], "geometry": [], "behaviour": [],
                                  "noise_floor": [], "distances": []}
    for step in steps:
        model = fr.load(step)
        states, logp = final_token_states(model, tok, texts, layers)
        logps.append(logp.astype(np.float32))
        params.append(fr.parameters(step))
        for c, w in val.items():
            out["behaviour"].append({**cols, "step": step, "corpus": c,
                                     "val_loss": train.evaluate(model, w)})
        for l, X in zip(layers, states):
            clouds[l].append(X)
            for b, s in enumerate(subsets):
                Xs = X[s]
                dgm, summary = h1_and_summary(Xs)
                h1[l, b].append(dgm)
                if b == 0:
                    gh1[l].append(h1_and_summary(stats.gaussian_like(Xs, rng))[0])
                centred = Xs - Xs.mean(0)
                out["features"].append({**cols, "step": step, "layer": l, "subsample": b,
                                        **summary})
                out["geometry"].append({**cols, "step": step, "layer": l, "subsample": b,
                                        "centroid_x": Xs.mean(0),
                                        "total_variance": float((centred ** 2).sum(1).mean()),
                                        "mean_distance": _mean_distance(Xs)})
            pairs = list(itertools.combinations(range(len(subsets)), 2))
            floor = np.mean([topology.diagram_distance(h1[l, a][-1], h1[l, b][-1], order=2)
                             for a, b in pairs])
            out["noise_floor"].append({**cols, "step": step, "layer": l, "w2": float(floor)})
    # Centroid drift of each subsample from the base checkpoint (a geometric trajectory).
    base_centroid = {}
    for row in out["geometry"]:
        key = (row["layer"], row["subsample"])
        if row["step"] == steps[0]:
            base_centroid[key] = row["centroid_x"]
        row["centroid_drift"] = float(np.linalg.norm(row.pop("centroid_x") - base_centroid[key]))
    for l in layers:
        topo = np.mean([w2_matrix(h1[l, b]) for b in range(len(subsets))], axis=0)
        gauss = w2_matrix(gh1[l])
        X = clouds[l]
        cka = np.zeros((len(steps), len(steps)))
        for i, j in itertools.combinations(range(len(steps)), 2):
            cka[i, j] = cka[j, i] = max(0.0, 1.0 - similarity.cka(X[i], X[j], debiased=True))
        mats = {TOPOLOGY: topo, "gauss": gauss,
                "centroid": _euclid(np.stack([x.mean(0) for x in X])),
                "total_variance": _abs_diff([((x - x.mean(0)) ** 2).sum(1).mean() for x in X]),
                "mean_distance": _abs_diff([_mean_distance(x) for x in X]), "cka": cka}
        for measure, D in mats.items():
            out["distances"] += _upper(D, steps, **cols, measure=measure, layer=l)
    js = np.zeros((len(steps), len(steps)))
    for i, j in itertools.combinations(range(len(steps)), 2):
        js[i, j] = js[j, i] = js_divergence(logps[i].astype(np.float64),
                                            logps[j].astype(np.float64))
    out["distances"] += _upper(js, steps, **cols, measure="js", layer=-1)
    out["distances"] += _upper(_euclid(np.stack(params)), steps, **cols, measure="params",
                               layer=-1)
    return out


def ft_eval_config(base: train.TrainConfig, config: Mapping[str, Any]) -> train.TrainConfig:
    """The base config with the experiment's validation budget (windows of the base context)."""
    from dataclasses import replace

    return replace(base, eval_tokens=int(config["eval_tokens"]))


def unigram_loss(corpus: str, tokenizer) -> float:
    """Cross-entropy (nats/token) of ``corpus``' validation tokens under its training unigram
    distribution (add-one smoothed): the capability gate's reference."""
    from .. import data

    tr = np.asarray(data.token_stream(corpus, "train", tokenizer))
    va = np.asarray(data.token_stream(corpus, "validation", tokenizer))
    counts = np.bincount(tr, minlength=len(tokenizer)) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[va].mean())


# --------------------------------------------------------------------------------------------
# Compute


def compute(config: dict) -> tuple[dict[str, pd.DataFrame], dict]:
    prompts = evaluation_prompts(config)
    subsets = disjoint_subsamples(len(prompts), int(config["m"]), int(config["n_subsamples"]),
                                  int(config["seed"]))
    base_run = train.train(base_config(config), progress=False, threads=1)
    jobs = runs(config)
    args = [(config, j["objective"], j["seed"], j["schedule"], prompts.texts, subsets)
            for j in jobs]
    n_jobs = int(config.get("n_jobs", 1))
    if n_jobs > 1:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=n_jobs, backend="loky")(delayed(process_run)(*a) for a in args)
    else:
        results = [process_run(*a) for a in args]
    tables = {name: pd.DataFrame([row for r in results for row in r[name]])
              for name in ("distances", "features", "geometry", "behaviour", "noise_floor")}
    base_val = float(base_run.history["val_loss"].iloc[-1])
    tables["base"] = pd.DataFrame([{
        "corpus": c, "unigram_loss": unigram_loss(c, base_run.tokenizer),
        "base_val_loss": float(tables["behaviour"].query("step == 0 and corpus == @c")
                               ["val_loss"].iloc[0])} for c in EVAL_CORPORA])
    tables["base"]["base_train_val_loss"] = base_val
    tables.update(derived_tables(tables, config))
    return tables, summarise(tables, config)


def derived_tables(tables: Mapping[str, pd.DataFrame],
                   config: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """Velocities, concentration with nulls, early-vs-late effect sizes, velocity null bands."""
    vel = velocity_table(tables["distances"])
    return {"velocity": vel,
            "concentration": concentration_table(tables["distances"], int(config["n_perm"]),
                                                 int(config["seed"])),
            "effects": effect_sizes(vel), "velocity_null": velocity_null_band(tables["distances"])}


def velocity_null_band(distances: pd.DataFrame) -> pd.DataFrame:
    """What ``v_t`` looks like under the checkpoint-permutation null: the 2.5 / 50 / 97.5 %
    quantiles of distances between *all* checkpoint pairs (a permuted path steps between
    random pairs), per objective, schedule, measure and layer, seeds pooled."""
    g = distances.groupby(["objective", "schedule", "measure", "layer"])["value"]
    return pd.DataFrame({"null_low": g.quantile(0.025), "null_median": g.median(),
                         "null_high": g.quantile(0.975)}).reset_index()


# --------------------------------------------------------------------------------------------
# Summaries (everything the notebook and the paper quote)


def distance_matrix(rows: pd.DataFrame) -> tuple[list[int], np.ndarray]:
    """The symmetric matrix of one (run, measure, layer) from its upper-triangle rows."""
    steps = sorted(set(rows["step_a"]) | set(rows["step_b"]))
    pos = {s: i for i, s in enumerate(steps)}
    D = np.zeros((len(steps), len(steps)))
    for a, b, v in zip(rows["step_a"], rows["step_b"], rows["value"]):
        D[pos[a], pos[b]] = D[pos[b], pos[a]] = v
    if len(rows) != len(steps) * (len(steps) - 1) // 2:
        raise ValueError(f"distance rows do not cover every pair of the {len(steps)} checkpoints")
    return steps, D


def velocity_table(distances: pd.DataFrame) -> pd.DataFrame:
    """Consecutive-checkpoint distances ``v_t`` per run, measure and layer (t = 1..T)."""
    parts = []
    for key, g in distances.groupby(["objective", "seed", "schedule", "measure", "layer"]):
        steps, D = distance_matrix(g)
        v = stats.path_velocity(D)
        parts.append(pd.DataFrame({"objective": key[0], "seed": key[1], "schedule": key[2],
                                   "measure": key[3], "layer": key[4], "t": np.arange(1, len(v) + 1),
                                   "step": steps[1:], "velocity": v}))
    if not parts:
        raise ValueError("no distance rows to take velocities from")
    return pd.concat(parts, ignore_index=True)


def concentration_table(distances: pd.DataFrame, n_perm: int, seed: int = 0) -> pd.DataFrame:
    """C (mean over seeds) and its checkpoint-permutation null per objective, schedule,
    measure and layer; the null averages the seeds' permuted C draw by draw."""
    rows = []
    for key, g in distances.groupby(["objective", "schedule", "measure", "layer"]):
        observed, nulls = [], []
        for s, gs in g.groupby("seed"):
            _, D = distance_matrix(gs)
            observed.append(stats.concentration(stats.path_velocity(D)))
            nulls.append(stats.checkpoint_permutation_null(D, n_perm, seed=int(s) + 7919 * seed))
        T = D.shape[0] - 1
        share = int(np.floor(T / 3 + 1e-9)) / T
        res = stats.null_summary(float(np.mean(observed)), np.mean(nulls, axis=0), share)
        rows.append({"objective": key[0], "schedule": key[1], "measure": key[2],
                     "layer": key[3], **res, "C_min": float(np.min(observed)),
                     "C_max": float(np.max(observed)), "n_seeds": len(observed)})
    table = pd.DataFrame(rows)
    table["significant"] = table["p_value"] < 0.05
    return table


def effect_sizes(velocity: pd.DataFrame) -> pd.DataFrame:
    """Early (t ≤ T/3) vs late velocities per objective, schedule, measure, layer (seeds
    pooled; velocities normalised by each run's mean so seeds weigh alike): Hedges' g and
    Cliff's δ."""
    rows = []
    for key, g in velocity.groupby(["objective", "schedule", "measure", "layer"]):
        T = int(g["t"].max())
        k = int(np.floor(T / 3 + 1e-9))
        v = g["velocity"] / g.groupby("seed")["velocity"].transform("mean")
        early, late = v[g["t"] <= k].to_numpy(), v[g["t"] > k].to_numpy()
        rows.append({"objective": key[0], "schedule": key[1], "measure": key[2],
                     "layer": key[3], "hedges_g": stats.hedges_g(early, late),
                     "cliffs_delta": stats.cliffs_delta(early, late)})
    return pd.DataFrame(rows)


def trajectory_matrix(table: pd.DataFrame, columns: Sequence[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Rows (objective, seed, schedule, subsample); features: each column's change from the
    base checkpoint at every later checkpoint and layer (standardised later)."""
    keys = ["objective", "seed", "schedule", "subsample"]
    t = table.sort_values(keys + ["layer", "step"])
    base = t[t["step"] == t["step"].min()].set_index(keys + ["layer"])[list(columns)]
    later = t[t["step"] > t["step"].min()]
    delta = later.set_index(keys + ["layer", "step"])[list(columns)]
    delta = delta - base.reindex(delta.index.droplevel("step")).to_numpy()
    wide = delta.unstack(["layer", "step"])
    wide = wide.loc[:, wide.std(axis=0) > 0]
    labels = wide.index.to_frame(index=False)
    return wide.to_numpy(dtype=float), labels


def _loso_accuracy(X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    from sklearn.neighbors import NearestCentroid
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classes = np.unique(y)
    pred = np.empty_like(y)
    for g in np.unique(groups):
        test = groups == g
        clf = make_pipeline(StandardScaler(), NearestCentroid())
        with warnings.catch_warnings():  # constant features within a class: harmless here
            warnings.filterwarnings("ignore", message=".*zero standard deviation",
                                    category=UserWarning)
            clf.fit(X[~test], y[~test])
        pred[test] = clf.predict(X[test])
    return float(np.mean([np.mean(pred[y == c] == c) for c in classes]))


def objective_classification(X: np.ndarray, labels: pd.DataFrame, n_perm: int,
                             seed: int = 0) -> dict[str, float]:
    """Leave-one-seed-out balanced accuracy of the objective from trajectories ``X``.

    The classifier is nearest-centroid on standardised features (scaler fitted on the
    training seed): there are far more features (feature x layer x checkpoint) than rows,
    where a centroid rule is fast, needs no tuning and handles any number of classes.

    Null: the objectives are permuted between whole runs (all subsamples of a run keep one
    label) within each seed and schedule, and the whole cross-validation is repeated.
    """
    y = labels["objective"].to_numpy()
    groups = labels["seed"].to_numpy()
    observed = _loso_accuracy(X, y, groups)
    run_id = labels[["seed", "schedule", "objective"]].astype(str).agg("|".join, axis=1).to_numpy()
    rng = np.random.default_rng([seed, 0xC1A55])
    null = np.empty(n_perm)
    for k in range(n_perm):
        y_perm = y.copy()
        for (_, _), block in labels.groupby(["seed", "schedule"]).groups.items():
            block = np.asarray(block)
            runs_here = np.unique(run_id[block])
            objs = np.array([y[block][run_id[block] == r][0] for r in runs_here])
            mapping = dict(zip(runs_here, rng.permutation(objs)))
            y_perm[block] = [mapping[r] for r in run_id[block]]
        null[k] = _loso_accuracy(X, y_perm, groups)
    return {"accuracy": observed, "chance": 1 / len(np.unique(y)),
            "null_mean": float(null.mean()), "null_high": float(np.quantile(null, 0.95)),
            "p_value": float((1 + np.sum(null >= observed - 1e-12)) / (1 + n_perm)),
            "n_perm": int(n_perm), "n_rows": int(len(y)), "n_features": int(X.shape[1])}


def summarise(tables: Mapping[str, pd.DataFrame], config: Mapping[str, Any]) -> dict:
    """Every number the notebook and the paper quote; see :func:`verdict`."""
    dist = tables["distances"]
    if "concentration" not in tables:
        tables = {**tables, **derived_tables(tables, config)}
    vel, conc, eff = tables["velocity"], tables["concentration"], tables["effects"]
    objectives = [o for o in config["objectives"] if o != CONTROL_OBJECTIVE]
    primary = conc.query("measure == @TOPOLOGY and schedule == 'cosine' "
                         "and objective in @objectives").copy()
    primary["p_holm"] = stats.holm(primary["p_value"])
    meta: dict[str, Any] = {"n_runs": int(dist[["objective", "seed", "schedule"]]
                                          .drop_duplicates().shape[0]),
                            "n_checkpoints": int(config["n_checkpoints"]) + 1,
                            "n_prompts": int(config["n_per_corpus"]) * len(EVAL_CORPORA),
                            "uniform_share": float(conc["uniform"].iloc[0]),
                            "n_perm": int(config["n_perm"])}
    # C and null per objective x layer x schedule x measure (flat keys for the paper).
    for r in conc.itertuples():
        key = f"{r.measure}_{r.schedule}_{r.objective}_L{r.layer}" if r.layer >= 0 \
            else f"{r.measure}_{r.schedule}_{r.objective}"
        meta[f"C_{key}"] = r.C
        meta[f"null_high_{key}"] = r.null_high
        meta[f"p_{key}"] = r.p_value
    for sched in config["schedules"]:
        for measure in MEASURES:
            sel = conc.query("measure == @measure and schedule == @sched "
                             "and objective in @objectives")
            if len(sel):
                meta[f"C_mean_{measure}_{sched}"] = float(sel["C"].mean())
                meta[f"frac_sig_{measure}_{sched}"] = float(sel["significant"].mean())
                meta[f"null_high_mean_{measure}_{sched}"] = float(sel["null_high"].mean())
    meta["primary_cells"] = int(len(primary))
    meta["primary_sig"] = int((primary["p_value"] < 0.05).sum())
    meta["primary_sig_holm"] = int((primary["p_holm"] < 0.05).sum())
    # Is topology more front-loaded than the geometry of the same clouds? Cell by cell.
    topo = conc.query("measure == @TOPOLOGY").set_index(["objective", "schedule", "layer"])["C"]
    for measure in ("gauss", "centroid", "total_variance", "mean_distance", "cka"):
        other = conc.query("measure == @measure").set_index(["objective", "schedule", "layer"])["C"]
        diff = (topo - other.reindex(topo.index)).dropna()
        meta[f"topo_minus_{measure}_mean"] = float(diff.mean())
        meta[f"topo_above_{measure}_frac"] = float((diff > 0).mean())
    # Schedule: constant vs cosine, same cells.
    if {"cosine", "constant"} <= set(config["schedules"]):
        tc = topo.unstack("schedule").query("objective in @objectives")
        meta["topo_cosine_minus_constant"] = float((tc["cosine"] - tc["constant"]).mean())
        meta["topo_constant_above_cosine_frac"] = float((tc["constant"] > tc["cosine"]).mean())
    # Effect sizes, primary cells.
    pe = eff.query("measure == @TOPOLOGY and schedule == 'cosine' and objective in @objectives")
    meta["hedges_g_median"] = float(pe["hedges_g"].median())
    meta["cliffs_delta_median"] = float(pe["cliffs_delta"].median())
    # Noise floor: topological velocity relative to W2 between disjoint subsamples.
    nf = tables["noise_floor"].groupby(["objective", "schedule", "layer"])["w2"].mean()
    tv = vel.query("measure == @TOPOLOGY").groupby(["objective", "schedule", "layer"])["velocity"]
    ratio = (tv.median() / nf.reindex(tv.median().index))
    meta["velocity_over_floor_median"] = float(ratio.median())
    meta["velocity_over_floor_min"] = float(ratio.min())
    late = vel.query("measure == @TOPOLOGY")
    late = late[late["t"] > late["t"].max() * 2 / 3]
    late_ratio = late.groupby(["objective", "schedule", "layer"])["velocity"].median() \
        / nf.reindex(late.groupby(["objective", "schedule", "layer"])["velocity"].median().index)
    meta["late_velocity_over_floor_median"] = float(late_ratio.median())
    # Classification of the objective from trajectories.
    X_t, lab_t = trajectory_matrix(tables["features"], topology.SUMMARY_FEATURES)
    X_g, lab_g = trajectory_matrix(tables["geometry"], GEOMETRY_FEATURES)
    for name, X, lab in (("topology", X_t, lab_t), ("geometry", X_g, lab_g)):
        res = objective_classification(X, lab, int(config["n_perm_class"]), int(config["seed"]))
        for k, v in res.items():
            meta[f"class_{name}_{k}"] = v
    # Behaviour: fine-tuning moves the model (loss on the objective's own held-out text).
    beh = tables["behaviour"]
    last = beh["step"].max()
    for o in config["objectives"]:
        own = [c for c in OBJECTIVES[o]]
        sel = beh[(beh["objective"] == o) & beh["corpus"].isin(own)]
        start = sel[sel["step"] == 0]["val_loss"].mean()
        end = sel[sel["step"] == last]["val_loss"].mean()
        meta[f"val_loss_start_{o}"] = float(start)
        meta[f"val_loss_end_{o}"] = float(end)
    base = tables["base"].set_index("corpus")
    meta["base_val_loss_kjv"] = float(base.loc["kjv", "base_val_loss"])
    meta["unigram_loss_kjv"] = float(base.loc["kjv", "unigram_loss"])
    meta["capability_gate"] = bool(meta["base_val_loss_kjv"] < meta["unigram_loss_kjv"] - 0.5)
    meta["finetune_moves"] = bool(all(meta[f"val_loss_end_{o}"] < meta[f"val_loss_start_{o}"]
                                      for o in objectives))
    # Behavioural velocity concentration.
    meta["headline"] = headline(meta, config)
    meta["verdict"] = verdict(meta)
    return meta


def _claim_holds(meta: Mapping[str, Any]) -> bool:
    return meta["primary_sig_holm"] >= max(1, meta["primary_cells"] // 2)


def _explained_by_schedule(meta: Mapping[str, Any]) -> bool:
    return ("frac_sig_topology_constant" in meta
            and meta["frac_sig_topology_constant"] < 0.5 <= meta["frac_sig_topology_cosine"])


def headline(meta: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    c = meta["C_mean_topology_cosine"]
    null = meta["null_high_mean_topology_cosine"]
    parts = [f"topological concentration C = {c:.2f} (uniform {meta['uniform_share']:.2f}, "
             f"null 97.5 % {null:.2f}) under warmup+cosine; "
             f"{meta['primary_sig_holm']}/{meta['primary_cells']} objective x layer cells "
             "front-loaded after Holm"]
    if "C_mean_topology_constant" in meta:
        parts.append(f"{meta['C_mean_topology_constant']:.2f} at constant LR")
    parts.append(f"objective decodable from topology {meta['class_topology_accuracy']:.2f} vs "
                 f"geometry {meta['class_geometry_accuracy']:.2f} (chance "
                 f"{meta['class_topology_chance']:.2f})")
    return "; ".join(parts)


def verdict(meta: Mapping[str, Any]) -> str:
    """The finding in words, chosen by the numbers in ``meta``."""
    lines = []
    if not meta["capability_gate"]:
        lines.append("The base model fails the capability gate (KJV loss not well below a "
                     "unigram model): nothing below is about a trained model.")
    early = _claim_holds(meta)
    lines.append(
        f"Early concentration {'holds' if early else 'does not hold'} under warmup+cosine: "
        f"mean C = {meta['C_mean_topology_cosine']:.2f} against a uniform share of "
        f"{meta['uniform_share']:.2f} (checkpoint-permutation null, 97.5th percentile "
        f"{meta['null_high_mean_topology_cosine']:.2f} on average); "
        f"{meta['primary_sig']} of {meta['primary_cells']} objective x layer cells have "
        f"p < 0.05 ({meta['primary_sig_holm']} after Holm).")
    if "C_mean_topology_constant" in meta:
        if _explained_by_schedule(meta):
            sched = "so the early peak is largely the learning-rate schedule's"
        elif meta["frac_sig_topology_constant"] >= 0.5:
            sched = "so the early concentration is not just the learning-rate decay"
        else:
            sched = "(neither schedule gives a consistent early peak)"
        lines.append(f"At constant LR: mean C = {meta['C_mean_topology_constant']:.2f}, "
                     f"{100 * meta['frac_sig_topology_constant']:.0f} % of cells significant, "
                     f"{sched}.")
    geo = ", ".join(f"{m} {meta[f'C_mean_{m}_cosine']:.2f}"
                    for m in ("gauss", "centroid", "total_variance", "mean_distance", "cka",
                              "params", "js") if f"C_mean_{m}_cosine" in meta)
    lines.append(f"Controls' mean C under warmup+cosine: {geo}.")
    more = meta["topo_minus_cka_mean"] > 0 and meta["topo_above_cka_frac"] > 0.5
    lines.append(
        f"Topology is {'more' if more else 'not more'} front-loaded than the geometry of the "
        f"same clouds (C_topology − C_(1−CKA) = {meta['topo_minus_cka_mean']:+.2f} on average, "
        f"higher in {100 * meta['topo_above_cka_frac']:.0f} % of cells; vs Gaussian-matched "
        f"clouds {meta['topo_minus_gauss_mean']:+.2f}).")
    lines.append(
        f"Median topological velocity is {meta['velocity_over_floor_median']:.2f}x the W2 noise "
        f"floor between disjoint subsamples ({meta['late_velocity_over_floor_median']:.2f}x in "
        "the last third).")
    t_ok = meta["class_topology_p_value"] < 0.05
    g_ok = meta["class_geometry_p_value"] < 0.05
    lines.append(
        f"Objectives are {'distinguishable' if t_ok else 'not distinguishable'} from topological "
        f"trajectories (leave-one-seed-out balanced accuracy {meta['class_topology_accuracy']:.2f}, "
        f"null 95th percentile {meta['class_topology_null_high']:.2f}, p = "
        f"{meta['class_topology_p_value']:.3f}) and {'also' if g_ok else 'not'} from geometric "
        f"ones ({meta['class_geometry_accuracy']:.2f}, null {meta['class_geometry_null_high']:.2f},"
        f" p = {meta['class_geometry_p_value']:.3f}).")
    return " ".join(lines)
