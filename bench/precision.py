"""The numerics a run trains in (`RunConfig.precision`, part of its identity): TF32 switches and bf16 autocast.

`default` is what the papers' official codes ran, PyTorch's defaults: fp32 on CPU; on CUDA, TF32 convolutions
(`torch.backends.cudnn.allow_tf32`, on by default) and fp32 matmuls (`torch.backends.cuda.matmul.allow_tf32`,
off by default since torch 1.12). `fp32` turns TF32 off everywhere, `tf32` on for convolutions and matmuls (CPUs
have no TF32: both equal `default` there). `bf16` (opt-in) runs the network under bf16 autocast over the default
switches; parameters, gradients and optimiser state stay float32 (autocast casts per op), so the look-ahead
parameters of the meta-learned methods (CAAT Eq. 9, BiLAW §3) are float32 updates, and their weighting nets
run outside autocast (methods/caat/caat.py, methods/bilaw/bilaw_meta.py). Under bf16 the network's logits are cast back to
float32 at its output (`prepare`; also the features of `return_features`), so every loss, softmax, KL and
sample weight computed from them is float32 on every device (CUDA autocast does that for softmax and
cross-entropy by itself; CPU autocast keeps softmax and log-softmax in bf16).

Evaluation (per-epoch monitoring, final attacks, AutoAttack) always runs at `EVALUATION` = `default`, whatever
the training precision (bench.evaluate.attack_hits): every run is measured with the numerics of the papers'
evaluation codes, and no attack's gradient is computed through bf16-rounded logits.

The TF32 switches are process-wide; `switches` sets them for a block and restores what was there before.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import Tensor, nn


def _float_outputs(module: nn.Module, inputs: Any, output: Tensor | tuple[Tensor, ...]) -> Tensor | tuple[Tensor, ...]:
    """The logits (and, with `return_features`, the penultimate features: bench/models) as float32."""
    return tuple(t.float() for t in output) if isinstance(output, tuple) else output.float()


@dataclass(frozen=True)
class Precision:
    conv_tf32: bool  # torch.backends.cudnn.allow_tf32
    matmul_tf32: bool  # torch.backends.cuda.matmul.allow_tf32
    bf16: bool = False  # bf16 autocast of the forward

    @contextlib.contextmanager
    def switches(self) -> Iterator[None]:
        """The TF32 switches set for the block (forward and backward alike), the previous values restored after."""
        saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = self.conv_tf32, self.matmul_tf32
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved

    def autocast_on(self, device: torch.device) -> torch.autocast:
        """Autocast for the forward: on under bf16, explicitly off otherwise, so no enclosing autocast reaches in."""
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16)

    @contextlib.contextmanager
    def scope(self, device: torch.device) -> Iterator[None]:
        with self.switches(), self.autocast_on(device):
            yield

    def prepare(self, model: nn.Module) -> nn.Module:
        """`model`, whose logits leave it as float32 under autocast (see the module docstring)."""
        if self.bf16:
            model.register_forward_hook(_float_outputs)
        return model

    def describe(self, device: torch.device) -> str:
        """What actually computes, for a run's environment record: "fp32" on CPU unless autocast."""
        if self.bf16:
            return "bf16 autocast"
        tf32 = [name for name, on in (("convolutions", self.conv_tf32), ("matmuls", self.matmul_tf32)) if on]
        if device.type != "cuda" or not tf32:
            return "fp32"
        return f"fp32, tf32 {' and '.join(tf32)}"


PRECISIONS: dict[str, Precision] = {
    "default": Precision(conv_tf32=True, matmul_tf32=False),
    "fp32": Precision(conv_tf32=False, matmul_tf32=False),
    "tf32": Precision(conv_tf32=True, matmul_tf32=True),
    "bf16": Precision(conv_tf32=True, matmul_tf32=False, bf16=True),
}
EVALUATION = PRECISIONS["default"]
