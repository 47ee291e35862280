"""Attack losses. Every one takes float logits and returns a scalar to *ascend*.

`loss_dtype` is the one cast applied to logits before a loss: float32 for half-precision (autocast) outputs,
so losses are exact under bf16/fp16, and the model's own dtype otherwise, so a float64 model stays float64.

The batch reductions only scale the input gradient, so they leave a sign-step attack unchanged
(TRADES' official code); KL still uses the batchmean convention (sum / n) so that the value matches
the TRADES-lineage training losses (pitfall 3: never ``reduction='mean'``, which also averages
over classes).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


_HALF = (torch.float16, torch.bfloat16)


def loss_dtype(logits: torch.Tensor) -> torch.Tensor:
    """`logits` in float32 if they are half precision (autocast), unchanged otherwise (float32, float64)."""
    return logits.float() if logits.dtype in _HALF else logits


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Batch-mean cross-entropy."""
    return F.cross_entropy(logits, y)


def cw_margin_loss(logits: torch.Tensor, y: torch.Tensor, kappa: float = 0.0) -> torch.Tensor:
    """Batch mean of L_cw = -max(z_y - max_{j≠y} z_j + κ, 0) (Carlini & Wagner 2017)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return -(true - other + kappa).clamp_min(0).mean()


def kl_to_target(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """KL(target ‖ softmax(logits)), summed over classes and batch, divided by the batch size."""
    return F.kl_div(F.log_softmax(logits, dim=1), target_probs, reduction="sum") / logits.shape[0]


def kl_per_sample(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(p) ‖ softmax(q)) per sample, with gradients through both arguments.

    TRADES-lineage training losses weight or average this vector themselves (sum over classes,
    never a mean over classes; TRADES' official code).
    """
    log_p, log_q = F.log_softmax(p_logits, dim=1), F.log_softmax(q_logits, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(1)
