"""Text corpora, their train/validation splits, BPE tokenizers and cached token streams.

Offline corpora (Debian packages, no network needed)
----------------------------------------------------
=========  ==============================  ================================================
name       apt packages                    one line of :func:`load_text` is
=========  ==============================  ================================================
kjv        bible-kjv bible-kjv-text        one verse (reference such as ``Ge1:1`` stripped)
fortunes   fortunes                        one fortune (``%``-separated), whitespace joined
wordnet    wordnet-base                    one gloss of a synset (all parts of speech)
=========  ==============================  ================================================

The King James text ships in ``bible-kjv-text`` as ``/usr/lib/bible.data``, a *compressed* random
access file (format "EC02" of the Bible Retrieval System); the ``bible`` program of
``bible-kjv`` is the only decoder, so :func:`load_text` runs ``bible -f gen1:1-rev22:21`` on the
installed data file (0.05 s) and strips the verse references. Fortunes skip ``ascii-art``
(pictures, not language) and any ``off/`` (offensive) folder; fortunes that are mostly not
letters are dropped too. Fortunes and glosses are de-duplicated (first occurrence kept), so no
text is in both splits. Any other corpus name is treated as a Hugging Face hub dataset
(``wikitext-103``, ``openwebtext`` or any ``path[:config]``), loaded lazily with ``datasets``
(not a dependency: ``pip install datasets``) and needing the network the first time.

Splits (:func:`corpus`)
-----------------------
A corpus is a list of *documents*: a KJV chapter (its verses joined by newlines; 1189 of them),
one fortune, or one WordNet gloss. Consecutive documents are grouped into *blocks* (1 chapter
for KJV; 8 fortunes; 64 glosses, which WordNet stores in lexicographer-file order so neighbours
are related), and a seeded permutation of the blocks sends ``round(validation_fraction *
n_blocks)`` whole blocks to validation. So validation verses never sit in the same chapter as
training verses. Both splits keep the corpus order. The same call always gives the same split.

Tokenizers (:func:`tokenizer`)
------------------------------
A byte-level BPE (GPT-2 style: byte-level pre-tokenizer with prefix space off, byte-level
decoder, so every string round-trips exactly) trained with HF ``tokenizers`` on the *training*
split only. One special token, ``<|endoftext|>`` (id 0), serves as bos, eos, pad and unk, as in
GPT-2: documents in a token stream are each followed by it, and padding must always be used with
the attention mask. Nothing is added automatically when encoding (no bos/eos). The trained
tokenizer is cached at ``CACHE/tokenizers/{corpus}-bpe{vocab}.json`` (written atomically) and
loaded from there afterwards. A name that is not a corpus (``"gpt2"``, ``"HuggingFaceTB/..."``)
loads a hub tokenizer with ``AutoTokenizer`` (from the local HF cache or the network).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from . import paths
from .io import atomic_path

__all__ = [
    "CORPORA", "HUB_CORPORA", "EOS", "Corpus", "MissingCorpusError", "CorpusUnavailableError",
    "load_text", "documents", "corpus", "tokenizer", "tokenizer_hash", "token_stream",
]

CORPORA: dict[str, str] = {
    "kjv": "King James Bible (Debian bible-kjv-text), one verse per line; ~4.3 MB, 31,102 verses",
    "fortunes": "fortune(6) quotations (Debian fortunes), one quote per line; ~2.3 MB",
    "wordnet": "WordNet 3.0 glosses (Debian wordnet-base), one gloss per line; ~9 MB",
}

# Hub aliases: name -> (datasets path, config or None, text column).
HUB_CORPORA: dict[str, tuple[str, str | None, str]] = {
    "wikitext-103": ("Salesforce/wikitext", "wikitext-103-raw-v1", "text"),
    "wikitext-2": ("Salesforce/wikitext", "wikitext-2-raw-v1", "text"),
    "openwebtext": ("Skylion007/openwebtext", None, "text"),
    "tinystories": ("roneneldan/TinyStories", None, "text"),
}

APT_PACKAGES: dict[str, tuple[str, ...]] = {
    "kjv": ("bible-kjv", "bible-kjv-text"),
    "fortunes": ("fortunes",),
    "wordnet": ("wordnet-base",),
}

EOS = "<|endoftext|>"

# Installed locations; module attributes so tests (and odd installs) can point elsewhere.
KJV_DATA = Path("/usr/lib/bible.data")
BIBLE_PROGRAM = "bible"
FORTUNES_DIR = Path("/usr/share/games/fortunes")
WORDNET_DIR = Path("/usr/share/wordnet")

FORTUNE_SKIP = frozenset({"ascii-art"})
BLOCK_SIZE = {"kjv": 1, "fortunes": 8, "wordnet": 64}
_HUB_BLOCK = 1


class MissingCorpusError(FileNotFoundError):
    """An offline corpus whose Debian package is not installed."""


class CorruptCacheError(RuntimeError):
    """A cached tokenizer cannot be read; the message names the file and the fix."""


class CorpusUnavailableError(RuntimeError):
    """A hub corpus or tokenizer that cannot be loaded (no ``datasets``, or no network)."""


def _missing(name: str, what: str) -> MissingCorpusError:
    pkgs = " ".join(APT_PACKAGES[name])
    return MissingCorpusError(
        f"corpus {name!r} needs the Debian package(s) {pkgs} ({what}): "
        f"sudo apt-get install {pkgs} (or run `make setup` as root)")


# --------------------------------------------------------------------------------------------
# Raw text


def load_text(name: str) -> str:
    """The whole corpus as plain text, one verse / fortune / gloss per line (no trailing newline).

    Offline corpora: ``kjv``, ``fortunes``, ``wordnet`` (see :data:`CORPORA`); a missing package
    raises :class:`MissingCorpusError` naming the apt packages. Any other name is a hub dataset
    whose training split is joined, one record per line (blank records dropped).
    """
    return "\n".join(_units(name))


def _units(name: str) -> list[str]:
    """The corpus's lines (verses, fortunes, glosses) in corpus order."""
    if name == "kjv":
        return [text for _, text in _kjv_verses()]
    if name == "fortunes":
        return list(_fortunes(FORTUNES_DIR))
    if name == "wordnet":
        return list(_wordnet_glosses(WORDNET_DIR))
    return [t for t in _hub_texts(name, "train") if t.strip()]


