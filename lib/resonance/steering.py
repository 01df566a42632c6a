"""Steering vectors for zoo decoders: build one, inject it, measure what it does.

>>> from resonance import steering, zoo
>>> m = zoo.load("smollm2-135m")                                   # doctest: +SKIP
>>> pos, neg = steering.lexicon()                                  # VADER words, offline
>>> v = steering.contrastive_vector(m, [f"It was {w}" for w in pos[:20]],
...                                 [f"It was {w}" for w in neg[:20]], layer=15)  # doctest: +SKIP
>>> ids_p, ids_n = (list(steering.single_token_ids(m.tokenizer, w).values()) for w in (pos, neg))
>>> steering.preference(m, ["The road ran east"], ids_p, ids_n, layer=15, vector=v)  # doctest: +SKIP

Conventions. ``layer`` is a hidden-state index as in :meth:`resonance.zoo.ZooModel.hidden_states`
(0 = embeddings): injecting at ``layer`` (1..n_layers) adds the vector to the output of decoder
block ``layer - 1`` at every position, so hidden state ``layer`` moves by exactly the vector
(for ``layer = n_layers`` it is added before the final norm). The behaviour metric is the
next-token *preference* ``log p(positive words) - log p(negative words)`` at a prompt's last
token (each side's probability summed over its words' single-token forms); a vector's *effect*
is the preference it adds, prompt by prompt.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["lexicon", "single_token_ids", "blocks", "inject", "preference", "effects",
           "contrastive_vector", "matched_norm", "vader_score", "word_sets", "neutral_prompts",
           "transfer_stats"]


def _lexicon_path() -> Path:
    try:
        import vaderSentiment
    except ImportError as err:
        raise ImportError("the VADER lexicon needs vaderSentiment: `.venv/bin/pip install "
                          "vaderSentiment` (it is a dependency of resonance)") from err
    return Path(vaderSentiment.__file__).parent / "vader_lexicon.txt"


def lexicon(min_valence: float = 2.0) -> tuple[list[str], list[str]]:
    """VADER's positive and negative words (``mean valence >= min_valence`` / ``<= -min``),
    lowercase alphabetic words of >= 3 letters only, sorted."""
    if min_valence <= 0:
        raise ValueError(f"min_valence must be > 0 to split positive from negative, got "
                         f"{min_valence}")
    pos, neg = [], []
    for line in _lexicon_path().read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) < 2 or not (parts[0].isalpha() and parts[0].islower()) \
                or len(parts[0]) < 3:
            continue
        value = float(parts[1])
        if value >= min_valence:
            pos.append(parts[0])
        elif value <= -min_valence:
            neg.append(parts[0])
    return sorted(pos), sorted(neg)


def vader_score(texts: Sequence[str]) -> np.ndarray:
    """VADER's compound sentiment of each text, in [-1, 1]."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    sia = SentimentIntensityAnalyzer(lexicon_file=str(_lexicon_path()))
    return np.array([sia.polarity_scores(t)["compound"] for t in texts])


def _encode(tokenizer, text: str) -> list[int]:
    if hasattr(tokenizer, "token_to_id") and not hasattr(tokenizer, "convert_ids_to_tokens"):
        return list(tokenizer.encode(text, add_special_tokens=False).ids)  # tokenizers.Tokenizer
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def single_token_ids(tokenizer, words: Iterable[str], prefix: str = " ") -> dict[str, int]:
    """``word -> token id`` for the words that ``prefix + word`` turns into exactly one token
    (the form a word takes after another word); the others, and unknown words, are left out."""
    out, unk = {}, getattr(tokenizer, "unk_token_id", None)
    for w in words:
        ids = _encode(tokenizer, prefix + w)
        if len(ids) == 1 and ids[0] != unk:
            out[w] = int(ids[0])
    return out


def blocks(model) -> list:
    """The decoder blocks of a zoo text model: its ``ModuleList`` of ``n_layers`` modules."""
    import torch

    for _name, module in model.module.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == model.n_layers:
            return list(module)
    raise ValueError(f"{model.name} has no ModuleList of its {model.n_layers} blocks; steering "
                     "needs a transformer decoder (GPT-2, Llama, Gemma, ... from the zoo)")


