"""In-house models: trained here by :mod:`resonance.train`, wrapped like every zoo model.

One route: ``zoo.load("inhouse-gpt2", d_model=..., n_layers=..., seed=..., **recipe)`` and the
experiments' ``common.inhouse_model`` both go through :func:`load_inhouse`, so the same run
gets one name (:func:`inhouse_name`, ``gpt2-d64-l2-s0``) and one key (the name plus the
training config's hash), hence one activation cache.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
from typing import Any

from ..io import config_hash
from .model import _FORMAT, ZooModel

__all__ = ["load_inhouse", "wrap_trained", "inhouse_name"]


def _inhouse_tokenize(model: ZooModel, texts: builtins.list) -> dict:
    import torch
    tok = model.tokenizer
    from transformers import PreTrainedTokenizerBase
    if isinstance(tok, PreTrainedTokenizerBase):
        ids = tok(texts, truncation=False)["input_ids"]
    elif hasattr(tok, "encode_batch"):  # a bare `tokenizers.Tokenizer`
        ids = [e.ids for e in tok.encode_batch(texts)]
    else:
        ids = [tok.encode(t) for t in texts]
        ids = [getattr(i, "ids", i) for i in ids]
    pad = getattr(tok, "pad_token_id", None)
    if pad is None and hasattr(tok, "token_to_id"):
        for candidate in ("<pad>", "[PAD]", "<|pad|>", "<|endoftext|>"):
            pad = tok.token_to_id(candidate)
            if pad is not None:
                break
    pad = 0 if pad is None else int(pad)
    width = max(1, max(len(i) for i in ids))
    input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, :len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, :len(seq)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


def _inhouse_forward(model: ZooModel, batch: dict) -> builtins.list:
    out = model.module(batch["input_ids"], attention_mask=batch["attention_mask"],
                       output_hidden_states=True)
    states = out.hidden_states if hasattr(out, "hidden_states") else out["hidden_states"]
    return [*states]


def inhouse_name(config: Any) -> str:
    """The name of an in-house model, ``{family}-d{d_model}-l{n_layers}-s{seed}``
    (``inhouse-{family}`` for a config without those fields)."""
    c = _config_dict(config)
    if all(k in c for k in ("family", "d_model", "n_layers", "seed")):
        return f"{c['family']}-d{c['d_model']}-l{c['n_layers']}-s{c['seed']}"
    return f"inhouse-{c.get('family', 'model')}"


def load_inhouse(family: str, *, progress: bool = True, **train_kwargs: Any) -> ZooModel:
    """Train (or load the cached run of) ``TrainConfig(family=family, **train_kwargs)`` and wrap
    it: the one route to an in-house model. ``.trained`` holds the run (history, checkpoints)."""
    from .. import train

    trained = train.train(train.TrainConfig(family=family, **train_kwargs), progress=progress)
    return wrap_trained(trained)


def _load_entry(entry: Any, **kwargs: Any) -> ZooModel:
    """``zoo.load("inhouse-<family>", **train_kwargs)``."""
    if "family" in kwargs and kwargs["family"] != entry.family:
        raise ValueError(f"{entry.name} is family {entry.family!r}, got family="
                         f"{kwargs['family']!r}")
    kwargs.pop("family", None)
    return load_inhouse(entry.family, **kwargs)


def _config_dict(config) -> dict:
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    if hasattr(config, "to_dict"):
        return config.to_dict()
    return dict(vars(config))


def _inhouse_model(name: str, trained) -> ZooModel:
    """Wrap a ``resonance.train.TrainedModel`` (or anything with .model/.tokenizer/.config)."""
    net = trained.model
    config = _config_dict(trained.config)
    identity = {"name": name, "train_config": json.loads(json.dumps(config, default=str)),
                "train_hash": config_hash(json.loads(json.dumps(config, default=str)))}
    n_layers = config.get("n_layers") or getattr(getattr(net, "config", None),
                                                 "num_hidden_layers", None)
    d_model = config.get("d_model") or getattr(getattr(net, "config", None), "hidden_size", None)
    max_length = None
    for holder, attr in [(config, "max_length"), (config, "context"), (config, "block_size"),
                         (config, "seq_len"), (config, "n_positions")]:
        if holder.get(attr):
            max_length = int(holder[attr])
            break
    if max_length is None:
        net_config = getattr(net, "config", None)
        for attr in ("n_positions", "max_position_embeddings"):
            if getattr(net_config, attr, None):
                max_length = int(getattr(net_config, attr))
                break
    return ZooModel(
        name=name, family=config.get("family", name.split("-", 1)[-1]),
        architecture=type(net).__name__, modality="text", source="in-house", module=net,
        tokenizer=trained.tokenizer, n_params=sum(p.numel() for p in net.parameters()),
        n_layers=int(n_layers or 0), hidden_sizes=[int(d_model or 0)] * (int(n_layers or 0) + 1),
        max_length=max_length, key=config_hash({"format": _FORMAT, **identity}),
        identity=identity, trained=trained, _forward=_inhouse_forward,
        _tokenize=_inhouse_tokenize)


def wrap_trained(trained, name: str | None = None) -> ZooModel:
    """A :class:`ZooModel` around an already trained in-house model (no training, no cache);
    ``name`` defaults to :func:`inhouse_name` of its config."""
    model = _inhouse_model(name or inhouse_name(trained.config), trained)
    model.module.eval()
    return model
