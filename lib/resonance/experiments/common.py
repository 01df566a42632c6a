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


def inhouse_model(family: str, d_model: int, n_layers: int, seed: int, recipe: Mapping[str, Any]):
    """Train (or load the cached run of) an in-house model and wrap it for extraction.

    Returns ``(zoo_model, trained)``; ``trained.history`` holds validation perplexity.
    """
    from .. import train, zoo

    config = train.TrainConfig(family=family, d_model=d_model, n_layers=n_layers, seed=seed,
                               **recipe)
    trained = train.train(config, progress=False)
    return zoo.wrap_trained(trained, name=f"{family}-d{d_model}-l{n_layers}-s{seed}"), trained
