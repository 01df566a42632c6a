"""The Resonance Transformer of seed 001: the mechanism, its ablations and its baseline."""

import math

import numpy as np
import pytest
import torch

from resonance import models
from resonance.models import resonance_lm as rt
from resonance.train import TrainConfig, train


def tiny(**kw):
    torch.manual_seed(0)
    return rt.build(vocab_size=64, d_model=32, n_layers=2, n_heads=2, context=16, **kw).eval()


def ids(b=2, s=12, seed=1):
    return torch.randint(0, 64, (b, s), generator=torch.Generator().manual_seed(seed))


# -- R -------------------------------------------------------------------------------------

def test_resonance_at_init_is_a_nearly_constant_091():
    """For phases ~ N(0, 0.3), phase_i - phase_j ~ N(0, 2·0.09): E cos = exp(-0.09) = 0.914,
    and the mean over 32 frequencies has sd sqrt(((1 + e^-0.36)/2 - e^-0.18)/32) = 0.0205."""
    torch.manual_seed(0)
    model = rt.build(vocab_size=1024, d_model=32, n_layers=1, n_heads=1, context=16)
    R = rt.resonance_matrix(model.phase.weight[None].detach())[0]
    off = R[~torch.eye(len(R), dtype=torch.bool)]
    var = 2 * rt.PHASE_STD ** 2
    mean = math.exp(-var / 2)
    sd = math.sqrt(((1 + math.exp(-2 * var)) / 2 - math.exp(-var)) / 32)
    assert mean == pytest.approx(0.914, abs=0.001) and sd == pytest.approx(0.0205, abs=0.001)
    assert float(off.mean()) == pytest.approx(mean, abs=0.003)
    assert float(off.std()) == pytest.approx(sd, rel=0.1)


def test_resonance_is_symmetric_with_unit_diagonal_and_the_seeds_formula():
    phases = torch.randn(3, 10, 32) * 0.7
    R = rt.resonance_matrix(phases)
    seed_formula = torch.cos(phases.unsqueeze(2) - phases.unsqueeze(1)).mean(-1)
    torch.testing.assert_close(R, seed_formula, atol=1e-6, rtol=0)
    torch.testing.assert_close(R, R.transpose(1, 2))
    torch.testing.assert_close(torch.diagonal(R, dim1=1, dim2=2), torch.ones(3, 10))
    with pytest.raises(ValueError, match="batch, seq"):
        rt.resonance_matrix(phases[0])


# -- attention -----------------------------------------------------------------------------

def _reference_attention(attn, x, R):
    """softmax(QKᵀ/√d_head + w_h·R, then the causal mask) V, written out by hand."""
    b, s, d = x.shape
    q, k, v = attn.qkv(x).view(b, s, 3, attn.n_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-1, -2) / math.sqrt(attn.head_dim)
    scores = scores + attn.resonance_weight.view(1, -1, 1, 1) * R.unsqueeze(1)
    causal = torch.ones(s, s, dtype=torch.bool).tril()
    scores = scores.masked_fill(~causal, float("-inf"))
    out = torch.softmax(scores, -1) @ v
    return attn.out_proj(out.transpose(1, 2).reshape(b, s, d))


def test_bias_is_added_per_head_before_the_causal_mask():
    model = tiny()
    attn = model.blocks[0].attn
    with torch.no_grad():
        attn.resonance_weight.copy_(torch.tensor([3.0, -2.0]))  # make the bias matter
        x = model.blocks[0].ln1(model.embed(ids()))
        R = model.resonance(ids())
        mask = model.causal[:12, :12].unsqueeze(0)
        torch.testing.assert_close(attn(x, R, mask), _reference_attention(attn, x, R))
        assert not torch.allclose(attn(x, R, mask), attn(x, torch.zeros_like(R), mask))
        # the mask wins over any bias: future tokens never leak in
        attn.resonance_weight.fill_(50.0)
        a, b = ids(), ids()
        b[:, 8:] = (a[:, 8:] + 1) % 64
        torch.testing.assert_close(model(a).logits[:, :8], model(b).logits[:, :8])


def test_one_resonance_matrix_is_reused_by_every_layer():
    model = tiny()
    seen = []
    for block in model.blocks:
        block.attn.register_forward_pre_hook(lambda mod, args: seen.append(args[1]))
    calls = []
    original = rt.resonance_matrix
    try:
        rt.resonance_matrix = lambda p: calls.append(1) or original(p)
        model(ids())
    finally:
        rt.resonance_matrix = original
    assert len(calls) == 1 and len(seen) == 2 and seen[0] is seen[1]


