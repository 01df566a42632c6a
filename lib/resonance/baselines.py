"""Baselines and yardsticks for comparing models across modalities.

- :func:`random_twin`: a zoo model's architecture with fresh, seeded weights (the random-init
  control: what the architecture alone gives);
- :func:`pixel_features`: raw pixels as a "vision model";
- :func:`static_features`: WordLlama static token embeddings, mean-pooled, as a "text model";
- :func:`bits_per_byte`: a causal LM's next-token loss on a text, per UTF-8 byte (competence on
  a common scale whatever the tokenizer).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import zoo
from .io import config_hash
from .stimuli import _resize

__all__ = ["random_twin", "pixel_features", "static_features", "bits_per_byte"]


def random_twin(model: zoo.ZooModel, seed: int = 0) -> zoo.ZooModel:
    """``model``'s architecture with freshly initialised weights (PyTorch defaults, seeded)."""
    import torch

    torch.manual_seed(seed)
    if model.modality == "vision":
        from efficientnet_lite_pytorch import EfficientNet
        module = EfficientNet.from_name(model.name)
    else:
        from transformers import AutoModel
        module = AutoModel.from_config(model.module.config)
    module.eval()
    name = f"{model.name}-random-s{seed}"
    return dataclasses.replace(model, name=name, module=module,
                               key=config_hash({"random_twin": model.key, "seed": seed}),
                               identity={**model.identity, "random_init_seed": seed})


def pixel_features(images: np.ndarray, side: int = 32) -> np.ndarray:
    """Raw pixels as features: images resized to ``side`` x ``side``, flattened, in [0, 1]."""
    return (_resize(images.astype(np.float32), side) / 255.0).reshape(len(images), -1)


def static_features(texts: list[str]) -> np.ndarray:
    """WordLlama static token embeddings (L2 Supercat, 256-d), mean-pooled per text, offline."""
    from pathlib import Path

    try:
        import wordllama
        from wordllama import WordLlama
    except ImportError as err:
        raise zoo.ZooUnavailableError(f"the static text baseline needs wordllama: "
                                      f"{zoo.ZOO_EXTRA_HINT}") from err
    # The wheel ships its tokenizer under tokenizers/, where load() only looks in a cache dir.
    model = WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)
    return np.asarray(model.embed(list(texts), norm=False), dtype=np.float32)


def bits_per_byte(model: zoo.ZooModel, text: str, window: int = 128) -> float:
    """Next-token cross-entropy of a causal LM on ``text``, in bits per UTF-8 byte.

    The text is tokenised once and cut into non-overlapping windows of ``window`` tokens; each
    window's first token is context only, so the bytes counted are those of the predicted
    tokens (decoded window by window).
    """
    import torch

    from .train import _logits

    tok = model.tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"]
    window = min(window, model.max_length or window)
    nats, n_bytes = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(ids) - 1, window):
            chunk = ids[start:start + window]
            if len(chunk) < 2:
                break
            x = torch.tensor([chunk], device=model.device)
            logits = _logits(model.module(input_ids=x)).float()[0, :-1]
            nats += float(torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum"))
            n_bytes += len(tok.decode(chunk[1:]).encode("utf-8"))
    if not n_bytes:
        raise ValueError("text too short for bits per byte")
    return nats / np.log(2) / n_bytes
