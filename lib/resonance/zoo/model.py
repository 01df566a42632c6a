"""The wrapper every zoo model is loaded into, and the Hugging Face forward pass behind it."""

from __future__ import annotations

import builtins
import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..io import config_hash

__all__ = ["ZooModel", "ZooUnavailableError", "HubUnreachableError", "MODALITIES"]

MODALITIES = ("text", "vision")
# Bump to invalidate every converted model and every activation cache built from the zoo.
_FORMAT = 1


class ZooUnavailableError(ImportError):
    """A packaged model whose packages are not installed."""


class HubUnreachableError(OSError):
    """A hub model that is neither in the local Hugging Face cache nor downloadable."""


# --------------------------------------------------------------------------------------------
# The wrapper


@dataclass(eq=False)
class ZooModel:
    """A loaded network behind one interface.

    ``hidden_states(batch)`` returns one tensor per layer *including the input embedding*
    (``n_layers + 1`` entries): ``(b, t, d)`` for text, ``(b, c)`` (spatially mean-pooled) for
    vision. ``hidden_sizes[i]`` is the width of entry ``i``. ``key`` identifies the weights
    (package version, hub revision or training-config hash) for on-disk caches.
    """

    name: str
    family: str
    architecture: str
    modality: str
    source: str
    module: Any
    tokenizer: Any = None
    n_params: int = 0
    n_layers: int = 0
    hidden_sizes: list[int] = field(default_factory=builtins.list)
    max_length: int | None = None
    image_size: int | None = None
    key: str = ""
    identity: dict = field(default_factory=dict, repr=False)
    trained: Any = field(default=None, repr=False)
    load_seconds: float = 0.0
    n_forward: int = 0
    _forward: Callable[["ZooModel", dict], builtins.list] | None = field(default=None, repr=False)
    _tokenize: Callable[["ZooModel", Sequence[str]], dict] | None = field(default=None, repr=False)

    # -- inputs -----------------------------------------------------------------------------
    @property
    def device(self):
        import torch
        try:
            return next(self.module.parameters()).device
        except (StopIteration, AttributeError):
            return torch.device("cpu")

    def to(self, device) -> "ZooModel":
        self.module.to(device)
        return self

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Number of tokens (special tokens included) each text becomes, without padding."""
        self._need("text")
        if not len(texts):
            return np.zeros(0, dtype=np.int64)
        mask = self._tokenize(self, [*texts])["attention_mask"]
        return mask.sum(1).numpy().astype(np.int64)

    def tokenize(self, texts: Sequence[str], *, check: bool = True) -> dict:
        """A padded batch: ``input_ids`` and ``attention_mask`` (long tensors, on the device).

        Raises ``ValueError`` when a text is longer than ``max_length`` tokens (nothing is
        silently truncated).
        """
        self._need("text")
        if isinstance(texts, str):
            texts = [texts]
        batch = self._tokenize(self, [*texts])
        if check and self.max_length is not None:
            lengths = batch["attention_mask"].sum(1)
            if int(lengths.max()) > self.max_length:
                worst = int(lengths.argmax())
                raise ValueError(
                    f"text {worst} of the batch is {int(lengths[worst])} tokens long but model "
                    f"{self.name!r} takes at most {self.max_length}: shorten or drop it "
                    f"({texts[worst][:60]!r}...)")
        device = self.device
        return {k: v.to(device) for k, v in batch.items()}

    def preprocess(self, images: np.ndarray) -> dict:
        """uint8 images ``(n, H, W, 3)`` -> ``{"pixel_values": (n, 3, S, S)}`` normalised and
        resized (bilinear, antialiased) to the network's native resolution ``S``."""
        self._need("vision")
        import torch
        import torch.nn.functional as F
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be (n, H, W, 3) RGB, got shape {images.shape}")
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=True)
        # EfficientNet-Lite (TF reference builder): MEAN_RGB = 127, STDDEV_RGB = 128.
        x = (x - 127.0) / 128.0
        return {"pixel_values": x.to(self.device)}

    def inputs(self, items) -> dict:
        """A batch from texts (text models) or a uint8 image array (vision models)."""
        return self.tokenize(items) if self.modality == "text" else self.preprocess(items)

    # -- outputs ----------------------------------------------------------------------------
    def hidden_states(self, batch: dict) -> builtins.list:
        """One float32 tensor per layer, embeddings first (``n_layers + 1`` entries)."""
        import torch
        self.n_forward += 1
        with torch.inference_mode():
            states = self._forward(self, batch)
        return [s.float() for s in states]

    def __call__(self, items) -> builtins.list:
        return self.hidden_states(self.inputs(items))

    def _need(self, modality: str) -> None:
        if self.modality != modality:
            raise ValueError(f"model {self.name!r} is a {self.modality} model; it takes "
                             f"{'texts' if self.modality == 'text' else 'images'}")


# --------------------------------------------------------------------------------------------
# Wrapping a transformers model


def _hf_tokenize(model: ZooModel, texts: builtins.list) -> dict:
    out = model.tokenizer(texts, padding=True, truncation=False, return_tensors="pt")
    return {k: v for k, v in out.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def _hf_forward(model: ZooModel, batch: dict) -> builtins.list:
    net = model.module
    net = getattr(net, "base_model", net)  # skip LM heads: hidden states only
    out = net(**batch, output_hidden_states=True, return_dict=True)
    return [*out.hidden_states]


def _hf_model(name, entry: Any, module, tokenizer, identity: dict, *, family=None,
              architecture=None, source="package") -> ZooModel:
    config = module.config
    text_config = getattr(config, "get_text_config", lambda: config)()
    n_layers = int(text_config.num_hidden_layers)
    width = int(text_config.hidden_size)
    limits = [getattr(text_config, "max_position_embeddings", None),
              getattr(tokenizer, "model_max_length", None)]
    if getattr(text_config, "model_type", "") in ("roberta", "xlm-roberta", "mpnet", "camembert"):
        # these offset positions by padding_idx + 1
        limits[0] = limits[0] - 2 if limits[0] else None
    limits = [int(x) for x in limits if x and x < 10**7]
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    # Right padding: with a causal mask real tokens never see the pads, and positions start at 0
    # for every row; `resonance.activations` pools by the attention mask either way.
    tokenizer.padding_side = "right"
    return ZooModel(
        name=name, family=family or (entry.family if entry else text_config.model_type),
        architecture=architecture or (entry.architecture if entry else
                                      (config.architectures or [type(module).__name__])[0]),
        modality="text", source=source, module=module, tokenizer=tokenizer,
        n_params=sum(p.numel() for p in module.parameters()), n_layers=n_layers,
        hidden_sizes=[width] * (n_layers + 1), max_length=min(limits) if limits else None,
        key=config_hash({"format": _FORMAT, **identity}), identity=identity,
        _forward=_hf_forward, _tokenize=_hf_tokenize)


@contextlib.contextmanager
def _quiet():
    """Silence transformers' progress bars and info logging during a load."""
    import transformers
    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(level)
        if bars:
            transformers.utils.logging.enable_progress_bar()
