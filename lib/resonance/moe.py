"""Mixture-of-experts language models with cosine-anchor ("semantic resonance") or linear
routing, and their dense twins: the model family of seed 003 (SRA, ITernovtsii/semantic-resonance).

One class, :class:`MoELM`, for every arm; ``router`` picks the feed-forward layer::

    cosine   s_e = cos(x, a_e)                      anchors a_e orthogonally initialised (v1)
             gates = softmax over the top-k scores  (no temperature: s in [-1, 1])
    linear   s_e = w_e . x                          a bias-free Linear(d -> E), same k, gates
    dense    one FFN of width ``dense_hidden``      (no router, no auxiliary loss)

``temperature=τ0`` turns the cosine router into the v2 variant: a learnable scale τ (init τ0)
on the cosine, a softmax over *all* experts, and the top-k of those probabilities as gates
(not renormalised). ``router_noise`` adds N(0, σ²) to the scores while training (v1: 0.05).

Experts are ``Linear -> GELU -> Dropout -> Linear`` held as stacked weights ``(E, d, h)``; a
forward pass sorts the (token, expert) assignments by expert, scatters them into an
``(E, capacity, d)`` buffer (capacity = the largest expert's load, so no token is dropped),
runs two batched matmuls and adds the gated outputs back with ``index_add_`` -- no Python loop
over tokens or experts. Blocks are pre-LN (``x + attn(ln(x))``, ``x + ffn(ln(x))``) with RoPE
causal attention; a final LayerNorm; the LM head is tied to the token embedding.

Losses as published (:meth:`MoELM.training_loss`, in training mode only)::

    L = LM + balance_weight * mean_layers N Var(m) / mean(m)^2 + dispersion_weight * mean_layers D
    m = mean over tokens of softmax over all experts of the scores
    D = sum_{i != j} â_i . â_j / (N (N - 1)) = (|sum_i â_i|^2 - N) / (N (N - 1))

so the dispersion loss only pulls the anchors' centroid to zero (:func:`dispersion_loss`,
:func:`dispersion_from_centroid`); it does not make them orthogonal. In eval mode
``training_loss`` is the plain LM loss, so :func:`resonance.train.evaluate` reports perplexity.
``model.last_routing`` holds, after a forward with ``record_routing=True``, one dict per layer:
``experts (b, t, k)``, ``gates (b, t, k)``, ``inputs (b, t, d)`` (the normalised hidden states
the router saw).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import models
from .models.base import CausalLM, next_token_loss

__all__ = ["FAMILY", "MoEConfig", "MoELM", "MoEFeedForward", "build", "dispersion_loss",
           "dispersion_from_centroid", "balance_loss", "anchor_max_abs_cos", "ROUTERS"]

FAMILY = "moe"
ROUTERS = ("cosine", "linear", "dense")


@dataclass
class MoEConfig:
    """The HF-like config of :class:`MoELM` (``model.config``)."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    max_position_embeddings: int = 128
    router: str = "cosine"
    n_experts: int = 16
    expert_hidden: int = 64
    top_k: int = 2
    dense_hidden: int | None = None      # dense FFN width; default top_k * expert_hidden
    temperature: float | None = None     # v2: learnable scale on the cosine, init this value
    router_noise: float = 0.05
    dropout: float = 0.1
    balance_weight: float = 0.4
    dispersion_weight: float = 0.6
    initializer_range: float = 0.02
    rope_base: float = 10000.0
    model_type: str = "moe"
    tie_word_embeddings: bool = True

    def __post_init__(self) -> None:
        if self.router not in ROUTERS:
            raise ValueError(f"router must be one of {ROUTERS}, got {self.router!r}")
        if self.router != "dense" and not 1 <= self.top_k <= self.n_experts:
            raise ValueError(f"top_k={self.top_k} must lie in [1, n_experts={self.n_experts}]")
        if self.temperature is not None and (self.router != "cosine" or not self.temperature > 0):
            raise ValueError("temperature (the v2 variant) needs router='cosine' and a value > 0, "
                             f"got router={self.router!r}, temperature={self.temperature!r}")
        head = self.hidden_size // max(self.num_attention_heads, 1)
        if self.hidden_size % self.num_attention_heads or head % 2:
            raise ValueError(f"d_model={self.hidden_size} must split into "
                             f"{self.num_attention_heads} heads of even width (RoPE)")
        if self.dense_hidden is None:
            self.dense_hidden = self.top_k * self.expert_hidden

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the published losses --------------------------------------------------------------------

def dispersion_loss(anchors: torch.Tensor) -> torch.Tensor:
    """Mean off-diagonal cosine of the anchors ``(N, d)``: ``Σ_{i≠j} â_i·â_j / (N(N−1))``."""
    if anchors.dim() != 2 or anchors.size(0) < 2:
        raise ValueError(f"anchors must be (N >= 2, d), got {tuple(anchors.shape)}")
    a = F.normalize(anchors, dim=-1)
    gram = a @ a.T
    n = a.size(0)
    return (gram.sum() - gram.diagonal().sum()) / (n * (n - 1))


