"""Temporarily put a model in train or eval mode.

Attacks run in a per-method BN mode (each method's official code) and evaluation always in eval mode;
afterwards every submodule must be back in exactly the state the caller left it, including
submodules the caller had deliberately frozen in eval mode inside a training model.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn


@contextmanager
def model_mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """Set ``model.train(training)`` inside the block; restore each submodule's own flag after."""
    flags = [(module, module.training) for module in model.modules()]
    model.train(training)
    try:
        yield model
    finally:
        for module, flag in flags:
            module.training = flag
