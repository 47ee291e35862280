"""Typed hyperparameters: `--hp key=value` strings (or values from an experiment file) checked against a
method's dataclass, canonicalised so that one training has one identity.

Each method declares its hyperparameters as a frozen dataclass with defaults; its `__post_init__` checks
ranges (so a bad value is refused when the run config is built, before any folder exists). A default that is a
placeholder ("by fidelity", "the run's attack steps") is resolved by the class's `resolved(run)` hook, which
gets the run facts it may depend on. The command line and experiment files only ever hold overrides, so a run's
config stays short and its hash changes only when something really differs from the defaults (the open_lth
convention: hash of typed non-default values).
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal


@dataclasses.dataclass(frozen=True)
class RunFacts:
    """What a placeholder hyperparameter may be resolved from: the run's base method, fidelity, training attack
    steps and budget (None: the dataset's default, looked up only by a hook that needs it)."""

    method: str
    fidelity: str
    attack_steps: int
    eps: float | None
    dataset: str | None = None

    def budget(self) -> float:
        if self.eps is not None:
            return self.eps
        from bench.data import DATASETS

        return DATASETS.get(self.dataset).default_eps


def convert(owner: str, name: str, hint: Any, raw: Any) -> Any:
    """`raw` (a command-line string or a typed value) as type `hint`, or a ValueError naming owner.name, the
    value and what is allowed. Numbers must be finite; an int field takes only integral values."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    where = f"{owner}.{name}" if owner else name
    if origin in (typing.Union, types.UnionType) and type(None) in args and len(args) == 2:
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none")):
            return None  # an optional field: None stays None, anything else is checked as the other type
        return convert(owner, name, next(a for a in args if a is not type(None)), raw)
    if origin is Literal:
        if raw not in args:
            raise ValueError(f"{where}={raw!r} is not allowed; allowed: {', '.join(map(repr, args))}")
        return raw
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        items = [p for p in raw.split(",") if p.strip()] if isinstance(raw, str) else list(raw)
        return tuple(convert(owner, name, args[0], item) for item in items)
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{where}={raw!r} is not a boolean; allowed: true/false")
    if hint in (int, float):
        if isinstance(raw, bool):
            raise ValueError(f"{where}={raw!r} is not allowed; allowed: a{'n' if hint is int else ''} "
                             f"{hint.__name__}")
        try:
            value = float(raw.strip() if isinstance(raw, str) else raw)
        except (TypeError, ValueError):
            raise ValueError(f"{where}={raw!r} is not a number; allowed: a{'n' if hint is int else ''} "
                             f"{hint.__name__}") from None
        if not math.isfinite(value):
            raise ValueError(f"{where}={raw!r} is not allowed; allowed: a finite {hint.__name__}")
        if hint is int:
            if value != int(value):
                raise ValueError(f"{where}={raw!r} is not allowed; allowed: an integer")
            return int(value)
        return value
    if hint is str:
        return str(raw)
    raise TypeError(f"{where}: unsupported config type {hint!r}")


def build(cls: type, overrides: dict[str, Any], label: str | None = None) -> Any:
    """An instance of dataclass `cls` with `overrides` applied, each value checked against its type and by the
    class's `__post_init__`; errors name a field as `label` + name (e.g. "hp uiat.lam"; default "Cls.")."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        valid = ", ".join(sorted(fields)) or "(none)"
        raise ValueError(f"unknown hyperparameter(s) {unknown} for {cls.__name__}; valid: {valid}")
    try:
        return cls(**{k: convert(cls.__name__, k, hints[k], v) for k, v in overrides.items()})
    except ValueError as err:
        message = str(err)
        if label is None or not message.startswith(f"{cls.__name__}."):
            raise
        raise ValueError(label + message[len(cls.__name__) + 1:]) from None


def resolve(obj: Any, run: RunFacts) -> Any:
    """`obj` with its placeholder defaults replaced by what they stand for in this run (the class's
    `resolved(run)` hook; classes without placeholders have none)."""
    hook = getattr(obj, "resolved", None)
    return obj if hook is None else hook(run)


def require(obj: Any, name: str, ok: bool, allowed: str) -> None:
    """Refuse field `name` of hyperparameter object `obj` unless `ok`, naming the value and what is allowed."""
    if not ok:
        raise ValueError(f"{type(obj).__name__}.{name}={getattr(obj, name)!r} is not allowed; allowed: {allowed}")


def parse_pairs(pairs: list[str]) -> dict[str, str]:
    """['beta=6', 'init=normal'] -> {'beta': '6', 'init': 'normal'}."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"hyperparameter {pair!r} is not of the form key=value")
        out[key.strip()] = value.strip()
    return out


def non_defaults(obj: Any) -> dict[str, Any]:
    """Fields of dataclass instance `obj` that differ from their declared defaults."""
    return {
        f.name: getattr(obj, f.name)
        for f in dataclasses.fields(obj)
        if f.default is dataclasses.MISSING or getattr(obj, f.name) != f.default
    }
