"""What every in-house family shares: the causal-LM tail, heads, dimension checks, counts.

:class:`CausalLM` is the base of the families written here (:class:`~.gru.GRULM`,
:class:`~.resonance_lm.ResonanceLM`): a subclass builds its modules and defines
:meth:`CausalLM.layer_states`; the base adds the final norm, the tied head, the shifted
next-token loss and the Hugging Face output, so they are written once.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CausalLM", "next_token_loss", "default_heads", "check_heads", "check_dims",
           "param_count"]


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits (b, t, vocab)`` against ``targets (b, t)`` (already
    aligned: ``targets[:, i]`` is the token after position ``i``; ``-100`` is ignored), in
    float32 whatever the logits' dtype."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1),
                           ignore_index=-100)


class CausalLM(nn.Module):
    """The Hugging Face causal-LM contract on top of a subclass's layers.

    ``forward(input_ids, attention_mask=None, output_hidden_states=False, labels=None)``
    returns a ``CausalLMOutput``: ``.logits (b, t, vocab)``; ``.loss`` when ``labels`` are given
    (shifted inside, as in HF); ``.hidden_states`` when asked: the embedding output, then each
    layer's output, the last one after the final norm (the HF convention).

    A subclass sets ``lm_head`` and names its token table and final norm in
    ``_token_embedding`` / ``_final_norm`` (attribute names, so checkpoints keep their keys).
    """

    _token_embedding = "embed"
    _final_norm = "norm"

    def layer_states(self, input_ids: torch.Tensor,
                     attention_mask: torch.Tensor | None) -> list[torch.Tensor]:
        """The embedding output then every layer's output, ``(b, t, d)`` each, before the
        final norm."""
        raise NotImplementedError

    def get_input_embeddings(self) -> nn.Embedding:
        return getattr(self, self._token_embedding)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False, labels: torch.Tensor | None = None,
                return_dict: bool = True, **_: Any):
        from transformers.modeling_outputs import CausalLMOutput

        states = self.layer_states(input_ids, attention_mask)
        h = getattr(self, self._final_norm)(states[-1])
        states[-1] = h  # as in HF: the last hidden state is after the final norm
        logits = self.lm_head(h)
        loss = None if labels is None else next_token_loss(logits[:, :-1], labels[:, 1:])
        return CausalLMOutput(loss=loss, logits=logits,
                              hidden_states=tuple(states) if output_hidden_states else None)


# --------------------------------------------------------------------------------------------
# Shapes


def default_heads(d_model: int) -> int:
    """Heads of width 32 (1 head below d=64, 8 heads at d=256)."""
    return max(1, d_model // 32)


def check_heads(d_model: int, n_heads: int | None) -> int:
    """``n_heads`` (default :func:`default_heads`), checked to divide ``d_model``."""
    h = default_heads(d_model) if n_heads is None else int(n_heads)
    if h < 1 or d_model % h:
        raise ValueError(f"n_heads={h} must be a positive divisor of d_model={d_model}")
    return h


def check_dims(vocab_size: int, d_model: int, n_layers: int, context: int) -> None:
    for name, value in (("vocab_size", vocab_size), ("d_model", d_model),
                        ("n_layers", n_layers), ("context", context)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


# --------------------------------------------------------------------------------------------
# Counting


def _embedding_params(model: nn.Module) -> int:
    """Parameters of input embeddings (token and learned-position tables), counted once."""
    seen: set[int] = set()
    total = 0
    for module in model.modules():
        if isinstance(module, nn.Embedding) and id(module.weight) not in seen:
            seen.add(id(module.weight))
            total += module.weight.numel()
    return total


def param_count(model: nn.Module, non_embedding: bool = False) -> int:
    """Distinct parameters (a tied head counted once); optionally minus embedding tables."""
    total = sum(p.numel() for p in model.parameters())  # .parameters() de-duplicates ties
    return total - _embedding_params(model) if non_embedding else total
