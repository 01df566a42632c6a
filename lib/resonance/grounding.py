"""Sanity checks for similarity measures on real models: layer identification (Kornblith et al.
2019, Table 2) and grounding tests in the style of the ReSi benchmark (Klabunde et al. 2025).

>>> fam = classifier_family({"real": (0.0, False), "random": (1.0, False)}, seeds=[0, 1, 2])
>>> names, S = oriented_grid(fam.penultimate(), "cka_linear")
>>> separation_auc(S, names, reference="real", other="random")

Every test reads a *model x model* (or layer x layer) grid of one measure, oriented so that
higher means more alike (distances are negated; asymmetric measures are symmetrised as
``S + S^T``, as Kornblith et al. did), and returns a score with a chance level:

- :func:`separation_auc` -- do two models of one group (e.g. trained on real labels) look more
  alike than a model of that group and one of another group (randomised labels, a shortcut)?
  The AUC of within-group against between-group pair values; chance 0.5.
- :func:`output_correlation` -- does representational similarity track how alike the models'
  outputs are? Spearman's rho between pair similarity and minus the pair's output distance.
- :func:`layer_monotonicity` -- within one model, is layer i more like a nearer layer j than a
  farther layer k on the same side? The share of such triples; chance 0.5.
- :func:`identification_rows` / :func:`accuracy_table` -- across seeds, is the most similar
  layer of model B to layer i of model A layer i itself? Chance 1/L.

Intervals resample *models* (:func:`model_bootstrap`), never the pairs that share them.
:func:`classifier_family` trains the small in-house models the ReSi-style tests run on: MLPs on
scikit-learn's handwritten digits with a share of the training labels randomised and, optionally,
a shortcut input that encodes the label during training only.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import measures as registry
from .similarity import similarity_matrix
from .stats import percentile_ci, seed_pair_bootstrap

__all__ = ["oriented_grid", "separation_auc", "output_correlation", "layer_monotonicity",
           "model_bootstrap", "permutation_pvalue", "identification_rows", "accuracy_table",
           "ClassifierFamily", "classifier_family", "jensen_shannon", "validation_positions",
           "block_states"]


# -- grids -----------------------------------------------------------------------------------

def oriented_grid(layers: Mapping[Any, np.ndarray], measure: str,
                  **kw: Any) -> tuple[list, np.ndarray]:
    """``measure`` between every pair of ``layers`` (name -> ``(n, d)``), one
    :func:`~resonance.similarity.similarity_matrix` call: ``(names, S)`` with ``S`` square,
    symmetric and oriented so that higher = more alike."""
    spec = registry.get(measure)
    table = similarity_matrix(layers, layers, measure, **kw)
    names = list(layers)
    S = table["value"].to_numpy(float).reshape(len(names), len(names))
    if not spec.symmetric:
        S = S + S.T
    return names, (S if spec.higher_is_similar else -S)


# -- statistics on model x model grids ---------------------------------------------------------

def _group_of(names: Sequence) -> np.ndarray:
    return np.array([n[0] if isinstance(n, tuple) else n for n in names], dtype=object)


def _auc(within: np.ndarray, between: np.ndarray) -> float:
    """P(within > between) + P(tie) / 2."""
    if not within.size or not between.size:
        return float("nan")
    diff = within[:, None] - between[None, :]
    return float(np.mean(diff > 0) + 0.5 * np.mean(diff == 0))


def separation_auc(S: np.ndarray, names: Sequence, reference: str, other: str,
                   draw: np.ndarray | None = None) -> float:
    """AUC of (reference, reference) pair values against (reference, other) pair values.

    ``names`` are ``(group, seed)`` tuples (or group labels) in the order of ``S``'s rows;
    ``draw`` (indices into ``names``, repeats allowed) restricts the test to a resample of the
    models: pairs of a model with itself (or with a copy of itself) are skipped.
    """
    groups = _group_of(names)
    idx = np.arange(len(names)) if draw is None else np.asarray(draw)
    ref, oth = idx[groups[idx] == reference], idx[groups[idx] == other]
    if not len(ref) or (draw is None and not len(oth)):
        raise ValueError(f"no models of group {reference!r} or {other!r} among "
                         f"{sorted(set(groups.tolist()))}")
    within = np.array([S[i, j] for a, i in enumerate(ref) for j in ref[a + 1:] if i != j])
    between = np.array([S[i, j] for i in ref for j in oth])
    return _auc(within, between)


def output_correlation(S: np.ndarray, output_distance: np.ndarray,
                       draw: np.ndarray | None = None) -> float:
    """Spearman's rho between pair similarity ``S[i, j]`` and ``-output_distance[i, j]`` over
    the pairs ``i < j`` of the models in ``draw`` (all by default; copies of one model skipped).
    Positive: models whose outputs agree more are called more alike."""
    from scipy.stats import spearmanr

    if S.shape != output_distance.shape or S.shape[0] != S.shape[1]:
        raise ValueError(f"S and output_distance must be the same square shape, got {S.shape} "
                         f"and {output_distance.shape}")
    idx = np.arange(len(S)) if draw is None else np.asarray(draw)
    pairs = [(i, j) for a, i in enumerate(idx) for j in idx[a + 1:] if i != j]
    if len(pairs) < 3:
        return float("nan")
    i, j = np.array(pairs).T
    rho = spearmanr(S[i, j], -output_distance[i, j]).statistic
    return float(rho) if np.isfinite(rho) else float("nan")


def model_bootstrap(statistic: Callable[[np.ndarray], float], names: Sequence,
                    n_boot: int = 1000, seed: int = 0, ci: float = 0.95) -> tuple[float, float, float]:
    """``statistic(draw)`` on all models and a percentile interval over resamples of the
    *models*, drawn with replacement within each group (``names``' first element) so that
    every group keeps its size. Returns ``(value, low, high)``."""
    groups = _group_of(names)
    members = [np.flatnonzero(groups == g) for g in dict.fromkeys(groups.tolist())]
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(int(n_boot)):
        draw = np.concatenate([rng.choice(m, size=len(m), replace=True) for m in members])
        reps.append(statistic(draw))
    low, high = percentile_ci(reps, ci)  # non-finite draws dropped; nan when none is left
    return float(statistic(np.arange(len(names)))), float(low), float(high)


def permutation_pvalue(S: np.ndarray, names: Sequence, reference: str, other: str,
                       n_perm: int = 199, seed: int = 0) -> float:
    """One-sided p of :func:`separation_auc` against shuffles of the group labels over the
    ``reference`` and ``other`` models (floor ``1 / (n_perm + 1)``)."""
    if n_perm < 99:
        raise ValueError(f"n_perm must be >= 99 for a p-value, got {n_perm}")
    groups = _group_of(names)
    keep = np.flatnonzero(np.isin(groups, [reference, other]))
    sub, labels = S[np.ix_(keep, keep)], groups[keep]
    observed = separation_auc(sub, labels.tolist(), reference, other)
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(int(n_perm)):
        hits += separation_auc(sub, rng.permutation(labels).tolist(), reference, other) >= observed
    return (hits + 1) / (n_perm + 1)


def layer_monotonicity(grid: np.ndarray) -> float:
    """Share of triples (i, j, k), j and k on the same side of i with ``|i - j| < |i - k|``,
    where ``grid[i, j] > grid[i, k]`` (ties count half) in one model's oriented layer x layer
    grid. 1: similarity falls with layer distance everywhere; chance 0.5."""
    L = grid.shape[0]
    if grid.shape != (L, L) or L < 3:
        raise ValueError(f"need a square layer x layer grid with >= 3 layers, got {grid.shape}")
    score = []
    for i in range(L):
        for side in (range(i + 1, L), range(i - 1, -1, -1)):
            side = list(side)
            for a, j in enumerate(side):
                for k in side[a + 1:]:
                    d = grid[i, j] - grid[i, k]
                    score.append(1.0 if d > 0 else 0.5 if d == 0 else 0.0)
    return float(np.mean(score))


# -- layer identification ----------------------------------------------------------------------

def identification_rows(states: Mapping[int, list[np.ndarray]], condition: str,
                        measures: Mapping[str, tuple[str, dict]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For every measure (label -> (registry name, options)), ordered seed pair and layer of A:
    the most similar layer of B (``identification`` rows), and each model's own layer
    monotonicity (``monotonicity`` rows). ``states``: seed -> list of ``(n, d)`` layers."""
    ident, mono = [], []
    for label, (measure, kw) in measures.items():
        layers = {(seed, i): X for seed, xs in states.items() for i, X in enumerate(xs)}
        names, S = oriented_grid(layers, measure, **kw)
        where = {name: i for i, name in enumerate(names)}
        block = {(a, b): S[np.ix_([where[a, i] for i in range(len(states[a]))],
                                  [where[b, j] for j in range(len(states[b]))])]
                 for a in states for b in states}
        for a in states:
            mono.append({"condition": condition, "measure": label, "registry": measure,
                         "seed": a, "monotonicity": layer_monotonicity(block[a, a])})
        for a, b in combinations(sorted(states), 2):
            for (sa, sb), g in (((a, b), block[a, b]), ((b, a), block[a, b].T)):
                for layer, hit in enumerate(g.argmax(axis=1)):
                    ident.append({"condition": condition, "measure": label, "registry": measure,
                                  "seed_a": sa, "seed_b": sb, "layer": layer + 1,
                                  "best": int(hit) + 1, "n_layers": g.shape[0]})
    return pd.DataFrame(ident), pd.DataFrame(mono)


def accuracy_table(ident: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per (condition, measure): exact and +-1-layer identification accuracy, each with a
    cluster-bootstrap 95 % interval over seeds (:func:`~resonance.stats.seed_pair_bootstrap`),
    and their chance levels (1/L and (3L - 2)/L^2)."""
    rows = []
    for (condition, measure), g in ident.groupby(["condition", "measure"], sort=False):
        L = int(g["n_layers"].iloc[0])
        hit = (g["best"] == g["layer"]).to_numpy(float)
        near = ((g["best"] - g["layer"]).abs() <= 1).to_numpy(float)
        acc, low, high = seed_pair_bootstrap(hit, g["seed_a"], g["seed_b"], n_boot, seed=seed)
        acc1, low1, high1 = seed_pair_bootstrap(near, g["seed_a"], g["seed_b"], n_boot, seed=seed)
        rows.append({"condition": condition, "measure": measure,
                     "registry": g["registry"].iloc[0], "n_layers": L,
                     "n_pairs": g[["seed_a", "seed_b"]].drop_duplicates().shape[0],
                     "accuracy": acc, "ci_low": low, "ci_high": high, "chance": 1 / L,
                     "accuracy_pm1": acc1, "ci_low_pm1": low1, "ci_high_pm1": high1,
                     "chance_pm1": (3 * L - 2) / L ** 2})
    return pd.DataFrame(rows)


# -- the in-house classifier family ------------------------------------------------------------

def jensen_shannon(P: np.ndarray, Q: np.ndarray) -> float:
    """Mean over rows of the Jensen-Shannon divergence (bits) of two ``(n, c)`` probability
    tables."""
    M = 0.5 * (P + Q)

    def kl(A, B):
        return np.sum(np.where(A > 0, A * np.log2(np.maximum(A, 1e-300) / np.maximum(B, 1e-300)), 0.0), axis=1)
    return float(np.mean(0.5 * kl(P, M) + 0.5 * kl(Q, M)))


@dataclass
class ClassifierFamily:
    """Trained models of :func:`classifier_family`, keyed ``(variant, seed)``: hidden states on
    the held-out stimuli (``states``, each a list of ``(n, hidden)`` arrays, first layer first),
    softmax outputs (``probs``, ``(n, 10)``) and one row per model in ``info``."""
    states: dict
    probs: dict
    info: pd.DataFrame

    def penultimate(self) -> dict:
        return {key: xs[-1] for key, xs in self.states.items()}

    def output_distance(self, names: Sequence) -> np.ndarray:
        """Jensen-Shannon divergence between the models' outputs, in ``names`` order."""
        D = np.zeros((len(names), len(names)))
        for (a, i), (b, j) in combinations(enumerate(names), 2):
            D[a, b] = D[b, a] = jensen_shannon(self.probs[i], self.probs[j])
        return D


def _digits(n_test: int, seed: int):
    from sklearn.datasets import load_digits

    digits = load_digits()
    X, y = digits.data / 16.0, digits.target.astype(int)
    if not 50 <= n_test <= len(y) // 2:
        raise ValueError(f"n_test must be in [50, {len(y) // 2}], got {n_test}")
    order = np.random.default_rng([seed, 0xD161]).permutation(len(y))
    test, train = order[:n_test], order[n_test:]
    return X[train], y[train], X[test], y[test]


def classifier_family(variants: Mapping[str, tuple[float, bool]], seeds: Sequence[int],
                      hidden: int = 64, n_layers: int = 3, steps: int = 1500, lr: float = 3e-3,
                      n_test: int = 500, data_seed: int = 0) -> ClassifierFamily:
    """Train one MLP (``n_layers`` ReLU layers of width ``hidden``, full-batch Adam for
    ``steps`` steps) per variant and seed on scikit-learn's handwritten digits.

    ``variants``: name -> ``(label_noise, shortcut)``. ``label_noise`` in [0, 1] is the share of
    training labels replaced by uniformly drawn ones (a different draw per seed); with
    ``shortcut`` the 10 extra input units carry the one-hot training label (perfectly
    predictive), otherwise a random one-hot code. Every model is read on the same ``n_test``
    held-out digits whose extra units carry a random code, so a model that learned the shortcut
    answers by the code and not by the digit. Deterministic on CPU.
    """
    import torch

    Xtr, ytr, Xte, yte = _digits(n_test, data_seed)
    code_rng = np.random.default_rng([data_seed, 0xC0DE])
    test_in = np.hstack([Xte, np.eye(10)[code_rng.integers(0, 10, len(yte))]])
    states, probs, info = {}, {}, []
    for name, (noise, shortcut) in variants.items():
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"label_noise of {name!r} must lie in [0, 1], got {noise}")
        for seed in seeds:
            rng = np.random.default_rng([int(seed), int(round(noise * 1000)), int(shortcut)])
            labels = ytr.copy()
            flip = rng.random(len(labels)) < noise
            labels[flip] = rng.integers(0, 10, int(flip.sum()))
            code = labels if shortcut else rng.integers(0, 10, len(labels))
            train_in = np.hstack([Xtr, np.eye(10)[code]])
            torch.manual_seed(int(seed))
            dims = [train_in.shape[1]] + [hidden] * n_layers
            body = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
            head = torch.nn.Linear(hidden, 10)
            params = list(body.parameters()) + list(head.parameters())
            opt = torch.optim.Adam(params, lr=lr)
            xt = torch.as_tensor(train_in, dtype=torch.float32)
            yt = torch.as_tensor(labels)

            def forward(x):
                hs = []
                for layer in body:
                    x = torch.relu(layer(x))
                    hs.append(x)
                return hs, head(x)
            for _ in range(int(steps)):
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(forward(xt)[1], yt)
                loss.backward()
                opt.step()
            with torch.no_grad():
                train_acc = float((forward(xt)[1].argmax(1) == yt).float().mean())
                hs, logits = forward(torch.as_tensor(test_in, dtype=torch.float32))
            p = torch.softmax(logits.double(), 1).numpy()
            states[name, seed] = [h.double().numpy() for h in hs]
            probs[name, seed] = p
            info.append({"variant": name, "seed": seed, "label_noise": noise,
                         "shortcut": bool(shortcut), "train_accuracy": train_acc,
                         "test_accuracy": float((p.argmax(1) == yte).mean()),
                         "follows_code": float((p.argmax(1) == test_in[:, 64:].argmax(1)).mean()),
                         "train_loss": float(loss.detach())})
    return ClassifierFamily(states, probs, pd.DataFrame(info))


# -- token-level states of in-house language models -------------------------------------------

def validation_positions(val: np.ndarray, context: int, n: int, min_context: int = 8,
                         seed: int = 0, per_window: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``context`` tokens evenly spread over a held-out token stream ``val`` and
    ``n`` (window, position) rows sampled from them, ``per_window`` per window, each position
    with at least ``min_context`` tokens before it."""
    if context - min_context < per_window:
        raise ValueError(f"context {context} leaves fewer than per_window={per_window} "
                         f"positions after min_context={min_context}")
    n_windows = -(-n // per_window)
    if len(val) < context + n_windows:
        raise ValueError(f"the stream has {len(val)} tokens, too few for {n_windows} windows "
                         f"of {context}")
    starts = np.linspace(0, len(val) - context - 1, n_windows).astype(int)
    windows = np.stack([val[s:s + context] for s in starts])
    rng = np.random.default_rng(seed)
    rows = [(w, p) for w in range(n_windows)
            for p in np.sort(rng.choice(np.arange(min_context, context), per_window, False))]
    return windows, np.array(rows[:n])


def block_states(model, windows: np.ndarray, rows: np.ndarray) -> list[np.ndarray]:
    """Each block's output (embedding layer excluded) of a Hugging Face style causal LM at the
    (window, position) ``rows``: a list of ``(n, d)`` float64 arrays, block 1 first."""
    import torch

    with torch.no_grad():
        out = model(input_ids=torch.as_tensor(windows, dtype=torch.long),
                    output_hidden_states=True)
    return [h[rows[:, 0], rows[:, 1]].double().numpy() for h in out.hidden_states[1:]]
