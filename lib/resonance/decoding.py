"""What a representation carries: grouped, out-of-fold decoding with nulls and intervals.

- :func:`grouped_classification` -- can features ``X: (n, f)`` predict labels on held-out
  groups (a training seed, a stimulus subset)? Logistic regression, leave-one-group-out,
  balanced accuracy, a label-permutation null and a cluster-bootstrap interval.
- :func:`nested_increment` -- do extra features add to a base set (e.g. topology beyond
  scale)? The increment in grouped-CV accuracy against a null that permutes the extra
  features' rows.
- :func:`label_cka` -- how much of a cloud's linear geometry a labelling explains (debiased CKA
  with the labels' one-hot coding).
- :func:`concept_decodability` -- the capability gate: concept labels decoded from held-out
  *words* (GroupKFold over words, so a model must generalise across words, not recognise
  one), with a bootstrap interval over words.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import (GroupKFold, LeaveOneGroupOut, cross_val_predict,
                                     permutation_test_score)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = ["grouped_classification", "nested_increment", "concept_decodability",
           "balanced_accuracy", "one_hot", "label_cka"]


def _classifier(seed: int, C: float = 0.5):
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000,
                                                              random_state=seed))


def balanced_accuracy(y: np.ndarray, pred: np.ndarray, classes: np.ndarray | None = None) -> float:
    """Mean per-class recall over the classes present in ``y`` (chance = 1 / #classes)."""
    y, pred = np.asarray(y), np.asarray(pred)
    classes = np.unique(y) if classes is None else classes
    recalls = [np.mean(pred[y == c] == c) for c in classes if np.any(y == c)]
    return float(np.mean(recalls))


def _check_rows(X, y, groups):
    X = np.asarray(X, dtype=np.float64)
    y, groups = np.asarray(y), np.asarray(groups)
    if X.ndim != 2:
        raise ValueError(f"features must be (n, f), got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("features hold NaN or inf")
    if len({len(X), len(y), len(groups)}) != 1:
        raise ValueError(f"X ({len(X)}), y ({len(y)}) and groups ({len(groups)}) must have one "
                         "entry per row")
    if len(np.unique(y)) < 2:
        raise ValueError("need at least two classes to classify")
    if len(np.unique(groups)) < 2:
        raise ValueError("need at least two groups for grouped cross-validation")
    return X, y, groups


def _cluster_boot(y, pred, units, n_boot, seed):
    classes = np.unique(y)
    rng = np.random.default_rng([seed, 0xB00])
    ids = np.unique(units)
    rows_of = {u: np.flatnonzero(units == u) for u in ids}
    boots = [balanced_accuracy(y[r], pred[r], classes)
             for r in (np.concatenate([rows_of[u] for u in rng.choice(ids, len(ids))])
                       for _ in range(n_boot))]
    if not n_boot:
        return float("nan"), float("nan")
    return float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


def grouped_classification(X: np.ndarray, y: Sequence, groups: Sequence, *,
                           units: Sequence | None = None, n_perm: int = 99, n_boot: int = 1000,
                           seed: int = 0) -> dict[str, float]:
    """Can ``X: (n, f)`` predict ``y`` on held-out groups? Logistic regression (standardised).

    Leave-one-group-out (train and test never share a group); balanced accuracy (chance =
    1 / #classes); ``p_value`` from ``permutation_test_score`` (labels permuted within groups,
    floor ``1 / (1 + n_perm)``); 95 % CI from a bootstrap over ``units`` (e.g. one trained
    model; default: the groups) of the out-of-fold predictions.
    """
    X, y, groups = _check_rows(X, y, groups)
    units = groups if units is None else np.asarray(units)
    if len(units) != len(y):
        raise ValueError("units must have one entry per row")
    cv, estimator = LeaveOneGroupOut(), _classifier(seed)
    score, null, p_value = permutation_test_score(
        estimator, X, y, groups=groups, cv=cv, n_permutations=n_perm, random_state=seed,
        scoring="balanced_accuracy")
    predicted = cross_val_predict(estimator, X, y, groups=groups, cv=cv)
    low, high = _cluster_boot(y, predicted, units, n_boot, seed)
    return {"accuracy": float(score), "ci_low": low, "ci_high": high,
            "chance": 1.0 / len(np.unique(y)), "null_mean": float(np.mean(null)),
            "null_high": float(np.quantile(null, 0.95)), "p_value": float(p_value),
            "n_perm": int(n_perm), "n_rows": int(len(y)), "n_groups": int(len(np.unique(groups))),
            "n_classes": int(len(np.unique(y)))}


def _cv_accuracy(X, y, groups, seed):
    pred = cross_val_predict(_classifier(seed), X, y, groups=groups, cv=LeaveOneGroupOut())
    return balanced_accuracy(y, pred)


def nested_increment(base: np.ndarray, extra: np.ndarray, y: Sequence, groups: Sequence, *,
                     n_perm: int = 99, seed: int = 0) -> dict[str, float]:
    """Does ``extra: (n, g)`` add to ``base: (n, f)``? Grouped-CV accuracy of base + extra
    minus that of base alone, against a null that permutes the rows of ``extra`` within
    each class (so ``extra`` keeps its class-free distribution but loses what it carries
    beyond the labels' marginal). ``p_value`` is one-sided with floor ``1 / (1 + n_perm)``.
    """
    base, y, groups = _check_rows(base, y, groups)
    extra = np.asarray(extra, dtype=np.float64)
    if extra.shape[0] != base.shape[0] or not np.isfinite(extra).all():
        raise ValueError("extra features must be finite with one row per base row")
    acc_base = _cv_accuracy(base, y, groups, seed)
    acc_full = _cv_accuracy(np.hstack([base, extra]), y, groups, seed)
    rng = np.random.default_rng([seed, 0x4E5])
    null = np.empty(n_perm)
    for k in range(n_perm):
        perm = rng.permutation(len(y))
        null[k] = _cv_accuracy(np.hstack([base, extra[perm]]), y, groups, seed) - acc_base
    increment = acc_full - acc_base
    return {"base_accuracy": acc_base, "full_accuracy": acc_full, "increment": increment,
            "null_mean": float(null.mean()), "null_high": float(np.quantile(null, 0.95)),
            "p_value": float((1 + np.sum(null >= increment)) / (1 + n_perm)), "n_perm": n_perm}


def concept_decodability(X: np.ndarray, labels: Sequence[str], words: Sequence[str], *,
                         n_splits: int = 5, n_boot: int = 1000, seed: int = 0,
                         C: float = 0.1) -> dict[str, float]:
    """Concept labels decoded from ``X: (n, d)`` on held-out *words*.

    GroupKFold over ``words`` (every occurrence of a word is in one fold), standardised
    logistic regression, balanced accuracy; 95 % CI from a bootstrap over words (the cluster).
    A model that only recognises the words it saw in training scores chance here.
    """
    X, labels, words = _check_rows(X, labels, words)
    n_splits = min(n_splits, len(np.unique(words)))
    pred = cross_val_predict(_classifier(seed, C), X, labels, groups=words,
                             cv=GroupKFold(n_splits=n_splits))
    acc = balanced_accuracy(labels, pred)
    low, high = _cluster_boot(labels, pred, words, n_boot, seed)
    return {"accuracy": acc, "ci_low": low, "ci_high": high,
            "chance": 1.0 / len(np.unique(labels)), "n_words": int(len(np.unique(words))),
            "n": int(len(labels))}


def one_hot(labels: Sequence) -> np.ndarray:
    """``(n, k)`` indicator matrix of ``labels`` (columns in sorted label order)."""
    labels = np.asarray(labels)
    return (labels[:, None] == np.unique(labels)[None, :]).astype(float)


def label_cka(X: np.ndarray, labels: Sequence) -> float:
    """Debiased linear CKA between the one-hot coding of ``labels`` and ``X: (n, d)``."""
    from .similarity import cka

    return cka(one_hot(labels), X, debiased=True)

