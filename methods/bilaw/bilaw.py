"""BiLAW (BiLAW §3, Eq. 3–8): adversarial training whose per-sample weights are learned on a validation set.

* `bilaw`: Σ_i w_i CE(f(x_i^adv), y_i) with w_i = ω_μ(Δ_i)/Σ_j ω_μ(Δ_j), Δ the multi-class margin on x^adv.
* `bilaw_trades`: mean_i CE(f(x_i), y_i) + β Σ_i w_i KL(p(x_i) ‖ p(x_i^adv)), TRADES attack (uniform w = TRADES).
* `bilaw_np` (Learning-to-Reweight): w ∝ max(c, 0) with c_j = −∂L_val(θ̃)/∂e_j at e = 0, no weighting net.

Each step (Alg. 1): validation adversaries (PGD-CE, init U) are made against the current θ; one differentiable
look-ahead θ̃ on the weighted loss; μ takes one step on ∂L_val(θ̃)/∂μ; the real loss uses the weights of
the updated μ (no grad) and reuses the training forward, from which the margin is read as well.

μ's step, `meta_opt`: "sgd" (default) is the paper's own, Alg. 1 line 6 / Eq. 6, μ ← μ − α∇_μL_val with
α = `meta_lr`; "adam" is MW-Net's Adam. The paper reports no α; 1e-3 is MW-Net's rate, kept for both. At that
α the plain step moves μ little: on F-MNIST (tiny-CNN, 10 epochs, 20k images) the largest weight of a batch
ends 1.07× uniform, against 1.33× with Adam.
`meta_weight_decay` unset takes the optimiser's own (0 for Eq. 6, MW-Net's 1e-4 for Adam).

`margin_on`: Eq. 8 takes "the multi-class margin of f_θ at x_i", i.e. on the clean input ("clean", one extra
clean forward per step in `bilaw`); "adv" (default, as for MAIL/WMMR, which BiLAW generalises) reads it off
the adversarial forward. It applies to the margin inputs only; the loss inputs name their own.

[AMBIG] choices, each an hparam with the spec's default: `lookahead` "plain" (MW-Net: SGD at the current lr
without momentum/wd) or "optimizer" (the run's SGD step); `weight_input` (Δ, detached, read off the
train-mode training forward); bilaw_trades' validation loss = robust CE; training attack `init` U (bilaw, bilaw_np) / T (bilaw_trades) and `bn_mode`
eval. bilaw_np falls back to uniform weights when every c_j ≤ 0 (no sample helps the validation loss).
The PGD step size and norm are the run's (the BiLAW recipe sets ε/4; Table 1 has ℓ2 columns, so `bilaw` takes
norm "l2"; the other variants stay L∞-only).

Each epoch's record carries the weights' per-class quantiles and, for the learned variants, ω_μ's predictions
for a fixed subset of training samples, clean and adversarial (`methods.bilaw.bilaw_weight_log`; the paper's Fig. 3,
5, 6).

Cost: the validation PGD costs as much as the training one, so a step costs about twice a TRADES step.
`val_attack_steps` (−1 = the run's attack_steps, as the spec says) lowers it at the price of weaker
validation adversaries (tiny-CNN on CPU: ≈2× TRADES at 10 steps, ≈1.6× at 5, ≈1.4× at 3).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.attacks import kl_per_sample, model_mode, pgd
from bench.hparams import RunFacts, require
from methods.core.base import Batch, Method, StepOutput
from methods.bilaw.bilaw_meta import (MARGIN_KINDS, META_WEIGHT_DECAY, MetaLearner, input_size, lookahead, parse_widths,
                                validation_loss, weight_inputs)
from methods.bilaw.bilaw_weight_log import EpochWeights, TrackedSamples
from methods.core.heldout import HeldoutBatches
from methods.core.lookahead import forward_isolated
from methods.core.registry import METHODS
from methods.core.sample_weights import sum_one
from methods.core.step_bound import attack, forward, hypergradient, update

Init = Literal["uniform", "normal", "none"]


@dataclass(frozen=True)
class BiLAWNPHparams:
    lookahead: Literal["plain", "optimizer"] = "plain"
    val_attack_steps: int = -1  # -1: the run's attack_steps
    init: Init = "uniform"  # training adversaries (validation ones always start uniform)
    bn_mode: Literal["eval", "train"] = "eval"

    def __post_init__(self):
        require(self, "val_attack_steps", self.val_attack_steps >= -1, "an integer ≥ 0, or -1 for the run's "
                "attack_steps")

    def resolved(self, run: RunFacts) -> "BiLAWNPHparams":
        """The placeholder `val_attack_steps=-1` as the run's attack steps."""
        steps = run.attack_steps if self.val_attack_steps == -1 else self.val_attack_steps
        return dataclasses.replace(self, val_attack_steps=steps)


