"""The method registry: `@METHODS.register("name")` on a `Method` subclass makes it usable by name."""
from __future__ import annotations

import dataclasses
from typing import Any

from bench import hparams
from bench.registry import Registry
from methods.base import Method, MethodContext

METHODS: Registry[type[Method]] = Registry("method")


def build_method(name: str, overrides: dict[str, Any], ctx: MethodContext) -> Method:
    cls = METHODS.get(name)
    return cls(hparams.build(cls.Hparams, overrides), ctx)


def resolved_hparams(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """All hyperparameters of a method with overrides applied, for the run's record."""
    return dataclasses.asdict(hparams.build(METHODS.get(name).Hparams, overrides))
