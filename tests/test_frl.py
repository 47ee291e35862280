"""FRL's constraint machinery and losses on constructed per-class errors; Baseline ReWeight's weights."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import methods.fairness.baseline_reweight as baseline_reweight
import methods.fairness.frl as frl
from bench.attacks import kl_per_sample
from bench.data import Split
from methods import Batch, MethodContext, build_method
from methods.fairness.constraints import ClassErrors, class_weights, margin_factors, project

C = 4


def _ctx():
    meta = Split(torch.zeros((8, 1, 2, 2), dtype=torch.uint8), torch.arange(8) % C)
    return MethodContext(num_classes=C, eps=0.1, step_size=0.025, attack_steps=2, epochs=5, steps_per_epoch=1,
                         class_counts=(2,) * C, heldout={"meta": meta}, device=torch.device("cpu"),
                         fidelity="paper", new_model=lambda: nn.Linear(4, C))


def _errors(nat, bdy, rob=None):
    nat, bdy = torch.tensor(nat), torch.tensor(bdy)
    rob = nat + bdy if rob is None else torch.tensor(rob)
    return ClassErrors(nat, bdy, rob, float(nat.mean()), float(bdy.mean()), float(rob.mean()))


def test_projection_clips_negatives_and_caps_the_sum():
    torch.testing.assert_close(project(torch.tensor([-1.0, 0.2, 0.1]), 0.5), torch.tensor([0.0, 0.2, 0.1]))
    torch.testing.assert_close(project(torch.tensor([0.6, 0.4]), 0.5), torch.tensor([0.3, 0.2]))


def test_weights_are_uniform_at_zero_and_sum_to_one():
    torch.testing.assert_close(class_weights(torch.zeros(C)), torch.full((C,), 1 / C))
    w = class_weights(torch.tensor([0.3, 0.0, 0.1, 0.0]))
    assert float(w.sum()) == pytest.approx(1.0) and int(w.argmax()) == 0
    torch.testing.assert_close(margin_factors(torch.tensor([-1.0, 0.0, 0.2, 5.0]), 2.5),
                               torch.tensor([0.98, 1.0, float(torch.exp(torch.tensor(0.4))), 2.5]))


@pytest.mark.parametrize("name,moves_weights,moves_margin", [
    ("frl_rw", True, False), ("frl_rm", False, True), ("frl_rwrm", True, True)])
def test_a_class_worse_than_average_gains_weight_or_budget(name, moves_weights, moves_margin, monkeypatch):
    # class 2 exceeds the average natural and boundary error by 0.3 (> τ); the others are below average
    errors = _errors([0.1, 0.1, 0.4, 0.1], [0.1, 0.1, 0.4, 0.1])
    monkeypatch.setattr(frl, "class_errors", lambda *a, **k: errors)
    method = build_method(name, {}, _ctx())
    method.on_epoch_start(None, 0)
    assert int(method.w_ce.argmax()) == 2  # every variant reweights the natural term
    assert (int(method.w_kl.argmax()) == 2) == moves_weights
    assert bool(method.class_eps[2] > 0.1) == moves_margin
    assert float(method.class_eps.min()) >= 0.098 - 1e-7  # other classes never go below 0.98ε
    assert float(method.w_ce.sum()) == pytest.approx(1.0)


def test_rho_is_halved_every_40_epochs(monkeypatch):
    monkeypatch.setattr(frl, "class_errors", lambda *a, **k: _errors([0.1] * C, [0.1] * C))
    method = build_method("frl_rw", {}, _ctx())
    for epoch in range(81):
        method.on_epoch_start(None, epoch)
    assert method.constraints.rho == pytest.approx(0.05 / 4)


@pytest.mark.parametrize("name,scale", [("frl_rw", 1.0), ("frl_rm", 0.5)])
def test_uniform_weights_give_trades_loss(name, scale):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, C))
    method = build_method(name, {}, _ctx())
    batch = Batch(torch.rand(6, 1, 2, 2), torch.arange(6) % C, torch.arange(6), 0, 0)
    torch.manual_seed(1)
    out = method.loss(model, batch, None)
    torch.manual_seed(1)
    from bench.attacks import pgd
    x_adv = pgd(model, batch.x, batch.y, eps=0.1, step_size=0.025, steps=2, init="normal", loss="kl")
    ln, la = model(batch.x), model(x_adv)
    beta = method.hp.beta
    trades = F.cross_entropy(ln, batch.y) + beta * kl_per_sample(ln, la).mean()
    torch.testing.assert_close(out.loss, scale * trades)


def test_baseline_reweight_upweights_the_class_with_the_largest_robust_error(monkeypatch):
    monkeypatch.setattr(baseline_reweight, "class_errors",
                        lambda *a, **k: _errors([0.1] * C, [0.1] * C, rob=[0.2, 0.6, 0.2, 0.2]))
    method = build_method("baseline_reweight", {}, _ctx())
    method.on_epoch_start(None, 0)
    assert int(method.weights.argmax()) == 1 and float(method.weights.sum()) == pytest.approx(1.0)
    torch.testing.assert_close(method.class_eps, torch.full((C,), 0.1))  # budget never changes