@dataclass(frozen=True)
class BiLAWHparams(BiLAWNPHparams):
    hidden: str = "128"  # ω_μ's hidden widths, "-"-joined (ablation: "64", "64-64", "256")
    weight_input: Literal["margin_vector", "margin", "robust_loss", "loss_gap"] = "margin_vector"
    margin_on: Literal["adv", "clean"] = "adv"
    meta_opt: Literal["sgd", "adam"] = "sgd"  # Alg. 1 line 6: a plain gradient step
    meta_lr: float = 1e-3
    meta_weight_decay: float | None = None  # None: 0 for sgd (Eq. 6), 1e-4 for adam (MW-Net)

    def __post_init__(self):
        super().__post_init__()
        parse_widths(self.hidden)
        require(self, "meta_lr", self.meta_lr >= 0, "a number ≥ 0")
        require(self, "meta_weight_decay", self.meta_weight_decay is None or self.meta_weight_decay >= 0,
                "a number ≥ 0, or None for the optimiser's (sgd 0, adam 1e-4)")
        require(self, "margin_on", self.margin_on == "adv" or self.weight_input in MARGIN_KINDS,
                f"'adv', or 'clean' with weight_input in {list(MARGIN_KINDS)} (weight_input={self.weight_input!r})")

    def resolved(self, run: RunFacts) -> "BiLAWHparams":
        """Also the placeholder `meta_weight_decay=None` as `meta_opt`'s (sgd 0, adam 1e-4)."""
        decay = META_WEIGHT_DECAY[self.meta_opt] if self.meta_weight_decay is None else self.meta_weight_decay
        return dataclasses.replace(super().resolved(run), meta_weight_decay=decay)


@dataclass(frozen=True)
class BiLAWTRADESHparams(BiLAWHparams):
    init: Init = "normal"  # TRADES' x + 0.001·N(0, I)
    beta: float = 6.0  # 1/λ

    def __post_init__(self):
        super().__post_init__()
        require(self, "beta", self.beta >= 0, "a number ≥ 0")


