"""Dynamic resonance along token positions: align two models' tokens, then compare per position.

Two models can be compared position by position only where their token sequences agree: the
same tokenizer, or tokenizers that cut the same text into the same pieces (MiniLM's and MPNet's
WordPiece vocabularies spell the pieces alike; only their special tokens differ).

>>> from resonance import activations, positions, stimuli, zoo   # doctest: +SKIP
>>> a, b = zoo.load("minilm"), zoo.load("mpnet")                   # doctest: +SKIP
>>> texts = stimuli.corpus_stimuli("wordnet", n=128, max_words=10)  # doctest: +SKIP
>>> ta = activations.extract(a, texts, layers=[-1], pool="tokens")  # doctest: +SKIP
>>> tb = activations.extract(b, texts, layers=[-1], pool="tokens")  # doctest: +SKIP
>>> rows_a, rows_b, pos = positions.aligned_tokens(ta, tb, a.tokenizer, b.tokenizer)  # doctest: +SKIP
>>> positions.positional_trajectory(ta[-1][rows_a], tb[-1][rows_b], pos, n_null=99)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from . import metrics

__all__ = ["token_strings", "aligned_tokens", "positional_trajectory", "word_end_rows",
           "word_end_pairs", "positional_table", "trajectory_summary"]


def token_strings(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """The pieces ``ids`` stand for, from a Hugging Face tokenizer or a ``tokenizers.Tokenizer``."""
    ids = [int(i) for i in ids]
    if hasattr(tokenizer, "convert_ids_to_tokens"):
        return list(tokenizer.convert_ids_to_tokens(ids))
    if hasattr(tokenizer, "id_to_token"):
        return [tokenizer.id_to_token(i) for i in ids]
    raise TypeError(f"cannot turn token ids into strings with a {type(tokenizer).__name__}: "
                    "pass a Hugging Face tokenizer or a tokenizers.Tokenizer")


def _special_ids(tokenizer: Any) -> set[int]:
    return set(getattr(tokenizer, "all_special_ids", None) or ())


def _items(acts, name: str) -> list[np.ndarray]:
    if acts.pool != "tokens" or acts.item is None or acts.token_ids is None:
        raise ValueError(f"{name} must be token-level activations: extract them with "
                         "activations.extract(..., pool='tokens')")
    order = np.argsort(acts.item, kind="stable")
    bounds = np.searchsorted(acts.item[order], np.arange(acts.n_items + 1))
    return [order[bounds[i]:bounds[i + 1]] for i in range(acts.n_items)]


def aligned_tokens(acts_a, acts_b, tokenizer_a: Any, tokenizer_b: Any, *,
                   drop_special: bool = True, min_share: float = 0.5
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of two token-level :class:`~resonance.activations.Activations` that hold the same
    piece of the same stimulus at the same position.

    For each stimulus the two token sequences (special tokens dropped when ``drop_special``)
    are spelled out with each model's tokenizer; a stimulus counts only when both spell the same
    pieces in the same order. Returns ``(rows_a, rows_b, positions)``: index arrays into the
    activations' rows and the position of each kept token among its stimulus's non-special
    tokens (0 = the first real piece). Raises ``ValueError`` when the activations were taken on
    different stimuli or fewer than ``min_share`` of the stimuli align (the tokenizers cut
    text differently: compare pooled vectors instead).
    """
    if acts_a.stimuli_key != acts_b.stimuli_key or acts_a.n_items != acts_b.n_items:
        raise ValueError(f"the activations hold different stimuli ({acts_a.stimuli_key} with "
                         f"{acts_a.n_items} items vs {acts_b.stimuli_key} with {acts_b.n_items})")
    items_a, items_b = _items(acts_a, "acts_a"), _items(acts_b, "acts_b")
    special_a = _special_ids(tokenizer_a) if drop_special else set()
    special_b = _special_ids(tokenizer_b) if drop_special else set()
    rows_a, rows_b, pos, aligned = [], [], [], 0
    for ra, rb in zip(items_a, items_b):
        ra = ra[np.argsort(acts_a.positions[ra], kind="stable")]
        rb = rb[np.argsort(acts_b.positions[rb], kind="stable")]
        ra = np.array([r for r in ra if int(acts_a.token_ids[r]) not in special_a], dtype=int)
        rb = np.array([r for r in rb if int(acts_b.token_ids[r]) not in special_b], dtype=int)
        if token_strings(tokenizer_a, acts_a.token_ids[ra]) != \
                token_strings(tokenizer_b, acts_b.token_ids[rb]):
            continue
        aligned += 1
        rows_a.append(ra)
        rows_b.append(rb)
        pos.append(np.arange(len(ra)))
    if aligned < min_share * acts_a.n_items:
        raise ValueError(f"only {aligned} of {acts_a.n_items} stimuli are cut into the same pieces "
                         f"by both tokenizers (need {min_share:.0%}): these models have no "
                         "shared token positions; compare pooled activations instead")
    cat = lambda parts: np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)  # noqa: E731
    return cat(rows_a), cat(rows_b), cat(pos)


