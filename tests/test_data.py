"""Corpora, splits, tokenizers and token streams (resonance.data)."""

from __future__ import annotations

import json
import re
import sys
import types

import numpy as np
import pytest

from resonance import data, paths
from resonance.stimuli import Stimuli, check_length


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private cache folder for this module (the KJV tokenizer trains once, ~3 s)."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(paths, "CACHE", folder)
        yield folder


@pytest.fixture(scope="module")
def kjv_tok(cache):
    return data.tokenizer("kjv", 4096)


# ---------------------------------------------------------------------------- offline corpora


def test_kjv_is_the_whole_bible_one_verse_per_line():
    text = data.load_text("kjv")
    lines = text.split("\n")
    assert len(text) > 3_000_000
    assert len(lines) == 31102
    assert lines[0] == "In the beginning God created the heaven and the earth."
    assert lines[-1] == "The grace of our Lord Jesus Christ be with you all. Amen."
    assert "Jesus wept." in lines  # John 11:35, the shortest verse
    reference = re.compile(r"^\s*([1-3]?[A-Z][a-z]*)?\d+:\d+")
    assert not any(reference.match(line) for line in lines), "verse references left in the text"
    assert all(line.strip() == line and line for line in lines)


def test_fortunes_and_wordnet_load():
    fortunes = data.load_text("fortunes").split("\n")
    assert len(fortunes) > 10_000 and sum(map(len, fortunes)) > 1_000_000
    assert "%" not in {line.strip() for line in fortunes}
    wordnet = data.load_text("wordnet").split("\n")
    assert len(wordnet) > 100_000
    assert any(line.startswith("a member of the genus Canis") for line in wordnet)
    assert all(line for line in wordnet)
    assert set(data.CORPORA) == {"kjv", "fortunes", "wordnet"}


@pytest.mark.parametrize("name", ["kjv", "fortunes", "wordnet"])
def test_split_is_deterministic_disjoint_and_complete(name):
    a, b = data.corpus(name), data.corpus(name)
    assert a.train == b.train and a.validation == b.validation
    docs = data.documents(name)
    assert len(a.train) + len(a.validation) == len(docs)
    # Both sides keep corpus order, and together they are the corpus.
    position = {doc: i for i, doc in enumerate(docs)}
    assert sorted(a.train + a.validation, key=position.__getitem__) == docs
    assert 0.03 < len(a.validation) / len(docs) < 0.07
    assert len(set(docs)) == len(docs)
    assert not set(a.train) & set(a.validation)
    other = data.corpus(name, seed=1)
    assert other.validation != a.validation
    assert data.corpus(name, validation_fraction=0.2).validation != a.validation


def test_kjv_documents_are_whole_chapters():
    docs = data.documents("kjv")
    assert len(docs) == 1189  # chapters in the Bible
    assert docs[0].startswith("In the beginning God created")
    assert docs[0].count("\n") == 30  # Genesis 1 has 31 verses
    # Validation holds whole chapters, so no validation verse has a neighbour in training.
    val = data.corpus("kjv").validation
    assert set(val) <= set(docs)


def test_bad_split_arguments():
    with pytest.raises(ValueError, match="validation_fraction"):
        data.corpus("kjv", validation_fraction=1.5)
    with pytest.raises(ValueError, match="split must be"):
        data.corpus("kjv").split("test")


# ---------------------------------------------------------------------------- missing corpora


def test_missing_kjv_names_the_apt_packages(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "KJV_DATA", tmp_path / "bible.data")
    with pytest.raises(data.MissingCorpusError) as info:
        data.load_text("kjv")
    assert isinstance(info.value, FileNotFoundError)
    assert "sudo apt-get install bible-kjv bible-kjv-text (or run `make setup` as root)" \
        in str(info.value)


def test_missing_bible_program_names_the_apt_packages(monkeypatch):
    monkeypatch.setattr(data, "BIBLE_PROGRAM", "no-such-bible-program")
    with pytest.raises(FileNotFoundError, match="sudo apt-get install bible-kjv bible-kjv-text"):
        data.corpus("kjv")


@pytest.mark.parametrize("name, attribute, package", [
    ("fortunes", "FORTUNES_DIR", "fortunes"), ("wordnet", "WORDNET_DIR", "wordnet-base")])
def test_missing_packages(monkeypatch, tmp_path, name, attribute, package):
    monkeypatch.setattr(data, attribute, tmp_path / "nothing-here")
    with pytest.raises(data.MissingCorpusError, match=f"sudo apt-get install {package} "):
        data.load_text(name)


