"""Attacks on a real (tiny, Fashion-MNIST-trained) model: bounds, direction of the loss, inits,
BN-mode handling, untouched gradients and RNG, single-step bounds and the AutoAttack wrapper."""
from __future__ import annotations

import random
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.attacks import (
    autoattack,
    cw_margin_loss,
    fgsm,
    install_robustbench_alias,
    kl_to_target,
    model_mode,
    n_fgsm,
    pgd,
    rs_fgsm,
)

EPS = 0.1  # Fashion-MNIST L∞ budget
TOL = 1e-6


@pytest.fixture(scope="module")
def batch(trained_tiny_cnn):
    model, x, y = trained_tiny_cnn
    return model, x[:128], y[:128]


def bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 28 * 28, 10)
    )


def per_sample_ce(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y, reduction="none")


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def dist(u, x, norm):
    d = (u - x).flatten(1)
    return d.abs().amax(1) if norm == "linf" else d.norm(dim=1)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("init", ["uniform", "normal", "none"])
def test_pgd_stays_in_per_sample_ball_and_box(batch, norm, init):
    model, x, y = batch
    scale = 1.0 if norm == "linf" else 15.0
    eps = torch.linspace(0, EPS * scale, x.shape[0])
    eps[::7] = 0.0
    u = pgd(model, x, y, eps=eps, step_size=eps / 4, steps=5, norm=norm, init=init)
    assert u.shape == x.shape and not u.requires_grad
    assert (dist(u, x, norm) <= eps + TOL).all()
    assert torch.equal(u[eps == 0], x[eps == 0])
    assert u.min() >= 0 and u.max() <= 1
    # a real attack uses the budget: most samples with ε > 0 end up on or near the sphere
    active = eps > 0
    assert (dist(u, x, norm)[active] > 0.5 * eps[active]).float().mean() > 0.9


def test_ascent_raises_and_descent_lowers_ce(batch):
    model, x, y = batch
    clean = per_sample_ce(model, x, y).mean()
    noise = per_sample_ce(model, (x + EPS * torch.randn_like(x).sign()).clamp(0, 1), y).mean()
    adv = pgd(model, x, y, eps=EPS, step_size=EPS / 4, steps=10)
    anti = pgd(model, x, y, eps=EPS, step_size=EPS / 4, steps=10, descent=True)
    assert per_sample_ce(model, adv, y).mean() > 3 * max(clean, noise)
    assert accuracy(model, adv, y) < accuracy(model, x, y) - 0.3
    assert per_sample_ce(model, anti, y).mean() < 0.5 * clean
    l2 = pgd(model, x, y, eps=2.0, step_size=0.5, steps=10, norm="l2")
    assert per_sample_ce(model, l2, y).mean() > 2 * clean


def margin(model, x, y):
    """Mean of z_y − max_{j≠y} z_j."""
    with torch.no_grad():
        z = model(x)
    return (z.gather(1, y[:, None]).squeeze(1) - z.scatter(1, y[:, None], float("-inf")).amax(1)).mean()


def test_cw_loss_lowers_margin_and_kappa_is_applied(batch):
    model, x, y = batch
    cw = lambda kappa: pgd(model, x, y, eps=EPS, step_size=EPS / 4, steps=10, loss="cw", kappa=kappa)  # noqa: E731
    adv0, adv50 = cw(0.0), cw(50.0)
    assert margin(model, adv0, y) < margin(model, x, y) - 2
    assert accuracy(model, adv0, y) < accuracy(model, x, y) - 0.3
    assert margin(model, adv50, y) < margin(model, adv0, y) - 2  # κ keeps pushing past the boundary
    z = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 5.0]])
    t = torch.tensor([0, 1])
    assert cw_margin_loss(z, t).item() == pytest.approx(-(2.0 + 0.0) / 2)
    assert cw_margin_loss(z, t, kappa=4.0).item() == pytest.approx(-(6.0 + 1.0) / 2)


def test_kl_loss_ascends_from_clean_and_descends_to_given_target(batch):
    model, x, y = batch
    with torch.no_grad():
        clean_p = F.softmax(model(x), 1)
    kl_of = lambda u, p: kl_to_target(model(u), p).item()  # noqa: E731
    with torch.no_grad():
        noise = kl_of((x + 0.001 * torch.randn_like(x)).clamp(0, 1), clean_p)
        adv = kl_of(pgd(model, x, y, eps=EPS, step_size=EPS / 4, steps=10, loss="kl", init="normal"), clean_p)
        target = torch.full_like(clean_p, 0.1)
        before = kl_of(x, target)
        toward = pgd(model, x, y, eps=EPS, step_size=EPS / 4, steps=10, loss="kl", target_probs=target, descent=True)
        after = kl_of(toward, target)
    assert adv > 0.3 and adv > 100 * noise
    assert after < 0.5 * before
    # batchmean convention: sum over classes and batch divided by n, not PyTorch's 'mean'
    p, z = torch.tensor([[0.5, 0.5], [1.0, 0.0]]), torch.zeros(2, 2)
    assert kl_to_target(z, p).item() == pytest.approx((0.0 + np.log(2)) / 2)


