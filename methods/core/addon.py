"""Add-ons: pieces that modify any base method, composed by name as `base+addon+...` (`at+ema`, `trades+cfa`).

An add-on sees the base method (it may recalibrate the per-class quantities it declares in `needs`, which the
base must declare in `Method.per_class`), may add terms to the base's loss, and may keep averaged models. Its
hyperparameters are given as `--hp <addon>.<key>=value`; the base's stay unprefixed.
"""
from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from bench.registry import Registry
from methods.core.base import Batch, Method, NoHparams, StepOutput
from methods.core.step_bound import Passes


class Addon:
    """Base class of add-ons; every hook defaults to doing nothing."""

    Hparams: ClassVar[type] = NoHparams
    description: ClassVar[str] = ""
    heldout_kind: ClassVar[str | None] = None  # as Method.heldout_kind
    norms: ClassVar[tuple[str, ...]] = ("linf",)  # as Method.norms
    # The base's per-class quantities this add-on recalibrates (Method.per_class); composing refuses a base that
    # lacks one, and two add-ons recalibrating the same one.
    needs: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, hp: Any, base: Method):
        self.hp = hp
        self.base = base
        self.ctx = base.ctx

    @classmethod
    def needs_on(cls, base: type[Method]) -> frozenset[str]:
        """What this add-on recalibrates on a base of class `base` (an expansion's depends on its parts)."""
        return cls.needs

    def step_bound(self, epoch: int) -> Passes:
        """Passes the add-on adds to one step of its base (methods.core.step_bound)."""
        return Passes()

    def adjust(self, model: nn.Module, batch: Batch, out: StepOutput) -> StepOutput:
        """The step's output after this add-on (extra loss terms, re-weighting)."""
        return out

    def on_epoch_start(self, model: nn.Module, epoch: int) -> None:
        pass

    def on_epoch_end(self, model: nn.Module, epoch: int, train_class_acc: list[float]) -> dict[str, Any]:
        return {}

    def averaged_models(self) -> dict[str, nn.Module]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


ADDONS: Registry[type[Addon]] = Registry("add-on")


class Composite(Method):
    """A base method with add-ons applied in the order named; hooks run base first, then each add-on."""

    def __init__(self, base: Method, addons: dict[str, Addon]):  # no super().__init__: the state is the base's
        self.hp, self.ctx = base.hp, base.ctx
        self.base = base
        self.addons = addons

    @property
    def class_eps(self):
        return self.base.class_eps

    def eps_for(self, y):
        return self.base.eps_for(y)

    def step_bound(self, epoch):
        return sum((a.step_bound(epoch) for a in self.addons.values()), self.base.step_bound(epoch))

    def loss(self, model, batch, optimizer):
        out = self.base.loss(model, batch, optimizer)
        for addon in self.addons.values():
            out = addon.adjust(model, batch, out)
        return out

    def on_epoch_start(self, model, epoch):
        self.base.on_epoch_start(model, epoch)
        for addon in self.addons.values():
            addon.on_epoch_start(model, epoch)

    def on_epoch_end(self, model, epoch, train_class_acc):
        record = dict(self.base.on_epoch_end(model, epoch, train_class_acc))
        for name, addon in self.addons.items():
            record.update({f"{name}.{k}": v for k, v in addon.on_epoch_end(model, epoch, train_class_acc).items()})
        return record

    def averaged_models(self):
        models = dict(self.base.averaged_models())
        for addon in self.addons.values():
            models.update(addon.averaged_models())
        return models

    def state_dict(self):
        return {"base": self.base.state_dict(), **{name: a.state_dict() for name, a in self.addons.items()}}

    def load_state_dict(self, state):
        self.base.load_state_dict(state["base"])
        for name, addon in self.addons.items():
            addon.load_state_dict(state[name])