def test_unknown_corpus_without_datasets_says_what_to_do(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(data.CorpusUnavailableError) as info:
        data.load_text("wikitext-103")
    message = str(info.value)
    assert "internet" in message and "pip install datasets" in message
    assert "kjv, fortunes, wordnet" in message


def test_unknown_corpus_offline_says_what_to_do(monkeypatch):
    fake = types.ModuleType("datasets")

    def load_dataset(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hugging Face Hub")

    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", fake)
    with pytest.raises(data.CorpusUnavailableError, match="needs internet access"):
        data.corpus("openwebtext")


def test_hub_corpus_through_datasets(monkeypatch):
    """With `datasets` present, a hub name is loaded through it (faked here: no network)."""
    fake = types.ModuleType("datasets")
    calls = []

    class Fake:
        column_names = ["text"]

        def __init__(self, rows):
            self.rows = rows

        def __getitem__(self, column):
            return self.rows

    def load_dataset(path, config=None, split=None):
        calls.append((path, config, split))
        return Fake([f"{split} {i}" for i in range(5)] + [""])

    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", fake)
    split = data.corpus("wikitext-103")
    assert split.train == [f"train {i}" for i in range(5)]
    assert split.validation == [f"validation {i}" for i in range(5)]
    assert ("Salesforce/wikitext", "wikitext-103-raw-v1", "train") in calls


def test_hub_tokenizer_offline_is_a_clear_error(monkeypatch):
    import transformers

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(data.CorpusUnavailableError, match="needs internet"):
        data.tokenizer("gpt2")


# ---------------------------------------------------------------------------- tokenizer


def test_tokenizer_special_tokens_and_size(kjv_tok):
    assert len(kjv_tok) == 4096
    assert kjv_tok.eos_token == kjv_tok.bos_token == kjv_tok.pad_token == data.EOS
    assert kjv_tok.eos_token_id == kjv_tok.pad_token_id == 0
    assert 0 not in kjv_tok("In the beginning")["input_ids"]  # nothing added automatically


@pytest.mark.parametrize("text", [
    "In the beginning God created the heaven and the earth.",
    "  Leading spaces,\ttabs\nand newlines\n\n",
    "Unicode: café, naïve, 日本語, emoji 🙂, and the <|endoftext|> marker",
    "",
])
def test_tokenizer_round_trips(kjv_tok, text):
    ids = kjv_tok.encode(text, add_special_tokens=False)
    assert kjv_tok.decode(ids) == text


def test_tokenizer_compresses_kjv(kjv_tok):
    chapter = data.corpus("kjv").validation[0]
    ids = kjv_tok.encode(chapter)
    assert kjv_tok.decode(ids) == chapter
    assert len(chapter) / len(ids) > 3.5  # characters per token on held-out text


def test_tokenizer_is_cached_and_a_hit_does_not_train(cache, kjv_tok, monkeypatch):
    path = cache / "tokenizers" / "kjv-bpe4096.json"
    assert path.is_file()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]

    def no_training(*args, **kwargs):
        raise AssertionError("tokenizer was retrained on a cache hit")

    monkeypatch.setattr(data, "_train_bpe", no_training)
    again = data.tokenizer("kjv", 4096)
    assert again.get_vocab() == kjv_tok.get_vocab()
    assert data.tokenizer_hash(again) == data.tokenizer_hash(kjv_tok)


def test_tokenizer_training_is_deterministic(kjv_tok):
    fresh = json.loads(data._train_bpe(data.corpus("kjv").train, 4096).to_str())["model"]
    cached = json.loads(kjv_tok.backend_tokenizer.to_str())["model"]
    assert fresh["vocab"] == cached["vocab"]
    assert fresh["merges"] == cached["merges"]


def test_bad_vocab_size():
    with pytest.raises(ValueError, match="vocab_size"):
        data.tokenizer("kjv", vocab_size=100)


# ---------------------------------------------------------------------------- token streams


def test_token_stream(cache, kjv_tok):
    val = data.corpus("kjv").validation
    stream = data.token_stream("kjv", "validation", kjv_tok)
    assert stream.dtype == np.int32 and stream.ndim == 1
    assert stream[-1] == kjv_tok.eos_token_id
    assert int((stream == kjv_tok.eos_token_id).sum()) == len(val)
    first_end = int(np.flatnonzero(stream == kjv_tok.eos_token_id)[0])
    assert kjv_tok.decode(stream[:first_end].tolist()) == val[0]
    files = list((cache / "tokens").glob("kjv-validation-*.npy"))
    assert len(files) == 1
    np.testing.assert_array_equal(data.token_stream("kjv", "validation", kjv_tok), stream)
    # A second call reads the cache instead of encoding again: plant a marker there.
    np.save(files[0], np.arange(3, dtype=np.int32))
    np.testing.assert_array_equal(data.token_stream("kjv", "validation", kjv_tok), [0, 1, 2])
    files[0].unlink()


def test_check_length_with_the_kjv_tokenizer(kjv_tok):
    stimuli = Stimuli("t", ["a short verse", "and " * 40 + "a long one"], None, ["", ""])
    assert check_length(stimuli, kjv_tok, 64) == len(kjv_tok(stimuli.texts[1])["input_ids"])
    with pytest.raises(ValueError, match=r"item 1 with \d+ tokens"):
        check_length(stimuli, kjv_tok, 10)


# ---------------------------------------------------------------------------- damaged caches


def test_damaged_token_cache_is_rebuilt_with_a_warning(cache, kjv_tok):
    stream = data.token_stream("kjv", "validation", kjv_tok)
    path, = (cache / "tokens").glob("kjv-validation-*.npy")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated
    with pytest.warns(RuntimeWarning, match=rf"{re.escape(path.name)} cannot be read.*replacing"):
        again = data.token_stream("kjv", "validation", kjv_tok)
    np.testing.assert_array_equal(again, stream)
    np.testing.assert_array_equal(np.load(path), stream)  # replaced by a good copy
    np.save(path, np.zeros((2, 2)))
    with pytest.warns(RuntimeWarning, match="not int32"):
        np.testing.assert_array_equal(data.token_stream("kjv", "validation", kjv_tok), stream)


def test_damaged_tokenizer_cache_names_the_file_and_the_fix(cache, kjv_tok, monkeypatch):
    monkeypatch.setattr(paths, "CACHE", cache / "damaged")
    path = cache / "damaged" / "tokenizers" / "kjv-bpe300.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"version": "1.0", "trunc')
    with pytest.raises(data.CorruptCacheError, match=r"kjv-bpe300.json cannot be read.*delete it"):
        data.tokenizer("kjv", 300)
    path.unlink()
    assert len(data.tokenizer("kjv", 300)) == 300
