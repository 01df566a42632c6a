"""Next-token evaluation of language models on a fixed token slice: logits, loss, agreement
between two models and the loss of their ensemble (averaged logits).

>>> windows = eval_windows("kjv", 4096, context=128, n_tokens=2048)   # (16, 129) token ids
>>> a, b = lm_logits(net_a, windows), lm_logits(net_b, windows)       # (2048, vocab)
>>> top1_agreement(a, b), ensemble_loss(a, b, targets(windows))
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["eval_windows", "targets", "lm_logits", "next_token_loss", "top1_agreement",
           "ensemble_loss"]


def eval_windows(corpus: str, vocab_size: int, context: int, n_tokens: int) -> torch.Tensor:
    """The first ``n_tokens`` targets of ``corpus``'s validation split as consecutive windows
    ``(n_tokens // context, context + 1)`` (the slice :mod:`resonance.train` evaluates on)."""
    from . import data

    if n_tokens < context:
        raise ValueError(f"n_tokens={n_tokens} is less than one window of context={context}")
    tok = data.tokenizer(corpus, vocab_size)
    val = np.asarray(data.token_stream(corpus, "validation", tok), dtype=np.int64)
    starts = np.arange(n_tokens // context) * context
    if starts[-1] + context + 1 > len(val):
        raise ValueError(f"the validation split has {len(val)} tokens, fewer than n_tokens + 1")
    return torch.from_numpy(val[starts[:, None] + np.arange(context + 1)])


def targets(windows: torch.Tensor) -> torch.Tensor:
    """The next-token targets of ``windows``, flattened ``(n_windows * context,)``."""
    return windows[:, 1:].reshape(-1)


@torch.no_grad()
def lm_logits(net: torch.nn.Module, windows: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """float32 logits ``(n_windows * context, vocab)`` of a causal LM (eval mode)."""
    net.eval()
    out = [net(input_ids=windows[i:i + batch_size, :-1]) for i in range(0, len(windows), batch_size)]
    logits = torch.cat([o if isinstance(o, torch.Tensor) else o.logits for o in out]).float()
    return logits.reshape(-1, logits.size(-1))


def next_token_loss(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Mean next-token cross-entropy (nats), :func:`resonance.models.next_token_loss`."""
    from .models import next_token_loss as loss

    return float(loss(logits, target))


def top1_agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of positions where two models' most likely next tokens coincide."""
    if a.shape != b.shape:
        raise ValueError(f"logits {tuple(a.shape)} and {tuple(b.shape)} differ: the models must "
                         "share a tokenizer and be scored on the same windows")
    return float((a.argmax(-1) == b.argmax(-1)).float().mean())


def ensemble_loss(a: torch.Tensor, b: torch.Tensor, target: torch.Tensor) -> float:
    """Cross-entropy of the two-model ensemble whose logits are the mean of theirs."""
    if a.shape != b.shape:
        raise ValueError(f"logits {tuple(a.shape)} and {tuple(b.shape)} differ")
    return next_token_loss((a + b) / 2, target)
