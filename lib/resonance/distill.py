"""Knowledge distillation with the project's trainer: a student learns from a frozen teacher.

>>> teacher = train.train(TrainConfig(family="gpt2", d_model=128, n_layers=2, ...)).model
>>> run = distil(teacher, teacher_key, TrainConfig(family="llama", d_model=64, ...))

The loss (Hinton et al. 2015) on every next-token position is

    (1 - alpha) * CE(student, targets) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))

The student is built exactly as :func:`resonance.train.train` builds it alone (same family,
shape, seed, data order and token budget), so a distilled run differs from its trained-alone
twin only in the loss. The loss enters through the trainer's ``training_loss`` hook; in eval
mode it is the plain next-token cross-entropy, so the run's ``history.val_loss`` is directly
comparable with the twin's. The teacher is held outside the student's module tree: it is not
in the checkpoints and gets no gradient.

The run is cached like any other under the family ``distil-<family>``; the teacher's key,
``alpha`` and ``temperature`` are part of the run's key (``build_kwargs``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from . import models, train

__all__ = ["distillation_loss", "distil", "distilled_config", "PREFIX"]

PREFIX = "distil-"
_OWN_KEYS = ("teacher", "alpha", "temperature")


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      targets: torch.Tensor, alpha: float = 0.5,
                      temperature: float = 2.0) -> torch.Tensor:
    """Mean distillation loss over positions; logits ``(..., vocab)``, targets ``(...)``.

    ``alpha = 0`` is plain cross-entropy; ``alpha = 1`` matches the teacher only. The KL term
    is scaled by ``T^2`` so its gradients keep their size as ``temperature`` changes.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ: the models must share a "
                         "tokenizer (vocabulary) and see the same windows")
    if not 0.0 <= alpha <= 1.0 or not temperature > 0:
        raise ValueError(f"need 0 <= alpha <= 1 and temperature > 0, got {alpha}, {temperature}")
    vocab = student_logits.size(-1)
    s = student_logits.reshape(-1, vocab).float()
    ce = models.next_token_loss(s, targets)
    if alpha == 0.0:
        return ce
    t = teacher_logits.reshape(-1, vocab).float().detach()
    kl = nn.functional.kl_div(nn.functional.log_softmax(s / temperature, -1),
                              nn.functional.log_softmax(t / temperature, -1),
                              log_target=True, reduction="batchmean")
    return (1 - alpha) * ce + alpha * temperature ** 2 * kl


def distilled_config(student: train.TrainConfig, teacher_key: str, alpha: float = 0.5,
                     temperature: float = 2.0) -> train.TrainConfig:
    """The config of ``student`` distilled from the teacher run ``teacher_key``: same recipe,
    seed and budget, family ``distil-<family>``, the distillation settings in the key."""
    if student.family.startswith(PREFIX):
        raise ValueError(f"{student.family!r} is already a distillation family; pass the "
                         "student's own config")
    own = dict(student.build_kwargs)
    clash = set(own) & set(_OWN_KEYS)
    if clash:
        raise ValueError(f"build_kwargs {sorted(clash)} are reserved for distillation")
    own.update(teacher=str(teacher_key), alpha=float(alpha), temperature=float(temperature))
    return dataclasses.replace(student, family=PREFIX + student.family, build_kwargs=own)


def _factory(teacher: nn.Module | None):
    def build(config: train.TrainConfig, vocab_size: int) -> nn.Module:
        kw = dict(config.build_kwargs)
        alpha, temperature = kw.pop("alpha"), kw.pop("temperature")
        kw.pop("teacher")
        net = models.build(config.family[len(PREFIX):], vocab_size, config.d_model,
                           config.n_layers, n_heads=config.n_heads, context=config.context, **kw)

        def training_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            logits = _logits(net(input_ids=x))
            if not net.training or teacher is None:
                if net.training:
                    raise RuntimeError("this distilled run is not finished and was loaded "
                                       "without its teacher; call distil(teacher, ...)")
                return models.next_token_loss(logits, y)
            with torch.no_grad():
                target = _logits(teacher(input_ids=x))
            return distillation_loss(logits, target, y, alpha, temperature)

        net.training_loss = training_loss  # the trainer's hook (not a submodule: no weights)
        return net
    return build


def _logits(out: Any) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.logits


def distil(teacher: nn.Module | None, teacher_key: str, student: train.TrainConfig, *,
           alpha: float = 0.5, temperature: float = 2.0, **train_kwargs: Any) -> train.TrainedModel:
    """Train ``student`` (a plain config, as trained alone) distilled from ``teacher``, or load
    the cached run (``teacher`` may then be None). ``teacher_key`` names the teacher's run
    (``TrainConfig.key``); it keys the cache, so two teachers never share a student."""
    config = distilled_config(student, teacher_key, alpha, temperature)
    if teacher is not None:
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    elif not (train.run_dir(config) / "complete.json").is_file():
        raise ValueError(f"no finished distilled run {config.name}; pass the teacher model")
    return train.train(config, model_factory=_factory(teacher), **train_kwargs)
