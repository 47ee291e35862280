"""Method names → plugins. `@METHODS.register("name")` makes a `Method` usable by name; a name may add
add-ons with `+` (`trades+ema`), whose hyperparameters are prefixed by the add-on's name (`ema.decay`)."""
from __future__ import annotations

import dataclasses
from typing import Any

from bench import hparams
from bench.registry import Registry
from methods.core.addon import ADDONS, Composite
from methods.core.base import Method, MethodContext, Warmup

METHODS: Registry[type[Method]] = Registry("method")


def _parts(name: str) -> tuple[str, list[str]]:
    base, *addons = [part.strip() for part in name.split("+")]
    METHODS.get(base)
    for addon in addons:
        ADDONS.get(addon)
    if len(set(addons)) != len(addons):
        raise ValueError(f"method {name!r} names an add-on twice")
    _check_needs(name, base, addons)
    return base, addons


def _check_needs(name: str, base: str, addons: list[str]) -> None:
    """Refuse an add-on whose per-class quantity (Addon.needs) the base does not declare (Method.per_class), and
    two add-ons recalibrating the same one."""
    base_cls = METHODS.get(base)
    owner: dict[str, str] = {}
    for addon in addons:
        for quantity in sorted(ADDONS.get(addon).needs_on(base_cls)):
            if quantity not in base_cls.per_class:
                able = [m for m in METHODS if quantity in METHODS.get(m).per_class]
                raise ValueError(f"method {name!r}: add-on {addon!r} recalibrates the base's per-class {quantity!r}, "
                                 f"which base method {base!r} does not declare (its per_class: "
                                 f"{', '.join(sorted(base_cls.per_class)) or 'none'}); bases that do: "
                                 f"{', '.join(able) or 'none'}")
            if quantity in owner:
                raise ValueError(f"method {name!r}: add-ons {owner[quantity]!r} and {addon!r} both recalibrate the "
                                 f"per-class {quantity!r}; keep one")
            owner[quantity] = addon


def _split_overrides(name: str, overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    base, addons = _parts(name)
    split: dict[str, dict[str, Any]] = {base: {}, **{a: {} for a in addons}}
    for key, value in overrides.items():
        owner, dot, field = key.partition(".")
        if not dot:
            split[base][key] = value
        elif owner in addons:
            split[owner][field] = value
        else:
            raise ValueError(f"hyperparameter {key!r}: {owner!r} is not an add-on of {name!r} (add-ons: {addons})")
    return split


def _hparam_objects(name: str, overrides: dict[str, Any], run: hparams.RunFacts | None = None) -> dict[str, Any]:
    """The method's and add-ons' hparams objects by owner; with `run`, their placeholders resolved."""
    base, addons = _parts(name)
    split = _split_overrides(name, overrides)
    objects = {base: hparams.build(METHODS.get(base).Hparams, split[base], "hp ")}
    objects.update({a: hparams.build(ADDONS.get(a).Hparams, split[a], f"hp {a}.") for a in addons})
    if run is not None:
        objects = {owner: hparams.resolve(obj, dataclasses.replace(run, method=base)) for owner, obj in objects.items()}
    return objects


def check_norm(name: str, norm: str) -> None:
    """Refuse a threat model that the method or one of its add-ons does not list in its `norms`."""
    base, addons = _parts(name)
    for kind, registry, part in [("method", METHODS, base), *(("add-on", ADDONS, a) for a in addons)]:
        if norm not in registry.get(part).norms:
            able = [n for n in registry if norm in registry.get(n).norms]
            raise ValueError(f"{kind} {part!r} does not support norm={norm!r}; the {kind}s that do: "
                             f"{', '.join(able) or 'none'}")


def build_method(name: str, overrides: dict[str, Any], ctx: MethodContext) -> Method:
    base, addons = _parts(name)
    check_norm(name, ctx.norm)
    hp = _hparam_objects(name, overrides, hparams.RunFacts(base, ctx.fidelity, ctx.attack_steps, ctx.eps))
    method = METHODS.get(base)(hp[base], ctx)
    if not addons:
        return method
    return Composite(method, {a: ADDONS.get(a)(hp[a], method) for a in addons})


def warmup_of(name: str, overrides: dict[str, Any], epochs: int) -> Warmup | None:
    """The warm-up (Method.warmup) of a run of method `name`; None for a composition, whose add-ons change its
    update on schedules of their own."""
    base, addons = _parts(name)
    if addons:
        return None
    return METHODS.get(base).warmup(_hparam_objects(name, overrides)[base], epochs)


def canonical_name(name: str) -> str:
    """`name` with aliases replaced by registered names ("at+cfa" → "pgd_at+cfa"), so both name one run."""
    base, addons = _parts(name)
    return "+".join([METHODS.canonical(base), *addons])


def required_heldout(name: str) -> str | None:
    """The `--heldout` kind the method or one of its add-ons needs (the first that names one), else None."""
    base, addons = _parts(name)
    kinds = [METHODS.get(base).heldout_kind, *(ADDONS.get(a).heldout_kind for a in addons)]
    return next((k for k in kinds if k is not None), None)


def resolved_hparams(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """All hyperparameters with overrides applied, add-ons' under their prefix, for the run's record."""
    base, _ = _parts(name)
    out: dict[str, Any] = {}
    for owner, obj in _hparam_objects(name, overrides).items():
        prefix = "" if owner == base else f"{owner}."
        out.update({prefix + k: v for k, v in dataclasses.asdict(obj).items()})
    return out


def canonical_hparams(name: str, overrides: dict[str, Any], run: hparams.RunFacts | None) -> dict[str, Any]:
    """Typed values, placeholders resolved for `run` (kept as given without one), those equal to their declared
    default dropped, add-ons' under their prefix: `beta=6`, `beta=6.0` and no override give one result for
    TRADES (the run's identity in hyperparameters)."""
    base, _ = _parts(name)
    out: dict[str, Any] = {}
    for owner, obj in _hparam_objects(name, overrides, run).items():
        prefix = "" if owner == base else f"{owner}."
        out.update({prefix + k: v for k, v in hparams.non_defaults(obj).items()})
    return out
