"""resonance.distill: the loss, the cache key, and that a teacher actually transfers knowledge."""

from __future__ import annotations

import math

import pytest
import torch

from resonance import distill
from resonance import train as T
# the trainer tests' tiny synthetic-corpus config and their autouse cache/thread fixture
from test_train import cache, tiny  # noqa: F401


def test_loss_limits_and_values():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 5, 7, generator=g), torch.randn(3, 5, 7, generator=g)
    y = torch.randint(0, 7, (3, 5), generator=g)
    ce = torch.nn.functional.cross_entropy(s.reshape(-1, 7), y.reshape(-1))
    assert torch.allclose(distill.distillation_loss(s, t, y, alpha=0.0), ce)
    # matching the teacher exactly leaves only the (1 - alpha) cross-entropy
    assert torch.allclose(distill.distillation_loss(t, t, y, alpha=0.5), 0.5 *
                          torch.nn.functional.cross_entropy(t.reshape(-1, 7), y.reshape(-1)),
                          atol=1e-6)
    # the KL term by hand, at T = 2
    p = torch.softmax(t / 2, -1)
    kl = (p * (torch.log(p) - torch.log_softmax(s / 2, -1))).sum(-1).mean()
    assert math.isclose(float(distill.distillation_loss(s, t, y, 1.0, 2.0)), 4 * float(kl),
                        rel_tol=1e-5)


def test_bad_input_is_named():
    s = torch.zeros(2, 4)
    with pytest.raises(ValueError, match="share a tokenizer"):
        distill.distillation_loss(s, torch.zeros(2, 5), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="alpha"):
        distill.distillation_loss(s, s, torch.zeros(2, dtype=torch.long), alpha=1.5)
    with pytest.raises(ValueError, match="already a distillation family"):
        distill.distilled_config(distill.distilled_config(tiny(), "abc"), "abc")
    with pytest.raises(ValueError, match="pass the teacher"):
        distill.distil(None, "abc", tiny())


def test_key_separates_runs_and_teacher_transfers():
    teacher_run = T.train(tiny(d_model=32, tokens=4 * 16 * 120), progress=False)
    student = tiny(tokens=4 * 16 * 30)
    alone = T.train(student, progress=False)
    cfg = distill.distilled_config(student, teacher_run.config.key)
    assert cfg.key != student.key and cfg.family == "distil-gpt2"
    assert distill.distilled_config(student, "other").key != cfg.key
    run = distill.distil(teacher_run.model, teacher_run.config.key, student, alpha=0.9,
                         progress=False)
    # the checkpoints hold the student only (the teacher is not a submodule)
    assert run.model.state_dict().keys() == alone.model.state_dict().keys()
    # the history's val_loss is plain cross-entropy: recompute it on the final model
    windows = T._val_windows(T._synthetic_streams(64)[1], run.config)
    assert math.isclose(T.evaluate(run.model, windows), run.history.val_loss.iloc[-1],
                        rel_tol=1e-6)
    # a better-trained teacher helps a short student run on a learnable chain
    assert run.history.val_loss.iloc[-1] < alone.history.val_loss.iloc[-1]
    again = distill.distil(None, teacher_run.config.key, student, alpha=0.9, progress=False)
    assert torch.equal(next(iter(again.model.state_dict().values())),
                       next(iter(run.model.state_dict().values())))
