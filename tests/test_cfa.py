"""CFA's parts on tiny inputs: CCM/CCR calibrate from last epoch's train robust accuracy, FAWA gates averaging."""
import pytest
import torch
from torch import nn

from bench.data import Split
from methods import MethodContext, build_method

C = 3


def _ctx(heldout=None, new_model=None):
    return MethodContext(num_classes=C, eps=0.1, step_size=0.025, attack_steps=2, epochs=5, steps_per_epoch=1,
                         class_counts=(1,) * C, heldout=heldout or {}, device=torch.device("cpu"), fidelity="paper",
                         new_model=new_model or (lambda: nn.Linear(4, C)))


def test_ccm_raises_a_class_budget_when_its_train_robust_accuracy_rises():
    method = build_method("pgd_at+ccm", {"ccm.begin_epoch": "1"}, _ctx())
    method.on_epoch_start(None, 0)
    torch.testing.assert_close(method.class_eps, torch.full((C,), 0.1))  # warm-up: uniform ε
    method.on_epoch_end(None, 0, [0.2, 0.4, None])
    method.on_epoch_start(None, 1)
    # AT's default λ₁ = 0.5; the absent class keeps its previous accuracy (0)
    torch.testing.assert_close(method.class_eps, torch.tensor([0.7, 0.9, 0.5]) * 0.1)
    method.on_epoch_end(None, 1, [0.6, 0.4, 0.1])
    method.on_epoch_start(None, 2)
    assert method.class_eps[0] > 0.07 and method.class_eps[1] == pytest.approx(0.09)
    assert torch.equal(method.eps_for(torch.tensor([2, 0])), method.class_eps[[2, 0]])


def test_ccm_budget_defaults_follow_the_base_and_can_be_set():
    assert build_method("trades+ccm", {}, _ctx()).addons["ccm"].lam1 == 0.3
    assert build_method("trades+ccm", {"ccm.lam1": "0.6"}, _ctx()).addons["ccm"].lam1 == 0.6
    with pytest.raises(ValueError, match="no default λ₁ for base method 'mart'"):
        build_method("mart+ccm", {}, _ctx())


def test_ccr_calibrates_trades_beta_and_needs_cfa_loss_scale():
    with pytest.raises(ValueError, match="loss_scale=cfa"):
        build_method("trades+ccr", {}, _ctx())
    with pytest.raises(ValueError, match="base method 'pgd_at' does not declare"):
        build_method("pgd_at+ccr", {}, _ctx())
    method = build_method("trades+ccr", {"loss_scale": "cfa", "ccr.begin_epoch": "0"}, _ctx())
    method.on_epoch_end(None, 0, [0.0, 0.5, 1.0])
    method.on_epoch_start(None, 1)
    torch.testing.assert_close(method.base.class_beta, torch.tensor([0.5, 1.0, 1.5]) * 6.0)


class _Constant(nn.Module):
    """Predicts class 0 for every input, so class 0 is always right and the others always wrong."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([1.0, 0.0, 0.0]))

    def forward(self, x):
        return self.bias.expand(x.shape[0], C) + 0 * x.flatten(1)[:, :1]


def _val_split():
    return Split(torch.full((6, 1, 2, 2), 128, dtype=torch.uint8), torch.tensor([0, 0, 1, 1, 2, 2]))


@pytest.mark.parametrize("threshold,accepted", [(0.2, False), (0.0, True)])
def test_fawa_skips_a_checkpoint_whose_worst_class_robustness_is_below_the_threshold(threshold, accepted):
    method = build_method("pgd_at+fawa", {"fawa.start_epoch": "1", "fawa.threshold": str(threshold)},
                          _ctx({"val": _val_split()}, _Constant))
    record = method.on_epoch_end(_Constant(), 0, [1.0, 0.0, 0.0])
    assert record["fawa.val_worst_robust"] == 0.0  # classes 1 and 2 are never predicted
    assert record["fawa.accepted"] is accepted
    assert ("fawa" in method.averaged_models()) is accepted


def test_fawa_averages_only_accepted_epochs():
    method = build_method("pgd_at+fawa", {"fawa.start_epoch": "1", "fawa.threshold": "0", "fawa.decay": "0.5"},
                          _ctx({"val": _val_split()}, _Constant))
    models = [_Constant() for _ in range(2)]
    with torch.no_grad():
        models[1].bias.add_(2.0)
    method.on_epoch_end(models[0], 0, [0.0] * C)
    method.on_epoch_end(models[1], 1, [0.0] * C)
    torch.testing.assert_close(method.averaged_models()["fawa"].bias, torch.tensor([2.0, 1.0, 1.0]))


def test_cfa_adds_ccr_only_on_trades_and_needs_the_validation_split():
    ctx = _ctx({"val": _val_split()})
    assert set(build_method("trades+cfa", {"loss_scale": "cfa"}, ctx).addons["cfa"].parts) == {"ccm", "ccr", "fawa"}
    assert set(build_method("pgd_at+cfa", {}, ctx).addons["cfa"].parts) == {"ccm", "fawa"}
    with pytest.raises(ValueError, match="--heldout cfa_val"):
        build_method("pgd_at+cfa", {}, _ctx())
