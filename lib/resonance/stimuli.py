"""Stimulus sets shown to every model: labelled concept words, corpus snippets and images.

Concept words (:func:`concept_stimuli`)
---------------------------------------
Concepts are WordNet noun *supersenses* (lexicographer files, ``noun.animal`` ...), named by
their short names (``"animal"``). A lemma of ``index.noun`` is a *candidate* for a concept when

1. it is 3-12 lowercase ASCII letters (no compounds, hyphens, digits or capitals); it is not
   an irregular inflection listed in a ``*.exc`` file (``men``, ``spoke``), not a regular
   plural of another noun (``eggs``) and not the ``-ing`` form of a verb (``giving``,
   ``swimming``, also ``building``);
2. its **first** sense (WordNet orders senses by corpus frequency) lies in that supersense, and
   the lemma is written in lowercase in that synset (so ``england``, really ``England``, is out);
3. it is *common*: that first sense is sense-tagged at least once in SemCor (``cntlist.rev``)
   and the lemma occurs at least 3 times as a word in all WordNet glosses;
4. it is *unambiguous*: the first sense carries at least 80 % of the lemma's SemCor tags over
   all parts of speech (so ``queen``, a bee 16 times and a monarch 5, is out).

Candidates are ranked by how often they occur in the glosses (ties alphabetically): basic words
such as ``tree``, ``dog``, ``milk`` define many other words. ``concept_stimuli`` draws
``n_per_concept`` words per concept, seeded and without replacement, from the
``pool_factor * n_per_concept`` highest-ranked candidates (all, if there are fewer), and lists
them concept by concept in rank order. ``/usr/share/dict/words`` is deliberately not used: it
differs between machines, and the selection must not.

Forms: ``"word"`` (the bare word), ``"sentence"`` (the word in a neutral template drawn, with
the seed, from :data:`TEMPLATES`; every template uses "the", avoiding a/an) or ``"gloss"``
(``"dog: a member of the genus Canis ..."``, the word and its first sense's definition).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import data, paths

__all__ = [
    "Stimuli", "CONCEPTS", "SUPERSENSES", "TEMPLATES", "concept_candidates", "concept_stimuli",
    "corpus_stimuli", "image_stimuli", "check_length", "concept_occurrences", "paired_stimuli",
    "PAIRED_PACKAGES", "category_name", "coarse_category",
]

# Noun lexicographer files (lexnames(5WN)): short name -> lex_filenum.
SUPERSENSES: dict[str, int] = {
    "Tops": 3, "act": 4, "animal": 5, "artifact": 6, "attribute": 7, "body": 8, "cognition": 9,
    "communication": 10, "event": 11, "feeling": 12, "food": 13, "group": 14, "location": 15,
    "motive": 16, "object": 17, "person": 18, "phenomenon": 19, "plant": 20, "possession": 21,
    "process": 22, "quantity": 23, "relation": 24, "shape": 25, "state": 26, "substance": 27,
    "time": 28,
}

CONCEPTS: tuple[str, ...] = (
    "animal", "food", "artifact", "plant", "person", "location", "body", "time", "feeling", "act",
)

TEMPLATES: tuple[str, ...] = (
    "I thought about the {w}.",
    "She told me about the {w}.",
    "We talked about the {w} yesterday.",
    "He wrote a few lines about the {w}.",
    "They asked me about the {w}.",
    "This is a short story about the {w}.",
)

MIN_GLOSS_COUNT = 3
MIN_DOMINANCE = 0.8


@dataclass
class Stimuli:
    """A stimulus set: texts and/or images, one concept label per item ("" when unlabelled)."""

    name: str
    texts: list[str] | None
    images: np.ndarray | None  # uint8 (n, H, W, 3)
    labels: list[str]
    words: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.texts is None and self.images is None:
            raise ValueError("Stimuli need texts or images")
        n = len(self.labels)
        if self.texts is not None:
            self.texts = list(self.texts)
            if len(self.texts) != n:
                raise ValueError(f"{len(self.texts)} texts but {n} labels")
        if self.images is not None:
            images = np.asarray(self.images)
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
                raise ValueError(f"images must be uint8 (n, H, W, 3), got {images.dtype} "
                                 f"{images.shape}")
            if len(images) != n:
                raise ValueError(f"{len(images)} images but {n} labels")
            self.images = images
        if self.words is not None:
            self.words = list(self.words)
            if len(self.words) != n:
                raise ValueError(f"{len(self.words)} words but {n} labels")
        self.labels = [str(label) for label in self.labels]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def key(self) -> str:
        """12 hex digits of SHA-256 over the content (texts, images, labels, words; not name)."""
        h = hashlib.sha256()
        for part in ("texts", "labels", "words"):
            values = getattr(self, part)
            h.update(f"{part}:{'-' if values is None else len(values)}\0".encode())
            for value in values or ():
                h.update(value.encode())
                h.update(b"\0")
        if self.images is not None:
            h.update(f"images:{self.images.shape}\0".encode())
            h.update(np.ascontiguousarray(self.images).tobytes())
        return h.hexdigest()[:12]

    def subset(self, indices: Sequence[int] | np.ndarray) -> "Stimuli":
        """The items at ``indices`` (integer positions or a boolean mask), in that order."""
        idx = np.arange(len(self))[np.asarray(indices)] if len(self) else np.asarray(indices)
        idx = np.atleast_1d(idx).astype(int)
        pick = lambda xs: None if xs is None else [xs[i] for i in idx]  # noqa: E731
        return Stimuli(self.name, pick(self.texts),
                       None if self.images is None else self.images[idx],
                       pick(self.labels), pick(self.words), dict(self.info))

    @property
    def concepts(self) -> list[str]:
        """The distinct labels in order of first appearance."""
        return list(dict.fromkeys(self.labels))

    @classmethod
    def from_texts(cls, texts: Sequence[str] | str, labels: Sequence[Any] | None = None, *,
                   name: str = "texts", words: Sequence[str] | None = None) -> "Stimuli":
        """Stimuli from your own sentences (``labels`` optional; "" = unlabelled).

        >>> Stimuli.from_texts(["a dog runs", "a cat sleeps"], labels=["dog", "cat"]).concepts
        ['dog', 'cat']
        """
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise ValueError(f"texts must be strings; item {bad[0]} is "
                             f"{type(texts[bad[0]]).__name__} ({texts[bad[0]]!r:.60})")
        if not texts:
            raise ValueError("texts are empty: give at least one string")
        return cls(name, texts, None, [""] * len(texts) if labels is None else list(labels),
                   words)

    @classmethod
    def from_images(cls, images: Any, labels: Sequence[Any] | None = None, *,
                    name: str = "images") -> "Stimuli":
        """Stimuli from uint8 images ``(n, H, W, 3)`` (or a list of ``(H, W, 3)`` arrays)."""
        images = np.stack([np.asarray(i) for i in images]) if isinstance(images, (list, tuple)) \
            else np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        return cls(name, None, images, [""] * len(images) if labels is None else list(labels))


# --------------------------------------------------------------------------------------------
# WordNet concept words


@dataclass(frozen=True)
class _Candidate:
    word: str
    concept: str
    gloss_count: int  # occurrences of the word in all WordNet glosses
    tags: int  # SemCor tags of its first sense
    gloss: str  # the first sense's definition


@lru_cache(maxsize=4)
def _wordnet_candidates(wordnet_dir: Path) -> dict[str, tuple[_Candidate, ...]]:
    def need(name: str) -> Path:
        path = wordnet_dir / name
        if not path.is_file():
            raise data._missing("wordnet", f"no file {path}")
        return path

    lexname = {num: name for name, num in SUPERSENSES.items()}
    synsets: dict[str, tuple[int, list[str], str]] = {}
    gloss_counts: Counter[str] = Counter()
    for pos, lines in data.wordnet_synsets(wordnet_dir).items():
        for head, gloss in lines:
            gloss_counts.update(re.findall(r"[a-z]+", gloss))
            if pos == "noun":
                f = head.split(" ")
                n_words = int(f[3], 16)
                definition = gloss.split(";")[0].strip()
                synsets[f[0]] = (int(f[1]), [f[4 + 2 * i] for i in range(n_words)], definition)
    tags: defaultdict[str, Counter] = defaultdict(Counter)
    with open(need("cntlist.rev"), encoding="utf-8") as fh:
        for line in fh:
            key, _, count = line.split()
            lemma, _, rest = key.partition("%")
            ss_type, lex_file = rest.split(":")[:2]
            tags[lemma][(int(ss_type), int(lex_file))] += int(count)
    inflected: set[str] = set()  # irregular inflections (plurals, "spoke", "felt", ...)
    for pos in ("noun", "verb", "adj", "adv"):
        with open(need(f"{pos}.exc"), encoding="utf-8") as fh:
            inflected.update(line.split()[0] for line in fh if line.strip())
    with open(need("index.verb"), encoding="utf-8") as fh:
        verbs = {line.split(" ", 1)[0] for line in fh if not line.startswith("  ")}
    first_sense: dict[str, str] = {}
    with open(need("index.noun"), encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("  "):
                continue
            f = line.split()
            first_sense[f[0]] = f[-int(f[2])]

    by_concept: defaultdict[str, list[_Candidate]] = defaultdict(list)
    word_re = re.compile(r"[a-z]{3,12}")
    for lemma, offset in first_sense.items():
        if not word_re.fullmatch(lemma) or lemma in inflected:
            continue
        if lemma.endswith("s") and lemma[:-1] in first_sense:
            continue
        if lemma.endswith("ing") and _ing_stems(lemma) & verbs:  # "giving", "swimming"
            continue
        lex_file, words, definition = synsets[offset]
        if lemma not in words:  # capitalised in its first sense: a proper noun
            continue
        first_tags = tags[lemma][(1, lex_file)]
        total_tags = sum(tags[lemma].values())
        if (first_tags < 1 or first_tags < MIN_DOMINANCE * total_tags
                or gloss_counts[lemma] < MIN_GLOSS_COUNT):
            continue
        concept = lexname.get(lex_file)
        if concept is not None:
            by_concept[concept].append(
                _Candidate(lemma, concept, gloss_counts[lemma], first_tags, definition))
    return {c: tuple(sorted(v, key=lambda x: (-x.gloss_count, x.word)))
            for c, v in by_concept.items()}


def _ing_stems(word: str) -> set[str]:
    stem = word[:-3]
    stems = {stem, stem + "e"}
    if len(stem) > 2 and stem[-1] == stem[-2]:
        stems.add(stem[:-1])
    return stems


def concept_candidates(concept: str) -> list[str]:
    """All candidate words of a concept, most common first (see the module docstring)."""
    _check_concepts([concept])
    return [c.word for c in _wordnet_candidates(data.WORDNET_DIR).get(concept, ())]


def _check_concepts(concepts: Sequence[str]) -> None:
    if isinstance(concepts, str):
        raise ValueError(f"concepts must be a sequence of names, got the string {concepts!r}")
    for concept in concepts:
        if concept not in SUPERSENSES:
            raise ValueError(f"unknown concept {concept!r}; WordNet noun supersenses are "
                             f"{sorted(SUPERSENSES)}")
    if len(set(concepts)) != len(concepts):
        raise ValueError(f"concepts repeat: {list(concepts)}")


def concept_stimuli(n_per_concept: int = 20, form: str = "word",
                    concepts: Sequence[str] = CONCEPTS, seed: int = 0,
                    pool_factor: float = 3.0) -> Stimuli:
    """``n_per_concept`` WordNet nouns per concept, labelled by concept, grouped by concept.

    ``form`` is ``"word"``, ``"sentence"`` or ``"gloss"``; ``words`` always holds the bare words.
    Raises ValueError when a concept has fewer than ``n_per_concept`` candidates.
    """
    if form not in ("word", "sentence", "gloss"):
        raise ValueError(f"form must be 'word', 'sentence' or 'gloss', got {form!r}")
    if not isinstance(n_per_concept, (int, np.integer)) or n_per_concept < 1:
        raise ValueError(f"n_per_concept must be a positive integer, got {n_per_concept!r}")
    if pool_factor < 1:
        raise ValueError(f"pool_factor must be >= 1, got {pool_factor}")
    concepts = tuple(concepts)
    _check_concepts(concepts)
    table = _wordnet_candidates(data.WORDNET_DIR)
    rng = np.random.default_rng([int(seed), 0xC0C])
    chosen: list[_Candidate] = []
    for concept in concepts:
        candidates = table.get(concept, ())
        if len(candidates) < n_per_concept:
            raise ValueError(
                f"concept {concept!r} has only {len(candidates)} candidate words but "
                f"n_per_concept={n_per_concept}; ask for at most {len(candidates)} per concept "
                f"or drop {concept!r}")
        pool = max(n_per_concept, min(len(candidates), int(round(pool_factor * n_per_concept))))
        picked = np.sort(rng.choice(pool, size=n_per_concept, replace=False))
        chosen.extend(candidates[i] for i in picked)
    words = [c.word for c in chosen]
    if form == "word":
        texts = list(words)
    elif form == "sentence":
        which = rng.integers(len(TEMPLATES), size=len(words))
        texts = [TEMPLATES[t].format(w=w) for t, w in zip(which, words)]
    else:
        texts = [f"{c.word}: {c.gloss}" for c in chosen]
    name = f"concepts-{form}-{len(concepts)}x{n_per_concept}-s{seed}"
    return Stimuli(name, texts, None, [c.concept for c in chosen], words,
                   {"gloss_counts": [c.gloss_count for c in chosen]})


# --------------------------------------------------------------------------------------------
# Corpus snippets


def corpus_stimuli(corpus: str = "kjv", n: int = 512, max_words: int = 32,
                   split: str = "validation", seed: int = 0, min_words: int = 5) -> Stimuli:
    """``n`` distinct lines (verses, fortunes, glosses) of a corpus split, cut to ``max_words``.

    Lines with fewer than ``min_words`` words are skipped; the draw is seeded and the snippets
    keep corpus order. Labels are ``""``. The default split is validation, which the project's
    language models never train on.
    """
    if max_words < min_words:
        raise ValueError(f"max_words ({max_words}) must be >= min_words ({min_words})")
    docs = data.corpus(corpus).split(split)
    snippets = list(dict.fromkeys(
        " ".join(words[:max_words])
        for line in (ln for doc in docs for ln in doc.splitlines())
        if len(words := line.split()) >= min_words))
    if len(snippets) < n:
        raise ValueError(f"corpus {corpus!r} {split} split has only {len(snippets)} distinct "
                         f"lines of >= {min_words} words, fewer than n={n}")
    rng = np.random.default_rng([int(seed), 0x5A1])
    idx = np.sort(rng.choice(len(snippets), size=n, replace=False))
    return Stimuli(f"corpus-{corpus}-{split}-{n}x{max_words}w-s{seed}",
                   [snippets[i] for i in idx], None, [""] * n, None)


def concept_occurrences(n_per_concept: int = 30, max_per_word: int = 10,
                        concepts: Sequence[str] = CONCEPTS, corpus: str = "kjv",
                        split: str = "validation", seed: int = 0, max_words: int = 20) -> Stimuli:
    """Concept words as running text shows them: each stimulus is a verse of ``corpus``'s
    ``split`` (held out from training by default) cut right after one occurrence of a
    candidate noun of a concept, written in lowercase after a space (``"... into your
    servant's house"``), keeping at most ``max_words`` words up to and including it. The
    word's representation is read at the text's last token.

    Per concept, ``n_per_concept`` occurrences are drawn (seeded) with at most
    ``max_per_word`` per word, so no single word dominates a concept; ``words`` holds the word
    of each stimulus (the group for held-out-word decoding), ``info["n_words"]`` the number of
    distinct words per concept. Raises ValueError naming the concept when the split has too
    few occurrences.
    """
    concepts = tuple(concepts)
    _check_concepts(concepts)
    if n_per_concept < 1 or max_per_word < 1:
        raise ValueError("n_per_concept and max_per_word must be positive")
    verses = [ln for doc in data.corpus(corpus).split(split) for ln in doc.splitlines()
              if ln.strip()]
    table = _wordnet_candidates(data.WORDNET_DIR)
    rng = np.random.default_rng([int(seed), 0x0CC])
    found: dict[str, list[str]] = defaultdict(list)  # word -> verse prefixes ending in it
    for verse in verses:
        for m in re.finditer(r"(?<=[\w,;:]) ([a-z]+)\b", verse):
            found[m.group(1)].append(" ".join(verse[:m.end()].split()[-max_words:]))
    texts, labels, words, n_words = [], [], [], {}
    for concept in concepts:
        by_word = {c.word: found[c.word] for c in table.get(concept, ()) if c.word in found}
        pool = []
        for word in sorted(by_word):
            occ = list(dict.fromkeys(by_word[word]))
            keep = rng.permutation(len(occ))[:max_per_word]
            pool += [(word, occ[i]) for i in sorted(keep)]
        if len(pool) < n_per_concept:
            raise ValueError(f"concept {concept!r} has only {len(pool)} occurrences (at most "
                             f"{max_per_word} per word) in {corpus} {split}, fewer than "
                             f"n_per_concept={n_per_concept}; lower n_per_concept or raise "
                             "max_per_word")
        picked = sorted(rng.choice(len(pool), size=n_per_concept, replace=False))
        chosen = [pool[i] for i in picked]
        n_words[concept] = len({w for w, _ in chosen})
        texts += [t for _, t in chosen]
        words += [w for w, _ in chosen]
        labels += [concept] * n_per_concept
    name = f"occurrences-{corpus}-{split}-{len(concepts)}x{n_per_concept}-w{max_per_word}-s{seed}"
    return Stimuli(name, texts, None, labels, words, {"n_words": n_words})


# --------------------------------------------------------------------------------------------
# Images


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of float ``(n, h, w[, 3])`` images to ``(n, size, size[, 3])``."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    grey = x.ndim == 3
    x = x[:, None] if grey else x.permute(0, 3, 1, 2)
    y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                      antialias=bool(min(images.shape[1:3]) > size))
    y = y[:, 0] if grey else y.permute(0, 2, 3, 1)
    return y.numpy()


def image_stimuli(n: int = 500, size: int = 224, seed: int = 0,
                  source: str = "digits") -> Stimuli:
    """``n`` RGB images, uint8 ``(n, size, size, 3)``, balanced over their labels.

    ``source="digits"``: scikit-learn's 8x8 handwritten digits, bilinearly upsampled, dark ink
    on a white ground; labels ``"0"``..``"9"``, ``n // 10`` per digit (the first ``n % 10``
    digits one more), at most 1740. ``source="photos"``: random square crops (side 128 px to
    the full height) of scikit-learn's two sample photographs, labels ``"china"``/``"flower"``.
    """
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    rng = np.random.default_rng([int(seed), 0x1A6])
    if source == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        classes = [str(c) for c in range(10)]
        per_class = [n // 10 + (i < n % 10) for i in range(10)]
        available = min(int((digits.target == c).sum()) for c in range(10))
        if n < 1 or max(per_class) > available:
            raise ValueError(f"n must be in [1, {10 * available}] for balanced digits, got {n}")
        idx = np.concatenate([
            np.sort(rng.choice(np.flatnonzero(digits.target == c), size=k, replace=False))
            for c, k in enumerate(per_class)]).astype(int)
        ink = digits.images[idx] / 16.0
        grey = np.clip(np.rint(255.0 * (1.0 - _resize(ink, size))), 0, 255).astype(np.uint8)
        images = np.repeat(grey[..., None], 3, axis=-1)
        labels = [classes[t] for t in digits.target[idx]]
    elif source == "photos":
        from sklearn.datasets import load_sample_images

        sample = load_sample_images()
        names = [Path(f).stem for f in sample.filenames]
        crops, labels = [], []
        for i in range(n):
            k = i % len(names)
            photo = sample.images[k]
            h, w = photo.shape[:2]
            side = int(rng.integers(min(128, h), h + 1))
            top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = _resize(photo[None, top:top + side, left:left + side].astype(np.float32),
                           size)[0]
            crops.append(np.clip(np.rint(crop), 0, 255).astype(np.uint8))
            labels.append(names[k])
        images = np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)
    else:
        raise ValueError(f"source must be 'digits' or 'photos', got {source!r}")
    return Stimuli(f"images-{source}-{n}x{size}-s{seed}", None, images, labels, None)


# --------------------------------------------------------------------------------------------
# Paired images and captions (Tux Paint stamps, Noto colour emoji)
#
# Real image-caption pairs from Debian packages, for cross-modal comparisons:
#
# - ``tuxpaint``: the PNG stamps of ``tuxpaint-stamps-default``; a stamp's caption is the first
#   line of the ``.txt`` beside it ("A frog."); its category is its folder ("animals/birds").
#   Transparent pixels go white, the stamp is cropped to its opaque part and padded square.
# - ``emoji``: the fully-qualified single-codepoint emoji of ``emoji-test.txt`` (``unicode-data``)
#   outside the "Component" group, rendered by Pillow from ``fonts-noto-color-emoji`` at size 109
#   (the font's bitmap strike) with ``embedded_color=True`` on white; caption = the CLDR name
#   ("grinning face"), category = group and subgroup ("Smileys & Emotion/face-smiling").
#
# Labels are ``"<source>/<category>"``; :func:`category_name` gives a label as words and
# :func:`coarse_category` its first level (``"emoji/Smileys & Emotion"``, ``"tuxpaint/animals"``). Items whose normalised caption (lower case, letters and
# digits only) or whose pixels repeat an earlier item are dropped (first kept; emoji first, then
# stamps in sorted path order). Images are resized (Lanczos) to ``size`` x ``size``. The result
# is cached in ``CACHE/stimuli`` under a hash of the inputs' file listing and the options.

TUXPAINT_STAMPS = Path("/usr/share/tuxpaint/stamps")
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
PAIRED_PACKAGES: dict[str, tuple[str, ...]] = {
    "tuxpaint": ("tuxpaint-stamps-default",),
    "emoji": ("fonts-noto-color-emoji", "unicode-data"),
}
EMOJI_FONT_SIZE = 109
_PAIRED_FORMAT = 2


def _missing_paired(source: str, path: Path) -> "data.MissingCorpusError":
    pkgs = " ".join(PAIRED_PACKAGES[source])
    return data.MissingCorpusError(
        f"paired stimuli {source!r} need the Debian package(s) {pkgs} (no {path}): "
        f"sudo apt-get install {pkgs} (or run `make setup` as root)")


def category_name(label: str) -> str:
    """The category of a paired label as words: ``"tuxpaint/animals/birds"`` -> ``"animals
    birds"``; for emoji the subgroup only: ``"emoji/Smileys & Emotion/face-smiling"`` ->
    ``"face smiling"``."""
    source, _, category = label.partition("/")
    if source == "emoji":
        category = category.rsplit("/", 1)[-1]
    return " ".join(re.sub(r"[^A-Za-z]+", " ", category).split()).lower()


def coarse_category(label: str) -> str:
    """The first level of a paired label: ``"tuxpaint/animals/birds"`` -> ``"tuxpaint/animals"``."""
    return "/".join(label.split("/")[:2])


def _caption_key(caption: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", caption.lower())


def _square(rgba, size: int) -> np.ndarray:
    """An RGBA PIL image on white, cropped to its opaque part, padded square, resized."""
    from PIL import Image

    rgba = rgba.convert("RGBA")
    box = rgba.getchannel("A").getbbox() or (0, 0, *rgba.size)
    rgba = rgba.crop(box)
    side = max(rgba.size)
    canvas = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    canvas.alpha_composite(rgba, ((side - rgba.size[0]) // 2, (side - rgba.size[1]) // 2))
    return np.asarray(canvas.convert("RGB").resize((size, size), Image.LANCZOS), dtype=np.uint8)


def _emoji_entries(test_file: Path) -> list[tuple[str, str, str]]:
    """(character, CLDR name, "group/subgroup") of the fully-qualified single-codepoint emoji."""
    entries, group, subgroup = [], "", ""
    for line in test_file.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif line and not line.startswith("#") and ";" in line:
            points, _, rest = line.partition(";")
            status, _, comment = rest.partition("#")
            codes = [c for c in points.split() if c.upper() != "FE0F"]
            if status.strip() != "fully-qualified" or len(codes) != 1 or group == "Component":
                continue
            # comment: " 😀 E1.0 grinning face"
            name = re.sub(r"^\s*\S+\s+E\d+\.\d+\s+", "", comment).strip()
            char = "".join(chr(int(c, 16)) for c in points.split())
            entries.append((char, name, f"{group}/{subgroup}"))
    return entries


def _emoji_pairs(font_file: Path, test_file: Path, size: int):
    from PIL import Image, ImageDraw, ImageFont

    for path in (font_file, test_file):
        if not path.is_file():
            raise _missing_paired("emoji", path)
    font = ImageFont.truetype(str(font_file), EMOJI_FONT_SIZE)
    for char, name, subgroup in _emoji_entries(test_file):
        left, top, right, bottom = font.getbbox(char)
        canvas = Image.new("RGBA", (max(right, 1), max(bottom, 1)), (255, 255, 255, 0))
        ImageDraw.Draw(canvas).text((0, 0), char, font=font, embedded_color=True)
        if canvas.getchannel("A").getbbox() is None:  # not in the font: a blank image
            continue
        yield _square(canvas, size), name, f"emoji/{subgroup}"


def _stamp_files(stamps_dir: Path) -> list[tuple[Path, Path]]:
    if not stamps_dir.is_dir():
        raise _missing_paired("tuxpaint", stamps_dir)
    return [(txt, txt.with_suffix(".png")) for txt in sorted(stamps_dir.rglob("*.txt"))
            if txt.with_suffix(".png").is_file()]


def _stamp_pairs(stamps_dir: Path, size: int):
    from PIL import Image

    for txt, png in _stamp_files(stamps_dir):
        lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
        caption = lines[0].strip() if lines else ""
        if not caption or "=" in caption.split()[0]:  # no English line first
            continue
        with Image.open(png) as image:
            pixels = _square(image, size)
        category = txt.parent.relative_to(stamps_dir).as_posix()
        yield pixels, caption, f"tuxpaint/{category}"


def _listing(paths_: Sequence[Path]) -> list:
    """Names and sizes of the input files: enough to notice an upgraded package."""
    out = []
    for path in paths_:
        if path.is_dir():
            out.append([str(path), [[p.relative_to(path).as_posix(), p.stat().st_size]
                                    for p in sorted(path.rglob("*")) if p.suffix in (".txt", ".png")]])
        elif path.is_file():
            out.append([str(path), path.stat().st_size])
        else:
            out.append([str(path), None])
    return out


def paired_stimuli(sources: Sequence[str] = ("emoji", "tuxpaint"), size: int = 160,
                   n: int | None = None, seed: int = 0, *, stamps_dir: Path | None = None,
                   emoji_font: Path | None = None, emoji_test: Path | None = None,
                   cache: bool = True) -> Stimuli:
    """Image-caption pairs: ``images`` uint8 ``(n, size, size, 3)``, ``texts`` the captions,
    ``labels`` ``"<source>/<category>"`` (see the section comment above).

    ``n`` draws a seeded subset (kept in order); ``None`` keeps every pair. Raises
    :class:`resonance.data.MissingCorpusError` naming the apt packages when a source is absent.
    """
    from .store import atomic_path, config_hash

    if isinstance(sources, str):
        sources = (sources,)
    sources = tuple(sources)
    unknown = [s for s in sources if s not in PAIRED_PACKAGES]
    if unknown or not sources or len(set(sources)) != len(sources):
        raise ValueError(f"sources must be distinct names from {sorted(PAIRED_PACKAGES)}, "
                         f"got {list(sources)}")
    if not isinstance(size, (int, np.integer)) or size < 16:
        raise ValueError(f"size must be an integer of at least 16 pixels, got {size!r}")
    stamps_dir = Path(stamps_dir or TUXPAINT_STAMPS)
    emoji_font, emoji_test = Path(emoji_font or EMOJI_FONT), Path(emoji_test or EMOJI_TEST)
    inputs = {"emoji": [emoji_font, emoji_test], "tuxpaint": [stamps_dir]}
    for source in sources:
        for path in inputs[source]:
            if not path.exists():
                raise _missing_paired(source, path)
    key = config_hash({"format": _PAIRED_FORMAT, "sources": list(sources), "size": int(size),
                       "inputs": _listing([p for s in sources for p in inputs[s]])})
    path = paths.CACHE / "stimuli" / f"paired-{'-'.join(sources)}-{size}-{key}.npz"
    if cache and path.is_file():
        with np.load(path, allow_pickle=False) as stored:
            images, texts, labels = stored["images"], stored["texts"].tolist(), \
                stored["labels"].tolist()
    else:
        images, texts, labels = [], [], []
        seen_captions, seen_pixels = set(), set()
        for source in sources:
            pairs = (_emoji_pairs(emoji_font, emoji_test, size) if source == "emoji"
                     else _stamp_pairs(stamps_dir, size))
            for pixels, caption, label in pairs:
                digest = hashlib.sha256(pixels.tobytes()).digest()
                ckey = _caption_key(caption)
                if not ckey or ckey in seen_captions or digest in seen_pixels:
                    continue
                seen_captions.add(ckey)
                seen_pixels.add(digest)
                images.append(pixels)
                texts.append(caption)
                labels.append(label)
        images = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
        if cache:
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as handle:
                    np.savez(handle, images=images, texts=np.array(texts, dtype=str),
                             labels=np.array(labels, dtype=str))
    full = Stimuli(f"paired-{'-'.join(sources)}-{len(labels)}x{size}", list(texts), images,
                   list(labels), None, {"sources": sources})
    if n is None:
        return full
    if not isinstance(n, (int, np.integer)) or not 1 <= n <= len(full):
        raise ValueError(f"n must be an integer in [1, {len(full)}] (the number of pairs), "
                         f"got {n!r}")
    rng = np.random.default_rng([int(seed), 0x9A1])
    picked = full.subset(np.sort(rng.choice(len(full), size=n, replace=False)))
    picked.name = f"{full.name}-n{n}-s{seed}"
    return picked


# --------------------------------------------------------------------------------------------
# Context length


def check_length(stimuli: Stimuli, tokenizer: Any, max_length: int) -> int:
    """Return the longest item's token count; ValueError when it exceeds ``max_length``.

    Counts the ids the tokenizer produces with its special tokens (bos/eos, if it adds any),
    which is what the model sees.
    """
    if stimuli.texts is None:
        raise ValueError(f"stimuli {stimuli.name!r} are images and have no text to tokenize")
    if not stimuli.texts:
        return 0
    ids = tokenizer(list(stimuli.texts), add_special_tokens=True)["input_ids"]
    counts = np.array([len(x) for x in ids])
    longest = int(counts.argmax())
    if counts[longest] > max_length:
        over = int((counts > max_length).sum())
        text = stimuli.texts[longest]
        shown = text if len(text) <= 120 else text[:117] + "..."
        raise ValueError(
            f"stimuli {stimuli.name!r}: {over} of {len(counts)} items exceed the model's context "
            f"of {max_length} tokens; the longest is item {longest} with {counts[longest]} "
            f"tokens: {shown!r}. Use shorter stimuli (e.g. corpus_stimuli(max_words=...)) or a "
            f"model with a longer context")
    return int(counts[longest])