_VERSE = re.compile(r"^([1-3]?[A-Za-z]+)(\d+):(\d+) (.*)$")


def _kjv_verses() -> tuple[tuple[str, str], ...]:
    """``((chapter id such as 'Ge1', verse text), ...)`` for all 31,102 verses."""
    return _kjv_verses_at(KJV_DATA, BIBLE_PROGRAM)


@lru_cache(maxsize=2)
def _kjv_verses_at(data_file: Path, program_name: str) -> tuple[tuple[str, str], ...]:
    if not data_file.is_file():
        raise _missing("kjv", f"no Bible text at {data_file}")
    program = shutil.which(program_name) if not Path(program_name).is_absolute() \
        else (program_name if Path(program_name).is_file() else None)
    if program is None:
        raise _missing("kjv", f"the decoder program {program_name!r} is not on PATH")
    # -f: no pretty-printing, i.e. one "Ref text" line per verse; -p/-d: this data file only.
    out = subprocess.run(
        [program, "-f", "-p", str(data_file.parent), "-d", data_file.name, "gen1:1-rev22:21"],
        capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise RuntimeError(f"`bible` failed on {data_file} (exit {out.returncode}): "
                           f"{out.stderr.decode(errors='replace')[:500]}")
    verses = []
    for line in out.stdout.decode("utf-8", errors="replace").splitlines():
        match = _VERSE.match(line)
        if match is None:
            continue
        book, chapter, _, text = match.groups()
        verses.append((f"{book}{chapter}", " ".join(text.split())))
    if len(verses) < 30000:
        raise RuntimeError(f"`bible` returned only {len(verses)} verses from {data_file}; "
                           "is the bible-kjv-text package damaged? (reinstall it)")
    return tuple(verses)


@lru_cache(maxsize=2)
def _fortunes(folder: Path) -> tuple[str, ...]:
    if not folder.is_dir():
        raise _missing("fortunes", f"no folder {folder}")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.is_symlink() and p.suffix == ""
                   and p.name not in FORTUNE_SKIP)  # .dat indexes and .u8 links skipped
    if not files:
        raise _missing("fortunes", f"no fortune files in {folder}")
    quotes = []
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        for quote in re.split(r"^%[ \t]*$", text, flags=re.M):
            quote = " ".join(quote.split())
            visible = quote.replace(" ", "")
            if not visible or sum(c.isalpha() for c in visible) < 0.6 * len(visible):
                continue  # empty, or ASCII art
            quotes.append(quote)
    return tuple(dict.fromkeys(quotes))  # some fortunes sit in several files


