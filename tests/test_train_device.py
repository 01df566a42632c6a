"""resonance.train(device=...): the same code on any device, repeatable per device."""

from __future__ import annotations

import pytest
import torch

from resonance import paths
from resonance import train as T


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "CACHE", tmp_path / "cache")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path / "cache"
    torch.set_num_threads(threads)


def tiny() -> T.TrainConfig:
    return T.TrainConfig(family="gpt2", d_model=16, n_layers=1, context=16, corpus="synthetic",
                         vocab_size=64, batch_size=4, tokens=4 * 16 * 6, lr=3e-3, warmup=2,
                         eval_every=3, eval_tokens=128, seed=0)


def _weights(run: T.TrainedModel) -> dict:
    return {k: v.detach().cpu() for k, v in run.model.state_dict().items()}


def test_device_cpu_is_the_default_path_bit_for_bit(cache, monkeypatch):
    default = T.train(tiny(), progress=False)
    assert default.info["device"] == "cpu"
    monkeypatch.setattr(paths, "CACHE", cache.parent / "other")
    explicit = T.train(tiny(), progress=False, device="cpu")
    a, b = _weights(default), _weights(explicit)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert default.history["val_loss"].tolist() == explicit.history["val_loss"].tolist()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_without_cuda_says_what_to_do():
    with pytest.raises(ValueError, match="sees no CUDA device.*device='cpu'"):
        T.train(tiny(), progress=False, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_runs_repeat_bit_for_bit(cache, monkeypatch):
    first = T.train(tiny(), progress=False, device="cuda")
    assert first.info["device"].startswith("cuda")
    monkeypatch.setattr(paths, "CACHE", cache.parent / "other")
    second = T.train(tiny(), progress=False, device="cuda")
    a, b = _weights(first), _weights(second)
    assert all(torch.equal(a[k], b[k]) for k in a)
