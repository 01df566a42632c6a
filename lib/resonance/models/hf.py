"""The two families taken from ``transformers``: ``gpt2`` and ``llama`` at any width and depth."""

from __future__ import annotations

from typing import Any

from torch import nn

from .base import check_heads

__all__ = ["build_gpt2", "build_llama", "llama_intermediate"]


def llama_intermediate(d_model: int) -> int:
    """SwiGLU width making a llama block as large as a gpt2 block: ``round((8d + 11) / 3)``."""
    return max(1, round((8 * d_model + 11) / 3))


def build_gpt2(vocab_size: int, d_model: int, n_layers: int, n_heads: int | None,
               context: int, dropout: float = 0.0, **kw: Any) -> nn.Module:
    """``GPT2LMHeadModel``: learned positions, LayerNorm, GELU MLP of 4d, tied head, biases."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = dict(vocab_size=vocab_size, n_positions=context, n_embd=d_model, n_layer=n_layers,
               n_head=check_heads(d_model, n_heads), n_inner=4 * d_model, resid_pdrop=dropout,
               embd_pdrop=dropout, attn_pdrop=dropout, tie_word_embeddings=True,
               bos_token_id=0, eos_token_id=0, use_cache=False)
    cfg.update(kw)
    model = GPT2LMHeadModel(GPT2Config(**cfg))
    model.loss_type = "ForCausalLM"  # HF cannot infer it from the class name and warns
    return model


def build_llama(vocab_size: int, d_model: int, n_layers: int, n_heads: int | None,
                context: int, dropout: float = 0.0, intermediate_size: int | None = None,
                **kw: Any) -> nn.Module:
    """``LlamaForCausalLM``: RoPE, RMSNorm, SwiGLU of :func:`llama_intermediate`, no biases,
    tied head."""
    from transformers import LlamaConfig, LlamaForCausalLM

    h = check_heads(d_model, n_heads)
    if (d_model // h) % 2:
        raise ValueError(f"llama's RoPE needs an even head width; d_model={d_model} with "
                         f"{h} heads gives {d_model // h}")
    cfg = dict(vocab_size=vocab_size, hidden_size=d_model, num_hidden_layers=n_layers,
               num_attention_heads=h, num_key_value_heads=h,
               intermediate_size=intermediate_size or llama_intermediate(d_model),
               max_position_embeddings=context, attention_dropout=dropout,
               tie_word_embeddings=True, rms_norm_eps=1e-5, bos_token_id=0, eos_token_id=0,
               use_cache=False)
    cfg.update(kw)
    model = LlamaForCausalLM(LlamaConfig(**cfg))
    model.loss_type = "ForCausalLM"
    return model
