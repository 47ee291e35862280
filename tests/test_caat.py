"""CAAT's defining pieces on tiny inputs: anti-adversaries lower the loss, the weights are a per-sample
choice, the characteristics and the Grad-Based bound follow their formulas, the meta step learns Ω,
Setting I is FRL ReWeight, and `--fidelity code` switches to the official code's behaviour."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import methods.caat.caat as caat
import methods.fairness.frl as frl
from bench.data import Split
from methods import Batch, MethodContext, build_method
from methods.fairness.constraints import ClassErrors

C = 10


def _ctx(fidelity="paper", meta_n=40):
    g = torch.Generator().manual_seed(0)
    meta = Split(torch.randint(0, 256, (meta_n, 1, 28, 28), dtype=torch.uint8, generator=g), torch.arange(meta_n) % C)
    return MethodContext(num_classes=C, eps=0.1, step_size=0.025, attack_steps=3, epochs=5, steps_per_epoch=4,
                         class_counts=(10,) * C, heldout={"meta": meta}, device=torch.device("cpu"),
                         fidelity=fidelity, new_model=None, batch_size=16)


def _flat_errors(*args, **kwargs):
    z = torch.full((C,), 0.1)
    return ClassErrors(z, z, 2 * z, 0.1, 0.1, 0.2)


def test_anti_adversaries_lower_and_adversaries_raise_the_loss(trained_tiny_cnn):
    model, x, y = trained_tiny_cnn
    x, y = x[:64], y[:64]
    rows = torch.arange(64)
    eps = torch.full((64,), 0.1)
    torch.manual_seed(0)
    x_adv, x_anti = caat.adversaries(model, x, y, eps, 0.025, 10, rows, rows, "eval")
    for u in (x_adv, x_anti):
        assert float((u - x).abs().max()) <= 0.1 + 1e-6 and float(u.min()) >= 0 and float(u.max()) <= 1
    with torch.no_grad():
        ce_adv, ce_nat, ce_anti = (F.cross_entropy(model(u), y, reduction="none") for u in (x_adv, x, x_anti))
        p = model(x).softmax(1)
        kl_adv = (p * (p.log() - model(x_adv).log_softmax(1))).sum(1)
    assert float(ce_anti.mean()) < float(ce_nat.mean()) < float(ce_adv.mean())
    assert float((ce_anti <= ce_nat + 1e-6).float().mean()) > 0.95
    assert float(kl_adv.mean()) > 0.05


def test_characteristics_follow_their_definitions():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    y = torch.tensor([0, 1])
    share, class_loss = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([5.0, 4.0, 3.0])
    zeta = caat.characteristics(logits, y, share, class_loss)
    p = logits.softmax(1)
    torch.testing.assert_close(zeta[:, 0], -p[[0, 1], [0, 1]].log())
    torch.testing.assert_close(zeta[:, 1], torch.tensor([5.0, 4.0]))
    torch.testing.assert_close(zeta[:, 2], (F.one_hot(y, 3) - p).norm(dim=1))
    torch.testing.assert_close(zeta[:, 3], torch.stack([p[0, 0] - p[0, 1], p[1, 1] - p[1, 2]]))
    torch.testing.assert_close(zeta[:, 4], (p * p.log()).sum(1))
    torch.testing.assert_close(zeta[:, 5], torch.tensor([0.5, 0.3]))


def test_weights_are_a_near_one_hot_choice_summing_to_one():
    net = caat.WeightingNet(hidden=100, temperature=0.001)
    with torch.no_grad():
        w = net(torch.randn(64, 6))
    torch.testing.assert_close(w.sum(1), torch.ones(64))
    assert float(w.min()) >= 0 and float((w.max(1).values > 0.99).float().mean()) > 0.9


def test_gradient_bound_lies_between_offset_and_offset_plus_one(trained_tiny_cnn):
    model, x, y = trained_tiny_cnn
    weights = torch.rand(32, 1)
    weights = torch.cat([weights, 1 - weights], 1)
    eps = caat.gradient_bound(model, x[:32], y[:32], weights, 0.1, 0.9)
    assert float(eps.min()) >= 0.09 - 1e-7 and float(eps.max()) <= 0.19 + 1e-7
    assert float(eps.max() - eps.min()) > 0.005  # the norms do differ between samples


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 16), nn.ReLU(), nn.Linear(16, C))


def _batch(step=0):
    g = torch.Generator().manual_seed(1)
    return Batch(torch.rand(16, 1, 28, 28, generator=g), torch.arange(16) % C, torch.arange(16), 0, step)


def test_setting_one_is_frl_reweight(monkeypatch):
    monkeypatch.setattr(caat, "class_errors", _flat_errors)
    monkeypatch.setattr(frl, "class_errors", _flat_errors)
    model, batch = _model(), _batch()
    losses = []
    for name, hp in (("caat", {"direction": "adversarial", "bound": "fixed", "beta": "1.5"}), ("frl_rw", {})):
        method = build_method(name, {**hp, "tau_nat": "0.07", "tau_bdy": "0.07"} if name == "frl_rw" else hp, _ctx())
        method.on_epoch_start(model, 0)
        torch.manual_seed(5)
        losses.append(method.loss(model, batch, torch.optim.SGD(model.parameters(), lr=0.1)).loss)
    torch.testing.assert_close(losses[0], losses[1])


def test_meta_step_changes_the_weighting_net_and_not_the_model(monkeypatch):
    monkeypatch.setattr(caat, "class_errors", _flat_errors)
    model = _model()
    method = build_method("caat", {"temperature": "1"}, _ctx())
    method.on_epoch_start(model, 0)
    before = [p.detach().clone() for p in method.net.parameters()]
    model_before = [p.detach().clone() for p in model.parameters()]
    out = method.loss(model, _batch(), torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    assert torch.isfinite(out.loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, method.net.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(model_before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())


def test_code_fidelity_uses_the_official_settings(monkeypatch):
    monkeypatch.setattr(caat, "class_errors", _flat_errors)
    paper, code = (build_method("caat", {}, _ctx(f)) for f in ("paper", "code"))
    assert (paper.meta_every, paper.eps_scale, code.meta_every, code.eps_scale) == (1, 1.0, 50, 1.25)
    model = _model()
    for method in (paper, code):
        method.on_epoch_start(model, 0)
        # no class is worse than average: every budget factor sits at its floor 0.98
        torch.testing.assert_close(method.class_eps, torch.full((C,), 0.098 * method.eps_scale))
        model.train()
        method.loss(model, _batch(step=1), torch.optim.SGD(model.parameters(), lr=0.1))
        assert model.training is (method is paper)  # the code's frozen-BN bug
        method.on_epoch_end(model, 0, [None] * C)
    assert float(code.class_loss.max()) == 5.0 == float(code.class_loss.min())  # ζ6 never updated in the code
    assert float(paper.class_loss.max()) < 5.0
    assert build_method("caat", {"meta_every": "3", "train_eps_scale": "1.5"}, _ctx("code")).meta_every == 3


def test_refuses_bad_hyperparameters_and_a_missing_meta_set():
    with pytest.raises(ValueError, match="temperature=0.0 is not allowed; allowed: a number > 0"):
        build_method("caat", {"temperature": "0"}, _ctx())
    ctx = _ctx()
    ctx.heldout = {}
    with pytest.raises(ValueError, match="--heldout caat_meta"):
        build_method("caat", {}, ctx)


def _bn_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, C))


def _objective(method, soft, y, ce_nat, kl, ce_anti):
    """The code's weighted loss, every sample with both terms."""
    w_ce, w_kl = method.w_ce[y], method.w_kl[y]
    return ((soft[:, 0] * w_ce * ce_nat).sum() / w_ce.sum() + method.hp.beta * (soft[:, 0] * w_kl * kl).sum()
            / w_kl.sum() + (soft[:, 1] * ce_anti).mean())


