"""Every paper schedule switches in the 0-based epoch its official code switches in (the code's epoch counter),
pinned at the paper's epoch counts."""
import pytest
import torch
from torch import nn

import methods.fairness.baseline_reweight as baseline_reweight
import methods.cfa.fawa as fawa
import methods.fairness.frl as frl
from bench.data import Split
from methods import MethodContext, build_method
from methods.fairness.constraints import ClassErrors
from methods.core.reference_epoch import at_least, beyond, first_epoch, reference_epoch

C = 4


def _ctx(epochs, heldout=None, num_classes=C):
    return MethodContext(num_classes=num_classes, eps=0.1, step_size=0.025, attack_steps=4, epochs=epochs,
                         steps_per_epoch=1, class_counts=(8,) * num_classes, heldout=heldout or {},
                         device=torch.device("cpu"), fidelity="paper", new_model=lambda: nn.Linear(4, num_classes),
                         image_shape=(1, 2, 2))


def _meta():
    return {"meta": Split(torch.zeros((8, 1, 2, 2), dtype=torch.uint8), torch.arange(8) % C)}


def test_the_counter_is_the_runner_epoch_plus_its_start_and_refuses_others():
    assert [reference_epoch(0, 1), reference_epoch(0, 0), reference_epoch(39, 1)] == [1, 0, 40]
    assert at_least(59, 0.5, 120) and not at_least(58, 0.5, 120)
    assert beyond(76, 75 / 120, 120, counts_from=0) and not beyond(75, 75 / 120, 120, counts_from=0)
    assert first_epoch(lambda e: False, 7) == 7
    with pytest.raises(ValueError, match="starts at 0 or 1"):
        reference_epoch(3, 2)


def test_gairat_weights_from_epoch_59_of_120():  # GAIRAT.py: `(epoch + 1) >= begin_epoch` (60)
    method = build_method("gairat", {}, _ctx(120))
    assert first_epoch(method.weighted, 120) == 59


@pytest.mark.parametrize("name", ["mail_at", "mail_trades"])
def test_mail_weights_from_epoch_76_of_120(name):  # MAIL's train.py: plain while `epoch <= 75`
    method = build_method(name, {}, _ctx(120))
    assert first_epoch(method.weighted, 120) == 76


def test_official_fat_tau_rises_at_epochs_50_and_90_of_120():  # FAT.py: `adjust_tau(epoch + 1)`
    method = build_method("fat", {"variant": "official"}, _ctx(120))
    assert first_epoch(lambda e: method.tau(e) >= 1, 120) == 50
    assert first_epoch(lambda e: method.tau(e) >= 2, 120) == 90


def _errors():
    flat = torch.full((C,), 0.1)
    return ClassErrors(flat, flat, flat, 0.1, 0.1, 0.1)


def _rho_by_epoch(method, epochs, rho):
    values = []
    for epoch in range(epochs):
        method.on_epoch_start(None, epoch)
        values.append(rho(method))
    return values


@pytest.mark.parametrize("name", ["frl_rw", "frl_rm", "frl_rwrm"])
def test_frl_halves_rho_first_in_epoch_39_of_40(name, monkeypatch):  # frlrw.py: `now_epoch % 40 == 0`, from 1
    monkeypatch.setattr(frl, "class_errors", lambda *a, **k: _errors())
    method = build_method(name, {}, _ctx(40, _meta()))
    rho = _rho_by_epoch(method, 40, lambda m: m.constraints.rho)
    assert first_epoch(lambda e: rho[e] < method.hp.rho_weight, 40) == 39
    assert rho[39] == pytest.approx(method.hp.rho_weight / 2)


def test_baseline_reweight_halves_rho_as_frl_does(monkeypatch):
    monkeypatch.setattr(baseline_reweight, "class_errors", lambda *a, **k: _errors())
    method = build_method("baseline_reweight", {}, _ctx(40, _meta()))
    rho = _rho_by_epoch(method, 40, lambda m: m.rho)
    assert first_epoch(lambda e: rho[e] < method.hp.rho, 40) == 39


def test_uiat_momentum_from_epoch_74_and_one_off_in_epoch_79_of_100():  # App. A.2: T = 75, T′ = 80, from 1
    assert build_method("uiat", {}, _ctx(100, num_classes=10)).momentum_start == 74
    assert build_method("uiat_oneoff", {}, _ctx(100, num_classes=10)).target.start == 79
    assert build_method("nfgsm+uiat", {}, _ctx(30, num_classes=10)).addons["uiat"].target.start == 23


def test_ccm_and_ccr_calibrate_from_epoch_10():  # CFA's train.py: `epoch >= args.begin` (10), 0-based
    method = build_method("trades+ccm+ccr", {"loss_scale": "cfa"}, _ctx(200))

    def calibrated(epoch):
        method.on_epoch_end(None, epoch, [1.0] * C)
        method.on_epoch_start(None, epoch + 1)
        return not torch.allclose(method.class_eps, torch.full((C,), 0.1))

    assert first_epoch(lambda e: calibrated(e - 1) if e else False, 200) == 10


@pytest.mark.parametrize("addon", ["ema", "fawa"])
def test_weight_averages_start_in_the_50th_epoch(addon, monkeypatch):  # CFA §5.1: "begin at the 50-th epoch"
    monkeypatch.setattr(fawa, "validation_robustness", lambda *a, **k: 1.0)
    val = {"val": Split(torch.zeros((4, 1, 2, 2), dtype=torch.uint8), torch.arange(4) % C)}
    method = build_method(f"pgd_at+{addon}", {}, _ctx(200, val))
    model = nn.Linear(4, C)
    assert first_epoch(lambda e: bool(method.on_epoch_end(model, e, [1.0] * C)), 200) == 49
