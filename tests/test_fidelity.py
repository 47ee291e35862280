"""Issue-13 fidelity items against the official codes: WMMR's unclipped start, GradAlign's clamped gradient, EMA's
truncated counter, the codes' variants as hyperparameters, CFA's A_c forms, and float64 models staying float64."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.attacks import fgsm, n_fgsm, pgd
from bench.attacks.losses import ce_loss, loss_dtype
from bench.attacks.pgd import initial_point, input_grad
from methods import Batch, MethodContext, build_method
from methods.standard.ema import average_into
from methods.reweighting.gairat import geometry_weights
from methods.standard.gradalign import input_gradients
from methods.reweighting.mail import probabilistic_margin
from methods.inverse.universal_inverse import constant_probs
from methods.reweighting.wmmr import margin_weighted_ce


def _ctx(fidelity="paper", class_counts=(1, 1, 1), dtype=torch.float32):
    return MethodContext(num_classes=3, eps=0.2, step_size=0.05, attack_steps=3, epochs=4, steps_per_epoch=1,
                         class_counts=class_counts, heldout={}, device=torch.device("cpu"), fidelity=fidelity,
                         new_model=lambda: _linear(dtype))


def _linear(dtype=torch.float32):
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).to(dtype)


def _data(n=16, dtype=torch.float32):
    g = torch.Generator().manual_seed(2)
    x = torch.rand(n, 1, 2, 2, generator=g).to(dtype)
    x[:4, 0, 0, 0], x[4:8, 0, 0, 1] = 0.0, 1.0  # saturated pixels, as CIFAR images have
    return x, torch.randint(0, 3, (n,), generator=g)


def _loss(method, model, x, y, seed=0):
    torch.manual_seed(seed)
    return method.loss(model, Batch(x, y, torch.arange(len(y)), 0, 0), None).loss


# --- WMMR: the PGD start is x + U(−ε, ε), not clipped to the box --------------------------------------------

def test_unclipped_uniform_start_leaves_the_box_and_the_first_projection_clips():
    x = torch.tensor([[0.0, 1.0, 0.5]]).repeat(64, 1)
    start = initial_point(x, torch.full((64, 1), 0.1), "uniform_unclipped", "linf", None)
    assert float(start[:, 0].min()) < 0 and float(start[:, 1].max()) > 1 and float((start - x).abs().max()) <= 0.1
    x_adv = pgd(nn.Identity(), x, torch.zeros(64, dtype=torch.long), eps=0.1, step_size=0.01, steps=1,
                init="uniform_unclipped")
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    assert build_method("wmmr", {}, _ctx()).hp.init == "uniform_unclipped"


# --- GradAlign: `code` takes g through the reference's max(min(·)) clamp -----------------------------------------

def test_gradalign_code_gradient_is_halved_exactly_on_saturated_pixels():
    model, (x, y) = _linear(torch.float64), _data(dtype=torch.float64)
    clean = input_gradients(model, x, y, create_graph=False)
    clamped = input_gradients(model, x, y, create_graph=False, through_clamp=True)
    saturated = (x == 0) | (x == 1)
    assert saturated.any() and bool((clean[saturated] != 0).all())
    assert torch.equal(clamped, torch.where(saturated, clean / 2, clean))


@pytest.mark.parametrize("fidelity,hp,expected", [("paper", {}, False), ("code", {}, True),
                                                  ("code", {"clean_grad": "paper"}, False),
                                                  ("paper", {"clean_grad": "code"}, True)])
def test_gradalign_clamp_follows_fidelity_unless_set(fidelity, hp, expected):
    method = build_method("gradalign", hp, _ctx(fidelity))
    assert method.through_clamp is expected
    model, (x, y) = _linear(torch.float64), _data(dtype=torch.float64)
    paper = build_method("gradalign", {"clean_grad": "paper"}, _ctx())
    same = torch.equal(_loss(method, model, x, y), _loss(paper, model, x, y))
    assert same is not expected  # the regulariser moves with the halved gradient


# --- EMA: the averaged num_batches_tracked is truncated as the code's copy into an integer buffer does -----------

def test_ema_truncates_the_averaged_batch_counter():
    avg = {"n": torch.tensor(140), "w": torch.tensor([1.0])}
    average_into(avg, {"n": torch.tensor(153), "w": torch.tensor([2.0])}, decay=0.88)  # 141.56
    assert avg["n"].item() == 141 and avg["n"].dtype == torch.long
    torch.testing.assert_close(avg["w"], torch.tensor([1.12]))


# --- variants of the official codes --------------------------------------------------------------------------

def test_gairat_sigmoid_and_discrete_weight_functions_are_the_codes():
    kappa = torch.tensor([0.0, 1.0, 3.0, 5.0, 10.0])
    sigmoid = torch.sigmoid(-1.0 + 5 * (1 - kappa / 5))
    discrete = (11 - kappa) / 11
    torch.testing.assert_close(geometry_weights(kappa, 10, -1.0, "sigmoid"), sigmoid * 5 / sigmoid.sum())
    torch.testing.assert_close(geometry_weights(kappa, 10, -1.0, "discrete"), discrete * 5 / discrete.sum())
    with pytest.raises(ValueError, match="weight_fn='exp'"):
        build_method("gairat", {"weight_fn": "exp"}, _ctx())


def test_rs_fgsm_zero_start_is_fgsm():
    model, (x, y) = _linear(), _data()
    method = build_method("rs_fgsm", {"init": "zero"}, _ctx())
    expected = F.cross_entropy(model(fgsm(model, x, y, 0.2)), y)
    torch.testing.assert_close(_loss(method, model, x, y), expected)
    assert not torch.allclose(_loss(build_method("rs_fgsm", {}, _ctx()), model, x, y), expected)


def test_nfgsm_clip_bounds_the_perturbation_and_is_off_by_default():
    model, (x, y) = _linear(), _data()
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    free = n_fgsm(model, x, y, 0.1, generator=g())
    clipped = n_fgsm(model, x, y, 0.1, clip=1.0, generator=g())
    assert float((free - x).abs().max()) > 0.2 and float((clipped - x).abs().max()) <= 0.1 + 1e-7
    torch.testing.assert_close(clipped, x + (free - x).clamp(-0.1, 0.1))
    assert build_method("nfgsm", {}, _ctx()).hp.clip_ratio == 0


# --- CFA's A_c: correct_c/n_c (paper) or C·correct_c/N (code) ------------------------------------------------------

@pytest.mark.parametrize("fidelity,hp,scale", [("paper", {}, [1.0, 1.0, 1.0]), ("code", {}, [2.0, 0.5, 0.5]),
                                               ("paper", {"ccm.class_acc": "code"}, [2.0, 0.5, 0.5]),
                                               ("code", {"ccm.class_acc": "paper"}, [1.0, 1.0, 1.0])])
def test_ccm_class_accuracy_form_follows_fidelity(fidelity, hp, scale):
    method = build_method("pgd_at+ccm", {"ccm.begin_epoch": "0", **hp}, _ctx(fidelity, class_counts=(4, 1, 1)))
    method.on_epoch_end(None, 0, [0.25, 0.5, 1.0])
    method.on_epoch_start(None, 1)
    acc = torch.tensor([0.25, 0.5, 1.0]) * torch.tensor(scale)  # code: 3·n_c/6 · correct_c/n_c
    torch.testing.assert_close(method.class_eps, (0.5 + acc) * 0.2)


# --- float64 models stay float64 (casts to float32 only under autocast) -------------------------------------------

def test_loss_dtype_casts_only_half_precision():
    assert loss_dtype(torch.zeros(2, dtype=torch.bfloat16)).dtype == torch.float32
    assert loss_dtype(torch.zeros(2, dtype=torch.float16)).dtype == torch.float32
    assert loss_dtype(torch.zeros(2, dtype=torch.float64)).dtype == torch.float64


def test_float64_attack_gradients_and_losses_are_exact_in_float64():
    model, (x, y) = _linear(torch.float64), _data(dtype=torch.float64)
    u = x.clone().requires_grad_(True)
    exact = torch.autograd.grad(F.cross_entropy(model(u), y), u)[0]
    assert torch.equal(input_grad(model, x, y, ce_loss), exact)
    logits = model(x)
    assert probabilistic_margin(logits, y).dtype == torch.float64
    assert margin_weighted_ce(logits, y, 0.1).dtype == torch.float64
    assert constant_probs(model, x).dtype == torch.float64
    mart = build_method("mart", {}, _ctx(dtype=torch.float64))
    torch.manual_seed(0)
    x_adv = pgd(model, x, y, eps=0.2, step_size=0.05, steps=3, init="normal")
    p_adv, p_nat = model(x_adv).softmax(1), model(x).softmax(1)
    wrong = p_adv.scatter(1, y[:, None], float("-inf")).argmax(1)
    bce = F.cross_entropy(model(x_adv), y, reduction="none") - torch.log(
        1.0001 - p_adv.gather(1, wrong[:, None]).squeeze(1) + 1e-12)
    kl = (torch.xlogy(p_nat, p_nat) - p_nat * torch.log(p_adv + 1e-12)).sum(1)
    expected = bce.mean() + 6.0 * (kl * (1.0000001 - p_nat.gather(1, y[:, None]).squeeze(1))).mean()
    assert torch.equal(_loss(mart, model, x, y), expected)
