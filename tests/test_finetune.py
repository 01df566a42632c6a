import numpy as np
import pytest
import torch

from resonance import data, finetune as ft, train


def _base(**kw):
    cfg = dict(family="gpt2", d_model=16, n_layers=1, context=16, corpus="kjv", vocab_size=300,
               tokens=16 * 4 * 5, batch_size=4, warmup=1, eval_every=5, eval_tokens=256,
               n_log_checkpoints=0, n_linear_checkpoints=1)
    cfg.update(kw)
    return train.TrainConfig(**cfg)


def test_config_validation_and_key():
    base = _base()
    with pytest.raises(ValueError, match="multiple of n_checkpoints"):
        ft.FinetuneConfig(base, steps=10, n_checkpoints=3)
    with pytest.raises(ValueError, match="distinct corpora"):
        ft.FinetuneConfig(base, corpora=("fortunes", "fortunes"))
    with pytest.raises(ValueError, match="synthetic"):
        ft.FinetuneConfig(base, corpora=("synthetic",))
    with pytest.raises(ValueError, match="schedule"):
        ft.FinetuneConfig(base, schedule="linear")
    a = ft.FinetuneConfig(base, corpora="fortunes", steps=6, n_checkpoints=3)
    assert a.corpora == ("fortunes",)
    assert a.checkpoint_steps == [0, 2, 4, 6]
    assert a.key != ft.FinetuneConfig(base, corpora="fortunes", steps=6, n_checkpoints=3,
                                      seed=1).key
    assert a.key != ft.FinetuneConfig(_base(seed=1), corpora="fortunes", steps=6,
                                      n_checkpoints=3).key
    phase = a.phase()
    assert phase.n_steps == 6 and phase.context == base.context and phase.tokenizer == "kjv"


def test_finetune_starts_from_the_base_and_moves(monkeypatch):
    try:
        data.load_text("fortunes")
    except data.MissingCorpusError:
        pytest.skip("fortunes not installed")
    base = _base()
    cfg = ft.FinetuneConfig(base, corpora=("fortunes", "kjv"), steps=6, batch_size=2,
                            warmup=1, n_checkpoints=3, lr=3e-3)
    run = ft.finetune(cfg)
    assert [s for s, _ in run.checkpoints] == [0, 2, 4, 6]
    assert list(run.history["step"]) == [0, 2, 4, 6]
    base_model = train.load_checkpoint(train.run_dir(base), -1)
    first = run.load(0)
    for (name, p), q in zip(base_model.state_dict().items(), first.state_dict().values()):
        assert torch.equal(p, q), name
    moved = np.linalg.norm(run.parameters(6) - run.parameters(0))
    assert moved > 0
    # tied weights counted once: as many values as the model's parameter count
    assert run.parameters(0).size == sum(p.numel() for p in first.parameters())
    with pytest.raises(FileNotFoundError, match="no checkpoint at step 3"):
        run.load(3)
    # a cached run is loaded, not retrained
    monkeypatch.setattr(ft, "_finetune", lambda *a: pytest.fail("retrained a finished run"))
    again = ft.finetune(cfg)
    assert np.array_equal(again.parameters(6), run.parameters(6))


def test_finetune_is_deterministic():
    cfg = ft.FinetuneConfig(_base(), corpora=("kjv",), steps=4, batch_size=2, warmup=1,
                            n_checkpoints=2)
    a = ft.finetune(cfg).parameters(4)
    b = ft.finetune(cfg, force=True).parameters(4)
    assert np.array_equal(a, b)
