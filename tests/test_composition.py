"""Add-ons declare the base's per-class quantities they recalibrate (Addon.needs), bases declare what they expose
(Method.per_class), and composing checks one against the other; `+cfa` is the named expansion `+ccm[+ccr]+fawa`
whose hyperparameters and defaults come from its parts."""
import dataclasses

import pytest
import torch
from torch import nn

from bench.config import RunConfig
from bench.data import Split
from methods import ADDONS, METHODS, MethodContext, build_method, resolved_hparams
from methods.cfa.ccm import CCM
from methods.cfa.ccr import CCR
from methods.cfa.fawa import FAWA
from methods.core.expansion import Expansion

C = 3


def _ctx(heldout=None):
    return MethodContext(num_classes=C, eps=0.1, step_size=0.025, attack_steps=2, epochs=5, steps_per_epoch=1,
                         class_counts=(1,) * C, heldout=heldout or {}, device=torch.device("cpu"), fidelity="paper",
                         new_model=lambda: nn.Linear(4, C), image_shape=(1, 2, 2), batch_size=2)


def test_an_add_on_on_a_base_lacking_what_it_recalibrates_is_refused_naming_both():
    with pytest.raises(ValueError, match=r"method 'pgd_at\+ccr': add-on 'ccr' recalibrates the base's per-class "
                                         r"'beta', which base method 'pgd_at' does not declare \(its per_class: eps\); "
                                         r"bases that do: trades"):
        build_method("pgd_at+ccr", {}, _ctx())
    with pytest.raises(ValueError, match=r"'natural' does not declare \(its per_class: none\)"):
        RunConfig(method="natural+ccm")  # refused when the config is built, before any folder exists
    with pytest.raises(ValueError, match="add-on 'cfa' .* 'eps', which base method 'caat' does not declare"):
        RunConfig(method="caat+cfa")  # CAAT sets its own class budgets every epoch


def test_two_add_ons_recalibrating_one_quantity_are_refused():
    with pytest.raises(ValueError, match="add-ons 'ccm' and 'cfa' both recalibrate the per-class 'eps'"):
        RunConfig(method="trades+ccm+cfa")


def test_cfa_expands_to_its_parts_and_takes_ccr_only_on_a_base_declaring_beta():
    cfa = ADDONS.get("cfa")
    assert issubclass(cfa, Expansion) and cfa.expands_to == {"ccm": CCM, "ccr": CCR, "fawa": FAWA}
    assert list(cfa.included(METHODS.get("trades"))) == ["ccm", "ccr", "fawa"]
    assert list(cfa.included(METHODS.get("pgd_at"))) == list(cfa.included(METHODS.get("fat"))) == ["ccm", "fawa"]
    assert cfa.needs_on(METHODS.get("trades")) == {"eps", "beta"} and cfa.needs_on(METHODS.get("fat")) == {"eps"}
    assert cfa.heldout_kind == "cfa_val"  # FAWA's


def test_cfa_hyperparameters_are_the_parts_fields_with_the_parts_defaults():
    merged = {f.name: f.default for f in dataclasses.fields(ADDONS.get("cfa").Hparams)}
    parts = {f.name: f.default for part in (CCM, CCR, FAWA) for f in dataclasses.fields(part.Hparams)}
    assert merged == parts
    recorded = {k: v for k, v in resolved_hparams("pgd_at+cfa", {}).items() if k.startswith("cfa.")}
    assert recorded == {f"cfa.{k}": v for k, v in parts.items()}


def test_cfa_prefixed_values_reach_every_part_that_has_the_field():
    val = Split(torch.zeros((6, 1, 2, 2), dtype=torch.uint8), torch.tensor([0, 0, 1, 1, 2, 2]))
    method = build_method("trades+cfa", {"loss_scale": "cfa", "cfa.lam1": "0.45", "cfa.begin_epoch": "3",
                                         "cfa.lam2": "0.2", "cfa.decay": "0.5"}, _ctx({"val": val}))
    parts = method.addons["cfa"].parts
    assert parts["ccm"].lam1 == 0.45 and parts["ccr"].hp.lam2 == 0.2 and parts["fawa"].hp.decay == 0.5
    assert parts["ccm"].hp.begin_epoch == parts["ccr"].hp.begin_epoch == 3
    assert parts["ccm"].hp.class_acc == parts["ccr"].hp.class_acc == "paper"  # "fidelity" resolved for both
    with pytest.raises(ValueError, match=r"hp cfa\.begin_epoch=-1 is not allowed; allowed: a 0-based epoch ≥ 0"):
        RunConfig(method="trades+cfa", hp=(("cfa.begin_epoch", "-1"),))


# Computed with the code before `cfa` became an expansion (commit b4bd6ee): runs in progress keep their ids.
IDS_BEFORE = {
    "trades+cfa_cifar10_preact-resnet18_s0-5c53247d5e": dict(
        method="trades+cfa", dataset="cifar10", model="preact-resnet18",
        hp=(("loss_scale", "cfa"), ("cfa.lam1", "0.3"), ("cfa.begin_epoch", "1"), ("cfa.start_epoch", "5"))),
    "pgd_at+cfa_cifar10_preact-resnet18_s0-69c7f0407e": dict(
        method="pgd_at+cfa", dataset="cifar10", model="preact-resnet18",
        hp=(("bn_mode", "train"), ("cfa.lam1", "0.5"), ("cfa.worst", "worst20"), ("cfa.threshold", "0.05"))),
    "fat+cfa_cifar10_preact-resnet18_s0-f1c4a2fef6": dict(method="fat+cfa", dataset="cifar10", model="preact-resnet18"),
    "pgd_at+cfa_fmnist_tiny-cnn_s0-04b68574ca": dict(
        method="at+cfa", fidelity="code", hp=(("cfa.decay", "0.88"), ("cfa.threshold", "0.24"), ("cfa.start_epoch", "1"))),
    "trades+cfa_fmnist_tiny-cnn_s0-8f5df00c5f": dict(
        method="trades+cfa", hp=(("loss_scale", "cfa"), ("cfa.lam2", "0.3"), ("cfa.class_acc", "code"))),
}


@pytest.mark.parametrize("run_id", IDS_BEFORE)
def test_cfa_run_ids_are_those_of_the_copied_defaults(run_id):
    assert RunConfig(**IDS_BEFORE[run_id]).run_id() == run_id