def _kl(logits_adv, logits_nat):
    return F.kl_div(F.log_softmax(logits_adv, 1), F.softmax(logits_nat, 1), reduction="none").sum(1)


def test_code_meta_step_is_the_codes_pseudo_model_step(monkeypatch):
    """`code` meta step against a transcription of the official train_model on a real copy of the model: a
    train-mode pseudo forward whose features keep their graph, fresh adversaries against the pseudo model, eval-mode
    KL and anti-CE, one SGD look-ahead, then the meta batch (by-position class weights) at the stepped copy."""
    monkeypatch.setattr(caat, "class_errors", _flat_errors)
    model, batch = _bn_model(), _batch(step=1)
    model.eval()  # after the epoch's first batch the code runs in eval mode
    method = build_method("caat", {"meta_every": "1", "temperature": "1"}, _ctx("code"))
    method.on_epoch_start(model, 0)
    method.meta_opt = torch.optim.SGD(method.net.parameters(), lr=1.0)  # Ω moves by exactly −∂L_meta/∂Ω
    net, meta_batches = copy.deepcopy(method.net), copy.deepcopy(method.meta_batches)
    x, y, lr = batch.x, batch.y, 0.1
    pseudo = copy.deepcopy(model)
    torch.manual_seed(5)
    method.loss(model, batch, torch.optim.SGD(model.parameters(), lr=lr))

    torch.manual_seed(5)
    pseudo.train()
    logits = pseudo(x)
    soft = net(caat.characteristics(logits, y, method.class_share, method.class_loss))
    everyone = torch.arange(len(y))
    x_adv, x_anti = caat.adversaries(pseudo, x, y, method.eps_for(y), 0.025, 3, everyone, everyone, "eval")
    pseudo.eval()
    objective = _objective(method, soft, y, F.cross_entropy(logits, y, reduction="none"), _kl(pseudo(x_adv), pseudo(x)),
                           F.cross_entropy(pseudo(x_anti), y, reduction="none"))
    grads = torch.autograd.grad(objective, list(pseudo.parameters()), create_graph=True)
    stepped = {name: p - lr * g for (name, p), g in zip(pseudo.named_parameters(), grads)}
    x_m, y_m = meta_batches.next()
    at_stepped = caat.WithParams(pseudo, stepped)
    x_adv_m, x_anti_m = caat.adversaries(caat.WithParams(pseudo, {k: v.detach() for k, v in stepped.items()}), x_m, y_m,
                                         method.eps_for(y), 0.025, 3, everyone, everyone, "eval")
    meta_loss = _objective(method, torch.ones(len(y), 2), y, F.cross_entropy(at_stepped(x_m), y_m, reduction="none"),
                           _kl(at_stepped(x_adv_m), at_stepped(x_m)),
                           F.cross_entropy(at_stepped(x_anti_m), y_m, reduction="none"))
    expected = [p - g for p, g in zip(net.parameters(), torch.autograd.grad(meta_loss, list(net.parameters())))]
    for got, want in zip(method.net.parameters(), expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_paper_meta_step_differentiates_through_the_characteristics(monkeypatch):
    """Eq. 9's look-ahead keeps ζ's path to θ: Ω's step equals the one with graph-carrying ζ, not with detached ζ."""
    monkeypatch.setattr(caat, "class_errors", _flat_errors)
    model, batch = _model(), _batch()
    method = build_method("caat", {"temperature": "1"}, _ctx())
    method.on_epoch_start(model, 0)
    method.meta_opt = torch.optim.SGD(method.net.parameters(), lr=1.0)
    twins = [copy.deepcopy(method) for _ in range(2)]
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    torch.manual_seed(5)
    method.loss(model, batch, opt)
    x, y = batch.x, batch.y
    for twin, keep_graph in zip(twins, (True, False)):
        torch.manual_seed(5)
        logits = model(x)
        zeta = caat.characteristics(logits if keep_graph else logits.detach(), y, twin.class_share, twin.class_loss)
        everyone = torch.arange(len(y))
        x_adv, x_anti = caat.adversaries(model, x, y, twin.eps_for(y), 0.025, 3, everyone, everyone, "eval")
        twin._meta_step(model, opt, zeta, y, twin.w_ce[y], twin.w_kl[y], F.cross_entropy(logits, y, reduction="none"),
                        _kl(model(x_adv), logits), F.cross_entropy(model(x_anti), y, reduction="none"), everyone,
                        everyone)
    gaps = [max(float((a - b).abs().max()) for a, b in zip(method.net.parameters(), twin.net.parameters()))
            for twin in twins]
    assert gaps[0] < 1e-4 < 1e-2 < gaps[1]  # float32 rounding vs the dropped ζ term (0.01–0.15 here)


def test_code_mode_first_batch_attacks_and_targets_in_eval_mode(monkeypatch):
    """The code's attack puts the model in eval mode on the epoch's first batch too; only the clean forward (CE and
    ζ) is in train mode there, and the KL target is an eval-mode forward."""
    monkeypatch.setattr(caat, "class_errors", _flat_errors)
    model, batch = _bn_model(), _batch(step=0)
    method = build_method("caat", {}, _ctx("code"))
    method.on_epoch_start(model, 0)
    reference, net = copy.deepcopy(model), copy.deepcopy(method.net)
    model.train()
    torch.manual_seed(5)
    out = method.loss(model, batch, torch.optim.SGD(model.parameters(), lr=0.1))
    assert not model.training

    x, y = batch.x, batch.y
    reference.train()
    logits = reference(x)
    reference.eval()
    with torch.no_grad():
        soft = net(caat.characteristics(logits.detach(), y, method.class_share, method.class_loss))
    everyone = torch.arange(len(y))
    torch.manual_seed(5)
    x_adv, x_anti = caat.adversaries(reference, x, y, method.eps_for(y), 0.025, 3, everyone, everyone, "eval")
    expected = _objective(method, soft, y, F.cross_entropy(logits, y, reduction="none"),
                          _kl(reference(x_adv), reference(x)), F.cross_entropy(reference(x_anti), y, reduction="none"))
    torch.testing.assert_close(out.loss, expected)


def test_every_sample_gets_both_attacks_unless_skipping_is_asked_for(monkeypatch):
    """Alg. 1 lines 4–11: adversary and anti-adversary for every sample; `min_weight` > 0 is an opt-in shortcut."""
    monkeypatch.setattr(caat, "class_errors", _flat_errors)
    model, batch = _model(), _batch()
    kl_means = {}
    for min_weight in ("0", "1e-6"):
        method = build_method("caat", {"min_weight": min_weight, "direction": "learned"}, _ctx())
        method.on_epoch_start(model, 0)
        torch.manual_seed(5)
        kl_means[min_weight] = method.loss(model, batch, torch.optim.SGD(model.parameters(), lr=0.1)).stats["kl"]
    x, y = batch.x, batch.y
    everyone = torch.arange(len(y))
    torch.manual_seed(5)
    x_adv, _ = caat.adversaries(model, x, y, method.eps_for(y), 0.025, 3, everyone, everyone, "eval")
    torch.testing.assert_close(kl_means["0"], _kl(model(x_adv), model(x)).mean())
    assert not torch.allclose(kl_means["0"], kl_means["1e-6"])  # the shortcut drops some samples' adversaries
    assert build_method("caat", {}, _ctx()).hp.min_weight == 0
    with pytest.raises(ValueError, match="min_weight=0.6"):
        build_method("caat", {"min_weight": "0.6"}, _ctx())
