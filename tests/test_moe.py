"""The SRA / linear-router MoE family: published losses, batched dispatch, training hook."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from resonance import models, moe
from resonance import train as T


def _model(**kw):
    torch.manual_seed(0)
    return moe.build(64, 16, 2, n_heads=2, context=16, n_experts=4, expert_hidden=8, **kw)


def test_dispersion_loss_is_the_centroid_formula():
    torch.manual_seed(1)
    a = torch.randn(7, 5)
    u = F.normalize(a, dim=-1)
    pairs = [float(u[i] @ u[j]) for i, j in itertools.permutations(range(7), 2)]
    assert moe.dispersion_loss(a).item() == pytest.approx(sum(pairs) / (7 * 6), abs=1e-6)
    assert moe.dispersion_loss(a).item() == pytest.approx(
        moe.dispersion_from_centroid(a).item(), abs=1e-6)


def test_dispersion_minimum_does_not_mean_orthogonal():
    # antipodal pairs: centroid 0, so the loss sits at its minimum -1/(N-1) ...
    a = torch.tensor([[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]])
    assert moe.dispersion_loss(a).item() == pytest.approx(-1 / 3)
    # ... while two anchors are exactly opposite (|cos| = 1)
    assert moe.anchor_max_abs_cos(a) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="anchors must be"):
        moe.dispersion_loss(torch.ones(1, 3))


def test_balance_loss_zero_when_uniform_and_matches_formula():
    assert moe.balance_loss(torch.full((10, 4), 0.25)).item() == pytest.approx(0.0, abs=1e-7)
    p = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.4, 0.4, 0.1, 0.1]])
    m = p.mean(0)
    assert moe.balance_loss(p).item() == pytest.approx(
        float(4 * m.var(unbiased=False) / m.mean() ** 2), rel=1e-6)


def test_orthogonal_anchor_init_and_registered_family():
    assert moe.FAMILY in models.families()
    m = _model()
    for layer in m.moe_layers():
        assert moe.anchor_max_abs_cos(layer.anchors) < 1e-5
    assert m.lm_head.weight is m.embed.weight


def test_batched_dispatch_equals_a_per_token_loop():
    m = _model(router="linear", dropout=0.0)
    m.eval()
    ffn = m.moe_layers()[0]
    x = torch.randn(2, 5, 16)
    record = []
    y = ffn(x, record)
    e, g = record[0]["experts"].reshape(-1, 2), record[0]["gates"].reshape(-1, 2)
    ref = torch.zeros(10, 16)
    for t, xt in enumerate(x.reshape(-1, 16)):
        for j in range(2):
            k = int(e[t, j])
            h = F.gelu(xt @ ffn.w1[k] + ffn.b1[k]) @ ffn.w2[k] + ffn.b2[k]
            ref[t] += g[t, j] * h
    torch.testing.assert_close(y.reshape(-1, 16), ref, atol=1e-5, rtol=1e-5)
    assert torch.allclose(g.sum(-1), torch.ones(10))  # v1: softmax over the top-k


def test_v2_gates_are_full_softmax_probabilities():
    m = _model(temperature=10.0)
    m.eval()
    ffn = m.moe_layers()[0]
    x = torch.randn(3, 16)
    record = []
    ffn(x, record)
    probs = ffn.scores(x).softmax(-1)
    torch.testing.assert_close(record[0]["gates"], probs.gather(-1, record[0]["experts"]))
    assert ffn.log_tau.exp().item() == pytest.approx(10.0)


def test_training_loss_adds_aux_only_in_training_mode():
    m = _model(dropout=0.0, router_noise=0.0)
    x = torch.randint(0, 64, (2, 8))
    y = torch.randint(0, 64, (2, 8))
    m.eval()
    plain = F.cross_entropy(m(x).logits.reshape(-1, 64), y.reshape(-1))
    assert m.training_loss(x, y).item() == pytest.approx(plain.item(), abs=1e-6)
    m.train()
    aux = m.training_loss(x, y).item() - plain.item()
    parts = m.aux_losses()
    assert aux == pytest.approx(0.4 * parts["balance"].item() + 0.6 * parts["dispersion"].item(),
                                abs=1e-5)


def test_anchors_get_lm_gradient_only_with_top_k_above_one():
    for k, expect in ((2, True), (1, False)):
        m = _model(top_k=k, dropout=0.0, router_noise=0.0)
        m.eval()  # the LM loss alone, no auxiliary terms
        x = torch.randint(0, 64, (2, 8))
        m.training_loss(x, torch.randint(0, 64, (2, 8))).backward()
        grad = m.moe_layers()[0].anchors.grad
        assert (grad is not None and grad.abs().sum() > 0) == expect, k


def test_dense_arm_and_bad_configs():
    dense = _model(router="dense")
    assert not dense.moe_layers() and dense.config.dense_hidden == 16
    with pytest.raises(ValueError, match="router must be"):
        _model(router="hash")
    with pytest.raises(ValueError, match="top_k"):
        _model(top_k=5)
    with pytest.raises(ValueError, match="temperature"):
        _model(router="linear", temperature=10.0)


def test_resonance_train_trains_the_family(tmp_path, monkeypatch):
    from resonance import paths

    monkeypatch.setattr(paths, "CACHE", tmp_path)
    cfg = T.TrainConfig(family="moe", d_model=16, n_layers=1, n_heads=2, context=16,
                        corpus="synthetic", vocab_size=64, tokens=16 * 16 * 30, batch_size=16,
                        lr=1e-2, warmup=2, eval_every=10, eval_tokens=1024,
                        build_kwargs={"n_experts": 4, "expert_hidden": 8})
    run = T.train(cfg, progress=False)
    assert run.history.val_loss.iloc[-1] < run.history.val_loss.iloc[0] - 0.3
    again = T.load_checkpoint(run, -1)
    assert isinstance(again, moe.MoELM) and again.config.n_experts == 4
