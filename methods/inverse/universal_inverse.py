"""Inverse adversaries (Dong et al. 2023, UIAT §3): the pieces IAT, UIAT, UIAT one-off and the `+uiat` add-on
share.

* `inverse_loss` — L_inv of Eq. 4 per sample: CE(f(u), y) + β·[L1(F(u), F(x)) − L1(F(u), F(x̂))], F the
  penultimate features, L1 the mean absolute difference over feature dimensions [AMBIG: PyTorch's L1Loss
  default], F(x) and F(x̂) constants. β = 0 is plain CE (no feature forward at all).
* `UniversalInverse` — one persistent perturbation z_c per class (Eq. 6), shared by every sample of class c:
  per batch one signed descent step on Σ_{i: y_i=c} L_inv(clip(x_i + z_c, 0, 1)), then z_c is clipped to the
  ε′-ball. One backward pass gives every class its own gradient (z_c reaches only its own samples), so a class
  absent from the batch gets a zero gradient and does not move.
* `InstanceInverse` — IAT's instance-wise inverse adversaries (App. B.1): PGD *descent* on L_inv from
  x + 0.001·N(0, I) inside the ε′-ball ∩ [0,1], on the bench's PGD engine.
  Both give `probs(model, x, y, x_adv)` = p(x̃), the target of the outer KL, as a constant.
* `TargetMemory` — per-sample target distributions P ∈ R^{train_size×C}, indexed by `Batch.idx`, with the
  inverse-adversary momentum of Eq. 8.
* `OneOffTarget` — Eq. 10: p(x) before epoch T′, p(x̃) during epoch T′ (stored), the stored value after it.
* `reference_start` — T and T′ counted from 1 as in HAT's code, which UIAT builds on (T′ = 80 of 100 → 0-based 79).

Every forward that builds inverse adversaries or their predictions runs in the method's `bn_mode` (default
eval, as for attacks [AMBIG: UIAT builds on HAT's code]) and never touches parameter gradients.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.attacks import pgd
from bench.attacks.losses import kl_per_sample, kl_to_target, loss_dtype
from bench.attacks.mode import model_mode
from bench.attacks.pgd import NORMAL_INIT_STD
from methods.core.reference_epoch import at_least, check_fraction, first_epoch
from methods.core.step_bound import Passes, forward, update

# Anchor features (F(x), F(x̂)) of the feature regulariser, or None when β = 0.
Anchors = tuple[Tensor, Tensor] | None


def fraction_of_eps(ratio: float, eps: float, name: str) -> float:
    """A radius or step size given as a fraction of the run's ε, in pixels."""
    if not ratio > 0:
        raise ValueError(f"{name}={ratio} must be > 0 (a fraction of the run's ε = {eps:.5g})")
    return ratio * eps


def reference_start(fraction: float, epochs: int, name: str) -> int:
    """The 0-based epoch at which a phase that starts at epoch `fraction`·epochs, counted from 1 as in HAT's
    code (UIAT's T, T′), begins: T = 75 of 100 → 74; `epochs` if it never does."""
    check_fraction(name, fraction)
    return first_epoch(lambda epoch: at_least(epoch, fraction, epochs, counts_from=1), epochs)


def check_beta(beta: float) -> float:
    if not beta >= 0:
        raise ValueError(f"beta={beta} must be >= 0 (0 = CE-only inverse loss)")
    return beta


def inverse_objective(logits: Tensor, feats: Tensor | None, y: Tensor, beta: float, anchor: Anchors) -> Tensor:
    """Per-sample L_inv from the outputs on u (feats unused when β = 0)."""
    ce = F.cross_entropy(loss_dtype(logits), y, reduction="none")
    if not beta:
        return ce
    feats = loss_dtype(feats).flatten(1)
    toward_clean = (feats - anchor[0]).abs().mean(1)
    toward_adversary = (feats - anchor[1]).abs().mean(1)
    return ce + beta * (toward_clean - toward_adversary)


def inverse_loss(model: nn.Module, u: Tensor, y: Tensor, beta: float, anchor: Anchors) -> Tensor:
    """Per-sample L_inv(u) of Eq. 4 (to be minimised)."""
    if not beta:
        return inverse_objective(model(u), None, y, beta, anchor)
    logits, feats = model(u, return_features=True)
    return inverse_objective(logits, feats, y, beta, anchor)