def test_bias_ablation_equals_a_zero_weight():
    full, ablated = tiny(), tiny(attn_bias=False)
    ablated.load_state_dict(full.state_dict(), strict=False)
    with torch.no_grad():
        for block in full.blocks:
            block.attn.resonance_weight.zero_()
    torch.testing.assert_close(full(ids()).logits, ablated(ids()).logits)
    assert all("resonance_weight" not in n for n, _ in ablated.named_parameters())
    assert ablated.resonance(ids()) is None


def test_blend_off_is_a_plain_token_plus_position_input():
    model = tiny(blend=False)
    x = ids()
    h0 = model(x, output_hidden_states=True).hidden_states[0]
    torch.testing.assert_close(h0, model.wte(x) + model.wpe(torch.arange(x.size(1))))
    blended = tiny()
    assert not torch.allclose(blended(x, output_hidden_states=True).hidden_states[0], h0)


def test_forward_contract_and_padding():
    model = tiny()
    out = model(ids(), output_hidden_states=True)
    assert out.logits.shape == (2, 12, 64) and len(out.hidden_states) == 3
    # right padding: the real tokens' states do not change
    x = ids(1, 6)
    padded = torch.cat([x, torch.zeros(1, 4, dtype=torch.long)], 1)
    mask = torch.cat([torch.ones(1, 6), torch.zeros(1, 4)], 1).long()
    torch.testing.assert_close(model(padded, attention_mask=mask).logits[:, :6],
                               model(x).logits, atol=1e-5, rtol=0)


# -- initialisation ------------------------------------------------------------------------

def test_rhyming_part_and_groups():
    assert rt.rhyming_part("K AE1 T") == "AE1 T"
    assert rt.rhyming_part("IH0 N F ER0 M EY1 SH AH0 N") == "EY1 SH AH0 N"
    vocab = ["cat", " Hat", "bat!", "dog", " log", "a", "x", "zzqxj", "station", "nation"]
    groups = rt.rhyme_groups(vocab)
    by_token = {t: r for r, members in groups.items() for t in members}
    assert by_token[0] == by_token[1] == by_token[2]
    assert by_token[8] == by_token[9] != by_token[0]
    assert 5 not in by_token and 6 not in by_token and 7 not in by_token  # short / unknown

    weight = torch.empty(len(vocab), 32)
    torch.manual_seed(0)
    rt.rhyme_phase_init(weight, groups)
    assert float((weight[0] - weight[1]).norm()) < 0.5  # ~0.03·√64 = 0.24
    assert float((weight[0] - weight[8]).norm()) > 1.0  # ~0.3·√64 = 2.4
    R = rt.resonance_matrix(weight[None])[0]
    assert float(R[0, 1]) > 0.99 > float(R[0, 8])


@torch.no_grad()
def test_the_seeds_standard_leaves_positions_at_n01():
    seed = tiny(phase=False, pos_init="torch_default")
    fixed = tiny(phase=False)
    phase = tiny()
    assert float(seed.wpe.weight.std()) == pytest.approx(1.0, abs=0.15)
    for model in (fixed, phase):
        assert float(model.wpe.weight.std()) == pytest.approx(0.02, abs=0.005)
    for model in (seed, fixed, phase):
        assert float(model.wte.weight.std()) == pytest.approx(0.02, abs=0.003)
        assert model.lm_head.weight is model.wte.weight
    assert float(phase.phase.weight.std()) == pytest.approx(0.3, abs=0.03)
    assert seed.phase is None
    with pytest.raises(ValueError, match="rhyme_tokenizer"):
        tiny(phase_init="rhyme")


def test_parameter_counts_match_the_seed_and_phase_adds_1_3_percent():
    """At 768d/12L/12 heads, GPT-2 vocabulary, context 256 the seed printed 125.45M
    (resonance) and 123.81M (Standard); counted on the meta device, no memory used."""
    phase = rt.meta_param_count(50257, 768, 12, 12, 256)
    standard = rt.meta_param_count(50257, 768, 12, 12, 256, phase=False)
    assert round(phase / 1e6, 2) == 125.45 and round(standard / 1e6, 2) == 123.81
    assert phase - standard == rt.phase_param_count(50257, 768, 12, 12)
    assert 100 * (phase - standard) / standard == pytest.approx(1.3, abs=0.05)
    assert models.count_params(rt.FAMILY, 64, 32, 2, context=16) == \
        models.param_count(rt.build(64, 32, 2, None, 16))


# -- training ------------------------------------------------------------------------------

