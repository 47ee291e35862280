"""CFA's class-wise calibration state (Wei et al. 2023, CFA §4): A_c, the training robust accuracy of class c in the
previous epoch, measured on the adversarial examples the updates trained on (the loop's train_class_acc).

CCM and CCR both recalibrate one per-class quantity of the base method from A before each epoch once the
warm-up is over; this base class keeps A (and its resume state) so each of them is only its formula.
"""
from __future__ import annotations

import torch

from methods.addon import Addon


class ClassCalibrated(Addon):
    """Tracks A_c; subclasses implement `calibrate(A)` and have `begin_epoch` in their hparams."""

    def __init__(self, hp, base):
        super().__init__(hp, base)
        if hp.begin_epoch < 0:
            raise ValueError(f"begin_epoch={hp.begin_epoch} must be ≥ 0")
        self.train_acc = torch.zeros(self.ctx.num_classes)

    def on_epoch_end(self, model, epoch, train_class_acc):
        # a class absent from this epoch's batches keeps its previous accuracy
        self.train_acc = torch.tensor([old if new is None else new
                                       for old, new in zip(self.train_acc.tolist(), train_class_acc)])
        return {}

    def on_epoch_start(self, model, epoch):
        if epoch >= self.hp.begin_epoch:
            self.calibrate(self.train_acc.to(self.ctx.device))

    def calibrate(self, train_acc: torch.Tensor) -> None:
        raise NotImplementedError

    def state_dict(self):
        return {"train_acc": self.train_acc}

    def load_state_dict(self, state):
        self.train_acc = state["train_acc"]