def positional_trajectory(tokens_a: Any, tokens_b: Any, positions: Sequence[int],
                          measure: str = "cka_linear_debiased", *, n_null: int = 99,
                          min_items: int = 32, ci: float = 0.95, seed: int = 0,
                          **kwargs: Any) -> pd.DataFrame:
    """:func:`resonance.metrics.positional_resonance` with a shuffled-pair null per position.

    ``tokens_a: (N, d_a)`` and ``tokens_b: (N, d_b)`` are aligned row by row (see
    :func:`aligned_tokens`), ``positions: (N,)``. Each null draw permutes B's rows *within*
    each position (which stimulus is which, at that position), so the null keeps every
    position's set of tokens. Columns: position, n, value, null_mean, null_low, null_high
    (the central ``ci`` range) and a one-sided ``p_value`` (similarities: higher = more alike).
    """
    from .measures import get
    if get(measure).direction == "distance":
        raise ValueError(f"{measure!r} is a distance; the one-sided null here expects a "
                         "similarity (higher = more alike), e.g. 'cka_linear_debiased'")
    B = np.asarray(tokens_b)
    positions = np.asarray(positions)
    if not isinstance(n_null, (int, np.integer)) or n_null < 1:
        raise ValueError(f"n_null must be a positive integer, got {n_null!r}")
    observed = metrics.positional_resonance(tokens_a, B, positions, measure,
                                            min_items=min_items, **kwargs)
    if observed.empty:
        raise ValueError(f"no position has {min_items} or more tokens; lower min_items or "
                         "use more stimuli")
    groups = [np.flatnonzero(positions == p) for p in observed["position"]]
    keep = np.concatenate(groups)
    rng = np.random.default_rng(seed)
    nulls = np.empty((n_null, len(observed)))
    for k in range(n_null):
        shuffled = np.arange(len(B))
        for idx in groups:
            shuffled[idx] = idx[rng.permutation(idx.size)]
        null = metrics.positional_resonance(np.asarray(tokens_a)[keep], B[shuffled][keep],
                                            positions[keep], measure, min_items=min_items,
                                            **kwargs)
        nulls[k] = null["value"].to_numpy()
    alpha = (1 - ci) / 2
    value = observed["value"].to_numpy()
    return observed.assign(
        null_mean=nulls.mean(0), null_low=np.quantile(nulls, alpha, axis=0),
        null_high=np.quantile(nulls, 1 - alpha, axis=0),
        p_value=(1 + (nulls >= value).sum(0)) / (1 + n_null))


