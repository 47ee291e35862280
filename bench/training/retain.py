"""Which weights a training keeps: those of the epochs some registered selection rule could still pick.

After each epoch the candidates of every rule variant (bench.selection.retention_rules, from what the run
monitors) are computed from the records alone; the new epoch's weights are saved for each model series it is
a candidate of, and checkpoints no rule can pick any more are deleted once last.pt has landed. The same records
give the same kept set, so a resumed run keeps exactly what an uninterrupted one keeps.
"""
from __future__ import annotations

from torch import nn

from bench.checkpoints import Checkpoint, CheckpointStore
from bench.config import RunConfig
from bench.selection import Record, kept_epochs, retention_rules, series_of
from bench.store import RunDir


class Retention:
    def __init__(self, cfg: RunConfig, run: RunDir):
        self.epochs = cfg.epochs
        self.rules = retention_rules(cfg.eval_attacks, cfg.monitor_on)
        self.store = CheckpointStore(run.checkpoints_dir)

    def kept(self, records: list[Record], series: list[str]) -> set[Checkpoint]:
        return {Checkpoint(s, e) for s in series for e in kept_epochs(records, self.epochs, s, self.rules)}

    def keep_new(self, records: list[Record], models: dict[str, nn.Module]) -> None:
        """Save the latest epoch's weights of each series for which it is a candidate."""
        epoch = records[-1]["epoch"]
        for ckpt in self.kept(records, list(models)):
            if ckpt.epoch == epoch:
                self.store.save(ckpt, models[ckpt.series].state_dict())

    def prune(self, records: list[Record], models: dict[str, nn.Module]) -> None:
        self.store.prune(self.kept(records, sorted(set(series_of(records)) | set(models))))
