"""CAAT (Zhou, Yang & Wu 2023; CAAT's Methodology section): adversaries and anti-adversaries, chosen per sample by a
meta-learned weighting network, on top of FRL's class-wise fairness weights.

Each sample gets weights [α, β] = softmax(f_Ω(ζ)/τ) from six training characteristics ζ of its clean forward
pass (τ = 0.001 makes this practically a choice): α weights the TRADES terms on the adversary (KL ascent),
β the CE on the anti-adversary (CE descent). The main loss is
  Σ α w⁰ CE(x) / Σw⁰ + λ Σ α w¹ KL(p(x) ‖ p(x_adv)) / Σw¹ + (1/n) Σ β CE(x_anti),
with w⁰, w¹ FRL's class weights from the clean meta split. Ω is trained MW-Net style: one differentiable step
of the run's SGD on the loss with α, β carrying gradient, then Adam on the meta loss at the stepped weights.

Bounds: `remargin` (FRL's class-wise factor), `grad` (Eq. 8; gradient norms normalised by the batch maximum,
so ε_i ∈ [0.9ε, 1.9ε]) or `fixed`. The public code has no Grad-Based bound (it runs ReMargin only), so there is
no reference computation to match; the bench follows Alg. 1, whose line 6 computes ε_i right after line 5's
starts x + 0.001·N, where ∇_u KL(p(x)‖p(u)) ≈ H·0.001·N is nearly zero and mostly reflects the random start
[deliberate: Alg. 1's order]. Meta samples take the fixed ε (`_omega_step`). Ablation settings (Table 4):
I = `direction=adversarial bound=fixed`, II = `direction=adversarial bound=remargin`, III = `bound=fixed`,
IV = the default (`direction=learned bound=remargin`).

Fidelity (`--fidelity`; the official code is [C]): `paper` runs the meta step every batch, tracks ζ6 (last epoch's
class loss), trains with BN in train mode and ε as given, and follows Alg. 1's order: both attacks, then the
look-ahead (Eq. 9) on this batch's own adversaries, Ω's step (Eq. 10), the real step with the new weights.
`code` reproduces the official code: meta step every 50 batches, before the real step's attacks, on a pseudo
copy of θ with its own train-mode clean forward and fresh adversaries; training ε ×1.25 (10/255 for 8/255);
ζ6 frozen at 5.0; BN in eval mode from each epoch's first attack on (that batch's clean forward alone is in
train mode; its KL target is an eval forward); the meta batch borrowing the training batch's class weights
and budgets by position. In both modes the look-ahead differentiates through ζ (the code's pseudo features
are not detached), so Ω also gets the term through ∂ζ/∂θ. Not
reproduced: the code's pixel-normalisation bug (ε in normalised units, clipping normalised images to [0, 1]),
which would need a different threat model in training and evaluation alike. Hot start and 40-epoch
fine-tuning are the experiment's recipe, not the method's.

Records (Figs. 3–4): each epoch's share of adversaries and mean clean loss per class (by training label);
with `record_samples=true`, each sample's direction and bound of the epoch in <run>/caat_samples/ (an .npz
per epoch, indexed like the training split), so a figure can split them by clean and noisy labels, which the
method itself must not know.

Cost: every sample gets both attacks (Alg. 1 lines 4–11), so a `paper` step costs two attacks on the training
batch and two on the meta batch. `min_weight` > 0 is an opt-in shortcut (default 0, off): a sample skips the
attack whose weight is below it, chosen before Ω moves, so a sample whose choice flips in the meta step loses
that term in the real loss.
"""
from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

import torch
import torch.nn.functional as F
from torch import nn

from bench import atomic
from bench.attacks import pgd
from bench.attacks.losses import loss_dtype
from bench.attacks.pgd import input_grad
from bench.attacks.mode import model_mode
from bench.hparams import RunFacts, require
from bench.store import RunDir
from methods.core.base import Batch, Method, StepOutput
from methods.fairness.constraints import FairConstraints, class_errors
from methods.core.heldout import HeldoutBatches
from methods.core.lookahead import WithParams, sgd_lookahead
from methods.core.registry import METHODS
from methods.core.step_bound import Passes, attack, forward, hypergradient, update

