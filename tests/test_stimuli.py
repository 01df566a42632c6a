"""Stimulus sets (resonance.stimuli)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from resonance import data, stimuli
from resonance.stimuli import CONCEPTS, Stimuli


@pytest.fixture(scope="module")
def words20():
    return stimuli.concept_stimuli(20)


# ---------------------------------------------------------------------------- concept words


def test_default_concepts():
    assert CONCEPTS == ("animal", "food", "artifact", "plant", "person", "location", "body",
                        "time", "feeling", "act")
    assert set(CONCEPTS) <= set(stimuli.SUPERSENSES)


def test_concept_stimuli_are_balanced_and_grouped(words20):
    s = words20
    assert len(s) == 200 and s.images is None
    assert Counter(s.labels) == {c: 20 for c in CONCEPTS}
    assert s.concepts == list(CONCEPTS)  # grouped concept by concept, in CONCEPTS order
    assert s.texts == s.words
    assert len(set(s.words)) == len(s.words)
    for word in s.words:
        assert word.isalpha() and word.islower() and 3 <= len(word) <= 12


@pytest.mark.parametrize("word, concept", [
    ("dog", "animal"), ("horse", "animal"), ("bird", "animal"), ("milk", "food"),
    ("bread", "food"), ("tree", "plant"), ("flower", "plant"), ("hand", "body"),
    ("eye", "body"), ("year", "time"), ("morning", "time"), ("anger", "feeling"),
    ("city", "location"), ("woman", "person"), ("house", "artifact"), ("car", "artifact"),
    ("job", "act"),
])
def test_labels_are_right(word, concept):
    assert word in stimuli.concept_candidates(concept)
    for other in stimuli.SUPERSENSES:
        if other != concept:
            assert word not in stimuli.concept_candidates(other)


@pytest.mark.parametrize("word", ["england", "eggs", "men", "giving", "queen", "dogs"])
def test_excluded_words(word):
    """Proper nouns, plurals, -ing forms and ambiguous words are never candidates."""
    assert all(word not in stimuli.concept_candidates(c) for c in stimuli.SUPERSENSES)


def test_labels_match_wordnet_first_sense(words20):
    for word, label in zip(words20.words, words20.labels):
        assert word in stimuli.concept_candidates(label)


def test_enough_candidates_for_the_defaults():
    sizes = {c: len(stimuli.concept_candidates(c)) for c in CONCEPTS}
    assert min(sizes.values()) >= 40, sizes
    # Common words lead each ranking.
    assert "dog" in stimuli.concept_candidates("animal")[:10]
    assert "tree" in stimuli.concept_candidates("plant")[:3]


def test_concept_stimuli_deterministic_by_seed(words20):
    again = stimuli.concept_stimuli(20)
    assert again.words == words20.words and again.key == words20.key
    other = stimuli.concept_stimuli(20, seed=1)
    assert other.words != words20.words and other.key != words20.key
    assert Counter(other.labels) == Counter(words20.labels)


def test_sentence_form_contains_the_word(words20):
    s = stimuli.concept_stimuli(20, form="sentence")
    assert s.words == words20.words and s.labels == words20.labels
    templates = {t.format(w=w) for w in s.words for t in stimuli.TEMPLATES}
    for text, word in zip(s.texts, s.words):
        assert f"the {word}" in text and text in templates
    assert len({text.replace(w, "{w}") for text, w in zip(s.texts, s.words)}) > 1
    assert stimuli.concept_stimuli(20, form="sentence").texts == s.texts
    assert s.key != words20.key


def test_gloss_form(words20):
    s = stimuli.concept_stimuli(20, form="gloss")
    for text, word in zip(s.texts, s.words):
        assert text.startswith(f"{word}: ") and len(text) > len(word) + 5
    dog = stimuli.concept_stimuli(108, concepts=["animal"], form="gloss", pool_factor=1)
    assert dog.texts[dog.words.index("dog")].startswith("dog: a member of the genus Canis")


def test_too_few_candidates_is_a_clear_error():
    available = len(stimuli.concept_candidates("plant"))
    with pytest.raises(ValueError, match=rf"'plant' has only {available} candidate words"):
        stimuli.concept_stimuli(available + 1)
    s = stimuli.concept_stimuli(available, concepts=["plant"])
    assert sorted(s.words) == sorted(stimuli.concept_candidates("plant"))


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown concept 'animals'"):
        stimuli.concept_stimuli(5, concepts=["animals"])
    with pytest.raises(ValueError, match="form"):
        stimuli.concept_stimuli(5, form="picture")
    with pytest.raises(ValueError, match="n_per_concept"):
        stimuli.concept_stimuli(0)


def test_missing_wordnet(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "WORDNET_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="sudo apt-get install wordnet-base"):
        stimuli.concept_stimuli(5)


# ---------------------------------------------------------------------------- corpus snippets


def test_corpus_stimuli():
    s = stimuli.corpus_stimuli("kjv", n=64, max_words=12)
    assert len(s) == 64 and s.labels == [""] * 64 and s.words is None and s.images is None
    assert all(5 <= len(t.split()) <= 12 for t in s.texts)
    assert len(set(s.texts)) == 64
    val_lines = [line for doc in data.corpus("kjv").validation for line in doc.splitlines()]
    val_text = "\n".join(val_lines)
    assert all(t in val_text for t in s.texts)
    again = stimuli.corpus_stimuli("kjv", n=64, max_words=12)
    assert again.texts == s.texts and again.key == s.key
    assert stimuli.corpus_stimuli("kjv", n=64, max_words=12, seed=1).texts != s.texts
    with pytest.raises(ValueError, match="only"):
        stimuli.corpus_stimuli("kjv", n=10**6)


# ---------------------------------------------------------------------------- images


def test_image_stimuli_digits():
    s = stimuli.image_stimuli(n=25, size=32)
    assert s.images.shape == (25, 32, 32, 3) and s.images.dtype == np.uint8
    assert s.texts is None
    counts = Counter(s.labels)
    assert set(counts) == {str(d) for d in range(10)} and set(counts.values()) == {2, 3}
    assert (s.images[..., 0] == s.images[..., 2]).all()  # grey
    assert s.images.min() < 64 and s.images.max() == 255  # dark ink, white ground
    assert stimuli.image_stimuli(n=25, size=32).key == s.key
    assert stimuli.image_stimuli(n=25, size=32, seed=1).key != s.key


def test_image_stimuli_default_size_and_photos():
    assert stimuli.image_stimuli(n=10).images.shape == (10, 224, 224, 3)
    photos = stimuli.image_stimuli(n=4, size=48, source="photos")
    assert photos.images.shape == (4, 48, 48, 3) and photos.images.dtype == np.uint8
    assert Counter(photos.labels) == {"china": 2, "flower": 2}
    with pytest.raises(ValueError, match="balanced"):
        stimuli.image_stimuli(n=5000)


# ---------------------------------------------------------------------------- Stimuli


def test_stimuli_key_len_and_subset(words20):
    s = words20
    assert len(s.key) == 12 and s.key == Stimuli("other name", s.texts, None, s.labels,
                                                 s.words).key
    changed = Stimuli(s.name, s.texts[:-1] + ["zebra"], None, s.labels, s.words[:-1] + ["zebra"])
    assert changed.key != s.key
    sub = s.subset([3, 0, 1])
    assert len(sub) == 3 and sub.words == [s.words[3], s.words[0], s.words[1]]
    mask = np.array(s.labels) == "animal"
    assert s.subset(mask).labels == ["animal"] * 20
    images = stimuli.image_stimuli(n=10, size=16)
    assert images.subset([9]).images.shape == (1, 16, 16, 3)


def test_stimuli_validation():
    with pytest.raises(ValueError, match="uint8"):
        Stimuli("x", None, np.zeros((2, 4, 4, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="labels"):
        Stimuli("x", ["a"], None, ["a", "b"])
    with pytest.raises(ValueError, match="texts or images"):
        Stimuli("x", None, None, [])


# ---------------------------------------------------------------------------- check_length


class WhitespaceTokenizer:
    """One token per word plus a bos token, called like a Hugging Face tokenizer."""

    def __call__(self, texts, add_special_tokens=True):
        return {"input_ids": [[0] * add_special_tokens + list(range(len(t.split())))
                              for t in texts]}


def test_check_length():
    s = Stimuli("snips", ["one two", "one two three four five", "one"], None, ["", "", ""])
    assert stimuli.check_length(s, WhitespaceTokenizer(), 6) == 6
    with pytest.raises(ValueError) as info:
        stimuli.check_length(s, WhitespaceTokenizer(), 5)
    message = str(info.value)
    assert "item 1 with 6 tokens" in message and "'one two three four five'" in message
    assert "context of 5 tokens" in message and "'snips'" in message
    with pytest.raises(ValueError, match="images"):
        stimuli.check_length(stimuli.image_stimuli(n=10, size=16), WhitespaceTokenizer(), 5)


def test_from_texts_and_from_images():
    from resonance.stimuli import Stimuli

    s = Stimuli.from_texts(["a dog runs", "a cat sleeps"], labels=["dog", "cat"])
    assert s.texts == ["a dog runs", "a cat sleeps"] and s.concepts == ["dog", "cat"]
    assert s.images is None and s.name == "texts"
    assert Stimuli.from_texts(("x", "y")).labels == ["", ""]
    assert Stimuli.from_texts("one sentence").texts == ["one sentence"]
    assert s.key == Stimuli.from_texts(["a dog runs", "a cat sleeps"], ["dog", "cat"],
                                       name="other").key  # the content, not the name
    with pytest.raises(ValueError, match="item 1 is int"):
        Stimuli.from_texts(["a", 2])
    with pytest.raises(ValueError, match="empty"):
        Stimuli.from_texts([])
    images = np.zeros((2, 4, 4, 3), np.uint8)
    assert len(Stimuli.from_images(images)) == 2
    assert len(Stimuli.from_images(list(images), labels=["a", "b"])) == 2
    with pytest.raises(ValueError, match="uint8"):
        Stimuli.from_images(images.astype(np.float32))
