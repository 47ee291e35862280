"""CAAT reuses an eval-mode clean forward as its attacks' KL target (methods/caat.py `eval_logits`): the same
adversaries as a separate target forward, one forward fewer, and never where the forward's mode differs."""
from __future__ import annotations

import torch
from torch import nn

import methods.caat as caat

C = 10


def _bn_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, C))


def _inputs():
    g = torch.Generator().manual_seed(1)
    return torch.rand(16, 1, 28, 28, generator=g), torch.arange(16) % C


def _attack(model, x, y, rows, anti, logits=None):
    torch.manual_seed(3)
    return caat.adversaries(model, x, y, torch.full((16,), 0.1), 0.025, 3, rows, anti, "eval", logits)


def test_reused_target_gives_the_same_adversaries_with_one_forward_fewer():
    model, (x, y) = _bn_model().eval(), _inputs()
    everyone = torch.arange(16)
    logits = model(x)
    calls = []
    model.register_forward_hook(lambda m, a, o: calls.append(len(a[0])))
    fresh = _attack(model, x, y, everyone, everyone)
    assert len(calls) == 1 + 3  # the target's forward and 3 steps
    calls.clear()
    reused = _attack(model, x, y, everyone, everyone, caat.eval_logits(model, logits, "eval"))
    assert len(calls) == 3
    for a, b in zip(fresh, reused):
        assert torch.equal(a, b)
    calls.clear()
    partial = _attack(model, x, y, torch.arange(10), torch.arange(6, 16), logits)  # min_weight > 0: own forward
    assert len(calls) == 1 + 3
    for a, b in zip(partial, _attack(model, x, y, torch.arange(10), torch.arange(6, 16))):
        assert torch.equal(a, b)


def test_no_reuse_where_the_forward_mode_differs_from_the_attacks():
    model, (x, _) = _bn_model(), _inputs()
    logits = model(x)
    assert caat.eval_logits(model.train(), logits, "eval") is None  # a train-mode forward is not the eval target
    model.eval()
    model[2].train()  # one module left in train mode
    assert caat.eval_logits(model, logits, "eval") is None
    assert caat.eval_logits(model.eval(), logits, "train") is None  # a train-mode attack moves BN statistics
    assert caat.eval_logits(model, logits, "eval") is logits
