"""The model zoo: catalogue, offline loading, clear errors, in-house and hub plumbing.

The big packaged models (the ``zoo`` extra) are tested only where they are installed; their
first load converts/assembles them into ``zoo.model_cache()`` once (tens of seconds), later
loads take about a second.
"""

from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest
import torch

from resonance import zoo

EXPECTED = {"minilm", "mpnet", "smollm2-135m", "gemma3-270m", "efficientnet-lite0",
            "efficientnet-lite1", "efficientnet-lite2", "inhouse-gpt2", "inhouse-llama",
            "inhouse-gru"}


def test_list_catalogue():
    frame = zoo.list()
    assert set(frame["name"]) == EXPECTED
    for column in ("name", "family", "architecture", "modality", "params", "layers", "width",
                   "source", "available", "why_not"):
        assert column in frame.columns
    assert set(frame["source"]) == {"package", "in-house"}
    assert set(frame["modality"]) == {"text", "vision"}
    base = frame.set_index("name")
    assert base.loc["minilm", "available"] and base.loc["efficientnet-lite0", "available"]
    assert (base.loc["minilm", "layers"], base.loc["minilm", "width"]) == (6, 384)
    for _, row in frame.iterrows():  # an unavailable model always says why
        assert row["available"] == (row["why_not"] == "")


def test_minilm_loads_offline_and_is_cached():
    model = zoo.load("minilm")
    assert (model.modality, model.source, model.n_layers) == ("text", "package", 6)
    assert model.hidden_sizes == [384] * 7 and model.max_length == 512
    assert 20e6 < model.n_params < 25e6
    assert zoo.load("minilm") is model  # in-process cache
    states = model(["a dog", "the cat sat on the mat"])
    assert len(states) == 7
    assert all(s.shape[0] == 2 and s.shape[2] == 384 and s.dtype == torch.float32
               for s in states)


def test_efficientnet_lite0_hooks_every_block():
    model = zoo.load("efficientnet-lite0")
    assert (model.modality, model.image_size) == ("vision", 224)
    images = np.random.default_rng(0).integers(0, 256, (2, 48, 40, 3), dtype=np.uint8)
    states = model(images)
    assert len(states) == model.n_layers + 1 == len(model.module._blocks) + 2
    assert [s.shape for s in states] == [(2, w) for w in model.hidden_sizes]
    assert model.hidden_sizes[0] == 32 and model.hidden_sizes[-1] == 1280
    # The hooked head equals the network's own pre-classifier features, spatially averaged.
    with torch.inference_mode():
        head = model.module.extract_features(model.preprocess(images)["pixel_values"])
    torch.testing.assert_close(states[-1], head.mean(dim=(2, 3)))


def test_unknown_name_lists_the_zoo():
    with pytest.raises(ValueError) as err:
        zoo.load("no-such-model")
    for name in ("minilm", "efficientnet-lite0", "inhouse-gpt2"):
        assert name in str(err.value)


def test_hub_name_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # nothing in a local HF cache either
    with pytest.raises(zoo.HubUnreachableError) as err:
        zoo.load("EleutherAI/pythia-70m")
    message = str(err.value)
    assert "'EleutherAI/pythia-70m' is not packaged and the hub is unreachable" in message
    assert "minilm" in message
    with pytest.raises(zoo.HubUnreachableError, match="'gpt2' is not packaged"):
        zoo.load("gpt2", hub=True)


def test_packaged_models_take_no_options():
    with pytest.raises(TypeError, match=r"load\('minilm'\) takes no model options"):
        zoo.load("minilm", d_model=8)


def test_missing_extra_names_the_install_command(monkeypatch):
    entry = zoo._CATALOGUE["mpnet"]
    monkeypatch.setitem(zoo._CATALOGUE, "mpnet",
                        dataclasses.replace(entry, needs=("dist:not-a-real-dist-xyz",)))
    monkeypatch.setattr(zoo.packaged, "_mpnet_dir", lambda: zoo.model_cache() / "not-there")
    assert not zoo.available("mpnet")
    with pytest.raises(zoo.ZooUnavailableError, match=r"make setup-zoo.*--no-deps"):
        zoo.load("mpnet")


# -- in-house models (stand-ins: no training in unit tests) -----------------------------------

@dataclasses.dataclass(frozen=True)
class _Config:
    family: str = "gpt2"
    d_model: int = 16
    n_layers: int = 2
    context: int = 32
    seed: int = 0


