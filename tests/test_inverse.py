"""Inverse adversaries (IAT / UIAT / UIAT one-off / +uiat) and the single-step family (RS-FGSM, N-FGSM, GradAlign)."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.attacks import pgd
from bench.attacks.losses import kl_per_sample, kl_to_target
from methods import Batch, MethodContext, build_method
from methods.standard.gradalign import input_gradients, misalignment
from methods.inverse.universal_inverse import TargetMemory, UniversalInverse, anchors, inverse_loss

EPS = 0.1  # F-MNIST budget: ε′ = α′ = 0.05 for the universal perturbation
N = 64


def _ctx(epochs=4, train_size=N):
    counts = [train_size // 10] * 10
    counts[0] += train_size - sum(counts)
    return MethodContext(num_classes=10, eps=EPS, step_size=EPS / 4, attack_steps=3, epochs=epochs, steps_per_epoch=1,
                         class_counts=tuple(counts), heldout={}, device=torch.device("cpu"), fidelity="paper",
                         new_model=lambda: None, image_shape=(1, 28, 28), seed=0)


@pytest.fixture
def data(trained_tiny_cnn):
    model, x, y = trained_tiny_cnn
    return copy.deepcopy(model), x[:N], y[:N]


def _batch(x, y, epoch):
    return Batch(x, y, torch.arange(len(y)), epoch, 0)


def test_universal_perturbation_is_shared_per_class_and_stays_in_its_ball(data):
    model, x, y = data
    present = y != 3
    x, y = x[present], y[present]  # class 3 absent: its perturbation must not move
    universal = UniversalInverse(_ctx(), radius=0.05, step_size=0.03, beta=1.0, bn_mode="eval")
    z0 = universal.z.clone()
    for _ in range(20):
        universal.probs(model, x, y, pgd(model, x, y, eps=EPS, step_size=0.025, steps=2))
    assert universal.z.abs().max() <= 0.05 + 1e-7
    assert (universal.z.abs() == 0.05).any(), "many steps of 0.03 must reach the ε′ boundary"
    assert torch.equal(universal.z[3], z0[3]) and not torch.equal(universal.z[y[0]], z0[y[0]])
    x_inv = universal.apply(x, y)
    unclipped = (x_inv > 0) & (x_inv < 1)
    shift = universal.z[y].expand_as(x)
    assert torch.allclose((x_inv - x)[unclipped], shift[unclipped], atol=1e-6)  # one z_c for every sample of c
    assert x_inv.min() >= 0 and x_inv.max() <= 1


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_universal_step_lowers_each_class_inverse_loss(data, beta):
    model, x, y = data
    universal = UniversalInverse(_ctx(), radius=0.05, step_size=0.01, beta=beta, bn_mode="eval")
    anchor = anchors(model, x, pgd(model, x, y, eps=EPS, step_size=0.025, steps=3), beta)

    def per_class():
        with torch.no_grad():
            loss = inverse_loss(model, universal.apply(x, y), y, beta, anchor)
        return torch.zeros(10).index_add_(0, y, loss)

    before = per_class()
    universal.step(model, x, y, anchor)
    after = per_class()
    for c in y.unique():
        assert after[c] < before[c], f"class {int(c)}: {before[c]:.4f} -> {after[c]:.4f}"


def test_target_memory_copies_then_blends_and_copies_first_visits():
    memory = TargetMemory(4, 3, torch.device("cpu"))
    p1, p2 = torch.softmax(torch.randn(2, 3), 1), torch.softmax(torch.randn(4, 3), 1)
    memory.store(torch.tensor([0, 1]), p1, momentum=0.9)  # never stored: a copy even with momentum on
    torch.testing.assert_close(memory.recall(torch.tensor([0, 1])), p1)
    out = memory.store(torch.arange(4), p2, momentum=0.9)
    torch.testing.assert_close(out[:2], 0.9 * p1 + 0.1 * p2[:2])
    torch.testing.assert_close(out[2:], p2[2:])
    torch.testing.assert_close(memory.recall(torch.arange(4)), out)


def test_uiat_target_is_a_copy_before_T_and_momentum_from_T(data, monkeypatch):
    model, x, y = data
    method = build_method("uiat", {"momentum_start": "0.5", "gamma": "0.8"}, _ctx(epochs=4))  # T = 2nd epoch: 0-based 1
    fresh = [torch.softmax(torch.randn(N, 10), 1) for _ in range(4)]
    expected = []
    for epoch, p_new in enumerate(fresh):
        monkeypatch.setattr(method.inverse, "probs", lambda *args, p=p_new: p)
        out = method.loss(model, _batch(x, y, epoch), None)
        expected.append(p_new if epoch < 1 else 0.8 * expected[-1] + 0.2 * p_new)
        torch.testing.assert_close(method.memory.recall(torch.arange(N)), expected[-1])
        # the KL of the loss is taken to exactly that target
        torch.testing.assert_close(out.stats["kl"], kl_to_target(out.logits.detach().float(), expected[-1]))


@pytest.mark.parametrize("name,prefix", [("uiat_oneoff", ""), ("nfgsm+uiat", "uiat.")])
def test_one_off_target_is_clean_before_made_at_and_frozen_after_T_prime(data, name, prefix):
    model, x, y = data
    method = build_method(name, {prefix + "start_fraction": "0.6"}, _ctx(epochs=3))  # T′ = 1.8 from 1: 0-based 1
    owner = method.addons["uiat"] if prefix else method
    kl = (lambda out: out.stats["uiat_kl"]) if prefix else (lambda out: out.stats["kl"])
    z0 = owner.inverse.z.clone()

    out = method.loss(model, _batch(x, y, 0), None)  # before T′: KL(p(x) ‖ p(x̂)), gradient through p(x)
    torch.testing.assert_close(kl(out), kl_per_sample(model(x), out.logits).mean().detach())
    assert torch.equal(owner.inverse.z, z0) and not owner.target.memory.stored.any()

    method.loss(model, _batch(x, y, 1), None)  # T′: one step on z, p(x̃) stored
    assert not torch.equal(owner.inverse.z, z0)
    stored = owner.target.memory.recall(torch.arange(N)).clone()
    torch.testing.assert_close(stored, torch.softmax(model(owner.inverse.apply(x, y)), 1))
    method.on_epoch_end(model, 1, [0.0] * 10)

    z_frozen = owner.inverse.z.clone()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # the model moves on; the target must not
    out = method.loss(model, _batch(x, y, 2), None)
    assert torch.equal(owner.inverse.z, z_frozen)
    assert torch.equal(owner.target.memory.recall(torch.arange(N)), stored)
    torch.testing.assert_close(kl(out), kl_to_target(out.logits.detach().float(), stored))


def test_one_off_refuses_an_epoch_that_skipped_samples(data):
    model, x, y = data
    method = build_method("uiat_oneoff", {"start_fraction": "0"}, _ctx(epochs=2, train_size=2 * N))
    method.loss(model, _batch(x, y, 0), None)  # only the first half of the training set
    with pytest.raises(RuntimeError, match="64 training samples have no stored"):
        method.on_epoch_end(model, 0, [0.0] * 10)


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_iat_inverse_examples_stay_in_the_ball_and_lower_the_loss(data, beta):
    model, x, y = data
    method = build_method("iat", {"beta": str(beta)}, _ctx())
    x_adv = method.adversary(model, _batch(x, y, 0))
    x_inv = method.inverse.examples(model, x, y, x_adv)
    assert (x_inv - x).abs().max() <= 0.5 * EPS + 1e-6 and x_inv.min() >= 0 and x_inv.max() <= 1
    assert (x_inv - x).abs().max() > 0.4 * EPS  # 5 steps of ε/4 really move
    with torch.no_grad():
        ce_inv = F.cross_entropy(model(x_inv), y, reduction="none")
        ce_clean = F.cross_entropy(model(x), y, reduction="none")
    assert ce_inv.mean() < 0.5 * ce_clean.mean()
    assert (ce_inv <= ce_clean + 1e-4).float().mean() > 0.9


class _LastInput(nn.Module):
    """Wraps a model and keeps the input of its latest forward (the method's training examples)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, u):
        self.last = u.detach()
        return self.model(u)


def test_nfgsm_examples_leave_the_eps_ball_but_stay_within_k_plus_one_eps(data):
    model, x, y = data
    recorder = _LastInput(model)
    method = build_method("nfgsm", {}, _ctx())
    method.loss(recorder, _batch(x, y, 0), None)
    linf = (recorder.last - x).flatten(1).abs().amax(1)
    assert (linf > EPS + 1e-3).float().mean() > 0.5, "N-FGSM does not project back to the ε-ball"
    assert linf.max() <= 3 * EPS + 1e-6


def test_rs_fgsm_examples_stay_in_the_eps_ball(data):
    model, x, y = data
    recorder = _LastInput(model)
    build_method("rs_fgsm", {}, _ctx()).loss(recorder, _batch(x, y, 0), None)
    linf = (recorder.last - x).flatten(1).abs().amax(1)
    assert linf.max() <= EPS + 1e-6 and (linf > 0.99 * EPS).float().mean() > 0.5


def test_misalignment_is_one_minus_mean_cosine_over_nonzero_gradients():
    g = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, 0.0]])
    g_noisy = torch.tensor([[2.0, 0.0], [0.0, -1.0], [0.0, 1.0], [1.0, 1.0]])
    # cosines 1, −1, 0; the fourth sample (zero clean gradient) is left out
    torch.testing.assert_close(misalignment(g, g_noisy), torch.tensor(1.0))
    assert misalignment(torch.zeros(2, 3), torch.ones(2, 3)) == 0


