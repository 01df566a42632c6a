"""01_scale: does resonance depend on model size, and do medium models resonate with large ones?

A controlled family (the in-house GPT-2 ladder, width and depth scaled together, one corpus,
tokenizer, budget and recipe, several seeds) and real pretrained ladders nobody here trained.
Every pair is compared at its best-matching layer pair (with a null for the maximum) and along
relative depth; seeds of one size give the noise ceiling and the layer-identification test.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from .. import activations, metrics, stimuli, store, topology, zoo
from ..seeding import seed_everything
from ..stats import diff_ci, mean_ci
from ..store import Bundle
from .common import RECIPE, inhouse_model, long_diagrams, profile_config

VERSION = 2  # bump when compute() changes its output
NAME = "01_scale"
MEASURES = ("cka_linear_debiased", "mutual_knn")
IDENTIFICATION = {"cka_linear": {}, "cka_linear_debiased": {}, "mutual_knn": {},
                  "svcca": {"keep": 10}, "rsa": {}}
SIZES = {
    "smoke": {"ladder": [[16, 1], [32, 2], [64, 2]], "seeds": [0, 1], "n_per_concept": 10,
              "n_corpus": 80, "n_null": 5, "n_local": 5, "reference": "minilm",
              "ladders": {}},
    "paper": {"ladder": [[16, 1], [32, 2], [64, 2], [128, 3], [192, 4]], "seeds": [0, 1, 2],
              "n_per_concept": 20, "n_corpus": 200, "n_null": 20, "n_local": 20,
              "reference": "minilm",
              "ladders": {"encoders": ["minilm", "mpnet"],
                          "decoders": ["smollm2-135m", "gemma3-270m"],
                          "vision": ["efficientnet-lite0", "efficientnet-lite1",
                                     "efficientnet-lite2"]}},
}


def run(profile: str = "paper", seed: int = 0, force: bool = False, **overrides: Any) -> Bundle:
    config = profile_config(SIZES, profile, seed, overrides, version=VERSION)
    config["recipe"] = RECIPE["smoke" if profile == "smoke" else "paper"]
    return store.cached(NAME, profile, config, compute, force=force)


# -- computation ---------------------------------------------------------------------------------

def _stimulus_sets(config: dict) -> dict[str, stimuli.Stimuli]:
    # Bare words: in template sentences, which template was drawn dominates every model's
    # geometry (see 00_tour), not the concept.
    return {"concepts": stimuli.concept_stimuli(config["n_per_concept"], form="word",
                                                seed=config["seed"]),
            "corpus": stimuli.corpus_stimuli("kjv", n=config["n_corpus"], seed=config["seed"])}


def _train_family(config: dict, stims: dict) -> tuple[pd.DataFrame, dict]:
    rows, layers = [], {}
    for rung, (d_model, n_layers) in enumerate(config["ladder"]):
        for seed in config["seeds"]:
            model, trained = inhouse_model("gpt2", d_model, n_layers, seed, config["recipe"])
            final = trained.history.dropna(subset=["val_ppl"]).iloc[-1]
            rows.append({"model": model.name, "rung": rung, "d_model": d_model,
                         "n_layers": n_layers, "seed": seed, "params": model.n_params,
                         "val_ppl": float(final["val_ppl"]), "val_loss": float(final["val_loss"])})
            for name, stim in stims.items():
                layers[model.name, name] = activations.extract(model, stim).layers
    return pd.DataFrame(rows), layers


def _pairs(models: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(kind, model_a, model_b): every model against every largest model of another seed, and
    every same-size seed pair (the noise ceiling)."""
    top = models["rung"].max()
    largest = models[models["rung"] == top]
    pairs = []
    for a in models.itertuples():
        for b in largest.itertuples():
            if a.seed != b.seed and not (a.rung == top and a.seed > b.seed):
                pairs.append(("vs_largest", a.model, b.model))
    for _, group in models.groupby("rung"):
        for a, b in combinations(group["model"], 2):
            pairs.append(("same_size", a, b))
    return pairs