WORDNET_POS = ("noun", "verb", "adj", "adv")


@lru_cache(maxsize=2)
def wordnet_synsets(folder: Path) -> dict[str, tuple[tuple[str, str], ...]]:
    """Every synset line of WordNet's ``data.{pos}`` files (:data:`WORDNET_POS`), in file
    order: ``pos -> ((header, gloss), ...)``, split at ``" | "``; the header holds the offset,
    lexicographer file, words and pointers, the gloss is left as read (definition; examples).
    The one reader of these files (:mod:`resonance.stimuli` picks its concept nouns from it)."""
    out = {}
    for pos in WORDNET_POS:
        path = folder / f"data.{pos}"
        if not path.is_file():
            raise _missing("wordnet", f"no file {path}")
        with open(path, encoding="utf-8", errors="replace") as fh:
            out[pos] = tuple((head, gloss) for head, _, gloss in
                             (line.partition(" | ") for line in fh
                              if not line.startswith("  ")))  # "  ": the licence header
    return out


def _wordnet_glosses(folder: Path) -> tuple[str, ...]:
    glosses = [gloss.strip() for pos in WORDNET_POS for _, gloss in wordnet_synsets(folder)[pos]]
    # a few synsets share a gloss word for word
    return tuple(dict.fromkeys(g for g in glosses if g))


# --------------------------------------------------------------------------------------------
# Hub corpora (optional; need `datasets` and the network)


def _offline_hint(name: str, err: BaseException | None) -> str:
    reason = f" ({type(err).__name__}: {str(err)[:300]})" if err is not None else ""
    return (f"corpus {name!r} is not an offline corpus, so it is loaded from the Hugging Face hub "
            f"with the `datasets` library; that needs internet access (and HF_DATASETS_OFFLINE "
            f"unset) and `pip install datasets`{reason}. The offline corpora are "
            f"{', '.join(CORPORA)}.")


def _hub_texts(name: str, split: str) -> list[str]:
    try:
        import datasets  # noqa: F401  (lazy: not a dependency)
    except ImportError as err:
        raise CorpusUnavailableError(_offline_hint(name, err)) from None
    if name in HUB_CORPORA:
        path, config, column = HUB_CORPORA[name]
    else:  # "path" or "path:config"
        path, _, config = name.partition(":")
        config, column = config or None, "text"
    try:
        dataset = datasets.load_dataset(path, config, split=split)
    except ValueError:
        raise  # e.g. unknown split: the caller decides
    except Exception as err:  # ConnectionError, HfHubHTTPError, DatasetNotFoundError, ...
        raise CorpusUnavailableError(_offline_hint(name, err)) from err
    if column not in dataset.column_names:
        raise ValueError(f"hub dataset {path} has no {column!r} column: {dataset.column_names}")
    return list(dataset[column])


# --------------------------------------------------------------------------------------------
# Documents and splits


def documents(name: str) -> list[str]:
    """The corpus as documents: KJV chapters (verses joined by newlines), fortunes, glosses."""
    if name == "kjv":
        chapters: dict[str, list[str]] = {}
        for chapter, text in _kjv_verses():
            chapters.setdefault(chapter, []).append(text)
        return ["\n".join(verses) for verses in chapters.values()]
    return _units(name)


@dataclass
class Corpus:
    """A corpus split into training and validation documents (each in corpus order)."""

    name: str
    train: list[str] = field(repr=False)
    validation: list[str] = field(repr=False)

    def split(self, split: str) -> list[str]:
        if split not in ("train", "validation"):
            raise ValueError(f"split must be 'train' or 'validation', got {split!r}")
        return self.train if split == "train" else self.validation

    def __repr__(self) -> str:
        return (f"Corpus({self.name!r}, train={len(self.train)} docs, "
                f"validation={len(self.validation)} docs)")


