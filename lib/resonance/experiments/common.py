"""Helpers shared by the experiment modules."""

from __future__ import annotations

from typing import Any, Mapping

from ..profiles import pick


def profile_config(sizes: Mapping[str, Mapping[str, Any]], profile: str, seed: int,
                   overrides: Mapping[str, Any], version: int = 1) -> dict[str, Any]:
    """The profile's sizes with ``seed`` and any overrides; unknown override keys are errors.

    ``version`` is the experiment's code version: bump it when ``compute`` changes what it
    returns, so results stored by older code no longer match the config hash.
    """
    config = {**pick(profile, sizes), "seed": seed, "version": version}
    unknown = set(overrides) - set(config)
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)}; this experiment takes "
                         f"{sorted(config)}")
    config.update(overrides)
    return config


def long_diagrams(diagrams: list, **columns: Any) -> list[dict]:
    """Rows (dim, birth, death, **columns) of persistence diagrams ``[H0, H1, ...]``."""
    return [{**columns, "dim": dim, "birth": float(b), "death": float(d)}
            for dim, dgm in enumerate(diagrams) for b, d in dgm]


# The in-house training recipe shared by every finding, so that notebooks asking for the same
# model (family, size, seed, budget) reuse one cached training run.
RECIPE = {
    "smoke": {"corpus": "kjv", "vocab_size": 4096, "context": 64, "tokens": 32_768,
              "batch_size": 16, "lr": 2e-3, "warmup": 10, "eval_every": 16, "eval_tokens": 8_192},
    # Small models learn fast at a high learning rate; 400k tokens is ~0.4 epoch of the KJV.
    "paper": {"corpus": "kjv", "vocab_size": 4096, "context": 128, "tokens": 400_000,
              "batch_size": 16, "lr": 2e-3, "warmup": 30, "eval_every": 25,
              "eval_tokens": 32_768},
}
# The recipe of the gated redesign of 01/02 (issue 13; ``scale``, ``architecture``):
# 200k tokens (98 steps), so that 01's ladder (4 widths x 5 seeds) and 02's matched Llama and
# GRU (3 seeds) train in about 20 CPU-minutes together (single-threaded: ~25-40 CPU-s a model).
RECIPE_GATED = {"smoke": RECIPE["smoke"],
                "paper": {**RECIPE["paper"], "tokens": 200_000, "warmup": 15, "eval_every": 14,
                          "eval_tokens": 16_384}}


def inhouse_model(family: str, d_model: int, n_layers: int, seed: int, recipe: Mapping[str, Any]):
    """Train (or load the cached run of) an in-house model and wrap it for extraction, by the
    zoo's one route (:func:`resonance.zoo.load_inhouse`: the name ``gpt2-d64-l2-s0`` and the key
    ``zoo.load("inhouse-gpt2", ...)`` gives the same run).

    Returns ``(zoo_model, trained)``; ``trained.history`` holds validation perplexity.
    """
    from .. import zoo

    model = zoo.load_inhouse(family, progress=False, d_model=d_model, n_layers=n_layers,
                             seed=seed, **recipe)
    return model, model.trained


# -- Stimuli, baselines and capability gates shared by 01_scale and 02_architecture -------------

PPL_GATE = 0.8  # a language model must reach <= 0.8 x the unigram perplexity of the same tokens


def word_and_verse_stimuli(config: Mapping[str, Any]):
    """Concept nouns inside held-out verses (read at the word) and held-out verses (read at
    every token): what the in-house models were trained on, in the form they saw it."""
    from .. import stimuli

    words = stimuli.concept_occurrences(config["n_per_concept"], config["max_per_word"],
                                        seed=config["seed"])
    verses = stimuli.corpus_stimuli("kjv", n=config["n_verses"], seed=config["seed"])
    return words, verses


def token_rows(acts, n: int, seed: int, special: Any = ()) -> Any:
    """``n`` token rows of token-level activations, never a verse's first token or a special
    token, drawn with ``seed`` (models that share a tokenizer get the same tokens)."""
    import numpy as np

    ok = (acts.positions > 0) & ~np.isin(acts.token_ids, list(special))
    rows = np.flatnonzero(ok)
    return np.sort(np.random.default_rng([seed, 0x70]).choice(rows, min(n, rows.size), False))


