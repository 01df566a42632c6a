"""WordNet supersenses of English words, to name what a set of tokens has in common.

A word's supersense is the lexicographer file (``noun.person``, ``verb.motion``, ``adj.all``
...; lexnames(5WN)) that SemCor tags most often among the senses of the word itself (lower-cased)
and of the lemmas WordNet's irregular-inflection lists give for it, over all parts of speech
(ties to the lower file number): ``said`` is tagged twice as an adjective and ``say`` 2,167
times, mostly as a verb of communication. A word that is neither a tagged lemma nor listed as an
inflection is looked up through the regular suffixes (``-ies``, ``-es``, ``-s``, ``-ed``,
``-ing``) and the archaic ``-eth`` / ``-est`` of the KJV (``goeth``, ``knowest``); words SemCor
never tags (``the``, ``unto``, ``hath``) have none.

>>> table = word_supersenses()
>>> supersense("said", table)               # 'verb.communication'
>>> token_supersenses(["ĠLord", "Ġthe", "ĠLo", "rd"], next_is_piece=[False, False, True, False])
array(['noun.person', '', '', ''], dtype='<U18')   # "ĠLo" starts a longer word: unlabelled
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from . import data

__all__ = ["LEXNAMES", "Lexicon", "word_supersenses", "supersense", "token_supersenses"]

# lexnames(5WN): lexicographer file number -> name.
LEXNAMES: tuple[str, ...] = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather",
    "adj.ppl",
)
_SUFFIXES = (("ies", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("ing", ""),
             ("ing", "e"), ("eth", ""), ("eth", "e"), ("est", ""), ("est", "e"))


@dataclass(frozen=True)
class Lexicon:
    """Lemma -> SemCor tag counts per lexicographer file number, and irregular inflection ->
    lemmas (from WordNet's ``*.exc``)."""

    tags: dict[str, Counter]
    inflections: dict[str, tuple[str, ...]]


@lru_cache(maxsize=2)
def word_supersenses(wordnet_dir: Path | None = None) -> Lexicon:
    """SemCor tag counts of every tagged single-word lemma (``cntlist.rev``) and the
    irregular inflections.

    Raises :class:`resonance.data.MissingCorpusError` (naming the apt package) without WordNet.
    """
    folder = Path(wordnet_dir or data.WORDNET_DIR)
    counts_file = folder / "cntlist.rev"
    if not counts_file.is_file():
        raise data._missing("wordnet", f"no file {counts_file}")
    tags: defaultdict[str, Counter] = defaultdict(Counter)
    with open(counts_file, encoding="utf-8") as fh:
        for line in fh:
            key, _, count = line.split()
            lemma, _, rest = key.partition("%")
            tags[lemma][int(rest.split(":")[1])] += int(count)
    inflections: defaultdict[str, list[str]] = defaultdict(list)
    for pos in ("noun", "verb", "adj", "adv"):
        with open(folder / f"{pos}.exc", encoding="utf-8") as fh:
            for line in fh:
                form, *lemmas = line.split()
                inflections[form].extend(lemmas)
    return Lexicon({k: v for k, v in tags.items() if "_" not in k},
                   {k: tuple(v) for k, v in inflections.items()})


def supersense(word: str, lexicon: Lexicon) -> str | None:
    """The supersense of ``word`` (any case), or None if neither it nor a base form is tagged."""
    word = word.lower()
    counts: Counter = Counter()
    for lemma in (word, *lexicon.inflections.get(word, ())):
        counts.update(lexicon.tags.get(lemma, {}))
    if not counts and word not in lexicon.inflections:
        for suffix, replacement in _SUFFIXES:
            stem = word[:-len(suffix)] + replacement
            if word.endswith(suffix) and len(stem) >= 2 and stem in lexicon.tags:
                counts = lexicon.tags[stem]
                break
    return LEXNAMES[min(counts, key=lambda f: (-counts[f], f))] if counts else None


def token_supersenses(tokens: Sequence[str], next_is_piece: Sequence[bool],
                      lexicon: Lexicon | None = None) -> np.ndarray:
    """The supersense of each byte-level BPE token that is a whole word, ``""`` for the rest.

    ``tokens`` (n,) are token strings (``Ġ`` marks a word start); ``next_is_piece`` (n,) says
    whether the token after each continues its word (then the token is only the start of a
    longer word and stays unlabelled). Only word-start tokens of letters are looked up, each
    distinct token once.
    """
    if len(tokens) != len(next_is_piece):
        raise ValueError(f"{len(tokens)} tokens but {len(next_is_piece)} next_is_piece flags")
    lexicon = lexicon or word_supersenses()
    distinct, inverse = np.unique(np.asarray(tokens, dtype=str), return_inverse=True)
    width = f"<U{max(map(len, LEXNAMES))}"
    senses = np.array([supersense(t[1:], lexicon) or "" if t.startswith("Ġ") and t[1:].isalpha()
                       and t[1:].isascii() else "" for t in distinct], dtype=width)
    out = senses[inverse.reshape(-1)] if len(tokens) else np.empty(0, dtype=width)
    out[np.asarray(next_is_piece, dtype=bool)] = ""
    return out
