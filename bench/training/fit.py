"""The method-agnostic epoch loop, with per-epoch monitoring, candidate checkpoints and exact resume.

The loop asks the method for a loss, steps the optimiser and schedule, keeps per-class training accuracy on
the examples the update used, evaluates every `eval_every` epochs on each monitored set, keeps the weights of
the epochs a selection rule could still pick (bench.training.retain), and writes an atomic `last.pt` after
every epoch. Killing the process at any moment and fitting again continues from the last finished epoch with
the same RNG states, so the final weights equal those of an uninterrupted run (on CPU; CUDA kernels are not
bitwise deterministic).
"""
from __future__ import annotations

import random
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from bench import environment
from bench.config import RunConfig
from bench.data import Split
from bench.divergence import check_finite
from bench.evaluate import EvalConfig, attack_specs, evaluate
from bench.precision import PRECISIONS
from bench.progress import EpochLog, progress
from bench.store import RunDir
from bench.tensorboard_log import TensorBoardLog
from bench.training.assemble import Parts, Runtime
from bench.training.retain import Retention
from methods import Batch


def rng_state(data_gen: torch.Generator) -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "data": data_gen.get_state(),
    }


def set_rng_state(state: dict[str, Any], data_gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    data_gen.set_state(state["data"])


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


class EpochMeter:
    """Per-epoch sums kept on the device, so the hot loop never waits for a host sync."""

    def __init__(self, num_classes: int, device: torch.device):
        self.num_classes = num_classes
        self.loss = torch.zeros((), device=device)
        self.correct = torch.zeros(num_classes, device=device)
        self.seen = torch.zeros(num_classes, device=device)
        self.stats: dict[str, torch.Tensor] = {}
        self.batches = 0

    def add(self, loss: torch.Tensor, logits: torch.Tensor | None, y: torch.Tensor, stats: dict[str, torch.Tensor]) -> None:
        self.batches += 1
        self.loss += loss.detach().float()
        if logits is not None:
            hit = (logits.detach().argmax(1) == y).float()
            self.correct.index_add_(0, y, hit)
            self.seen.index_add_(0, y, torch.ones_like(hit))
        for k, v in stats.items():
            self.stats[k] = self.stats.get(k, 0) + v.detach().float()

    def summary(self) -> dict[str, Any]:
        seen = self.seen.cpu()
        acc = (self.correct.cpu() / seen.clamp(min=1)).tolist()
        out = {
            "train_loss": float(self.loss) / max(self.batches, 1),
            "train_acc": float(self.correct.sum() / seen.sum().clamp(min=1)),
            "train_class_acc": [a if n > 0 else None for a, n in zip(acc, seen.tolist())],
        }
        out.update({f"train_{k}": float(v) / self.batches for k, v in self.stats.items()})
        return out


def monitor_sets(cfg: RunConfig, parts: Parts) -> dict[str, Split]:
    """The monitored sets: "test" = the first eval_n test images; others the scenario's held-out splits."""
    test = parts.test if cfg.eval_n is None or cfg.eval_n >= len(parts.test) else parts.test.subset(torch.arange(cfg.eval_n))
    return {name: test if name == "test" else parts.scenario.heldout[name] for name in cfg.monitor_on}


def monitor(cfg: RunConfig, parts: Parts, sets: dict[str, Split], models: dict[str, nn.Module],
            device: torch.device) -> dict[str, Any]:
    """This epoch's evaluations, laid out as bench.selection.monitored reads them."""
    specs = attack_specs(cfg.eval_attacks, eps=parts.eps, step=parts.eval_step, dataset=parts.info.name, norm=cfg.norm)
    config = EvalConfig(specs, seed=cfg.seed)
    out: dict[str, Any] = {}
    for name, split in sets.items():
        evaluated = {series: evaluate(m, split, parts.info.num_classes, config, device) for series, m in models.items()}
        if name == "test":
            out["eval"] = evaluated.pop("")
            if evaluated:
                out["eval_averaged"] = evaluated
        else:
            out.setdefault("monitor", {})[name] = evaluated
    return out


def fit(cfg: RunConfig, run: RunDir, parts: Parts, rt: Runtime) -> None:
    """Train (or resume) the run's epochs; records, candidate checkpoints and last.pt land in `run`."""
    model, method, optimizer, schedule = parts.model, parts.method, parts.optimizer, parts.schedule
    start = 0
    if (ckpt := run.resume_point(rt.device)) is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["schedule"])
        method.load_state_dict(ckpt["method"])
        set_rng_state(ckpt["rng"], parts.data_gen)
        start = ckpt["epoch"] + 1
    run.truncate_records(start)
    precision = PRECISIONS[cfg.precision]
    environment.record(run.path, rt, precision)  # this attempt's commit, device, precision, compile, threads
    sets = monitor_sets(cfg, parts)
    retention = Retention(cfg, run)
    records = run.records()

    log = EpochLog(run.path.name, start, cfg.epochs)
    with run.heartbeat(), TensorBoardLog(run.path, start) as board, precision.switches():
        for epoch in progress(range(start, cfg.epochs), desc=run.path.name, total=cfg.epochs - start, leave=True):
            began = time.time()
            epoch_lr = optimizer.param_groups[0]["lr"]  # the lr this epoch starts at (the schedule steps per batch)
            meter = EpochMeter(parts.info.num_classes, rt.device)
            method.on_epoch_start(model, epoch)
            model.train()
            for i, (x, y, idx) in enumerate(progress(parts.stream.epoch(parts.data_gen), desc=f"epoch {epoch + 1}",
                                                     total=len(parts.stream))):
                if rt.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with precision.autocast_on(rt.device):  # the backward below runs the dtypes the forward chose
                    out = method.loss(model, Batch(x, y, idx, epoch, i), optimizer)
                optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                optimizer.step()
                schedule.step()
                check_finite(out.loss, model, epoch, i)
                meter.add(out.loss, out.logits, y, out.stats)
            record = {"epoch": epoch, "lr": epoch_lr, "threads": torch.get_num_threads(), **meter.summary()}
            record.update(method.on_epoch_end(model, epoch, record["train_class_acc"]))
            record["train_seconds"] = time.time() - began
            models = {"": model, **method.averaged_models()}  # averaged series: EMA/FAWA models (CFA Fig. 4)
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                record.update(monitor(cfg, parts, sets, models, rt.device))
            records.append(record)
            retention.keep_new(records, models)
            run.append_record(record)
            board.log(record)
            log.epoch(record)
            run.save_last({
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "method": method.state_dict(), "rng": rng_state(parts.data_gen), "epoch": epoch,
            })
            retention.prune(records, models)
