"""`torch.compile` for training, as an option (`--compile`): the model's forward is compiled in place.

In place (`nn.Module.compile`), not `torch.compile(model)`: the wrapper `torch.compile` returns renames every
parameter `_orig_mod.*`, which would change checkpoints and break the look-ahead of the meta-learned methods
(`torch.func.functional_call` by parameter name). Every caller of the model (attacks, method losses, the
functional look-ahead, evaluation) runs the compiled forward; autograd, `autograd.grad` and double backward
work as in eager mode (AOTAutograd), so first-order methods need no change. Double backward does not: compiled
graphs refuse a backward through a `create_graph` backward (torch 2.14: "torch.compile with aot_autograd does not
currently support double backward"), which every look-ahead (CAAT, BiLAW's variants) and GradAlign's regulariser
take; `check_compilable` refuses those methods by their declared step bound (a `second` pass).

Attacks and meta batches call the model at several batch sizes (CAAT's joined batch is 2×, a last partial
batch is smaller): `dynamic=None` lets torch recompile once and then treat the batch size as dynamic. A
recompile limit is not raised: a method whose calls keep recompiling falls back to eager for those shapes.
"""
from __future__ import annotations

from typing import Literal

from torch import nn

from methods.core.base import Method

MODES = ("default", "reduce-overhead", "max-autotune")
Mode = Literal["default", "reduce-overhead", "max-autotune"]


def compile_for_training(model: nn.Module, mode: Mode = "default") -> nn.Module:
    """Compile `model`'s forward in place for training and return it (the same object, same parameter names).

    Compilation is lazy: the first calls of each new input shape and mode (train/eval) pay it."""
    if mode not in MODES:
        raise ValueError(f"compile mode {mode!r} is not one of {', '.join(MODES)}")
    model.compile(mode=mode, dynamic=None)
    return model


def check_compilable(name: str, method: Method) -> None:
    """Refuse a method whose step differentiates through a backward (see the module docstring)."""
    second = max(method.step_bound(epoch).second for epoch in range(method.ctx.epochs))
    if second:
        raise ValueError(f"--compile: {name} takes a second-order backward each step (a look-ahead or a gradient "
                         f"penalty), which torch.compile does not support; run {name} without --compile")