def word_end_rows(acts, tokenizer: Any, texts: Sequence[str]) -> list[dict[int, int]]:
    """For each text, ``word index -> row`` of token-level ``acts``: the row of the token that
    holds the word's last character (found through the tokenizer's character offsets, so it
    works for any tokenizer). Words are runs of letters, digits or apostrophes."""
    import re

    items = _items(acts, "acts")
    if len(texts) != acts.n_items:
        raise ValueError(f"got {len(texts)} texts for activations of {acts.n_items} stimuli")
    enc = tokenizer(list(texts), return_offsets_mapping=True)
    out = []
    for i, text in enumerate(texts):
        offsets = enc["offset_mapping"][i]
        rows = items[i][np.argsort(acts.positions[items[i]], kind="stable")]
        if len(rows) != len(offsets):
            raise ValueError(f"text {i} has {len(rows)} token rows but the tokenizer gives "
                             f"{len(offsets)} tokens: pass the tokenizer the activations came from")
        ends = [m.end() for m in re.finditer(r"[\w']+", text)]
        where, t = {}, 0
        for w, end in enumerate(ends):
            while t < len(offsets) and not (offsets[t][0] <= end - 1 < offsets[t][1]):
                t += 1
            if t == len(offsets):
                break
            where[w] = int(rows[t])
        out.append(where)
    return out


def word_end_pairs(acts_a, acts_b, tokenizer_a: Any, tokenizer_b: Any, texts: Sequence[str]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of two models' token-level activations on the same ``texts`` read at the same word's
    end (:func:`word_end_rows`), for tokenizers that cut words differently. Returns
    ``(rows_a, rows_b, items)`` with the text index of each pair."""
    if acts_a.stimuli_key != acts_b.stimuli_key:
        raise ValueError("the activations hold different stimuli: extract both on the same texts")
    ra, rb = word_end_rows(acts_a, tokenizer_a, texts), word_end_rows(acts_b, tokenizer_b, texts)
    rows_a, rows_b, items = [], [], []
    for i, (wa, wb) in enumerate(zip(ra, rb)):
        for w in sorted(set(wa) & set(wb)):
            rows_a.append(wa[w])
            rows_b.append(wb[w])
            items.append(i)
    return (np.asarray(rows_a, np.int64), np.asarray(rows_b, np.int64),
            np.asarray(items, np.int64))


def positional_table(model_a, model_b, texts, pairs: dict[str, tuple[int, int]], *,
                     n_null: int, min_items: int, seed: int = 0) -> pd.DataFrame:
    """:func:`positional_trajectory` of two zoo models on ``texts`` at each named layer pair
    ``pairs[stage] = (layer_a, layer_b)`` (negative layers count from the end), on the tokens
    both tokenizers cut alike; columns of the trajectory plus stage, layer_a, layer_b and
    aligned_texts (how many texts kept at least one aligned token)."""
    from . import activations

    ids_a = sorted({la % (model_a.n_layers + 1) for la, _ in pairs.values()})
    ids_b = sorted({lb % (model_b.n_layers + 1) for _, lb in pairs.values()})
    tok_a = activations.extract(model_a, texts, layers=ids_a, pool="tokens")
    tok_b = activations.extract(model_b, texts, layers=ids_b, pool="tokens")
    rows_a, rows_b, pos = aligned_tokens(tok_a, tok_b, model_a.tokenizer, model_b.tokenizer)
    frames = []
    for stage, (la, lb) in pairs.items():
        table = positional_trajectory(tok_a[la][rows_a], tok_b[lb][rows_b], pos,
                                      n_null=n_null, min_items=min_items, seed=seed)
        frames.append(table.assign(stage=stage, layer_a=la % (model_a.n_layers + 1),
                                   layer_b=lb % (model_b.n_layers + 1),
                                   aligned_texts=int(len(np.unique(tok_a.item[rows_a])))))
    return pd.concat(frames, ignore_index=True)


def trajectory_summary(table: pd.DataFrame) -> dict[str, float]:
    """One stage of a :func:`positional_trajectory` table: n_positions, min / max / mean value,
    beyond_null (positions above their null's ``null_high``) and the largest null_high."""
    return {"n_positions": int(len(table)), "min": float(table["value"].min()),
            "max": float(table["value"].max()), "mean": float(table["value"].mean()),
            "beyond_null": int((table["value"] > table["null_high"]).sum()),
            "null_high": float(table["null_high"].max())}

