"""The meta look-ahead: its parameters equal a real SGD step, and its hypergradient equals finite differences."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from methods.core.lookahead import forward_with, sgd_lookahead

SETTINGS = [dict(momentum=0.0, weight_decay=0.0, nesterov=False),
            dict(momentum=0.9, weight_decay=5e-4, nesterov=False),
            dict(momentum=0.9, weight_decay=2e-4, nesterov=True)]


def _setup(settings):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.3, **settings)
    x, y = torch.randn(12, 5, dtype=torch.float64), torch.randint(0, 3, (12,))
    F.cross_entropy(model(x), y).backward()  # a first real step, so momentum buffers exist
    opt.step()
    opt.zero_grad()
    return model, opt, x, y


def _weighted_loss(model, x, y, phi):
    weights = torch.softmax(phi, 0)  # the "weighting network": one logit per sample
    return (weights * F.cross_entropy(model(x), y, reduction="none")).sum()


@pytest.mark.parametrize("settings", SETTINGS)
def test_lookahead_equals_a_real_sgd_step(settings):
    model, opt, x, y = _setup(settings)
    phi = torch.randn(12, dtype=torch.float64)
    before = copy.deepcopy(model.state_dict())
    stepped = sgd_lookahead(model, _weighted_loss(model, x, y, phi), opt)
    real = copy.deepcopy(model)
    real_opt = torch.optim.SGD(real.parameters(), lr=0.3, **settings)
    real_opt.load_state_dict(opt.state_dict())
    _weighted_loss(real, x, y, phi).backward()
    real_opt.step()
    for name, p in real.named_parameters():
        torch.testing.assert_close(stepped[name], p, rtol=0, atol=1e-12)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), "the look-ahead must not modify the model"


@pytest.mark.parametrize("settings", SETTINGS)
def test_hypergradient_matches_finite_differences(settings):
    model, opt, x, y = _setup(settings)
    x_val, y_val = torch.randn(9, 5, dtype=torch.float64), torch.randint(0, 3, (9,))
    phi = torch.randn(12, dtype=torch.float64, requires_grad=True)

    def val_loss(phi_value):
        stepped = sgd_lookahead(model, _weighted_loss(model, x, y, phi_value), opt)
        return F.cross_entropy(forward_with(model, stepped, x_val), y_val)

    analytic, = torch.autograd.grad(val_loss(phi), phi)
    h = 1e-6
    numeric = torch.stack([(val_loss(phi.detach() + h * e) - val_loss(phi.detach() - h * e)).detach() / (2 * h)
                           for e in torch.eye(12, dtype=torch.float64)])
    assert analytic.abs().max() > 1e-6, "the test needs a non-trivial hypergradient"
    torch.testing.assert_close(analytic, numeric, rtol=1e-5, atol=1e-9)


def test_lookahead_refuses_other_optimisers():
    model = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="Adam"):
        sgd_lookahead(model, model(torch.ones(1, 2)).sum(), torch.optim.Adam(model.parameters()))
