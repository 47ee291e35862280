"""HAT (Rade & Moosavi-Dezfooli 2022), the TRADES-based variant: TRADES plus helper examples.

Helper examples x_hr = x + h·(x_adv − x) lie twice as far out as the adversary (h = 2) and are deliberately
neither projected nor clipped to [0,1]; their labels come from a frozen, naturally trained helper model g
evaluated on x_adv (not on x_hr), so the model learns to stop at g's decision boundary instead of pushing its
margin past it:  L = CE(f(x), y) + β·KL_batchmean(p(x) ‖ p(x_adv)) + γ·CE(f(x_hr), argmax g(x_adv)).

The helper is loaded from `helper` (a bench run folder — its kept checkpoint of best clean test accuracy — or a
.pt file holding {"model": state_dict} or a bare state_dict). It is not part of the method's state: the run config records its
path. Defaults are HAT's CIFAR-10 ResNet-18 values; UIAT reruns HAT with them under its own schedule [AMBIG].
HAT's loss has no epoch schedule (its code's learning rate steps per batch: `--schedule onecycle` here).
Not registered: the code's AT-based variant (core/utils/hat.py `at_hat_loss`: CE(x) + β·CE(x_adv) + γ·helper CE on
a CE-PGD adversary) — UIAT compares with the TRADES-based HAT, and no table of CAAT, CFA, UIAT or BiLAW uses it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from bench.attacks.losses import kl_per_sample
from bench.checkpoint_io import load_checkpoint
from bench.hparams import require
from methods.core.base import Batch, Method, MethodContext, StepOutput
from methods.core.registry import METHODS
from methods.core.adversaries import trades_adversary
from methods.core.step_bound import attack, forward, update

HOW_TO_TRAIN_HELPER = (
    "HAT needs a naturally trained helper model of this run's architecture: train it first, with the same "
    "--dataset, --model and --normalize as this run, e.g. `python -m bench train --method natural --dataset D "
    "--model M --epochs 50 --select clean`, then pass --hp helper=<that run's folder> (the CLI prints run folders)"
)


@dataclass(frozen=True)
class HATHparams:
    helper: str = ""  # run folder, run id in this run's store, or .pt file of the naturally trained helper
    beta: float = 2.5  # weight of the TRADES KL term
    gamma: float = 0.5  # weight of the helper CE term
    h: float = 2.0  # helper examples' distance from x, in multiples of the adversarial perturbation
    init: Literal["uniform", "normal", "none"] = "normal"  # TRADES init x + 0.001·N(0, I)
    bn_mode: Literal["eval", "train"] = "eval"

    def __post_init__(self):
        for name in ("beta", "gamma", "h"):
            require(self, name, getattr(self, name) >= 0, "a number ≥ 0")


def helper_checkpoint(path: str, store_root: Path | None = None) -> Path:
    """The file holding the helper's weights: a bench run folder's kept checkpoint of its best clean test accuracy
    (HAT §4.1: "the best test accuracy checkpoint"; the last epoch when clean accuracy was not monitored), or the
    file itself.

    A bare run id is looked up in `store_root` (the HAT run's own store), so an experiment can name its helper
    run by id and the config stays the same on every machine.
    """
    if not path:
        raise ValueError(f"no helper model given. {HOW_TO_TRAIN_HELPER}")
    location = Path(path)
    if not location.exists() and store_root is not None and (store_root / path).exists():
        location = store_root / path
    if location.is_dir():
        return _selected_weights(location, path)
    if not location.is_file():
        raise ValueError(f"helper {path!r} does not exist. {HOW_TO_TRAIN_HELPER}")
    return location


def _selected_weights(folder: Path, path: str) -> Path:
    from bench.checkpoints import Checkpoint, CheckpointStore
    from bench.selection import Best, Last
    from bench.store import RunDir

    run = RunDir(folder)
    if run.status() != "done":
        raise ValueError(f"helper folder {path!r} is not a finished bench run ({run.status()}). {HOW_TO_TRAIN_HELPER}")
    cfg, records = run.config(), run.records()
    rule = Best(attack="clean") if "clean" in cfg.eval_attacks and "test" in cfg.monitor_on else Last()
    epoch = rule.choose(records, cfg.epochs)
    file = CheckpointStore(run.checkpoints_dir).path(Checkpoint("", cfg.epochs - 1 if epoch is None else epoch))
    if not file.is_file():
        raise ValueError(f"helper folder {path!r} does not keep {file.name}. {HOW_TO_TRAIN_HELPER}")
    return file


def load_helper(path: str, ctx: MethodContext) -> nn.Module:
    """A frozen helper in eval mode, built with ctx.new_model() and loaded from `path`."""
    file = helper_checkpoint(path, Path(ctx.run_dir).parent if ctx.run_dir else None)
    saved = load_checkpoint(file, ctx.device, require_checksum=False)  # a run's best.pt, or a plain file
    state = saved["model"] if isinstance(saved, dict) and "model" in saved else saved
    helper = ctx.new_model()
    try:
        helper.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"helper weights in {file} do not fit this run's model ({error}). "
                         f"{HOW_TO_TRAIN_HELPER}") from None
    return helper.requires_grad_(False).eval()


@METHODS.register("hat")
class HAT(Method):
    Hparams = HATHparams
    description = "HAT (Rade & Moosavi-Dezfooli): TRADES + CE on helper examples labelled by a natural model"
    per_class = frozenset({"eps"})  # its adversaries read class_eps (eps_for): CCM may recalibrate it

    def step_bound(self, epoch):  # forward/backward passes one step needs (methods.core.step_bound)
        return forward(1) + attack(self.ctx.attack_steps) + forward(1) + update(3)  # KL target, attack, helper labels, 3 loss inputs

    def __init__(self, hp, ctx):
        super().__init__(hp, ctx)
        self.helper = load_helper(hp.helper, ctx)

    def helper_examples(self, x: torch.Tensor, x_adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x + h·(x_adv − x), unclipped; the helper's labels on x_adv)."""
        with torch.no_grad():
            y_hr = self.helper(x_adv).argmax(1)
        return x + self.hp.h * (x_adv - x), y_hr

    def loss(self, model, batch: Batch, optimizer) -> StepOutput:
        x_adv = trades_adversary(self, model, batch)
        x_hr, y_hr = self.helper_examples(batch.x, x_adv)
        logits_nat, logits_adv, logits_hr = model(batch.x), model(x_adv), model(x_hr)
        ce = F.cross_entropy(logits_nat, batch.y)
        kl = kl_per_sample(logits_nat, logits_adv).mean()
        helper_ce = F.cross_entropy(logits_hr, y_hr)
        loss = ce + self.hp.beta * kl + self.hp.gamma * helper_ce
        return StepOutput(loss, logits_adv, {"ce": ce.detach(), "kl": kl.detach(), "helper_ce": helper_ce.detach()})
