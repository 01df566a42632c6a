"""resonance: how alike two neural networks organise their representations.

>>> from resonance import load, extract, similarity_matrix          # doctest: +SKIP
>>> texts = ["a dog runs", "a cat sleeps", "the sun rises", "rain falls"]
>>> a = extract(load("minilm"), texts)                              # doctest: +SKIP
>>> b = extract(load("sentence-transformers/all-mpnet-base-v2"), texts)  # doctest: +SKIP
>>> similarity_matrix(a, b, "cka_linear")                           # doctest: +SKIP

Modules (each imported on first use, so ``import resonance`` stays fast):

- ``paths``, ``seeding``, ``profiles``, ``io``, ``store``, ``plots`` -- plumbing;
- ``similarity``, ``topology``, ``metrics`` -- the measures; ``measures`` -- their registry;
  ``positions`` -- token alignment and resonance per token position;
- ``data``, ``stimuli``, ``zoo``, ``activations``, ``models``, ``train`` -- corpora, stimuli,
  models, features and training (``zoo`` and ``models`` are packages: the zoo's wrapper,
  catalogue and loaders; the in-house families and their registry);
- ``experiments`` -- one module per notebook finding.

The names in ``__all__`` below are the public API; they too load their module lazily.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# tqdm.auto (imported by transformers) warns in notebooks without ipywidgets; progress bars are
# off in notebooks anyway, and the warning would land in nbval-compared stderr.
warnings.filterwarnings("ignore", message="IProgress not found")

_MODULES = (
    "paths", "seeding", "profiles", "io", "store", "plots", "similarity", "topology", "measures",
    "metrics", "positions", "data", "stimuli", "zoo", "activations", "models", "train", "experiments",
    "paper", "notebooks", "comparison", "report", "cli",
)
# name -> module that defines it (functions and classes only: a submodule keeps its own name,
# so `resonance.train` is always the module and `resonance.similarity` too).
_EXPORTS = {
    "extract": "activations", "Activations": "activations",
    "load": "zoo", "ZooModel": "zoo", "wrap_trained": "zoo",
    "Stimuli": "stimuli", "concept_stimuli": "stimuli",
    "cka": "similarity", "mutual_knn": "similarity", "similarity_matrix": "similarity",
    "MEASURES": "similarity",
    "persistence": "topology", "rtd": "topology",
    "global_resonance": "metrics", "local_resonance": "metrics",
    "TrainConfig": "train", "TrainedModel": "train",
    "cached": "store", "Bundle": "store",
    "config_hash": "io",
    "seed_everything": "seeding",
    "compare": "comparison", "rank": "comparison",
}

__all__ = ["__version__", *_MODULES, *_EXPORTS]

if TYPE_CHECKING:  # for editors and type checkers; at run time everything is lazy
    from .activations import Activations, extract  # noqa: F401
    from .comparison import compare, rank  # noqa: F401
    from .io import config_hash  # noqa: F401
    from .metrics import global_resonance, local_resonance  # noqa: F401
    from .seeding import seed_everything  # noqa: F401
    from .similarity import MEASURES, cka, mutual_knn, similarity_matrix  # noqa: F401
    from .stimuli import Stimuli, concept_stimuli  # noqa: F401
    from .store import Bundle, cached  # noqa: F401
    from .topology import persistence, rtd  # noqa: F401
    from .train import TrainConfig, TrainedModel  # noqa: F401
    from .zoo import ZooModel, load, wrap_trained  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'resonance' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
