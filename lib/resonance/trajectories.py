"""Trajectories through training checkpoints: how far, how fast, and how early things move.

- per checkpoint: :func:`h1_and_summary` (Rips H1 and the 41-feature barcode summary of a
  cloud), :func:`js_divergence` (behaviour), :func:`geometry_distances` (the cloud's geometry);
- between checkpoints: :func:`w2_matrix` (order-2 Wasserstein between H1 diagrams), kept as
  long upper-triangle rows (:func:`upper_rows`) and read back by :func:`distance_matrix`;
- along the path: :func:`velocity_table` (``v_t`` = distance between consecutive checkpoints),
  :func:`concentration_table` (the share of the path in the first third, against a
  checkpoint-permutation null, :func:`resonance.stats.checkpoint_permutation_null`),
  :func:`velocity_null_band`, :func:`effect_sizes` (early vs late velocities);
- across runs: :func:`trajectory_matrix` and :func:`objective_classification` (which run
  label do trajectories carry, leave one seed out, against a whole-run label permutation).

Long tables have one row per (objective, seed, schedule, measure, layer, step_a, step_b).
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from . import similarity, stats, topology
from .topology.persistence import ripser_distance_matrix


def disjoint_subsamples(n: int, m: int, k: int, seed: int) -> list[np.ndarray]:
    """``k`` disjoint random subsets of ``m`` of ``n`` rows (sorted), fixed by ``seed``."""
    if m * k > n:
        raise ValueError(f"{k} disjoint subsets of {m} need {m * k} rows, got {n}")
    perm = np.random.default_rng([seed, 0x07]).permutation(n)
    return [np.sort(perm[i * m:(i + 1) * m]) for i in range(k)]



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


def abs_diff_matrix(values: Sequence[float]) -> np.ndarray:
    """``|v_i - v_j|`` for every pair of checkpoint values ``(T+1,)``."""
    v = np.asarray(values, float)
    return np.abs(v[:, None] - v[None, :])


def euclidean_matrix(rows: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows ``(T+1, p)`` (e.g. centroids, weight vectors)."""
    from scipy.spatial.distance import cdist

    return cdist(rows, rows)


def mean_distance(X: np.ndarray) -> float:
    """Mean pairwise Euclidean distance of a cloud ``(n, d)``."""
    from scipy.spatial.distance import pdist

    return float(pdist(X).mean())


