"""The one-step look-ahead of meta-reweighting methods (CAAT, BiLAW; MW-Net convention).

θ'(φ) is the model after one differentiable step of the run's own SGD optimiser on a loss that depends on
meta-parameters φ (a weighting network): same lr, weight decay, momentum buffer, dampening and Nesterov
flag as `torch.optim.SGD` would apply. Evaluating a clean meta batch at θ' with `torch.func.functional_call`
and differentiating w.r.t. φ gives the hypergradient; the model itself is never modified. Under bf16 autocast
(bench.precision) θ' stays float32: gradients come back in the parameters' dtype and autocast leaves the
elementwise update alone; only the forwards at θ' compute in bf16.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.func import functional_call


def sgd_lookahead(model: nn.Module, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Parameters after one SGD step on `loss`, kept differentiable w.r.t. whatever `loss` depends on."""
    if not isinstance(optimizer, torch.optim.SGD):
        raise TypeError(f"the look-ahead mirrors torch.optim.SGD; got {type(optimizer).__name__}")
    if any(g.get("maximize") for g in optimizer.param_groups):
        raise ValueError("the look-ahead assumes a minimising optimiser (maximize=False)")
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [p for _, p in named], create_graph=True, allow_unused=True)
    stepped: dict[str, torch.Tensor] = {}
    for (name, p), grad in zip(named, grads):
        group = group_of[id(p)]
        stepped[name] = p - group["lr"] * _direction(p, grad, group, optimizer.state.get(p, {}))
    return stepped


def _direction(p: torch.Tensor, grad: torch.Tensor | None, group: dict[str, Any], state: dict[str, Any]) -> torch.Tensor:
    d = torch.zeros_like(p) if grad is None else grad
    if group["weight_decay"]:
        d = d + group["weight_decay"] * p
    momentum = group["momentum"]
    if not momentum:
        return d
    buf = state.get("momentum_buffer")
    buf = d if buf is None else momentum * buf + (1 - group["dampening"]) * d
    return d + momentum * buf if group["nesterov"] else buf


def forward_with(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """model(x) with `params` in place of the model's parameters (buffers are the model's own)."""
    return functional_call(model, params, (x,), strict=False)


def buffer_copies(model: nn.Module) -> dict[str, torch.Tensor]:
    """Private copies of the model's buffers: train-mode BN statistics of look-ahead forwards land there."""
    return {name: b.clone() for name, b in model.named_buffers()}


def forward_isolated(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """model(x) at `params`, leaving the real model's BN running statistics untouched."""
    return forward_with(model, {**buffer_copies(model), **params}, x)


class WithParams(nn.Module):
    """`model` evaluated at other parameters (and private copies of its buffers, so that train-mode BN
    statistics of look-ahead forwards never reach the real model): an nn.Module attacks can run on.
    `buffers` shares another such module's private buffers: a pseudo model stepped in place (CAAT's code,
    MetaSGD) keeps the BN statistics its own train-mode forward left."""

    def __init__(self, model: nn.Module, params: dict[str, torch.Tensor],
                 buffers: dict[str, torch.Tensor] | None = None):
        super().__init__()
        self.model = model
        self.private_buffers = buffer_copies(model) if buffers is None else buffers
        self.tensors = {**params, **self.private_buffers}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, self.tensors, (x,), strict=False)
