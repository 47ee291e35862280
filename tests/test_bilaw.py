"""BiLAW's variants: the hypergradient of ω_μ equals finite differences of L_val(θ̃(μ)) (both look-aheads), learned
weights are a weighted average, uniform weights reduce BiLAW-TRADES to TRADES, the non-parametric weights are the
clamped gradient alignments, and a training step meta-updates μ without touching the model."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.attacks import pgd
from bench.data import Split
from methods import MethodContext, build_method
from methods.core.base import Batch
from methods.bilaw.bilaw_meta import weight_inputs

C, SIDE, LR, MOMENTUM, WD = 3, 4, 0.5, 0.9, 5e-4


def _ctx(attack_steps=2, heldout=True):
    g = torch.Generator().manual_seed(1)
    val = Split(torch.randint(0, 256, (24, 1, SIDE, SIDE), dtype=torch.uint8, generator=g),
                torch.randint(0, C, (24,), generator=g))
    return MethodContext(num_classes=C, eps=0.1, step_size=0.025, attack_steps=attack_steps, epochs=2,
                         steps_per_epoch=1, class_counts=(4, 4, 4), heldout={"val_meta": val} if heldout else {},
                         device=torch.device("cpu"), fidelity="paper", new_model=_model, batch_size=8, seed=0)


def _model():
    return nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 6), nn.Tanh(), nn.Linear(6, C))


def _optimizer(model, x, y):
    """The run's SGD with momentum and weight decay, after one real step (so momentum buffers exist)."""
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    F.cross_entropy(model(x), y).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return opt


def _data(n, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, SIDE, SIDE, generator=g, dtype=dtype), torch.randint(0, C, (n,), generator=g)


@pytest.mark.parametrize("mode", ["plain", "optimizer"])
def test_hypergradient_matches_finite_differences_of_the_lookahead_validation_loss(mode):
    torch.manual_seed(0)
    method = build_method("bilaw", {"hidden": "5", "lookahead": mode}, _ctx())
    net = method.learner.net.double()
    model = _model().double()
    (x_adv, y), (x_val_adv, y_val) = _data(10, torch.float64), _data(8, torch.float64, seed=1)
    opt = _optimizer(model, x_adv, y)
    logits = model(x_adv)
    robust = F.cross_entropy(logits, y, reduction="none")
    inputs = weight_inputs("margin_vector", logits, y).double()
    analytic, _ = method.learner.hypergradient(model, opt, inputs, lambda w: (w * robust).sum(), x_val_adv, y_val,
                                               method.hp.lookahead)

    def val_loss_after_a_real_step() -> float:
        """L_val after a real torch.optim.SGD step on Σ w_i ℓ_i, w = ω_μ(Δ)/Σ ω_μ(Δ)."""
        with torch.no_grad():
            raw = net(inputs).squeeze(1)
        stepped = copy.deepcopy(model)
        if mode == "plain":
            step = torch.optim.SGD(stepped.parameters(), lr=LR)
        else:
            step = torch.optim.SGD(stepped.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
            step.load_state_dict(copy.deepcopy(opt.state_dict()))  # its step must not move our buffers
        (raw / raw.sum() * F.cross_entropy(stepped(x_adv), y, reduction="none")).sum().backward()
        step.step()
        return F.cross_entropy(stepped(x_val_adv), y_val).item()

    h = 1e-6
    for p, grad in zip(net.parameters(), analytic):
        numeric = torch.zeros_like(p)
        for i in range(p.numel()):
            values = []
            for shift in (h, -2 * h):
                with torch.no_grad():
                    p.view(-1)[i] += shift
                values.append(val_loss_after_a_real_step())
            with torch.no_grad():
                p.view(-1)[i] += h
            numeric.view(-1)[i] = (values[0] - values[1]) / (2 * h)
        torch.testing.assert_close(grad, numeric, rtol=1e-5, atol=1e-10)
    assert max(g.abs().max() for g in analytic) > 1e-6, "the test needs a non-trivial hypergradient"


@pytest.mark.parametrize("kind", ["margin_vector", "margin", "robust_loss", "loss_gap"])
def test_learned_weights_are_non_negative_and_sum_to_one(kind):
    method = build_method("bilaw", {"weight_input": kind, "hidden": "64-64"}, _ctx())
    logits_adv, logits_clean = 5 * torch.randn(32, C), 5 * torch.randn(32, C)
    w = method.learner.net.weights(weight_inputs(kind, logits_adv, torch.randint(0, C, (32,)), logits_clean))
    assert w.shape == (32,) and bool((w >= 0).all())
    torch.testing.assert_close(w.sum(), torch.tensor(1.0))


def test_weight_inputs_are_the_margins_and_losses_they_name():
    logits, y = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, -1.0]]), torch.tensor([2, 0])
    p = logits.softmax(1)
    delta = weight_inputs("margin_vector", logits, y)
    torch.testing.assert_close(delta[0], p[0, 2] - p[0])
    assert delta[1, 0] == 0 and delta[1, 1] < 0  # zero at the true class, negative where misclassified
    torch.testing.assert_close(weight_inputs("margin", logits, y)[:, 0],
                               torch.stack([p[0, 2] - p[0, 0], p[1, 0] - p[1, 1]]))
    clean = torch.zeros(2, C)
    gap = weight_inputs("loss_gap", logits, y, clean)[:, 0]
    torch.testing.assert_close(gap, F.cross_entropy(logits, y, reduction="none") - torch.log(torch.tensor(3.0)))


