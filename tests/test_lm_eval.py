"""resonance.lm_eval: agreement and ensemble loss on hand-made logits."""

import math

import pytest
import torch

from resonance import lm_eval


def test_agreement_and_ensemble():
    a = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    b = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    target = torch.tensor([0, 1])
    assert lm_eval.top1_agreement(a, b) == 0.5
    assert lm_eval.top1_agreement(a, a) == 1.0
    # the ensemble of a model with itself is the model
    assert math.isclose(lm_eval.ensemble_loss(a, a, target), lm_eval.next_token_loss(a, target),
                        rel_tol=1e-6)
    mean = torch.log_softmax((a + b) / 2, -1)
    assert math.isclose(lm_eval.ensemble_loss(a, b, target),
                        float(-(mean[0, 0] + mean[1, 1]) / 2), rel_tol=1e-6)
    with pytest.raises(ValueError, match="share a tokenizer"):
        lm_eval.top1_agreement(a, a[:, :2])


def test_windows_are_too_short_is_named():
    with pytest.raises(ValueError, match="less than one window"):
        lm_eval.eval_windows("kjv", 4096, context=128, n_tokens=64)
