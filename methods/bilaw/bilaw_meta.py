"""The bilevel machinery shared by BiLAW's variants (BiLAW §3): weighting inputs, the weighting net ω_μ,
the one-step look-ahead θ̃ and the validation loss at θ̃ on which the weights are learned.

The look-ahead is MW-Net's: θ̃ = θ − η∇_θ L_tr(θ, w), differentiable in w. Which step the look-ahead takes
is [AMBIG]: "plain" = SGD at the optimiser's current lr without momentum or weight decay (MW-Net, the
bench's default); "optimizer" = the run's own SGD step incl. momentum buffer and weight decay
(`methods.core.lookahead.sgd_lookahead`).

Forward passes at θ̃ (and the extra clean forward of the loss-gap input) run on copies of the model's
buffers: the look-ahead model is a throw-away copy in MW-Net, so its BN running statistics must not leak
into the real model. ω_μ itself runs outside autocast: it is tiny, and its hypergradient is all it learns from.

μ's update (`META_OPTIMIZERS`): "sgd" is the paper's Alg. 1 line 6 / Eq. 6, μ ← μ − α∇_μL_val(θ̃), a plain
step whose size scales with the classifier's lr through θ̃ (Eq. 6's αβ), with no weight decay; "adam" is
MW-Net's official choice (Adam, lr 1e-3, weight decay 1e-4), which normalises that scale away.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from methods.core.lookahead import forward_isolated, sgd_lookahead
from methods.core.sample_weights import sum_one


def parse_widths(text: str) -> tuple[int, ...]:
    """Hidden widths of ω_μ from an hparam string: "128" → (128,), "64-64" → (64, 64)."""
    try:
        widths = tuple(int(part) for part in text.split("-"))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise ValueError(f"hidden={text!r} must be positive widths joined by '-', e.g. '128' or '64-64'")
    return widths


def input_size(kind: str, num_classes: int) -> int:
    return num_classes if kind == "margin_vector" else 1


MARGIN_KINDS = ("margin_vector", "margin")
MARGIN_ON = ("adv", "clean")


def weight_inputs(kind: str, logits_adv: Tensor, y: Tensor, logits_clean: Tensor | None = None,
                  margin_on: str = "adv") -> Tensor:
    """What ω_μ sees per sample (n, d), detached.

    margin_vector: Δ^(j) = p_y − p_j (Def. 3, the default); margin: p_y − max_{j≠y} p_j (Def. 2), both read
    off the logits on x_adv, or on the clean x when margin_on="clean" (Eq. 8: "the multi-class margin of f_θ
    at x_i"); robust_loss: CE(x_adv); loss_gap: CE(x_adv) − CE(x) (both need the clean logits).
    """
    if kind in ("robust_loss", "loss_gap"):
        robust = F.cross_entropy(logits_adv.detach().float(), y, reduction="none")
        if kind == "robust_loss":
            return robust[:, None]
        return (robust - F.cross_entropy(logits_clean.detach().float(), y, reduction="none"))[:, None]
    p = (logits_clean if margin_on == "clean" else logits_adv).detach().float().softmax(1)
    delta = p.gather(1, y[:, None]) - p
    if kind == "margin_vector":
        return delta
    return delta.scatter(1, y[:, None], float("inf")).amin(1, keepdim=True)  # min_{j≠y} Δ^(j)


class WeightingNet(nn.Sequential):
    """ω_μ: FC-ReLU per hidden width, then FC → 1 and a sigmoid, so every raw weight lies in (0, 1)."""

    def __init__(self, in_features: int, widths: tuple[int, ...]):
        layers: list[nn.Module] = []
        for width in widths:
            layers += [nn.Linear(in_features, width), nn.ReLU()]
            in_features = width
        super().__init__(*layers, nn.Linear(in_features, 1), nn.Sigmoid())

    def raw_weights(self, inputs: Tensor) -> Tensor:
        """ω_μ's per-sample predictions in (0, 1), before the per-batch normalisation."""
        with torch.autocast(inputs.device.type, enabled=False):
            return self(inputs.to(self[0].weight.dtype)).squeeze(1)

    def weights(self, inputs: Tensor) -> Tensor:
        """Per-sample weights normalised to sum 1 over the batch."""
        return sum_one(self.raw_weights(inputs))


def lookahead(model: nn.Module, loss: Tensor, optimizer: torch.optim.Optimizer, mode: str) -> dict[str, Tensor]:
    """θ̃ after one differentiable step on `loss` ("plain" or "optimizer", see the module docstring)."""
    if mode == "optimizer":
        return sgd_lookahead(model, loss, optimizer)
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [p for _, p in named], create_graph=True, allow_unused=True)
    return {name: p if g is None else p - lr_of[id(p)] * g for (name, p), g in zip(named, grads)}


def validation_loss(model: nn.Module, params: dict[str, Tensor], x_val_adv: Tensor, y_val: Tensor) -> Tensor:
    """L_val(θ̃): mean robust CE of the validation adversaries at the look-ahead parameters."""
    return F.cross_entropy(forward_isolated(model, params, x_val_adv), y_val)  # float32 under autocast


META_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}
META_WEIGHT_DECAY = {"sgd": 0.0, "adam": 1e-4}  # Eq. 6 has none; MW-Net's Adam uses 1e-4


class MetaLearner:
    """ω_μ and its own optimiser: learns μ by descending L_val(θ̃(μ)) once per training step."""

    def __init__(self, in_features: int, widths: tuple[int, ...], optimizer: str, lr: float, weight_decay: float,
                 device: torch.device, seed: int):
        if optimizer not in META_OPTIMIZERS:
            raise ValueError(f"meta_opt={optimizer!r} is not one of {sorted(META_OPTIMIZERS)}")
        with torch.random.fork_rng(devices=[]):  # the same μ₀ for a seed, without touching the run's RNG
            torch.manual_seed(seed)
            self.net = WeightingNet(in_features, widths).to(device)
        self.optimizer = META_OPTIMIZERS[optimizer](self.net.parameters(), lr=lr, weight_decay=weight_decay)

    def hypergradient(self, model: nn.Module, optimizer: torch.optim.Optimizer, inputs: Tensor,
                      weighted_loss: Callable[[Tensor], Tensor], x_val_adv: Tensor, y_val: Tensor,
                      mode: str) -> tuple[list[Tensor], Tensor]:
        """(∂L_val(θ̃)/∂μ per parameter of ω_μ, L_val) with θ̃ = look-ahead on weighted_loss(ω_μ-weights).

        The training graph behind `weighted_loss` is kept, so the caller can still backpropagate the
        real loss through it.
        """
        stepped = lookahead(model, weighted_loss(self.net.weights(inputs)), optimizer, mode)
        val_loss = validation_loss(model, stepped, x_val_adv, y_val)
        return list(torch.autograd.grad(val_loss, list(self.net.parameters()), retain_graph=True)), val_loss.detach()

    def step(self, grads: list[Tensor]) -> None:
        for p, g in zip(self.net.parameters(), grads):
            p.grad = g
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        return {"net": {k: v.cpu() for k, v in self.net.state_dict().items()}, "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