def test_bilaw_trades_with_uniform_weights_is_trades():
    ctx = _ctx()
    bilaw = build_method("bilaw_trades", {"meta_lr": "0"}, ctx)  # μ stays where the test puts it
    with torch.no_grad():
        bilaw.learner.net[-2].weight.zero_()  # constant ω_μ → uniform weights
    trades = build_method("trades", {"beta": "6"}, ctx)
    torch.manual_seed(0)
    model = _model()
    x, y = _data(8)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    torch.manual_seed(3)
    ours = bilaw.loss(model, Batch(x, y, torch.arange(8), 0, 0), opt)
    torch.manual_seed(3)  # the same TRADES adversaries (drawn first in both)
    theirs = trades.loss(model, Batch(x, y, torch.arange(8), 0, 0), opt)
    torch.testing.assert_close(ours.loss, theirs.loss)
    torch.testing.assert_close(ours.stats["w_max_rel"], torch.tensor(1.0))


def test_nonparametric_weights_are_clamped_gradient_alignments():
    torch.manual_seed(0)
    method = build_method("bilaw_np", {}, _ctx())
    model = _model().double()
    (x_adv, y), (x_val_adv, y_val) = _data(12, torch.float64), _data(8, torch.float64, seed=1)
    opt = _optimizer(model, x_adv, y)  # momentum and wd exist but the plain look-ahead ignores them
    robust = F.cross_entropy(model(x_adv), y, reduction="none")
    w = method.contribution_weights(model, opt, robust, x_val_adv, y_val)

    params = list(model.parameters())
    flat = lambda grads: torch.cat([g.flatten() for g in grads])  # noqa: E731
    g_val = flat(torch.autograd.grad(F.cross_entropy(model(x_val_adv), y_val), params))
    c = torch.stack([LR * g_val @ flat(torch.autograd.grad(F.cross_entropy(model(x_adv[j:j + 1]), y[j:j + 1]), params))
                     for j in range(12)])
    assert bool((c > 0).any()) and bool((c < 0).any()), "the test needs helpful and harmful samples"
    torch.testing.assert_close(w, c.clamp_min(0) / c.clamp_min(0).sum(), rtol=1e-9, atol=1e-12)


def test_nonparametric_weights_fall_back_to_uniform_when_no_sample_helps():
    method = build_method("bilaw_np", {}, _ctx())
    model = _model()
    (x, _), (x_val, y_val) = _data(6), _data(4, seed=1)
    flat_loss = 0 * model(x).sum(1)  # no sample moves θ, so none can help the validation loss
    w = method.contribution_weights(model, torch.optim.SGD(model.parameters(), lr=LR), flat_loss, x_val, y_val)
    torch.testing.assert_close(w, torch.full((6,), 1 / 6))