def _pair_rows(config, models, layers, pairs) -> tuple[pd.DataFrame, pd.DataFrame]:
    info = models.set_index("model")
    rows, trajectories = [], []
    for offset, (kind, a, b) in enumerate(pairs):
        for stim in ("concepts", "corpus"):
            la, lb = layers[a, stim], layers[b, stim]
            for measure in MEASURES:
                best = metrics.best_layer_resonance(la, lb, measure, n_null=config["n_null"],
                                                    seed=config["seed"] + offset)
                last = metrics.similarity_matrix([la[-1]], [lb[-1]], measure)["value"].iloc[0]
                rows.append({"kind": kind, "model_a": a, "model_b": b, "stimuli": stim,
                             "rung_a": info.at[a, "rung"], "rung_b": info.at[b, "rung"],
                             "params_a": info.at[a, "params"], "seed_a": info.at[a, "seed"],
                             "last_layers": last, **best})
                if kind == "vs_largest" and stim == "concepts":
                    traj = metrics.depth_trajectory(metrics.similarity_matrix(la, lb, measure))
                    trajectories.append(traj.assign(model_a=a, model_b=b, measure=measure,
                                                    rung_a=info.at[a, "rung"]))
    return pd.DataFrame(rows), pd.concat(trajectories, ignore_index=True)


def _best_layer_clouds(layers, pairs_table):
    """For each vs-largest pair: (row, X, Y) at its best debiased-CKA layer pair (concepts)."""
    best = pairs_table.query("kind == 'vs_largest' and stimuli == 'concepts' "
                             "and measure == 'cka_linear_debiased'")
    for row in best.itertuples():
        yield row, layers[row.model_a, "concepts"][row.layer_a], \
            layers[row.model_b, "concepts"][row.layer_b]


