"""The contract between the training runner and a method plugin.

The runner owns data, optimiser, schedule, evaluation, checkpoints and records. A method owns how
its training examples are made, its loss, and any per-sample or per-class state it keeps between
steps — which it must expose through `state_dict`/`load_state_dict` so a killed run resumes to the
same state.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from bench.data import Split
from methods.core.step_bound import Passes


@dataclass(frozen=True)
class NoHparams:
    """For methods without hyperparameters of their own."""


@dataclass
class MethodContext:
    """What a method may know about the run it is part of, handed over once when it is built."""

    num_classes: int
    eps: float  # the run's budget in `norm` (pixel units)
    step_size: float
    attack_steps: int
    epochs: int
    steps_per_epoch: int
    class_counts: tuple[int, ...]  # training-set samples per class (after the scenario)
    heldout: dict[str, Split]  # clean held-out splits (meta / validation sets), on the device
    device: torch.device
    fidelity: str  # "paper" or "code" (the papers' shared conventions)
    new_model: Callable[[], nn.Module]  # a fresh model of the run's architecture, on the device
    run_dir: str | None = None  # the run's folder, for methods that need files beside it
    image_shape: tuple[int, ...] = ()  # C, H, W of one image (UIAT's class-wise perturbations)
    batch_size: int = 128  # the training batch size (held-out batches default to the same)
    seed: int = 0  # the run's seed (for a method's own generators, e.g. held-out batch order)
    norm: str = "linf"  # the training attacks' threat model: "linf" or "l2" (only methods listing it in `norms`)

    @property
    def train_size(self) -> int:
        """Training-set size; `Batch.idx` values lie in range(train_size) (per-sample memories)."""
        return sum(self.class_counts)

    def heldout_split(self, name: str, method: str) -> Split:
        """The clean held-out split `name` ("meta", "val", "val_meta"), or an error saying how to get it."""
        if name not in self.heldout:
            kinds = [k for k, split in HELDOUT_SPLIT.items() if split == name]
            raise ValueError(f"{method} needs the clean held-out split {name!r}; run with --heldout "
                             f"{' or --heldout '.join(kinds)} (this run has {sorted(self.heldout) or 'none'})")
        return self.heldout[name]


# Which held-out split each scenario kind (`--heldout`) provides to methods.
HELDOUT_SPLIT = {"caat_meta": "meta", "frl_meta": "meta", "cfa_val": "val", "bilaw": "val_meta"}


@dataclass(frozen=True)
class Warmup:
    """The first epochs of a run in which a method trains as something else (GAIRAT's and MAIL's weights are
    uniform before their begin epoch). A checkpoint selected inside them is that warm-up's model, not the
    method's: tables flag it (bench.experiments.render)."""

    until: int  # the first 0-based epoch of the method's own update
    trains_as: str  # what the warm-up epochs train, in words ("PGD-AT (uniform weights)")


@dataclass
class Batch:
    x: torch.Tensor  # float [0,1], augmented, on the device
    y: torch.Tensor  # training labels (noisy where the scenario says so)
    idx: torch.Tensor  # positions in the training split, for per-sample memory
    epoch: int  # 0-based
    step: int  # batch index within the epoch


@dataclass
class StepOutput:
    loss: torch.Tensor
    logits: torch.Tensor | None = None  # outputs on the examples the update trained on (train robust acc)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)  # detached scalars, averaged per epoch


class Method:
    """Base class of every training method; subclasses set `Hparams` and implement `loss`."""

    Hparams: ClassVar[type] = NoHparams
    description: ClassVar[str] = ""
    # The `--heldout` scenario kind this method needs (meta / validation set), or None.
    heldout_kind: ClassVar[str | None] = None
    # Threat models the method's adversaries are written for; `build_method` refuses the others.
    norms: ClassVar[tuple[str, ...]] = ("linf",)
    # Per-class quantities add-ons may recalibrate between epochs (Addon.needs): "eps" if the method's adversaries
    # read `class_eps` through `eps_for` and the method never rewrites it itself, "beta" for TRADES' `class_beta`.
    per_class: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, hp: Any, ctx: MethodContext):
        self.hp = hp
        self.ctx = ctx
        # Per-class budget: uniform here; FRL and CAAT rewrite it, CCM does on bases declaring "eps" in per_class.
        self.class_eps = torch.full((ctx.num_classes,), float(ctx.eps), device=ctx.device)

    def eps_for(self, y: torch.Tensor) -> torch.Tensor:
        """Per-sample budget of a batch with labels y."""
        return self.class_eps[y]

    @classmethod
    def warmup(cls, hp: Any, epochs: int) -> Warmup | None:
        """The warm-up of a run of `epochs` with hyperparameters `hp`; None: the method's own update from epoch 0.
        A class method, so a table can ask it of a stored run without building the method."""
        return None

    @cached_property
    def _own_update_from(self) -> int:
        warmup = self.warmup(self.hp, self.ctx.epochs)
        return 0 if warmup is None else warmup.until

    def weighted(self, epoch: int) -> bool:
        """Whether 0-based `epoch` is past the warm-up (Method.warmup), when the method's own update applies; asked
        every batch, so the switch epoch is computed once."""
        return epoch >= self._own_update_from

    def step_bound(self, epoch: int) -> Passes:
        """The forward/backward passes one step of epoch `epoch` needs (methods.core.step_bound): the operation count
        that step_cost and the cost model measure against."""
        raise NotImplementedError(f"{type(self).__name__} declares no step_bound")

    def loss(self, model: nn.Module, batch: Batch, optimizer: torch.optim.Optimizer) -> StepOutput:
        raise NotImplementedError

    def on_epoch_start(self, model: nn.Module, epoch: int) -> None:
        """Called before the first batch of each epoch (class-wise schedules update here)."""

    def on_epoch_end(self, model: nn.Module, epoch: int, train_class_acc: list[float]) -> dict[str, Any]:
        """Called after the last batch; returns extra JSON-ready values for this epoch's record."""
        return {}

    def averaged_models(self) -> dict[str, nn.Module]:
        """Extra models to evaluate and checkpoint beside the trained one (EMA, FAWA), by name."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"class_eps": self.class_eps.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.class_eps = state["class_eps"].to(self.ctx.device)