def test_callable_loss(batch):
    model, x, y = batch
    logit0 = lambda z, _y: z[:, 0].mean()  # noqa: E731
    adv = pgd(model, x, y, eps=EPS, step_size=EPS / 4, steps=10, loss=logit0)
    with torch.no_grad():
        z_adv, z = model(adv), model(x)
    assert z_adv[:, 0].mean() > z[:, 0].mean() + 2
    assert (z_adv.argmax(1) == 0).float().mean() > (z.argmax(1) == 0).float().mean() + 0.2


def test_normal_init_is_unclipped_and_follows_the_generator(batch):
    model, x, y = batch
    draw = lambda: pgd(model, x, y, eps=EPS, step_size=0.0, steps=0, init="normal",  # noqa: E731
                       generator=torch.Generator().manual_seed(3))
    u = draw()
    expected = x + 0.001 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    assert torch.equal(u, expected) and torch.equal(u, draw())
    assert u.min() < 0 and u.max() > 1  # Fashion-MNIST has exact 0 and 1 pixels: no box clip on u⁰
    stepped = pgd(model, x, y, eps=EPS, step_size=0.01, steps=1, init="normal")
    assert stepped.min() >= 0 and stepped.max() <= 1  # iterates are projected


def test_generator_reproducible_and_global_rng_untouched(batch):
    model, x, y = batch
    state = torch.get_rng_state()
    runs = [pgd(model, x, y, eps=EPS, step_size=0.02, steps=2, generator=torch.Generator().manual_seed(1))
            for _ in range(2)]
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(runs[0], runs[1])
    other = pgd(model, x, y, eps=EPS, step_size=0.02, steps=2, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(runs[0], other)
    for norm, e in (("linf", EPS), ("l2", 1.5)):  # the global RNG is used without a generator
        torch.manual_seed(5)
        a = pgd(model, x, y, eps=e, step_size=0.0, steps=0, norm=norm)
        torch.manual_seed(5)
        assert torch.equal(a, pgd(model, x, y, eps=e, step_size=0.0, steps=0, norm=norm))


@pytest.mark.parametrize("attack", [
    lambda m, x, y, mode: pgd(m, x, y, eps=EPS, step_size=0.02, steps=2, bn_mode=mode),
    lambda m, x, y, mode: pgd(m, x, y, eps=EPS, step_size=0.02, steps=2, bn_mode=mode, loss="kl", init="normal"),
    lambda m, x, y, mode: rs_fgsm(m, x, y, EPS, bn_mode=mode),
    lambda m, x, y, mode: n_fgsm(m, x, y, EPS, bn_mode=mode),
    lambda m, x, y, mode: fgsm(m, x, y, EPS, bn_mode=mode),
], ids=["pgd", "pgd-kl", "rs-fgsm", "n-fgsm", "fgsm"])
def test_bn_mode_and_mode_restore(batch, attack):
    _, x, y = batch
    model = bn_model()
    bn = model[1]
    for caller_training in (True, False):
        model.train(caller_training)
        model[3].eval()  # a submodule the caller froze must stay as it was
        before = bn.running_mean.clone()
        attack(model, x, y, "eval")
        assert torch.equal(bn.running_mean, before)
        attack(model, x, y, "train")
        assert not torch.equal(bn.running_mean, before)
        assert [m.training for m in model] == [caller_training] * 3 + [False, caller_training]
        assert model.training == caller_training


def test_parameter_grads_untouched(batch):
    _, x, y = batch
    model = bn_model()
    params = list(model.parameters())
    for p in params[::2]:
        p.grad = torch.randn_like(p)
    saved = [None if p.grad is None else p.grad.clone() for p in params]
    for loss in ("ce", "cw", "kl", lambda z, t: z.sum()):
        pgd(model, x, y, eps=EPS, step_size=0.02, steps=2, loss=loss, init="normal", bn_mode="train")
    n_fgsm(model, x, y, EPS)
    for p, g in zip(params, saved):
        assert (p.grad is None) if g is None else torch.equal(p.grad, g)


def test_works_under_no_grad_and_bf16_autocast(batch):
    model, x, y = batch
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        u = pgd(model, x, y, eps=EPS, step_size=EPS / 4, steps=5, loss="kl", init="normal")
    assert u.dtype == x.dtype and (dist(u, x, "linf") <= EPS + TOL).all()
    assert per_sample_ce(model, pgd(model, x, y, eps=EPS, step_size=EPS / 4, steps=5), y).mean() > 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(norm="l1"), "norm"),
    (dict(init="zeros"), "init"),
    (dict(loss="mse"), "loss"),
    (dict(bn_mode="training"), "bn_mode"),
    (dict(steps=-1), "steps"),
    (dict(steps=2.0), "steps"),
    (dict(eps=-0.1), "eps"),
    (dict(eps=torch.tensor([0.1, -0.1] * 64)), "eps"),
    (dict(eps=torch.full((3,), 0.1)), "shape"),
    (dict(step_size=float("nan")), "step_size"),
    (dict(target_probs=torch.full((128, 10), 0.1)), "target_probs"),
])
def test_pgd_rejects_bad_arguments(batch, kwargs, match):
    model, x, y = batch
    args = dict(eps=EPS, step_size=0.01, steps=1) | kwargs
    with pytest.raises(ValueError, match=match):
        pgd(model, x, y, **args)


