"""The recurrent family: embedding -> stacked single-layer ``nn.GRU`` -> LayerNorm -> tied head."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .base import CausalLM

__all__ = ["GRUConfig", "GRULM", "build"]


@dataclass
class GRUConfig:
    """The HF-like config of :class:`GRULM` (``model.config``)."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    max_position_embeddings: int = 128
    dropout: float = 0.0
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    model_type: str = "gru"
    tie_word_embeddings: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GRULM(CausalLM):
    """Embedding -> stacked ``nn.GRU`` layers (one module each) -> LayerNorm -> tied head.

    ``attention_mask`` is accepted for the shared contract but unused: the GRU is causal, so
    right padding never changes the states of real tokens (left padding would; do not use it).
    ``max_position_embeddings`` is only recorded; a GRU has no length limit.
    """

    _token_embedding = "embed"
    _final_norm = "norm"

    def __init__(self, config: GRUConfig):
        super().__init__()
        self.config = config
        d = config.hidden_size
        self.embed = nn.Embedding(config.vocab_size, d)
        self.layers = nn.ModuleList(nn.GRU(d, d, num_layers=1, batch_first=True)
                                    for _ in range(config.num_hidden_layers))
        self.drop = nn.Dropout(config.dropout)
        self.norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        self.lm_head.weight = self.embed.weight
        nn.init.normal_(self.embed.weight, std=config.initializer_range)

    def layer_states(self, input_ids: torch.Tensor,
                     attention_mask: torch.Tensor | None) -> list[torch.Tensor]:
        h = self.drop(self.embed(input_ids))
        states = [h]
        for layer in self.layers:
            h, _ = layer(h)
            h = self.drop(h)
            states.append(h)
        return states


def build(vocab_size: int, d_model: int, n_layers: int, n_heads: int | None,
          context: int, dropout: float = 0.0, **kw: Any) -> GRULM:
    """The ``gru`` family's builder (``n_heads`` is ignored: a GRU has none)."""
    return GRULM(GRUConfig(vocab_size=vocab_size, hidden_size=d_model,
                           num_hidden_layers=n_layers, max_position_embeddings=context,
                           dropout=dropout, **kw))
