"""CFA's class-wise calibration state (Wei et al. 2023, CFA §4): A_c, the training robust accuracy of class c in the
previous epoch, measured on the adversarial examples the updates trained on (the loop's train_class_acc).

CCM and CCR both recalibrate one per-class quantity of the base method from A before each epoch once the
warm-up is over; this base class keeps A (and its resume state) so each of them is only its formula.

`class_acc` picks the form of A_c (`fidelity`: as --fidelity says):
* `paper`: correct_c / n_c, the class's accuracy (Eq. of CCM/CCR);
* `code`: C·correct_c / N (train.py's CW_log.result: `m*self.cw_robust/N`), which equals the paper's only when
  the epoch is class-balanced; here n_c and N are the training split's class counts, since every epoch visits
  each training sample once.
The warm-up compares the code's 0-based epoch (train.py: `epoch >= args.begin`): uniform before `begin_epoch`.
"""
from __future__ import annotations

import torch

from bench.hparams import RunFacts, require
from methods.core.addon import Addon
from methods.core.reference_epoch import reference_epoch


def check_calibration(hp) -> None:
    """`begin_epoch` of a calibrated add-on's hparams (CCM, CCR)."""
    require(hp, "begin_epoch", hp.begin_epoch >= 0, "a 0-based epoch ≥ 0")


def resolved_class_acc(class_acc: str, run: RunFacts) -> str:
    """The placeholder `class_acc="fidelity"` as the run's `--fidelity` (paper or code)."""
    return run.fidelity if class_acc == "fidelity" else class_acc


class ClassCalibrated(Addon):
    """Tracks A_c; subclasses implement `calibrate(A)` and have `begin_epoch` in their hparams."""

    def __init__(self, hp, base):
        super().__init__(hp, base)
        form = hp.class_acc  # "paper" or "code": build_method resolved "fidelity" (resolved_class_acc)
        counts = torch.tensor(self.ctx.class_counts, dtype=torch.float64)
        # A_c = scale_c · (correct_c / n_c): 1 (paper) or C·n_c/N (code)
        self.acc_scale = torch.ones(self.ctx.num_classes) if form == "paper" else len(counts) * counts / counts.sum()
        self.train_acc = torch.zeros(self.ctx.num_classes)

    def on_epoch_end(self, model, epoch, train_class_acc):
        # a class absent from this epoch's batches keeps its previous accuracy
        self.train_acc = torch.tensor([old if new is None else float(scale) * new for old, new, scale
                                       in zip(self.train_acc.tolist(), train_class_acc, self.acc_scale.tolist())])
        return {}

    def on_epoch_start(self, model, epoch):
        if reference_epoch(epoch, counts_from=0) >= self.hp.begin_epoch:
            self.calibrate(self.train_acc.to(self.ctx.device))

    def calibrate(self, train_acc: torch.Tensor) -> None:
        raise NotImplementedError

    def state_dict(self):
        return {"train_acc": self.train_acc}

    def load_state_dict(self, state):
        self.train_acc = state["train_acc"]