def test_loss_scale_scales_the_gradient_not_the_value():
    x, y = ids(), ids(seed=2)
    grads, values = [], []
    for scale in (1.0, 4.0):
        model = tiny(loss_scale=scale, dropout=0.0).train()
        loss = model.training_loss(x, y)
        loss.backward()
        values.append(float(loss.detach()))
        grads.append(model.wte.weight.grad.clone())
    assert values[0] == pytest.approx(values[1])
    torch.testing.assert_close(grads[1], 4 * grads[0])
    model.eval()
    assert float(model.training_loss(x, y).detach()) == pytest.approx(values[0], rel=1e-6)


def test_training_is_deterministic_and_learns():
    config = TrainConfig(family=rt.FAMILY, d_model=16, n_layers=1, n_heads=1, context=16,
                         corpus="synthetic", vocab_size=64, tokens=8 * 16 * 12, batch_size=8,
                         warmup=0, schedule="constant", lr=3e-3, eval_every=6,
                         eval_tokens=512, n_log_checkpoints=0, n_linear_checkpoints=1,
                         build_kwargs={"loss_scale": 4.0})
    first = train(config, progress=False, threads=1, force=True)
    second = train(config, progress=False, threads=1, force=True)
    np.testing.assert_array_equal(first.history["val_loss"], second.history["val_loss"])
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert first.history["val_loss"].iloc[-1] < first.history["val_loss"].iloc[0]


def test_shuffled_groups_keep_tokens_and_sizes_but_not_rhymes():
    groups = rt.rhyme_groups(["cat", "hat", "bat", "mat", "dog", "log", "fog", "station",
                              "nation", "ration"])
    torch.manual_seed(0)
    shuffled = rt.shuffle_groups(groups)
    assert [len(g) for g in shuffled.values()] == [len(g) for g in groups.values()]
    assert sorted(t for g in shuffled.values() for t in g) == \
        sorted(t for g in groups.values() for t in g)
    assert list(shuffled.values()) != list(groups.values())


# -- what the mechanism does, measured -------------------------------------------------------

def test_train_flops_per_token_counts_the_matmuls_and_the_phase():
    V, d, L, c, F = 1024, 32, 2, 32, 32
    standard = 6 * (L * (12 * d * d + 2 * c * d) + d * V)
    assert rt.train_flops_per_token(V, d, L, c, phase=False) == standard
    assert rt.train_flops_per_token(V, d, L, c) == standard + 6 * (F * d + 2 * c * F)
    assert rt.train_flops_per_token(V, d, L, c, attn_bias=False) == standard + 6 * F * d
    with pytest.raises(ValueError, match="d_model must be a positive integer"):
        rt.train_flops_per_token(V, 0, L, c)


def test_resonance_spread_at_init_and_its_errors():
    torch.manual_seed(0)
    model = rt.build(vocab_size=1024, d_model=32, n_layers=1, n_heads=1, context=16).eval()
    spread = rt.resonance_spread(model, torch.randint(0, 1024, (8, 16)))
    assert spread["r_mean"] == pytest.approx(0.914, abs=0.01)
    assert spread["r_std"] == pytest.approx(0.0205, rel=0.25)
    assert spread["r_q05"] < spread["r_q50"] < spread["r_q95"]
    with pytest.raises(ValueError, match="no phase"):
        rt.resonance_spread(tiny(phase=False), ids())
    with pytest.raises(ValueError, match="batch, seq"):
        rt.resonance_spread(model, torch.zeros(5, dtype=torch.long))


def test_group_cohesion_sees_tied_groups_and_not_random_ones():
    torch.manual_seed(0)
    table = torch.randn(40, 32) * rt.PHASE_STD
    groups = {"a": list(range(0, 10)), "b": list(range(10, 20)), "c": [20]}
    rt.rhyme_phase_init(table, groups)
    tied = rt.group_cohesion(table, groups)
    # members differ by noise 0.03·√2: R ≈ exp(-0.03²) ≈ 0.999; others ≈ exp(-0.09) ≈ 0.914
    assert tied["within"] == pytest.approx(0.999, abs=0.002)
    assert tied["cohesion"] == pytest.approx(0.085, abs=0.02) and tied["n_tokens"] == 20
    loose = rt.group_cohesion(torch.randn(40, 32) * rt.PHASE_STD, groups)
    assert abs(loose["cohesion"]) < 0.01
    with pytest.raises(ValueError, match="groups with >= 2 members"):
        rt.group_cohesion(table, {"c": [20]})


def test_mechanism_state_and_the_groups_a_model_was_tied_in():
    state = rt.mechanism_state(tiny())
    assert np.allclose(state["w"], 0.1) and np.asarray(state["w"]).shape == (2, 2)
    assert state["blend_mean"] == pytest.approx(1 / (1 + math.exp(-0.3)), abs=1e-6)
    assert "blend_mean" not in rt.mechanism_state(tiny(blend=False))
    assert tiny().phase_groups is None
