"""Operation-count bounds: the forward and backward passes one training step of a method needs.

Each method declares `Method.step_bound(hp, ctx) -> Passes` next to its loss; `bench.benchmarks.step_cost` prints
measured time / bound, `bench.cost` turns bounds into planning costs, and tests/test_step_bound.py checks the
declarations against passes counted on a real step (forward images with hooks, arithmetic with torch's
FlopCounterMode).

Batch sizes are in units of the training batch (a meta/validation batch of the same size is 1). A pass's cost
is counted in forward-equivalents (FLOPs of one forward of the same batch):
* `fwd` a forward pass: 1;
* `input_bwd` a backward to the input only (an attack step's gradient): no weight gradients, ≈ 1;
* `bwd` a backward to the parameters (the update, a look-ahead's first-order step): weight and input
  gradients of every layer, ≈ 2;
* `second` a backward through a backward built with `create_graph` (a look-ahead's hypergradient, GradAlign's
  regulariser): it differentiates both products of every layer's backward and re-enters the forward, ≈ 4.
The weights are the FLOP ratios of conv/linear layers; tests/test_step_bound.py checks them on a tiny CNN.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

COST = {"fwd": 1.0, "input_bwd": 1.0, "bwd": 2.0, "second": 3.0}  # forward-equivalents per pass


@dataclass(frozen=True)
class Passes:
    """Passes of one step, each in training batches (fractions allowed: amortised or partial work)."""

    fwd: float = 0.0
    input_bwd: float = 0.0
    bwd: float = 0.0
    second: float = 0.0

    def __add__(self, other: "Passes") -> "Passes":
        return Passes(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def __mul__(self, k: float) -> "Passes":
        return Passes(*(getattr(self, f.name) * k for f in fields(self)))

    __rmul__ = __mul__

    def cost(self, per_pass: dict[str, float]) -> float:
        """The step's cost with `per_pass` the cost of one pass of each kind on one training batch."""
        return sum(per_pass[f.name] * getattr(self, f.name) for f in fields(self) if getattr(self, f.name))

    @property
    def units(self) -> float:
        """Forward-equivalents of the whole step (COST-weighted), in training batches."""
        return self.cost(COST)

    def describe(self) -> str:
        return " + ".join(f"{getattr(self, f.name):g} {f.name}" for f in fields(self) if getattr(self, f.name))


def attack(steps: int, batch: float = 1.0) -> Passes:
    """A K-step input-gradient attack (PGD, FGSM, inverse adversaries) on `batch` training batches."""
    return Passes(fwd=steps * batch, input_bwd=steps * batch)


def forward(batch: float = 1.0) -> Passes:
    """Forwards whose outputs are constants (KL targets, helper labels, anchors)."""
    return Passes(fwd=batch)


def update(batch: float = 1.0) -> Passes:
    """The loss forwards on `batch` batches of examples and the parameter backward through them."""
    return Passes(fwd=batch, bwd=batch)


def hypergradient(train: float, meta: float) -> Passes:
    """MW-Net's one-step look-ahead: a create_graph backward over the `train` batches of the inner loss, the
    meta loss's forward at θ' over `meta` batches, its backward, and the backward through the first backward."""
    return Passes(fwd=meta, bwd=train + meta, second=train)