def anchors(model: nn.Module, x: Tensor, x_adv: Tensor | None, beta: float) -> Anchors:
    """(F(x), F(x̂)) as constants for the feature regulariser; None (no forward) when β = 0."""
    if not beta:
        return None
    if x_adv is None:
        raise ValueError("the feature regulariser (beta > 0) needs the adversarial examples x̂")
    with torch.no_grad():
        return (loss_dtype(model(x, return_features=True)[1]).flatten(1),
                loss_dtype(model(x_adv, return_features=True)[1]).flatten(1))


def constant_probs(model: nn.Module, x: Tensor) -> Tensor:
    """softmax(f(x)) as a constant (float32 under autocast, the model's dtype otherwise)."""
    with torch.no_grad():
        return loss_dtype(model(x)).softmax(1)


class UniversalInverse:
    """Class-wise universal inverse perturbations z ∈ R^{C×image_shape}, ‖z_c‖∞ ≤ ε′ (Eq. 6, Alg. 1)."""

    def __init__(self, ctx: Any, *, radius: float, step_size: float, beta: float, bn_mode: str):
        if not ctx.image_shape:
            raise ValueError("universal inverse perturbations need the run's image shape (MethodContext.image_shape)")
        self.radius, self.step_size, self.beta, self.bn_mode = radius, step_size, check_beta(beta), bn_mode
        # z⁰ ~ 0.001·N(0, 1) from the run's seed; z itself is the state that resumes.
        generator = torch.Generator().manual_seed(ctx.seed)
        z = NORMAL_INIT_STD * torch.randn((ctx.num_classes, *ctx.image_shape), generator=generator)
        self.z = z.clamp_(-radius, radius).to(ctx.device)

    def apply(self, x: Tensor, y: Tensor) -> Tensor:
        """x̃ = clip(x + z_y, 0, 1)."""
        return (x + self.z[y]).clamp(0, 1)

    def step(self, model: nn.Module, x: Tensor, y: Tensor, anchor: Anchors) -> None:
        """z_c ← clip(z_c − α′·sign(∇_{z_c} Σ_{i: y_i=c} L_inv(x̃_i)), −ε′, ε′), every class at once."""
        z = self.z.clone().requires_grad_(True)
        with torch.enable_grad():
            loss = inverse_loss(model, (x + z[y]).clamp(0, 1), y, self.beta, anchor).sum()
            grad, = torch.autograd.grad(loss, z)
        self.z = (self.z - self.step_size * grad.sign()).clamp_(-self.radius, self.radius)

    def probs(self, model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor | None) -> Tensor:
        """One step on z, then p(x̃) with the updated z [AMBIG: Alg. 1 computes the target after the update]."""
        with model_mode(model, self.bn_mode == "train"):
            self.step(model, x, y, anchors(model, x, x_adv, self.beta))
            return constant_probs(model, self.apply(x, y))

    def state_dict(self) -> dict[str, Any]:
        return {"z": self.z.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.z = state["z"].to(self.z.device)


class _LogitsAndFeatures(nn.Module):
    """The model as the PGD engine sees it when the loss needs features: one output row = [logits | F(u)]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, u: Tensor) -> Tensor:
        logits, feats = self.model(u, return_features=True)
        return torch.cat([logits, feats.flatten(1)], 1)


class InstanceInverse:
    """IAT's per-sample inverse adversaries: `steps` signed descent steps on L_inv (App. B.1, Alg. 2)."""

    def __init__(self, *, radius: float, step_size: float, steps: int, beta: float, bn_mode: str):
        if isinstance(steps, bool) or steps < 0:
            raise ValueError(f"inverse steps={steps} must be an int >= 0")
        self.radius, self.step_size, self.steps = radius, step_size, steps
        self.beta, self.bn_mode = check_beta(beta), bn_mode

    def examples(self, model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor | None) -> Tensor:
        """x̃ from x + 0.001·N(0, I) (unclipped start, spec init T), projected to B(x, ε′) ∩ [0,1]."""
        common = dict(eps=self.radius, step_size=self.step_size, steps=self.steps, init="normal", descent=True,
                      bn_mode=self.bn_mode)
        if not self.beta:
            return pgd(model, x, y, loss="ce", **common)
        with model_mode(model, self.bn_mode == "train"):
            anchor = anchors(model, x, x_adv, self.beta)
        width = anchor[0].shape[1]  # the engine's loss sees [logits | features]; the last `width` are features

        def loss(out: Tensor, labels: Tensor) -> Tensor:
            return inverse_objective(out[:, :-width], out[:, -width:], labels, self.beta, anchor).sum()

        return pgd(_LogitsAndFeatures(model), x, y, loss=loss, **common)

    def probs(self, model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor | None) -> Tensor:
        x_inv = self.examples(model, x, y, x_adv)
        with model_mode(model, self.bn_mode == "train"):
            return constant_probs(model, x_inv)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class TargetMemory:
    """Per-sample target distributions, indexed by position in the training split."""

    def __init__(self, size: int, num_classes: int, device: torch.device):
        self.probs = torch.zeros(size, num_classes, device=device)
        self.stored = torch.zeros(size, dtype=torch.bool, device=device)

    def store(self, idx: Tensor, p: Tensor, momentum: float = 0.0) -> Tensor:
        """P_i ← γ·P_i + (1−γ)·p_i where sample i was stored before, else (or when γ = 0) P_i ← p_i; returns the
        new rows (constants)."""
        p = p.detach().to(self.probs.dtype)  # the memory's storage dtype
        if momentum:
            blended = momentum * self.probs[idx] + (1 - momentum) * p
            p = torch.where(self.stored[idx, None], blended, p)
        self.probs[idx] = p
        self.stored[idx] = True
        return p

    def recall(self, idx: Tensor) -> Tensor:
        return self.probs[idx]

    def require_all_stored(self, what: str) -> None:
        missing = int((~self.stored).sum())
        if missing:
            raise RuntimeError(f"{missing} training samples have no stored {what}: the epoch skipped them")

    def state_dict(self) -> dict[str, Any]:
        return {"probs": self.probs.cpu(), "stored": self.stored.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.probs = state["probs"].to(self.probs.device)
        self.stored = state["stored"].to(self.stored.device)


class OneOffTarget:
    """Eq. 10: p_target = p(x) before T′; p(x̃) during T′ (stored per sample); the stored value after T′.

    Before T′ the clean prediction keeps its gradient by default (`clean_grad`, [AMBIG]: the TRADES/MART
    convention of the "MART-like" loss the paper names); stored targets are constants. No momentum.
    """

    def __init__(self, ctx: Any, start_fraction: float, clean_grad: bool, name: str = "start_fraction"):
        self.start = reference_start(start_fraction, ctx.epochs, name)
        self.memory = TargetMemory(ctx.train_size, ctx.num_classes, ctx.device)
        self.clean_grad = clean_grad

    def bound(self, epoch: int, inverse: Passes) -> Passes:
        """Passes of the target in `epoch`: p(x) (through the update when it keeps its gradient), the inverse
        adversaries' `inverse`, or none (recalled)."""
        if epoch < self.start:
            return update(1) if self.clean_grad else forward(1)
        return inverse if epoch == self.start else Passes()

    def kl(self, model: nn.Module, x: Tensor, idx: Tensor, epoch: int, logits_adv: Tensor,
           inverse_probs: Callable[[], Tensor]) -> Tensor:
        """Batch-mean KL(p_target ‖ p(x̂)); `inverse_probs()` (p(x̃) of this batch) is called only in epoch T′."""
        if epoch < self.start:
            logits_clean = model(x)
            if not self.clean_grad:
                logits_clean = logits_clean.detach()
            return kl_per_sample(loss_dtype(logits_clean), loss_dtype(logits_adv)).mean()
        target = self.memory.store(idx, inverse_probs()) if epoch == self.start else self.memory.recall(idx)
        return kl_to_target(loss_dtype(logits_adv), target)

    def on_epoch_end(self, epoch: int) -> None:
        if epoch == self.start:
            self.memory.require_all_stored("one-off inverse-adversary target")

    def state_dict(self) -> dict[str, Any]:
        return self.memory.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state)
