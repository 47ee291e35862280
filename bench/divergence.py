"""Stop training at the first non-finite loss or weight, so a diverged run (too large an lr, a NaN lr) is
failed with where it diverged instead of training on NaN, being marked done and writing NaN into its records."""
from __future__ import annotations

import math

import torch
from torch import nn


class Diverged(ValueError):
    """Training produced a non-finite loss or weight; the message names the epoch and batch (1-based)."""


def check_finite(loss: torch.Tensor, model: nn.Module, epoch: int, batch: int) -> None:
    """Raise Diverged when this batch's loss, or any weight after its update, is NaN or infinite.
    The max-abs of every parameter is NaN/inf iff one of its entries is, and costs one pass over the weights."""
    params = [p.detach() for p in model.parameters()]
    worst = torch.stack(torch._foreach_norm(params, math.inf)).max() if params else loss.new_zeros(())
    value, weight = (float(v) for v in torch.stack([loss.detach().float(), worst.float()]).cpu())
    if math.isfinite(value) and math.isfinite(weight):
        return
    what = f"loss {value}" if not math.isfinite(value) else f"a weight is {weight} after the update (loss {value:.4g})"
    raise Diverged(f"training diverged at epoch {epoch + 1}, batch {batch + 1}: {what}; stopped before writing this "
                   "epoch's record or checkpoint (lower --lr, or check the method's hyperparameters)")