def corpus(name: str, validation_fraction: float = 0.05, seed: int = 0) -> Corpus:
    """Split ``name`` into train and validation documents by whole contiguous blocks.

    See the module docstring: KJV chapters, blocks of 8 fortunes or 64 glosses go wholly to one
    side. Hub datasets with their own validation split use it (``validation_fraction`` and
    ``seed`` are then ignored); otherwise their documents are split like the offline ones.
    """
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if name not in CORPORA:
        try:
            validation = [t for t in _hub_texts(name, "validation") if t.strip()]
        except ValueError:
            pass  # no validation split: split the training documents below
        else:
            return Corpus(name, [t for t in _hub_texts(name, "train") if t.strip()], validation)
    docs = documents(name)
    block = BLOCK_SIZE.get(name, _HUB_BLOCK)
    n_blocks = -(-len(docs) // block)
    if n_blocks < 2:
        raise ValueError(f"corpus {name!r} has only {len(docs)} documents: too few to split")
    n_val = min(n_blocks - 1, max(1, round(validation_fraction * n_blocks)))
    rng = np.random.default_rng([int(seed), 0x5EED])
    is_val = np.zeros(n_blocks, dtype=bool)
    is_val[rng.permutation(n_blocks)[:n_val]] = True
    train, validation = [], []
    for i, doc in enumerate(docs):
        (validation if is_val[i // block] else train).append(doc)
    return Corpus(name, train, validation)


# --------------------------------------------------------------------------------------------
# Tokenizers


def _train_bpe(texts: list[str], vocab_size: int):
    """Train a byte-level BPE on ``texts``; returns a ``tokenizers.Tokenizer``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok


def _wrap(tokenizer_file: Path, name: str):
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_file), bos_token=EOS,
                                  eos_token=EOS, pad_token=EOS, unk_token=EOS)
    tok.name_or_path = name
    tok.model_max_length = 1 << 30
    return tok


def tokenizer(corpus_name: str = "kjv", vocab_size: int = 4096, *, train: bool = True) -> Any:
    """A byte-level BPE trained on ``corpus_name``'s training split, or a hub tokenizer.

    For a corpus (offline, or a hub alias in :data:`HUB_CORPORA`) returns a
    ``transformers.PreTrainedTokenizerFast`` whose bos/eos/pad/unk are all ``<|endoftext|>``
    (id 0); trained once and cached at ``CACHE/tokenizers/{corpus}-bpe{vocab}.json``
    (``train=False``: a ``FileNotFoundError`` instead of training). Any other name (``"gpt2"``)
    is passed to ``AutoTokenizer.from_pretrained`` (``vocab_size`` ignored).
    """
    if corpus_name not in CORPORA and corpus_name not in HUB_CORPORA:
        return _hub_tokenizer(corpus_name)
    if not isinstance(vocab_size, (int, np.integer)) or not 257 <= vocab_size <= 1 << 20:
        raise ValueError(f"vocab_size must be an integer in [257, 2**20] (256 bytes + "
                         f"<|endoftext|> at least), got {vocab_size!r}")
    safe = corpus_name.replace("/", "__")
    path = paths.CACHE / "tokenizers" / f"{safe}-bpe{int(vocab_size)}.json"
    if not path.is_file() and not train:
        raise FileNotFoundError(
            f"the {corpus_name}-bpe{int(vocab_size)} tokenizer is not trained yet (no {path}); "
            f"train it first with resonance.data.tokenizer({corpus_name!r}, {int(vocab_size)}) "
            "(resonance.train.train does)")
    if not path.is_file():
        tok = _train_bpe(corpus(corpus_name).train, int(vocab_size))
        with atomic_path(path) as tmp:
            tok.save(str(tmp))
    return _read_tokenizer(path, f"{corpus_name}-bpe{int(vocab_size)}")


def _read_tokenizer(path: Path, name: str):
    """A cached tokenizer; a damaged file is an error naming it (training runs and token
    caches depend on its exact merges, so it is never silently retrained under them)."""
    try:
        return _wrap(path, name)
    except Exception as err:  # tokenizers raises its own Exception subclass on bad JSON
        raise CorruptCacheError(
            f"the cached tokenizer {path} cannot be read ({type(err).__name__}: "
            f"{str(err)[:200]}); delete it and it is retrained from the corpus on the next call "
            "(runs trained with the damaged one should be retrained with force=True)") from None


def _hub_tokenizer(name: str):
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name)
    except Exception as err:  # OSError when offline / not cached, ValueError, ...
        raise CorpusUnavailableError(
            f"{name!r} is neither a corpus ({', '.join([*CORPORA, *HUB_CORPORA])}) nor a "
            f"tokenizer in the local Hugging Face cache; loading it from the hub needs internet "
            f"access (and HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE unset). "
            f"({type(err).__name__}: {str(err)[:300]})") from err


def tokenizer_hash(tok: Any) -> str:
    """12 hex digits identifying a tokenizer's full behaviour (its serialised pipeline)."""
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        text = backend.to_str()
    else:  # a slow tokenizer: its name and vocabulary
        text = repr((getattr(tok, "name_or_path", ""), sorted(tok.get_vocab().items())))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _read_tokens(path: Path) -> np.ndarray | None:
    """A cached token stream, or None (with a warning) when the file is damaged: it is a pure
    function of the tokenizer and the texts its name hashes, so it is rebuilt in place."""
    try:
        stream = np.load(path, allow_pickle=False)
        if stream.dtype == np.int32 and stream.ndim == 1:
            return stream
        problem = f"holds {stream.dtype} {stream.shape}, not int32 (n,)"
    except (OSError, ValueError, EOFError) as err:
        problem = f"cannot be read ({type(err).__name__}: {str(err)[:200]})"
    import warnings

    warnings.warn(f"the token cache {path} {problem}; re-tokenizing and replacing it",
                  RuntimeWarning, stacklevel=3)
    return None


def _default_tokenizer(corpus_name: str) -> Any:
    return tokenizer(corpus_name)  # the module function (token_stream's argument shadows it)


def token_stream(corpus_name: str, split: str = "train", tokenizer: Any = None) -> np.ndarray:
    """All token ids of a split as one ``int32`` array, each document followed by eos.

    ``tokenizer`` defaults to ``tokenizer(corpus_name)``. Uses the default split of
    :func:`corpus`. Cached at ``CACHE/tokens/{corpus}-{split}-{tokenizer hash}-{text hash}.npy``
    (the text hash covers the documents, so a changed package or split rule re-tokenizes).
    """
    if split not in ("train", "validation"):
        raise ValueError(f"split must be 'train' or 'validation', got {split!r}")
    tok = _default_tokenizer(corpus_name) if tokenizer is None else tokenizer
    eos = tok.eos_token_id
    if eos is None:
        raise ValueError(f"tokenizer {getattr(tok, 'name_or_path', tok)!r} has no eos token; "
                         "set tokenizer.eos_token first")
    docs = corpus(corpus_name).split(split)
    digest = hashlib.sha256()
    for doc in docs:
        digest.update(doc.encode())
        digest.update(b"\0")
    safe = corpus_name.replace("/", "__")
    path = (paths.CACHE / "tokens"
            / f"{safe}-{split}-{tokenizer_hash(tok)}-{digest.hexdigest()[:12]}.npy")
    if path.is_file():
        cached = _read_tokens(path)
        if cached is not None:
            return cached
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        encoded = [e.ids for e in backend.encode_batch(docs, add_special_tokens=False)]
    else:
        encoded = [tok.encode(d, add_special_tokens=False) for d in docs]
    total = sum(len(ids) + 1 for ids in encoded)
    if len(tok) > np.iinfo(np.int32).max:
        raise ValueError("vocabulary too large for int32 token ids")
    stream = np.empty(total, dtype=np.int32)
    pos = 0
    for ids in encoded:
        stream[pos:pos + len(ids)] = ids
        pos += len(ids)
        stream[pos] = eos
        pos += 1
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, stream)
    return stream