def geometry_distances(clouds: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Distances between the checkpoints' full clouds ``[(n, d)] * (T+1)`` (the same rows at
    every checkpoint): ``centroid`` (between centroids), ``total_variance`` and
    ``mean_distance`` (absolute differences), ``cka`` (1 - debiased linear CKA, floored at 0)."""
    cka = np.zeros((len(clouds), len(clouds)))
    for i, j in itertools.combinations(range(len(clouds)), 2):
        cka[i, j] = cka[j, i] = max(0.0, 1.0 - similarity.cka(clouds[i], clouds[j],
                                                               debiased=True))
    return {"centroid": euclidean_matrix(np.stack([x.mean(0) for x in clouds])),
            "total_variance": abs_diff_matrix([((x - x.mean(0)) ** 2).sum(1).mean()
                                               for x in clouds]),
            "mean_distance": abs_diff_matrix([mean_distance(x) for x in clouds]), "cka": cka}


def upper_rows(D: np.ndarray, steps: Sequence[int], **cols: Any) -> list[dict]:
    """Long rows (``**cols``, step_a, step_b, value) of the upper triangle of ``D``."""
    return [{**cols, "step_a": steps[i], "step_b": steps[j], "value": float(D[i, j])}
            for i, j in itertools.combinations(range(len(steps)), 2)]



TOPOLOGY = "topology"  # the measure name of the H1 trajectory in the long tables


def _subsample_measures(X: np.ndarray, subsets: Sequence[np.ndarray],
                        rng: np.random.Generator):
    """One cloud ``X (n, d)`` at one checkpoint: per disjoint subsample its H1 diagram, barcode
    summary and geometry (centroid, total variance, mean distance); the H1 diagram of a
    Gaussian cloud matched to the first subsample; the W2 noise floor between subsamples."""
    dgms, features, geometry, gauss = [], [], [], None
    for b, s in enumerate(subsets):
        Xs = X[s]
        dgm, summary = h1_and_summary(Xs)
        dgms.append(dgm)
        if b == 0:  # (a Gaussian control on one subsample: each costs 200+ bars)
            gauss = h1_and_summary(stats.gaussian_like(Xs, rng))[0]
        centred = Xs - Xs.mean(0)
        features.append({"subsample": b, **summary})
        geometry.append({"subsample": b, "centroid_x": Xs.mean(0),
                         "total_variance": float((centred ** 2).sum(1).mean()),
                         "mean_distance": mean_distance(Xs)})
    floor = np.mean([topology.diagram_distance(dgms[a], dgms[b], order=2)
                     for a, b in itertools.combinations(range(len(subsets)), 2)])
    return dgms, gauss, features, geometry, float(floor)


def measure_checkpoints(run, texts: Sequence[str], subsets: Sequence[np.ndarray],
                        layers: Sequence[int], val_windows: dict, rng: np.random.Generator,
                        **cols: Any) -> dict[str, list[dict]]:
    """Measure every checkpoint of a fine-tuning run (:class:`resonance.finetune.FinetunedRun`)
    on the final tokens of ``texts`` at hidden-state ``layers``; rows (with ``**cols``) for the
    long tables ``features`` and ``geometry`` (per subsample), ``behaviour`` (validation loss on
    each corpus of ``val_windows``), ``noise_floor`` and ``distances`` (every measure between
    every pair of checkpoints: :data:`TOPOLOGY` = W2 between H1 diagrams averaged over
    subsamples, ``gauss`` its Gaussian control, :func:`geometry_distances`, ``js`` and
    ``params`` with layer -1)."""
    from . import finetune, train

    steps = run.config.checkpoint_steps
    h1 = {(layer, b): [] for layer in layers for b in range(len(subsets))}
    gh1: dict[int, list] = {layer: [] for layer in layers}
    clouds: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
    params, logps = [], []
    out: dict[str, list[dict]] = {"features": [], "geometry": [], "behaviour": [],
                                  "noise_floor": [], "distances": []}
    for step in steps:
        model = run.load(step)
        states, logp = finetune.final_token_states(model, run.tokenizer, texts, layers)
        logps.append(logp.astype(np.float32))
        params.append(run.parameters(step))
        for c, w in val_windows.items():
            out["behaviour"].append({**cols, "step": step, "corpus": c,
                                     "val_loss": train.evaluate(model, w)})
        for layer, X in zip(layers, states):
            clouds[layer].append(X)
            dgms, gauss, features, geometry, floor = _subsample_measures(X, subsets, rng)
            for b, dgm in enumerate(dgms):
                h1[layer, b].append(dgm)
            gh1[layer].append(gauss)
            at = {**cols, "step": step, "layer": layer}
            out["features"] += [{**at, **row} for row in features]
            out["geometry"] += [{**at, **row} for row in geometry]
            out["noise_floor"].append({**at, "w2": floor})
    base_centroid = {}  # centroid drift of each subsample from the first checkpoint
    for row in out["geometry"]:
        key = (row["layer"], row["subsample"])
        if row["step"] == steps[0]:
            base_centroid[key] = row["centroid_x"]
        row["centroid_drift"] = float(np.linalg.norm(row.pop("centroid_x") - base_centroid[key]))
    for layer in layers:
        topo = np.mean([w2_matrix(h1[layer, b]) for b in range(len(subsets))], axis=0)
        mats = {TOPOLOGY: topo, "gauss": w2_matrix(gh1[layer]),
                **geometry_distances(clouds[layer])}
        for measure, D in mats.items():
            out["distances"] += upper_rows(D, steps, **cols, measure=measure, layer=layer)
    js = np.zeros((len(steps), len(steps)))
    for i, j in itertools.combinations(range(len(steps)), 2):
        js[i, j] = js[j, i] = js_divergence(logps[i].astype(np.float64),
                                            logps[j].astype(np.float64))
    out["distances"] += upper_rows(js, steps, **cols, measure="js", layer=-1)
    out["distances"] += upper_rows(euclidean_matrix(np.stack(params)), steps, **cols,
                                   measure="params", layer=-1)
    return out


def velocity_null_band(distances: pd.DataFrame) -> pd.DataFrame:
    """What ``v_t`` looks like under the checkpoint-permutation null: the 2.5 / 50 / 97.5 %
    quantiles of distances between *all* checkpoint pairs (a permuted path steps between
    random pairs), per objective, schedule, measure and layer, seeds pooled."""
    g = distances.groupby(["objective", "schedule", "measure", "layer"])["value"]
    return pd.DataFrame({"null_low": g.quantile(0.025), "null_median": g.median(),
                         "null_high": g.quantile(0.975)}).reset_index()



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


def loso_accuracy(X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
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
    observed = loso_accuracy(X, y, groups)
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
        null[k] = loso_accuracy(X, y_perm, groups)
    return {"accuracy": observed, "chance": 1 / len(np.unique(y)),
            "null_mean": float(null.mean()), "null_high": float(np.quantile(null, 0.95)),
            "p_value": float((1 + np.sum(null >= observed - 1e-12)) / (1 + n_perm)),
            "n_perm": int(n_perm), "n_rows": int(len(y)), "n_features": int(X.shape[1])}


def path_tables(distances: pd.DataFrame, n_perm: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Everything the long ``distances`` table implies along each path: ``velocity``,
    ``concentration`` (with its null), ``effects`` (early vs late) and ``velocity_null``."""
    vel = velocity_table(distances)
    return {"velocity": vel, "concentration": concentration_table(distances, n_perm, seed),
            "effects": effect_sizes(vel), "velocity_null": velocity_null_band(distances)}


