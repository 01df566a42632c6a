"""Steering: injection by forward hook, the preference metric, word sets and word-end pairing."""

import types

import numpy as np
import pytest
import torch

from resonance import models, positions, steering, zoo

WORDS = ["[UNK]", "<pad>", "the", "good", "bad", "day", "was", "it", "joy", "grief", "road",
         "ran", "east", "a", "very", "happy", "sad", "and", "of", "we"]


def _tokenizer():
    from tokenizers import Tokenizer, models as tm, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(tm.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="<pad>")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    net = models.build("gpt2", vocab_size=len(WORDS), d_model=16, n_layers=2, context=16).eval()
    with torch.no_grad():  # token embeddings (tied to the unembedding) of unit scale, so that
        net.get_input_embeddings().weight.mul_(50.0)  # logits can move far from uniform
    trained = types.SimpleNamespace(model=net, tokenizer=_tokenizer(), config=types.SimpleNamespace(
        family="gpt2", d_model=16, n_layers=2, context=16))
    return zoo.wrap_trained(trained, name="tiny-gpt2")


PROMPTS = ["the road ran east", "it was a day", "we ran and ran", "the day of the road"]


def test_preference_matches_the_full_forward_pass(tiny):
    batch = tiny.tokenize(PROMPTS)
    with torch.inference_mode():
        logits = tiny.module(**batch).logits
    last = batch["attention_mask"].sum(1) - 1
    lp = torch.log_softmax(logits[torch.arange(len(PROMPTS)), last], -1)
    want = (lp[:, [3, 8]].logsumexp(1) - lp[:, [4, 9]].logsumexp(1)).numpy()
    np.testing.assert_allclose(steering.preference(tiny, PROMPTS, [3, 8], [4, 9]), want, atol=1e-5)


def test_an_injected_zero_vector_changes_nothing(tiny):
    base = steering.preference(tiny, PROMPTS, [3], [4])
    for layer in (1, 2):
        out = steering.effects(tiny, PROMPTS, [3], [4], layer, {"zero": np.zeros(16)})
        assert np.array_equal(out["zero"], np.zeros(len(PROMPTS)))
    assert np.array_equal(steering.preference(tiny, PROMPTS, [3], [4]), base)  # hook removed


def test_a_vector_along_a_words_unembedding_raises_its_probability(tiny):
    good = tiny.tokenizer.convert_tokens_to_ids("good")
    u = tiny.module.get_output_embeddings().weight[good].detach().numpy()
    others = [i for i in range(len(WORDS)) if i != good]
    before = steering.preference(tiny, PROMPTS, [good], others)
    u = steering.matched_norm(u, 100.0)[0]
    after = steering.preference(tiny, PROMPTS, [good], others, layer=2, vector=u)
    assert (after > before + 1.0).all()
    reversed_ = steering.preference(tiny, PROMPTS, [good], others, layer=2, vector=-u)
    assert (reversed_ < before).all()


def test_one_vector_per_row_and_bad_layers(tiny):
    v = np.zeros((len(PROMPTS), 16))
    base = steering.preference(tiny, PROMPTS, [3], [4])
    assert np.array_equal(steering.preference(tiny, PROMPTS, [3], [4], 1, v), base)
    with pytest.raises(ValueError, match="hidden-state index in 1..2"):
        steering.preference(tiny, PROMPTS, [3], [4], layer=0, vector=np.zeros(16))
    with pytest.raises(ValueError, match=r"\(16,\)"):
        steering.preference(tiny, PROMPTS, [3], [4], layer=1, vector=np.zeros(5))


def test_contrastive_vector_and_matched_norm(tiny, tmp_path, monkeypatch):
    from resonance import paths
    monkeypatch.setattr(paths, "CACHE", tmp_path)
    v = steering.contrastive_vector(tiny, ["it was good", "a good day"], ["it was bad", "a bad day"],
                                    layer=1)
    assert v.shape == (16,) and np.linalg.norm(v) > 0
    r = steering.matched_norm(np.ones((3, 16)), 2.0)
    np.testing.assert_allclose(np.linalg.norm(r, axis=1), 2.0)
    with pytest.raises(ValueError, match="zero vector"):
        steering.matched_norm(np.zeros(16), 1.0)


def test_vader_lexicon_and_single_token_words(tiny):
    pos, neg = steering.lexicon()
    assert {"joy", "happy"} <= set(pos) and "good" in steering.lexicon(1.5)[0]
    assert {"bad", "grief", "sad"} <= set(neg)
    assert not set(pos) & set(neg)
    ids = steering.single_token_ids(tiny.tokenizer, ["good", "grief", "wonderful"])
    assert ids == {"good": 3, "grief": 9}
    assert steering.vader_score(["a wonderful happy day", "a horrible sad day"]).tolist()[0] > 0.5
    with pytest.raises(ValueError, match="min_valence"):
        steering.lexicon(0)


def test_word_end_pairs_across_tokenizers(tiny, tmp_path, monkeypatch):
    from resonance import activations, paths
    monkeypatch.setattr(paths, "CACHE", tmp_path)
    texts = ["the good day", "we ran east"]
    acts = activations.extract(tiny, texts, pool="tokens", cache=False)
    ra, rb, items = positions.word_end_pairs(acts, acts, tiny.tokenizer, tiny.tokenizer, texts)
    assert ra.tolist() == rb.tolist() == list(range(6))
    assert items.tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="3 texts"):
        positions.word_end_rows(acts, tiny.tokenizer, texts + ["x"])