class _TinyLM(torch.nn.Module):
    """Like the in-house models: forward(ids, attention_mask, output_hidden_states=True)."""

    def __init__(self, vocab=200, d=16, n_layers=2, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.emb = torch.nn.Embedding(vocab, d)
        self.layers = torch.nn.ModuleList(torch.nn.Linear(d, d) for _ in range(n_layers))

    def forward(self, input_ids, attention_mask=None, output_hidden_states=False):
        h = self.emb(input_ids)
        states = [h]
        for layer in self.layers:
            h = torch.tanh(layer(h)) + h
            states.append(h)
        return types.SimpleNamespace(hidden_states=tuple(states))


class _WordTokenizer:
    """A bare tokenizer with ``encode`` (like a `tokenizers.Tokenizer` without batch)."""

    pad_token_id = 0

    def encode(self, text):
        return [1 + sum(map(ord, w)) % 150 for w in text.split()]


def _trained(seed=0):
    config = _Config(seed=seed)
    return types.SimpleNamespace(model=_TinyLM(seed=seed).eval(), tokenizer=_WordTokenizer(),
                                 config=config)


def test_inhouse_load_goes_through_train(monkeypatch):
    train = pytest.importorskip("resonance.train")
    calls = []

    def fake_train(config, **kwargs):
        calls.append(config)
        return _trained(config.seed)

    monkeypatch.setattr(train, "train", fake_train)
    model = zoo.load("inhouse-gpt2", d_model=16, n_layers=2, seed=3, tokens=4096,
                     corpus="kjv", reload=True)
    assert calls and calls[0].family == "gpt2" and calls[0].seed == 3
    assert model.source == "in-house" and model.n_layers == 2 and model.max_length == 32
    other = zoo.load("inhouse-gpt2", d_model=16, n_layers=2, seed=4, tokens=4096,
                     corpus="kjv", reload=True)
    assert model.key != other.key  # the training-config hash is part of the key
    states = model(["in the beginning", "god created the heaven and the earth"])
    assert len(states) == 3 and states[0].shape == (2, 7, 16)


def test_wrap_trained_key_follows_config():
    a, b = zoo.wrap_trained(_trained(0)), zoo.wrap_trained(_trained(1))
    assert a.key != b.key and a.identity["train_hash"] != b.identity["train_hash"]
    assert zoo.wrap_trained(_trained(0)).key == a.key
    batch = a.tokenize(["a b c", "a"])
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    with pytest.raises(ValueError, match="at most 32"):
        a.tokenize([" ".join(["w"] * 40)])


# -- the zoo extra: tested where installed -------------------------------------------------------

BIG = {"mpnet": (12, 768), "smollm2-135m": (30, 576), "gemma3-270m": (18, 640),
       "efficientnet-lite1": (22, 1280), "efficientnet-lite2": (22, 1280)}


@pytest.mark.parametrize("name", sorted(BIG))
def test_big_packaged_models(name):
    if not zoo.available(name):
        pytest.skip(f"{name}: {zoo.list().set_index('name').loc[name, 'why_not']}")
    model = zoo.load(name)
    layers, width = BIG[name]
    assert model.n_layers == layers and max(model.hidden_sizes) == width
    if model.modality == "vision":
        states = model(np.zeros((1, 32, 32, 3), dtype=np.uint8))
        assert [s.shape for s in states] == [(1, w) for w in model.hidden_sizes]
    else:
        states = model(["In the beginning God created the heaven and the earth."])
        assert len(states) == layers + 1
        assert all(s.shape[0] == 1 and s.shape[2] == width for s in states)
        assert all(torch.isfinite(s).all() for s in states)


def test_conversion_bar_is_dropped_when_stderr_is_not_a_terminal(capsys):
    from tqdm.auto import tqdm
    with zoo.packaged._no_bar_unless_terminal():
        for _ in tqdm(range(3), desc="Converting"):
            pass
    assert capsys.readouterr().err == ""


# -- A friendly API (issue 11) -----------------------------------------------------------------


def test_hub_ids_of_packaged_copies_load_the_package_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # nothing in a local HF cache
    model = zoo.load("sentence-transformers/all-MiniLM-L6-v2")
    assert model is zoo.load("minilm") and model.source == "package"
    assert zoo.load("Sentence-Transformers/all-minilm-l6-v2") is model
    with pytest.raises(zoo.HubUnreachableError, match="packaged copy loads offline as "
                                                      "load\\('minilm'\\)"):
        zoo.load("sentence-transformers/all-MiniLM-L6-v2", hub=True)
    with pytest.raises(zoo.HubUnreachableError, match="Q4_1 GGUF quantisation of it"):
        zoo.load("HuggingFaceTB/SmolLM2-135M-Instruct")  # other weights: never substituted


def test_local_folders_and_paths(tmp_path):
    from pathlib import Path

    packaged = zoo.load("minilm")
    folder = tmp_path / "my-encoder"
    packaged.module.save_pretrained(folder)
    packaged.tokenizer.save_pretrained(folder)
    local = zoo.load(folder)
    assert local.source == "local" and local.name == "my-encoder"
    assert zoo.load(str(folder)) is local  # a string naming a folder is the same model
    assert local.key != packaged.key
    texts = ["a dog runs", "the cat sat on the mat"]
    for a, b in zip(local(texts), packaged(texts)):
        torch.testing.assert_close(a, b)
    (folder / "extra").mkdir()
    again = zoo.load(Path(folder), reload=True)
    assert again.key == local.key  # the key follows the files, not the load
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no config.json.*save_pretrained"):
        zoo.load(empty)
    with pytest.raises(TypeError, match="local models take no options"):
        zoo.load(folder, d_model=3)


def test_one_route_to_an_inhouse_model(monkeypatch):
    """zoo.load("inhouse-gpt2", ...) and experiments.common.inhouse_model give one name and one
    key (so one activation cache) for the same run."""
    train = pytest.importorskip("resonance.train")
    from resonance.experiments import common

    monkeypatch.setattr(train, "train", lambda config, **kwargs: _trained(config.seed))
    recipe = {"tokens": 4096, "corpus": "kjv"}
    via_zoo = zoo.load("inhouse-gpt2", d_model=16, n_layers=2, seed=5, reload=True, **recipe)
    via_experiments, trained = common.inhouse_model("gpt2", 16, 2, 5, recipe)
    assert via_zoo.name == via_experiments.name == "gpt2-d16-l2-s5"
    assert via_zoo.key == via_experiments.key and trained is via_experiments.trained