def test_single_step_bounds(batch):
    model, x, y = batch
    eps = torch.full((x.shape[0],), EPS)
    eps[:10] = 0.0
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    for attack, bound in (
        (fgsm(model, x, y, eps), eps),
        (rs_fgsm(model, x, y, eps, generator=g()), eps),
        (n_fgsm(model, x, y, eps, generator=g()), 3 * eps),
        (n_fgsm(model, x, y, eps, k=1.0, alpha=0.05, generator=g()), eps + 0.05),
    ):
        assert (dist(attack, x, "linf") <= bound + TOL).all()
        assert attack.min() >= 0 and attack.max() <= 1
    nf = n_fgsm(model, x, y, EPS, generator=g())
    assert (dist(nf, x, "linf") > EPS + 0.05).float().mean() > 0.9  # no projection back to the ε-ball
    # FGSM from zero init: every pixel that the box does not clip moves by exactly ε
    moved = (fgsm(model, x, y, EPS) - x).abs()
    inside = (x > EPS) & (x < 1 - EPS)
    assert torch.allclose(moved[inside], torch.full_like(moved[inside], EPS), atol=TOL)
    assert torch.equal(rs_fgsm(model, x, y, EPS, generator=g()), rs_fgsm(model, x, y, EPS, generator=g()))
    assert per_sample_ce(model, rs_fgsm(model, x, y, EPS, bn_mode="eval"), y).mean() > \
        per_sample_ce(model, x, y).mean()


def test_model_mode_restores_each_flag():
    model = bn_model().train()
    model[1].eval()
    with model_mode(model, False):
        assert not any(m.training for m in model.modules())
    assert [m.training for m in model] == [True, False, True, True, True]
    with pytest.raises(RuntimeError), model_mode(model, False):
        raise RuntimeError
    assert model.training and not model[1].training


def rng_draws():
    return random.random(), np.random.rand(), torch.rand(2)


def test_autoattack_wrapper(trained_tiny_cnn):
    """Large ε: APGD-CE alone breaks every point, so the cascade stops early and the test stays fast."""
    model, x, y = trained_tiny_cnn
    x, y = x[:40], y[:40]
    eps = 0.3
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    model.train()
    adv = autoattack(model, x, y, eps=eps, batch_size=16)
    assert model.training
    model.eval()
    after = rng_draws()
    random.setstate(states[0]), np.random.set_state(states[1]), torch.set_rng_state(states[2])
    expected = rng_draws()
    assert after[:2] == expected[:2] and torch.equal(after[2], expected[2])
    assert adv.shape == x.shape and (dist(adv, x, "linf") <= eps + TOL).all()
    assert adv.min() >= 0 and adv.max() <= 1
    assert accuracy(model, adv, y) == 0.0 < accuracy(model, x, y)
    wrong = (model(x).argmax(1) != y)
    assert torch.equal(adv[wrong], x[wrong])  # already-misclassified points are returned unchanged
    assert torch.equal(adv, autoattack(model, x, y, eps=eps, batch_size=16))  # fixed seed
    assert autoattack(model, x[:0], y[:0], eps=eps).shape == x[:0].shape
    for kwargs, match in ((dict(norm="linf"), "norm"), (dict(seed=None), "seed"), (dict(version="fast"), "version")):
        with pytest.raises(ValueError, match=match):
            autoattack(model, x, y, eps=eps, **kwargs)


@pytest.mark.slow
def test_autoattack_full_cascade_beats_pgd(trained_tiny_cnn):
    """The whole standard cascade (incl. FAB-T's .backward() and Square's 5000 queries) at the usual ε."""
    model, x, y = trained_tiny_cnn
    x, y = x[:64], y[:64]
    pgd_acc = accuracy(model, pgd(model, x, y, eps=EPS, step_size=EPS / 4, steps=20), y)
    state = torch.get_rng_state()
    adv = autoattack(model, x, y, eps=EPS, batch_size=64)
    assert torch.equal(torch.get_rng_state(), state)
    assert (dist(adv, x, "linf") <= EPS + TOL).all() and adv.min() >= 0 and adv.max() <= 1
    assert accuracy(model, adv, y) <= pgd_acc + 2 / len(y)
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


def test_robustbench_alias():
    had = {k: sys.modules.get(k) for k in ("autoattack", "autoattack.state")}
    try:
        install_robustbench_alias()
        import autoattack as aa_module  # noqa: PLC0415
        from autoattack.state import EvaluationState  # noqa: PLC0415

        import pyautoattack  # noqa: PLC0415
        import pyautoattack.state  # noqa: PLC0415

        assert aa_module.AutoAttack is pyautoattack.AutoAttack
        assert EvaluationState is pyautoattack.state.EvaluationState
    finally:
        for k, v in had.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
