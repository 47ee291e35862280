"""Method composition (`base+addon`), add-on hyperparameter routing and the EMA add-on's arithmetic."""
import pytest
import torch
from torch import nn

from bench.registry import UnknownNameError
from methods import MethodContext, build_method, resolved_hparams
from methods.core.addon import Composite


def _ctx(new_model):
    return MethodContext(num_classes=3, eps=0.1, step_size=0.025, attack_steps=2, epochs=5, steps_per_epoch=1,
                         class_counts=(1, 1, 1), heldout={}, device=torch.device("cpu"), fidelity="paper",
                         new_model=new_model)


def _net():
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))


def test_addon_hyperparameters_are_prefixed_and_recorded():
    hp = resolved_hparams("trades+ema", {"beta": "1", "ema.decay": "0.88", "ema.start_epoch": "1"})
    assert hp["beta"] == 1.0 and hp["ema.decay"] == 0.88 and hp["ema.start_epoch"] == 1
    assert resolved_hparams("trades", {})["beta"] == 6.0


@pytest.mark.parametrize("name,overrides,error,match", [
    ("pgd_at+emma", {}, UnknownNameError, "Did you mean 'ema'"),
    ("pgd_at+ema", {"foo.decay": "0.9"}, ValueError, "'foo' is not an add-on"),
    ("pgd_at+ema", {"ema.decy": "0.9"}, ValueError, r"unknown hyperparameter\(s\) \['decy'\]"),
    ("pgd_at+ema+ema", {}, ValueError, "names an add-on twice"),
])
def test_bad_compositions_are_refused(name, overrides, error, match):
    with pytest.raises(error, match=match):
        resolved_hparams(name, overrides)


def test_ema_copies_then_averages_params_and_bn_buffers():
    torch.manual_seed(0)
    method = build_method("natural+ema", {"ema.decay": "0.5", "ema.start_epoch": "2"}, _ctx(_net))
    assert isinstance(method, Composite)
    model = _net()
    snapshots = []
    for epoch in range(4):
        with torch.no_grad():
            model[0].weight.add_(torch.randn_like(model[0].weight))
        model.train()
        model(torch.randn(8, 4))  # moves BN running stats and num_batches_tracked
        method.on_epoch_end(model, epoch, [0.0] * 3)
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        assert ("ema" in method.averaged_models()) == (epoch + 1 >= 2)
    ema = method.averaged_models()["ema"].state_dict()
    # copy after epoch 2 (index 1), then two averaging steps with d = 0.5
    expected = 0.25 * snapshots[1]["0.weight"] + 0.25 * snapshots[2]["0.weight"] + 0.5 * snapshots[3]["0.weight"]
    torch.testing.assert_close(ema["0.weight"], expected)
    expected_rm = 0.25 * snapshots[1]["1.running_mean"] + 0.25 * snapshots[2]["1.running_mean"] \
        + 0.5 * snapshots[3]["1.running_mean"]
    torch.testing.assert_close(ema["1.running_mean"], expected_rm)
    assert ema["1.num_batches_tracked"].dtype == torch.int64
    assert int(ema["1.num_batches_tracked"]) == round(0.25 * 2 + 0.25 * 3 + 0.5 * 4)


def test_composite_state_round_trips():
    torch.manual_seed(0)
    a = build_method("pgd_at+ema", {"ema.start_epoch": "1"}, _ctx(_net))
    model = _net()
    a.on_epoch_end(model, 0, [0.0] * 3)
    b = build_method("pgd_at+ema", {"ema.start_epoch": "1"}, _ctx(_net))
    assert b.averaged_models() == {}
    b.load_state_dict(a.state_dict())
    for k, v in a.averaged_models()["ema"].state_dict().items():
        torch.testing.assert_close(b.averaged_models()["ema"].state_dict()[k], v)


def test_papers_short_names_resolve_to_one_registered_method():
    from methods import METHODS, canonical_name

    assert canonical_name("at+cfa") == "pgd_at+cfa" and canonical_name("trades+ema") == "trades+ema"
    assert METHODS.get("at") is METHODS.get("pgd_at") and "at" not in METHODS.names()