def test_gradalign_regulariser_vanishes_for_parallel_gradients():
    torch.manual_seed(0)
    linear = nn.Linear(6, 2)  # two-class linear model: ∇_x CE = (p_1 − [y=1])·(w_1 − w_0), one direction for all x
    x, y = torch.rand(16, 6), torch.randint(0, 2, (16,))
    x_noisy = x + EPS * (2 * torch.rand_like(x) - 1)
    reg = misalignment(input_gradients(linear, x, y, False), input_gradients(linear, x_noisy, y, True))
    assert reg.abs() < 1e-6


def test_gradalign_regulariser_is_differentiated_through_the_noisy_gradient_only():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    x, y = torch.rand(10, 5, dtype=torch.float64), torch.randint(0, 3, (10,))
    x_noisy = x + 0.3 * (2 * torch.rand_like(x) - 1)
    g = input_gradients(model, x, y, False)  # a constant, as in the official code
    assert not g.requires_grad
    weight = model[0].weight

    def reg():
        return misalignment(g, input_gradients(model, x_noisy, y, True))

    analytic, = torch.autograd.grad(reg(), weight)
    assert analytic.abs().max() > 1e-4, "the regulariser must reach the parameters (second order)"
    numeric = torch.zeros_like(weight)
    h = 1e-6
    for i in range(weight.numel()):
        with torch.no_grad():
            weight.view(-1)[i] += h
        up = reg().detach()
        with torch.no_grad():
            weight.view(-1)[i] -= 2 * h
        down = reg().detach()
        with torch.no_grad():
            weight.view(-1)[i] += h
        numeric.view(-1)[i] = (up - down) / (2 * h)
    torch.testing.assert_close(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_gradalign_lambda_follows_eps():
    for eps, lam in ((6 / 255, 0.112), (8 / 255, 0.2), (0.031, 0.2), (10 / 255, 0.356), (0.1, 0.2)):
        ctx = _ctx()
        ctx.eps = eps
        assert build_method("gradalign", {}, ctx).lam == lam
    assert build_method("gradalign", {"lam": "0.5"}, _ctx()).lam == 0.5


@pytest.mark.parametrize("name,overrides,match", [
    ("uiat", {"inv_eps_ratio": "0"}, "inv_eps_ratio"),
    ("uiat", {"gamma": "1"}, "gamma"),
    ("uiat", {"momentum_start": "1.5"}, "momentum_start"),
    ("iat", {"beta": "-1"}, "beta"),
    ("iat", {"instance_steps": "-2"}, "steps"),
    ("uiat_oneoff", {"lam": "-1"}, "lam"),
    ("nfgsm+uiat", {"uiat.start_fraction": "-0.1"}, "uiat.start_fraction"),
    ("nfgsm", {"alpha_ratio": "0"}, "alpha_ratio"),
])
def test_bad_hyperparameters_are_refused(name, overrides, match):
    with pytest.raises(ValueError, match=match):
        build_method(name, overrides, _ctx())
