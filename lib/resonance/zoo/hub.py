"""Hugging Face hub models (cached or downloadable) and local ``save_pretrained`` folders."""

from __future__ import annotations

import os
from pathlib import Path

from .catalogue import HUB_ALIASES, PACKAGED, _QUANTISED
from .model import HubUnreachableError, ZooModel, _hf_model, _quiet


def _hub_offline() -> bool:
    if any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
           for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants
        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        return False


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe of the hub endpoint (avoids huggingface_hub's retries, ~30 s)."""
    import socket
    from urllib.parse import urlparse
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _load_hub(name: str, revision: str | None = None, **kwargs) -> ZooModel:
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    if kwargs:
        raise TypeError(f"hub models take only revision=, got {sorted(kwargs)}")
    offline_env = _hub_offline()
    offline = offline_env or not _hub_reachable()
    unreachable = (f"model {name!r} is not packaged and the hub is unreachable "
                   f"({'HF_HUB_OFFLINE is set' if offline_env else 'no connection'}); packaged "
                   f"models: {', '.join(PACKAGED)}; in-house: inhouse-gpt2, inhouse-llama, "
                   "inhouse-gru")
    if name.lower() in _QUANTISED:
        packaged, what = _QUANTISED[name.lower()]
        unreachable += (f". The packaged {packaged!r} is {what} of it (other weights): "
                        f"load({packaged!r}) if that serves")
    elif name.lower() in HUB_ALIASES:
        unreachable += f". Its packaged copy loads offline as load({HUB_ALIASES[name.lower()]!r})"
    attempts = [True] if offline else [True, False]  # the local HF cache first
    last: Exception | None = None
    for local_only in attempts:
        try:
            with _quiet():
                config = AutoConfig.from_pretrained(name, revision=revision,
                                                    local_files_only=local_only)
                tokenizer = AutoTokenizer.from_pretrained(name, revision=revision,
                                                          local_files_only=local_only)
                module = AutoModel.from_pretrained(name, revision=revision,
                                                   local_files_only=local_only,
                                                   dtype=torch.float32)
            break
        except (OSError, ValueError) as err:  # includes requests' connection errors
            last = err
    else:
        raise HubUnreachableError(unreachable) from last
    if getattr(config, "is_encoder_decoder", False):
        module = module.get_encoder()
        module.config = config
    identity = {"name": name, "revision": revision or getattr(config, "_commit_hash", None)}
    return _hf_model(name, None, module, tokenizer, identity, source="hub")


# -- Local folders -----------------------------------------------------------------------------

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def _is_local_folder(name: str) -> bool:
    try:
        return Path(name).expanduser().is_dir()
    except (OSError, ValueError):
        return False


def _folder_digest(folder: Path) -> str:
    """SHA-256 over the names and bytes of a folder's config, tokenizer and weight files."""
    import hashlib

    from ..io import file_sha256
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix in _WEIGHT_SUFFIXES or path.suffix == ".json" or path.suffix == ".txt":
            digest.update(f"{path.relative_to(folder)}\0{file_sha256(path)}\0".encode())
    return digest.hexdigest()[:16]


def _load_local(folder: Path, **kwargs) -> ZooModel:
    """A Hugging Face model saved in a folder (``save_pretrained``), labelled ``local``."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    if kwargs:
        raise TypeError(f"local models take no options, got {sorted(kwargs)}")
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} has no config.json: a local model is a folder written by "
                         "model.save_pretrained(folder) and tokenizer.save_pretrained(folder)")
    with _quiet():
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, TypeError) as err:
            raise ValueError(f"{folder} holds no tokenizer ({err}); save one beside the model "
                             "with tokenizer.save_pretrained(folder)") from None
        module = AutoModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    if getattr(config, "is_encoder_decoder", False):
        module = module.get_encoder()
        module.config = config
    identity = {"name": folder.name, "local": _folder_digest(folder)}
    return _hf_model(folder.name, None, module, tokenizer, identity, source="local")
