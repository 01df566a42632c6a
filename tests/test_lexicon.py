"""WordNet supersenses of words and of whole-word BPE tokens (needs Debian's wordnet-base)."""

import numpy as np
import pytest

from resonance import lexicon as L


@pytest.fixture(scope="module")
def lex():
    return L.word_supersenses()


@pytest.mark.parametrize("word, expected", [
    ("dog", "noun.animal"), ("Lord", "noun.person"), ("children", "noun.person"),
    ("said", "verb.communication"),   # "say" outweighs the adjective "said"
    ("came", "verb.motion"),          # irregular, through verb.exc
    ("waters", "noun.substance"),     # regular plural
    ("goeth", "verb.motion"),         # KJV -eth
    ("news", "noun.communication"),   # a lemma itself: no suffix stripping to "new"
    ("the", None), ("unto", None), ("xyzzy", None),
])
def test_supersense_of_words(lex, word, expected):
    assert L.supersense(word, lex) == expected


def test_lexnames_are_the_45_lexicographer_files():
    assert len(L.LEXNAMES) == 45 and L.LEXNAMES[18] == "noun.person"
    assert L.LEXNAMES[29] == "verb.body" and L.LEXNAMES[44] == "adj.ppl"


def test_tokens_label_only_whole_words(lex):
    tokens = ["ĠLord", "Ġthe", "ĠLo", "rd", ",", "Ġdog", "dog", "Ġ123"]
    nxt = [False, False, True, False, False, False, False, False]
    out = L.token_supersenses(tokens, nxt, lex)
    assert out.tolist() == ["noun.person", "", "", "", "", "noun.animal", "", ""]


def test_tokens_and_flags_must_match(lex):
    with pytest.raises(ValueError, match="3 tokens but 2"):
        L.token_supersenses(["a", "b", "c"], np.zeros(2, bool), lex)


def test_missing_wordnet_names_the_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="wordnet-base"):
        L.word_supersenses(tmp_path)
