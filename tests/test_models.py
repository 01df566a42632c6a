"""resonance.models: the three families, their shared output contract, sizes and matching."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from resonance import models

V = 97


@pytest.mark.parametrize("family", models.FAMILIES)
@pytest.mark.parametrize("d_model,n_layers", [(16, 1), (32, 2)])
def test_forward_contract(family, d_model, n_layers):
    torch.manual_seed(0)
    model = models.build(family, V, d_model, n_layers, context=16)
    ids = torch.randint(0, V, (3, 11))
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True,
                labels=ids)
    assert out.logits.shape == (3, 11, V)
    assert len(out.hidden_states) == n_layers + 1
    for h in out.hidden_states:
        assert h.shape == (3, 11, d_model)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    # labels are shifted inside the model, as in Hugging Face
    manual = nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
    assert torch.allclose(out.loss, manual, atol=1e-5)
    assert model.config.vocab_size == V
    assert model.config.hidden_size == d_model
    assert model.config.num_hidden_layers == n_layers
    # tied head
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert model(ids).hidden_states is None


@pytest.mark.parametrize("family", models.FAMILIES)
def test_build_is_seeded(family):
    torch.manual_seed(3)
    a = models.build(family, V, 16, 1, context=16)
    torch.manual_seed(3)
    b = models.build(family, V, 16, 1, context=16)
    for (ka, ta), (kb, tb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(ta, tb)


def test_gru_is_causal():
    torch.manual_seed(0)
    model = models.build("gru", V, 16, 2).eval()
    ids = torch.randint(0, V, (1, 8))
    changed = ids.clone()
    changed[0, 5:] = (changed[0, 5:] + 1) % V
    with torch.no_grad():
        a, b = model(ids).logits, model(changed).logits
    assert torch.allclose(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_dropout_default_zero():
    model = models.build("gpt2", V, 32, 1)
    assert model.config.resid_pdrop == 0 and model.config.attn_pdrop == 0
    model = models.build("gpt2", V, 32, 1, dropout=0.1)
    assert model.config.resid_pdrop == 0.1


@pytest.mark.parametrize("family", models.FAMILIES)
@pytest.mark.parametrize("d_model,n_layers", [(32, 2), (64, 3), (96, 1)])
def test_count_params_is_exact(family, d_model, n_layers):
    with torch.device("meta"):
        model = models.build(family, 4096, d_model, n_layers, context=128)
    assert models.param_count(model) == models.count_params(family, 4096, d_model, n_layers)
    assert (models.param_count(model, non_embedding=True)
            == models.count_params(family, 4096, d_model, n_layers, non_embedding=True))


def test_param_count_non_embedding():
    model = models.build("gpt2", 100, 32, 1, context=16)
    emb = 100 * 32 + 16 * 32
    assert models.param_count(model) - models.param_count(model, non_embedding=True) == emb


@pytest.mark.parametrize("d_model,n_layers", models.LADDER)
def test_llama_matches_gpt2_at_same_shape(d_model, n_layers):
    g = models.count_params("gpt2", 4096, d_model, n_layers)
    l_ = models.count_params("llama", 4096, d_model, n_layers)
    assert abs(l_ - g) / g < 0.05
    gb = models.count_params("gpt2", 4096, d_model, n_layers, non_embedding=True)
    lb = models.count_params("llama", 4096, d_model, n_layers, non_embedding=True)
    assert abs(lb - gb) / gb < 0.02


@pytest.mark.parametrize("family", models.FAMILIES)
def test_matched_width_within_15_percent(family):
    for d, L in models.LADDER:
        target = models.count_params("gpt2", 4096, d, L)
        width = models.matched_width(family, target, L, 4096, multiple_of=8)
        got = models.count_params(family, 4096, width, L)
        assert abs(got - target) / target < 0.15, (family, d, L, width)


def test_matched_width_non_embedding():
    target = models.count_params("gpt2", 4096, 128, 4, non_embedding=True)
    width = models.matched_width("gru", target, 4, non_embedding=True)
    got = models.count_params("gru", 4096, width, 4, non_embedding=True)
    assert abs(got - target) / target < 0.1
    assert width > 128  # a GRU layer is half a transformer block


@pytest.mark.parametrize("family", models.FAMILIES)
def test_size_ladder_spans_30x(family):
    rungs = models.size_ladder(family)
    assert len(rungs) >= 5
    params = [r["params"] for r in rungs]
    assert params == sorted(params)
    assert params[-1] / params[0] >= 30
    widths = [r["d_model"] for r in rungs]
    depths = [r["n_layers"] for r in rungs]
    assert widths == sorted(widths) and depths == sorted(depths) and depths[-1] > depths[0]
    assert params[-1] < 10_000_000  # CPU-trainable


def test_size_ladder_gpt2_spans_30x_and_matching():
    gpt2 = models.size_ladder("gpt2")
    assert gpt2[-1]["params"] / gpt2[0]["params"] >= 30
    gru = models.size_ladder("gru")
    assert gru[-1]["params"] / gru[0]["params"] >= 30
    for a, b in zip(gpt2, gru):
        assert a["n_layers"] == b["n_layers"]
        assert abs(b["params"] - a["params"]) / a["params"] < 0.15
    assert len(models.size_ladder("gpt2", 3)) == 3
    raw = models.size_ladder("gru", matched_to=None)
    assert [(r["d_model"], r["n_layers"]) for r in raw] == list(models.LADDER)
    with pytest.raises(ValueError, match=r"n_sizes must be in \[1, 5\]"):
        models.size_ladder("gpt2", 0)


def test_unknown_family():
    with pytest.raises(ValueError, match="gpt2, llama, gru"):
        models.build("lstm", V, 16, 1)
    with pytest.raises(ValueError, match="unknown model family"):
        models.count_params("lstm", V, 16, 1)


def test_bad_heads_and_dims():
    with pytest.raises(ValueError, match="divisor"):
        models.build("gpt2", V, 30, 1, n_heads=4)
    with pytest.raises(ValueError, match="d_model"):
        models.build("gpt2", V, 0, 1)


def test_register_custom_family():
    class Bigram(nn.Module):
        def __init__(self, vocab_size, d_model):
            super().__init__()
            self.table = nn.Embedding(vocab_size, vocab_size)

        def forward(self, input_ids, **_):
            from transformers.modeling_outputs import CausalLMOutput
            return CausalLMOutput(logits=self.table(input_ids))

    def builder(vocab_size, d_model, n_layers, n_heads, context, **kw):
        return Bigram(vocab_size, d_model)

    name = "test-bigram"
    models.register(name, builder, overwrite=True)
    try:
        assert name in models.families()
        model = models.build(name, V, 8, 1)
        assert model(torch.zeros(2, 3, dtype=torch.long)).logits.shape == (2, 3, V)
        assert models.count_params(name, V, 8, 1) == V * V
        with pytest.raises(ValueError, match="already registered"):
            models.register(name, builder)
    finally:
        models._REGISTRY.pop(name, None)


def test_matched_shape_matches_gpt2_params_at_same_depth():
    gpt2 = models.matched_shape("gpt2", 128, 3)
    assert (gpt2["d_model"], gpt2["n_layers"]) == (128, 3)
    for family in ("llama", "gru"):
        shape = models.matched_shape(family, 128, 3)
        assert shape["n_layers"] == 3
        assert abs(shape["params"] / gpt2["params"] - 1) < 0.15
    assert models.matched_shape("gru", 128, 3)["n_heads"] is None
    assert models.matched_shape("gru", 128, 3, matched_to=None)["d_model"] == 128


def test_every_builtin_family_is_registered_without_importing_it_first():
    import subprocess
    import sys

    code = ("from resonance import train; "
            "print(','.join(train.models.families()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out.split(",")[:5] == ["gpt2", "llama", "gru", "resonance_transformer", "moe"]


def test_building_a_rhyme_model_never_trains_a_tokenizer(tmp_path, monkeypatch):
    from resonance import paths

    monkeypatch.setattr(paths, "CACHE", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"kjv-bpe300 tokenizer is not trained yet"):
        models.build("resonance_transformer", 300, 32, 1, context=16, phase_init="rhyme",
                     rhyme_tokenizer="kjv")
    assert not (tmp_path / "tokenizers").exists()


def test_the_shared_tail_gives_the_shifted_loss_and_the_normed_last_state():
    torch.manual_seed(0)
    model = models.build("gru", V, 16, 2, context=16).eval()
    ids = torch.randint(0, V, (2, 9))
    out = model(ids, labels=ids, output_hidden_states=True)
    expected = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, V),
                                                 ids[:, 1:].reshape(-1))
    assert float(out.loss.detach()) == pytest.approx(float(expected.detach()), abs=1e-6)
    assert len(out.hidden_states) == 3
    raw = model.layer_states(ids, None)[-1]  # the last layer's output before the final norm
    assert torch.allclose(out.hidden_states[-1], model.norm(raw))
    assert torch.allclose(out.logits, model.lm_head(out.hidden_states[-1]))
