"""Cache keys that must never move: trained runs, activations and stimuli in the shared cache
and under results/ are found by these hashes, so a refactor that changed one would silently
retrain or re-extract (and stop matching committed results)."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from resonance import stimuli, train, zoo
from resonance.io import config_hash


def _gated_paper_gpt2() -> train.TrainConfig:
    # 01/02's gated recipe (experiments.common.RECIPE_GATED["paper"]) written out as literals.
    return train.TrainConfig(family="gpt2", d_model=128, n_layers=2, seed=0, corpus="kjv",
                             vocab_size=4096, context=128, tokens=200_000, batch_size=16,
                             lr=2e-3, warmup=15, eval_every=14, eval_tokens=16_384)


def test_config_hash_is_pinned():
    assert config_hash({"a": 1}) == "015abd7f5cc5"


def test_train_config_keys_are_pinned():
    assert _gated_paper_gpt2().name == "gpt2-66e97f699194"
    rhyme = train.TrainConfig(family="resonance_transformer", d_model=64, n_layers=2, seed=0,
                              build_kwargs={"phase_init": "rhyme", "rhyme_tokenizer": "kjv"})
    assert rhyme.name == "resonance_transformer-2fc272b304fb"


def test_inhouse_activation_key_is_pinned():
    config = _gated_paper_gpt2()
    # the key depends on the config and the name only, not on the weights
    trained = SimpleNamespace(model=torch.nn.Linear(2, 2), tokenizer=None, config=config)
    # the key of gpt2-d128-l2-s0-774b513cc560-*.npz in the activation cache
    assert zoo.wrap_trained(trained, name="gpt2-d128-l2-s0").key == "774b513cc560"
    # the one route's default name is that name, so zoo.load("inhouse-gpt2", ...) shares it
    assert zoo.inhouse_name(config) == "gpt2-d128-l2-s0"
    assert zoo.wrap_trained(trained).key == "774b513cc560"


def test_stimuli_keys_are_pinned():
    assert stimuli.concept_stimuli(5).key == "ade1e10198ea"
    assert stimuli.corpus_stimuli("kjv", n=64, seed=0).key == "8e527a059b3e"
