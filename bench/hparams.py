"""Typed hyperparameters: `--hp key=value` strings checked against a method's dataclass.

Each method declares its hyperparameters as a frozen dataclass with defaults; the command line
and experiment files only ever hold overrides, so a run's config stays short and its hash
changes only when something really differs from the defaults.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal


def _convert(cls: type, name: str, hint: Any, raw: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args and len(args) == 2:
        if raw is None:  # an optional field: None stays None, anything else is checked as the other type
            return None
        return _convert(cls, name, next(a for a in args if a is not type(None)), raw)
    if origin is Literal:
        allowed = typing.get_args(hint)
        if raw not in allowed:
            raise ValueError(f"{cls.__name__}.{name}={raw!r} is not allowed; choose one of {list(allowed)}")
        return raw
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{cls.__name__}.{name}={raw!r} is not a boolean (use true/false)")
    if hint in (int, float, str):
        try:
            value = hint(raw)
        except (TypeError, ValueError):
            raise ValueError(f"{cls.__name__}.{name}={raw!r} is not a valid {hint.__name__}") from None
        if hint is int and isinstance(raw, float) and raw != value:
            raise ValueError(f"{cls.__name__}.{name}={raw!r} is not an integer")
        return value
    raise TypeError(f"{cls.__name__}.{name}: unsupported hyperparameter type {hint!r}")


def build(cls: type, overrides: dict[str, Any]) -> Any:
    """An instance of dataclass `cls` with `overrides` applied, each value checked against its type."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        valid = ", ".join(sorted(fields)) or "(none)"
        raise ValueError(f"unknown hyperparameter(s) {unknown} for {cls.__name__}; valid: {valid}")
    return cls(**{k: _convert(cls, k, hints[k], v) for k, v in overrides.items()})


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
