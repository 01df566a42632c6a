"""Activation extraction: shapes, mask-respecting pooling, caching, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from resonance import activations, paths, zoo
from resonance.activations import Activations, extract
from resonance.stimuli import Stimuli

TEXTS = ["dog", "The cat sat quietly on the old mat by the door.", "In the beginning God "
         "created the heaven and the earth.", "milk", "a tree", "She told me about the river."]


@pytest.fixture(autouse=True)
def _tmp_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "CACHE", tmp_path / "cache")


def _texts(texts=TEXTS):
    return Stimuli("test-texts", list(texts), None, ["x"] * len(texts))


@pytest.fixture(scope="module")
def minilm():
    return zoo.load("minilm")


def test_minilm_shapes(minilm):
    acts = extract(minilm, _texts(), cache=False)
    assert acts.layer_ids == list(range(7)) and len(acts.layers) == minilm.n_layers + 1
    assert all(a.shape == (len(TEXTS), 384) and a.dtype == np.float32 for a in acts.layers)
    assert acts.n_items == len(TEXTS) and len(acts) == len(acts.layers) and acts.model == "minilm" and acts.pool == "mean"
    assert acts.stimuli_key == _texts().key
    picked = extract(minilm, _texts(), layers=[0, -1], cache=False)
    assert picked.layer_ids == [0, 6]
    np.testing.assert_allclose(picked[6], acts[6], atol=1e-5)
    with pytest.raises(ValueError, match="out of range"):
        extract(minilm, _texts(), layers=[7], cache=False)


def test_mean_pool_ignores_padding(minilm):
    stimuli = _texts()
    alone = extract(minilm, stimuli, batch_size=1, cache=False)  # no padding at all
    padded = extract(minilm, stimuli, batch_size=len(TEXTS), cache=False)
    for a, b in zip(alone.layers, padded.layers):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_last_token_is_last_real_token(minilm):
    stimuli = _texts()
    last = extract(minilm, stimuli, pool="last", batch_size=len(TEXTS), cache=False)
    for i, text in enumerate(TEXTS):
        states = minilm([text])  # a batch of one: no padding; its last position is real
        for layer, array in zip(last.layer_ids, last.layers):
            np.testing.assert_allclose(array[i], states[layer][0, -1].numpy(), atol=1e-5)


def test_tokens_pool_keeps_real_tokens(minilm):
    stimuli = _texts()
    tokens = extract(minilm, stimuli, pool="tokens", batch_size=4, cache=False)
    lengths = minilm.token_lengths(TEXTS)
    assert tokens.layers[0].shape == (lengths.sum(), 384)
    assert np.array_equal(np.bincount(tokens.item), lengths)
    assert np.array_equal(tokens.positions,
                          np.concatenate([np.arange(n) for n in lengths]))
    mean = extract(minilm, stimuli, pool="mean", cache=False)
    for a, b in zip(tokens.pooled("mean").layers, mean.layers):
        np.testing.assert_allclose(a, b, atol=1e-5)


class _Probe:
    """Hidden state = the token id (as a float), so pooling is checkable by hand."""

    def __init__(self, side):
        self.side = side

    def tokenize(self, model, texts):
        ids = [[int(w) for w in t.split()] for t in texts]
        width = max(map(len, ids))
        input_ids = torch.zeros((len(ids), width), dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for row, seq in enumerate(ids):
            cols = slice(0, len(seq)) if self.side == "right" else slice(width - len(seq), width)
            input_ids[row, cols] = torch.tensor(seq)
            mask[row, cols] = 1
        return {"input_ids": input_ids, "attention_mask": mask}

    @staticmethod
    def forward(model, batch):
        h = batch["input_ids"].float().unsqueeze(-1).repeat(1, 1, 2)
        return [h, 2 * h]


@pytest.mark.parametrize("side", ["left", "right"])
def test_pooling_with_left_and_right_padding(side):
    probe = _Probe(side)
    model = zoo.ZooModel(name=f"probe-{side}", family="probe", architecture="probe",
                         modality="text", source="in-house", module=torch.nn.Linear(1, 1),
                         n_layers=1, hidden_sizes=[2, 2], max_length=8, key="probe",
                         _forward=probe.forward, _tokenize=probe.tokenize)
    stimuli = _texts(["5 6 7", "9", "3 4"])
    last = extract(model, stimuli, pool="last", cache=False)
    assert last[0][:, 0].tolist() == [7, 9, 4] and last[1][:, 0].tolist() == [14, 18, 8]
    mean = extract(model, stimuli, pool="mean", cache=False)
    assert mean[0][:, 0].tolist() == [6, 9, 3.5]
    tokens = extract(model, stimuli, pool="tokens", cache=False)
    assert tokens[0][:, 0].tolist() == [5, 6, 7, 9, 3, 4]
    assert tokens.positions.tolist() == [0, 1, 2, 0, 0, 1]
    with pytest.raises(ValueError, match="context of 8 tokens"):
        extract(model, _texts(["1 " * 9]), cache=False)


def test_cache_hit_does_no_model_work(minilm, monkeypatch):
    stimuli = _texts()
    first = extract(minilm, stimuli, pool="last")
    path = activations.cache_path(minilm, stimuli, "last")
    assert first.path == path and path.is_file()
    assert path.parent == paths.CACHE / "activations"
    assert path.name == f"minilm-{minilm.key}-{stimuli.key}-last.npz"
    before = minilm.n_forward

    def boom(*args, **kwargs):
        raise AssertionError("the model ran on a cache hit")

    monkeypatch.setattr(minilm, "hidden_states", boom)
    monkeypatch.setattr(minilm, "tokenize", boom)
    again = extract(minilm, stimuli, pool="last")
    assert minilm.n_forward == before
    assert again.layer_ids == first.layer_ids and again.labels == first.labels
    for a, b in zip(first.layers, again.layers):
        assert np.array_equal(a, b)
    # Another pool or another layer selection is another file: the model has to run.
    with pytest.raises(AssertionError, match="cache hit"):
        extract(minilm, stimuli, pool="mean")
    stored = Activations.load(path)
    assert stored.pool == "last" and stored.model_key == minilm.key


def test_too_long_stimuli_are_an_error(minilm):
    with pytest.raises(ValueError, match="512"):
        extract(minilm, _texts(["word " * 600, "dog"]), cache=False)


def test_wrong_modality_and_pool(minilm):
    images = Stimuli("imgs", None, np.zeros((2, 8, 8, 3), np.uint8), ["a", "b"])
    with pytest.raises(ValueError, match="no texts"):
        extract(minilm, images, cache=False)
    with pytest.raises(ValueError, match="pool"):
        extract(minilm, _texts(), pool="max", cache=False)


def test_efficientnet_lite0_extraction():
    model = zoo.load("efficientnet-lite0")
    rng = np.random.default_rng(0)
    images = Stimuli("imgs", None, rng.integers(0, 256, (5, 40, 40, 3), dtype=np.uint8),
                     ["a"] * 5)
    acts = extract(model, images, batch_size=2)
    assert len(acts.layers) == model.n_layers + 1 == 18
    assert [a.shape for a in acts.layers] == [(5, w) for w in model.hidden_sizes]
    whole = extract(model, images, batch_size=5, cache=False)
    for a, b in zip(acts.layers, whole.layers):
        np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="spatially mean-pooled"):
        extract(model, images, pool="last")


def test_decoder_extraction_if_installed():
    name = "smollm2-135m"
    if not zoo.available(name):
        pytest.skip(f"{name} needs the zoo extra (make setup-zoo)")
    model = zoo.load(name)
    stimuli = _texts(TEXTS[:4])
    alone = extract(model, stimuli, batch_size=1, pool="last", cache=False)
    padded = extract(model, stimuli, batch_size=4, pool="last", cache=False)
    assert len(alone.layers) == 31 and alone.layers[0].shape == (4, 576)
    for a, b in zip(alone.layers, padded.layers):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


# -- A friendly API (issue 11) -----------------------------------------------------------------


def test_plain_lists_of_texts_with_optional_labels(minilm):
    """extract(model, ["a dog runs", ...]) used to say "stimuli '' have no texts"."""
    reference = extract(minilm, _texts(TEXTS[:3]), cache=False)
    for plain in (TEXTS[:3], tuple(TEXTS[:3])):
        acts = extract(minilm, plain, cache=False)
        assert acts.n_items == 3 and acts.labels == ["", "", ""]
        for a, b in zip(acts.layers, reference.layers):
            np.testing.assert_allclose(a, b, atol=1e-6)
    labelled = extract("minilm", TEXTS[:3], labels=["a", "b", "a"], cache=False)
    assert labelled.labels == ["a", "b", "a"]
    assert extract(minilm, "a dog runs", cache=False).n_items == 1
    with pytest.raises(ValueError, match="3 texts but 2 labels"):
        extract(minilm, TEXTS[:3], labels=["a", "b"], cache=False)
    with pytest.raises(ValueError, match="carry their own"):
        extract(minilm, _texts(), labels=["a"] * len(TEXTS), cache=False)
    with pytest.raises(ValueError, match="got \\['int', 'str'\\]"):
        extract(minilm, ["a dog", 3], cache=False)
    with pytest.raises(TypeError, match="list of strings"):
        extract(minilm, {"a": 1}, cache=False)


def test_plain_image_array():
    model = zoo.load("efficientnet-lite0")
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    acts = extract(model, images, labels=["x", "y", "z"], cache=False)
    wrapped = extract(model, Stimuli("imgs", None, images, ["x", "y", "z"]), cache=False)
    assert acts.labels == ["x", "y", "z"]
    np.testing.assert_array_equal(acts[-1], wrapped[-1])
    as_list = extract(model, list(images), cache=False)
    np.testing.assert_array_equal(as_list[-1], wrapped[-1])


def test_damaged_activation_cache_is_rebuilt(minilm):
    first = extract(minilm, TEXTS[:2])
    first.path.write_bytes(first.path.read_bytes()[:200])
    with pytest.warns(RuntimeWarning, match="cannot be read.*recomputing"):
        again = extract(minilm, TEXTS[:2])
    np.testing.assert_array_equal(again[-1], first[-1])
    assert Activations.load(first.path).n_items == 2
