"""CAAT reuses an eval-mode clean forward as its attacks' KL target (methods/caat/caat.py `eval_logits`): the same
adversaries as a separate target forward, one forward fewer, and never where the forward's mode differs."""
from __future__ import annotations

import torch
from torch import nn

import methods.caat.caat as caat

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


def test_negligible_weights_are_zeroed_and_nothing_else_changes():
    w = torch.tensor([[1.0, 1e-40], [1 - 1e-7, 1e-7], [0.5, 0.5], [1.0, 1e-15], [1.0, 2e-14]])
    flushed = caat.flush_negligible(w)
    assert flushed[:, 1].tolist() == [0.0, w[1, 1].item(), 0.5, 0.0, w[4, 1].item()]
    assert torch.equal(flushed[:, 0], w[:, 0])


def _paper_step(monkeypatch, flush):
    import copy

    from bench.data import Split
    from methods import Batch, MethodContext, build_method
    from methods.fairness.constraints import ClassErrors

    z = torch.full((C,), 0.1)
    monkeypatch.setattr(caat, "class_errors", lambda *a, **k: ClassErrors(z, z, 2 * z, 0.1, 0.1, 0.2))
    flushed = []
    exact = caat.flush_negligible
    monkeypatch.setattr(caat, "flush_negligible", lambda w: (flushed.append(int((exact(w) != w).sum())),
                                                             exact(w) if flush else w)[1])
    g = torch.Generator().manual_seed(0)
    meta = Split(torch.randint(0, 256, (32, 1, 28, 28), dtype=torch.uint8, generator=g), torch.arange(32) % C)
    ctx = MethodContext(num_classes=C, eps=0.1, step_size=0.025, attack_steps=3, epochs=2, steps_per_epoch=2,
                        class_counts=(10,) * C, heldout={"meta": meta}, device=torch.device("cpu"),
                        fidelity="paper", new_model=None, batch_size=16)
    model = _bn_model()
    method = build_method("caat", {}, ctx)
    method.on_epoch_start(model, 0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = _inputs()
    for step in range(2):
        torch.manual_seed(step)
        out = method.loss(model, Batch(x, y, torch.arange(16), 0, step), optimizer)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert sum(flushed) > 0  # τ = 0.001 leaves negligible weights on this batch: the test compares something
    return copy.deepcopy(model.state_dict()), copy.deepcopy(method.net.state_dict()), out.stats["anti_share"]


def test_flushing_negligible_weights_changes_a_paper_step_only_by_rounding(monkeypatch):
    flushed = _paper_step(monkeypatch, flush=True)
    with monkeypatch.context() as m:
        exact = _paper_step(m, flush=False)
    for got, want in zip((*flushed[0].values(), *flushed[1].values()), (*exact[0].values(), *exact[1].values())):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    assert flushed[2] == exact[2]