def _check_layer(model, layer: int) -> int:
    if not isinstance(layer, (int, np.integer)) or not 1 <= layer <= model.n_layers:
        raise ValueError(f"layer must be a hidden-state index in 1..{model.n_layers} for "
                         f"{model.name} (0, the embeddings, has no block to hook), got {layer!r}")
    return int(layer)


@contextlib.contextmanager
def inject(model, layer: int, vector):
    """Within the block, add ``vector`` (``(d,)``, or ``(batch, d)`` for one vector per row) to
    hidden state ``layer`` at every position, through a forward hook on block ``layer - 1``."""
    import torch

    block = blocks(model)[_check_layer(model, layer) - 1]
    v = torch.as_tensor(np.asarray(vector, dtype=np.float32), device=model.device)
    width = model.hidden_sizes[layer]
    if v.ndim not in (1, 2) or v.shape[-1] != width:
        raise ValueError(f"the vector must be ({width},) or (batch, {width}) for layer {layer} "
                         f"of {model.name}, got shape {tuple(v.shape)}")
    add = v if v.ndim == 1 else v[:, None, :]

    def hook(_module, _inputs, output):
        if isinstance(output, tuple):
            return (output[0] + add.to(output[0].dtype), *output[1:])
        return output + add.to(output.dtype)

    handle = block.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _next_token_log_probs(model, batch: dict):
    """Log-softmax of the next-token logits at each row's last real token ``(b, vocab)``."""
    import torch

    states = model.hidden_states(batch)
    mask = batch["attention_mask"]
    steps = torch.arange(mask.shape[1], device=mask.device)
    last = (mask * (steps + 1)).argmax(1)
    h = states[-1][torch.arange(mask.shape[0], device=mask.device), last]
    with torch.inference_mode():
        head = model.module.get_output_embeddings()
        logits = head(h.to(head.weight.dtype)).float()
        cap = getattr(model.module.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
    return torch.log_softmax(logits, -1)


def preference(model, prompts: Sequence[str], positive_ids: Sequence[int],
               negative_ids: Sequence[int], layer: int | None = None, vector=None,
               batch_size: int = 32) -> np.ndarray:
    """Per prompt: ``log Σ p(positive) - log Σ p(negative)`` for the next token, with
    ``vector`` injected at ``layer`` (or nothing injected when ``vector`` is None)."""
    import torch

    if not len(positive_ids) or not len(negative_ids):
        raise ValueError("positive_ids and negative_ids must each name at least one token")
    if not len(prompts):
        raise ValueError("prompts are empty")
    pos = torch.as_tensor(np.asarray(positive_ids, dtype=np.int64))
    neg = torch.as_tensor(np.asarray(negative_ids, dtype=np.int64))
    out = []
    for start in range(0, len(prompts), batch_size):
        batch = model.tokenize(list(prompts[start:start + batch_size]))
        ctx = contextlib.nullcontext() if vector is None else inject(model, layer, vector)
        with ctx:
            lp = _next_token_log_probs(model, batch).cpu()
        out.append((torch.logsumexp(lp[:, pos], 1) - torch.logsumexp(lp[:, neg], 1)).numpy())
    return np.concatenate(out).astype(np.float64)


def effects(model, prompts: Sequence[str], positive_ids: Sequence[int],
            negative_ids: Sequence[int], layer: int, vectors: Mapping[str, np.ndarray],
            base: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per named vector, its per-prompt effect: preference with it minus without it."""
    if base is None:
        base = preference(model, prompts, positive_ids, negative_ids)
    return {name: preference(model, prompts, positive_ids, negative_ids, layer, v) - base
            for name, v in vectors.items()}


def contrastive_vector(model, positive: Sequence[str], negative: Sequence[str],
                       layer: int | Sequence[int]) -> np.ndarray:
    """Mean last-token state of hidden state ``layer`` over ``positive`` prompts minus that over
    ``negative`` ones (contrastive activation addition): ``(d,)``, or one row per layer when
    ``layer`` is a list (one forward pass for all). Activations are cached as usual."""
    from . import activations

    if not len(positive) or not len(negative):
        raise ValueError("need at least one positive and one negative prompt")
    ids = [int(x) for x in np.atleast_1d(layer)]
    a = activations.extract(model, list(positive), layers=ids, pool="last")
    b = activations.extract(model, list(negative), layers=ids, pool="last")
    out = np.stack([a[i].astype(np.float64).mean(0) - b[i].astype(np.float64).mean(0)
                    for i in ids])
    return out if np.ndim(layer) else out[0]


def matched_norm(vectors: np.ndarray, norm: float) -> np.ndarray:
    """Rows of ``vectors`` rescaled to Euclidean norm ``norm``."""
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    lengths = np.linalg.norm(vectors, axis=1, keepdims=True)
    if (lengths == 0).any():
        raise ValueError("cannot rescale a zero vector to a matched norm")
    return vectors / lengths * float(norm)


def word_sets(tokenizer, other_tokenizer=None, min_valence: float = 2.0, per_set: int = 32,
              seed: int = 0) -> tuple[tuple[list[str], list[int]], tuple[list[str], list[int]]]:
    """``((vector words, metric ids) positive, (vector words, metric ids) negative)``: each
    polarity's VADER words that are single tokens for ``tokenizer`` (and ``other_tokenizer``),
    shuffled (seeded) and split into two disjoint halves of at most ``per_set`` words: one to
    build a vector from, the other (as ``tokenizer`` ids) to measure its effect on."""
    rng = np.random.default_rng([int(seed), 0x57])
    out = []
    for words in lexicon(min_valence):
        both = [w for w in single_token_ids(tokenizer, words)
                if other_tokenizer is None or single_token_ids(other_tokenizer, [w])]
        both = [both[i] for i in rng.permutation(len(both))]
        half = min(len(both) // 2, per_set)
        if half < 4:
            raise ValueError(f"only {len(both)} VADER words of valence >= {min_valence} are "
                             "single tokens for these tokenizers (need 8): lower min_valence")
        out.append((both[:half], list(single_token_ids(tokenizer, both[half:2 * half]).values())))
    return out[0], out[1]


def neutral_prompts(texts: Sequence[str], n: int, min_valence: float = 1.0) -> list[str]:
    """The first ``n`` texts holding no VADER word of ``|valence| >= min_valence``."""
    pos, neg = lexicon(min_valence)
    lex = set(pos) | set(neg)
    ok = [t for t in texts if not {w.strip(".,;:!?'\"()").lower() for w in t.split()} & lex]
    if len(ok) < n:
        raise ValueError(f"only {len(ok)} of {len(texts)} texts are free of sentiment words; "
                         f"need {n}: pass more texts")
    return ok[:n]


def transfer_stats(native: np.ndarray, transferred: np.ndarray, random_means: np.ndarray,
                   n_boot: int = 1000, seed: int = 0) -> dict:
    """Transfer of a steering vector: ``ratio`` = mean effect of ``transferred`` / that of
    ``native`` (per-prompt effects on the same prompts) with a percentile interval from
    resampling prompts, and both effects' one-sided permutation p-values among
    ``random_means`` (the mean effects of matched-norm random vectors)."""
    from .stats import percentile_ci, permutation_p

    native, transferred = np.asarray(native, float), np.asarray(transferred, float)
    if native.shape != transferred.shape or not native.size:
        raise ValueError(f"native and transferred effects must be per prompt on the same "
                         f"prompts, got shapes {native.shape} and {transferred.shape}")
    rng = np.random.default_rng([int(seed), 0xB0])
    picks = rng.integers(0, native.size, (int(n_boot), native.size))
    boots = transferred[picks].mean(1) / native[picks].mean(1)
    return {"ratio": float(transferred.mean() / native.mean()),
            "ratio_ci": list(percentile_ci(boots)), "effect": float(transferred.mean()),
            "native": float(native.mean()),
            "p_vs_random": permutation_p(float(transferred.mean()), random_means),
            "native_p_vs_random": permutation_p(float(native.mean()), random_means),
            "random_q95": float(np.quantile(random_means, 0.95)),
            "n_random": int(len(random_means))}