def dispersion_from_centroid(anchors: torch.Tensor) -> torch.Tensor:
    """The same number from the centroid alone: ``(‖Σ â_i‖² − N) / (N(N−1))``."""
    a = F.normalize(anchors, dim=-1)
    n = a.size(0)
    return (a.sum(0).pow(2).sum() - n) / (n * (n - 1))


def balance_loss(probs: torch.Tensor) -> torch.Tensor:
    """``N · Var(m) / mean(m)²`` with ``m`` the mean over tokens of ``probs (..., N)``
    (population variance); 0 when every expert gets the same mean probability."""
    m = probs.reshape(-1, probs.size(-1)).mean(0)
    return m.numel() * m.var(unbiased=False) / m.mean().pow(2)


def anchor_max_abs_cos(anchors: torch.Tensor) -> float:
    """Largest |cosine| between two distinct anchors (0 for orthogonal anchors)."""
    a = F.normalize(anchors.detach().float(), dim=-1)
    gram = (a @ a.T).abs()
    gram.fill_diagonal_(0)
    return float(gram.max())


# -- layers ----------------------------------------------------------------------------------

def _rope(x: torch.Tensor, base: float) -> torch.Tensor:
    """Rotary position embedding of ``x (b, h, t, dh)`` (pairs of halves rotated)."""
    t, dh = x.size(-2), x.size(-1)
    inv = base ** (-torch.arange(0, dh, 2, dtype=torch.float32) / dh)
    angle = torch.arange(t, dtype=torch.float32)[:, None] * inv[None]
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    x1, x2 = x[..., : dh // 2], x[..., dh // 2:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Attention(nn.Module):
    def __init__(self, c: MoEConfig):
        super().__init__()
        self.heads, self.base = c.num_attention_heads, c.rope_base
        self.qkv = nn.Linear(c.hidden_size, 3 * c.hidden_size, bias=False)
        self.out = nn.Linear(c.hidden_size, c.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(_rope(q, self.base), _rope(k, self.base), v,
                                           is_causal=True)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class DenseFeedForward(nn.Module):
    def __init__(self, d: int, h: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, h), nn.GELU(), nn.Dropout(dropout), nn.Linear(h, d))
        self.aux: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor, record: list | None = None) -> torch.Tensor:
        return self.net(x)


class MoEFeedForward(nn.Module):
    """Routed experts with batched dispatch; ``aux`` holds the last balance/dispersion terms."""

    def __init__(self, c: MoEConfig):
        super().__init__()
        E, d, h = c.n_experts, c.hidden_size, c.expert_hidden
        self.c = c
        self.w1 = nn.Parameter(torch.empty(E, d, h))
        self.b1 = nn.Parameter(torch.zeros(E, h))
        self.w2 = nn.Parameter(torch.empty(E, h, d))
        self.b2 = nn.Parameter(torch.zeros(E, d))
        self.drop = nn.Dropout(c.dropout)
        if c.router == "cosine":
            self.anchors = nn.Parameter(torch.empty(E, d))
            self.log_tau = (nn.Parameter(torch.tensor(math.log(c.temperature)))
                            if c.temperature is not None else None)
        else:
            self.gate = nn.Linear(d, E, bias=False)
        self.aux: dict[str, torch.Tensor] = {}
        for name, p in self.named_parameters():  # as MoELM does; a lone layer is usable too
            if name == "anchors":
                nn.init.orthogonal_(p)
            elif p.dim() >= 2:
                nn.init.normal_(p, std=c.initializer_range)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        if self.c.router == "cosine":
            s = F.normalize(x, dim=-1) @ F.normalize(self.anchors, dim=-1).T
            return s if self.log_tau is None else s * self.log_tau.exp()
        return self.gate(x)

    def forward(self, x: torch.Tensor, record: list | None = None) -> torch.Tensor:
        c, shape = self.c, x.shape
        flat = x.reshape(-1, shape[-1])
        s = self.scores(flat)
        probs = s.softmax(-1)
        noisy = s + c.router_noise * torch.randn_like(s) if self.training and c.router_noise else s
        top, experts = noisy.topk(c.top_k, dim=-1)
        if c.temperature is None:
            gates = top.softmax(-1)                       # v1: softmax over the top-k scores
        else:
            gates = probs.gather(-1, experts)             # v2: full-softmax probabilities
        self.aux = {"balance": balance_loss(probs)}
        if c.router == "cosine":
            self.aux["dispersion"] = dispersion_loss(self.anchors)
        if record is not None:
            record.append({"experts": experts.view(*shape[:-1], c.top_k).detach(),
                           "gates": gates.view(*shape[:-1], c.top_k).detach(),
                           "inputs": flat.view(shape).detach()})
        return self._dispatch(flat, experts, gates).view(shape)

    def _dispatch(self, x: torch.Tensor, experts: torch.Tensor, gates: torch.Tensor):
        n, k = experts.shape
        E = self.c.n_experts
        e = experts.reshape(-1)
        order = torch.argsort(e, stable=True)
        e_sorted = e[order]
        token = order // k
        counts = torch.bincount(e_sorted, minlength=E)
        starts = torch.cumsum(counts, 0) - counts
        cap = int(counts.max())
        # flat row of each assignment in the (E * capacity, d) buffer; index_select/index_copy/
        # index_add are the fast CPU paths (and each other's backward)
        row = e_sorted * cap + torch.arange(e_sorted.numel()) - starts[e_sorted]
        d = x.size(-1)
        buf = x.new_zeros(E * cap, d).index_copy(0, row, x.index_select(0, token))
        hid = self.drop(F.gelu(torch.baddbmm(self.b1[:, None], buf.view(E, cap, d), self.w1)))
        out = torch.baddbmm(self.b2[:, None], hid, self.w2).view(E * cap, d).index_select(0, row)
        out = out * gates.reshape(-1)[order, None]
        return x.new_zeros(x.shape).index_add(0, token, out)