def concentration_meta(conc: pd.DataFrame, objectives: Sequence[str], schedules: Sequence[str],
                       measures: Sequence[str]) -> dict[str, Any]:
    """A :func:`concentration_table` as flat keys: ``C_``, ``null_high_`` and ``p_`` of every
    cell ``<measure>_<schedule>_<objective>[_L<layer>]``, and per measure and schedule over the
    ``objectives`` cells ``C_mean_``, ``frac_sig_`` (share with ``significant``) and
    ``null_high_mean_``."""
    meta: dict[str, Any] = {}
    for r in conc.itertuples():
        key = f"{r.measure}_{r.schedule}_{r.objective}_L{r.layer}" if r.layer >= 0 \
            else f"{r.measure}_{r.schedule}_{r.objective}"
        meta[f"C_{key}"] = r.C
        meta[f"null_high_{key}"] = r.null_high
        meta[f"p_{key}"] = r.p_value
    for sched in schedules:
        for measure in measures:
            sel = conc[(conc["measure"] == measure) & (conc["schedule"] == sched)
                       & conc["objective"].isin(list(objectives))]
            if len(sel):
                meta[f"C_mean_{measure}_{sched}"] = float(sel["C"].mean())
                meta[f"frac_sig_{measure}_{sched}"] = float(sel["significant"].mean())
                meta[f"null_high_mean_{measure}_{sched}"] = float(sel["null_high"].mean())
    return meta


def measure_contrast(conc: pd.DataFrame, measure: str, others: Sequence[str],
                     prefix: str) -> dict[str, float]:
    """Is ``measure`` more front-loaded than each of ``others``, cell by cell (objective,
    schedule, layer)? ``<prefix>_minus_<other>_mean`` (mean difference in C) and
    ``<prefix>_above_<other>_frac`` (share of cells where it is higher)."""
    index = ["objective", "schedule", "layer"]
    mine = conc[conc["measure"] == measure].set_index(index)["C"]
    meta = {}
    for other in others:
        theirs = conc[conc["measure"] == other].set_index(index)["C"]
        diff = (mine - theirs.reindex(mine.index)).dropna()
        meta[f"{prefix}_minus_{other}_mean"] = float(diff.mean())
        meta[f"{prefix}_above_{other}_frac"] = float((diff > 0).mean())
    return meta


def velocity_over_floor(velocity: pd.DataFrame, noise_floor: pd.DataFrame) -> dict[str, float]:
    """One measure's median velocity per (objective, schedule, layer) over the mean noise floor
    ``w2`` of the same cell: the median and minimum ratio over cells, and the median ratio in
    the last third of the path (``t > 2/3 · T``)."""
    index = ["objective", "schedule", "layer"]
    floor = noise_floor.groupby(index)["w2"].mean()
    med = velocity.groupby(index)["velocity"].median()
    ratio = med / floor.reindex(med.index)
    late = velocity[velocity["t"] > velocity["t"].max() * 2 / 3].groupby(index)["velocity"]
    late_ratio = late.median() / floor.reindex(late.median().index)
    return {"velocity_over_floor_median": float(ratio.median()),
            "velocity_over_floor_min": float(ratio.min()),
            "late_velocity_over_floor_median": float(late_ratio.median())}


def own_loss_change(behaviour: pd.DataFrame, own: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """Validation loss of each run label (objective) on its own corpora ``own[objective]``, mean
    over seeds and schedules, at the first and the last step: ``val_loss_start_<o>`` and
    ``val_loss_end_<o>`` (did fine-tuning move the model where it was trained?)."""
    last = behaviour["step"].max()
    meta = {}
    for o, corpora in own.items():
        sel = behaviour[(behaviour["objective"] == o) & behaviour["corpus"].isin(list(corpora))]
        meta[f"val_loss_start_{o}"] = float(sel[sel["step"] == 0]["val_loss"].mean())
        meta[f"val_loss_end_{o}"] = float(sel[sel["step"] == last]["val_loss"].mean())
    return meta


def evenly_spaced_layers(n_layers: int, k: int) -> list[int]:
    """``k`` evenly spaced hidden-state indices in ``0..n_layers`` (0 = embeddings)."""
    ids = sorted({int(round(x)) for x in np.linspace(0, n_layers, k)})
    if len(ids) != k:
        raise ValueError(f"cannot place {k} distinct layers in 0..{n_layers}")
    return ids


__all__ = ["TOPOLOGY", "measure_checkpoints", "disjoint_subsamples", "js_divergence", "h1_and_summary", "w2_matrix",
           "abs_diff_matrix", "euclidean_matrix", "mean_distance", "geometry_distances",
           "upper_rows", "distance_matrix", "velocity_table", "concentration_table",
           "velocity_null_band", "effect_sizes", "trajectory_matrix", "loso_accuracy",
           "objective_classification", "path_tables", "concentration_meta",
           "measure_contrast", "velocity_over_floor", "evenly_spaced_layers",
           "own_loss_change"]
