"""What a mixture-of-experts router does with tokens: load, dead experts, specialisation.

``experts`` arrays are the router's top-k choices ``(n_tokens, k)`` (e.g.
``resonance.moe.MoELM.last_routing[layer]["experts"]`` flattened); ``labels`` are one label per
token (its id, or a class from :func:`token_classes`).

- :func:`assignment_shares`: each expert's share of all top-k assignments.
- :func:`utilisation`: dead experts as in SRA's analysis (share < ``dead_share`` = 0.01 %), the
  share of experts below 1 % of the uniform share, and the normalised entropy of the load.
- :func:`specialisation`: how much the top-1 expert says about a token's label -- mutual
  information ``I(expert; label) / H(label)`` and majority purity -- against a null that
  shuffles the experts over the tokens (``n_null`` draws), so a finite-sample MI is never read
  as specialisation.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .stats import permutation_p

__all__ = ["assignment_shares", "utilisation", "token_classes", "specialisation",
           "mutual_information", "purity", "DEAD_SHARE", "TOKEN_CLASSES"]

DEAD_SHARE = 1e-4  # SRA's analysis: an expert with < 0.01 % of the top-k assignments is dead
TOKEN_CLASSES = ("punctuation", "number", "capitalised", "word", "piece")


def assignment_shares(experts: np.ndarray, n_experts: int) -> np.ndarray:
    """``(n_experts,)`` share of all top-k assignments in ``experts (n, k)`` (sums to 1)."""
    e = np.asarray(experts).reshape(-1)
    if e.size == 0:
        raise ValueError("no assignments: experts is empty")
    if e.min() < 0 or e.max() >= n_experts:
        raise ValueError(f"expert ids must lie in [0, {n_experts}), got {e.min()}..{e.max()}")
    return np.bincount(e, minlength=n_experts) / e.size


def utilisation(shares: Sequence[float], dead_share: float = DEAD_SHARE,
                low_fraction: float = 0.01) -> dict[str, float]:
    """``dead_frac`` (share < ``dead_share``), ``low_frac`` (share < ``low_fraction`` / N) and
    ``entropy`` = H(shares) / ln N (1: perfectly even load)."""
    s = np.asarray(shares, float)
    n = s.size
    if n < 2 or not np.isclose(s.sum(), 1.0):
        raise ValueError(f"shares must be >= 2 values summing to 1, got {n} summing to {s.sum()}")
    nz = s[s > 0]
    return {"dead_frac": float((s < dead_share).mean()),
            "low_frac": float((s < low_fraction / n).mean()),
            "entropy": float(-(nz * np.log(nz)).sum() / np.log(n))}


def token_classes(tokens: Sequence[str]) -> np.ndarray:
    """A nameable class per byte-level BPE token string (``Ġ`` marks a word start):
    punctuation, number, capitalised word start, lower-case word start, or word piece."""
    out = []
    for tok in tokens:
        start = tok.startswith("Ġ")
        body = tok[1:] if start else tok
        if not any(ch.isalnum() for ch in body):
            out.append("punctuation")
        elif body.isdigit():
            out.append("number")
        elif start and body[:1].isupper():
            out.append("capitalised")
        elif start:
            out.append("word")
        else:
            out.append("piece")
    return np.asarray(out)


def _codes(x: np.ndarray) -> tuple[np.ndarray, int]:
    _, codes = np.unique(np.asarray(x), return_inverse=True)
    return codes.ravel(), int(codes.max()) + 1


def _mi_codes(ca: np.ndarray, na: int, cb: np.ndarray, nb: int) -> float:
    joint = np.bincount(ca * nb + cb, minlength=na * nb).reshape(na, nb) / ca.size
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum())


def _purity_codes(ce: np.ndarray, ne: int, cl: np.ndarray, nl: int) -> float:
    table = np.bincount(ce * nl + cl, minlength=ne * nl).reshape(ne, nl)
    return float(table.max(1).sum() / ce.size)


def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """Plug-in mutual information (nats) of two label arrays of equal length."""
    ca, na = _codes(a)
    cb, nb = _codes(b)
    if ca.size != cb.size:
        raise ValueError(f"label arrays differ in length: {ca.size} vs {cb.size}")
    return _mi_codes(ca, na, cb, nb)


def _entropy(x: np.ndarray) -> float:
    p = np.bincount(_codes(x)[0]) / len(x)
    return float(-(p * np.log(p)).sum())


def purity(expert: np.ndarray, labels: np.ndarray) -> float:
    """Share of tokens whose label is their expert's most frequent label."""
    return _purity_codes(*_codes(expert), *_codes(labels))


def specialisation(expert: np.ndarray, labels: np.ndarray, n_null: int = 99,
                   seed: int = 0) -> dict[str, float]:
    """``I(expert; label) / H(label)`` and purity of the top-1 ``expert (n,)`` against
    ``labels (n,)``, each with the mean, 95th percentile and permutation p of a null that
    shuffles the experts over the tokens; ``nmi_excess`` = observed − null mean."""
    expert, labels = np.asarray(expert).ravel(), np.asarray(labels).ravel()
    if expert.size != labels.size or expert.size < 2:
        raise ValueError(f"need >= 2 tokens with one expert and one label each, got "
                         f"{expert.size} and {labels.size}")
    if n_null < 1:
        raise ValueError(f"n_null must be >= 1, got {n_null}")
    h = _entropy(labels)
    if h == 0:
        raise ValueError("labels are constant: there is nothing to specialise on")
    rng = np.random.default_rng([seed, 0x5A])
    (ce, ne), (cl, nl) = _codes(expert), _codes(labels)   # encoded once; the null permutes ce
    obs = {"nmi": _mi_codes(ce, ne, cl, nl) / h, "purity": _purity_codes(ce, ne, cl, nl)}
    out: dict[str, float] = {}
    nulls: dict[str, list[float]] = {"nmi": [], "purity": []}
    for _ in range(n_null):
        shuffled = rng.permutation(ce)
        nulls["nmi"].append(_mi_codes(shuffled, ne, cl, nl) / h)
        nulls["purity"].append(_purity_codes(shuffled, ne, cl, nl))
    for key, value in obs.items():
        null = np.asarray(nulls[key])
        out.update({key: value, f"{key}_null_mean": float(null.mean()),
                    f"{key}_null_high": float(np.quantile(null, 0.95)),
                    f"{key}_p": permutation_p(value, null), f"{key}_excess": value - null.mean()})
    out["n_null"] = n_null
    return out