INITIAL_CLASS_LOSS = 5.0  # ζ6 before the first epoch has been seen (and forever in the code)


@dataclass(frozen=True)
class CAATHparams:
    beta: float = 1.5  # λ, TRADES weight (paper sweeps 2/3, 1, 1.5, 6)
    direction: Literal["learned", "adversarial"] = "learned"
    bound: Literal["remargin", "grad", "fixed"] = "remargin"
    grad_offset: float = 0.9  # ϵ₀ of the Grad-Based bound
    temperature: float = 0.001
    hidden: int = 100
    meta_lr: float = 1e-4
    meta_weight_decay: float = 5e-4
    meta_every: int = 0  # batches between meta steps; 0: by fidelity (paper 1, code 50)
    train_eps_scale: float = 0.0  # training ε multiplier; 0: by fidelity (paper 1, code 1.25 → 10/255)
    min_weight: float = 0.0  # opt-in speed option: > 0 skips a sample's attack whose weight is below it
    # FRL constraints (the code uses FRL-RMRW's values)
    tau_nat: float = 0.07
    tau_bdy: float = 0.07
    rho_weight: float = 0.05
    rho_margin: float = 0.2
    lim: float = 0.5
    margin_max: float = 2.5
    rho_halve_every: int = 40
    val_attack_steps: int = 20
    bn_mode: Literal["eval", "train"] = "eval"
    record_samples: bool = False  # diagnostics only (Fig. 4): write per-sample directions and bounds

    def __post_init__(self):
        for name in ("temperature",):
            require(self, name, getattr(self, name) > 0, "a number > 0")
        for name in ("hidden", "rho_halve_every", "val_attack_steps"):
            require(self, name, getattr(self, name) >= 1, "an integer ≥ 1")
        require(self, "meta_every", self.meta_every >= 0, "an integer ≥ 1, or 0 for the fidelity's (paper 1, code 50)")
        require(self, "train_eps_scale", self.train_eps_scale >= 0,
                "a number > 0, or 0 for the fidelity's (paper 1, code 1.25)")
        require(self, "min_weight", 0 <= self.min_weight <= 0.5, "a number in [0, 0.5] (0: both attacks for every sample)")
        require(self, "margin_max", self.margin_max >= 0.98, "a number ≥ 0.98 (the lower clip of FRL's margin factor)")
        for name in ("beta", "grad_offset", "meta_lr", "meta_weight_decay", "tau_nat", "tau_bdy", "rho_weight",
                     "rho_margin", "lim"):
            require(self, name, getattr(self, name) >= 0, "a number ≥ 0")

    def resolved(self, run: RunFacts) -> "CAATHparams":
        """The placeholders `meta_every=0` and `train_eps_scale=0` as the run's fidelity sets them (the official
        code: a meta step every 50 batches, ε ×1.25 → 10/255; the paper: every batch, ε)."""
        code = run.fidelity == "code"
        return dataclasses.replace(self, meta_every=self.meta_every or (50 if code else 1),
                                   train_eps_scale=self.train_eps_scale or (1.25 if code else 1.0))


def samples_path(run_dir: str | Path, epoch: int) -> Path:
    """Where epoch `epoch`'s per-sample record lies: arrays `adversary` (1 adversary, 0 anti-adversary,
    −1 not seen) and `eps` (the bound used, NaN if not seen), both indexed by the training split."""
    return RunDir(Path(run_dir)).extra("caat_samples") / f"epoch_{epoch:04d}.npz"


def _where_seen(values: torch.Tensor, seen: torch.Tensor) -> list[float | None]:
    """Per-class values as a list, None for classes with no training sample this epoch."""
    return [v if s else None for v, s in zip(values.tolist(), seen.tolist())]