def _topological_rows(config, layers, pairs_table) -> pd.DataFrame:
    """RTD at each vs-largest pair's best CKA layer pair (concept stimuli), with a shuffle null."""
    rows = []
    for i, (row, X, Y) in enumerate(_best_layer_clouds(layers, pairs_table)):
        table = metrics.global_resonance(X, Y, ["rtd"], n_boot=0, n_null=max(2, config["n_null"] // 5),
                                         seed=config["seed"] + i)
        rows.append({"model_a": row.model_a, "model_b": row.model_b, "rung_a": row.rung_a,
                     "params_a": row.params_a, "seed_a": row.seed_a,
                     **table.iloc[0][["value", "null_mean", "null_low", "p_value"]].to_dict()})
    return pd.DataFrame(rows)


def _identification(config, models, layers) -> pd.DataFrame:
    rows = []
    for rung, group in models.groupby("rung"):
        for a, b in combinations(group["model"], 2):
            la, lb = layers[a, "concepts"], layers[b, "concepts"]
            for measure, kwargs in IDENTIFICATION.items():
                table = metrics.similarity_matrix(la, lb, measure, **kwargs)
                rows.append({"rung": rung, "model_a": a, "model_b": b, "measure": measure,
                             "accuracy": metrics.layer_identification(table)})
    return pd.DataFrame(rows)


def _local(config, layers, pairs_table, labels) -> pd.DataFrame:
    frames = []
    for i, (row, X, Y) in enumerate(_best_layer_clouds(layers, pairs_table)):
        local = metrics.local_resonance(X, Y, labels, ("cka_linear_debiased",),
                                        n_boot=config["n_local"], n_null=config["n_local"],
                                        seed=config["seed"] + i)
        frames.append(local.assign(model_a=row.model_a, model_b=row.model_b, rung_a=row.rung_a))
    return pd.concat(frames, ignore_index=True)


def _reference_rows(config, models, layers, stims) -> pd.DataFrame:
    """Each in-house model against a real pretrained reference model (MiniLM)."""
    reference = zoo.load(config["reference"])
    ref_layers = activations.extract(reference, stims["concepts"]).layers
    rows = []
    for i, row in enumerate(models.itertuples()):
        best = metrics.best_layer_resonance(layers[row.model, "concepts"], ref_layers,
                                            "cka_linear_debiased", n_null=config["n_null"],
                                            seed=config["seed"] + i)
        rows.append({"model": row.model, "rung": row.rung, "params": row.params,
                     "seed": row.seed, "reference": reference.name, **best})
    return pd.DataFrame(rows)


def _pretrained_rows(config, stims) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, trajectories = [], []
    images = stimuli.image_stimuli(n=10 * config["n_per_concept"], seed=config["seed"])
    for ladder, names in config["ladders"].items():
        loaded = [zoo.load(name) for name in names]
        stim = images if loaded[0].modality == "vision" else stims["concepts"]
        acts = {m.name: activations.extract(m, stim).layers for m in loaded}
        for i, (a, b) in enumerate(combinations(loaded, 2)):
            for measure in MEASURES:
                best = metrics.best_layer_resonance(acts[a.name], acts[b.name], measure,
                                                    n_null=config["n_null"], seed=config["seed"] + i)
                rows.append({"ladder": ladder, "model_a": a.name, "model_b": b.name,
                             "params_a": a.n_params, "params_b": b.n_params, **best})
                table = metrics.similarity_matrix(acts[a.name], acts[b.name], measure)
                trajectories.append(metrics.depth_trajectory(table).assign(
                    ladder=ladder, model_a=a.name, model_b=b.name, measure=measure))
    if not rows:
        return pd.DataFrame(), pd.DataFrame()
    return pd.DataFrame(rows), pd.concat(trajectories, ignore_index=True)


def _examples(config, models, layers, stims) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Grids, diagrams and projections for the smallest, a middle and the largest size."""
    seed0, seed1 = config["seeds"][0], config["seeds"][1]
    rungs = sorted(models["rung"].unique())
    picks = [rungs[0], rungs[len(rungs) // 2], rungs[-1]]
    name = lambda rung, seed: models.query("rung == @rung and seed == @seed")["model"].iloc[0]  # noqa: E731
    largest = name(rungs[-1], seed1)
    grids, diagrams, projections = [], [], []
    for rung in picks:
        model = name(rung, seed0)
        la = layers[model, "concepts"]
        grids.append(metrics.similarity_matrix(la, layers[largest, "concepts"])
                     .assign(model_a=model, model_b=largest, rung_a=rung))
        diagrams += long_diagrams(topology.persistence(la[-1], maxdim=1, seed=config["seed"]),
                                  model=model, rung=rung)
        pcs = PCA(2, random_state=config["seed"]).fit_transform(la[-1])
        projections.append(pd.DataFrame(pcs, columns=["pc1", "pc2"]).assign(
            model=model, rung=rung, concept=stims["concepts"].labels))
    return (pd.concat(grids, ignore_index=True), pd.DataFrame(diagrams),
            pd.concat(projections, ignore_index=True))


def compute(config: dict) -> tuple[dict[str, pd.DataFrame], dict]:
    seed_everything(config["seed"])
    stims = _stimulus_sets(config)
    models, layers = _train_family(config, stims)
    pair_table, trajectories = _pair_rows(config, models, layers, _pairs(models))
    tables = {
        "models": models, "pairs": pair_table, "trajectories": trajectories,
        "rtd": _topological_rows(config, layers, pair_table),
        "identification": _identification(config, models, layers),
        "local": _local(config, layers, pair_table, stims["concepts"].labels),
        "reference": _reference_rows(config, models, layers, stims),
    }
    tables["pretrained"], tables["pretrained_trajectories"] = _pretrained_rows(config, stims)
    tables["grids"], tables["diagrams"], tables["projection"] = _examples(config, models, layers,
                                                                          stims)
    tables["by_size"], trend, verdict = summarise(tables)
    tables["trend"] = trend
    return tables, verdict


# -- summaries ---------------------------------------------------------------------------------

def summarise(tables: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Per-size means with seed CIs, the fitted trend, and the verdict on the seed's claim."""
    pairs = tables["pairs"].query("kind == 'vs_largest'")
    models = tables["models"]
    top = models["rung"].max()
    rows = []
    for (stim, measure, rung), group in pairs.groupby(["stimuli", "measure", "rung_a"]):
        per_seed = group.groupby("seed_a")["value"].mean()  # one number per seed of the smaller model
        mean, low, high = mean_ci(per_seed.to_numpy())
        sizes = models[models["rung"] == rung]
        rows.append({"stimuli": stim, "measure": measure, "rung": rung,
                     "params": float(sizes["params"].mean()), "value": mean, "ci_low": low,
                     "ci_high": high, "null_high": float(group["null_high"].mean()),
                     "val_ppl": float(sizes["val_ppl"].mean())})
    by_size = pd.DataFrame(rows)

    trend_rows = []
    for (stim, measure), group in pairs.groupby(["stimuli", "measure"]):
        x = np.log10(group["params_a"].to_numpy(float))
        y = group["value"].to_numpy(float)
        linear, quadratic = _loso_error(group, 1), _loso_error(group, 2)
        coef = np.polyfit(x, y, 2)
        trend_rows.append({"stimuli": stim, "measure": measure, "quad": coef[0], "lin": coef[1],
                           "const": coef[2], "loso_rmse_linear": linear,
                           "loso_rmse_quadratic": quadratic})
    trend = pd.DataFrame(trend_rows)

    main = pairs.query("stimuli == 'concepts' and measure == 'cka_linear_debiased'")
    rungs = sorted(main["rung_a"].unique())
    medium = rungs[len(rungs) // 2]
    ceiling = main[main["rung_a"] == top]["value"].to_numpy()
    mid = main[main["rung_a"] == medium].groupby("seed_a")["value"].mean().to_numpy()
    diff, low, high = diff_ci(mid, ceiling)
    main_trend = trend.query("stimuli == 'concepts' and measure == 'cka_linear_debiased'").iloc[0]
    ident = tables["identification"].groupby("measure")["accuracy"].mean()
    small = by_size.query("stimuli == 'concepts' and measure == 'cka_linear_debiased'")
    verdict = {
        "n_sizes": len(rungs), "n_seeds": int(models["seed"].nunique()),
        "params_min": float(models["params"].min()), "params_max": float(models["params"].max()),
        "param_span": float(models["params"].max() / models["params"].min()),
        "ceiling": float(ceiling.mean()), "medium_rung": int(medium),
        "medium_params": float(models[models["rung"] == medium]["params"].mean()),
        "medium_value": float(mid.mean()), "medium_minus_ceiling": diff,
        "medium_minus_ceiling_low": low, "medium_minus_ceiling_high": high,
        "smallest_value": float(small.sort_values("rung")["value"].iloc[0]),
        "nonlinear_preferred": bool(main_trend["loso_rmse_quadratic"] < main_trend["loso_rmse_linear"]),
        "loso_rmse_linear": float(main_trend["loso_rmse_linear"]),
        "loso_rmse_quadratic": float(main_trend["loso_rmse_quadratic"]),
        **{f"identification_{m}": float(v) for m, v in ident.items()},
        "ppl_smallest": float(small.sort_values("rung")["val_ppl"].iloc[0]),
        "ppl_largest": float(small.sort_values("rung")["val_ppl"].iloc[-1]),
    }
    as_much = high >= 0 if not np.isnan(high) else None
    verdict["medium_matches_ceiling"] = as_much
    verdict["headline"] = (
        f"GPT-2 ladder, {verdict['param_span']:.0f}× params: debiased CKA with the largest model "
        f"{verdict['smallest_value']:.2f} (smallest), {verdict['medium_value']:.2f} (medium), "
        f"{verdict['ceiling']:.2f} (seed ceiling); medium − ceiling {diff:+.2f} {_interval(low, high)}"
    )
    return by_size, trend, verdict


def _interval(low: float, high: float) -> str:
    return "(one seed: no CI)" if np.isnan(low) else f"[{low:+.2f}, {high:+.2f}]"


def _loso_error(group: pd.DataFrame, degree: int) -> float:
    """Leave-one-size-out RMSE of a polynomial fit of value on log10(params)."""
    errors = []
    for rung in group["rung_a"].unique():
        train, test = group[group["rung_a"] != rung], group[group["rung_a"] == rung]
        if train["rung_a"].nunique() <= degree:
            return float("nan")
        coef = np.polyfit(np.log10(train["params_a"].to_numpy(float)), train["value"], degree)
        pred = np.polyval(coef, np.log10(test["params_a"].to_numpy(float)))
        errors.append((pred - test["value"].to_numpy()) ** 2)
    return float(np.sqrt(np.concatenate(errors).mean()))
