"""In-house language-model families, buildable at any width and depth.

The package: :mod:`.base` (the causal-LM tail every family written here shares, head and
dimension checks, :func:`param_count`), :mod:`.hf` (gpt2, llama from ``transformers``),
:mod:`.gru`, :mod:`.resonance_lm` (the Resonance Transformer of notebook 04); this module holds
the registry, closed-form counts and parameter matching.

=====================  =========================================================================
family                 what :func:`build` returns
=====================  =========================================================================
gpt2                   ``transformers.GPT2LMHeadModel``: learned positions, LayerNorm, GELU MLP of
                       4d, tied head, biases; dropout 0 unless ``dropout=`` is given.
llama                  ``transformers.LlamaForCausalLM``: RoPE, RMSNorm, SwiGLU, no biases, tied
                       head; the SwiGLU width is chosen so a block has (almost exactly) as many
                       parameters as a gpt2 block of the same ``d_model`` (``3 d I = 8 d^2 +
                       11 d``, so ``I ~ 8d/3``).
gru                    :class:`GRULM`: embedding -> ``n_layers`` stacked single-layer ``nn.GRU``
                       -> LayerNorm -> tied head. A GRU layer has ``6 d^2 + 6 d`` parameters,
                       half a gpt2 block, so compare architectures at matched size with
                       :func:`matched_width`.
resonance_transformer  :class:`~.resonance_lm.ResonanceLM`: the seed's phase-biased attention and
                       its ablations (see :mod:`.resonance_lm`).
moe                    :class:`resonance.moe.MoELM`: seed 003's mixture of experts (cosine-anchor,
                       linear or dense router; see :mod:`resonance.moe`).
=====================  =========================================================================

:data:`FAMILIES` names the first three, the architectures notebooks 01/02 compare; every
family above is registered when this package is imported, so ``train(TrainConfig(family=
"resonance_transformer"))`` needs no import first. All of them share the Hugging Face
contract ``model(input_ids, attention_mask=None, output_hidden_states=False, labels=None)``
-> an output with ``.logits`` ``(b, t, vocab)``,
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

from typing import Any, Callable

import torch
from torch import nn

from . import gru, hf, resonance_lm
from .base import CausalLM, check_dims, default_heads, next_token_loss, param_count
from .gru import GRUConfig, GRULM
from .hf import llama_intermediate

__all__ = [
    "FAMILIES", "LADDER", "build", "register", "families", "param_count", "count_params",
    "default_heads", "llama_intermediate", "matched_width", "matched_shape", "size_ladder",
    "GRULM", "GRUConfig", "CausalLM", "next_token_loss",
]

FAMILIES = ("gpt2", "llama", "gru")

# (d_model, n_layers): width and depth grow together; 32/2 ... 256/6.
LADDER: tuple[tuple[int, int], ...] = ((32, 2), (64, 3), (128, 4), (192, 5), (256, 6))

Builder = Callable[..., nn.Module]


def _build_moe(**kw: Any) -> nn.Module:
    """Seed 003's mixture-of-experts (:mod:`resonance.moe`), imported when first built."""
    from ..moe import build

    return build(**kw)


# The built-in families, registered here explicitly (no import side effects elsewhere), so a
# fresh process (a training worker) can build any of them.
_REGISTRY: dict[str, Builder] = {"gpt2": hf.build_gpt2, "llama": hf.build_llama,
                                 "gru": gru.build, resonance_lm.FAMILY: resonance_lm.build,
                                 "moe": _build_moe}


def register(family: str, builder: Builder, *, overwrite: bool = False) -> None:
    """Add a family: ``builder(vocab_size, d_model, n_layers, n_heads, context, **kw)``.

    The module it returns should follow the contract above (at least ``forward(input_ids)``
    returning ``.logits``) to be trainable by :func:`resonance.train.train`; subclassing
    :class:`CausalLM` gives the whole contract.
    """
    if not isinstance(family, str) or not family:
        raise ValueError(f"family must be a non-empty string, got {family!r}")
    if family in _REGISTRY and not overwrite:
        raise ValueError(f"family {family!r} is already registered; pass overwrite=True")
    _REGISTRY[family] = builder


def families() -> tuple[str, ...]:
    """All buildable families: the built-in ones (:data:`FAMILIES`, then
    ``resonance_transformer``), then registered ones."""
    return tuple(_REGISTRY)


def _unknown(family: str) -> ValueError:
    return ValueError(f"unknown model family {family!r}; known families: {', '.join(_REGISTRY)}")


def build(family: str, vocab_size: int, d_model: int, n_layers: int,
          n_heads: int | None = None, context: int = 128, **kw: Any) -> nn.Module:
    """A freshly initialised model (initialisation draws from torch's global RNG: seed first).

    ``n_heads`` defaults to :func:`default_heads` (head width 32). Extra keywords go to the
    family's builder: ``dropout`` (all), ``intermediate_size`` (llama), and any HF config field.
    """
    if family not in _REGISTRY:
        raise _unknown(family)
    check_dims(vocab_size, d_model, n_layers, context)
    return _REGISTRY[family](vocab_size=vocab_size, d_model=d_model, n_layers=n_layers,
                             n_heads=n_heads, context=context, **kw)


# --------------------------------------------------------------------------------------------
# Parameter counts and matching


def count_params(family: str, vocab_size: int, d_model: int, n_layers: int,
                 context: int = 128, non_embedding: bool = False) -> int:
    """Parameter count of ``build(family, ...)`` from closed forms, without building it.

    Exact for gpt2, llama and gru with default options (the tests check it); any other
    registered family is built on the meta device and counted.
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
        raise _unknown(family)
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
