"""In-house language-model families, buildable at any width and depth.

=========  =====================================================================================
family     what :func:`build` returns
=========  =====================================================================================
gpt2       ``transformers.GPT2LMHeadModel``: learned positions, LayerNorm, GELU MLP of 4d, tied
           head, biases; dropout 0 unless ``dropout=`` is given.
llama      ``transformers.LlamaForCausalLM``: RoPE, RMSNorm, SwiGLU, no biases, tied head; the
           SwiGLU width is chosen so a block has (almost exactly) as many parameters as a gpt2
           block of the same ``d_model`` (``3 d I = 8 d^2 + 11 d``, so ``I ~ 8d/3``).
gru        :class:`GRULM`: embedding -> ``n_layers`` stacked single-layer ``nn.GRU`` -> LayerNorm
           -> tied head. A GRU layer has ``6 d^2 + 6 d`` parameters, half a gpt2 block, so
           compare architectures at matched size with :func:`matched_width`.
=========  =====================================================================================

All three share the Hugging Face contract ``model(input_ids, attention_mask=None,
output_hidden_states=False, labels=None)`` -> an output with ``.logits`` ``(b, t, vocab)``,
``.loss`` (when ``labels`` are given; labels are shifted inside the model, as in HF) and
``.hidden_states``: a tuple of ``n_layers + 1`` tensors ``(b, t, d_model)`` -- the embedding
output, then each layer's output, the last one after the final norm (the HF convention). So
activation extraction treats all families alike, and ``model.config`` has ``vocab_size``,
``hidden_size`` and ``num_hidden_layers`` for each.

More families can be added with :func:`register` (for example a notebook's own variant); they
then work everywhere a family name is accepted, :mod:`resonance.train` included.

Size ladder (:data:`LADDER`, :func:`size_ladder`; vocab 4096, context 128, tied embeddings)
------------------------------------------------------------------------------------------
=====  =======  ========  ===========  ==============  ============  ==========
rung   d_model  n_layers  gpt2 params  gpt2 non-embed  llama params  gru params
=====  =======  ========  ===========  ==============  ============  ==========
0      32       2         160,640      25,472          156,512       143,808
1      64       3         420,416      150,080         411,968       337,152
2      128      4         1,334,016    793,344         1,317,504     920,832
3      192      5         3,035,712    2,224,704       3,011,904     1,898,496
4      256      6         5,820,416    4,739,072       5,785,856     3,417,600
=====  =======  ========  ===========  ==============  ============  ==========

(gru at the same d/L; non-embedding excludes the token and position tables.)
gpt2 spans 36x in total parameters (186x excluding the embeddings), CPU-trainable throughout.
``size_ladder(family)`` matches other families to these gpt2 counts at the same depth by
default (``matched_to="gpt2"``): llama keeps the widths (within 3 %); gru widens to
d = 32/80/168/256/352 (143,808 / 444,480 / 1,369,872 / 3,022,848 / 5,915,712 parameters, within
11 %, the smallest rung the coarsest), so every family's ladder spans >= 30x.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

__all__ = [
    "FAMILIES", "LADDER", "build", "register", "families", "param_count", "count_params",
    "default_heads", "llama_intermediate", "matched_width", "matched_shape", "size_ladder",
    "GRULM", "GRUConfig",
]

FAMILIES = ("gpt2", "llama", "gru")

# (d_model, n_layers): width and depth grow together; 32/2 ... 256/6.
LADDER: tuple[tuple[int, int], ...] = ((32, 2), (64, 3), (128, 4), (192, 5), (256, 6))

Builder = Callable[..., nn.Module]
_REGISTRY: dict[str, Builder] = {}


# --------------------------------------------------------------------------------------------
# Helpers


def default_heads(d_model: int) -> int:
    """Heads of width 32 (1 head below d=64, 8 heads at d=256)."""
    return max(1, d_model // 32)


def _heads(d_model: int, n_heads: int | None) -> int:
    h = default_heads(d_model) if n_heads is None else int(n_heads)
    if h < 1 or d_model % h:
        raise ValueError(f"n_heads={h} must be a positive divisor of d_model={d_model}")
    return h


def llama_intermediate(d_model: int) -> int:
    """SwiGLU width making a llama block as large as a gpt2 block: ``round((8d + 11) / 3)``."""
    return max(1, round((8 * d_model + 11) / 3))


def _check_dims(vocab_size: int, d_model: int, n_layers: int, context: int) -> None:
    for name, value in (("vocab_size", vocab_size), ("d_model", d_model),
                        ("n_layers", n_layers), ("context", context)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


# --------------------------------------------------------------------------------------------
# The recurrent family


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
        from dataclasses import asdict

        return asdict(self)


class GRULM(nn.Module):
    """Embedding -> stacked ``nn.GRU`` layers (one module each) -> LayerNorm -> tied head.

    ``attention_mask`` is accepted for the shared contract but unused: the GRU is causal, so
    right padding never changes the states of real tokens (left padding would; do not use it).
    ``max_position_embeddings`` is only recorded; a GRU has no length limit.
    """

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

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False, labels: torch.Tensor | None = None,
                return_dict: bool = True, **_: Any):
        from transformers.modeling_outputs import CausalLMOutput

        h = self.drop(self.embed(input_ids))
        states = [h]
        for layer in self.layers:
            h, _ = layer(h)
            h = self.drop(h)
            states.append(h)
        h = self.norm(h)
        states[-1] = h  # as in HF: the last hidden state is after the final norm
        logits = self.lm_head(h)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)).float(),
                labels[:, 1:].reshape(-1), ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits,
                              hidden_states=tuple(states) if output_hidden_states else None)


# --------------------------------------------------------------------------------------------
# Builders


def _build_gpt2(vocab_size: int, d_model: int, n_layers: int, n_heads: int | None,
                context: int, dropout: float = 0.0, **kw: Any) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = dict(vocab_size=vocab_size, n_positions=context, n_embd=d_model, n_layer=n_layers,
               n_head=_heads(d_model, n_heads), n_inner=4 * d_model, resid_pdrop=dropout,
               embd_pdrop=dropout, attn_pdrop=dropout, tie_word_embeddings=True,
               bos_token_id=0, eos_token_id=0, use_cache=False)
    cfg.update(kw)
    model = GPT2LMHeadModel(GPT2Config(**cfg))
    model.loss_type = "ForCausalLM"  # HF cannot infer it from the class name and warns
    return model


def _build_llama(vocab_size: int, d_model: int, n_layers: int, n_heads: int | None,
                 context: int, dropout: float = 0.0, intermediate_size: int | None = None,
                 **kw: Any) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    h = _heads(d_model, n_heads)
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


def _build_gru(vocab_size: int, d_model: int, n_layers: int, n_heads: int | None,
               context: int, dropout: float = 0.0, **kw: Any) -> nn.Module:
    return GRULM(GRUConfig(vocab_size=vocab_size, hidden_size=d_model,
                           num_hidden_layers=n_layers, max_position_embeddings=context,
                           dropout=dropout, **kw))


_REGISTRY.update(gpt2=_build_gpt2, llama=_build_llama, gru=_build_gru)


def register(family: str, builder: Builder, *, overwrite: bool = False) -> None:
    """Add a family: ``builder(vocab_size, d_model, n_layers, n_heads, context, **kw)``.

    The module it returns should follow the contract above (at least ``forward(input_ids)``
    returning ``.logits``) to be trainable by :func:`resonance.train.train`.
    """
    if not isinstance(family, str) or not family:
        raise ValueError(f"family must be a non-empty string, got {family!r}")
    if family in _REGISTRY and not overwrite:
        raise ValueError(f"family {family!r} is already registered; pass overwrite=True")
    _REGISTRY[family] = builder


def families() -> tuple[str, ...]:
    """All buildable families: the built-in :data:`FAMILIES` then registered ones."""
    return tuple(_REGISTRY)


def build(family: str, vocab_size: int, d_model: int, n_layers: int,
          n_heads: int | None = None, context: int = 128, **kw: Any) -> nn.Module:
    """A freshly initialised model (initialisation draws from torch's global RNG: seed first).

    ``n_heads`` defaults to :func:`default_heads` (head width 32). Extra keywords go to the
    family's builder: ``dropout`` (all), ``intermediate_size`` (llama), and any HF config field.
    """
    if family not in _REGISTRY:
        raise ValueError(f"unknown model family {family!r}; known families: "
                         f"{', '.join(_REGISTRY)}")
    _check_dims(vocab_size, d_model, n_layers, context)
    return _REGISTRY[family](vocab_size=vocab_size, d_model=d_model, n_layers=n_layers,
                             n_heads=n_heads, context=context, **kw)


# --------------------------------------------------------------------------------------------
# Parameter counts and matching


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


def count_params(family: str, vocab_size: int, d_model: int, n_layers: int,
                 context: int = 128, non_embedding: bool = False) -> int:
    """Parameter count of ``build(family, ...)`` from closed forms, without building it.

    Exact for the built-in families with default options (the tests check it).
    """
    d, L, V = d_model, n_layers, vocab_size
    if family == "gpt2":
        emb, body = V * d + context * d, L * (12 * d * d + 13 * d) + 2 * d
    elif family == "llama":
        body = L * (4 * d * d + 3 * d * llama_intermediate(d) + 2 * d) + d
        emb = V * d
    elif family == "gru":
        emb, body = V * d, L * (6 * d * d + 6 * d) + 2 * d
    elif family in _REGISTRY:
        with torch.device("meta"):
            model = build(family, V, d, L, context=context)
        return param_count(model, non_embedding)
    else:
        raise ValueError(f"unknown model family {family!r}; known families: "
                         f"{', '.join(_REGISTRY)}")
    return body if non_embedding else body + emb


def matched_width(family: str, target_params: int, n_layers: int, vocab_size: int = 4096,
                  context: int = 128, *, multiple_of: int = 8,
                  non_embedding: bool = False) -> int:
    """The ``d_model`` (a multiple of ``multiple_of``) whose parameter count is nearest
    ``target_params`` at depth ``n_layers``.

    E.g. ``matched_width("gru", count_params("gpt2", 4096, 128, 4), 4)`` gives the GRU width
    matching a 128-wide, 4-layer gpt2. Transformer families with default heads need
    ``d_model % 32 == 0`` above 32, so for them pass ``multiple_of=32`` (or give ``n_heads``).
    """
    if target_params < 1:
        raise ValueError(f"target_params must be positive, got {target_params!r}")
    best, best_err = multiple_of, float("inf")
    d = multiple_of
    while True:
        n = count_params(family, vocab_size, d, n_layers, context, non_embedding)
        err = abs(n - target_params)
        if err < best_err:
            best, best_err = d, err
        if n > target_params:
            return best
        d += multiple_of


def size_ladder(family: str = "gpt2", n_sizes: int = 5, *, vocab_size: int = 4096,
                context: int = 128, matched_to: str | None = "gpt2") -> list[dict[str, Any]]:
    """``n_sizes`` rungs of :data:`LADDER` (spread evenly, smallest and largest kept).

    Each rung is a dict ``{rung, family, d_model, n_layers, n_heads, params,
    non_embedding_params}``. By default (``matched_to="gpt2"``) the width of another family is
    chosen by :func:`matched_width` so each rung matches the gpt2 rung's parameter count at the
    same depth (llama keeps the gpt2 widths; gru widens to 32/80/168/256/352). With
    ``matched_to=None`` every family uses the :data:`LADDER` shapes as they are.
    """
    if not 1 <= n_sizes <= len(LADDER):
        raise ValueError(f"n_sizes must be in [1, {len(LADDER)}], got {n_sizes!r}")
    if n_sizes == 1:
        index = [0]
    else:
        index = sorted({round(i * (len(LADDER) - 1) / (n_sizes - 1)) for i in range(n_sizes)})
    return [{"rung": i, **matched_shape(family, *LADDER[i], vocab_size=vocab_size,
                                          context=context, matched_to=matched_to)}
            for i in index]


def matched_shape(family: str, d_model: int, n_layers: int, *, vocab_size: int = 4096,
                  context: int = 128, matched_to: str | None = "gpt2") -> dict[str, Any]:
    """The ``family`` model matching a ``matched_to`` model of width ``d_model`` and depth
    ``n_layers`` in parameter count (same depth, width from :func:`matched_width`).

    Returns ``{family, d_model, n_layers, n_heads, params, non_embedding_params}``;
    ``matched_to=None`` (or the family itself) keeps the shape as it is.
    """
    d, L = d_model, n_layers
    heads: int | None = default_heads(d)
    if matched_to is not None and matched_to != family:
        target = count_params(matched_to, vocab_size, d, L, context)
        d = matched_width(family, target, L, vocab_size, context,
                          multiple_of=8 if family == "gru" else 32)
        heads = default_heads(d)
    if family == "gru":
        heads = None
    return dict(family=family, d_model=d, n_layers=L, n_heads=heads,
                params=count_params(family, vocab_size, d, L, context),
                non_embedding_params=count_params(family, vocab_size, d, L, context,
                                                  non_embedding=True))