def flush_negligible(w: torch.Tensor) -> torch.Tensor:
    """`w` with weights below ε² of the dtype (1.4e-14 in float32) set to exact zeros (gradient 0 there).

    τ = 0.001 drives the losing weight of most samples to 1e-20…1e-40 and below. Such a weight changes no float32
    sum it enters beyond rounding, nor any parameter after the step (its share of an update is far below one ulp),
    but its products shrink into subnormal floats along the backward through that sample's graph, and x86 CPUs
    compute subnormals several times slower: CAAT's real backward took 3–4× its bound (tiny-CNN/F-MNIST)."""
    return w.masked_fill(w.abs() < torch.finfo(w.dtype).eps ** 2, 0.0)


class WeightingNet(nn.Module):
    """f_Ω: BN on the six characteristics, one hidden ReLU layer, two logits → [α, β] = softmax(·/τ), subnormal
    negligible weights set to zero (`flush_negligible`)."""

    def __init__(self, hidden: int, temperature: float):
        super().__init__()
        self.temperature = temperature
        self.layers = nn.Sequential(nn.BatchNorm1d(6), nn.Linear(6, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, zeta: torch.Tensor) -> torch.Tensor:
        """In float32 also under bf16 autocast (bench.precision): /τ = /0.001 would scale bf16's rounding of the
        two logits (8 bits) into whole units of the softmax's argument."""
        with torch.autocast(zeta.device.type, enabled=False):
            return flush_negligible(F.softmax(self.layers(zeta) / self.temperature, dim=1))


def characteristics(logits: torch.Tensor, y: torch.Tensor, class_share: torch.Tensor,
                    class_loss: torch.Tensor) -> torch.Tensor:
    """ζ in the code's order [CE, class loss, ‖onehot − p‖₂, margin, Σ p log p, class share], differentiable
    in the logits (the look-ahead needs that path; detach the logits for plain weights). In float32: ζ feeds the
    float32 weighting network, so a float64 model's ζ is cast down here (and only here)."""
    logits = logits.float()
    p = logits.softmax(1)
    onehot = F.one_hot(y, logits.shape[1]).float()
    ce = F.cross_entropy(logits, y, reduction="none")
    p_y = (p * onehot).sum(1)
    margin = p_y - p.masked_fill(onehot.bool(), float("-inf")).amax(1)
    neg_entropy = torch.xlogy(p, p).sum(1)
    return torch.stack([ce, class_loss[y], (onehot - p).norm(dim=1), margin, neg_entropy, class_share[y]], 1)


def adversaries(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, step: float, steps: int,
                adv_rows: torch.Tensor, anti_rows: torch.Tensor, bn_mode: str,
                logits: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Adversaries (KL ascent) of x[adv_rows] and anti-adversaries (CE descent) of x[anti_rows], both from
    x + 0.001·N, in one PGD run: rows of the joint batch ascend KL or descend CE by the sign of their loss.

    `logits`: the model's clean logits on x in the attack's BN mode, when the caller has them (`eval_logits`);
    when every row is an adversary (min_weight 0, the default) the KL target is read off them instead of another
    forward (a forward of a subset could round differently, and the sign steps would amplify that)."""
    k = int(adv_rows.numel())
    if logits is not None and k == len(x):
        target = loss_dtype(logits.detach()).softmax(1)
    else:
        with torch.no_grad(), model_mode(model, bn_mode == "train"):
            target = loss_dtype(model(x[adv_rows])).softmax(1)

    def loss(logits, labels):
        kl = F.kl_div(F.log_softmax(logits[:k], 1), target, reduction="sum")
        return kl - F.cross_entropy(logits[k:], labels[k:], reduction="sum")

    rows = torch.cat([adv_rows, anti_rows])
    u = pgd(model, x[rows], y[rows], eps=eps[rows], step_size=step, steps=steps, init="normal", loss=loss,
            bn_mode=bn_mode)
    return u[:k], u[k:]


def eval_logits(model: nn.Module, logits: torch.Tensor, bn_mode: str) -> torch.Tensor | None:
    """`logits` when the forward that made them is the one the attack's KL target needs: every module already
    in eval mode and the attack in eval mode (a train-mode target forward would also move BN statistics)."""
    if bn_mode == "eval" and not any(m.training for m in model.modules()):
        return logits
    return None


def gradient_bound(model: nn.Module, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, eps: float,
                   offset: float) -> torch.Tensor:
    """Eq. 8: ε_i = (α_i ḡ_adv + β_i ḡ_anti + ϵ₀)·ε, the input-gradient norms of the KL and CE losses at
    x + 0.001·N, each divided by its batch maximum."""
    with model_mode(model, False):
        with torch.no_grad():
            target = loss_dtype(model(x)).softmax(1)
        u = x + 0.001 * torch.randn_like(x)
        g_adv = input_grad(model, u, y, lambda z, _y: F.kl_div(F.log_softmax(z, 1), target, reduction="sum"))
        g_anti = input_grad(model, u, y, lambda z, yy: F.cross_entropy(z, yy, reduction="sum"))
    norms = [g.flatten(1).norm(dim=1) for g in (g_adv, g_anti)]
    g_adv, g_anti = (n / n.max().clamp_min(1e-12) for n in norms)
    return (weights[:, 0] * g_adv + weights[:, 1] * g_anti + offset) * eps


@METHODS.register("caat")
class CAAT(Method):
    Hparams = CAATHparams
    description = "CAAT: adversaries + anti-adversaries weighted by a meta-learned net, with FRL fairness weights"
    heldout_kind = "caat_meta"

    def step_bound(self, epoch):  # forward/backward passes one step needs (methods.core.step_bound)
        # KL target (the code's eval-mode clean forward is it: `eval_logits`); adversaries + anti-adversaries, one PGD
        both = forward(0 if self.code and self.hp.bn_mode == "eval" else 1) + attack(self.ctx.attack_steps, 2)
        step = update(3) + both + (forward(1) + attack(2) if self.hp.bound == "grad" else Passes())
        if self.hp.direction != "learned":
            return step
        # Eqs. 9–10: look-ahead on 3 loss inputs, meta loss on 3; the code's pseudo model redoes the batch first
        meta = both + (hypergradient(4, 3) + forward(4) + attack(self.ctx.attack_steps, 2) if self.code
                       else hypergradient(3, 3))
        return step + meta * (1 / self.meta_every)

    def __init__(self, hp, ctx):
        super().__init__(hp, ctx)
        code = ctx.fidelity == "code"
        if hp.record_samples and ctx.run_dir is None:
            raise ValueError("caat record_samples=true needs a run folder to write per-sample records into")
        self.meta_every = hp.meta_every  # placeholders resolved by build_method (CAATHparams.resolved)
        self.eps_scale = hp.train_eps_scale
        self.code = code
        self.meta = ctx.heldout_split("meta", "caat")
        self.meta_batches = HeldoutBatches(self.meta, ctx.batch_size, seed=ctx.seed)
        updates = {"nat", "bdy"} | ({"margin"} if hp.bound == "remargin" else set())
        self.constraints = FairConstraints(
            ctx.num_classes, frozenset(updates), tau_nat=hp.tau_nat, tau_bdy=hp.tau_bdy, rho_weight=hp.rho_weight,
            rho_margin=hp.rho_margin, lim=hp.lim, margin_max=hp.margin_max, halve_every=hp.rho_halve_every)
        self.net = WeightingNet(hp.hidden, hp.temperature).to(ctx.device)
        self.meta_opt = torch.optim.Adam(self.net.parameters(), lr=hp.meta_lr, weight_decay=hp.meta_weight_decay)
        counts = torch.tensor(ctx.class_counts, dtype=torch.float)
        self.class_share = (counts / counts.sum()).to(ctx.device)
        self.class_loss = torch.full((ctx.num_classes,), INITIAL_CLASS_LOSS, device=ctx.device)
        self._loss_sum = torch.zeros(ctx.num_classes, device=ctx.device)
        self._loss_n = torch.zeros(ctx.num_classes, device=ctx.device)
        self._adv_n = torch.zeros(ctx.num_classes, device=ctx.device)
        if hp.record_samples:
            self._sample_adversary = torch.full((ctx.train_size,), -1, dtype=torch.int8, device=ctx.device)
            self._sample_eps = torch.full((ctx.train_size,), float("nan"), device=ctx.device)
        self._apply()

    def _apply(self) -> None:
        self.w_ce = self.constraints.ce_weights().to(self.ctx.device)
        self.w_kl = self.constraints.kl_weights().to(self.ctx.device)
        self.class_eps = (self.ctx.eps * self.eps_scale * self.constraints.budget_factors()).to(self.ctx.device)

    # -- per epoch -----------------------------------------------------------------------------------------
    def on_epoch_start(self, model, epoch):
        err = class_errors(model, self.meta, self.ctx.num_classes, self.ctx.eps, self.ctx.step_size,
                           self.hp.val_attack_steps, self.ctx.seed + epoch)
        self.constraints.step(epoch, err)
        self._apply()
        self._loss_sum.zero_()
        self._loss_n.zero_()
        self._adv_n.zero_()
        if self.hp.record_samples:
            self._sample_adversary.fill_(-1)
            self._sample_eps.fill_(float("nan"))

    def on_epoch_end(self, model, epoch, train_class_acc):
        seen = self._loss_n > 0
        epoch_loss = self._loss_sum / self._loss_n.clamp_min(1)
        if not self.code:  # ζ6: this epoch's mean clean loss per class (the code never updates it)
            self.class_loss = torch.where(seen, epoch_loss, self.class_loss)
        if self.hp.record_samples:
            self._write_samples(epoch)
        return {"w_ce": self.w_ce.tolist(), "w_kl": self.w_kl.tolist(), "class_eps": self.class_eps.tolist(),
                "class_loss": self.class_loss.tolist(), "meta_every": self.meta_every, "eps_scale": self.eps_scale,
                "class_adv_ratio": _where_seen(self._adv_n / self._loss_n.clamp_min(1), seen),
                "class_clean_loss": _where_seen(epoch_loss, seen)}

    def _write_samples(self, epoch: int) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, adversary=self._sample_adversary.cpu().numpy(),
                            eps=self._sample_eps.cpu().numpy().astype(np.float32))
        atomic.write_bytes(samples_path(self.ctx.run_dir, epoch), buffer.getvalue())

    # -- per batch -----------------------------------------------------------------------------------------
    def _weights(self, zeta: torch.Tensor) -> torch.Tensor:
        if self.hp.direction == "adversarial":  # Settings I/II: every sample adversarial
            return torch.stack([torch.ones(len(zeta)), torch.zeros(len(zeta))], 1).to(zeta)
        return self.net(zeta)

    def _objective(self, w_ce, w_kl, weights, ce_nat, kl, ce_anti, adv_rows, anti_rows) -> torch.Tensor:
        """Σα w⁰CE/Σw⁰ + λ Σα w¹KL/Σw¹ + (1/n)Σβ CE_anti; KL and CE_anti given for adv_rows / anti_rows only."""
        alpha, beta = weights[:, 0], weights[:, 1]
        return ((alpha * w_ce * ce_nat).sum() / w_ce.sum()
                + self.hp.beta * (alpha[adv_rows] * w_kl[adv_rows] * kl).sum() / w_kl.sum()
                + (beta[anti_rows] * ce_anti).sum() / len(ce_nat))

    def _bounds(self, model, x, y, weights) -> torch.Tensor:
        if self.hp.bound == "grad":
            return gradient_bound(model, x, y, weights.detach(), self.ctx.eps * self.eps_scale, self.hp.grad_offset)
        return self.eps_for(y)

    def loss(self, model, batch: Batch, optimizer) -> StepOutput:
        x, y = batch.x, batch.y
        train_mode_forward = model.training
        logits_nat = model(x)  # train mode on each epoch's first batch in `code` mode too, as in the code
        if self.code:
            model.eval()  # the code's attack switches to eval and never back: the rest of the epoch runs in eval
        ce_nat = F.cross_entropy(logits_nat, y, reduction="none")
        self._loss_sum.index_add_(0, y, ce_nat.detach().float())
        self._loss_n.index_add_(0, y, torch.ones_like(ce_nat, dtype=torch.float))
        zeta = characteristics(logits_nat, y, self.class_share, self.class_loss)  # keeps its path to θ
        w_ce, w_kl = self.w_ce[y], self.w_kl[y]
        meta_step = self.hp.direction == "learned" and (batch.step + 1) % self.meta_every == 0
        if meta_step and self.code:
            self._code_meta_step(model, optimizer, x, y, w_ce, w_kl)
        with torch.no_grad():
            weights = self._weights(zeta.detach())
        eps = self._bounds(model, x, y, weights)
        everyone = torch.arange(len(y), device=y.device)
        adv_rows = everyone[weights[:, 0] >= self.hp.min_weight]
        anti_rows = everyone[weights[:, 1] >= self.hp.min_weight]
        x_adv, x_anti = adversaries(model, x, y, eps, self.ctx.step_size, self.ctx.attack_steps,
                                    adv_rows, anti_rows, self.hp.bn_mode, eval_logits(model, logits_nat, self.hp.bn_mode))
        logits_adv, logits_anti = model(x_adv), model(x_anti)
        # KL target: the clean forward, or, on a code-mode epoch's train-mode first batch, the eval forward the
        # code's loss takes after its attack
        target = model(x) if self.code and train_mode_forward else logits_nat
        kl = F.kl_div(F.log_softmax(logits_adv, 1), F.log_softmax(target[adv_rows], 1),
                      reduction="none", log_target=True).sum(1)
        ce_anti = F.cross_entropy(logits_anti, y[anti_rows], reduction="none")
        if meta_step and not self.code:  # Alg. 1: both attacks first (lines 4–11), then Ω (line 13)
            self._meta_step(model, optimizer, zeta, y, w_ce, w_kl, ce_nat, kl, ce_anti, adv_rows, anti_rows)
            with torch.no_grad():
                weights = self._weights(zeta.detach())
        loss = self._objective(w_ce, w_kl, weights, ce_nat, kl, ce_anti, adv_rows, anti_rows)
        adversary = weights[:, 0] >= 0.5
        self._adv_n.index_add_(0, y, adversary.float())
        if self.hp.record_samples:
            self._sample_adversary[batch.idx] = adversary.to(torch.int8)
            self._sample_eps[batch.idx] = eps.detach().float()
        seen = logits_nat.detach().clone()  # train accuracy on the example each sample mostly trained on
        seen[anti_rows] = logits_anti.detach()
        seen[adv_rows[weights[adv_rows, 0] >= 0.5]] = logits_adv.detach()[weights[adv_rows, 0] >= 0.5]
        stats = {"anti_share": (~adversary).float().mean(), "kl": kl.mean().detach() if len(kl) else
                 torch.zeros(()), "eps_mean": eps.mean()}
        return StepOutput(loss, seen, stats)

    def _meta_step(self, model, optimizer, zeta, y, w_ce, w_kl, ce_nat, kl, ce_anti, adv_rows, anti_rows) -> None:
        """`paper` (Eqs. 9–10): θ'(Ω) = one differentiable SGD step on the Ω-weighted loss of this batch's own
        adversaries, with ζ differentiable in θ; then Ω's step on the meta loss at θ'."""
        objective = self._objective(w_ce, w_kl, self.net(zeta), ce_nat, kl, ce_anti, adv_rows, anti_rows)
        self._omega_step(model, sgd_lookahead(model, objective, optimizer), y)

    def _code_meta_step(self, model, optimizer, x, y, w_ce, w_kl) -> None:
        """`code`: as the official code's pseudo model, a copy of θ (own BN buffers) takes a train-mode clean
        forward (ζ and CE, differentiable in θ), draws fresh adversaries and anti-adversaries for every sample
        in eval mode, and steps on their Ω-weighted loss (KL against its eval-mode clean forward); the meta
        batch then runs at the stepped copy, in eval mode, with the BN statistics the pseudo forward left."""
        pseudo = WithParams(model, dict(model.named_parameters()))
        with model_mode(pseudo, True):
            logits = pseudo(x)
        ce_nat = F.cross_entropy(logits, y, reduction="none")
        soft = self.net(characteristics(logits, y, self.class_share, self.class_loss))
        everyone = torch.arange(len(y), device=y.device)
        with model_mode(pseudo, False):
            logits_eval = pseudo(x)  # the KL's target, and (detached) the attack's: one eval forward for both
        x_adv, x_anti = adversaries(pseudo, x, y, self.eps_for(y), self.ctx.step_size, self.ctx.attack_steps,
                                    everyone, everyone, "eval", logits_eval)
        with model_mode(pseudo, False):
            kl = F.kl_div(F.log_softmax(pseudo(x_adv), 1), F.log_softmax(logits_eval, 1), reduction="none",
                          log_target=True).sum(1)
            ce_anti = F.cross_entropy(pseudo(x_anti), y, reduction="none")
        objective = self._objective(w_ce, w_kl, soft, ce_nat, kl, ce_anti, everyone, everyone)
        self._omega_step(model, sgd_lookahead(model, objective, optimizer), y, pseudo.private_buffers)

    def _omega_step(self, model, stepped, y, buffers=None) -> None:
        """Ω ← Adam step on the meta loss (Eq. 10: CE, λ·KL and the anti-adversary's CE, all unweighted by Ω) of
        a meta batch and its adversaries against the stepped parameters, in the model's current BN mode.

        Grad-Based bound: the meta samples have no α, β of their own (Eq. 10 weighs both terms for each), so
        Eq. 8 is undefined for them and they take the fixed ε (×`train_eps_scale`), as the paper gives nothing
        else [deliberate]."""
        x_m, y_m = self.meta_batches.next()
        if self.code:  # the code reuses the training batch's class weights and budgets by position
            x_m, y_m, align = x_m[:len(y)], y_m[:len(y)], y[:len(y_m)]
        else:
            align = y_m
        eps_m = self.eps_for(align) if self.hp.bound != "grad" else torch.full_like(
            y_m, self.ctx.eps * self.eps_scale, dtype=x_m.dtype)
        at_stepped = WithParams(model, stepped, buffers)
        m_rows = torch.arange(len(y_m), device=y_m.device)
        fixed = WithParams(model, {k: v.detach() for k, v in stepped.items()}, buffers)
        logits_m = at_stepped(x_m)  # in eval mode (the code's) also the attack's KL target: same values as `fixed`'s
        x_adv_m, x_anti_m = adversaries(fixed, x_m, y_m, eps_m, self.ctx.step_size, self.ctx.attack_steps,
                                        m_rows, m_rows, self.hp.bn_mode, eval_logits(model, logits_m, self.hp.bn_mode))
        kl_m = F.kl_div(F.log_softmax(at_stepped(x_adv_m), 1), F.log_softmax(logits_m, 1), reduction="none",
                        log_target=True).sum(1)
        uniform = torch.ones(len(y_m), 2, device=y_m.device)
        meta_loss = self._objective(self.w_ce[align], self.w_kl[align], uniform, F.cross_entropy(logits_m, y_m, reduction="none"),
                                    kl_m, F.cross_entropy(at_stepped(x_anti_m), y_m, reduction="none"), m_rows, m_rows)
        grads = torch.autograd.grad(meta_loss, list(self.net.parameters()))
        for p, g in zip(self.net.parameters(), grads):
            p.grad = g
        self.meta_opt.step()
        self.meta_opt.zero_grad(set_to_none=True)

    def state_dict(self):
        return {**super().state_dict(), "constraints": self.constraints.state_dict(),
                "net": {k: v.cpu() for k, v in self.net.state_dict().items()}, "meta_opt": self.meta_opt.state_dict(),
                "meta_batches": self.meta_batches.state_dict(), "class_loss": self.class_loss.cpu(),
                "loss_sum": self._loss_sum.cpu(), "loss_n": self._loss_n.cpu()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.constraints.load_state_dict(state["constraints"])
        self.net.load_state_dict(state["net"])
        self.meta_opt.load_state_dict(state["meta_opt"])
        self.meta_batches.load_state_dict(state["meta_batches"])
        self.class_loss = state["class_loss"].to(self.ctx.device)
        self._loss_sum, self._loss_n = state["loss_sum"].to(self.ctx.device), state["loss_n"].to(self.ctx.device)
        self._apply()
