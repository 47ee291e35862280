"""Defining behaviour of the reweighting / early-stopping / helper baselines: GAIRAT, MAIL, WMMR, FAT, HAT."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import methods.standard.fat as fat
from bench.attacks import pgd
from bench.attacks.losses import kl_per_sample
from bench.attacks.pgd import initial_point, per_sample
from methods import Batch, MethodContext, build_method
from methods.reweighting.gairat import geometry_weights, pgd_counting_correct
from methods.reweighting.mail import mail_weights
from methods.core.adversaries import trades_adversary
from methods.reweighting.wmmr import margin_weighted_ce, softmax_margin


def _ctx(new_model=lambda: _linear(), epochs=4, steps=3, eps=0.2, step=0.05, num_classes=3):
    return MethodContext(num_classes=num_classes, eps=eps, step_size=step, attack_steps=steps, epochs=epochs,
                         steps_per_epoch=1, class_counts=(1,) * num_classes, heldout={}, device=torch.device("cpu"),
                         fidelity="paper", new_model=new_model)


def _linear():
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))


def _data(n=16):
    g = torch.Generator().manual_seed(2)
    return torch.rand(n, 1, 2, 2, generator=g), torch.randint(0, 3, (n,), generator=g)


def _loss(method, model, x, y, epoch, seed=0):
    torch.manual_seed(seed)
    return method.loss(model, Batch(x, y, torch.arange(len(y)), epoch, 0), None)


def _threshold():
    """1-D classifier: class 0 iff x > 0.5 (logits 10x − 5 and 5 − 10x)."""
    model = nn.Linear(1, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[10.0], [-10.0]]))
        model.bias.copy_(torch.tensor([-5.0, 5.0]))
    return model


class _Dip(nn.Module):
    """1-D classifier with logits (s, −s), s = (x − 0.5)² − 0.01: class 0 iff |x − 0.5| > 0.1.

    CE-ascent for y = 0 descends s, so sign steps oscillate across the dip: iterates can flip back to correct."""

    def forward(self, x):
        s = (x[:, 0] - 0.5) ** 2 - 0.01
        return torch.stack([s, -s], 1)


# --- GAIRAT ------------------------------------------------------------------------------------------------

def test_gairat_weights_are_the_tanh_formula_with_mean_one():
    kappa = torch.tensor([0.0, 1.0, 2.0, 3.0, 5.0, 5.0])
    for steps, half in ((10, 5), (5, 2)):  # ⌊K/2⌋ as in the code
        raw = 0.5 * (1 + torch.tanh(-1.0 + 5 * (1 - kappa / half)))
        w = geometry_weights(kappa, steps, lam=-1.0)
        torch.testing.assert_close(w, raw * len(raw) / raw.sum())
        torch.testing.assert_close(w.mean(), torch.tensor(1.0))
        assert bool((w[:-1] >= w[1:]).all()) and w[0] > w[-1]  # fewer survived steps, larger weight


def test_gairat_kappa_counts_correct_iterates_even_after_a_flip():
    x, y = torch.tensor([[0.75], [0.45]]), torch.zeros(2, dtype=torch.long)
    # iterates 0.75 ✓ 0.55 ✗ 0.35 ✓ 0.55 ✗ 0.35 ✓ and 0.45 ✗ 0.65 ✓ 0.45 ✗ 0.65 ✓ 0.45 ✗ (the last step's
    # result is not counted): κ = 3 and 2, although the first misclassification is at step 1 and 0.
    x_adv, kappa = pgd_counting_correct(_Dip(), x, y, eps=1.0, step_size=0.2, steps=5, init="none")
    assert kappa.tolist() == [3.0, 2.0]
    torch.testing.assert_close(x_adv, torch.tensor([[0.55], [0.65]]))


def test_gairat_is_plain_pgd_at_before_its_begin_epoch_and_weighted_after():
    ctx = _ctx(epochs=4)  # begin 0.5 → the code's `(epoch + 1) >= 2`: 0-based epoch 1
    gairat, pgd_at = build_method("gairat", {"begin": 0.5}, ctx), build_method("pgd_at", {}, ctx)
    model, (x, y) = _linear(), _data()
    torch.testing.assert_close(_loss(gairat, model, x, y, epoch=0).loss, _loss(pgd_at, model, x, y, epoch=0).loss)

    torch.manual_seed(0)
    x_adv, kappa = pgd_counting_correct(model, x, y, eps=ctx.eps, step_size=ctx.step_size, steps=ctx.attack_steps)
    weights = geometry_weights(kappa, ctx.attack_steps, -1.0)
    assert weights.std() > 0.1  # the batch has samples of different geometry
    expected = (weights * F.cross_entropy(model(x_adv), y, reduction="none")).mean()
    torch.testing.assert_close(_loss(gairat, model, x, y, epoch=1).loss, expected)


def test_gairat_refuses_a_single_step_attack():
    with pytest.raises(ValueError, match="attack_steps >= 2"):
        build_method("gairat", {}, _ctx(steps=1))


# --- MAIL --------------------------------------------------------------------------------------------------

def test_mail_weights_are_three_sigmoid_of_the_detached_probabilistic_margin():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 1.0, 1.0]], requires_grad=True)
    y = torch.tensor([0, 0, 2])
    p = logits.detach().softmax(1)
    margin = torch.stack([p[0, 1] - p[0, 0], p[1, 1] - p[1, 0], p[2, 0] - p[2, 2]])
    w = mail_weights(logits, y, slope=10.0, bias=-0.5)
    torch.testing.assert_close(w, 3 * torch.sigmoid(10.0 * (margin - 0.5)))
    assert not w.requires_grad


def test_mail_at_is_plain_at_during_burn_in_then_weighted():
    ctx = _ctx(epochs=8)  # burn-in 75/120 of 8 = 5: plain while the 0-based epoch is ≤ 5
    mail = build_method("mail_at", {}, ctx)
    at = build_method("pgd_at", {"init": "normal"}, ctx)
    model, (x, y) = _linear(), _data()
    torch.testing.assert_close(_loss(mail, model, x, y, epoch=5).loss, _loss(at, model, x, y, epoch=5).loss)

    torch.manual_seed(0)
    logits = model(pgd(model, x, y, eps=ctx.eps, step_size=ctx.step_size, steps=ctx.attack_steps, init="normal"))
    w = mail_weights(logits, y, slope=10.0, bias=-0.5)
    expected = (w * F.cross_entropy(logits, y, reduction="none")).mean()
    torch.testing.assert_close(_loss(mail, model, x, y, epoch=6).loss, expected)


def test_mail_trades_is_plain_trades_during_burn_in_then_weights_the_kl():
    ctx = _ctx(epochs=8)
    mail = build_method("mail_trades", {}, ctx)
    trades = build_method("trades", {"beta": 5.0}, ctx)
    model, (x, y) = _linear(), _data()
    torch.testing.assert_close(_loss(mail, model, x, y, epoch=5).loss, _loss(trades, model, x, y, epoch=5).loss)

    torch.manual_seed(0)
    x_adv = trades_adversary(mail, model, Batch(x, y, torch.arange(len(y)), 6, 0))
    logits_nat, logits_adv = model(x), model(x_adv)
    w = mail_weights(logits_adv, y, slope=2.0, bias=0.0)
    expected = F.cross_entropy(logits_nat, y) + 5.0 * (w * kl_per_sample(logits_nat, logits_adv)).mean()
    torch.testing.assert_close(_loss(mail, model, x, y, epoch=6).loss, expected)


# --- WMMR --------------------------------------------------------------------------------------------------

def test_wmmr_loss_is_exp_minus_alpha_margin_times_ce():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    y = torch.tensor([0, 2])
    p = logits.softmax(1)
    margin = torch.stack([p[0, 0] - p[0, 1], p[1, 2] - p[1, 1]])
    torch.testing.assert_close(softmax_margin(logits, y), margin)
    ce = -p.log()[[0, 1], [0, 2]]
    torch.testing.assert_close(margin_weighted_ce(logits, y, 0.1), torch.exp(-0.1 * margin) * ce)


def test_wmmr_gradient_flows_through_the_margin():
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1])
    full = torch.autograd.grad(margin_weighted_ce(logits, y, 0.7).mean(), logits)[0]
    weights = torch.exp(-0.7 * softmax_margin(logits, y))
    ce = F.cross_entropy(logits, y, reduction="none")
    through_ce = torch.autograd.grad((weights.detach() * ce).mean(), logits)[0]
    through_margin = torch.autograd.grad((weights * ce.detach()).mean(), logits)[0]
    assert through_margin.abs().max() > 1e-2
    torch.testing.assert_close(full, through_ce + through_margin)  # product rule: both factors carry gradient


def test_wmmr_method_trains_on_the_weighted_objective_of_its_weighted_adversary():
    ctx = _ctx()
    wmmr = build_method("wmmr", {"alpha": 2.0}, ctx)
    model, (x, y) = _linear(), _data()
    loss = _loss(wmmr, model, x, y, epoch=0).loss

    def expected(init):  # WMMR's code starts from x + U(−ε, ε) unclipped; the first projection clips
        torch.manual_seed(0)
        x_adv = pgd(model, x, y, eps=ctx.eps, step_size=ctx.step_size, steps=ctx.attack_steps, bn_mode="train",
                    init=init, loss=lambda z, t: margin_weighted_ce(z, t, 2.0).mean())
        return margin_weighted_ce(model(x_adv), y, 2.0).mean()

    torch.testing.assert_close(loss, expected("uniform_unclipped"))
    assert not torch.allclose(loss, expected("uniform"))  # the clipped start is another adversary


# --- FAT ---------------------------------------------------------------------------------------------------

def test_fat_official_never_moves_a_sample_misclassified_at_the_start_with_tau_0():
    x, y = torch.tensor([[0.2], [0.9]]), torch.zeros(2, dtype=torch.long)
    eps, model = torch.tensor([0.05, 0.2]), _threshold()
    torch.manual_seed(0)
    start = initial_point(x, per_sample(eps, x, "eps"), "uniform", "linf", None)
    torch.manual_seed(0)
    x_adv = fat.early_stopped_pgd(model, x, y, eps=eps, step_size=0.05, steps=3, tau=0,
                                  stop="wrong_and_spent")
    assert torch.equal(x_adv[0], start[0])  # wrong from the start (< 0.5 anywhere in its ball): frozen
    # the correct one stays correct (≥ 0.55) and takes all three steps down, within its ball
    torch.testing.assert_close(x_adv[1], torch.maximum(start[1] - 0.15, x[1] - 0.2))


def test_fat_respects_each_samples_budget():
    x, y = torch.full((3, 1), 0.9), torch.zeros(3, dtype=torch.long)
    eps = torch.tensor([0.0, 0.1, 0.3])
    torch.manual_seed(0)
    x_adv = fat.early_stopped_pgd(_threshold(), x, y, eps=eps, step_size=0.05, steps=10, tau=0,
                                  stop="wrong_and_spent")
    torch.testing.assert_close(x_adv, x - eps[:, None])  # all stay correct and run to their own ball's edge


def test_fat_uniform_init_is_scaled_by_each_samples_budget():
    x = torch.full((2, 2000), 0.5)
    torch.manual_seed(0)
    x0 = fat.early_stopped_pgd(nn.Linear(2000, 2), x, torch.zeros(2, dtype=torch.long),
                               eps=torch.tensor([0.01, 0.2]), step_size=0.05, steps=0, tau=0, stop="budget_spent")
    spread = (x0 - x).abs().amax(1)
    assert spread[0] <= 0.01 and 0.15 < spread[1] <= 0.2


@pytest.mark.parametrize("stop,expected", [("budget_spent", 0.35), ("wrong_and_spent", 0.55)])
def test_fat_stop_rules_differ_once_an_iterate_flips_back(monkeypatch, stop, expected):
    # from 0.75 the iterates go 0.75 ✓ 0.55 ✗ 0.35 ✓ 0.55 ✗ ... With τ = 1, CFA's rule stops the sample once its
    # budget is spent (at 0.35, though correct again); FAT's keeps going until it is wrong with no budget (0.55).
    monkeypatch.setattr(fat, "initial_point", lambda x, *args: x.clone())
    x_adv = fat.early_stopped_pgd(_Dip(), torch.tensor([[0.75]]), torch.tensor([0]), eps=1.0, step_size=0.2,
                                  steps=5, tau=1, stop=stop)
    torch.testing.assert_close(x_adv, torch.tensor([[expected]]))


def test_fat_official_tau_schedule_is_a_fraction_of_training():
    official = build_method("fat", {"variant": "official"}, _ctx(epochs=12))
    # `adjust_tau(epoch + 1)`: τ = 0 while epoch + 1 ≤ 50/120 of 12 = 5, 1 while ≤ 9, 2 after
    assert [official.tau(e) for e in (0, 3, 4, 5, 8, 9, 11)] == [0, 0, 0, 1, 1, 2, 2]
    official = build_method("fat", {"variant": "official"}, _ctx(epochs=120))
    assert [official.tau(e) for e in (49, 50, 89, 90)] == [0, 1, 1, 2]
    cfa = build_method("fat", {"tau": 2}, _ctx(epochs=12))
    assert {cfa.tau(e) for e in range(12)} == {2}


def test_fat_attacks_with_the_class_budgets_and_its_variants_settings(monkeypatch):
    seen = {}

    def spy(model, x, y, **kwargs):
        seen.update(kwargs)
        return x

    monkeypatch.setattr(fat, "early_stopped_pgd", spy)
    method = build_method("fat", {}, _ctx())
    method.class_eps = torch.tensor([0.1, 0.2, 0.3])  # as CFA's CCM would set them
    _, y = _data()
    _loss(method, _linear(), _data()[0], y, epoch=0)
    torch.testing.assert_close(seen["eps"], method.class_eps[y])
    assert (seen["tau"], seen["stop"], seen["noise_std"], seen["bn_mode"]) == (3, "budget_spent", 0.0, "train")
    _loss(build_method("fat", {"variant": "official"}, _ctx()), _linear(), *_data(), epoch=0)
    assert (seen["tau"], seen["stop"], seen["noise_std"], seen["bn_mode"]) == (0, "wrong_and_spent", 0.001, "eval")


# --- HAT ---------------------------------------------------------------------------------------------------

def _hat_ctx():
    return _ctx(new_model=lambda: nn.Linear(1, 2), num_classes=2)


def _hat(tmp_path, **overrides):
    path = tmp_path / "helper.pt"
    torch.save(_threshold().state_dict(), path)  # a bare state_dict
    return build_method("hat", {"helper": str(path), **overrides}, _hat_ctx())


def test_hat_helper_examples_are_unclipped_and_labelled_by_the_helper_on_x_adv(tmp_path):
    hat = _hat(tmp_path)
    x, x_adv = torch.tensor([[0.9], [0.3]]), torch.tensor([[1.0], [0.45]])
    x_hr, y_hr = hat.helper_examples(x, x_adv)
    torch.testing.assert_close(x_hr, torch.tensor([[1.1], [0.6]]))  # x + 2·(x_adv − x), 1.1 left outside [0,1]
    assert y_hr.tolist() == [0, 1]  # g(0.45) = 1, although g(x_hr = 0.6) = 0


def test_hat_loss_is_trades_plus_gamma_helper_ce(tmp_path):
    hat = _hat(tmp_path, beta=2.5, gamma=0.5)
    model = nn.Linear(1, 2)
    x, y = torch.rand(8, 1, generator=torch.Generator().manual_seed(3)), torch.tensor([0, 1] * 4)
    torch.manual_seed(0)
    x_adv = trades_adversary(hat, model, Batch(x, y, torch.arange(8), 0, 0))
    x_hr, y_hr = x + 2 * (x_adv - x), _threshold()(x_adv).argmax(1)
    expected = (F.cross_entropy(model(x), y) + 2.5 * kl_per_sample(model(x), model(x_adv)).mean()
                + 0.5 * F.cross_entropy(model(x_hr), y_hr))
    torch.testing.assert_close(_loss(hat, model, x, y, epoch=0).loss, expected)


def test_hat_helper_is_frozen_in_eval_mode_and_not_in_the_state(tmp_path):
    hat = _hat(tmp_path)
    assert not hat.helper.training and not any(p.requires_grad for p in hat.helper.parameters())
    torch.testing.assert_close(hat.helper.weight, _threshold().weight)
    assert set(hat.state_dict()) == {"class_eps"}


def test_hat_loads_a_plain_weights_file_and_refuses_an_unfinished_run_folder(tmp_path):
    good = _threshold().state_dict()
    torch.save({"model": good, "epoch": 0}, tmp_path / "helper.pt")
    hat = build_method("hat", {"helper": str(tmp_path / "helper.pt")}, _hat_ctx())
    torch.testing.assert_close(hat.helper.weight, good["weight"])
    with pytest.raises(ValueError, match="is not a finished bench run"):  # a folder: its kept best-clean checkpoint
        build_method("hat", {"helper": str(tmp_path)}, _hat_ctx())


@pytest.mark.parametrize("helper", ["", "does/not/exist"])
def test_hat_without_a_helper_says_how_to_make_one(helper):
    with pytest.raises(ValueError, match=r"python -m bench train --method natural .*--hp helper="):
        build_method("hat", {"helper": helper}, _hat_ctx())


def test_hat_refuses_a_helper_of_another_architecture(tmp_path):
    torch.save({"model": nn.Linear(3, 2).state_dict()}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="do not fit this run's model"):
        build_method("hat", {"helper": str(tmp_path / "other.pt")},
                     _hat_ctx())