def model_clouds(model, words, verses, n_tokens: int, seed: int) -> dict[str, list]:
    """A model's layers on the word stimuli ``(n_words, d)`` and on ``n_tokens`` verse tokens."""
    from .. import activations

    tokens = activations.extract(model, verses, pool="tokens")
    special = getattr(model.tokenizer, "all_special_ids", None) or []
    keep = token_rows(tokens, n_tokens, seed, special)
    return {"words": activations.extract_last_word(model, words).layers,
            "tokens": [a[keep] for a in tokens.layers]}


def random_init_twin(model, trained):
    """The same run's step-0 checkpoint wrapped like ``model`` (the random-init control)."""
    import dataclasses

    from .. import zoo

    twin = zoo.wrap_trained(dataclasses.replace(trained, model=trained.load_checkpoint(0)),
                            name=f"{model.name}-init")
    twin.key = f"{model.key}-init"
    return twin


def unigram_baseline(recipe: Mapping[str, Any]) -> float:
    """Add-one unigram perplexity on the validation tokens the models are scored on."""
    from .. import data, stats

    tok = data.tokenizer(recipe["corpus"], recipe["vocab_size"])
    val = data.token_stream(recipe["corpus"], "validation", tok)
    n = (recipe["eval_tokens"] // recipe["context"]) * (recipe["context"] + 1)
    return stats.unigram_perplexity(data.token_stream(recipe["corpus"], "train", tok), val[:n],
                                    recipe["vocab_size"])


def decodability_rows(name: str, kind: str, layers: list, words, n_boot: int, seed: int,
                      **columns: Any) -> list[dict]:
    """Held-out-word concept decodability of every layer of one model (``kind``: trained or
    random_init)."""
    from .. import decoding

    return [{"model": name, "kind": kind, "layer": layer, **columns,
             **decoding.concept_decodability(X, words.labels, words.words, n_boot=n_boot,
                                             seed=seed)}
            for layer, X in enumerate(layers)]


def gate_table(models, gates, twin_of: str):
    """Per model: the perplexity gate (``val_ppl <= PPL_GATE x unigram_ppl``, where the model
    has a perplexity) and the concept gate: the best non-embedding layer's held-out-word
    accuracy has its CI above chance and, where a random-init twin exists (its row in
    ``gates`` has ``kind == "random_init"`` and the same ``twin_of`` value), above the twin's
    best CI."""
    import numpy as np

    inner = gates[gates.layer > 0]
    best = inner.loc[inner.groupby(["model", "kind"])["accuracy"].idxmax()]
    twin = best[best.kind == "random_init"].set_index(twin_of)
    out = models.merge(best[best.kind == "trained"][["model", "layer", "accuracy", "ci_low",
                                                      "ci_high", "chance"]], on="model")
    out["twin_accuracy"] = out[twin_of].map(twin["accuracy"])
    out["twin_ci_high"] = out[twin_of].map(twin["ci_high"])
    out["ppl_ratio"] = out.val_ppl / out.unigram_ppl
    out["ppl_gate"] = out.ppl_ratio.isna() | (out.ppl_ratio <= PPL_GATE)
    above_twin = out.twin_ci_high.isna() | (out.accuracy > out.twin_ci_high)
    out["concept_gate"] = (out.ci_low > out.chance) & above_twin
    out["twin_accuracy"] = out["twin_accuracy"].astype(float).fillna(np.nan)
    return out


def check_architecture_config(config: Mapping[str, Any], pretrained: Mapping[str, str]) -> None:
    """The checks every architecture comparison needs: known, distinct families; >= 2 seeds;
    a ``[d_model, n_layers]`` shape; pretrained models among ``pretrained``."""
    from .. import models

    families = list(config["families"])
    unknown = set(families) - set(models.FAMILIES)
    if unknown:
        raise ValueError(f"unknown families {sorted(unknown)}; known: {models.FAMILIES}")
    if len(set(families)) < 2:
        raise ValueError("need at least two distinct architectures (families) to compare")
    if not isinstance(config["n_seeds"], int) or config["n_seeds"] < 2:
        raise ValueError(f"n_seeds must be an integer >= 2 (grouped-by-seed cross-validation and "
                         f"the within-architecture seed ceiling need two), got {config['n_seeds']!r}")
    shape = config["shape"]
    if (len(shape) != 2 or not all(isinstance(v, int) and v >= 1 for v in shape)
            or shape[0] % 8):
        raise ValueError(f"shape must be [d_model, n_layers] with d_model a multiple of 8, "
                         f"got {shape!r}")
    bad = [p for p in config["pretrained"] if p not in pretrained]
    if bad:
        raise ValueError(f"unknown pretrained models {bad}; choose from {sorted(pretrained)}")
