"""Layer-wise activations of a zoo model on a set of stimuli, pooled and cached on disk.

>>> from resonance import zoo, stimuli, activations
>>> acts = activations.extract(zoo.load("minilm"), stimuli.concept_stimuli(10))  # doctest: +SKIP
>>> acts[3].shape            # layer 3: (n stimuli, 384) float32                  # doctest: +SKIP
>>> activations.extract("minilm", ["a dog runs", "a cat sleeps"])  # plain texts  # doctest: +SKIP

Pooling (text): ``"mean"`` averages the real tokens of each item (the attention mask decides;
padding never leaks in), ``"last"`` takes each item's last real token (left or right padding),
``"tokens"`` keeps every real token: per layer an ``(N_tokens, d)`` array, with ``item`` (the
stimulus index) and ``positions`` (the position inside that stimulus) arrays beside it. Vision
models are always spatially mean-pooled (``pool="mean"``).

Texts are batched longest-first, so a batch holds items of similar length (less padding); the
result is returned in the stimuli's order. Results are cached at
``paths.CACHE / "activations" / f"{model}-{model_key}-{stimuli.key}-{pool}.npz"``; the model key
covers the weights (package version, hub revision, or the in-house training-config hash) and
the chosen layers, so a cache hit runs no model at all.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import paths
from .io import atomic_path, config_hash

POOLS = ("mean", "last", "tokens")
_FORMAT = 1


@dataclass
class Activations:
    """Per-layer activations: ``layers[i]`` belongs to hidden state ``layer_ids[i]``
    (0 = embeddings / stem). Pooled: ``(n_stimuli, d)``; ``pool="tokens"``: ``(N_tokens, d)``
    with ``item[k]`` and ``positions[k]`` telling which stimulus and position row ``k`` is."""

    layers: list[np.ndarray]
    layer_ids: list[int]
    model: str
    pool: str
    stimuli_key: str
    model_key: str = ""
    n_items: int = 0
    labels: list[str] | None = None
    item: np.ndarray | None = None
    positions: np.ndarray | None = None
    token_ids: np.ndarray | None = None
    path: Path | None = field(default=None, compare=False)

    def __getitem__(self, layer: int) -> np.ndarray:
        """The array of hidden state ``layer`` (a layer id, negative counts from the end)."""
        ids = self.layer_ids
        if layer < 0 and -layer <= len(ids):
            return self.layers[layer]
        try:
            return self.layers[ids.index(layer)]
        except ValueError:
            raise KeyError(f"layer {layer} was not extracted; have {ids}") from None

    def __len__(self) -> int:
        """The number of layers, like iteration (``n_items`` counts the stimuli)."""
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def pooled(self, how: str = "mean") -> "Activations":
        """Pool token-level activations (``pool="tokens"``) into ``(n_items, d)`` per layer."""
        if self.pool != "tokens":
            raise ValueError(f"these activations are already pooled ({self.pool!r})")
        if how not in ("mean", "last"):
            raise ValueError(f"how must be 'mean' or 'last', got {how!r}")
        counts = np.bincount(self.item, minlength=self.n_items)
        out = []
        for a in self.layers:
            if how == "mean":
                sums = np.zeros((self.n_items, a.shape[1]), dtype=np.float64)
                np.add.at(sums, self.item, a)
                out.append((sums / np.maximum(counts, 1)[:, None]).astype(np.float32))
            else:
                last = np.zeros(self.n_items, dtype=np.int64)
                np.maximum.at(last, self.item, np.arange(len(self.item)))
                out.append(a[last])
        return Activations(out, list(self.layer_ids), self.model, how, self.stimuli_key,
                           self.model_key, self.n_items, self.labels)

    # -- storage --------------------------------------------------------------------------
    def save(self, path: Path | str) -> Path:
        path = Path(path)
        arrays = {f"layer_{i}": a for i, a in enumerate(self.layers)}
        for name in ("item", "positions", "token_ids"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        meta = {"format": _FORMAT, "layer_ids": [int(i) for i in self.layer_ids],
                "model": self.model, "pool": self.pool, "stimuli_key": self.stimuli_key,
                "model_key": self.model_key, "n_items": int(self.n_items),
                "labels": None if self.labels is None else [str(x) for x in self.labels]}
        arrays["meta"] = np.array(json.dumps(meta))
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:  # a handle: np.savez would append '.npz' to a name
                np.savez(handle, **arrays)
        self.path = path
        return path

    @classmethod
    def load(cls, path: Path | str) -> "Activations":
        path = Path(path)
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != _FORMAT:
                raise ValueError(f"{path} has format {meta.get('format')}, expected {_FORMAT}")
            layers = [data[f"layer_{i}"] for i in range(len(meta["layer_ids"]))]
            extra = {k: data[k] for k in ("item", "positions", "token_ids") if k in data.files}
        return cls(layers, meta["layer_ids"], meta["model"], meta["pool"], meta["stimuli_key"],
                   meta["model_key"], meta["n_items"], meta["labels"], path=path, **extra)


def cache_path(model, stimuli, pool: str = "mean", layers: Any = "all") -> Path:
    """Where :func:`extract` stores ``model`` on ``stimuli`` (whether or not it exists)."""
    ids = _layer_ids(model, layers)
    return _cache_path(model, stimuli, pool, ids)


def _model_key(model, ids: list[int]) -> str:
    if ids == list(range(model.n_layers + 1)):
        return model.key
    return config_hash({"model": model.key, "layers": ids})


def _cache_path(model, stimuli, pool: str, ids: list[int]) -> Path:
    safe = model.name.replace("/", "__").replace(" ", "_")
    return (paths.CACHE / "activations" /
            f"{safe}-{_model_key(model, ids)}-{stimuli.key}-{pool}.npz")


def _layer_ids(model, layers: Any) -> list[int]:
    n = model.n_layers + 1
    if isinstance(layers, str):
        if layers != "all":
            raise ValueError(f"layers must be 'all' or a list of layer ids, got {layers!r}")
        return list(range(n))
    if isinstance(layers, (int, np.integer)):
        layers = [layers]
    ids = []
    for layer in layers:
        if not isinstance(layer, (int, np.integer)) or not -n <= layer < n:
            raise ValueError(f"layer {layer!r} out of range: {model.name} has hidden states "
                             f"0..{n - 1} (0 = embeddings, {n - 1} = last layer)")
        ids.append(int(layer) % n)
    if not ids:
        raise ValueError("layers is empty")
    if len(set(ids)) != len(ids):
        raise ValueError(f"layers has duplicates: {list(layers)}")
    return ids


def _check_length(model, stimuli, lengths: np.ndarray) -> None:
    """Too-long stimuli are an error, never silently truncated."""
    if model.max_length is None or not len(lengths):
        return
    try:
        from .stimuli import check_length
    except ImportError:
        check_length = None
    from transformers import PreTrainedTokenizerBase
    if check_length is not None and isinstance(model.tokenizer, PreTrainedTokenizerBase):
        check_length(stimuli, model.tokenizer, model.max_length)
    worst = int(np.argmax(lengths))
    if lengths[worst] > model.max_length:  # tokenizers check_length cannot call
        over = int((lengths > model.max_length).sum())
        raise ValueError(
            f"stimuli {getattr(stimuli, 'name', '')!r}: {over} of {len(lengths)} items exceed "
            f"{model.name}'s context of {model.max_length} tokens; the longest is item {worst} "
            f"with {int(lengths[worst])} tokens: {stimuli.texts[worst][:100]!r}")


def extract(model, stimuli, layers: Any = "all", pool: str = "mean", batch_size: int = 32,
            cache: bool = True, progress: bool = False, *,
            labels: Sequence[Any] | None = None) -> Activations:
    """Hidden states of ``model`` (a :class:`resonance.zoo.ZooModel`, or a zoo name) on
    ``stimuli``, one float32 array per requested layer, pooled as ``pool`` says.

    ``stimuli`` is a :class:`resonance.stimuli.Stimuli`, or plainly a list/tuple of strings or
    an array of uint8 images ``(n, H, W, 3)``; ``labels`` (optional) label those plain items.
    ``cache=True`` reads/writes ``paths.CACHE/activations``; a hit does no model work.
    """
    if isinstance(model, (str, Path)):
        from . import zoo
        model = zoo.load(model)
    stimuli = as_stimuli(stimuli, labels)
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if model.modality == "vision":
        if getattr(stimuli, "images", None) is None:
            raise ValueError(f"{model.name} is a vision model but stimuli "
                             f"{getattr(stimuli, 'name', '')!r} have no images")
        if pool != "mean":
            raise ValueError(f"vision models are spatially mean-pooled: use pool='mean', "
                             f"not {pool!r}")
    elif getattr(stimuli, "texts", None) is None:
        raise ValueError(f"{model.name} is a text model but stimuli "
                         f"{getattr(stimuli, 'name', '')!r} have no texts")
    n = len(stimuli)
    if n == 0:
        raise ValueError("stimuli are empty")
    ids = _layer_ids(model, layers)
    path = _cache_path(model, stimuli, pool, ids)
    if cache and path.is_file():
        try:
            return Activations.load(path)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            import warnings  # damaged or old: a pure function of model and stimuli, so rebuilt
            warnings.warn(f"the activation cache {path} cannot be read ({type(err).__name__}: "
                          f"{str(err)[:120]}); recomputing and replacing it", RuntimeWarning,
                          stacklevel=2)
    if model.modality == "vision":
        acts = _extract_images(model, stimuli, ids, batch_size, progress)
    else:
        acts = _extract_texts(model, stimuli, ids, pool, batch_size, progress)
    acts.model_key = _model_key(model, ids)
    labels = getattr(stimuli, "labels", None)
    acts.labels = None if labels is None else [str(x) for x in labels]
    if cache:
        acts.save(path)
    return acts


def as_stimuli(stimuli: Any, labels: Sequence[Any] | None = None):
    """``stimuli`` as a :class:`~resonance.stimuli.Stimuli`: plain lists/tuples of strings and
    arrays (or lists) of uint8 images are wrapped, with ``labels`` if given."""
    from .stimuli import Stimuli

    if isinstance(stimuli, Stimuli) or (hasattr(stimuli, "key") and hasattr(stimuli, "labels")):
        if labels is not None:
            raise ValueError("labels= labels plain lists of texts or images; these stimuli "
                             "carry their own (stimuli.labels)")
        return stimuli
    if isinstance(stimuli, str):
        return Stimuli.from_texts([stimuli], labels)
    if isinstance(stimuli, np.ndarray) and stimuli.dtype.kind not in "OUS":
        return Stimuli.from_images(stimuli, labels)
    if isinstance(stimuli, (list, tuple, np.ndarray)):
        items = list(stimuli)
        if items and all(isinstance(x, str) for x in items):
            return Stimuli.from_texts(items, labels)
        if items and all(isinstance(x, np.ndarray) for x in items):
            return Stimuli.from_images(items, labels)
        kinds = sorted({type(x).__name__ for x in items})
        raise ValueError(f"stimuli must be strings (text models) or uint8 image arrays (vision "
                         f"models), got {kinds or 'an empty list'}")
    raise TypeError(f"stimuli must be a resonance.stimuli.Stimuli, a list of strings or an "
                    f"image array, got {type(stimuli).__name__}")


def _batches(order: np.ndarray, batch_size: int, progress: bool, desc: str):
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if progress:
        from tqdm.auto import tqdm
        return tqdm(chunks, desc=desc)
    return chunks


def _extract_images(model, stimuli, ids: list[int], batch_size: int, progress: bool):
    images = stimuli.images
    n = len(images)
    out = [np.empty((n, model.hidden_sizes[i]), dtype=np.float32) for i in ids]
    for chunk in _batches(np.arange(n), batch_size, progress, model.name):
        states = model.hidden_states(model.preprocess(images[chunk]))
        for slot, layer in enumerate(ids):
            out[slot][chunk] = states[layer].detach().cpu().numpy()
    return Activations(out, ids, model.name, "mean", stimuli.key, n_items=n)


def _extract_texts(model, stimuli, ids: list[int], pool: str, batch_size: int,
                   progress: bool):
    import torch
    texts = [*stimuli.texts]
    n = len(texts)
    lengths = model.token_lengths(texts)
    _check_length(model, stimuli, lengths)
    # Longest first (stable, so ties keep the stimuli's order): batches of similar lengths.
    order = np.argsort(-lengths, kind="stable")
    if pool == "tokens":
        per_item: list[list[np.ndarray] | None] = [None] * n
        positions: list[np.ndarray | None] = [None] * n
        token_ids: list[np.ndarray | None] = [None] * n
    else:
        out = [np.empty((n, model.hidden_sizes[i]), dtype=np.float32) for i in ids]
    for chunk in _batches(order, batch_size, progress, model.name):
        batch = model.tokenize([texts[i] for i in chunk], check=False)
        states = model.hidden_states(batch)
        mask = batch["attention_mask"].to(states[0].device)
        if pool == "mean":
            weights = mask.float().unsqueeze(-1)
            denom = weights.sum(1).clamp_min(1.0)
            for slot, layer in enumerate(ids):
                pooled = (states[layer] * weights).sum(1) / denom
                out[slot][chunk] = pooled.cpu().numpy()
        elif pool == "last":
            # The last real token: the largest position whose mask is 1 (left or right padding).
            steps = torch.arange(mask.shape[1], device=mask.device)
            last = (mask * (steps + 1)).argmax(1)
            rows = torch.arange(mask.shape[0], device=mask.device)
            for slot, layer in enumerate(ids):
                out[slot][chunk] = states[layer][rows, last].cpu().numpy()
        else:
            real = mask.bool()
            pos = (mask.cumsum(1) - 1)  # position among the item's real tokens
            chosen = [states[layer] for layer in ids]
            for row, item in enumerate(chunk):
                keep = real[row]
                per_item[item] = [h[row][keep].cpu().numpy() for h in chosen]
                positions[item] = pos[row][keep].cpu().numpy()
                token_ids[item] = batch["input_ids"][row][keep.to(batch["input_ids"].device)] \
                    .cpu().numpy()
    if pool != "tokens":
        return Activations(out, ids, model.name, pool, stimuli.key, n_items=n)
    layers_out = [np.concatenate([per_item[i][slot] for i in range(n)]).astype(np.float32)
                  for slot in range(len(ids))]
    counts = [len(p) for p in positions]
    return Activations(layers_out, ids, model.name, "tokens", stimuli.key, n_items=n,
                       item=np.repeat(np.arange(n), counts).astype(np.int64),
                       positions=np.concatenate(positions).astype(np.int64),
                       token_ids=np.concatenate(token_ids).astype(np.int64))


def extract_last_word(model, stimuli, layers: Any = "all", batch_size: int = 32,
                      cache: bool = True) -> Activations:
    """Activations at each text's last *word* token: its last token that is not a special
    token (``[SEP]``, ``</s>``, eos), so encoders and decoders are read at the same word.

    For :func:`resonance.stimuli.concept_occurrences` (verses cut right after a concept word)
    this is the word's representation in running text. Returns ``(n_items, d)`` per layer.
    """
    acts = extract(model, stimuli, layers=layers, pool="tokens", batch_size=batch_size,
                   cache=cache)
    special = set(getattr(model.tokenizer, "all_special_ids", None) or [])
    keep = ~np.isin(acts.token_ids, list(special)) if special else np.ones(len(acts.item), bool)
    rows = np.empty(acts.n_items, dtype=np.int64)
    for i in range(acts.n_items):
        mine = np.flatnonzero((acts.item == i) & keep)
        if mine.size == 0:
            raise ValueError(f"stimulus {i} has no non-special token for {model.name}")
        rows[i] = mine[np.argmax(acts.positions[mine])]
    out = Activations([layer[rows] for layer in acts.layers], acts.layer_ids, acts.model,
                      "last_word", acts.stimuli_key, n_items=acts.n_items)
    out.labels = acts.labels
    return out