class Block(nn.Module):
    def __init__(self, c: MoEConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(c.hidden_size), nn.LayerNorm(c.hidden_size)
        self.attn = Attention(c)
        self.ffn = (DenseFeedForward(c.hidden_size, c.dense_hidden, c.dropout)
                    if c.router == "dense" else MoEFeedForward(c))

    def forward(self, x: torch.Tensor, record: list | None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.ffn(self.ln2(x), record)


class MoELM(CausalLM):
    """Token embedding -> pre-LN blocks (RoPE attention, routed or dense FFN) -> LN -> tied head
    (the causal-LM tail and Hugging Face output of :class:`resonance.models.base.CausalLM`)."""

    _final_norm = "ln_f"

    def __init__(self, config: MoEConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.hidden_size)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.num_hidden_layers))
        self.ln_f = nn.LayerNorm(c.hidden_size)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        self.lm_head.weight = self.embed.weight
        self.last_routing: list[dict] = []
        self._record: list | None = None
        std = c.initializer_range
        for name, p in self.named_parameters():
            if name.endswith("anchors"):
                nn.init.orthogonal_(p)
            elif p.dim() >= 2:
                nn.init.normal_(p, std=std)

    def moe_layers(self) -> list[MoEFeedForward]:
        return [b.ffn for b in self.blocks if isinstance(b.ffn, MoEFeedForward)]

    def layer_states(self, input_ids: torch.Tensor,
                     attention_mask: torch.Tensor | None) -> list[torch.Tensor]:
        if input_ids.size(1) > self.config.max_position_embeddings:
            raise ValueError(f"sequence of {input_ids.size(1)} tokens exceeds "
                             f"max_position_embeddings={self.config.max_position_embeddings}")
        record = self._record
        states = [self.embed(input_ids)]
        for block in self.blocks:
            states.append(block(states[-1], record))
        if record is not None:
            self.last_routing = record
        return states

    def forward(self, input_ids: torch.Tensor, *args: Any, record_routing: bool = False,
                **kw: Any):
        """:meth:`CausalLM.forward`; ``record_routing=True`` fills :attr:`last_routing`."""
        self._record = [] if record_routing else None
        try:
            return super().forward(input_ids, *args, **kw)
        finally:
            self._record = None

    def aux_losses(self) -> dict[str, torch.Tensor]:
        """Mean over MoE layers of the last forward's balance and dispersion terms."""
        layers = self.moe_layers()
        out = {}
        for key in ("balance", "dispersion"):
            terms = [m.aux[key] for m in layers if key in m.aux]
            if terms:
                out[key] = torch.stack(terms).mean()
        return out

    def training_loss(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """LM cross-entropy plus the weighted auxiliary losses (training mode); the plain LM
        loss in eval mode, so validation perplexity is comparable across arms."""
        loss = next_token_loss(self(input_ids).logits, targets)
        if not self.training:
            return loss
        aux = self.aux_losses()
        c = self.config
        if "balance" in aux:
            loss = loss + c.balance_weight * aux["balance"]
        if "dispersion" in aux and c.dispersion_weight:
            loss = loss + c.dispersion_weight * aux["dispersion"]
        return loss


def build(vocab_size: int, d_model: int, n_layers: int, n_heads: int | None = None,
          context: int = 128, **kw: Any) -> MoELM:
    """The :func:`resonance.models.register` builder of family ``"moe"``; ``kw`` are
    :class:`MoEConfig` fields (``router``, ``n_experts``, ``temperature``...)."""
    heads = models.default_heads(d_model) if n_heads is None else int(n_heads)
    return MoELM(MoEConfig(vocab_size=vocab_size, hidden_size=d_model, num_hidden_layers=n_layers,
                           num_attention_heads=heads, max_position_embeddings=context, **kw))