@pytest.mark.parametrize("name", ["bilaw", "bilaw_trades"])
def test_a_training_step_meta_updates_mu_and_leaves_the_model_alone(name):
    torch.manual_seed(0)
    method = build_method(name, {}, _ctx())
    model = _model()
    x, y = _data(8)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    mu = [p.detach().clone() for p in method.learner.net.parameters()]
    theta = copy.deepcopy(model.state_dict())
    out = method.loss(model, Batch(x, y, torch.arange(8), 0, 0), opt)
    assert any(not torch.equal(a, b) for a, b in zip(mu, method.learner.net.parameters())), "μ did not move"
    assert all(torch.equal(theta[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters()), "the meta step must not write the model's .grad"
    out.loss.backward()  # the training graph survived the meta step
    assert all(p.grad is not None for p in model.parameters())


def test_joint_attack_equals_separate_training_and_validation_attacks():
    ctx = _ctx(attack_steps=3)
    method, twin = build_method("bilaw", {}, ctx), build_method("bilaw", {}, ctx)  # same validation stream
    model = _model()
    x, y = _data(8)
    torch.manual_seed(5)
    x_adv, x_val_adv, y_val = method.robust_adversaries(model, Batch(x, y, torch.arange(8), 0, 0))
    torch.manual_seed(5)
    attack = dict(step_size=ctx.step_size, steps=3, init="uniform")
    separate = pgd(model, x, y, eps=ctx.eps, **attack)
    x_val, y_val_twin = twin.val_batches.next()
    torch.testing.assert_close(x_adv, separate)
    torch.testing.assert_close(x_val_adv, pgd(model, x_val, y_val_twin, eps=ctx.eps, **attack))
    assert torch.equal(y_val, y_val_twin)


@pytest.mark.parametrize("overrides,match", [({"hidden": "64-x"}, "hidden='64-x'"), ({"hidden": "0"}, "hidden='0'"),
                                             ({"val_attack_steps": "-2"}, "val_attack_steps=-2"),
                                             ({"meta_lr": "-1"}, "meta_lr=-1")])
def test_bad_hyperparameters_are_refused(overrides, match):
    with pytest.raises(ValueError, match=match):
        build_method("bilaw", overrides, _ctx())


def test_a_run_without_the_validation_split_is_told_how_to_get_it():
    with pytest.raises(ValueError, match="--heldout bilaw"):
        build_method("bilaw_np", {}, _ctx(heldout=False))


def _meta_step(overrides):
    """(μ before, the hypergradient, μ after) of one `learned_weights` meta step on a tiny batch."""
    method = build_method("bilaw", {"hidden": "5", **overrides}, _ctx())
    model = _model().double()
    method.learner.net.double()
    (x_adv, y), (x_val_adv, y_val) = _data(10, torch.float64), _data(8, torch.float64, seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    robust = F.cross_entropy(model(x_adv), y, reduction="none")
    inputs = weight_inputs("margin_vector", model(x_adv), y).double()
    before = [p.detach().clone() for p in method.learner.net.parameters()]
    grads, _ = method.learner.hypergradient(model, opt, inputs, lambda w: (w * robust).sum(), x_val_adv, y_val,
                                            "plain")
    method.learned_weights(model, opt, inputs, lambda w: (w * robust).sum(), x_val_adv, y_val)
    return before, grads, [p.detach() for p in method.learner.net.parameters()]


def test_the_default_meta_step_is_alg1_line6_plain_gradient_step():
    before, grads, after = _meta_step({"meta_lr": "0.5"})
    for b, g, a in zip(before, grads, after):
        torch.testing.assert_close(a, b - 0.5 * g, rtol=1e-12, atol=1e-15)


def test_adam_stays_selectable_with_mwnets_weight_decay():
    before, grads, after = _meta_step({"meta_opt": "adam", "meta_lr": "0.5"})
    for b, g, a in zip(before, grads, after):  # Adam's first step: lr·ĝ/(|ĝ| + eps), ĝ = g + 1e-4·μ
        g = g + 1e-4 * b
        torch.testing.assert_close(a, b - 0.5 * g / (g.abs() + 1e-8), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["bilaw", "bilaw_trades"])
def test_margin_on_clean_feeds_omega_the_clean_inputs_margin(name):
    """Eq. 8: w_i = ω_μ(Δ_i) with Δ the margin of f_θ at x_i (μ frozen by meta_lr=0, so the loss shows w)."""
    method = build_method(name, {"margin_on": "clean", "meta_lr": "0"}, _ctx())
    torch.manual_seed(0)
    model = _model()
    x, y = _data(8)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    torch.manual_seed(3)
    out = method.loss(model, Batch(x, y, torch.arange(8), 0, 0), opt)
    with torch.no_grad():
        logits_clean = model(x)
        w_clean = method.learner.net.weights(weight_inputs("margin_vector", logits_clean, y))
        w_adv = method.learner.net.weights(weight_inputs("margin_vector", out.logits, y))
        if name == "bilaw":
            expected = (w_clean * F.cross_entropy(out.logits, y, reduction="none")).sum()
        else:
            expected = (F.cross_entropy(logits_clean, y)
                        + 6 * (w_clean * F.kl_div(F.log_softmax(out.logits, 1), F.log_softmax(logits_clean, 1),
                                                  reduction="none", log_target=True).sum(1)).sum())
    assert not torch.allclose(w_clean, w_adv), "the test needs the clean and adversarial margins to differ"
    torch.testing.assert_close(out.loss.detach(), expected)


def test_margin_on_clean_is_refused_for_loss_inputs():
    with pytest.raises(ValueError, match="margin_on='clean'.*'robust_loss'"):
        build_method("bilaw", {"margin_on": "clean", "weight_input": "robust_loss"}, _ctx())