class ValidatedReweighting(Method):
    """What every variant shares: the validation batches of held-out set #1, the adversaries and the weight log."""

    heldout_kind = "bilaw"
    per_class = frozenset({"eps"})  # its adversaries read class_eps (eps_for): CCM may recalibrate it
    attack_loss = "ce"  # the training attack's loss

    def __init__(self, hp, ctx):
        super().__init__(hp, ctx)
        self.val_steps = hp.val_attack_steps  # -1 resolved by build_method (BiLAWNPHparams.resolved)
        split = ctx.heldout_split("val_meta", type(self).__name__)
        self.val_batches = HeldoutBatches(split, ctx.batch_size, seed=ctx.seed)
        self.epoch_weights = EpochWeights(ctx.train_size, ctx.num_classes, ctx.device)

    def remember(self, batch: Batch, w: Tensor) -> None:
        """Log the weights the loss gives this batch (they sum to 1 over it)."""
        self.epoch_weights.add(batch.idx, batch.y, w)

    def on_epoch_start(self, model, epoch: int) -> None:
        self.epoch_weights.reset()

    def on_epoch_end(self, model, epoch: int, train_class_acc: list[float]) -> dict[str, Any]:
        return self.epoch_weights.summary()

    def adversaries(self, model, x: Tensor, y: Tensor, *, loss: str = "ce", init: str | None = None,
                    steps: int | None = None) -> Tensor:
        return pgd(model, x, y, eps=self.eps_for(y), step_size=self.ctx.step_size, norm=self.ctx.norm,
                   steps=self.ctx.attack_steps if steps is None else steps, init=init or self.hp.init,
                   loss=loss, bn_mode=self.hp.bn_mode)

    def validation_adversaries(self, model) -> tuple[Tensor, Tensor]:
        """The next validation batch's PGD-CE adversaries (init U) against the current θ, and its labels."""
        x_val, y_val = self.val_batches.next()
        return self.adversaries(model, x_val, y_val, init="uniform", steps=self.val_steps), y_val

    def robust_adversaries(self, model, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """(training adversaries, validation adversaries, validation labels), both PGD-CE against the current θ.

        With BN in eval mode each sample's attack ignores the rest of the batch, so when both attacks are the
        same PGD they run as one call on the joined batches: the same adversaries for one loop's overhead (a few
        percent on a CPU; most on a GPU that a small model leaves idle at batch 128).
        """
        if self.hp.bn_mode == "eval" and self.hp.init == "uniform" and self.val_steps == self.ctx.attack_steps:
            x_val, y_val = self.val_batches.next()
            both = self.adversaries(model, torch.cat([batch.x, x_val]), torch.cat([batch.y, y_val]))
            return both[:len(batch.y)], both[len(batch.y):], y_val
        return (self.adversaries(model, batch.x, batch.y), *self.validation_adversaries(model))

    def state_dict(self):
        return {**super().state_dict(), "val_batches": self.val_batches.state_dict()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.val_batches.load_state_dict(state["val_batches"])


class LearnedWeights(ValidatedReweighting):
    """Weights from ω_μ, whose μ takes one meta step per training step before the weights are used."""

    def __init__(self, hp, ctx):
        super().__init__(hp, ctx)
        self.learner = MetaLearner(input_size(hp.weight_input, ctx.num_classes), parse_widths(hp.hidden),
                                   hp.meta_opt, hp.meta_lr, hp.meta_weight_decay, ctx.device, ctx.seed)
        self.tracked = TrackedSamples(ctx.train_size)

    def remember(self, batch: Batch, w: Tensor) -> None:
        super().remember(batch, w)
        self.tracked.store(batch.idx, batch.x, batch.y)

    def on_epoch_end(self, model, epoch: int, train_class_acc: list[float]) -> dict[str, Any]:
        return {**super().on_epoch_end(model, epoch, train_class_acc), **self.tracked_weights(model, epoch)}

    def tracked_weights(self, model, epoch: int) -> dict[str, Any]:
        """ω_μ's raw predictions for the tracked samples, clean and under the training attack, in eval mode.

        The attack draws its start from a private generator, so the run's own RNG stream, and with it the
        training, is the same as without the log.
        """
        tracked = self.tracked.samples()
        if tracked is None:
            return {}
        x, y, seen = tracked
        generator = torch.Generator(device=x.device).manual_seed(self.ctx.seed * 1_000_003 + epoch)
        x_adv = pgd(model, x, y, eps=self.eps_for(y), step_size=self.ctx.step_size, steps=self.ctx.attack_steps,
                    norm=self.ctx.norm, init=self.hp.init, loss=self.attack_loss, bn_mode="eval", generator=generator)
        with torch.no_grad(), model_mode(model, False):
            logits_clean, logits_adv = model(x), model(x_adv)
            clean = self.learner.net.raw_weights(weight_inputs(self.hp.weight_input, logits_clean, y, logits_clean))
            adv = self.learner.net.raw_weights(weight_inputs(self.hp.weight_input, logits_adv, y, logits_clean))
        return TrackedSamples.record(clean, adv, seen)

    def learned_weights(self, model, optimizer, inputs: Tensor, weighted_loss: Callable[[Tensor], Tensor],
                        x_val_adv: Tensor, y_val: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Meta-step μ on the look-ahead of weighted_loss(w), then the new weights (no grad) and stats."""
        grads, val_loss = self.learner.hypergradient(model, optimizer, inputs, weighted_loss, x_val_adv, y_val,
                                                     self.hp.lookahead)
        self.learner.step(grads)
        with torch.no_grad():
            w = self.learner.net.weights(inputs)
        return w, {"val_loss": val_loss, "w_max_rel": w.max() * w.numel()}  # w_max_rel = 1: uniform

    def state_dict(self):
        return {**super().state_dict(), "learner": self.learner.state_dict()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.learner.load_state_dict(state["learner"])


@METHODS.register("bilaw")
class BiLAW(LearnedWeights):
    Hparams = BiLAWHparams
    description = "BiLAW: robust CE weighted by a margin→weight net learned on a validation set"
    norms = ("linf", "l2")  # BiLAW Table 1's ℓ2 columns

    def step_bound(self, epoch):  # forward/backward passes one step needs (methods.core.step_bound)
        clean = self.hp.weight_input == "loss_gap" or self.hp.margin_on == "clean"
        return attack(self.ctx.attack_steps) + attack(self.val_steps) + update(1) + hypergradient(1, 1) + forward(clean)

    def loss(self, model, batch: Batch, optimizer) -> StepOutput:
        x_adv, x_val_adv, y_val = self.robust_adversaries(model, batch)
        logits = model(x_adv)
        robust = F.cross_entropy(logits, batch.y, reduction="none")
        clean = None
        if self.hp.weight_input == "loss_gap" or self.hp.margin_on == "clean":
            with torch.no_grad():
                clean = forward_isolated(model, dict(model.named_parameters()), batch.x)
        inputs = weight_inputs(self.hp.weight_input, logits, batch.y, clean, self.hp.margin_on)
        w, stats = self.learned_weights(model, optimizer, inputs, lambda w: (w * robust).sum(), x_val_adv, y_val)
        self.remember(batch, w)
        return StepOutput((w * robust).sum(), logits, stats)


@METHODS.register("bilaw_trades")
class BiLAWTRADES(LearnedWeights):
    Hparams = BiLAWTRADESHparams
    description = "BiLAW-TRADES: clean CE + β·Σ w_i KL_i with BiLAW's learned weights (Σw = 1)"
    attack_loss = "kl"

    def step_bound(self, epoch):  # forward/backward passes one step needs (methods.core.step_bound)
        return forward(1) + attack(self.ctx.attack_steps) + attack(self.val_steps) + update(2) + hypergradient(2, 1)

    def loss(self, model, batch: Batch, optimizer) -> StepOutput:
        x_adv = self.adversaries(model, batch.x, batch.y, loss=self.attack_loss)
        x_val_adv, y_val = self.validation_adversaries(model)
        logits_nat, logits_adv = model(batch.x), model(x_adv)
        ce = F.cross_entropy(logits_nat, batch.y, reduction="none")
        kl = kl_per_sample(logits_nat, logits_adv)

        def trades_loss(w: Tensor) -> Tensor:
            return ce.mean() + self.hp.beta * (w * kl).sum()

        inputs = weight_inputs(self.hp.weight_input, logits_adv, batch.y, logits_nat, self.hp.margin_on)
        w, stats = self.learned_weights(model, optimizer, inputs, trades_loss, x_val_adv, y_val)
        self.remember(batch, w)
        return StepOutput(trades_loss(w), logits_adv, {**stats, "ce": ce.mean().detach(), "kl": kl.mean().detach()})


@METHODS.register("bilaw_np")
class BiLAWNP(ValidatedReweighting):
    Hparams = BiLAWNPHparams
    description = "non-parametric BiLAW (Learning-to-Reweight): w ∝ max(−∂L_val(θ̃)/∂e, 0)"

    def step_bound(self, epoch):  # forward/backward passes one step needs (methods.core.step_bound)
        return attack(self.ctx.attack_steps) + attack(self.val_steps) + update(1) + hypergradient(1, 1)

    def contribution_weights(self, model, optimizer, robust: Tensor, x_val_adv: Tensor, y_val: Tensor) -> Tensor:
        """w = max(c, 0)/Σ max(c, 0), c_j = −∂L_val(θ̃(e))/∂e_j at e = 0; uniform when no c_j > 0."""
        e = torch.zeros_like(robust.detach(), requires_grad=True)
        stepped = lookahead(model, (e * robust).sum(), optimizer, self.hp.lookahead)
        c = -torch.autograd.grad(validation_loss(model, stepped, x_val_adv, y_val), e, retain_graph=True)[0]
        return sum_one(c.clamp_min(0))

    def loss(self, model, batch: Batch, optimizer) -> StepOutput:
        x_adv, x_val_adv, y_val = self.robust_adversaries(model, batch)
        logits = model(x_adv)
        robust = F.cross_entropy(logits, batch.y, reduction="none")
        w = self.contribution_weights(model, optimizer, robust, x_val_adv, y_val)
        self.remember(batch, w)
        return StepOutput((w * robust).sum(), logits, {"w_zero_frac": (w == 0).float().mean()})


def weighting_net_state(method_state: dict) -> dict:
    """The weighting net's weights in a BiLAW checkpoint's method state (what BiLAW's figures probe)."""
    return method_state["learner"]["net"]
