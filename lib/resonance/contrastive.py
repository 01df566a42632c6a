"""Cross-modal maps between paired features: a CLIP-style two-tower model and a ridge map, each
scored by retrieval.

>>> f, g, loss = train_towers(X_train, Y_train, TowerConfig(), seed=0)     # doctest: +SKIP
>>> retrieval(f(X_test), g(Y_test))["top1"]                                # doctest: +SKIP
>>> linear_map_retrieval(X_fit, Y_fit, X_test, Y_test, n_draws=99)          # doctest: +SKIP

Retrieval ranks, for every row of a prediction, the true partner among all targets by cosine
after centring both sides (centring removes the shared mean direction that inflates raw cosines
of decoder states).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from .stats import permutation_p

if TYPE_CHECKING:
    import pandas

__all__ = ["standardise", "retrieval", "train_towers", "linear_map_retrieval", "positive_control",
           "control_summary", "transfer_retrieval", "transfer_summary"]


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """``train`` and ``others`` z-scored with ``train``'s feature means and deviations
    (float32)."""
    mu, sd = train.mean(0), train.std(0) + 1e-6
    return [((x - mu) / sd).astype(np.float32) for x in (train, *others)]


def retrieval(pred: np.ndarray, target: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict:
    """Row ``i`` of ``pred`` should retrieve row ``i`` of ``target``: top-k rates, the median
    rank of the true partner (1 = first; ties are not counted against it), the ranks and the
    ``(n, n)`` centred-cosine scores."""
    if pred.shape[0] != target.shape[0] or pred.shape[0] < 2:
        raise ValueError(f"pred and target need the same number (>= 2) of rows, got "
                         f"{pred.shape[0]} and {target.shape[0]}")
    P = pred - pred.mean(0)
    T = target - target.mean(0)
    P /= np.linalg.norm(P, axis=1, keepdims=True) + 1e-12
    T /= np.linalg.norm(T, axis=1, keepdims=True) + 1e-12
    scores = P @ T.T
    ranks = (scores > scores[np.arange(len(P)), np.arange(len(P))][:, None]).sum(1) + 1
    return {**{f"top{k}": float((ranks <= k).mean()) for k in ks},
            "median_rank": float(np.median(ranks)), "ranks": ranks, "scores": scores}


def train_towers(Xtr: np.ndarray, Ytr: np.ndarray, c: Mapping, seed: int):
    """Two towers (Linear-GELU-Linear, ``c["hidden"]`` -> ``c["dim"]``) trained full-batch
    with CLIP's symmetric InfoNCE loss (learned temperature, initialised at
    ``c["temperature"]``, AdamW ``c["lr"]`` for ``c["steps"]`` steps) on the paired float32 rows
    of ``Xtr`` and ``Ytr``. Returns ``(f, g, final_loss)``, the towers in eval mode."""
    import torch
    from torch import nn

    torch.manual_seed(seed)

    def tower(d_in):
        return nn.Sequential(nn.Linear(d_in, c["hidden"]), nn.GELU(),
                             nn.Linear(c["hidden"], c["dim"]))

    f, g = tower(Xtr.shape[1]), tower(Ytr.shape[1])
    log_scale = nn.Parameter(torch.tensor(float(np.log(1 / c["temperature"]))))
    params = [*f.parameters(), *g.parameters(), log_scale]
    opt = torch.optim.AdamW(params, lr=c["lr"], weight_decay=0.01)
    X, Y = torch.from_numpy(Xtr), torch.from_numpy(Ytr)
    target = torch.arange(len(X))
    for _ in range(c["steps"]):
        a = nn.functional.normalize(f(X), dim=1)
        b = nn.functional.normalize(g(Y), dim=1)
        logits = a @ b.T * log_scale.exp().clamp(max=100)
        loss = (nn.functional.cross_entropy(logits, target)
                + nn.functional.cross_entropy(logits.T, target)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    return f.eval(), g.eval(), float(loss.detach())


def linear_map_retrieval(X_fit: np.ndarray, Y_fit: np.ndarray, X_test: np.ndarray,
                         Y_test: np.ndarray, n_draws: int = 99, seed: int = 0,
                         alphas: Sequence[float] = tuple(np.logspace(-1, 5, 13)),
                         perms: Sequence[np.ndarray] | None = None) -> dict:
    """A ridge map ``X -> Y`` fitted on the ``fit`` pairs (inputs z-scored on them, ridge alpha by
    leave-one-out) and scored by retrieval on the ``test`` pairs, against ``n_draws`` maps fitted
    with the same alpha on ``fit`` pairs whose ``Y`` rows are shuffled (or one map per
    permutation in ``perms``, which then replaces ``n_draws``/``seed``).

    Returns the real map's :func:`retrieval` result plus ``alpha``, ``null_top1`` and
    ``null_top5`` (arrays of the shuffled maps' rates) and ``p_top1``/``p_top5``."""
    from sklearn.linear_model import RidgeCV

    Xf, Xt = standardise(X_fit, X_test)
    mu_y = Y_fit.mean(0)
    model = RidgeCV(alphas=np.asarray(alphas)).fit(Xf, Y_fit - mu_y)
    real = retrieval(model.predict(Xt), Y_test)
    if perms is None:
        rng = np.random.default_rng(seed)
        perms = [rng.permutation(len(X_fit)) for _ in range(int(n_draws))]
    U, s, Vt = np.linalg.svd(Xf, full_matrices=False)
    shrink = s / (s ** 2 + model.alpha_)
    null1, null5 = [], []
    for perm in perms:
        W = Vt.T @ (shrink[:, None] * (U.T @ (Y_fit[perm] - mu_y)))
        r = retrieval(Xt @ W, Y_test)
        null1.append(r["top1"])
        null5.append(r["top5"])
    null1, null5 = np.array(null1), np.array(null5)
    return {**real, "alpha": float(model.alpha_), "null_top1": null1, "null_top5": null5,
            "p_top1": permutation_p(real["top1"], null1),
            "p_top5": permutation_p(real["top5"], null5)}


def positive_control(layers_x: Sequence[np.ndarray], layers_y: Sequence[np.ndarray],
                     c: Mapping, seeds: Sequence[int], n_null: int = 99,
                     seed: int = 0) -> "pandas.DataFrame":
    """A multimodal yardstick for unimodal alignment: per seed, two towers
    (:func:`train_towers`) on the last layers of ``layers_x`` and ``layers_y`` (paired rows),
    trained on a random ``c["train_fraction"]`` of the pairs; on the held-out pairs, the PRH
    score of the towers (with a shuffled-pair null of ``n_null`` draws) beside the inputs' own
    (last-layer pair, and the maximum over all layer pairs), debiased CKA of each, and the
    towers' retrieval. One row per seed (each draws its own split and initialisation)."""
    import pandas as pd
    import torch

    from . import prh
    from .similarity import cka

    X_all, Y_all = layers_x[-1], layers_y[-1]
    n = len(X_all)
    rows = []
    for s in seeds:
        order = np.random.default_rng([seed, s, 0xC11]).permutation(n)
        n_train = int(round(c["train_fraction"] * n))
        tr, te = np.sort(order[:n_train]), np.sort(order[n_train:])
        Xtr, Xte = standardise(X_all[tr], X_all[te])
        Ytr, Yte = standardise(Y_all[tr], Y_all[te])
        f, g, loss = train_towers(Xtr, Ytr, c, s)
        with torch.no_grad():
            A, B = f(torch.from_numpy(Xte)).numpy(), g(torch.from_numpy(Yte)).numpy()
        perms = prh.shuffles(len(te), n_null, s)
        towers = prh.grid_alignment([prh.neighbours(A)], [prh.neighbours(B)], perms)
        inputs = prh.grid_alignment([prh.neighbours(X_all[te])], [prh.neighbours(Y_all[te])],
                                    perms)
        full = prh.grid_alignment([prh.neighbours(x[te]) for x in layers_x],
                                  [prh.neighbours(y[te]) for y in layers_y])
        ret = retrieval(A, B)
        rows.append({"seed": s, "n_train": len(tr), "n_test": len(te),
                     "train_loss": loss, "towers_knn": towers.value, "towers_p": towers.p_value,
                     "towers_null_high": towers.null_quantile(0.95),
                     "inputs_knn": inputs.value, "inputs_grid_knn": full.value,
                     "towers_cka": cka(A, B, debiased=True),
                     "inputs_cka": cka(X_all[te], Y_all[te], debiased=True),
                     "towers_top1": ret["top1"], "towers_top5": ret["top5"],
                     "chance": prh.chance(len(te)), "chance_top1": 1 / len(te)})
    return pd.DataFrame(rows)


def control_summary(table: "pandas.DataFrame") -> dict:
    """Scalars of :func:`positive_control`: mean and 95% CI over seeds of the towers' and the
    inputs' scores, and the towers' gain over the inputs' best layer pair."""
    from .stats import mean_ci

    meta = {}
    for col in ("towers_knn", "inputs_knn", "inputs_grid_knn", "towers_cka", "inputs_cka",
                "towers_top1"):
        meta[col], meta[f"{col}_low"], meta[f"{col}_high"] = mean_ci(table[col])
    return {**meta, "towers_seeds": int(len(table)), "towers_n_test": int(table["n_test"].iloc[0]),
            "towers_chance_top1": float(table["chance_top1"].iloc[0]),
            "towers_p_max": float(table["towers_p"].max()),
            "towers_gain": float((table["towers_knn"] / table["inputs_grid_knn"]).mean()),
            "unimodal_share_of_towers": float((table["inputs_grid_knn"] / table["towers_knn"]).mean())}


def transfer_retrieval(feats_v: Mapping[str, Sequence[np.ndarray]],
                       feats_t: Mapping[str, Sequence[np.ndarray]], sources: Sequence[str],
                       texts: Sequence[str], model_pairs: Sequence[tuple[str, str]],
                       n_draws: int = 99, seed: int = 0, fit_source: str = "emoji",
                       test_source: str = "tuxpaint"):
    """Does a linear image -> text map transfer across sources? Per model pair, layers chosen
    by the PRH grid on the ``fit_source`` rows only, a ridge map (:func:`linear_map_retrieval`)
    fitted there and scored by caption retrieval on the ``test_source`` rows, against chance and
    ``n_draws`` shuffled-pair maps. Returns ``(rows, examples)``: one row per pair, and the first
    pair's top-3 retrieved captions (``texts``) for each test item."""
    import pandas as pd

    from . import prh

    sources = np.asarray(sources)
    fit, test = np.flatnonzero(sources == fit_source), np.flatnonzero(sources == test_source)
    if len(fit) < 20 or len(test) < 10:
        raise ValueError(f"the transfer check needs >= 20 {fit_source} and >= 10 {test_source} "
                         f"pairs, got {len(fit)} and {len(test)}: use more pairs")
    rows, examples = [], []
    rng = np.random.default_rng([seed, 0xF17])
    perms = [rng.permutation(len(fit)) for _ in range(n_draws)]
    for v, t in model_pairs:
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
        if (v, t) == tuple(model_pairs[0]):
            top = np.argsort(-real["scores"], axis=1, kind="stable")[:, :3]
            for row, item in enumerate(test):
                examples.append({"item": int(item), "caption": texts[item],
                                 "rank": int(real["ranks"][row]),
                                 **{f"retrieved_{r + 1}": texts[test[top[row, r]]]
                                    for r in range(3)}})
    return pd.DataFrame(rows), pd.DataFrame(examples)


def transfer_summary(table: "pandas.DataFrame") -> dict:
    """Scalars of :func:`transfer_retrieval`: its first pair's scores, how many pairs beat
    their shuffled maps (p <= 0.05), and the best pair."""
    f0, best = table.iloc[0], table.loc[table["top5"].idxmax()]
    return {"func_top5": float(f0["top5"]), "func_top1": float(f0["top1"]),
            "func_chance_top5": float(f0["chance_top5"]),
            "func_shuffled_top5": float(f0["shuffled_top5_mean"]),
            "func_p": float(f0["p_top5"]), "func_n_test": int(f0["n_test"]),
            "func_median_rank": float(f0["median_rank"]),
            "func_pairs_significant": int((table["p_top5"] <= 0.05).sum()),
            "func_pairs": int(len(table)), "func_best_top5": float(table["top5"].max()),
            "func_best_pair": f"{best['vision']} → {best['text']}"}
