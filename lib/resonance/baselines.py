"""Baselines and yardsticks for comparing models across modalities.

- :func:`random_twin`: a zoo model's architecture with fresh, seeded weights (the random-init
  control: what the architecture alone gives);
- :func:`pixel_features`: raw pixels as a "vision model";
- :func:`static_features`: WordLlama static token embeddings, mean-pooled, as a "text model";
- :func:`bits_per_byte`: a causal LM's next-token loss on a text, per UTF-8 byte (competence on
  a common scale whatever the tokenizer);
- :func:`model_features`: the layers of networks and of these baselines on one set of stimuli.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import zoo
from .io import config_hash
from .stimuli import _resize

__all__ = ["random_twin", "pixel_features", "static_features", "bits_per_byte", "model_features",
           "competence_summary"]


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


def model_features(entries: Sequence[Mapping[str, Any]], stims, load: Callable,
                   pixels: int = 32, texts: Sequence[str] | None = None
                   ) -> dict[str, list[np.ndarray]]:
    """Per entry (``{"name", "kind"}``), its layers on ``stims`` (or, for text models, on
    ``texts``): ``kind == "pixels"``: :func:`pixel_features` at ``pixels`` x ``pixels``;
    ``"static"``: :func:`static_features`; any other kind: ``load(entry)``'s hidden states but
    the input embedding / stem. Repeated ``texts`` are extracted once."""
    from . import activations, stimuli

    out = {}
    for entry in entries:
        if entry["kind"] == "pixels":
            out[entry["name"]] = [pixel_features(stims.images, pixels)]
            continue
        if texts is not None:
            unique = list(dict.fromkeys(texts))
            where = np.array([unique.index(t) for t in texts])
            sub = stimuli.Stimuli(f"{stims.name}-texts-{config_hash(unique)}", unique, None,
                                  [""] * len(unique))
        else:
            sub, where = stims, None
        if entry["kind"] == "static":
            layers = [static_features(sub.texts)]
        else:
            layers = activations.extract(load(entry), sub).layers[1:]
        out[entry["name"]] = layers if where is None else [x[where] for x in layers]
    return out


def competence_summary(competence, captions, real_knn_mean: float, ppl_gate: float) -> dict:
    """Competence against alignment. ``competence``: bits per byte per causal LM (``text``,
    ``kind``, ``bpb``, and for in-house models ``val_ppl``, ``unigram_ppl``, ``ppl_gate``);
    ``captions``: alignment rows (``vision``, ``text``, ``vision_kind``, ``knn``). The in-house
    ladder's gate and alignment (its share of ``real_knn_mean``); then, over the LMs past
    their gate, the most competent (lowest bits per byte) and, with >= 3 of them, Spearman's
    rho (with a bootstrap CI) of competence (-bpb) and mean alignment with pretrained vision
    models."""
    from .stats import spearman_ci

    comp = competence
    ladder = comp[comp["kind"] == "inhouse"] if "kind" in comp else comp.iloc[:0]
    meta = {"ladder_n": int(len(ladder)),
            "ladder_gate_passed": int(ladder["ppl_gate"].astype(bool).sum()) if len(ladder) else 0,
            "ppl_gate": ppl_gate}
    seen = captions[captions["vision_kind"] == "pretrained"]
    if len(ladder):
        lk = seen[seen["text"].isin(ladder["text"])]
        meta.update(ladder_knn_min=float(lk["knn"].min()), ladder_knn_max=float(lk["knn"].max()),
                    ladder_share=float(lk["knn"].mean() / real_knn_mean),
                    ladder_failed=[t for t, ok in zip(ladder["text"], ladder["ppl_gate"]) if not ok],
                    ladder_ppl_ratio_max=float((ladder["val_ppl"] / ladder["unigram_ppl"]).max()))
    if "ppl_gate" in comp:  # models that fail the capability gate take no part
        comp = comp[comp["ppl_gate"].astype(bool)]
    meta["n_lms"] = int(len(comp))
    if len(comp):
        align = seen[seen["text"].isin(comp["text"])].groupby("text")["knn"].mean()
        joined = comp.set_index("text").join(align.rename("knn"))
        best = joined["bpb"].idxmin()
        meta.update(lm_best=best, lm_best_bpb=float(joined.at[best, "bpb"]),
                    lm_best_knn=float(joined.at[best, "knn"]),
                    lm_best_aligns_most=bool(joined["knn"].idxmax() == best),
                    lm_bpb_range=f"{joined['bpb'].min():.2f}–{joined['bpb'].max():.2f}")
    rho = spearman_ci(-joined["bpb"], joined["knn"]) if len(comp) >= 3 else (float("nan"),) * 3
    meta.update(competence_rho=rho[0], competence_rho_low=rho[1], competence_rho_high=rho[2])
    return meta
