"""Named expansions: one add-on name standing for a group of add-ons (`+cfa` = `+ccm[+ccr]+fawa`).

An expansion declares only its parts. Its hyperparameters are the parts' fields, each once, with the parts'
own types, defaults, checks and placeholder resolution (a field two parts share, like CCM's and CCR's
`begin_epoch`, is one value given to both), so the defaults live in the parts alone and `--hp cfa.lam1=0.5`
sets CCM's λ₁. A part named in `optional` joins only on a base that declares what it needs (Method.per_class).
Records and state keep the part's name under the expansion's (`cfa.ccm.class_eps`).
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, ClassVar

from bench.hparams import RunFacts, resolve
from methods.core.addon import Addon
from methods.core.base import Method


def part_hparams(hp: Any, cls: type) -> Any:
    """The part's hparams object (class `cls`) from the expansion's `hp`, checked by the part; a refusal names
    the expansion's class, so `build` reports it as `hp <expansion>.<field>`."""
    try:
        return cls(**{f.name: getattr(hp, f.name) for f in dataclasses.fields(cls)})
    except ValueError as err:
        message = str(err)
        if not message.startswith(f"{cls.__name__}."):
            raise
        raise ValueError(f"{type(hp).__name__}.{message[len(cls.__name__) + 1:]}") from None


def merged_hparams(name: str, parts: dict[str, type[Addon]], module: str) -> type:
    """A frozen dataclass with every field of the parts' Hparams once, in the parts' order."""
    fields: dict[str, tuple[Any, Any]] = {}
    for part, addon in parts.items():
        hints = typing.get_type_hints(addon.Hparams)
        for f in dataclasses.fields(addon.Hparams):
            if f.default is dataclasses.MISSING:
                raise TypeError(f"{name}: {part}.{f.name} has no default; an expansion's parts need defaults")
            if f.name in fields and fields[f.name] != (hints[f.name], f.default):
                raise TypeError(f"{name}: parts declare {f.name!r} differently ({fields[f.name]} vs "
                                f"{(hints[f.name], f.default)}); a shared field must have one type and default")
            fields[f.name] = (hints[f.name], f.default)

    def __post_init__(self):
        for addon in parts.values():
            part_hparams(self, addon.Hparams)

    def resolved(self, run: RunFacts):
        changed: dict[str, Any] = {}
        for addon in parts.values():
            given = part_hparams(self, addon.Hparams)
            done = resolve(given, run)
            changed.update({f.name: getattr(done, f.name) for f in dataclasses.fields(done)
                            if getattr(done, f.name) != getattr(given, f.name)})
        return dataclasses.replace(self, **changed)

    cls = dataclasses.make_dataclass(
        name, [(n, hint, dataclasses.field(default=default)) for n, (hint, default) in fields.items()],
        namespace={"__post_init__": __post_init__, "resolved": resolved}, frozen=True)
    cls.__module__ = module
    return cls


class Expansion(Addon):
    """An add-on made of the add-ons in `expands_to` (name → class); hooks run each part in that order."""

    expands_to: ClassVar[dict[str, type[Addon]]] = {}
    optional: ClassVar[frozenset[str]] = frozenset()  # parts left out on bases lacking what they need

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        parts = list(cls.expands_to.values())
        cls.Hparams = merged_hparams(f"{cls.__name__}Hparams", cls.expands_to, cls.__module__)
        cls.heldout_kind = next((p.heldout_kind for p in parts if p.heldout_kind is not None), None)
        cls.norms = tuple(n for n in parts[0].norms if all(n in p.norms for p in parts))

    @classmethod
    def included(cls, base: type[Method]) -> dict[str, type[Addon]]:
        """The parts used on a base of class `base`: every required one, and each optional one whose needs the
        base declares."""
        return {name: part for name, part in cls.expands_to.items()
                if name not in cls.optional or part.needs_on(base) <= base.per_class}

    @classmethod
    def needs_on(cls, base: type[Method]) -> frozenset[str]:
        return frozenset().union(*(part.needs_on(base) for part in cls.included(base).values()))

    def __init__(self, hp, base):
        super().__init__(hp, base)
        self.parts: dict[str, Addon] = {name: part(part_hparams(hp, part.Hparams), base)
                                        for name, part in self.included(type(base)).items()}

    def step_bound(self, epoch):
        return sum((part.step_bound(epoch) for part in self.parts.values()), super().step_bound(epoch))

    def adjust(self, model, batch, out):
        for part in self.parts.values():
            out = part.adjust(model, batch, out)
        return out

    def on_epoch_start(self, model, epoch):
        for part in self.parts.values():
            part.on_epoch_start(model, epoch)

    def on_epoch_end(self, model, epoch, train_class_acc):
        return {f"{name}.{k}": v for name, part in self.parts.items()
                for k, v in part.on_epoch_end(model, epoch, train_class_acc).items()}

    def averaged_models(self):
        return {k: v for part in self.parts.values() for k, v in part.averaged_models().items()}

    def state_dict(self):
        return {name: part.state_dict() for name, part in self.parts.items()}

    def load_state_dict(self, state):
        for name, part in self.parts.items():
            part.load_state_dict(state[name])
